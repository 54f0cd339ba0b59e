//! hello/isMaster over OP_QUERY and OP_MSG, awaitable and exhaust hello,
//! legacy opcodes, protocol errors, start-up commands.

mod common;

use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use common::*;
use holdfast_sim::client::reply_body;
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{Message, MsgFlags, OpMsg};

fn check_common_hello_fields(h: &Document, set: &holdfast_sim::ReplicaSet, me: usize) {
    assert_ok(h);
    assert_eq!(h.get_str("setName").unwrap(), "rs0");
    assert_eq!(h.get_i32("setVersion").unwrap(), 1);
    let hosts: Vec<String> = set.addrs().iter().map(|a| a.to_string()).collect();
    let got: Vec<&str> = h
        .get_array("hosts")
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(got, hosts);
    assert_eq!(h.get_str("me").unwrap(), set.addr(me).to_string());
    let tv = h.get_document("topologyVersion").unwrap();
    assert!(matches!(tv.get("processId"), Some(Bson::ObjectId(_))));
    assert!(matches!(tv.get("counter"), Some(Bson::Int64(_))));
    let lw = h.get_document("lastWrite").unwrap();
    for k in [
        "opTime",
        "lastWriteDate",
        "majorityOpTime",
        "majorityWriteDate",
    ] {
        assert!(lw.contains_key(k), "lastWrite.{k} missing: {h}");
    }
    assert_eq!(h.get_i32("maxBsonObjectSize").unwrap(), 16 * 1024 * 1024);
    assert_eq!(h.get_i32("maxMessageSizeBytes").unwrap(), 48_000_000);
    assert_eq!(h.get_i32("maxWriteBatchSize").unwrap(), 100_000);
    assert!(matches!(h.get("localTime"), Some(Bson::DateTime(_))));
    assert_eq!(h.get_i32("logicalSessionTimeoutMinutes").unwrap(), 30);
    assert!(h.contains_key("connectionId"));
    assert_eq!(h.get_i32("minWireVersion").unwrap(), 0);
    assert_eq!(h.get_i32("maxWireVersion").unwrap(), 21);
    assert!(!h.get_bool("readOnly").unwrap());
    assert!(h.contains_key("$clusterTime"), "no $clusterTime: {h}");
    assert!(h.contains_key("operationTime"));
    let sig = h
        .get_document("$clusterTime")
        .unwrap()
        .get_document("signature")
        .unwrap();
    assert!(matches!(sig.get("keyId"), Some(Bson::Int64(0))));
}

#[tokio::test]
async fn hello_over_op_msg_on_primary_and_secondary() {
    let set = start(300, 0).await;
    let mut p = connect(&set, 0).await;
    let h = run(&mut p, "admin", doc! { "hello": 1, "helloOk": true }).await;
    check_common_hello_fields(&h, &set, 0);
    assert!(h.get_bool("isWritablePrimary").unwrap());
    assert!(!h.contains_key("ismaster"));
    assert!(!h.get_bool("secondary").unwrap());
    assert_eq!(h.get_str("primary").unwrap(), set.addr(0).to_string());
    assert!(matches!(h.get("electionId"), Some(Bson::ObjectId(_))));
    assert!(h.get_bool("helloOk").unwrap());

    let mut s = connect(&set, 1).await;
    let h = run(&mut s, "admin", doc! { "isMaster": 1 }).await;
    check_common_hello_fields(&h, &set, 1);
    assert!(!h.get_bool("ismaster").unwrap());
    assert!(!h.contains_key("isWritablePrimary"));
    assert!(h.get_bool("secondary").unwrap());
    assert_eq!(h.get_str("primary").unwrap(), set.addr(0).to_string());
    assert!(!h.contains_key("electionId"));
    assert!(!h.contains_key("helloOk"));
}

