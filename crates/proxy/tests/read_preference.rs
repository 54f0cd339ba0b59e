//! Reads on secondaries that fail: a secondary that dies or stops answering
//! mid-read, and one that refuses the read, cost the client nothing — the
//! read is replayed once on another suitable member. Which member served a
//! read is read from the members' own `serverStatus.opcounters`.

mod common;

use std::time::Duration;

use bson::{doc, Document};
use common::{insert, Harness, Raw};

/// Members tagged `dc: m0`, `dc: m1`, `dc: m2`, so a read can prefer one.
async fn tagged() -> Harness {
    Harness::with(
        |s| {
            for i in 0..3 {
                let dc = format!("m{i}");
                *s = std::mem::take(s).with_tags(i, &[("dc", dc.as_str())]);
            }
        },
        |c| c.stall_probe_ms = 300,
    )
    .await
}

fn secondaries(h: &Harness) -> (usize, usize) {
    let p = h.primary();
    let s: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    (s[0], s[1])
}

/// A find preferring member `first` (tag set), then any secondary (`{}`).
fn find_preferring(first: usize) -> Document {
    doc! {
        "find": "r", "filter": {"_id": 1}, "$db": "t",
        "$readPreference": {"mode": "secondary", "tags": [{"dc": format!("m{first}")}, {}]},
    }
}

async fn queries(h: &Harness, member: usize) -> i64 {
    let mut c = Raw::connect(&h.rs.addr(member).to_string()).await;
    let s = c.command(doc! {"serverStatus": 1, "$db": "admin"}).await;
    s.get_document("opcounters")
        .unwrap()
        .get_i64("query")
        .unwrap()
}

fn found(r: &Document) -> usize {
    assert_eq!(r.get_f64("ok").unwrap(), 1.0, "{r}");
    r.get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .len()
}

async fn seeded() -> (Harness, Raw) {
    let h = tagged().await;
    let mut c = h.raw().await;
    let mut w = insert("t", "r", vec![doc! {"_id": 1}]);
    w.insert("writeConcern", doc! {"w": 3});
    c.command(w).await;
    (h, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_sets_route_to_the_tagged_secondary() {
    let (h, mut c) = seeded().await;
    let (a, b) = secondaries(&h);
    let (qa, qb) = (queries(&h, a).await, queries(&h, b).await);
    for _ in 0..10 {
        assert_eq!(found(&c.command(find_preferring(b)).await), 1);
    }
    assert_eq!(queries(&h, b).await - qb, 10);
    assert_eq!(queries(&h, a).await - qa, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_that_dies_mid_read_costs_the_client_nothing() {
    let (h, mut c) = seeded().await;
    let (a, b) = secondaries(&h);
    let qb = queries(&h, b).await;
    h.rs.set_latency(a, Duration::from_millis(1000));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.rs.kill(a).await;
    };
    let (r, ()) = tokio::join!(c.command(find_preferring(a)), kill);
    assert_eq!(found(&r), 1);
    // Replayed once, on the other secondary (not on the primary).
    assert_eq!(queries(&h, b).await - qb, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_secondary_is_cut_by_the_stall_watchdog_and_the_read_replayed() {
    let (h, mut c) = seeded().await;
    let (a, b) = secondaries(&h);
    let qb = queries(&h, b).await;
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        // Let the read reach member a first, then make a swallow everything.
        let blackhole = async {
            h.rs.set_latency(a, Duration::from_millis(600));
            tokio::time::sleep(Duration::from_millis(200)).await;
            h.rs.blackhole(a, true);
        };
        let (r, ()) = tokio::join!(c.command(find_preferring(a)), blackhole);
        r
    })
    .await
    .expect("the read is answered, not left hanging");
    assert_eq!(found(&r), 1);
    assert_eq!(queries(&h, b).await - qb, 1);
    // Meanwhile other reads avoid the member that failed.
    for _ in 0..5 {
        assert_eq!(found(&c.command(find_preferring(a)).await), 1);
    }
    h.rs.blackhole(a, false);
}
