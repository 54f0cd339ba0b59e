//! The legacy request opcodes MongoDB 5.1+ no longer accepts: OP_GET_MORE,
//! OP_KILL_CURSORS, OP_INSERT, OP_UPDATE, OP_DELETE. Parsed from a frame's
//! body (after the 16-byte header), every length checked against what is
//! there; encoders for tests and tools.
//!
//! ```text
//! OP_UPDATE       int32 ZERO; cstring ns; int32 flags (Upsert 1, MultiUpdate 2); doc selector; doc update
//! OP_INSERT       int32 flags (ContinueOnError 1); cstring ns; doc+
//! OP_GET_MORE     int32 ZERO; cstring ns; int32 numberToReturn; int64 cursorID
//! OP_DELETE       int32 ZERO; cstring ns; int32 flags (SingleRemove 1); doc selector
//! OP_KILL_CURSORS int32 ZERO; int32 numberOfCursorIDs; int64 cursorIDs*
//! ```

use bytes::Bytes;

use crate::bytes_util::{cstring, document_len, need};
use crate::error::WireError;
use crate::header::{read_i32, read_i64, MsgHeader, OpCode, HEADER_LEN};

/// OP_KILL_CURSORS may name at most this many cursors (the server's limit).
pub const MAX_KILL_CURSORS: i32 = 29_999;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpGetMore {
    pub full_collection_name: String,
    pub number_to_return: i32,
    pub cursor_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpKillCursors {
    pub cursor_ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpInsert {
    /// Bit 0: ContinueOnError (the batch is unordered).
    pub flags: i32,
    pub full_collection_name: String,
    /// The documents, back to back, each checked.
    pub documents: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpUpdate {
    pub full_collection_name: String,
    /// Bit 0: Upsert; bit 1: MultiUpdate.
    pub flags: i32,
    pub selector: Bytes,
    pub update: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpDelete {
    pub full_collection_name: String,
    /// Bit 0: SingleRemove.
    pub flags: i32,
    pub selector: Bytes,
}

/// A parsed legacy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyOp {
    GetMore(OpGetMore),
    KillCursors(OpKillCursors),
    Insert(OpInsert),
    Update(OpUpdate),
    Delete(OpDelete),
}

impl OpInsert {
    pub fn continue_on_error(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The documents, one slice each.
    pub fn documents(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let len = document_len(&self.documents, at, "OP_INSERT document").ok()?;
            let d = &self.documents[at..at + len];
            at += len;
            Some(d)
        })
    }
}

impl OpUpdate {
    pub fn upsert(&self) -> bool {
        self.flags & 1 != 0
    }
    pub fn multi(&self) -> bool {
        self.flags & 2 != 0
    }
}

impl OpDelete {
    pub fn single(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `db.coll` → (`db`, `coll`). The collection may contain dots; the
/// database may not be empty.
pub fn split_namespace(ns: &str) -> Option<(&str, &str)> {
    let (db, coll) = ns.split_once('.')?;
    (!db.is_empty() && !coll.is_empty()).then_some((db, coll))
}

struct Reader<'a> {
    body: &'a Bytes,
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn i32(&mut self) -> Result<i32, WireError> {
        need(self.body, self.at, 4, self.what)?;
        let v = read_i32(self.body, self.at);
        self.at += 4;
        Ok(v)
    }

    fn i64(&mut self) -> Result<i64, WireError> {
        need(self.body, self.at, 8, self.what)?;
        let v = read_i64(self.body, self.at);
        self.at += 8;
        Ok(v)
    }

    fn cstring(&mut self) -> Result<String, WireError> {
        let (s, used) = cstring(self.body, self.at, self.what)?;
        self.at += used;
        Ok(s.to_string())
    }

    fn document(&mut self) -> Result<Bytes, WireError> {
        let len = document_len(self.body, self.at, self.what)?;
        let d = self.body.slice(self.at..self.at + len);
        bson::RawDocument::from_bytes(&d).map_err(|e| WireError::BadBson {
            what: self.what,
            detail: e.to_string(),
        })?;
        self.at += len;
        Ok(d)
    }

    fn end(&self) -> Result<(), WireError> {
        match self.body.len() - self.at.min(self.body.len()) {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes {
                what: self.what,
                extra,
            }),
        }
    }
}

impl LegacyOp {
    /// Parses the body (what follows the header) of a frame of `op_code`.
    pub fn parse(op_code: OpCode, body: &Bytes) -> Result<LegacyOp, WireError> {
        let what = match op_code {
            OpCode::GetMore => "OP_GET_MORE",
            OpCode::KillCursors => "OP_KILL_CURSORS",
            OpCode::Insert => "OP_INSERT",
            OpCode::Update => "OP_UPDATE",
            OpCode::Delete => "OP_DELETE",
            other => return Err(WireError::UnexpectedOpcode(other.as_i32())),
        };
        let mut r = Reader { body, at: 0, what };
        let op = match op_code {
            OpCode::GetMore => {
                r.i32()?;
                LegacyOp::GetMore(OpGetMore {
                    full_collection_name: r.cstring()?,
                    number_to_return: r.i32()?,
                    cursor_id: r.i64()?,
                })
            }
            OpCode::KillCursors => {
                r.i32()?;
                let n = r.i32()?;
                if !(1..=MAX_KILL_CURSORS).contains(&n) {
                    return Err(WireError::BadKillCursorsCount(n));
                }
                let mut cursor_ids = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    cursor_ids.push(r.i64()?);
                }
                LegacyOp::KillCursors(OpKillCursors { cursor_ids })
            }
            OpCode::Insert => {
                let flags = r.i32()?;
                let full_collection_name = r.cstring()?;
                let start = r.at;
                while r.at < body.len() {
                    r.document()?;
                }
                if r.at == start {
                    return Err(WireError::Truncated {
                        what,
                        needed: 5,
                        available: 0,
                    });
                }
                LegacyOp::Insert(OpInsert {
                    flags,
                    full_collection_name,
                    documents: body.slice(start..r.at),
                })
            }
            OpCode::Update => {
                r.i32()?;
                LegacyOp::Update(OpUpdate {
                    full_collection_name: r.cstring()?,
                    flags: r.i32()?,
                    selector: r.document()?,
                    update: r.document()?,
                })
            }
            _ => {
                r.i32()?;
                LegacyOp::Delete(OpDelete {
                    full_collection_name: r.cstring()?,
                    flags: r.i32()?,
                    selector: r.document()?,
                })
            }
        };
        r.end()?;
        Ok(op)
    }

    pub fn op_code(&self) -> OpCode {
        match self {
            LegacyOp::GetMore(_) => OpCode::GetMore,
            LegacyOp::KillCursors(_) => OpCode::KillCursors,
            LegacyOp::Insert(_) => OpCode::Insert,
            LegacyOp::Update(_) => OpCode::Update,
            LegacyOp::Delete(_) => OpCode::Delete,
        }
    }

    /// The frame of this request (for tests, tools and fuzzing).
    pub fn encode(&self, request_id: i32) -> Vec<u8> {
        let mut b = Vec::new();
        let cstr = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        };
        match self {
            LegacyOp::GetMore(g) => {
                b.extend_from_slice(&0i32.to_le_bytes());
                cstr(&mut b, &g.full_collection_name);
                b.extend_from_slice(&g.number_to_return.to_le_bytes());
                b.extend_from_slice(&g.cursor_id.to_le_bytes());
            }
            LegacyOp::KillCursors(k) => {
                b.extend_from_slice(&0i32.to_le_bytes());
                b.extend_from_slice(&(k.cursor_ids.len() as i32).to_le_bytes());
                for id in &k.cursor_ids {
                    b.extend_from_slice(&id.to_le_bytes());
                }
            }
            LegacyOp::Insert(i) => {
                b.extend_from_slice(&i.flags.to_le_bytes());
                cstr(&mut b, &i.full_collection_name);
                b.extend_from_slice(&i.documents);
            }
            LegacyOp::Update(u) => {
                b.extend_from_slice(&0i32.to_le_bytes());
                cstr(&mut b, &u.full_collection_name);
                b.extend_from_slice(&u.flags.to_le_bytes());
                b.extend_from_slice(&u.selector);
                b.extend_from_slice(&u.update);
            }
            LegacyOp::Delete(d) => {
                b.extend_from_slice(&0i32.to_le_bytes());
                cstr(&mut b, &d.full_collection_name);
                b.extend_from_slice(&d.flags.to_le_bytes());
                b.extend_from_slice(&d.selector);
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + b.len());
        MsgHeader {
            message_length: (HEADER_LEN + b.len()) as i32,
            request_id,
            response_to: 0,
            op_code: self.op_code(),
        }
        .write_to(&mut out);
        out.extend_from_slice(&b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Limits, Message};
    use bson::doc;

    fn d(x: bson::Document) -> Bytes {
        crate::reply::document_bytes(&x)
    }

    fn round_trip(op: LegacyOp) {
        let raw = op.encode(7);
        let f = Frame::from_bytes(Bytes::from(raw), usize::MAX).unwrap();
        let Message::Legacy { op_code, body } = f.parse(&Limits::default()).unwrap() else {
            panic!("not legacy")
        };
        assert_eq!(LegacyOp::parse(op_code, &body).unwrap(), op);
    }

    #[test]
    fn every_legacy_op_round_trips() {
        round_trip(LegacyOp::GetMore(OpGetMore {
            full_collection_name: "db.c".into(),
            number_to_return: 5,
            cursor_id: 1 << 40,
        }));
        round_trip(LegacyOp::KillCursors(OpKillCursors {
            cursor_ids: vec![1, 2, 3],
        }));
        let mut docs = d(doc! {"_id": 1}).to_vec();
        docs.extend_from_slice(&d(doc! {"_id": 2, "x": "y"}));
        let ins = OpInsert {
            flags: 1,
            full_collection_name: "db.c.d".into(),
            documents: Bytes::from(docs),
        };
        assert!(ins.continue_on_error());
        assert_eq!(ins.documents().count(), 2);
        round_trip(LegacyOp::Insert(ins));
        let up = OpUpdate {
            full_collection_name: "db.c".into(),
            flags: 3,
            selector: d(doc! {"_id": 1}),
            update: d(doc! {"$inc": {"n": 1}}),
        };
        assert!(up.upsert() && up.multi());
        round_trip(LegacyOp::Update(up));
        let del = OpDelete {
            full_collection_name: "db.c".into(),
            flags: 1,
            selector: d(doc! {}),
        };
        assert!(del.single());
        round_trip(LegacyOp::Delete(del));
    }

    #[test]
    fn bad_legacy_bodies_are_errors_not_panics() {
        let kill0 = {
            let mut b = 0i32.to_le_bytes().to_vec();
            b.extend_from_slice(&0i32.to_le_bytes());
            Bytes::from(b)
        };
        assert!(matches!(
            LegacyOp::parse(OpCode::KillCursors, &kill0),
            Err(WireError::BadKillCursorsCount(0))
        ));
        // Says 3 cursors, holds 1.
        let mut b = 0i32.to_le_bytes().to_vec();
        b.extend_from_slice(&3i32.to_le_bytes());
        b.extend_from_slice(&9i64.to_le_bytes());
        assert!(LegacyOp::parse(OpCode::KillCursors, &Bytes::from(b)).is_err());
        // An insert with no document, a truncated one, trailing bytes.
        let mut b = 0i32.to_le_bytes().to_vec();
        b.extend_from_slice(b"db.c\0");
        assert!(LegacyOp::parse(OpCode::Insert, &Bytes::from(b.clone())).is_err());
        b.extend_from_slice(&[20, 0, 0, 0, 1]);
        assert!(LegacyOp::parse(OpCode::Insert, &Bytes::from(b)).is_err());
        let mut g = LegacyOp::GetMore(OpGetMore {
            full_collection_name: "a.b".into(),
            number_to_return: 0,
            cursor_id: 1,
        })
        .encode(1);
        g.push(0);
        let body = Bytes::from(g[HEADER_LEN..].to_vec());
        assert!(matches!(
            LegacyOp::parse(OpCode::GetMore, &body),
            Err(WireError::TrailingBytes { .. })
        ));
        // Every truncation of the valid body (one byte shorter than `body`).
        for n in 0..body.len() - 1 {
            assert!(LegacyOp::parse(OpCode::GetMore, &body.slice(..n)).is_err());
        }
        assert!(LegacyOp::parse(OpCode::Msg, &body).is_err());
    }

    #[test]
    fn namespaces_split_at_the_first_dot() {
        assert_eq!(split_namespace("db.c.d"), Some(("db", "c.d")));
        assert_eq!(split_namespace("db.$cmd"), Some(("db", "$cmd")));
        assert_eq!(split_namespace("db"), None);
        assert_eq!(split_namespace(".c"), None);
        assert_eq!(split_namespace("db."), None);
    }
}
