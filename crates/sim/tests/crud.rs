//! CRUD through the engine, cursors with Int64 ids, replication to
//! secondaries, read preference.

mod common;

use bson::{doc, Bson};
use common::*;

#[tokio::test]
async fn insert_find_update_delete() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "c", "documents": [{ "_id": 1, "x": 1 }, { "_id": 2, "x": 2 }] },
    )
    .await;
    assert_ok(&r);
    assert_eq!(r.get_i32("n").unwrap(), 2);
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "c", "documents": [{ "_id": 1 }] },
    )
    .await;
    assert_eq!(
        code(
            r.get_array("writeErrors").unwrap()[0]
                .as_document()
                .unwrap()
        ),
        11000
    );
    let r = run(
        &mut c,
        "test",
        doc! { "update": "c", "updates": [{ "q": { "_id": 1 }, "u": { "$inc": { "x": 10 } } }] },
    )
    .await;
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
    let r = run(
        &mut c,
        "test",
        doc! { "find": "c", "filter": { "x": { "$gt": 5 } } },
    )
    .await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 1, "x": 11 }]);
    assert!(matches!(cursor_id(&r), Bson::Int64(0)));
    let r = run(
        &mut c,
        "test",
        doc! { "delete": "c", "deletes": [{ "q": { "_id": 2 }, "limit": 1 }] },
    )
    .await;
    assert_eq!(r.get_i32("n").unwrap(), 1);
    let r = run(&mut c, "test", doc! { "count": "c" }).await;
    assert_eq!(
        r.get("n")
            .and_then(|n| n.as_i32().or(n.as_i64().map(|x| x as i32))),
        Some(1)
    );
}

#[tokio::test]
async fn multi_batch_cursor_with_int64_ids() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let docs: Vec<Bson> = (0..250)
        .map(|i| Bson::Document(doc! { "_id": i }))
        .collect();
    assert_ok(&run(&mut c, "test", doc! { "insert": "many", "documents": docs }).await);
    let r = run(
        &mut c,
        "test",
        doc! { "find": "many", "filter": {}, "sort": { "_id": 1 } },
    )
    .await;
    assert_eq!(first_batch(&r).len(), 101);
    let Bson::Int64(id) = cursor_id(&r) else {
        panic!("cursor id is not an Int64: {r}")
    };
    assert_ne!(id, 0);
    assert_eq!(
        r.get_document("cursor").unwrap().get_str("ns").unwrap(),
        "test.many"
    );
    let r = run(
        &mut c,
        "test",
        doc! { "getMore": id, "collection": "many", "batchSize": 100 },
    )
    .await;
    let next = batch(&r, "nextBatch");
    assert_eq!(next.len(), 100);
    assert_eq!(next[0], doc! { "_id": 101 });
    assert_eq!(cursor_id(&r), Bson::Int64(id));
    let r = run(&mut c, "test", doc! { "getMore": id, "collection": "many" }).await;
    assert_eq!(batch(&r, "nextBatch").len(), 49);
    assert_eq!(cursor_id(&r), Bson::Int64(0));
    // Exhausted: gone.
    let r = run(&mut c, "test", doc! { "getMore": id, "collection": "many" }).await;
    assert_eq!(code(&r), 43);
    // killCursors.
    let r = run(
        &mut c,
        "test",
        doc! { "find": "many", "filter": {}, "batchSize": 2 },
    )
    .await;
    let Bson::Int64(id) = cursor_id(&r) else {
        panic!()
    };
    let k = run(
        &mut c,
        "test",
        doc! { "killCursors": "many", "cursors": [id] },
    )
    .await;
    assert_eq!(
        k.get_array("cursorsKilled").unwrap(),
        &vec![Bson::Int64(id)]
    );
    let r = run(&mut c, "test", doc! { "getMore": id, "collection": "many" }).await;
    assert_eq!(code(&r), 43);
    // A cursor lives on its member only.
    let r = run(
        &mut c,
        "test",
        doc! { "find": "many", "filter": {}, "batchSize": 2 },
    )
    .await;
    let id = cursor_id(&r);
    let mut other = connect(&set, 1).await;
    let r = run(
        &mut other,
        "test",
        doc! { "getMore": id, "collection": "many" },
    )
    .await;
    assert_eq!(code(&r), 43);
}

#[tokio::test]
async fn majority_writes_reach_secondaries_and_secondary_reads_need_read_preference() {
    let set = start(300, 5).await;
    let (_, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "r", "documents": [{ "_id": "a" }], "writeConcern": { "w": "majority" } },
    )
    .await;
    assert_ok(&r);
    assert!(r.get("writeConcernError").is_none());
    let mut s = connect(&set, 1).await;
    let e = run(&mut s, "test", doc! { "find": "r", "filter": {} }).await;
    assert_eq!(code(&e), 13435, "{e}");
    assert_eq!(e.get_str("codeName").unwrap(), "NotPrimaryNoSecondaryOk");
    assert!(e.contains_key("topologyVersion"));
    // w: 3 means everyone has it now.
    run(
        &mut c,
        "test",
        doc! { "insert": "r", "documents": [{ "_id": "b" }], "writeConcern": { "w": 3 } },
    )
    .await;
    for m in 1..3 {
        let mut s = connect(&set, m).await;
        let r = run(
            &mut s,
            "test",
            doc! { "find": "r", "filter": {}, "$readPreference": secondary_ok() },
        )
        .await;
        assert_eq!(first_batch(&r).len(), 2, "member {m}: {r}");
    }
    let e = run(
        &mut s,
        "test",
        doc! { "insert": "r", "documents": [{ "_id": "c" }] },
    )
    .await;
    assert_eq!(code(&e), 10107);
    assert_eq!(e.get_str("errmsg").unwrap(), "not primary");
}

#[tokio::test]
async fn write_concern_timeout_and_unsatisfiable() {
    // Long election timeout: the lone primary keeps its role during the test.
    let set = start(5_000, 0).await;
    let (p, mut c) = primary_client(&set).await;
    for m in 0..3 {
        if m != p {
            set.kill(m).await;
        }
    }
    // Majority cannot be reached: wtimeout gives 64 as writeConcernError.
    let r = run(&mut c, "test", doc! { "insert": "w", "documents": [{ "_id": 1 }], "writeConcern": { "w": "majority", "wtimeout": 200 } }).await;
    assert_ok(&r);
    assert_eq!(wc_code(&r), Some(64), "{r}");
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "w", "documents": [{ "_id": 2 }], "writeConcern": { "w": 5 } },
    )
    .await;
    assert_eq!(wc_code(&r), Some(100), "{r}");
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "w", "documents": [{ "_id": 3 }], "writeConcern": { "w": 1 } },
    )
    .await;
    assert_ok(&r);
    assert!(r.get("writeConcernError").is_none());
}

#[tokio::test]
async fn secondaries_apply_after_the_configured_lag() {
    let set = start(300, 300).await;
    let (p, mut c) = primary_client(&set).await;
    let s = (p + 1) % 3;
    let mut sc = connect(&set, s).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "lag", "documents": [{ "_id": 1 }], "writeConcern": { "w": 1 } },
    )
    .await;
    let r = run(
        &mut sc,
        "test",
        doc! { "find": "lag", "filter": {}, "$readPreference": secondary_ok() },
    )
    .await;
    assert!(first_batch(&r).is_empty(), "applied before the lag: {r}");
    eventually("the secondary applies the write", || {
        let set = set.clone();
        async move { set.total_documents(s) == 1 }
    })
    .await;
}
