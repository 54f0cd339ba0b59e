//! Reads on secondaries as MongoDB 7.0 serves them: from the member's own
//! (possibly lagging) data, under the shared command table's rules
//! (13435 for opt-in commands without a secondary read preference, 10107
//! for primary-only ones), counted in that member's opcounters, and
//! waiting for `afterClusterTime`.

mod common;

use std::time::Duration;

use bson::{doc, Bson, Document, Timestamp};
use common::*;
use holdfast_sim::client::RawClient;
use holdfast_wire::QueryFlags;

const LAGGING: usize = 2;
const FRESH: usize = 1;

fn secondary() -> Document {
    doc! { "mode": "secondary" }
}

/// `cmd` with `$readPreference: secondary`.
fn on_secondary(mut cmd: Document) -> Document {
    cmd.insert("$readPreference", secondary());
    cmd
}

fn ids(d: &Document) -> Vec<Bson> {
    first_batch(d)
        .iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect()
}

fn names(d: &Document) -> Vec<String> {
    first_batch(d)
        .iter()
        .filter_map(|d| d.get_str("name").ok().map(str::to_string))
        .collect()
}

fn n_of(d: &Document) -> i64 {
    d.get("n")
        .and_then(|n| n.as_i32().map(i64::from).or(n.as_i64()))
        .unwrap_or(-1)
}

async fn opcounters(set: &holdfast_sim::ReplicaSet, member: usize) -> Document {
    let mut c = connect(set, member).await;
    let s = run(&mut c, "admin", doc! { "serverStatus": 1 }).await;
    assert_ok(&s);
    s.get_document("opcounters").unwrap().clone()
}

fn count(d: &Document, key: &str) -> i64 {
    d.get_i64(key)
        .unwrap_or_else(|_| panic!("opcounters.{key} in {d}"))
}

async fn applied_op_time(c: &mut RawClient) -> Timestamp {
    let h = c.hello().await.unwrap();
    let lw = h.get_document("lastWrite").unwrap();
    lw.get_document("opTime")
        .unwrap()
        .get_timestamp("ts")
        .unwrap()
}

#[tokio::test]
async fn secondaries_serve_reads_from_their_own_lagging_data() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    assert_eq!(p, 0);
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "lag", "documents": [{ "_id": 0, "k": "old" }], "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);

    set.set_lag(LAGGING, Duration::from_secs(3));
    assert_eq!(set.state().members[LAGGING].lag, Duration::from_secs(3));
    // w: "majority" completes through the primary and the fresh secondary.
    for cmd in [
        doc! { "insert": "lag", "documents": [{ "_id": 1, "k": "new" }] },
        doc! { "createIndexes": "lag", "indexes": [{ "key": { "k": 1 }, "name": "k_1" }] },
        doc! { "insert": "later", "documents": [{ "_id": "x" }] },
    ] {
        let r = run(&mut c, "test", cmd).await;
        assert_ok(&r);
        assert!(r.get("writeConcernError").is_none(), "{r}");
    }

    let mut fresh = connect(&set, FRESH).await;
    let mut lagging = connect(&set, LAGGING).await;
    let find = on_secondary(doc! { "find": "lag", "filter": {}, "sort": { "_id": 1 } });
    assert_eq!(
        ids(&run(&mut fresh, "test", find.clone()).await),
        [Bson::Int32(0), Bson::Int32(1)]
    );
    assert_eq!(
        ids(&run(&mut lagging, "test", find.clone()).await),
        [Bson::Int32(0)]
    );
    let r = run(&mut lagging, "test", on_secondary(doc! { "count": "lag" })).await;
    assert_eq!(n_of(&r), 1, "{r}");
    let r = run(
        &mut lagging,
        "test",
        on_secondary(doc! { "distinct": "lag", "key": "k" }),
    )
    .await;
    assert_eq!(r.get_array("values").unwrap(), &vec![Bson::from("old")]);
    let r = run(
        &mut lagging,
        "test",
        on_secondary(
            doc! { "aggregate": "lag", "pipeline": [{ "$match": { "k": "new" } }], "cursor": {} },
        ),
    )
    .await;
    assert_ok(&r);
    assert!(first_batch(&r).is_empty(), "{r}");
    let r = run(
        &mut lagging,
        "test",
        on_secondary(doc! { "listIndexes": "lag" }),
    )
    .await;
    assert_eq!(names(&r), ["_id_"]);
    let r = run(
        &mut lagging,
        "test",
        on_secondary(doc! { "listCollections": 1, "nameOnly": true }),
    )
    .await;
    assert_eq!(names(&r), ["lag"]);
    let r = run(
        &mut fresh,
        "test",
        on_secondary(doc! { "listCollections": 1, "nameOnly": true }),
    )
    .await;
    let mut got = names(&r);
    got.sort();
    assert_eq!(got, ["lag", "later"]);

    // Once the lag has passed, the lagging member has it all.
    eventually("the lagging member applies the writes", || {
        let set = set.clone();
        let find = find.clone();
        async move {
            let mut c = connect(&set, LAGGING).await;
            ids(&run(&mut c, "test", find).await).len() == 2
        }
    })
    .await;
    let r = run(
        &mut lagging,
        "test",
        on_secondary(doc! { "listIndexes": "lag" }),
    )
    .await;
    assert_eq!(names(&r), ["_id_", "k_1"]);
}

