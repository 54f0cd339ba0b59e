//! Backend connection pools, one per member.
//!
//! - Per identity: every connection logs in upstream as one principal (the
//!   upstream identity, or a client's own user) and serves only requests of
//!   that principal, so no request runs with another client's rights.
//! - Bounded: at most `max_size` connections per member exist at once
//!   (checked out + idle), whatever the number of principals; further
//!   requests wait for one to be returned. A principal that needs a new
//!   connection while the member's connections sit idle for others closes
//!   the oldest of those; idle connections older than `max_idle` are
//!   closed by [`Pools::shrink_idle`].
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

use crate::auth::Principal;
use crate::metrics as m;

mod conn;
pub mod login;
mod watchdog;

pub use conn::BackendConn;
use conn::{Clock, InFlight, RecvError};

/// A member's reply, with the memory budget it holds until the client has
/// read it.
pub struct Reply {
    pub frame: Frame,
    pub charge: crate::budget::Charge,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("len", &self.frame.len())
            .finish()
    }
}
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
    #[error("the reply of {member} ({len} bytes) found no room in holdfast's memory budget")]
    OverBudget { member: String, len: usize },
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
                | BackendError::OverBudget { .. }
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
    /// TLS towards the members (the connection string's options).
    pub tls: Option<holdfast_tls::Connector>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 100,
            max_connecting: 4,
            connect_timeout: Duration::from_secs(2),
            checkout_timeout: Duration::from_secs(30),
            max_idle: Duration::from_secs(300),
            tls: None,
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
    /// Principals whose last login failed: no new login is tried before
    /// the back-off passes (wrong credentials do not get hammered).
    login_failures: Mutex<Vec<LoginFailure>>,
}

/// A failed login of one principal's connections to this member.
struct LoginFailure {
    key: Arc<str>,
    /// The login that failed (a reloaded password is tried at once).
    login: usize,
    user: String,
    reason: String,
    until: Instant,
    step: Duration,
}

