//! `holdfast-bench`: a load generator speaking the raw MongoDB wire protocol.
//!
//! ```text
//! holdfast-bench --target 127.0.0.1:27017 --connections 64 --duration 10 \
//!     --warmup 2 --workload find --preload 10000 [--json]
//! ```
//!
//! Every connection keeps one request outstanding (like a driver
//! connection). Requests are OP_MSG frames encoded once; only the requestID
//! and the `_id` are patched per send. Latency is recorded in an
//! HdrHistogram per connection (1 µs .. 60 s, 3 significant digits) and the
//! histograms are merged at the end. Only requests sent after the warmup and
//! answered before the end are counted; `total_ops` counts all of them (for
//! CPU-per-request figures taken over the whole run).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use holdfast_bench::{
    check_reply, find_template, hello_template, insert_template, ping_template, preload,
    wait_ready, Conn,
};
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// find by `_id` over the preloaded key range
    Find,
    /// insert of ~100-byte documents (w: 1)
    Insert,
    /// 90% find, 10% insert
    Mix,
    /// open N connections, hello on each, hold them without traffic
    Idle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Find => "find",
            Workload::Insert => "insert",
            Workload::Mix => "mix",
            Workload::Idle => "idle",
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "holdfast-bench",
    version,
    about = "MongoDB wire-protocol load generator for holdfast benchmarks"
)]
struct Args {
    /// host:port of a replica-set member (the primary), holdfast, or a TCP proxy
    #[arg(long)]
    target: String,
    /// Client connections, each with one request outstanding
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds (after the warmup)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value = "find")]
    workload: Workload,
    /// Insert `_id` 0..N into the collection first (existing ones are kept)
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Key range of find (`_id` 0..KEYS); default: --preload, else 10000
    #[arg(long)]
    keys: Option<u64>,
    #[arg(long, default_value = "bench")]
    db: String,
    #[arg(long, default_value = "users")]
    collection: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Free-form label copied into the JSON output
    #[arg(long, default_value = "")]
    label: String,
    /// Worker threads of the load tool (default: all cores)
    #[arg(long)]
    threads: Option<usize>,
    /// idle: file created once every connection is open and handshaken
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Connections being opened at once
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Only preload, then exit
    #[arg(long)]
    preload_only: bool,
    /// Wait up to SECS for the target to answer a ping before starting
    #[arg(long, default_value_t = 0.0)]
    wait: f64,
    /// --target is a comma-separated member list: print the one whose hello
    /// says isWritablePrimary, then exit
    #[arg(long)]
    print_primary: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(run(args))
}

async fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to nothing"))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.print_primary {
        return print_primary(&args).await;
    }
    let addr = resolve(&args.target).await?;
    if args.wait > 0.0 {
        wait_ready(addr, Duration::from_secs_f64(args.wait)).await?;
    }
    if args.preload > 0 {
        let n = preload(addr, &args.db, &args.collection, args.preload)
            .await
            .context("preload")?;
        if !args.json || args.preload_only {
            eprintln!(
                "preloaded {} documents into {}.{} ({n} present)",
                args.preload, args.db, args.collection
            );
        }
    }
    if args.preload_only {
        return Ok(());
    }
    if args.workload == Workload::Idle {
        return idle(&args, addr).await;
    }
    load(&args, addr).await
}

/// Asks each member of `--target a,b,c` for hello; prints the writable
/// primary's address. Retries until `--wait` (at least 10 s) passes.
async fn print_primary(args: &Args) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.wait.max(10.0));
    loop {
        for m in args
            .target
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            let attempt = async {
                let addr = resolve(m).await?;
                let mut c = Conn::connect(addr).await?;
                let d = c
                    .command(&bson::doc! { "hello": 1i32, "$db": "admin" })
                    .await?;
                anyhow::Ok(d.get_bool("isWritablePrimary").unwrap_or(false))
            };
            if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                println!("{m}");
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no writable primary among {}", args.target);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct WorkerResult {
    ops: u64,
    total_ops: u64,
    finds: u64,
    inserts: u64,
    misses: u64,
    io_errors: u64,
    not_ok: u64,
    first_error: Option<String>,
}

struct Plan {
    addr: SocketAddr,
    workload: Workload,
    keys: u64,
    db: String,
    coll: String,
    insert_coll: String,
    measure_from: Instant,
    end: Instant,
}