#[tokio::test]
async fn get_more_continues_a_cursor_on_the_secondary_that_opened_it() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let docs: Vec<Bson> = (0..5).map(|i| Bson::Document(doc! { "_id": i })).collect();
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "cur", "documents": docs, "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);
    let mut s = connect(&set, FRESH).await;
    let r = run(
        &mut s,
        "test",
        on_secondary(doc! { "find": "cur", "filter": {}, "batchSize": 2 }),
    )
    .await;
    assert_eq!(first_batch(&r).len(), 2);
    let id = cursor_id(&r);
    assert!(matches!(id, Bson::Int64(n) if n != 0), "{r}");
    // getMore needs no read preference (it runs anywhere), but only the
    // member holding the cursor has it.
    let more = doc! { "getMore": id.clone(), "collection": "cur" };
    let r = run(&mut s, "test", more.clone()).await;
    assert_ok(&r);
    assert_eq!(batch(&r, "nextBatch").len(), 3);
    let r = run(&mut c, "test", more).await;
    assert_eq!(code(&r), 43, "{r}");
}

#[tokio::test]
async fn what_a_secondary_refuses_and_what_it_runs() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "rules", "documents": [{ "_id": 1 }], "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);
    let mut s = connect(&set, FRESH).await;

    // Opt-in: 13435 without a read preference, or with mode primary.
    let opt_in = [
        ("test", doc! { "find": "rules", "filter": {} }),
        (
            "test",
            doc! { "aggregate": "rules", "pipeline": [], "cursor": {} },
        ),
        ("test", doc! { "count": "rules" }),
        ("test", doc! { "distinct": "rules", "key": "_id" }),
        ("test", doc! { "listCollections": 1 }),
        ("test", doc! { "listIndexes": "rules" }),
        ("test", doc! { "dbStats": 1 }),
        ("admin", doc! { "listDatabases": 1 }),
    ];
    for (db, cmd) in &opt_in {
        let e = run(&mut s, db, cmd.clone()).await;
        assert_eq!(code(&e), 13435, "{cmd}: {e}");
        assert_eq!(errmsg(&e), "not primary and secondaryOk=false");
        assert!(e.contains_key("topologyVersion"), "{e}");
        let mut primary = cmd.clone();
        primary.insert("$readPreference", doc! { "mode": "primary" });
        assert_eq!(code(&run(&mut s, db, primary).await), 13435, "{cmd}");
        for mode in [
            "primaryPreferred",
            "secondary",
            "secondaryPreferred",
            "nearest",
        ] {
            let mut ok = cmd.clone();
            ok.insert("$readPreference", doc! { "mode": mode });
            let r = run(&mut s, db, ok).await;
            assert_ok(&r);
        }
    }

    // Never: 10107 whatever the read preference.
    let never = [
        doc! { "insert": "rules", "documents": [{ "_id": 2 }] },
        doc! { "update": "rules", "updates": [{ "q": {}, "u": { "$set": { "x": 1 } } }] },
        doc! { "delete": "rules", "deletes": [{ "q": {}, "limit": 0 }] },
        doc! { "findAndModify": "rules", "query": {}, "remove": true },
        doc! { "create": "other" },
        doc! { "drop": "rules" },
        doc! { "createIndexes": "rules", "indexes": [{ "key": { "x": 1 }, "name": "x_1" }] },
    ];
    for cmd in &never {
        for with_rp in [false, true] {
            let cmd = if with_rp {
                on_secondary(cmd.clone())
            } else {
                cmd.clone()
            };
            let e = run(&mut s, "test", cmd.clone()).await;
            assert_eq!(code(&e), 10107, "{cmd}: {e}");
            assert_eq!(errmsg(&e), "not primary");
        }
    }
    // An aggregate that writes needs the primary.
    for stage in [
        doc! { "$out": "copy" },
        doc! { "$merge": { "into": "copy" } },
    ] {
        let agg = doc! { "aggregate": "rules", "pipeline": [stage], "cursor": {} };
        assert_eq!(code(&run(&mut s, "test", agg.clone()).await), 13435);
        let e = run(&mut s, "test", on_secondary(agg)).await;
        assert_eq!(code(&e), 10107, "{e}");
    }
    // Nothing was written anywhere.
    assert_eq!(set.total_documents(0), 1);
    assert_eq!(set.total_documents(FRESH), 1);

    // Always: no read preference needed.
    for (db, cmd) in [
        ("admin", doc! { "ping": 1 }),
        ("admin", doc! { "buildInfo": 1 }),
        ("admin", doc! { "serverStatus": 1 }),
        ("admin", doc! { "listCommands": 1 }),
        ("admin", doc! { "connectionStatus": 1 }),
        ("admin", doc! { "hello": 1 }),
        ("admin", doc! { "replSetGetStatus": 1 }),
        (
            "admin",
            doc! { "getParameter": 1, "cursorTimeoutMillis": 1 },
        ),
    ] {
        let r = run(&mut s, db, cmd.clone()).await;
        assert_ok(&r);
    }
    // The primary runs everything whatever the read preference says.
    let r = run(
        &mut c,
        "test",
        on_secondary(doc! { "find": "rules", "filter": {} }),
    )
    .await;
    assert_eq!(ids(&r), [Bson::Int32(1)]);
}

