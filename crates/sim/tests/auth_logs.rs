//! The simulator's logs never show a password, a key or a SCRAM secret,
//! at any level. (Its own test binary: the subscriber is process-wide.)

mod common;

use std::time::Duration;

use bson::doc;
use common::*;
use holdfast_sim::scram::Mechanism;
use holdfast_sim::{ReplicaSet, SimConfig, SimUser};

/// A tracing writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_show_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let cfg = SimConfig {
        election_ms: 400,
        auth: true,
        users: vec![SimUser::new("root", "S3cretRootPassword")],
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.unwrap();
    let (_, mut root) = primary_client(&set).await;
    scram_login(
        &mut root,
        "admin",
        "root",
        "S3cretRootPassword",
        Mechanism::ScramSha256,
    )
    .await
    .unwrap();
    let mut other = connect(&set, 0).await;
    let bad = scram_login(
        &mut other,
        "admin",
        "root",
        "WrongPassword1",
        Mechanism::ScramSha1,
    )
    .await;
    assert_eq!(code(&bad.unwrap_err()), 18);
    assert_ok(
        &run(
            &mut root,
            "admin",
            doc! { "createUser": "u", "pwd": "AnotherS3cret", "roles": [] },
        )
        .await,
    );
    let r = run(
        &mut root,
        "admin",
        doc! { "usersInfo": "root", "showCredentials": true },
    )
    .await;
    let stored_key = r.get_array("users").unwrap()[0]
        .as_document()
        .unwrap()
        .get_document("credentials")
        .unwrap()
        .get_document("SCRAM-SHA-256")
        .unwrap()
        .get_str("storedKey")
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Authentication succeeded"), "{logs}");
    assert!(logs.contains("Authentication failed"), "{logs}");
    for secret in [
        "S3cretRootPassword",
        "WrongPassword1",
        "AnotherS3cret",
        &stored_key,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}
