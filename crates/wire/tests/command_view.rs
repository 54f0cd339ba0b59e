//! The command view and classification, on frames built like drivers build them.

use bson::{doc, Bson, Document};
use bytes::Bytes;
use holdfast_wire::reply::document_bytes;
use holdfast_wire::*;

fn msg(d: Document) -> OpMsg {
    OpMsg::new(MsgFlags::empty(), document_bytes(&d))
}

fn class(d: Document) -> CommandClass {
    let m = msg(d);
    CommandView::from_msg(&m).unwrap().classify()
}

fn lsid() -> Document {
    doc! {"id": Bson::Binary(bson::Binary{subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16]})}
}

#[test]
fn view_extracts_every_field() {
    let m = msg(doc! {
        "find": "c", "filter": {"_id": 1}, "lsid": lsid(), "txnNumber": 5i64,
        "autocommit": false, "startTransaction": true,
        "$readPreference": {"mode": "primaryPreferred"}, "maxTimeMS": 1500,
        "writeConcern": {"w": 0}, "$db": "app"
    });
    let v = CommandView::from_msg(&m).unwrap();
    assert_eq!(v.name, "find");
    assert_eq!(v.db, Some("app"));
    assert!(v.lsid.is_some());
    assert_eq!(v.txn_number, Some(5));
    assert_eq!(v.autocommit, Some(false));
    assert!(v.start_transaction);
    assert_eq!(
        v.read_preference.unwrap().get_str("mode").unwrap(),
        "primaryPreferred"
    );
    assert_eq!(v.max_time_ms, Some(1500));
    assert!(v.write_concern_w0);
    assert!(v.is_unacknowledged());
    assert!(v.in_transaction());
}

#[test]
fn getmore_and_killcursors_ids() {
    let m = msg(doc! {"getMore": 1234567890123i64, "collection": "c", "$db": "d"});
    let v = CommandView::from_msg(&m).unwrap();
    assert_eq!(v.cursor_id, Some(1234567890123));
    assert_eq!(v.classify(), CommandClass::CursorContinuation);
    let m = msg(doc! {"killCursors": "c", "cursors": [5i64, 6i64], "$db": "d"});
    let v = CommandView::from_msg(&m).unwrap();
    assert_eq!(v.kill_cursor_ids(), vec![5, 6]);
    assert_eq!(v.classify(), CommandClass::CursorContinuation);
}

#[test]
fn retryable_read_list_is_exact() {
    for name in [
        "find",
        "aggregate",
        "distinct",
        "count",
        "listDatabases",
        "listCollections",
        "listIndexes",
    ] {
        assert_eq!(
            class(doc! {name: 1, "$db": "d"}),
            CommandClass::RetryableRead,
            "{name}"
        );
    }
    for name in ["mapReduce", "getMore", "geoSearch", "runCommandX"] {
        assert_ne!(
            class(doc! {name: 1, "$db": "d"}),
            CommandClass::RetryableRead,
            "{name}"
        );
    }
}

#[test]
fn aggregate_with_out_or_merge_is_a_write() {
    assert_eq!(
        class(doc! {"aggregate": "c", "pipeline": [{"$match": {}}, {"$out": "x"}], "$db": "d"}),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(doc! {"aggregate": "c", "pipeline": [{"$merge": {"into": "x"}}], "$db": "d"}),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(doc! {"aggregate": "c", "pipeline": [{"$out": "x"}, {"$match": {}}], "$db": "d"}),
        CommandClass::RetryableRead
    );
}

