//! Command-level tests through [`Store::execute`], plus the replication property test.

use bson::{doc, Bson, Document};
use proptest::prelude::*;

use super::{Op, Outcome, Store};

fn run(s: &mut Store, cmd: Document) -> Document {
    match s.execute("test", &cmd).unwrap().outcome {
        Outcome::Reply(r) => r,
        Outcome::Cursor { ns, docs } => doc! {"ns": ns, "docs": docs},
    }
}

fn docs(s: &mut Store, cmd: Document) -> Vec<Document> {
    match s.execute("test", &cmd).unwrap().outcome {
        Outcome::Cursor { docs, .. } => docs,
        Outcome::Reply(r) => panic!("expected a cursor, got {r}"),
    }
}

fn err(s: &mut Store, cmd: Document) -> super::CommandError {
    s.execute("test", &cmd).unwrap_err()
}

fn find(s: &mut Store, filter: Document) -> Vec<Document> {
    docs(s, doc! {"find": "c", "filter": filter})
}

fn seeded() -> Store {
    let mut s = Store::new();
    run(
        &mut s,
        doc! {"insert": "c", "documents": [
            {"_id": 1, "a": 1, "tags": ["x", "y"], "sub": {"k": 1}},
            {"_id": 2, "a": 5, "tags": ["y"], "sub": {"k": 2}},
            {"_id": 3, "a": "str", "tags": []},
            {"_id": 4, "a": null},
            {"_id": 5},
        ]},
    );
    s
}

fn ids(ds: &[Document]) -> Vec<Bson> {
    ds.iter().map(|d| d.get("_id").cloned().unwrap()).collect()
}

fn i32s(v: &[i32]) -> Vec<Bson> {
    v.iter().map(|i| Bson::Int32(*i)).collect()
}

#[test]
fn insert_reply_and_ops() {
    let mut s = Store::new();
    let ex = s
        .execute("test", &doc! {"insert": "c", "documents": [{"x": 1}, {"_id": 7, "y": 2}], "$db": "test", "lsid": {"id": 1}})
        .unwrap();
    assert_eq!(ex.outcome, Outcome::Reply(doc! {"n": 1 + 1, "ok": 1.0}));
    assert_eq!(ex.ops.len(), 3);
    assert_eq!(
        ex.ops[0],
        Op::CreateCollection {
            ns: "test.c".into()
        }
    );
    match &ex.ops[1] {
        Op::Insert { ns, doc } => {
            assert_eq!(ns, "test.c");
            assert_eq!(doc.keys().next().unwrap(), "_id");
            assert!(matches!(doc.get("_id"), Some(Bson::ObjectId(_))));
        }
        other => panic!("{other:?}"),
    }
    // A second insert does not re-create the collection.
    let ex = s
        .execute("test", &doc! {"insert": "c", "documents": [{"z": 1}]})
        .unwrap();
    assert_eq!(ex.ops.len(), 1);
    assert_eq!(s.total_documents(), 3);
    // _id is moved first.
    run(
        &mut s,
        doc! {"insert": "d", "documents": [{"a": 1, "_id": 9}]},
    );
    assert_eq!(s.documents("test.d"), vec![doc! {"_id": 9, "a": 1}]);
}

#[test]
fn duplicate_keys_ordered_and_unordered() {
    let mut s = Store::new();
    run(&mut s, doc! {"insert": "c", "documents": [{"_id": 1}]});
    let r = run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 2}, {"_id": 1.0}, {"_id": 3}]},
    );
    assert_eq!(r.get_i32("n").unwrap(), 1);
    let errs = r.get_array("writeErrors").unwrap();
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0],
        Bson::Document(doc! {
            "index": 1,
            "code": 11000,
            "keyPattern": {"_id": 1},
            "keyValue": {"_id": 1.0},
            "errmsg": "E11000 duplicate key error collection: test.c index: _id_ dup key: { _id: 1.0 }",
        })
    );
    assert!(s.find_by_id("test.c", &Bson::Int32(3)).is_none());
    let r = run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 1i64}, {"_id": 3}, {"_id": 2}, {"_id": 4}], "ordered": false},
    );
    assert_eq!(r.get_i32("n").unwrap(), 2);
    let errs = r.get_array("writeErrors").unwrap();
    let idx: Vec<i32> = errs
        .iter()
        .map(|e| e.as_document().unwrap().get_i32("index").unwrap())
        .collect();
    assert_eq!(idx, vec![0, 2]);
    assert_eq!(r.get_f64("ok").unwrap(), 1.0);
    assert_eq!(s.total_documents(), 4);
}

#[test]
fn numeric_id_equivalence() {
    let mut s = Store::new();
    run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 1, "v": "int"}]},
    );
    assert_eq!(find(&mut s, doc! {"_id": 1.0}).len(), 1);
    assert_eq!(find(&mut s, doc! {"_id": 1i64}).len(), 1);
    assert_eq!(find(&mut s, doc! {"_id": {"$in": [3, 1.0]}}).len(), 1);
    assert_eq!(find(&mut s, doc! {"_id": "1"}).len(), 0);
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1i64}, "u": {"$set": {"v": "long"}}}]},
    );
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
    let r = run(
        &mut s,
        doc! {"delete": "c", "deletes": [{"q": {"_id": 1.0}, "limit": 1}]},
    );
    assert_eq!(r.get_i32("n").unwrap(), 1);
    assert_eq!(s.total_documents(), 0);
}

