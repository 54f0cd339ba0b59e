//! What hello tells a client choosing a member to read from: each
//! member's own `lastWrite` (advancing with writes, behind on a lagging
//! secondary, kept recent on an idle set by the periodic no-op) and its
//! `tags`, as mongod 7.0 reports them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bson::{doc, DateTime, Document, Timestamp};
use common::*;
use holdfast_sim::client::RawClient;
use holdfast_sim::{ReplicaSet, SimConfig};

/// `lastWrite` of one hello reply.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LastWrite {
    op: Timestamp,
    term: i64,
    date: DateTime,
    majority: Timestamp,
    majority_date: DateTime,
}

fn last_write(h: &Document) -> LastWrite {
    let lw = h
        .get_document("lastWrite")
        .unwrap_or_else(|_| panic!("no lastWrite in {h}"));
    let op = lw.get_document("opTime").unwrap();
    let maj = lw.get_document("majorityOpTime").unwrap();
    LastWrite {
        op: op.get_timestamp("ts").unwrap(),
        term: op.get_i64("t").unwrap(),
        date: *lw.get_datetime("lastWriteDate").unwrap(),
        majority: maj.get_timestamp("ts").unwrap(),
        majority_date: *lw.get_datetime("majorityWriteDate").unwrap(),
    }
}

async fn hello(set: &ReplicaSet, member: usize) -> Document {
    let mut c = connect(set, member).await;
    let h = c.hello().await.unwrap();
    assert_ok(&h);
    h
}

async fn lw(set: &ReplicaSet, member: usize) -> LastWrite {
    last_write(&hello(set, member).await)
}

