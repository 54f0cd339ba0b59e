//! Writes across failovers, the seed-style workload: what does a legacy
//! application (no `lsid`, no `txnNumber`, driver retries off) see through
//! holdfast while the primary is stepped down and shut down, with
//! `write_retry = "safe"` (holdfast's earlier default: a plain write in
//! flight at a failover gets the unknown-outcome error) and `"retryable"`
//! (the default: holdfast sends it under a session of its own and resends
//! it; the new primary deduplicates)?
//!
//! `WRITERS` raw connections (40) write with `w: "majority"` through a
//! fresh holdfast in front of a fresh three-member `ReplicaSet` (election
//! `ELECTION_MS`, 1.5 s): even writers `$inc` their own counter
//! (`update` of one document), odd writers insert documents with fresh
//! `_id`s (one per attempt: an `_id` whose fate is unknown is never used
//! again). Failover runs: every `PAUSE_MS` (2.5 s) the primary is stepped
//! down (`replSetStepDown` 2 s, force), `STEPDOWNS` (3) times, then shut
//! down; writing stops `PAUSE_MS` + 1 s after that. No-failover runs:
//! `NO_FAILOVER_SECS` (10 s) of the same load, `ROUNDS` (3) per variant,
//! in a rotating order, for the throughput cost of the session fields; a
//! third variant sends the same writes with session fields of the client's
//! own (one `lsid` per connection, increasing `txnNumber`, as a driver with
//! retryable writes on), which holdfast passes through: the server's share
//! of that cost, apart from holdfast's.
//!
//! Per run: writes acknowledged, errors seen by the application (any reply
//! that is not `ok: 1` without `writeErrors`/`writeConcernError`, or a
//! broken connection), acknowledged writes per second, and exactness, read
//! from the primary afterwards: every counter equals its writer's
//! acknowledged increments, every acknowledged insert is present, and
//! nothing the application was told failed is there (an errored write that
//! was applied after all). Also holdfast's own counters for the run
//! (writes made retryable, resent, answered with the unknown-outcome
//! error). Results: `benches/results/write_survival.json`.
//!
//!   nice -n 10 cargo bench -p holdfast-bench --bench write_survival [-- WRITERS STEPDOWNS PAUSE_MS ELECTION_MS NO_FAILOVER_SECS ROUNDS]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use holdfast_bench::{Conn, Template, SLOT};
use holdfast_proxy::WriteRetry;
use holdfast_sim::{ReplicaSet, SimConfig};
use serde_json::{json, Value};

const DB: &str = "survive";

#[derive(Clone, Copy)]
struct Params {
    writers: usize,
    stepdowns: usize,
    pause: Duration,
    election_ms: u64,
    no_failover: Duration,
    rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let p = Params {
        writers: arg(0, 40) as usize,
        stepdowns: arg(1, 3) as usize,
        pause: Duration::from_millis(arg(2, 2500)),
        election_ms: arg(3, 1500),
        no_failover: Duration::from_secs(arg(4, 10)),
        rounds: arg(5, 3) as usize,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(p));
}

fn mode_name(m: WriteRetry) -> &'static str {
    match m {
        WriteRetry::Safe => "safe",
        WriteRetry::Retryable => "retryable",
        WriteRetry::Never => "never",
    }
}

/// What is measured: holdfast's `write_retry`, and who puts `lsid` and
/// `txnNumber` on the writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `write_retry = "safe"`: plain writes stay plain.
    Safe,
    /// `write_retry = "retryable"`: holdfast adds its sessions' fields.
    Retryable,
    /// `write_retry = "retryable"`, the client sends its own fields:
    /// holdfast passes them through.
    ClientSessions,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Safe => "safe",
            Variant::Retryable => "retryable",
            Variant::ClientSessions => "client_sessions",
        }
    }

    fn write_retry(self) -> WriteRetry {
        match self {
            Variant::Safe => WriteRetry::Safe,
            Variant::Retryable | Variant::ClientSessions => WriteRetry::Retryable,
        }
    }
}

