//! Access control against what MongoDB 7.0 does: SCRAM logins with the
//! official Rust driver and a raw client, the pre-authentication command
//! list, roles, user management, speculative authentication, sessions
//! and cursors that belong to their user.

mod common;

use bson::{doc, Bson, Document};
use common::*;
use holdfast_sim::client::RawClient;
use holdfast_sim::scram::{
    ClientConversation, Credential, Mechanism, ScramSecret, ServerConversation,
};
use holdfast_sim::{ReplicaSet, SimConfig, SimUser};
use mongodb::error::ErrorKind;

const SHA1: Mechanism = Mechanism::ScramSha1;
const SHA256: Mechanism = Mechanism::ScramSha256;

async fn start_auth(users: Vec<SimUser>) -> ReplicaSet {
    let cfg = SimConfig {
        election_ms: 400,
        auth: true,
        users,
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.expect("start set");
    set.wait_for_primary(WAIT).await.expect("a primary");
    set
}

fn standard_users() -> Vec<SimUser> {
    vec![
        SimUser::new("root", "rootpw"),
        SimUser::new("app", "apppw").with_roles(&[("readWrite", "db1")]),
        SimUser::new("reader", "readerpw").with_roles(&[("read", "db2")]),
        SimUser::new("old", "oldpw")
            .with_roles(&[("readWrite", "db1")])
            .with_mechanisms(&[SHA1]),
    ]
}

async fn login(set: &ReplicaSet, member: usize, user: &str, pw: &str) -> RawClient {
    let mut c = connect(set, member).await;
    scram_login(&mut c, "admin", user, pw, SHA256)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
    c
}

async fn primary_login(set: &ReplicaSet, user: &str, pw: &str) -> RawClient {
    let p = set.wait_for_primary(WAIT).await.unwrap();
    login(set, p, user, pw).await
}

fn hosts(set: &ReplicaSet) -> String {
    set.addrs()
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn driver(set: &ReplicaSet, user: &str, pw: &str, options: &str) -> mongodb::Client {
    let uri = format!(
        "mongodb://{user}:{pw}@{}/?replicaSet={}&authSource=admin&serverSelectionTimeoutMS=5000{options}",
        hosts(set),
        set.set_name()
    );
    mongodb::Client::with_uri_str(uri).await.unwrap()
}

fn auth_failure(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Authentication { message, .. } if message.contains("Authentication failed."))
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

#[tokio::test]
async fn rust_driver_logs_in_with_scram_sha256_and_sha1() {
    let set = start_auth(standard_users()).await;
    for (user, pw, mech) in [
        ("app", "apppw", "&authMechanism=SCRAM-SHA-256"),
        ("app", "apppw", "&authMechanism=SCRAM-SHA-1"),
        // Negotiated from saslSupportedMechs: the SHA-1-only user gets SHA-1.
        ("old", "oldpw", ""),
        ("app", "apppw", ""),
    ] {
        let client = driver(&set, user, pw, mech).await;
        let coll = client.database("db1").collection::<Document>("drv");
        coll.insert_one(doc! { "by": user, "mech": mech })
            .await
            .unwrap_or_else(|e| panic!("{user} {mech}: {e}"));
        let n = coll
            .count_documents(doc! { "by": user, "mech": mech })
            .await
            .unwrap();
        assert_eq!(n, 1, "{user} {mech}");
        client.shutdown().await;
    }
    // The SHA-1-only user cannot use SCRAM-SHA-256.
    let client = driver(&set, "old", "oldpw", "&authMechanism=SCRAM-SHA-256").await;
    let e = client
        .database("db1")
        .collection::<Document>("drv")
        .insert_one(doc! {})
        .await
        .unwrap_err();
    assert!(auth_failure(&e), "{e}");
}

#[tokio::test]
async fn wrong_password_unknown_user_and_nonce_mismatch_fail_alike() {
    let set = start_auth(standard_users()).await;
    let client = driver(&set, "app", "wrong", "").await;
    let e = client.list_database_names().await.unwrap_err();
    assert!(auth_failure(&e), "{e}");

    let (_, mut c) = primary_client(&set).await;
    for m in [SHA1, SHA256] {
        let e = scram_login(&mut c, "admin", "app", "wrong", m)
            .await
            .unwrap_err();
        assert_eq!(
            (code(&e), errmsg(&e)),
            (18, "Authentication failed."),
            "{e}"
        );
        assert_eq!(e.get_str("codeName").unwrap(), "AuthenticationFailed");
        // An unknown user fails at saslStart, with the same error.
        let e = scram_login(&mut c, "admin", "nobody", "x", m)
            .await
            .unwrap_err();
        assert_eq!(
            (code(&e), errmsg(&e)),
            (18, "Authentication failed."),
            "{e}"
        );
        // A user defined on another database is unknown here.
        let e = scram_login(&mut c, "db1", "app", "apppw", m)
            .await
            .unwrap_err();
        assert_eq!(code(&e), 18, "{e}");
    }
    // Nonce mismatch in the client-final message.
    let mut conv = ClientConversation::new(SHA256, "app", Credential::Password("apppw".into()));
    let start = run(
        &mut c,
        "admin",
        doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256",
               "payload": binary(conv.client_first().as_bytes()), "options": { "skipEmptyExchange": true } },
    )
    .await;
    assert_ok(&start);
    let cf = conv.server_first(&payload_bytes(&start)).unwrap();
    let tampered = cf.replacen(",r=", ",r=x", 1);
    let r = run(
        &mut c,
        "admin",
        doc! { "saslContinue": 1, "conversationId": 1, "payload": binary(tampered.as_bytes()) },
    )
    .await;
    assert_eq!(
        (code(&r), errmsg(&r)),
        (18, "Authentication failed."),
        "{r}"
    );
    // Still not authenticated.
    let r = run(&mut c, "db1", doc! { "find": "c" }).await;
    assert_eq!(code(&r), 13, "{r}");
}

#[tokio::test]
async fn before_authentication_only_the_handshake_commands_run() {
    let set = start_auth(standard_users()).await;
    let (_, mut c) = primary_client(&set).await;
    for (db, cmd) in [
        ("db1", doc! { "find": "c" }),
        ("db1", doc! { "insert": "c", "documents": [ { "x": 1 } ] }),
        ("admin", doc! { "buildInfo": 1 }),
        ("admin", doc! { "listDatabases": 1 }),
        ("admin", doc! { "serverStatus": 1 }),
        ("admin", doc! { "endSessions": [] }),
        ("admin", doc! { "replSetGetStatus": 1 }),
        ("admin", doc! { "simFault": "blackhole", "member": 1 }),
        ("admin", doc! { "usersInfo": 1 }),
    ] {
        let name = cmd.keys().next().unwrap().clone();
        let r = run(&mut c, db, cmd).await;
        assert_eq!(code(&r), 13, "{r}");
        assert_eq!(r.get_str("codeName").unwrap(), "Unauthorized");
        assert_eq!(
            errmsg(&r),
            format!("command {name} requires authentication")
        );
    }
    for (db, cmd) in [
        ("admin", doc! { "hello": 1 }),
        ("admin", doc! { "isMaster": 1 }),
        ("admin", doc! { "ping": 1 }),
        ("admin", doc! { "listCommands": 1 }),
        ("admin", doc! { "logout": 1 }),
    ] {
        let r = run(&mut c, db, cmd).await;
        assert_ok(&r);
    }
    // A command the server does not have is 59 before any check, as mongod.
    let r = run(&mut c, "db1", doc! { "noSuchCommand": 1 }).await;
    assert_eq!(code(&r), 59, "{r}");
    // The blackhole request above was refused: member 1 still answers.
    let mut m1 = connect(&set, 1).await;
    assert_ok(&run(&mut m1, "admin", doc! { "ping": 1 }).await);
    // saslContinue without saslStart.
    let r = run(
        &mut c,
        "admin",
        doc! { "saslContinue": 1, "conversationId": 1, "payload": binary(b"") },
    )
    .await;
    assert_eq!(code(&r), 17, "{r}");
}

#[tokio::test]
async fn roles_decide_what_a_user_may_run() {
    let set = start_auth(standard_users()).await;
    let mut root = primary_login(&set, "root", "rootpw").await;
    for db in ["db1", "db2", "db3"] {
        assert_ok(
            &run(
                &mut root,
                db,
                doc! { "insert": "c", "documents": [ { "x": 1 } ] },
            )
            .await,
        );
    }
    let mut app = primary_login(&set, "app", "apppw").await;
    assert_ok(
        &run(
            &mut app,
            "db1",
            doc! { "insert": "c", "documents": [ { "x": 2 } ] },
        )
        .await,
    );
    assert_eq!(
        first_batch(&run(&mut app, "db1", doc! { "find": "c" }).await).len(),
        2
    );
    let r = run(
        &mut app,
        "db2",
        doc! { "insert": "c", "documents": [ { "x": 3 } ] },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    assert!(
        errmsg(&r).starts_with(
            "not authorized on db2 to execute command { insert: \"c\", documents: [ { x: 3 } ]"
        ),
        "{r}"
    );
    let r = run(&mut app, "db2", doc! { "find": "c" }).await;
    assert_eq!(code(&r), 13, "{r}");
    // readWrite includes dropping collections but not the database.
    let r = run(&mut app, "db1", doc! { "dropDatabase": 1 }).await;
    assert_eq!(code(&r), 13, "{r}");
    // $out into a database the user cannot write is refused before it runs.
    let r = run(
        &mut app,
        "db1",
        doc! { "aggregate": "c", "pipeline": [ { "$out": { "db": "db2", "coll": "o" } } ], "cursor": {} },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    // Cluster commands need cluster roles.
    for (db, cmd) in [
        ("admin", doc! { "serverStatus": 1 }),
        ("admin", doc! { "replSetGetStatus": 1 }),
        ("admin", doc! { "replSetStepDown": 10 }),
        (
            "admin",
            doc! { "simFault": "latency", "member": 1, "ms": 1 },
        ),
        ("admin", doc! { "createUser": "x", "pwd": "y", "roles": [] }),
    ] {
        let r = run(&mut app, db, cmd).await;
        assert_eq!(code(&r), 13, "{r}");
        assert!(
            !errmsg(&r).contains("\"y\""),
            "the password is not echoed: {r}"
        );
    }
    // Commands any authenticated user runs.
    for cmd in [
        doc! { "ping": 1 },
        doc! { "buildInfo": 1 },
        doc! { "connectionStatus": 1 },
        doc! { "endSessions": [] },
    ] {
        assert_ok(&run(&mut app, "admin", cmd).await);
    }
    // listDatabases shows what the user may read.
    let r = run(
        &mut app,
        "admin",
        doc! { "listDatabases": 1, "nameOnly": true },
    )
    .await;
    assert_ok(&r);
    let names: Vec<&str> = r
        .get_array("databases")
        .unwrap()
        .iter()
        .filter_map(|d| d.as_document()?.get_str("name").ok())
        .collect();
    assert_eq!(names, vec!["db1"]);
    let r = run(
        &mut app,
        "admin",
        doc! { "listDatabases": 1, "authorizedDatabases": false },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(
        &mut root,
        "admin",
        doc! { "listDatabases": 1, "nameOnly": true },
    )
    .await;
    let all = r.get_array("databases").unwrap().len();
    assert!(all >= 4, "root sees db1..db3 and admin: {r}");

    let mut reader = primary_login(&set, "reader", "readerpw").await;
    assert_eq!(
        first_batch(&run(&mut reader, "db2", doc! { "find": "c" }).await).len(),
        1
    );
    let r = run(
        &mut reader,
        "db2",
        doc! { "delete": "c", "deletes": [ { "q": {}, "limit": 0 } ] },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(&mut reader, "db1", doc! { "count": "c" }).await;
    assert_eq!(code(&r), 13, "{r}");
    // Root runs everything, the simulator's own command included.
    assert_ok(&run(&mut root, "admin", doc! { "serverStatus": 1 }).await);
    assert_ok(
        &run(
            &mut root,
            "admin",
            doc! { "simFault": "latency", "member": 1, "ms": 0 },
        )
        .await,
    );
    assert_ok(&run(&mut root, "db3", doc! { "dropDatabase": 1 }).await);
}

#[tokio::test]
async fn any_database_roles_cover_every_database() {
    let set = start_auth(vec![
        SimUser::new("root", "rootpw"),
        SimUser::new("ra", "pw").with_roles(&[("readAnyDatabase", "admin")]),
        SimUser::new("rwa", "pw").with_roles(&[("readWriteAnyDatabase", "admin")]),
        SimUser::new("mon", "pw").with_roles(&[("clusterMonitor", "admin")]),
    ])
    .await;
    let mut rwa = primary_login(&set, "rwa", "pw").await;
    for db in ["a", "b"] {
        assert_ok(
            &run(
                &mut rwa,
                db,
                doc! { "insert": "c", "documents": [ { "x": 1 } ] },
            )
            .await,
        );
    }
    let r = run(
        &mut rwa,
        "local",
        doc! { "insert": "c", "documents": [ {} ] },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    let mut ra = primary_login(&set, "ra", "pw").await;
    assert_eq!(
        first_batch(&run(&mut ra, "b", doc! { "find": "c" }).await).len(),
        1
    );
    let r = run(&mut ra, "b", doc! { "insert": "c", "documents": [ {} ] }).await;
    assert_eq!(code(&r), 13, "{r}");
    // System collections are out of the AnyDatabase roles' reach.
    let r = run(&mut ra, "admin", doc! { "find": "system.users" }).await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(
        &mut ra,
        "admin",
        doc! { "listDatabases": 1, "nameOnly": true },
    )
    .await;
    assert!(r.get_array("databases").unwrap().len() >= 2, "{r}");
    let mut mon = primary_login(&set, "mon", "pw").await;
    assert_ok(&run(&mut mon, "admin", doc! { "serverStatus": 1 }).await);
    assert_ok(&run(&mut mon, "admin", doc! { "replSetGetStatus": 1 }).await);
    let r = run(&mut mon, "admin", doc! { "replSetStepDown": 10 }).await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(&mut mon, "a", doc! { "find": "c" }).await;
    assert_eq!(code(&r), 13, "{r}");
}

fn user_doc<'a>(r: &'a Document, user: &str) -> &'a Document {
    r.get_array("users")
        .unwrap()
        .iter()
        .filter_map(Bson::as_document)
        .find(|u| u.get_str("user") == Ok(user))
        .unwrap_or_else(|| panic!("{user} in {r}"))
}

#[tokio::test]
async fn create_update_drop_and_users_info() {
    let set = start_auth(standard_users()).await;
    let mut root = primary_login(&set, "root", "rootpw").await;
    let r = run(
        &mut root,
        "admin",
        doc! { "createUser": "u2", "pwd": "u2pw", "roles": [ { "role": "read", "db": "db1" } ] },
    )
    .await;
    assert_ok(&r);
    // Replicated (w: majority by default): a secondary authenticates it.
    let secondary = (0..set.len()).find(|i| Some(*i) != set.primary()).unwrap();
    let s = &set;
    eventually("u2 reaches the secondary", || async move {
        let mut c = connect(s, secondary).await;
        scram_login(&mut c, "admin", "u2", "u2pw", SHA1)
            .await
            .is_ok()
    })
    .await;

    let r = run(&mut root, "admin", doc! { "usersInfo": "u2" }).await;
    let u = user_doc(&r, "u2");
    assert_eq!(u.get_str("_id").unwrap(), "admin.u2");
    assert_eq!(u.get_str("db").unwrap(), "admin");
    assert!(!u.contains_key("credentials"), "{u}");
    assert_eq!(
        u.get_array("mechanisms").unwrap(),
        &vec![Bson::from("SCRAM-SHA-1"), Bson::from("SCRAM-SHA-256")]
    );
    assert_eq!(
        u.get_array("roles").unwrap(),
        &vec![Bson::Document(doc! { "role": "read", "db": "db1" })]
    );

    let r = run(
        &mut root,
        "admin",
        doc! { "usersInfo": { "user": "u2", "db": "admin" }, "showCredentials": true },
    )
    .await;
    let creds = user_doc(&r, "u2").get_document("credentials").unwrap();
    for (m, iterations, salt_len) in [(SHA1, 10_000, 16), (SHA256, 15_000, 28)] {
        let c = creds.get_document(m.name()).unwrap();
        assert_eq!(c.get_i32("iterationCount").unwrap(), iterations);
        let secret = ScramSecret::from_credential_document(m, c).unwrap();
        assert_eq!(secret.salt().len(), salt_len);
        assert!(secret.verify_password("u2", "u2pw"), "{m}");
        assert!(!secret.verify_password("u2", "other"), "{m}");
    }

    // usersInfo: 1 lists the database's users; arrays work too.
    let r = run(&mut root, "admin", doc! { "usersInfo": 1 }).await;
    assert_eq!(r.get_array("users").unwrap().len(), 5, "{r}");
    let r = run(&mut root, "admin", doc! { "usersInfo": ["app", "old"] }).await;
    assert_eq!(r.get_array("users").unwrap().len(), 2, "{r}");
    assert_eq!(
        user_doc(&r, "old").get_array("mechanisms").unwrap(),
        &vec![Bson::from("SCRAM-SHA-1")]
    );

    // Errors as mongod's.
    let r = run(
        &mut root,
        "admin",
        doc! { "createUser": "u2", "pwd": "x", "roles": [] },
    )
    .await;
    assert_eq!(
        (code(&r), errmsg(&r)),
        (51003, "User \"u2@admin\" already exists"),
        "{r}"
    );
    let r = run(
        &mut root,
        "admin",
        doc! { "createUser": "u3", "pwd": "x", "roles": ["nosuchrole"] },
    )
    .await;
    assert_eq!(
        (code(&r), errmsg(&r)),
        (31, "Could not find role: nosuchrole@admin"),
        "{r}"
    );
    assert_eq!(r.get_str("codeName").unwrap(), "RoleNotFound");
    let r = run(&mut root, "admin", doc! { "createUser": "u3", "roles": [] }).await;
    assert_eq!(code(&r), 2, "{r}");
    let mut on_secondary = login(&set, secondary, "root", "rootpw").await;
    let r = run(
        &mut on_secondary,
        "admin",
        doc! { "createUser": "u4", "pwd": "x", "roles": [] },
    )
    .await;
    assert_eq!(code(&r), 10107, "{r}");

    // mechanisms: only SCRAM-SHA-1.
    assert_ok(
        &run(
            &mut root,
            "admin",
            doc! { "createUser": "legacy", "pwd": "lpw", "roles": [], "mechanisms": ["SCRAM-SHA-1"] },
        )
        .await,
    );
    let (_, mut c) = primary_client(&set).await;
    let e = scram_login(&mut c, "admin", "legacy", "lpw", SHA256)
        .await
        .unwrap_err();
    assert_eq!(
        (code(&e), errmsg(&e)),
        (18, "Authentication failed."),
        "{e}"
    );
    scram_login(&mut c, "admin", "legacy", "lpw", SHA1)
        .await
        .unwrap();

    // A user sees itself (without credentials), not others.
    let mut app = primary_login(&set, "app", "apppw").await;
    let r = run(
        &mut app,
        "admin",
        doc! { "usersInfo": "app", "showCredentials": true },
    )
    .await;
    assert_ok(&r);
    assert!(!user_doc(&r, "app").contains_key("credentials"), "{r}");
    let r = run(&mut app, "admin", doc! { "usersInfo": "root" }).await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(&mut app, "admin", doc! { "connectionStatus": 1 }).await;
    let info = r.get_document("authInfo").unwrap();
    assert_eq!(
        info.get_array("authenticatedUsers").unwrap(),
        &vec![Bson::Document(doc! { "user": "app", "db": "admin" })]
    );
    assert_eq!(
        info.get_array("authenticatedUserRoles").unwrap(),
        &vec![Bson::Document(doc! { "role": "readWrite", "db": "db1" })]
    );

    // updateUser: a new password and roles.
    assert_ok(
        &run(
            &mut root,
            "admin",
            doc! { "updateUser": "u2", "pwd": "newpw", "roles": [ { "role": "readWrite", "db": "db1" } ] },
        )
        .await,
    );
    let (_, mut c) = primary_client(&set).await;
    assert_eq!(
        code(
            &scram_login(&mut c, "admin", "u2", "u2pw", SHA256)
                .await
                .unwrap_err()
        ),
        18
    );
    scram_login(&mut c, "admin", "u2", "newpw", SHA256)
        .await
        .unwrap();
    assert_ok(&run(&mut c, "db1", doc! { "insert": "c", "documents": [ {} ] }).await);

    // dropUser: its open connections lose their rights, new logins fail.
    assert_ok(&run(&mut root, "admin", doc! { "dropUser": "u2" }).await);
    let r = run(&mut c, "db1", doc! { "find": "c" }).await;
    assert_eq!(code(&r), 13, "{r}");
    let (_, mut c2) = primary_client(&set).await;
    assert_eq!(
        code(
            &scram_login(&mut c2, "admin", "u2", "newpw", SHA256)
                .await
                .unwrap_err()
        ),
        18
    );
    let r = run(&mut root, "admin", doc! { "dropUser": "u2" }).await;
    assert_eq!(
        (code(&r), errmsg(&r)),
        (11, "User 'u2@admin' not found"),
        "{r}"
    );
}

#[tokio::test]
async fn sasl_supported_mechs_and_speculative_authentication() {
    let set = start_auth(standard_users()).await;
    let (_, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "admin",
        doc! { "hello": 1, "saslSupportedMechs": "admin.app" },
    )
    .await;
    assert_eq!(
        r.get_array("saslSupportedMechs").unwrap(),
        &vec![Bson::from("SCRAM-SHA-1"), Bson::from("SCRAM-SHA-256")]
    );
    let r = run(
        &mut c,
        "admin",
        doc! { "isMaster": 1, "saslSupportedMechs": "admin.old" },
    )
    .await;
    assert_eq!(
        r.get_array("saslSupportedMechs").unwrap(),
        &vec![Bson::from("SCRAM-SHA-1")]
    );
    let r = run(
        &mut c,
        "admin",
        doc! { "hello": 1, "saslSupportedMechs": "admin.nobody" },
    )
    .await;
    assert!(!r.contains_key("saslSupportedMechs"), "{r}");

    // A whole login inside the handshake plus one saslContinue.
    for as_base64 in [false, true] {
        let mut c = connect(&set, set.primary().unwrap()).await;
        let mut conv = ClientConversation::new(SHA256, "app", Credential::Password("apppw".into()));
        let first = conv.client_first();
        let payload = if as_base64 {
            Bson::String(base64_encode(first.as_bytes()))
        } else {
            binary(first.as_bytes())
        };
        let hello = run(
            &mut c,
            "admin",
            doc! {
                "hello": 1,
                "speculativeAuthenticate": {
                    "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": payload,
                    "options": { "skipEmptyExchange": true }, "db": "admin",
                },
            },
        )
        .await;
        assert_ok(&hello);
        let spec = hello.get_document("speculativeAuthenticate").unwrap();
        assert!(!spec.contains_key("ok"), "{spec}");
        assert_eq!(spec.get_i32("conversationId").unwrap(), 1);
        assert!(!spec.get_bool("done").unwrap());
        let server_first = match spec.get("payload").unwrap() {
            Bson::String(s) if as_base64 => base64_decode(s),
            Bson::Binary(b) if !as_base64 => b.bytes.clone(),
            other => panic!("payload in the client's encoding: {other:?}"),
        };
        // Not authenticated yet.
        assert_eq!(code(&run(&mut c, "db1", doc! { "find": "c" }).await), 13);
        let cf = conv.server_first(&server_first).unwrap();
        let done = run(
            &mut c,
            "admin",
            doc! { "saslContinue": 1, "conversationId": 1, "payload": binary(cf.as_bytes()) },
        )
        .await;
        assert_ok(&done);
        assert!(done.get_bool("done").unwrap());
        conv.server_final(&payload_bytes(&done)).unwrap();
        assert_ok(&run(&mut c, "db1", doc! { "find": "c" }).await);
    }

    // A failed speculative attempt leaves no trace in the reply.
    let mut conv = ClientConversation::new(SHA256, "nobody", Credential::Password("x".into()));
    let hello = run(
        &mut c,
        "admin",
        doc! {
            "hello": 1,
            "speculativeAuthenticate": {
                "saslStart": 1, "mechanism": "SCRAM-SHA-256",
                "payload": binary(conv.client_first().as_bytes()), "db": "admin",
            },
        },
    )
    .await;
    assert_ok(&hello);
    assert!(!hello.contains_key("speculativeAuthenticate"), "{hello}");
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn sasl_conversation_rules() {
    let set = start_auth(standard_users()).await;
    let (_, mut c) = primary_client(&set).await;
    // Without skipEmptyExchange: server-final with done: false, then an
    // empty step; the user is authenticated only after it.
    let mut conv = ClientConversation::new(SHA1, "app", Credential::Password("apppw".into()));
    let start = run(
        &mut c,
        "admin",
        doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": binary(conv.client_first().as_bytes()) },
    )
    .await;
    assert_ok(&start);
    let cf = conv.server_first(&payload_bytes(&start)).unwrap();
    let r = run(
        &mut c,
        "admin",
        doc! { "saslContinue": 1, "conversationId": 2, "payload": binary(cf.as_bytes()) },
    )
    .await;
    assert_eq!(
        code(&r),
        17,
        "any conversationId but 1 is a ProtocolError: {r}"
    );
    assert_eq!(errmsg(&r), "sasl: Mismatched conversation id");

    let mut conv = ClientConversation::new(SHA1, "app", Credential::Password("apppw".into()));
    let start = run(
        &mut c,
        "admin",
        doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": binary(conv.client_first().as_bytes()) },
    )
    .await;
    let cf = conv.server_first(&payload_bytes(&start)).unwrap();
    let second = run(
        &mut c,
        "admin",
        doc! { "saslContinue": 1, "conversationId": 1i64, "payload": binary(cf.as_bytes()) },
    )
    .await;
    assert_ok(&second);
    assert!(!second.get_bool("done").unwrap());
    conv.server_final(&payload_bytes(&second)).unwrap();
    assert_eq!(code(&run(&mut c, "db1", doc! { "find": "c" }).await), 13);
    let last = run(
        &mut c,
        "admin",
        doc! { "saslContinue": 1, "conversationId": 1, "payload": binary(b"") },
    )
    .await;
    assert_ok(&last);
    assert!(last.get_bool("done").unwrap());
    assert!(payload_bytes(&last).is_empty());
    assert_ok(&run(&mut c, "db1", doc! { "find": "c" }).await);

    // The same user again is fine; another user of admin is not.
    scram_login(&mut c, "admin", "app", "apppw", SHA256)
        .await
        .unwrap();
    let e = scram_login(&mut c, "admin", "reader", "readerpw", SHA256)
        .await
        .unwrap_err();
    assert_eq!(code(&e), 5626701, "{e}");
    assert_eq!(
        errmsg(&e),
        "Each client connection may only be authenticated once. Previously authenticated as: app@admin"
    );
    // Still app.
    assert_ok(&run(&mut c, "db1", doc! { "find": "c" }).await);
    assert_eq!(code(&run(&mut c, "db2", doc! { "find": "c" }).await), 13);

    // Unknown mechanisms, and SCRAM on $external, are BadValue.
    let r = run(
        &mut c,
        "admin",
        doc! { "saslStart": 1, "mechanism": "PLAIN", "payload": binary(b"x") },
    )
    .await;
    assert_eq!(code(&r), 2, "{r}");
    // logout ends the login.
    assert_ok(&run(&mut c, "admin", doc! { "logout": 1 }).await);
    assert_eq!(code(&run(&mut c, "db1", doc! { "find": "c" }).await), 13);
}

#[tokio::test]
async fn sessions_belong_to_their_user() {
    let set = start_auth(vec![
        SimUser::new("a", "apw").with_roles(&[("readWrite", "db1")]),
        SimUser::new("b", "bpw").with_roles(&[("readWrite", "db1")]),
    ])
    .await;
    let mut a = primary_login(&set, "a", "apw").await;
    let mut b = primary_login(&set, "b", "bpw").await;
    let lsid = doc! { "id": bson::Uuid::new() };
    let insert = |who: &str| {
        doc! {
            "insert": "s", "documents": [ { "by": who } ],
            "lsid": lsid.clone(), "txnNumber": 1i64,
        }
    };
    assert_eq!(
        run(&mut a, "db1", insert("a")).await.get_i32("n").unwrap(),
        1
    );
    // A retry by a is deduplicated; the same (lsid, txnNumber) by b is
    // b's own session and runs.
    assert_eq!(
        run(&mut a, "db1", insert("a-retry"))
            .await
            .get_i32("n")
            .unwrap(),
        1
    );
    assert_eq!(
        run(&mut b, "db1", insert("b")).await.get_i32("n").unwrap(),
        1
    );
    let docs = first_batch(&run(&mut a, "db1", doc! { "find": "s", "sort": { "by": 1 } }).await);
    let by: Vec<&str> = docs.iter().map(|d| d.get_str("by").unwrap()).collect();
    assert_eq!(by, vec!["a", "b"]);
}

#[tokio::test]
async fn cursors_belong_to_their_user() {
    let set = start_auth(vec![
        SimUser::new("a", "apw").with_roles(&[("readWrite", "db1")]),
        SimUser::new("b", "bpw").with_roles(&[("readWrite", "db1")]),
    ])
    .await;
    let mut a = primary_login(&set, "a", "apw").await;
    let mut b = primary_login(&set, "b", "bpw").await;
    let docs: Vec<Document> = (0..5).map(|i| doc! { "_id": i }).collect();
    assert_ok(&run(&mut a, "db1", doc! { "insert": "c", "documents": docs }).await);
    let r = run(&mut a, "db1", doc! { "find": "c", "batchSize": 1 }).await;
    let id = cursor_id(&r);
    assert!(matches!(id, Bson::Int64(n) if n != 0), "{r}");
    let r = run(
        &mut b,
        "db1",
        doc! { "getMore": id.clone(), "collection": "c" },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(
        &mut b,
        "db1",
        doc! { "killCursors": "c", "cursors": [id.clone()] },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    let r = run(
        &mut a,
        "db1",
        doc! { "getMore": id.clone(), "collection": "c", "batchSize": 1 },
    )
    .await;
    assert_eq!(batch(&r, "nextBatch").len(), 1, "{r}");
    let r = run(
        &mut a,
        "db1",
        doc! { "killCursors": "c", "cursors": [id.clone()] },
    )
    .await;
    assert_eq!(r.get_array("cursorsKilled").unwrap(), &vec![id]);
}

#[tokio::test]
async fn the_localhost_exception_creates_the_first_user() {
    let set = start_auth(Vec::new()).await;
    let (_, mut c) = primary_client(&set).await;
    assert_eq!(code(&run(&mut c, "db1", doc! { "find": "c" }).await), 13);
    assert_ok(
        &run(
            &mut c,
            "admin",
            doc! { "createUser": "first", "pwd": "pw", "roles": ["root"] },
        )
        .await,
    );
    let r = run(
        &mut c,
        "admin",
        doc! { "createUser": "second", "pwd": "pw", "roles": ["root"] },
    )
    .await;
    assert_eq!(code(&r), 13, "{r}");
    scram_login(&mut c, "admin", "first", "pw", SHA256)
        .await
        .unwrap();
    assert_ok(
        &run(
            &mut c,
            "admin",
            doc! { "createUser": "second", "pwd": "pw", "roles": ["root"] },
        )
        .await,
    );
}

#[tokio::test]
async fn without_auth_nothing_is_enforced_but_users_log_in() {
    let cfg = SimConfig {
        users: vec![SimUser::new("app", "apppw").with_roles(&[("read", "db1")])],
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.unwrap();
    set.wait_for_primary(WAIT).await.unwrap();
    let (_, mut c) = primary_client(&set).await;
    assert_ok(&run(&mut c, "db9", doc! { "insert": "c", "documents": [ {} ] }).await);
    scram_login(&mut c, "admin", "app", "apppw", SHA256)
        .await
        .unwrap();
    // Logged in as a read-only user, yet nothing is enforced.
    assert_ok(&run(&mut c, "db9", doc! { "insert": "c", "documents": [ {} ] }).await);
    assert_eq!(
        code(
            &scram_login(&mut connect(&set, 0).await, "admin", "app", "bad", SHA256)
                .await
                .unwrap_err()
        ),
        18
    );
    let client = driver(&set, "app", "apppw", "").await;
    assert_eq!(
        client
            .database("db9")
            .collection::<Document>("c")
            .count_documents(doc! {})
            .await
            .unwrap(),
        2
    );
    let e = driver(&set, "app", "nope", "")
        .await
        .database("db9")
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .unwrap_err();
    assert!(auth_failure(&e), "{e}");
    assert_eq!(command_code(&e), None);
}

#[tokio::test]
async fn a_recovered_client_key_logs_in_where_the_same_secret_is_stored() {
    // The set stores a secret a proxy also holds (same salt and iterations).
    let secret =
        ScramSecret::derive(SHA256, "svc", "svcpw", b"salt shared by both", 15_000).unwrap();
    let set = start_auth(vec![SimUser::new("svc", "not-this-one")
        .with_secrets(std::slice::from_ref(&secret))
        .with_roles(&[("readWrite", "db1")])])
    .await;
    let mut root_view = primary_login(&set, "svc", "svcpw").await;
    let r = run(&mut root_view, "admin", doc! { "usersInfo": "svc" }).await;
    assert_eq!(
        user_doc(&r, "svc").get_array("mechanisms").unwrap(),
        &vec![Bson::from("SCRAM-SHA-256")]
    );
    let (_, mut c) = primary_client(&set).await;
    let e = scram_login(&mut c, "admin", "svc", "not-this-one", SHA256)
        .await
        .unwrap_err();
    assert_eq!(code(&e), 18);

    // A server side holding only the secret verifies a client and
    // recovers its ClientKey...
    let mut client = ClientConversation::new(SHA256, "svc", Credential::Password("svcpw".into()));
    let mut server = ServerConversation::new(SHA256);
    let sf = server
        .client_first(client.client_first().as_bytes(), |_| Some(secret.clone()))
        .unwrap();
    let cf = client.server_first(sf.as_bytes()).unwrap();
    let done = server.client_final(cf.as_bytes()).unwrap();
    client.server_final(done.message.as_bytes()).unwrap();
    // ...and logs in to the set as that user with the keys alone.
    let (_, mut upstream) = primary_client(&set).await;
    scram_login_with(
        &mut upstream,
        "admin",
        "svc",
        Credential::Keys(done.keys.clone()),
        SHA256,
    )
    .await
    .unwrap();
    assert_ok(
        &run(
            &mut upstream,
            "db1",
            doc! { "insert": "c", "documents": [ {} ] },
        )
        .await,
    );
    // Keys recovered against another salt do not.
    let other = ScramSecret::derive(SHA256, "svc", "svcpw", b"another salt", 4096).unwrap();
    let mut client = ClientConversation::new(SHA256, "svc", Credential::Password("svcpw".into()));
    let mut server = ServerConversation::new(SHA256);
    let sf = server
        .client_first(client.client_first().as_bytes(), |_| Some(other.clone()))
        .unwrap();
    let cf = client.server_first(sf.as_bytes()).unwrap();
    let wrong = server.client_final(cf.as_bytes()).unwrap().keys;
    let (_, mut upstream) = primary_client(&set).await;
    let e = scram_login_with(
        &mut upstream,
        "admin",
        "svc",
        Credential::Keys(wrong),
        SHA256,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (code(&e), errmsg(&e)),
        (18, "Authentication failed."),
        "{e}"
    );
}
