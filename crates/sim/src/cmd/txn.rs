//! Multi-document transactions: statements run against a snapshot of the
//! member's store; commit applies their operations atomically and
//! replicates them as one log entry.

use bson::{Bson, Document};

use super::{ConnCtx, Request};
use crate::engine::{Op, Outcome};
use crate::errors::{self, CmdError};
use crate::member::{ActiveTxn, SessionRecord, TxnState};
use crate::oplog::EntryKind;
use crate::set::{Repl, WriteConcern};

/// Commands allowed inside a transaction.
fn allowed_in_transaction(name: &str) -> bool {
    matches!(
        name,
        "find"
            | "insert"
            | "update"
            | "delete"
            | "findAndModify"
            | "findandmodify"
            | "aggregate"
            | "distinct"
            | "create"
            | "createIndexes"
    )
}

fn session_of(req: &Request) -> Result<(Vec<u8>, i64), CmdError> {
    let Some(lsid) = req.lsid.clone() else {
        return Err(CmdError::new(
            72,
            "Transaction options (autocommit) require a session (lsid)",
        ));
    };
    let Some(txn) = req.txn_number else {
        return Err(CmdError::new(
            72,
            "'autocommit' field requires a transaction number to also be specified",
        ));
    };
    Ok((lsid, txn))
}

fn aborted(txn: i64) -> CmdError {
    CmdError::new(
        errors::NO_SUCH_TRANSACTION,
        format!("Transaction with {{ txnNumber: {txn} }} has been aborted."),
    )
}

fn not_found(txn: i64) -> CmdError {
    CmdError::new(
        errors::NO_SUCH_TRANSACTION,
        format!("Given transaction number {txn} does not match any in-progress transactions."),
    )
}

fn too_old(txn: i64, latest: i64) -> CmdError {
    CmdError::new(
        errors::TRANSACTION_TOO_OLD,
        format!("Cannot start transaction {txn} on session because a newer transaction {latest} has already started."),
    )
}

/// What a write touches, for write-conflict detection.
enum Touch<'a> {
    Doc(&'a str, &'a Bson),
    Collection(&'a str),
    Database(&'a str),
    Nothing,
}

fn touch(op: &Op) -> Touch<'_> {
    match op {
        Op::Insert { ns, doc } => match doc.get("_id") {
            Some(id) => Touch::Doc(ns, id),
            None => Touch::Collection(ns),
        },
        Op::Update { ns, id, .. } | Op::Delete { ns, id } => Touch::Doc(ns, id),
        Op::CreateCollection { ns } | Op::DropCollection { ns } => Touch::Collection(ns),
        Op::DropDatabase { db } => Touch::Database(db),
        Op::CreateIndexes { .. } | Op::DropIndexes { .. } => Touch::Nothing,
    }
}

fn db_of(ns: &str) -> &str {
    ns.split('.').next().unwrap_or(ns)
}

fn overlaps(a: &Touch<'_>, b: &Touch<'_>) -> bool {
    use Touch::*;
    match (a, b) {
        (Nothing, _) | (_, Nothing) => false,
        (Doc(n1, i1), Doc(n2, i2)) => n1 == n2 && i1 == i2,
        (Doc(n1, _), Collection(n2)) | (Collection(n1), Doc(n2, _)) => n1 == n2,
        (Collection(n1), Collection(n2)) => n1 == n2,
        (Database(d), Doc(n, _) | Collection(n)) | (Doc(n, _) | Collection(n), Database(d)) => {
            db_of(n) == *d
        }
        (Database(d1), Database(d2)) => d1 == d2,
    }
}

/// A write committed by someone else since the transaction started touches
/// what the transaction wrote. (A transaction older than the kept log
/// conflicts with everything.)
fn conflicts(repl: &Repl, start: usize, ops: &[Op]) -> bool {
    if ops.is_empty() {
        return false;
    }
    let Some(log) = repl.entries_after(start) else {
        return true;
    };
    let mine: Vec<Touch<'_>> = ops.iter().map(touch).collect();
    log.iter().any(|e| {
        e.kind
            .ops()
            .iter()
            .any(|op| mine.iter().any(|t| overlaps(t, &touch(op))))
    })
}

fn write_conflict() -> CmdError {
    CmdError::new(
        errors::WRITE_CONFLICT,
        "Write conflict during plan execution and yielding is disabled. :: Please retry your operation or multi-document transaction.",
    )
}

fn has_write_errors(reply: &Document) -> bool {
    matches!(reply.get("writeErrors"), Some(Bson::Array(a)) if !a.is_empty())
}

