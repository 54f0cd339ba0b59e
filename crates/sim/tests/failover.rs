//! Stepdown, elections, shutdown, kill/revive, blackhole, latency and the
//! replication commands, as MongoDB 4.2+ behaves.

mod common;

use std::time::{Duration, Instant};

use bson::{doc, Bson};
use common::*;
use holdfast_sim::MemberState;

#[tokio::test]
async fn stepdown_behaves_like_mongodb() {
    let election_ms = 1000;
    let set = start(election_ms, 0).await;
    let (p, mut c) = primary_client(&set).await;
    let docs: Vec<Bson> = (0..50).map(|i| Bson::Document(doc! { "_id": i })).collect();
    assert_ok(&run(&mut c, "test", doc! { "insert": "s", "documents": docs }).await);
    let r = run(
        &mut c,
        "test",
        doc! { "find": "s", "filter": {}, "batchSize": 10 },
    )
    .await;
    let cursor = cursor_id(&r);
    let term_before = set.state().term;
    let mut state = set.subscribe();

    let mut admin = connect(&set, p).await;
    let t0 = Instant::now();
    let r = run(
        &mut admin,
        "admin",
        doc! { "replSetStepDown": 30, "secondaryCatchUpPeriodSecs": 5 },
    )
    .await;
    assert_ok(&r);

    // Not writable at once.
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    assert!(!h.get_bool("isWritablePrimary").unwrap(), "{h}");
    assert!(h.get_bool("secondary").unwrap());
    // New writes: 10107; primary reads: 13435; both with topologyVersion.
    let e = run(
        &mut c,
        "test",
        doc! { "insert": "s", "documents": [{ "_id": 100 }] },
    )
    .await;
    assert_eq!(code(&e), 10107, "{e}");
    assert_eq!(e.get_str("codeName").unwrap(), "NotWritablePrimary");
    assert!(e.contains_key("topologyVersion"));
    assert!(labels(&e).is_empty(), "no labels without txnNumber: {e}");
    let e = run(&mut c, "test", doc! { "find": "s", "filter": {} }).await;
    assert_eq!(code(&e), 13435, "{e}");
    // Reads that allow secondaries work; so does the open cursor.
    let r = run(
        &mut c,
        "test",
        doc! { "find": "s", "filter": { "_id": 3 }, "$readPreference": secondary_ok() },
    )
    .await;
    assert_eq!(first_batch(&r), vec![doc! { "_id": 3 }]);
    let r = run(
        &mut c,
        "test",
        doc! { "getMore": cursor, "collection": "s" },
    )
    .await;
    assert_eq!(batch(&r, "nextBatch").len(), 40, "{r}");

    // A new primary, another member, within election_ms + 500 ms.
    let s = tokio::time::timeout(
        Duration::from_millis(election_ms + 500),
        state.wait_for(|s| s.primary.is_some()),
    )
    .await
    .expect("new primary in time")
    .unwrap()
    .clone();
    let elapsed = t0.elapsed();
    let np = s.primary.unwrap();
    assert_ne!(np, p);
    assert_eq!(s.term, term_before + 1);
    assert!(
        elapsed >= Duration::from_millis(election_ms - 50),
        "elected after {elapsed:?}"
    );
    let mut n = connect(&set, np).await;
    let h = run(&mut n, "admin", doc! { "hello": 1 }).await;
    assert!(h.get_bool("isWritablePrimary").unwrap());
    let old_id = bson::oid::ObjectId::parse_str(format!("7fffffff{:016x}", term_before)).unwrap();
    assert!(h.get_object_id("electionId").unwrap() > old_id);
    // The old connection is still open and sees the new primary.
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    assert_eq!(h.get_str("primary").unwrap(), set.addr(np).to_string());
    // The stepped-down member is not re-elected while stepDownSecs run.
    let e = run(&mut c, "admin", doc! { "replSetStepDown": 30 }).await;
    assert_eq!(code(&e), 10107);
}

