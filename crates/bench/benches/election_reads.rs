//! Reads during an election, by read preference, side by side: how long does
//! the longest read wait, and how many fail, while the replica set elects a
//! new primary?
//!
//! Starts a three-member `ReplicaSet` (election `ELECTION_MS`, 3 s by
//! default) and, for each row, a fresh holdfast in this process; `READERS`
//! raw connections read (`find` by `_id`, pre-encoded OP_MSG carrying the
//! row's `$readPreference`) in a loop while the primary is stepped down
//! `ELECTIONS` times. Per row: reads answered, read errors, the longest read
//! and p99 of the reads that overlapped an election window (sent before the
//! election completed, answered after the stepdown began).
//!
//! The first row, `primary`, is the baseline: every read goes to the
//! primary, as holdfast routed all reads before it honoured read preference,
//! so it waits out the election at the gate.
//!
//! Results (each row's distribution of the reads that overlapped an
//! election: p50/p90/p99/max) are also written to
//! `benches/results/election_reads.json`.
//!
//!   nice -n 10 cargo bench -p holdfast-bench --bench election_reads [-- ELECTIONS READERS ELECTION_MS]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, Document};
use holdfast_bench::{check_reply, preload, Conn, Template, SLOT};
use holdfast_proxy::config::ElectionReads;
use holdfast_sim::{ReplicaSet, SimConfig};
use serde_json::{json, Value};

struct Row {
    label: &'static str,
    mode: Option<&'static str>,
    election_reads: ElectionReads,
}

const ROWS: &[Row] = &[
    Row {
        label: "primary (baseline)",
        mode: None,
        election_reads: ElectionReads::Hold,
    },
    Row {
        label: "primaryPreferred",
        mode: Some("primaryPreferred"),
        election_reads: ElectionReads::Hold,
    },
    Row {
        label: "secondaryPreferred",
        mode: Some("secondaryPreferred"),
        election_reads: ElectionReads::Hold,
    },
    Row {
        label: "nearest",
        mode: Some("nearest"),
        election_reads: ElectionReads::Hold,
    },
    Row {
        label: "primary, election_reads=secondary",
        mode: None,
        election_reads: ElectionReads::Secondary,
    },
];

/// One read: (sent, received, ok).
type Log = Arc<Mutex<Vec<(Instant, Instant, bool)>>>;

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let elections: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let readers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let election_ms: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rs = ReplicaSet::start(SimConfig {
            base_port: 0,
            election_ms,
            ..Default::default()
        })
        .await
        .expect("start the sim");
        let p = rs
            .wait_for_primary(Duration::from_secs(10))
            .await
            .expect("a primary");
        preload(rs.addr(p), "bench", "users", 1000)
            .await
            .expect("preload");
        tokio::time::sleep(Duration::from_millis(300)).await; // replicated everywhere
        let load_before = load_average();
        println!(
            "reads during an election: {elections} elections of {election_ms} ms, {readers} readers per row"
        );
        let mut rows = Vec::new();
        for row in ROWS {
            rows.push(measure(&rs, row, elections, readers).await);
        }
        rs.shutdown();
        let out = json!({
            "benchmark": "election_reads",
            "command": "nice -n 10 cargo bench -p holdfast-bench --bench election_reads",
            "recorded_at": bson::DateTime::now().try_to_rfc3339_string().unwrap_or_default(),
            "machine": {
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "load_average_before": load_before,
                "load_average_after": load_average(),
            },
            "config": {
                "elections": elections,
                "readers_per_row": readers,
                "election_ms": election_ms,
            },
            "note": "during_elections: reads sent before an election completed and answered after its stepdown began; the first row is the baseline (every read waits for the primary)",
            "rows": rows,
        });
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../benches/results/election_reads.json"
        );
        std::fs::write(path, serde_json::to_string_pretty(&out).unwrap() + "\n")
            .expect("write the results");
        println!("written to benches/results/election_reads.json");
    });
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

fn template(mode: Option<&str>) -> Template {
    let mut body = doc! {
        "find": "users",
        "filter": { "_id": SLOT },
        "limit": 1i32,
        "singleBatch": true,
        "$db": "bench",
    };
    if let Some(m) = mode {
        body.insert("$readPreference", doc! { "mode": m });
    }
    Template::new(&body)
}

