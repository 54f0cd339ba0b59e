//! holdfast's own server sessions (`write_retry = "retryable"`, the
//! default), seen from the server: a write holdfast sent under one of its
//! sessions answers the client with the server's own `operationTime` and
//! `$clusterTime`, as a direct write does; and at shutdown holdfast ends
//! its sessions with `endSessions`, which the primary's logical session
//! cache shows at its next refresh.

mod common;

use std::time::Duration;

use bson::{doc, Bson, Document};
use common::{insert, Harness, Raw};

async fn direct(h: &Harness, member: usize) -> Raw {
    Raw::connect(&h.rs.addr(member).to_string()).await
}

fn keys(d: &Document) -> Vec<&str> {
    d.keys().map(String::as_str).collect()
}

fn ok(d: &Document) {
    assert_eq!(d.get_f64("ok").ok(), Some(1.0), "{d}");
}

/// The primary's `logicalSessionRecordCache`.
async fn session_cache(h: &Harness, member: usize) -> Document {
    let s = direct(h, member)
        .await
        .command(doc! {"serverStatus": 1, "$db": "admin"})
        .await;
    s.get_document("logicalSessionRecordCache").unwrap().clone()
}

async fn refresh(h: &Harness, member: usize) {
    let r = direct(h, member)
        .await
        .command(doc! {"refreshLogicalSessionCacheNow": 1, "$db": "admin"})
        .await;
    ok(&r);
}

/// The `_id`s of the records in `config.system.sessions`.
async fn recorded_sessions(h: &Harness, member: usize) -> Vec<Bson> {
    let r = direct(h, member)
        .await
        .command(
            doc! {"find": "system.sessions", "filter": {}, "batchSize": 10_000, "$db": "config"},
        )
        .await;
    ok(&r);
    let batch = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    batch
        .iter()
        .map(|d| d.as_document().unwrap().get("_id").cloned().unwrap())
        .collect()
}

/// A `ping` straight to `member`: its `operationTime` and `$clusterTime`
/// are the member's now (nothing is written meanwhile: no periodic no-op).
async fn times_now(h: &Harness, member: usize) -> (Bson, Bson) {
    let p = direct(h, member)
        .await
        .command(doc! {"ping": 1, "$db": "admin"})
        .await;
    (
        p.get("operationTime").cloned().unwrap(),
        p.get("$clusterTime").cloned().unwrap(),
    )
}

fn times(d: &Document) -> (Bson, Bson) {
    (
        d.get("operationTime").cloned().expect("operationTime"),
        d.get("$clusterTime").cloned().expect("$clusterTime"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_retryable_answers_with_the_servers_operation_time_and_cluster_time() {
    let h = Harness::with(|s| s.periodic_noop_ms = 0, |_| {}).await;
    let p = h.primary();
    let d = direct(&h, p)
        .await
        .command(insert("t", "direct", vec![doc! {"_id": 1}]))
        .await;
    ok(&d);
    let mut c = h.raw().await;
    let r = c.command(insert("t", "via", vec![doc! {"_id": 1}])).await;
    ok(&r);
    // holdfast sent it under a session of its own (the client sent none).
    assert_eq!(h.hf.sessions().len(), 1);
    // The same reply as a direct write's, field for field…
    assert_eq!(keys(&r), keys(&d), "{r} / {d}");
    assert_eq!(r.get_i32("n").unwrap(), 1);
    // …with the server's values: the write's own time, then the same
    // cluster time the primary gives anyone now.
    assert_eq!(times(&r), times_now(&h, p).await, "{r}");
    let (r_op, d_op) = (times(&r).0, times(&d).0);
    assert!(
        r_op.as_timestamp().unwrap() > d_op.as_timestamp().unwrap(),
        "{r} after {d}"
    );

    // Resent after a stepdown: the new primary's times.
    let old = p;
    h.rs.set_latency(old, Duration::from_millis(1000));
    let step_down = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.rs.step_down(10, true).await.unwrap();
    };
    let (resent, ()) = tokio::join!(
        c.command(insert("t", "via", vec![doc! {"_id": 2}])),
        step_down
    );
    h.rs.set_latency(old, Duration::ZERO);
    ok(&resent);
    assert_eq!(keys(&resent), keys(&d), "{resent}");
    let np = h.primary();
    assert_ne!(np, old);
    assert_eq!(times(&resent), times_now(&h, np).await, "{resent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdfast_ends_its_sessions_at_shutdown() {
    let h = Harness::start().await;
    let p = h.primary();
    // Concurrent writes: holdfast lends several sessions.
    let writers = (0..6).map(|i| {
        let addr = h.hf.listen_addr.clone();
        tokio::spawn(async move {
            let mut c = Raw::connect(&addr).await;
            for k in 0..5 {
                let r = c
                    .command(insert("t", "end", vec![doc! {"_id": i * 100 + k}]))
                    .await;
                ok(&r);
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    let lent = h.hf.sessions().len();
    assert!(lent >= 1);
    let cache = session_cache(&h, p).await;
    assert!(
        cache.get_i32("activeSessionsCount").unwrap() as usize >= lent,
        "the primary saw holdfast's sessions: {cache}"
    );
    // Recorded in config.system.sessions by a refresh (with any other
    // session used meanwhile: holdfast's topology driver has one)…
    refresh(&h, p).await;
    let before = recorded_sessions(&h, p).await;
    assert!(before.len() >= lent);

    h.hf.shutdown(Duration::from_secs(1)).await;
    assert!(h.hf.sessions().is_empty());
    // …and ended: the next refresh deletes exactly holdfast's records.
    // (The implicit session of the driver inside holdfast's topology
    // monitor is not one of them: holdfast does not end it today.)
    refresh(&h, p).await;
    let cache = session_cache(&h, p).await;
    assert_eq!(
        cache
            .get_i32("lastSessionsCollectionJobEntriesEnded")
            .unwrap() as usize,
        lent,
        "{cache}"
    );
    let after = recorded_sessions(&h, p).await;
    let deleted = before.iter().filter(|id| !after.contains(id)).count();
    assert_eq!(deleted, lent, "before {before:?}, after {after:?}");
}