#[tokio::test]
async fn step_down_argument_rules() {
    let set = start(300, 0).await;
    let mut s = connect(&set, 1).await;
    let e = run(&mut s, "admin", doc! { "replSetStepDown": 60 }).await;
    assert_eq!(code(&e), 10107, "stepdown on a secondary: {e}");
    let mut p = connect(&set, 0).await;
    let e = run(&mut p, "admin", doc! { "replSetStepDown": 5 }).await;
    assert_eq!(code(&e), 2, "catch-up period longer than stepdown: {e}");
    let e = run(&mut p, "test", doc! { "replSetStepDown": 60 }).await;
    assert_eq!(code(&e), 13, "admin only: {e}");
    assert_eq!(set.primary(), Some(0));
}

#[tokio::test]
async fn non_force_stepdown_without_a_caught_up_secondary_fails() {
    let set = start(300, 10_000).await;
    let (p, mut c) = primary_client(&set).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "x", "documents": [{ "_id": 1 }], "writeConcern": { "w": 1 } },
    )
    .await;
    let e = run(
        &mut c,
        "admin",
        doc! { "replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 1 },
    )
    .await;
    assert_eq!(code(&e), 262, "{e}");
    assert_eq!(set.primary(), Some(p));
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "x", "documents": [{ "_id": 2 }], "writeConcern": { "w": 1 } },
    )
    .await;
    assert_ok(&r);
}

#[tokio::test]
async fn write_waiting_for_majority_is_interrupted_with_11602() {
    // Large lag: a w:"majority" write stays in flight.
    let set = start(300, 30_000).await;
    let (_, c) = primary_client(&set).await;
    let mut c = c;
    let inflight = tokio::spawn(async move {
        run(
            &mut c,
            "test",
            doc! { "insert": "f", "documents": [{ "_id": 1 }], "writeConcern": { "w": "majority" }, "lsid": { "id": bson::Uuid::new() }, "txnNumber": 1i64 },
        )
        .await
    });
    eventually("the write reaches the log", || {
        let set = set.clone();
        async move { set.total_documents(0) == 1 }
    })
    .await;
    set.step_down(60, true).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), inflight)
        .await
        .expect("interrupted at once")
        .unwrap();
    assert_eq!(wc_code(&r), Some(11602), "{r}");
    assert_eq!(
        r.get_document("writeConcernError")
            .unwrap()
            .get_str("codeName")
            .unwrap(),
        "InterruptedDueToReplStateChange"
    );
    assert_eq!(labels(&r), vec!["RetryableWriteError"]);
}

#[tokio::test]
async fn write_held_by_latency_is_interrupted_with_11602() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    set.set_latency(p, Duration::from_secs(5));
    let inflight = tokio::spawn(async move {
        run(
            &mut c,
            "test",
            doc! { "insert": "l", "documents": [{ "_id": 1 }] },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    set.step_down(60, true).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), inflight)
        .await
        .expect("interrupted at once")
        .unwrap();
    assert_eq!(code(&r), 11602, "{r}");
    assert!(r.contains_key("topologyVersion"));
    set.set_latency(p, Duration::ZERO);
    assert_eq!(
        set.total_documents(p),
        0,
        "the interrupted write was not applied"
    );
}

#[tokio::test]
async fn latency_delays_replies() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 1).await;
    set.set_latency(1, Duration::from_millis(600));
    let t0 = Instant::now();
    assert_ok(&run(&mut c, "admin", doc! { "ping": 1 }).await);
    assert!(t0.elapsed() >= Duration::from_millis(590));
    set.set_latency(1, Duration::ZERO);
    let t0 = Instant::now();
    assert_ok(&run(&mut c, "admin", doc! { "ping": 1 }).await);
    assert!(t0.elapsed() < Duration::from_millis(450));
}

