//! The `holdfast` binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use holdfast_proxy::config::ElectionReads;
use holdfast_proxy::{Config, WriteRetry};

#[cfg(feature = "embedded-sim")]
const ABOUT: &str = "A MongoDB proxy that hides replica-set primary failover from applications.\n\nWithout --upstream (and no upstream in the config file) it starts an embedded three-member holdfast-sim replica set, whose data lives in memory only, and proxies to it.";
#[cfg(not(feature = "embedded-sim"))]
const ABOUT: &str = "A MongoDB proxy that hides replica-set primary failover from applications.\n\nAn upstream replica set (--upstream, HOLDFAST_UPSTREAM or `upstream` in the config file) is required.";

#[derive(Parser, Debug)]
#[command(
    name = "holdfast",
    version,
    about = ABOUT
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Replica set connection string, e.g. mongodb://h1:27017,h2:27017/?replicaSet=rs0
    #[arg(long, env = "HOLDFAST_UPSTREAM")]
    upstream: Option<String>,
    /// Client listener (host:port or unix:/path)
    #[arg(long, env = "HOLDFAST_LISTEN")]
    listen: Option<String>,
    /// Admin HTTP listener for /metrics, /healthz, /readyz ("" disables)
    #[arg(long, env = "HOLDFAST_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// TOML configuration file (see config/holdfast.toml)
    #[arg(long, env = "HOLDFAST_CONFIG")]
    config: Option<PathBuf>,
    /// Longest a request waits for a primary, in milliseconds
    #[arg(long, env = "HOLDFAST_HOLD_TIMEOUT_MS")]
    hold_timeout_ms: Option<u64>,
    /// retryable: make eligible writes retryable with holdfast's sessions (default);
    /// safe: resend writes only where provably safe; never: never resend a write
    #[arg(long, env = "HOLDFAST_WRITE_RETRY", value_enum)]
    write_retry: Option<WriteRetry>,
    /// Backend connections per member
    #[arg(long, env = "HOLDFAST_POOL_SIZE")]
    pool_size: Option<usize>,
    /// Highest wire version to announce (puts old drivers on older code paths)
    #[arg(long, env = "HOLDFAST_ADVERTISE_MAX_WIRE_VERSION")]
    advertise_max_wire_version: Option<i32>,
    /// Users holdfast authenticates its clients as (TOML); re-read on SIGHUP
    #[arg(long, env = "HOLDFAST_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// With a users file: clients that have not logged in run as the upstream identity
    #[arg(long, env = "HOLDFAST_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: Option<bool>,
    /// File whose first line is the upstream user's password; re-read on SIGHUP
    #[arg(long, env = "HOLDFAST_UPSTREAM_PASSWORD_FILE")]
    upstream_password_file: Option<PathBuf>,
    /// TLS towards clients: certificate chain (PEM); re-read on SIGHUP
    #[arg(long, env = "HOLDFAST_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// TLS towards clients: private key (PEM); re-read on SIGHUP
    #[arg(long, env = "HOLDFAST_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Mutual TLS: the CA client certificates must be signed by (PEM)
    #[arg(long, env = "HOLDFAST_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Primary-mode reads while no primary is known: hold (default) or secondary
    #[arg(long, env = "HOLDFAST_ELECTION_READS", value_enum)]
    election_reads: Option<ElectionReads>,
    /// Read-preference latency window, ms
    #[arg(long, env = "HOLDFAST_LOCAL_THRESHOLD_MS")]
    local_threshold_ms: Option<u64>,
    /// A new client connection must send its first message within this, ms (0: no limit)
    #[arg(long, env = "HOLDFAST_CLIENT_FIRST_MESSAGE_TIMEOUT_MS")]
    client_first_message_timeout_ms: Option<u64>,
    /// A started frame must complete within this, ms (0: no limit)
    #[arg(long, env = "HOLDFAST_CLIENT_FRAME_TIMEOUT_MS")]
    client_frame_timeout_ms: Option<u64>,
    /// Idle client connections are closed after this, ms (0: never)
    #[arg(long, env = "HOLDFAST_CLIENT_IDLE_TIMEOUT_MS")]
    client_idle_timeout_ms: Option<u64>,
    /// One memory budget for every buffered request byte
    #[arg(long, env = "HOLDFAST_MAX_BUFFERED_BYTES")]
    max_buffered_bytes: Option<usize>,
    /// Log format: text or json
    #[arg(long, env = "HOLDFAST_LOG_FORMAT")]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a configuration file and print the effective configuration.
    CheckConfig { file: PathBuf },
    /// Print a users-file SCRAM secret for a password read from standard
    /// input (first line), so the file need not hold the password. The
    /// upstream must store the same secret for a user that logs in upstream
    /// as itself: take it from `usersInfo` with `showCredentials` instead
    /// (see docs/security.md).
    ScramSecret {
        /// The user's name (SCRAM-SHA-1 hashes it with the password)
        #[arg(long)]
        user: String,
        /// SCRAM-SHA-256 (default) or SCRAM-SHA-1
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
    },
    /// Run the seed scenario twice on an embedded replica set, straight and
    /// through holdfast, and print what the application saw side by side.
    #[cfg(feature = "embedded-sim")]
    Demo {
        /// Application connections
        #[arg(long, default_value_t = 600)]
        connections: usize,
        /// Stepdowns before the final kill
        #[arg(long, default_value_t = 3)]
        stepdowns: usize,
        /// Seconds between failovers
        #[arg(long, default_value_t = 3)]
        pause_secs: u64,
        /// Election time of the embedded replica set, ms
        #[arg(long, default_value_t = 1500)]
        election_ms: u64,
        /// A legacy client (OP_QUERY finds, OP_UPDATE + getLastError, as
        /// pymongo 3.6 or mgo) instead of the official Rust driver
        #[arg(long)]
        legacy: bool,
    },
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(p) => Config::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("in {}", p.display()))?,
        None => Config::default(),
    };
    // A flag (or its HOLDFAST_* variable) overrides the file.
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(v) = cli.$field.clone() {
                cfg.$field = v;
            }
        )*};
    }
    macro_rules! set_some {
        ($($field:ident),*) => {$(
            if let Some(v) = cli.$field.clone() {
                cfg.$field = Some(v);
            }
        )*};
    }
    set!(
        listen,
        admin_listen,
        hold_timeout_ms,
        write_retry,
        pool_size,
        log_format,
        allow_unauthenticated,
        election_reads,
        local_threshold_ms,
        client_first_message_timeout_ms,
        client_frame_timeout_ms,
        client_idle_timeout_ms,
        max_buffered_bytes
    );
    set_some!(
        upstream,
        advertise_max_wire_version,
        users_file,
        upstream_password_file,
        tls_cert_file,
        tls_key_file,
        tls_client_ca_file
    );
    Ok(cfg)
}

