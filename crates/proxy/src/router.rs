//! Routing: which member a request goes to, and the state that outlives a
//! request — which member opened a cursor, which member a transaction runs
//! on. Cursors and transactions are pinned to their member; everything
//! else goes to the primary, waiting at the [`Gate`] while none is known.
//! Routing learns cursor ids and transaction ends from replies, and tells
//! the topology when the member it chose failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

use bson::Timestamp;
use holdfast_topology::{Snapshot, Topology};
use holdfast_wire::{CommandClass, CommandView, ReplySummary};

use crate::failover::Pin;
use crate::gate::{Gate, GateError, Target};
use crate::read_preference::{self, Choice, Criteria, ReadPreference};

/// How a read may be routed.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    pub pref: &'a ReadPreference,
    /// The command may run on a secondary: a read the command table marks
    /// opt-in, outside a transaction, not `linearizable`.
    pub secondary_ok: bool,
    /// `readConcern.afterClusterTime`.
    pub after: Option<Timestamp>,
    /// Members this request already failed on.
    pub avoid: &'a [String],
    /// The principal the request runs as (its key): transactions are
    /// pinned per principal, as the server keeps sessions per user.
    pub owner: &'a str,
}

/// Routing settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_held: usize,
    pub max_held_bytes: usize,
    /// `local_threshold_ms`: the latency window's width.
    pub local_threshold: Duration,
    /// `election_reads = "secondary"`.
    pub election_reads_secondary: bool,
}

/// Where one attempt of a request goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub target: Target,
    /// Time spent waiting at the gate for a primary.
    pub held: Duration,
    pub pin: Pin,
    /// A secondary serves a read whose request names no secondary read
    /// preference (`election_reads = "secondary"` during an election): the
    /// request sent must say `secondaryPreferred`, or the member refuses it
    /// with 13435.
    pub needs_secondary_ok: bool,
}

pub struct Router {
    topology: Topology,
    gate: Arc<Gate>,
    cursors: Cursors,
    txns: TxnPins,
    settings: Settings,
    random: AtomicU64,
}

