//! Reads on secondaries that fail: a secondary that dies or stops answering
//! mid-read, and one that refuses the read, cost the client nothing — the
//! read is replayed once on another suitable member. And what must run on
//! the primary (linearizable reads, transactions, findAndModify, aggregate
//! with `$out`/`$merge`) goes there whatever the read preference. Which
//! member served a request is read from the members' own `serverStatus`
//! (`opcounters`, `metrics.commands`), and holdfast's backend connections
//! per member from its metrics.

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

/// `serverStatus.metrics.commands.<name>.total` of `member`: how many
/// `name` commands that member ran (refusals by role are not counted, as
/// in mongod).
async fn ran(h: &Harness, member: usize, name: &str) -> i64 {
    let mut c = Raw::connect(&h.rs.addr(member).to_string()).await;
    let s = c.command(doc! {"serverStatus": 1, "$db": "admin"}).await;
    s.get_document("metrics")
        .and_then(|m| m.get_document("commands"))
        .and_then(|c| c.get_document(name))
        .and_then(|n| n.get_i64("total"))
        .unwrap_or_else(|_| panic!("metrics.commands.{name} in {s}"))
}

/// Backend connections holdfast opened to `member` (its metric): a request
/// routed to a member that had none needs one, even if the member then
/// refuses it and holdfast sends it elsewhere.
fn opened_to(h: &Harness, member: usize) -> u64 {
    let text = holdfast_proxy::admin::prometheus()
        .expect("the recorder")
        .render();
    let label = format!("member=\"{}\"", h.rs.addr(member));
    text.lines()
        .filter(|l| {
            l.starts_with("holdfast_backend_connections_opened_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn with_secondary_pref(mut cmd: Document) -> Document {
    cmd.insert("$readPreference", doc! {"mode": "secondary"});
    cmd
}

fn ok(r: &Document) {
    assert_eq!(r.get_f64("ok").ok(), Some(1.0), "{r}");
}

/// Per member: linearizable finds, finds and aggregates and
/// findAndModifys run, backend connections opened by holdfast.
async fn where_things_ran(h: &Harness) -> Vec<(i64, i64, i64, u64)> {
    let mut out = Vec::new();
    for m in 0..3 {
        out.push((
            ran(h, m, "find").await,
            ran(h, m, "aggregate").await,
            ran(h, m, "findAndModify").await,
            opened_to(h, m),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_only_commands_stay_on_the_primary_under_a_secondary_read_preference() {
    holdfast_proxy::admin::prometheus().expect("the metrics recorder");
    let (h, mut c) = seeded().await;
    let p = h.primary();
    let before = where_things_ran(&h).await;

    // A linearizable read.
    for _ in 0..3 {
        let mut find = find_preferring(p);
        find.insert("readConcern", doc! {"level": "linearizable"});
        assert_eq!(found(&c.command(with_secondary_pref(find)).await), 1);
    }
    // The statements of a transaction (and its commit).
    let lsid = doc! {"id": bson::Uuid::new()};
    let txn = |mut cmd: Document, start: bool| {
        cmd.insert("lsid", lsid.clone());
        cmd.insert("txnNumber", 1i64);
        cmd.insert("autocommit", false);
        if start {
            cmd.insert("startTransaction", true);
        }
        with_secondary_pref(cmd)
    };
    let r = c
        .command(txn(doc! {"find": "r", "filter": {}, "$db": "t"}, true))
        .await;
    assert_eq!(found(&r), 1);
    ok(&c
        .command(txn(insert("t", "r", vec![doc! {"_id": 2}]), false))
        .await);
    ok(&c
        .command(txn(doc! {"commitTransaction": 1, "$db": "admin"}, false))
        .await);
    // findAndModify.
    let fam = doc! {"findAndModify": "r", "query": {"_id": 1}, "update": {"$inc": {"n": 1}}, "new": true, "$db": "t"};
    let r = c.command(with_secondary_pref(fam)).await;
    ok(&r);
    assert_eq!(r.get_document("value").unwrap().get_i32("n").unwrap(), 1);
    // aggregate with $out and with $merge (holdfast-sim does not run
    // either stage: the primary answers 115, which is where it must run).
    for stage in [doc! {"$out": "copy"}, doc! {"$merge": {"into": "copy"}}] {
        let agg = doc! {"aggregate": "r", "pipeline": [stage], "cursor": {}, "$db": "t"};
        let r = c.command(with_secondary_pref(agg)).await;
        assert!(r.get_document("holdfast").is_err(), "{r}");
        assert_eq!(
            r.get_i32("code").ok(),
            Some(115),
            "answered by the primary: {r}"
        );
    }

    let after = where_things_ran(&h).await;
    for m in 0..3 {
        let (b, a) = (before[m], after[m]);
        if m == p {
            assert_eq!(
                a.0 - b.0,
                4,
                "3 linearizable finds and the transaction's find"
            );
            assert_eq!(a.1 - b.1, 2, "the $out and $merge aggregates");
            assert_eq!(a.2 - b.2, 1, "the findAndModify");
        } else {
            assert_eq!((a.0, a.1, a.2), (b.0, b.1, b.2), "secondary {m} ran none");
            assert_eq!(a.3, b.3, "holdfast sent nothing to secondary {m}");
        }
    }

    // The same observers see a read that may go to a secondary go there.
    let (s, _) = secondaries(&h);
    assert_eq!(found(&c.command(find_preferring(s)).await), 1);
    let now = where_things_ran(&h).await;
    assert_eq!(now[s].0 - after[s].0, 1);
    assert!(
        now[s].3 > after[s].3,
        "a backend connection to the secondary"
    );
}
