//! Retryable-write deduplication across failover, and transactions.

mod common;

use bson::{doc, Document, Uuid};
use common::*;

fn retryable_insert(lsid: Uuid, txn: i64, id: i32) -> Document {
    doc! {
        "insert": "r",
        "documents": [{ "_id": id, "v": "x" }],
        "lsid": { "id": lsid },
        "txnNumber": txn,
        "writeConcern": { "w": "majority" },
    }
}

#[tokio::test]
async fn same_insert_on_old_then_new_primary_inserts_once() {
    let set = start(300, 0).await;
    let (p, mut old) = primary_client(&set).await;
    let lsid = Uuid::new();
    let first = run(&mut old, "test", retryable_insert(lsid, 7, 1)).await;
    assert_ok(&first);
    assert_eq!(first.get_i32("n").unwrap(), 1);
    // A retry on the same primary returns the original reply.
    let again = run(&mut old, "test", retryable_insert(lsid, 7, 1)).await;
    assert_eq!(again.get_i32("n").unwrap(), 1);
    assert!(
        again.get("writeErrors").is_none(),
        "no duplicate key: {again}"
    );

    set.step_down(60, true).await.unwrap();
    let e = run(&mut old, "test", retryable_insert(lsid, 7, 1)).await;
    assert_eq!(code(&e), 10107);
    assert_eq!(labels(&e), vec!["RetryableWriteError"]);
    let np = set.wait_for_primary(WAIT).await.unwrap();
    assert_ne!(np, p);
    let mut new = connect(&set, np).await;
    let retried = run(&mut new, "test", retryable_insert(lsid, 7, 1)).await;
    assert_ok(&retried);
    assert_eq!(retried.get_i32("n").unwrap(), 1);
    assert!(
        retried.get("writeErrors").is_none(),
        "executed again: {retried}"
    );
    let r = run(&mut new, "test", doc! { "find": "r", "filter": {} }).await;
    assert_eq!(first_batch(&r).len(), 1);
    // An older txnNumber on the session: 225.
    let e = run(&mut new, "test", retryable_insert(lsid, 6, 2)).await;
    assert_eq!(code(&e), 225, "{e}");
    // A newer one executes.
    let r = run(&mut new, "test", retryable_insert(lsid, 8, 2)).await;
    assert_eq!(r.get_i32("n").unwrap(), 1);
    // Without txnNumber, the same insert is executed (and fails).
    let r = run(
        &mut new,
        "test",
        doc! { "insert": "r", "documents": [{ "_id": 2 }] },
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
}

#[tokio::test]
async fn retryable_update_is_not_applied_twice() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "u", "documents": [{ "_id": 1, "n": 0 }] },
    )
    .await;
    let lsid = Uuid::new();
    let inc = doc! {
        "update": "u",
        "updates": [{ "q": { "_id": 1 }, "u": { "$inc": { "n": 1 } } }],
        "lsid": { "id": lsid },
        "txnNumber": 1i64,
    };
    for _ in 0..3 {
        let r = run(&mut c, "test", inc.clone()).await;
        assert_eq!(r.get_i32("nModified").unwrap(), 1);
    }
    let r = run(&mut c, "test", doc! { "find": "u", "filter": {} }).await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 1, "n": 1 }]);
}

fn txn_cmd(mut cmd: Document, lsid: Uuid, txn: i64, start: bool) -> Document {
    cmd.insert("lsid", doc! { "id": lsid });
    cmd.insert("txnNumber", txn);
    cmd.insert("autocommit", false);
    if start {
        cmd.insert("startTransaction", true);
    }
    cmd
}