#[test]
fn find_filter_sort_skip_limit_projection() {
    let mut s = seeded();
    assert_eq!(ids(&find(&mut s, doc! {"a": {"$gte": 1}})), i32s(&[1, 2]));
    assert_eq!(ids(&find(&mut s, doc! {"a": null})), i32s(&[4, 5]));
    assert_eq!(ids(&find(&mut s, doc! {"tags": "y"})), i32s(&[1, 2]));
    assert_eq!(ids(&find(&mut s, doc! {"sub.k": 2})), i32s(&[2]));
    assert_eq!(ids(&find(&mut s, doc! {"tags": {"$size": 0}})), i32s(&[3]));
    let r = docs(
        &mut s,
        doc! {"find": "c", "sort": {"a": -1, "_id": 1}, "skip": 1, "limit": 2, "projection": {"a": 1}},
    );
    assert_eq!(r, vec![doc! {"_id": 2, "a": 5}, doc! {"_id": 1, "a": 1}]);
    let r = docs(
        &mut s,
        doc! {"find": "c", "filter": {"_id": 1}, "projection": {"tags": 0, "sub": 0}},
    );
    assert_eq!(r, vec![doc! {"_id": 1, "a": 1}]);
    let r = run(&mut s, doc! {"find": "missing"});
    assert_eq!(r, doc! {"ns": "test.missing", "docs": []});
    let e = err(&mut s, doc! {"find": "c", "filter": {"a": {"$bogus": 1}}});
    assert_eq!((e.code, e.code_name), (2, "BadValue"));
    let e = err(&mut s, doc! {"find": "c", "projection": {"a": 1, "b": 0}});
    assert_eq!(e.code, 31254);
    let e = err(&mut s, doc! {"find": "c", "sort": {"a": 3}});
    assert_eq!(e.code, 15975);
}

#[test]
fn unknown_command() {
    let mut s = Store::new();
    let e = err(&mut s, doc! {"frobnicate": 1});
    assert_eq!(e.code, 59);
    assert_eq!(e.code_name, "CommandNotFound");
    assert_eq!(e.errmsg, "no such command: 'frobnicate'");
    assert_eq!(
        e.to_string(),
        "CommandNotFound (59): no such command: 'frobnicate'"
    );
}

#[test]
fn update_counts_and_upsert() {
    let mut s = seeded();
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [
            {"q": {"a": {"$type": "number"}}, "u": {"$inc": {"n": 1}}, "multi": true},
            {"q": {"_id": 1}, "u": {"$set": {"a": 1}}},
            {"q": {"_id": 99}, "u": {"$set": {"z": 1}}, "upsert": true},
            {"q": {"_id": 100}, "u": {"$set": {"z": 1}}},
        ]},
    );
    assert_eq!(
        r,
        doc! {"n": 4, "upserted": [{"index": 2, "_id": 99}], "nModified": 2, "ok": 1.0}
    );
    assert_eq!(
        s.find_by_id("test.c", &Bson::Int32(99)).unwrap(),
        &doc! {"_id": 99, "z": 1}
    );
    // upsert with generated _id and equality fields from the query
    let ex = s
        .execute("test", &doc! {"update": "fresh", "updates": [{"q": {"k": "v", "n": {"$gt": 1}}, "u": {"$set": {"x": 1}}, "upsert": true}]})
        .unwrap();
    assert!(matches!(ex.ops[0], Op::CreateCollection { .. }));
    let d = &s.documents("test.fresh")[0];
    assert!(matches!(d.get("_id"), Some(Bson::ObjectId(_))));
    assert_eq!(d.get("k"), Some(&Bson::String("v".into())));
    assert_eq!(d.get("x"), Some(&Bson::Int32(1)));
    assert!(!d.contains_key("n"));
    // replacement upsert takes _id from the query
    run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": "r"}, "u": {"only": true}, "upsert": true}]},
    );
    assert_eq!(
        s.find_by_id("test.c", &Bson::String("r".into())).unwrap(),
        &doc! {"_id": "r", "only": true}
    );
}

#[test]
fn update_errors_are_write_errors() {
    let mut s = seeded();
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [
            {"q": {"_id": 1}, "u": {"$set": {"_id": 10}}},
            {"q": {"_id": 2}, "u": {"$set": {"b": 1}}},
        ], "ordered": false},
    );
    let errs = r.get_array("writeErrors").unwrap();
    assert_eq!(errs.len(), 1);
    let e = errs[0].as_document().unwrap();
    assert_eq!(e.get_i32("code").unwrap(), 66);
    assert_eq!(e.get_i32("index").unwrap(), 0);
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 3}, "u": {"$inc": {"a": 1}}}]},
    );
    let e = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(e.get_i32("code").unwrap(), 14);
    assert_eq!(
        e.get_str("errmsg").unwrap(),
        "Cannot apply $inc to a value of non-numeric type. {_id: 3} has the field 'a' of non-numeric type string"
    );
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {}, "u": {"$set": {"a": 1}, "$unset": {"a": 1}}}]},
    );
    assert_eq!(
        r.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .get_i32("code")
            .unwrap(),
        40
    );
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {}, "u": {"x": 1}, "multi": true}]},
    );
    assert_eq!(
        r.get_array("writeErrors").unwrap()[0]
            .as_document()
            .unwrap()
            .get_i32("code")
            .unwrap(),
        9
    );
}

