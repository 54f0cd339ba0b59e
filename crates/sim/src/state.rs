//! The observable state of a simulated set, published on every change.

use std::time::{Duration, Instant};

/// What a member is, as `replSetGetStatus` would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Writable primary.
    Primary,
    /// Primary that has started to step down: no longer writable.
    SteppingDown,
    Secondary,
    /// Killed or shut down (`(not reachable/healthy)`).
    Down,
}

/// One member in a [`SimState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub state: MemberState,
    /// Its listener accepts connections.
    pub alive: bool,
    /// Reads requests and never answers them.
    pub blackholed: bool,
    /// Delay added before each reply.
    pub latency: Duration,
    /// Extra replication lag (the `lag` fault), on top of `repl_lag_ms`.
    pub lag: Duration,
    /// Replicated log entries applied to its data.
    pub applied: u64,
}

/// A snapshot of the set, published (`ReplicaSet::subscribe`) at every
/// election, stepdown, kill, revive and fault change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimState {
    /// Index of the writable primary, if any.
    pub primary: Option<usize>,
    /// Election term (rises by one at every election).
    pub term: i64,
    /// When the current primary won its election.
    pub election_completed_at: Option<Instant>,
    /// When the set last lost its primary (stepdown, kill, shutdown).
    pub primary_lost_at: Option<Instant>,
    /// When the next election is due, if one is scheduled.
    pub election_due_at: Option<Instant>,
    pub members: Vec<MemberStatus>,
}
