//! Member processes: starting one around a listener, kill and revive
//! (rollback or initial sync), blackhole, latency, shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::DateTime;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::SetInner;
use crate::member::{Process, TopologyVersion};
use crate::oplog::{pack_ts, OpTime};

impl SetInner {
    /// Starts member `i`'s process around a bound listener.
    pub fn start_process(self: &Arc<Self>, i: usize, listener: TcpListener) {
        let m = &self.members[i];
        let token = self.cancel.child_token();
        let tracker = TaskTracker::new();
        let graceful = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = tokio::spawn(crate::server::accept_loop(
            self.clone(),
            i,
            listener,
            token.clone(),
            tracker.clone(),
            graceful.clone(),
        ));
        *m.started.lock() = Instant::now();
        *m.process.lock() = Some(Process {
            token,
            tracker,
            graceful,
            listener: Some(handle),
        });
    }

    /// Kills member `i` (`graceful`: connections get FIN instead of RST).
    /// Its data survives (as on disk); cursors, sessions' open transactions
    /// and connections do not.
    pub async fn kill(&self, i: usize, graceful: bool) {
        let m = &self.members[i];
        let _life = m.lifecycle.lock().await;
        if !m.is_alive() {
            return;
        }
        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            let now = Instant::now();
            if repl.primary == Some(i) {
                self.demote_locked(&mut data, &mut repl, i);
                repl.election_due = Some(now + self.election_delay());
            }
            let mr = &mut repl.members[i];
            mr.alive = false;
            mr.stepping_down = false;
            mr.frozen_until = None;
            mr.no_elect_until = None;
            data.txns.clear();
            data.writable = false;
            m.writable.store(false, Ordering::Release);
            m.alive.store(false, Ordering::Release);
            if repl.primary.is_some()
                && repl.live() < self.cfg.majority()
                && repl.election_due.is_none()
            {
                repl.election_due = Some(now + self.election_delay());
            }
            repl.generation += 1;
        }
        info!(member = i, graceful, "member killed");
        m.role_changed();
        let process = m.process.lock().take();
        if let Some(mut p) = process {
            p.graceful.store(graceful, Ordering::Release);
            p.token.cancel();
            p.tracker.close();
            if let Some(h) = p.listener.take() {
                let _ = h.await;
            }
            p.tracker.wait().await;
        }
        m.cursors.lock().clear();
        m.logical_sessions.lock().clear();
        self.after_role_change();
    }

    /// Brings member `i` back as a secondary that catches up. A member that
    /// holds entries the set no longer has rolls back; one whose missing
    /// entries were compacted away (or that diverged) copies the most
    /// up-to-date live member first (initial sync).
    pub async fn revive(self: &Arc<Self>, i: usize) -> std::io::Result<()> {
        let m = &self.members[i];
        let _life = m.lifecycle.lock().await;
        if m.is_alive() {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("the set is shut down"));
        }
        let listener = bind_retry(m.addr).await?;
        let rolled_back = {
            let mut data = m.data.lock();
            let (diverged, behind, source) = {
                let repl = self.repl.lock();
                let (applied, last) = (repl.members[i].applied, repl.members[i].last);
                let diverged = applied > repl.end()
                    || (applied > repl.base()
                        && repl.entry(applied).map(|e| e.optime) != Some(last));
                // Entries it needs were compacted away (or cannot be checked).
                let behind = repl.base() > 0 && applied <= repl.base();
                let source = (0..repl.members.len())
                    .filter(|j| *j != i && repl.members[*j].alive)
                    .max_by_key(|j| repl.members[*j].applied);
                (diverged, behind, source)
            };
            if diverged || behind {
                match source {
                    // Initial sync: copy the most up-to-date live member.
                    Some(src) => {
                        let src_data = self.members[src].data.lock();
                        let mut repl = self.repl.lock();
                        data.store = src_data.store.clone();
                        data.sessions = src_data.sessions.clone();
                        data.txns.clear();
                        let from = repl.members[src].clone();
                        let mr = &mut repl.members[i];
                        mr.applied = from.applied;
                        mr.last = from.last;
                        mr.last_wall = from.last_wall;
                        m.applied.store(from.applied, Ordering::Release);
                        m.last_applied_ts
                            .store(pack_ts(from.last.ts), Ordering::Release);
                    }
                    None => {
                        let mut repl = self.repl.lock();
                        data.reset();
                        let mr = &mut repl.members[i];
                        mr.applied = 0;
                        mr.last = OpTime::NULL;
                        mr.last_wall = DateTime::from_millis(0);
                        m.applied.store(0, Ordering::Release);
                        m.last_applied_ts.store(0, Ordering::Release);
                    }
                }
            }
            let mut repl = self.repl.lock();
            repl.members[i].alive = true;
            data.writable = false;
            m.alive.store(true, Ordering::Release);
            if repl.primary.is_none() && repl.election_due.is_none() {
                repl.election_due = Some(Instant::now() + self.election_delay());
            }
            repl.generation += 1;
            diverged
        };
        if rolled_back {
            warn!(
                member = i,
                "member rolls back entries the set does not have"
            );
        }
        info!(member = i, "member revived");
        m.topology.send_replace(TopologyVersion::fresh());
        self.start_process(i, listener);
        self.after_role_change();
        Ok(())
    }

    pub fn set_blackhole(&self, i: usize, on: bool) {
        self.members[i].blackholed.store(on, Ordering::Release);
        self.publish();
    }

    pub fn set_latency(&self, i: usize, latency: Duration) {
        self.members[i]
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Release);
        self.publish();
    }

    /// The `lag` fault on member `i` (zero removes it).
    pub fn set_lag(&self, i: usize, lag: Duration) {
        let m = &self.members[i];
        m.extra_lag_us
            .store(lag.as_micros() as u64, Ordering::Relaxed);
        m.lag_changed.notify_one();
        self.publish();
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// Binds `addr`, retrying for a while if the port is still held.
pub async fn bind_retry(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
