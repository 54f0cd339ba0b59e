//! Listener and connections: framing, opcodes, replies, exhaust streams,
//! blackhole and kill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document};
use futures::{SinkExt, StreamExt};
use holdfast_wire::compressed::is_never_compressed;
use holdfast_wire::reply::{document_bytes, msg_reply_bytes};
use holdfast_wire::{
    Compressor, Frame, FrameCodec, Limits, Message, MsgFlags, OpCode, OpCompressed, OpMsg, OpQuery,
    OpReply, QueryFlags, ReplyFlags, WireError,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::cmd::{self, After, ConnCtx, Request};
use crate::errors::{self, CmdError};
use crate::set::SetInner;

/// Commands MongoDB 5.1+ still accepts over OP_QUERY (the shared command
/// table says which).
fn allowed_over_op_query(name: &str) -> bool {
    holdfast_wire::commands::lookup(name).is_some_and(|c| c.over_op_query)
}

const LEGACY_REMOVED: &str =
    "The client driver may require an upgrade. For more details see https://dochub.mongodb.org/core/legacy-opcode-removal";

/// Waits while member `m` is blackholed (a network partition: nothing goes
/// in or out, nothing is lost); false if the member is shut down meanwhile.
async fn wait_while_blackholed(m: &crate::member::Member, token: &CancellationToken) -> bool {
    while m.is_blackholed() {
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    }
    true
}

pub async fn accept_loop(
    set: Arc<SetInner>,
    idx: usize,
    listener: TcpListener,
    token: CancellationToken,
    tracker: TaskTracker,
    graceful: Arc<AtomicBool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let m = &set.members[idx];
                let conn_id = m.next_conn_id.fetch_add(1, Ordering::Relaxed);
                let ctx = ConnCtx {
                    set: set.clone(),
                    idx,
                    conn_id,
                    peer,
                    seen_hello: false,
                    compressors: Vec::new(),
                    after: After::Nothing,
                    no_reply: false,
                    auth: crate::auth::ConnAuth::default(),
                };
                tracker.spawn(serve(ctx, stream, token.clone(), graceful.clone()));
            }
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Counts a connection in `serverStatus.connections` while it lives.
struct ConnGuard<'a>(&'a crate::member::Member);

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.conns_current.fetch_sub(1, Ordering::AcqRel);
    }
}

