//! Starting holdfast: the topology watcher, routing, pools and the request
//! path, the client listener, the admin endpoint, background upkeep, and
//! the embedded replica set when no upstream is configured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use holdfast_topology::{Snapshot, Topology, TopologyConfig};
use holdfast_wire::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::client::{self, ClientContext};
use crate::config::Config;
use crate::embedded::Embedded;
use crate::handshake::Identity;
use crate::pool::{PoolConfig, Pools};
use crate::replies::Replies;
use crate::request::{Forwarder, Policy};
use crate::router::Router;
use crate::security::Security;
use crate::sessions::{self, Sessions};

/// A running holdfast.
pub struct Holdfast {
    pub listen_addr: String,
    pub admin_addr: Option<SocketAddr>,
    /// The upstream connection string in use (password redacted).
    pub upstream: String,
    /// The embedded replica set, when holdfast started one.
    pub embedded: Option<Embedded>,
    router: Arc<Router>,
    pools: Arc<Pools>,
    identity: Arc<Identity>,
    sessions: Arc<Sessions>,
    ctx: Arc<ClientContext>,
    security: Arc<Security>,
    /// Stops the listeners and makes client connections finish.
    shutdown: CancellationToken,
    /// Stops the admin endpoint and background tasks, after the drain.
    background: CancellationToken,
    tracker: TaskTracker,
    draining: Arc<AtomicBool>,
}

impl Holdfast {
    /// The connection string applications use.
    pub fn client_uri(&self) -> String {
        if let Some(path) = self.listen_addr.strip_prefix("unix:") {
            let enc = path.replace('/', "%2F");
            return format!("mongodb://{enc}");
        }
        format!("mongodb://{}/", self.listen_addr)
    }

    pub fn topology(&self) -> &Topology {
        self.router.topology()
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// holdfast's own server sessions (`write_retry = "retryable"`).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Waits until a primary is known, up to `timeout`.
    pub async fn wait_for_primary(&self, timeout: Duration) -> Option<Arc<Snapshot>> {
        self.topology().wait_for_primary(timeout).await
    }

    /// Graceful stop: no new connections; in-flight and held requests get up
    /// to `drain` to finish; then everything is closed.
    pub async fn shutdown(&self, drain: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        self.tracker.close();
        self.identity.bump();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                drain_ms = drain.as_millis() as u64,
                "drain timeout passed with requests still running"
            );
        }
        end_sessions(&self.router, &self.pools, self.sessions.drain()).await;
        self.background.cancel();
        self.topology().shutdown();
        if let Some(rs) = &self.embedded {
            rs.shutdown();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// SIGHUP: re-reads the users file, the certificate files and the
    /// upstream password file. Connected clients keep their connections
    /// and logins; the next login follows the new users. A part whose new
    /// files do not load stays as it was (the error says which).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let (users, result) = self.security.reload().await;
        if let Some(users) = users {
            *self.ctx.users.write().unwrap() = Arc::new(users);
        }
        result
    }
}

/// Starts holdfast with `cfg`. Binds the listeners before returning.
pub async fn start(cfg: Config) -> anyhow::Result<Holdfast> {
    let (upstream, embedded) = upstream_of(&cfg).await?;
    let redacted = crate::config::redact_uri(&upstream);
    let security = Security::load(&cfg, &upstream)
        .await
        .with_context(|| format!("the upstream {redacted}"))?;
    let topology = Topology::start(TopologyConfig {
        probe_timeout: cfg.probe_timeout(),
        tls: security.connector.clone(),
        ..TopologyConfig::new(upstream.clone())
    })
    .await
    .with_context(|| format!("watching {redacted}"))?;
    let identity = Arc::new(Identity::with_max_wire_version(
        topology.snapshot().limits,
        cfg.advertise_max_wire_version,
    ));
    let router = Arc::new(Router::new(
        topology,
        crate::router::Settings {
            max_held: cfg.max_held_requests,
            max_held_bytes: cfg.max_held_bytes,
            local_threshold: Duration::from_millis(cfg.local_threshold_ms),
            election_reads_secondary: cfg.election_reads == crate::config::ElectionReads::Secondary,
        },
    ));
    let pools = Arc::new(Pools::new(PoolConfig {
        tls: security.connector.clone(),
        max_size: cfg.pool_size,
        max_connecting: cfg.pool_max_connecting,
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        checkout_timeout: cfg.hold_timeout(),
        ..Default::default()
    }));
    let budget = crate::budget::Budget::new(cfg.max_buffered_bytes);
    let timeout = router.snapshot().limits.logical_session_timeout_minutes;
    let sessions = Sessions::for_timeout(cfg.pool_size.max(64) * 2, timeout.unwrap_or(30));
    let forwarder = Arc::new(Forwarder::new(
        Policy {
            hold_timeout: cfg.hold_timeout(),
            write_retry: cfg.write_retry,
        },
        router.clone(),
        pools.clone(),
        Arc::new(Replies::new(identity.clone())),
        sessions.clone(),
        budget.clone(),
    ));
    let security = Arc::new(security);
    let ctx = client_context(&cfg, forwarder, &security, budget);
    let hf = Holdfast {
        ctx: ctx.clone(),
        security,
        listen_addr: String::new(),
        admin_addr: None,
        upstream: redacted,
        embedded,
        router,
        pools,
        identity,
        sessions,
        shutdown: CancellationToken::new(),
        background: CancellationToken::new(),
        tracker: TaskTracker::new(),
        draining: Arc::new(AtomicBool::new(false)),
    };
    hf.spawn_background(&cfg);
    bind(hf, &cfg, ctx).await
}

