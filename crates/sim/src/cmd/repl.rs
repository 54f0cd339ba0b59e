//! Replication commands, shutdown and the fault-injection command.

use std::time::Duration;

use bson::{doc, Bson, DateTime, Document};

use super::{as_bool, as_i64, After, ConnCtx, Request};
use crate::errors::{self, CmdError};

pub async fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    // The dispatcher checks `admin` for the shared table's commands;
    // simFault is the simulator's own.
    if req.name == "simFault" {
        req.require_admin()?;
    }
    match req.name.as_str() {
        "replSetStepDown" => step_down(conn, req).await,
        "replSetFreeze" => freeze(conn, req),
        "replSetStepUp" => {
            conn.set.step_up(conn.idx).await?;
            Ok(super::ok())
        }
        "replSetGetStatus" => Ok(get_status(conn)),
        "replSetGetConfig" => Ok(get_config(conn)),
        "replSetInitiate" => Err(CmdError::new(23, "already initialized")),
        "replSetReconfig" => Err(CmdError::new(
            errors::COMMAND_FAILED,
            "holdfast-sim does not support reconfiguration",
        )),
        "shutdown" => shutdown(conn, req).await,
        "simFault" => sim_fault(conn, req).await,
        other => Err(CmdError::command_not_found(other)),
    }
}

async fn step_down(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let force = req.cmd.get("force").is_some_and(as_bool);
    let secs = req
        .cmd
        .get("replSetStepDown")
        .and_then(as_i64)
        .filter(|s| *s >= 0)
        .unwrap_or(60);
    let catch_up = match req.cmd.get("secondaryCatchUpPeriodSecs") {
        Some(v) => as_i64(v).ok_or_else(|| {
            CmdError::new(
                errors::TYPE_MISMATCH,
                "secondaryCatchUpPeriodSecs must be a number",
            )
        })?,
        None if force => 0,
        None => 10,
    };
    if catch_up < 0 {
        return Err(CmdError::bad_value(
            "secondaryCatchUpPeriodSecs must be non-negative",
        ));
    }
    if catch_up > secs {
        return Err(CmdError::bad_value(
            "stepdown period must be longer than secondaryCatchUpPeriodSecs",
        ));
    }
    conn.set
        .step_down(conn.idx, secs as u64, catch_up as u64, force)
        .await?;
    Ok(super::ok())
}

fn freeze(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let secs = req
        .cmd
        .get("replSetFreeze")
        .and_then(as_i64)
        .ok_or_else(|| {
            CmdError::new(
                errors::TYPE_MISMATCH,
                "replSetFreeze takes a number of seconds",
            )
        })?;
    let unfrozen = conn.set.freeze(conn.idx, secs.max(0) as u64)?;
    let mut d = Document::new();
    if unfrozen {
        d.insert("info", "unfreezing");
    }
    d.insert("ok", 1.0);
    Ok(d)
}

fn state_of(alive: bool, primary: bool) -> (i32, &'static str) {
    if !alive {
        (8, "(not reachable/healthy)")
    } else if primary {
        (1, "PRIMARY")
    } else {
        (2, "SECONDARY")
    }
}

fn get_status(conn: &ConnCtx) -> Document {
    let set = &conn.set;
    let repl = set.repl.lock();
    let now = DateTime::now();
    let majority = set.cfg.majority();
    let committed = repl.optime_at(repl.majority_index(majority));
    let me = &repl.members[conn.idx];
    let my_state = state_of(true, repl.primary == Some(conn.idx)).0;
    let sync_source = if repl.primary == Some(conn.idx) {
        None
    } else {
        repl.primary
    };
    let mut members = Vec::new();
    for (i, mr) in repl.members.iter().enumerate() {
        let is_primary = repl.primary == Some(i);
        let (state, state_str) = state_of(mr.alive, is_primary);
        let mut d = doc! {
            "_id": i as i32,
            "name": set.hosts[i].clone(),
            "health": if mr.alive { 1.0 } else { 0.0 },
            "state": state,
            "stateStr": state_str,
            "uptime": if mr.alive { set.members[i].uptime().as_secs() as i64 } else { 0 },
            "optime": mr.last.to_document(),
            "optimeDate": super::hello::optime_date(mr.last),
            "lastAppliedWallTime": mr.last_wall,
            "lastDurableWallTime": mr.last_wall,
            "syncSourceHost": if is_primary || !mr.alive { String::new() } else { repl.primary.map(|p| set.hosts[p].clone()).unwrap_or_default() },
            "syncSourceId": if is_primary || !mr.alive { -1 } else { repl.primary.map(|p| p as i32).unwrap_or(-1) },
            "infoMessage": "",
            "configVersion": 1,
            "configTerm": repl.term,
        };
        if is_primary {
            d.insert("electionTime", repl.election_optime.ts);
            if let Some(date) = repl.election_date {
                d.insert("electionDate", date);
            }
        }
        if i == conn.idx {
            d.insert("self", true);
        } else {
            d.insert("lastHeartbeat", now);
            d.insert("lastHeartbeatRecv", now);
            d.insert("pingMs", 0i64);
            d.insert(
                "lastHeartbeatMessage",
                if mr.alive {
                    ""
                } else {
                    "Error connecting to member"
                },
            );
        }
        members.push(Bson::Document(d));
    }
    doc! {
        "set": set.cfg.set_name.clone(),
        "date": now,
        "myState": my_state,
        "term": repl.term,
        "syncSourceHost": sync_source.map(|p| set.hosts[p].clone()).unwrap_or_default(),
        "syncSourceId": sync_source.map(|p| p as i32).unwrap_or(-1),
        "heartbeatIntervalMillis": 2000i64,
        "majorityVoteCount": majority as i32,
        "writeMajorityCount": majority as i32,
        "votingMembersCount": set.members.len() as i32,
        "writableVotingMembersCount": set.members.len() as i32,
        "optimes": {
            "lastCommittedOpTime": committed.0.to_document(),
            "lastCommittedWallTime": committed.1,
            "appliedOpTime": me.last.to_document(),
            "durableOpTime": me.last.to_document(),
            "lastAppliedWallTime": me.last_wall,
            "lastDurableWallTime": me.last_wall,
        },
        "members": members,
        "ok": 1.0,
    }
}