#[test]
fn retryable_write_rules() {
    let base = |extra: Document| {
        let mut d = doc! {"insert": "c", "lsid": lsid(), "txnNumber": 1i64, "$db": "d"};
        d.extend(extra);
        class(d)
    };
    assert_eq!(base(doc! {}), CommandClass::Write { retryable: true });
    assert_eq!(
        base(doc! {"writeConcern": {"w": 0}}),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(doc! {"insert": "c", "lsid": lsid(), "$db": "d"}),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(doc! {"insert": "c", "$db": "d"}),
        CommandClass::Write { retryable: false }
    );
    // multi update / limit 0 delete in the body
    assert_eq!(
        class(
            doc! {"update": "c", "updates": [{"q": {}, "u": {"$inc": {"n": 1}}, "multi": true}], "lsid": lsid(), "txnNumber": 1i64, "$db": "d"}
        ),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(
            doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0}], "lsid": lsid(), "txnNumber": 1i64, "$db": "d"}
        ),
        CommandClass::Write { retryable: false }
    );
    assert_eq!(
        class(
            doc! {"delete": "c", "deletes": [{"q": {}, "limit": 1}], "lsid": lsid(), "txnNumber": 1i64, "$db": "d"}
        ),
        CommandClass::Write { retryable: true }
    );
    assert_eq!(
        class(
            doc! {"findAndModify": "c", "query": {}, "update": {"$inc": {"n": 1}}, "lsid": lsid(), "txnNumber": 1i64, "$db": "d"}
        ),
        CommandClass::Write { retryable: true }
    );
    assert_eq!(
        class(doc! {"create": "c", "$db": "d"}),
        CommandClass::Write { retryable: false }
    );
}

#[test]
fn multi_update_in_a_kind1_sequence_is_seen() {
    let mut m = msg(doc! {"update": "c", "lsid": lsid(), "txnNumber": 1i64, "$db": "d"});
    let mut docs = Vec::new();
    docs.extend_from_slice(&document_bytes(
        &doc! {"q": {"a": 1}, "u": {"$set": {"b": 1}}},
    ));
    docs.extend_from_slice(&document_bytes(
        &doc! {"q": {}, "u": {"$set": {"b": 1}}, "multi": true},
    ));
    m.sequences
        .push(DocumentSequence::new("updates", Bytes::from(docs)));
    let v = CommandView::from_msg(&m).unwrap();
    assert!(v.multi_statement);
    assert_eq!(v.classify(), CommandClass::Write { retryable: false });
    assert_eq!(v.sequence("updates").unwrap().count(), 2);
}

#[test]
fn transactions() {
    let t = |name: &str| {
        class(
            doc! {name: 1, "lsid": lsid(), "txnNumber": 3i64, "autocommit": false, "$db": "admin"},
        )
    };
    assert_eq!(t("insert"), CommandClass::TransactionStatement);
    assert_eq!(t("find"), CommandClass::TransactionStatement);
    assert_eq!(t("getMore"), CommandClass::TransactionStatement);
    assert_eq!(t("commitTransaction"), CommandClass::CommitTransaction);
    assert_eq!(t("abortTransaction"), CommandClass::AbortTransaction);
}

#[test]
fn handshake_auth_and_others() {
    for n in ["hello", "isMaster", "ismaster"] {
        assert_eq!(class(doc! {n: 1, "$db": "admin"}), CommandClass::Handshake);
    }
    assert_eq!(
        class(doc! {"ISMASTER": 1, "$db": "admin"}),
        CommandClass::Other
    );
    for n in ["saslStart", "saslContinue", "authenticate"] {
        assert_eq!(class(doc! {n: 1, "$db": "admin"}), CommandClass::Auth);
    }
    assert_eq!(
        class(doc! {"ping": 1, "$db": "admin"}),
        CommandClass::Diagnostic
    );
    assert_eq!(
        class(doc! {"replSetStepDown": 1, "$db": "admin"}),
        CommandClass::Other
    );
}