async fn reader(
    addr: std::net::SocketAddr,
    mode: Option<&'static str>,
    seed: i64,
    stop: Arc<AtomicBool>,
    log: Log,
    first_error: Arc<Mutex<Option<String>>>,
) {
    let mut c = Conn::connect(addr).await.expect("connect to holdfast");
    let mut t = template(mode);
    let mut k = seed;
    while !stop.load(Ordering::Relaxed) {
        k = (k + 7) % 1000;
        t.set_value(k);
        let sent = Instant::now();
        match c.round_trip(&mut t).await {
            Ok(f) => {
                let ok = check_reply(f.raw()).ok;
                if !ok {
                    let body = Document::from_reader(&f.raw()[21..])
                        .map(|d| d.to_string())
                        .unwrap_or_default();
                    first_error.lock().unwrap().get_or_insert(body);
                }
                log.lock().unwrap().push((sent, Instant::now(), ok));
            }
            Err(e) => {
                log.lock().unwrap().push((sent, Instant::now(), false));
                first_error.lock().unwrap().get_or_insert(e.to_string());
                tokio::time::sleep(Duration::from_millis(5)).await;
                if let Ok(n) = Conn::connect(addr).await {
                    c = n;
                }
            }
        }
    }
}

async fn measure(rs: &ReplicaSet, row: &Row, elections: usize, readers: usize) -> Value {
    let hf = holdfast_proxy::start(holdfast_proxy::Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: String::new(),
        upstream: Some(rs.uri()),
        election_reads: row.election_reads,
        ..Default::default()
    })
    .await
    .expect("start holdfast");
    let addr: std::net::SocketAddr = hf.listen_addr.parse().expect("holdfast address");
    let stop = Arc::new(AtomicBool::new(false));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let logs: Vec<Log> = (0..readers).map(|_| Log::default()).collect();
    let tasks: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            tokio::spawn(reader(
                addr,
                row.mode,
                i as i64 * 101,
                stop.clone(),
                log.clone(),
                first_error.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut sim_rx = rs.subscribe();
    let mut windows = Vec::new();
    for _ in 0..elections {
        rs.wait_for_primary(Duration::from_secs(20))
            .await
            .expect("a primary before the stepdown");
        // Let the topology settle (the old primary is a secondary again).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let term = sim_rx.borrow_and_update().term;
        let began = Instant::now();
        rs.step_down(1, true).await.expect("stepdown");
        let st = tokio::time::timeout(
            Duration::from_secs(20),
            sim_rx.wait_for(|s| s.term > term && s.election_completed_at.is_some()),
        )
        .await
        .expect("an election within 20 s")
        .expect("sim state")
        .clone();
        windows.push((began, st.election_completed_at.expect("completed")));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }

    let (mut ok, mut errors, mut longest) = (0u64, 0u64, 0f64);
    let mut overlapping = Vec::new();
    for log in &logs {
        for &(sent, recv, good) in log.lock().unwrap().iter() {
            let ms = (recv - sent).as_secs_f64() * 1000.0;
            if good {
                ok += 1;
            } else {
                errors += 1;
            }
            longest = longest.max(ms);
            if windows.iter().any(|&(b, d)| sent < d && recv >= b) {
                overlapping.push(ms);
            }
        }
    }
    let during = overlapping.len();
    let p50 = pct(&mut overlapping, 0.50);
    let p90 = pct(&mut overlapping, 0.90);
    let p99 = pct(&mut overlapping, 0.99);
    let max_during = pct(&mut overlapping, 1.0);
    println!(
        "{:<36} reads {ok:7}  errors {errors:3}  during elections {during:6}  p99 {p99:8.2} ms  longest {longest:8.2} ms",
        row.label
    );
    let first_error = first_error.lock().unwrap().clone();
    if let Some(e) = first_error.as_ref() {
        println!("{:<36} first error: {e}", "");
    }
    hf.shutdown(Duration::from_millis(200)).await;
    let ms = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "row": row.label,
        "read_preference": row.mode.unwrap_or("primary"),
        "election_reads": match row.election_reads {
            ElectionReads::Hold => "hold",
            ElectionReads::Secondary => "secondary",
        },
        "reads": ok,
        "errors": errors,
        "reads_during_elections": during,
        "during_elections_ms": { "p50": ms(p50), "p90": ms(p90), "p99": ms(p99), "max": ms(max_during) },
        "longest_read_ms": ms(longest),
        "first_error": first_error,
    })
}
