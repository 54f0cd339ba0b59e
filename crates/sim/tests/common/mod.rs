//! Helpers shared by the integration tests: sets on ephemeral ports and a
//! raw wire client.
#![allow(dead_code)]

use std::time::Duration;

use bson::{doc, Bson, Document};
use holdfast_sim::client::RawClient;
use holdfast_sim::scram::{ClientConversation, Credential, Mechanism};
use holdfast_sim::{ReplicaSet, SimConfig};

pub mod pki;

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn start(election_ms: u64, repl_lag_ms: u64) -> ReplicaSet {
    let cfg = SimConfig {
        election_ms,
        repl_lag_ms,
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.expect("start set");
    set.wait_for_primary(WAIT).await.expect("a primary");
    set
}

pub async fn connect(set: &ReplicaSet, member: usize) -> RawClient {
    RawClient::connect(set.addr(member)).await.expect("connect")
}

pub async fn primary_client(set: &ReplicaSet) -> (usize, RawClient) {
    let p = set.wait_for_primary(WAIT).await.expect("a primary");
    (p, connect(set, p).await)
}

pub async fn run(c: &mut RawClient, db: &str, cmd: Document) -> Document {
    tokio::time::timeout(WAIT, c.command(db, cmd))
        .await
        .expect("reply in time")
        .expect("reply")
}

pub fn is_ok(d: &Document) -> bool {
    matches!(d.get("ok"), Some(Bson::Double(x)) if *x == 1.0)
        || matches!(d.get("ok"), Some(Bson::Int32(1)))
}

pub fn assert_ok(d: &Document) {
    assert!(is_ok(d), "expected ok:1, got {d}");
}

pub fn code(d: &Document) -> i32 {
    match d.get("code") {
        Some(Bson::Int32(c)) => *c,
        Some(Bson::Int64(c)) => *c as i32,
        _ => 0,
    }
}

pub fn labels(d: &Document) -> Vec<String> {
    d.get_array("errorLabels")
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn wc_code(d: &Document) -> Option<i32> {
    d.get_document("writeConcernError").ok().map(code)
}

pub fn first_batch(d: &Document) -> Vec<Document> {
    batch(d, "firstBatch")
}

pub fn batch(d: &Document, key: &str) -> Vec<Document> {
    d.get_document("cursor")
        .and_then(|c| c.get_array(key))
        .map(|a| a.iter().filter_map(|v| v.as_document().cloned()).collect())
        .unwrap_or_default()
}

pub fn cursor_id(d: &Document) -> Bson {
    d.get_document("cursor")
        .ok()
        .and_then(|c| c.get("id").cloned())
        .unwrap_or(Bson::Null)
}

pub fn secondary_ok() -> Document {
    doc! { "mode": "secondaryPreferred" }
}

/// Polls `f` until it returns true (bounded).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

pub fn payload_bytes(d: &Document) -> Vec<u8> {
    match d.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        other => panic!("no binary payload in {d} ({other:?})"),
    }
}

/// A SCRAM login over saslStart/saslContinue with skipEmptyExchange, the
/// server's signature checked: the final reply, or the first failed one.
pub async fn scram_login(
    c: &mut RawClient,
    db: &str,
    user: &str,
    password: &str,
    mechanism: Mechanism,
) -> Result<Document, Document> {
    scram_login_with(
        c,
        db,
        user,
        Credential::Password(password.into()),
        mechanism,
    )
    .await
}

/// [`scram_login`] with any credential (keys too).
pub async fn scram_login_with(
    c: &mut RawClient,
    db: &str,
    user: &str,
    credential: Credential,
    mechanism: Mechanism,
) -> Result<Document, Document> {
    let mut conv = ClientConversation::new(mechanism, user, credential);
    let start = run(
        c,
        db,
        doc! {
            "saslStart": 1,
            "mechanism": mechanism.name(),
            "payload": binary(conv.client_first().as_bytes()),
            "options": { "skipEmptyExchange": true },
        },
    )
    .await;
    if !is_ok(&start) {
        return Err(start);
    }
    assert_eq!(start.get_bool("done"), Ok(false), "{start}");
    let client_final = conv
        .server_first(&payload_bytes(&start))
        .expect("a valid server-first");
    let done = run(
        c,
        db,
        doc! {
            "saslContinue": 1,
            "conversationId": start.get("conversationId").cloned().unwrap(),
            "payload": binary(client_final.as_bytes()),
        },
    )
    .await;
    if !is_ok(&done) {
        return Err(done);
    }
    assert_eq!(done.get_bool("done"), Ok(true), "{done}");
    conv.server_final(&payload_bytes(&done))
        .expect("the server proves it holds the ServerKey");
    Ok(done)
}

pub fn errmsg(d: &Document) -> &str {
    d.get_str("errmsg").unwrap_or("")
}