/// The `p` quantile of `h`, 0 when it is empty.
fn quantile(h: &Histogram<u64>, p: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(p)
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

async fn worker(idx: usize, plan: Arc<Plan>) -> (WorkerResult, Histogram<u64>) {
    let mut r = WorkerResult::default();
    let mut hist = new_hist();
    let mut find = find_template(&plan.db, &plan.coll);
    let mut insert = insert_template(&plan.db, &plan.insert_coll);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut seq: i64 = 0;
    let mut conn: Option<Conn> = None;
    loop {
        if Instant::now() >= plan.end {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(plan.addr).await {
                Ok(mut c) => {
                    // A driver's first command on a connection.
                    if let Err(e) = c.round_trip(&mut hello_template()).await {
                        r.io_errors += 1;
                        r.first_error.get_or_insert_with(|| format!("hello: {e}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    conn.insert(c)
                }
                Err(e) => {
                    r.io_errors += 1;
                    r.first_error.get_or_insert_with(|| format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let is_insert = match plan.workload {
            Workload::Find => false,
            Workload::Insert => true,
            _ => rng.is_multiple_of(10),
        };
        let t = if is_insert {
            seq += 1;
            insert.set_value(((idx as i64) << 40) | seq);
            &mut insert
        } else {
            find.set_value(((rng >> 11) % plan.keys) as i64);
            &mut find
        };
        let t0 = Instant::now();
        match c.round_trip(t).await {
            Ok(reply) => {
                let t1 = Instant::now();
                r.total_ops += 1;
                let v = check_reply(reply.raw());
                if t0 >= plan.measure_from && t1 <= plan.end {
                    r.ops += 1;
                    let _ = hist.record((t1 - t0).as_micros().max(1) as u64);
                    if is_insert {
                        r.inserts += 1;
                    } else {
                        r.finds += 1;
                        if v.ok && !v.hit {
                            r.misses += 1;
                        }
                    }
                    if !v.ok {
                        r.not_ok += 1;
                        r.first_error.get_or_insert_with(|| {
                            format!("reply not ok: {}", summarize(reply.raw()))
                        });
                    }
                }
            }
            Err(e) => {
                r.io_errors += 1;
                r.first_error.get_or_insert_with(|| format!("i/o: {e}"));
                conn = None;
            }
        }
    }
    (r, hist)
}

fn summarize(raw: &[u8]) -> String {
    raw.get(21..)
        .and_then(|b| bson::Document::from_reader(b).ok())
        .map(|d| {
            let mut s = d.to_string();
            s.truncate(300);
            s
        })
        .unwrap_or_else(|| format!("{} bytes", raw.len()))
}

async fn load(args: &Args, addr: SocketAddr) -> anyhow::Result<()> {
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        addr,
        workload: args.workload,
        keys: args
            .keys
            .unwrap_or(if args.preload > 0 {
                args.preload
            } else {
                10_000
            })
            .max(1),
        db: args.db.clone(),
        coll: args.collection.clone(),
        insert_coll: format!("ins_{}_{nonce}", std::process::id()),
        measure_from,
        end,
    });
    let handles: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(worker(i, plan.clone())))
        .collect();
    let grace = end + Duration::from_secs(10);
    let mut hist = new_hist();
    let mut tot = WorkerResult::default();
    let mut stuck = 0usize;
    for h in handles {
        match tokio::time::timeout_at(grace.into(), h).await {
            Ok(Ok((r, h))) => {
                hist.add(&h).ok();
                tot.ops += r.ops;
                tot.total_ops += r.total_ops;
                tot.finds += r.finds;
                tot.inserts += r.inserts;
                tot.misses += r.misses;
                tot.io_errors += r.io_errors;
                tot.not_ok += r.not_ok;
                if tot.first_error.is_none() {
                    tot.first_error = r.first_error;
                }
            }
            _ => stuck += 1,
        }
    }
    let secs = args.duration;
    let q = |p: f64| quantile(&hist, p);
    let out = json!({
        "tool": "holdfast-bench",
        "label": args.label,
        "target": args.target,
        "workload": args.workload.name(),
        "connections": args.connections,
        "duration_s": secs,
        "warmup_s": args.warmup,
        "ops": tot.ops,
        "ops_per_sec": tot.ops as f64 / secs,
        "total_ops": tot.total_ops,
        "errors": tot.io_errors + tot.not_ok,
        "io_errors": tot.io_errors,
        "not_ok": tot.not_ok,
        "misses": tot.misses,
        "stuck_connections": stuck,
        "first_error": tot.first_error,
        "counts": { "find": tot.finds, "insert": tot.inserts },
        "latency_us": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
            "max": hist.max(), "mean": hist.mean(),
        },
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "target {}  workload {}  connections {}  {:.1} s (+{:.1} s warmup)",
            args.target,
            args.workload.name(),
            args.connections,
            secs,
            args.warmup
        );
        println!(
            "ops {}  ops/s {:.0}  errors {} (i/o {}, not ok {})  find misses {}  stuck {}",
            tot.ops,
            tot.ops as f64 / secs,
            tot.io_errors + tot.not_ok,
            tot.io_errors,
            tot.not_ok,
            tot.misses,
            stuck
        );
        println!(
            "latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            hist.max(),
            hist.mean()
        );
        println!("counts: find {}  insert {}", tot.finds, tot.inserts);
        if let Some(e) = &tot.first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

/// Opens `connections` connections (hello on each), holds them for
/// `duration` seconds without traffic, then checks each one with a ping.
async fn idle(args: &Args, addr: SocketAddr) -> anyhow::Result<()> {
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    let handles: Vec<_> = (0..args.connections)
        .map(|_| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _p = sem.acquire_owned().await.expect("open");
                let t0 = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut c = Conn::connect(addr).await?;
                    let f = c.round_trip(&mut hello_template()).await?;
                    if !check_reply(f.raw()).ok {
                        return Err(std::io::Error::other("hello not ok"));
                    }
                    c.shrink();
                    Ok::<_, std::io::Error>(c)
                })
                .await;
                match r {
                    Ok(Ok(c)) => Ok((c, t0.elapsed())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connect+hello timed out".to_string()),
                }
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(args.connections);
    let mut hist = new_hist();
    let mut failed = 0u64;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok((c, d))) => {
                let _ = hist.record(d.as_micros().max(1) as u64);
                conns.push(c);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    let opened = conns.len();
    if !args.json {
        eprintln!("idle: {opened} connections open ({failed} failed) in {open_secs:.1} s; holding for {} s", args.duration);
    }
    if let Some(p) = &args.ready_file {
        std::fs::write(p, format!("{opened}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    // Which connections are still open: nothing unprompted to read, and a
    // ping is answered.
    let mut closed = 0u64;
    let mut alive = Vec::with_capacity(conns.len());
    for c in conns {
        let mut probe = [0u8; 1];
        match c.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive.push(c),
            _ => closed += 1,
        }
    }
    let pinged: Vec<_> = alive
        .into_iter()
        .map(|mut c| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _p = sem.acquire_owned().await.expect("open");
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.round_trip(&mut ping_template()),
                )
                .await;
                matches!(r, Ok(Ok(f)) if check_reply(f.raw()).ok)
            })
        })
        .collect();
    let mut ping_ok = 0u64;
    for h in pinged {
        if matches!(h.await, Ok(true)) {
            ping_ok += 1;
        }
    }
    let q = |p: f64| quantile(&hist, p);
    let out = json!({
        "tool": "holdfast-bench",
        "label": args.label,
        "target": args.target,
        "workload": "idle",
        "connections": args.connections,
        "duration_s": args.duration,
        "opened": opened,
        "failed_to_open": failed,
        "open_seconds": open_secs,
        "closed_while_idle": closed,
        "still_open": ping_ok,
        "errors": failed + (opened as u64 - ping_ok),
        "first_error": first_error,
        "connect_hello_latency_us": { "p50": q(0.5), "p99": q(0.99), "max": hist.max() },
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "idle: {} requested, {opened} opened ({failed} failed) in {open_secs:.1} s; after {} s idle: {closed} closed, {ping_ok} answered a ping",
            args.connections, args.duration
        );
        println!(
            "connect+hello µs: p50 {}  p99 {}  max {}",
            q(0.5),
            q(0.99),
            hist.max()
        );
        if let Some(e) = &first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}
