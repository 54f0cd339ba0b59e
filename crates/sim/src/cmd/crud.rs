//! Data commands (through the engine), cursors, write concern and
//! retryable-write deduplication.

use std::collections::VecDeque;
use std::time::Duration;

use bson::{doc, Bson, Document};

use holdfast_wire::commands;

use super::{as_i64, ConnCtx, Request};
use crate::cursors::{take_batch, DEFAULT_FIRST_BATCH};
use crate::engine::Outcome;
use crate::errors::{self, CmdError};
use crate::member::{MemberData, SessionRecord};
use crate::oplog::EntryKind;
use crate::set::{WriteConcern, W};

/// Commands the engine executes.
pub fn is_data_command(name: &str) -> bool {
    matches!(
        name,
        "insert"
            | "update"
            | "delete"
            | "findAndModify"
            | "findandmodify"
            | "find"
            | "count"
            | "distinct"
            | "aggregate"
            | "create"
            | "drop"
            | "dropDatabase"
            | "listDatabases"
            | "listCollections"
            | "listIndexes"
            | "createIndexes"
            | "dropIndexes"
            | "deleteIndexes"
            | "renameCollection"
            | "collMod"
            | "dbStats"
            | "collStats"
            | "dataSize"
            | "explain"
            | "validate"
    )
}

/// Writes deduplicated by (lsid, txnNumber).
fn is_retryable_write(name: &str) -> bool {
    commands::lookup(name).is_some_and(|c| c.retryable_write)
}

/// How long a read with `readConcern.afterClusterTime` and no `maxTimeMS`
/// waits for its member to catch up before it fails (MongoDB waits without
/// limit; a member the `lag` fault holds back catches up within its lag,
/// and the periodic no-op moves every member on, so only a stuck test ever
/// meets this).
pub const AFTER_CLUSTER_TIME_CAP: Duration = Duration::from_secs(60);

/// `readConcern.afterClusterTime`: waits until this member has applied
/// that cluster time, bounded by the request's `maxTimeMS` (then 50
/// MaxTimeMSExpired), else by [`AFTER_CLUSTER_TIME_CAP`]. A time past the
/// newest write of the set counts as reached.
async fn wait_read_concern(conn: &ConnCtx, req: &Request) -> Result<(), CmdError> {
    let Some(Bson::Document(rc)) = req.cmd.get("readConcern") else {
        return Ok(());
    };
    let Some(Bson::Timestamp(ts)) = rc.get("afterClusterTime") else {
        return Ok(());
    };
    let max_time = req
        .cmd
        .get("maxTimeMS")
        .and_then(as_i64)
        .filter(|t| *t > 0)
        .map(|t| Duration::from_millis(t as u64));
    let limit = max_time.unwrap_or(AFTER_CLUSTER_TIME_CAP);
    if conn.set.wait_applied_ts(conn.idx, *ts, limit).await {
        return Ok(());
    }
    Err(match max_time {
        Some(_) => CmdError::new(errors::MAX_TIME_MS_EXPIRED, "operation exceeded time limit"),
        None => CmdError::new(
            errors::MAX_TIME_MS_EXPIRED,
            format!(
                "afterClusterTime {ts} not reached within holdfast-sim's limit of {}s for reads without maxTimeMS",
                AFTER_CLUSTER_TIME_CAP.as_secs()
            ),
        ),
    })
}

/// An `aggregate` pipeline with a stage that writes (`$out`, `$merge`).
pub fn pipeline_writes(cmd: &Document) -> bool {
    match cmd.get("pipeline") {
        Some(Bson::Array(stages)) => stages.iter().any(|s| {
            matches!(s, Bson::Document(d)
                if d.keys().next().is_some_and(|k| k == "$out" || k == "$merge"))
        }),
        _ => false,
    }
}