/// A statement inside a transaction (`autocommit: false`).
pub async fn statement(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let (lsid, txn) = session_of(req)?;
    if req.autocommit != Some(false) {
        return Err(CmdError::new(72, "autocommit must be false"));
    }
    if !allowed_in_transaction(&req.name) {
        return Err(CmdError::new(
            errors::OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
            format!("Cannot run '{}' in a multi-document transaction.", req.name),
        ));
    }
    let set = conn.set.clone();
    let m = &set.members[conn.idx];
    let outcome = {
        let mut data = m.data.lock();
        if req.start_transaction {
            if !data.writable {
                return Err(CmdError::not_writable_primary());
            }
            let latest = data
                .sessions
                .get(&lsid)
                .map(|s| s.txn_number)
                .into_iter()
                .chain(data.txns.get(&lsid).map(|t| t.txn_number))
                .max();
            if let Some(latest) = latest {
                if txn < latest {
                    return Err(too_old(txn, latest));
                }
                if txn == latest {
                    return Err(CmdError::new(
                        errors::CONFLICTING_OPERATION_IN_PROGRESS,
                        format!("Transaction {txn} has already been started on this session."),
                    ));
                }
            }
            let snapshot = Box::new(data.store.clone());
            let start_index = set.repl.lock().members[conn.idx].applied;
            data.txns.insert(
                lsid.clone(),
                ActiveTxn {
                    txn_number: txn,
                    state: TxnState::InProgress {
                        store: snapshot,
                        ops: Vec::new(),
                        start_index,
                    },
                },
            );
        }
        let Some(active) = data.txns.get_mut(&lsid) else {
            return Err(not_found(txn));
        };
        if active.txn_number > txn {
            return Err(too_old(txn, active.txn_number));
        }
        if active.txn_number < txn {
            return Err(not_found(txn));
        }
        let (result, conflict) = {
            let TxnState::InProgress {
                store, start_index, ..
            } = &mut active.state
            else {
                return Err(match active.state {
                    TxnState::Committed { .. } => CmdError::new(
                        errors::TRANSACTION_COMMITTED,
                        format!("Transaction {txn} has been committed."),
                    ),
                    _ => aborted(txn),
                });
            };
            let result = store.execute(&req.db, &req.cmd);
            let conflict = match &result {
                Ok(ex) => conflicts(&set.repl.lock(), *start_index, &ex.ops),
                Err(_) => false,
            };
            (result, conflict)
        };
        let failed = match &result {
            Err(_) => true,
            Ok(ex) => matches!(&ex.outcome, Outcome::Reply(r) if has_write_errors(r)),
        };
        if failed || conflict {
            active.state = TxnState::Aborted;
        }
        if conflict {
            return Err(write_conflict());
        }
        let executed = result?;
        if let TxnState::InProgress { ops, .. } = &mut active.state {
            ops.extend(executed.ops);
        }
        executed.outcome
    };
    Ok(super::crud::outcome_reply(conn, req, outcome))
}

pub async fn commit(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let (lsid, txn) = session_of(req)?;
    let wc = WriteConcern::from_command(&req.cmd)?;
    let set = conn.set.clone();
    let idx = conn.idx;
    let m = &set.members[idx];
    let (index, epoch, appended) = {
        let mut data = m.data.lock();
        if !data.writable {
            return Err(CmdError::not_writable_primary());
        }
        let epoch = m.role_epoch();
        let data = &mut *data;
        match data.txns.get_mut(&lsid) {
            Some(active) if active.txn_number == txn => {
                match std::mem::replace(&mut active.state, TxnState::Aborted) {
                    TxnState::InProgress {
                        ops, start_index, ..
                    } => {
                        let mut repl = set.repl.lock();
                        if conflicts(&repl, start_index, &ops) {
                            return Err(CmdError::new(
                                errors::NO_SUCH_TRANSACTION,
                                format!("Transaction with {{ txnNumber: {txn} }} has been aborted because of a write conflict."),
                            ));
                        }
                        let (index, appended) = if ops.is_empty() {
                            (repl.members[idx].applied, false)
                        } else {
                            for op in &ops {
                                data.store.apply(op);
                            }
                            let index = set.append(
                                &mut repl,
                                idx,
                                EntryKind::Transaction {
                                    lsid: lsid.clone(),
                                    txn_number: txn,
                                    ops,
                                },
                            );
                            data.sessions.insert(
                                lsid.clone(),
                                SessionRecord {
                                    txn_number: txn,
                                    retryable: None,
                                    committed: Some(index),
                                },
                            );
                            (index, true)
                        };
                        active.state = TxnState::Committed { index };
                        (index, epoch, appended)
                    }
                    TxnState::Committed { index } => {
                        active.state = TxnState::Committed { index };
                        (index, epoch, false)
                    }
                    TxnState::Aborted => return Err(aborted(txn)),
                }
            }
            Some(active) if active.txn_number > txn => return Err(too_old(txn, active.txn_number)),
            _ => match data.sessions.get(&lsid) {
                // Committed before a failover: the record replicated here.
                Some(SessionRecord {
                    txn_number,
                    committed: Some(index),
                    ..
                }) if *txn_number == txn => (*index, epoch, false),
                _ => return Err(not_found(txn)),
            },
        }
    };
    if appended {
        set.notify_log();
    }
    let mut reply = super::ok();
    if wc.is_unacknowledged() {
        return Ok(reply);
    }
    if let Some(wce) = set.wait_write_concern(idx, index, &wc, epoch).await {
        reply.insert("writeConcernError", wce);
    }
    Ok(reply)
}

pub async fn abort(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let (lsid, txn) = session_of(req)?;
    let m = conn.member();
    let mut data = m.data.lock();
    if !data.writable {
        return Err(CmdError::not_writable_primary());
    }
    match data.txns.get_mut(&lsid) {
        Some(active) if active.txn_number == txn => match active.state {
            TxnState::InProgress { .. } => {
                active.state = TxnState::Aborted;
                Ok(super::ok())
            }
            TxnState::Committed { .. } => Err(CmdError::new(
                errors::TRANSACTION_COMMITTED,
                format!("Transaction {txn} has been committed."),
            )),
            TxnState::Aborted => Err(aborted(txn)),
        },
        Some(active) if active.txn_number > txn => Err(too_old(txn, active.txn_number)),
        _ => Err(not_found(txn)),
    }
}
