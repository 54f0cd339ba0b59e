//! The replica set: one replicated log, members' applied positions,
//! write-concern waits, stepdowns, elections, kills and revivals.
//!
//! Locking: a member's `data` mutex is always taken before the set's `repl`
//! mutex, and neither is held across an `.await`. Every change of a
//! member's role happens with that member's `data` locked, so a write that
//! found its member writable executes and appends to the log before any
//! stepdown can start.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, DateTime, Document, Timestamp};
use parking_lot::Mutex;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::SimConfig;
use crate::errors::{self, CmdError};
use crate::member::{Member, MemberData, Process, TopologyVersion};
use crate::oplog::{pack_ts, Clock, Entry, EntryKind, EntryRef, OpTime};
use crate::state::{MemberState, MemberStatus, SimState};

/// Replication state of one member, as the set sees it.
#[derive(Debug, Clone)]
pub struct MemberRepl {
    pub alive: bool,
    /// Number of log entries applied to its store.
    pub applied: usize,
    /// Optime and wall time of the last entry applied.
    pub last: OpTime,
    pub last_wall: DateTime,
    pub frozen_until: Option<Instant>,
    /// A stepped-down primary may not stand for election until then.
    pub no_elect_until: Option<Instant>,
    pub stepping_down: bool,
}

impl MemberRepl {
    fn new() -> Self {
        MemberRepl {
            alive: true,
            applied: 0,
            last: OpTime::NULL,
            last_wall: DateTime::from_millis(0),
            frozen_until: None,
            no_elect_until: None,
            stepping_down: false,
        }
    }

    fn can_stand(&self, now: Instant) -> bool {
        self.alive
            && !self.stepping_down
            && self.frozen_until.is_none_or(|t| t <= now)
            && self.no_elect_until.is_none_or(|t| t <= now)
    }
}

/// Set-wide replication state (one mutex).
pub struct Repl {
    pub term: i64,
    pub primary: Option<usize>,
    /// Entries `base + 1 ..= end()`; older ones were compacted away once
    /// every live member had applied them.
    log: Vec<EntryRef>,
    base: usize,
    base_optime: (OpTime, DateTime),
    /// Entries kept behind the slowest live member ([`LOG_RETAIN`]).
    pub retain: usize,
    pub members: Vec<MemberRepl>,
    pub clock: Clock,
    pub election_due: Option<Instant>,
    /// replSetStepUp: only this member may win the next election.
    pub preferred: Option<usize>,
    /// Bumped at every change that can invalidate an election decision.
    pub generation: u64,
    pub election_completed_at: Option<Instant>,
    pub election_date: Option<DateTime>,
    pub election_optime: OpTime,
    pub primary_lost_at: Option<Instant>,
}

/// Entries kept behind the slowest live member when the log is compacted.
pub const LOG_RETAIN: usize = 10_000;

impl Repl {
    /// Index of the last entry (entries are numbered from 1).
    pub fn end(&self) -> usize {
        self.base + self.log.len()
    }

    /// Index of the oldest entry still kept, minus one.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Entry `index` (1-based), if still kept.
    pub fn entry(&self, index: usize) -> Option<&EntryRef> {
        if index <= self.base {
            return None;
        }
        self.log.get(index - 1 - self.base)
    }

    /// Entries after position `start` (0-based count of entries), or `None`
    /// if some of them were compacted away.
    pub fn entries_after(&self, start: usize) -> Option<&[EntryRef]> {
        if start < self.base {
            return None;
        }
        Some(self.log.get(start - self.base..).unwrap_or(&[]))
    }

    fn push(&mut self, e: EntryRef) {
        self.log.push(e);
    }

    /// Drops entries after `end`.
    fn truncate(&mut self, end: usize) {
        self.log.truncate(end.saturating_sub(self.base));
    }

