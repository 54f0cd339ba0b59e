//! Legacy wire formats through holdfast, frame by frame: OP_QUERY commands
//! and finds, OP_GET_MORE with `startingFrom`, OP_KILL_CURSORS from another
//! connection, OP_INSERT/UPDATE/DELETE with getLastError (pipelined in the
//! same write, as old drivers send it). holdfast-sim behind refuses all of
//! these formats itself, like MongoDB 7.0.

mod common;

use bson::{doc, Document};
use common::legacy::{docs, get_more, insert_op, query, Legacy};
use common::Harness;
use holdfast_wire::legacy::{LegacyOp, OpDelete, OpKillCursors, OpUpdate};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{QueryFlags, ReplyFlags};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_query_commands_are_answered_in_band() {
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    let hello = c.command("admin", doc! {"isMaster": 1}).await;
    assert_eq!(hello.get_str("msg").unwrap(), "isdbgrid");
    let r = c
        .command(
            "app",
            doc! {"insert": "cmds", "documents": [{"_id": 1}, {"_id": 2}]},
        )
        .await;
    assert_eq!(r.get_i32("n").unwrap(), 2, "{r}");
    let r = c
        .command(
            "app",
            doc! {"$query": {"count": "cmds"}, "$readPreference": {"mode": "primary"}},
        )
        .await;
    assert_eq!(r.get_i32("n").unwrap(), 2, "{r}");
    let r = c.command("app", doc! {"ping": 1, "$db": "other"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 40621, "{r}");
    let r = c.command("app", doc! {"nosuchcommand": 1}).await;
    assert_eq!(
        r.get_i32("code").unwrap(),
        59,
        "the server's error, in-band: {r}"
    );
    let n = c.command("admin", doc! {"getnonce": 1}).await;
    assert_eq!(n.get_str("nonce").unwrap().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_finds_get_more_and_kill_cursors() {
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    let ds: Vec<Document> = (0..10).map(|i| doc! {"_id": i, "n": i}).collect();
    c.command("app", doc! {"insert": "f", "documents": ds})
        .await;
    // numberToReturn 4: a batch of 4, a cursor.
    let q = query(
        "app.f",
        doc! {"$query": {}, "$orderby": {"n": 1}},
        1,
        4,
        QueryFlags::empty(),
    );
    let r = c.query(q).await;
    assert!(r.response_flags.contains(ReplyFlags::AWAIT_CAPABLE));
    let first: Vec<i32> = docs(&r).iter().map(|d| d.get_i32("n").unwrap()).collect();
    assert_eq!(first, vec![1, 2, 3, 4], "skip 1, batch of 4");
    assert_ne!(r.cursor_id, 0);
    let cursor = r.cursor_id;
    let r = c.op(get_more("app.f", cursor, 3)).await;
    assert_eq!(r.starting_from, 4, "startingFrom counts what came before");
    assert_eq!(docs(&r).len(), 3);
    // Killed from another connection (OP_KILL_CURSORS names no namespace).
    let mut other = Legacy::connect(&h).await;
    let k = other.op_bytes(LegacyOp::KillCursors(OpKillCursors {
        cursor_ids: vec![cursor],
    }));
    other.write(&k).await;
    let _ = other.command("admin", doc! {"ping": 1}).await; // the kill ran before this
    let r = c.op(get_more("app.f", cursor, 3)).await;
    assert!(
        r.response_flags.contains(ReplyFlags::CURSOR_NOT_FOUND),
        "{:?}",
        r.response_flags
    );
    assert_eq!(r.number_returned, 0);
    // numberToReturn -2 and 1: a limit, one batch, no cursor.
    for (ret, want) in [(-2, 2), (1, 1)] {
        let r = c
            .query(query("app.f", doc! {}, 0, ret, QueryFlags::empty()))
            .await;
        assert_eq!((docs(&r).len(), r.cursor_id), (want, 0));
    }
    // A failure is QueryFailure with $err and code.
    let r = c
        .query(query(
            "app.f",
            doc! {"$query": {}, "$bogus": 1},
            0,
            0,
            QueryFlags::empty(),
        ))
        .await;
    assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
    assert_eq!(docs(&r)[0].get_i32("code").unwrap(), 2);
    // Exhaust is refused clearly.
    let r = c
        .query(query("app.f", doc! {}, 0, 0, QueryFlags::EXHAUST))
        .await;
    assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
    assert!(docs(&r)[0].get_str("$err").unwrap().contains("exhaust"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_writes_and_get_last_error() {
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    let gle = doc! {"getlasterror": 1, "w": "majority", "wtimeout": 5000};
    let r = c
        .write_then_gle(
            insert_op("w", &[doc! {"_id": 1}, doc! {"_id": 2}], 0),
            gle.clone(),
        )
        .await;
    assert_eq!(r.get("err"), Some(&bson::Bson::Null), "{r}");
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
    // A duplicate key: err and code as MongoDB's getLastError gave them.
    let r = c
        .write_then_gle(insert_op("w", &[doc! {"_id": 1}], 0), gle.clone())
        .await;
    assert_eq!(r.get_i32("code").unwrap(), 11000, "{r}");
    assert!(r.get_str("err").unwrap().contains("duplicate key"), "{r}");
    // ContinueOnError: the rest of the batch goes in.
    let r = c
        .write_then_gle(
            insert_op("w", &[doc! {"_id": 2}, doc! {"_id": 3}], 1),
            gle.clone(),
        )
        .await;
    assert_eq!(r.get_i32("code").unwrap(), 11000, "{r}");
    let upsert = LegacyOp::Update(OpUpdate {
        full_collection_name: "app.w".into(),
        flags: 1,
        selector: document_bytes(&doc! {"_id": 100}),
        update: document_bytes(&doc! {"$set": {"x": 1}}),
    });
    let r = c.write_then_gle(upsert, gle.clone()).await;
    assert_eq!(r.get_i64("n").unwrap(), 1, "{r}");
    assert!(!r.get_bool("updatedExisting").unwrap());
    assert_eq!(r.get_i32("upserted").unwrap(), 100);
    let multi = LegacyOp::Update(OpUpdate {
        full_collection_name: "app.w".into(),
        flags: 2,
        selector: document_bytes(&doc! {}),
        update: document_bytes(&doc! {"$set": {"y": 1}}),
    });
    let r = c.write_then_gle(multi, gle.clone()).await;
    assert_eq!(r.get_i64("n").unwrap(), 4, "{r}");
    assert!(r.get_bool("updatedExisting").unwrap());
    let del = LegacyOp::Delete(OpDelete {
        full_collection_name: "app.w".into(),
        flags: 1,
        selector: document_bytes(&doc! {}),
    });
    let r = c.write_then_gle(del, gle.clone()).await;
    assert_eq!(r.get_i64("n").unwrap(), 1, "SingleRemove: {r}");
    // A getLastError on its own reads the same state again.
    let again = c.command("app", doc! {"getLastError": 1}).await;
    assert_eq!(again.get_i64("n").unwrap(), 1);
    let count = c.command("app", doc! {"count": "w"}).await;
    assert_eq!(count.get_i32("n").unwrap(), 3, "{count}");
    // Nothing was sent to the client for the writes themselves: the next
    // reply is for the next request.
    let r = c.command("admin", doc! {"ping": 1}).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_writes_in_flight_at_a_stepdown_are_applied_once() {
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    c.command(
        "app",
        doc! {"insert": "s", "documents": [{"_id": 1, "n": 0}]},
    )
    .await;
    let old = h.primary();
    h.rs.set_latency(old, std::time::Duration::from_millis(1000));
    let inc = LegacyOp::Update(OpUpdate {
        full_collection_name: "app.s".into(),
        flags: 0,
        selector: document_bytes(&doc! {"_id": 1}),
        update: document_bytes(&doc! {"$inc": {"n": 1}}),
    });
    let step_down = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        h.rs.step_down(10, true).await.unwrap();
    };
    let (r, ()) = tokio::join!(
        c.write_then_gle(inc, doc! {"getlasterror": 1, "w": "majority"}),
        step_down
    );
    h.rs.set_latency(old, std::time::Duration::ZERO);
    assert_eq!(r.get("err"), Some(&bson::Bson::Null), "{r}");
    assert_eq!(r.get_i64("n").unwrap(), 1);
    let q = c
        .query(query("app.s", doc! {"_id": 1}, 0, 1, QueryFlags::empty()))
        .await;
    assert_eq!(docs(&q)[0].get_i32("n").unwrap(), 1, "applied once");
}

/// `opcounters.getmore` of one member, asked directly.
async fn getmores_served(h: &Harness, member: usize) -> i64 {
    let mut raw = common::Raw::connect(&h.rs.addr(member).to_string()).await;
    let s = raw.command(doc! {"serverStatus": 1, "$db": "admin"}).await;
    let n = s.get_document("opcounters").unwrap().get("getmore");
    n.and_then(holdfast_wire::values::bson_as_i64)
        .expect("opcounters.getmore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_get_more_stays_on_its_member_across_a_stepdown() {
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    let ds: Vec<Document> = (0..10).map(|i| doc! {"_id": i, "n": i}).collect();
    c.command(
        "app",
        doc! {"insert": "pin", "documents": ds, "writeConcern": {"w": "majority"}},
    )
    .await;
    let q = query(
        "app.pin",
        doc! {"$query": {}, "$orderby": {"n": 1}},
        0,
        3,
        QueryFlags::empty(),
    );
    let r = c.query(q).await;
    let cursor = r.cursor_id;
    assert_ne!(cursor, 0);
    let mut seen: Vec<i32> = docs(&r).iter().map(|d| d.get_i32("n").unwrap()).collect();
    let old = h.primary();
    h.rs.step_down(10, true).await.unwrap();
    h.wait_new_primary(old).await;
    let new = h.primary();
    assert_ne!(old, new);
    let (old_before, new_before) = (
        getmores_served(&h, old).await,
        getmores_served(&h, new).await,
    );
    // The cursor lives on the old primary, now a secondary: the getMores
    // go there (the new primary would answer CursorNotFound).
    let r = c.op(get_more("app.pin", cursor, 3)).await;
    assert!(
        !r.response_flags
            .intersects(ReplyFlags::CURSOR_NOT_FOUND | ReplyFlags::QUERY_FAILURE),
        "{:?} {:?}",
        r.response_flags,
        docs(&r)
    );
    assert_eq!((r.cursor_id, r.starting_from), (cursor, 3));
    seen.extend(docs(&r).iter().map(|d| d.get_i32("n").unwrap()));
    let r = c.op(get_more("app.pin", cursor, 0)).await;
    assert!(r.response_flags.contains(ReplyFlags::AWAIT_CAPABLE));
    assert_eq!((r.cursor_id, r.starting_from), (0, 6), "exhausted");
    seen.extend(docs(&r).iter().map(|d| d.get_i32("n").unwrap()));
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(getmores_served(&h, old).await - old_before, 2);
    assert_eq!(getmores_served(&h, new).await, new_before);
    // New queries go to the new primary.
    let r = c
        .query(query("app.pin", doc! {"_id": 4}, 0, 1, QueryFlags::empty()))
        .await;
    assert_eq!(docs(&r)[0].get_i32("n").unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_primary_errors_say_not_master_to_legacy_requests_only() {
    let h = Harness::with(|_| {}, |c| c.hold_timeout_ms = 300).await;
    let mut c = Legacy::connect(&h).await;
    let mut modern = h.raw().await;
    // No primary for a minute: the secondaries frozen, the primary stepped
    // down; every request is held for hold_timeout_ms, then refused with
    // holdfast's own 10107.
    let old = h.primary();
    for i in (0..h.rs.len()).filter(|i| *i != old) {
        h.rs.freeze(i, 60).unwrap();
    }
    h.rs.step_down(60, true).await.unwrap();
    let mut rx = h.hf.topology().subscribe();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        rx.wait_for(|s| s.primary.is_none()),
    )
    .await
    .expect("holdfast sees no primary")
    .unwrap();
    let legacy = |m: &str| m.starts_with("not master: holdfast: ") && m.contains("hold_timeout");
    // OP_QUERY command: in-band errmsg.
    let r = c.command("app", doc! {"count": "nm"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 10107, "{r}");
    assert!(legacy(r.get_str("errmsg").unwrap()), "{r}");
    // OP_QUERY find: QueryFailure's $err.
    let r = c
        .query(query("app.nm", doc! {}, 0, 0, QueryFlags::empty()))
        .await;
    assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
    let d = docs(&r).remove(0);
    assert_eq!(d.get_i32("code").unwrap(), 10107, "{d}");
    assert!(legacy(d.get_str("$err").unwrap()), "{d}");
    // OP_INSERT: getLastError's err.
    let r = c
        .write_then_gle(
            insert_op("nm", &[doc! {"_id": 1}], 0),
            doc! {"getlasterror": 1},
        )
        .await;
    assert_eq!(r.get_i32("code").unwrap(), 10107, "{r}");
    assert!(legacy(r.get_str("err").unwrap()), "{r}");
    // OP_MSG: holdfast's message unchanged.
    let r = modern.command(doc! {"count": "nm", "$db": "app"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 10107, "{r}");
    assert!(
        r.get_str("errmsg").unwrap().starts_with("holdfast: "),
        "{r}"
    );
}
