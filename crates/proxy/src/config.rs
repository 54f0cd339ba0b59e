//! Configuration: TOML file, `HOLDFAST_*` environment variables and flags.
//! Unknown keys are rejected.

use std::time::Duration;

use serde::Deserialize;

/// What holdfast does with a write whose first attempt was lost in a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WriteRetry {
    /// As `safe`, and every eligible write without a txnNumber (insert,
    /// single-document update and delete, findAndModify; acknowledged;
    /// outside transactions) is sent under one of holdfast's own sessions,
    /// so that it too can be resent and deduplicated by the new primary.
    Retryable,
    /// Resend writes that are provably safe: retryable writes (lsid +
    /// txnNumber, deduplicated by the server) and writes the old primary
    /// rejected with NotWritablePrimary before executing them.
    Safe,
    /// Never resend a write: every in-flight write gets the clear error.
    Never,
}

/// What a primary-mode read does while no primary is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ElectionReads {
    /// Wait at the gate for the new primary (the default).
    Hold,
    /// Answered by the most caught-up secondary: no pause, at the price of
    /// possibly stale data (up to the replication lag of that secondary).
    Secondary,
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
    /// The highest wire version holdfast announces in its hello (the
    /// primary's, capped by this): puts old drivers on their older code
    /// paths (3 = MongoDB 3.0: OP_QUERY finds, OP_GET_MORE, legacy writes).
    pub advertise_max_wire_version: Option<i32>,
    /// A new client connection must send its first whole message within
    /// this, ms (0: no limit).
    pub client_first_message_timeout_ms: u64,
    /// A frame a client has started to send must complete within this, ms;
    /// also the longest a reply may wait for a client to read it (0: no limit).
    pub client_frame_timeout_ms: u64,
    /// Client connections idle for this long are closed, ms (0, the
    /// default: never; drivers keep idle connections in their pools).
    pub client_idle_timeout_ms: u64,
    /// One memory budget, bytes, for every request byte holdfast buffers:
    /// frames being read, requests held, replies being written.
    pub max_buffered_bytes: usize,
    /// The read-preference latency window: members within this many ms of
    /// the fastest suitable one may be chosen.
    pub local_threshold_ms: u64,
    /// Primary-mode reads while no primary is known: `hold` or `secondary`.
    pub election_reads: ElectionReads,
    /// The users holdfast authenticates its clients as (TOML, `[[user]]`);
    /// none: clients are not authenticated and run as the upstream identity.
    pub users_file: Option<std::path::PathBuf>,
    /// With a users file: clients that have not logged in run as the
    /// upstream identity instead of getting 13 Unauthorized.
    pub allow_unauthenticated: bool,
    /// A file holding the upstream user's password (its first line); it
    /// replaces a password in `upstream`, so the connection string can be
    /// kept free of secrets.
    pub upstream_password_file: Option<std::path::PathBuf>,
    /// TLS towards clients: holdfast's certificate (PEM, chain first) and
    /// key. With both set, clients must speak TLS.
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA
    /// (its subject can log in with MONGODB-X509 as a user of the file).
    pub tls_client_ca_file: Option<std::path::PathBuf>,
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
            write_retry: WriteRetry::Retryable,
            stall_probe_ms: 2_000,
            probe_timeout_ms: 1_000,
            max_message_size: holdfast_wire::DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout_ms: 30_000,
            embedded_port: 27101,
            embedded_election_ms: 1_500,
            log_format: "text".into(),
            advertise_max_wire_version: None,
            client_first_message_timeout_ms: 10_000,
            client_frame_timeout_ms: 30_000,
            client_idle_timeout_ms: 0,
            max_buffered_bytes: 128 * 1024 * 1024,
            local_threshold_ms: 15,
            election_reads: ElectionReads::Hold,
            users_file: None,
            allow_unauthenticated: false,
            upstream_password_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
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

    /// The client-side timeouts (0 in the configuration: off).
    pub fn client_timeouts(&self) -> crate::client::Timeouts {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        crate::client::Timeouts {
            first_message: ms(self.client_first_message_timeout_ms),
            frame: ms(self.client_frame_timeout_ms),
            idle: ms(self.client_idle_timeout_ms),
        }
    }

    /// The client listener's TLS files, when TLS towards clients is on.
    /// Half a setting is an error, not plaintext.
    pub fn listener_tls(&self) -> Result<Option<holdfast_tls::ListenerTls>, String> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Ok(Some(holdfast_tls::ListenerTls {
                cert_file: c.clone(),
                key_file: k.clone(),
                client_ca_file: self.tls_client_ca_file.clone(),
            })),
            (None, None) if self.tls_client_ca_file.is_none() => Ok(None),
            (None, None) => Err("tls_client_ca_file needs tls_cert_file and tls_key_file".into()),
            _ => Err("tls_cert_file and tls_key_file go together: set both for TLS towards clients, or neither".into()),
        }
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
    fn tls_files_go_together() {
        assert_eq!(Config::default().listener_tls(), Ok(None));
        let c = Config::from_toml("tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"").unwrap();
        let t = c.listener_tls().unwrap().unwrap();
        assert_eq!(t.client_ca_file, None);
        let half = Config::from_toml("tls_cert_file = \"/c.pem\"").unwrap();
        assert!(half.listener_tls().unwrap_err().contains("go together"));
        let ca_only = Config::from_toml("tls_client_ca_file = \"/ca.pem\"").unwrap();
        assert!(ca_only.listener_tls().unwrap_err().contains("needs"));
    }

    #[test]
    fn write_retry_parses() {
        let c = Config::from_toml("write_retry = \"never\"").unwrap();
        assert_eq!(c.write_retry, WriteRetry::Never);
        assert_eq!(Config::default().write_retry, WriteRetry::Retryable);
        let c = Config::from_toml("write_retry = \"safe\"").unwrap();
        assert_eq!(c.write_retry, WriteRetry::Safe);
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
