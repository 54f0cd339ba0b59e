//! What TLS and SCRAM cost, side by side in one process (holdfast-sim and
//! holdfast on loopback, certificates made at run time):
//!
//! - `plain`: no TLS, no authentication (the sidecar default);
//! - `tls`: TLS from clients to holdfast and from holdfast to the members;
//! - `tls+scram`: the same, and access control: clients log in to holdfast
//!   (users file, SCRAM-SHA-256) and holdfast's backend connections log in
//!   upstream as each client's user.
//!
//! Per variant: the time to open one client connection and be ready to
//! send (TCP, TLS handshake, hello, login), and a read loop (`find` by
//! `_id` on CONNECTIONS connections for SECONDS): requests per second,
//! p50/p99 latency, and the CPU this process spent per request (client,
//! holdfast and sim together: compare the variants, not the absolute
//! figure). Also the first request of a new user, which opens and logs in
//! a backend connection (`tls+scram` only). Ratios are against `plain`.
//!
//!   nice -n 10 cargo bench -p holdfast-bench --bench security [-- SECONDS CONNECTIONS]
//!
//! Prints a table and one JSON line (`benches/results/security.json` keeps
//! the last run's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use holdfast_proxy::Config;
use holdfast_scram::{ClientConversation, Credential, Mechanism};
use holdfast_sim::client::{tls_config, RawClient};
use holdfast_sim::{ReplicaSet, SimConfig, SimTls, SimUser};
use holdfast_tls::pki::Pki;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Variant {
    Plain,
    Tls,
    TlsScram,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Tls => "tls",
            Variant::TlsScram => "tls+scram",
        }
    }
    fn tls(self) -> bool {
        self != Variant::Plain
    }
    fn scram(self) -> bool {
        self == Variant::TlsScram
    }
}

/// This process's CPU time (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

struct World {
    rs: ReplicaSet,
    hf: holdfast_proxy::Holdfast,
    tls: Option<Arc<rustls::ClientConfig>>,
}

async fn start(v: Variant, pki: &Pki) -> World {
    let users = pki.dir().join(format!("users-{}.toml", v.name()));
    let mut lines = String::new();
    for i in 0..64 {
        lines.push_str(&format!(
            "[[user]]\nname = \"u{i}\"\npassword = \"pw{i}\"\n"
        ));
    }
    std::fs::write(&users, lines).unwrap();
    let rs = ReplicaSet::start(SimConfig {
        base_port: 0,
        election_ms: 400,
        auth: v.scram(),
        users: std::iter::once(SimUser::new("svc", "svc-pw"))
            .chain((0..64).map(|i| {
                SimUser::new(&format!("u{i}"), &format!("pw{i}"))
                    .with_roles(&[("readWrite", "bench")])
            }))
            .collect(),
        tls: v.tls().then(|| SimTls {
            cert_key_pem: pki.server_pem.clone(),
            ca_pem: None,
        }),
        ..Default::default()
    })
    .await
    .expect("start the sim");
    rs.wait_for_primary(Duration::from_secs(10))
        .await
        .expect("a primary");
    let mut upstream = rs.uri();
    if v.tls() {
        upstream = format!("{upstream}&tlsCAFile={}", pki.path("ca.pem"));
    }
    if v.scram() {
        upstream = upstream.replacen("mongodb://", "mongodb://svc:svc-pw@", 1);
    }
    let (cert, key) = pki.cert_and_key("server.pem");
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: String::new(),
        upstream: Some(upstream),
        pool_size: 100,
        users_file: v.scram().then(|| users.clone()),
        tls_cert_file: v.tls().then(|| cert.clone()),
        tls_key_file: v.tls().then(|| key.clone()),
        ..Default::default()
    };
    let hf = holdfast_proxy::start(cfg).await.expect("holdfast starts");
    hf.wait_for_primary(Duration::from_secs(10))
        .await
        .expect("holdfast sees a primary");
    let tls = v
        .tls()
        .then(|| tls_config(&pki.ca_pem, None).expect("client TLS"));
    World { rs, hf, tls }
}

fn binary(b: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: b,
    }
}

fn payload(d: &Document) -> Vec<u8> {
    match d.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => panic!("no payload in {d}"),
    }
}

