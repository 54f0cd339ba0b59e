//! OP_INSERT, OP_UPDATE and OP_DELETE → write commands, and the
//! connection's "last error" that `getLastError` reads.
//!
//! The legacy write opcodes get no reply: a driver learns a write's fate by
//! sending `getLastError` next (old drivers put it in the same socket write,
//! right behind the write). holdfast runs each legacy write as a write
//! command before it reads the client's next frame, keeps the result as the
//! connection's last error, and answers `getLastError` from it with the
//! fields MongoDB gave (`ok, err, code, n, updatedExisting, upserted,
//! wtimeout, …`). A `getLastError` already waiting right behind the write
//! gives the write its write concern (`w`, `wtimeout`, `j`, `fsync`); without
//! one the write runs with `w: "majority"` (the connection's choice, in
//! `client/legacy.rs`), so that a later `getLastError` asking for any usual
//! write concern reads a result that satisfies it.

use bson::{doc, Bson, Document, RawBsonRef, RawDocument};
use bytes::Bytes;
use holdfast_wire::legacy::{split_namespace, OpDelete, OpInsert, OpUpdate};
use holdfast_wire::msg::{DocumentSequence, MsgFlags, OpMsg};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::values::as_i64;
use holdfast_wire::{codes, OpQuery};

use super::LegacyError;

/// Which legacy write a last error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// What the last legacy write on a connection did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastError {
    pub n: i64,
    pub err: Option<String>,
    pub code: Option<i32>,
    pub updated_existing: Option<bool>,
    pub upserted: Option<Bson>,
    pub wtimeout: bool,
}

fn namespace(ns: &str) -> Result<(&str, &str), LegacyError> {
    split_namespace(ns)
        .ok_or_else(|| LegacyError::new(73, format!("Invalid namespace specified '{ns}'")))
}

fn decoded(b: &[u8]) -> Result<Document, LegacyError> {
    Document::from_reader(b).map_err(|e| LegacyError::new(codes::INVALID_BSON, e.to_string()))
}

fn with_concern(mut body: Document, db: &str, wc: Option<&Document>) -> Bytes {
    if let Some(wc) = wc {
        body.insert("writeConcern", wc.clone());
    }
    body.insert("$db", db);
    document_bytes(&body)
}

/// `insert` with the documents as a document sequence (not copied into the
/// body); ContinueOnError → `ordered: false`.
pub fn insert(op: &OpInsert, wc: Option<&Document>) -> Result<OpMsg, LegacyError> {
    let (db, coll) = namespace(&op.full_collection_name)?;
    let body = doc! {"insert": coll, "ordered": !op.continue_on_error()};
    let mut msg = OpMsg::new(MsgFlags::empty(), with_concern(body, db, wc));
    msg.sequences
        .push(DocumentSequence::new("documents", op.documents.clone()));
    Ok(msg)
}

/// `update` with one statement: Upsert, MultiUpdate as its flags.
pub fn update(op: &OpUpdate, wc: Option<&Document>) -> Result<OpMsg, LegacyError> {
    let (db, coll) = namespace(&op.full_collection_name)?;
    let statement = doc! {
        "q": decoded(&op.selector)?,
        "u": decoded(&op.update)?,
        "upsert": op.upsert(),
        "multi": op.multi(),
    };
    let body = doc! {"update": coll, "updates": [statement], "ordered": true};
    Ok(OpMsg::new(MsgFlags::empty(), with_concern(body, db, wc)))
}

/// `delete` with one statement: SingleRemove → `limit: 1`, else `limit: 0`.
pub fn delete(op: &OpDelete, wc: Option<&Document>) -> Result<OpMsg, LegacyError> {
    let (db, coll) = namespace(&op.full_collection_name)?;
    let statement = doc! {"q": decoded(&op.selector)?, "limit": i32::from(op.single())};
    let body = doc! {"delete": coll, "deletes": [statement], "ordered": true};
    Ok(OpMsg::new(MsgFlags::empty(), with_concern(body, db, wc)))
}

/// If `q` is a `getLastError` (on `<db>.$cmd`), the write concern it asks
/// for: `w` (default 1), `wtimeout`, `j` (`fsync: true` asks for the
/// journal, as on servers without mmapv1).
pub fn get_last_error_concern(q: &OpQuery) -> Option<Document> {
    q.command_db()?;
    let outer = q.query_doc().ok()?;
    let cmd = match outer.iter().next()?.ok()? {
        ("$query" | "query", RawBsonRef::Document(inner)) => inner,
        _ => outer,
    };
    let (name, _) = cmd.iter().next()?.ok()?;
    if !name.eq_ignore_ascii_case("getlasterror") {
        return None;
    }
    Some(concern_of(cmd))
}

