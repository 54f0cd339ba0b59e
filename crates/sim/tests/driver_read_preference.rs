//! The official Rust driver's read preferences against the sim: tag sets
//! and modes pick the members they name (each member's opcounters prove
//! which one served), `maxStalenessSeconds` is accepted (the driver
//! computes staleness from every member's `lastWrite`), and a secondary
//! read sees that secondary's own, lagging, data.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, Document};
use common::*;
use holdfast_sim::{ReplicaSet, SimConfig};
use mongodb::options::{ClientOptions, ReadPreference, ReadPreferenceOptions, SelectionCriteria};
use mongodb::{Client, Collection};

async fn start_tagged() -> ReplicaSet {
    let cfg = SimConfig {
        election_ms: 300,
        repl_lag_ms: 0,
        ..SimConfig::default()
    }
    .with_tags(1, &[("dc", "east")])
    .with_tags(2, &[("dc", "west")]);
    let set = ReplicaSet::start(cfg).await.unwrap();
    set.wait_for_primary(WAIT).await.unwrap();
    set
}

async fn collection(set: &ReplicaSet) -> Collection<Document> {
    let mut opts = ClientOptions::parse(set.uri()).await.unwrap();
    opts.server_selection_timeout = Some(Duration::from_secs(10));
    let client = Client::with_options(opts).unwrap();
    client.database("test").collection("rp")
}

fn tagged(mode: &str, tags: &[(&str, &str)], max_staleness: Option<Duration>) -> SelectionCriteria {
    let tag_set: HashMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let options = ReadPreferenceOptions::builder()
        .tag_sets(if tags.is_empty() {
            None
        } else {
            Some(vec![tag_set])
        })
        .max_staleness(max_staleness)
        .build();
    let options = Some(options);
    SelectionCriteria::ReadPreference(match mode {
        "secondary" => ReadPreference::Secondary { options },
        "nearest" => ReadPreference::Nearest { options },
        "secondaryPreferred" => ReadPreference::SecondaryPreferred { options },
        other => panic!("{other}"),
    })
}

/// `opcounters.query` of every member.
async fn queries(set: &ReplicaSet) -> Vec<i64> {
    let mut out = Vec::new();
    for m in 0..set.len() {
        let mut c = connect(set, m).await;
        let s = run(&mut c, "admin", doc! { "serverStatus": 1 }).await;
        out.push(
            s.get_document("opcounters")
                .unwrap()
                .get_i64("query")
                .unwrap(),
        );
    }
    out
}

fn deltas(after: &[i64], before: &[i64]) -> Vec<i64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_sets_and_modes_pick_the_member_that_serves_the_read() {
    let set = start_tagged().await;
    let coll = collection(&set).await;
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();

    let before = queries(&set).await;
    for _ in 0..5 {
        let d = coll
            .find_one(doc! { "_id": 1 })
            .selection_criteria(tagged("secondary", &[("dc", "west")], None))
            .await
            .unwrap();
        assert!(d.is_some());
    }
    assert_eq!(deltas(&queries(&set).await, &before), [0, 0, 5]);

    let before = queries(&set).await;
    for _ in 0..3 {
        coll.find_one(doc! {})
            .selection_criteria(tagged("nearest", &[("dc", "east")], None))
            .await
            .unwrap()
            .expect("the document");
    }
    assert_eq!(deltas(&queries(&set).await, &before), [0, 3, 0]);

    // maxStalenessSeconds: both secondaries are fresh, so one of them
    // serves it, never the primary.
    let before = queries(&set).await;
    coll.find_one(doc! {})
        .selection_criteria(tagged("secondary", &[], Some(Duration::from_secs(90))))
        .await
        .unwrap()
        .expect("the document");
    let d = deltas(&queries(&set).await, &before);
    assert_eq!((d[0], d[1] + d[2]), (0, 1), "{d:?}");

    // No member with these tags: secondaryPreferred falls back to the
    // primary.
    let before = queries(&set).await;
    coll.find_one(doc! {})
        .selection_criteria(tagged("secondaryPreferred", &[("dc", "mars")], None))
        .await
        .unwrap()
        .expect("the document");
    assert_eq!(deltas(&queries(&set).await, &before), [1, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_read_sees_that_secondarys_lagging_data() {
    let set = start_tagged().await;
    let coll = collection(&set).await;
    coll.insert_one(doc! { "_id": "warm-up" }).await.unwrap();
    set.set_lag(2, Duration::from_secs(2));
    // w: "majority" (the default) completes through members 0 and 1.
    coll.insert_one(doc! { "_id": "late" }).await.unwrap();

    let west = tagged("secondary", &[("dc", "west")], None);
    let east = tagged("secondary", &[("dc", "east")], None);
    let on_west = coll
        .find_one(doc! { "_id": "late" })
        .selection_criteria(west.clone())
        .await
        .unwrap();
    assert!(on_west.is_none(), "the lagging member has not applied it");
    let on_east = coll
        .find_one(doc! { "_id": "late" })
        .selection_criteria(east)
        .await
        .unwrap();
    assert!(on_east.is_some());
    assert_eq!(
        coll.count_documents(doc! {})
            .selection_criteria(west.clone())
            .await
            .unwrap(),
        1
    );
    assert!(coll
        .find_one(doc! { "_id": "late" })
        .await
        .unwrap()
        .is_some());

    eventually("the lagging member applies the write", || {
        let coll = coll.clone();
        let west = west.clone();
        async move {
            coll.find_one(doc! { "_id": "late" })
                .selection_criteria(west)
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
}
