//! OP_REPLY in the legacy conventions: command replies in-band (flags
//! AwaitCapable, one document), query results with their cursor id and
//! `startingFrom`, failures as QueryFailure with `{$err, code}`, a lost
//! cursor as the CursorNotFound flag with no document.
//!
//! Drivers of the OP_QUERY era recognise "not primary" by the message, not
//! the code: pymongo 3.x raises `NotMasterError` (an `AutoReconnect`) only
//! when `errmsg`, `$err` or getLastError's `err` starts with "not master".
//! So every error of the not-primary and state-change families (10107,
//! 11602, …) that goes back to a legacy request starts with
//! [`NOT_MASTER`] ([`legacy_errmsg`]); OP_MSG replies keep their message.

use std::borrow::Cow;

use bson::{doc, Bson, Document, RawBsonRef, RawDocument};
use bytes::Bytes;
use holdfast_wire::codes;
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{OpReply, ReplyFlags};

/// How MongoDB before 4.2 began its not-primary messages ("not master",
/// "not master and slaveOk=false", …), which legacy drivers match on.
pub const NOT_MASTER: &str = "not master";

/// `errmsg` as a legacy client must read it: an error of the not-primary or
/// state-change family gets the prefix "not master: " (unless it already
/// starts with "not master"); any other error is left as it is.
pub fn legacy_errmsg(code: i32, errmsg: &str) -> Cow<'_, str> {
    if codes::is_state_change(code) && !errmsg.starts_with(NOT_MASTER) {
        Cow::Owned(format!("{NOT_MASTER}: {errmsg}"))
    } else {
        Cow::Borrowed(errmsg)
    }
}

/// A command's reply body, in-band; a not-primary error's `errmsg` in the
/// legacy form ([`legacy_errmsg`]).
pub fn command(body: Bytes) -> OpReply {
    OpReply::command_reply(legacy_body(body))
}

/// `body` with its `errmsg` in the legacy form, if it is a failure of the
/// not-primary or state-change family (re-encoded only then).
fn legacy_body(body: Bytes) -> Bytes {
    let Ok(raw) = RawDocument::from_bytes(&body) else {
        return body;
    };
    let Some((code, errmsg)) = failure(raw) else {
        return body;
    };
    let Cow::Owned(legacy) = legacy_errmsg(code, &errmsg) else {
        return body;
    };
    let Ok(mut d) = Document::try_from(raw) else {
        return body;
    };
    d.insert("errmsg", Bson::String(legacy));
    document_bytes(&d)
}

/// The documents of a query or getMore reply.
pub fn documents(cursor_id: i64, starting_from: i32, docs: Bytes, count: i32) -> OpReply {
    OpReply {
        response_flags: ReplyFlags::AWAIT_CAPABLE,
        cursor_id,
        starting_from,
        number_returned: count,
        documents: docs,
    }
}

/// A failed query or getMore: QueryFailure with one `{$err, code}` (`$err`
/// in the legacy form, [`legacy_errmsg`]).
pub fn query_failure(code: i32, errmsg: &str) -> OpReply {
    let errmsg = legacy_errmsg(code, errmsg);
    OpReply {
        response_flags: ReplyFlags::QUERY_FAILURE,
        cursor_id: 0,
        starting_from: 0,
        number_returned: 1,
        documents: document_bytes(&doc! {"$err": errmsg.as_ref(), "code": code, "ok": 0.0}),
    }
}

/// A getMore of a cursor that no longer exists.
pub fn cursor_not_found() -> OpReply {
    OpReply {
        response_flags: ReplyFlags::CURSOR_NOT_FOUND,
        cursor_id: 0,
        starting_from: 0,
        number_returned: 0,
        documents: Bytes::new(),
    }
}

/// One batch of a cursor reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub cursor_id: i64,
    /// The documents, back to back (copied as bytes, not decoded).
    pub documents: Bytes,
    pub count: i32,
}

/// `cursor.firstBatch` / `cursor.nextBatch` of a `find`/`getMore` reply.
pub fn batch(body: &RawDocument) -> Option<Batch> {
    let cursor = match body.get("cursor").ok()?? {
        RawBsonRef::Document(c) => c,
        _ => return None,
    };
    let id = match cursor.get("id").ok()?? {
        RawBsonRef::Int64(i) => i,
        RawBsonRef::Int32(i) => i as i64,
        _ => return None,
    };
    let docs = ["firstBatch", "nextBatch"]
        .iter()
        .find_map(|k| cursor.get_array(k).ok())?;
    let mut out = Vec::new();
    let mut count = 0;
    for d in docs {
        match d.ok()? {
            RawBsonRef::Document(d) => out.extend_from_slice(d.as_bytes()),
            _ => return None,
        }
        count += 1;
    }
    Some(Batch {
        cursor_id: id,
        documents: Bytes::from(out),
        count,
    })
}