/// The first back-off after a failed login; it doubles up to the maximum.
const LOGIN_BACKOFF: Duration = Duration::from_millis(250);
const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Which login a principal has now (its address, to tell a reload apart).
fn login_id(who: &Principal) -> usize {
    who.login.as_ref().map_or(0, |l| Arc::as_ptr(l) as usize)
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
            login_failures: Mutex::new(Vec::new()),
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

    /// Checks out a connection of `who`: an idle one if a healthy one
    /// exists, else a new one (bounded by `max_size` and `max_connecting`).
    /// `now` is a recent instant, against which idle times are measured.
    pub async fn checkout(
        self: &Arc<Self>,
        now: Instant,
        who: &Principal,
    ) -> Result<PooledConn, BackendError> {
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
        if let Some(c) = self.idle_of(who, gen, now) {
            return Ok(self.lend(c, slot, immediate));
        }
        let _connecting = self.connecting.acquire().await.expect("never closed");
        // Another connection may have come back while we waited to connect.
        if let Some(c) = self.idle_of(who, gen, now) {
            return Ok(self.lend(c, slot, false));
        }
        self.make_room();
        let conn = self.connect(gen, who).await?;
        Ok(self.lend(conn, slot, false))
    }

    fn lend(
        self: &Arc<Self>,
        c: BackendConn,
        slot: OwnedSemaphorePermit,
        immediate: bool,
    ) -> PooledConn {
        PooledConn {
            conn: Some(c),
            pool: self.clone(),
            _slot: slot,
            immediate,
        }
    }

    /// The newest healthy idle connection of `who`; unhealthy ones met on
    /// the way are closed.
    fn idle_of(&self, who: &Principal, gen: u64, now: Instant) -> Option<BackendConn> {
        let mut state = self.state.lock().unwrap();
        loop {
            let i = state.idle.iter().rposition(|c| *c.owner == *who.key)?;
            let c = state.idle.remove(i);
            if c.generation == gen
                && c.is_quiet()
                && now.saturating_duration_since(c.idle_since) < self.cfg.max_idle
            {
                return Some(c);
            }
            m::backend_conn_closed(&self.member, "unhealthy");
        }
    }

    /// Before a new connection: closes the oldest idle connections (of
    /// other principals) until it fits in `max_size`.
    fn make_room(&self) {
        let mut state = self.state.lock().unwrap();
        // The caller's slot counts in `checked_out`.
        let allowed = self.cfg.max_size.saturating_sub(self.checked_out());
        while state.idle.len() > allowed {
            state.idle.remove(0);
            m::backend_conn_closed(&self.member, "evicted");
        }
    }

    /// Closes idle connections unused for `max_idle` (a user who left
    /// keeps no connections).
    pub fn shrink_idle(&self, now: Instant) {
        let mut state = self.state.lock().unwrap();
        let before = state.idle.len();
        state
            .idle
            .retain(|c| now.saturating_duration_since(c.idle_since) < self.cfg.max_idle);
        for _ in state.idle.len()..before {
            m::backend_conn_closed(&self.member, "idle");
        }
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

    /// The recent login failure of `who`, while its back-off lasts.
    fn backing_off(&self, who: &Principal) -> Option<BackendError> {
        let failures = self.login_failures.lock().unwrap();
        let f = failures
            .iter()
            .find(|f| f.key == who.key && f.login == login_id(who))?;
        let left = f.until.checked_duration_since(Instant::now())?;
        Some(BackendError::Auth {
            member: self.member.clone(),
            user: f.user.clone(),
            reason: format!(
                "{} (the last login failed; the next try is in {} ms)",
                f.reason,
                left.as_millis()
            ),
        })
    }

    /// Records how `who`'s login went: a failure starts or doubles its
    /// back-off, a success ends it.
    fn login_outcome(&self, who: &Principal, failed: Option<&BackendError>) {
        let mut failures = self.login_failures.lock().unwrap();
        let at = failures.iter().position(|f| f.key == who.key);
        let Some(BackendError::Auth { user, reason, .. }) = failed else {
            if let Some(i) = at {
                failures.remove(i);
            }
            return;
        };
        let step = match at.map(|i| failures.remove(i)) {
            Some(f) if f.login == login_id(who) => (f.step * 2).min(LOGIN_BACKOFF_MAX),
            _ => LOGIN_BACKOFF,
        };
        failures.push(LoginFailure {
            key: who.key.clone(),
            login: login_id(who),
            user: user.clone(),
            reason: reason.clone(),
            until: Instant::now() + step,
            step,
        });
    }

    async fn connect(&self, generation: u64, who: &Principal) -> Result<BackendConn, BackendError> {
        if let Some(e) = self.backing_off(who) {
            return Err(e);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = BackendConn::connect(
            &self.member,
            self.cfg.connect_timeout,
            generation,
            id,
            self.cfg.tls.as_ref(),
            who.login.as_deref(),
            who.key.clone(),
        )
        .await;
        if who.login.is_some() {
            self.login_outcome(who, conn.as_ref().err());
        }
        let conn = conn.inspect_err(|e| self.connect_failed(e))?;
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

    /// One request to `member` as `who`: `Ok(None)` once an
    /// unacknowledged request is written, else its reply, charged to
    /// `budget`. `started` is a recent instant (when the request arrived,
    /// to spare a clock read). A connection goes back to the pool only
    /// after a complete round trip.
    pub async fn round_trip(
        &self,
        member: &str,
        who: &Principal,
        frame: &Frame,
        unacknowledged: bool,
        started: Instant,
        budget: &crate::budget::Budget,
    ) -> Result<Option<Reply>, BackendError> {
        let mut conn = self.get(member).checkout(started, who).await?;
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
        match conn.recv_charged(budget).await {
            Ok((frame, charge)) => {
                conn.end();
                conn.check_in(started);
                Ok(Some(Reply { frame, charge }))
            }
            Err(RecvError::Io(e)) => Err(failed(&conn, e)),
            // The reply stays unread in the socket: the connection is
            // dropped, not reused.
            Err(RecvError::OverBudget(len)) => Err(BackendError::OverBudget {
                member: member.to_string(),
                len,
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Closes every member's idle connections unused for `max_idle`.
    pub fn shrink_idle(&self) {
        let now = Instant::now();
        for p in self.all() {
            p.shrink_idle(now);
        }
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

    fn budget() -> Arc<crate::budget::Budget> {
        crate::budget::Budget::new(1 << 30)
    }

    fn svc() -> Arc<Principal> {
        Principal::service(None)
    }

    fn user(name: &str) -> Arc<Principal> {
        Arc::new(Principal {
            key: Arc::from(name),
            login: None,
        })
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
                .round_trip(
                    &addr,
                    &svc(),
                    &request("ping"),
                    false,
                    Instant::now(),
                    &budget(),
                )
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
        let a = pool.checkout(Instant::now(), &svc()).await.unwrap();
        let b = pool.checkout(Instant::now(), &svc()).await.unwrap();
        assert_eq!(pool.checked_out(), 2);
        match pool.checkout(Instant::now(), &svc()).await {
            Err(e @ BackendError::PoolTimeout { .. }) => assert!(!e.maybe_sent()),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a third connection in a pool of two"),
        }
        a.check_in(Instant::now());
        let c = pool.checkout(Instant::now(), &svc()).await.unwrap();
        assert!(!c.immediate || pool.idle_count() == 0);
        drop((b, c));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_serves_only_the_principal_it_logged_in_as() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        let (a, b) = (user("admin.a"), user("admin.b"));
        for who in [&a, &b, &a, &b] {
            p.round_trip(
                &addr,
                who,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap();
        }
        // One connection each, reused only by its own principal.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let pool = p.get(&addr);
        let c = pool.checkout(Instant::now(), &a).await.unwrap();
        assert_eq!(&*c.owner, "admin.a");
        drop(c);
        let c = pool.checkout(Instant::now(), &b).await.unwrap();
        assert_eq!(&*c.owner, "admin.b");
    }

    #[tokio::test]
    async fn many_principals_stay_within_the_members_bound() {
        let (addr, accepted) = server().await;
        let p = pools(3);
        let pool = p.get(&addr);
        for i in 0..10 {
            let who = user(&format!("admin.u{i}"));
            p.round_trip(
                &addr,
                &who,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap();
            assert!(pool.idle_count() + pool.checked_out() <= 3);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
        assert_eq!(pool.idle_count(), 3, "the newest three stay idle");
        // Held connections are never evicted: with two out, a third
        // principal gets the one remaining place.
        let x = pool
            .checkout(Instant::now(), &user("admin.u9"))
            .await
            .unwrap();
        let y = pool
            .checkout(Instant::now(), &user("admin.u8"))
            .await
            .unwrap();
        let z = pool
            .checkout(Instant::now(), &user("admin.new"))
            .await
            .unwrap();
        assert_eq!(pool.idle_count(), 0);
        drop((x, y, z));
    }

    #[tokio::test]
    async fn a_failed_login_is_not_retried_before_its_back_off() {
        // The tiny server answers saslStart with {ok: 1}: no SCRAM, so the
        // login fails on holdfast's side.
        let (addr, accepted) = server().await;
        let p = pools(4);
        let who = Arc::new(Principal {
            key: Arc::from("admin.svc"),
            login: Some(Arc::new(Login::password("svc", "admin", "pw", None))),
        });
        let e = p
            .round_trip(
                &addr,
                &who,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Auth { .. }), "{e}");
        assert!(!e.maybe_sent());
        let e = p
            .round_trip(
                &addr,
                &who,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("the next try is in"), "{e}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "no second login within the back-off"
        );
        tokio::time::sleep(LOGIN_BACKOFF + Duration::from_millis(50)).await;
        let _ = p
            .round_trip(
                &addr,
                &who,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "tried again after it");
        // A reloaded login (another password) is tried at once.
        let reloaded = Arc::new(Principal {
            key: Arc::from("admin.svc"),
            login: Some(Arc::new(Login::password("svc", "admin", "new", None))),
        });
        let _ = p
            .round_trip(
                &addr,
                &reloaded,
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await;
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_member_that_never_completes_the_handshake_costs_at_most_connect_timeout() {
        // Accepts TCP, then says nothing (or resets at once).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let reset = Arc::new(AtomicBool::new(false));
        let r = reset.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                if r.load(Ordering::SeqCst) {
                    // SO_LINGER 0: the close is a reset.
                    let _ = s.set_zero_linger();
                    drop(s);
                } else {
                    held.push(s);
                }
            }
        });
        let p = Pools::new(PoolConfig {
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        });
        let t0 = Instant::now();
        let e = p
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(e, BackendError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("handshake timed out"), "{e}");
        assert!(!e.maybe_sent());
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(900),
            "{took:?}"
        );
        reset.store(true, Ordering::SeqCst);
        let e = p
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("handshake failed"), "{e}");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_max_idle() {
        let (addr, _) = server().await;
        let p = Pools::new(PoolConfig {
            max_idle: Duration::from_millis(50),
            ..Default::default()
        });
        p.round_trip(
            &addr,
            &svc(),
            &request("ping"),
            false,
            Instant::now(),
            &budget(),
        )
        .await
        .unwrap();
        assert_eq!(p.get(&addr).idle_count(), 1);
        p.shrink_idle();
        assert_eq!(p.get(&addr).idle_count(), 1, "not idle long enough yet");
        tokio::time::sleep(Duration::from_millis(80)).await;
        p.shrink_idle();
        assert_eq!(p.get(&addr).idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_dropped_mid_request_is_not_reused() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        let pool = p.get(&addr);
        {
            let mut c = pool.checkout(Instant::now(), &svc()).await.unwrap();
            c.send(&request("silence")).await.unwrap();
            // Dropped without a reply read: closed, never back in the pool.
        }
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.checked_out(), 0);
        p.round_trip(
            &addr,
            &svc(),
            &request("ping"),
            false,
            Instant::now(),
            &budget(),
        )
        .await
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn clearing_closes_idle_and_returning_connections() {
        let (addr, accepted) = server().await;
        let p = pools(4);
        let pool = p.get(&addr);
        p.round_trip(
            &addr,
            &svc(),
            &request("ping"),
            false,
            Instant::now(),
            &budget(),
        )
        .await
        .unwrap();
        let out = pool.checkout(Instant::now(), &svc()).await.unwrap();
        let gen = out.generation();
        pool.clear();
        assert_eq!(pool.idle_count(), 0);
        out.check_in(Instant::now());
        assert_eq!(pool.idle_count(), 0, "an older generation is not kept");
        let fresh = pool.checkout(Instant::now(), &svc()).await.unwrap();
        assert!(fresh.generation() > gen);
        drop(fresh);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unacknowledged_requests_do_not_wait_for_a_reply() {
        let (addr, _) = server().await;
        let p = pools(1);
        let r = p
            .round_trip(
                &addr,
                &svc(),
                &request("silence"),
                true,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap();
        assert!(r.is_none());
        // The connection is clean and serves the next request.
        let r = p
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.frame.response_to(), 1);
    }

    #[tokio::test]
    async fn a_reply_that_does_not_fit_in_the_budget_is_refused_and_its_connection_dropped() {
        let (addr, accepted) = server().await;
        let p = pools(2);
        let small = crate::budget::Budget::new(20);
        let e = p
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &small,
            )
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, BackendError::OverBudget { len, .. } if len > 20),
            "{e}"
        );
        assert_eq!(
            p.get(&addr).idle_count(),
            0,
            "the unread reply's connection is not reused"
        );
        // With room, and while the reply is held, the budget counts it.
        let roomy = crate::budget::Budget::new(1000);
        let r = p
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &roomy,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(roomy.used(), r.frame.len());
        drop(r);
        assert_eq!(roomy.used(), 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_member_is_not_sent() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = pools(1)
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
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
            .round_trip(
                &addr,
                &svc(),
                &request("ping"),
                false,
                Instant::now(),
                &budget(),
            )
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
            p.round_trip(
                &addr,
                &svc(),
                &request("silence"),
                false,
                Instant::now(),
                &budget(),
            ),
        )
        .await;
        assert!(slow.is_err(), "a member that answers probes is not cut");
        stop.cancel();
    }
}
