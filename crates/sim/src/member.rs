//! One member of a simulated set: its replicated data, its in-memory
//! process state (cursors, open transactions, connections) and its faults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, Document};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cursors::CursorTable;
use crate::engine::{Op, Store};
use crate::logical_sessions::LogicalSessionCache;
use crate::oplog::{Entry, EntryKind};

/// `topologyVersion`: a fresh processId per process start, and a counter
/// bumped whenever what this member's hello reports changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyVersion {
    pub process_id: ObjectId,
    pub counter: i64,
}

impl TopologyVersion {
    pub fn fresh() -> Self {
        TopologyVersion {
            process_id: ObjectId::new(),
            counter: 0,
        }
    }

    pub fn to_document(self) -> Document {
        doc! { "processId": self.process_id, "counter": self.counter }
    }
}

/// What `config.transactions` records for one session: the latest
/// txnNumber, and the outcome of the retryable write or transaction that
/// used it. Rebuilt from the log on every member.
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    pub txn_number: i64,
    /// Reply and log index of a retryable write with this txnNumber.
    pub retryable: Option<(Document, usize)>,
    /// Log index of the committed transaction with this txnNumber.
    pub committed: Option<usize>,
}

/// An open multi-document transaction (process memory, never replicated).
pub struct ActiveTxn {
    pub txn_number: i64,
    pub state: TxnState,
}

pub enum TxnState {
    InProgress {
        /// The transaction's snapshot, with its own writes applied.
        store: Box<Store>,
        ops: Vec<Op>,
        /// Log length when the transaction started (for write conflicts).
        start_index: usize,
    },
    Committed {
        index: usize,
    },
    Aborted,
}

/// The member's data: its store, what it replicated, and whether it takes
/// writes. Guarded by one mutex, held only for synchronous engine calls.
pub struct MemberData {
    pub store: Store,
    /// This member is the primary and not stepping down.
    pub writable: bool,
    pub sessions: HashMap<Vec<u8>, SessionRecord>,
    pub txns: HashMap<Vec<u8>, ActiveTxn>,
}

impl MemberData {
    pub fn new() -> Self {
        MemberData {
            store: Store::new(),
            writable: false,
            sessions: HashMap::new(),
            txns: HashMap::new(),
        }
    }

    /// Applies a replicated entry (secondary apply, catch-up, resync).
    pub fn apply_entry(&mut self, entry: &Entry, index: usize) {
        for op in entry.kind.ops() {
            self.store.apply(op);
        }
        match &entry.kind {
            EntryKind::Retryable {
                lsid,
                txn_number,
                reply,
                ..
            } => {
                self.sessions.insert(
                    lsid.clone(),
                    SessionRecord {
                        txn_number: *txn_number,
                        retryable: Some((reply.clone(), index)),
                        committed: None,
                    },
                );
            }
            EntryKind::Transaction {
                lsid, txn_number, ..
            } => {
                self.sessions.insert(
                    lsid.clone(),
                    SessionRecord {
                        txn_number: *txn_number,
                        retryable: None,
                        committed: Some(index),
                    },
                );
            }
            EntryKind::Noop(_) | EntryKind::Ops(_) => {}
        }
    }

    /// Aborts every transaction in progress (stepdown, kill).
    pub fn abort_transactions(&mut self) {
        for t in self.txns.values_mut() {
            if matches!(t.state, TxnState::InProgress { .. }) {
                t.state = TxnState::Aborted;
            }
        }
    }

    /// Forgets everything (rollback by resync: the log is applied again).
    pub fn reset(&mut self) {
        *self = MemberData::new();
    }
}

impl Default for MemberData {
    fn default() -> Self {
        Self::new()
    }
}

/// The running process of a member: dies on kill, replaced on revive.
pub struct Process {
    pub token: CancellationToken,
    pub tracker: TaskTracker,
    /// Close connections with FIN (shutdown) instead of RST (kill).
    pub graceful: Arc<AtomicBool>,
    pub listener: Option<JoinHandle<()>>,
}

