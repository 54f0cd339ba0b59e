//! holdfast-sim: an in-memory, wire-compatible MongoDB replica set.
//!
//! There is no `mongod` on the machines that build and test holdfast, so
//! every end-to-end test runs against this simulator. It speaks the real
//! wire protocol (OP_MSG, OP_QUERY handshakes, OP_COMPRESSED) and behaves
//! like a MongoDB 7.0 replica set, above all at a stepdown:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use holdfast_sim::{ReplicaSet, SimConfig};
//! let set = ReplicaSet::start(SimConfig::default()).await?;
//! println!("{}", set.uri()); // mongodb://127.0.0.1:p0,…/?replicaSet=rs0
//! set.step_down(60, false).await.unwrap();
//! let new_primary = set.wait_for_primary(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # Members and elections
//!
//! `members` voting, data-bearing members on `base_port..` (or ephemeral
//! ports). Member 0 is primary when [`ReplicaSet::start`] returns (term 1).
//! When the primary steps down, is killed or shuts down, the set has no
//! primary for `election_ms` (default 1500 ms); then one of the most
//! up-to-date live members that may stand (not frozen, not a primary that
//! stepped down less than `stepDownSecs` ago) wins: term + 1, a new
//! `electionId` (`7fffffff` + term), `topologyVersion` counters of every
//! live member bumped, waiting hellos released at once. No majority of
//! members alive: no primary (and a primary left without a majority steps
//! down after `election_ms`).
//!
//! # Replication and what a failover can lose
//!
//! The set keeps one replicated log. The primary executes a write on its
//! own store and appends the resulting operations (or a retryable-write
//! record, or a committed transaction) as one entry; each secondary applies
//! entries to its own store `repl_lag_ms` after they were written.
//! `w: 1` is acknowledged at once; `w: "majority"` (the implicit default of
//! MongoDB 5.0+) and `w: N` once that many live members applied the entry
//! (`wtimeout` gives 64 WriteConcernFailed as `writeConcernError`).
//!
//! A new primary first catches up from the most up-to-date live member.
//! Entries that no live member has (they were only on a primary that was
//! killed) are dropped from the log, and a member holding them rolls them
//! back when it is revived (it copies the most up-to-date live member, then
//! catches up from the log). So, exactly like
//! MongoDB: **a `w: 1` write that was not replicated before its primary died
//! can be lost; a write acknowledged with `w: "majority"` never is** (while a
//! majority of members is alive, one of them has it and the winner catches
//! up from it). Data survives [`ReplicaSet::kill`] (as on disk); cursors,
//! open transactions and connections do not. The log keeps
//! [`set::LOG_RETAIN`] entries behind the slowest live member; a member
//! revived further behind does the same initial sync.
//!
//! # Sessions, retryable writes, transactions
//!
//! `insert`/`update`/`delete`/`findAndModify` with `lsid` + `txnNumber`
//! (no `autocommit`) are recorded with their reply in the log, as mongod
//! records them in `config.transactions`: a retry with the same pair on any
//! member that has the entry returns the original reply without executing
//! again; an older txnNumber gets 225 TransactionTooOld. Transactions
//! (`startTransaction`, `autocommit: false`) run against a snapshot of the
//! store and see their own writes; `commitTransaction` applies their
//! operations atomically and replicates them as one entry; a write
//! committed by someone else on a document the transaction wrote aborts it
//! (112 WriteConflict). A stepdown aborts transactions in progress: later
//! statements get 251 NoSuchTransaction with `TransientTransactionError`;
//! commit/abort on the old primary get 10107 with `RetryableWriteError`.
//!
//! # Stepdown (`replSetStepDown`, as MongoDB 4.2+)
//!
//! hello turns non-writable at once (counter bumped); writes waiting for
//! their write concern get `writeConcernError` 11602
//! InterruptedDueToReplStateChange (a real mongod may also report 189
//! PrimarySteppedDown there), writes still "executing" (held by injected
//! latency) fail with 11602 without being applied; new writes get 10107
//! NotWritablePrimary, reads without a secondary read preference 13435
//! NotPrimaryNoSecondaryOk; reads with one, and `getMore` on open cursors,
//! keep working; connections stay open. Without `force` the primary first
//! waits up to `secondaryCatchUpPeriodSecs` (default 10, must not exceed
//! `stepDownSecs`, default 60) for an electable secondary to catch up, else
//! 262 ExceededTimeLimit and it stays primary. Error replies for the
//! state-change codes carry the member's `topologyVersion`, and error labels
//! follow `error_labels.cpp` (see [`errors::error_labels`]).
//!
//! # Fault injection
//!
//! From tests: [`ReplicaSet::kill`], [`ReplicaSet::revive`],
//! [`ReplicaSet::blackhole`], [`ReplicaSet::set_latency`],
//! [`ReplicaSet::step_down`], [`ReplicaSet::step_up`], [`ReplicaSet::freeze`].
//! Over the wire, answered by any live member, on `admin`:
//!
//! ```text
//! {simFault: "blackhole" | "unblackhole" | "latency" | "kill" | "revive" | "stepDown" | "freeze",
//!  member: <index, default: the member you ask>, ms: <latency>, secs: <stepDown/freeze>, force: <bool>}
//! ```
//!
//! - `blackhole`: the member reads requests and never answers (hello
//!   included) nor closes; it keeps its role in the set (combine with
//!   `stepDown` or `kill` for a full partition). `unblackhole` ends it.
//! - `latency`: `ms` added before each reply (0 removes it). A write waiting
//!   out its latency on a primary that steps down fails with 11602.
//! - `kill`: like `kill -9` (listener closed, connections reset, election
//!   after `election_ms`); `revive` brings it back as a secondary.
//! - `stepDown`: steps the primary (or `member`) down; `force` defaults to
//!   true, `secs` to 60.
//!
//! `shutdown` (admin, `force`, `timeoutSecs`) steps a primary down first,
//! then closes the listener and every connection (no reply, as mongod).
//!
//! # Not simulated
//!
//! Authentication (saslStart fails: connect without credentials), TLS,
//! sharding, change streams and tailable cursors, `$out`/`$merge`
//! durability semantics, prepared transactions, quiesce mode on shutdown,
//! reconfiguration, arbiters/hidden/delayed members, real heartbeats
//! (failure detection is instantaneous; `election_ms` models detection plus
//! election), `maxTimeMS` on everything but `afterClusterTime` waits. The
//! query language is the engine's (see [`engine`]).
#![forbid(unsafe_code)]

pub mod client;
pub mod cmd;
mod config;
pub mod cursors;
pub mod engine;
pub mod errors;
mod handle;
pub mod member;
pub mod oplog;
mod server;
pub mod set;
mod state;

pub use config::SimConfig;
pub use handle::ReplicaSet;
pub use state::{MemberState, MemberStatus, SimState};
