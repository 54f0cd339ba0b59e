//! The watcher: driver SDAM events + holdfast's own probes → one snapshot.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

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
}

impl TopologyConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        TopologyConfig {
            uri: uri.into(),
            probe_interval: Duration::from_millis(25),
            probe_timeout: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(2000),
        }
    }
}

struct Inner {
    members: Mutex<BTreeMap<String, MemberState>>,
    tx: watch::Sender<Arc<Snapshot>>,
    cfg: TopologyConfig,
    probing: AtomicBool,
    in_flight: Mutex<HashSet<String>>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
}

/// A handle on the watcher; cheap to clone. The driver's monitors and the
/// probes stop when the last handle is dropped or [`Topology::shutdown`] is called.
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
        let mut opts = ClientOptions::parse(&cfg.uri)
            .await
            .map_err(|e| TopologyError::BadUri(e.to_string()))?;
        let seeds: Vec<String> = opts.hosts.iter().map(|h| h.to_string()).collect();
        let (tx, _) = watch::channel(Arc::new(Snapshot::empty()));
        let inner = Arc::new(Inner {
            members: Mutex::new(
                seeds
                    .iter()
                    .map(|s| (s.clone(), MemberState::unknown(s)))
                    .collect(),
            ),
            tx,
            cfg: cfg.clone(),
            probing: AtomicBool::new(false),
            in_flight: Mutex::new(HashSet::new()),
            runtime: tokio::runtime::Handle::current(),
            closed: AtomicBool::new(false),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        opts.sdam_event_handler = Some(EventHandler::callback(move |ev: SdamEvent| {
            if let Some(inner) = weak.upgrade() {
                inner.on_sdam_event(ev);
            }
        }));
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

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.tx.borrow().clone()
    }

    /// Fast path: a forwarder saw a network error or a state-change error
    /// from `addr` while `epoch` was current. If `addr` is still the primary
    /// of that epoch, it is marked unknown at once and the set is probed
    /// until a primary is known. Reports about older epochs are ignored.
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
            let mut m = self.inner.members.lock().unwrap();
            if let Some(st) = m.get_mut(addr) {
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

    /// Stops the driver's monitors and the probes.
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }
}

impl Inner {
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
                self.mark_unknown(&addr);
            }
            SdamEvent::TopologyDescriptionChanged(e) => {
                let mut added = false;
                {
                    let mut m = self.members.lock().unwrap();
                    for addr in e.new_description.servers().keys() {
                        let a = addr.to_string();
                        if !m.contains_key(&a) {
                            m.insert(a.clone(), MemberState::unknown(&a));
                            added = true;
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

    fn update(self: &Arc<Self>, st: MemberState) {
        {
            let mut m = self.members.lock().unwrap();
            for h in &st.hosts {
                if !m.contains_key(h) {
                    m.insert(h.clone(), MemberState::unknown(h));
                }
            }
            match m.get(&st.addr) {
                Some(cur) if !cur.superseded_by(&st) => return,
                _ => {}
            }
            m.insert(st.addr.clone(), st);
        }
        self.publish();
    }

    fn mark_unknown(self: &Arc<Self>, addr: &str) {
        {
            let mut m = self.members.lock().unwrap();
            let e = m
                .entry(addr.to_string())
                .or_insert_with(|| MemberState::unknown(addr));
            e.role = Role::Unknown;
            e.topology_version = None;
        }
        self.publish();
    }

    /// Recomputes the snapshot; publishes it if anything routing-relevant changed.
    fn publish(self: &Arc<Self>) {
        let members: Vec<MemberState> = self.members.lock().unwrap().values().cloned().collect();
        let mut no_primary = false;
        self.tx.send_if_modified(|cur| {
            let next = Snapshot::derive(cur, members);
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

    /// Starts the probe loop unless it runs already. It probes every member
    /// each `probe_interval` (one probe in flight per member) until a
    /// primary is known.
    fn ensure_probing(self: &Arc<Self>) {
        if self.closed.load(Ordering::Relaxed) || self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::downgrade(self);
        self.runtime.spawn(async move {
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
                let addrs: Vec<String> = this.members.lock().unwrap().keys().cloned().collect();
                for addr in addrs {
                    if !this.in_flight.lock().unwrap().insert(addr.clone()) {
                        continue;
                    }
                    let this2 = this.clone();
                    tokio::spawn(async move {
                        let r = crate::probe::hello(&addr, this2.cfg.probe_timeout).await;
                        this2.in_flight.lock().unwrap().remove(&addr);
                        match r {
                            Ok(doc) => this2.update(MemberState::from_hello(&addr, &doc)),
                            Err(e) => {
                                debug!(member = %addr, error = %e, "probe failed");
                                this2.mark_unknown(&addr);
                            }
                        }
                    });
                }
                let interval = this.cfg.probe_interval;
                drop(this);
                tokio::time::sleep(interval).await;
            }
        });
    }
}
