//! Retryable writes whose first attempt executed: the identical command
//! (same `lsid`, `txnNumber` and statements) sent again to a new primary
//! returns the first attempt's result when the attempt reached the new
//! primary through replication (after a stepdown, or a kill once a
//! secondary had it), and runs exactly once when it had not (a `w: 1` write
//! lost with its primary). As MongoDB 7.0 does by `config.transactions`.

mod common;

use std::time::Duration;

use bson::{doc, Bson, Document, Uuid};
use common::*;
use holdfast_sim::ReplicaSet;

fn session(cmd: Document, lsid: Uuid, txn: i64, w: Bson) -> Document {
    let mut cmd = cmd;
    cmd.insert("lsid", doc! { "id": lsid });
    cmd.insert("txnNumber", txn);
    cmd.insert("writeConcern", doc! { "w": w });
    cmd
}

fn majority() -> Bson {
    Bson::String("majority".into())
}

/// `findAndModify` incrementing `n` of `_id` and returning the post-image
/// (`new: true`) or the pre-image.
fn inc_and_return(coll: &str, id: i32, new: bool) -> Document {
    doc! {
        "findAndModify": coll,
        "query": { "_id": id },
        "update": { "$inc": { "n": 1 } },
        "new": new,
    }
}

fn inc(coll: &str, ids: &[i32]) -> Document {
    let updates: Vec<Document> = ids
        .iter()
        .map(|id| doc! { "q": { "_id": *id }, "u": { "$inc": { "n": 1 } } })
        .collect();
    doc! { "update": coll, "updates": updates }
}

fn insert(coll: &str, ids: &[i32]) -> Document {
    let docs: Vec<Document> = ids.iter().map(|id| doc! { "_id": *id }).collect();
    doc! { "insert": coll, "documents": docs }
}

/// `n` of document `_id` as `member` sees it (`None`: no such document).
async fn counter_on(set: &ReplicaSet, member: usize, coll: &str, id: i32) -> Option<i32> {
    let mut c = connect(set, member).await;
    let r = run(
        &mut c,
        "test",
        doc! { "find": coll, "filter": { "_id": id }, "$readPreference": secondary_ok() },
    )
    .await;
    first_batch(&r).first().map(|d| d.get_i32("n").unwrap())
}

async fn count_on(set: &ReplicaSet, member: usize, coll: &str) -> i32 {
    let mut c = connect(set, member).await;
    let r = run(
        &mut c,
        "test",
        doc! { "count": coll, "$readPreference": secondary_ok() },
    )
    .await;
    r.get_i32("n").unwrap()
}

