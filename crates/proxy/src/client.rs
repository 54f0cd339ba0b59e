//! One task per client connection: read frames, answer the handshake,
//! forward everything else to the right member, and apply the failover
//! contract (design.md) when the primary goes away mid-request.

use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocument};
use futures::StreamExt;
use holdfast_topology::Topology;
use holdfast_wire::{
    reply, CommandClass, CommandView, ErrorReply, Frame, FrameCodec, Limits, Message, MsgFlags,
    OpCode, ReplySummary,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, WriteRetry};
use crate::gate::{Gate, GateError, Target};
use crate::handshake::Identity;
use crate::metrics as m;
use crate::pool::{BackendError, PooledConn, Pools};
use crate::router::{Cursors, TxnPins};

/// Initial read buffer of a client connection, bytes.
const CLIENT_READ_BUFFER: usize = 512;

/// Everything the client tasks share.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub topology: Topology,
    pub pools: Pools,
    pub cursors: Cursors,
    pub txns: TxnPins,
    pub gate: Arc<Gate>,
    pub identity: Identity,
    pub limits: Limits,
    pub next_conn_id: AtomicI64,
    pub next_request_id: AtomicI32,
    pub metrics: m::RequestMetrics,
}

/// Codes of the not-primary and node-is-recovering families (SDAM).
pub fn is_state_change_code(code: i32) -> bool {
    matches!(
        code,
        10107 | 13435 | 10058 | 11600 | 11602 | 13436 | 189 | 91
    )
}

/// Codes that mean the server refused the command before executing it.
fn is_rejected_before_executing(code: i32) -> bool {
    matches!(code, 10107 | 13435 | 10058)
}

/// A copy of an OP_MSG request with `maxTimeMS` set to `left` (at least 1 ms).
fn with_max_time_ms(frame: &Frame, left: Duration) -> Option<Frame> {
    let Message::Msg(mut m) = frame.parse(&Limits::default()).ok()? else {
        return None;
    };
    let mut body = Document::from_reader(&m.body[..]).ok()?;
    body.insert("maxTimeMS", (left.as_millis() as i64).max(1));
    m.body = reply::document_bytes(&body);
    let checksum = m.checksum.is_some();
    let mut out = Vec::with_capacity(m.encoded_len(checksum));
    m.encode(frame.request_id(), frame.response_to(), checksum, &mut out);
    Frame::from_bytes(bytes::Bytes::from(out), usize::MAX).ok()
}

/// The body of a reply (OP_MSG body, or an OP_REPLY's first document).
fn reply_body(frame: &Frame) -> Option<bytes::Bytes> {
    if let Some(body) = frame.msg_body() {
        return Some(body);
    }
    match frame
        .parse(&Limits {
            verify_checksum: false,
            ..Default::default()
        })
        .ok()?
    {
        Message::Msg(m) => Some(m.body),
        Message::Reply(r) => {
            let len = r.first_doc().ok()?.as_bytes().len();
            Some(r.documents.slice(0..len))
        }
        _ => None,
    }
}

/// How a request ended, for metrics.
enum Outcome {
    Ok,
    ServerError,
    Replayed,
    HoldfastError,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ServerError => "server_error",
            Outcome::Replayed => "replayed",
            Outcome::HoldfastError => "holdfast_error",
        }
    }
}

enum Action {
    Reply(Frame),
    Nothing,
    Close,
}

struct ClientConn {
    shared: Arc<Shared>,
    conn_id: i64,
    peer: String,
    span: tracing::Span,
    hellos: u64,
}

