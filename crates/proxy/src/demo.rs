//! `holdfast demo`: the seed scenario, twice, side by side.
//!
//! An application with `connections` connections (legacy-style: the
//! official Rust driver with retryable reads and writes turned off) runs 90%
//! reads and 10% `$inc` writes in a loop while the primary is stepped down
//! three times and then killed. Run A talks straight to the replica set
//! (`replicaSet=`), run B through holdfast. Each run gets a fresh embedded
//! replica set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;

#[derive(Debug, Default)]
pub struct RunReport {
    pub reads: u64,
    pub read_errors: u64,
    pub writes: u64,
    pub write_errors: u64,
    pub longest_stall: Duration,
    pub replays: u64,
    pub held: u64,
    pub first_errors: Vec<String>,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    read_errors: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    longest_stall_us: AtomicU64,
}

pub struct DemoConfig {
    pub connections: usize,
    pub stepdowns: usize,
    pub pause: Duration,
    pub election_ms: u64,
}

async fn workload(
    uri: String,
    cfg: &DemoConfig,
    rs: &holdfast_sim::ReplicaSet,
) -> anyhow::Result<(RunReport, Vec<String>)> {
    let mut opts = ClientOptions::parse(&uri).await?;
    opts.retry_reads = Some(false);
    opts.retry_writes = Some(false);
    opts.max_pool_size = Some(cfg.connections as u32);
    opts.server_selection_timeout = Some(Duration::from_secs(30));
    let client = mongodb::Client::with_options(opts)?;
    let coll = client.database("demo").collection::<Document>("items");
    coll.insert_many((0..100).map(|i| doc! {"_id": i, "n": 0}))
        .await?;
    let counters = Arc::new(Counters::default());
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..cfg.connections {
        let (coll, c, errors, stopped) = (
            coll.clone(),
            counters.clone(),
            errors.clone(),
            stopped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i: u64 = k as u64;
            while !stopped.load(Ordering::Relaxed) {
                i += 1;
                let id = (i % 100) as i32;
                let t0 = Instant::now();
                let write = i.is_multiple_of(10);
                let r = if write {
                    coll.update_one(doc! {"_id": id}, doc! {"$inc": {"n": 1}})
                        .await
                        .map(|_| ())
                } else {
                    coll.find_one(doc! {"_id": id}).await.map(|_| ())
                };
                let us = t0.elapsed().as_micros() as u64;
                c.longest_stall_us.fetch_max(us, Ordering::Relaxed);
                match (write, r) {
                    (false, Ok(())) => c.reads.fetch_add(1, Ordering::Relaxed),
                    (true, Ok(())) => c.writes.fetch_add(1, Ordering::Relaxed),
                    (w, Err(e)) => {
                        let mut errs = errors.lock().unwrap();
                        if errs.len() < 3 {
                            errs.push(e.to_string().chars().take(160).collect());
                        }
                        if w {
                            c.write_errors.fetch_add(1, Ordering::Relaxed)
                        } else {
                            c.read_errors.fetch_add(1, Ordering::Relaxed)
                        }
                    }
                };
            }
        }));
    }
    let mut events = Vec::new();
    for n in 0..=cfg.stepdowns {
        tokio::time::sleep(cfg.pause).await;
        let Some(p) = rs.wait_for_primary(Duration::from_secs(30)).await else {
            break;
        };
        if n < cfg.stepdowns {
            let _ = rs.step_down(2, true).await;
            events.push(format!("stepped down member {p}"));
        } else {
            rs.kill(p).await;
            events.push(format!("killed member {p}"));
        }
    }
    tokio::time::sleep(cfg.pause + Duration::from_millis(cfg.election_ms)).await;
    stopped.store(true, Ordering::Relaxed);
    stop.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
    let report = RunReport {
        reads: counters.reads.load(Ordering::Relaxed),
        read_errors: counters.read_errors.load(Ordering::Relaxed),
        writes: counters.writes.load(Ordering::Relaxed),
        write_errors: counters.write_errors.load(Ordering::Relaxed),
        longest_stall: Duration::from_micros(counters.longest_stall_us.load(Ordering::Relaxed)),
        first_errors: errors.lock().unwrap().clone(),
        ..Default::default()
    };
    client.shutdown().immediate(true).await;
    Ok((report, events))
}