#[tokio::test]
async fn malformed_read_preferences_are_refused_as_mongod_parses_them() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    let mut s = connect(&set, FRESH).await;
    let cases = [
        (Bson::from("secondary"), 14),
        (Bson::Document(doc! {}), 40414),
        (Bson::Document(doc! { "mode": 1 }), 14),
        (Bson::Document(doc! { "mode": "bogus" }), 2),
        (
            Bson::Document(doc! { "mode": "primary", "tags": [{ "dc": "east" }] }),
            2,
        ),
        (
            Bson::Document(doc! { "mode": "primary", "maxStalenessSeconds": 120 }),
            2,
        ),
        (
            Bson::Document(doc! { "mode": "secondary", "maxStalenessSeconds": -1 }),
            2,
        ),
    ];
    for (rp, want) in cases {
        for client in [&mut c, &mut s] {
            let e = run(
                client,
                "test",
                doc! { "find": "x", "filter": {}, "$readPreference": rp.clone() },
            )
            .await;
            assert_eq!(code(&e), want, "{rp}: {e}");
        }
    }
    // The primary's empty tag sets are fine.
    for tags in [bson::bson!([]), bson::bson!([{}])] {
        let r = run(
            &mut c,
            "test",
            doc! { "find": "x", "filter": {}, "$readPreference": { "mode": "primary", "tags": tags } },
        )
        .await;
        assert_ok(&r);
    }
    // Tags and maxStalenessSeconds pass through to a secondary (member
    // selection is the client's business).
    let r = run(
        &mut s,
        "test",
        doc! { "find": "x", "filter": {}, "$readPreference": { "mode": "nearest", "tags": [{ "dc": "any" }], "maxStalenessSeconds": 90 } },
    )
    .await;
    assert_ok(&r);
}