#[tokio::test]
async fn transactions_commit_and_abort() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let mut other = connect(&set, set.primary().unwrap()).await;
    let lsid = Uuid::new();
    let r = run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "t", "documents": [{ "_id": 1 }] },
            lsid,
            1,
            true,
        ),
    )
    .await;
    assert_ok(&r);
    let r = run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "t", "documents": [{ "_id": 2 }] },
            lsid,
            1,
            false,
        ),
    )
    .await;
    assert_ok(&r);
    // The transaction sees its own writes; others do not.
    let r = run(
        &mut c,
        "test",
        txn_cmd(doc! { "find": "t", "filter": {} }, lsid, 1, false),
    )
    .await;
    assert_eq!(first_batch(&r).len(), 2);
    let r = run(&mut other, "test", doc! { "find": "t", "filter": {} }).await;
    assert!(first_batch(&r).is_empty());
    let r = run(
        &mut c,
        "admin",
        txn_cmd(doc! { "commitTransaction": 1 }, lsid, 1, false),
    )
    .await;
    assert_ok(&r);
    let r = run(&mut other, "test", doc! { "find": "t", "filter": {} }).await;
    assert_eq!(first_batch(&r).len(), 2);
    // Commit again (driver retry): ok.
    assert_ok(
        &run(
            &mut c,
            "admin",
            txn_cmd(doc! { "commitTransaction": 1 }, lsid, 1, false),
        )
        .await,
    );

    // Abort discards.
    run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "t", "documents": [{ "_id": 3 }] },
            lsid,
            2,
            true,
        ),
    )
    .await;
    assert_ok(
        &run(
            &mut c,
            "admin",
            txn_cmd(doc! { "abortTransaction": 1 }, lsid, 2, false),
        )
        .await,
    );
    let r = run(&mut other, "test", doc! { "find": "t", "filter": {} }).await;
    assert_eq!(first_batch(&r).len(), 2);
    let e = run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "t", "documents": [{ "_id": 4 }] },
            lsid,
            2,
            false,
        ),
    )
    .await;
    assert_eq!(code(&e), 251);
    assert_eq!(labels(&e), vec!["TransientTransactionError"]);
    // Unknown transaction.
    let e = run(
        &mut c,
        "admin",
        txn_cmd(doc! { "commitTransaction": 1 }, lsid, 9, false),
    )
    .await;
    assert_eq!(code(&e), 251);
    assert_eq!(labels(&e), vec!["TransientTransactionError"]);
}

#[tokio::test]
async fn write_conflict_aborts_a_transaction() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let mut other = connect(&set, set.primary().unwrap()).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "wc", "documents": [{ "_id": 1, "n": 0 }] },
    )
    .await;
    let lsid = Uuid::new();
    run(
        &mut c,
        "test",
        txn_cmd(doc! { "find": "wc", "filter": {} }, lsid, 1, true),
    )
    .await;
    run(
        &mut other,
        "test",
        doc! { "update": "wc", "updates": [{ "q": { "_id": 1 }, "u": { "$set": { "n": 5 } } }] },
    )
    .await;
    let e = run(
        &mut c,
        "test",
        txn_cmd(doc! { "update": "wc", "updates": [{ "q": { "_id": 1 }, "u": { "$set": { "n": 1 } } }] }, lsid, 1, false),
    )
    .await;
    assert_eq!(code(&e), 112, "{e}");
    assert_eq!(labels(&e), vec!["TransientTransactionError"]);
}

#[tokio::test]
async fn stepdown_aborts_transactions_in_progress() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    let lsid = Uuid::new();
    assert_ok(
        &run(
            &mut c,
            "test",
            txn_cmd(
                doc! { "insert": "sd", "documents": [{ "_id": 1 }] },
                lsid,
                1,
                true,
            ),
        )
        .await,
    );
    set.step_down(60, true).await.unwrap();
    let e = run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "sd", "documents": [{ "_id": 2 }] },
            lsid,
            1,
            false,
        ),
    )
    .await;
    assert_eq!(code(&e), 251, "{e}");
    assert_eq!(labels(&e), vec!["TransientTransactionError"]);
    let e = run(
        &mut c,
        "admin",
        txn_cmd(doc! { "commitTransaction": 1 }, lsid, 1, false),
    )
    .await;
    assert_eq!(code(&e), 10107, "{e}");
    assert_eq!(labels(&e), vec!["RetryableWriteError"]);
    // On the new primary the transaction does not exist.
    let np = set.wait_for_primary(WAIT).await.unwrap();
    assert_ne!(np, p);
    let mut n = connect(&set, np).await;
    let e = run(
        &mut n,
        "admin",
        txn_cmd(doc! { "commitTransaction": 1 }, lsid, 1, false),
    )
    .await;
    assert_eq!(code(&e), 251);
    let r = run(&mut n, "test", doc! { "find": "sd", "filter": {} }).await;
    assert!(first_batch(&r).is_empty());
}

#[tokio::test]
async fn committed_transaction_can_be_committed_again_on_the_new_primary() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let lsid = Uuid::new();
    run(
        &mut c,
        "test",
        txn_cmd(
            doc! { "insert": "cc", "documents": [{ "_id": 1 }] },
            lsid,
            3,
            true,
        ),
    )
    .await;
    let mut commit = txn_cmd(doc! { "commitTransaction": 1 }, lsid, 3, false);
    commit.insert("writeConcern", doc! { "w": "majority" });
    assert_ok(&run(&mut c, "admin", commit.clone()).await);
    set.step_down(60, true).await.unwrap();
    let np = set.wait_for_primary(WAIT).await.unwrap();
    let mut n = connect(&set, np).await;
    assert_ok(&run(&mut n, "admin", commit).await);
    let r = run(&mut n, "test", doc! { "find": "cc", "filter": {} }).await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 1 }]);
}

