//! One task per client connection: read frames, answer the handshake,
//! hand every other request to the request path ([`Forwarder`]) and write
//! its reply.

use std::sync::Arc;

use holdfast_wire::{CommandClass, CommandView, ErrorReply, Frame, Limits, Message, OpCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::legacy::writes::LastError;
use crate::metrics as m;
use crate::replies;
use crate::request::Forwarder;

mod identity;
mod legacy;
pub mod reader;

pub use reader::{Budget, Timeouts};
use reader::{ReadError, Reader};

/// What a client connection needs: the request path, the limits frames
/// are read with, the timeouts and the memory budget.
pub struct ClientContext {
    pub forwarder: Arc<Forwarder>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub budget: Arc<Budget>,
    /// The users file's users (replaced on reload).
    pub users: std::sync::RwLock<Arc<crate::auth::Users>>,
    pub principals: Arc<crate::auth::Principals>,
    /// With a users file: unauthenticated clients run as the upstream
    /// identity instead of being refused.
    pub allow_unauthenticated: bool,
}

impl ClientContext {
    /// The users as the file was last read.
    pub fn users(&self) -> Arc<crate::auth::Users> {
        self.users.read().unwrap().clone()
    }
}

/// What to do after handling one frame.
enum Action {
    Reply(Frame),
    Nothing,
    Close,
}

impl From<Option<Frame>> for Action {
    fn from(f: Option<Frame>) -> Action {
        f.map_or(Action::Nothing, Action::Reply)
    }
}

struct ClientConn {
    ctx: Arc<ClientContext>,
    conn_id: i64,
    peer: String,
    span: tracing::Span,
    hellos: u64,
    /// What the last legacy write did (read by `getLastError`).
    last_error: LastError,
    /// The write concern of a `getLastError` received right behind the
    /// legacy write being handled.
    pipelined_gle: Option<bson::Document>,
    auth: crate::auth::sasl::ClientAuth,
    /// The memory budget the reply being answered holds (a member's reply
    /// stays charged until the client has read it).
    reply_charge: Option<crate::budget::Charge>,
}

/// Serves one client until it disconnects, sends bytes that cannot be
/// framed, breaks a timeout or the memory budget, or `shutdown` fires. On
/// shutdown the request being handled (or held) finishes first; no new
/// request is read. The read side is cancel-safe: a partly received frame
/// stays in the reader's buffer.
///
/// Log lines name `span` (which carries the peer) as their parent
/// explicitly: entering the span on every poll of the task would cost more
/// than the rest of a small request's bookkeeping.
pub async fn serve<S>(
    ctx: Arc<ClientContext>,
    conn_id: i64,
    stream: S,
    peer: String,
    tls_subject: Option<String>,
    span: tracing::Span,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Requests are handled one at a time, so replies are written through
    // the same stream (no split halves and their lock).
    let mut reader = Reader::new(stream, ctx.limits, ctx.timeouts, ctx.budget.clone());
    let mut client = ClientConn {
        ctx: ctx.clone(),
        conn_id,
        peer,
        span,
        hellos: 0,
        last_error: LastError::default(),
        pipelined_gle: None,
        auth: crate::auth::sasl::ClientAuth::default(),
        reply_charge: None,
    };
    client.auth.peer_subject = tls_subject;
    // Registered with the token once per connection, not once per request.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let reason = loop {
        // Shutdown first: once draining, no new request is read, even from
        // a client whose next request is already waiting.
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => break "shutdown",
            next = reader.next() => next,
        };
        let (frame, charge) = match next {
            Ok(f) => f,
            Err(e) => break client.read_failed(&mut reader, e).await,
        };
        let metrics = ctx.forwarder.metrics();
        metrics.bytes_received.increment(frame.len() as u64);
        if matches!(
            frame.op_code(),
            OpCode::Insert | OpCode::Update | OpCode::Delete
        ) {
            client.pipelined_gle =
                legacy::pipelined_get_last_error(reader.read_buffer(), &ctx.limits);
        }
        // Boxed: a request's state (parsed message, command view, the
        // round trip) lives on the heap only while the request is in
        // flight; an idle connection's task keeps just its reader.
        let action = Box::pin(client.handle(frame)).await;
        drop(charge);
        match action {
            Action::Reply(r) => {
                metrics.bytes_sent.increment(r.len() as u64);
                let written = client.write(&mut reader, &r).await;
                client.reply_charge = None;
                if let Err(why) = written {
                    break why;
                }
            }
            Action::Nothing => client.reply_charge = None,
            Action::Close => break "protocol_error",
        }
    };
    let _ = reader.get_mut().shutdown().await;
    m::client_closed(reason);
    debug!(parent: &client.span, peer = %client.peer, reason, "client connection closed");
}

