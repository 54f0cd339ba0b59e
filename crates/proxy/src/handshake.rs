//! holdfast answers hello/isMaster/ismaster itself, as a mongos-like router
//! (`msg: "isdbgrid"`): drivers keep sessions and retryable writes, and never
//! learn or dial the members behind it. Limits and wire versions come from
//! the current primary. The `topologyVersion` is holdfast's own: a constant
//! processId and a counter bumped only when what holdfast advertises
//! changes, so awaitable hellos are held until then (or `maxAwaitTimeMS`).

use std::time::Duration;

use bson::{doc, oid::ObjectId, Bson, Document, RawBsonRef};
use holdfast_topology::ServerLimits;
use holdfast_wire::CommandView;
use tokio::sync::watch;

pub struct Identity {
    pub process_id: ObjectId,
    counter: watch::Sender<i64>,
    advertised: std::sync::Mutex<ServerLimits>,
}

impl Identity {
    pub fn new(limits: ServerLimits) -> Identity {
        Identity {
            process_id: ObjectId::new(),
            counter: watch::channel(0).0,
            advertised: std::sync::Mutex::new(limits),
        }
    }

    pub fn counter(&self) -> i64 {
        *self.counter.borrow()
    }

    pub fn topology_version(&self) -> Document {
        doc! {"processId": self.process_id, "counter": self.counter()}
    }

    /// Called when the primary's limits may have changed: bumps the counter
    /// (releasing awaitable hellos) only if what we advertise changes.
    pub fn advertise(&self, limits: ServerLimits) {
        let mut a = self.advertised.lock().unwrap();
        if *a != limits {
            *a = limits;
            self.counter.send_modify(|c| *c += 1);
        }
    }

    /// Releases every awaitable hello now (used at shutdown).
    pub fn bump(&self) {
        self.counter.send_modify(|c| *c += 1);
    }

    pub fn limits(&self) -> ServerLimits {
        *self.advertised.lock().unwrap()
    }

    /// For an awaitable hello (`topologyVersion` + `maxAwaitTimeMS`) whose
    /// topologyVersion is our current one, waits until the counter changes
    /// or `maxAwaitTimeMS` passes. Any other hello returns at once.
    pub async fn await_change(&self, view: &CommandView<'_>) {
        let Some((pid, counter)) = requested_topology_version(view) else {
            return;
        };
        let Some(max_await) = view
            .body
            .get("maxAwaitTimeMS")
            .ok()
            .flatten()
            .and_then(as_i64)
        else {
            return;
        };
        if pid != self.process_id || counter != self.counter() || max_await <= 0 {
            return;
        }
        let mut rx = self.counter.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_millis(max_await as u64),
            rx.wait_for(|c| *c != counter),
        )
        .await;
    }
}

fn as_i64(v: RawBsonRef<'_>) -> Option<i64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as i64),
        RawBsonRef::Int64(i) => Some(i),
        RawBsonRef::Double(d) => Some(d as i64),
        _ => None,
    }
}

fn requested_topology_version(view: &CommandView<'_>) -> Option<(ObjectId, i64)> {
    let tv = match view.body.get("topologyVersion").ok()?? {
        RawBsonRef::Document(d) => d,
        _ => return None,
    };
    let pid = match tv.get("processId").ok()?? {
        RawBsonRef::ObjectId(o) => o,
        _ => return None,
    };
    Some((pid, as_i64(tv.get("counter").ok()??)?))
}

/// The hello reply body.
pub fn hello_reply(view: &CommandView<'_>, identity: &Identity, connection_id: i64) -> Document {
    let l = identity.limits();
    let primary_field = if view.name == "hello" {
        "isWritablePrimary"
    } else {
        "ismaster"
    };
    let mut d = doc! {
        primary_field: true,
        "msg": "isdbgrid",
        "topologyVersion": identity.topology_version(),
        "maxBsonObjectSize": l.max_bson_object_size,
        "maxMessageSizeBytes": l.max_message_size_bytes,
        "maxWriteBatchSize": l.max_write_batch_size,
        "localTime": Bson::DateTime(bson::DateTime::now()),
        "logicalSessionTimeoutMinutes": l.logical_session_timeout_minutes.unwrap_or(30),
        "connectionId": connection_id,
        "minWireVersion": l.min_wire_version,
        "maxWireVersion": l.max_wire_version,
        "readOnly": false,
    };
    if matches!(
        view.body.get("helloOk"),
        Ok(Some(RawBsonRef::Boolean(true)))
    ) {
        d.insert("helloOk", true);
    }
    d.insert("ok", 1.0);
    d
}
