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
//! - A stall watchdog ([`Pools::watch_stalls`]): when requests on a member
//!   have waited `stall` for their reply, it sends the member one hello; if
//!   that gets no answer in time, it shuts those connections down, and the
//!   requests waiting on them fail at once with [`BackendError::Timeout`]
//!   (a blackholed member never closes them itself). One probe per member,
//!   however many requests are stalled, and no timer per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bson::doc;
use bytes::BytesMut;
use holdfast_wire::{reply, Frame, FrameCodec, MsgFlags};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics as m;

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
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 100,
            max_connecting: 4,
            connect_timeout: Duration::from_secs(2),
            checkout_timeout: Duration::from_secs(30),
            max_idle: Duration::from_secs(300),
        }
    }
}

/// What the stall watchdog knows of one backend connection.
struct InFlight {
    /// When the outstanding request was sent, as [`Clock::ms`]; 0 = none.
    since_ms: AtomicU64,
    /// Set by the watchdog before it shuts the socket down.
    stalled: AtomicBool,
    /// A second descriptor of the socket, to shut it down from the watchdog
    /// while a request task is reading it.
    socket: std::net::TcpStream,
}

/// Milliseconds since the pools were made (≥ 1), to store instants in atomics.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn ms(self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_millis() as u64 + 1
    }
}

/// One backend connection.
pub struct BackendConn {
    stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
    generation: u64,
    idle_since: Instant,
    pub id: u64,
    inflight: Arc<InFlight>,
}

impl BackendConn {
    /// The reply arrived: nothing outstanding.
    pub fn end(&self) {
        self.inflight.since_ms.store(0, Ordering::Release);
    }

    /// The watchdog shut this connection down: its member did not answer a
    /// probe while a request waited.
    pub fn stalled(&self) -> bool {
        self.inflight.stalled.load(Ordering::Acquire)
    }

    /// Writes a whole frame.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.stream.write_all(frame.raw()).await
    }

    /// Reads one whole frame. Cancel-safe with respect to the stream only in
    /// that a cancelled read leaves the connection unusable: callers drop it.
    pub async fn recv(&mut self) -> Result<Frame, std::io::Error> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
        }
    }

    /// Idle and healthy: nothing to read and not closed.
    fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
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
            if c.generation == self.pool.generation.load(Ordering::Acquire)
                && c.buf.is_empty()
                && !c.stalled()
            {
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

    /// Connections that exist now (idle + checked out).
    pub fn open_count(&self) -> usize {
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

    async fn connect(&self, generation: u64) -> Result<BackendConn, BackendError> {
        let err = |reason: String| BackendError::Connect {
            member: self.member.clone(),
            reason,
        };
        let stream =
            tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(&self.member))
                .await
                .map_err(|_| {
                    err(format!(
                        "connect timed out after {:?}",
                        self.cfg.connect_timeout
                    ))
                })?
                .map_err(|e| err(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        // A duplicate descriptor for the watchdog (same socket).
        let std_stream = stream.into_std().map_err(|e| err(e.to_string()))?;
        let socket = std_stream.try_clone().map_err(|e| err(e.to_string()))?;
        let stream = TcpStream::from_std(std_stream).map_err(|e| err(e.to_string()))?;
        let inflight = Arc::new(InFlight {
            since_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            socket,
        });
        {
            let mut all = self.inflight.lock().unwrap();
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&inflight));
        }
        let mut conn = BackendConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            codec: FrameCodec::default(),
            generation,
            idle_since: Instant::now(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inflight,
        };
        // Each backend connection does its own handshake.
        let hello = doc! {
            "hello": 1,
            "client": {
                "driver": {"name": "holdfast", "version": env!("CARGO_PKG_VERSION")},
                "os": {"type": std::env::consts::OS},
                "application": {"name": "holdfast"},
            },
            "$db": "admin",
        };
        let frame = reply::msg_reply_bytes(0, 0, MsgFlags::empty(), reply::document_bytes(&hello));
        let hs = async {
            conn.send(&frame).await?;
            conn.recv().await
        };
        tokio::time::timeout(self.cfg.connect_timeout, hs)
            .await
            .map_err(|_| err("handshake timed out".into()))?
            .map_err(|e| err(format!("handshake failed: {e}")))?;
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
        pools.push(p.clone());
        p
    }

    /// The stall watchdog (see the module doc), until `shutdown`: every
    /// `stall / 4` (10–500 ms) it looks for requests without a reply for
    /// `stall`; per member with any, one hello with `probe_timeout`. No
    /// answer: those connections are shut down. An answer: the member is
    /// not probed again for `stall` (slow commands are not a failure).
    pub async fn watch_stalls(
        &self,
        stall: Duration,
        probe_timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let tick = (stall / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
        let stall_ms = stall.as_millis() as u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let now_ms = self.clock.ms(Instant::now());
            for pool in self.all() {
                let stalled: Vec<(Arc<InFlight>, u64)> = pool
                    .inflight
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter_map(|f| {
                        let since = f.since_ms.load(Ordering::Acquire);
                        (since != 0 && now_ms.saturating_sub(since) >= stall_ms)
                            .then_some((f, since))
                    })
                    .collect();
                if stalled.is_empty()
                    || now_ms < pool.next_probe_ms.load(Ordering::Acquire)
                    || pool.probing.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
                tokio::spawn(async move {
                    let answered = holdfast_topology::hello(&pool.member, probe_timeout)
                        .await
                        .is_ok();
                    if answered {
                        let at = pool.clock.ms(Instant::now()) + stall_ms;
                        pool.next_probe_ms.store(at, Ordering::Release);
                    } else {
                        let mut cut = 0;
                        for (f, since) in &stalled {
                            // Only if that same request is still waiting.
                            if f.since_ms.load(Ordering::Acquire) == *since {
                                f.stalled.store(true, Ordering::Release);
                                let _ = f.socket.shutdown(std::net::Shutdown::Both);
                                cut += 1;
                            }
                        }
                        warn!(member = %pool.member, requests = cut, "member does not answer a hello probe while requests wait for it; treating it as gone");
                    }
                    pool.probing.store(false, Ordering::Release);
                });
            }
        }
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().unwrap().clone()
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }
}
