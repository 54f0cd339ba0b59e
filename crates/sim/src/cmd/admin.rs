//! Diagnostics and start-up commands drivers and shells send.

use bson::{doc, Bson, DateTime, Document};

use super::{as_bool, ConnCtx, Request};
use crate::errors::CmdError;

pub const VERSION: &str = "7.0.12";
const GIT_VERSION: &str = "b6513ce0781db6818e24619e8a461eae90bc94fc";

/// Commands without data or replication effects.
pub fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    match req.name.as_str() {
        "ping" => Ok(super::ok()),
        "buildInfo" | "buildinfo" => Ok(build_info()),
        "getParameter" => Ok(get_parameter(conn, &req.cmd)),
        "serverStatus" => Ok(server_status(conn)),
        "endSessions" => {
            let keys = session_keys(conn, req, "endSessions")?;
            conn.member().logical_sessions.lock().end(keys);
            Ok(super::ok())
        }
        "refreshSessions" => {
            let keys = session_keys(conn, req, "refreshSessions")?;
            let mut cache = conn.member().logical_sessions.lock();
            for k in keys {
                cache.vivify(&k);
            }
            Ok(super::ok())
        }
        "refreshLogicalSessionCacheNow" => {
            conn.set.refresh_logical_sessions(conn.idx);
            Ok(super::ok())
        }
        "killSessions" | "killAllSessions" | "killAllSessionsByPattern" => Ok(super::ok()),
        "startSession" => {
            let id = bson::Uuid::new();
            let lsid = Bson::Document(doc! { "id": id });
            if let Some(k) = session_key(conn, &lsid) {
                conn.member().logical_sessions.lock().vivify(&k);
            }
            Ok(doc! {
                "id": lsid,
                "timeoutMinutes": 30,
                "ok": 1.0,
            })
        }
        "getLog" => Ok(get_log(&req.cmd)),
        "getCmdLineOpts" => Ok(cmd_line_opts(conn)),
        "hostInfo" => Ok(host_info()),
        "connectionStatus" => Ok(connection_status(conn, req)),
        "listCommands" => Ok(list_commands()),
        "whatsmyuri" => Ok(doc! { "you": conn.peer.to_string(), "ok": 1.0 }),
        "getFreeMonitoringStatus" => Ok(doc! { "state": "disabled", "ok": 1.0 }),
        "getDefaultRWConcern" => Ok(doc! {
            "defaultReadConcern": { "level": "local" },
            "defaultWriteConcern": { "w": "majority", "wtimeout": 0 },
            "defaultReadConcernSource": "implicit",
            "defaultWriteConcernSource": "implicit",
            "localUpdateWallClockTime": DateTime::now(),
            "ok": 1.0,
        }),
        "currentOp" => Ok(doc! { "inprog": [], "ok": 1.0 }),
        "killOp" => Ok(doc! { "info": "attempting to kill op", "ok": 1.0 }),
        "_isSelf" | "isSelf" => Ok(doc! { "id": bson::oid::ObjectId::new(), "ok": 1.0 }),
        "features" => Ok(doc! { "oidMachine": 0, "ok": 1.0 }),
        "lockInfo" => Ok(doc! { "lockInfo": [], "ok": 1.0 }),
        other => Err(CmdError::command_not_found(other)),
    }
}

/// The session key of an `lsid` sent on this connection (see
/// [`crate::logical_sessions::SessionKey`]).
fn session_key(conn: &ConnCtx, lsid: &Bson) -> Option<Vec<u8>> {
    let digest = conn.auth.user.as_ref().map(|u| u.session_digest());
    crate::logical_sessions::key_of(lsid, digest.as_deref())
}

/// The sessions an `endSessions`/`refreshSessions` command names (an
/// array of `{id: <UUID>}`).
fn session_keys(conn: &ConnCtx, req: &Request, field: &str) -> Result<Vec<Vec<u8>>, CmdError> {
    let Some(Bson::Array(lsids)) = req.cmd.get(field) else {
        return Err(CmdError::new(
            crate::errors::TYPE_MISMATCH,
            format!("BSON field '{field}.{field}' is the wrong type, expected type 'array'"),
        ));
    };
    Ok(lsids.iter().filter_map(|l| session_key(conn, l)).collect())
}

