//! The watcher: driver SDAM events + holdfast's own probes → one snapshot.
//!
//! A [`Topology`] runs in one of two modes:
//! - **driver** ([`Topology::start`]): a `mongodb` client monitors the set and
//!   its SDAM events feed the watcher; holdfast's own probes run while no
//!   primary is known.
//! - **manual** ([`Topology::manual`]): no client and no probes; the caller
//!   feeds hello replies and heartbeat failures with
//!   [`Topology::observe_hello`] and [`Topology::observe_failure`]. Meant for
//!   tests of code that routes on snapshots.
//!
//! Both modes share one code path from a hello reply (or a failure) to the
//! published snapshot, so what a test sees in manual mode is what the driver's
//! events produce.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bson::oid::ObjectId;
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use thiserror::Error;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::snapshot::{MemberState, Role, Snapshot};

#[derive(Debug, Error)]
pub enum TopologyError {
    #[error("invalid upstream connection string: {0}")]
    BadUri(String),
    #[error("could not start the replica-set monitor: {0}")]
    Driver(String),
}

/// How the watcher talks to the replica set.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// `mongodb://host:port,…/?replicaSet=…`
    pub uri: String,
    /// Interval between probe rounds while no primary is known.
    pub probe_interval: Duration,
    /// Timeout of one probe hello (connect included).
    pub probe_timeout: Duration,
    /// The driver's heartbeatFrequencyMS (its streaming hello's maxAwaitTimeMS).
    pub heartbeat: Duration,
    /// The driver's connectTimeoutMS for its monitors.
    pub connect_timeout: Duration,
    /// TLS for holdfast's probes (the driver's monitors take theirs from
    /// the connection string).
    pub tls: Option<holdfast_tls::Connector>,
}

impl TopologyConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        TopologyConfig {
            uri: uri.into(),
            probe_interval: Duration::from_millis(25),
            probe_timeout: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(2000),
            tls: None,
        }
    }
}

struct Inner {
    state: Mutex<State>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// How to probe the set; `None` in manual mode, where nothing is probed.
    probes: Option<Probes>,
    probing: AtomicBool,
    in_flight: Mutex<HashSet<String>>,
    /// When members that fail for good may be probed again.
    backoff: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    closed: AtomicBool,
}

/// What the watcher has heard, under one lock.
struct State {
    members: BTreeMap<String, MemberState>,
    /// The replica set's name: the connection string's `replicaSet`, else
    /// the first name a member reported. A member reporting another name
    /// is not a member of this set.
    set_name: Option<String>,
    /// The highest `(electionId, setVersion)` a primary has reported (SDAM's
    /// `maxElectionId` / `maxSetVersion`); a claim below it is stale.
    max_primary: Option<ElectionKey>,
}

/// `(electionId, setVersion)`, compared in that order; a missing value is
/// lower than any present one (SDAM's rule for MongoDB 6.0+, applied to
/// every server version).
type ElectionKey = (Option<ObjectId>, Option<i32>);

impl State {
    /// Does `st` belong to our set? The first name seen is ours if the
    /// connection string named none. A reply naming no set (standalone,
    /// ghost, error) is not rejected here; it is never primary anyway.
    fn same_set(&mut self, st: &MemberState) -> bool {
        let Some(name) = &st.set_name else {
            return true;
        };
        match &self.set_name {
            None => {
                self.set_name = Some(name.clone());
                true
            }
            Some(ours) if ours == name => true,
            Some(ours) => {
                // Warn once per change, not at every probe of that member.
                let news = match self.members.get(&st.addr) {
                    Some(cur) => cur.set_name != st.set_name,
                    None => true,
                };
                if news {
                    warn!(member = %st.addr, set = %name, ours = %ours,
                        "member reports another replica set's name; ignored");
                }
                false
            }
        }
    }

