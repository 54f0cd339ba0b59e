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
//! # Reads on secondaries, `lastWrite`, tags
//!
//! Every member reads its own store, so a secondary serves `find`,
//! `aggregate`, `count`, `distinct`, `listCollections`, `listIndexes` (and
//! `getMore` on the cursors it opened) from data that may lag the primary.
//! Before running a command, a member that is not the writable primary
//! applies the shared command table (`holdfast_wire::commands`,
//! `on_secondary`) as mongod does: `Always` commands run; `OptIn` ones run
//! only when the request's `$readPreference` mode is not `primary` (over
//! OP_QUERY, the SecondaryOk flag without a `$readPreference` means
//! `secondaryPreferred`), else 13435 NotPrimaryNoSecondaryOk; `Never` ones
//! get 10107 NotWritablePrimary, and so does an `aggregate` with
//! `$out`/`$merge`. A `$readPreference` mongod cannot parse is refused as
//! mongod refuses it (a non-object: 14; no `mode`: 40414; an unknown mode,
//! or tags or `maxStalenessSeconds` with `primary`: 2). Tags and
//! `maxStalenessSeconds` are the client's to apply when it picks a member.
//!
//! `readConcern: {afterClusterTime}` makes the read wait until its member
//! has applied that time: up to the request's `maxTimeMS` (then 50
//! MaxTimeMSExpired), otherwise up to a safety cap of
//! [`cmd::crud::AFTER_CLUSTER_TIME_CAP`] (60 s; MongoDB waits without
//! limit), after which it fails with 50 too. A time later than any member
//! has applied counts as reached. `readConcern: {level: "linearizable"}`
//! runs on the primary only (elsewhere: 10107 "cannot satisfy linearizable
//! read concern on non-primary node"); after the read the primary writes a
//! no-op and waits for a majority to apply it (`wtimeout`: the read's
//! `maxTimeMS`, then 170 LinearizableReadConcernError).
//!
//! hello (and `serverStatus.repl`) report each member's own `lastWrite`:
//! `opTime` and `lastWriteDate` of the last entry it applied,
//! `majorityOpTime` and `majorityWriteDate` of the commit point as far as it
//! applied it; the dates are the optimes' seconds, as mongod sends them. An
//! idle primary writes a no-op (`{msg: "periodic noop"}`, no data change)
//! every [`SimConfig::periodic_noop_ms`] (default 10 s, MongoDB's
//! `periodicNoopIntervalSecs`) when nothing was written since the previous
//! turn, so an idle set's `lastWriteDate` stays within one or two intervals
//! of now and drivers' staleness estimates work. [`SimConfig::member_tags`]
//! (`--member-tags N:key=value,...`) gives members tags: hello reports
//! `tags` for the members that have some, `replSetGetConfig` shows them in
//! `members[i].tags`.
//!
//! `serverStatus.opcounters` are per member and count what that member
//! served, as mongod counts: `find` as `query`, `getMore` as `getmore`,
//! inserted documents as `insert`, update and delete statements as
//! `update`/`delete`, every other command as `command`; a command refused
//! by authorization or by the role check above counts nothing.
//! `serverStatus.metrics.commands.<name>.{total, failed}` count per command
//! from the same point (`failed`: it answered an error).
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
//! Each member keeps a logical session cache ([`logical_sessions`]): every
//! command with an `lsid` marks its session used, `endSessions` marks it
//! ending, and a refresh (every 5 minutes, or `refreshLogicalSessionCacheNow`)
//! records used sessions in `config.system.sessions` and deletes ended
//! ones; `serverStatus.logicalSessionRecordCache` reports it.
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
//! [`ReplicaSet::set_lag`], [`ReplicaSet::step_down`],
//! [`ReplicaSet::step_up`], [`ReplicaSet::freeze`].
//! Over the wire, answered by any live member, on `admin`:
//!
//! ```text
//! {simFault: "blackhole" | "unblackhole" | "latency" | "lag" | "kill" | "revive" | "stepDown" | "freeze",
//!  member: <index, default: the member you ask>, ms: <latency or lag>, secs: <stepDown/freeze>, force: <bool>}
//! ```
//!
//! - `blackhole`: the member reads requests and never answers (hello
//!   included) nor closes; it keeps its role in the set (combine with
//!   `stepDown` or `kill` for a full partition). `unblackhole` ends it.
//! - `latency`: `ms` added before each reply (0 removes it). A write waiting
//!   out its latency on a primary that steps down fails with 11602.
//! - `lag`: secondary `member` applies the log `ms` later than the others
//!   (on top of `repl_lag_ms`; 0 removes it, and the member catches up at
//!   once). Its reads and its hello's `lastWrite` fall behind; `w:
//!   "majority"` still completes through the other members. A primary keeps
//!   the setting for when it is a secondary again.
//! - `kill`: like `kill -9` (listener closed, connections reset, election
//!   after `election_ms`); `revive` brings it back as a secondary.
//! - `stepDown`: steps the primary (or `member`) down; `force` defaults to
//!   true, `secs` to 60.
//!
//! `shutdown` (admin, `force`, `timeoutSecs`) steps a primary down first,
//! then closes the listener and every connection (no reply, as mongod).
//!
//! # Users and authentication
//!
//! Users live in the replicated `admin.system.users` collection in
//! mongod's form (SCRAM-SHA-1 and SCRAM-SHA-256 credentials with the
//! default iterations, 10,000 and 15,000, and random salts; `$external`
//! users for MONGODB-X509). [`SimConfig::users`] (`--user`) creates users
//! on every member at start; `createUser`, `updateUser` and `dropUser`
//! (primary only, with their write concern) and `usersInfo`
//! (`showCredentials`) manage them. SCRAM runs over
//! `saslStart`/`saslContinue` (BinData or base64 payloads answered in
//! kind, `skipEmptyExchange`, conversation id 1, ProtocolError 17
//! otherwise), inside `hello` as `speculativeAuthenticate`, and `hello`
//! answers `saslSupportedMechs`. Every failed conversation is 18
//! AuthenticationFailed "Authentication failed." (an unknown user already
//! at `saslStart`, as mongod); a connection is authenticated as one user
//! (5626701 for a second user of the same database, 5626702 of another);
//! `logout` ends it. The SCRAM code is holdfast-scram's ([`scram`]).
//!
//! # Access control ([`SimConfig::auth`], `--auth`)
//!
//! Before authentication only `hello`/`isMaster`, `saslStart`,
//! `saslContinue`, `authenticate`, `ping`, `listCommands` and `logout` run;
//! anything else is 13 Unauthorized "command <name> requires
//! authentication" (unknown commands stay 59). After it, commands need the
//! actions of MongoDB's built-in roles (`read`, `readWrite`, `dbAdmin`,
//! `userAdmin`, `dbOwner` on a database; `readAnyDatabase`,
//! `readWriteAnyDatabase`, `userAdminAnyDatabase`, `dbAdminAnyDatabase`
//! (every database but `local` and `config`), `clusterMonitor`,
//! `hostManager`, `clusterManager`, `clusterAdmin`, `root` on `admin`),
//! else 13 "not authorized on <db> to execute command { … }" (passwords
//! shown as "xxx"). `system.*` collections and `simFault` need `root`.
//! Any authenticated user runs `buildInfo`, `connectionStatus` (its user
//! and roles), session commands, commit/abort, and `listDatabases` (only
//! the databases it has privileges on unless it may list them all).
//! Cursors belong to the user that opened them (another user's
//! `getMore`/`killCursors`: 13), and sessions to their user (one `lsid`
//! used by two users is two sessions, as mongod keys them by id and user
//! digest). A user dropped while connected loses its rights on its next
//! command. While no user exists, a loopback client may create the first
//! one (the localhost exception). Without `auth` nothing is enforced.
//!
//! # TLS ([`SimConfig::tls`], `--tls-cert-key-file`, `--tls-ca-file`)
//!
//! Every member requires TLS (rustls): a plaintext client fails the
//! handshake and is disconnected. With a CA, client certificates are
//! requested and verified when presented (clients without one still
//! connect), and `{authenticate: 1, mechanism: "MONGODB-X509"}` on
//! `$external` (also speculative) logs in as the certificate's subject in
//! RFC 2253 order (`CN=client,OU=apps,O=holdfast`); a different `user`
//! field is 18, a subject that is no `$external` user 11 UserNotFound.
//! [`ReplicaSet::uri`] then ends in `&tls=true`; [`client::tls_config`]
//! and [`client::RawClient::connect_tls`] are the test client's side.
//!
//! # Not simulated
//!
//! Custom roles and role management commands, authentication
//! restrictions, `authFailedDelay`, X.509 roles from certificates,
//! `buildInfoAuthMode`, sharding, change streams and tailable cursors,
//! `$out`/`$merge` (the primary refuses them as unsupported; a secondary
//! answers 10107, where MongoDB 5.0+ would run them and write through the
//! primary), `readConcern` levels (a `majority` read on a secondary reads
//! its latest data, not its committed snapshot), the `local` database's
//! exemption from the role check, tag-based write concerns, prepared
//! transactions, quiesce mode on shutdown, reconfiguration,
//! arbiters/hidden/delayed members, real heartbeats (failure detection is
//! instantaneous; `election_ms` models detection plus election), `maxTimeMS`
//! on everything but `afterClusterTime` waits. The query language is the
//! engine's (see [`engine`]).
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod cmd;
mod config;
pub mod cursors;
pub mod errors;
mod handle;
pub mod logical_sessions;
pub mod member;
pub mod oplog;
mod server;
pub mod set;
mod state;
mod tls;

/// The data engine (its own crate, `holdfast-engine`), re-exported under
/// its historical path so that `crate::engine::Store` and
/// `holdfast_sim::engine::…` keep working.
pub use holdfast_engine as engine;

pub use config::{parse_member_tags, MemberTags, RoleName, SimConfig, SimTls, SimUser};
pub use handle::ReplicaSet;
/// SCRAM (holdfast-scram), re-exported: [`SimUser::mechanisms`] takes its
/// [`scram::Mechanism`].
pub use holdfast_scram as scram;
pub use state::{MemberState, MemberStatus, SimState};
