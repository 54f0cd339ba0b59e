//! Diagnostics and start-up commands drivers and shells send.

use bson::{doc, Bson, DateTime, Document};

use super::{as_bool, ConnCtx, Request};
use crate::errors::{self, CmdError};

pub const VERSION: &str = "7.0.12";
const GIT_VERSION: &str = "b6513ce0781db6818e24619e8a461eae90bc94fc";

/// Known commands and whether a secondary runs them without secondaryOk.
const COMMANDS: &[(&str, bool, bool)] = &[
    // (name, secondaryOk always, adminOnly)
    ("abortTransaction", false, true),
    ("aggregate", false, false),
    ("buildInfo", true, false),
    ("collStats", false, false),
    ("commitTransaction", false, true),
    ("connectionStatus", true, false),
    ("count", false, false),
    ("create", false, false),
    ("createIndexes", false, false),
    ("currentOp", true, true),
    ("dbStats", false, false),
    ("delete", false, false),
    ("distinct", false, false),
    ("drop", false, false),
    ("dropDatabase", false, false),
    ("dropIndexes", false, false),
    ("endSessions", true, false),
    ("find", false, false),
    ("findAndModify", false, false),
    ("getCmdLineOpts", true, true),
    ("getDefaultRWConcern", true, true),
    ("getLog", true, true),
    ("getMore", true, false),
    ("getParameter", true, true),
    ("hello", true, false),
    ("hostInfo", true, false),
    ("insert", false, false),
    ("isMaster", true, false),
    ("killAllSessions", true, false),
    ("killCursors", true, false),
    ("killOp", true, true),
    ("killSessions", true, false),
    ("listCollections", false, false),
    ("listCommands", true, false),
    ("listDatabases", false, true),
    ("listIndexes", false, false),
    ("ping", true, false),
    ("refreshSessions", true, false),
    ("replSetFreeze", true, true),
    ("replSetGetConfig", true, true),
    ("replSetGetStatus", true, true),
    ("replSetStepDown", true, true),
    ("replSetStepUp", true, true),
    ("serverStatus", true, false),
    ("shutdown", true, true),
    ("simFault", true, true),
    ("startSession", true, false),
    ("update", false, false),
    ("whatsmyuri", true, false),
];

/// Commands without data or replication effects.
pub fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    match req.name.as_str() {
        "ping" => Ok(super::ok()),
        "buildInfo" | "buildinfo" => Ok(build_info()),
        "getParameter" => {
            req.require_admin()?;
            Ok(get_parameter(conn, &req.cmd))
        }
        "serverStatus" => Ok(server_status(conn)),
        "endSessions" | "killSessions" | "killAllSessions" | "killAllSessionsByPattern"
        | "refreshSessions" => Ok(super::ok()),
        "startSession" => Ok(doc! {
            "id": { "id": bson::Uuid::new() },
            "timeoutMinutes": 30,
            "ok": 1.0,
        }),
        "getLog" => {
            req.require_admin()?;
            Ok(get_log(&req.cmd))
        }
        "getCmdLineOpts" => {
            req.require_admin()?;
            Ok(cmd_line_opts(conn))
        }
        "hostInfo" => Ok(host_info()),
        "connectionStatus" => Ok(doc! {
            "authInfo": { "authenticatedUsers": [], "authenticatedUserRoles": [] },
            "ok": 1.0,
        }),
        "listCommands" => Ok(list_commands()),
        "whatsmyuri" => Ok(doc! { "you": conn.peer.to_string(), "ok": 1.0 }),
        "getFreeMonitoringStatus" => Ok(doc! { "state": "disabled", "ok": 1.0 }),
        "getDefaultRWConcern" => {
            req.require_admin()?;
            Ok(doc! {
                "defaultReadConcern": { "level": "local" },
                "defaultWriteConcern": { "w": "majority", "wtimeout": 0 },
                "defaultReadConcernSource": "implicit",
                "defaultWriteConcernSource": "implicit",
                "localUpdateWallClockTime": DateTime::now(),
                "ok": 1.0,
            })
        }
        "currentOp" => {
            req.require_admin()?;
            Ok(doc! { "inprog": [], "ok": 1.0 })
        }
        "killOp" => {
            req.require_admin()?;
            Ok(doc! { "info": "attempting to kill op", "ok": 1.0 })
        }
        "_isSelf" | "isSelf" => Ok(doc! { "id": bson::oid::ObjectId::new(), "ok": 1.0 }),
        "logout" => Ok(super::ok()),
        "saslStart" | "saslContinue" | "authenticate" => Err(CmdError::new(
            errors::AUTHENTICATION_FAILED,
            "Authentication failed. (holdfast-sim runs without authentication: connect without credentials)",
        )),
        "features" => Ok(doc! { "oidMachine": 0, "ok": 1.0 }),
        "lockInfo" => Ok(doc! { "lockInfo": [], "ok": 1.0 }),
        other => Err(CmdError::command_not_found(other)),
    }
}

pub fn build_info() -> Document {
    doc! {
        "version": VERSION,
        "gitVersion": GIT_VERSION,
        "modules": [],
        "allocator": "tcmalloc",
        "javascriptEngine": "mozjs",
        "sysInfo": "deprecated",
        "versionArray": [7, 0, 12, 0],
        "openssl": { "running": "disabled", "compiled": "disabled" },
        "buildEnvironment": {
            "distmod": "holdfast-sim",
            "distarch": std::env::consts::ARCH,
            "target_arch": std::env::consts::ARCH,
            "target_os": std::env::consts::OS,
        },
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": super::hello::MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["devnull", "inMemory", "wiredTiger"],
        "ok": 1.0,
    }
}