#[tokio::test]
async fn opcounters_count_what_each_member_served() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    let before_p = opcounters(&set, p).await;
    let before_s = opcounters(&set, FRESH).await;
    let before_l = opcounters(&set, LAGGING).await;

    let docs: Vec<Bson> = (0..5).map(|i| Bson::Document(doc! { "_id": i })).collect();
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "ops", "documents": docs, "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);
    // An ordered insert stops at the duplicate: 1 inserted.
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "ops", "documents": [{ "_id": 10 }, { "_id": 0 }, { "_id": 11 }] },
    )
    .await;
    assert_eq!(n_of(&r), 1, "{r}");
    let r = run(
        &mut c,
        "test",
        doc! { "update": "ops", "updates": [
            { "q": { "_id": 1 }, "u": { "$set": { "a": 1 } } },
            { "q": { "_id": 2 }, "u": { "$set": { "a": 1 } } },
        ], "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);
    let r = run(
        &mut c,
        "test",
        doc! { "delete": "ops", "deletes": [{ "q": { "_id": 4 }, "limit": 1 }], "writeConcern": { "w": 3 } },
    )
    .await;
    assert_ok(&r);

    let mut s = connect(&set, FRESH).await;
    for _ in 0..3 {
        let r = run(
            &mut s,
            "test",
            on_secondary(doc! { "find": "ops", "filter": {}, "batchSize": 1 }),
        )
        .await;
        assert_eq!(first_batch(&r).len(), 1);
        let r = run(
            &mut s,
            "test",
            doc! { "getMore": cursor_id(&r), "collection": "ops", "batchSize": 1 },
        )
        .await;
        assert_ok(&r);
    }
    for cmd in [
        doc! { "count": "ops" },
        doc! { "distinct": "ops", "key": "_id" },
        doc! { "aggregate": "ops", "pipeline": [], "cursor": {} },
    ] {
        assert_ok(&run(&mut s, "test", on_secondary(cmd)).await);
    }
    // Refused reads count nothing.
    for _ in 0..4 {
        let e = run(&mut s, "test", doc! { "find": "ops", "filter": {} }).await;
        assert_eq!(code(&e), 13435);
    }

    let after_p = opcounters(&set, p).await;
    let after_s = opcounters(&set, FRESH).await;
    let after_l = opcounters(&set, LAGGING).await;
    let delta = |a: &Document, b: &Document, k: &str| count(a, k) - count(b, k);
    // The primary: 6 documents inserted, 2 update and 1 delete statements,
    // no reads; its commands are this test's serverStatus.
    assert_eq!(delta(&after_p, &before_p, "insert"), 6);
    assert_eq!(delta(&after_p, &before_p, "update"), 2);
    assert_eq!(delta(&after_p, &before_p, "delete"), 1);
    assert_eq!(delta(&after_p, &before_p, "query"), 0);
    assert_eq!(delta(&after_p, &before_p, "getmore"), 0);
    assert_eq!(delta(&after_p, &before_p, "command"), 1);
    // The secondary that served the reads: finds as query, getMores as
    // getmore, count/distinct/aggregate (and serverStatus) as command.
    // Replicated writes are not client operations.
    assert_eq!(delta(&after_s, &before_s, "query"), 3);
    assert_eq!(delta(&after_s, &before_s, "getmore"), 3);
    assert_eq!(delta(&after_s, &before_s, "command"), 4);
    for k in ["insert", "update", "delete"] {
        assert_eq!(delta(&after_s, &before_s, k), 0, "{k}");
    }
    // The other secondary served nothing but serverStatus.
    for k in ["query", "getmore", "insert", "update", "delete"] {
        assert_eq!(delta(&after_l, &before_l, k), 0, "{k}");
    }
    assert_eq!(delta(&after_l, &before_l, "command"), 1);
}

#[tokio::test]
async fn after_cluster_time_waits_for_the_member_to_catch_up() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    set.set_lag(LAGGING, Duration::from_millis(1500));
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "act", "documents": [{ "_id": 1 }], "writeConcern": { "w": 1 } },
    )
    .await;
    assert_ok(&r);
    let op_time = r.get_timestamp("operationTime").unwrap();
    let mut s = connect(&set, LAGGING).await;
    assert!(op_time > applied_op_time(&mut s).await);

    // Not applied yet: a plain read does not see it...
    let plain = on_secondary(doc! { "find": "act", "filter": {} });
    assert!(ids(&run(&mut s, "test", plain).await).is_empty());
    // ...maxTimeMS too short for the lag: 50 MaxTimeMSExpired.
    let e = run(
        &mut s,
        "test",
        on_secondary(doc! {
            "find": "act", "filter": {},
            "readConcern": { "afterClusterTime": op_time }, "maxTimeMS": 100,
        }),
    )
    .await;
    assert_eq!(code(&e), 50, "{e}");
    assert_eq!(e.get_str("codeName").unwrap(), "MaxTimeMSExpired");
    // ...and without maxTimeMS the read waits until the member has it.
    let r = run(
        &mut s,
        "test",
        on_secondary(
            doc! { "find": "act", "filter": {}, "readConcern": { "afterClusterTime": op_time } },
        ),
    )
    .await;
    assert_eq!(ids(&r), [Bson::Int32(1)]);
    assert!(applied_op_time(&mut s).await >= op_time);

    // A generous maxTimeMS waits as well; the primary never waits.
    set.set_lag(LAGGING, Duration::from_millis(500));
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "act", "documents": [{ "_id": 2 }], "writeConcern": { "w": 1 } },
    )
    .await;
    let op_time = r.get_timestamp("operationTime").unwrap();
    let with_max = on_secondary(doc! {
        "find": "act", "filter": {}, "sort": { "_id": 1 },
        "readConcern": { "afterClusterTime": op_time }, "maxTimeMS": 5000,
    });
    let r = run(&mut s, "test", with_max.clone()).await;
    assert_eq!(ids(&r), [Bson::Int32(1), Bson::Int32(2)]);
    let r = run(&mut c, "test", with_max).await;
    assert_eq!(ids(&r), [Bson::Int32(1), Bson::Int32(2)]);
}