/// A client connection ready to send: connected, hello, logged in as
/// `u<user>` when the variant authenticates.
async fn open(w: &World, v: Variant, user: usize) -> RawClient {
    let addr = w.hf.listen_addr.parse().unwrap();
    let mut c = match &w.tls {
        Some(cfg) => RawClient::connect_tls(addr, cfg.clone(), "127.0.0.1").await,
        None => RawClient::connect(addr).await,
    }
    .expect("connect");
    c.hello().await.expect("hello");
    if v.scram() {
        let (name, pw) = (format!("u{user}"), format!("pw{user}"));
        let m = Mechanism::ScramSha256;
        let mut conv = ClientConversation::new(m, &name, Credential::Password(pw));
        let first = conv.client_first().into_bytes();
        let r = c
            .command(
                "admin",
                doc! {"saslStart": 1, "mechanism": m.name(), "payload": binary(first), "options": {"skipEmptyExchange": true}},
            )
            .await
            .unwrap();
        let fin = conv.server_first(&payload(&r)).expect("server-first");
        let id = r.get("conversationId").cloned().unwrap();
        let r = c
            .command(
                "admin",
                doc! {"saslContinue": 1, "conversationId": id, "payload": binary(fin.into_bytes())},
            )
            .await
            .unwrap();
        conv.server_final(&payload(&r)).expect("server-final");
        assert!(r.get_bool("done").unwrap_or(false), "{r}");
    }
    c
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[derive(Debug, Default)]
struct Row {
    connect_us: f64,
    first_request_new_user_us: Option<f64>,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_request: f64,
}

async fn measure(v: Variant, pki: &Pki, seconds: u64, conns: usize) -> Row {
    let w = Arc::new(start(v, pki).await);
    let mut setup = open(&w, v, 0).await;
    let docs: Vec<Document> = (0..1000).map(|i| doc! {"_id": i as i64, "v": i}).collect();
    setup
        .command("bench", doc! {"insert": "t", "documents": docs})
        .await
        .unwrap();
    // Connection setup, 100 in a row.
    let mut row = Row::default();
    let t0 = Instant::now();
    for i in 0..100 {
        let mut c = open(&w, v, i % 64).await;
        if i == 0 {
            c.command("admin", doc! {"ping": 1}).await.unwrap();
        }
    }
    row.connect_us = t0.elapsed().as_secs_f64() * 1e6 / 100.0;
    if v.scram() {
        // A user with no backend connection yet: its first request opens
        // and logs in one (the mean over 8 users).
        let mut total = 0.0;
        for u in 40..48 {
            let mut c = open(&w, v, u).await;
            let t = Instant::now();
            c.command(
                "bench",
                doc! {"find": "t", "filter": {"_id": 1i64}, "limit": 1},
            )
            .await
            .unwrap();
            total += t.elapsed().as_secs_f64() * 1e6;
        }
        row.first_request_new_user_us = Some(total / 8.0);
    }
    // The read loop.
    let mut clients = Vec::new();
    for i in 0..conns {
        clients.push(open(&w, v, i % 8).await);
    }
    let warm = Duration::from_secs(1);
    let cpu0 = cpu_time();
    let start = Instant::now();
    let end = start + warm + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (k, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            let mut i = k as i64;
            while Instant::now() < end {
                let t = Instant::now();
                let r = c
                    .command("bench", doc! {"find": "t", "filter": {"_id": i % 1000}, "limit": 1, "singleBatch": true})
                    .await
                    .unwrap();
                assert_eq!(r.get_f64("ok"), Ok(1.0), "{r}");
                n += 1;
                if t >= start + warm {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                i += 7;
            }
            (n, lat)
        }));
    }
    let (mut total, mut lats) = (0u64, Vec::new());
    for t in tasks {
        let (n, l) = t.await.unwrap();
        total += n;
        lats.extend(l);
    }
    let cpu = cpu_time() - cpu0;
    row.ops_per_sec = lats.len() as f64 / seconds as f64;
    row.p50_us = pct(&mut lats, 0.50);
    row.p99_us = pct(&mut lats, 0.99);
    row.cpu_us_per_request = cpu.as_secs_f64() * 1e6 / total as f64;
    if let Ok(w) = Arc::try_unwrap(w) {
        w.hf.shutdown(Duration::from_millis(200)).await;
        w.rs.shutdown();
    }
    row
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let conns: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pki = Pki::new();
    let mut rows = Vec::new();
    for v in [Variant::Plain, Variant::Tls, Variant::TlsScram] {
        let row = rt.block_on(measure(v, &pki, seconds, conns));
        rows.push((v, row));
    }
    let base = &rows[0].1;
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>9} {:>9} {:>11} {:>8} {:>8}",
        "variant",
        "connect µs",
        "new user µs",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "cpu µs/req",
        "ops ×",
        "cpu ×"
    );
    let mut json = Vec::new();
    for (v, r) in &rows {
        println!(
            "{:<10} {:>12.0} {:>12} {:>10.0} {:>9.0} {:>9.0} {:>11.1} {:>8.2} {:>8.2}",
            v.name(),
            r.connect_us,
            r.first_request_new_user_us
                .map_or("-".to_string(), |x| format!("{x:.0}")),
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.cpu_us_per_request,
            r.ops_per_sec / base.ops_per_sec,
            r.cpu_us_per_request / base.cpu_us_per_request,
        );
        json.push(format!(
            "{{\"variant\":\"{}\",\"connect_us\":{:.0},\"first_request_new_user_us\":{},\"ops_per_sec\":{:.0},\"p50_us\":{:.0},\"p99_us\":{:.0},\"cpu_us_per_request\":{:.2},\"ops_ratio\":{:.3},\"cpu_ratio\":{:.3}}}",
            v.name(),
            r.connect_us,
            r.first_request_new_user_us.map_or("null".to_string(), |x| format!("{x:.0}")),
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.cpu_us_per_request,
            r.ops_per_sec / base.ops_per_sec,
            r.cpu_us_per_request / base.cpu_us_per_request,
        ));
    }
    println!(
        "{{\"bench\":\"security\",\"seconds\":{seconds},\"connections\":{conns},\"rows\":[{}]}}",
        json.join(",")
    );
}