#[test]
fn n_modified_counts_real_changes_only() {
    let mut s = seeded();
    let ex = s
        .execute(
            "test",
            &doc! {"update": "c", "updates": [{"q": {}, "u": {"$set": {"a": 5}}, "multi": true}]},
        )
        .unwrap();
    let Outcome::Reply(r) = ex.outcome else {
        panic!()
    };
    assert_eq!(r.get_i32("n").unwrap(), 5);
    assert_eq!(r.get_i32("nModified").unwrap(), 4);
    assert_eq!(ex.ops.len(), 4);
    // Int32 5 -> Double 5.0 is a change (binary comparison).
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 2}, "u": {"$set": {"a": 5.0}}}]},
    );
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
}

#[test]
fn delete_limits() {
    let mut s = seeded();
    let r = run(
        &mut s,
        doc! {"delete": "c", "deletes": [{"q": {"a": {"$exists": true}}, "limit": 1}]},
    );
    assert_eq!(r.get_i32("n").unwrap(), 1);
    assert!(s.find_by_id("test.c", &Bson::Int32(1)).is_none());
    let r = run(
        &mut s,
        doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0}]},
    );
    assert_eq!(r.get_i32("n").unwrap(), 4);
    let r = run(
        &mut s,
        doc! {"delete": "c", "deletes": [{"q": {}, "limit": 2}]},
    );
    let e = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(e.get_i32("code").unwrap(), 9);
    assert_eq!(
        e.get_str("errmsg").unwrap(),
        "The limit field in delete objects must be 0 or 1. Got 2"
    );
    let r = run(
        &mut s,
        doc! {"delete": "nothing", "deletes": [{"q": {}, "limit": 0}]},
    );
    assert_eq!(r, doc! {"n": 0, "ok": 1.0});
}

#[test]
fn find_and_modify_variants() {
    let mut s = seeded();
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"a": {"$type": "number"}}, "sort": {"a": -1}, "update": {"$inc": {"a": 1}}},
    );
    assert_eq!(
        r.get_document("lastErrorObject").unwrap(),
        &doc! {"n": 1, "updatedExisting": true}
    );
    assert_eq!(r.get_document("value").unwrap().get_i32("a").unwrap(), 5);
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 2}, "update": {"$inc": {"a": 1}}, "new": true, "fields": {"a": 1, "_id": 0}},
    );
    assert_eq!(r.get_document("value").unwrap(), &doc! {"a": 7});
    let r = run(
        &mut s,
        doc! {"findandmodify": "c", "query": {"_id": 1}, "remove": true},
    );
    assert_eq!(r.get_document("lastErrorObject").unwrap(), &doc! {"n": 1});
    assert_eq!(r.get_document("value").unwrap().get_i32("_id").unwrap(), 1);
    assert!(s.find_by_id("test.c", &Bson::Int32(1)).is_none());
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 1}, "remove": true},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 0}, "value": null, "ok": 1.0}
    );
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 50}, "update": {"$set": {"u": 1}}, "upsert": true, "new": true},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 1, "updatedExisting": false, "upserted": 50}, "value": {"_id": 50, "u": 1}, "ok": 1.0}
    );
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 51}, "update": {"$set": {"u": 1}}, "upsert": true},
    );
    assert_eq!(r.get("value"), Some(&Bson::Null));
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 52}, "update": {"$set": {"u": 1}}},
    );
    assert_eq!(
        r,
        doc! {"lastErrorObject": {"n": 0, "updatedExisting": false}, "value": null, "ok": 1.0}
    );
    let r = run(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 2}, "update": {"replaced": 1}, "new": true},
    );
    assert_eq!(
        r.get_document("value").unwrap(),
        &doc! {"_id": 2, "replaced": 1}
    );
    assert_eq!(
        err(
            &mut s,
            doc! {"findAndModify": "c", "remove": true, "update": {"a": 1}}
        )
        .code,
        9
    );
    assert_eq!(err(&mut s, doc! {"findAndModify": "c"}).code, 9);
    assert_eq!(
        err(
            &mut s,
            doc! {"findAndModify": "c", "query": {"_id": 2}, "update": {"$set": {"_id": 3}}}
        )
        .code,
        66
    );
    run(&mut s, doc! {"insert": "c", "documents": [{"_id": 60}]});
    let e = err(
        &mut s,
        doc! {"findAndModify": "c", "query": {"_id": 61}, "update": {"$set": {"_id": 60}}, "upsert": true},
    );
    assert_eq!(e.code, 66);
    let e = err(
        &mut s,
        doc! {"findAndModify": "c", "query": {"q": 61}, "update": {"$set": {"_id": 60}}, "upsert": true},
    );
    assert_eq!(e.code, 11000);
    assert_eq!(
        e.errmsg,
        "E11000 duplicate key error collection: test.c index: _id_ dup key: { _id: 60 }"
    );
}