enum End {
    /// Peer closed, or we close after a protocol error (FIN).
    Closed,
    /// The member died.
    Cancelled,
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve(
    mut ctx: ConnCtx,
    stream: TcpStream,
    token: CancellationToken,
    graceful: Arc<AtomicBool>,
) {
    let set = ctx.set.clone();
    let m = &set.members[ctx.idx];
    m.conns_current.fetch_add(1, Ordering::AcqRel);
    m.conns_total.fetch_add(1, Ordering::Relaxed);
    let _guard = ConnGuard(m);
    match &set.tls {
        None => serve_stream(&mut ctx, stream, &token, &graceful).await,
        Some(acceptor) => {
            // Every member requires TLS: a plaintext client fails the
            // handshake and is disconnected.
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls = tokio::select! {
                _ = token.cancelled() => return,
                r = handshake => r,
            };
            match tls {
                Ok(Ok(tls)) => {
                    ctx.auth.tls = true;
                    ctx.auth.peer_subject = crate::tls::peer_subject(tls.get_ref().1);
                    serve_stream(&mut ctx, tls, &token, &graceful).await
                }
                Ok(Err(e)) => debug!(peer = %ctx.peer, error = %e, "TLS handshake failed: closing"),
                Err(_) => debug!(peer = %ctx.peer, "TLS handshake timed out: closing"),
            }
        }
    }
}

async fn serve_stream<S: Stream>(
    ctx: &mut ConnCtx,
    stream: S,
    token: &CancellationToken,
    graceful: &AtomicBool,
) {
    let mut framed = Framed::new(stream, FrameCodec::new(Limits::default()));
    let end = run(ctx, &mut framed, token).await;
    if matches!(end, End::Cancelled) && !graceful.load(Ordering::Acquire) {
        // kill -9: the peer sees a reset.
        let _ = framed.get_ref().tcp().set_zero_linger();
    }
}

/// A reply to send and what to do afterwards.
struct Out {
    frame: Option<Frame>,
    after: After,
}

impl Out {
    fn close() -> Out {
        Out {
            frame: None,
            after: After::Close,
        }
    }
}

async fn run<S: Stream>(
    ctx: &mut ConnCtx,
    framed: &mut Framed<S, FrameCodec>,
    token: &CancellationToken,
) -> End {
    let set = ctx.set.clone();
    let m = &set.members[ctx.idx];
    let mut exhaust: Option<cmd::ExhaustHello> = None;
    loop {
        let next = if let Some(ex) = exhaust.as_mut() {
            tokio::select! {
                _ = token.cancelled() => return End::Cancelled,
                f = framed.next() => {
                    exhaust = None;
                    f
                }
                body = cmd::hello::next_streamed(ctx, ex) => {
                    if m.is_blackholed() {
                        continue;
                    }
                    let body = with_cluster_time(ctx, body);
                    let request_id = m.next_request_id();
                    let frame = msg_reply_bytes(
                        request_id,
                        ex.prev_request_id,
                        MsgFlags::MORE_TO_COME,
                        document_bytes(&body),
                    );
                    ex.prev_request_id = request_id;
                    tokio::select! {
                        _ = token.cancelled() => return End::Cancelled,
                        r = framed.send(frame) => if r.is_err() { return End::Closed },
                    }
                    continue;
                }
            }
        } else {
            tokio::select! {
                _ = token.cancelled() => return End::Cancelled,
                f = framed.next() => f,
            }
        };
        let frame = match next {
            None => return End::Closed,
            Some(Err(e)) => {
                debug!(error = %e, "unreadable frame: closing");
                return End::Closed;
            }
            Some(Ok(f)) => f,
        };
        // A partition delays bytes, it does not lose them: the request is
        // read by the member once the partition heals (TCP retransmits), and
        // its reply reaches the client then.
        if !wait_while_blackholed(m, token).await {
            return End::Cancelled;
        }
        m.conns_active.fetch_add(1, Ordering::Relaxed);
        let out = tokio::select! {
            _ = token.cancelled() => {
                m.conns_active.fetch_sub(1, Ordering::Relaxed);
                return End::Cancelled;
            }
            out = handle(ctx, frame) => out,
        };
        m.conns_active.fetch_sub(1, Ordering::Relaxed);
        if let Some(frame) = out.frame {
            if !wait_while_blackholed(m, token).await {
                return End::Cancelled;
            }
            {
                let request_id = frame.request_id();
                tokio::select! {
                    _ = token.cancelled() => return End::Cancelled,
                    r = framed.send(frame) => if r.is_err() { return End::Closed },
                }
                if let After::Exhaust(mut ex) = out.after {
                    ex.prev_request_id = request_id;
                    exhaust = Some(ex);
                    continue;
                }
            }
        }
        match out.after {
            After::Nothing | After::Exhaust(_) => {}
            After::Close => return End::Closed,
            After::KillSelf { graceful } => {
                let set = set.clone();
                let idx = ctx.idx;
                tokio::spawn(async move { set.kill(idx, graceful).await });
            }
        }
    }
}

fn with_cluster_time(ctx: &ConnCtx, mut body: Document) -> Document {
    let set = &ctx.set;
    let m = ctx.member();
    let op_time = crate::oplog::unpack_ts(m.last_applied_ts.load(Ordering::Acquire));
    body.insert(
        "$clusterTime",
        doc! {
            "clusterTime": set.cluster_time(),
            "signature": {
                "hash": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0u8; 20] },
                "keyId": 0i64,
            },
        },
    );
    body.insert("operationTime", op_time);
    body
}

