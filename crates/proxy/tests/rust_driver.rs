//! The official Rust driver through holdfast (embedded sim, no replicaSet=):
//! CRUD, multi-batch cursors, bulk inserts, a transaction, a w:0 insert, and
//! the driver never learns the members.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, FindOptions};
use mongodb::Client;

async fn holdfast() -> holdfast_proxy::Holdfast {
    let cfg = holdfast_proxy::Config {
        listen: "127.0.0.1:0".into(),
        admin_listen: String::new(),
        embedded_port: 0,
        pool_size: 10,
        ..Default::default()
    };
    let hf = holdfast_proxy::start(cfg).await.expect("holdfast starts");
    assert!(hf.wait_for_primary(Duration::from_secs(10)).await.is_some());
    hf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_crud_cursors_bulk_transaction_and_w0() {
    let hf = holdfast().await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut opts = ClientOptions::parse(hf.client_uri()).await.unwrap();
    let s2 = seen.clone();
    opts.sdam_event_handler = Some(EventHandler::callback(move |ev: SdamEvent| {
        if let SdamEvent::TopologyDescriptionChanged(e) = ev {
            for (addr, info) in e.new_description.servers() {
                s2.lock()
                    .unwrap()
                    .push((addr.to_string(), format!("{:?}", info.server_type())));
            }
        }
    }));
    let client = Client::with_options(opts).unwrap();
    let coll = client.database("e2e_rust").collection::<Document>("things");
    coll.drop().await.unwrap();
    let docs: Vec<Document> = (0..250).map(|i| doc! {"i": i}).collect();
    assert_eq!(
        coll.insert_many(docs).await.unwrap().inserted_ids.len(),
        250
    );
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 250);
    assert_eq!(
        coll.update_one(doc! {"i": 3}, doc! {"$set": {"z": 1}})
            .await
            .unwrap()
            .modified_count,
        1
    );
    assert_eq!(
        coll.delete_one(doc! {"i": 4}).await.unwrap().deleted_count,
        1
    );
    let cursor = coll
        .find(doc! {})
        .with_options(
            FindOptions::builder()
                .batch_size(20)
                .sort(doc! {"i": 1})
                .build(),
        )
        .await
        .unwrap();
    let all: Vec<Document> = cursor.try_collect().await.unwrap();
    assert_eq!(all.len(), 249);

    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.insert_one(doc! {"i": 2000, "t": 1})
        .session(&mut session)
        .await
        .unwrap();
    coll.update_one(doc! {"i": 2000}, doc! {"$inc": {"t": 1}})
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    assert_eq!(
        coll.find_one(doc! {"i": 2000})
            .await
            .unwrap()
            .unwrap()
            .get_i32("t")
            .unwrap(),
        2
    );

    // The Rust driver refuses w:0 through its API; send the raw command.
    client
        .database("e2e_rust")
        .run_command(
            doc! {"insert": "things", "documents": [{"i": 3000}], "writeConcern": {"w": 0}},
        )
        .await
        .unwrap();
    let mut found = false;
    for _ in 0..100 {
        if coll.find_one(doc! {"i": 3000}).await.unwrap().is_some() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "w:0 insert never arrived");

    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for (addr, ty) in &seen {
        assert_eq!(
            addr, &hf.listen_addr,
            "driver learned another address: {seen:?}"
        );
        assert!(ty == "Mongos" || ty == "Unknown", "{ty}");
    }
    assert!(seen.iter().any(|(_, t)| t == "Mongos"));
    hf.shutdown(Duration::from_millis(100)).await;
}
