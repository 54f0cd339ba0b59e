//! What survives failover: every w:"majority" write; not an unreplicated
//! w:1 write whose primary dies.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson};
use common::*;
use holdfast_sim::client::RawClient;
use holdfast_sim::{ReplicaSet, SimConfig};
use parking_lot::Mutex;
use rand::Rng;

/// Writes w:"majority" inserts to whoever is primary until told to stop;
/// records the ids that were acknowledged without a write concern error.
async fn writer(
    set: ReplicaSet,
    worker: i64,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut next: i64 = worker * 1_000_000;
    let mut conn: Option<(usize, RawClient)> = None;
    while !stop.is_cancelled() {
        let Some(p) = set.primary() else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if conn.as_ref().map(|(m, _)| *m) != Some(p) {
            conn = RawClient::connect(set.addr(p)).await.ok().map(|c| (p, c));
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        }
        let (_, c) = conn.as_mut().unwrap();
        next += 1;
        let cmd = doc! {
            "insert": "d",
            "documents": [{ "_id": next }],
            "writeConcern": { "w": "majority", "wtimeout": 5000 },
        };
        match tokio::time::timeout(Duration::from_secs(10), c.command("test", cmd)).await {
            Ok(Ok(r))
                if is_ok(&r)
                    && r.get("writeConcernError").is_none()
                    && r.get("writeErrors").is_none() =>
            {
                acked.lock().insert(next);
            }
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(2)).await,
            _ => conn = None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_writes_survive_20_random_stepdowns_and_kills() {
    // Secondaries lag more than an election lasts, so a new primary that
    // did not catch up first would lose acknowledged writes.
    let cfg = SimConfig {
        election_ms: 100,
        repl_lag_ms: 150,
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let writers: Vec<_> = (1..=8)
        .map(|w| tokio::spawn(writer(set.clone(), w, acked.clone(), stop.clone())))
        .collect();
    let mut rng = rand::thread_rng();
    let mut last_acked = 0;
    for round in 0..20 {
        // Let some writes through first.
        eventually("writes are acknowledged", || {
            let n = acked.lock().len();
            async move { n > last_acked + 3 }
        })
        .await;
        last_acked = acked.lock().len();
        let p = set.wait_for_primary(WAIT).await.expect("a primary");
        match rng.gen_range(0..3) {
            0 => {
                set.step_down(1, true)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            1 => {
                set.kill(p).await;
                set.wait_for_primary(WAIT)
                    .await
                    .expect("new primary after kill");
                set.revive(p).await;
            }
            _ => {
                let s = (p + 1 + rng.gen_range(0..2)) % 3;
                set.kill(s).await;
                set.kill(p).await;
                set.revive(s).await;
                set.wait_for_primary(WAIT)
                    .await
                    .expect("new primary after two kills");
                set.revive(p).await;
            }
        }
        set.wait_for_primary(WAIT)
            .await
            .expect("primary after round");
    }
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() > 60, "only {} writes acknowledged", acked.len());
    let p = set.wait_for_primary(WAIT).await.unwrap();
    let mut c = RawClient::connect(set.addr(p)).await.unwrap();
    let r = run(
        &mut c,
        "test",
        doc! { "find": "d", "filter": {}, "batchSize": 100_000 },
    )
    .await;
    let present: BTreeSet<i64> = first_batch(&r)
        .iter()
        .filter_map(|d| match d.get("_id") {
            Some(Bson::Int64(i)) => Some(*i),
            _ => None,
        })
        .collect();
    let lost: Vec<&i64> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "majority-acknowledged writes lost: {lost:?}"
    );
    // Every member converges on the same data.
    eventually("members converge", || {
        let set = set.clone();
        let n = present.len();
        async move { (0..3).all(|m| set.total_documents(m) == n) }
    })
    .await;
}

#[tokio::test]
async fn unreplicated_w1_write_is_rolled_back_when_its_primary_dies() {
    // Secondaries lag 60 s: nothing replicates during the test.
    let set = start(200, 60_000).await;
    let (p, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "rb", "documents": [{ "_id": 1 }], "writeConcern": { "w": 1 } },
    )
    .await;
    assert_ok(&r);
    // The same write with w:"majority" cannot be acknowledged.
    let r = run(&mut c, "test", doc! { "insert": "rb", "documents": [{ "_id": 2 }], "writeConcern": { "w": "majority", "wtimeout": 100 } }).await;
    assert_eq!(wc_code(&r), Some(64));
    assert_eq!(set.total_documents(p), 2);
    set.kill(p).await;
    let np = set.wait_for_primary(WAIT).await.unwrap();
    let mut n = connect(&set, np).await;
    let r = run(&mut n, "test", doc! { "find": "rb", "filter": {} }).await;
    assert!(first_batch(&r).is_empty(), "w:1 write survived: {r}");
    run(
        &mut n,
        "test",
        doc! { "insert": "rb", "documents": [{ "_id": 3 }], "writeConcern": { "w": 1 } },
    )
    .await;
    // The old primary comes back, rolls its entries back and takes the
    // new primary's data.
    set.revive(p).await;
    let mut old = connect(&set, p).await;
    let r = run(
        &mut old,
        "test",
        doc! { "find": "rb", "filter": {}, "$readPreference": secondary_ok() },
    )
    .await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 3 }], "rolled back: {r}");
}

#[tokio::test]
async fn member_revived_behind_the_compacted_log_resyncs() {
    let set = start(200, 0).await;
    set.set_log_retain(20);
    let (p, mut c) = primary_client(&set).await;
    let dead = (p + 1) % 3;
    set.kill(dead).await;
    for i in 0..200 {
        let r = run(
            &mut c,
            "test",
            doc! { "insert": "cmp", "documents": [{ "_id": i }] },
        )
        .await;
        assert_ok(&r);
    }
    assert!(set.log_base() > 0, "the log was compacted");
    set.revive(dead).await;
    eventually("the revived member has everything", || {
        let set = set.clone();
        async move { set.total_documents(dead) == 200 }
    })
    .await;
    // And keeps replicating.
    run(
        &mut c,
        "test",
        doc! { "insert": "cmp", "documents": [{ "_id": 1000 }] },
    )
    .await;
    eventually("it applies new writes", || {
        let set = set.clone();
        async move { set.total_documents(dead) == 201 }
    })
    .await;
    let mut s = connect(&set, dead).await;
    let r = run(
        &mut s,
        "test",
        doc! { "count": "cmp", "$readPreference": secondary_ok() },
    )
    .await;
    assert_ok(&r);
}