#[test]
fn op_query_wrapper_and_read_preference() {
    let q = OpQuery {
        flags: QueryFlags::SECONDARY_OK,
        full_collection_name: "admin.$cmd".into(),
        number_to_skip: 0,
        number_to_return: -1,
        query: document_bytes(
            &doc! {"$query": {"isMaster": 1, "client": {"application": {"name": "x"}}}, "$readPreference": {"mode": "secondaryPreferred"}},
        ),
        return_fields_selector: None,
    };
    let v = CommandView::from_query(&q).unwrap();
    assert_eq!(v.name, "isMaster");
    assert_eq!(v.db, Some("admin"));
    assert_eq!(
        v.read_preference.unwrap().get_str("mode").unwrap(),
        "secondaryPreferred"
    );
    assert_eq!(v.classify(), CommandClass::Handshake);
    let q2 = OpQuery {
        query: document_bytes(&doc! {"query": {"ping": 1}}),
        ..q.clone()
    };
    assert_eq!(CommandView::from_query(&q2).unwrap().name, "ping");
    let q3 = OpQuery {
        query: document_bytes(&doc! {"isMaster": 1}),
        ..q
    };
    assert_eq!(CommandView::from_query(&q3).unwrap().name, "isMaster");
}

#[test]
fn error_reply_builders() {
    let e = ErrorReply::new(10107, "NotWritablePrimary", "not primary")
        .with_label("RetryableWriteError");
    let f = reply::error_reply(5, 9, false, &e);
    assert_eq!(f.response_to(), 9);
    let Message::Msg(m) = f.parse(&Limits::default()).unwrap() else {
        panic!()
    };
    let d = bson::Document::from_reader(&m.body[..]).unwrap();
    assert_eq!(d.get_f64("ok").unwrap(), 0.0);
    assert_eq!(d.get_i32("code").unwrap(), 10107);
    assert_eq!(d.get_str("codeName").unwrap(), "NotWritablePrimary");
    assert_eq!(d.get_str("errmsg").unwrap(), "not primary");
    assert_eq!(
        d.get_array("errorLabels").unwrap(),
        &vec![Bson::from("RetryableWriteError")]
    );

    let f = reply::error_reply(
        5,
        9,
        true,
        &ErrorReply::new(352, "UnsupportedOpQueryCommand", "nope"),
    );
    let Message::Reply(r) = f.parse(&Limits::default()).unwrap() else {
        panic!()
    };
    assert_eq!(r.number_returned, 1);
    assert_eq!(r.response_flags, ReplyFlags::AWAIT_CAPABLE);
    let d = bson::Document::from_reader(&r.documents[..]).unwrap();
    assert_eq!(d.get_i32("code").unwrap(), 352);
    assert!(d.get("errorLabels").is_none());
}

#[test]
fn clearing_exhaust_strips_checksum_and_keeps_the_rest() {
    let m = OpMsg {
        flags: MsgFlags::EXHAUST_ALLOWED,
        ..msg(doc! {"getMore": 1i64, "collection": "c", "$db": "d"})
    };
    let mut out = Vec::new();
    m.encode(3, 0, true, &mut out);
    let f = Frame::from_bytes(Bytes::from(out), DEFAULT_MAX_MESSAGE_SIZE).unwrap();
    let cleared = f.clear_msg_flags(MsgFlags::EXHAUST_ALLOWED);
    assert_eq!(cleared.len(), f.len() - 4);
    let Message::Msg(c) = cleared.parse(&Limits::default()).unwrap() else {
        panic!()
    };
    assert_eq!(c.flags, MsgFlags::empty());
    assert_eq!(c.checksum, None);
    assert_eq!(c.body, m.body);
    // Nothing to clear: the same bytes come back.
    assert_eq!(
        cleared.clear_msg_flags(MsgFlags::EXHAUST_ALLOWED).raw(),
        cleared.raw()
    );
}

#[test]
fn new_ids_recompute_the_checksum() {
    let m = msg(doc! {"ping": 1, "$db": "admin"});
    let mut out = Vec::new();
    m.encode(3, 0, true, &mut out);
    let f = Frame::from_bytes(Bytes::from(out), DEFAULT_MAX_MESSAGE_SIZE).unwrap();
    let g = f.with_ids(77, 12);
    assert_eq!((g.request_id(), g.response_to()), (77, 12));
    let Message::Msg(p) = g.parse(&Limits::default()).unwrap() else {
        panic!("checksum must verify")
    };
    assert!(p.checksum.is_some());
}
