//! Builders for replies: error replies (`ok: 0`, `code`, `codeName`,
//! `errmsg`, `errorLabels`) and plain command replies, as OP_MSG or OP_REPLY.

use bson::{doc, Document};
use bytes::Bytes;

use crate::frame::Frame;
use crate::msg::{MsgFlags, OpMsg};
use crate::query::OpReply;

/// A command error as MongoDB reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub code: i32,
    pub code_name: String,
    pub errmsg: String,
    pub labels: Vec<String>,
}

impl ErrorReply {
    pub fn new(code: i32, code_name: impl Into<String>, errmsg: impl Into<String>) -> Self {
        ErrorReply {
            code,
            code_name: code_name.into(),
            errmsg: errmsg.into(),
            labels: Vec::new(),
        }
    }

    /// An error with `code` and the name MongoDB gives it ([`crate::codes::name`]).
    pub fn of(code: i32, errmsg: impl Into<String>) -> Self {
        Self::new(code, crate::codes::name(code), errmsg)
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.labels.push(label.into());
        self
    }

    /// `{ok: 0.0, errmsg, code, codeName[, errorLabels]}`, fields in mongod's order.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": &self.errmsg,
            "code": self.code,
            "codeName": &self.code_name,
        };
        if !self.labels.is_empty() {
            d.insert("errorLabels", self.labels.clone());
        }
        d
    }
}

/// Serialises a document to its BSON bytes.
pub fn document_bytes(doc: &Document) -> Bytes {
    let mut v = Vec::with_capacity(64);
    doc.to_writer(&mut v)
        .expect("serialising a Document to a Vec cannot fail");
    Bytes::from(v)
}

/// An OP_MSG reply frame holding `body`.
pub fn msg_reply(request_id: i32, response_to: i32, body: &Document) -> Frame {
    msg_reply_bytes(
        request_id,
        response_to,
        MsgFlags::empty(),
        document_bytes(body),
    )
}

/// An OP_MSG frame with the given flags around an already-encoded body.
pub fn msg_reply_bytes(request_id: i32, response_to: i32, flags: MsgFlags, body: Bytes) -> Frame {
    crate::frame::Message::Msg(OpMsg::new(flags, body)).to_frame(request_id, response_to)
}

/// An OP_REPLY command-reply frame holding `body`.
pub fn op_reply(request_id: i32, response_to: i32, body: &Document) -> Frame {
    crate::frame::Message::Reply(OpReply::command_reply(document_bytes(body)))
        .to_frame(request_id, response_to)
}

/// An error reply in the opcode family of the request: OP_REPLY for an
/// OP_QUERY request, OP_MSG otherwise.
pub fn error_reply(request_id: i32, response_to: i32, legacy: bool, err: &ErrorReply) -> Frame {
    let body = err.to_document();
    if legacy {
        op_reply(request_id, response_to, &body)
    } else {
        msg_reply(request_id, response_to, &body)
    }
}