/// Seeds `coll` with `{_id, n: 0}` on every member.
async fn seed(c: &mut holdfast_sim::client::RawClient, coll: &str, ids: &[i32]) {
    let docs: Vec<Document> = ids.iter().map(|id| doc! { "_id": *id, "n": 0 }).collect();
    let r = run(
        c,
        "test",
        doc! { "insert": coll, "documents": docs, "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);
}

/// Steps the primary down and connects to its successor.
async fn fail_over_by_stepdown(set: &ReplicaSet, old: usize) -> holdfast_sim::client::RawClient {
    set.step_down(60, true).await.unwrap();
    let np = set.wait_for_primary(WAIT).await.expect("a new primary");
    assert_ne!(np, old);
    connect(set, np).await
}

fn same(a: &Document, b: &Document, fields: &[&str]) {
    for f in fields {
        assert_eq!(a.get(*f), b.get(*f), "field {f}: first {a}, retry {b}");
    }
}

#[tokio::test]
async fn find_and_modify_retried_after_a_stepdown_returns_the_stored_image() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    seed(&mut c, "fam", &[1, 2]).await;
    let (post, pre) = (Uuid::new(), Uuid::new());
    let post_cmd = session(inc_and_return("fam", 1, true), post, 5, majority());
    let pre_cmd = session(inc_and_return("fam", 2, false), pre, 5, majority());
    let first_post = run(&mut c, "test", post_cmd.clone()).await;
    let first_pre = run(&mut c, "test", pre_cmd.clone()).await;
    assert_ok(&first_post);
    assert_eq!(
        first_post.get_document("value").unwrap(),
        &doc! { "_id": 1, "n": 1 }
    );
    assert_eq!(
        first_pre.get_document("value").unwrap(),
        &doc! { "_id": 2, "n": 0 }
    );

    let mut n = fail_over_by_stepdown(&set, p).await;
    let retry_post = run(&mut n, "test", post_cmd).await;
    let retry_pre = run(&mut n, "test", pre_cmd).await;
    assert_ok(&retry_post);
    same(&first_post, &retry_post, &["value", "lastErrorObject"]);
    same(&first_pre, &retry_pre, &["value", "lastErrorObject"]);
    let np = set.primary().unwrap();
    assert_eq!(
        counter_on(&set, np, "fam", 1).await,
        Some(1),
        "incremented once"
    );
    assert_eq!(
        counter_on(&set, np, "fam", 2).await,
        Some(1),
        "incremented once"
    );

    // The session moves on: the next txnNumber executes.
    let next = run(
        &mut n,
        "test",
        session(inc_and_return("fam", 1, true), post, 6, majority()),
    )
    .await;
    assert_eq!(
        next.get_document("value").unwrap(),
        &doc! { "_id": 1, "n": 2 }
    );
    eventually("every member has n = 2 and 1", || {
        let set = set.clone();
        async move {
            let mut all = true;
            for m in 0..3 {
                all &= counter_on(&set, m, "fam", 1).await == Some(2)
                    && counter_on(&set, m, "fam", 2).await == Some(1);
            }
            all
        }
    })
    .await;
}

#[tokio::test]
async fn batches_retried_after_a_stepdown_report_the_first_n_and_apply_nothing_twice() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    seed(&mut c, "cnt", &[10, 11]).await;
    // One session per write: a retry is of the session's latest
    // txnNumber (an older one gets 225 TransactionTooOld).
    // Two increments and an upsert; three inserts; an ordered insert that
    // stops at a duplicate (`_id` 21 exists) after one document.
    let mut updates = inc("cnt", &[10, 11]);
    updates
        .get_array_mut("updates")
        .unwrap()
        .push(Bson::Document(
            doc! { "q": { "_id": 12 }, "u": { "$inc": { "n": 1 } }, "upsert": true },
        ));
    let update_cmd = session(updates, Uuid::new(), 1, majority());
    let insert_cmd = session(insert("ins", &[1, 2, 3]), Uuid::new(), 2, majority());
    run(&mut c, "test", insert("dup", &[21])).await;
    let dup_cmd = session(insert("dup", &[20, 21, 22]), Uuid::new(), 3, majority());

    let first_update = run(&mut c, "test", update_cmd.clone()).await;
    assert_eq!(
        (
            first_update.get_i32("n").unwrap(),
            first_update.get_i32("nModified").unwrap()
        ),
        (3, 2),
        "{first_update}"
    );
    let first_insert = run(&mut c, "test", insert_cmd.clone()).await;
    assert_eq!(first_insert.get_i32("n").unwrap(), 3);
    let first_dup = run(&mut c, "test", dup_cmd.clone()).await;
    assert_eq!(first_dup.get_i32("n").unwrap(), 1, "{first_dup}");

    let mut n = fail_over_by_stepdown(&set, p).await;
    let retry_update = run(&mut n, "test", update_cmd).await;
    let retry_insert = run(&mut n, "test", insert_cmd).await;
    let retry_dup = run(&mut n, "test", dup_cmd).await;
    same(
        &first_update,
        &retry_update,
        &["n", "nModified", "upserted", "writeErrors"],
    );
    same(&first_insert, &retry_insert, &["n", "writeErrors"]);
    assert!(retry_insert.get("writeErrors").is_none(), "{retry_insert}");
    same(&first_dup, &retry_dup, &["n"]);
    let errors = |d: &Document| -> Vec<(i32, i32)> {
        d.get_array("writeErrors")
            .unwrap()
            .iter()
            .map(|e| {
                let e = e.as_document().unwrap();
                (e.get_i32("index").unwrap(), code(e))
            })
            .collect()
    };
    assert_eq!(errors(&first_dup), vec![(1, 11000)]);
    assert_eq!(errors(&retry_dup), errors(&first_dup));

    let np = set.primary().unwrap();
    for id in [10, 11, 12] {
        assert_eq!(counter_on(&set, np, "cnt", id).await, Some(1), "_id {id}");
    }
    assert_eq!(count_on(&set, np, "ins").await, 3);
    assert_eq!(
        count_on(&set, np, "dup").await,
        2,
        "_id 21 and 20; 22 never"
    );
}

