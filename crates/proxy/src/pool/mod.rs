//! Backend connection pools, one per member.
//!
//! - Bounded: at most `max_size` connections per member exist at once
//!   (checked out + idle); further requests wait for one to be returned.
//! - A cap on concurrent connects per member.
//! - A generation counter: bumped when the member stops being primary or a
//!   network error is seen; connections of an older generation are closed
//!   at check-in instead of being reused.
//! - An idle connection that became readable or closed (the server said
//!   something unprompted, or hung up) is dropped at checkout.
//! - A connection goes back to the pool only after a complete round trip
//!   (the guard is dropped without being returned otherwise): a client that
//!   disconnects mid-request never leaves a half-read connection behind.
//! - A stall watchdog ([`Pools::watch_stalls`], `watchdog.rs`) cuts the
//!   connections of requests a blackholed member will never answer.
//! - [`Pools::round_trip`] is the only way requests use a connection: it
//!   checks one out, marks the request for the watchdog, sends, reads, and
//!   checks the connection back in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use holdfast_wire::Frame;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use tracing::warn;

use crate::metrics as m;

mod conn;
pub mod login;
mod watchdog;

pub use conn::BackendConn;
use conn::{Clock, InFlight};
pub use login::Login;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("could not connect to {member}: {reason}")]
    Connect { member: String, reason: String },
    #[error("timed out waiting for a connection to {member} from the pool")]
    PoolTimeout { member: String },
    #[error("network error talking to {member}: {reason}")]
    Network { member: String, reason: String },
    #[error("no reply from {member} within {waited:?}")]
    Timeout { member: String, waited: Duration },
    #[error("{member} sent bytes that are not a MongoDB reply: {reason}")]
    Protocol { member: String, reason: String },
    #[error("could not log in to {member} as {user}: {reason}")]
    Auth {
        member: String,
        user: String,
        reason: String,
    },
}

impl BackendError {
    /// True when the request may have reached the server.
    pub fn maybe_sent(&self) -> bool {
        matches!(
            self,
            BackendError::Network { .. }
                | BackendError::Timeout { .. }
                | BackendError::Protocol { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: usize,
    pub max_connecting: usize,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
    /// Idle connections older than this are closed.
    pub max_idle: Duration,
    /// Who every backend connection logs in as (the connection string's
    /// user); `None`: connections do not authenticate.
    pub login: Option<Arc<Login>>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 100,
            max_connecting: 4,
            connect_timeout: Duration::from_secs(2),
            checkout_timeout: Duration::from_secs(30),
            max_idle: Duration::from_secs(300),
            login: None,
        }
    }
}

struct PoolState {
    idle: Vec<BackendConn>,
}

/// The pool of one member.
pub struct Pool {
    member: String,
    cfg: PoolConfig,
    state: Mutex<PoolState>,
    /// One permit per connection that may exist.
    slots: Arc<Semaphore>,
    connecting: Semaphore,
    generation: AtomicU64,
    next_id: AtomicU64,
    clock: Clock,
    /// Every connection of this pool, for the watchdog.
    inflight: Mutex<Vec<Weak<InFlight>>>,
    /// A probe of this member is under way.
    probing: AtomicBool,
    /// No probe before this ([`Clock::ms`]): set after an answered one.
    next_probe_ms: AtomicU64,
    /// When a failed connect was last logged ([`Clock::ms`]; 0: never).
    last_connect_warning_ms: AtomicU64,
}

/// A checked-out connection. Return it with [`PooledConn::check_in`] after a
/// complete round trip; dropping it closes the connection.
pub struct PooledConn {
    conn: Option<BackendConn>,
    pool: Arc<Pool>,
    _slot: OwnedSemaphorePermit,
    /// Checked out at once (a free slot and a healthy idle connection): the
    /// caller's `now` is still now.
    pub immediate: bool,
}

impl std::ops::Deref for PooledConn {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        self.conn
            .as_ref()
            .expect("connection present until check-in")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn
            .as_mut()
            .expect("connection present until check-in")
    }
}