    /// `st` claims to be primary. Accepts the claim unless a primary has
    /// already reported a higher `(electionId, setVersion)`: then `st` is a
    /// stale primary (deposed, but not yet aware of it) and `false` is
    /// returned. An accepted claim raises the maximum and marks every other
    /// claimant Unknown, so that a deposed primary cannot come back as soon
    /// as the newer one fails.
    fn accept_primary(&mut self, st: &MemberState) -> bool {
        let key: ElectionKey = (st.election_id, st.set_version);
        if self.max_primary.is_some_and(|max| max > key) {
            debug!(
                member = %st.addr,
                "stale primary ignored: its electionId/setVersion is lower than one already seen"
            );
            return false;
        }
        self.max_primary = Some(key);
        for (addr, other) in self.members.iter_mut() {
            if *addr != st.addr && other.role == Role::Primary {
                debug!(member = %addr, newer = %st.addr, "old primary marked unknown");
                other.role = Role::Unknown;
                other.topology_version = None;
            }
        }
        true
    }
}

/// What the probe loop needs (driver mode only).
struct Probes {
    cfg: TopologyConfig,
    runtime: tokio::runtime::Handle,
}

/// A handle on the watcher; cheap to clone. The driver's monitors and the
/// probes stop when the last handle is dropped or [`Topology::shutdown`] is called.
///
/// Made by [`Topology::start`] (driver mode: a `mongodb` client's SDAM
/// events feed it, and holdfast probes the set while no primary is known)
/// or by [`Topology::manual`] (manual mode, for tests: no client, no probes;
/// fed with [`Topology::observe_hello`] and [`Topology::observe_failure`]).
/// Both modes take a reply or a failure down the same path to the snapshot.
#[derive(Clone)]
pub struct Topology {
    inner: Arc<Inner>,
    _client: Arc<ClientGuard>,
}

struct ClientGuard(Option<mongodb::Client>, Arc<Inner>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.1.closed.store(true, Ordering::SeqCst);
        if let Some(c) = self.0.take() {
            // Shut the driver's monitors down in the background.
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move { c.shutdown().immediate(true).await });
            }
        }
    }
}

