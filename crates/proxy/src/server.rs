//! Starting holdfast: topology watcher, listener, admin endpoint, and the
//! embedded sim when no upstream is configured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use holdfast_topology::{Topology, TopologyConfig};
use holdfast_wire::Limits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::client::{self, Shared};
use crate::config::Config;
use crate::gate::Gate;
use crate::handshake::Identity;
use crate::pool::{PoolConfig, Pools};
use crate::router::{Cursors, TxnPins};

/// A running holdfast.
pub struct Holdfast {
    pub listen_addr: String,
    pub admin_addr: Option<SocketAddr>,
    /// The upstream connection string in use (password redacted).
    pub upstream: String,
    pub shared: Arc<Shared>,
    /// The embedded replica set, when holdfast started one.
    pub embedded: Option<holdfast_sim::ReplicaSet>,
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

    /// Graceful stop: no new connections; in-flight and held requests get up
    /// to `drain` to finish; then everything is closed.
    pub async fn shutdown(&self, drain: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        self.tracker.close();
        self.shared.identity.bump();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                drain_ms = drain.as_millis() as u64,
                "drain timeout passed with requests still running"
            );
        }
        self.background.cancel();
        self.shared.topology.shutdown();
        if let Some(rs) = &self.embedded {
            rs.shutdown();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Starts holdfast with `cfg`. Binds the listeners before returning.
pub async fn start(cfg: Config) -> anyhow::Result<Holdfast> {
    let mut embedded = None;
    let upstream = match &cfg.upstream {
        Some(u) => u.clone(),
        None => {
            let sim_cfg = holdfast_sim::SimConfig {
                base_port: cfg.embedded_port,
                election_ms: cfg.embedded_election_ms,
                ..Default::default()
            };
            let rs = holdfast_sim::ReplicaSet::start(sim_cfg)
                .await
                .context("starting the embedded holdfast-sim replica set")?;
            let uri = rs.uri();
            info!(uri = %uri, "no upstream configured: started an embedded three-member holdfast-sim");
            embedded = Some(rs);
            uri
        }
    };
    let redacted = crate::config::redact_uri(&upstream);
    let topology = Topology::start(TopologyConfig {
        probe_timeout: cfg.probe_timeout(),
        ..TopologyConfig::new(upstream.clone())
    })
    .await
    .with_context(|| format!("watching {redacted}"))?;
    let rx = topology.subscribe();
    let cfg = Arc::new(cfg);
    let limits = Limits {
        max_message_size: cfg.max_message_size,
        verify_checksum: true,
    };
    let shared = Arc::new(Shared {
        pools: Pools::new(PoolConfig {
            max_size: cfg.pool_size,
            max_connecting: cfg.pool_max_connecting,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            checkout_timeout: cfg.hold_timeout(),
            ..Default::default()
        }),
        cursors: Cursors::new(Duration::from_secs(11 * 60)),
        txns: TxnPins::new(Duration::from_secs(31 * 60)),
        gate: Gate::new(rx.clone(), cfg.max_held_requests, cfg.max_held_bytes),
        identity: Identity::new(topology.snapshot().limits),
        topology,
        limits,
        next_conn_id: AtomicI64::new(1),
        next_request_id: AtomicI32::new(1),
        metrics: crate::metrics::RequestMetrics::new(),
        cfg: cfg.clone(),
    });
    let shutdown = CancellationToken::new();
    let background = CancellationToken::new();
    let tracker = TaskTracker::new();
    let draining = Arc::new(AtomicBool::new(false));

    spawn_topology_observer(shared.clone(), background.clone());
    spawn_sweeper(shared.clone(), background.clone());
    {
        let sh = shared.clone();
        let shutdown = background.clone();
        tokio::spawn(async move {
            let (stall, probe) = (sh.cfg.stall_probe(), sh.cfg.probe_timeout());
            sh.pools.watch_stalls(stall, probe, shutdown).await
        });
    }

    let listen_addr = if let Some(path) = cfg.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("binding unix socket {path}"))?;
        let (sh, sd, tr) = (shared.clone(), shutdown.clone(), tracker.clone());
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(sh.cfg.max_client_connections));
            loop {
                let accepted = tokio::select! { _ = sd.cancelled() => break, a = l.accept() => a };
                let Ok((stream, _)) = accepted else { continue };
                admit(&sh, &tr, &permits, stream, "unix".to_string(), &sd);
            }
        });
        cfg.listen.clone()
    } else {
        let l = TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = l.local_addr()?;
        let (sh, sd, tr) = (shared.clone(), shutdown.clone(), tracker.clone());
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(sh.cfg.max_client_connections));
            loop {
                let accepted = tokio::select! { _ = sd.cancelled() => break, a = l.accept() => a };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        admit(&sh, &tr, &permits, stream, peer.to_string(), &sd);
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        addr.to_string()
    };

    let admin_addr = if cfg.admin_listen.is_empty() {
        None
    } else {
        Some(
            crate::admin::serve(
                &cfg.admin_listen,
                shared.clone(),
                draining.clone(),
                background.clone(),
            )
            .await?,
        )
    };
    info!(listen = %listen_addr, admin = ?admin_addr, upstream = %redacted, "holdfast started");
    Ok(Holdfast {
        listen_addr,
        admin_addr,
        upstream: redacted,
        shared,
        embedded,
        shutdown,
        background,
        tracker,
        draining,
    })
}

fn admit<S>(
    sh: &Arc<Shared>,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
    stream: S,
    peer: String,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        metrics::counter!("holdfast_client_connections_rejected_total").increment(1);
        static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
        let mut last = LAST.lock().unwrap();
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            warn!(limit = sh.cfg.max_client_connections, peer = %peer, "max_client_connections reached: refusing new client connections");
        }
        return;
    };
    metrics::counter!("holdfast_client_connections_total").increment(1);
    metrics::gauge!("holdfast_client_connections").increment(1.0);
    let span = tracing::info_span!("client", peer = %peer);
    let sh = sh.clone();
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        client::serve(sh, stream, peer, span, shutdown).await;
        metrics::gauge!("holdfast_client_connections").decrement(1.0);
        drop(permit);
    });
}

/// Watches the topology: metrics for primary changes, advertised limits.
fn spawn_topology_observer(sh: Arc<Shared>, shutdown: CancellationToken) {
    let mut rx = sh.topology.subscribe();
    tokio::spawn(async move {
        let mut last_primary: Option<String> = None;
        let mut lost_at: Option<Instant> = Some(Instant::now());
        loop {
            let snap = rx.borrow_and_update().clone();
            metrics::gauge!("holdfast_primary_known").set(if snap.primary.is_some() {
                1.0
            } else {
                0.0
            });
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
                    sh.pools.get(old).clear();
                }
                last_primary = snap.primary.clone();
            }
            if snap.primary.is_some() {
                sh.identity.advertise(snap.limits);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
        }
    });
}

fn spawn_sweeper(sh: Arc<Shared>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            sh.cursors.sweep();
            sh.txns.sweep();
        }
    });
}