    /// Forgets entries every live member applied long ago.
    fn compact(&mut self) {
        let retain = self.retain.max(1);
        if self.log.len() < 3 * retain {
            return;
        }
        let slowest = self
            .members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.applied)
            .min()
            .unwrap_or(0);
        let cut = slowest.saturating_sub(retain);
        if cut <= self.base + retain {
            return;
        }
        let e = &self.log[cut - 1 - self.base];
        self.base_optime = (e.optime, e.wall);
        self.log.drain(..cut - self.base);
        self.base = cut;
    }

    pub fn live(&self) -> usize {
        self.members.iter().filter(|m| m.alive).count()
    }

    /// Highest log position held by a live member: what can still be
    /// replicated from someone.
    pub fn max_live_applied(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.applied)
            .max()
            .unwrap_or(0)
            .min(self.end())
    }

    /// The optime and wall time of log position `index` (1-based).
    pub fn optime_at(&self, index: usize) -> (OpTime, DateTime) {
        if index == 0 || index > self.end() {
            return (OpTime::NULL, DateTime::from_millis(0));
        }
        match self.entry(index) {
            Some(e) => (e.optime, e.wall),
            None => self.base_optime,
        }
    }

    /// The majority commit point: the highest position applied by a
    /// majority of members.
    pub fn majority_index(&self, majority: usize) -> usize {
        let mut applied: Vec<usize> = self.members.iter().map(|m| m.applied).collect();
        applied.sort_unstable_by(|a, b| b.cmp(a));
        applied
            .get(majority.saturating_sub(1))
            .copied()
            .unwrap_or(0)
            .min(self.end())
    }

    /// The writable primary, if any.
    pub fn writable_primary(&self) -> Option<usize> {
        self.primary.filter(|p| !self.members[*p].stepping_down)
    }
}

/// `w` of a write concern.
#[derive(Debug, Clone, PartialEq)]
pub enum W {
    Nodes(i64),
    Majority,
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WriteConcern {
    pub w: W,
    pub wtimeout_ms: Option<i64>,
    /// Given by the client (otherwise the implicit default `w: "majority"`).
    pub explicit: bool,
}

impl WriteConcern {
    /// Parses `writeConcern` from a command. Without one, MongoDB 5.0+
    /// replica sets use the implicit default `{w: "majority"}`.
    pub fn from_command(cmd: &Document) -> Result<WriteConcern, CmdError> {
        let Some(wc) = cmd.get("writeConcern") else {
            return Ok(WriteConcern {
                w: W::Majority,
                wtimeout_ms: None,
                explicit: false,
            });
        };
        let bson::Bson::Document(wc) = wc else {
            return Err(CmdError::new(
                errors::FAILED_TO_PARSE,
                "writeConcern must be an object",
            ));
        };
        let w = match wc.get("w") {
            None => W::Majority,
            Some(v) => match v {
                bson::Bson::String(s) if s == "majority" => W::Majority,
                bson::Bson::String(s) => W::Tag(s.clone()),
                other => match crate::cmd::as_i64(other) {
                    Some(n) if n >= 0 => W::Nodes(n),
                    _ => {
                        return Err(CmdError::new(
                            errors::FAILED_TO_PARSE,
                            "w has to be a number or string",
                        ))
                    }
                },
            },
        };
        let wtimeout_ms = wc.get("wtimeout").and_then(crate::cmd::as_i64);
        Ok(WriteConcern {
            w,
            wtimeout_ms,
            explicit: true,
        })
    }

    pub fn is_unacknowledged(&self) -> bool {
        self.w == W::Nodes(0)
    }