impl Topology {
    /// Starts watching. Returns at once; the first primary usually appears
    /// within a few milliseconds (see [`Topology::wait_for_primary`]).
    pub async fn start(cfg: TopologyConfig) -> Result<Topology, TopologyError> {
        let (uri, relaxed_hostnames) = crate::uri::take_allow_invalid_hostnames(&cfg.uri);
        let mut opts = ClientOptions::parse(&uri)
            .await
            .map_err(|e| TopologyError::BadUri(e.to_string()))?;
        let seeds: Vec<String> = opts.hosts.iter().map(|h| h.to_string()).collect();
        let inner = Inner::new(
            &seeds,
            opts.repl_set_name.clone(),
            Some(Probes {
                cfg: cfg.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
        );
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        opts.sdam_event_handler = Some(EventHandler::callback(move |ev: SdamEvent| {
            if let Some(inner) = weak.upgrade() {
                inner.on_sdam_event(ev);
            }
        }));
        // Monitoring needs no login (hello and ping run before one); the
        // credentials are holdfast's backend connections' business.
        opts.credential = None;
        if let (Some(mongodb::options::Tls::Enabled(t)), Some(true)) =
            (&mut opts.tls, relaxed_hostnames)
        {
            // With rustls the driver cannot skip the host-name check alone:
            // under tlsAllowInvalidHostnames its monitors accept any
            // certificate. They carry no credentials and no data; backend
            // connections and holdfast's probes still verify the chain.
            t.allow_invalid_certificates = Some(true);
        }
        opts.heartbeat_freq = Some(cfg.heartbeat);
        opts.connect_timeout = Some(cfg.connect_timeout);
        opts.app_name = Some("holdfast-topology".into());
        let client = mongodb::Client::with_options(opts)
            .map_err(|e| TopologyError::Driver(e.to_string()))?;
        // Ask the driver to start monitoring now rather than at first use.
        let warm = client.clone();
        tokio::spawn(async move {
            let _ = warm
                .database("admin")
                .run_command(bson::doc! {"ping": 1})
                .await;
        });
        inner.ensure_probing();
        Ok(Topology {
            _client: Arc::new(ClientGuard(Some(client), inner.clone())),
            inner,
        })
    }

    /// A watcher without a driver, for tests of code that routes on
    /// snapshots: no `mongodb` client is made and no probe is ever sent (not
    /// even by [`Topology::report_failure`]). Every seed starts as an Unknown
    /// member; the snapshot changes only through [`Topology::observe_hello`],
    /// [`Topology::observe_failure`] and [`Topology::report_failure`].
    ///
    /// Seeds are `host:port` strings, as the replica set names its members.
    /// The set's name is the first one a reply reports (driver mode takes
    /// it from the connection string); a member reporting another name is
    /// recorded as [`Role::Other`](crate::Role::Other) and never primary.
    /// No tokio runtime is needed to make or feed a manual topology (the
    /// async [`Topology::wait_for_primary`] needs one, as always).
    ///
    /// ```
    /// use bson::doc;
    /// use holdfast_topology::Topology;
    ///
    /// let topo = Topology::manual(&["a:27017", "b:27017"]);
    /// assert_eq!(topo.snapshot().primary, None);
    /// topo.observe_hello(
    ///     "a:27017",
    ///     &doc! {"ok": 1.0, "isWritablePrimary": true, "setName": "rs", "hosts": ["a:27017", "b:27017"]},
    /// );
    /// let snap = topo.snapshot();
    /// assert_eq!(snap.primary.as_deref(), Some("a:27017"));
    /// topo.report_failure("a:27017", snap.epoch);
    /// assert_eq!(topo.snapshot().primary, None);
    /// ```
    pub fn manual(seeds: &[&str]) -> Topology {
        let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        let inner = Inner::new(&seeds, None, None);
        // The first snapshot lists the seeds (driver mode lists them at its
        // first event).
        inner.publish();
        Topology {
            _client: Arc::new(ClientGuard(None, inner.clone())),
            inner,
        }
    }

    /// Records a hello (or legacy isMaster) reply from `addr`, exactly as a
    /// successful driver heartbeat does: the same ordering rules apply (a
    /// reply older than the member's current `topologyVersion` is ignored),
    /// hosts it lists become members, and a new snapshot is published if
    /// anything routing-relevant changed. An `ok: 0` reply makes the member
    /// Unknown.
    ///
    /// Meant for manual mode ([`Topology::manual`]); in driver mode the reply
    /// mixes with the driver's own. Ignored after [`Topology::shutdown`].
    pub fn observe_hello(&self, addr: &str, reply: &bson::Document) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        self.inner.update(MemberState::from_hello(addr, reply));
    }

    /// Records a failed heartbeat of `addr`, exactly as a failed driver
    /// heartbeat does: the member becomes Unknown and its `topologyVersion`
    /// is forgotten (so its next reply is accepted whatever its counter).
    /// If it was the primary, the next snapshot has none (and a new epoch).
    ///
    /// Meant for manual mode ([`Topology::manual`]). Ignored after
    /// [`Topology::shutdown`].
    pub fn observe_failure(&self, addr: &str) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        self.inner.mark_unknown(addr, None);
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.tx.borrow().clone()
    }

    /// How often members are checked (the driver's heartbeat frequency):
    /// the term read-preference staleness estimates add.
    pub fn heartbeat(&self) -> Duration {
        match &self.inner.probes {
            Some(p) => p.cfg.heartbeat,
            None => TopologyConfig::new("").heartbeat,
        }
    }