#[test]
fn count_and_distinct() {
    let mut s = seeded();
    assert_eq!(run(&mut s, doc! {"count": "c"}), doc! {"n": 5, "ok": 1.0});
    assert_eq!(
        run(
            &mut s,
            doc! {"count": "c", "query": {"a": {"$exists": true}}, "skip": 1, "limit": 2}
        ),
        doc! {"n": 2, "ok": 1.0}
    );
    assert_eq!(
        run(&mut s, doc! {"count": "none"}),
        doc! {"n": 0, "ok": 1.0}
    );
    run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 6, "a": 1.0}, {"_id": 7, "a": [5, 9]}]},
    );
    assert_eq!(
        run(&mut s, doc! {"distinct": "c", "key": "a"}),
        doc! {"values": [null, 1, 5, 9, "str"], "ok": 1.0}
    );
    assert_eq!(
        run(
            &mut s,
            doc! {"distinct": "c", "key": "tags", "query": {"_id": {"$lt": 3}}}
        ),
        doc! {"values": ["x", "y"], "ok": 1.0}
    );
}

#[test]
fn aggregate_command() {
    let mut s = seeded();
    let r = docs(
        &mut s,
        doc! {"aggregate": "c", "pipeline": [
            {"$unwind": "$tags"},
            {"$group": {"_id": "$tags", "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
            {"$sort": {"_id": 1}},
        ], "cursor": {}},
    );
    assert_eq!(
        r,
        vec![
            doc! {"_id": "x", "n": 1, "ids": [1]},
            doc! {"_id": "y", "n": 2, "ids": [1, 2]}
        ]
    );
    let r = run(
        &mut s,
        doc! {"aggregate": "c", "pipeline": [{"$count": "n"}], "cursor": {}},
    );
    assert_eq!(r, doc! {"ns": "test.c", "docs": [{"n": 5}]});
    let e = err(
        &mut s,
        doc! {"aggregate": "c", "pipeline": [{"$x": 1}], "cursor": {}},
    );
    assert_eq!(
        (e.code, e.errmsg.as_str()),
        (40324, "Unrecognized pipeline stage name: '$x'")
    );
    run(
        &mut s,
        doc! {"insert": "o", "documents": [{"_id": 1, "cid": 2}, {"_id": 2, "cid": 2}, {"_id": 3, "cid": 1}]},
    );
    let r = docs(
        &mut s,
        doc! {"aggregate": "c", "pipeline": [
            {"$match": {"_id": {"$in": [1, 2]}}},
            {"$lookup": {"from": "o", "localField": "_id", "foreignField": "cid", "as": "orders"}},
            {"$project": {"n": {"$size": "$orders"}}},
        ], "cursor": {}},
    );
    assert_eq!(r, vec![doc! {"_id": 1, "n": 1}, doc! {"_id": 2, "n": 2}]);
    let r = docs(
        &mut s,
        doc! {"aggregate": 1, "pipeline": [{"$documents": [{"x": 1}, {"x": 2}]}, {"$match": {"x": 2}}], "cursor": {}},
    );
    assert_eq!(r, vec![doc! {"x": 2}]);
}

#[test]
fn ddl_commands() {
    let mut s = Store::new();
    let ex = s.execute("test", &doc! {"create": "c"}).unwrap();
    assert_eq!(ex.outcome, Outcome::Reply(doc! {"ok": 1.0}));
    assert_eq!(
        ex.ops,
        vec![Op::CreateCollection {
            ns: "test.c".into()
        }]
    );
    // 7.0: identical re-create succeeds; different options conflict.
    assert!(s
        .execute("test", &doc! {"create": "c"})
        .unwrap()
        .ops
        .is_empty());
    assert_eq!(
        err(&mut s, doc! {"create": "c", "capped": true, "size": 100}).code,
        48
    );
    assert_eq!(
        err(&mut s, doc! {"create": "v", "viewOn": "c", "pipeline": []}).code,
        115
    );
    let lc = docs(&mut s, doc! {"listCollections": 1});
    assert_eq!(lc.len(), 1);
    assert_eq!(lc[0].get_str("name").unwrap(), "c");
    assert_eq!(lc[0].get_str("type").unwrap(), "collection");
    assert_eq!(
        lc[0].get_document("idIndex").unwrap(),
        &doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
    );
    assert!(matches!(
        lc[0].get_document("info").unwrap().get("uuid"),
        Some(Bson::Binary(_))
    ));
    run(&mut s, doc! {"create": "d"});
    assert_eq!(
        docs(
            &mut s,
            doc! {"listCollections": 1, "filter": {"name": "d"}, "nameOnly": true}
        ),
        vec![doc! {"name": "d", "type": "collection"}]
    );
    let r = run(&mut s, doc! {"listDatabases": 1});
    let dbs = r.get_array("databases").unwrap();
    assert_eq!(dbs.len(), 1);
    let d0 = dbs[0].as_document().unwrap();
    assert_eq!(d0.get_str("name").unwrap(), "test");
    assert!(!d0.get_bool("empty").unwrap());
    assert!(d0.get_i64("sizeOnDisk").unwrap() > 0);
    assert!(r.get_i64("totalSize").is_ok());
    assert_eq!(
        run(&mut s, doc! {"listDatabases": 1, "nameOnly": true}),
        doc! {"databases": [{"name": "test"}], "ok": 1.0}
    );
    let ex = s.execute("test", &doc! {"drop": "d"}).unwrap();
    assert_eq!(
        ex.outcome,
        Outcome::Reply(doc! {"nIndexesWas": 1, "ns": "test.d", "ok": 1.0})
    );
    assert_eq!(
        ex.ops,
        vec![Op::DropCollection {
            ns: "test.d".into()
        }]
    );
    let ex = s.execute("test", &doc! {"drop": "d"}).unwrap();
    assert_eq!(ex.outcome, Outcome::Reply(doc! {"ok": 1.0}));
    assert!(ex.ops.is_empty());
    let ex = s.execute("test", &doc! {"dropDatabase": 1}).unwrap();
    assert_eq!(ex.ops, vec![Op::DropDatabase { db: "test".into() }]);
    assert_eq!(ex.ops[0].ns(), "test");
    assert!(s.database_names().is_empty());
}

#[test]
fn index_commands() {
    let mut s = seeded();
    let e = err(&mut s, doc! {"listIndexes": "nope"});
    assert_eq!(
        (e.code, e.errmsg.as_str()),
        (26, "ns does not exist: test.nope")
    );
    // documents missing the field collide on null unless the index is sparse
    let e = err(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"sub.k": 1}, "name": "sub.k_1", "unique": true}]},
    );
    assert_eq!(
        e.errmsg,
        "E11000 duplicate key error collection: test.c index: sub.k_1 dup key: { sub.k: null }"
    );
    let ex = s
        .execute("test", &doc! {"createIndexes": "c", "indexes": [{"key": {"sub.k": 1}, "name": "sub.k_1", "unique": true, "sparse": true}]})
        .unwrap();
    assert_eq!(
        ex.outcome,
        Outcome::Reply(
            doc! {"numIndexesBefore": 1, "numIndexesAfter": 2, "createdCollectionAutomatically": false, "commitQuorum": "votingMembers", "ok": 1.0}
        )
    );
    assert_eq!(ex.ops.len(), 1);
    let li = docs(&mut s, doc! {"listIndexes": "c"});
    assert_eq!(li.len(), 2);
    assert_eq!(li[0], doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"});
    assert_eq!(
        li[1],
        doc! {"v": 2, "key": {"sub.k": 1}, "name": "sub.k_1", "unique": true, "sparse": true}
    );
    let r = run(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"sub.k": 1}, "name": "sub.k_1", "unique": true, "sparse": true}]},
    );
    assert_eq!(r.get_str("note").unwrap(), "all indexes already exist");
    // the unique index is enforced
    let r = run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 10, "sub": {"k": 1}}]},
    );
    let e = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(e.get_i32("code").unwrap(), 11000);
    assert_eq!(e.get_document("keyPattern").unwrap(), &doc! {"sub.k": 1});
    assert_eq!(
        e.get_str("errmsg").unwrap(),
        "E11000 duplicate key error collection: test.c index: sub.k_1 dup key: { sub.k: 1 }"
    );
    // a unique index that cannot be built fails as a command error
    let e = err(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "x", "unique": true}]},
    );
    assert_eq!(e.code, 11000);
    let e = err(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"tags": 1}, "name": "sub.k_1"}]},
    );
    assert_eq!(e.code, 86);
    let e = err(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"sub.k": 1}, "name": "other", "unique": true, "sparse": true}]},
    );
    assert_eq!(e.code, 85);
    run(
        &mut s,
        doc! {"createIndexes": "c", "indexes": [{"key": {"tags": 1}, "name": "tags_1"}]},
    );
    assert_eq!(
        err(&mut s, doc! {"dropIndexes": "c", "index": "_id_"}).code,
        72
    );
    assert_eq!(
        err(&mut s, doc! {"dropIndexes": "c", "index": "zz"}).code,
        27
    );
    assert_eq!(
        run(&mut s, doc! {"dropIndexes": "c", "index": {"tags": 1}}),
        doc! {"nIndexesWas": 3, "ok": 1.0}
    );
    let r = run(&mut s, doc! {"dropIndexes": "c", "index": "*"});
    assert_eq!(r.get_i32("nIndexesWas").unwrap(), 2);
    assert_eq!(docs(&mut s, doc! {"listIndexes": "c"}).len(), 1);
    // implicit creation
    let ex = s
        .execute(
            "test",
            &doc! {"createIndexes": "new", "indexes": [{"key": {"a": -1}, "name": "a_-1"}]},
        )
        .unwrap();
    assert_eq!(ex.ops.len(), 2);
    assert!(matches!(ex.ops[0], Op::CreateCollection { .. }));
    assert_eq!(
        err(&mut s, doc! {"dropIndexes": "zzz", "index": "*"}).code,
        26
    );
}

