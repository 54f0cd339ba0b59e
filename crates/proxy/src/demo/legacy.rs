//! `holdfast demo --legacy`: the seed scenario with a legacy client — one
//! that speaks only the formats MongoDB 5.1+ refuses, as pymongo 3.6, the
//! Node driver 2.2 or mgo do: finds as OP_QUERY, `$inc` as OP_UPDATE
//! followed by `getLastError`. Straight to the replica set every operation
//! is refused; through holdfast they are translated, and the failovers are
//! masked as for any client.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use futures::StreamExt;
use holdfast_wire::legacy::{LegacyOp, OpUpdate};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{FrameCodec, Limits, Message, OpQuery, QueryFlags, ReplyFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use super::{failovers, metric_sum, print_table, sim_config, App, DemoConfig, RunReport};

/// Where a worker connects: a fixed address (holdfast), or the current
/// primary (a legacy client told the member list finds the primary itself).
#[derive(Clone)]
enum Target {
    Fixed(SocketAddr),
    Primary(Arc<holdfast_sim::ReplicaSet>),
}

impl Target {
    fn addr(&self) -> Option<SocketAddr> {
        match self {
            Target::Fixed(a) => Some(*a),
            Target::Primary(rs) => rs.primary().map(|p| rs.addr(p)),
        }
    }
}

fn op_query(ns: &str, q: Document, ret: i32) -> Vec<u8> {
    let q = OpQuery {
        flags: QueryFlags::empty(),
        full_collection_name: ns.into(),
        number_to_skip: 0,
        number_to_return: ret,
        query: document_bytes(&q),
        return_fields_selector: None,
    };
    Message::Query(q).to_frame(1, 0).raw().to_vec()
}

type Conn = FramedRead<TcpStream, FrameCodec>;

/// One operation; `Err` means the application saw an error.
async fn operation(conn: &mut Conn, id: i32, write: bool) -> Result<(), String> {
    let bytes = if write {
        let mut b = LegacyOp::Update(OpUpdate {
            full_collection_name: "demo.items".into(),
            flags: 0,
            selector: document_bytes(&doc! {"_id": id}),
            update: document_bytes(&doc! {"$inc": {"n": 1}}),
        })
        .encode(1);
        b.extend(op_query(
            "demo.$cmd",
            doc! {"getlasterror": 1, "w": "majority"},
            -1,
        ));
        b
    } else {
        op_query("demo.items", doc! {"_id": id}, -1)
    };
    conn.get_mut()
        .write_all(&bytes)
        .await
        .map_err(|e| e.to_string())?;
    let frame = tokio::time::timeout(Duration::from_secs(30), conn.next())
        .await
        .map_err(|_| "no reply within 30 s".to_string())?
        .ok_or("connection closed by the server")?
        .map_err(|e| e.to_string())?;
    let Ok(Message::Reply(r)) = frame.parse(&Limits::default()) else {
        return Err("not an OP_REPLY".into());
    };
    let first = r
        .first_doc()
        .ok()
        .and_then(|d| Document::try_from(d).ok())
        .unwrap_or_default();
    if r.response_flags.contains(ReplyFlags::QUERY_FAILURE) {
        return Err(format!(
            "query failure: {}",
            first.get_str("$err").unwrap_or("?")
        ));
    }
    if let Ok(err) = first.get_str("err").or_else(|_| first.get_str("errmsg")) {
        return Err(err.to_string());
    }
    Ok(())
}

impl App {
    /// A legacy application connection's loop.
    async fn run_legacy(self: Arc<Self>, target: Target, mut i: u64) {
        let mut conn: Option<Conn> = None;
        while !self.stopped.load(Ordering::Relaxed) {
            i += 1;
            let write = i.is_multiple_of(10);
            let t0 = Instant::now();
            if conn.is_none() {
                conn = match target.addr() {
                    Some(a) => TcpStream::connect(a)
                        .await
                        .ok()
                        .map(|s| FramedRead::new(s, FrameCodec::default())),
                    None => None,
                };
            }
            let r = match conn.as_mut() {
                Some(c) => operation(c, (i % 100) as i32, write).await,
                None => Err("no primary to connect to".into()),
            };
            let c = &self.counters;
            c.longest_stall_us
                .fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
            match r {
                Ok(()) if write => c.writes.fetch_add(1, Ordering::Relaxed),
                Ok(()) => c.reads.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.failed_with(write, e)
                }
            };
        }
    }
}

async fn workload(
    target: Target,
    cfg: &DemoConfig,
    rs: &holdfast_sim::ReplicaSet,
) -> anyhow::Result<RunReport> {
    // The data, written with a current driver.
    let setup = mongodb::Client::with_uri_str(rs.uri()).await?;
    let items = setup.database("demo").collection::<Document>("items");
    items
        .insert_many((0..100).map(|i| doc! {"_id": i, "n": 0}))
        .await?;
    let app = Arc::new(App::default());
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|k| tokio::spawn(app.clone().run_legacy(target.clone(), k as u64)))
        .collect();
    let events = failovers(cfg, rs).await;
    tokio::time::sleep(cfg.pause + Duration::from_millis(cfg.election_ms)).await;
    app.stopped.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!("  {}", events.join(", "));
    setup.shutdown().immediate(true).await;
    Ok(app.report())
}

pub async fn run(cfg: &DemoConfig) -> anyhow::Result<()> {
    println!(
        "holdfast demo --legacy: {} connections of a legacy client (OP_QUERY finds, OP_UPDATE + getLastError, as pymongo 3.6 or mgo send them), 90% reads / 10% $inc; the primary is stepped down {} times, then killed.\n",
        cfg.connections, cfg.stepdowns
    );
    println!("run A: straight to the replica set (MongoDB 7.0 refuses these formats) ...");
    let rs = Arc::new(holdfast_sim::ReplicaSet::start(sim_config(cfg)).await?);
    rs.wait_for_primary(Duration::from_secs(10)).await;
    let direct = workload(Target::Primary(rs.clone()), cfg, &rs).await?;
    rs.shutdown();

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
    let addr: SocketAddr = hf.listen_addr.parse()?;
    let mut proxied = workload(Target::Fixed(addr), cfg, &rs).await?;
    let after = prom.as_ref().map(|h| h.render()).unwrap_or_default();
    let delta = |name: &str, f: &str| metric_sum(&after, name, f) - metric_sum(&before, name, f);
    proxied.replays = delta("holdfast_replays_total", "");
    proxied.held = delta("holdfast_held_requests_total", "released");
    hf.shutdown(Duration::from_millis(200)).await;
    rs.shutdown();
    println!();
    print_table(&direct, &proxied);
    Ok(())
}