async fn handle(ctx: &mut ConnCtx, frame: Frame) -> Out {
    let limits = Limits::default();
    match frame.parse(&limits) {
        Ok(Message::Compressed(c)) => {
            let inner = match c.decompress(frame.header(), limits.max_message_size) {
                Ok(f) => f,
                Err(e) => {
                    debug!(error = %e, "cannot decompress: closing");
                    return Out::close();
                }
            };
            let compressor = Compressor::from_id(c.compressor_id).ok();
            let parsed = inner.parse(&limits);
            match parsed {
                Ok(Message::Msg(_)) | Ok(Message::Query(_)) | Err(_) => {
                    handle_parsed(ctx, &inner, parsed, compressor).await
                }
                _ => Out::close(),
            }
        }
        parsed => handle_parsed(ctx, &frame, parsed, None).await,
    }
}

async fn handle_parsed(
    ctx: &mut ConnCtx,
    frame: &Frame,
    parsed: Result<Message, WireError>,
    compressor: Option<Compressor>,
) -> Out {
    let request_id = frame.request_id();
    match parsed {
        Err(e) if e.is_connection_fatal() => {
            debug!(error = %e, "fatal message parse error: closing");
            Out::close()
        }
        Err(e) => {
            let (code, code_name) = e.server_code();
            let body =
                doc! { "ok": 0.0, "errmsg": e.to_string(), "code": code, "codeName": code_name };
            if frame.op_code() == OpCode::Query {
                return reply_query(ctx, request_id, body, ReplyFlags::AWAIT_CAPABLE);
            }
            if frame
                .msg_flags()
                .is_some_and(|f| f.contains(MsgFlags::MORE_TO_COME))
            {
                return Out {
                    frame: None,
                    after: After::Nothing,
                };
            }
            reply_msg(ctx, request_id, body, compressor, "")
        }
        Ok(Message::Msg(msg)) => on_msg(ctx, request_id, msg, compressor).await,
        Ok(Message::Query(q)) => on_query(ctx, request_id, q).await,
        Ok(Message::Legacy {
            op_code: OpCode::GetMore,
            ..
        }) => {
            let msg = format!("OP_GET_MORE is no longer supported. {LEGACY_REMOVED}");
            let body = doc! { "$err": msg.clone(), "errmsg": msg, "code": errors::OP_QUERY_REMOVED, "ok": 0.0 };
            reply_query(ctx, request_id, body, ReplyFlags::QUERY_FAILURE)
        }
        // OP_INSERT/UPDATE/DELETE/KILL_CURSORS, OP_REPLY from a client,
        // unknown opcodes: no reply, the connection is closed.
        Ok(_) => Out::close(),
    }
}

/// Merges kind-1 sequences into the body as arrays.
fn command_document(msg: &OpMsg) -> Result<Document, CmdError> {
    let raw = msg
        .body_doc()
        .map_err(|e| CmdError::new(22, format!("invalid BSON in OP_MSG body: {e}")))?;
    let mut body = Document::try_from(raw)
        .map_err(|e| CmdError::new(22, format!("invalid BSON in OP_MSG body: {e}")))?;
    for s in &msg.sequences {
        if body.contains_key(&s.identifier) {
            return Err(CmdError::new(
                40433,
                format!(
                    "Duplicate field {} found in both the body and a document sequence",
                    s.identifier
                ),
            ));
        }
        let mut docs = Vec::new();
        for d in s.iter() {
            let d = d.map_err(|e| CmdError::new(22, e.to_string()))?;
            let d = Document::try_from(d).map_err(|e| CmdError::new(22, e.to_string()))?;
            docs.push(Bson::Document(d));
        }
        body.insert(s.identifier.clone(), docs);
    }
    Ok(body)
}

