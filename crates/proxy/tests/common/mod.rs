//! The harness of holdfast's integration tests: a holdfast-sim replica set
//! and a holdfast in front of it, both on ephemeral loopback ports, stopped
//! when dropped; a raw wire client for exact frames and the official Rust
//! driver for real-client checks.
#![allow(dead_code)]

pub mod legacy;

use std::time::Duration;

use bson::{doc, Document};
use holdfast_proxy::{Config, Holdfast};
use holdfast_sim::{ReplicaSet, SimConfig};
use holdfast_wire::{reply, Frame, FrameCodec, Limits, Message, MsgFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

pub struct Harness {
    pub rs: ReplicaSet,
    pub hf: Holdfast,
}

impl Harness {
    /// Three members (election 400 ms), holdfast with its defaults.
    pub async fn start() -> Harness {
        Self::with(|_| {}, |_| {}).await
    }

    /// `sim` and `proxy` adjust the two configurations.
    pub async fn with(
        sim: impl FnOnce(&mut SimConfig),
        proxy: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut sc = SimConfig {
            base_port: 0,
            election_ms: 400,
            ..Default::default()
        };
        sim(&mut sc);
        let rs = ReplicaSet::start(sc).await.expect("the sim starts");
        rs.wait_for_primary(Duration::from_secs(10))
            .await
            .expect("the sim elects a primary");
        let mut cfg = Config {
            listen: "127.0.0.1:0".into(),
            admin_listen: String::new(),
            upstream: Some(rs.uri()),
            pool_size: 20,
            ..Default::default()
        };
        proxy(&mut cfg);
        let hf = holdfast_proxy::start(cfg).await.expect("holdfast starts");
        hf.wait_for_primary(Duration::from_secs(10))
            .await
            .expect("holdfast sees the primary");
        Harness { rs, hf }
    }

    pub fn primary(&self) -> usize {
        self.rs.primary().expect("a primary")
    }

    /// The official Rust driver through holdfast, its retries off (as a
    /// legacy application).
    pub async fn driver(&self) -> mongodb::Client {
        let mut o = mongodb::options::ClientOptions::parse(self.hf.client_uri())
            .await
            .unwrap();
        o.retry_reads = Some(false);
        o.retry_writes = Some(false);
        o.server_selection_timeout = Some(Duration::from_secs(20));
        mongodb::Client::with_options(o).unwrap()
    }

    /// A raw connection to holdfast.
    pub async fn raw(&self) -> Raw {
        Raw::connect(&self.hf.listen_addr).await
    }

    /// Waits until holdfast knows a primary other than `old`.
    pub async fn wait_new_primary(&self, old: usize) {
        let old = self.rs.addr(old).to_string();
        let mut rx = self.hf.topology().subscribe();
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| s.primary.as_ref().is_some_and(|p| *p != old)),
        )
        .await
        .expect("a new primary within 10 s")
        .unwrap();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.rs.shutdown();
    }
}

/// A wire-level client: sends exactly the frames a test builds.
pub struct Raw {
    frames: FramedRead<TcpStream, FrameCodec>,
    next_id: i32,
}

impl Raw {
    pub async fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).await.expect("connect to holdfast");
        Raw {
            frames: FramedRead::new(s, FrameCodec::default()),
            next_id: 1,
        }
    }

    /// Sends `d` as an OP_MSG with `flags`; returns its requestID.
    pub async fn send(&mut self, d: &Document, flags: MsgFlags) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let f = reply::msg_reply_bytes(id, 0, flags, reply::document_bytes(d));
        self.frames.get_mut().write_all(f.raw()).await.unwrap();
        id
    }

    pub async fn recv(&mut self) -> Option<Frame> {
        use futures::StreamExt;
        self.frames.next().await.map(|r| r.expect("a frame"))
    }

    /// One command, its reply body.
    pub async fn command(&mut self, d: Document) -> Document {
        let id = self.send(&d, MsgFlags::empty()).await;
        let f = tokio::time::timeout(Duration::from_secs(30), self.recv())
            .await
            .expect("a reply within 30 s")
            .expect("connection open");
        assert_eq!(f.response_to(), id);
        body(&f)
    }
}

pub fn body(f: &Frame) -> Document {
    match f.parse(&Limits::default()).unwrap() {
        Message::Msg(m) => Document::from_reader(&m.body[..]).unwrap(),
        Message::Reply(r) => Document::from_reader(&r.documents[..]).unwrap(),
        other => panic!("not a reply: {other:?}"),
    }
}

/// `{insert: coll, documents: docs, $db: db}`.
pub fn insert(db: &str, coll: &str, docs: Vec<Document>) -> Document {
    doc! {"insert": coll, "documents": docs, "$db": db}
}
