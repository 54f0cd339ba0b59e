//! TLS on every member (certificates made at test time with rcgen), the
//! Rust driver with `tlsCAFile`, plaintext refused, and MONGODB-X509.

mod common;

use bson::{doc, Document};
use common::pki::{Pki, SimTlsOf, CLIENT_SUBJECT, STRANGER_SUBJECT};
use common::*;
use holdfast_sim::client::{tls_config, RawClient};
use holdfast_sim::scram::Mechanism;
use holdfast_sim::{ReplicaSet, SimConfig, SimUser};
use mongodb::error::ErrorKind;

async fn start(pki: &Pki, with_ca: bool, auth: bool, users: Vec<SimUser>) -> ReplicaSet {
    let cfg = SimConfig {
        election_ms: 400,
        auth,
        users,
        tls: Some(pki.sim_tls(with_ca)),
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.expect("start set");
    set.wait_for_primary(WAIT).await.expect("a primary");
    set
}

async fn tls_client(set: &ReplicaSet, pki: &Pki, cert: Option<&str>) -> Result<RawClient, String> {
    let p = set.wait_for_primary(WAIT).await.unwrap();
    let config = tls_config(&pki.ca_pem, cert).unwrap();
    let mut c = RawClient::connect_tls(set.addr(p), config, "127.0.0.1")
        .await
        .map_err(|e| e.to_string())?;
    // rustls finishes a TLS 1.3 client-certificate check after the client
    // thinks the handshake is done: a refused certificate shows on the
    // first round trip.
    match tokio::time::timeout(WAIT, c.command("admin", doc! { "ping": 1 })).await {
        Ok(Ok(r)) if is_ok(&r) => Ok(c),
        Ok(Ok(r)) => Err(r.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

fn hosts(set: &ReplicaSet) -> String {
    set.addrs()
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn rust_driver_over_tls_with_a_ca_file() {
    let pki = Pki::new();
    let set = start(&pki, false, false, Vec::new()).await;
    assert!(set.uri().ends_with("&tls=true"), "{}", set.uri());
    let uri = format!("{}&tlsCAFile={}", set.uri(), pki.path("ca.pem"));
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let coll = client.database("tlsdb").collection::<Document>("c");
    coll.insert_one(doc! { "x": 1 }).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    let status = client
        .database("admin")
        .run_command(doc! { "getParameter": 1, "tlsMode": 1 })
        .await
        .unwrap();
    assert_eq!(status.get_str("tlsMode").unwrap(), "requireTLS");
    client.shutdown().await;

    // Without the CA the server is not trusted.
    let uri = format!("{}&serverSelectionTimeoutMS=1500", set.uri());
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let e = client.list_database_names().await.unwrap_err();
    assert!(matches!(*e.kind, ErrorKind::ServerSelection { .. }), "{e}");
}

#[tokio::test]
async fn plaintext_clients_are_refused() {
    let pki = Pki::new();
    let set = start(&pki, false, false, Vec::new()).await;
    for member in 0..set.len() {
        let mut c = RawClient::connect(set.addr(member)).await.unwrap();
        let r = tokio::time::timeout(WAIT, c.command("admin", doc! { "hello": 1 })).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "member {member} answered a plaintext hello: {r:?}"
        );
    }
    // A plaintext driver never finds a server.
    let plain = set
        .uri()
        .replace("&tls=true", "&serverSelectionTimeoutMS=1500");
    let client = mongodb::Client::with_uri_str(plain).await.unwrap();
    assert!(client.list_database_names().await.is_err());
    // While TLS clients are served.
    let mut c = tls_client(&set, &pki, None).await.unwrap();
    assert_ok(&run(&mut c, "admin", doc! { "hello": 1 }).await);
}

#[tokio::test]
async fn client_certificates_are_verified_against_the_ca() {
    let pki = Pki::new();
    let set = start(&pki, true, false, Vec::new()).await;
    // No certificate: still allowed.
    tls_client(&set, &pki, None).await.unwrap();
    tls_client(&set, &pki, Some(&pki.client_pem)).await.unwrap();
    // A certificate from another CA is refused.
    let e = tls_client(&set, &pki, Some(&pki.untrusted_pem)).await;
    assert!(e.is_err(), "untrusted client certificate accepted");
}

async fn x509_set(pki: &Pki) -> ReplicaSet {
    start(
        pki,
        true,
        true,
        vec![
            SimUser::new("root", "rootpw"),
            SimUser::parse(&format!("{CLIENT_SUBJECT}@$external:readWrite@db1")).unwrap(),
        ],
    )
    .await
}

#[tokio::test]
async fn rust_driver_logs_in_with_x509_and_scram_over_tls() {
    let pki = Pki::new();
    let set = x509_set(&pki).await;
    let uri = format!(
        "mongodb://{}/?replicaSet=rs0&tls=true&tlsCAFile={}&tlsCertificateKeyFile={}&authMechanism=MONGODB-X509&serverSelectionTimeoutMS=5000",
        hosts(&set),
        pki.path("ca.pem"),
        pki.path("client.pem"),
    );
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let coll = client.database("db1").collection::<Document>("x");
    coll.insert_one(doc! { "via": "x509" }).await.unwrap();
    let status = client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .unwrap();
    assert_eq!(
        status
            .get_document("authInfo")
            .unwrap()
            .get_array("authenticatedUsers")
            .unwrap(),
        &vec![bson::Bson::Document(
            doc! { "user": CLIENT_SUBJECT, "db": "$external" }
        )]
    );
    let e = client
        .database("db2")
        .collection::<Document>("x")
        .insert_one(doc! {})
        .await
        .unwrap_err();
    assert!(
        matches!(&*e.kind, ErrorKind::Command(c) if c.code == 13),
        "{e}"
    );
    client.shutdown().await;

    // SCRAM over TLS.
    let uri = format!(
        "mongodb://root:rootpw@{}/?replicaSet=rs0&tls=true&tlsCAFile={}&serverSelectionTimeoutMS=5000",
        hosts(&set),
        pki.path("ca.pem"),
    );
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let n = client
        .database("db1")
        .collection::<Document>("x")
        .count_documents(doc! { "via": "x509" })
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn x509_authenticate_rules() {
    let pki = Pki::new();
    let set = x509_set(&pki).await;
    let x509 = doc! { "authenticate": 1, "mechanism": "MONGODB-X509" };

    let mut c = tls_client(&set, &pki, Some(&pki.client_pem)).await.unwrap();
    assert_eq!(code(&run(&mut c, "db1", doc! { "find": "x" }).await), 13);
    // Not on $external: ProtocolError.
    let r = run(&mut c, "admin", x509.clone()).await;
    assert_eq!(code(&r), 17, "{r}");
    // A user name other than the certificate's subject.
    let mut wrong = x509.clone();
    wrong.insert("user", "CN=someone,O=else");
    let r = run(&mut c, "$external", wrong).await;
    assert_eq!(
        (code(&r), errmsg(&r)),
        (18, "Authentication failed."),
        "{r}"
    );
    let mut named = x509.clone();
    named.insert("user", CLIENT_SUBJECT);
    let r = run(&mut c, "$external", named).await;
    assert_ok(&r);
    assert_eq!(r.get_str("user").unwrap(), CLIENT_SUBJECT);
    assert_eq!(r.get_str("dbname").unwrap(), "$external");
    assert_ok(&run(&mut c, "db1", doc! { "find": "x" }).await);
    assert_eq!(code(&run(&mut c, "db2", doc! { "find": "x" }).await), 13);

    // Without a client certificate.
    let mut c = tls_client(&set, &pki, None).await.unwrap();
    let r = run(&mut c, "$external", x509.clone()).await;
    assert_eq!(code(&r), 18, "{r}");
    // A verified certificate whose subject is no user.
    let mut c = tls_client(&set, &pki, Some(&pki.stranger_pem))
        .await
        .unwrap();
    let r = run(&mut c, "$external", x509.clone()).await;
    assert_eq!(code(&r), 11, "{r}");
    assert_eq!(
        errmsg(&r),
        format!("Could not find user \"{STRANGER_SUBJECT}\" for db \"$external\"")
    );
    // Another mechanism through authenticate.
    let r = run(
        &mut c,
        "$external",
        doc! { "authenticate": 1, "mechanism": "SCRAM-SHA-256" },
    )
    .await;
    assert_eq!(code(&r), 18, "{r}");

    // Speculative X.509 in the handshake.
    let mut c = tls_client(&set, &pki, Some(&pki.client_pem)).await.unwrap();
    let hello = run(
        &mut c,
        "admin",
        doc! { "hello": 1, "speculativeAuthenticate": { "authenticate": 1, "mechanism": "MONGODB-X509" } },
    )
    .await;
    assert_eq!(
        hello.get_document("speculativeAuthenticate").unwrap(),
        &doc! { "dbname": "$external", "user": CLIENT_SUBJECT }
    );
    assert_ok(&run(&mut c, "db1", doc! { "find": "x" }).await);
    // The same connection cannot also log in as another user... of
    // another database (5626702).
    let e = scram_login(&mut c, "admin", "root", "rootpw", Mechanism::ScramSha256)
        .await
        .unwrap_err();
    assert_eq!(code(&e), 5626702, "{e}");

    // A user created with createUser on $external logs in the same way.
    let mut root = tls_client(&set, &pki, None).await.unwrap();
    scram_login(&mut root, "admin", "root", "rootpw", Mechanism::ScramSha256)
        .await
        .unwrap();
    assert_ok(
        &run(
            &mut root,
            "$external",
            doc! { "createUser": STRANGER_SUBJECT, "roles": [ { "role": "read", "db": "db1" } ] },
        )
        .await,
    );
    let mut c = tls_client(&set, &pki, Some(&pki.stranger_pem))
        .await
        .unwrap();
    let r = run(&mut c, "$external", x509.clone()).await;
    assert_ok(&r);
    assert_eq!(
        code(&run(&mut c, "db1", doc! { "insert": "x", "documents": [ {} ] }).await),
        13
    );
    assert_ok(&run(&mut c, "db1", doc! { "find": "x" }).await);
}