async fn run(p: Params) {
    holdfast_proxy::admin::prometheus().expect("metrics recorder");
    let load_before = load_average();
    println!(
        "write survival: {} writers (half $inc, half insert), w:\"majority\", no lsid/txnNumber; failover runs: {} stepdowns then a shutdown of the primary, {} ms apart, election {} ms",
        p.writers,
        p.stepdowns,
        p.pause.as_millis(),
        p.election_ms
    );
    let mut runs = Vec::new();
    for v in [Variant::Safe, Variant::Retryable] {
        runs.push(measure(&p, v, true).await);
    }
    // No failover: rotate the order so slow drifts of a shared machine hit
    // every variant alike.
    let variants = [Variant::Safe, Variant::Retryable, Variant::ClientSessions];
    for round in 0..p.rounds {
        for i in 0..variants.len() {
            let v = variants[(round + i) % variants.len()];
            runs.push(measure(&p, v, false).await);
        }
    }
    let summary = summarize(&runs);
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    let out = json!({
        "benchmark": "write_survival",
        "command": "nice -n 10 cargo bench -p holdfast-bench --bench write_survival",
        "recorded_at": bson::DateTime::now().try_to_rfc3339_string().unwrap_or_default(),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "note": "sim, holdfast and the writers share one process and its two tokio workers",
        },
        "config": {
            "writers": p.writers,
            "write_concern": "majority",
            "stepdowns": p.stepdowns,
            "shutdown_of_the_primary": true,
            "pause_ms": p.pause.as_millis() as u64,
            "election_ms": p.election_ms,
            "no_failover_secs": p.no_failover.as_secs(),
            "no_failover_rounds": p.rounds,
        },
        "summary": summary,
        "runs": runs,
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/results/write_survival.json"
    );
    std::fs::write(path, serde_json::to_string_pretty(&out).unwrap() + "\n")
        .expect("write the results");
    println!("written to benches/results/write_survival.json");
}

/// 1-, 5- and 15-minute load averages of the machine.
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// What one writer did.
#[derive(Default)]
struct Tally {
    acked: u64,
    errors: u64,
    /// Inserts: `_id`s acknowledged, and those answered with an error.
    acked_ids: Vec<i64>,
    failed_ids: Vec<i64>,
    longest: Duration,
}

/// A pre-encoded write whose every [`SLOT`] (the insert's `_id`, the
/// client's `txnNumber`) takes the same value on each send.
struct Write {
    t: Template,
    slots: Vec<usize>,
}

impl Write {
    /// Writer `w`'s write; with `lsid`, carrying the client's own session.
    fn new(w: usize, lsid: Option<bson::Uuid>) -> Write {
        let mut body = if w % 2 == 1 {
            doc! {
                "insert": "inserted",
                "documents": [{ "_id": SLOT, "w": w as i64 }],
            }
        } else {
            doc! {
                "update": "counters",
                "updates": [{ "q": { "_id": w as i64 }, "u": { "$inc": { "n": 1i64 } } }],
            }
        };
        body.insert("ordered", true);
        body.insert("writeConcern", doc! { "w": "majority" });
        if let Some(id) = lsid {
            body.insert("lsid", doc! { "id": id });
            body.insert("txnNumber", SLOT);
        }
        body.insert("$db", DB);
        let t = Template::new(&body);
        let needle = SLOT.to_le_bytes();
        let slots = (0..t.bytes.len().saturating_sub(7))
            .filter(|i| t.bytes[*i..*i + 8] == needle)
            .collect();
        Write { t, slots }
    }