/// `{ok, code, errmsg}` of a failed reply body: (code, errmsg).
pub fn failure(body: &RawDocument) -> Option<(i32, String)> {
    let ok = match body.get("ok").ok()?? {
        RawBsonRef::Double(d) => d == 1.0,
        RawBsonRef::Int32(i) => i == 1,
        RawBsonRef::Int64(i) => i == 1,
        _ => false,
    };
    if ok {
        return None;
    }
    let code = match body.get("code") {
        Ok(Some(RawBsonRef::Int32(c))) => c,
        Ok(Some(RawBsonRef::Int64(c))) => c as i32,
        Ok(Some(RawBsonRef::Double(c))) => c as i32,
        _ => holdfast_wire::codes::INTERNAL_ERROR,
    };
    let errmsg = match body.get("errmsg") {
        Ok(Some(RawBsonRef::String(s))) => s.to_string(),
        _ => "command failed".to_string(),
    };
    Some((code, errmsg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Document;
    use holdfast_wire::{Frame, Limits, Message};

    fn raw(d: Document) -> Bytes {
        document_bytes(&d)
    }

    #[test]
    fn batches_are_copied_out_of_cursor_replies() {
        let b = raw(
            doc! {"cursor": {"firstBatch": [{"_id": 1}, {"_id": 2}], "id": 99i64, "ns": "d.c"}, "ok": 1.0},
        );
        let got = batch(RawDocument::from_bytes(&b).unwrap()).unwrap();
        assert_eq!((got.cursor_id, got.count), (99, 2));
        let mut want = raw(doc! {"_id": 1}).to_vec();
        want.extend_from_slice(&raw(doc! {"_id": 2}));
        assert_eq!(&got.documents[..], &want[..]);
        let b = raw(doc! {"cursor": {"nextBatch": [], "id": 0i64}, "ok": 1.0});
        assert_eq!(
            batch(RawDocument::from_bytes(&b).unwrap()).unwrap().count,
            0
        );
        let b = raw(doc! {"ok": 1.0});
        assert!(batch(RawDocument::from_bytes(&b).unwrap()).is_none());
    }

    #[test]
    fn replies_have_the_legacy_flags() {
        let f = Message::Reply(query_failure(43, "gone")).to_frame(1, 2);
        let Message::Reply(r) = f.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
        let d = Document::from_reader(&r.documents[..]).unwrap();
        assert_eq!(
            (d.get_str("$err").unwrap(), d.get_i32("code").unwrap()),
            ("gone", 43)
        );
        let f: Frame = Message::Reply(cursor_not_found()).to_frame(1, 2);
        let Message::Reply(r) = f.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        assert!(r.response_flags.contains(ReplyFlags::CURSOR_NOT_FOUND));
        assert_eq!(r.number_returned, 0);
        let r = documents(5, 10, raw(doc! {"a": 1}), 1);
        assert!(r.response_flags.contains(ReplyFlags::AWAIT_CAPABLE));
        assert_eq!((r.cursor_id, r.starting_from), (5, 10));
    }

    fn first_doc(r: &OpReply) -> Document {
        Document::from_reader(&r.documents[..]).unwrap()
    }

    #[test]
    fn not_primary_errors_say_not_master_to_legacy_clients() {
        use holdfast_wire::codes::*;
        // Every code of the not-primary and state-change families.
        for code in [
            NOT_WRITABLE_PRIMARY,
            NOT_PRIMARY_NO_SECONDARY_OK,
            LEGACY_NOT_PRIMARY,
            INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
            INTERRUPTED_AT_SHUTDOWN,
            NOT_PRIMARY_OR_SECONDARY,
            PRIMARY_STEPPED_DOWN,
            SHUTDOWN_IN_PROGRESS,
        ] {
            let msg = "holdfast: no primary of rs0 is known; this find was not sent";
            let want = format!("not master: {msg}");
            assert_eq!(legacy_errmsg(code, msg), want, "{code}");
            // In-band command replies: errmsg rewritten, the rest kept.
            let body = raw(
                doc! {"ok": 0.0, "errmsg": msg, "code": code, "codeName": "X",
                "topologyVersion": {"counter": 1i64}},
            );
            let d = first_doc(&command(body));
            assert_eq!(d.get_str("errmsg").unwrap(), want);
            assert_eq!(
                d,
                doc! {"ok": 0.0, "errmsg": &want, "code": code, "codeName": "X",
                "topologyVersion": {"counter": 1i64}}
            );
            // QueryFailure: $err.
            let d = first_doc(&query_failure(code, msg));
            assert_eq!(d.get_str("$err").unwrap(), want);
            assert_eq!(d.get_i32("code").unwrap(), code);
        }
        // Already in the legacy form: unchanged.
        assert_eq!(
            legacy_errmsg(10107, "not master and slaveOk=false"),
            "not master and slaveOk=false"
        );
        // Other errors, and successes, are left alone (the same bytes).
        assert_eq!(
            legacy_errmsg(11000, "E11000 duplicate key"),
            "E11000 duplicate key"
        );
        assert_eq!(
            legacy_errmsg(43, "cursor id 5 not found"),
            "cursor id 5 not found"
        );
        for body in [
            raw(doc! {"ok": 0.0, "errmsg": "E11000 duplicate key", "code": 11000}),
            raw(doc! {"ok": 1.0, "n": 1}),
            raw(doc! {"ok": 0.0, "errmsg": "no such command", "code": 59}),
        ] {
            assert_eq!(command(body.clone()).documents, body);
        }
        assert_eq!(
            first_doc(&query_failure(2, "unknown query modifier"))
                .get_str("$err")
                .unwrap(),
            "unknown query modifier"
        );
    }

    #[test]
    fn failures_are_read_from_bodies() {
        let b = raw(doc! {"ok": 0.0, "code": 13435, "errmsg": "not primary"});
        assert_eq!(
            failure(RawDocument::from_bytes(&b).unwrap()),
            Some((13435, "not primary".into()))
        );
        let b = raw(doc! {"ok": 1});
        assert_eq!(failure(RawDocument::from_bytes(&b).unwrap()), None);
    }
}