/// Serves one client until it disconnects, sends bytes that cannot be
/// framed, or `shutdown` fires. On shutdown the request being handled (or
/// held) finishes first; no new request is read. The read side is
/// cancel-safe: a partly received frame stays in `FramedRead`'s buffer.
///
/// Log lines name `span` (which carries the peer) as their parent
/// explicitly: entering the span on every poll of the task would cost more
/// than the rest of a small request's bookkeeping.
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: String,
    span: tracing::Span,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    // A small first read buffer: an idle connection costs little, and the
    // decoder reserves exactly what a larger frame needs once its length is
    // known. Requests are handled one at a time, so replies are written
    // through the same stream (no split halves and their lock).
    let mut frames =
        FramedRead::with_capacity(stream, FrameCodec::new(shared.limits), CLIENT_READ_BUFFER);
    let mut client = ClientConn {
        shared,
        conn_id,
        peer,
        span,
        hellos: 0,
    };
    // Registered with the token once per connection, not once per request.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Shutdown first: once draining, no new request is read, even from
        // a client whose next request is already waiting.
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => break,
            next = frames.next() => next,
        };
        let Some(next) = next else { break };
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                m::protocol_error("framing");
                warn!(parent: &client.span, peer = %client.peer, error = %e, "closing client connection: unreadable frame");
                break;
            }
        };
        client
            .shared
            .metrics
            .bytes_received
            .increment(frame.len() as u64);
        // Boxed: a request's state (parsed message, command view, the
        // round trip) lives on the heap only while the request is in
        // flight; an idle connection's task keeps just its reader.
        match Box::pin(client.handle(frame)).await {
            Action::Reply(r) => {
                client.shared.metrics.bytes_sent.increment(r.len() as u64);
                if frames.get_mut().write_all(r.raw()).await.is_err() {
                    break;
                }
            }
            Action::Nothing => {}
            Action::Close => break,
        }
    }
    let _ = frames.get_mut().shutdown().await;
    debug!(parent: &client.span, peer = %client.peer, "client connection closed");
}

impl ClientConn {
    fn request_id(&self) -> i32 {
        self.shared.next_request_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff
    }

    /// An error reply from holdfast itself. It carries holdfast's current
    /// topologyVersion, so drivers treat it as stale for SDAM purposes (they
    /// raise it to the application but do not mark holdfast unknown or
    /// clear their pool).
    fn error(&self, request: &Frame, err: ErrorReply, extra: Option<Document>) -> Frame {
        let mut d = err.to_document();
        d.insert("topologyVersion", self.shared.identity.topology_version());
        if let Some(x) = extra {
            d.insert("holdfast", x);
        }
        self.reply_doc(request, &d)
    }

    fn reply_doc(&self, request: &Frame, d: &Document) -> Frame {
        if request.op_code() == OpCode::Query {
            reply::op_reply(self.request_id(), request.request_id(), d)
        } else {
            reply::msg_reply(self.request_id(), request.request_id(), d)
        }
    }