/// A read (or any data command that is no write): the dispatcher has
/// checked that this member may run it; it runs on this member's own data,
/// which on a secondary may lag the primary. A `linearizable` read runs on
/// the primary only and is confirmed by a majority-acknowledged no-op
/// written after it ([`confirm_linearizable`]).
pub async fn read(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let linearizable = read_concern(req)
        .and_then(|rc| rc.get_str("level").ok())
        .is_some_and(|l| l == "linearizable");
    if linearizable {
        check_linearizable(conn, req)?;
    }
    wait_read_concern(conn, req).await?;
    let m = conn.member();
    let executed = m.data.lock().store.execute(&req.db, &req.cmd)?;
    if linearizable {
        confirm_linearizable(conn, req).await?;
    }
    Ok(outcome_reply(conn, req, executed.outcome))
}

fn read_concern(req: &Request) -> Option<&Document> {
    match req.cmd.get("readConcern") {
        Some(Bson::Document(rc)) => Some(rc),
        _ => None,
    }
}

/// What mongod checks before a linearizable read
/// (`waitForReadConcernImpl`): the member must be primary.
fn check_linearizable(conn: &ConnCtx, req: &Request) -> Result<(), CmdError> {
    if read_concern(req).is_some_and(|rc| rc.contains_key("afterOpTime")) {
        return Err(CmdError::new(
            errors::FAILED_TO_PARSE,
            "afterOpTime not compatible with linearizable read concern",
        ));
    }
    if !conn.member().is_writable() {
        return Err(CmdError::new(
            errors::NOT_WRITABLE_PRIMARY,
            "cannot satisfy linearizable read concern on non-primary node",
        ));
    }
    Ok(())
}

/// After a linearizable read, as mongod's
/// `waitForLinearizableReadConcern`: a no-op (`{msg: "linearizable
/// read"}`) written and waited for with `w: "majority"` (`wtimeout`: the
/// read's `maxTimeMS`), so the read is known to come from the primary of
/// the majority. A timeout is 170 LinearizableReadConcernError; a stepdown
/// meanwhile, its own error.
async fn confirm_linearizable(conn: &ConnCtx, req: &Request) -> Result<(), CmdError> {
    let set = conn.set.clone();
    let idx = conn.idx;
    let m = &set.members[idx];
    let (index, epoch) = {
        let data = m.data.lock();
        if !data.writable {
            return Err(CmdError::new(
                errors::NOT_WRITABLE_PRIMARY,
                "No longer primary when waiting for linearizable read concern",
            ));
        }
        let epoch = m.role_epoch();
        let mut repl = set.repl.lock();
        let index = set.append(&mut repl, idx, EntryKind::Noop("linearizable read"));
        (index, epoch)
    };
    set.notify_log();
    let wc = WriteConcern {
        w: W::Majority,
        wtimeout_ms: req.cmd.get("maxTimeMS").and_then(as_i64).filter(|t| *t > 0),
        explicit: true,
    };
    let Some(wce) = set.wait_write_concern(idx, index, &wc, epoch).await else {
        return Ok(());
    };
    let code = wce.get_i32("code").unwrap_or(errors::WRITE_CONCERN_FAILED);
    Err(if code == errors::WRITE_CONCERN_FAILED {
        CmdError::new(
            errors::LINEARIZABLE_READ_CONCERN_ERROR,
            "Failed to confirm that read was linearizable.",
        )
    } else {
        CmdError::new(code, wce.get_str("errmsg").unwrap_or_default())
    })
}

/// Turns an engine outcome into a reply; a cursor's rest is kept on the
/// member under a random Int64 id.
pub fn outcome_reply(conn: &ConnCtx, req: &Request, outcome: Outcome) -> Document {
    match outcome {
        Outcome::Reply(d) => d,
        Outcome::Cursor { ns, docs } => {
            let mut docs: VecDeque<Document> = docs.into();
            let batch = take_batch(&mut docs, first_batch_size(req));
            let single = matches!(req.cmd.get("singleBatch"), Some(v) if super::as_bool(v));
            let id: i64 = if docs.is_empty() || single {
                0
            } else {
                conn.member()
                    .cursors
                    .lock()
                    .open_owned(ns.clone(), docs, conn.auth.user.clone())
            };
            doc! {
                "cursor": { "firstBatch": batch, "id": id, "ns": ns },
                "ok": 1.0,
            }
        }
    }
}

