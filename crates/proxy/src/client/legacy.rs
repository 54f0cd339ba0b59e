//! A client connection's legacy requests: each is translated into a
//! command ([`crate::legacy`]), run through the request path as any OP_MSG
//! request, and answered the legacy way (OP_REPLY, or nothing and the
//! connection's last error for the write opcodes).

use bson::{doc, Document, RawDocument};
use bytes::{Bytes, BytesMut};
use holdfast_wire::legacy::{split_namespace, LegacyOp, OpGetMore, OpKillCursors};
use holdfast_wire::msg::{MsgFlags, OpMsg};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{
    codes, CommandClass, CommandView, Frame, Limits, Message, OpCode, OpQuery, OpReply,
};
use tracing::debug;

use super::{Action, ClientConn};
use crate::legacy::query::{self, Query};
use crate::legacy::replies;
use crate::legacy::writes::{self, LastError, WriteKind};
use crate::legacy::{Kind, LegacyError};
use crate::metrics as m;

/// The body of a reply frame (OP_MSG body or an OP_REPLY's first document).
fn body_of(f: &Frame) -> Option<Bytes> {
    if let Some(b) = f.msg_body() {
        return Some(b);
    }
    let limits = Limits {
        verify_checksum: false,
        ..Limits::default()
    };
    match f.parse(&limits).ok()? {
        Message::Msg(m) => Some(m.body),
        Message::Reply(r) => {
            let len = r.first_doc().ok()?.as_bytes().len();
            Some(r.documents.slice(0..len))
        }
        _ => None,
    }
}

/// If the next frame, already received, is a `getLastError`, the write
/// concern it asks for (old drivers send it in the same socket write as
/// the write it is about).
pub(super) fn pipelined_get_last_error(buf: &BytesMut, limits: &Limits) -> Option<Document> {
    let len = usize::try_from(i32::from_le_bytes(buf.get(..4)?.try_into().ok()?)).ok()?;
    if len < 16 || len > buf.len() || len > limits.max_message_size {
        return None;
    }
    let frame =
        Frame::from_bytes(Bytes::copy_from_slice(&buf[..len]), limits.max_message_size).ok()?;
    match frame.parse(limits).ok()? {
        Message::Query(q) => writes::get_last_error_concern(&q),
        _ => None,
    }
}

fn in_band_error(e: &LegacyError) -> Bytes {
    document_bytes(
        &doc! {"ok": 0.0, "errmsg": &e.message, "code": e.code, "codeName": codes::name(e.code)},
    )
}

impl ClientConn {
    fn op_reply(&self, request: &Frame, r: OpReply) -> Action {
        let id = self.ctx.forwarder.replies().request_id();
        Action::Reply(Message::Reply(r).to_frame(id, request.request_id()))
    }

    /// Runs `msg` through the request path as the client's request
    /// `request_id` (a hello is answered locally); the reply's body, or
    /// `None` when no reply comes.
    async fn run(&mut self, request_id: i32, msg: OpMsg) -> Option<Bytes> {
        let frame = Message::Msg(msg).to_frame(request_id, 0);
        let limits = Limits {
            verify_checksum: false,
            ..self.ctx.limits
        };
        let Ok(Message::Msg(parsed)) = frame.parse(&limits) else {
            return Some(in_band_error(&LegacyError::new(
                codes::INVALID_BSON,
                "translated request does not parse",
            )));
        };
        let view = match CommandView::from_msg(&parsed) {
            Ok(v) => v,
            Err(e) => {
                return Some(in_band_error(&LegacyError::new(
                    e.server_code().0,
                    e.to_string(),
                )))
            }
        };
        let class = view.classify();
        if class == CommandClass::Handshake {
            return self
                .hello_body(&view)
                .await
                .map(|d| document_bytes(&d))
                .or_else(|| {
                    Some(in_band_error(&LegacyError::new(
                        codes::CLIENT_METADATA_CANNOT_BE_MUTATED,
                        crate::replies::client_metadata_mutated().errmsg,
                    )))
                });
        }
        let reply = self.execute(&frame, &view, class).await?;
        body_of(&reply)
    }

