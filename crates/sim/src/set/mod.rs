//! The replica set: one replicated log, members' applied positions,
//! write-concern waits, stepdowns, elections, kills and revivals.
//!
//! Locking: a member's `data` mutex is always taken before the set's `repl`
//! mutex, and neither is held across an `.await`. Every change of a
//! member's role happens with that member's `data` locked, so a write that
//! found its member writable executes and appends to the log before any
//! stepdown can start.
//!
//! - `log`: the replicated log, appending, applying and compaction, the
//!   secondaries' appliers and the periodic no-op writer.
//! - `write_concern`: `writeConcern` parsing and waiting for it (and for
//!   `afterClusterTime`).
//! - `election`: the initial election, the election loop, stepdown,
//!   stepup and freeze.
//! - `lifecycle`: member processes: start, kill, revive, blackhole,
//!   latency, lag, shutdown.
//! - `sessions`: the logical session caches' refresh into
//!   `config.system.sessions`.

mod election;
mod lifecycle;
mod log;
mod sessions;
mod write_concern;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{DateTime, Timestamp};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::member::Member;
use crate::oplog::{Clock, EntryRef, OpTime};
use crate::state::{MemberState, MemberStatus, SimState};

pub use lifecycle::bind_retry;
pub use log::LOG_RETAIN;
pub use write_concern::{WriteConcern, W};

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

impl Repl {
    pub fn live(&self) -> usize {
        self.members.iter().filter(|m| m.alive).count()
    }

    /// The writable primary, if any.
    pub fn writable_primary(&self) -> Option<usize> {
        self.primary.filter(|p| !self.members[*p].stepping_down)
    }
}

/// Everything shared by the members of one set.
pub struct SetInner {
    pub cfg: SimConfig,
    /// `repl_lag_ms`: how long after a write every secondary applies it.
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
    /// TLS on every member's listener.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl SetInner {
    pub fn new(
        cfg: SimConfig,
        addrs: Vec<std::net::SocketAddr>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> SetInner {
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
            tls,
        }
    }

    fn election_delay(&self) -> Duration {
        Duration::from_millis(self.cfg.election_ms)
    }

    pub fn cluster_time(&self) -> Timestamp {
        crate::oplog::unpack_ts(self.cluster_time.load(Ordering::Acquire))
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
                    lag: m.extra_lag(),
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
}
