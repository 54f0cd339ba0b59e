//! `holdfast_legacy_translation_errors_total{opcode}` counts the legacy
//! frames holdfast cannot translate into a command, by opcode; requests
//! that translate do not count. Own test binary: the metrics recorder is
//! process-wide, so no other test's frames are counted here.

mod common;

use bson::doc;
use bytes::Bytes;
use common::legacy::{docs, get_more, insert_op, query, Legacy};
use common::Harness;
use holdfast_wire::legacy::{LegacyOp, OpDelete, OpInsert, OpUpdate};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{QueryFlags, ReplyFlags};

/// `name{opcode="…"}` in the recorder's exposition.
fn counter(text: &str, name: &str, opcode: &str) -> u64 {
    let label = format!("opcode=\"{opcode}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

const OPCODES: [&str; 7] = [
    "op_query_command",
    "op_query_find",
    "op_get_more",
    "op_kill_cursors",
    "op_insert",
    "op_update",
    "op_delete",
];

fn errors(text: &str) -> Vec<(&'static str, u64)> {
    OPCODES
        .iter()
        .map(|op| {
            (
                *op,
                counter(text, "holdfast_legacy_translation_errors_total", op),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untranslatable_legacy_frames_are_counted_by_opcode() {
    let prometheus = holdfast_proxy::admin::prometheus().expect("the recorder installs");
    let h = Harness::start().await;
    let mut c = Legacy::connect(&h).await;
    // Frames that translate: counted as requests, not as errors.
    let ds: Vec<_> = (0..5).map(|i| doc! {"_id": i}).collect();
    c.command("app", doc! {"insert": "m", "documents": ds})
        .await;
    let r = c
        .query(query("app.m", doc! {}, 0, 2, QueryFlags::empty()))
        .await;
    assert_eq!(docs(&r).len(), 2);
    let r = c.op(get_more("app.m", r.cursor_id, 2)).await;
    assert_eq!(docs(&r).len(), 2);
    let r = c
        .write_then_gle(
            insert_op("m", &[doc! {"_id": 10}], 0),
            doc! {"getlasterror": 1},
        )
        .await;
    assert_eq!(r.get("err"), Some(&bson::Bson::Null), "{r}");
    let text = prometheus.render();
    assert!(
        errors(&text).iter().all(|(_, n)| *n == 0),
        "{:?}",
        errors(&text)
    );
    assert!(counter(&text, "holdfast_legacy_requests_total", "op_get_more") >= 1);

    // OP_QUERY commands: an empty command, `$db` in the command.
    let r = c.command("app", doc! {}).await;
    assert_eq!(r.get_i32("code").unwrap(), 40585, "{r}");
    let r = c.command("app", doc! {"ping": 1, "$db": "app"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 40621, "{r}");
    // OP_QUERY finds: an unknown modifier, the exhaust flag.
    for (q, flags, code) in [
        (doc! {"$query": {}, "$bogus": 1}, QueryFlags::empty(), 2),
        (doc! {}, QueryFlags::EXHAUST, 18526),
    ] {
        let r = c.query(query("app.m", q, 0, 0, flags)).await;
        assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
        assert_eq!(docs(&r)[0].get_i32("code").unwrap(), code);
    }
    // OP_GET_MORE: a negative numberToReturn, a namespace without a dot.
    for (ns, ret, code) in [("app.m", -1, 34424), ("nodot", 2, 73)] {
        let r = c.op(get_more(ns, 1, ret)).await;
        assert!(r.response_flags.contains(ReplyFlags::QUERY_FAILURE));
        assert_eq!(docs(&r)[0].get_i32("code").unwrap(), code);
    }
    // OP_INSERT, OP_UPDATE, OP_DELETE on a namespace without a dot: no
    // reply, getLastError reports it.
    let sel = document_bytes(&doc! {"_id": 1});
    let bad_writes = [
        LegacyOp::Insert(OpInsert {
            flags: 0,
            full_collection_name: "nodot".into(),
            documents: Bytes::from(document_bytes(&doc! {"_id": 1}).to_vec()),
        }),
        LegacyOp::Update(OpUpdate {
            full_collection_name: "nodot".into(),
            flags: 0,
            selector: sel.clone(),
            update: document_bytes(&doc! {"$set": {"x": 1}}),
        }),
        LegacyOp::Delete(OpDelete {
            full_collection_name: "nodot".into(),
            flags: 0,
            selector: sel,
        }),
    ];
    for op in bad_writes {
        let r = c.write_then_gle(op, doc! {"getlasterror": 1}).await;
        assert_eq!(r.get_i32("code").unwrap(), 73, "{r}");
    }
    let text = prometheus.render();
    assert_eq!(
        errors(&text),
        vec![
            ("op_query_command", 2),
            ("op_query_find", 2),
            ("op_get_more", 2),
            ("op_kill_cursors", 0),
            ("op_insert", 1),
            ("op_update", 1),
            ("op_delete", 1),
        ]
    );
}