    fn to_document(&self) -> Document {
        let mut d = match &self.w {
            W::Nodes(n) => doc! { "w": *n as i32 },
            W::Majority => doc! { "w": "majority" },
            W::Tag(t) => doc! { "w": t.clone() },
        };
        d.insert("wtimeout", self.wtimeout_ms.unwrap_or(0) as i32);
        d.insert(
            "provenance",
            if self.explicit {
                "clientSupplied"
            } else {
                "implicitDefault"
            },
        );
        d
    }
}

/// Everything shared by the members of one set.
pub struct SetInner {
    pub cfg: SimConfig,
    pub lag: Duration,
    pub members: Vec<Member>,
    pub hosts: Vec<String>,
    pub repl: Mutex<Repl>,
    /// Bumped when the log grows or shrinks, or a member comes back:
    /// appliers wake up.
    pub log_tx: watch::Sender<u64>,
    /// Bumped when any member applies entries or changes role:
    /// write-concern waiters re-check.
    pub progress_tx: watch::Sender<u64>,
    pub state_tx: watch::Sender<SimState>,
    pub election_notify: Notify,
    pub cancel: CancellationToken,
    pub cluster_time: std::sync::atomic::AtomicU64,
    pub replica_set_id: ObjectId,
}

impl SetInner {
    pub fn new(cfg: SimConfig, addrs: Vec<std::net::SocketAddr>) -> SetInner {
        let members: Vec<Member> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Member::new(i, *a))
            .collect();
        let hosts = members.iter().map(|m| m.host.clone()).collect();
        let repl = Repl {
            term: 0,
            primary: None,
            log: Vec::new(),
            base: 0,
            base_optime: (OpTime::NULL, DateTime::from_millis(0)),
            retain: LOG_RETAIN,
            members: (0..members.len()).map(|_| MemberRepl::new()).collect(),
            clock: Clock::default(),
            election_due: None,
            preferred: None,
            generation: 0,
            election_completed_at: None,
            election_date: None,
            election_optime: OpTime::NULL,
            primary_lost_at: None,
        };
        let state = SimState {
            primary: None,
            term: 0,
            election_completed_at: None,
            primary_lost_at: None,
            election_due_at: None,
            members: Vec::new(),
        };
        SetInner {
            lag: Duration::from_millis(cfg.repl_lag_ms),
            cfg,
            members,
            hosts,
            repl: Mutex::new(repl),
            log_tx: watch::Sender::new(0),
            progress_tx: watch::Sender::new(0),
            state_tx: watch::Sender::new(state),
            election_notify: Notify::new(),
            cancel: CancellationToken::new(),
            cluster_time: std::sync::atomic::AtomicU64::new(0),
            replica_set_id: ObjectId::new(),
        }
    }

    fn election_delay(&self) -> Duration {
        Duration::from_millis(self.cfg.election_ms)
    }

    pub fn cluster_time(&self) -> Timestamp {
        crate::oplog::unpack_ts(self.cluster_time.load(Ordering::Acquire))
    }

    // ----- the log ---------------------------------------------------------

    /// Appends an entry written by `member` (the primary, whose store already
    /// reflects it). Returns its 1-based index. Caller holds the member's
    /// data lock and `repl`, and calls [`Self::notify_log`] after unlocking.
    pub fn append(&self, repl: &mut Repl, member: usize, kind: EntryKind) -> usize {
        let ts = repl.clock.tick();
        let entry = Arc::new(Entry {
            optime: OpTime {
                ts,
                term: repl.term,
            },
            wall: DateTime::now(),
            at: Instant::now(),
            kind,
        });
        repl.push(entry.clone());
        let index = repl.end();
        self.mark_applied(repl, member, index, &entry);
        repl.compact();
        index
    }

    fn mark_applied(&self, repl: &mut Repl, member: usize, index: usize, entry: &Entry) {
        let mr = &mut repl.members[member];
        mr.applied = index;
        mr.last = entry.optime;
        mr.last_wall = entry.wall;
        let m = &self.members[member];
        m.applied.store(index, Ordering::Release);
        let packed = pack_ts(entry.optime.ts);
        m.last_applied_ts.store(packed, Ordering::Release);
        self.cluster_time.fetch_max(packed, Ordering::AcqRel);
    }

    /// Applies log positions `applied..target` of `member` to its data.
    fn apply_range(&self, data: &mut MemberData, repl: &mut Repl, member: usize, target: usize) {
        let start = repl.members[member].applied;
        for k in start..target.min(repl.end()) {
            let Some(e) = repl.entry(k + 1).cloned() else {
                // Compacted away: only an initial sync can catch up.
                return;
            };
            data.apply_entry(&e, k + 1);
            self.mark_applied(repl, member, k + 1, &e);
        }
    }

    pub fn notify_log(&self) {
        self.log_tx.send_modify(|v| *v = v.wrapping_add(1));
        self.notify_progress();
    }

