//! `holdfast-sim`: runs an in-memory MongoDB 7.0 replica set on 127.0.0.1.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use holdfast_sim::{MemberTags, ReplicaSet, SimConfig, SimTls, SimUser};

const AFTER_HELP: &str = "\
Members listen on PORT, PORT+1, ... (--port 0: ephemeral ports). Member 0 is
primary at start. Connect with the printed connection string.

Fault injection (run on the admin database of any live member):
  {simFault: \"blackhole\",   member: N}          N reads requests and never answers (nor closes)
  {simFault: \"unblackhole\", member: N}
  {simFault: \"latency\",     member: N, ms: M}   M ms added before each reply of N (0 removes it)
  {simFault: \"lag\",         member: N, ms: M}   secondary N applies the log M ms late, on top of
                                                --repl-lag-ms (0 removes it): its reads and its
                                                hello's lastWrite fall behind; w:\"majority\" still
                                                completes through the other members
  {simFault: \"kill\",        member: N}          like kill -9: listener closed, connections reset
  {simFault: \"revive\",      member: N}          restart N as a secondary that catches up
  {simFault: \"stepDown\",    [member: N], secs: S, force: true}
  {simFault: \"freeze\",      member: N, secs: S}
`member` defaults to the member you ask. Real commands work too:
replSetStepDown, replSetFreeze, replSetStepUp, replSetGetStatus, shutdown.

Reads: a secondary serves find, aggregate, count, distinct, listCollections,
listIndexes (and getMore on its cursors) from its own data, which may lag the
primary, under a $readPreference mode other than primary (13435
NotPrimaryNoSecondaryOk otherwise); writes and aggregates with $out/$merge get
10107 NotWritablePrimary. hello reports each member's own lastWrite (opTime and
lastWriteDate of what it applied, majorityOpTime, majorityWriteDate); an idle
primary writes a no-op every --periodic-noop-ms so lastWriteDate stays recent.
readConcern {afterClusterTime} waits until the member caught up (maxTimeMS: then
50 MaxTimeMSExpired). serverStatus.opcounters are per member (find: query,
getMore: getmore, other commands: command).

Tags (--member-tags, repeatable): --member-tags 1:dc=east,rack=r1 gives member 1
those tags; hello shows them as `tags`, replSetGetConfig as members[1].tags.

After a stepdown, kill or shutdown of the primary, the set has no primary
for --election-ms, then the most up-to-date eligible member wins. w:1 writes
not yet replicated when their primary dies can be rolled back; w:\"majority\"
writes never are.

Access control (--auth), as MongoDB 7.0:
  --user alice:secret                       root@admin, SCRAM-SHA-1 and SCRAM-SHA-256
  --user app:secret:readWrite@db1,read@db2  those roles (a final :ROLE@DB,... is the role
                                            list, so a password may contain ':')
  --user 'CN=client,OU=apps,O=holdfast@$external[:ROLE@DB,...]'
                                            a MONGODB-X509 user: the client certificate's
                                            subject as MongoDB prints it (RFC 2253 order)
  Users live in admin.system.users (replicated); createUser, updateUser, dropUser
  and usersInfo (showCredentials: true) manage them. Roles: read, readWrite,
  dbAdmin, userAdmin, dbOwner (any database); readAnyDatabase,
  readWriteAnyDatabase, userAdminAnyDatabase, dbAdminAnyDatabase, clusterMonitor,
  hostManager, clusterManager, clusterAdmin, root (admin). simFault needs root.
  Before authentication only hello, saslStart, saslContinue, authenticate, ping,
  listCommands and logout run (13 Unauthorized otherwise). Without --auth every
  command runs, and users (if any) can still authenticate.

TLS (--tls-cert-key-file): every member requires TLS; plaintext connections are
closed. With --tls-ca-file, client certificates are verified against that CA
when presented (clients without one still connect) and MONGODB-X509 works:
  {authenticate: 1, mechanism: \"MONGODB-X509\"} on $external.";

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
    /// Milliseconds between the no-ops an idle primary writes so that its
    /// lastWriteDate keeps advancing (MongoDB: periodicNoopIntervalSecs,
    /// 10 s); 0 disables them.
    #[arg(long, default_value_t = 10_000, env = "HOLDFAST_SIM_PERIODIC_NOOP_MS")]
    periodic_noop_ms: u64,
    /// Tags of member N (repeatable): N:key=value[,key=value...].
    #[arg(long = "member-tags", value_name = "N:KEY=VALUE,...", value_parser = parse_member_tags)]
    member_tags: Vec<(usize, MemberTags)>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "HOLDFAST_SIM_HOST")]
    host: IpAddr,
    /// Access control: clients must authenticate and may only run what
    /// their roles allow.
    #[arg(long)]
    auth: bool,
    /// A user the set has from the start (repeatable):
    /// NAME:PASSWORD[:ROLE@DB,...] (auth database admin; default role
    /// root@admin) or SUBJECT@$external[:ROLE@DB,...] (MONGODB-X509).
    #[arg(long = "user", value_name = "SPEC", value_parser = parse_user)]
    users: Vec<SimUser>,
    /// Certificate chain and private key (PEM, one file): every member
    /// requires TLS.
    #[arg(long, value_name = "PEM")]
    tls_cert_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against
    /// when presented.
    #[arg(long, value_name = "PEM", requires = "tls_cert_key_file")]
    tls_ca_file: Option<PathBuf>,
}

fn parse_user(spec: &str) -> Result<SimUser, String> {
    SimUser::parse(spec)
}

fn parse_member_tags(spec: &str) -> Result<(usize, MemberTags), String> {
    holdfast_sim::parse_member_tags(spec)
}

/// `--member-tags` flags as one list per member; a member named twice
/// gets the tags of both (a key given again takes the later value).
fn member_tags(flags: Vec<(usize, MemberTags)>, members: usize) -> anyhow::Result<Vec<MemberTags>> {
    let mut out: Vec<MemberTags> = vec![Vec::new(); members];
    for (i, tags) in flags {
        anyhow::ensure!(
            i < members,
            "--member-tags {i}: the set has {members} members (0..{})",
            members.saturating_sub(1)
        );
        for (k, v) in tags {
            out[i].retain(|(k2, _)| *k2 != k);
            out[i].push((k, v));
        }
    }
    Ok(out)
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
    let tls = match &args.tls_cert_key_file {
        Some(cert_key) => Some(
            SimTls::from_files(cert_key, args.tls_ca_file.as_deref())
                .context("reading the TLS files")?,
        ),
        None => None,
    };
    let member_tags = member_tags(args.member_tags, args.members)?;
    let cfg = SimConfig {
        members: args.members,
        base_port: args.port,
        set_name: args.set_name,
        election_ms: args.election_ms,
        repl_lag_ms: args.repl_lag_ms,
        host: args.host,
        auth: args.auth,
        users: args.users,
        tls,
        member_tags,
        periodic_noop_ms: args.periodic_noop_ms,
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
