//! One backend connection: connect, handshake, send a frame, read a frame,
//! and what the stall watchdog needs to cut it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::doc;
use bytes::BytesMut;
use holdfast_scram::Mechanism;
use holdfast_wire::{Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::login::{self, Conversation, Login, Step};
use super::BackendError;

/// What the stall watchdog knows of one backend connection.
pub(super) struct InFlight {
    /// When the outstanding request was sent, as [`Clock::ms`]; 0 = none.
    pub since_ms: AtomicU64,
    /// Set by the watchdog before it shuts the socket down.
    pub stalled: AtomicBool,
    /// A second descriptor of the socket, to shut it down from the watchdog
    /// while a request task is reading it.
    socket: std::net::TcpStream,
}

impl InFlight {
    /// Marks the request stalled and shuts the socket down: the task
    /// reading it gets an error at once.
    pub fn cut(&self) {
        self.stalled.store(true, Ordering::Release);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Milliseconds since the pools were made (≥ 1), to store instants in atomics.
#[derive(Clone, Copy)]
pub(super) struct Clock(pub Instant);

impl Clock {
    pub fn ms(self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_millis() as u64 + 1
    }
}

/// One backend connection.
pub struct BackendConn {
    stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
    pub(super) generation: u64,
    pub(super) idle_since: Instant,
    pub id: u64,
    pub(super) inflight: Arc<InFlight>,
}

impl BackendConn {
    /// Connects to `member` and runs holdfast's handshake, within `timeout`.
    pub(super) async fn connect(
        member: &str,
        timeout: Duration,
        generation: u64,
        id: u64,
        login: Option<&Login>,
    ) -> Result<BackendConn, BackendError> {
        let err = |reason: String| BackendError::Connect {
            member: member.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(member))
            .await
            .map_err(|_| err(format!("connect timed out after {timeout:?}")))?
            .map_err(|e| err(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        // A duplicate descriptor for the watchdog (same socket).
        let std_stream = stream.into_std().map_err(|e| err(e.to_string()))?;
        let socket = std_stream.try_clone().map_err(|e| err(e.to_string()))?;
        let stream = TcpStream::from_std(std_stream).map_err(|e| err(e.to_string()))?;
        let mut conn = BackendConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            codec: FrameCodec::default(),
            generation,
            idle_since: Instant::now(),
            id,
            inflight: Arc::new(InFlight {
                since_ms: AtomicU64::new(0),
                stalled: AtomicBool::new(false),
                socket,
            }),
        };
        let hello = tokio::time::timeout(timeout, conn.handshake(login))
            .await
            .map_err(|_| err("handshake timed out".into()))?
            .map_err(|e| err(format!("handshake failed: {e}")))?;
        if let Some(login) = login {
            let offered = login::body(&hello).map(|h| login::offered(&h));
            let mechanism = login.mechanism_for(&offered.unwrap_or_default());
            let auth_err = |reason: String| BackendError::Auth {
                member: member.to_string(),
                user: login.principal(),
                reason,
            };
            tokio::time::timeout(timeout, conn.authenticate(login, mechanism))
                .await
                .map_err(|_| auth_err(format!("{} timed out", mechanism.name())))?
                .map_err(auth_err)?;
        }
        Ok(conn)
    }

    /// Each backend connection introduces itself with its own hello
    /// (asking which mechanisms the upstream user has, when it logs in).
    async fn handshake(&mut self, login: Option<&Login>) -> std::io::Result<Frame> {
        let mut hello = doc! {
            "hello": 1,
            "client": {
                "driver": {"name": "holdfast", "version": env!("CARGO_PKG_VERSION")},
                "os": {"type": std::env::consts::OS},
                "application": {"name": "holdfast"},
            },
            "$db": "admin",
        };
        if let Some(l) = login {
            hello.insert("saslSupportedMechs", l.principal());
        }
        self.send(&login::request(&hello)).await?;
        self.recv().await
    }

    /// The SCRAM conversation of `login` (at most four round trips).
    async fn authenticate(&mut self, login: &Login, mechanism: Mechanism) -> Result<(), String> {
        let mut c = Conversation::new(login, mechanism);
        let mut next = c.start();
        for _ in 0..4 {
            self.send(&login::request(&next))
                .await
                .map_err(|e| e.to_string())?;
            let reply = self.recv().await.map_err(|e| e.to_string())?;
            let body = login::body(&reply).ok_or("the reply is not an OP_MSG document")?;
            match c.on_reply(&body)? {
                Step::Done => return Ok(()),
                Step::Send(d) => next = d,
            }
        }
        Err("the conversation did not end".into())
    }

    /// The reply arrived: nothing outstanding.
    pub fn end(&self) {
        self.inflight.since_ms.store(0, Ordering::Release);
    }

    /// The watchdog shut this connection down: its member did not answer a
    /// probe while a request waited.
    pub fn stalled(&self) -> bool {
        self.inflight.stalled.load(Ordering::Acquire)
    }

    /// Nothing left over from the last round trip.
    pub(super) fn is_clean(&self) -> bool {
        self.buf.is_empty() && !self.stalled()
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
    pub(super) fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