    fn set(&mut self, v: i64) {
        for o in &self.slots {
            self.t.bytes[*o..*o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// `Ok` for an acknowledged write, else what the application was told.
fn verdict(frame: &holdfast_wire::Frame) -> Result<(), String> {
    let body = Document::from_reader(&frame.raw()[21..]).map_err(|e| e.to_string())?;
    let ok = matches!(body.get("ok"), Some(Bson::Double(x)) if *x == 1.0)
        || matches!(body.get("ok"), Some(Bson::Int32(1)));
    let first_write_error = body
        .get_array("writeErrors")
        .ok()
        .and_then(|a| a.first())
        .and_then(|e| e.as_document())
        .cloned();
    let wce = body.get_document("writeConcernError").ok().cloned();
    let err = if !ok {
        Some(body)
    } else {
        first_write_error.or(wce)
    };
    match err {
        None => Ok(()),
        Some(e) => Err(format!(
            "{} {}",
            e.get("code").map(|c| c.to_string()).unwrap_or_default(),
            e.get_str("errmsg").unwrap_or_default()
        )),
    }
}

async fn writer(
    addr: SocketAddr,
    w: usize,
    client_sessions: bool,
    stop: Arc<AtomicBool>,
    first_errors: Arc<Mutex<Vec<String>>>,
) -> Tally {
    let mut t = Tally::default();
    let inserts = w % 2 == 1;
    let mut tpl = Write::new(w, client_sessions.then(bson::Uuid::new));
    let mut c = Conn::connect(addr).await.expect("connect to holdfast");
    let mut k = 0i64;
    let note = |msg: String| {
        let mut e = first_errors.lock().unwrap();
        if e.len() < 5 {
            e.push(msg.chars().take(200).collect());
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let id = w as i64 * 1_000_000_000 + k;
        k += 1;
        // The `_id` of an insert, the txnNumber of a client's session:
        // both increase.
        tpl.set(id);
        let sent = Instant::now();
        let result = c.round_trip(&mut tpl.t).await;
        t.longest = t.longest.max(sent.elapsed());
        let outcome = match result {
            Ok(f) => verdict(&f),
            Err(e) => {
                // The connection is gone: a new one, as a driver's pool would.
                loop {
                    match Conn::connect(addr).await {
                        Ok(n) => {
                            c = n;
                            break;
                        }
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err(format!("connection: {e}"))
            }
        };
        match outcome {
            Ok(()) => {
                t.acked += 1;
                if inserts {
                    t.acked_ids.push(id);
                }
            }
            Err(msg) => {
                t.errors += 1;
                if inserts {
                    t.failed_ids.push(id);
                }
                note(msg);
            }
        }
    }
    t
}

/// Steps the primary down `stepdowns` times, then shuts it down, `pause`
/// apart; returns what happened.
async fn failovers(rs: &ReplicaSet, p: &Params) -> Vec<String> {
    let mut events = Vec::new();
    for _ in 0..p.stepdowns {
        tokio::time::sleep(p.pause).await;
        let primary = rs
            .wait_for_primary(Duration::from_secs(30))
            .await
            .expect("a primary");
        rs.step_down(2, true).await.expect("stepdown");
        events.push(format!("stepped down member {primary}"));
    }
    tokio::time::sleep(p.pause).await;
    let primary = rs
        .wait_for_primary(Duration::from_secs(30))
        .await
        .expect("a primary");
    rs.stop(primary).await;
    events.push(format!("shut down member {primary}"));
    tokio::time::sleep(p.pause + Duration::from_secs(1)).await;
    rs.wait_for_primary(Duration::from_secs(30))
        .await
        .expect("a primary after the shutdown");
    events
}

/// Every document of `coll` on `addr` (find, then getMore until done).
async fn all_docs(addr: SocketAddr, coll: &str) -> Vec<Document> {
    let mut c = Conn::connect(addr).await.expect("connect to the primary");
    let mut r = c
        .command(&doc! { "find": coll, "filter": {}, "batchSize": 100_000i32, "$db": DB })
        .await
        .expect("find");
    let mut out = Vec::new();
    let mut key = "firstBatch";
    loop {
        let cursor = r.get_document("cursor").expect("a cursor").clone();
        for d in cursor.get_array(key).expect("a batch") {
            out.push(d.as_document().expect("a document").clone());
        }
        let id = cursor.get_i64("id").unwrap_or(0);
        if id == 0 {
            return out;
        }
        r = c
            .command(
                &doc! { "getMore": id, "collection": coll, "batchSize": 100_000i32, "$db": DB },
            )
            .await
            .expect("getMore");
        key = "nextBatch";
    }
}

fn as_i64(v: Option<&Bson>) -> i64 {
    match v {
        Some(Bson::Int32(n)) => *n as i64,
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) => *n as i64,
        _ => -1,
    }
}

/// Sum of the samples of metric `name` whose labels contain `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// holdfast's metrics now, as Prometheus text.
fn metrics_text() -> String {
    holdfast_proxy::admin::prometheus()
        .map(|h| h.render())
        .unwrap_or_default()
}

async fn measure(p: &Params, variant: Variant, with_failovers: bool) -> Value {
    let rs = ReplicaSet::start(SimConfig {
        base_port: 0,
        election_ms: p.election_ms,
        ..Default::default()
    })
    .await
    .expect("start the sim");
    let primary = rs
        .wait_for_primary(Duration::from_secs(10))
        .await
        .expect("a primary");
    {
        let mut c = Conn::connect(rs.addr(primary)).await.expect("connect");
        let counters: Vec<Document> = (0..p.writers)
            .filter(|w| w % 2 == 0)
            .map(|w| doc! { "_id": w as i64, "n": 0i64 })
            .collect();
        let r = c
            .command(&doc! { "insert": "counters", "documents": counters, "writeConcern": { "w": 3i32 }, "$db": DB })
            .await
            .expect("seed the counters");
        assert!(r.get_array("writeErrors").is_err(), "{r}");
    }
    let hf = holdfast_proxy::start(holdfast_proxy::Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: String::new(),
        upstream: Some(rs.uri()),
        write_retry: variant.write_retry(),
        ..Default::default()
    })
    .await
    .expect("start holdfast");
    hf.wait_for_primary(Duration::from_secs(10))
        .await
        .expect("holdfast sees the primary");
    let addr: SocketAddr = hf.listen_addr.parse().expect("holdfast address");
    let metrics_before = metrics_text();

    let stop = Arc::new(AtomicBool::new(false));
    let first_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let tasks: Vec<_> = (0..p.writers)
        .map(|w| {
            let client_sessions = variant == Variant::ClientSessions;
            tokio::spawn(writer(
                addr,
                w,
                client_sessions,
                stop.clone(),
                first_errors.clone(),
            ))
        })
        .collect();
    let events = if with_failovers {
        failovers(&rs, p).await
    } else {
        tokio::time::sleep(p.no_failover).await;
        Vec::new()
    };
    stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("a writer finishes")
                .expect("a writer"),
        );
    }
    let elapsed = started.elapsed();
    let metrics_after = metrics_text();
    let delta = |name: &str, filter: &str| {
        (metric_sum(&metrics_after, name, filter) - metric_sum(&metrics_before, name, filter))
            as u64
    };

    // What the database holds, read from the primary.
    let primary = rs
        .wait_for_primary(Duration::from_secs(30))
        .await
        .expect("a primary");
    let counters: HashMap<i64, i64> = all_docs(rs.addr(primary), "counters")
        .await
        .iter()
        .map(|d| (as_i64(d.get("_id")), as_i64(d.get("n"))))
        .collect();
    let present: Vec<i64> = all_docs(rs.addr(primary), "inserted")
        .await
        .iter()
        .map(|d| as_i64(d.get("_id")))
        .collect();
    let present_set: HashSet<i64> = present.iter().copied().collect();
    let (mut lost_increments, mut increments_despite_error) = (0u64, 0u64);
    let (mut lost_inserts, mut inserts_despite_error) = (0u64, 0u64);
    for (w, t) in tallies.iter().enumerate() {
        if w % 2 == 0 {
            let n = counters.get(&(w as i64)).copied().unwrap_or(0).max(0) as u64;
            lost_increments += t.acked.saturating_sub(n);
            increments_despite_error += n.saturating_sub(t.acked);
        } else {
            lost_inserts += t
                .acked_ids
                .iter()
                .filter(|id| !present_set.contains(id))
                .count() as u64;
            inserts_despite_error += t
                .failed_ids
                .iter()
                .filter(|id| present_set.contains(id))
                .count() as u64;
        }
    }
    let known: HashSet<i64> = tallies
        .iter()
        .flat_map(|t| t.acked_ids.iter().chain(&t.failed_ids).copied())
        .collect();
    let unexpected_inserts =
        present_set.difference(&known).count() as u64 + (present.len() - present_set.len()) as u64;
    let acked: u64 = tallies.iter().map(|t| t.acked).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let exact = lost_increments == 0
        && increments_despite_error == 0
        && lost_inserts == 0
        && inserts_despite_error == 0
        && unexpected_inserts == 0;
    let longest = tallies.iter().map(|t| t.longest).max().unwrap_or_default();
    let secs = elapsed.as_secs_f64();
    let result = json!({
        "variant": variant.name(),
        "write_retry": mode_name(variant.write_retry()),
        "failovers": with_failovers,
        "events": events,
        "seconds": (secs * 100.0).round() / 100.0,
        "writes_acknowledged": acked,
        "errors_seen_by_the_application": errors,
        "acknowledged_writes_per_second": (acked as f64 / secs).round(),
        "longest_write_ms": longest.as_millis() as u64,
        "exact": exact,
        "exactness": {
            "counters_equal_acknowledged_increments": lost_increments == 0 && increments_despite_error == 0,
            "acknowledged_increments_lost": lost_increments,
            "increments_applied_despite_an_error": increments_despite_error,
            "acknowledged_inserts_missing": lost_inserts,
            "inserts_present_despite_an_error": inserts_despite_error,
            "inserts_unknown_or_duplicated": unexpected_inserts,
        },
        "holdfast": {
            "writes_made_retryable": delta("holdfast_writes_made_retryable_total", ""),
            "writes_resent": delta("holdfast_writes_retried_total", ""),
            "writes_resent_under_its_sessions": delta("holdfast_writes_retried_total", "holdfast_session"),
            "writes_resent_refused_before_executing": delta("holdfast_writes_retried_total", "not_writable_primary"),
            "unknown_outcome_errors": delta("holdfast_write_errors_total", ""),
        },
        "first_errors": first_errors.lock().unwrap().clone(),
    });
    println!(
        "{:<15} {:<11} acked {acked:7}  errors {errors:3}  {:7.0} writes/s  exact {exact}  longest {} ms",
        variant.name(),
        if with_failovers { "failovers" } else { "no failover" },
        acked as f64 / secs,
        longest.as_millis()
    );
    hf.shutdown(Duration::from_millis(500)).await;
    rs.shutdown();
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(runs: &[Value]) -> Value {
    let pick = |mode: &str, failovers: bool| -> Vec<&Value> {
        runs.iter()
            .filter(|r| r["variant"] == mode && r["failovers"] == failovers)
            .collect()
    };
    let failover_row = |mode: &str| {
        let r = pick(mode, true);
        let r = r.first().expect("a failover run");
        json!({
            "writes_acknowledged": r["writes_acknowledged"],
            "errors_seen_by_the_application": r["errors_seen_by_the_application"],
            "acknowledged_writes_per_second": r["acknowledged_writes_per_second"],
            "exact": r["exact"],
            "longest_write_ms": r["longest_write_ms"],
        })
    };
    let throughput = |mode: &str| -> Vec<f64> {
        pick(mode, false)
            .iter()
            .filter_map(|r| r["acknowledged_writes_per_second"].as_f64())
            .collect()
    };
    let (safe, retryable, client) = (
        throughput("safe"),
        throughput("retryable"),
        throughput("client_sessions"),
    );
    let (m_safe, m_retryable, m_client) = (
        median(safe.clone()),
        median(retryable.clone()),
        median(client.clone()),
    );
    let ratio = |a: f64, b: f64| (a / b.max(1.0) * 1000.0).round() / 1000.0;
    json!({
        "failovers": { "safe": failover_row("safe"), "retryable": failover_row("retryable") },
        "no_failover_writes_per_second": {
            "safe": safe,
            "retryable": retryable,
            "client_sessions": client,
            "median_safe": m_safe,
            "median_retryable": m_retryable,
            "median_client_sessions": m_client,
            "ratio_retryable_over_safe": ratio(m_retryable, m_safe),
            "ratio_client_sessions_over_safe": ratio(m_client, m_safe),
            "ratio_retryable_over_client_sessions": ratio(m_retryable, m_client),
        },
    })
}