#[tokio::test]
async fn is_master_over_op_query_gets_op_reply() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let h = c
        .query_command(
            "admin",
            doc! { "isMaster": 1, "helloOk": true, "client": { "driver": { "name": "t", "version": "1" } } },
        )
        .await
        .unwrap();
    check_common_hello_fields(&h, &set, 0);
    assert!(h.get_bool("ismaster").unwrap());
    assert!(h.get_bool("helloOk").unwrap());
    // Wrapped form with $query, as old drivers send it.
    let h = c
        .query_command(
            "admin",
            doc! { "$query": { "ismaster": 1 }, "$readPreference": { "mode": "primaryPreferred" } },
        )
        .await
        .unwrap();
    assert!(h.get_bool("ismaster").unwrap());
    // A second hello with client metadata is refused.
    let e = c
        .query_command(
            "admin",
            doc! { "isMaster": 1, "client": { "driver": { "name": "t" } } },
        )
        .await
        .unwrap();
    assert_eq!(code(&e), 186, "{e}");
    assert_eq!(
        e.get_str("codeName").unwrap(),
        "ClientMetadataCannotBeMutated"
    );
}

#[tokio::test]
async fn op_query_for_other_commands_is_refused() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let e = c
        .query_command("test", doc! { "find": "c", "filter": {} })
        .await
        .unwrap();
    assert_eq!(code(&e), 352, "{e}");
    assert_eq!(e.get_str("codeName").unwrap(), "UnsupportedOpQueryCommand");
    let e = c
        .query(
            "test.c",
            doc! { "x": 1 },
            holdfast_wire::QueryFlags::empty(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(code(&e), 5739101, "{e}");
    // The connection still works.
    assert_ok(&run(&mut c, "admin", doc! { "ping": 1 }).await);
}

fn legacy_insert_frame() -> Vec<u8> {
    // OP_INSERT: header, flags, "test.c\0", one document.
    let doc = document_bytes(&doc! { "x": 1 });
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(b"test.c\0");
    body.extend_from_slice(&doc);
    let mut out = Vec::new();
    out.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    out.extend_from_slice(&7i32.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&2002i32.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn legacy_op_insert_closes_the_connection() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    c.send_bytes(&legacy_insert_frame()).await.unwrap();
    let r = c.recv_timeout(WAIT).await;
    assert!(
        matches!(r, Ok(None) | Err(_)),
        "expected a close, got {r:?}"
    );
}

#[tokio::test]
async fn unknown_required_flag_bits_close_the_connection() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let body = document_bytes(&doc! { "ping": 1, "$db": "admin" });
    let mut msg = OpMsg::new(MsgFlags::empty(), body);
    msg.flags = MsgFlags::from_bits_retain(1 << 4);
    let mut raw = Vec::new();
    msg.encode(9, 0, false, &mut raw);
    c.send_bytes(&raw).await.unwrap();
    let r = c.recv_timeout(WAIT).await;
    assert!(
        matches!(r, Ok(None) | Err(_)),
        "expected a close, got {r:?}"
    );
}

#[tokio::test]
async fn more_to_come_requests_get_no_reply() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    c.send_msg(
        "test",
        doc! { "insert": "c", "documents": [{ "_id": 1 }], "writeConcern": { "w": 0 } },
        MsgFlags::MORE_TO_COME,
    )
    .await
    .unwrap();
    // The next reply on the wire answers the ping, not the insert.
    let ping = c
        .send_msg("admin", doc! { "ping": 1 }, MsgFlags::empty())
        .await
        .unwrap();
    let reply = c.recv_timeout(WAIT).await.unwrap().unwrap();
    assert_eq!(reply.response_to(), ping.request_id());
    let r = run(&mut c, "test", doc! { "find": "c", "filter": {} }).await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 1 }]);
}

#[tokio::test]
async fn malformed_but_framed_requests_get_error_replies() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    // No $db.
    let id = c.next_request_id();
    let f = Message::Msg(OpMsg::new(
        MsgFlags::empty(),
        document_bytes(&doc! { "ping": 1 }),
    ))
    .to_frame(id, 0);
    c.send_frame(&f).await.unwrap();
    let r = reply_body(&c.recv_timeout(WAIT).await.unwrap().unwrap()).unwrap();
    assert_eq!(code(&r), 40571, "{r}");
    // Unknown command.
    let r = run(&mut c, "admin", doc! { "frobnicate": 1 }).await;
    assert_eq!(code(&r), 59);
    assert_eq!(
        r.get_str("errmsg").unwrap(),
        "no such command: 'frobnicate'"
    );
    assert!(r.contains_key("$clusterTime"));
}