/// `holdfast scram-secret`: the password from standard input, the secret
/// (a fresh salt, the mechanism's default iteration count) on standard
/// output.
fn scram_secret(user: &str, mechanism: &str) -> anyhow::Result<()> {
    use holdfast_scram::{Mechanism, ScramSecret};
    let m = Mechanism::from_name(mechanism)
        .with_context(|| format!("unknown mechanism {mechanism} (SCRAM-SHA-256 or SCRAM-SHA-1)"))?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let secret = ScramSecret::generate(m, user, password)
        .map_err(|e| anyhow::anyhow!("cannot derive the secret: {e}"))?;
    println!("{}", secret.to_text());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Cmd::CheckConfig { file }) = &cli.cmd {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let cfg = Config::from_toml(&text)
            .with_context(|| format!("{} is not a valid holdfast configuration", file.display()))?;
        let mut shown = cfg.clone();
        shown.upstream = cfg.redacted_upstream();
        println!("{} is valid.\n{shown:#?}", file.display());
        return Ok(());
    }
    if let Some(Cmd::ScramSecret { user, mechanism }) = &cli.cmd {
        return scram_secret(user, mechanism);
    }
    #[cfg(feature = "embedded-sim")]
    if let Some(Cmd::Demo { .. }) = &cli.cmd {
        return demo(&cli);
    }
    let cfg = load(&cli)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        .unwrap_or_else(|_| "info".into());
    if cfg.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        holdfast_proxy::admin::prometheus();
        let drain = Duration::from_millis(cfg.drain_timeout_ms);
        let hf = holdfast_proxy::start(cfg).await?;
        if hf.embedded.is_some() {
            println!("holdfast: embedded replica set {} is running", hf.upstream);
            println!("{}", holdfast_proxy::embedded::IN_MEMORY_NOTICE);
        }
        // One address per line: with port 0, scripts read what was bound.
        println!("holdfast: listening on {}", hf.listen_addr);
        if let Some(a) = hf.admin_addr {
            println!("holdfast: admin endpoint on {a} (http://{a}/metrics, /healthz, /readyz)");
        }
        println!("holdfast: connect with {}", hf.client_uri());
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    if let Err(e) = hf.reload().await {
                        tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the previous configuration");
                    }
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM: draining (up to {:?})", drain);
                    hf.shutdown(drain).await;
                    break;
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("SIGINT: exiting");
                    hf.shutdown(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
        anyhow::Ok(())
    })
}

#[cfg(feature = "embedded-sim")]
fn demo(cli: &Cli) -> anyhow::Result<()> {
    let Some(Cmd::Demo {
        connections,
        stepdowns,
        pause_secs,
        election_ms,
        legacy,
    }) = &cli.cmd
    else {
        unreachable!("called for the demo subcommand")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        .unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(holdfast_proxy::demo::run(
        holdfast_proxy::demo::DemoConfig {
            connections: *connections,
            stepdowns: *stepdowns,
            pause: Duration::from_secs(*pause_secs),
            election_ms: *election_ms,
            legacy: *legacy,
        },
    ))
}