#[tokio::test]
async fn the_lag_fault_over_the_wire_and_its_removal() {
    let set = start(300, 0).await;
    let (_, mut c) = primary_client(&set).await;
    // Asked of any member, about another one.
    let mut s = connect(&set, FRESH).await;
    let r = run(
        &mut s,
        "admin",
        doc! { "simFault": "lag", "member": LAGGING as i32, "ms": 60_000 },
    )
    .await;
    assert_ok(&r);
    assert_eq!(r.get_i32("member").unwrap(), LAGGING as i32);
    assert_eq!(set.state().members[LAGGING].lag, Duration::from_secs(60));
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "f", "documents": [{ "_id": 1 }] },
    )
    .await;
    assert_ok(&r);
    assert!(r.get("writeConcernError").is_none(), "{r}");
    let primary_op = applied_op_time(&mut c).await;
    let mut lagging = connect(&set, LAGGING).await;
    assert!(applied_op_time(&mut lagging).await < primary_op);
    assert_eq!(set.total_documents(LAGGING), 0);
    // `w: 3` cannot complete while the member lags.
    let r = run(
        &mut c,
        "test",
        doc! { "insert": "f", "documents": [{ "_id": 2 }], "writeConcern": { "w": 3, "wtimeout": 300 } },
    )
    .await;
    assert_eq!(wc_code(&r), Some(64), "{r}");

    // ms: 0 removes it: the member catches up at once, not in a minute.
    let r = run(
        &mut s,
        "admin",
        doc! { "simFault": "lag", "member": LAGGING as i32, "ms": 0 },
    )
    .await;
    assert_ok(&r);
    assert_eq!(set.state().members[LAGGING].lag, Duration::ZERO);
    eventually("the member catches up", || {
        let set = set.clone();
        async move { set.total_documents(LAGGING) == 2 }
    })
    .await;
    let primary_op = applied_op_time(&mut c).await;
    assert_eq!(applied_op_time(&mut lagging).await, primary_op);

    let e = run(&mut s, "admin", doc! { "simFault": "nope" }).await;
    assert!(errmsg(&e).contains("lag"), "{e}");
}