async fn session_cache(set: &holdfast_sim::ReplicaSet, member: usize) -> Document {
    let mut c = connect(set, member).await;
    let s = run(&mut c, "admin", doc! { "serverStatus": 1 }).await;
    s.get_document("logicalSessionRecordCache").unwrap().clone()
}

/// The `lsid.id`s recorded in `config.system.sessions` as `member` sees them.
async fn recorded(set: &holdfast_sim::ReplicaSet, member: usize) -> Vec<Uuid> {
    let mut c = connect(set, member).await;
    let r = run(
        &mut c,
        "config",
        doc! { "find": "system.sessions", "filter": {}, "$readPreference": secondary_ok() },
    )
    .await;
    assert_ok(&r);
    let mut ids: Vec<Uuid> = first_batch(&r)
        .iter()
        .map(|d| {
            let id = d.get_document("_id").unwrap();
            assert!(id.contains_key("uid"), "{d}");
            match id.get("id") {
                Some(bson::Bson::Binary(b)) => Uuid::from_bytes(b.bytes[..].try_into().unwrap()),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    ids.sort_by_key(|u| u.bytes());
    ids
}

#[tokio::test]
async fn sessions_are_cached_refreshed_into_the_sessions_collection_and_ended() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    let (a, b) = (Uuid::new(), Uuid::new());
    for lsid in [a, b] {
        let r = run(
            &mut c,
            "test",
            doc! { "find": "s", "filter": {}, "lsid": { "id": lsid } },
        )
        .await;
        assert_ok(&r);
    }
    let cache = session_cache(&set, p).await;
    assert_eq!(cache.get_i32("activeSessionsCount").unwrap(), 2, "{cache}");
    assert_eq!(cache.get_i32("sessionsCollectionJobCount").unwrap(), 0);
    assert!(recorded(&set, p).await.is_empty());

    // A refresh records both and empties the cache.
    assert_ok(&run(&mut c, "admin", doc! { "refreshLogicalSessionCacheNow": 1 }).await);
    let cache = session_cache(&set, p).await;
    assert_eq!(cache.get_i32("activeSessionsCount").unwrap(), 0);
    assert_eq!(
        cache
            .get_i32("lastSessionsCollectionJobEntriesRefreshed")
            .unwrap(),
        2
    );
    let mut both = vec![a, b];
    both.sort_by_key(|u| u.bytes());
    assert_eq!(recorded(&set, p).await, both);

    // endSessions: still counted until the next refresh, which deletes
    // the record (and only that one).
    assert_ok(&run(&mut c, "admin", doc! { "endSessions": [{ "id": a }] }).await);
    assert_eq!(recorded(&set, p).await, both);
    assert_ok(&run(&mut c, "admin", doc! { "refreshLogicalSessionCacheNow": 1 }).await);
    let cache = session_cache(&set, p).await;
    assert_eq!(
        cache
            .get_i32("lastSessionsCollectionJobEntriesEnded")
            .unwrap(),
        1
    );
    assert_eq!(
        cache
            .get_i32("lastSessionsCollectionJobEntriesRefreshed")
            .unwrap(),
        0
    );
    assert_eq!(cache.get_i32("sessionsCollectionJobCount").unwrap(), 2);
    assert_eq!(recorded(&set, p).await, vec![b]);
    // The collection replicates like any other.
    let s = (p + 1) % 3;
    eventually("the secondary has the records", || {
        let set = set.clone();
        async move { recorded(&set, s).await == vec![b] }
    })
    .await;

    // A secondary's refresh writes through the primary.
    let mut sc = connect(&set, s).await;
    let cnew = Uuid::new();
    run(
        &mut sc,
        "test",
        doc! { "find": "s", "filter": {}, "lsid": { "id": cnew }, "$readPreference": secondary_ok() },
    )
    .await;
    assert_eq!(
        session_cache(&set, s)
            .await
            .get_i32("activeSessionsCount")
            .unwrap(),
        1
    );
    assert_ok(
        &run(
            &mut sc,
            "admin",
            doc! { "refreshLogicalSessionCacheNow": 1 },
        )
        .await,
    );
    assert!(recorded(&set, p).await.contains(&cnew));
}