#[tokio::test]
async fn awaitable_hello_waits_for_max_await_time() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 1).await;
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    let tv = h.get_document("topologyVersion").unwrap().clone();
    let t0 = Instant::now();
    let h2 = run(
        &mut c,
        "admin",
        doc! { "hello": 1, "topologyVersion": tv.clone(), "maxAwaitTimeMS": 400i64 },
    )
    .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(380),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "returned after {waited:?}");
    assert_eq!(h2.get_document("topologyVersion").unwrap(), &tv);
    // Only one of the two fields: 31368.
    let e = run(&mut c, "admin", doc! { "hello": 1, "maxAwaitTimeMS": 10 }).await;
    assert_eq!(code(&e), 31368);
    // Another processId: immediate.
    let other = doc! { "processId": bson::oid::ObjectId::new(), "counter": 0i64 };
    let t0 = Instant::now();
    run(
        &mut c,
        "admin",
        doc! { "hello": 1, "topologyVersion": other, "maxAwaitTimeMS": 5000 },
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn awaitable_hello_returns_early_at_a_stepdown() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    let tv = h.get_document("topologyVersion").unwrap().clone();
    let waiter = tokio::spawn(async move {
        let t0 = Instant::now();
        let h = c
            .command(
                "admin",
                doc! { "hello": 1, "topologyVersion": tv, "maxAwaitTimeMS": 10_000 },
            )
            .await
            .unwrap();
        (t0.elapsed(), h)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    set.step_down(60, true).await.unwrap();
    let (waited, h) = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(!h.get_bool("isWritablePrimary").unwrap(), "{h}");
    assert!(
        h.get_document("topologyVersion")
            .unwrap()
            .get_i64("counter")
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn exhaust_hello_streams_more_to_come_replies() {
    let set = start(200, 0).await;
    let mut c = connect(&set, 1).await;
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    let tv = h.get_document("topologyVersion").unwrap().clone();
    let sent = c
        .send_msg(
            "admin",
            doc! { "hello": 1, "topologyVersion": tv, "maxAwaitTimeMS": 300 },
            MsgFlags::EXHAUST_ALLOWED,
        )
        .await
        .unwrap();
    let mut prev = sent.request_id();
    for i in 0..3 {
        let f = c.recv_timeout(WAIT).await.unwrap().expect("streamed reply");
        assert_eq!(
            f.response_to(),
            prev,
            "reply {i} responds to the previous reply"
        );
        assert!(f.msg_flags().unwrap().contains(MsgFlags::MORE_TO_COME));
        let body = reply_body(&f).unwrap();
        assert_ok(&body);
        prev = f.request_id();
    }
    // A stepdown is streamed at once.
    set.step_down(60, true).await.unwrap();
    let t0 = Instant::now();
    loop {
        let f = c.recv_timeout(WAIT).await.unwrap().expect("streamed reply");
        assert_eq!(f.response_to(), prev);
        prev = f.request_id();
        let body = reply_body(&f).unwrap();
        if !body.contains_key("primary")
            || body.get_str("primary").unwrap() != set.addr(0).to_string()
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn start_up_commands_answer_like_mongod() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let b = run(&mut c, "admin", doc! { "buildInfo": 1 }).await;
    assert_eq!(b.get_str("version").unwrap(), "7.0.12");
    assert_eq!(b.get_array("versionArray").unwrap()[0], Bson::Int32(7));
    let p = run(
        &mut c,
        "admin",
        doc! { "getParameter": 1, "featureCompatibilityVersion": 1 },
    )
    .await;
    assert_eq!(
        p.get_document("featureCompatibilityVersion")
            .unwrap()
            .get_str("version")
            .unwrap(),
        "7.0"
    );
    let a = run(&mut c, "admin", doc! { "atlasVersion": 1 }).await;
    assert_eq!(code(&a), 59);
    let agg = run(
        &mut c,
        "admin",
        doc! { "aggregate": "atlascli", "pipeline": [{ "$match": { "managedClusterType": "atlasCliLocalDevCluster" } }, { "$count": "count" }], "cursor": {} },
    )
    .await;
    assert_ok(&agg);
    assert!(matches!(cursor_id(&agg), Bson::Int64(0)));
    let s = run(&mut c, "admin", doc! { "serverStatus": 1 }).await;
    assert_eq!(s.get_str("process").unwrap(), "mongod");
    let conns = s.get_document("connections").unwrap();
    assert_eq!(
        conns.get_i32("current").unwrap() as usize,
        set.connections_current(0)
    );
    assert!(s
        .get_document("repl")
        .unwrap()
        .get_bool("isWritablePrimary")
        .unwrap());
    for cmd in [
        doc! { "ping": 1 },
        doc! { "endSessions": [] },
        doc! { "whatsmyuri": 1 },
        doc! { "getLog": "startupWarnings" },
        doc! { "getCmdLineOpts": 1 },
        doc! { "hostInfo": 1 },
        doc! { "connectionStatus": 1 },
        doc! { "listCommands": 1 },
        doc! { "getFreeMonitoringStatus": 1 },
    ] {
        let r = run(&mut c, "admin", cmd.clone()).await;
        assert_ok(&r);
    }
}

#[tokio::test]
async fn compressed_requests_get_compressed_replies() {
    use holdfast_wire::{Compressor, OpCompressed};
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    let h = run(
        &mut c,
        "admin",
        doc! { "hello": 1, "compression": ["zstd", "zlib", "bogus"] },
    )
    .await;
    let names: Vec<&str> = h
        .get_array("compression")
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["zstd", "zlib"]);
    for comp in [Compressor::Zlib, Compressor::Zstd, Compressor::Snappy] {
        let id = c.next_request_id();
        let plain = Message::Msg(OpMsg::new(
            MsgFlags::empty(),
            document_bytes(&doc! { "ping": 1, "$db": "admin" }),
        ))
        .to_frame(id, 0);
        let compressed = OpCompressed::compress(&plain, comp).unwrap();
        c.send_frame(&compressed).await.unwrap();
        let reply = c.recv_timeout(WAIT).await.unwrap().unwrap();
        assert_eq!(reply.op_code(), holdfast_wire::OpCode::Compressed);
        assert_ok(&reply_body(&reply).unwrap());
    }
}

#[tokio::test]
async fn legacy_op_get_more_gets_5739101() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 0).await;
    // OP_GET_MORE: header, zero, "test.c\0", numberToReturn, cursorID.
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(b"test.c\0");
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&42i64.to_le_bytes());
    let mut raw = Vec::new();
    raw.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    raw.extend_from_slice(&5i32.to_le_bytes());
    raw.extend_from_slice(&0i32.to_le_bytes());
    raw.extend_from_slice(&2005i32.to_le_bytes());
    raw.extend_from_slice(&body);
    c.send_bytes(&raw).await.unwrap();
    let f = c.recv_timeout(WAIT).await.unwrap().expect("a reply");
    assert_eq!(f.op_code(), holdfast_wire::OpCode::Reply);
    assert_eq!(f.response_to(), 5);
    assert_eq!(code(&reply_body(&f).unwrap()), 5739101);
}

#[tokio::test]
async fn unacknowledged_write_to_a_secondary_closes_the_connection() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 1).await;
    c.send_msg(
        "test",
        doc! { "insert": "c", "documents": [{ "_id": 1 }], "writeConcern": { "w": 0 } },
        MsgFlags::MORE_TO_COME,
    )
    .await
    .unwrap();
    let r = c.recv_timeout(WAIT).await;
    assert!(
        matches!(r, Ok(None) | Err(holdfast_sim::client::ClientError::Io(_))),
        "expected a close, got {r:?}"
    );
}
