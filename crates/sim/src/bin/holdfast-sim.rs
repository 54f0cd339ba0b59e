//! `holdfast-sim`: runs an in-memory MongoDB 7.0 replica set on 127.0.0.1.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use holdfast_sim::{ReplicaSet, SimConfig};

const AFTER_HELP: &str = "\
Members listen on PORT, PORT+1, ... (--port 0: ephemeral ports). Member 0 is
primary at start. Connect with the printed connection string.

Fault injection (run on the admin database of any live member):
  {simFault: \"blackhole\",   member: N}          N reads requests and never answers (nor closes)
  {simFault: \"unblackhole\", member: N}
  {simFault: \"latency\",     member: N, ms: M}   M ms added before each reply of N (0 removes it)
  {simFault: \"kill\",        member: N}          like kill -9: listener closed, connections reset
  {simFault: \"revive\",      member: N}          restart N as a secondary that catches up
  {simFault: \"stepDown\",    [member: N], secs: S, force: true}
  {simFault: \"freeze\",      member: N, secs: S}
`member` defaults to the member you ask. Real commands work too:
replSetStepDown, replSetFreeze, replSetStepUp, replSetGetStatus, shutdown.

After a stepdown, kill or shutdown of the primary, the set has no primary
for --election-ms, then the most up-to-date eligible member wins. w:1 writes
not yet replicated when their primary dies can be rolled back; w:\"majority\"
writes never are.";

#[derive(Debug, Parser)]
#[command(
    name = "holdfast-sim",
    version,
    about = "An in-memory, wire-compatible MongoDB 7.0 replica set for tests, demos and failover rehearsals",
    after_help = AFTER_HELP
)]
struct Args {
    /// Number of members.
    #[arg(long, default_value_t = 3, env = "HOLDFAST_SIM_MEMBERS")]
    members: usize,
    /// Port of member 0 (members use consecutive ports).
    #[arg(long, default_value_t = 27101, env = "HOLDFAST_SIM_PORT")]
    port: u16,
    /// Replica set name.
    #[arg(long, default_value = "rs0", env = "HOLDFAST_SIM_SET_NAME")]
    set_name: String,
    /// Milliseconds without a primary after the primary steps down or dies.
    #[arg(long, default_value_t = 1500, env = "HOLDFAST_SIM_ELECTION_MS")]
    election_ms: u64,
    /// Milliseconds after which secondaries apply a replicated write.
    #[arg(long, default_value_t = 2, env = "HOLDFAST_SIM_REPL_LAG_MS")]
    repl_lag_ms: u64,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "HOLDFAST_SIM_HOST")]
    host: IpAddr,
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for ctrl-c")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    anyhow::ensure!(args.members >= 1, "--members must be at least 1");
    let cfg = SimConfig {
        members: args.members,
        base_port: args.port,
        set_name: args.set_name,
        election_ms: args.election_ms,
        repl_lag_ms: args.repl_lag_ms,
        host: args.host,
    };
    let set = ReplicaSet::start(cfg)
        .await
        .context("starting the replica set")?;
    set.wait_for_primary(Duration::from_secs(5)).await;
    let primary = set.primary();
    for (i, addr) in set.addrs().iter().enumerate() {
        let role = if Some(i) == primary {
            "PRIMARY"
        } else {
            "SECONDARY"
        };
        println!("member {i}: {addr} {role}");
    }
    println!("{}", set.uri());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_signal().await?;
    set.shutdown();
    Ok(())
}