#[test]
fn rename_collection() {
    let mut s = seeded();
    let ex = s
        .execute(
            "admin",
            &doc! {"renameCollection": "test.c", "to": "test.c2"},
        )
        .unwrap();
    assert_eq!(s.collection_names("test"), vec!["c2".to_string()]);
    assert_eq!(s.total_documents(), 5);
    let mut replica = seeded();
    for op in &ex.ops {
        replica.apply(op);
    }
    assert!(replica.same_contents(&s));
}

#[test]
fn replication_reproduces_state() {
    let mut primary = Store::new();
    let mut secondary = Store::new();
    let cmds = vec![
        doc! {"insert": "c", "documents": [{"_id": 1, "a": 1}, {"b": 2}, {"_id": 3}]},
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": true, "sparse": true}]},
        doc! {"update": "c", "updates": [{"q": {}, "u": {"$currentDate": {"t": true}}, "multi": true}]},
        doc! {"update": "c", "updates": [{"q": {"_id": 9}, "u": {"$set": {"x": 1}}, "upsert": true}]},
        doc! {"delete": "c", "deletes": [{"q": {"_id": 3}, "limit": 1}]},
        doc! {"findAndModify": "c", "query": {"_id": 1}, "update": {"$push": {"arr": 1}}},
        doc! {"insert": "other", "documents": [{"_id": 1}]},
        doc! {"drop": "other"},
        doc! {"dropIndexes": "c", "index": "a_1"},
    ];
    for c in cmds {
        let ex = primary.execute("db", &c).unwrap();
        for op in &ex.ops {
            secondary.apply(op);
        }
    }
    assert!(primary.same_contents(&secondary));
    assert_eq!(primary.total_documents(), 3);
    // A clone is an independent snapshot (transactions/rollback).
    let snapshot = primary.clone();
    primary
        .execute(
            "db",
            &doc! {"delete": "c", "deletes": [{"q": {}, "limit": 0}]},
        )
        .unwrap();
    assert_eq!(snapshot.total_documents(), 3);
    assert_eq!(primary.total_documents(), 0);
}