fn first_batch_size(req: &Request) -> Option<usize> {
    let from_cursor = || match req.cmd.get("cursor") {
        Some(Bson::Document(c)) => c.get("batchSize").and_then(as_i64),
        _ => None,
    };
    let n = match req.name.as_str() {
        "find" => req.cmd.get("batchSize").and_then(as_i64),
        _ => from_cursor(),
    };
    match n {
        Some(n) if n >= 0 => Some(n as usize),
        _ => match req.name.as_str() {
            "find" | "aggregate" => Some(DEFAULT_FIRST_BATCH),
            _ => None,
        },
    }
}

pub fn get_more(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let id = req.cmd.get("getMore").and_then(as_i64).ok_or_else(|| {
        CmdError::new(errors::TYPE_MISMATCH, "getMore must be an Int64 cursor id")
    })?;
    let coll = req.cmd.get_str("collection").map_err(|_| {
        CmdError::new(
            errors::TYPE_MISMATCH,
            "getMore requires a 'collection' string",
        )
    })?;
    let ns = format!("{}.{}", req.db, coll);
    let batch_size = req
        .cmd
        .get("batchSize")
        .and_then(as_i64)
        .filter(|n| *n > 0)
        .map(|n| n as usize);
    let m = conn.member();
    let mut cursors = m.cursors.lock();
    let Some(cursor) = cursors.get_mut(id) else {
        return Err(CmdError::new(
            errors::CURSOR_NOT_FOUND,
            format!("cursor id {id} not found"),
        ));
    };
    if conn.set.cfg.auth && cursor.owner != conn.auth.user {
        return Err(not_cursor_owner(id));
    }
    if cursor.ns != ns {
        return Err(CmdError::new(
            errors::UNAUTHORIZED,
            format!(
                "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                cursor.ns
            ),
        ));
    }
    cursor.last_used = std::time::Instant::now();
    let batch = take_batch(&mut cursor.docs, batch_size);
    let next_id = if cursor.docs.is_empty() {
        cursors.remove(id);
        0i64
    } else {
        id
    };
    Ok(doc! {
        "cursor": { "nextBatch": batch, "id": next_id, "ns": ns },
        "ok": 1.0,
    })
}

pub fn kill_cursors(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let ids: Vec<i64> = match req.cmd.get("cursors") {
        Some(Bson::Array(a)) => a.iter().filter_map(as_i64).collect(),
        _ => {
            return Err(CmdError::new(
                errors::FAILED_TO_PARSE,
                "killCursors requires a 'cursors' array",
            ))
        }
    };
    let mut killed = Vec::new();
    let mut not_found = Vec::new();
    let mut cursors = conn.member().cursors.lock();
    if conn.set.cfg.auth {
        // Another user's cursor fails the whole command (a cursor that
        // does not exist is no authorization matter).
        if let Some(id) = ids
            .iter()
            .find(|id| cursors.get(**id).is_some_and(|c| c.owner != conn.auth.user))
        {
            return Err(not_cursor_owner(*id));
        }
    }
    for id in ids {
        if cursors.remove(id).is_some() {
            killed.push(Bson::Int64(id));
        } else {
            not_found.push(Bson::Int64(id));
        }
    }
    Ok(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
        "ok": 1.0,
    })
}

/// The reply a session already recorded for (lsid, txnNumber), or 225 when
/// the session has moved past that txnNumber.
pub fn check_session(
    data: &MemberData,
    lsid: &[u8],
    txn_number: i64,
) -> Result<Option<(Document, usize)>, CmdError> {
    let latest = data
        .sessions
        .get(lsid)
        .map(|s| s.txn_number)
        .into_iter()
        .chain(data.txns.get(lsid).map(|t| t.txn_number))
        .max();
    if let Some(latest) = latest {
        if txn_number < latest {
            return Err(CmdError::new(
                errors::TRANSACTION_TOO_OLD,
                format!(
                    "Retryable write with txnNumber {txn_number} is prohibited on session {} because a newer retryable write with txnNumber {latest} has already started on this session.",
                    session_name(lsid)
                ),
            ));
        }
    }
    if let Some(rec) = data.sessions.get(lsid) {
        if rec.txn_number == txn_number {
            if let Some((reply, index)) = &rec.retryable {
                return Ok(Some((reply.clone(), *index)));
            }
            if rec.committed.is_some() {
                return Err(CmdError::new(
                    errors::TRANSACTION_TOO_OLD,
                    format!(
                        "txnNumber {txn_number} of session {} was used by a transaction",
                        session_name(lsid)
                    ),
                ));
            }
        }
    }
    Ok(None)
}