fn metric_sum(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub async fn run(cfg: DemoConfig) -> anyhow::Result<()> {
    let sim_cfg = || holdfast_sim::SimConfig {
        base_port: 0,
        election_ms: cfg.election_ms,
        ..Default::default()
    };
    println!(
        "holdfast demo: {} connections, 90% reads / 10% $inc writes, no driver retries; the primary is stepped down {} times, then killed.\n",
        cfg.connections, cfg.stepdowns
    );
    println!("run A: straight to the replica set ...");
    let rs = holdfast_sim::ReplicaSet::start(sim_cfg()).await?;
    rs.wait_for_primary(Duration::from_secs(10)).await;
    let (direct, events) = workload(rs.uri(), &cfg, &rs).await?;
    rs.shutdown();
    println!("  {}", events.join(", "));

    println!("run B: through holdfast ...");
    let rs = holdfast_sim::ReplicaSet::start(sim_cfg()).await?;
    rs.wait_for_primary(Duration::from_secs(10)).await;
    let prom = crate::admin::prometheus();
    let before = prom.as_ref().map(|h| h.render()).unwrap_or_default();
    let hf = crate::start(crate::Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: String::new(),
        upstream: Some(rs.uri()),
        pool_size: cfg.connections.min(100),
        ..Default::default()
    })
    .await?;
    hf.shared
        .topology
        .wait_for_primary(Duration::from_secs(10))
        .await;
    let (mut proxied, events) = workload(hf.client_uri(), &cfg, &rs).await?;
    let after = prom.as_ref().map(|h| h.render()).unwrap_or_default();
    proxied.replays = metric_sum(&after, "holdfast_replays_total", "")
        - metric_sum(&before, "holdfast_replays_total", "");
    proxied.held = metric_sum(&after, "holdfast_held_requests_total", "released")
        - metric_sum(&before, "holdfast_held_requests_total", "released");
    hf.shutdown(Duration::from_millis(200)).await;
    rs.shutdown();
    println!("  {}\n", events.join(", "));

    let row = |name: &str, a: String, b: String| println!("  {name:<34} {a:>16} {b:>16}");
    row("", "direct".into(), "through holdfast".into());
    row(
        "reads ok",
        direct.reads.to_string(),
        proxied.reads.to_string(),
    );
    row(
        "read errors seen by the app",
        direct.read_errors.to_string(),
        proxied.read_errors.to_string(),
    );
    row(
        "writes ok",
        direct.writes.to_string(),
        proxied.writes.to_string(),
    );
    row(
        "write errors seen by the app",
        direct.write_errors.to_string(),
        proxied.write_errors.to_string(),
    );
    row(
        "longest stall of one operation",
        format!("{:.2} s", direct.longest_stall.as_secs_f64()),
        format!("{:.2} s", proxied.longest_stall.as_secs_f64()),
    );
    row(
        "requests replayed by holdfast",
        "-".into(),
        proxied.replays.to_string(),
    );
    row(
        "requests held by holdfast",
        "-".into(),
        proxied.held.to_string(),
    );
    println!();
    for (name, r) in [("direct", &direct), ("through holdfast", &proxied)] {
        for e in &r.first_errors {
            println!("  e.g. ({name}): {e}");
        }
    }
    println!("\nWrite errors through holdfast are writes whose outcome is unknown (the primary changed while they ran);");
    println!("each is reported once with code 11602 and says so. Reads are never errors: they are held or replayed.");
    Ok(())
}
