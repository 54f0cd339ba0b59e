//! Throughput of find-by-_id over 64 connections against the primary.
//!
//! `cargo bench -p holdfast-sim --bench find_by_id [-- SECONDS CONNECTIONS]`
//! Every request is a pre-encoded OP_MSG `find` with an `_id` filter,
//! `limit: 1`, `singleBatch: true`; each connection sends one, reads the
//! reply, and repeats. Prints operations per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson};
use holdfast_sim::client::{reply_body, RawClient};
use holdfast_sim::{ReplicaSet, SimConfig};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{Frame, Message, MsgFlags, OpMsg};

const DOCS: i64 = 10_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let conns: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(secs, conns));
}

async fn run(secs: u64, conns: usize) {
    let set = ReplicaSet::start(SimConfig::default())
        .await
        .expect("start");
    let p = set
        .wait_for_primary(Duration::from_secs(5))
        .await
        .expect("primary");
    let addr = set.addr(p);
    let mut c = RawClient::connect(addr).await.expect("connect");
    for chunk in 0..DOCS / 1000 {
        let docs: Vec<Bson> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| Bson::Document(doc! { "_id": i, "name": format!("user{i}"), "n": i % 97 }))
            .collect();
        let r = c
            .command(
                "bench",
                doc! { "insert": "users", "documents": docs, "writeConcern": { "w": 1 } },
            )
            .await
            .expect("insert");
        assert_eq!(r.get_i32("n").unwrap_or(0), 1000, "{r}");
    }
    // Pre-encoded requests.
    let frames: Arc<Vec<Frame>> = Arc::new(
        (0..1024)
            .map(|i| {
                let id = (i * 7919) % DOCS;
                let body = doc! {
                    "find": "users",
                    "filter": { "_id": id },
                    "limit": 1,
                    "singleBatch": true,
                    "$db": "bench",
                    "lsid": { "id": bson::Uuid::new() },
                };
                Message::Msg(OpMsg::new(MsgFlags::empty(), document_bytes(&body)))
                    .to_frame(i as i32 + 1, 0)
            })
            .collect(),
    );
    // Sanity check one reply.
    c.send_frame(&frames[1]).await.unwrap();
    let r = reply_body(&c.recv().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        r.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        1,
        "{r}"
    );

    let count = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for t in 0..conns {
        let frames = frames.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await.expect("connect");
            let mut i = t * 13;
            let mut local = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                c.send_frame(&frames[i % frames.len()]).await.expect("send");
                c.recv().await.expect("recv").expect("reply");
                i += 1;
                if now >= measure_from {
                    local += 1;
                }
            }
            count.fetch_add(local, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = process_cpu_seconds();
    for t in tasks {
        t.await.unwrap();
    }
    let cpu = process_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let ops = count.load(Ordering::Relaxed);
    println!(
        "find_by_id: {conns} connections, {secs} s: {ops} ops, {:.0} ops/s",
        ops as f64 / secs as f64
    );
    if let Some(cpu) = cpu {
        // Client and server share this process: the CPU time per operation
        // covers both, so the figure below is a lower bound for the server.
        let per_op = cpu / ops.max(1) as f64;
        println!(
            "  {:.1} us CPU per op (client + server); {:.2} cores busy; at 2 full cores: {:.0} ops/s",
            per_op * 1e6,
            cpu / secs as f64,
            2.0 / per_op
        );
    }
    set.shutdown();
}

/// User + system CPU time of this process (Linux), in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
