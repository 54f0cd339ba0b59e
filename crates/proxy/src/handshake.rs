//! holdfast answers hello/isMaster/ismaster itself, as a mongos-like router
//! (`msg: "isdbgrid"`): drivers keep sessions and retryable writes, and never
//! learn or dial the members behind it. Limits and wire versions come from
//! the current primary. The `topologyVersion` is holdfast's own: a constant
//! processId and a counter bumped only when what holdfast advertises
//! changes, so awaitable hellos are held until then (or `maxAwaitTimeMS`).

use std::time::Duration;

use bson::{doc, oid::ObjectId, Bson, Document, RawBsonRef};
use holdfast_topology::ServerLimits;
use holdfast_wire::values::as_i64;
use holdfast_wire::CommandView;
use tokio::sync::watch;

pub struct Identity {
    pub process_id: ObjectId,
    counter: watch::Sender<i64>,
    advertised: std::sync::Mutex<ServerLimits>,
    /// `advertise_max_wire_version`.
    max_wire_version: Option<i32>,
}

impl Identity {
    pub fn new(limits: ServerLimits) -> Identity {
        Self::with_max_wire_version(limits, None)
    }

    /// An identity announcing at most wire version `cap` (when given).
    pub fn with_max_wire_version(limits: ServerLimits, cap: Option<i32>) -> Identity {
        let id = Identity {
            process_id: ObjectId::new(),
            counter: watch::channel(0).0,
            advertised: std::sync::Mutex::new(ServerLimits::default()),
            max_wire_version: cap,
        };
        *id.advertised.lock().unwrap() = id.capped(limits);
        id
    }

    fn capped(&self, mut limits: ServerLimits) -> ServerLimits {
        if let Some(cap) = self.max_wire_version {
            limits.max_wire_version = limits.max_wire_version.min(cap);
            limits.min_wire_version = limits.min_wire_version.min(limits.max_wire_version);
        }
        limits
    }

    pub fn counter(&self) -> i64 {
        *self.counter.borrow()
    }

    /// A `buildInfo` reply as holdfast announces itself: under
    /// `advertise_max_wire_version`, `version` and `versionArray` are no
    /// newer than the release of that wire version. Some drivers (the Java
    /// driver 3.x) choose their protocol by the server's version rather
    /// than its wire version. Returns whether `body` changed.
    pub fn cap_build_info(&self, body: &mut Document) -> bool {
        let Some([major, minor]) = self.max_wire_version.and_then(release_of_wire_version) else {
            return false;
        };
        let Some(reported) = body.get_str("version").ok().and_then(major_minor) else {
            return false;
        };
        if reported <= (major, minor) {
            return false;
        }
        body.insert("version", format!("{major}.{minor}.0"));
        body.insert("versionArray", vec![major, minor, 0, 0]);
        true
    }

    pub fn topology_version(&self) -> Document {
        doc! {"processId": self.process_id, "counter": self.counter()}
    }