#[test]
fn id_lookup_is_fast() {
    let mut s = Store::new();
    let batch: Vec<Bson> = (0..20_000)
        .map(|i| Bson::Document(doc! {"_id": i, "v": i}))
        .collect();
    run(&mut s, doc! {"insert": "big", "documents": batch});
    let start = std::time::Instant::now();
    for i in 0..20_000 {
        let r = docs(&mut s, doc! {"find": "big", "filter": {"_id": i}});
        assert_eq!(r.len(), 1);
    }
    // A scan per lookup would be ~4e8 document visits; the index keeps this well under a second
    // even in debug builds.
    assert!(
        start.elapsed().as_secs_f64() < 10.0,
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn positional_update_through_command() {
    let mut s = Store::new();
    run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 1, "grades": [{"g": 80}, {"g": 90}]}]},
    );
    run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1, "grades.g": 90}, "u": {"$set": {"grades.$.g": 95}}}]},
    );
    run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"grades.$[low].g": 1}}, "arrayFilters": [{"low.g": {"$lt": 85}}]}]},
    );
    assert_eq!(
        s.find_by_id("test.c", &Bson::Int32(1)).unwrap(),
        &doc! {"_id": 1, "grades": [{"g": 81}, {"g": 95}]}
    );
    let r = docs(
        &mut s,
        doc! {"find": "c", "filter": {"grades.g": 95}, "projection": {"grades.$": 1}},
    );
    assert_eq!(r, vec![doc! {"_id": 1, "grades": [{"g": 95}]}]);
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": [{"$set": {"total": {"$sum": "$grades.g"}}}]}]},
    );
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
    assert_eq!(
        s.find_by_id("test.c", &Bson::Int32(1))
            .unwrap()
            .get_i32("total")
            .unwrap(),
        176
    );
}