#[tokio::test]
async fn op_query_commands_follow_upconversion_rules() {
    let set = start(300, 0).await;
    let mut s = connect(&set, FRESH).await;
    // $db comes from the namespace only.
    let e = s
        .query_command("admin", doc! { "isMaster": 1, "$db": "admin" })
        .await
        .unwrap();
    assert_eq!(code(&e), 40621, "{e}");
    assert_eq!(errmsg(&e), "$db is not allowed in OP_QUERY requests");
    let e = s
        .query_command(
            "admin",
            doc! { "$query": { "isMaster": 1, "$db": "admin" } },
        )
        .await
        .unwrap();
    assert_eq!(code(&e), 40621, "{e}");
    // $maxTimeMS beside a wrapped command.
    let e = s
        .query_command(
            "admin",
            doc! { "$query": { "isMaster": 1 }, "$maxTimeMS": 10 },
        )
        .await
        .unwrap();
    assert_eq!(code(&e), 72, "{e}");
    // The wrapper's $readPreference is the command's (and parsed as such).
    let e = s
        .query_command(
            "admin",
            doc! { "$query": { "isMaster": 1 }, "$readPreference": { "mode": "bogus" } },
        )
        .await
        .unwrap();
    assert_eq!(code(&e), 2, "{e}");
    // A plain isMaster, with SecondaryOk or not, reports this member.
    for flags in [QueryFlags::empty(), QueryFlags::SECONDARY_OK] {
        let h = s
            .query("admin.$cmd", doc! { "isMaster": 1 }, flags, -1)
            .await
            .unwrap();
        assert_ok(&h);
        assert_eq!(h.get_bool("ismaster"), Ok(false));
        assert_eq!(h.get_bool("secondary"), Ok(true));
        assert!(h.get_document("lastWrite").is_ok(), "{h}");
    }
}

/// `serverStatus.metrics.commands.<name>` of `member`: (total, failed).
async fn command_counts(set: &holdfast_sim::ReplicaSet, member: usize, name: &str) -> (i64, i64) {
    let mut c = connect(set, member).await;
    let s = run(&mut c, "admin", doc! { "serverStatus": 1 }).await;
    let m = s
        .get_document("metrics")
        .and_then(|m| m.get_document("commands"))
        .and_then(|c| c.get_document(name))
        .unwrap_or_else(|_| panic!("metrics.commands.{name} in {s}"))
        .clone();
    (m.get_i64("total").unwrap(), m.get_i64("failed").unwrap())
}

fn linearizable(mut cmd: Document) -> Document {
    cmd.insert("readConcern", doc! { "level": "linearizable" });
    cmd
}

#[tokio::test]
async fn linearizable_reads_run_on_the_primary_and_wait_for_a_majority() {
    let set = start(300, 0).await;
    let (p, mut c) = primary_client(&set).await;
    run(
        &mut c,
        "test",
        doc! { "insert": "lin", "documents": [{ "_id": 1 }], "writeConcern": { "w": 3 } },
    )
    .await;
    let before = command_counts(&set, p, "find").await;
    let r = run(
        &mut c,
        "test",
        linearizable(doc! { "find": "lin", "filter": {} }),
    )
    .await;
    assert_ok(&r);
    assert_eq!(ids(&r), vec![Bson::Int32(1)]);
    assert_eq!(
        command_counts(&set, p, "find").await,
        (before.0 + 1, before.1)
    );

    // A secondary refuses it, whatever the read preference, and counts it
    // as a failed find (not as a query).
    let s = (p + 1) % 3;
    let mut sc = connect(&set, s).await;
    let (finds, queries) = (
        command_counts(&set, s, "find").await,
        count(&opcounters(&set, s).await, "query"),
    );
    let e = run(
        &mut sc,
        "test",
        on_secondary(linearizable(doc! { "find": "lin", "filter": {} })),
    )
    .await;
    assert_eq!(code(&e), 10107, "{e}");
    assert_eq!(
        errmsg(&e),
        "cannot satisfy linearizable read concern on non-primary node"
    );
    assert_eq!(
        command_counts(&set, s, "find").await,
        (finds.0 + 1, finds.1 + 1)
    );
    // The sim counts a find as a query when it starts it (mongod: when it
    // runs it), so only `metrics.commands` is exact here.
    assert!(count(&opcounters(&set, s).await, "query") >= queries);

    // Without a majority applying the primary's no-op in time: 170.
    for m in (0..3).filter(|m| *m != p) {
        set.set_lag(m, Duration::from_secs(600));
    }
    let mut slow = linearizable(doc! { "find": "lin", "filter": {} });
    slow.insert("maxTimeMS", 200);
    let e = run(&mut c, "test", slow).await;
    assert_eq!(code(&e), 170, "{e}");
    assert_eq!(
        e.get_str("codeName").unwrap(),
        "LinearizableReadConcernError"
    );
    for m in (0..3).filter(|m| *m != p) {
        set.set_lag(m, Duration::ZERO);
    }
}
