//! Reading a client's frames with the protections a proxy open to any
//! client needs:
//!
//! - a first-message timeout (`client_first_message_timeout_ms`): a new
//!   connection must send its first whole message in time;
//! - a frame timeout (`client_frame_timeout_ms`): a frame that has started
//!   must complete in time (slowloris);
//! - an optional idle timeout (`client_idle_timeout_ms`, off by default:
//!   drivers keep idle pools);
//! - the memory budget ([`Budget`], `max_buffered_bytes`): a frame's
//!   announced length is charged before its bytes are read; over the
//!   budget, reading pauses (up to [`BUDGET_WAIT`]) and the request is then
//!   refused.
//!
//! No timer exists while a connection waits idle after its first message
//! (unless the idle timeout is on); one exists only while a frame is
//! partly received. Reads are cancel-safe: bytes stay in this reader's
//! buffer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use holdfast_wire::{Frame, FrameCodec, Limits, WireError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

pub use crate::budget::{Budget, Charge, BUDGET_WAIT};

/// Initial read buffer of a client connection, bytes.
const CLIENT_READ_BUFFER: usize = 512;

/// The client-side timeouts (`None`: off).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_message: Option<Duration>,
    pub frame: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection (between frames).
    Closed,
    Io(std::io::Error),
    /// Bytes that are not a frame (bad length, …).
    Framing(WireError),
    /// A timeout passed: `first_message_timeout`, `frame_timeout` or
    /// `idle_timeout`.
    Timeout(&'static str),
    /// A frame of `len` bytes found no room in the memory budget; its
    /// requestID if it had arrived.
    OverBudget {
        len: usize,
        request_id: Option<i32>,
    },
}

impl ReadError {
    /// A bounded reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::Closed => "client_closed",
            ReadError::Io(_) => "io_error",
            ReadError::Framing(_) => "framing",
            ReadError::Timeout(r) => r,
            ReadError::OverBudget { .. } => "memory_budget",
        }
    }
}

pub struct Reader<S> {
    stream: S,
    buf: BytesMut,
    codec: FrameCodec,
    timeouts: Timeouts,
    budget: Arc<Budget>,
    started: Instant,
    first: bool,
    /// When the frame now partly in the buffer began to arrive.
    partial_since: Option<Instant>,
    last_frame: Instant,
    /// The charge of the frame being received.
    charge: Option<Charge>,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    pub fn new(stream: S, limits: Limits, timeouts: Timeouts, budget: Arc<Budget>) -> Self {
        let now = Instant::now();
        Reader {
            stream,
            buf: BytesMut::with_capacity(CLIENT_READ_BUFFER),
            codec: FrameCodec::new(limits),
            timeouts,
            budget,
            started: now,
            first: true,
            partial_since: None,
            last_frame: now,
            charge: None,
        }
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Bytes received and not yet taken as a frame (a pipelined next
    /// request, or part of one).
    pub fn read_buffer(&self) -> &BytesMut {
        &self.buf
    }

    /// The next whole frame, with the budget it holds until dropped.
    pub async fn next(&mut self) -> Result<(Frame, Charge), ReadError> {
        loop {
            if !self.buf.is_empty() && self.partial_since.is_none() {
                self.partial_since = Some(Instant::now());
            }
            self.charge_announced().await?;
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    self.first = false;
                    self.partial_since = None;
                    self.last_frame = Instant::now();
                    let charge = self.charge.take().unwrap_or(Charge::none());
                    return Ok((frame, charge));
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Framing(e)),
            }
            self.read_more().await?;
        }
    }

    /// Once a frame's length is known, its bytes are charged to the budget
    /// before they are read.
    async fn charge_announced(&mut self) -> Result<(), ReadError> {
        if self.charge.is_some() || self.buf.len() < 4 {
            return Ok(());
        }
        let declared = i32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let Ok(len) = usize::try_from(declared) else {
            return Ok(()); // the codec refuses it
        };
        if len < 16 || len > self.codec.limits().max_message_size {
            return Ok(());
        }
        match self.budget.charge(len, BUDGET_WAIT).await {
            Some(c) => {
                self.charge = Some(c);
                Ok(())
            }
            None => Err(ReadError::OverBudget {
                len,
                request_id: (self.buf.len() >= 8).then(|| {
                    i32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
                }),
            }),
        }
    }