fn get_config(conn: &ConnCtx) -> Document {
    let set = &conn.set;
    let term = set.repl.lock().term;
    let members: Vec<Bson> = set
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Bson::Document(doc! {
                "_id": i as i32,
                "host": h.clone(),
                "arbiterOnly": false,
                "buildIndexes": true,
                "hidden": false,
                "priority": 1.0,
                "tags": super::hello::tags_document(set.cfg.tags_of(i)),
                "secondaryDelaySecs": 0i64,
                "votes": 1,
            })
        })
        .collect();
    doc! {
        "config": {
            "_id": set.cfg.set_name.clone(),
            "version": 1,
            "term": term,
            "members": members,
            "protocolVersion": 1i64,
            "writeConcernMajorityJournalDefault": true,
            "settings": {
                "chainingAllowed": true,
                "heartbeatIntervalMillis": 2000,
                "heartbeatTimeoutSecs": 10,
                "electionTimeoutMillis": set.cfg.election_ms as i64,
                "catchUpTimeoutMillis": -1,
                "catchUpTakeoverDelayMillis": 30000,
                "getLastErrorModes": {},
                "getLastErrorDefaults": { "w": 1, "wtimeout": 0 },
                "replicaSetId": set.replica_set_id,
            },
        },
        "ok": 1.0,
    }
}

/// `shutdown`: a primary steps down first (unless that fails without
/// `force`), then the member dies: listener closed, connections closed, no
/// reply (as mongod).
async fn shutdown(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let force = req.cmd.get("force").is_some_and(as_bool);
    if conn.member().is_writable() {
        let timeout = req
            .cmd
            .get("timeoutSecs")
            .and_then(as_i64)
            .filter(|t| *t >= 0)
            .unwrap_or(10) as u64;
        let r = conn.set.step_down(conn.idx, 60, timeout, force).await;
        if let Err(e) = r {
            if !force && e.code == errors::EXCEEDED_TIME_LIMIT {
                return Err(e);
            }
        }
    }
    conn.no_reply = true;
    conn.after = After::KillSelf { graceful: true };
    Ok(super::ok())
}

/// `{simFault: "blackhole" | "unblackhole" | "latency" | "lag" | "kill" |
/// "revive" | "stepDown" | "freeze", member: <index, default self>,
/// ms: <latency or replication lag>,
/// secs: <stepDown/freeze seconds>, force: <bool>}`.
async fn sim_fault(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let fault = req
        .cmd
        .get_str("simFault")
        .map_err(|_| CmdError::bad_value("simFault must be a string"))?
        .to_string();
    let member = match req.cmd.get("member") {
        Some(v) => as_i64(v).ok_or_else(|| CmdError::bad_value("member must be an index"))?,
        None => conn.idx as i64,
    };
    if member < 0 || member as usize >= conn.set.members.len() {
        return Err(CmdError::bad_value(format!(
            "member {member} does not exist (the set has {})",
            conn.set.members.len()
        )));
    }
    let member = member as usize;
    let set = conn.set.clone();
    match fault.as_str() {
        "blackhole" => set.set_blackhole(member, true),
        "unblackhole" => set.set_blackhole(member, false),
        "latency" => {
            let ms = req.cmd.get("ms").and_then(as_i64).unwrap_or(0).max(0);
            set.set_latency(member, Duration::from_millis(ms as u64));
        }
        "lag" => {
            let ms = req.cmd.get("ms").and_then(as_i64).unwrap_or(0).max(0);
            set.set_lag(member, Duration::from_millis(ms as u64));
        }
        "kill" => {
            if member == conn.idx {
                conn.after = After::KillSelf { graceful: false };
            } else {
                let _ = tokio::spawn(async move { set.kill(member, false).await }).await;
            }
        }
        "revive" => {
            let r = tokio::spawn(async move { set.revive(member).await }).await;
            if let Ok(Err(e)) = r {
                return Err(CmdError::new(
                    errors::COMMAND_FAILED,
                    format!("could not revive member {member}: {e}"),
                ));
            }
        }
        "stepDown" => {
            let secs = req.cmd.get("secs").and_then(as_i64).unwrap_or(60).max(0) as u64;
            let force = req.cmd.get("force").is_none_or(as_bool);
            let primary = set
                .repl
                .lock()
                .primary
                .ok_or_else(CmdError::not_writable_primary)?;
            let target = if req.cmd.contains_key("member") {
                member
            } else {
                primary
            };
            let catch_up = if force { 0 } else { secs.min(10) };
            let r = tokio::spawn(async move { set.step_down(target, secs, catch_up, force).await })
                .await;
            match r {
                Ok(r) => r?,
                Err(_) => return Err(CmdError::new(errors::COMMAND_FAILED, "stepDown failed")),
            }
        }
        "freeze" => {
            let secs = req.cmd.get("secs").and_then(as_i64).unwrap_or(60).max(0) as u64;
            set.freeze(member, secs)?;
        }
        other => {
            return Err(CmdError::bad_value(format!(
                "unknown simFault '{other}': use blackhole, unblackhole, latency, lag, kill, revive, stepDown or freeze"
            )))
        }
    }
    Ok(doc! { "simFault": fault, "member": member as i32, "ok": 1.0 })
}
