//! Unit tests of pipeline parsing and execution.

use super::*;
use bson::doc;

fn run(p: Vec<Document>, docs: Vec<Document>) -> Res<Vec<Document>> {
    let stages: Vec<Bson> = p.into_iter().map(Bson::Document).collect();
    Pipeline::parse(&stages)?.run(docs, &NoSource)
}

fn sample() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "cat": "a", "n": 5, "tags": ["x", "y"]},
        doc! {"_id": 2, "cat": "b", "n": 3, "tags": []},
        doc! {"_id": 3, "cat": "a", "n": 1.5, "tags": ["x"]},
        doc! {"_id": 4, "n": 10},
    ]
}

#[test]
fn match_sort_skip_limit_project() {
    let r = run(
        vec![
            doc! {"$match": {"n": {"$gte": 2}}},
            doc! {"$sort": {"n": -1}},
            doc! {"$skip": 1},
            doc! {"$limit": 1},
            doc! {"$project": {"n": 1, "_id": 0}},
        ],
        sample(),
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"n": 5}]);
}

#[test]
fn group_accumulators() {
    let r = run(
        vec![
            doc! {"$group": {
                "_id": "$cat",
                "total": {"$sum": "$n"},
                "count": {"$sum": 1},
                "avg": {"$avg": "$n"},
                "min": {"$min": "$n"},
                "max": {"$max": "$n"},
                "first": {"$first": "$_id"},
                "last": {"$last": "$_id"},
                "ids": {"$push": "$_id"},
                "tags": {"$addToSet": "$cat"},
                "c": {"$count": {}},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
        sample(),
    )
    .unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        doc! {"_id": null, "total": 10, "count": 1, "avg": 10.0, "min": 10, "max": 10, "first": 4, "last": 4, "ids": [4], "tags": [], "c": 1}
    );
    assert_eq!(
        r[1],
        doc! {"_id": "a", "total": 6.5, "count": 2, "avg": 3.25, "min": 1.5, "max": 5, "first": 1, "last": 3, "ids": [1, 3], "tags": ["a"], "c": 2}
    );
    let e = run(vec![doc! {"$group": {"x": {"$sum": 1}}}], vec![]).unwrap_err();
    assert_eq!(e.code, 15955);
    let e = run(
        vec![doc! {"$group": {"_id": null, "x": {"$bogus": 1}}}],
        vec![],
    )
    .unwrap_err();
    assert_eq!(e.code, 15952);
}

#[test]
fn group_keys_are_numerically_normalised() {
    let r = run(
        vec![doc! {"$group": {"_id": "$k", "n": {"$sum": 1}}}],
        vec![doc! {"k": 1}, doc! {"k": 1.0}, doc! {"k": 2i64}],
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"_id": 1, "n": 2}, doc! {"_id": 2i64, "n": 1}]);
}

#[test]
fn unwind_forms() {
    let r = run(
        vec![doc! {"$unwind": "$tags"}, doc! {"$project": {"tags": 1}}],
        sample(),
    )
    .unwrap();
    assert_eq!(
        r,
        vec![
            doc! {"_id": 1, "tags": "x"},
            doc! {"_id": 1, "tags": "y"},
            doc! {"_id": 3, "tags": "x"}
        ]
    );
    let r = run(
        vec![doc! {"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true, "includeArrayIndex": "i"}}],
        sample(),
    )
    .unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(r[1].get("i"), Some(&Bson::Int64(1)));
    assert_eq!(r[2], doc! {"_id": 2, "cat": "b", "n": 3, "i": null});
    assert_eq!(r[4], doc! {"_id": 4, "n": 10, "i": null});
}

#[test]
fn add_fields_unset_count_replace_root() {
    let r = run(
        vec![
            doc! {"$set": {"m": {"$multiply": ["$n", 2]}, "sub.x": 1}},
            doc! {"$unset": ["tags", "cat"]},
            doc! {"$match": {"_id": 2}},
        ],
        sample(),
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"_id": 2, "n": 3, "m": 6, "sub": {"x": 1}}]);
    let r = run(
        vec![doc! {"$match": {"cat": "a"}}, doc! {"$count": "total"}],
        sample(),
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"total": 2}]);
    assert!(run(
        vec![doc! {"$match": {"cat": "zz"}}, doc! {"$count": "total"}],
        sample()
    )
    .unwrap()
    .is_empty());
    let r = run(
        vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$replaceRoot": {"newRoot": {"c": "$cat"}}},
        ],
        sample(),
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"c": "a"}]);
    let r = run(vec![doc! {"$sortByCount": "$cat"}], sample()).unwrap();
    assert_eq!(r[0], doc! {"_id": "a", "count": 2});
}

#[test]
fn facet_and_errors() {
    let r = run(
        vec![doc! {"$facet": {"n": [{"$count": "c"}], "top": [{"$sort": {"n": -1}}, {"$limit": 1}, {"$project": {"_id": 1}}]}}],
        sample(),
    )
    .unwrap();
    assert_eq!(r, vec![doc! {"n": [{"c": 4}], "top": [{"_id": 4}]}]);
    let e = run(vec![doc! {"$bogus": {}}], vec![]).unwrap_err();
    assert_eq!(
        (e.code, e.errmsg.as_str()),
        (40324, "Unrecognized pipeline stage name: '$bogus'")
    );
    assert_eq!(
        run(vec![doc! {"$limit": 0}], vec![]).unwrap_err().code,
        15958
    );
    assert_eq!(run(vec![doc! {"$out": "x"}], vec![]).unwrap_err().code, 115);
    assert_eq!(
        run(vec![doc! {"$match": {}, "$limit": 1}], vec![])
            .unwrap_err()
            .code,
        40323
    );
}
