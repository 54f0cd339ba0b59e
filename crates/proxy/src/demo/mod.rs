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
    /// Run a legacy client (OP_QUERY, OP_UPDATE + getLastError) instead of
    /// the official driver.
    pub legacy: bool,
}

mod legacy;

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
    let app = Arc::new(App::default());
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|k| tokio::spawn(app.clone().run(coll.clone(), k as u64)))
        .collect();
    let events = failovers(cfg, rs).await;
    tokio::time::sleep(cfg.pause + Duration::from_millis(cfg.election_ms)).await;
    app.stopped.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let report = app.report();
    client.shutdown().immediate(true).await;
    Ok((report, events))
}

/// The application: what it did and the errors it saw.
#[derive(Default)]
struct App {
    counters: Counters,
    errors: std::sync::Mutex<Vec<String>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl App {
    /// One connection's loop: 90% reads, 10% `$inc`, until stopped.
    async fn run(self: Arc<Self>, coll: mongodb::Collection<Document>, mut i: u64) {
        let c = &self.counters;
        while !self.stopped.load(Ordering::Relaxed) {
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
                (w, Err(e)) => self.failed_with(w, e),
            };
        }
    }

    fn failed_with(&self, write: bool, e: impl std::fmt::Display) -> u64 {
        let mut errs = self.errors.lock().unwrap();
        if errs.len() < 3 {
            errs.push(e.to_string().chars().take(160).collect());
        }
        let c = &self.counters;
        if write {
            c.write_errors.fetch_add(1, Ordering::Relaxed)
        } else {
            c.read_errors.fetch_add(1, Ordering::Relaxed)
        }
    }

    fn report(&self) -> RunReport {
        let c = &self.counters;
        RunReport {
            reads: c.reads.load(Ordering::Relaxed),
            read_errors: c.read_errors.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            longest_stall: Duration::from_micros(c.longest_stall_us.load(Ordering::Relaxed)),
            first_errors: self.errors.lock().unwrap().clone(),
            ..Default::default()
        }
    }
}

/// `stepdowns` stepdowns, then a kill of the primary, `pause` apart.
async fn failovers(cfg: &DemoConfig, rs: &holdfast_sim::ReplicaSet) -> Vec<String> {
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
    events
}

fn metric_sum(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn sim_config(cfg: &DemoConfig) -> holdfast_sim::SimConfig {
    holdfast_sim::SimConfig {
        base_port: 0,
        election_ms: cfg.election_ms,
        ..Default::default()
    }
}

/// Run A: the application straight to the replica set.
async fn direct(cfg: &DemoConfig) -> anyhow::Result<RunReport> {
    println!("run A: straight to the replica set ...");
    let rs = holdfast_sim::ReplicaSet::start(sim_config(cfg)).await?;
    rs.wait_for_primary(Duration::from_secs(10)).await;
    let (report, events) = workload(rs.uri(), cfg, &rs).await?;
    rs.shutdown();
    println!("  {}", events.join(", "));
    Ok(report)
}

/// Run B: the same application through holdfast.
async fn proxied(cfg: &DemoConfig) -> anyhow::Result<RunReport> {
    println!("run B: through holdfast ...");
    let rs = holdfast_sim::ReplicaSet::start(sim_config(cfg)).await?;
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
    hf.wait_for_primary(Duration::from_secs(10)).await;
    let (mut report, events) = workload(hf.client_uri(), cfg, &rs).await?;
    let after = prom.as_ref().map(|h| h.render()).unwrap_or_default();
    let delta = |name: &str, filter: &str| {
        metric_sum(&after, name, filter) - metric_sum(&before, name, filter)
    };
    report.replays = delta("holdfast_replays_total", "");
    report.held = delta("holdfast_held_requests_total", "released");
    hf.shutdown(Duration::from_millis(200)).await;
    rs.shutdown();
    println!("  {}\n", events.join(", "));
    Ok(report)
}

pub async fn run(cfg: DemoConfig) -> anyhow::Result<()> {
    if cfg.legacy {
        return legacy::run(&cfg).await;
    }
    println!(
        "holdfast demo: {} connections, 90% reads / 10% $inc writes, no driver retries; the primary is stepped down {} times, then killed.\n",
        cfg.connections, cfg.stepdowns
    );
    let direct = direct(&cfg).await?;
    let proxied = proxied(&cfg).await?;
    print_table(&direct, &proxied);
    Ok(())
}

fn print_table(direct: &RunReport, proxied: &RunReport) {
    let row = |name: &str, a: String, b: String| println!("  {name:<34} {a:>16} {b:>16}");
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
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
        secs(direct.longest_stall),
        secs(proxied.longest_stall),
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
    for (name, r) in [("direct", direct), ("through holdfast", proxied)] {
        for e in &r.first_errors {
            println!("  e.g. ({name}): {e}");
        }
    }
    println!("\nThrough holdfast, writes are sent under holdfast's own sessions (write_retry = \"retryable\", the default)");
    println!("and those in flight at a failover are sent again; the new primary deduplicates them, so none is lost or");
    println!("applied twice. Reads are held or replayed. A write error left would be one whose outcome nobody can know");
    println!("(code 11602, saying so): with write_retry = \"safe\" every plain write in flight at a failover is one.");
}
