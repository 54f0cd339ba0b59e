//! `ReplySummary`: what the proxy reads from every reply. The fast walk must
//! agree with bson's iterator on every input, well-formed or not.

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document, RawDocument, Timestamp};
use holdfast_wire::ReplySummary;
use proptest::prelude::*;

fn bytes(d: &Document) -> Vec<u8> {
    bson::to_vec(d).unwrap()
}

fn summary(d: &Document) -> ReplySummary {
    let b = bytes(d);
    let raw = RawDocument::from_bytes(&b).unwrap();
    let fast = ReplySummary::fast(&b).expect("the fast walk takes server replies");
    assert_eq!(fast, ReplySummary::bson(raw));
    ReplySummary::of(raw)
}

#[test]
fn reads_a_find_reply() {
    let s = summary(&doc! {
        "cursor": {"firstBatch": [{"_id": 1i64, "name": "x"}], "id": 0i64, "ns": "bench.users"},
        "ok": 1.0,
    });
    assert_eq!(
        s,
        ReplySummary {
            ok: true,
            cursor_id: Some(0),
            ..Default::default()
        }
    );
    let s = summary(
        &doc! {"cursor": {"id": 812_345_678_901i64, "ns": "a.b", "nextBatch": []}, "ok": 1i32},
    );
    assert_eq!(s.cursor_id, Some(812_345_678_901));
    assert!(s.ok);
}

#[test]
fn reads_a_state_change_error() {
    let s = summary(&doc! {
        "topologyVersion": {"processId": bson::oid::ObjectId::new(), "counter": 3i64},
        "ok": 0.0,
        "errmsg": "not primary",
        "code": 10107i32,
        "codeName": "NotWritablePrimary",
        "$clusterTime": {"clusterTime": Timestamp { time: 1, increment: 2 }, "signature": {"hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0; 20] }, "keyId": 0i64}},
        "operationTime": Timestamp { time: 1, increment: 2 },
    });
    assert_eq!(
        s,
        ReplySummary {
            ok: false,
            code: Some(10107),
            has_topology_version: true,
            ..Default::default()
        }
    );
}

#[test]
fn reads_a_write_concern_error() {
    let s = summary(&doc! {
        "n": 1i32,
        "writeConcernError": {"code": 91i32, "codeName": "ShutdownInProgress", "errmsg": "shutting down"},
        "ok": 1.0,
    });
    assert_eq!(s.wce_code, Some(91));
    assert!(s.ok);
    assert_eq!(s.code, None);
}

#[test]
fn numbers_of_every_width_and_non_numbers() {
    assert!(summary(&doc! {"ok": 1i64}).ok);
    assert!(!summary(&doc! {"ok": 0i32}).ok);
    assert!(!summary(&doc! {"ok": "1"}).ok);
    assert_eq!(summary(&doc! {"ok": 0, "code": 11600i64}).code, Some(11600));
    assert_eq!(summary(&doc! {"ok": 0, "code": 189.0}).code, Some(189));
    assert_eq!(summary(&doc! {"ok": 0, "code": "x"}).code, None);
    // cursor ids are Int64 only
    assert_eq!(
        summary(&doc! {"cursor": {"id": 5i32}, "ok": 1}).cursor_id,
        None
    );
}

#[test]
fn rare_types_fall_back_to_bson_with_the_same_answer() {
    let d = doc! {
        "re": Bson::RegularExpression(bson::Regex { pattern: "a".into(), options: "i".into() }),
        "ok": 1.0, "code": 7i32,
    };
    let b = bytes(&d);
    let raw = RawDocument::from_bytes(&b).unwrap();
    assert_eq!(ReplySummary::fast(&b), None);
    assert_eq!(
        ReplySummary::of(raw),
        ReplySummary {
            ok: true,
            code: Some(7),
            ..Default::default()
        }
    );
}

/// bson reads every element, at every depth.
fn readable(d: &RawDocument) -> bool {
    d.iter().all(|el| match el {
        Ok((_, bson::RawBsonRef::Document(sub))) => readable(sub),
        Ok((_, bson::RawBsonRef::Array(a))) => a.into_iter().all(|v| match v {
            Ok(bson::RawBsonRef::Document(sub)) => readable(sub),
            v => v.is_ok(),
        }),
        Ok(_) => true,
        Err(_) => false,
    })
}

/// Values a reply's fields can take, including the shapes the summary reads.
fn value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        prop_oneof![Just(0.0), Just(1.0), any::<f64>()].prop_map(Bson::Double),
        "[a-z\u{e9}\u{4e2d}]{0,6}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
        Just(Bson::Null),
        any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(bson::oid::ObjectId::from_bytes(b))),
        any::<u32>().prop_map(|t| Bson::Timestamp(Timestamp {
            time: t,
            increment: 1
        })),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|bytes| Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes
        })),
        Just(Bson::RegularExpression(bson::Regex {
            pattern: "p".into(),
            options: "".into()
        })),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            proptest::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ok".to_string()),
        Just("code".to_string()),
        Just("id".to_string()),
        Just("cursor".to_string()),
        Just("writeConcernError".to_string()),
        Just("topologyVersion".to_string()),
        "[a-z]{1,5}",
    ]
}

fn reply() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((key(), value()), 0..7).prop_map(|kv| {
        // Build by hand so that duplicate keys survive (servers never send
        // them, but the two walks must still agree).
        let mut body = Vec::new();
        for (k, v) in kv {
            let one = bson::to_vec(&doc! { k: v }).unwrap();
            body.extend_from_slice(&one[4..one.len() - 1]);
        }
        let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out.push(0);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_walk_agrees_with_bson(doc in reply()) {
        let raw = RawDocument::from_bytes(&doc).unwrap();
        if let Some(fast) = ReplySummary::fast(&doc) {
            prop_assert_eq!(fast, ReplySummary::bson(raw));
        }
        prop_assert_eq!(ReplySummary::of(raw), ReplySummary::bson(raw));
    }

    #[test]
    fn fast_walk_agrees_with_bson_on_damaged_replies(
        doc in reply(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut doc = doc;
        for (i, b) in flips {
            let i = i.index(doc.len());
            doc[i] = b;
        }
        // Only what RawDocument accepts reaches the summary. The fast walk
        // does not check UTF-8, so it agrees with bson on the replies bson
        // reads to the end, sub-documents included, and never panics on
        // the others.
        let fast = ReplySummary::fast(&doc);
        if let Ok(raw) = RawDocument::from_bytes(&doc) {
            if let (Some(fast), true) = (fast, readable(raw)) {
                prop_assert_eq!(fast, ReplySummary::bson(raw));
            }
        }
    }
}