    /// The deadline of the next read, and the timeout it stands for.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let t = self.timeouts;
        if self.first {
            return t
                .first_message
                .map(|d| (self.started + d, "first_message_timeout"));
        }
        if let Some(since) = self.partial_since {
            return t.frame.map(|d| (since + d, "frame_timeout"));
        }
        t.idle.map(|d| (self.last_frame + d, "idle_timeout"))
    }

    async fn read_more(&mut self) -> Result<(), ReadError> {
        if self.buf.capacity() - self.buf.len() < 64 {
            self.buf.reserve(CLIENT_READ_BUFFER);
        }
        let n = match self.deadline() {
            None => self.stream.read_buf(&mut self.buf).await,
            Some((at, why)) => {
                match tokio::time::timeout_at(at.into(), self.stream.read_buf(&mut self.buf)).await
                {
                    Ok(r) => r,
                    Err(_) => return Err(ReadError::Timeout(why)),
                }
            }
        }
        .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(if self.buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a frame",
                ))
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use holdfast_wire::{reply, MsgFlags};
    use tokio::io::AsyncWriteExt;

    fn frame_bytes() -> Vec<u8> {
        let b = reply::document_bytes(&doc! {"ping": 1, "$db": "admin"});
        reply::msg_reply_bytes(9, 0, MsgFlags::empty(), b)
            .raw()
            .to_vec()
    }

    fn timeouts(first: u64, frame: u64, idle: Option<u64>) -> Timeouts {
        Timeouts {
            first_message: Some(Duration::from_millis(first)),
            frame: Some(Duration::from_millis(frame)),
            idle: idle.map(Duration::from_millis),
        }
    }

    fn reader(
        t: Timeouts,
        budget: usize,
    ) -> (tokio::io::DuplexStream, Reader<tokio::io::DuplexStream>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        (
            client,
            Reader::new(server, Limits::default(), t, Budget::new(budget)),
        )
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_hold_their_budget() {
        let (mut c, mut r) = reader(timeouts(1000, 1000, None), 1 << 20);
        let b = frame_bytes();
        let mut two = b.clone();
        two.extend_from_slice(&b);
        c.write_all(&two).await.unwrap();
        let (f1, charge) = r.next().await.unwrap();
        assert_eq!(f1.request_id(), 9);
        assert_eq!(r.budget.used(), b.len());
        drop(charge);
        assert_eq!(r.budget.used(), 0);
        assert_eq!(
            r.read_buffer().len(),
            b.len(),
            "the pipelined frame waits in the buffer"
        );
        let (f2, _c) = r.next().await.unwrap();
        assert_eq!(f2.len(), b.len());
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_at_the_first_message_timeout() {
        let (_c, mut r) = reader(timeouts(50, 1000, None), 1 << 20);
        let t0 = Instant::now();
        let e = r.next().await.err().unwrap();
        assert_eq!(e.reason(), "first_message_timeout");
        assert!(t0.elapsed() >= Duration::from_millis(45));
    }

    #[tokio::test]
    async fn half_a_frame_is_closed_at_the_frame_timeout() {
        let (mut c, mut r) = reader(timeouts(10_000, 80, None), 1 << 20);
        let b = frame_bytes();
        c.write_all(&b).await.unwrap();
        r.next().await.unwrap();
        c.write_all(&b[..b.len() / 2]).await.unwrap();
        let t0 = Instant::now();
        let e = r.next().await.err().unwrap();
        assert_eq!(e.reason(), "frame_timeout");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn idle_connections_stay_unless_the_idle_timeout_is_on() {
        let (mut c, mut r) = reader(timeouts(10_000, 1000, None), 1 << 20);
        c.write_all(&frame_bytes()).await.unwrap();
        r.next().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(150), r.next()).await;
        assert!(waited.is_err(), "no idle timeout by default");
        let (mut c, mut r) = reader(timeouts(10_000, 1000, Some(60)), 1 << 20);
        c.write_all(&frame_bytes()).await.unwrap();
        r.next().await.unwrap();
        assert_eq!(r.next().await.err().unwrap().reason(), "idle_timeout");
    }

    #[tokio::test]
    async fn a_frame_over_the_budget_is_refused_after_a_pause() {
        let b = frame_bytes();
        let (mut c, mut r) = reader(timeouts(10_000, 10_000, None), b.len() + 10);
        let mut two = b.clone();
        two.extend_from_slice(&b);
        c.write_all(&two).await.unwrap();
        let (_first, held) = r.next().await.unwrap();
        // The second frame needs room the first still holds.
        let t0 = Instant::now();
        match r.next().await {
            Err(ReadError::OverBudget { len, request_id }) => {
                assert_eq!((len, request_id), (b.len(), Some(9)));
                assert!(t0.elapsed() >= BUDGET_WAIT - Duration::from_millis(50));
            }
            other => panic!("{:?}", other.map(|(f, _)| f.len())),
        }
        drop(held);
    }

    #[tokio::test]
    async fn budget_freed_in_time_lets_the_frame_in() {
        let budget = Budget::new(100);
        let a = budget.charge(80, Duration::ZERO).await.unwrap();
        assert!(budget.charge(30, Duration::ZERO).await.is_none());
        let b2 = budget.clone();
        let waiter =
            tokio::spawn(async move { b2.charge(30, Duration::from_secs(2)).await.is_some() });
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(a);
        assert!(waiter.await.unwrap());
        assert!(
            budget.charge(101, Duration::from_secs(1)).await.is_none(),
            "larger than the budget"
        );
    }

    #[tokio::test]
    async fn a_close_between_frames_and_inside_one_differ() {
        let (c, mut r) = reader(timeouts(1000, 1000, None), 1 << 20);
        drop(c);
        assert!(matches!(r.next().await, Err(ReadError::Closed)));
        let (mut c, mut r) = reader(timeouts(1000, 1000, None), 1 << 20);
        c.write_all(&frame_bytes()[..10]).await.unwrap();
        drop(c);
        assert!(matches!(r.next().await, Err(ReadError::Io(_))));
    }
}
