//! OP_QUERY (handshakes of older drivers) and OP_REPLY.

use bitflags::bitflags;
use bytes::Bytes;

use crate::bytes_util::{cstring, document_len, need, raw_document};
use crate::error::WireError;
use crate::header::{read_i32, read_i64, HEADER_LEN};

bitflags! {
    /// OP_QUERY flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct QueryFlags: i32 {
        const TAILABLE = 1 << 1;
        const SECONDARY_OK = 1 << 2;
        const OPLOG_REPLAY = 1 << 3;
        const NO_CURSOR_TIMEOUT = 1 << 4;
        const AWAIT_DATA = 1 << 5;
        const EXHAUST = 1 << 6;
        const PARTIAL = 1 << 7;
        const _ = !0;
    }
}

bitflags! {
    /// OP_REPLY responseFlags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ReplyFlags: i32 {
        const CURSOR_NOT_FOUND = 1 << 0;
        const QUERY_FAILURE = 1 << 1;
        const SHARD_CONFIG_STALE = 1 << 2;
        const AWAIT_CAPABLE = 1 << 3;
        const _ = !0;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpQuery {
    pub flags: QueryFlags,
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    /// The query document (for commands: the command, possibly wrapped in `$query`).
    pub query: Bytes,
    pub return_fields_selector: Option<Bytes>,
}

impl OpQuery {
    pub fn parse(frame: &Bytes) -> Result<OpQuery, WireError> {
        let buf = &frame[..];
        need(buf, HEADER_LEN, 4, "OP_QUERY flags")?;
        let flags = QueryFlags::from_bits_retain(read_i32(buf, HEADER_LEN));
        let mut at = HEADER_LEN + 4;
        let (name, used) = cstring(buf, at, "OP_QUERY fullCollectionName")?;
        let full_collection_name = name.to_string();
        at += used;
        need(buf, at, 8, "OP_QUERY numberToSkip/numberToReturn")?;
        let number_to_skip = read_i32(buf, at);
        let number_to_return = read_i32(buf, at + 4);
        at += 8;
        let qlen = document_len(buf, at, "OP_QUERY query")?;
        let query = frame.slice(at..at + qlen);
        at += qlen;
        let mut return_fields_selector = None;
        if at < buf.len() {
            let flen = document_len(buf, at, "OP_QUERY returnFieldsSelector")?;
            return_fields_selector = Some(frame.slice(at..at + flen));
            at += flen;
        }
        if at != buf.len() {
            return Err(WireError::TrailingBytes {
                what: "OP_QUERY",
                extra: buf.len() - at,
            });
        }
        Ok(OpQuery {
            flags,
            full_collection_name,
            number_to_skip,
            number_to_return,
            query,
            return_fields_selector,
        })
    }

    pub fn query_doc(&self) -> Result<&bson::RawDocument, WireError> {
        raw_document(&self.query, "OP_QUERY query")
    }

    /// For a command namespace `db.$cmd`, the database name.
    pub fn command_db(&self) -> Option<&str> {
        self.full_collection_name.strip_suffix(".$cmd")
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + 4
            + self.full_collection_name.len()
            + 1
            + 8
            + self.query.len()
            + self.return_fields_selector.as_ref().map_or(0, |b| b.len())
    }

    pub fn encode(&self, request_id: i32, response_to: i32, out: &mut Vec<u8>) {
        let len = self.encoded_len() as i32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&response_to.to_le_bytes());
        out.extend_from_slice(&2004i32.to_le_bytes());
        out.extend_from_slice(&self.flags.bits().to_le_bytes());
        out.extend_from_slice(self.full_collection_name.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.number_to_skip.to_le_bytes());
        out.extend_from_slice(&self.number_to_return.to_le_bytes());
        out.extend_from_slice(&self.query);
        if let Some(f) = &self.return_fields_selector {
            out.extend_from_slice(f);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpReply {
    pub response_flags: ReplyFlags,
    pub cursor_id: i64,
    pub starting_from: i32,
    pub number_returned: i32,
    /// The returned documents, back to back.
    pub documents: Bytes,
}

impl OpReply {
    /// A command reply as the server builds it: flags AwaitCapable, one document.
    pub fn command_reply(doc: Bytes) -> OpReply {
        OpReply {
            response_flags: ReplyFlags::AWAIT_CAPABLE,
            cursor_id: 0,
            starting_from: 0,
            number_returned: 1,
            documents: doc,
        }
    }

    pub fn parse(frame: &Bytes) -> Result<OpReply, WireError> {
        let buf = &frame[..];
        need(buf, HEADER_LEN, 20, "OP_REPLY fields")?;
        let response_flags = ReplyFlags::from_bits_retain(read_i32(buf, HEADER_LEN));
        let cursor_id = read_i64(buf, HEADER_LEN + 4);
        let starting_from = read_i32(buf, HEADER_LEN + 12);
        let number_returned = read_i32(buf, HEADER_LEN + 16);
        let start = HEADER_LEN + 20;
        let mut at = start;
        let mut count = 0usize;
        while at < buf.len() {
            at += document_len(buf, at, "OP_REPLY document")?;
            count += 1;
        }
        if number_returned < 0 || number_returned as usize != count {
            return Err(WireError::ReplyCountMismatch {
                declared: number_returned,
                actual: count,
            });
        }
        Ok(OpReply {
            response_flags,
            cursor_id,
            starting_from,
            number_returned,
            documents: frame.slice(start..),
        })
    }

    /// The first document (a command reply's body).
    pub fn first_doc(&self) -> Result<&bson::RawDocument, WireError> {
        let len = document_len(&self.documents, 0, "OP_REPLY document")?;
        raw_document(&self.documents[..len], "OP_REPLY document")
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + 20 + self.documents.len()
    }

    pub fn encode(&self, request_id: i32, response_to: i32, out: &mut Vec<u8>) {
        let len = self.encoded_len() as i32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&response_to.to_le_bytes());
        out.extend_from_slice(&1i32.to_le_bytes());
        out.extend_from_slice(&self.response_flags.bits().to_le_bytes());
        out.extend_from_slice(&self.cursor_id.to_le_bytes());
        out.extend_from_slice(&self.starting_from.to_le_bytes());
        out.extend_from_slice(&self.number_returned.to_le_bytes());
        out.extend_from_slice(&self.documents);
    }
}