/// `authInfo`: the connection's user and its roles (and, with
/// `showPrivileges`, nothing more detailed than the roles).
fn connection_status(conn: &mut ConnCtx, req: &Request) -> Document {
    let current = crate::auth::current(conn);
    let (users, roles) = match &current {
        Some((name, _)) => {
            let roles = {
                let data = conn.member().data.lock();
                crate::auth::users::find(&data.store, &name.db, &name.user)
                    .map(|r| r.roles)
                    .unwrap_or_default()
            };
            (
                vec![Bson::Document(
                    doc! { "user": name.user.clone(), "db": name.db.clone() },
                )],
                roles
                    .iter()
                    .map(|r| Bson::Document(doc! { "role": r.role.clone(), "db": r.db.clone() }))
                    .collect::<Vec<_>>(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut auth_info = doc! { "authenticatedUsers": users, "authenticatedUserRoles": roles };
    if req.cmd.get("showPrivileges").is_some_and(as_bool) {
        auth_info.insert("authenticatedUserPrivileges", Vec::<Bson>::new());
    }
    doc! { "authInfo": auth_info, "ok": 1.0 }
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
    let tls = conn.set.cfg.tls.is_some();
    doc! {
        "featureCompatibilityVersion": { "version": "7.0" },
        "authenticationMechanisms": ["MONGODB-X509", "SCRAM-SHA-1", "SCRAM-SHA-256"],
        "transactionLifetimeLimitSeconds": 60,
        "maxTransactionLockRequestTimeoutMillis": 5,
        "cursorTimeoutMillis": 600_000i64,
        "logLevel": 0,
        "quiet": false,
        "enableElectionHandoff": true,
        "requireApiVersion": false,
        "enableTestCommands": false,
        "replElectionTimeoutMillis": conn.set.cfg.election_ms as i64,
        "periodicNoopIntervalSecs": (conn.set.cfg.periodic_noop_ms / 1000) as i32,
        "writePeriodicNoops": conn.set.cfg.periodic_noop_ms > 0,
        "tlsMode": if tls { "requireTLS" } else { "disabled" },
        "sslMode": if tls { "requireSSL" } else { "disabled" },
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
    let started =
        DateTime::from_millis(DateTime::now().timestamp_millis() - uptime.as_millis() as i64);
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
        "tags",
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
            "commands": m.opcounters.commands_document(),
            "cursor": { "open": { "total": m.cursors.lock().len() as i64 } },
        },
        "logicalSessionRecordCache": m.logical_sessions.lock().stats_document(started),
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
    let cfg = &conn.set.cfg;
    let mut argv = vec![
        "mongod".to_string(),
        "--replSet".to_string(),
        cfg.set_name.clone(),
        "--port".to_string(),
        m.addr.port().to_string(),
    ];
    let mut net = doc! { "bindIp": m.addr.ip().to_string(), "port": m.addr.port() as i32 };
    let mut parsed = Document::new();
    if cfg.auth {
        argv.push("--auth".to_string());
        parsed.insert("security", doc! { "authorization": "enabled" });
    }
    if let Some(tls) = &cfg.tls {
        argv.extend(["--tlsMode".to_string(), "requireTLS".to_string()]);
        let mut t = doc! { "mode": "requireTLS" };
        if tls.ca_pem.is_some() {
            t.insert("allowConnectionsWithoutCertificates", true);
        }
        net.insert("tls", t);
    }
    parsed.insert("net", net);
    parsed.insert("replication", doc! { "replSet": cfg.set_name.clone() });
    parsed.insert("storage", doc! { "engine": "inMemory" });
    doc! { "argv": argv, "parsed": parsed, "ok": 1.0 }
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

/// Every command of the shared table, and the simulator's own `simFault`.
fn list_commands() -> Document {
    let entry = |secondary_ok: bool, admin_only: bool| {
        doc! {
            "help": "",
            "requiresAuth": false,
            "secondaryOk": secondary_ok,
            "adminOnly": admin_only,
            "apiVersions": [],
            "deprecatedApiVersions": [],
        }
    };
    let mut commands = Document::new();
    for c in holdfast_wire::commands::COMMANDS {
        let always = c.on_secondary == holdfast_wire::commands::OnSecondary::Always;
        commands.insert(c.name, entry(always, c.admin_only));
    }
    commands.insert("simFault", entry(true, true));
    doc! { "commands": commands, "ok": 1.0 }
}