impl PooledConn {
    /// Marks a request as sent at `at` (the watchdog measures from there).
    pub fn begin(&self, at: Instant) {
        self.inflight
            .since_ms
            .store(self.pool.clock.ms(at), Ordering::Release);
    }

    /// Returns a clean connection (no request outstanding) to the pool;
    /// `now` is a recent instant (the caller's, to spare a clock read).
    pub fn check_in(mut self, now: Instant) {
        if let Some(mut c) = self.conn.take() {
            if c.generation == self.pool.generation.load(Ordering::Acquire) && c.is_clean() {
                c.idle_since = now;
                self.pool.state.lock().unwrap().idle.push(c);
                return;
            }
            m::backend_conn_closed(&self.pool.member, "stale");
        }
    }

    pub fn generation(&self) -> u64 {
        self.conn.as_ref().map(|c| c.generation).unwrap_or(0)
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            m::backend_conn_closed(&self.pool.member, "dropped");
        }
    }
}

impl Pool {
    /// A member's pool; `clock` is the one of all pools (the watchdog's).
    fn new(member: String, cfg: PoolConfig, clock: Clock) -> Arc<Pool> {
        Arc::new(Pool {
            slots: Arc::new(Semaphore::new(cfg.max_size)),
            connecting: Semaphore::new(cfg.max_connecting.max(1)),
            member,
            cfg,
            state: Mutex::new(PoolState { idle: Vec::new() }),
            generation: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            clock,
            inflight: Mutex::new(Vec::new()),
            probing: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(0),
            last_connect_warning_ms: AtomicU64::new(0),
        })
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// Bumps the generation: idle connections are closed now, checked-out
    /// ones when they come back.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let drained: Vec<BackendConn> = std::mem::take(&mut self.state.lock().unwrap().idle);
        for _ in &drained {
            m::backend_conn_closed(&self.member, "cleared");
        }
    }

    pub fn idle_count(&self) -> usize {
        self.state.lock().unwrap().idle.len()
    }

    /// Connections checked out now (each holds one of `max_size` slots).
    pub fn checked_out(&self) -> usize {
        self.cfg.max_size - self.slots.available_permits()
    }

    /// Checks out a connection: an idle one if a healthy one exists, else a
    /// new one (bounded by `max_size` and `max_connecting`). `now` is a
    /// recent instant, against which idle times are measured.
    pub async fn checkout(self: &Arc<Self>, now: Instant) -> Result<PooledConn, BackendError> {
        // A free slot is the common case: no timer for it.
        let mut immediate = true;
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                immediate = false;
                tokio::time::timeout(
                    self.cfg.checkout_timeout,
                    self.slots.clone().acquire_owned(),
                )
                .await
                .map_err(|_| BackendError::PoolTimeout {
                    member: self.member.clone(),
                })?
                .expect("pool semaphore is never closed")
            }
        };
        let gen = self.generation.load(Ordering::Acquire);
        loop {
            let c = self.state.lock().unwrap().idle.pop();
            let Some(c) = c else { break };
            if c.generation == gen
                && c.is_quiet()
                && now.saturating_duration_since(c.idle_since) < self.cfg.max_idle
            {
                return Ok(PooledConn {
                    conn: Some(c),
                    pool: self.clone(),
                    _slot: slot,
                    immediate,
                });
            }
            m::backend_conn_closed(&self.member, "unhealthy");
        }
        let _connecting = self.connecting.acquire().await.expect("never closed");
        // Another connection may have come back while we waited to connect.
        if let Some(c) = self.state.lock().unwrap().idle.pop() {
            if c.generation == gen && c.is_quiet() {
                return Ok(PooledConn {
                    conn: Some(c),
                    pool: self.clone(),
                    _slot: slot,
                    immediate: false,
                });
            }
        }
        let conn = self.connect(gen).await?;
        Ok(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _slot: slot,
            immediate: false,
        })
    }

    /// A failed connect or handshake: a metric, and a log line at most
    /// every 10 s per member.
    fn connect_failed(&self, e: &BackendError) {
        m::backend_connect_failed(&self.member);
        let now = self.clock.ms(Instant::now());
        let last = self.last_connect_warning_ms.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= 10_000 {
            self.last_connect_warning_ms.store(now, Ordering::Relaxed);
            warn!(member = %self.member, error = %e, "backend connection failed");
        }
    }

    async fn connect(&self, generation: u64) -> Result<BackendConn, BackendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = BackendConn::connect(
            &self.member,
            self.cfg.connect_timeout,
            generation,
            id,
            self.cfg.login.as_deref(),
        )
        .await
        .inspect_err(|e| self.connect_failed(e))?;
        let mut all = self.inflight.lock().unwrap();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&conn.inflight));
        m::backend_conn_opened(&self.member);
        Ok(conn)
    }
}

