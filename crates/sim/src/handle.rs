//! The public handle of a running set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::SimConfig;
use crate::set::{bind_retry, SetInner};
use crate::state::SimState;

/// Stops the set when the last [`ReplicaSet`] handle is dropped.
struct Guard {
    inner: Arc<SetInner>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

/// A running simulated replica set. Cheap to clone; everything stops when
/// [`ReplicaSet::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct ReplicaSet {
    guard: Arc<Guard>,
}

impl std::fmt::Debug for ReplicaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSet")
            .field("set_name", &self.set_name())
            .field("addrs", &self.addrs())
            .field("primary", &self.primary())
            .finish()
    }
}

impl ReplicaSet {
    /// Binds every member, elects member 0 (term 1) and starts
    /// replication. Must run inside a tokio runtime.
    pub async fn start(cfg: SimConfig) -> std::io::Result<ReplicaSet> {
        cfg.validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = cfg.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let seed = crate::auth::users::seed_ops(&cfg.users)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut listeners = Vec::with_capacity(cfg.members);
        for i in 0..cfg.members {
            let port = if cfg.base_port == 0 {
                0
            } else {
                let p = cfg.base_port as usize + i;
                u16::try_from(p).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range")
                })?
            };
            listeners.push(bind_retry(SocketAddr::new(cfg.host, port)).await?);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        let inner = Arc::new(SetInner::new(cfg, addrs, tls));
        inner.initial_election();
        inner.seed(seed);
        for (i, l) in listeners.into_iter().enumerate() {
            inner.start_process(i, l);
            tokio::spawn(inner.clone().applier(i));
        }
        tokio::spawn(inner.clone().election_loop());
        tokio::spawn(inner.clone().session_refresher());
        if inner.cfg.periodic_noop_ms > 0 {
            let every = Duration::from_millis(inner.cfg.periodic_noop_ms);
            tokio::spawn(inner.clone().noop_writer(every));
        }
        inner.publish();
        Ok(ReplicaSet {
            guard: Arc::new(Guard { inner }),
        })
    }

    fn inner(&self) -> &Arc<SetInner> {
        &self.guard.inner
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner().cfg
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.inner().members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner().members.is_empty()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner().members.iter().map(|m| m.addr).collect()
    }

    pub fn addr(&self, member: usize) -> SocketAddr {
        self.inner().members[member].addr
    }

    /// `mongodb://h0,h1,h2/?replicaSet=<name>` (and `&tls=true` when the
    /// members require TLS; credentials and CA files are the client's).
    pub fn uri(&self) -> String {
        let tls = if self.inner().cfg.tls.is_some() {
            "&tls=true"
        } else {
            ""
        };
        format!(
            "mongodb://{}/?replicaSet={}{tls}",
            self.inner().hosts.join(","),
            self.set_name()
        )
    }

    pub fn set_name(&self) -> &str {
        &self.inner().cfg.set_name
    }

    /// The writable primary now, if any.
    pub fn primary(&self) -> Option<usize> {
        self.inner().repl.lock().writable_primary()
    }

    pub fn state(&self) -> SimState {
        self.inner().snapshot()
    }

    /// Waits until a writable primary exists (or `timeout`).
    pub async fn wait_for_primary(&self, timeout: Duration) -> Option<usize> {
        let mut rx = self.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| s.primary.is_some())).await;
        match r {
            Ok(Ok(s)) => s.primary,
            _ => self.primary(),
        }
    }

    /// State published at every election, stepdown, kill, revive and fault.
    pub fn subscribe(&self) -> watch::Receiver<SimState> {
        self.inner().state_tx.subscribe()
    }

    /// `replSetStepDown` on the current primary. The catch-up period is
    /// `min(10, step_down_secs)` without `force` (so short stepdowns do not
    /// hit mongod's BadValue), 0 with it.
    pub async fn step_down(&self, step_down_secs: u64, force: bool) -> Result<(), String> {
        let primary = self
            .inner()
            .repl
            .lock()
            .writable_primary()
            .ok_or_else(|| "no primary to step down".to_string())?;
        let catch_up = if force { 0 } else { step_down_secs.min(10) };
        self.inner()
            .step_down(primary, step_down_secs, catch_up, force)
            .await
            .map_err(|e| format!("{} ({}): {}", e.code_name, e.code, e.errmsg))
    }

    /// `replSetStepUp` on `member`: it becomes primary after a short election.
    pub async fn step_up(&self, member: usize) -> Result<(), String> {
        self.inner()
            .step_up(member)
            .await
            .map_err(|e| format!("{} ({}): {}", e.code_name, e.code, e.errmsg))
    }

    /// `replSetFreeze` on `member`.
    pub fn freeze(&self, member: usize, secs: u64) -> Result<(), String> {
        self.inner()
            .freeze(member, secs)
            .map(|_| ())
            .map_err(|e| e.errmsg)
    }

    /// Like `kill -9`: listener closed, every connection reset, the member
    /// leaves the set until [`ReplicaSet::revive`]. Its data survives.
    pub async fn kill(&self, member: usize) {
        self.inner().kill(member, false).await;
    }

    /// Like the `shutdown` command, without the stepdown: connections closed
    /// with FIN.
    pub async fn stop(&self, member: usize) {
        self.inner().kill(member, true).await;
    }

    /// Restarts a killed member on the same port: a secondary that catches
    /// up (and rolls back entries the set lost). Errors are logged.
    pub async fn revive(&self, member: usize) {
        if let Err(e) = self.try_revive(member).await {
            tracing::error!(member, error = %e, "revive failed");
        }
    }

    pub async fn try_revive(&self, member: usize) -> std::io::Result<()> {
        self.inner().revive(member).await
    }

    /// The member reads requests and never answers (hello included), nor
    /// closes. It keeps its role in the set (a client-side partition).
    pub fn blackhole(&self, member: usize, on: bool) {
        self.inner().set_blackhole(member, on);
    }

    /// Added before each reply of `member`.
    pub fn set_latency(&self, member: usize, latency: Duration) {
        self.inner().set_latency(member, latency);
    }

    /// The `lag` fault: secondary `member` applies the log `lag` later
    /// than the others (on top of `repl_lag_ms`; zero removes it), so its
    /// data and its hello's `lastWrite` fall behind. A primary keeps the
    /// setting for when it is a secondary again.
    pub fn set_lag(&self, member: usize, lag: Duration) {
        self.inner().set_lag(member, lag);
    }

    /// Open client connections (`serverStatus.connections.current`).
    pub fn connections_current(&self, member: usize) -> usize {
        self.inner().members[member]
            .conns_current
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Documents in `member`'s store.
    pub fn total_documents(&self, member: usize) -> usize {
        self.inner().members[member]
            .data
            .lock()
            .store
            .total_documents()
    }

    /// Log entries kept behind the slowest live member (default
    /// [`crate::set::LOG_RETAIN`]); a member revived further behind copies a
    /// live member (initial sync). For tests of that path.
    #[doc(hidden)]
    pub fn set_log_retain(&self, entries: usize) {
        self.inner().repl.lock().retain = entries.max(1);
    }

    /// Index of the oldest log entry still kept, minus one.
    #[doc(hidden)]
    pub fn log_base(&self) -> usize {
        self.inner().repl.lock().base()
    }

    /// Stops every member and task of the set.
    pub fn shutdown(&self) {
        self.inner().shutdown();
    }
}