fn not_cursor_owner(id: i64) -> CmdError {
    CmdError::new(
        errors::UNAUTHORIZED,
        format!("cursor id {id} was not created by the authenticated user"),
    )
}

/// `listDatabases` with access control: a user without the listDatabases
/// action sees the databases it has privileges on
/// (`authorizedDatabases`, on by default for such users).
pub async fn list_databases(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    use crate::auth::roles::{Action, Resource};
    let Some((_, privileges)) = crate::auth::current(conn) else {
        return Err(crate::auth::check::requires_authentication(&req.name));
    };
    let may_list_all = privileges.allows(&Resource::Cluster, Action::ListDatabases);
    let authorized_only = match req.cmd.get("authorizedDatabases") {
        Some(v) => super::as_bool(v),
        None => !may_list_all,
    };
    if !authorized_only && !may_list_all {
        return Err(crate::auth::check::not_authorized(req));
    }
    let mut reply = read(conn, req).await?;
    if authorized_only {
        if let Ok(dbs) = reply.get_array_mut("databases") {
            dbs.retain(|d| {
                d.as_document()
                    .and_then(|d| d.get_str("name").ok())
                    .is_some_and(|n| privileges.any_on_db(n))
            });
        }
    }
    Ok(reply)
}

/// A session key for messages: the `lsid.id` UUID (keys of authenticated
/// users carry the user's digest after it).
pub fn session_name(lsid: &[u8]) -> String {
    if lsid.len() == 16 || lsid.len() == 48 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&lsid[..16]);
        bson::Uuid::from_bytes(b).to_string()
    } else {
        format!("{lsid:02x?}")
    }
}

pub async fn write(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let wc = WriteConcern::from_command(&req.cmd)?;
    let retry = match (&req.lsid, req.txn_number) {
        (Some(lsid), Some(txn)) if is_retryable_write(&req.name) => Some((lsid.clone(), txn)),
        _ => None,
    };
    let set = conn.set.clone();
    let idx = conn.idx;
    let m = &set.members[idx];
    let (reply, index, epoch) = {
        let mut data = m.data.lock();
        if !data.writable {
            return Err(CmdError::not_writable_primary());
        }
        let epoch = m.role_epoch();
        let previous = match &retry {
            Some((lsid, txn)) => check_session(&data, lsid, *txn)?,
            None => None,
        };
        match previous {
            Some((reply, index)) => (Outcome::Reply(reply), index, epoch),
            None => {
                let executed = data.store.execute(&req.db, &req.cmd)?;
                let mut repl = set.repl.lock();
                let index = match (&retry, &executed.outcome) {
                    (Some((lsid, txn)), Outcome::Reply(reply)) => {
                        let index = set.append(
                            &mut repl,
                            idx,
                            EntryKind::Retryable {
                                lsid: lsid.clone(),
                                txn_number: *txn,
                                reply: reply.clone(),
                                ops: executed.ops,
                            },
                        );
                        data.sessions.insert(
                            lsid.clone(),
                            SessionRecord {
                                txn_number: *txn,
                                retryable: Some((reply.clone(), index)),
                                committed: None,
                            },
                        );
                        index
                    }
                    _ if !executed.ops.is_empty() => {
                        set.append(&mut repl, idx, EntryKind::Ops(executed.ops))
                    }
                    _ => repl.members[idx].applied,
                };
                (executed.outcome, index, epoch)
            }
        }
    };
    set.notify_log();
    let mut reply = outcome_reply(conn, req, reply);
    if wc.is_unacknowledged() {
        return Ok(reply);
    }
    if let Some(wce) = set.wait_write_concern(idx, index, &wc, epoch).await {
        reply.insert("writeConcernError", wce);
    }
    Ok(reply)
}