async fn on_msg(
    ctx: &mut ConnCtx,
    request_id: i32,
    msg: OpMsg,
    compressor: Option<Compressor>,
) -> Out {
    let more_to_come = msg.more_to_come();
    if msg.sequences.len() > 2 {
        // TooManyDocumentSequences is a ConnectionFatalMessageParseError.
        return Out::close();
    }
    let body = match command_document(&msg) {
        Ok(b) => b,
        Err(e) => {
            if more_to_come {
                return Out::close();
            }
            return reply_msg(ctx, request_id, e.to_document(), compressor, "");
        }
    };
    let db = match body.get("$db") {
        Some(Bson::String(db)) => db.clone(),
        _ => {
            if more_to_come {
                return Out::close();
            }
            let e = CmdError::new(40571, "OP_MSG requests require a $db argument");
            return reply_msg(ctx, request_id, e.to_document(), compressor, "");
        }
    };
    let mut req = Request::new(db, body);
    key_session_by_user(ctx, &mut req);
    req.exhaust_allowed = msg.exhaust_allowed();
    req.more_to_come = more_to_come;
    ctx.after = After::Nothing;
    ctx.no_reply = false;
    let reply = cmd::dispatch(ctx, &req).await;
    let after = std::mem::take(&mut ctx.after);
    if more_to_come {
        // Unacknowledged: no reply. A write refused because this member is
        // not primary closes the connection: the only way to tell.
        let code = reply.get("code").and_then(cmd::as_i64).unwrap_or(0) as i32;
        let after = if code == errors::NOT_WRITABLE_PRIMARY {
            After::Close
        } else {
            after
        };
        return Out { frame: None, after };
    }
    if ctx.no_reply {
        return Out { frame: None, after };
    }
    let failed = !matches!(reply.get("ok"), Some(Bson::Double(d)) if *d == 1.0);
    let after = match after {
        After::Exhaust(_) if failed => After::Nothing,
        a => a,
    };
    let mut out = reply_msg(ctx, request_id, reply, compressor, &req.name);
    if let (After::Exhaust(_), Some(frame)) = (&after, out.frame.as_ref()) {
        // The first reply of the stream carries moreToCome too.
        out.frame = Some(with_more_to_come(frame, compressor));
    }
    out.after = after;
    out
}

/// As mongod, a session belongs to the user that uses it: the same
/// `lsid` used by two users is two sessions.
fn key_session_by_user(ctx: &ConnCtx, req: &mut Request) {
    if let (Some(lsid), Some(user)) = (req.lsid.as_mut(), ctx.auth.user.as_ref()) {
        lsid.extend_from_slice(&user.session_digest());
    }
}

fn with_more_to_come(frame: &Frame, compressor: Option<Compressor>) -> Frame {
    // Hello replies are never compressed, so `frame` is a plain OP_MSG.
    let _ = compressor;
    match frame.parse(&Limits::default()) {
        Ok(Message::Msg(m)) => msg_reply_bytes(
            frame.request_id(),
            frame.response_to(),
            MsgFlags::MORE_TO_COME,
            m.body,
        ),
        _ => frame.clone(),
    }
}

fn reply_msg(
    ctx: &ConnCtx,
    response_to: i32,
    body: Document,
    compressor: Option<Compressor>,
    command: &str,
) -> Out {
    let body = with_cluster_time(ctx, body);
    let request_id = ctx.member().next_request_id();
    let frame = encode_msg_reply(request_id, response_to, &body);
    let frame = match compressor {
        Some(c) if !is_never_compressed(command) && c != Compressor::Noop => {
            OpCompressed::compress(&frame, c).unwrap_or(frame)
        }
        _ => frame,
    };
    Out {
        frame: Some(frame),
        after: After::Nothing,
    }
}

/// An OP_MSG reply (no flags) serialised straight into its frame buffer.
fn encode_msg_reply(request_id: i32, response_to: i32, body: &Document) -> Frame {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    if body.to_writer(&mut out).is_err() {
        return msg_reply_bytes(
            request_id,
            response_to,
            MsgFlags::empty(),
            document_bytes(body),
        );
    }
    let header = holdfast_wire::MsgHeader {
        message_length: out.len() as i32,
        request_id,
        response_to,
        op_code: OpCode::Msg,
    };
    out[..16].copy_from_slice(&header.to_bytes());
    Frame::from_bytes(bytes::Bytes::from(out), usize::MAX).expect("a valid reply frame")
}