impl ClientConn {
    /// Writes a reply (a member's reply is charged to the memory budget
    /// until written: [`ClientConn::reply_charge`]); a client that does not
    /// read it within the frame timeout is closed.
    async fn write<S>(&self, reader: &mut Reader<S>, r: &Frame) -> Result<(), &'static str>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // Flushed: under TLS a record may wait in the session otherwise
        // (for plain TCP a flush costs nothing).
        let stream = reader.get_mut();
        let write = async {
            stream.write_all(r.raw()).await?;
            stream.flush().await
        };
        let written = match self.ctx.timeouts.frame {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .map_err(|_| "write_timeout")?,
            None => write.await,
        };
        written.map_err(|_| "io_error")
    }

    /// Logs why reading stopped; a frame refused for the memory budget gets
    /// an error reply first. Returns the reason.
    async fn read_failed<S>(&self, reader: &mut Reader<S>, e: ReadError) -> &'static str
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let reason = e.reason();
        match &e {
            ReadError::Closed | ReadError::Io(_) => {}
            ReadError::Framing(err) => {
                m::protocol_error("framing");
                warn!(parent: &self.span, peer = %self.peer, error = %err, "closing client connection: unreadable frame");
            }
            ReadError::Timeout(_) => {
                warn!(parent: &self.span, peer = %self.peer, reason, "closing client connection: timeout");
            }
            ReadError::OverBudget { len, request_id } => {
                m::budget_refusal("request");
                let budget = self.ctx.budget.max();
                let msg = format!("holdfast: this request of {len} bytes does not fit in holdfast's memory budget (max_buffered_bytes={budget}, {} in use); it was not read; retry later", self.ctx.budget.used());
                warn!(parent: &self.span, peer = %self.peer, len, budget, "closing client connection: over the memory budget");
                if let Some(id) = request_id {
                    let err = ErrorReply::of(holdfast_wire::codes::EXCEEDED_MEMORY_LIMIT, msg);
                    let d = err.to_document();
                    let r = holdfast_wire::reply::msg_reply(
                        self.ctx.forwarder.replies().request_id(),
                        *id,
                        &d,
                    );
                    let stream = reader.get_mut();
                    let _ = tokio::time::timeout(reader::BUDGET_WAIT, async {
                        stream.write_all(r.raw()).await?;
                        stream.flush().await
                    })
                    .await;
                }
            }
        }
        reason
    }

    fn error(&self, request: &Frame, err: &ErrorReply) -> Action {
        Action::Reply(self.ctx.forwarder.replies().error(request, err))
    }

    async fn handle(&mut self, frame: Frame) -> Action {
        let msg = match frame.parse(&self.ctx.limits) {
            Ok(msg) => msg,
            Err(e) if e.is_connection_fatal() => {
                m::protocol_error("fatal");
                warn!(parent: &self.span, peer = %self.peer, error = %e, "closing client connection");
                return Action::Close;
            }
            Err(e) => {
                m::protocol_error("malformed");
                let (code, name) = e.server_code();
                return self.error(&frame, &ErrorReply::new(code, name, e.to_string()));
            }
        };
        match msg {
            Message::Msg(m) => match CommandView::from_msg(&m) {
                Ok(view) => self.dispatch(&frame, &view).await,
                Err(e) => {
                    m::protocol_error("bad_command");
                    let (code, name) = e.server_code();
                    self.error(&frame, &ErrorReply::new(code, name, e.to_string()))
                }
            },
            Message::Query(q) => self.op_query(&frame, &q).await,
            Message::Compressed(c) => {
                // holdfast does not advertise compression, but accepts it.
                // The declared size is checked against the message limit,
                // and charged to the memory budget, before inflating.
                let max = self.ctx.limits.max_message_size;
                let size = usize::try_from(c.uncompressed_size).unwrap_or(usize::MAX);
                let Some(_inflated) = self.ctx.budget.charge(size, reader::BUDGET_WAIT).await
                else {
                    m::budget_refusal("compressed");
                    let budget = &self.ctx.budget;
                    let msg = format!("holdfast: this compressed request inflates to {size} bytes, which do not fit in holdfast's memory budget (max_buffered_bytes={}, {} in use); it was not run; retry later", budget.max(), budget.used());
                    warn!(parent: &self.span, peer = %self.peer, size, "refused a compressed request: no room in the memory budget");
                    let err = ErrorReply::of(holdfast_wire::codes::EXCEEDED_MEMORY_LIMIT, msg);
                    return self.error(&frame, &err);
                };
                match c.decompress(frame.header(), max) {
                    Ok(inner) if inner.op_code() != OpCode::Compressed => {
                        Box::pin(self.handle(inner)).await
                    }
                    _ => {
                        m::protocol_error("compression");
                        Action::Close
                    }
                }
            }
            Message::Legacy { op_code, body } => self.legacy_op(&frame, op_code, &body).await,
            Message::Reply(_) => {
                m::protocol_error("unexpected_reply");
                Action::Close
            }
        }
    }

    async fn dispatch(&mut self, frame: &Frame, view: &CommandView<'_>) -> Action {
        let class = view.classify();
        if class == CommandClass::Handshake {
            return self.hello(frame, view).await;
        }
        self.execute(frame, view, class).await.into()
    }

    /// hello/isMaster/ismaster, answered by holdfast itself.
    async fn hello(&mut self, frame: &Frame, view: &CommandView<'_>) -> Action {
        match self.hello_body(view).await {
            Some(d) => Action::Reply(self.ctx.forwarder.replies().document(frame, &d)),
            None => self.error(frame, &replies::client_metadata_mutated()),
        }
    }

    /// The hello reply, or `None` for a second hello with client metadata.
    async fn hello_body(&mut self, view: &CommandView<'_>) -> Option<bson::Document> {
        self.hellos += 1;
        if self.hellos > 1 && view.body.get("client").ok().flatten().is_some() {
            return None;
        }
        let ctx = self.ctx.clone();
        let identity = ctx.forwarder.replies().identity();
        identity.await_change(view).await;
        let mut d = crate::handshake::hello_reply(view, identity, self.conn_id);
        self.hello_auth(view, &mut d);
        Some(d)
    }
}