    /// Fast path: a forwarder saw a network error or a state-change error
    /// from `addr` while `epoch` was current. If `addr` is still the primary
    /// of that epoch, it is marked unknown at once (a new snapshot without a
    /// primary is published) and the set is probed until a primary is known.
    /// Reports about older epochs, or about a member that is not the primary
    /// of `epoch`, are ignored.
    ///
    /// In manual mode the member is marked unknown the same way, but nothing
    /// is probed: the next primary is whatever [`Topology::observe_hello`]
    /// reports.
    pub fn report_failure(&self, addr: &str, epoch: u64) {
        let snap = self.snapshot();
        if snap.epoch != epoch || snap.primary.as_deref() != Some(addr) {
            return;
        }
        info!(
            member = addr,
            "primary reported failed by a forwarder; probing the set"
        );
        {
            let mut state = self.inner.state.lock().unwrap();
            if let Some(st) = state.members.get_mut(addr) {
                st.role = Role::Unknown;
            }
        }
        self.inner.publish();
        self.inner.ensure_probing();
    }

    /// Waits until a primary is known, up to `timeout`.
    pub async fn wait_for_primary(&self, timeout: Duration) -> Option<Arc<Snapshot>> {
        let mut rx = self.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| s.primary.is_some())).await;
        match r {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Stops the driver's monitors and the probes; later driver events and
    /// `observe_*` calls are ignored.
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }
}

impl Inner {
    fn new(seeds: &[String], set_name: Option<String>, probes: Option<Probes>) -> Arc<Inner> {
        let (tx, _) = watch::channel(Arc::new(Snapshot {
            set_name: set_name.clone(),
            ..Snapshot::empty()
        }));
        Arc::new(Inner {
            state: Mutex::new(State {
                members: seeds
                    .iter()
                    .map(|s| (s.clone(), MemberState::unknown(s)))
                    .collect(),
                set_name,
                max_primary: None,
            }),
            tx,
            probes,
            probing: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
            backoff: Mutex::new(Default::default()),
            closed: AtomicBool::new(false),
        })
    }