#[test]
fn mixed_type_sort_and_comparison_through_find() {
    let mut s = Store::new();
    let oid = bson::oid::ObjectId::from_bytes([1; 12]);
    run(
        &mut s,
        doc! {"insert": "c", "documents": [
            {"_id": 1, "v": "b"},
            {"_id": 2, "v": 10i64},
            {"_id": 3, "v": null},
            {"_id": 4, "v": {"x": 1}},
            {"_id": 5, "v": true},
            {"_id": 6, "v": 2.5},
            {"_id": 7, "v": [0, 100]},
            {"_id": 8, "v": oid},
            {"_id": 9, "v": bson::DateTime::from_millis(0)},
            {"_id": 10},
            {"_id": 11, "v": Bson::MinKey},
            {"_id": 12, "v": Bson::MaxKey},
        ]},
    );
    let asc = docs(&mut s, doc! {"find": "c", "sort": {"v": 1, "_id": 1}});
    // MinKey < null/missing < numbers (array by min) < string < object < ObjectId < bool < date < MaxKey
    assert_eq!(ids(&asc), i32s(&[11, 3, 10, 7, 6, 2, 1, 4, 8, 5, 9, 12]));
    let desc = docs(&mut s, doc! {"find": "c", "sort": {"v": -1, "_id": 1}});
    assert_eq!(ids(&desc), i32s(&[12, 9, 5, 8, 4, 1, 7, 2, 6, 3, 10, 11]));
    // $gt stays within the numeric bracket (the array matches through its element 100)
    assert_eq!(ids(&find(&mut s, doc! {"v": {"$gt": 2}})), i32s(&[2, 6, 7]));
    assert_eq!(ids(&find(&mut s, doc! {"v": {"$lt": "c"}})), i32s(&[1]));
    assert_eq!(
        ids(&find(&mut s, doc! {"v": {"$type": "number"}})),
        i32s(&[2, 6, 7])
    );
    assert_eq!(
        ids(&find(&mut s, doc! {"v": {"$type": ["bool", "date"]}})),
        i32s(&[5, 9])
    );
    assert_eq!(
        ids(&find(&mut s, doc! {"v": {"$exists": false}})),
        i32s(&[10])
    );
    assert_eq!(
        ids(&find(
            &mut s,
            doc! {"$expr": {"$eq": [{"$type": "$v"}, "object"]}}
        )),
        i32s(&[4])
    );
    assert_eq!(
        ids(&find(
            &mut s,
            doc! {"v": {"$not": {"$type": "number"}}, "_id": {"$lte": 3}}
        )),
        i32s(&[1, 3])
    );
    let re = bson::Regex {
        pattern: "^b".into(),
        options: String::new(),
    };
    assert_eq!(ids(&find(&mut s, doc! {"v": re})), i32s(&[1]));
}

#[test]
fn all_with_elem_match_and_nested_logic() {
    let mut s = Store::new();
    run(
        &mut s,
        doc! {"insert": "c", "documents": [
            {"_id": 1, "q": [{"s": "M", "n": 10}, {"s": "L", "n": 2}]},
            {"_id": 2, "q": [{"s": "M", "n": 1}, {"s": "L", "n": 20}]},
        ]},
    );
    let f = doc! {"q": {"$all": [{"$elemMatch": {"s": "M", "n": {"$gt": 5}}}, {"$elemMatch": {"s": "L"}}]}};
    assert_eq!(ids(&find(&mut s, f)), i32s(&[1]));
    let f = doc! {"$or": [{"q.n": 20}, {"$and": [{"q.s": "M"}, {"q.n": {"$gte": 10}}]}], "_id": {"$ne": 2}};
    assert_eq!(ids(&find(&mut s, f)), i32s(&[1]));
    assert_eq!(
        ids(&find(&mut s, doc! {"_id": {"$mod": [2, 0]}})),
        i32s(&[2])
    );
}

#[test]
fn failed_create_indexes_leaves_no_trace() {
    let mut s = Store::new();
    let e = err(
        &mut s,
        doc! {"createIndexes": "fresh", "indexes": [{"key": {"a": 1}, "name": "n"}, {"key": {"b": 1}, "name": "n"}]},
    );
    assert_eq!(e.code, 86);
    assert!(s.database_names().is_empty());
    let e = err(
        &mut s,
        doc! {"createIndexes": "fresh", "indexes": [{"key": {"a": true}, "name": "bad"}]},
    );
    assert_eq!(e.code, 67);
    assert!(s.database_names().is_empty());
}

#[test]
fn upsert_replacement_cannot_change_query_id() {
    let mut s = Store::new();
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"_id": 2, "x": 1}, "upsert": true}]},
    );
    let e = r.get_array("writeErrors").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(e.get_i32("code").unwrap(), 66);
    assert_eq!(s.total_documents(), 0);
}

#[test]
fn update_operators_through_command() {
    let mut s = Store::new();
    run(
        &mut s,
        doc! {"insert": "c", "documents": [{"_id": 1, "n": 1, "tags": ["a"], "old": 5}]},
    );
    let r = run(
        &mut s,
        doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {
            "$inc": {"n": 2},
            "$mul": {"m": 3},
            "$addToSet": {"tags": {"$each": ["a", "b"]}},
            "$rename": {"old": "new"},
            "$min": {"lo": 3},
            "$max": {"hi": 7},
            "$setOnInsert": {"ignored": true},
            "$set": {"deep.er": 1},
        }}]},
    );
    assert_eq!(r.get_i32("nModified").unwrap(), 1);
    assert_eq!(
        s.find_by_id("test.c", &Bson::Int32(1)).unwrap(),
        &doc! {"_id": 1, "n": 3, "tags": ["a", "b"], "deep": {"er": 1}, "hi": 7, "lo": 3, "m": 0, "new": 5}
    );
    // a no-op update matches but does not modify
    let ex = s
        .execute(
            "test",
            &doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$max": {"hi": 1}}}]},
        )
        .unwrap();
    assert_eq!(
        ex.outcome,
        Outcome::Reply(doc! {"n": 1, "nModified": 0, "ok": 1.0})
    );
    assert!(ex.ops.is_empty());
}