    /// An OP_QUERY: a command (answered in-band) or a find.
    pub(super) async fn op_query(&mut self, frame: &Frame, q: &OpQuery) -> Action {
        let kind = if q.command_db().is_some() {
            Kind::QueryCommand
        } else {
            Kind::QueryFind
        };
        m::legacy_request(kind);
        match query::translate(q) {
            Ok(Query::Command { name, body }) => {
                let msg = OpMsg::new(MsgFlags::empty(), body);
                let mut reply = self.run(frame.request_id(), msg).await;
                if name.eq_ignore_ascii_case("buildinfo") {
                    reply = reply.map(|b| self.build_info(b));
                }
                self.op_reply(frame, replies::command(reply.unwrap_or_default()))
            }
            Ok(Query::GetLastError) => {
                let d = self.last_error.reply(self.conn_id);
                self.op_reply(frame, replies::command(document_bytes(&d)))
            }
            Ok(Query::GetNonce) => {
                let nonce = bson::Uuid::new().to_string().replace('-', "")[..16].to_string();
                let d = doc! {"nonce": nonce, "ok": 1.0};
                self.op_reply(frame, replies::command(document_bytes(&d)))
            }
            Ok(Query::Find { body, ns, explain }) => self.find(frame, body, ns, explain).await,
            Err(e) => {
                m::legacy_error(kind);
                debug!(parent: &self.span, code = e.code, error = %e.message, "legacy query refused");
                match kind {
                    Kind::QueryCommand => self.op_reply(frame, replies::command(in_band_error(&e))),
                    _ => self.op_reply(frame, replies::query_failure(e.code, &e.message)),
                }
            }
        }
    }

    /// A `buildInfo` reply with the version capped as holdfast announces
    /// it ([`crate::handshake::Identity::cap_build_info`]): drivers ask over
    /// OP_QUERY while they connect, and some choose their protocol by it.
    fn build_info(&self, body: Bytes) -> Bytes {
        let Ok(mut d) = Document::from_reader(&body[..]) else {
            return body;
        };
        if self
            .ctx
            .forwarder
            .replies()
            .identity()
            .cap_build_info(&mut d)
        {
            document_bytes(&d)
        } else {
            body
        }
    }

    async fn find(&mut self, frame: &Frame, body: Document, ns: String, explain: bool) -> Action {
        let msg = OpMsg::new(MsgFlags::empty(), document_bytes(&body));
        let Some(reply) = self.run(frame.request_id(), msg).await else {
            return Action::Nothing;
        };
        let Ok(raw) = RawDocument::from_bytes(&reply) else {
            return self.op_reply(
                frame,
                replies::query_failure(codes::INVALID_BSON, "unreadable reply"),
            );
        };
        if let Some((code, errmsg)) = replies::failure(raw) {
            return self.op_reply(frame, replies::query_failure(code, &errmsg));
        }
        if explain {
            return self.op_reply(frame, replies::documents(0, 0, reply, 1));
        }
        let Some(b) = replies::batch(raw) else {
            return self.op_reply(
                frame,
                replies::query_failure(codes::INTERNAL_ERROR, "the find reply has no cursor"),
            );
        };
        if b.cursor_id != 0 {
            let cursors = self.ctx.forwarder.router().cursors();
            cursors.set_namespace(b.cursor_id, &ns);
            cursors.add_returned(b.cursor_id, b.count as u64);
        }
        self.op_reply(
            frame,
            replies::documents(b.cursor_id, 0, b.documents, b.count),
        )
    }

    /// OP_GET_MORE, OP_KILL_CURSORS, OP_INSERT, OP_UPDATE, OP_DELETE.
    pub(super) async fn legacy_op(
        &mut self,
        frame: &Frame,
        op_code: OpCode,
        body: &Bytes,
    ) -> Action {
        let op = match LegacyOp::parse(op_code, body) {
            Ok(op) => op,
            Err(e) => {
                m::protocol_error("legacy_opcode");
                debug!(parent: &self.span, error = %e, "unreadable legacy request");
                if op_code == OpCode::GetMore {
                    let (code, _) = e.server_code();
                    return self.op_reply(frame, replies::query_failure(code, &e.to_string()));
                }
                self.last_error =
                    LastError::failed(&LegacyError::new(e.server_code().0, e.to_string()));
                return Action::Nothing;
            }
        };
        match op {
            LegacyOp::GetMore(g) => self.get_more(frame, g).await,
            LegacyOp::KillCursors(k) => self.kill_cursors(frame, k).await,
            LegacyOp::Insert(i) => {
                let msg = writes::insert(&i, Some(&self.write_concern()));
                self.legacy_write(frame, Kind::Insert, WriteKind::Insert, msg)
                    .await
            }
            LegacyOp::Update(u) => {
                let msg = writes::update(&u, Some(&self.write_concern()));
                self.legacy_write(frame, Kind::Update, WriteKind::Update, msg)
                    .await
            }
            LegacyOp::Delete(d) => {
                let msg = writes::delete(&d, Some(&self.write_concern()));
                self.legacy_write(frame, Kind::Delete, WriteKind::Delete, msg)
                    .await
            }
        }
    }