/// What every client connection shares.
fn client_context(
    cfg: &Config,
    forwarder: Arc<Forwarder>,
    security: &Security,
    budget: Arc<crate::budget::Budget>,
) -> Arc<ClientContext> {
    Arc::new(ClientContext {
        forwarder,
        limits: Limits {
            max_message_size: cfg.max_message_size,
            verify_checksum: true,
        },
        timeouts: cfg.client_timeouts(),
        budget,
        users: std::sync::RwLock::new(Arc::new(security.users.clone())),
        principals: security.principals.clone(),
        allow_unauthenticated: cfg.allow_unauthenticated,
    })
}

/// The configured upstream, or the embedded replica set's.
async fn upstream_of(cfg: &Config) -> anyhow::Result<(String, Option<Embedded>)> {
    if let Some(u) = &cfg.upstream {
        return Ok((u.clone(), None));
    }
    let rs = Embedded::start(cfg.embedded_port, cfg.embedded_election_ms).await?;
    let uri = rs.uri();
    info!(uri = %uri, "no upstream configured: started an embedded three-member holdfast-sim");
    warn!("{}", crate::embedded::IN_MEMORY_NOTICE);
    Ok((uri, Some(rs)))
}

/// Binds the client listener and the admin endpoint.
async fn bind(mut hf: Holdfast, cfg: &Config, ctx: Arc<ClientContext>) -> anyhow::Result<Holdfast> {
    let listener = Listener {
        tls: hf.security.acceptor.clone(),
        handshake_timeout: cfg
            .client_timeouts()
            .first_message
            .unwrap_or(Duration::from_secs(10)),
        ctx,
        tracker: hf.tracker.clone(),
        shutdown: hf.shutdown.clone(),
        permits: Arc::new(Semaphore::new(cfg.max_client_connections)),
        limit: cfg.max_client_connections,
        next_conn_id: Arc::new(AtomicI64::new(1)),
    };
    hf.listen_addr = listener.bind(&cfg.listen).await?;
    if !cfg.admin_listen.is_empty() {
        let admin = crate::admin::serve(
            &cfg.admin_listen,
            hf.topology().clone(),
            hf.draining.clone(),
            hf.background.clone(),
        )
        .await?;
        hf.admin_addr = Some(admin);
    }
    info!(listen = %hf.listen_addr, admin = ?hf.admin_addr, upstream = %hf.upstream, "holdfast started");
    Ok(hf)
}

impl Holdfast {
    /// Topology observer, cursor/transaction sweeper, stall watchdog.
    fn spawn_background(&self, cfg: &Config) {
        let stop = self.background.clone();
        tokio::spawn(observe_topology(
            self.topology().clone(),
            self.pools.clone(),
            self.identity.clone(),
            stop.clone(),
        ));
        let router = self.router.clone();
        let sweep_pools = self.pools.clone();
        let sweep_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = sweep_stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {
                        router.sweep();
                        sweep_pools.shrink_idle();
                    }
                }
            }
        });
        let (router, pools, sessions) = (
            self.router.clone(),
            self.pools.clone(),
            self.sessions.clone(),
        );
        let retire_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = retire_stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {
                        end_sessions(&router, &pools, sessions.retire_idle()).await
                    }
                }
            }
        });
        let pools = self.pools.clone();
        let (stall, probe) = (cfg.stall_probe(), cfg.probe_timeout());
        tokio::spawn(async move { pools.watch_stalls(stall, probe, stop).await });
    }
}

/// Ends holdfast's sessions on the primary, each as its owner (best
/// effort: the server expires them on its own after
/// `logicalSessionTimeoutMinutes`).
async fn end_sessions(router: &Router, pools: &Pools, ended: sessions::Ended) {
    if ended.is_empty() {
        return;
    }
    // Small replies, not a client's: a budget of their own.
    let budget = crate::budget::Budget::new(1 << 20);
    let Some(primary) = router.snapshot().primary.clone() else {
        return;
    };
    let count = ended.len();
    for (owner, lsids) in sessions::by_owner(ended) {
        for cmd in sessions::end_sessions_commands(lsids) {
            let frame = holdfast_wire::reply::msg_reply(0, 0, &cmd);
            let sent = tokio::time::timeout(
                Duration::from_secs(2),
                pools.round_trip(&primary, &owner, &frame, false, Instant::now(), &budget),
            )
            .await;
            if !matches!(sent, Ok(Ok(Some(_)))) {
                tracing::debug!(member = %primary, "endSessions for holdfast's sessions got no reply");
            }
        }
    }
    tracing::debug!(sessions = count, "ended holdfast's idle sessions");
}