/// All pools, one per member address. A replica set has a handful of
/// members, so a list searched by address beats hashing it per request.
pub struct Pools {
    cfg: PoolConfig,
    pools: Mutex<Vec<Arc<Pool>>>,
    clock: Clock,
}

impl Pools {
    pub fn new(cfg: PoolConfig) -> Pools {
        Pools {
            cfg,
            pools: Mutex::new(Vec::new()),
            clock: Clock(Instant::now()),
        }
    }

    pub fn get(&self, member: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap();
        if let Some(p) = pools.iter().find(|p| p.member == member) {
            return p.clone();
        }
        let p = Pool::new(member.to_string(), self.cfg.clone(), self.clock);
        m::register_member(member);
        pools.push(p.clone());
        p
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().unwrap().clone()
    }

    /// One request to `member`: `Ok(None)` once an unacknowledged request
    /// is written, else its reply. `started` is a recent instant (when the
    /// request arrived, to spare a clock read). A connection goes back to
    /// the pool only after a complete round trip.
    pub async fn round_trip(
        &self,
        member: &str,
        frame: &Frame,
        unacknowledged: bool,
        started: Instant,
    ) -> Result<Option<Frame>, BackendError> {
        let mut conn = self.get(member).checkout(started).await?;
        // Waiting for the pool is not waiting for the member.
        let started = if conn.immediate {
            started
        } else {
            Instant::now()
        };
        // From here the stall watchdog watches this request.
        conn.begin(started);
        let failed = |conn: &PooledConn, e: std::io::Error| {
            if conn.stalled() {
                // The watchdog cut it: the member did not answer a probe.
                BackendError::Timeout {
                    member: member.to_string(),
                    waited: started.elapsed(),
                }
            } else {
                BackendError::Network {
                    member: member.to_string(),
                    reason: e.to_string(),
                }
            }
        };
        if let Err(e) = conn.send(frame).await {
            return Err(failed(&conn, e));
        }
        if unacknowledged {
            conn.end();
            conn.check_in(started);
            return Ok(None);
        }
        match conn.recv().await {
            Ok(reply) => {
                conn.end();
                conn.check_in(started);
                Ok(Some(reply))
            }
            Err(e) => Err(failed(&conn, e)),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use futures::StreamExt;
    use holdfast_wire::{reply, FrameCodec, MsgFlags};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio_util::codec::FramedRead;

    /// A tiny server that answers every frame with `{ok: 1, n: <count>}`,
    /// or with nothing for frames containing "silence", and counts the
    /// connections it accepted.
    async fn server() -> (String, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut frames = FramedRead::new(s, FrameCodec::default());
                    let mut n = 0;
                    while let Some(Ok(f)) = frames.next().await {
                        n += 1;
                        if f.raw().windows(7).any(|w| w == b"silence") {
                            continue;
                        }
                        let r = reply::msg_reply(9, f.request_id(), &doc! {"ok": 1.0, "n": n});
                        if frames.get_mut().write_all(r.raw()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn request(cmd: &str) -> Frame {
        let b = reply::document_bytes(&doc! {cmd: 1, "$db": "admin"});
        reply::msg_reply_bytes(1, 0, MsgFlags::empty(), b)
    }

    fn pools(max_size: usize) -> Pools {
        Pools::new(PoolConfig {
            max_size,
            checkout_timeout: Duration::from_millis(300),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn connections_are_reused_after_a_round_trip() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        for _ in 0..5 {
            let r = p
                .round_trip(&addr, &request("ping"), false, Instant::now())
                .await;
            assert!(r.unwrap().is_some());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(p.get(&addr).idle_count(), 1);
        assert_eq!(p.get(&addr).checked_out(), 0);
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_waiters_time_out() {
        let (addr, accepted) = server().await;
        let p = pools(2);
        let pool = p.get(&addr);
        let a = pool.checkout(Instant::now()).await.unwrap();
        let b = pool.checkout(Instant::now()).await.unwrap();
        assert_eq!(pool.checked_out(), 2);
        match pool.checkout(Instant::now()).await {
            Err(e @ BackendError::PoolTimeout { .. }) => assert!(!e.maybe_sent()),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a third connection in a pool of two"),
        }
        a.check_in(Instant::now());
        let c = pool.checkout(Instant::now()).await.unwrap();
        assert!(!c.immediate || pool.idle_count() == 0);
        drop((b, c));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_dropped_mid_request_is_not_reused() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        let pool = p.get(&addr);
        {
            let mut c = pool.checkout(Instant::now()).await.unwrap();
            c.send(&request("silence")).await.unwrap();
            // Dropped without a reply read: closed, never back in the pool.
        }
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.checked_out(), 0);
        p.round_trip(&addr, &request("ping"), false, Instant::now())
            .await
            .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn clearing_closes_idle_and_returning_connections() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        let pool = p.get(&addr);
        p.round_trip(&addr, &request("ping"), false, Instant::now())
            .await
            .unwrap();
        let out = pool.checkout(Instant::now()).await.unwrap();
        let gen = out.generation();
        pool.clear();
        assert_eq!(pool.idle_count(), 0);
        out.check_in(Instant::now());
        assert_eq!(pool.idle_count(), 0, "an older generation is not kept");
        let fresh = pool.checkout(Instant::now()).await.unwrap();
        assert!(fresh.generation() > gen);
        drop(fresh);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unacknowledged_requests_do_not_wait_for_a_reply() {
        let (addr, _) = server().await;
        let p = pools(1);
        let r = p
            .round_trip(&addr, &request("silence"), true, Instant::now())
            .await
            .unwrap();
        assert!(r.is_none());
        // The connection is clean and serves the next request.
        let r = p
            .round_trip(&addr, &request("ping"), false, Instant::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.response_to(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_member_is_not_sent() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = pools(1)
            .round_trip(&addr, &request("ping"), false, Instant::now())
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Connect { .. }), "{e}");
        assert!(!e.maybe_sent());
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_a_network_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            // Answers the handshake, then closes on the first request.
            while let Ok((s, _)) = l.accept().await {
                let mut frames = FramedRead::new(s, FrameCodec::default());
                if let Some(Ok(f)) = frames.next().await {
                    let r = reply::msg_reply(9, f.request_id(), &doc! {"ok": 1.0});
                    let _ = frames.get_mut().write_all(r.raw()).await;
                }
                let _ = frames.next().await;
            }
        });
        let e = pools(1)
            .round_trip(&addr, &request("ping"), false, Instant::now())
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Network { .. }), "{e}");
        assert!(e.maybe_sent());
    }

    #[tokio::test]
    async fn the_watchdog_leaves_a_member_that_answers_probes_alone() {
        let (addr, _) = server().await;
        let p = Arc::new(pools(2));
        let stop = tokio_util::sync::CancellationToken::new();
        let w = p.clone();
        let s = stop.clone();
        tokio::spawn(async move {
            w.watch_stalls(Duration::from_millis(100), Duration::from_millis(100), s)
                .await
        });
        // The server answers probes (a plain hello), so a silent request on
        // it is only slow: it keeps waiting.
        let slow = tokio::time::timeout(
            Duration::from_millis(600),
            p.round_trip(&addr, &request("silence"), false, Instant::now()),
        )
        .await;
        assert!(slow.is_err(), "a member that answers probes is not cut");
        stop.cancel();
    }
}