    /// The pipelined getLastError's write concern, else `w: "majority"`:
    /// a later getLastError asking for any usual write concern then reads
    /// a result that satisfies it.
    fn write_concern(&mut self) -> Document {
        self.pipelined_gle
            .take()
            .unwrap_or_else(|| doc! {"w": "majority"})
    }

    async fn legacy_write(
        &mut self,
        frame: &Frame,
        kind: Kind,
        write: WriteKind,
        msg: Result<OpMsg, LegacyError>,
    ) -> Action {
        m::legacy_request(kind);
        self.last_error = match msg {
            Ok(msg) => match self.run(frame.request_id(), msg).await {
                Some(reply) => match Document::from_reader(&reply[..]) {
                    Ok(d) => LastError::from_reply(write, &d),
                    Err(e) => {
                        LastError::failed(&LegacyError::new(codes::INVALID_BSON, e.to_string()))
                    }
                },
                None => LastError::default(),
            },
            Err(e) => {
                m::legacy_error(kind);
                LastError::failed(&e)
            }
        };
        Action::Nothing
    }

    async fn get_more(&mut self, frame: &Frame, g: OpGetMore) -> Action {
        m::legacy_request(Kind::GetMore);
        let Some((db, coll)) = split_namespace(&g.full_collection_name) else {
            m::legacy_error(Kind::GetMore);
            return self.op_reply(frame, replies::query_failure(73, "invalid namespace"));
        };
        if g.number_to_return < 0 {
            m::legacy_error(Kind::GetMore);
            return self.op_reply(
                frame,
                replies::query_failure(34424, "numberToReturn of OP_GET_MORE must not be negative"),
            );
        }
        let mut cmd = doc! {"getMore": g.cursor_id, "collection": coll, "$db": db};
        if g.number_to_return > 0 {
            cmd.insert("batchSize", g.number_to_return as i64);
        }
        let msg = OpMsg::new(MsgFlags::empty(), document_bytes(&cmd));
        // Read before the getMore runs: the reply that exhausts the cursor
        // also removes it from the map.
        let before = self
            .ctx
            .forwarder
            .router()
            .cursors()
            .add_returned(g.cursor_id, 0);
        let Some(reply) = self.run(frame.request_id(), msg).await else {
            return Action::Nothing;
        };
        let Ok(raw) = RawDocument::from_bytes(&reply) else {
            return self.op_reply(
                frame,
                replies::query_failure(codes::INVALID_BSON, "unreadable reply"),
            );
        };
        match replies::failure(raw) {
            Some((codes::CURSOR_NOT_FOUND, _)) => {
                return self.op_reply(frame, replies::cursor_not_found())
            }
            Some((code, errmsg)) => {
                return self.op_reply(frame, replies::query_failure(code, &errmsg))
            }
            None => {}
        }
        let Some(b) = replies::batch(raw) else {
            return self.op_reply(
                frame,
                replies::query_failure(codes::INTERNAL_ERROR, "the getMore reply has no cursor"),
            );
        };
        let cursors = self.ctx.forwarder.router().cursors();
        cursors.add_returned(g.cursor_id, b.count as u64);
        let starting_from = i32::try_from(before).unwrap_or(i32::MAX);
        self.op_reply(
            frame,
            replies::documents(b.cursor_id, starting_from, b.documents, b.count),
        )
    }

    /// Kills the cursors by namespace (looked up in the process-wide map:
    /// OP_KILL_CURSORS names none). No reply, as on the wire.
    async fn kill_cursors(&mut self, frame: &Frame, k: OpKillCursors) -> Action {
        m::legacy_request(Kind::KillCursors);
        let mut by_ns: Vec<(String, Vec<i64>)> = Vec::new();
        for id in k.cursor_ids {
            let Some(ns) = self.ctx.forwarder.router().cursors().namespace(id) else {
                continue; // unknown here: its member has it or dropped it
            };
            match by_ns.iter_mut().find(|(n, _)| **n == *ns) {
                Some((_, ids)) => ids.push(id),
                None => by_ns.push((ns.to_string(), vec![id])),
            }
        }
        for (ns, ids) in by_ns {
            let Some((db, coll)) = split_namespace(&ns) else {
                continue;
            };
            let cmd = doc! {"killCursors": coll, "cursors": ids, "$db": db};
            let msg = OpMsg::new(MsgFlags::empty(), document_bytes(&cmd));
            let _ = self.run(frame.request_id(), msg).await;
        }
        Action::Nothing
    }
}
