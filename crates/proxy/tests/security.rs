//! holdfast in front of a replica set with access control and TLS, with
//! the official Rust driver: a user logs in to holdfast over TLS and runs
//! upstream as itself; backend connections log in with MONGODB-X509; a
//! rotated upstream password file takes effect on reload.

mod common;

use std::time::Duration;

use bson::{doc, Document};
use common::Harness;
use holdfast_sim::{SimTls, SimUser};
use holdfast_tls::pki::{Pki, CLIENT_SUBJECT};

fn sim_tls(pki: &Pki, verify_clients: bool) -> SimTls {
    SimTls {
        cert_key_pem: pki.server_pem.clone(),
        ca_pem: verify_clients.then(|| pki.ca_pem.clone()),
    }
}

/// `uri` with `user:password@` in it.
fn with_credentials(uri: &str, user: &str, password: &str) -> String {
    uri.replacen("mongodb://", &format!("mongodb://{user}:{password}@"), 1)
}

async fn client(uri: String) -> mongodb::Client {
    let mut o = mongodb::options::ClientOptions::parse(uri).await.unwrap();
    o.server_selection_timeout
        .get_or_insert(Duration::from_secs(10));
    mongodb::Client::with_options(o).unwrap()
}

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            Some(w.code)
        }
        _ => None,
    }
}

#[tokio::test]
async fn the_rust_driver_logs_in_over_tls_and_runs_as_its_own_user() {
    let pki = Pki::new();
    let dir = pki.dir().to_path_buf();
    let users = dir.join("users.toml");
    std::fs::write(&users, "[[user]]\nname = \"app\"\npassword = \"app-pw\"\n").unwrap();
    let (cert, key) = pki.cert_and_key("server.pem");
    let ca = pki.path("ca.pem");
    let h = Harness::with(
        |s| {
            s.auth = true;
            s.users = vec![
                SimUser::new("svc", "svc-pw").with_roles(&[("readWrite", "db1")]),
                SimUser::new("app", "app-pw").with_roles(&[("readWrite", "app")]),
            ];
            s.tls = Some(sim_tls(&pki, false));
        },
        |c| {
            let up = with_credentials(c.upstream.as_deref().unwrap(), "svc", "svc-pw");
            c.upstream = Some(format!("{up}&tlsCAFile={ca}"));
            c.users_file = Some(users.clone());
            c.tls_cert_file = Some(cert.clone());
            c.tls_key_file = Some(key.clone());
        },
    )
    .await;
    let base = format!("mongodb://app:app-pw@{}/", h.hf.listen_addr);
    let c = client(format!("{base}?tls=true&tlsCAFile={ca}")).await;
    let coll = c.database("app").collection::<Document>("t");
    let docs: Vec<Document> = (0..10).map(|i| doc! {"i": i}).collect();
    coll.insert_many(docs).await.unwrap();
    let mut cursor = coll
        .find(doc! {})
        .batch_size(3)
        .sort(doc! {"i": 1})
        .await
        .unwrap();
    let mut seen = 0;
    while cursor.advance().await.unwrap() {
        assert_eq!(cursor.deserialize_current().unwrap().get_i32("i"), Ok(seen));
        seen += 1;
    }
    assert_eq!(seen, 10);
    // holdfast's own identity may write db1, app may not: the replica set
    // refuses, so app's request ran upstream as app.
    let e = c
        .database("db1")
        .collection::<Document>("t")
        .insert_one(doc! {})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    let status = c
        .database("admin")
        .run_command(doc! {"connectionStatus": 1})
        .await
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    assert_eq!(
        users,
        &vec![bson::Bson::Document(doc! {"user": "app", "db": "admin"})]
    );
    // Without TLS, no session at all.
    let plain = client(format!("{base}?serverSelectionTimeoutMS=1000")).await;
    assert!(plain.list_database_names().await.is_err());
}

#[tokio::test]
async fn backend_connections_log_in_with_mongodb_x509() {
    let pki = Pki::new();
    let (ca, me) = (pki.path("ca.pem"), pki.path("client.pem"));
    let h = Harness::with(
        |s| {
            s.auth = true;
            s.users = vec![SimUser::external(CLIENT_SUBJECT).with_roles(&[("readWrite", "db1")])];
            s.tls = Some(sim_tls(&pki, true));
        },
        |c| {
            let up = c.upstream.clone().unwrap();
            c.upstream = Some(format!(
                "{up}&tlsCAFile={ca}&tlsCertificateKeyFile={me}&authMechanism=MONGODB-X509"
            ));
        },
    )
    .await;
    let mut raw = h.raw().await;
    let r = raw
        .command(common::insert("db1", "t", vec![doc! {"x": 1}]))
        .await;
    assert_eq!(r.get_i32("n"), Ok(1), "{r}");
    let r = raw
        .command(common::insert("db2", "t", vec![doc! {"x": 1}]))
        .await;
    assert_eq!(r.get_i32("code"), Ok(13), "{r}");
    let r = raw
        .command(doc! {"connectionStatus": 1, "$db": "admin"})
        .await;
    let users = r
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap()
        .clone();
    assert_eq!(
        users,
        vec![bson::Bson::Document(
            doc! {"user": CLIENT_SUBJECT, "db": "$external"}
        )]
    );
}

#[tokio::test]
async fn a_rotated_upstream_password_file_takes_effect_on_reload() {
    let dir = std::env::temp_dir().join(format!("holdfast-pwfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pw");
    std::fs::write(&file, "old-password\n").unwrap();
    let h = Harness::with(
        |s| {
            s.auth = true;
            s.users = vec![SimUser::new("svc", "new-password")];
        },
        |c| {
            c.upstream = Some(c.upstream.as_deref().unwrap().replacen(
                "mongodb://",
                "mongodb://svc@",
                1,
            ));
            c.upstream_password_file = Some(file.clone());
        },
    )
    .await;
    let mut raw = h.raw().await;
    let r = raw.command(doc! {"find": "t", "$db": "db1"}).await;
    assert_eq!(r.get_i32("code"), Ok(18), "{r}");
    assert!(r.get_str("errmsg").unwrap().contains("admin.svc"), "{r}");
    std::fs::write(&file, "new-password\n").unwrap();
    h.hf.reload().await.unwrap();
    let r = raw.command(doc! {"find": "t", "$db": "db1"}).await;
    assert_eq!(r.get_f64("ok"), Ok(1.0), "{r}");
    std::fs::remove_dir_all(&dir).unwrap();
}