fn reply_query(ctx: &ConnCtx, response_to: i32, body: Document, flags: ReplyFlags) -> Out {
    let body = with_cluster_time(ctx, body);
    let request_id = ctx.member().next_request_id();
    let reply = OpReply {
        response_flags: flags,
        cursor_id: 0,
        starting_from: 0,
        number_returned: 1,
        documents: document_bytes(&body),
    };
    Out {
        frame: Some(Message::Reply(reply).to_frame(request_id, response_to)),
        after: After::Nothing,
    }
}

async fn on_query(ctx: &mut ConnCtx, request_id: i32, q: OpQuery) -> Out {
    let Some(db) = q.command_db().map(str::to_string) else {
        let msg = format!("OP_QUERY is no longer supported. {LEGACY_REMOVED}");
        let body = doc! { "$err": msg.clone(), "errmsg": msg, "code": errors::OP_QUERY_REMOVED, "ok": 0.0 };
        return reply_query(ctx, request_id, body, ReplyFlags::QUERY_FAILURE);
    };
    let fail = |ctx: &ConnCtx, e: CmdError| {
        reply_query(ctx, request_id, e.to_document(), ReplyFlags::AWAIT_CAPABLE)
    };
    if q.flags.contains(QueryFlags::EXHAUST) {
        return fail(
            ctx,
            CmdError::new(18527, "The 'exhaust' OP_QUERY flag is invalid for commands"),
        );
    }
    if q.number_to_return != 1 && q.number_to_return != -1 {
        return fail(
            ctx,
            CmdError::new(
                16979,
                format!(
                    "bad numberToReturn ({}) for $cmd type ns - can only be 1 or -1",
                    q.number_to_return
                ),
            ),
        );
    }
    let outer = match Document::from_reader(&q.query[..]) {
        Ok(d) => d,
        Err(e) => return fail(ctx, CmdError::new(22, format!("invalid BSON: {e}"))),
    };
    // As mongod's `upconvertRequest`: unwrap `$query`/`query` (keeping the
    // wrapper's `$readPreference`), SecondaryOk without a read preference
    // means secondaryPreferred, and `$db` comes from the namespace only.
    let (mut body, read_pref) = match outer.iter().next() {
        Some((k, Bson::Document(inner))) if k == "$query" || k == "query" => {
            if outer.contains_key("$maxTimeMS") {
                return fail(
                    ctx,
                    CmdError::new(
                        errors::INVALID_OPTIONS,
                        "cannot use $maxTimeMS query option with commands; use maxTimeMS command option instead",
                    ),
                );
            }
            (inner.clone(), outer.get("$readPreference").cloned())
        }
        _ => (outer.clone(), None),
    };
    if let Some(rp) = read_pref {
        body.insert("$readPreference", rp);
    } else if q.flags.contains(QueryFlags::SECONDARY_OK) && !body.contains_key("$readPreference") {
        body.insert("$readPreference", doc! { "mode": "secondaryPreferred" });
    }
    if body.contains_key("$db") {
        return fail(
            ctx,
            CmdError::new(40621, "$db is not allowed in OP_QUERY requests"),
        );
    }
    let name = body.keys().next().cloned().unwrap_or_default();
    if !allowed_over_op_query(&name) {
        return fail(
            ctx,
            CmdError::new(
                errors::UNSUPPORTED_OP_QUERY_COMMAND,
                format!("Unsupported OP_QUERY command: {name}. {LEGACY_REMOVED}"),
            ),
        );
    }
    let mut req = Request::new(db, body);
    key_session_by_user(ctx, &mut req);
    req.legacy = true;
    ctx.after = After::Nothing;
    ctx.no_reply = false;
    let reply = cmd::dispatch(ctx, &req).await;
    let after = std::mem::take(&mut ctx.after);
    let after = match after {
        After::Exhaust(_) => After::Nothing,
        a => a,
    };
    let mut out = reply_query(ctx, request_id, reply, ReplyFlags::AWAIT_CAPABLE);
    out.after = after;
    out
}
