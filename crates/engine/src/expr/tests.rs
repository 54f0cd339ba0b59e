//! Unit tests of expression parsing and evaluation.

use super::*;
use bson::doc;

fn eval(e: Bson, d: Document) -> Val {
    Expr::parse(&e).unwrap().eval(&EvalCtx::new(&d)).unwrap()
}

#[test]
fn field_paths_and_literals() {
    let d = doc! {"a": {"b": 5}, "arr": [{"x": 1}, {"x": 2}]};
    assert_eq!(
        eval(Bson::String("$a.b".into()), d.clone()),
        Some(Bson::Int32(5))
    );
    assert_eq!(eval(Bson::String("$nope".into()), d.clone()), None);
    assert_eq!(
        eval(Bson::String("$arr.x".into()), d.clone()),
        Some(Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$literal": "$a"}), d.clone()),
        Some(Bson::String("$a".into()))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"x": "$a.b", "y": "$missing"}), d),
        Some(Bson::Document(doc! {"x": 5}))
    );
}

#[test]
fn arithmetic_and_comparison() {
    let d = doc! {"a": 2, "b": 3.5, "s": "Hi"};
    assert_eq!(
        eval(Bson::Document(doc! {"$add": ["$a", 1]}), d.clone()),
        Some(Bson::Int32(3))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$add": ["$a", "$b"]}), d.clone()),
        Some(Bson::Double(5.5))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$subtract": ["$a", 5]}), d.clone()),
        Some(Bson::Int32(-3))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$multiply": ["$a", 4i64]}), d.clone()),
        Some(Bson::Int64(8))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$divide": ["$a", 4]}), d.clone()),
        Some(Bson::Double(0.5))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$add": ["$a", "$zz"]}), d.clone()),
        Some(Bson::Null)
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$gt": ["$b", "$a"]}), d.clone()),
        Some(Bson::Boolean(true))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$eq": ["$zz", null]}), d.clone()),
        Some(Bson::Boolean(false))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$cmp": ["$s", "Ha"]}), d.clone()),
        Some(Bson::Int32(1))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$toUpper": "$s"}), d.clone()),
        Some(Bson::String("HI".into()))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$concat": ["$s", "!"]}), d.clone()),
        Some(Bson::String("Hi!".into()))
    );
    let err = Expr::parse(&Bson::Document(doc! {"$add": ["$s", 1]}))
        .unwrap()
        .eval(&EvalCtx::new(&d))
        .unwrap_err();
    assert_eq!(err.code, 16554);
}

#[test]
fn conditionals_and_arrays() {
    let d = doc! {"a": [1, 2, 3], "n": null};
    assert_eq!(
        eval(
            Bson::Document(doc! {"$cond": [{"$gt": [{"$size": "$a"}, 2]}, "big", "small"]}),
            d.clone()
        ),
        Some(Bson::String("big".into()))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$ifNull": ["$n", "dflt"]}), d.clone()),
        Some(Bson::String("dflt".into()))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$arrayElemAt": ["$a", -1]}), d.clone()),
        Some(Bson::Int32(3))
    );
    assert_eq!(
        eval(
            Bson::Document(
                doc! {"$map": {"input": "$a", "as": "x", "in": {"$multiply": ["$$x", 10]}}}
            ),
            d.clone()
        ),
        Some(Bson::Array(vec![
            Bson::Int32(10),
            Bson::Int32(20),
            Bson::Int32(30)
        ]))
    );
    assert_eq!(
        eval(
            Bson::Document(doc! {"$filter": {"input": "$a", "cond": {"$gte": ["$$this", 2]}}}),
            d.clone()
        ),
        Some(Bson::Array(vec![Bson::Int32(2), Bson::Int32(3)]))
    );
    assert_eq!(
        eval(
            Bson::Document(
                doc! {"$reduce": {"input": "$a", "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}
            ),
            d.clone()
        ),
        Some(Bson::Int32(6))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$sum": "$a"}), d.clone()),
        Some(Bson::Int32(6))
    );
    assert_eq!(
        eval(Bson::Document(doc! {"$max": "$a"}), d.clone()),
        Some(Bson::Int32(3))
    );
    assert_eq!(
        eval(
            Bson::Document(doc! {"$let": {"vars": {"k": 4}, "in": {"$add": ["$$k", 1]}}}),
            d
        ),
        Some(Bson::Int32(5))
    );
}

#[test]
fn unknown_expression() {
    let e = Expr::parse(&Bson::Document(doc! {"$nope": 1})).unwrap_err();
    assert_eq!(e.code, 168);
    assert_eq!(e.errmsg, "Unrecognized expression '$nope'");
}