/// `serverStatus.opcounters` of one member, counted as mongod counts
/// them: a `find` command as `query`, `getMore` as `getmore`, each inserted document as `insert`, each
/// update and delete statement as `update`/`delete`, every other command
/// as `command`. A command is counted once it passed authorization and
/// the member's role check (a read refused with 13435 counts nothing).
///
/// Beside them, `serverStatus.metrics.commands.<name>.{total, failed}`,
/// per command as mongod counts them from the same point: `total` for
/// every command that passed those checks, `failed` for those among them
/// that answered an error (a read refused later, for example a
/// linearizable read on a secondary, counts in both). Lowercase aliases
/// count under the command's name (`findandmodify` as `findAndModify`).
#[derive(Debug)]
pub struct OpCounters {
    pub insert: AtomicU64,
    pub query: AtomicU64,
    pub update: AtomicU64,
    pub delete: AtomicU64,
    pub getmore: AtomicU64,
    pub command: AtomicU64,
    /// `(name, total, failed)` for every command of the shared table,
    /// sorted by name.
    commands: Vec<(&'static str, AtomicU64, AtomicU64)>,
}

impl Default for OpCounters {
    fn default() -> Self {
        let commands = holdfast_wire::commands::COMMANDS
            .iter()
            .filter(|c| command_metric_name(c.name) == c.name)
            .map(|c| (c.name, AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        OpCounters {
            insert: AtomicU64::new(0),
            query: AtomicU64::new(0),
            update: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            getmore: AtomicU64::new(0),
            command: AtomicU64::new(0),
            commands,
        }
    }
}

/// The name a command is counted under in `metrics.commands`: mongod
/// registers a command's aliases with the command itself.
fn command_metric_name(name: &str) -> &str {
    match name {
        "findandmodify" => "findAndModify",
        "buildinfo" => "buildInfo",
        "getlasterror" => "getLastError",
        "ismaster" => "isMaster",
        other => other,
    }
}

impl OpCounters {
    fn command_entry(&self, name: &str) -> Option<&(&'static str, AtomicU64, AtomicU64)> {
        let name = command_metric_name(name);
        self.commands
            .binary_search_by(|(n, _, _)| (*n).cmp(name))
            .ok()
            .map(|i| &self.commands[i])
    }

    /// A counted command answered an error (`metrics.commands.<name>.failed`).
    pub fn command_failed(&self, command: &str) {
        if let Some((_, _, failed)) = self.command_entry(command) {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a command about to run (inserts: see [`Self::got_inserts`]).
    pub fn count(&self, command: &str, cmd: &Document) {
        if let Some((_, total, _)) = self.command_entry(command) {
            total.fetch_add(1, Ordering::Relaxed);
        }
        let statements = |key: &str| match cmd.get(key) {
            Some(bson::Bson::Array(a)) => a.len() as u64,
            _ => 0,
        };
        let (c, n) = match command {
            "insert" => return,
            "find" => (&self.query, 1),
            "update" => (&self.update, statements("updates")),
            "delete" => (&self.delete, statements("deletes")),
            "getMore" => (&self.getmore, 1),
            _ => (&self.command, 1),
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Documents an `insert` command inserted (its reply's `n`).
    pub fn got_inserts(&self, n: u64) {
        self.insert.fetch_add(n, Ordering::Relaxed);
    }

    pub fn to_document(&self) -> Document {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed) as i64;
        doc! {
            "insert": g(&self.insert),
            "query": g(&self.query),
            "update": g(&self.update),
            "delete": g(&self.delete),
            "getmore": g(&self.getmore),
            "command": g(&self.command),
        }
    }

    /// `metrics.commands`: `{<name>: {failed, total}}` (Int64), every
    /// command listed, as mongod lists them.
    pub fn commands_document(&self) -> Document {
        let mut d = Document::new();
        for (name, total, failed) in &self.commands {
            d.insert(
                *name,
                doc! {
                    "failed": failed.load(Ordering::Relaxed) as i64,
                    "total": total.load(Ordering::Relaxed) as i64,
                },
            );
        }
        d
    }
}

pub struct Member {
    pub idx: usize,
    pub addr: SocketAddr,
    /// `host:port` as hello reports it (`me`, `hosts`).
    pub host: String,
    pub data: Mutex<MemberData>,
    pub topology: watch::Sender<TopologyVersion>,
    /// Bumped at every role change of this member: writes that started
    /// under the previous role are interrupted (11602).
    pub role_epoch: watch::Sender<u64>,
    /// Mirrors of replicated state, readable without locks.
    pub writable: AtomicBool,
    pub alive: AtomicBool,
    pub applied: AtomicUsize,
    pub last_applied_ts: AtomicU64,
    pub blackholed: AtomicBool,
    pub latency_us: AtomicU64,
    /// The `lag` fault: applied on top of the set's `repl_lag_ms`.
    pub extra_lag_us: AtomicU64,
    /// Wakes this member's applier when its lag changes.
    pub lag_changed: Notify,
    pub conns_current: AtomicUsize,
    pub conns_total: AtomicU64,
    pub conns_active: AtomicUsize,
    pub next_conn_id: AtomicI64,
    pub next_request_id: AtomicI32,
    pub cursors: Mutex<CursorTable>,
    pub process: Mutex<Option<Process>>,
    pub started: Mutex<Instant>,
    /// Serialises kill/revive of this member.
    pub lifecycle: tokio::sync::Mutex<()>,
    pub opcounters: OpCounters,
    /// Sessions used and ended since the last refresh (process memory).
    pub logical_sessions: Mutex<LogicalSessionCache>,
}

impl Member {
    pub fn new(idx: usize, addr: SocketAddr) -> Self {
        Member {
            idx,
            addr,
            host: addr.to_string(),
            data: Mutex::new(MemberData::new()),
            topology: watch::Sender::new(TopologyVersion::fresh()),
            role_epoch: watch::Sender::new(0),
            writable: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            applied: AtomicUsize::new(0),
            last_applied_ts: AtomicU64::new(0),
            blackholed: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            extra_lag_us: AtomicU64::new(0),
            lag_changed: Notify::new(),
            conns_current: AtomicUsize::new(0),
            conns_total: AtomicU64::new(0),
            conns_active: AtomicUsize::new(0),
            next_conn_id: AtomicI64::new(1),
            next_request_id: AtomicI32::new(1),
            cursors: Mutex::new(CursorTable::default()),
            process: Mutex::new(None),
            started: Mutex::new(Instant::now()),
            lifecycle: tokio::sync::Mutex::new(()),
            opcounters: OpCounters::default(),
            logical_sessions: Mutex::new(LogicalSessionCache::default()),
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// Extra replication lag of this member (the `lag` fault).
    pub fn extra_lag(&self) -> Duration {
        Duration::from_micros(self.extra_lag_us.load(Ordering::Relaxed))
    }

    pub fn is_blackholed(&self) -> bool {
        self.blackholed.load(Ordering::Relaxed)
    }

    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub fn topology_version(&self) -> TopologyVersion {
        *self.topology.borrow()
    }

    /// Something this member's hello reports changed.
    pub fn bump_topology(&self) {
        self.topology.send_modify(|t| t.counter += 1);
    }

    pub fn role_changed(&self) {
        self.role_epoch.send_modify(|e| *e += 1);
    }

    pub fn role_epoch(&self) -> u64 {
        *self.role_epoch.borrow()
    }

    pub fn next_request_id(&self) -> i32 {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        if id == i32::MAX {
            self.next_request_id.store(1, Ordering::Relaxed);
        }
        id
    }

    pub fn uptime(&self) -> Duration {
        self.started.lock().elapsed()
    }
}