// ------------------------------------------------------------ property test

#[derive(Clone, Debug)]
enum Action {
    Insert(i32, i32),
    InsertMany(Vec<i32>, bool),
    Set(i32, i32),
    IncMulti(i32),
    Push(i32, i32),
    Upsert(i32, i32),
    Replace(i32, i32),
    Delete(i32),
    DeleteMany(i32),
    FamRemove(i32),
    Unset(i32),
    CreateUnique,
    DropIndex,
    Drop,
}

fn action() -> impl Strategy<Value = Action> {
    let id = 0..12i32;
    let v = -3..6i32;
    prop_oneof![
        (id.clone(), v.clone()).prop_map(|(a, b)| Action::Insert(a, b)),
        (proptest::collection::vec(0..12i32, 1..4), any::<bool>())
            .prop_map(|(a, b)| Action::InsertMany(a, b)),
        (id.clone(), v.clone()).prop_map(|(a, b)| Action::Set(a, b)),
        v.clone().prop_map(Action::IncMulti),
        (id.clone(), v.clone()).prop_map(|(a, b)| Action::Push(a, b)),
        (id.clone(), v.clone()).prop_map(|(a, b)| Action::Upsert(a, b)),
        (id.clone(), v.clone()).prop_map(|(a, b)| Action::Replace(a, b)),
        id.clone().prop_map(Action::Delete),
        v.clone().prop_map(Action::DeleteMany),
        id.clone().prop_map(Action::FamRemove),
        id.prop_map(Action::Unset),
        Just(Action::CreateUnique),
        Just(Action::DropIndex),
        Just(Action::Drop),
    ]
}

fn command_for(a: &Action) -> Document {
    match a {
        Action::Insert(id, v) => doc! {"insert": "p", "documents": [{"_id": *id, "v": *v}]},
        Action::InsertMany(ids, ordered) => {
            let ds: Vec<Bson> = ids
                .iter()
                .map(|i| Bson::Document(doc! {"_id": f64::from(*i), "v": 0}))
                .collect();
            doc! {"insert": "p", "documents": ds, "ordered": *ordered}
        }
        Action::Set(id, v) => {
            doc! {"update": "p", "updates": [{"q": {"_id": *id}, "u": {"$set": {"v": *v, "w.x": *v}}}]}
        }
        Action::IncMulti(v) => {
            doc! {"update": "p", "updates": [{"q": {"v": {"$gte": *v}}, "u": {"$inc": {"v": 1}}, "multi": true}]}
        }
        Action::Push(id, v) => {
            doc! {"update": "p", "updates": [{"q": {"_id": *id}, "u": {"$push": {"arr": *v}}}]}
        }
        Action::Upsert(id, v) => {
            doc! {"update": "p", "updates": [{"q": {"_id": i64::from(*id)}, "u": {"$set": {"u": *v}}, "upsert": true}]}
        }
        Action::Replace(id, v) => {
            doc! {"update": "p", "updates": [{"q": {"_id": *id}, "u": {"r": *v}}]}
        }
        Action::Delete(id) => doc! {"delete": "p", "deletes": [{"q": {"_id": *id}, "limit": 1}]},
        Action::DeleteMany(v) => {
            doc! {"delete": "p", "deletes": [{"q": {"v": {"$lt": *v}}, "limit": 0}]}
        }
        Action::FamRemove(id) => {
            doc! {"findAndModify": "p", "query": {"_id": {"$gte": *id}}, "sort": {"_id": -1}, "remove": true}
        }
        Action::Unset(id) => {
            doc! {"update": "p", "updates": [{"q": {"_id": *id}, "u": {"$unset": {"v": ""}}}]}
        }
        Action::CreateUnique => {
            doc! {"createIndexes": "p", "indexes": [{"key": {"v": 1}, "name": "v_1", "unique": true, "sparse": true}]}
        }
        Action::DropIndex => doc! {"dropIndexes": "p", "index": "*"},
        Action::Drop => doc! {"drop": "p"},
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn applying_ops_reproduces_primary(actions in proptest::collection::vec(action(), 1..40)) {
        let mut primary = Store::new();
        let mut log: Vec<Op> = Vec::new();
        for a in &actions {
            // Errors (dup keys on index builds, etc.) are fine: they produce no ops.
            if let Ok(ex) = primary.execute("prop", &command_for(a)) {
                log.extend(ex.ops);
            }
        }
        let mut replica = Store::new();
        for op in &log {
            replica.apply(op);
        }
        prop_assert!(primary.same_contents(&replica), "primary {:?}\nreplica {:?}", primary.documents("prop.p"), replica.documents("prop.p"));
        prop_assert_eq!(primary.total_documents(), replica.total_documents());
        // Replaying twice from scratch is deterministic too.
        let mut again = Store::new();
        for op in &log {
            again.apply(op);
        }
        prop_assert!(again.same_contents(&replica));
    }
}
