//! The failover contract end to end: holdfast in front of holdfast-sim,
//! each row driven by a real stepdown, kill or election (see
//! `docs/failover.md`; `src/failover.rs` has the decision table's unit
//! tests).

mod common;

use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::{insert, Harness};
use holdfast_wire::MsgFlags;

fn code(d: &Document) -> Option<i32> {
    d.get_i32("code").ok()
}

fn labels(d: &Document) -> Vec<String> {
    d.get_array("errorLabels")
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `request` on `c` with the primary slowed to 1 s per operation,
/// and steps that primary down while it is in flight; returns the reply.
async fn in_flight_at_stepdown(h: &Harness, c: &mut common::Raw, request: Document) -> Document {
    let old = h.primary();
    h.rs.set_latency(old, Duration::from_millis(1000));
    let step_down = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.rs.step_down(10, true).await.unwrap();
    };
    let (r, ()) = tokio::join!(c.command(request), step_down);
    h.rs.set_latency(old, Duration::ZERO);
    h.wait_new_primary(old).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_at_a_stepdown_is_replayed_on_the_new_primary() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(insert("t", "r", vec![doc! {"_id": 1}])).await;
    let old = h.primary();
    let r = in_flight_at_stepdown(&h, &mut c, doc! {"find": "r", "filter": {}, "$db": "t"}).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let batch = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_ne!(h.primary(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_write_in_flight_gets_the_one_clear_error_under_write_retry_safe() {
    let h = Harness::with(|_| {}, |c| c.write_retry = holdfast_proxy::WriteRetry::Safe).await;
    let mut c = h.raw().await;
    c.command(insert("t", "w", vec![doc! {"_id": 1, "n": 0}]))
        .await;
    let update =
        doc! {"update": "w", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}}], "$db": "t"};
    let r = in_flight_at_stepdown(&h, &mut c, update).await;
    assert_eq!(code(&r), Some(11602), "{r}");
    let msg = r.get_str("errmsg").unwrap();
    assert!(msg.contains("may or may not have been applied"), "{msg}");
    assert!(msg.contains("update"), "{msg}");
    assert!(labels(&r).is_empty(), "no RetryableWriteError: {r}");
    let hd = r.get_document("holdfast").unwrap();
    assert_eq!(hd.get_str("outcome").unwrap(), "unknown");
    // holdfast's own topologyVersion, not the member's.
    assert!(r.get_document("topologyVersion").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_write_in_flight_is_applied_exactly_once() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(doc! {"create": "rw", "$db": "t"}).await;
    let mut cmd = insert("t", "rw", vec![doc! {"_id": 7}]);
    cmd.insert("lsid", doc! {"id": bson::Uuid::new()});
    cmd.insert("txnNumber", 1i64);
    let r = in_flight_at_stepdown(&h, &mut c, cmd).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(r.get_i32("n").unwrap(), 1);
    let n = c.command(doc! {"count": "rw", "$db": "t"}).await;
    assert_eq!(n.get_i32("n").unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_primary_requests_are_held_until_hold_timeout_or_max_time_ms() {
    let h = Harness::with(|_| {}, |c| c.hold_timeout_ms = 500).await;
    let mut c = h.raw().await;
    c.command(doc! {"ping": 1, "$db": "admin"}).await;
    // Two of three members gone: no majority, no primary.
    let p = h.primary();
    let other = (p + 1) % 3;
    h.rs.kill(other).await;
    h.rs.kill(p).await;
    let t0 = Instant::now();
    let r = c.command(doc! {"find": "x", "$db": "t"}).await;
    assert_eq!(code(&r), Some(10107), "{r}");
    assert!(r.get_str("errmsg").unwrap().contains("hold_timeout"), "{r}");
    assert!(t0.elapsed() >= Duration::from_millis(450));
    assert_eq!(
        r.get_document("holdfast")
            .unwrap()
            .get_str("outcome")
            .unwrap(),
        "not_sent"
    );
    // A shorter maxTimeMS ends the wait first.
    let t0 = Instant::now();
    let r = c
        .command(doc! {"find": "x", "maxTimeMS": 100, "$db": "t"})
        .await;
    assert_eq!(code(&r), Some(50), "{r}");
    assert!(t0.elapsed() < Duration::from_millis(450));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_during_an_election_is_held_and_answered() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    let old = h.primary();
    h.rs.step_down(10, true).await.unwrap();
    let t0 = Instant::now();
    let r = c.command(insert("t", "held", vec![doc! {"_id": 1}])).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_ne!(h.primary(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_survive_a_stepdown_and_are_lost_with_their_member() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    let docs: Vec<Document> = (0..10).map(|i| doc! {"_id": i}).collect();
    c.command(insert("t", "cur", docs)).await;
    let open = || doc! {"find": "cur", "batchSize": 2, "$db": "t"};
    let r = c.command(open()).await;
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    assert_ne!(id, 0);
    let old = h.primary();
    h.rs.step_down(10, true).await.unwrap();
    h.wait_new_primary(old).await;
    // The cursor lives on the old primary, now a secondary: still served.
    let more = c
        .command(doc! {"getMore": id, "collection": "cur", "batchSize": 2, "$db": "t"})
        .await;
    assert_eq!(more.get_f64("ok").unwrap(), 1.0, "{more}");
    assert_eq!(
        more.get_document("cursor")
            .unwrap()
            .get_array("nextBatch")
            .unwrap()
            .len(),
        2
    );
    // A cursor whose member is killed cannot move: CursorNotFound.
    let r = c.command(open()).await;
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    let p = h.primary();
    h.rs.kill(p).await;
    let lost = c
        .command(doc! {"getMore": id, "collection": "cur", "$db": "t"})
        .await;
    assert_eq!(code(&lost), Some(43), "{lost}");
    assert!(lost.get_str("errmsg").unwrap().contains(&id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_writes_get_no_reply_and_are_delivered_after_an_election() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    let old = h.primary();
    h.rs.step_down(10, true).await.unwrap();
    // Once holdfast knows there is no primary, the write waits at the gate.
    let mut rx = h.hf.topology().subscribe();
    rx.wait_for(|s| s.primary.is_none()).await.unwrap();
    let w0 = doc! {"insert": "w0", "documents": [{"_id": 1}], "writeConcern": {"w": 0}, "$db": "t"};
    c.send(&w0, MsgFlags::MORE_TO_COME).await;
    // The next reply answers the ping, not the w:0 insert.
    let ping = c
        .send(&doc! {"ping": 1, "$db": "admin"}, MsgFlags::empty())
        .await;
    let f = tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.response_to(), ping);
    h.wait_new_primary(old).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = c.command(doc! {"count": "w0", "$db": "t"}).await;
        if n.get_i32("n").unwrap() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the w:0 insert never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_interrupted_by_a_stepdown_is_labelled_transient() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(doc! {"create": "tx", "$db": "t"}).await;
    let lsid = doc! {"id": bson::Uuid::new()};
    let first = doc! {"insert": "tx", "documents": [{"_id": 1}], "lsid": lsid.clone(), "txnNumber": 1i64, "startTransaction": true, "autocommit": false, "$db": "t"};
    let r = c.command(first).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let old = h.primary();
    h.rs.step_down(10, true).await.unwrap();
    h.wait_new_primary(old).await;
    let next = doc! {"insert": "tx", "documents": [{"_id": 2}], "lsid": lsid, "txnNumber": 1i64, "autocommit": false, "$db": "t"};
    let r = c.command(next).await;
    assert_ne!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert!(
        labels(&r).contains(&"TransientTransactionError".to_string()),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_retry_never_gives_a_retryable_write_the_clear_error() {
    let h = Harness::with(
        |_| {},
        |c| c.write_retry = holdfast_proxy::WriteRetry::Never,
    )
    .await;
    let mut c = h.raw().await;
    // A warm backend connection, so the write is executing when the
    // primary steps down.
    c.command(insert("t", "never", vec![doc! {"_id": 0}])).await;
    let mut cmd = insert("t", "never", vec![doc! {"_id": 1}]);
    cmd.insert("lsid", doc! {"id": bson::Uuid::new()});
    cmd.insert("txnNumber", 1i64);
    let r = in_flight_at_stepdown(&h, &mut c, cmd).await;
    assert_eq!(code(&r), Some(11602), "{r}");
    assert!(r.get_str("errmsg").unwrap().contains("write_retry"), "{r}");
}

// write_retry = "retryable" (the default): writes without a txnNumber are
// sent under holdfast's own sessions and resent after a failover; the new
// primary deduplicates them.

async fn counter(c: &mut common::Raw, coll: &str) -> i32 {
    let r = c
        .command(doc! {"find": coll, "filter": {"_id": 1}, "$db": "t"})
        .await;
    let batch = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    batch[0].as_document().unwrap().get_i32("n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_update_in_flight_is_made_retryable_and_applied_once() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(insert("t", "inc", vec![doc! {"_id": 1, "n": 0}]))
        .await;
    let update = doc! {"update": "inc", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}}], "writeConcern": {"w": "majority"}, "$db": "t"};
    let r = in_flight_at_stepdown(&h, &mut c, update).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(r.get_i32("n").unwrap(), 1, "{r}");
    assert!(
        r.get_document("holdfast").is_err(),
        "no holdfast error: {r}"
    );
    assert!(!r.contains_key("errorLabels"), "{r}");
    assert_eq!(counter(&mut c, "inc").await, 1, "applied exactly once");
    assert!(
        !h.hf.sessions().is_empty(),
        "holdfast lent one of its sessions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_and_modify_in_flight_returns_the_image_of_the_one_execution() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(insert("t", "fam", vec![doc! {"_id": 1, "n": 0}]))
        .await;
    let fam = doc! {"findAndModify": "fam", "query": {"_id": 1}, "update": {"$inc": {"n": 1}}, "new": true, "$db": "t"};
    let r = in_flight_at_stepdown(&h, &mut c, fam).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(
        r.get_document("value").unwrap().get_i32("n").unwrap(),
        1,
        "{r}"
    );
    assert_eq!(counter(&mut c, "fam").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_bulk_insert_with_a_duplicate_reports_the_same_write_errors() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(insert("t", "bulk", vec![doc! {"_id": 2}])).await;
    let bulk = || insert("t", "bulk", (0..5).map(|i| doc! {"_id": i}).collect());
    let r = in_flight_at_stepdown(&h, &mut c, bulk()).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(r.get_i32("n").unwrap(), 2, "{r}");
    let errs = r.get_array("writeErrors").unwrap();
    assert_eq!(errs.len(), 1, "{r}");
    let e = errs[0].as_document().unwrap();
    assert_eq!(
        (e.get_i32("index").unwrap(), e.get_i32("code").unwrap()),
        (2, 11000)
    );
    let n = c.command(doc! {"count": "bulk", "$db": "t"}).await;
    assert_eq!(n.get_i32("n").unwrap(), 3, "_id 0, 1 and the existing 2");
    // The same batch without a failover gives the same writeErrors.
    let mut again = insert("t", "bulk2", vec![doc! {"_id": 2}]);
    c.command(std::mem::take(&mut again)).await;
    let quiet = c
        .command(insert(
            "t",
            "bulk2",
            (0..5).map(|i| doc! {"_id": i}).collect(),
        ))
        .await;
    assert_eq!(quiet.get_i32("n").unwrap(), 2);
    let qe = quiet.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(qe.get_i32("index").unwrap(), e.get_i32("index").unwrap());
    assert_eq!(qe.get_i32("code").unwrap(), e.get_i32("code").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_many_in_flight_still_gets_the_clear_error() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(insert("t", "many", vec![doc! {"_id": 1, "n": 0}]))
        .await;
    let many = doc! {"update": "many", "updates": [{"q": {}, "u": {"$inc": {"n": 1}}, "multi": true}], "$db": "t"};
    let r = in_flight_at_stepdown(&h, &mut c, many).await;
    assert_eq!(code(&r), Some(11602), "{r}");
    assert!(r
        .get_str("errmsg")
        .unwrap()
        .contains("may or may not have been applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_own_session_stays_its_own() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    let lsid = doc! {"id": bson::Uuid::new()};
    // Many writes carrying the client's lsid but no txnNumber: holdfast
    // sends them under its own sessions.
    for i in 0..20 {
        let mut w = insert("t", "own", vec![doc! {"_id": i}]);
        w.insert("lsid", lsid.clone());
        let r = c.command(w).await;
        assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    }
    // The client's own transaction on its lsid, txnNumber 1: no collision.
    let start = doc! {"insert": "own", "documents": [{"_id": 100}], "lsid": lsid.clone(), "txnNumber": 1i64, "startTransaction": true, "autocommit": false, "$db": "t"};
    let r = c.command(start).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    let commit = doc! {"commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 1i64, "autocommit": false, "$db": "admin"};
    let r = c.command(commit).await;
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    // A retryable write of the client's own (its txnNumber) keeps its lsid:
    // sent again by the client, the server deduplicates it.
    let own = || {
        let mut w = insert("t", "own", vec![doc! {"_id": 200}]);
        w.insert("lsid", lsid.clone());
        w.insert("txnNumber", 2i64);
        w
    };
    assert_eq!(c.command(own()).await.get_i32("n").unwrap(), 1);
    let again = c.command(own()).await;
    assert_eq!(
        again.get_i32("n").unwrap(),
        1,
        "the server's dedup: {again}"
    );
    assert!(
        again.get_array("writeErrors").is_err(),
        "not run twice: {again}"
    );
    let n = c.command(doc! {"count": "own", "$db": "t"}).await;
    assert_eq!(n.get_i32("n").unwrap(), 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_insert_in_flight_when_the_primary_dies_runs_once_on_the_new_one() {
    let h = Harness::start().await;
    let mut c = h.raw().await;
    c.command(doc! {"create": "killed", "$db": "t"}).await;
    let old = h.primary();
    h.rs.set_latency(old, Duration::from_millis(1000));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.rs.kill(old).await;
    };
    let w = insert("t", "killed", vec![doc! {"_id": 1}, doc! {"_id": 2}]);
    let (r, ()) = tokio::join!(c.command(w), kill);
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    assert_eq!(r.get_i32("n").unwrap(), 2, "{r}");
    let n = c.command(doc! {"count": "killed", "$db": "t"}).await;
    assert_eq!(n.get_i32("n").unwrap(), 2);
    assert_ne!(h.primary(), old);
}