fn concern_of(cmd: &RawDocument) -> Document {
    let mut wc = doc! {};
    match cmd.get("w") {
        Ok(Some(v)) => {
            wc.insert("w", Bson::try_from(v).unwrap_or(Bson::Int32(1)));
        }
        _ => {
            wc.insert("w", 1);
        }
    }
    if let Ok(Some(v)) = cmd.get("wtimeout") {
        if let Some(ms) = as_i64(v) {
            wc.insert("wtimeout", ms);
        }
    }
    let truthy =
        |k| matches!(cmd.get(k), Ok(Some(v)) if holdfast_wire::values::as_bool(v) == Some(true));
    if truthy("j") || truthy("fsync") {
        wc.insert("j", true);
    }
    wc
}

impl LastError {
    /// The last error after a write command of `kind` answered `reply`.
    pub fn from_reply(kind: WriteKind, reply: &Document) -> LastError {
        let mut e = LastError::default();
        let num = |d: &Document, k: &str| d.get(k).and_then(holdfast_wire::values::bson_as_i64);
        if num(reply, "ok") != Some(1) {
            e.err = Some(
                reply
                    .get_str("errmsg")
                    .unwrap_or("unknown error")
                    .to_string(),
            );
            e.code = num(reply, "code").map(|c| c as i32);
            return e;
        }
        let n = num(reply, "n").unwrap_or(0);
        let upserted = reply
            .get_array("upserted")
            .ok()
            .and_then(|u| u.first())
            .and_then(|u| u.as_document())
            .and_then(|u| u.get("_id").cloned());
        match kind {
            // Legacy servers reported n: 0 for inserts.
            WriteKind::Insert => e.n = 0,
            WriteKind::Update => {
                e.n = n;
                e.updated_existing = Some(n > 0 && upserted.is_none());
                e.upserted = upserted;
            }
            WriteKind::Delete => e.n = n,
        }
        // With ContinueOnError the last failure is the one reported.
        if let Some(w) = reply
            .get_array("writeErrors")
            .ok()
            .and_then(|a| a.last())
            .and_then(|w| w.as_document())
        {
            e.err = Some(w.get_str("errmsg").unwrap_or("write error").to_string());
            e.code = num(w, "code").map(|c| c as i32);
        } else if let Ok(wce) = reply.get_document("writeConcernError") {
            e.err = Some(
                wce.get_str("errmsg")
                    .unwrap_or("write concern error")
                    .to_string(),
            );
            e.code = num(wce, "code").map(|c| c as i32);
            let info_timeout = wce
                .get_document("errInfo")
                .ok()
                .and_then(|i| i.get_bool("wtimeout").ok())
                .unwrap_or(false);
            e.wtimeout = info_timeout || e.code == Some(codes::WRITE_CONCERN_FAILED);
        }
        e
    }

    /// A write holdfast could not run (translation error).
    pub fn failed(err: &LegacyError) -> LastError {
        LastError {
            err: Some(err.message.clone()),
            code: Some(err.code),
            ..LastError::default()
        }
    }

