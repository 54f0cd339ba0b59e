//! The pools' stall watchdog against holdfast-sim: a member that stops
//! answering (blackhole) gets one hello probe, however many requests wait
//! on it, and those requests fail at once when the probe goes unanswered; a
//! member that is only slow answers the probe and its requests complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use holdfast_proxy::pool::{PoolConfig, PooledConn, Pools};
use holdfast_sim::{ReplicaSet, SimConfig};
use holdfast_wire::{reply, Frame, Limits, Message, MsgFlags};
use tokio_util::sync::CancellationToken;

fn request(d: Document) -> Frame {
    reply::msg_reply_bytes(7, 0, MsgFlags::empty(), reply::document_bytes(&d))
}

fn body(f: &Frame) -> Document {
    let Message::Msg(m) = f.parse(&Limits::default()).unwrap() else {
        panic!("not an OP_MSG")
    };
    Document::from_reader(&m.body[..]).unwrap()
}

/// One command on a pooled connection to `member`, answered.
async fn command(pools: &Pools, member: &str, d: Document) -> Document {
    let mut c = pools
        .get(member)
        .checkout(
            Instant::now(),
            &holdfast_proxy::auth::Principal::service(None),
        )
        .await
        .unwrap();
    c.send(&request(d)).await.unwrap();
    let r = body(&c.recv().await.unwrap());
    c.check_in(Instant::now());
    r
}

async fn connections_created(pools: &Pools, member: &str) -> i32 {
    let s = command(pools, member, doc! {"serverStatus": 1, "$db": "admin"}).await;
    s.get_document("connections")
        .unwrap()
        .get_i32("totalCreated")
        .unwrap()
}

struct Setup {
    rs: ReplicaSet,
    pools: Arc<Pools>,
    stop: CancellationToken,
}

async fn setup(stall: Duration, probe_timeout: Duration) -> Setup {
    let rs = ReplicaSet::start(SimConfig {
        members: 2,
        base_port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    rs.wait_for_primary(Duration::from_secs(10)).await.unwrap();
    let pools = Arc::new(Pools::new(PoolConfig::default()));
    let stop = CancellationToken::new();
    let (p, s) = (pools.clone(), stop.clone());
    tokio::spawn(async move { p.watch_stalls(stall, probe_timeout, s).await });
    Setup { rs, pools, stop }
}

/// `n` pooled connections to `member`, open and handshaken.
async fn open(pools: &Pools, member: &str, n: usize) -> Vec<PooledConn> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(
            pools
                .get(member)
                .checkout(
                    Instant::now(),
                    &holdfast_proxy::auth::Principal::service(None),
                )
                .await
                .unwrap(),
        );
    }
    conns
}

/// Sends a `find` on each connection and waits for every outcome: (reply or
/// error, whether the watchdog cut it, seconds taken).
async fn finds(conns: Vec<PooledConn>) -> Vec<(Result<Frame, String>, bool, f64)> {
    let mut tasks = Vec::new();
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            c.begin(t0);
            c.send(&request(doc! {"find": "c", "filter": {}, "$db": "test"}))
                .await
                .unwrap();
            let r = c.recv().await.map_err(|e| e.to_string());
            c.end();
            (r, c.stalled(), t0.elapsed().as_secs_f64())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_a_blackholed_member_are_cut_after_one_unanswered_probe() {
    let s = setup(Duration::from_millis(200), Duration::from_millis(300)).await;
    let (m0, m1) = (s.rs.addr(0).to_string(), s.rs.addr(1).to_string());
    let before = connections_created(&s.pools, &m0).await;
    let conns = open(&s.pools, &m0, 4).await;
    // Member 1 tells the set to blackhole member 0: it reads and never answers.
    command(
        &s.pools,
        &m1,
        doc! {"simFault": "blackhole", "member": 0, "$db": "admin"},
    )
    .await;
    let outcomes = tokio::time::timeout(Duration::from_secs(10), finds(conns))
        .await
        .expect("the watchdog ends every stalled request");
    for (r, stalled, secs) in &outcomes {
        assert!(r.is_err() && *stalled, "{r:?} stalled={stalled}");
        // stall (200 ms) + up to one tick (50 ms) + probe timeout (300 ms)
        assert!(*secs >= 0.45 && *secs < 3.0, "{secs}");
    }
    command(
        &s.pools,
        &m1,
        doc! {"simFault": "unblackhole", "member": 0, "$db": "admin"},
    )
    .await;
    // Connections member 0 accepted since `before`: three more for the finds
    // (the fourth reused the serverStatus one), one now for serverStatus
    // (the cut ones are gone), and the probes. One probe for four stalled
    // requests; a second only if a tick fell between the cut and the
    // requests noticing it.
    let after = connections_created(&s.pools, &m0).await;
    let probes = after - before - 4;
    assert!(
        (1..=2).contains(&probes),
        "probes: {probes} (before {before}, after {after})"
    );
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_that_answers_the_probe_keeps_its_requests() {
    let s = setup(Duration::from_millis(100), Duration::from_secs(3)).await;
    let (m0, m1) = (s.rs.addr(0).to_string(), s.rs.addr(1).to_string());
    let conns = open(&s.pools, &m0, 3).await;
    command(
        &s.pools,
        &m1,
        doc! {"simFault": "latency", "member": 0, "ms": 600, "$db": "admin"},
    )
    .await;
    let outcomes = finds(conns).await;
    for (r, stalled, secs) in &outcomes {
        let reply = r.as_ref().expect("answered");
        assert_eq!(
            body(reply).get_f64("ok").ok(),
            Some(1.0),
            "{:?}",
            body(reply)
        );
        assert!(!stalled);
        assert!(*secs >= 0.55, "{secs}");
    }
    s.stop.cancel();
}