/// Accepts client connections.
#[derive(Clone)]
struct Listener {
    /// TLS towards clients: every connection must complete a handshake.
    tls: Option<holdfast_tls::Acceptor>,
    /// The longest a TLS handshake may take.
    handshake_timeout: Duration,
    ctx: Arc<ClientContext>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    permits: Arc<Semaphore>,
    limit: usize,
    next_conn_id: Arc<AtomicI64>,
}

impl Listener {
    /// Binds `addr` (`host:port` or `unix:/path`) and accepts in the
    /// background; returns the bound address.
    async fn bind(self, addr: &str) -> anyhow::Result<String> {
        if let Some(path) = addr.strip_prefix("unix:") {
            let _ = std::fs::remove_file(path);
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("binding unix socket {path}"))?;
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! { _ = self.shutdown.cancelled() => break, a = l.accept() => a };
                    let Ok((stream, _)) = accepted else { continue };
                    self.admit(stream, "unix".to_string());
                }
            });
            return Ok(addr.to_string());
        }
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = l.local_addr()?.to_string();
        tokio::spawn(async move {
            loop {
                let accepted =
                    tokio::select! { _ = self.shutdown.cancelled() => break, a = l.accept() => a };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.admit(stream, peer.to_string());
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(bound)
    }

    /// Serves a new connection, or refuses it at `max_client_connections`.
    fn admit<S>(&self, stream: S, peer: String)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics::counter!("holdfast_client_connections_rejected_total").increment(1);
            static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
            let mut last = LAST.lock().unwrap();
            if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                *last = Some(Instant::now());
                warn!(limit = self.limit, peer = %peer, "max_client_connections reached: refusing new client connections");
            }
            return;
        };
        metrics::counter!("holdfast_client_connections_total").increment(1);
        metrics::gauge!("holdfast_client_connections").increment(1.0);
        let span = tracing::info_span!("client", peer = %peer);
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        self.tracker.spawn(async move {
            let (ctx, shutdown) = (this.ctx.clone(), this.shutdown.clone());
            match &this.tls {
                None => client::serve(ctx, conn_id, stream, peer, None, span, shutdown).await,
                Some(acceptor) => {
                    let accepted =
                        tokio::time::timeout(this.handshake_timeout, acceptor.accept(stream)).await;
                    match accepted {
                        Ok(Ok(tls)) => {
                            let subject = holdfast_tls::peer_subject(&tls);
                            client::serve(ctx, conn_id, tls, peer, subject, span, shutdown).await
                        }
                        Ok(Err(e)) => tls_refused(&peer, &e.to_string()),
                        Err(_) => tls_refused(&peer, "the TLS handshake timed out"),
                    }
                }
            }
            metrics::gauge!("holdfast_client_connections").decrement(1.0);
            drop(permit);
        });
    }
}

/// A client that did not complete the TLS handshake (a plaintext client,
/// an untrusted or missing certificate, a timeout): counted, and logged at
/// most every 10 s.
fn tls_refused(peer: &str, why: &str) {
    crate::metrics::tls_handshake_failed("client");
    crate::metrics::client_closed("tls_handshake");
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap();
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        *last = Some(Instant::now());
        warn!(peer = %peer, error = %why, "client TLS handshake failed; connection closed (further failures in the next 10 s are only counted)");
    }
}

/// Watches the topology: metrics for primary changes, the old primary's
/// pool cleared, the limits holdfast advertises.
async fn observe_topology(
    topology: Topology,
    pools: Arc<Pools>,
    identity: Arc<Identity>,
    shutdown: CancellationToken,
) {
    let mut rx = topology.subscribe();
    let mut last_primary: Option<String> = None;
    let mut lost_at: Option<Instant> = Some(Instant::now());
    loop {
        let snap = rx.borrow_and_update().clone();
        for member in &snap.members {
            // Each member's pool (and its metrics) from the first snapshot on.
            pools.get(&member.addr);
        }
        let known = if snap.primary.is_some() { 1.0 } else { 0.0 };
        metrics::gauge!("holdfast_primary_known").set(known);
        if snap.primary != last_primary {
            if last_primary.is_some() || snap.primary.is_some() {
                metrics::counter!("holdfast_primary_changes_total").increment(1);
            }
            match (&snap.primary, lost_at) {
                (Some(_), Some(t)) => {
                    metrics::histogram!("holdfast_primary_unknown_duration_seconds")
                        .record(t.elapsed().as_secs_f64());
                    lost_at = None;
                }
                (None, None) => lost_at = Some(Instant::now()),
                _ => {}
            }
            if let Some(old) = &last_primary {
                // Connections to a member that stopped being primary are not reused.
                pools.get(old).clear();
            }
            last_primary = snap.primary.clone();
        }
        if snap.primary.is_some() {
            identity.advertise(snap.limits);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}