impl Router {
    pub fn new(topology: Topology, settings: Settings) -> Router {
        Router {
            gate: Gate::new(
                topology.subscribe(),
                settings.max_held,
                settings.max_held_bytes,
            ),
            settings,
            random: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            ),
            topology,
            // The server keeps idle cursors 10 minutes and sessions 30.
            cursors: Cursors::new(Duration::from_secs(11 * 60)),
            txns: TxnPins::new(Duration::from_secs(31 * 60)),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.topology.snapshot()
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// The replica set's name for messages ("the replica set" until known).
    pub fn set_name(&self) -> String {
        self.snapshot()
            .set_name
            .clone()
            .unwrap_or_else(|| "the replica set".into())
    }

    /// The member for this attempt: a cursor's member, a transaction's
    /// member, or the primary (waiting at the gate until one is known, up
    /// to `deadline` or the command's `max_time`). A transaction's first
    /// statement pins the transaction to the member it goes to.
    pub async fn route(
        &self,
        view: &CommandView<'_>,
        class: CommandClass,
        bytes: usize,
        deadline: Instant,
        max_time: Option<Instant>,
        reads: Reads<'_>,
    ) -> Result<Route, GateError> {
        if reads.secondary_ok {
            if let Some(route) = self.read_route(reads, deadline, max_time).await? {
                return Ok(route);
            }
        }
        if let Some((member, pin)) = self.pinned(view, class, reads.owner) {
            let epoch = self.topology.snapshot().epoch;
            return Ok(Route {
                target: Target { member, epoch },
                held: Duration::ZERO,
                pin,
                needs_secondary_ok: false,
            });
        }
        let (target, held) = self.gate.primary(bytes, deadline, max_time).await?;
        if class == CommandClass::TransactionStatement && view.start_transaction {
            if let (Some(lsid), Some(txn)) = (view.lsid, view.txn_number) {
                self.txns
                    .pin(&txn_key(reads.owner, lsid), txn, target.member.clone());
            }
        }
        Ok(Route {
            target,
            held,
            pin: Pin::Primary,
            needs_secondary_ok: false,
        })
    }

    /// A read that may run on a secondary: the member its read preference
    /// picks (waiting for one while none suits), or `None` for the primary.
    async fn read_route(
        &self,
        reads: Reads<'_>,
        deadline: Instant,
        max_time: Option<Instant>,
    ) -> Result<Option<Route>, GateError> {
        let until = max_time.map_or(deadline, |m| m.min(deadline));
        let started = Instant::now();
        let mut rx = self.topology.subscribe();
        let mut waited = false;
        loop {
            let snap = rx.borrow_and_update().clone();
            let c = Criteria {
                heartbeat: self.topology.heartbeat(),
                local_threshold: self.settings.local_threshold,
                after: reads.after,
                avoid: reads.avoid,
                election_reads_secondary: self.settings.election_reads_secondary,
                random: self.next_random(),
            };
            let mode = reads.pref.mode.name();
            match read_preference::select(&snap, reads.pref, &c) {
                Choice::Primary => {
                    crate::metrics::read(mode, "primary");
                    return Ok(None);
                }
                Choice::Member(m) => {
                    let role = if snap.primary.as_deref() == Some(m.as_str()) {
                        "primary"
                    } else {
                        "secondary"
                    };
                    crate::metrics::read(mode, role);
                    let target = Target {
                        member: Arc::from(m.as_str()),
                        epoch: snap.epoch,
                    };
                    // Only a read that waited for a suitable member was held.
                    let held = if waited {
                        started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok(Some(Route {
                        target,
                        held,
                        pin: Pin::Primary,
                        needs_secondary_ok: role == "secondary"
                            && reads.pref.mode == read_preference::Mode::Primary,
                    }));
                }
                Choice::Wait => {}
            }
            waited = true;
            let changed = tokio::time::timeout_at(until.into(), rx.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                let waited = started.elapsed();
                return Err(match max_time {
                    Some(m) if m <= deadline => GateError::MaxTimeExpired { waited },
                    _ => GateError::NoSuitableMember { mode, waited },
                });
            }
        }
    }

    /// splitmix64 over a counter: the choice inside the latency window.
    fn next_random(&self) -> u64 {
        let mut z = self
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A member that failed a request: the primary is reported (marked
    /// unknown, the set probed); another member is marked unknown until
    /// its next check, so reads avoid it meanwhile.
    pub fn report_member_failure(&self, target: &Target) {
        let snap = self.topology.snapshot();
        if snap.primary.as_deref() == Some(&*target.member) {
            self.topology.report_failure(&target.member, target.epoch);
        } else if snap.member(&target.member).is_some() {
            self.topology.observe_failure(&target.member);
        }
    }

    /// The cursor (or cursors, for killCursors) `view` continues that
    /// another principal opened: the request must not run.
    pub fn foreign_cursor(&self, view: &CommandView<'_>, owner: &str) -> Option<i64> {
        let mut ids = view.kill_cursor_ids();
        ids.extend(view.cursor_id);
        ids.into_iter()
            .find(|id| self.cursors.owner(*id).is_some_and(|o| *o != *owner))
    }

    fn pinned(
        &self,
        view: &CommandView<'_>,
        class: CommandClass,
        owner: &str,
    ) -> Option<(Arc<str>, Pin)> {
        match class {
            CommandClass::CursorContinuation => view
                .cursor_id
                .or_else(|| view.kill_cursor_ids().first().copied())
                .and_then(|id| self.cursors.get(id))
                .map(|m| (m, Pin::Cursor)),
            // Statements stay on the transaction's member (elsewhere it does
            // not exist). commit/abort go to the current primary: in a
            // replica set that is the same member unless a failover
            // happened, and then a driver's commit retry must reach the new
            // primary, which knows the transaction's fate.
            CommandClass::TransactionStatement => match (view.lsid, view.txn_number) {
                (Some(lsid), Some(txn)) => self
                    .txns
                    .get(&txn_key(owner, lsid), txn)
                    .map(|m| (m, Pin::Transaction)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The member of `target` failed: if it is still that epoch's primary
    /// the topology marks it unknown at once and probes the set.
    pub fn report_failure(&self, target: &Target) {
        self.topology.report_failure(&target.member, target.epoch);
    }

    /// Records cursor ids (opened by `owner`) and transaction ends from a
    /// successful reply.
    pub fn learn(
        &self,
        view: &CommandView<'_>,
        class: CommandClass,
        target: &Target,
        info: &ReplySummary,
        owner: &Arc<str>,
    ) {
        match view.name {
            "getMore" => {
                if let (Some(0), Some(id)) = (info.cursor_id, view.cursor_id) {
                    self.cursors.remove(id);
                }
            }
            "killCursors" => {
                for id in view.kill_cursor_ids() {
                    self.cursors.remove(id);
                }
            }
            _ => {
                if let Some(id) = info.cursor_id.filter(|id| *id != 0) {
                    let ns = cursor_namespace(view);
                    self.cursors
                        .insert(id, target.member.clone(), ns, owner.clone());
                }
            }
        }
        if matches!(
            class,
            CommandClass::CommitTransaction | CommandClass::AbortTransaction
        ) {
            if let Some(lsid) = view.lsid {
                self.txns.unpin(&txn_key(owner, lsid));
            }
        }
    }

    /// Forgets cursors and transactions idle for longer than the server
    /// keeps them.
    pub fn sweep(&self) {
        self.cursors.sweep();
        self.txns.sweep();
    }
}

/// One open cursor: its member, its namespace (OP_KILL_CURSORS names none),
/// how many documents it returned so far (a legacy reply's `startingFrom`).
#[derive(Debug, Clone)]
struct CursorEntry {
    member: Arc<str>,
    /// The principal that opened it: only it may continue or kill it.
    owner: Arc<str>,
    ns: Option<Arc<str>>,
    returned: u64,
    at: Instant,
}

/// Cursor id → what holdfast knows of it, for every client connection
/// (drivers continue and kill cursors from any connection). Learned from
/// replies; entries go away when the cursor is exhausted or killed, or
/// after `idle` (the server's own idle cursor timeout is 10 minutes).
pub struct Cursors {
    map: Mutex<HashMap<i64, CursorEntry>>,
    idle: Duration,
}

impl Cursors {
    pub fn new(idle: Duration) -> Cursors {
        Cursors {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    pub fn insert(&self, id: i64, member: Arc<str>, ns: Option<Arc<str>>, owner: Arc<str>) {
        if id != 0 {
            let e = CursorEntry {
                member,
                owner,
                ns,
                returned: 0,
                at: Instant::now(),
            };
            self.map.lock().unwrap().insert(id, e);
        }
    }

    /// The cursor's member (and it counts as used now).
    pub fn get(&self, id: i64) -> Option<Arc<str>> {
        let mut m = self.map.lock().unwrap();
        m.get_mut(&id).map(|e| {
            e.at = Instant::now();
            e.member.clone()
        })
    }

    /// The principal that opened the cursor.
    pub fn owner(&self, id: i64) -> Option<Arc<str>> {
        self.map.lock().unwrap().get(&id).map(|e| e.owner.clone())
    }

    /// The cursor's namespace, `db.collection`.
    pub fn namespace(&self, id: i64) -> Option<Arc<str>> {
        self.map.lock().unwrap().get(&id).and_then(|e| e.ns.clone())
    }

    pub fn set_namespace(&self, id: i64, ns: &str) {
        if let Some(e) = self.map.lock().unwrap().get_mut(&id) {
            e.ns = Some(Arc::from(ns));
        }
    }

    /// Adds `n` documents to what the cursor returned; returns the count
    /// before (0 for a cursor already exhausted and forgotten).
    pub fn add_returned(&self, id: i64, n: u64) -> u64 {
        match self.map.lock().unwrap().get_mut(&id) {
            Some(e) => {
                let before = e.returned;
                e.returned += n;
                before
            }
            None => 0,
        }
    }

    pub fn remove(&self, id: i64) {
        self.map.lock().unwrap().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries idle for longer than the server keeps cursors.
    pub fn sweep(&self) {
        let idle = self.idle;
        self.map
            .lock()
            .unwrap()
            .retain(|_, e| e.at.elapsed() < idle);
    }
}

/// The namespace of the cursor a command opens: `db.<collection>`, or
/// `db.$cmd.<command>` for a database-level one (`aggregate: 1`,
/// `listCollections`).
fn cursor_namespace(view: &CommandView<'_>) -> Option<Arc<str>> {
    let db = view.db?;
    let (name, value) = view.body.iter().next()?.ok()?;
    Some(Arc::from(match value {
        bson::RawBsonRef::String(coll) => format!("{db}.{coll}"),
        _ => format!("{db}.$cmd.{name}"),
    }))
}

/// The pin key of a session's transactions: the principal and the lsid
/// (two users' sessions never share a pin, whatever lsids they send).
fn txn_key(owner: &str, lsid: &bson::RawDocument) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + 1 + lsid.as_bytes().len());
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(lsid.as_bytes());
    k
}

/// A pinned transaction: its txnNumber, its member, when last used.
type TxnPin = (i64, Arc<str>, Instant);

/// Principal and lsid (raw bytes of the `lsid` document) → its
/// transaction's pin.
pub struct TxnPins {
    map: Mutex<HashMap<Vec<u8>, TxnPin>>,
    idle: Duration,
}

impl TxnPins {
    pub fn new(idle: Duration) -> TxnPins {
        TxnPins {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    pub fn pin(&self, lsid: &[u8], txn: i64, member: Arc<str>) {
        self.map
            .lock()
            .unwrap()
            .insert(lsid.to_vec(), (txn, member, Instant::now()));
    }

    /// The member of this session's transaction `txn`, if pinned.
    pub fn get(&self, lsid: &[u8], txn: i64) -> Option<Arc<str>> {
        let m = self.map.lock().unwrap();
        m.get(lsid)
            .filter(|(t, _, _)| *t == txn)
            .map(|(_, member, _)| member.clone())
    }

    pub fn unpin(&self, lsid: &[u8]) {
        self.map.lock().unwrap().remove(lsid);
    }

    pub fn sweep(&self) {
        let idle = self.idle;
        self.map
            .lock()
            .unwrap()
            .retain(|_, (_, _, at)| at.elapsed() < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Document, RawDocument};
    use holdfast_wire::{reply, Frame, Limits, Message, MsgFlags};

    fn hello(primary: bool, election: u8) -> Document {
        let mut d = doc! {
            "ok": 1.0, "setName": "rs0", "hosts": ["a:1", "b:1"],
            "isWritablePrimary": primary, "secondary": !primary,
            "maxWireVersion": 21,
        };
        if primary {
            d.insert(
                "electionId",
                bson::oid::ObjectId::from_bytes([
                    0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, election,
                ]),
            );
        }
        d
    }

    fn router_with_primary(addr: &str) -> Router {
        let t = Topology::manual(&["a:1", "b:1"]);
        t.observe_hello(addr, &hello(true, 1));
        Router::new(t, settings())
    }

    fn settings() -> Settings {
        Settings {
            max_held: 10,
            max_held_bytes: 1 << 20,
            local_threshold: Duration::from_millis(15),
            election_reads_secondary: false,
        }
    }

    fn primary_reads() -> Reads<'static> {
        static PRIMARY: std::sync::OnceLock<ReadPreference> = std::sync::OnceLock::new();
        Reads {
            pref: PRIMARY.get_or_init(ReadPreference::default),
            secondary_ok: false,
            after: None,
            avoid: &[],
            owner: "service",
        }
    }

    fn frame(d: Document) -> Frame {
        reply::msg_reply_bytes(1, 0, MsgFlags::empty(), reply::document_bytes(&d))
    }

    /// Runs `f` with the command view of `d`.
    fn with_view<R>(d: Document, f: impl FnOnce(&CommandView<'_>) -> R) -> R {
        let fr = frame(d);
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        let v = CommandView::from_msg(&m).unwrap();
        f(&v)
    }

    fn summary(d: Document) -> ReplySummary {
        let b = reply::document_bytes(&d);
        ReplySummary::of(RawDocument::from_bytes(&b).unwrap())
    }

    async fn route_of(r: &Router, d: Document) -> Route {
        let fr = frame(d);
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        let v = CommandView::from_msg(&m).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        r.route(&v, v.classify(), fr.len(), deadline, None, primary_reads())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn plain_requests_go_to_the_primary() {
        let r = router_with_primary("a:1");
        let route = route_of(&r, doc! {"find": "c", "$db": "d"}).await;
        assert_eq!(&*route.target.member, "a:1");
        assert_eq!(route.pin, Pin::Primary);
        assert_eq!(route.held, Duration::ZERO);
        assert_eq!(route.target.epoch, r.snapshot().epoch);
    }

    #[tokio::test]
    async fn cursors_are_learned_pinned_and_forgotten() {
        let r = router_with_primary("a:1");
        let t = Target {
            member: "b:1".into(),
            epoch: 1,
        };
        with_view(doc! {"find": "c", "$db": "d"}, |v| {
            r.learn(
                v,
                v.classify(),
                &t,
                &summary(doc! {"cursor": {"id": 99i64, "firstBatch": []}, "ok": 1.0}),
                &"service".into(),
            )
        });
        assert_eq!(r.cursors().len(), 1);
        assert_eq!(r.cursors().namespace(99).as_deref(), Some("d.c"));
        assert_eq!(r.cursors().add_returned(99, 3), 0);
        assert_eq!(r.cursors().add_returned(99, 2), 3);
        let route = route_of(&r, doc! {"getMore": 99i64, "collection": "c", "$db": "d"}).await;
        assert_eq!((&*route.target.member, route.pin), ("b:1", Pin::Cursor));
        let route = route_of(
            &r,
            doc! {"killCursors": "c", "cursors": [99i64], "$db": "d"},
        )
        .await;
        assert_eq!((&*route.target.member, route.pin), ("b:1", Pin::Cursor));
        // An unknown cursor goes to the primary (which answers 43 itself).
        let route = route_of(&r, doc! {"getMore": 5i64, "collection": "c", "$db": "d"}).await;
        assert_eq!((&*route.target.member, route.pin), ("a:1", Pin::Primary));
        // Exhausted by a getMore: forgotten.
        with_view(
            doc! {"getMore": 99i64, "collection": "c", "$db": "d"},
            |v| {
                r.learn(
                    v,
                    v.classify(),
                    &t,
                    &summary(doc! {"cursor": {"id": 0i64, "nextBatch": []}, "ok": 1.0}),
                    &"service".into(),
                )
            },
        );
        assert!(r.cursors().is_empty());
    }

    #[tokio::test]
    async fn killed_cursors_are_forgotten() {
        let r = router_with_primary("a:1");
        r.cursors().insert(7, "b:1".into(), None, "service".into());
        r.cursors().insert(8, "b:1".into(), None, "service".into());
        with_view(
            doc! {"killCursors": "c", "cursors": [7i64, 8i64], "$db": "d"},
            |v| {
                r.learn(
                    v,
                    v.classify(),
                    &r.snapshot_target(),
                    &summary(doc! {"ok": 1.0}),
                    &"service".into(),
                )
            },
        );
        assert!(r.cursors().is_empty());
    }

    #[tokio::test]
    async fn transactions_stay_on_the_member_they_started_on() {
        let r = router_with_primary("a:1");
        let lsid = doc! {"id": bson::Uuid::new()};
        let start = doc! {"insert": "c", "lsid": lsid.clone(), "txnNumber": 3i64, "startTransaction": true, "autocommit": false, "$db": "d"};
        let first = route_of(&r, start).await;
        assert_eq!((&*first.target.member, first.pin), ("a:1", Pin::Primary));
        // The primary moves; the next statement stays on a:1.
        r.topology().observe_hello("a:1", &hello(false, 1));
        r.topology().observe_hello("b:1", &hello(true, 2));
        let next = doc! {"find": "c", "lsid": lsid.clone(), "txnNumber": 3i64, "autocommit": false, "$db": "d"};
        let second = route_of(&r, next.clone()).await;
        assert_eq!(
            (&*second.target.member, second.pin),
            ("a:1", Pin::Transaction)
        );
        // Commit goes to the current primary, and ends the pin.
        let commit = doc! {"commitTransaction": 1, "lsid": lsid.clone(), "txnNumber": 3i64, "autocommit": false, "$db": "admin"};
        let c = route_of(&r, commit.clone()).await;
        assert_eq!((&*c.target.member, c.pin), ("b:1", Pin::Primary));
        with_view(commit, |v| {
            r.learn(
                v,
                v.classify(),
                &c.target,
                &summary(doc! {"ok": 1.0}),
                &"service".into(),
            )
        });
        let after = route_of(&r, next).await;
        assert_eq!((&*after.target.member, after.pin), ("b:1", Pin::Primary));
        // Another txnNumber on the same session is not pinned to the old one.
        let other =
            doc! {"find": "c", "lsid": lsid, "txnNumber": 4i64, "autocommit": false, "$db": "d"};
        assert_eq!(route_of(&r, other).await.pin, Pin::Primary);
    }

    #[tokio::test]
    async fn a_reported_failure_makes_requests_wait_for_the_next_primary() {
        let r = router_with_primary("a:1");
        let first = route_of(&r, doc! {"find": "c", "$db": "d"}).await;
        r.report_failure(&first.target);
        assert!(r.snapshot().primary.is_none());
        let waiting = {
            let fr = frame(doc! {"find": "c", "$db": "d"});
            let deadline = Instant::now() + Duration::from_millis(200);
            async move {
                let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
                    unreachable!()
                };
                let v = CommandView::from_msg(&m).unwrap();
                r.route(&v, v.classify(), fr.len(), deadline, None, primary_reads())
                    .await
                    .map(|r| r.target)
            }
        };
        // Nobody becomes primary: the gate times out.
        assert!(matches!(waiting.await, Err(GateError::HoldTimeout { .. })));
    }

    #[tokio::test]
    async fn a_failure_of_an_older_epoch_is_ignored() {
        let r = router_with_primary("a:1");
        let stale = Target {
            member: "a:1".into(),
            epoch: r.snapshot().epoch - 1,
        };
        r.report_failure(&stale);
        assert_eq!(r.snapshot().primary.as_deref(), Some("a:1"));
    }

    fn secondary_hello(tags: bson::Document) -> bson::Document {
        let mut d = hello(false, 1);
        d.insert("tags", tags);
        d.insert("lastWrite", doc! {"lastWriteDate": bson::DateTime::now(), "opTime": {"ts": bson::Timestamp { time: 1, increment: 1 }, "t": 1i64}});
        d
    }

    #[tokio::test]
    async fn reads_follow_their_read_preference_and_wait_when_none_suits() {
        let t = Topology::manual(&["a:1", "b:1"]);
        t.observe_hello("a:1", &hello(true, 1));
        t.observe_hello("b:1", &secondary_hello(doc! {"dc": "west"}));
        let r = Router::new(t, settings());
        let deadline = Instant::now() + Duration::from_millis(300);
        let fr = frame(doc! {"find": "c", "$db": "d"});
        let Message::Msg(m) = fr.parse(&Limits::default()).unwrap() else {
            unreachable!()
        };
        let v = CommandView::from_msg(&m).unwrap();
        let route = |mode: crate::read_preference::Mode, tags: Vec<bson::Document>| {
            let pref = ReadPreference {
                mode,
                tag_sets: tags,
                max_staleness: None,
            };
            let r = &r;
            let v = &v;
            async move {
                let reads = Reads {
                    pref: &pref,
                    secondary_ok: true,
                    after: None,
                    avoid: &[],
                    owner: "service",
                };
                r.route(v, v.classify(), 10, deadline, None, reads).await
            }
        };
        use crate::read_preference::Mode;
        assert_eq!(
            &*route(Mode::Secondary, vec![]).await.unwrap().target.member,
            "b:1"
        );
        assert_eq!(
            &*route(Mode::SecondaryPreferred, vec![])
                .await
                .unwrap()
                .target
                .member,
            "b:1"
        );
        assert_eq!(
            &*route(Mode::Primary, vec![]).await.unwrap().target.member,
            "a:1"
        );
        assert_eq!(
            &*route(Mode::PrimaryPreferred, vec![])
                .await
                .unwrap()
                .target
                .member,
            "a:1"
        );
        // A tag no member has: secondaryPreferred falls back to the primary,
        // secondary waits and gives up with 133.
        let east = vec![doc! {"dc": "east"}];
        assert_eq!(
            &*route(Mode::SecondaryPreferred, east.clone())
                .await
                .unwrap()
                .target
                .member,
            "a:1"
        );
        assert!(matches!(
            route(Mode::Secondary, east).await,
            Err(GateError::NoSuitableMember {
                mode: "secondary",
                ..
            })
        ));
        // During an election secondaryPreferred reads go to the secondary at once.
        r.topology().observe_failure("a:1");
        let t0 = Instant::now();
        assert_eq!(
            &*route(Mode::SecondaryPreferred, vec![])
                .await
                .unwrap()
                .target
                .member,
            "b:1"
        );
        assert!(t0.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn sweeping_drops_idle_entries_only() {
        let c = Cursors::new(Duration::from_millis(0));
        c.insert(1, "a:1".into(), None, "service".into());
        c.insert(0, "a:1".into(), None, "service".into());
        assert_eq!(c.len(), 1, "cursor id 0 is never stored");
        c.sweep();
        assert!(c.is_empty());
        let keep = Cursors::new(Duration::from_secs(60));
        keep.insert(1, "a:1".into(), None, "service".into());
        keep.sweep();
        assert_eq!(keep.get(1).as_deref(), Some("a:1"));
        let t = TxnPins::new(Duration::from_secs(60));
        t.pin(b"s", 1, "a:1".into());
        t.sweep();
        assert_eq!(t.get(b"s", 1).as_deref(), Some("a:1"));
        assert_eq!(t.get(b"s", 2), None);
    }

    impl Router {
        fn snapshot_target(&self) -> Target {
            Target {
                member: self.snapshot().primary.clone().unwrap().into(),
                epoch: self.snapshot().epoch,
            }
        }
    }
}