#[tokio::test]
async fn a_write_a_secondary_received_is_deduplicated_after_the_primary_is_killed() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    seed(&mut c, "k", &[1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|m| *m != p).collect();
    let (has_it, behind) = (others[0], others[1]);
    // One secondary stops applying: a majority write is acknowledged once
    // the primary and `has_it` applied it.
    set.set_lag(behind, Duration::from_secs(600));
    let update_cmd = session(inc("k", &[1]), Uuid::new(), 1, majority());
    let fam_cmd = session(inc_and_return("k", 2, true), Uuid::new(), 1, majority());
    let insert_cmd = session(insert("kins", &[1, 2, 3]), Uuid::new(), 2, majority());
    let first_update = run(&mut c, "test", update_cmd.clone()).await;
    let first_fam = run(&mut c, "test", fam_cmd.clone()).await;
    let first_insert = run(&mut c, "test", insert_cmd.clone()).await;
    for r in [&first_update, &first_fam, &first_insert] {
        assert_ok(r);
        assert!(r.get("writeConcernError").is_none(), "{r}");
    }
    assert_eq!(counter_on(&set, has_it, "k", 1).await, Some(1));
    assert_eq!(counter_on(&set, behind, "k", 1).await, Some(0));

    set.kill(p).await;
    // The lagging member catches up with the survivor from now on (the
    // killed primary's copy is out of reach either way).
    set.set_lag(behind, Duration::ZERO);
    let np = set.wait_for_primary(WAIT).await.expect("a new primary");
    assert_ne!(np, p);
    let mut n = connect(&set, np).await;
    let retry_update = run(&mut n, "test", update_cmd).await;
    let retry_fam = run(&mut n, "test", fam_cmd).await;
    let retry_insert = run(&mut n, "test", insert_cmd).await;
    same(&first_update, &retry_update, &["n", "nModified"]);
    same(&first_fam, &retry_fam, &["value", "lastErrorObject"]);
    same(&first_insert, &retry_insert, &["n"]);
    assert!(retry_insert.get("writeErrors").is_none(), "{retry_insert}");
    for r in [&retry_update, &retry_fam, &retry_insert] {
        assert!(r.get("writeConcernError").is_none(), "{r}");
    }
    for m in [has_it, behind] {
        eventually("both survivors have each write once", || {
            let set = set.clone();
            async move {
                counter_on(&set, m, "k", 1).await == Some(1)
                    && counter_on(&set, m, "k", 2).await == Some(1)
                    && count_on(&set, m, "kins").await == 3
            }
        })
        .await;
    }
}

#[tokio::test]
async fn an_unreplicated_w1_write_runs_exactly_once_on_the_new_primary() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    seed(&mut c, "lost", &[1, 2]).await;
    let others: Vec<usize> = (0..3).filter(|m| *m != p).collect();
    for m in &others {
        set.set_lag(*m, Duration::from_secs(600));
    }
    let w1 = || Bson::Int32(1);
    let update_cmd = session(inc("lost", &[1]), Uuid::new(), 1, w1());
    let fam_cmd = session(inc_and_return("lost", 2, true), Uuid::new(), 1, w1());
    let insert_cmd = session(insert("lostins", &[1, 2]), Uuid::new(), 2, w1());
    let first_update = run(&mut c, "test", update_cmd.clone()).await;
    let first_fam = run(&mut c, "test", fam_cmd.clone()).await;
    let first_insert = run(&mut c, "test", insert_cmd.clone()).await;
    assert_eq!(first_update.get_i32("nModified").unwrap(), 1);
    assert_eq!(
        first_fam.get_document("value").unwrap(),
        &doc! { "_id": 2, "n": 1 }
    );
    assert_eq!(first_insert.get_i32("n").unwrap(), 2);
    for m in &others {
        assert_eq!(
            counter_on(&set, *m, "lost", 1).await,
            Some(0),
            "not replicated"
        );
    }

    set.kill(p).await;
    for m in &others {
        set.set_lag(*m, Duration::ZERO);
    }
    let np = set.wait_for_primary(WAIT).await.expect("a new primary");
    assert!(others.contains(&np));
    // The writes died with their primary.
    assert_eq!(counter_on(&set, np, "lost", 1).await, Some(0));
    assert_eq!(count_on(&set, np, "lostins").await, 0);

    let mut n = connect(&set, np).await;
    let with_majority = |mut d: Document| {
        d.insert("writeConcern", doc! { "w": "majority" });
        d
    };
    for _ in 0..2 {
        // Run once; the second identical retry is deduplicated.
        let r = run(&mut n, "test", with_majority(update_cmd.clone())).await;
        same(&first_update, &r, &["n", "nModified"]);
        let r = run(&mut n, "test", with_majority(fam_cmd.clone())).await;
        same(&first_fam, &r, &["value"]);
        let r = run(&mut n, "test", with_majority(insert_cmd.clone())).await;
        same(&first_insert, &r, &["n"]);
        assert!(r.get("writeErrors").is_none(), "no duplicate key: {r}");
    }
    assert_eq!(counter_on(&set, np, "lost", 1).await, Some(1));
    assert_eq!(counter_on(&set, np, "lost", 2).await, Some(1));
    assert_eq!(count_on(&set, np, "lostins").await, 2);

    // The old primary comes back, rolls its copy back and takes the new
    // primary's: each write counted once there too.
    set.revive(p).await;
    eventually("the old primary converges", || {
        let set = set.clone();
        async move {
            counter_on(&set, p, "lost", 1).await == Some(1)
                && counter_on(&set, p, "lost", 2).await == Some(1)
                && count_on(&set, p, "lostins").await == 2
        }
    })
    .await;
}