    pub fn notify_progress(&self) {
        self.progress_tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Members alive that applied log position `index`.
    pub fn count_applied(&self, index: usize) -> usize {
        self.members
            .iter()
            .filter(|m| m.is_alive() && m.applied.load(Ordering::Acquire) >= index)
            .count()
    }

    /// Applies what is due on secondary `i`. Returns when the next entry
    /// becomes due, if one is waiting for its lag.
    fn apply_due(&self, i: usize) -> Option<Instant> {
        const CHUNK: usize = 2048;
        let m = &self.members[i];
        let mut data = m.data.lock();
        let mut repl = self.repl.lock();
        if !repl.members[i].alive || repl.primary == Some(i) {
            return None;
        }
        // Entries can come from any live member that has them.
        let avail = repl
            .members
            .iter()
            .enumerate()
            .filter(|(j, mr)| *j != i && mr.alive)
            .map(|(_, mr)| mr.applied)
            .max()
            .unwrap_or(0)
            .min(repl.end());
        let start = repl.members[i].applied;
        if start >= avail || start < repl.base() {
            return None;
        }
        let now = Instant::now();
        let mut k = start;
        let mut next_due = None;
        while k < avail {
            if k - start >= CHUNK {
                next_due = Some(now);
                break;
            }
            let due = repl.entry(k + 1).map(|e| e.at + self.lag).unwrap_or(now);
            if due > now {
                next_due = Some(due);
                break;
            }
            k += 1;
        }
        if k > start {
            self.apply_range(&mut data, &mut repl, i, k);
        }
        drop(repl);
        drop(data);
        if k > start {
            self.notify_progress();
        }
        next_due
    }

    /// A secondary's replication loop: applies entries after the lag.
    pub async fn applier(self: Arc<Self>, i: usize) {
        let mut log_rx = self.log_tx.subscribe();
        loop {
            log_rx.borrow_and_update();
            let next = self.apply_due(i);
            match next {
                // Entries appended meanwhile are due later: no need to
                // wake for them.
                Some(t) => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(t.into()) => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        r = log_rx.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }

    /// Waits until `index` satisfies the write concern. Returns the
    /// `writeConcernError` to attach to the reply, if any. `epoch` is the
    /// member's role epoch when the write executed: a role change since
    /// (stepdown) interrupts the wait with 11602.
    pub async fn wait_write_concern(
        &self,
        member: usize,
        index: usize,
        wc: &WriteConcern,
        epoch: u64,
    ) -> Option<Document> {
        let needed = match &wc.w {
            W::Nodes(n) => *n as usize,
            W::Majority => self.cfg.majority(),
            W::Tag(t) => {
                return Some(errors::write_concern_error(
                    errors::UNKNOWN_REPL_WRITE_CONCERN,
                    &format!(
                        "No write concern mode named '{t}' found in replica set configuration"
                    ),
                    None,
                ))
            }
        };
        if needed <= 1 {
            return None;
        }
        if needed > self.members.len() {
            return Some(errors::write_concern_error(
                errors::UNSATISFIABLE_WRITE_CONCERN,
                "Not enough data-bearing nodes",
                None,
            ));
        }
        let m = &self.members[member];
        let mut progress = self.progress_tx.subscribe();
        let mut role = m.role_epoch.subscribe();
        let deadline = wc
            .wtimeout_ms
            .filter(|t| *t > 0)
            .map(|t| tokio::time::Instant::now() + Duration::from_millis(t as u64));
        loop {
            if *role.borrow_and_update() != epoch {
                return Some(errors::write_concern_error(
                    errors::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
                    "operation was interrupted because a node stepped down",
                    None,
                ));
            }
            progress.borrow_and_update();
            if self.count_applied(index) >= needed {
                return None;
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = progress.changed() => {}
                _ = role.changed() => {}
                _ = timeout => {
                    return Some(errors::write_concern_error(
                        errors::WRITE_CONCERN_FAILED,
                        "waiting for replication timed out",
                        Some(doc! { "wtimeout": true, "writeConcern": wc.to_document() }),
                    ));
                }
            }
        }
    }

    /// Waits (bounded) until member `i` applied cluster time `ts`
    /// (`readConcern.afterClusterTime`).
    pub async fn wait_applied_ts(&self, i: usize, ts: Timestamp, limit: Duration) {
        let target = pack_ts(ts);
        let m = &self.members[i];
        let mut progress = self.progress_tx.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            progress.borrow_and_update();
            if m.last_applied_ts.load(Ordering::Acquire) >= target
                || self.cluster_time.load(Ordering::Acquire) < target
            {
                return;
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    // ----- state publication -----------------------------------------------

    pub fn snapshot(&self) -> SimState {
        let repl = self.repl.lock();
        let members = repl
            .members
            .iter()
            .enumerate()
            .map(|(i, mr)| {
                let m = &self.members[i];
                let state = if !mr.alive {
                    MemberState::Down
                } else if repl.primary == Some(i) {
                    if mr.stepping_down {
                        MemberState::SteppingDown
                    } else {
                        MemberState::Primary
                    }
                } else {
                    MemberState::Secondary
                };
                MemberStatus {
                    state,
                    alive: mr.alive,
                    blackholed: m.is_blackholed(),
                    latency: m.latency(),
                    applied: mr.applied as u64,
                }
            })
            .collect();
        SimState {
            primary: repl.writable_primary(),
            term: repl.term,
            election_completed_at: repl.election_completed_at,
            primary_lost_at: repl.primary_lost_at,
            election_due_at: repl.election_due,
            members,
        }
    }

    pub fn publish(&self) {
        let s = self.snapshot();
        self.state_tx.send_replace(s);
    }

    fn bump_all_live(&self) {
        for m in &self.members {
            if m.is_alive() {
                m.bump_topology();
            }
        }
    }

    /// After any role change: tell hellos, waiters, appliers, the election
    /// loop and subscribers.
    fn after_role_change(&self) {
        self.bump_all_live();
        self.notify_log();
        self.election_notify.notify_one();
        self.publish();
    }

    // ----- roles -----------------------------------------------------------

    /// Takes the primary role away from `p` (caller holds both locks).
    fn demote_locked(&self, data: &mut MemberData, repl: &mut Repl, p: usize) {
        if repl.primary == Some(p) {
            repl.primary = None;
            repl.primary_lost_at = Some(Instant::now());
        }
        repl.members[p].stepping_down = false;
        data.writable = false;
        data.abort_transactions();
        self.members[p].writable.store(false, Ordering::Release);
        repl.generation += 1;
    }

    /// First election when the set starts: member 0 wins term 1.
    pub fn initial_election(&self) {
        {
            let m = &self.members[0];
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            repl.term = 1;
            repl.primary = Some(0);
            data.writable = true;
            m.writable.store(true, Ordering::Release);
            let idx = self.append(&mut repl, 0, EntryKind::Noop("initiating set"));
            repl.election_optime = repl.optime_at(idx).0;
            repl.election_completed_at = Some(Instant::now());
            repl.election_date = Some(DateTime::now());
            repl.generation += 1;
        }
        self.members[0].role_changed();
        self.after_role_change();
    }

    /// The election loop of the set: runs elections when they are due.
    pub async fn election_loop(self: Arc<Self>) {
        loop {
            let due = self.repl.lock().election_due;
            let notified = self.election_notify.notified();
            match due {
                Some(t) => tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = notified => {}
                    _ = tokio::time::sleep_until(t.into()) => self.election_tick(),
                },
                None => tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = notified => {}
                },
            }
        }
    }

    fn election_tick(&self) {
        enum Decision {
            Demote(usize),
            Elect(usize, u64),
        }
        let now = Instant::now();
        let retry = now + self.election_delay().max(Duration::from_millis(10));
        let majority = self.cfg.majority();
        let decision = {
            let mut repl = self.repl.lock();
            match repl.election_due {
                Some(d) if d <= now => {}
                _ => return,
            }
            let live = repl.live();
            if let Some(p) = repl.primary {
                if live < majority && !repl.members[p].stepping_down {
                    Decision::Demote(p)
                } else {
                    repl.election_due = None;
                    return;
                }
            } else if live < majority {
                repl.election_due = Some(retry);
                return;
            } else {
                let preferred = repl.preferred;
                let eligible: Vec<usize> = (0..repl.members.len())
                    .filter(|j| repl.members[*j].can_stand(now))
                    .filter(|j| preferred.is_none_or(|p| p == *j))
                    .collect();
                if eligible.is_empty() {
                    repl.preferred = None;
                    let next = repl
                        .members
                        .iter()
                        .filter(|m| m.alive)
                        .flat_map(|m| [m.frozen_until, m.no_elect_until])
                        .flatten()
                        .filter(|t| *t > now)
                        .min();
                    repl.election_due = Some(next.unwrap_or(retry));
                    return;
                }
                let best = eligible
                    .iter()
                    .map(|j| repl.members[*j].applied)
                    .max()
                    .unwrap_or(0);
                let top: Vec<usize> = eligible
                    .into_iter()
                    .filter(|j| repl.members[*j].applied == best)
                    .collect();
                let pick = top[rand::thread_rng().gen_range(0..top.len())];
                Decision::Elect(pick, repl.generation)
            }
        };
        match decision {
            Decision::Demote(p) => {
                {
                    let m = &self.members[p];
                    let mut data = m.data.lock();
                    let mut repl = self.repl.lock();
                    if repl.primary != Some(p) {
                        return;
                    }
                    self.demote_locked(&mut data, &mut repl, p);
                    repl.election_due = Some(retry);
                }
                warn!(member = p, "primary lost the majority and steps down");
                self.members[p].role_changed();
                self.after_role_change();
            }
            Decision::Elect(c, generation) => self.elect(c, generation),
        }
    }

    fn elect(&self, c: usize, generation: u64) {
        let m = &self.members[c];
        let (term, lost) = {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.generation != generation || repl.primary.is_some() || !repl.members[c].alive {
                return;
            }
            // Catch up from the most up-to-date live member first (the
            // candidate must be as current as its voters).
            let target = repl.max_live_applied();
            self.apply_range(&mut data, &mut repl, c, target);
            let lost = repl.end() - target;
            if lost > 0 {
                // Entries only dead members had: rolled back when they return.
                repl.truncate(target);
            }
            repl.term += 1;
            repl.primary = Some(c);
            repl.election_due = None;
            repl.preferred = None;
            repl.generation += 1;
            data.writable = true;
            m.writable.store(true, Ordering::Release);
            let idx = self.append(&mut repl, c, EntryKind::Noop("new primary"));
            repl.election_optime = repl.optime_at(idx).0;
            repl.election_completed_at = Some(Instant::now());
            repl.election_date = Some(DateTime::now());
            (repl.term, lost)
        };
        if lost > 0 {
            warn!(
                lost,
                "new primary does not have the last entries of the log: they will be rolled back"
            );
        }
        info!(member = c, term, "elected primary");
        m.role_changed();
        self.after_role_change();
    }

    /// `replSetStepDown` on member `i`.
    pub async fn step_down(
        &self,
        i: usize,
        step_down_secs: u64,
        catch_up_secs: u64,
        force: bool,
    ) -> Result<(), CmdError> {
        let m = &self.members[i];
        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary != Some(i) || repl.members[i].stepping_down {
                return Err(CmdError::not_writable_primary());
            }
            // Not writable at once; in-flight writes are interrupted.
            repl.members[i].stepping_down = true;
            data.writable = false;
            data.abort_transactions();
            m.writable.store(false, Ordering::Release);
            repl.generation += 1;
        }
        info!(member = i, step_down_secs, force, "stepping down");
        m.role_changed();
        m.bump_topology();
        self.notify_progress();
        self.publish();

        // Wait for an electable secondary to catch up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(catch_up_secs);
        let mut progress = self.progress_tx.subscribe();
        let caught_up = loop {
            progress.borrow_and_update();
            let ok = {
                let repl = self.repl.lock();
                let now = Instant::now();
                let end = repl.end();
                repl.members.iter().enumerate().any(|(j, mr)| {
                    j != i
                        && mr.alive
                        && mr.frozen_until.is_none_or(|t| t <= now)
                        && mr.applied >= end
                })
            };
            if ok {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };

        if !caught_up && !force {
            {
                let mut data = m.data.lock();
                let mut repl = self.repl.lock();
                if repl.primary == Some(i) && repl.members[i].stepping_down {
                    repl.members[i].stepping_down = false;
                    data.writable = true;
                    m.writable.store(true, Ordering::Release);
                    repl.generation += 1;
                }
            }
            m.role_changed();
            m.bump_topology();
            self.publish();
            return Err(CmdError::new(
                errors::EXCEEDED_TIME_LIMIT,
                format!(
                    "No electable secondaries caught up as of {}. Please use the replSetStepDown command with the argument {{force: true}} to force node to step down.",
                    DateTime::now().try_to_rfc3339_string().unwrap_or_default()
                ),
            ));
        }

        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary == Some(i) {
                self.demote_locked(&mut data, &mut repl, i);
                let now = Instant::now();
                repl.members[i].no_elect_until = Some(now + Duration::from_secs(step_down_secs));
                repl.election_due = Some(now + self.election_delay());
            }
        }
        m.role_changed();
        self.after_role_change();
        Ok(())
    }

    /// `replSetStepUp` on member `j`: it wins a short election.
    pub async fn step_up(&self, j: usize) -> Result<(), CmdError> {
        let mut state_rx = self.state_tx.subscribe();
        let demoted = {
            let repl = self.repl.lock();
            if repl.primary == Some(j) {
                return Ok(());
            }
            if !repl.members[j].alive {
                return Err(CmdError::new(errors::NOT_SECONDARY, "node is not alive"));
            }
            repl.primary
        };
        if let Some(p) = demoted {
            let pm = &self.members[p];
            let mut data = pm.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary == Some(p) {
                self.demote_locked(&mut data, &mut repl, p);
            }
        }
        if let Some(p) = demoted {
            self.members[p].role_changed();
        }
        {
            let mut repl = self.repl.lock();
            repl.members[j].frozen_until = None;
            repl.members[j].no_elect_until = None;
            repl.preferred = Some(j);
            repl.generation += 1;
            let short = self.election_delay().min(Duration::from_millis(100));
            repl.election_due = Some(Instant::now() + short);
        }
        self.after_role_change();
        let limit = self.election_delay() * 2 + Duration::from_secs(1);
        let won = tokio::time::timeout(limit, state_rx.wait_for(|s| s.primary == Some(j))).await;
        match won {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CmdError::new(errors::COMMAND_FAILED, "Election failed.")),
        }
    }

    /// `replSetFreeze`: no candidacy for `secs` (0 unfreezes).
    pub fn freeze(&self, i: usize, secs: u64) -> Result<bool, CmdError> {
        let unfrozen = {
            let mut repl = self.repl.lock();
            if repl.primary == Some(i) {
                return Err(CmdError::new(
                    errors::NOT_SECONDARY,
                    "cannot freeze node when primary or running for election. state: Primary",
                ));
            }
            repl.generation += 1;
            if secs == 0 {
                repl.members[i].frozen_until = None;
                if repl.primary.is_none() && repl.election_due.is_none() {
                    repl.election_due = Some(Instant::now() + self.election_delay());
                }
                true
            } else {
                repl.members[i].frozen_until = Some(Instant::now() + Duration::from_secs(secs));
                false
            }
        };
        self.election_notify.notify_one();
        self.publish();
        Ok(unfrozen)
    }

    // ----- processes -------------------------------------------------------

    /// Starts member `i`'s process around a bound listener.
    pub fn start_process(self: &Arc<Self>, i: usize, listener: TcpListener) {
        let m = &self.members[i];
        let token = self.cancel.child_token();
        let tracker = TaskTracker::new();
        let graceful = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = tokio::spawn(crate::server::accept_loop(
            self.clone(),
            i,
            listener,
            token.clone(),
            tracker.clone(),
            graceful.clone(),
        ));
        *m.started.lock() = Instant::now();
        *m.process.lock() = Some(Process {
            token,
            tracker,
            graceful,
            listener: Some(handle),
        });
    }

    /// Kills member `i` (`graceful`: connections get FIN instead of RST).
    /// Its data survives (as on disk); cursors, sessions' open transactions
    /// and connections do not.
    pub async fn kill(&self, i: usize, graceful: bool) {
        let m = &self.members[i];
        let _life = m.lifecycle.lock().await;
        if !m.is_alive() {
            return;
        }
        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            let now = Instant::now();
            if repl.primary == Some(i) {
                self.demote_locked(&mut data, &mut repl, i);
                repl.election_due = Some(now + self.election_delay());
            }
            let mr = &mut repl.members[i];
            mr.alive = false;
            mr.stepping_down = false;
            mr.frozen_until = None;
            mr.no_elect_until = None;
            data.txns.clear();
            data.writable = false;
            m.writable.store(false, Ordering::Release);
            m.alive.store(false, Ordering::Release);
            if repl.primary.is_some()
                && repl.live() < self.cfg.majority()
                && repl.election_due.is_none()
            {
                repl.election_due = Some(now + self.election_delay());
            }
            repl.generation += 1;
        }
        info!(member = i, graceful, "member killed");
        m.role_changed();
        let process = m.process.lock().take();
        if let Some(mut p) = process {
            p.graceful.store(graceful, Ordering::Release);
            p.token.cancel();
            p.tracker.close();
            if let Some(h) = p.listener.take() {
                let _ = h.await;
            }
            p.tracker.wait().await;
        }
        m.cursors.lock().clear();
        self.after_role_change();
    }