#[tokio::test]
async fn blackhole_answers_nothing_until_healed_and_loses_nothing() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 2).await;
    set.blackhole(2, true);
    c.send_msg(
        "admin",
        doc! { "hello": 1 },
        holdfast_wire::MsgFlags::empty(),
    )
    .await
    .unwrap();
    let r = c.recv_timeout(Duration::from_millis(300)).await;
    assert!(
        matches!(r, Err(holdfast_sim::client::ClientError::Timeout(_))),
        "expected silence, got {r:?}"
    );
    // New connections are accepted but not answered either.
    let mut c2 = connect(&set, 2).await;
    c2.send_msg(
        "admin",
        doc! { "ping": 1 },
        holdfast_wire::MsgFlags::empty(),
    )
    .await
    .unwrap();
    assert!(c2.recv_timeout(Duration::from_millis(200)).await.is_err());
    assert_eq!(set.connections_current(2), 2);
    // Healed: like TCP after a partition, what was sent during it arrives
    // and is answered; nothing was lost.
    set.blackhole(2, false);
    let hello = c
        .recv_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_ok(&holdfast_sim::client::reply_body(&hello).unwrap());
    let ping = c2
        .recv_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_ok(&holdfast_sim::client::reply_body(&ping).unwrap());
    assert_ok(&run(&mut c, "admin", doc! { "ping": 1 }).await);
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_set_elects_a_new_primary() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    let mut idle = connect(&set, p).await;
    run(&mut idle, "admin", doc! { "ping": 1 }).await;
    c.send_msg(
        "admin",
        doc! { "shutdown": 1 },
        holdfast_wire::MsgFlags::empty(),
    )
    .await
    .unwrap();
    let r = c.recv_timeout(WAIT).await;
    assert!(
        matches!(r, Ok(None) | Err(_)),
        "no reply to shutdown: {r:?}"
    );
    let r = idle.recv_timeout(WAIT).await;
    assert!(
        matches!(r, Ok(None) | Err(_)),
        "idle connection closed: {r:?}"
    );
    assert!(
        holdfast_sim::client::RawClient::connect(set.addr(p))
            .await
            .is_err(),
        "listener closed"
    );
    let np = set.wait_for_primary(WAIT).await.unwrap();
    assert_ne!(np, p);
    assert_eq!(set.state().members[p].state, MemberState::Down);
    assert_eq!(set.connections_current(p), 0);
}

#[tokio::test]
async fn kill_resets_connections_and_revive_catches_up() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "k", "documents": [{ "_id": 1 }] },
    )
    .await;
    let h = run(&mut c, "admin", doc! { "hello": 1 }).await;
    let pid_before = h
        .get_document("topologyVersion")
        .unwrap()
        .get_object_id("processId")
        .unwrap();
    let mut other = connect(&set, (p + 1) % 3).await;
    let lost_at = Instant::now();
    set.kill(p).await;
    let r = c.recv_timeout(WAIT).await;
    assert!(matches!(r, Ok(None) | Err(_)), "connection reset: {r:?}");
    let np = set.wait_for_primary(WAIT).await.unwrap();
    assert_ne!(np, p);
    assert!(lost_at.elapsed() >= Duration::from_millis(250));
    // Other members' connections were untouched.
    assert_ok(&run(&mut other, "admin", doc! { "ping": 1 }).await);
    let mut n = connect(&set, np).await;
    run(
        &mut n,
        "test",
        doc! { "insert": "k", "documents": [{ "_id": 2 }] },
    )
    .await;
    set.revive(p).await;
    let mut back = connect(&set, p).await;
    let h = run(&mut back, "admin", doc! { "hello": 1 }).await;
    assert!(h.get_bool("secondary").unwrap());
    let pid_after = h
        .get_document("topologyVersion")
        .unwrap()
        .get_object_id("processId")
        .unwrap();
    assert_ne!(pid_before, pid_after, "a new process has a new processId");
    eventually("the revived member catches up", || {
        let set = set.clone();
        async move { set.total_documents(p) == 2 }
    })
    .await;
}