    /// The `getLastError` reply MongoDB gave for this state (a not-primary
    /// `err` in the legacy form, as [`super::replies::legacy_errmsg`]).
    pub fn reply(&self, connection_id: i64) -> Document {
        let mut d = doc! {"connectionId": connection_id};
        if let Some(u) = self.updated_existing {
            d.insert("updatedExisting", u);
        }
        if let Some(id) = &self.upserted {
            d.insert("upserted", id.clone());
        }
        d.insert("n", self.n);
        d.insert("syncMillis", 0);
        d.insert("writtenTo", Bson::Null);
        match &self.err {
            Some(err) => {
                let err = match self.code {
                    Some(c) => super::replies::legacy_errmsg(c, err).into_owned(),
                    None => err.clone(),
                };
                d.insert("err", err);
                if let Some(c) = self.code {
                    d.insert("code", c);
                    d.insert("codeName", codes::name(c));
                }
            }
            None => {
                d.insert("err", Bson::Null);
            }
        }
        if self.wtimeout {
            d.insert("wtimeout", true);
        }
        d.insert("ok", 1.0);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_wire::QueryFlags;

    fn gle(q: Document) -> OpQuery {
        OpQuery {
            flags: QueryFlags::empty(),
            full_collection_name: "app.$cmd".into(),
            number_to_skip: 0,
            number_to_return: -1,
            query: document_bytes(&q),
            return_fields_selector: None,
        }
    }

    #[test]
    fn inserts_keep_their_documents_as_a_sequence() {
        let mut docs = document_bytes(&doc! {"_id": 1}).to_vec();
        docs.extend_from_slice(&document_bytes(&doc! {"_id": 2}));
        let op = OpInsert {
            flags: 1,
            full_collection_name: "app.c".into(),
            documents: Bytes::from(docs),
        };
        let m = insert(&op, Some(&doc! {"w": "majority"})).unwrap();
        let body = Document::from_reader(&m.body[..]).unwrap();
        assert_eq!(
            body,
            doc! {"insert": "c", "ordered": false, "writeConcern": {"w": "majority"}, "$db": "app"}
        );
        assert_eq!(m.sequences[0].identifier, "documents");
        assert_eq!(m.sequences[0].count(), 2);
        let m = insert(&OpInsert { flags: 0, ..op }, None).unwrap();
        let body = Document::from_reader(&m.body[..]).unwrap();
        assert!(body.get_bool("ordered").unwrap() && !body.contains_key("writeConcern"));
    }

    #[test]
    fn updates_and_deletes_are_one_statement() {
        let sel = document_bytes(&doc! {"_id": 1});
        let u = OpUpdate {
            full_collection_name: "app.c".into(),
            flags: 1,
            selector: sel.clone(),
            update: document_bytes(&doc! {"$inc": {"n": 1}}),
        };
        let body = Document::from_reader(&update(&u, None).unwrap().body[..]).unwrap();
        assert_eq!(
            body,
            doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}, "upsert": true, "multi": false}], "ordered": true, "$db": "app"}
        );
        for (flags, limit) in [(1, 1), (0, 0)] {
            let d = OpDelete {
                full_collection_name: "app.c".into(),
                flags,
                selector: sel.clone(),
            };
            let body = Document::from_reader(&delete(&d, None).unwrap().body[..]).unwrap();
            assert_eq!(
                body.get_array("deletes").unwrap()[0]
                    .as_document()
                    .unwrap()
                    .get_i32("limit")
                    .unwrap(),
                limit
            );
        }
        let bad = OpDelete {
            full_collection_name: "nodb".into(),
            flags: 0,
            selector: sel,
        };
        assert_eq!(delete(&bad, None).unwrap_err().code, 73);
    }

    #[test]
    fn a_pipelined_get_last_error_gives_the_write_concern() {
        assert_eq!(
            get_last_error_concern(&gle(
                doc! {"getlasterror": 1, "w": 2, "wtimeout": 500, "fsync": true}
            )),
            Some(doc! {"w": 2, "wtimeout": 500i64, "j": true})
        );
        assert_eq!(
            get_last_error_concern(&gle(doc! {"getLastError": 1})),
            Some(doc! {"w": 1})
        );
        assert_eq!(
            get_last_error_concern(&gle(
                doc! {"$query": {"getlasterror": 1, "w": "majority", "j": 1}}
            )),
            Some(doc! {"w": "majority", "j": true})
        );
        assert_eq!(get_last_error_concern(&gle(doc! {"ping": 1})), None);
        let mut find = gle(doc! {"getlasterror": 1});
        find.full_collection_name = "app.c".into();
        assert_eq!(get_last_error_concern(&find), None);
    }

    #[test]
    fn last_errors_read_like_mongodb_gave_them() {
        let ok = LastError::from_reply(WriteKind::Insert, &doc! {"n": 3, "ok": 1.0});
        assert_eq!(
            ok.reply(7),
            doc! {"connectionId": 7i64, "n": 0i64, "syncMillis": 0, "writtenTo": Bson::Null, "err": Bson::Null, "ok": 1.0}
        );
        let dup = LastError::from_reply(
            WriteKind::Insert,
            &doc! {"n": 1, "writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key error"}], "ok": 1.0},
        );
        let r = dup.reply(1);
        assert_eq!(r.get_str("err").unwrap(), "E11000 duplicate key error");
        assert_eq!(r.get_i32("code").unwrap(), 11000);
        let up = LastError::from_reply(
            WriteKind::Update,
            &doc! {"n": 1, "nModified": 0, "upserted": [{"index": 0, "_id": 100}], "ok": 1.0},
        );
        let r = up.reply(1);
        assert!(!r.get_bool("updatedExisting").unwrap());
        assert_eq!(r.get_i32("upserted").unwrap(), 100);
        assert_eq!(r.get_i64("n").unwrap(), 1);
        let existing =
            LastError::from_reply(WriteKind::Update, &doc! {"n": 2, "nModified": 2, "ok": 1.0});
        assert!(existing.reply(1).get_bool("updatedExisting").unwrap());
        let del = LastError::from_reply(WriteKind::Delete, &doc! {"n": 4, "ok": 1.0});
        assert_eq!(del.reply(1).get_i64("n").unwrap(), 4);
        let wto = LastError::from_reply(
            WriteKind::Insert,
            &doc! {"n": 1, "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out", "errInfo": {"wtimeout": true}}, "ok": 1.0},
        );
        assert!(wto.reply(1).get_bool("wtimeout").unwrap());
        let failed = LastError::from_reply(
            WriteKind::Update,
            &doc! {"ok": 0.0, "code": 11602, "errmsg": "holdfast: the primary changed"},
        );
        let r = failed.reply(1);
        assert_eq!(r.get_i32("code").unwrap(), 11602);
        assert_eq!(
            r.get_str("err").unwrap(),
            "not master: holdfast: the primary changed",
            "pymongo 3.x raises NotMasterError only on 'not master'"
        );
        assert_eq!(
            r.get_f64("ok").unwrap(),
            1.0,
            "getLastError itself succeeds"
        );
    }
}