    /// Called when the primary's limits may have changed: bumps the counter
    /// (releasing awaitable hellos) only if what we advertise changes.
    pub fn advertise(&self, limits: ServerLimits) {
        let limits = self.capped(limits);
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

/// The MongoDB release (major, minor) whose maximum wire version is `w`
/// (`None` past the table: nothing to cap).
pub fn release_of_wire_version(w: i32) -> Option<[i32; 2]> {
    Some(match w {
        i32::MIN..=0 => [2, 4],
        1 | 2 => [2, 6],
        3 => [3, 0],
        4 => [3, 2],
        5 => [3, 4],
        6 => [3, 6],
        7 => [4, 0],
        8 => [4, 2],
        9 => [4, 4],
        10 => [4, 7],
        11 => [4, 8],
        12 => [4, 9],
        13 => [5, 0],
        14..=16 => [5, w - 13],
        17..=20 => [6, w - 17],
        21..=24 => [7, w - 21],
        25 => [8, 0],
        _ => return None,
    })
}

/// "7.0.12" → (7, 0).
fn major_minor(version: &str) -> Option<(i32, i32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.split('-').next()?.parse().ok()?;
    Some((major, minor))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use holdfast_wire::{reply, Frame, Limits, Message, MsgFlags};

    fn frame(d: Document) -> Frame {
        reply::msg_reply_bytes(1, 0, MsgFlags::empty(), reply::document_bytes(&d))
    }

    fn with_view<R>(d: Document, f: impl FnOnce(&CommandView<'_>) -> R) -> R {
        let fr = frame(d);
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        f(&CommandView::from_msg(&m).unwrap())
    }

    #[test]
    fn hello_answers_as_a_mongos_with_the_primarys_limits() {
        let id = Identity::new(ServerLimits {
            max_wire_version: 17,
            ..ServerLimits::default()
        });
        let d = with_view(doc! {"hello": 1, "helloOk": true, "$db": "admin"}, |v| {
            hello_reply(v, &id, 7)
        });
        assert!(d.get_bool("isWritablePrimary").unwrap());
        assert!(!d.contains_key("ismaster"));
        assert_eq!(d.get_str("msg").unwrap(), "isdbgrid");
        assert!(d.get_bool("helloOk").unwrap());
        assert_eq!(d.get_i32("maxWireVersion").unwrap(), 17);
        assert_eq!(d.get_i64("connectionId").unwrap(), 7);
        assert_eq!(d.get_i32("logicalSessionTimeoutMinutes").unwrap(), 30);
        assert!(!d.contains_key("setName") && !d.contains_key("hosts"));
        let tv = d.get_document("topologyVersion").unwrap();
        assert_eq!(tv.get_object_id("processId").unwrap(), id.process_id);
        assert_eq!(d.get_f64("ok").unwrap(), 1.0);
        // The legacy name answers with the legacy field, and helloOk only
        // when asked.
        let d = with_view(doc! {"isMaster": 1, "$db": "admin"}, |v| {
            hello_reply(v, &id, 7)
        });
        assert!(d.get_bool("ismaster").unwrap());
        assert!(!d.contains_key("isWritablePrimary") && !d.contains_key("helloOk"));
    }

    #[test]
    fn advertise_max_wire_version_caps_what_is_announced() {
        let id = Identity::with_max_wire_version(ServerLimits::default(), Some(3));
        assert_eq!(id.limits().max_wire_version, 3);
        id.advertise(ServerLimits {
            max_wire_version: 25,
            ..ServerLimits::default()
        });
        assert_eq!(id.limits().max_wire_version, 3);
        let d = with_view(doc! {"isMaster": 1, "$db": "admin"}, |v| {
            hello_reply(v, &id, 1)
        });
        assert_eq!(d.get_i32("maxWireVersion").unwrap(), 3);
        assert_eq!(d.get_i32("minWireVersion").unwrap(), 0);
    }

    #[test]
    fn advertise_max_wire_version_caps_the_build_info_version() {
        let build_info = || doc! {"version": "7.0.12", "versionArray": [7, 0, 12, 0], "ok": 1.0};
        for (cap, version, array) in [
            (3, "3.0.0", [3, 0, 0, 0]),
            (5, "3.4.0", [3, 4, 0, 0]),
            (6, "3.6.0", [3, 6, 0, 0]),
            (17, "6.0.0", [6, 0, 0, 0]),
        ] {
            let id = Identity::with_max_wire_version(ServerLimits::default(), Some(cap));
            let mut d = build_info();
            assert!(id.cap_build_info(&mut d), "{cap}");
            assert_eq!(d.get_str("version").unwrap(), version);
            let got: Vec<i32> = d
                .get_array("versionArray")
                .unwrap()
                .iter()
                .map(|v| v.as_i32().unwrap())
                .collect();
            assert_eq!(got, array);
            assert_eq!(d.get_f64("ok").unwrap(), 1.0);
        }
        // No cap, a cap at or above the server's release, or past the
        // table: the server's own version.
        for cap in [None, Some(21), Some(25), Some(99)] {
            let id = Identity::with_max_wire_version(ServerLimits::default(), cap);
            let mut d = build_info();
            assert!(!id.cap_build_info(&mut d), "{cap:?}");
            assert_eq!(d, build_info());
        }
        let id = Identity::with_max_wire_version(ServerLimits::default(), Some(3));
        let mut d = doc! {"version": "3.0.15", "ok": 1.0};
        assert!(!id.cap_build_info(&mut d), "an older server stays as it is");
        assert_eq!(release_of_wire_version(15), Some([5, 2]));
        assert_eq!(release_of_wire_version(19), Some([6, 2]));
        assert_eq!(release_of_wire_version(22), Some([7, 1]));
        assert_eq!(major_minor("4.4.0-rc1"), Some((4, 4)));
        assert_eq!(major_minor("8.1-rc0"), Some((8, 1)));
    }

    #[test]
    fn the_counter_moves_only_when_what_is_advertised_changes() {
        let id = Identity::new(ServerLimits::default());
        let c0 = id.counter();
        id.advertise(ServerLimits::default());
        assert_eq!(id.counter(), c0);
        id.advertise(ServerLimits {
            max_wire_version: 25,
            ..ServerLimits::default()
        });
        assert_eq!(id.counter(), c0 + 1);
        assert_eq!(id.limits().max_wire_version, 25);
        id.bump();
        assert_eq!(id.counter(), c0 + 2);
    }

    #[tokio::test]
    async fn an_awaitable_hello_waits_for_a_change_or_max_await() {
        let id = std::sync::Arc::new(Identity::new(ServerLimits::default()));
        let current = doc! {"hello": 1, "topologyVersion": {"processId": id.process_id, "counter": id.counter()}, "maxAwaitTimeMS": 150, "$db": "admin"};
        let fr = frame(current);
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        let v = CommandView::from_msg(&m).unwrap();
        let t0 = Instant::now();
        id.await_change(&v).await;
        assert!(
            t0.elapsed() >= Duration::from_millis(140),
            "waited maxAwaitTimeMS"
        );
        // A change releases it at once.
        let bumper = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            bumper.bump();
        });
        let fr = frame(
            doc! {"hello": 1, "topologyVersion": {"processId": id.process_id, "counter": id.counter()}, "maxAwaitTimeMS": 10_000, "$db": "admin"},
        );
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        let v = CommandView::from_msg(&m).unwrap();
        let t0 = Instant::now();
        id.await_change(&v).await;
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn hellos_that_are_not_current_answer_at_once() {
        let id = Identity::new(ServerLimits::default());
        let other = bson::oid::ObjectId::new();
        for d in [
            doc! {"hello": 1, "$db": "admin"},
            doc! {"hello": 1, "topologyVersion": {"processId": other, "counter": 0i64}, "maxAwaitTimeMS": 5000, "$db": "admin"},
            doc! {"hello": 1, "topologyVersion": {"processId": id.process_id, "counter": id.counter() - 1}, "maxAwaitTimeMS": 5000, "$db": "admin"},
            doc! {"hello": 1, "topologyVersion": {"processId": id.process_id, "counter": id.counter()}, "$db": "admin"},
        ] {
            let fr = frame(d);
            let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
                unreachable!()
            };
            let v = CommandView::from_msg(&m).unwrap();
            let t0 = Instant::now();
            id.await_change(&v).await;
            assert!(t0.elapsed() < Duration::from_millis(500));
        }
    }
}