fn known_parameters(conn: &ConnCtx) -> Document {
    doc! {
        "featureCompatibilityVersion": { "version": "7.0" },
        "authenticationMechanisms": ["SCRAM-SHA-1", "SCRAM-SHA-256"],
        "transactionLifetimeLimitSeconds": 60,
        "maxTransactionLockRequestTimeoutMillis": 5,
        "cursorTimeoutMillis": 600_000i64,
        "logLevel": 0,
        "quiet": false,
        "enableElectionHandoff": true,
        "requireApiVersion": false,
        "enableTestCommands": false,
        "replElectionTimeoutMillis": conn.set.cfg.election_ms as i64,
        "tlsMode": "disabled",
        "sslMode": "disabled",
    }
}

fn get_parameter(conn: &ConnCtx, cmd: &Document) -> Document {
    let known = known_parameters(conn);
    let (all, details) = match cmd.get("getParameter") {
        Some(Bson::String(s)) if s == "*" => (true, false),
        Some(Bson::Document(opts)) => (
            matches!(opts.get("allParameters"), Some(v) if as_bool(v)),
            matches!(opts.get("showDetails"), Some(v) if as_bool(v)),
        ),
        _ => (false, false),
    };
    let mut out = Document::new();
    for (k, v) in known.iter() {
        if all || cmd.contains_key(k) {
            let v = if details {
                Bson::Document(
                    doc! { "value": v.clone(), "settableAtRuntime": true, "settableAtStartup": true },
                )
            } else {
                v.clone()
            };
            out.insert(k.clone(), v);
        }
    }
    out.insert("ok", 1.0);
    out
}

fn server_status(conn: &ConnCtx) -> Document {
    use std::sync::atomic::Ordering::Relaxed;
    let m = conn.member();
    let uptime = m.uptime();
    let current = m.conns_current.load(Relaxed) as i32;
    let (hello, _) = super::hello::build(conn, true, false);
    let mut repl = Document::new();
    for key in [
        "topologyVersion",
        "hosts",
        "setName",
        "setVersion",
        "isWritablePrimary",
        "secondary",
        "primary",
        "me",
        "electionId",
        "lastWrite",
    ] {
        if let Some(v) = hello.get(key) {
            repl.insert(key, v.clone());
        }
    }
    repl.insert("rbid", 1);
    doc! {
        "host": m.host.clone(),
        "version": VERSION,
        "process": "mongod",
        "pid": std::process::id() as i64,
        "uptime": uptime.as_secs_f64().floor(),
        "uptimeMillis": uptime.as_millis() as i64,
        "uptimeEstimate": uptime.as_secs() as i64,
        "localTime": DateTime::now(),
        "connections": {
            "current": current,
            "available": 838_860 - current,
            "totalCreated": m.conns_total.load(Relaxed) as i32,
            "active": m.conns_active.load(Relaxed) as i32,
        },
        "repl": repl,
        "opcounters": m.opcounters.to_document(),
        "metrics": {
            "cursor": { "open": { "total": m.cursors.lock().len() as i64 } },
        },
        "mem": { "bits": 64, "supported": false },
        "storageEngine": { "name": "inMemory", "supportsCommittedReads": true, "persistent": false },
        "ok": 1.0,
    }
}

fn get_log(cmd: &Document) -> Document {
    match cmd.get("getLog") {
        Some(Bson::String(s)) if s == "*" => {
            doc! { "names": ["global", "startupWarnings"], "ok": 1.0 }
        }
        _ => doc! { "totalLinesWritten": 0, "log": [], "ok": 1.0 },
    }
}

fn cmd_line_opts(conn: &ConnCtx) -> Document {
    let m = conn.member();
    doc! {
        "argv": ["mongod", "--replSet", conn.set.cfg.set_name.clone(), "--port", m.addr.port().to_string()],
        "parsed": {
            "net": { "bindIp": m.addr.ip().to_string(), "port": m.addr.port() as i32 },
            "replication": { "replSet": conn.set.cfg.set_name.clone() },
            "storage": { "engine": "inMemory" },
        },
        "ok": 1.0,
    }
}

fn host_info() -> Document {
    doc! {
        "system": {
            "currentTime": DateTime::now(),
            "hostname": "localhost",
            "cpuAddrSize": 64,
            "memSizeMB": 0i64,
            "numCores": std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1),
            "cpuArch": std::env::consts::ARCH,
            "numaEnabled": false,
        },
        "os": { "type": std::env::consts::OS, "name": "holdfast-sim", "version": "" },
        "extra": {},
        "ok": 1.0,
    }
}

fn list_commands() -> Document {
    let mut commands = Document::new();
    for (name, secondary_ok, admin_only) in COMMANDS {
        commands.insert(
            *name,
            doc! {
                "help": "",
                "requiresAuth": false,
                "secondaryOk": *secondary_ok,
                "adminOnly": *admin_only,
                "apiVersions": [],
                "deprecatedApiVersions": [],
            },
        );
    }
    doc! { "commands": commands, "ok": 1.0 }
}