    async fn handle(&mut self, frame: Frame) -> Action {
        let msg = match frame.parse(&self.shared.limits) {
            Ok(msg) => msg,
            Err(e) => {
                m::protocol_error(if e.is_connection_fatal() {
                    "fatal"
                } else {
                    "malformed"
                });
                if e.is_connection_fatal() {
                    warn!(parent: &self.span, peer = %self.peer, error = %e, "closing client connection");
                    return Action::Close;
                }
                let (code, name) = e.server_code();
                return Action::Reply(self.error(
                    &frame,
                    ErrorReply::new(code, name, e.to_string()),
                    None,
                ));
            }
        };
        match msg {
            Message::Msg(m) => match CommandView::from_msg(&m) {
                Ok(view) => self.dispatch(&frame, &view).await,
                Err(e) => {
                    m::protocol_error("bad_command");
                    let (code, name) = e.server_code();
                    Action::Reply(self.error(&frame, ErrorReply::new(code, name, e.to_string()), None))
                }
            },
            Message::Query(q) => match CommandView::from_query(&q) {
                Ok(view) => self.dispatch(&frame, &view).await,
                Err(_) => Action::Reply(self.error(
                    &frame,
                    ErrorReply::new(
                        5739101,
                        "Location5739101",
                        "OP_QUERY is no longer supported for queries; use OP_MSG (holdfast follows MongoDB 5.1+)",
                    ),
                    None,
                )),
            },
            Message::Compressed(c) => {
                // holdfast does not advertise compression, but accepts it.
                match c.decompress(frame.header(), self.shared.limits.max_message_size) {
                    Ok(inner) if inner.op_code() != OpCode::Compressed => Box::pin(self.handle(inner)).await,
                    _ => {
                        m::protocol_error("compression");
                        Action::Close
                    }
                }
            }
            Message::Legacy { op_code, .. } => {
                m::protocol_error("legacy_opcode");
                warn!(parent: &self.span, peer = %self.peer, opcode = op_code.name(), "closing client connection: legacy opcode (unsupported since MongoDB 5.1)");
                Action::Close
            }
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
        let started = Instant::now();
        let (action, outcome) = self.forward(frame, view, class, started).await;
        self.shared.metrics.request(
            class.label(),
            outcome.label(),
            started.elapsed().as_secs_f64(),
        );
        action
    }

    async fn hello(&mut self, frame: &Frame, view: &CommandView<'_>) -> Action {
        self.hellos += 1;
        if self.hellos > 1 && view.body.get("client").ok().flatten().is_some() {
            return Action::Reply(self.error(
                frame,
                ErrorReply::new(
                    186,
                    "ClientMetadataCannotBeMutated",
                    "The client metadata document may only be sent in the first hello",
                ),
                None,
            ));
        }
        self.shared.identity.await_change(view).await;
        let d = crate::handshake::hello_reply(view, &self.shared.identity, self.conn_id);
        Action::Reply(self.reply_doc(frame, &d))
    }

    /// Picks the member for this request: a cursor's member, a transaction's
    /// member, or the primary (waiting at the gate if none is known).
    async fn target(
        &self,
        view: &CommandView<'_>,
        class: CommandClass,
        bytes: usize,
        deadline: Instant,
        max_time: Option<Instant>,
    ) -> Result<(Target, Duration, bool), GateError> {
        let pinned = match class {
            CommandClass::CursorContinuation => view
                .cursor_id
                .or_else(|| view.kill_cursor_ids().first().copied())
                .and_then(|id| self.shared.cursors.get(id)),
            // Statements stay on the transaction's member (elsewhere it does
            // not exist). commit/abort go to the current primary: in a
            // replica set that is the same member unless a failover
            // happened, and then a driver's commit retry must reach the new
            // primary, which knows the transaction's fate.
            CommandClass::TransactionStatement => match (view.lsid, view.txn_number) {
                (Some(lsid), Some(txn)) => self.shared.txns.get(lsid.as_bytes(), txn),
                _ => None,
            },
            _ => None,
        };
        if let Some(member) = pinned {
            let epoch = self.shared.topology.snapshot().epoch;
            return Ok((Target { member, epoch }, Duration::ZERO, true));
        }
        let (t, held) = self.shared.gate.primary(bytes, deadline, max_time).await?;
        Ok((t, held, false))
    }

    async fn forward(
        &mut self,
        frame: &Frame,
        view: &CommandView<'_>,
        class: CommandClass,
        started: Instant,
    ) -> (Action, Outcome) {
        let sh = self.shared.clone();
        let deadline = started + sh.cfg.hold_timeout();
        let max_time = view
            .max_time_ms
            .filter(|ms| *ms > 0)
            .map(|ms| started + Duration::from_millis(ms as u64));
        let unack = view.more_to_come;
        let out = frame.clear_msg_flags(MsgFlags::EXHAUST_ALLOWED);
        let mut replayed = false;
        let mut first_attempt = true;
        let mut held_total = Duration::ZERO;
        loop {
            let (target, held, pinned) = match self
                .target(view, class, frame.len(), deadline, max_time)
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    return (
                        Action::Reply(self.gate_error(frame, view, e)),
                        Outcome::HoldfastError,
                    )
                }
            };
            held_total += held;
            if held > Duration::ZERO {
                info!(parent: &self.span, command = view.name, member = %target.member, action = "held", held_ms = held.as_millis() as u64, "request held until a primary was known");
            }
            if class == CommandClass::TransactionStatement && view.start_transaction && !pinned {
                if let (Some(lsid), Some(txn)) = (view.lsid, view.txn_number) {
                    sh.txns.pin(lsid.as_bytes(), txn, target.member.clone());
                }
            }
            // Time spent held counts against the command's maxTimeMS: send
            // what is left of it.
            let adjusted;
            let to_send = match (max_time, held_total.is_zero()) {
                (Some(deadline), false) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (
                            Action::Reply(self.gate_error(
                                frame,
                                view,
                                GateError::MaxTimeExpired { waited: held_total },
                            )),
                            Outcome::HoldfastError,
                        );
                    }
                    adjusted = with_max_time_ms(&out, left).unwrap_or_else(|| out.clone());
                    &adjusted
                }
                _ => &out,
            };
            // The request's start is recent enough for the pool and the
            // stall probe, unless it was held or is being sent again.
            let sending_at = if first_attempt && held_total.is_zero() {
                started
            } else {
                Instant::now()
            };
            first_attempt = false;
            let sent = self.round_trip(&target, to_send, unack, sending_at).await;
            match sent {
                Ok(None) => return (Action::Nothing, Outcome::Ok),
                Ok(Some(reply)) => {
                    let Some(body_bytes) = reply_body(&reply) else {
                        return (Action::Reply(reply), Outcome::Ok);
                    };
                    let Ok(body) = RawDocument::from_bytes(&body_bytes) else {
                        return (Action::Reply(reply), Outcome::Ok);
                    };
                    let info = ReplySummary::of(body);
                    let state_code = info
                        .code
                        .filter(|c| !info.ok && is_state_change_code(*c))
                        .or(info.wce_code.filter(|c| is_state_change_code(*c)));
                    if let Some(code) = state_code {
                        sh.topology.report_failure(&target.member, target.epoch);
                        let rejected = !info.ok && is_rejected_before_executing(code);
                        if !replayed && self.may_resend(class, rejected) {
                            replayed = true;
                            m::replay(class.label(), "state_change");
                            if matches!(class, CommandClass::Write { .. }) {
                                m::write_retried(if rejected {
                                    "not_writable_primary"
                                } else {
                                    "retryable_write"
                                });
                            }
                            info!(parent: &self.span, command = view.name, member = %target.member, code, action = "replay", "primary changed; sending again to the new primary");
                            continue;
                        }
                        if matches!(class, CommandClass::Write { .. } | CommandClass::Other)
                            && !rejected
                        {
                            return (
                                Action::Reply(self.unknown_outcome(
                                    frame,
                                    view,
                                    class,
                                    &target,
                                    &format!("the old primary answered with error {code}"),
                                )),
                                Outcome::HoldfastError,
                            );
                        }
                        return (
                            Action::Reply(self.sanitize_error(frame, &reply, body, class)),
                            Outcome::ServerError,
                        );
                    }
                    self.learn(view, class, &target, &info);
                    if info.has_topology_version && !info.ok {
                        return (
                            Action::Reply(self.sanitize_error(frame, &reply, body, class)),
                            Outcome::ServerError,
                        );
                    }
                    let outcome = if replayed {
                        Outcome::Replayed
                    } else if info.ok {
                        Outcome::Ok
                    } else {
                        Outcome::ServerError
                    };
                    if replayed {
                        info!(parent: &self.span, command = view.name, member = %target.member, action = "replayed", held_ms = held_total.as_millis() as u64, "replay succeeded");
                    }
                    return (Action::Reply(reply), outcome);
                }
                Err(e) => {
                    sh.topology.report_failure(&target.member, target.epoch);
                    if unack {
                        metrics::counter!("holdfast_unacknowledged_writes_lost_total").increment(1);
                        warn!(parent: &self.span, command = view.name, member = %target.member, error = %e, action = "lost", "unacknowledged (w:0) request could not be delivered");
                        return (Action::Nothing, Outcome::HoldfastError);
                    }
                    if pinned {
                        return (
                            Action::Reply(self.pinned_member_gone(frame, view, class, &target, &e)),
                            Outcome::HoldfastError,
                        );
                    }
                    if !e.maybe_sent() {
                        // Nothing reached the server: always safe to send again.
                        if Instant::now() < deadline {
                            debug!(parent: &self.span, member = %target.member, error = %e, "backend unavailable before sending; waiting for a primary");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        return (
                            Action::Reply(self.gate_error(
                                frame,
                                view,
                                GateError::HoldTimeout {
                                    waited: started.elapsed(),
                                },
                            )),
                            Outcome::HoldfastError,
                        );
                    }
                    if !replayed && self.may_resend(class, false) {
                        replayed = true;
                        m::replay(class.label(), "network");
                        info!(parent: &self.span, command = view.name, member = %target.member, error = %e, action = "replay", "lost the primary mid-request; sending again to the new primary");
                        continue;
                    }
                    if replayed {
                        m::replay(class.label(), "failed");
                    }
                    return (
                        Action::Reply(self.unknown_outcome(
                            frame,
                            view,
                            class,
                            &target,
                            &e.to_string(),
                        )),
                        Outcome::HoldfastError,
                    );
                }
            }
        }
    }

    /// May this request be sent again after its first attempt failed?
    /// `rejected`: the server refused it before executing (NotWritablePrimary).
    fn may_resend(&self, class: CommandClass, rejected: bool) -> bool {
        let safe = self.shared.cfg.write_retry == WriteRetry::Safe;
        match class {
            CommandClass::RetryableRead | CommandClass::Diagnostic => true,
            CommandClass::Write { retryable: true } => safe,
            CommandClass::Write { retryable: false } | CommandClass::Other => safe && rejected,
            _ => false,
        }
    }

    async fn round_trip(
        &self,
        target: &Target,
        frame: &Frame,
        unack: bool,
        started: Instant,
    ) -> Result<Option<Frame>, BackendError> {
        let pool = self.shared.pools.get(&target.member);
        let mut conn = pool.checkout(started).await?;
        // Waiting for the pool is not waiting for the member.
        let started = if conn.immediate {
            started
        } else {
            Instant::now()
        };
        let member = &target.member;
        // From here the stall watchdog (pool.rs) watches this request.
        conn.begin(started);
        let cut = |conn: &PooledConn, e: std::io::Error| {
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
            return Err(cut(&conn, e));
        }
        if unack {
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
            Err(e) => Err(cut(&conn, e)),
        }
    }

    /// Records cursor ids and transaction ends.
    fn learn(
        &self,
        view: &CommandView<'_>,
        class: CommandClass,
        target: &Target,
        info: &ReplySummary,
    ) {
        match view.name {
            "getMore" => {
                if info.cursor_id == Some(0) {
                    if let Some(id) = view.cursor_id {
                        self.shared.cursors.remove(id);
                    }
                }
            }
            "killCursors" => {
                for id in view.kill_cursor_ids() {
                    self.shared.cursors.remove(id);
                }
            }
            _ => {
                if let Some(id) = info.cursor_id.filter(|id| *id != 0) {
                    self.shared.cursors.insert(id, target.member.clone());
                }
            }
        }
        if matches!(
            class,
            CommandClass::CommitTransaction | CommandClass::AbortTransaction
        ) {
            if let Some(lsid) = view.lsid {
                self.shared.txns.unpin(lsid.as_bytes());
            }
        }
    }

    fn gate_error(&self, frame: &Frame, view: &CommandView<'_>, e: GateError) -> Frame {
        let set = self
            .shared
            .topology
            .snapshot()
            .set_name
            .clone()
            .unwrap_or_else(|| "the replica set".into());
        let (err, reason) = match e {
            GateError::QueueFull { held, held_bytes } => (
                ErrorReply::new(10107, "NotWritablePrimary", format!(
                    "holdfast: no primary of {set} is known and the hold queue is full ({held} requests, {held_bytes} bytes held; limits max_held_requests={}, max_held_bytes={}); this {} was not sent",
                    self.shared.cfg.max_held_requests, self.shared.cfg.max_held_bytes, view.name)),
                "queue_full",
            ),
            GateError::HoldTimeout { waited } => (
                ErrorReply::new(10107, "NotWritablePrimary", format!(
                    "holdfast: no primary of {set} became available within {:.1} s (hold_timeout); this {} was not sent",
                    waited.as_secs_f64(), view.name)),
                "hold_timeout",
            ),
            GateError::MaxTimeExpired { waited } => (
                ErrorReply::new(50, "MaxTimeMSExpired", format!(
                    "operation exceeded time limit: holdfast held this {} for {} ms waiting for a primary of {set}, longer than its maxTimeMS; it was not sent",
                    view.name, waited.as_millis())),
                "max_time_ms",
            ),
            GateError::ShuttingDown => (
                ErrorReply::new(10107, "NotWritablePrimary", format!("holdfast is shutting down; this {} was not sent", view.name)),
                "shutdown",
            ),
        };
        warn!(parent: &self.span,
            command = view.name,
            action = "refused",
            reason,
            "{}",
            err.errmsg
        );
        self.error(
            frame,
            err,
            Some(doc! {"outcome": "not_sent", "reason": reason}),
        )
    }

    /// The one clear error for a request whose outcome nobody can know.
    fn unknown_outcome(
        &self,
        frame: &Frame,
        view: &CommandView<'_>,
        class: CommandClass,
        target: &Target,
        cause: &str,
    ) -> Frame {
        let (err, what) = match class {
            CommandClass::TransactionStatement => (
                ErrorReply::new(11602, "InterruptedDueToReplStateChange", format!(
                    "holdfast: the primary changed while this {} (in a transaction) was in flight on {} ({cause}); the transaction cannot continue; retry the whole transaction",
                    view.name, target.member)).with_label("TransientTransactionError"),
                "transaction",
            ),
            CommandClass::CommitTransaction => (
                ErrorReply::new(11602, "InterruptedDueToReplStateChange", format!(
                    "holdfast: the primary changed while commitTransaction was in flight on {} ({cause}); the transaction may or may not have committed",
                    target.member)).with_label("UnknownTransactionCommitResult"),
                "commit",
            ),
            CommandClass::AbortTransaction => (
                ErrorReply::new(11602, "InterruptedDueToReplStateChange", format!(
                    "holdfast: the primary changed while abortTransaction was in flight on {} ({cause}); the transaction was aborted or will be by the new primary",
                    target.member)),
                "abort",
            ),
            _ => (
                ErrorReply::new(11602, "InterruptedDueToReplStateChange", format!(
                    "holdfast: the primary changed while this {} was in flight on {} ({cause}); it may or may not have been applied; holdfast did not retry it because {}",
                    view.name, target.member, self.why_not_retried(class))),
                "write",
            ),
        };
        m::write_error(what);
        warn!(parent: &self.span, command = view.name, member = %target.member, action = "unknown_outcome", cause, "{}", err.errmsg);
        self.error(frame, err, Some(doc! {"outcome": "unknown", "command": view.name, "member": target.member.as_ref(), "retried": false}))
    }

    fn why_not_retried(&self, class: CommandClass) -> &'static str {
        match class {
            CommandClass::Write { retryable: true } => "write_retry = \"never\"",
            CommandClass::Write { retryable: false } => "it is not a retryable write (no lsid/txnNumber, multi:true, or w:0) so sending it again could apply it twice",
            _ => "its effects are unknown and sending it again could apply them twice",
        }
    }

    fn pinned_member_gone(
        &self,
        frame: &Frame,
        view: &CommandView<'_>,
        class: CommandClass,
        target: &Target,
        e: &BackendError,
    ) -> Frame {
        if class == CommandClass::CursorContinuation {
            let err = ErrorReply::new(43, "CursorNotFound", format!(
                "holdfast: cursor {} lives on {}, which is unreachable ({e}); cursors cannot move between members, re-run the query",
                view.cursor_id.unwrap_or_default(), target.member));
            warn!(parent: &self.span, command = view.name, member = %target.member, action = "cursor_lost", "{}", err.errmsg);
            return self.error(
                frame,
                err,
                Some(doc! {"outcome": "not_sent", "reason": "cursor_member_gone"}),
            );
        }
        self.unknown_outcome(frame, view, class, target, &e.to_string())
    }

    /// Passes a server error on with holdfast's topologyVersion instead of
    /// the member's (a foreign processId would make drivers mark holdfast
    /// unknown), and with the labels transactions need.
    fn sanitize_error(
        &self,
        frame: &Frame,
        reply: &Frame,
        body: &RawDocument,
        class: CommandClass,
    ) -> Frame {
        let Ok(mut d) = Document::try_from(body) else {
            return reply.clone();
        };
        d.insert("topologyVersion", self.shared.identity.topology_version());
        if class == CommandClass::TransactionStatement {
            let labels = d.get_array_mut("errorLabels").ok();
            match labels {
                Some(l)
                    if !l
                        .iter()
                        .any(|x| x.as_str() == Some("TransientTransactionError")) =>
                {
                    l.push("TransientTransactionError".into())
                }
                Some(_) => {}
                None => {
                    d.insert("errorLabels", vec!["TransientTransactionError"]);
                }
            }
        }
        let mut out = self.reply_doc(frame, &d);
        if reply.op_code() == frame.op_code() {
            out = out.with_ids(reply.request_id(), frame.request_id());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn held_time_is_taken_off_max_time_ms() {
        let body = reply::document_bytes(&doc! {"find": "c", "maxTimeMS": 5000, "$db": "d"});
        let frame = reply::msg_reply_bytes(42, 0, MsgFlags::empty(), body);
        let out = with_max_time_ms(&frame, Duration::from_millis(1234)).unwrap();
        assert_eq!(out.request_id(), 42);
        let Message::Msg(m) = out.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        let d = Document::from_reader(&m.body[..]).unwrap();
        assert_eq!(d.get_i64("maxTimeMS").unwrap(), 1234);
        assert_eq!(d.get_str("find").unwrap(), "c");
        // Never zero: a zero maxTimeMS means "no limit" to the server.
        let out = with_max_time_ms(&frame, Duration::from_micros(10)).unwrap();
        let Message::Msg(m) = out.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(
            Document::from_reader(&m.body[..])
                .unwrap()
                .get_i64("maxTimeMS")
                .unwrap(),
            1
        );
    }

    #[test]
    fn reply_inspection_finds_codes_and_cursor_ids() {
        let b = reply::document_bytes(
            &doc! {"ok": 0.0, "code": 10107, "errmsg": "not primary", "topologyVersion": {"x": 1}},
        );
        let i = ReplySummary::of(RawDocument::from_bytes(&b).unwrap());
        assert!(!i.ok && i.code == Some(10107) && i.has_topology_version);
        let b = reply::document_bytes(
            &doc! {"cursor": {"id": 77i64, "ns": "a.b", "firstBatch": []}, "ok": 1.0},
        );
        let i = ReplySummary::of(RawDocument::from_bytes(&b).unwrap());
        assert!(i.ok && i.cursor_id == Some(77));
        let b = reply::document_bytes(
            &doc! {"n": 1, "writeConcernError": {"code": 11602, "errmsg": "x"}, "ok": 1.0},
        );
        let i = ReplySummary::of(RawDocument::from_bytes(&b).unwrap());
        assert!(i.ok && i.wce_code == Some(11602));
        for c in [10107, 13435, 10058, 11600, 11602, 13436, 189, 91] {
            assert!(is_state_change_code(c));
        }
        assert!(!is_state_change_code(11000) && !is_state_change_code(50));
        assert!(is_rejected_before_executing(10107) && !is_rejected_before_executing(11602));
    }
}