    fn on_sdam_event(self: &Arc<Self>, ev: SdamEvent) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        match ev {
            SdamEvent::ServerHeartbeatSucceeded(e) => {
                let addr = e.server_address.to_string();
                self.update(MemberState::from_hello(&addr, &e.reply));
            }
            SdamEvent::ServerHeartbeatFailed(e) => {
                let addr = e.server_address.to_string();
                debug!(member = %addr, "driver heartbeat failed");
                self.mark_unknown(&addr, None);
            }
            SdamEvent::TopologyDescriptionChanged(e) => {
                let mut added = false;
                {
                    let m = &mut self.state.lock().unwrap().members;
                    for (addr, info) in e.new_description.servers() {
                        let a = addr.to_string();
                        if !m.contains_key(&a) {
                            m.insert(a.clone(), MemberState::unknown(&a));
                            added = true;
                        }
                        if let (Some(st), Some(rtt)) =
                            (m.get_mut(&a), info.average_round_trip_time())
                        {
                            st.rtt = Some(rtt);
                        }
                    }
                }
                if added {
                    self.publish();
                }
            }
            _ => {}
        }
    }

    fn update(self: &Arc<Self>, mut st: MemberState) {
        {
            let mut state = self.state.lock().unwrap();
            // A reply older than what we know is ignored whole, hosts too.
            match state.members.get(&st.addr) {
                Some(cur) if !cur.superseded_by(&st) => return,
                _ => {}
            }
            if !state.same_set(&st) {
                // Not a member of our set: never primary, and its hosts
                // list is not ours (SDAM removes it; we keep it as Other).
                st.role = Role::Other;
            } else if st.role == Role::Primary && !state.accept_primary(&st) {
                // A stale primary is Unknown, and its hosts list is not
                // trusted (as in SDAM).
                st.role = Role::Unknown;
            } else {
                for h in &st.hosts {
                    if !state.members.contains_key(h) {
                        state.members.insert(h.clone(), MemberState::unknown(h));
                    }
                }
            }
            // The driver measures RTTs; a hello reply does not carry one.
            if let Some(cur) = state.members.get(&st.addr) {
                st.rtt = cur.rtt;
            }
            state.members.insert(st.addr.clone(), st);
        }
        self.publish();
    }

    /// `addr` did not answer. `failure`: why, when waiting will not fix it
    /// (kept until the member answers again).
    fn mark_unknown(self: &Arc<Self>, addr: &str, failure: Option<String>) {
        {
            let mut state = self.state.lock().unwrap();
            let e = state
                .members
                .entry(addr.to_string())
                .or_insert_with(|| MemberState::unknown(addr));
            e.role = Role::Unknown;
            e.topology_version = None;
            if let Some(f) = failure {
                if e.failure.as_deref() != Some(f.as_str()) {
                    warn!(member = %addr, error = %f, "cannot use this member until its TLS settings are fixed; requests are refused while no member can be used");
                }
                e.failure = Some(f);
            }
        }
        self.publish();
    }

    /// A member that fails for good is probed once a second, not at every
    /// `probe_interval`: true when it is time again.
    fn backoff_passed(&self, addr: &str) -> bool {
        let mut next = self.backoff.lock().unwrap();
        let now = std::time::Instant::now();
        match next.get(addr) {
            Some(t) if *t > now => false,
            _ => {
                next.insert(addr.to_string(), now + Duration::from_secs(1));
                true
            }
        }
    }

    /// Recomputes the snapshot; publishes it if anything routing-relevant changed.
    fn publish(self: &Arc<Self>) {
        let (members, set_name) = {
            let state = self.state.lock().unwrap();
            let members: Vec<MemberState> = state.members.values().cloned().collect();
            (members, state.set_name.clone())
        };
        let mut no_primary = false;
        self.tx.send_if_modified(|cur| {
            let mut next = Snapshot::derive(cur, members);
            // Ours, not whichever member's comes first.
            if set_name.is_some() {
                next.set_name = set_name;
            }
            if next.same_as(cur) {
                return false;
            }
            if next.primary != cur.primary {
                match &next.primary {
                    Some(p) => info!(primary = %p, epoch = next.epoch, "primary known"),
                    None => warn!(epoch = next.epoch, "no primary known"),
                }
            }
            no_primary = next.primary.is_none();
            *cur = Arc::new(next);
            true
        });
        if no_primary {
            self.ensure_probing();
        }
    }

    /// Starts the probe loop unless it runs already (or this is a manual
    /// topology, which never probes). It probes every member each
    /// `probe_interval` (one probe in flight per member) until a primary is
    /// known.
    fn ensure_probing(self: &Arc<Self>) {
        let Some(probes) = &self.probes else { return };
        if self.closed.load(Ordering::Relaxed) || self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (interval, timeout) = (probes.cfg.probe_interval, probes.cfg.probe_timeout);
        let tls = probes.cfg.tls.clone();
        let inner = Arc::downgrade(self);
        probes.runtime.spawn(async move {
            loop {
                let Some(this) = inner.upgrade() else { return };
                if this.closed.load(Ordering::Relaxed) {
                    return;
                }
                if this.tx.borrow().primary.is_some() {
                    this.probing.store(false, Ordering::SeqCst);
                    // Re-check: a failure may have been reported meanwhile.
                    if this.tx.borrow().primary.is_some()
                        || this.probing.swap(true, Ordering::SeqCst)
                    {
                        return;
                    }
                }
                let addrs: Vec<(String, bool)> = this
                    .state
                    .lock()
                    .unwrap()
                    .members
                    .values()
                    .map(|m| (m.addr.clone(), m.failure.is_some()))
                    .collect();
                for (addr, failing) in addrs {
                    if failing && !this.backoff_passed(&addr) {
                        continue;
                    }
                    if !this.in_flight.lock().unwrap().insert(addr.clone()) {
                        continue;
                    }
                    let this2 = this.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let r = crate::probe::hello(&addr, timeout, tls.as_ref()).await;
                        this2.in_flight.lock().unwrap().remove(&addr);
                        match r {
                            Ok(doc) => this2.update(MemberState::from_hello(&addr, &doc)),
                            Err(e) => {
                                debug!(member = %addr, error = %e, "probe failed");
                                let failure = holdfast_tls::is_certificate_error(&e).then(|| {
                                    metrics::counter!("holdfast_tls_handshake_failures_total", "side" => "upstream").increment(1);
                                    format!("TLS handshake failed: {e}")
                                });
                                this2.mark_unknown(&addr, failure);
                            }
                        }
                    });
                }
                drop(this);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The watcher when the connection string names the set, as in driver
    //! mode (without a driver).

    use super::*;
    use bson::doc;

    fn manual_in_set(seeds: &[&str], set_name: &str) -> Topology {
        let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        let inner = Inner::new(&seeds, Some(set_name.to_string()), None);
        inner.publish();
        Topology {
            _client: Arc::new(ClientGuard(None, inner.clone())),
            inner,
        }
    }

    #[test]
    fn named_set_is_in_the_first_snapshot() {
        let t = manual_in_set(&["a:27017"], "rs");
        let s = t.snapshot();
        assert_eq!(s.set_name.as_deref(), Some("rs"));
        assert_eq!(s.primary, None);
        assert_eq!(s.epoch, 0);
    }

    #[test]
    fn first_reply_of_another_set_is_not_adopted() {
        // SDAM's primary_wrong_set_name and wrong_set_name.
        let t = manual_in_set(&["a:27017", "b:27017"], "rs");
        t.observe_hello(
            "a:27017",
            &doc! {"ok": 1, "isWritablePrimary": true, "setName": "wrong", "hosts": ["a:27017"]},
        );
        t.observe_hello(
            "b:27017",
            &doc! {"ok": 1, "secondary": true, "setName": "wrong", "hosts": ["b:27017", "c:27017"]},
        );
        let s = t.snapshot();
        assert_eq!(s.primary, None);
        assert_eq!(s.set_name.as_deref(), Some("rs"));
        assert_eq!(s.member("a:27017").unwrap().role, Role::Other);
        assert_eq!(s.member("b:27017").unwrap().role, Role::Other);
        assert!(s.member("c:27017").is_none());
        t.observe_hello(
            "b:27017",
            &doc! {"ok": 1, "isWritablePrimary": true, "setName": "rs", "hosts": ["a:27017", "b:27017"]},
        );
        let s = t.snapshot();
        assert_eq!(s.primary.as_deref(), Some("b:27017"));
        assert_eq!(s.epoch, 1);
    }

    #[test]
    fn other_set_with_a_greater_election_id_does_not_depose_ours() {
        let oid = |n: u8| {
            let mut b = [0u8; 12];
            b[11] = n;
            ObjectId::from_bytes(b)
        };
        let t = manual_in_set(&["a:27017", "b:27017"], "rs");
        t.observe_hello(
            "a:27017",
            &doc! {"ok": 1, "isWritablePrimary": true, "setName": "rs", "electionId": oid(1)},
        );
        t.observe_hello(
            "b:27017",
            &doc! {"ok": 1, "isWritablePrimary": true, "setName": "other", "electionId": oid(9)},
        );
        t.observe_failure("a:27017");
        // Had "other"'s election counted, ours would now be stale.
        t.observe_hello(
            "a:27017",
            &doc! {"ok": 1, "isWritablePrimary": true, "setName": "rs", "electionId": oid(1)},
        );
        let s = t.snapshot();
        assert_eq!(s.primary.as_deref(), Some("a:27017"));
        assert_eq!(s.member("b:27017").unwrap().role, Role::Other);
    }
}
