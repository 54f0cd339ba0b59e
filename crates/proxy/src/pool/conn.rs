//! One backend connection: connect, handshake, send a frame, read a frame,
//! and what the stall watchdog needs to cut it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use bytes::BytesMut;
use holdfast_tls::{Connector, Stream};
use holdfast_wire::{Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::login::{self, Conversation, Login, Step};
use super::BackendError;
use crate::budget::{Budget, Charge, BUDGET_WAIT};
use crate::metrics as m;

/// Why a reply could not be read.
pub enum RecvError {
    Io(std::io::Error),
    /// A reply of this many bytes found no room in the memory budget.
    OverBudget(usize),
}

/// The login a hello started (SCRAM: its conversation; X.509: none).
struct Speculative {
    conversation: Option<Conversation>,
}

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
    /// The principal this connection logged in as (its key).
    pub(super) owner: Arc<str>,
    stream: Stream,
    buf: BytesMut,
    codec: FrameCodec,
    pub(super) generation: u64,
    pub(super) idle_since: Instant,
    pub id: u64,
    pub(super) inflight: Arc<InFlight>,
}

impl BackendConn {
    /// Connects to `member` (TLS with `tls`), runs holdfast's handshake and
    /// logs in as `login`; the whole bounded by `timeout`.
    pub(super) async fn connect(
        member: &str,
        timeout: Duration,
        generation: u64,
        id: u64,
        tls: Option<&Connector>,
        login: Option<&Login>,
        owner: Arc<str>,
    ) -> Result<BackendConn, BackendError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let err = |reason: String| BackendError::Connect {
            member: member.to_string(),
            reason,
        };
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(member))
            .await
            .map_err(|_| err(format!("connect timed out after {timeout:?}")))?
            .map_err(|e| err(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        // A duplicate descriptor for the watchdog and the idle check (the
        // same socket, under TLS too).
        let std_stream = tcp.into_std().map_err(|e| err(e.to_string()))?;
        let socket = std_stream.try_clone().map_err(|e| err(e.to_string()))?;
        let tcp = TcpStream::from_std(std_stream).map_err(|e| err(e.to_string()))?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(c) => {
                let s = tokio::time::timeout_at(deadline, c.handshake(member, tcp))
                    .await
                    .map_err(|_| err("TLS handshake timed out".into()))?
                    .map_err(|e| {
                        m::tls_handshake_failed("upstream");
                        err(format!("TLS handshake failed: {e}"))
                    })?;
                Stream::Tls(Box::new(s))
            }
        };
        let mut conn = BackendConn {
            owner,
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
        let (hello, speculative) = tokio::time::timeout_at(deadline, conn.handshake(login))
            .await
            .map_err(|_| err("handshake timed out".into()))?
            .map_err(|e| err(format!("handshake failed: {e}")))?;
        if let Some(login) = login {
            let auth_err = |reason: String| BackendError::Auth {
                member: member.to_string(),
                user: login.principal(),
                reason,
            };
            let mechanism = login.mechanism_name(login.mechanism_for(&login::offered(&hello)));
            let logged_in =
                tokio::time::timeout_at(deadline, conn.authenticate(login, &hello, speculative))
                    .await
                    .map_err(|_| "the login timed out".to_string())
                    .and_then(|r| r);
            match logged_in {
                Ok(()) => m::backend_login(mechanism, "ok"),
                Err(e) => {
                    m::backend_login(mechanism, "failed");
                    return Err(auth_err(e));
                }
            }
        }
        Ok(conn)
    }

    /// Each backend connection introduces itself with its own hello; one
    /// that logs in asks for the user's mechanisms and starts the login in
    /// it (speculative authentication). Returns hello's reply and the
    /// conversation it started.
    async fn handshake(
        &mut self,
        login: Option<&Login>,
    ) -> std::io::Result<(Document, Option<Speculative>)> {
        let mut hello = doc! {
            "hello": 1,
            "client": {
                "driver": {"name": "holdfast", "version": env!("CARGO_PKG_VERSION")},
                "os": {"type": std::env::consts::OS},
                "application": {"name": "holdfast"},
            },
            "$db": "admin",
        };
        let mut speculative = None;
        if let Some(l) = login {
            if l.negotiates() {
                hello.insert("saslSupportedMechs", l.principal());
            }
            let (first, conversation) = l.speculative();
            hello.insert("speculativeAuthenticate", first);
            speculative = Some(Speculative { conversation });
        }
        self.send(&login::request(&hello)).await?;
        let reply = self.recv().await?;
        let body = login::body(&reply)
            .ok_or_else(|| std::io::Error::other("hello's reply is not an OP_MSG document"))?;
        Ok((body, speculative))
    }

    /// Logs in as `login`: from hello's `speculativeAuthenticate` answer
    /// when the member took the first step, else from the start with the
    /// mechanism the member offers (at most four round trips).
    async fn authenticate(
        &mut self,
        login: &Login,
        hello: &Document,
        speculative: Option<Speculative>,
    ) -> Result<(), String> {
        let answer = hello.get_document("speculativeAuthenticate").ok();
        let mechanism = login.mechanism_for(&login::offered(hello));
        let (mut c, mut next) = match (mechanism, answer, speculative) {
            // X.509: an answer means logged in.
            (None, Some(_), _) => return Ok(()),
            (None, None, _) => {
                let reply = self.command(&login.x509_command(true)).await?;
                return match login::error_of(&reply) {
                    None => Ok(()),
                    Some(e) => Err(e),
                };
            }
            (
                Some(_),
                Some(a),
                Some(Speculative {
                    conversation: Some(mut c),
                }),
            ) => match c.on_reply(a)? {
                Step::Done => {
                    c.remember(login);
                    return Ok(());
                }
                Step::Send(d) => (c, d),
            },
            (Some(m), _, _) => {
                let mut c = Conversation::new(login, m);
                let first = c.start();
                (c, first)
            }
        };
        for _ in 0..4 {
            let reply = self.command(&next).await?;
            match c.on_reply(&reply)? {
                Step::Done => {
                    c.remember(login);
                    return Ok(());
                }
                Step::Send(d) => next = d,
            }
        }
        Err("the conversation did not end".into())
    }

    /// One command and its reply document.
    async fn command(&mut self, cmd: &Document) -> Result<Document, String> {
        self.send(&login::request(cmd))
            .await
            .map_err(|e| e.to_string())?;
        let reply = self.recv().await.map_err(|e| e.to_string())?;
        login::body(&reply).ok_or_else(|| "the reply is not an OP_MSG document".to_string())
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

    /// Writes a whole frame (flushed: under TLS a record may otherwise
    /// wait in the session).
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.stream.write_all(frame.raw()).await?;
        self.stream.flush().await
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
            self.fill().await?;
        }
    }

    /// Reads one whole reply, its announced length charged to `budget`
    /// before its bytes are read (waiting up to [`BUDGET_WAIT`] for room).
    pub async fn recv_charged(&mut self, budget: &Budget) -> Result<(Frame, Charge), RecvError> {
        let mut charge = None;
        loop {
            if charge.is_none() && self.buf.len() >= 4 {
                let declared =
                    i32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let len = usize::try_from(declared).unwrap_or(0);
                charge = Some(
                    budget
                        .charge(len, BUDGET_WAIT)
                        .await
                        .ok_or(RecvError::OverBudget(len))?,
                );
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok((f, charge.unwrap_or_else(Charge::none))),
                Ok(None) => {}
                Err(e) => {
                    return Err(RecvError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )))
                }
            }
            self.fill().await.map_err(RecvError::Io)?;
        }
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    async fn fill(&mut self) -> std::io::Result<()> {
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
        Ok(())
    }

    /// Idle and healthy: nothing to read and not closed. Peeks at the
    /// socket underneath (a TLS record is never consumed here).
    pub(super) fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.inflight.socket.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
