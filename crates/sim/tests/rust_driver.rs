//! The official Rust driver (`mongodb` 3.x) against the sim: discovery of
//! every member through SDAM, CRUD, multi-batch cursors, and how fast it
//! sees the new primary after `replSetStepDown`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use holdfast_sim::{ReplicaSet, SimConfig};
use mongodb::bson::{doc, Document};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, ServerType};
use parking_lot::Mutex;
use tokio::sync::watch;

type Servers = HashMap<String, ServerType>;

async fn client(set: &ReplicaSet) -> (Client, watch::Receiver<Servers>) {
    let mut opts = ClientOptions::parse(set.uri()).await.unwrap();
    let (tx, rx) = watch::channel(Servers::new());
    let tx = Arc::new(Mutex::new(tx));
    opts.sdam_event_handler = Some(EventHandler::callback(move |ev: SdamEvent| {
        if let SdamEvent::TopologyDescriptionChanged(e) = ev {
            let servers: Servers = e
                .new_description
                .servers()
                .into_iter()
                .map(|(a, s)| (a.to_string(), s.server_type()))
                .collect();
            let _ = tx.lock().send(servers);
        }
    }));
    opts.server_selection_timeout = Some(Duration::from_secs(10));
    (Client::with_options(opts).unwrap(), rx)
}

fn primary_of(s: &Servers) -> Option<String> {
    s.iter()
        .find(|(_, t)| **t == ServerType::RsPrimary)
        .map(|(a, _)| a.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_discovers_crud_cursors_and_follows_a_stepdown() {
    let election_ms = 1000;
    let cfg = SimConfig {
        election_ms,
        ..SimConfig::default()
    };
    let set = ReplicaSet::start(cfg).await.unwrap();
    let (client, mut servers) = client(&set).await;
    let coll = client.database("test").collection::<Document>("drv");

    // CRUD (this also starts monitoring).
    let docs: Vec<Document> = (0..250).map(|i| doc! { "_id": i, "n": i % 10 }).collect();
    coll.insert_many(docs).await.unwrap();
    let r = coll
        .update_one(doc! { "_id": 1 }, doc! { "$set": { "n": 100 } })
        .await
        .unwrap();
    assert_eq!(r.modified_count, 1);
    assert_eq!(
        coll.delete_one(doc! { "_id": 2 })
            .await
            .unwrap()
            .deleted_count,
        1
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 249);
    let one = coll.find_one(doc! { "_id": 1 }).await.unwrap().unwrap();
    assert_eq!(one.get_i32("n").unwrap(), 100);
    // Multi-batch cursor.
    let all: Vec<Document> = coll
        .find(doc! {})
        .batch_size(40)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 249);

    // Discovery: one primary, two secondaries, all at the sim's addresses.
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        servers.wait_for(|s| {
            s.len() == 3
                && s.values().filter(|t| **t == ServerType::RsPrimary).count() == 1
                && s.values()
                    .filter(|t| **t == ServerType::RsSecondary)
                    .count()
                    == 2
        }),
    )
    .await
    .expect("all members discovered")
    .unwrap()
    .clone();
    let old = primary_of(&s).unwrap();
    assert_eq!(old, set.addr(0).to_string());

    // replSetStepDown through the driver; time until it sees the new primary.
    let t0 = Instant::now();
    client
        .database("admin")
        .run_command(doc! { "replSetStepDown": 30, "force": true })
        .await
        .unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        servers.wait_for(|s| primary_of(s).is_some_and(|p| p != old)),
    )
    .await
    .expect("new primary seen")
    .unwrap()
    .clone();
    let seen_after = t0.elapsed();
    let new = primary_of(&s).unwrap();
    assert_ne!(new, old);
    assert!(
        seen_after <= Duration::from_millis(election_ms + 500),
        "driver saw the new primary after {seen_after:?}"
    );
    // Writes go to the new primary.
    coll.insert_one(doc! { "_id": 1000 }).await.unwrap();
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 250);
}