#[tokio::test]
async fn sim_fault_command_over_the_wire() {
    let set = start(300, 0).await;
    let mut c = connect(&set, 1).await;
    let r = run(
        &mut c,
        "admin",
        doc! { "simFault": "latency", "member": 2, "ms": 50 },
    )
    .await;
    assert_ok(&r);
    assert_eq!(set.state().members[2].latency, Duration::from_millis(50));
    run(&mut c, "admin", doc! { "simFault": "kill", "member": 0 }).await;
    assert_eq!(set.state().members[0].state, MemberState::Down);
    set.wait_for_primary(WAIT).await.unwrap();
    run(&mut c, "admin", doc! { "simFault": "revive", "member": 0 }).await;
    assert!(set.state().members[0].alive);
    let np = set.wait_for_primary(WAIT).await.unwrap();
    let r = run(&mut c, "admin", doc! { "simFault": "stepDown", "secs": 5 }).await;
    assert_ok(&r);
    assert_ne!(set.state().primary, Some(np));
    let e = run(&mut c, "admin", doc! { "simFault": "nonsense" }).await;
    assert_eq!(code(&e), 2);
    run(
        &mut c,
        "admin",
        doc! { "simFault": "blackhole", "member": 2 },
    )
    .await;
    assert!(set.state().members[2].blackholed);
    run(
        &mut c,
        "admin",
        doc! { "simFault": "unblackhole", "member": 2 },
    )
    .await;
    assert!(!set.state().members[2].blackholed);
}

#[tokio::test]
async fn freeze_step_up_and_get_status() {
    let set = start(300, 0).await;
    let mut s1 = connect(&set, 1).await;
    let mut s2 = connect(&set, 2).await;
    let st = run(&mut s1, "admin", doc! { "replSetGetStatus": 1 }).await;
    assert_eq!(st.get_str("set").unwrap(), "rs0");
    assert_eq!(st.get_i32("myState").unwrap(), 2);
    let members = st.get_array("members").unwrap();
    assert_eq!(members.len(), 3);
    let m0 = members[0].as_document().unwrap();
    assert_eq!(m0.get_str("stateStr").unwrap(), "PRIMARY");
    assert!(m0.contains_key("electionDate"));
    assert!(members[1].as_document().unwrap().get_bool("self").unwrap());

    // Freeze member 1, step up member 2.
    assert_ok(&run(&mut s1, "admin", doc! { "replSetFreeze": 30 }).await);
    assert_ok(&run(&mut s2, "admin", doc! { "replSetStepUp": 1 }).await);
    assert_eq!(set.primary(), Some(2));
    let h = run(&mut s2, "admin", doc! { "hello": 1 }).await;
    assert!(h.get_bool("isWritablePrimary").unwrap());
    let e = run(&mut s2, "admin", doc! { "replSetFreeze": 10 }).await;
    assert_eq!(code(&e), 95);
    // Member 2 steps down and member 1 is frozen: only member 0 may win.
    let mut p = connect(&set, 2).await;
    assert_ok(
        &run(
            &mut p,
            "admin",
            doc! { "replSetStepDown": 60, "force": true },
        )
        .await,
    );
    assert_eq!(set.wait_for_primary(WAIT).await, Some(0));
    let r = run(&mut s1, "admin", doc! { "replSetFreeze": 0 }).await;
    assert_eq!(r.get_str("info").unwrap(), "unfreezing");
    let st = run(&mut s1, "admin", doc! { "replSetGetStatus": 1 }).await;
    let states: Vec<i32> = st
        .get_array("members")
        .unwrap()
        .iter()
        .map(|m| m.as_document().unwrap().get_i32("state").unwrap())
        .collect();
    assert_eq!(states, vec![1, 2, 2]);
    set.kill(1).await;
    let st = run(&mut s2, "admin", doc! { "replSetGetStatus": 1 }).await;
    let m1 = st.get_array("members").unwrap()[1]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(m1.get_i32("state").unwrap(), 8);
    assert_eq!(m1.get_f64("health").unwrap(), 0.0);
}

#[tokio::test]
async fn several_sets_in_one_process() {
    let a = start(300, 0).await;
    let b = start(300, 0).await;
    assert_ne!(a.addr(0), b.addr(0));
    a.step_down(60, true).await.unwrap();
    assert_eq!(b.primary(), Some(0));
    let mut c = connect(&b, 0).await;
    assert_ok(
        &run(
            &mut c,
            "test",
            doc! { "insert": "x", "documents": [{ "_id": 1 }] },
        )
        .await,
    );
}