async fn start_with(cfg: SimConfig) -> ReplicaSet {
    let set = ReplicaSet::start(cfg).await.expect("start set");
    set.wait_for_primary(WAIT).await.expect("a primary");
    set
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn quiet(periodic_noop_ms: u64) -> SimConfig {
    SimConfig {
        election_ms: 300,
        repl_lag_ms: 0,
        periodic_noop_ms,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn last_write_advances_with_writes_and_lags_on_a_lagging_secondary() {
    let set = start_with(quiet(0)).await;
    let before = lw(&set, 0).await;
    // What mongod sends: a {ts, t: Int64} optime and whole-second dates
    // (the optime's seconds).
    assert_eq!(before.term, 1);
    assert_eq!(
        before.date.timestamp_millis(),
        i64::from(before.op.time) * 1000
    );
    assert_eq!(before.date.timestamp_millis() % 1000, 0);
    assert!(now_secs() - before.op.time <= 5, "{before:?}");
    for m in 1..3 {
        assert_eq!(lw(&set, m).await, before, "member {m} at start");
    }

    // The next write lands in a later second.
    while now_secs() <= before.op.time {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set.set_lag(2, Duration::from_secs(5));
    let (_, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "lw", "documents": [{ "_id": 1 }] },
    )
    .await;
    assert_ok(&r);
    assert!(r.get("writeConcernError").is_none(), "{r}");

    let primary = lw(&set, 0).await;
    assert!(primary.op > before.op);
    assert!(primary.date > before.date);
    // w: "majority" was acknowledged: the commit point is the write.
    assert_eq!(primary.majority, primary.op);
    assert_eq!(primary.majority_date, primary.date);
    let fresh = lw(&set, 1).await;
    assert_eq!(fresh, primary);
    // The lagging member reports what it applied: the older write, an
    // older date, and a commit point no later than that.
    let lagging = lw(&set, 2).await;
    assert_eq!(lagging.op, before.op);
    assert_eq!(lagging.date, before.date);
    assert!(lagging.date < primary.date);
    assert_eq!(lagging.majority, before.op);

    // The lag removed, it catches up.
    set.set_lag(2, Duration::ZERO);
    eventually("member 2 catches up", || {
        let set = set.clone();
        async move { lw(&set, 2).await == primary }
    })
    .await;
    // hello over OP_QUERY (isMaster) tells the same.
    let mut raw = RawClient::connect(set.addr(2)).await.unwrap();
    let h = raw
        .query_command("admin", doc! { "isMaster": 1 })
        .await
        .unwrap();
    assert_eq!(last_write(&h), primary);
}

#[tokio::test]
async fn an_idle_primary_writes_periodic_noops() {
    let set = start_with(quiet(200)).await;
    let docs = set.total_documents(0);
    let start = lw(&set, 0).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = lw(&set, 0).await;
    assert!(later.op > start.op, "{start:?} then {later:?}");
    // Within two intervals (and the second's rounding) of now.
    let now_ms = DateTime::now().timestamp_millis();
    assert!(
        now_ms - later.date.timestamp_millis() <= 2500,
        "lastWriteDate {} is {} ms old",
        later.date,
        now_ms - later.date.timestamp_millis()
    );
    // No-ops change no data, and replicate like any entry.
    assert_eq!(set.total_documents(0), docs);
    eventually("the secondaries apply the no-ops", || {
        let set = set.clone();
        async move { lw(&set, 1).await.op >= later.op && lw(&set, 2).await.op >= later.op }
    })
    .await;
    let mut c = connect(&set, 0).await;
    let p = run(
        &mut c,
        "admin",
        doc! { "getParameter": 1, "writePeriodicNoops": 1 },
    )
    .await;
    assert_eq!(p.get_bool("writePeriodicNoops"), Ok(true), "{p}");

    // Without them, an idle set's lastWrite stands still.
    let still = start_with(quiet(0)).await;
    let start = lw(&still, 0).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(lw(&still, 0).await, start);

    // The default is MongoDB's 10 s.
    let default = start_with(SimConfig {
        election_ms: 300,
        ..SimConfig::default()
    })
    .await;
    let mut c = connect(&default, 0).await;
    let p = run(
        &mut c,
        "admin",
        doc! { "getParameter": 1, "periodicNoopIntervalSecs": 1 },
    )
    .await;
    assert_eq!(p.get_i32("periodicNoopIntervalSecs"), Ok(10), "{p}");
}

#[tokio::test]
async fn tags_in_hello_and_the_replica_set_config() {
    let cfg = quiet(0)
        .with_tags(1, &[("dc", "east"), ("rack", "r1")])
        .with_tags(2, &[("dc", "west")]);
    let set = start_with(cfg).await;
    assert!(
        !hello(&set, 0).await.contains_key("tags"),
        "an untagged member reports no tags"
    );
    let h = hello(&set, 1).await;
    let tags = h.get_document("tags").unwrap();
    assert_eq!(tags, &doc! { "dc": "east", "rack": "r1" });
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        ["dc", "rack"],
        "in configuration order"
    );
    assert_eq!(
        hello(&set, 2).await.get_document("tags").unwrap(),
        &doc! { "dc": "west" }
    );

    let mut c = connect(&set, 2).await;
    let r = run(&mut c, "admin", doc! { "replSetGetConfig": 1 }).await;
    assert_ok(&r);
    let members = r
        .get_document("config")
        .unwrap()
        .get_array("members")
        .unwrap();
    let tags: Vec<Document> = members
        .iter()
        .map(|m| {
            m.as_document()
                .unwrap()
                .get_document("tags")
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(
        tags,
        [
            doc! {},
            doc! { "dc": "east", "rack": "r1" },
            doc! { "dc": "west" }
        ]
    );

    // Tags for a member the set does not have are refused.
    let bad = ReplicaSet::start(SimConfig::default().with_tags(3, &[("dc", "x")])).await;
    assert_eq!(
        bad.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

/// Kills the binary when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_takes_member_tags_and_documents_lag() {
    let bin = env!("CARGO_BIN_EXE_holdfast-sim");
    let help = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for want in [
        "--member-tags",
        "--periodic-noop-ms",
        "simFault: \"lag\"",
        "lastWrite",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }

    let mut child = Child(
        Command::new(bin)
            .args(["--port", "0", "--election-ms", "300"])
            .args(["--member-tags", "1:dc=east", "--member-tags", "1:rack=r2"])
            .args(["--member-tags", "2:dc=west,rack=r9"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let addrs = tokio::task::spawn_blocking(move || {
        let mut addrs = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("mongodb://") {
                break;
            }
            // "member N: ADDR ROLE"
            if let Some(addr) = line.split_whitespace().nth(2) {
                addrs.push(addr.parse::<std::net::SocketAddr>().unwrap());
            }
        }
        addrs
    })
    .await
    .unwrap();
    assert_eq!(addrs.len(), 3);
    let mut tags = Vec::new();
    for addr in &addrs {
        let mut c = RawClient::connect(*addr).await.unwrap();
        let h = c.hello().await.unwrap();
        tags.push(h.get_document("tags").ok().cloned());
    }
    assert_eq!(
        tags,
        [
            None,
            Some(doc! { "dc": "east", "rack": "r2" }),
            Some(doc! { "dc": "west", "rack": "r9" }),
        ]
    );
    let mut c = RawClient::connect(addrs[0]).await.unwrap();
    let r = run(
        &mut c,
        "admin",
        doc! { "simFault": "lag", "member": 2, "ms": 250 },
    )
    .await;
    assert_ok(&r);

    // A member index the set does not have is refused at start.
    let out = Command::new(bin)
        .args(["--port", "0", "--member-tags", "3:dc=x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--member-tags 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