    /// Brings member `i` back as a secondary that catches up. A member that
    /// holds entries the set no longer has rolls back; one whose missing
    /// entries were compacted away (or that diverged) copies the most
    /// up-to-date live member first (initial sync).
    pub async fn revive(self: &Arc<Self>, i: usize) -> std::io::Result<()> {
        let m = &self.members[i];
        let _life = m.lifecycle.lock().await;
        if m.is_alive() {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("the set is shut down"));
        }
        let listener = bind_retry(m.addr).await?;
        let rolled_back = {
            let mut data = m.data.lock();
            let (diverged, behind, source) = {
                let repl = self.repl.lock();
                let (applied, last) = (repl.members[i].applied, repl.members[i].last);
                let diverged = applied > repl.end()
                    || (applied > repl.base()
                        && repl.entry(applied).map(|e| e.optime) != Some(last));
                // Entries it needs were compacted away (or cannot be checked).
                let behind = repl.base() > 0 && applied <= repl.base();
                let source = (0..repl.members.len())
                    .filter(|j| *j != i && repl.members[*j].alive)
                    .max_by_key(|j| repl.members[*j].applied);
                (diverged, behind, source)
            };
            if diverged || behind {
                match source {
                    // Initial sync: copy the most up-to-date live member.
                    Some(src) => {
                        let src_data = self.members[src].data.lock();
                        let mut repl = self.repl.lock();
                        data.store = src_data.store.clone();
                        data.sessions = src_data.sessions.clone();
                        data.txns.clear();
                        let from = repl.members[src].clone();
                        let mr = &mut repl.members[i];
                        mr.applied = from.applied;
                        mr.last = from.last;
                        mr.last_wall = from.last_wall;
                        m.applied.store(from.applied, Ordering::Release);
                        m.last_applied_ts
                            .store(pack_ts(from.last.ts), Ordering::Release);
                    }
                    None => {
                        let mut repl = self.repl.lock();
                        data.reset();
                        let mr = &mut repl.members[i];
                        mr.applied = 0;
                        mr.last = OpTime::NULL;
                        mr.last_wall = DateTime::from_millis(0);
                        m.applied.store(0, Ordering::Release);
                        m.last_applied_ts.store(0, Ordering::Release);
                    }
                }
            }
            let mut repl = self.repl.lock();
            repl.members[i].alive = true;
            data.writable = false;
            m.alive.store(true, Ordering::Release);
            if repl.primary.is_none() && repl.election_due.is_none() {
                repl.election_due = Some(Instant::now() + self.election_delay());
            }
            repl.generation += 1;
            diverged
        };
        if rolled_back {
            warn!(
                member = i,
                "member rolls back entries the set does not have"
            );
        }
        info!(member = i, "member revived");
        m.topology.send_replace(TopologyVersion::fresh());
        self.start_process(i, listener);
        self.after_role_change();
        Ok(())
    }

    pub fn set_blackhole(&self, i: usize, on: bool) {
        self.members[i].blackholed.store(on, Ordering::Release);
        self.publish();
    }

    pub fn set_latency(&self, i: usize, latency: Duration) {
        self.members[i]
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Release);
        self.publish();
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// Binds `addr`, retrying for a while if the port is still held.
pub async fn bind_retry(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
