//! Configuration: TOML file, `HOLDFAST_*` environment variables and flags.
//! Unknown keys are rejected.

use std::time::Duration;

use serde::Deserialize;

/// What holdfast does with a write whose first attempt was lost in a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WriteRetry {
    /// Resend writes that are provably safe: retryable writes (lsid +
    /// txnNumber, deduplicated by the server) and writes the old primary
    /// rejected with NotWritablePrimary before executing them.
    Safe,
    /// Never resend a write: every in-flight write gets the clear error.
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Client listener: `host:port`, or `unix:/path/to.sock`.
    pub listen: String,
    /// Admin HTTP listener (/metrics, /healthz, /readyz); empty disables it.
    pub admin_listen: String,
    /// The replica set: `mongodb://h1:p1,h2:p2/?replicaSet=rs0`. None starts
    /// an embedded three-member holdfast-sim.
    pub upstream: Option<String>,
    pub max_client_connections: usize,
    /// Backend connections per member.
    pub pool_size: usize,
    pub pool_max_connecting: usize,
    pub connect_timeout_ms: u64,
    /// Longest a request waits for a primary.
    pub hold_timeout_ms: u64,
    pub max_held_requests: usize,
    pub max_held_bytes: usize,
    pub write_retry: WriteRetry,
    /// A request with no reply after this long makes holdfast probe the
    /// member with a hello; if that probe gets no answer within
    /// `probe_timeout_ms`, the member is treated as gone (blackholed primary).
    pub stall_probe_ms: u64,
    pub probe_timeout_ms: u64,
    pub max_message_size: usize,
    /// On SIGTERM: how long in-flight and held requests may take to finish.
    pub drain_timeout_ms: u64,
    /// Ports of the embedded sim (first member; 0 = ephemeral).
    pub embedded_port: u16,
    pub embedded_election_ms: u64,
    /// `text` or `json`.
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:27017".into(),
            admin_listen: "127.0.0.1:9216".into(),
            upstream: None,
            max_client_connections: 10_000,
            pool_size: 100,
            pool_max_connecting: 8,
            connect_timeout_ms: 2_000,
            hold_timeout_ms: 30_000,
            max_held_requests: 10_000,
            max_held_bytes: 64 * 1024 * 1024,
            write_retry: WriteRetry::Safe,
            stall_probe_ms: 2_000,
            probe_timeout_ms: 1_000,
            max_message_size: holdfast_wire::DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout_ms: 30_000,
            embedded_port: 27101,
            embedded_election_ms: 1_500,
            log_format: "text".into(),
        }
    }
}

impl Config {
    pub fn hold_timeout(&self) -> Duration {
        Duration::from_millis(self.hold_timeout_ms)
    }
    pub fn stall_probe(&self) -> Duration {
        Duration::from_millis(self.stall_probe_ms)
    }
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.probe_timeout_ms)
    }

    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The upstream URI with any password replaced by `*****`.
    pub fn redacted_upstream(&self) -> Option<String> {
        self.upstream.as_deref().map(redact_uri)
    }
}

/// Replaces the password of a `mongodb://user:pass@…` URI.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return uri.to_string();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:*****{}",
            &uri[..scheme_end + 3],
            &creds[..colon],
            &rest[at..]
        ),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let e = Config::from_toml("listen = \"127.0.0.1:1\"\nnope = 1\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_uri("mongodb://u:secret@h:1/?x=y"),
            "mongodb://u:*****@h:1/?x=y"
        );
        assert_eq!(redact_uri("mongodb://h:1"), "mongodb://h:1");
    }

    #[test]
    fn write_retry_parses() {
        let c = Config::from_toml("write_retry = \"never\"").unwrap();
        assert_eq!(c.write_retry, WriteRetry::Never);
        assert_eq!(Config::default().write_retry, WriteRetry::Safe);
    }
}

#[cfg(test)]
mod shipped_file {
    #[test]
    fn config_file_in_the_repository_parses_to_the_defaults() {
        let text = include_str!("../../../config/holdfast.toml");
        let c = super::Config::from_toml(text).expect("config/holdfast.toml parses");
        let d = super::Config::default();
        assert_eq!(
            format!("{c:?}"),
            format!("{d:?}"),
            "config/holdfast.toml must show the defaults"
        );
    }
}
