//! What a command requires of the connection's user, and MongoDB's
//! Unauthorized (13) errors when it is missing.

use bson::{Bson, Document};

use super::roles::{Action, Privileges, Resource};
use crate::cmd::{ConnCtx, Request};
use crate::errors::{self, CmdError};

/// What a command needs before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Runs before authentication (handshake, SASL, ping, listCommands,
    /// logout).
    PreAuth,
    /// Any authenticated user (the command itself may check more: own
    /// cursors, own user, the databases listed).
    Authenticated,
    /// These actions.
    Actions(Vec<(Resource, Action)>),
    /// Not a command the simulator has: it answers 59 CommandNotFound, as
    /// mongod does before any authorization check.
    Unknown,
}

/// The collection a command names in its first field, if a string.
fn collection(cmd: &Document) -> Option<&str> {
    cmd.iter().next().and_then(|(_, v)| v.as_str())
}

/// What `req` requires.
pub fn requirement(req: &Request) -> Requirement {
    use Action::*;
    let db = req.db.as_str();
    let on_coll = |actions: &[Action]| {
        let r = match collection(&req.cmd) {
            Some(c) => Resource::collection(db, c),
            None => Resource::db(db),
        };
        Requirement::Actions(actions.iter().map(|a| (r.clone(), *a)).collect())
    };
    let on_db = |a: Action| Requirement::Actions(vec![(Resource::db(db), a)]);
    let cluster = |a: Action| Requirement::Actions(vec![(Resource::Cluster, a)]);
    match req.name.as_str() {
        "hello" | "isMaster" | "ismaster" | "saslStart" | "saslContinue" | "authenticate"
        | "ping" | "listCommands" | "logout" => Requirement::PreAuth,
        "buildInfo"
        | "buildinfo"
        | "connectionStatus"
        | "endSessions"
        | "startSession"
        | "refreshSessions"
        | "refreshLogicalSessionCacheNow"
        | "killSessions"
        | "commitTransaction"
        | "abortTransaction"
        | "getMore"
        | "killCursors"
        | "whatsmyuri"
        | "features"
        | "isSelf"
        | "_isSelf"
        | "usersInfo"
        | "listDatabases" => Requirement::Authenticated,
        "find" | "count" | "distinct" => on_coll(&[Find]),
        "aggregate" => aggregate(req),
        "explain" => match req.cmd.get("explain") {
            Some(Bson::Document(inner)) => {
                let inner = Request::new(req.db.clone(), inner.clone());
                match requirement(&inner) {
                    Requirement::Unknown | Requirement::PreAuth => Requirement::Authenticated,
                    r => r,
                }
            }
            _ => Requirement::Authenticated,
        },
        "listCollections" => on_db(ListCollections),
        "listIndexes" => on_coll(&[ListIndexes]),
        "collStats" | "dataSize" => on_coll(&[CollStats]),
        "dbStats" => on_db(DbStats),
        "insert" => on_coll(&[Insert]),
        "update" => {
            if has_upsert(req.cmd.get("updates")) {
                on_coll(&[Update, Insert])
            } else {
                on_coll(&[Update])
            }
        }
        "delete" => on_coll(&[Remove]),
        "findAndModify" | "findandmodify" => {
            let remove = req.cmd.get("remove").is_some_and(crate::cmd::as_bool);
            let upsert = req.cmd.get("upsert").is_some_and(crate::cmd::as_bool);
            match (remove, upsert) {
                (true, _) => on_coll(&[Find, Remove]),
                (false, true) => on_coll(&[Find, Update, Insert]),
                (false, false) => on_coll(&[Find, Update]),
            }
        }
        "create" => on_coll(&[CreateCollection]),
        "drop" => on_coll(&[DropCollection]),
        "createIndexes" => on_coll(&[CreateIndex]),
        "dropIndexes" | "deleteIndexes" => on_coll(&[DropIndex]),
        "collMod" => on_coll(&[CollMod]),
        "validate" => on_coll(&[Validate]),
        "dropDatabase" => on_db(DropDatabase),
        "renameCollection" => rename(req),
        "createUser" => on_db(CreateUser),
        "dropUser" => on_db(DropUser),
        "updateUser" => on_db(UpdateUser),
        "serverStatus" | "lockInfo" | "getFreeMonitoringStatus" => cluster(ServerStatus),
        "replSetGetStatus" => cluster(ReplSetGetStatus),
        "replSetGetConfig" => cluster(ReplSetGetConfig),
        "replSetStepDown" | "replSetFreeze" | "replSetStepUp" => cluster(ReplSetStateChange),
        "replSetInitiate" | "replSetReconfig" => cluster(ReplSetConfigure),
        "shutdown" => cluster(Shutdown),
        "getCmdLineOpts" => cluster(GetCmdLineOpts),
        "getParameter" => cluster(GetParameter),
        "hostInfo" => cluster(HostInfo),
        "getLog" => cluster(GetLog),
        "currentOp" => cluster(InProg),
        "killOp" => cluster(KillOp),
        "killAllSessions" | "killAllSessionsByPattern" => cluster(KillAnySession),
        "getDefaultRWConcern" => cluster(GetDefaultRWConcern),
        "simFault" => cluster(SimFault),
        _ => Requirement::Unknown,
    }
}

fn has_upsert(updates: Option<&Bson>) -> bool {
    match updates {
        Some(Bson::Array(a)) => a.iter().any(|u| {
            u.as_document()
                .and_then(|d| d.get("upsert"))
                .is_some_and(crate::cmd::as_bool)
        }),
        _ => false,
    }
}

/// `{db, coll}` or a plain collection name on the command's database.
fn target(v: &Bson, db: &str) -> Option<Resource> {
    match v {
        Bson::String(c) => Some(Resource::collection(db, c)),
        Bson::Document(d) => {
            let tdb = d.get_str("db").unwrap_or(db);
            let coll = d.get_str("coll").unwrap_or("");
            Some(Resource::collection(tdb, coll))
        }
        _ => None,
    }
}

fn aggregate(req: &Request) -> Requirement {
    use Action::*;
    let db = req.db.as_str();
    let source = match collection(&req.cmd) {
        Some(c) => Resource::collection(db, c),
        None => Resource::db(db),
    };
    let mut need = vec![(source, Find)];
    if let Some(Bson::Array(stages)) = req.cmd.get("pipeline") {
        for stage in stages.iter().filter_map(Bson::as_document) {
            for (op, spec) in stage {
                match op.as_str() {
                    "$out" => {
                        if let Some(t) = target(spec, db) {
                            need.push((t.clone(), Insert));
                            need.push((t, Remove));
                        }
                    }
                    "$merge" => {
                        let into = match spec {
                            Bson::Document(d) => d.get("into"),
                            other => Some(other),
                        };
                        if let Some(t) = into.and_then(|i| target(i, db)) {
                            need.push((t.clone(), Insert));
                            need.push((t, Update));
                        }
                    }
                    "$lookup" | "$graphLookup" | "$unionWith" => {
                        let from = match spec {
                            Bson::Document(d) => d.get("from").or_else(|| d.get("coll")),
                            Bson::String(_) => Some(spec),
                            _ => None,
                        };
                        if let Some(t) = from.and_then(|f| target(f, db)) {
                            need.push((t, Find));
                        }
                    }
                    "$currentOp" => need.push((Resource::Cluster, InProg)),
                    _ => {}
                }
            }
        }
    }
    Requirement::Actions(need)
}

fn rename(req: &Request) -> Requirement {
    use Action::*;
    let from = req.cmd.get_str("renameCollection").unwrap_or("");
    let to = req.cmd.get_str("to").unwrap_or("");
    let split = |ns: &str| -> (String, String) {
        match ns.split_once('.') {
            Some((d, c)) => (d.to_string(), c.to_string()),
            None => (ns.to_string(), String::new()),
        }
    };
    let ((fdb, fcoll), (tdb, tcoll)) = (split(from), split(to));
    let src = Resource::collection(&fdb, &fcoll);
    let dst = Resource::collection(&tdb, &tcoll);
    if fdb == tdb {
        Requirement::Actions(vec![
            (src, RenameCollectionSameDb),
            (dst, RenameCollectionSameDb),
        ])
    } else {
        Requirement::Actions(vec![
            (src.clone(), Find),
            (src, DropCollection),
            (dst.clone(), Insert),
            (dst, CreateCollection),
        ])
    }
}

/// "command <name> requires authentication".
pub fn requires_authentication(name: &str) -> CmdError {
    CmdError::new(
        errors::UNAUTHORIZED,
        format!("command {name} requires authentication"),
    )
}

/// "not authorized on <db> to execute command { … }" (passwords and SASL
/// payloads shown as "xxx", as mongod does).
pub fn not_authorized(req: &Request) -> CmdError {
    CmdError::new(
        errors::UNAUTHORIZED,
        format!(
            "not authorized on {} to execute command {}",
            req.db,
            shell_document(&req.cmd, true)
        ),
    )
}

/// Checks `req` against the connection's user before it runs (access
/// control on). The localhost exception: while no user exists, a client
/// on the loopback interface may create the first one.
pub fn authorize(conn: &mut ConnCtx, req: &Request) -> Result<(), CmdError> {
    let need = requirement(req);
    if matches!(need, Requirement::PreAuth | Requirement::Unknown) {
        return Ok(());
    }
    let Some((_, privileges)) = super::current(conn) else {
        if req.name == "createUser" && localhost_exception(conn, req) {
            return Ok(());
        }
        return Err(requires_authentication(&req.name));
    };
    match need {
        Requirement::Actions(list) if !allows_all(&privileges, &list) => Err(not_authorized(req)),
        _ => Ok(()),
    }
}

fn allows_all(p: &Privileges, list: &[(Resource, Action)]) -> bool {
    list.iter().all(|(r, a)| p.allows(r, *a))
}

fn localhost_exception(conn: &ConnCtx, req: &Request) -> bool {
    if !conn.peer.ip().is_loopback() || !(req.db == "admin" || req.db == "$external") {
        return false;
    }
    let data = conn.member().data.lock();
    !super::users::any(&data.store)
}

/// A document as mongod prints one in messages: `{ find: "c", n: 1 }`.
pub fn shell_document(d: &Document, snip: bool) -> String {
    if d.is_empty() {
        return "{}".to_string();
    }
    let parts: Vec<String> = d
        .iter()
        .map(|(k, v)| {
            let v = if snip && matches!(k.as_str(), "pwd" | "payload") {
                "\"xxx\"".to_string()
            } else {
                shell_value(v)
            };
            format!("{k}: {v}")
        })
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

fn shell_value(v: &Bson) -> String {
    match v {
        Bson::Document(d) => shell_document(d, true),
        Bson::Array(a) if a.is_empty() => "[]".to_string(),
        Bson::Array(a) => format!(
            "[ {} ]",
            a.iter().map(shell_value).collect::<Vec<_>>().join(", ")
        ),
        Bson::String(s) => format!("{s:?}"),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Bson::Double(f) => f.to_string(),
        Bson::Boolean(b) => b.to_string(),
        Bson::Null => "null".to_string(),
        Bson::ObjectId(o) => format!("ObjectId('{}')", o.to_hex()),
        Bson::Binary(b) if b.subtype == bson::spec::BinarySubtype::Uuid && b.bytes.len() == 16 => {
            let mut u = [0u8; 16];
            u.copy_from_slice(&b.bytes);
            format!("UUID(\"{}\")", bson::Uuid::from_bytes(u))
        }
        Bson::Binary(b) => format!("BinData({}, {})", u8::from(b.subtype), hex_upper(&b.bytes)),
        Bson::DateTime(d) => format!("new Date({})", d.timestamp_millis()),
        Bson::Timestamp(t) => format!("Timestamp({}, {})", t.time, t.increment),
        other => other.to_string(),
    }
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn req(db: &str, cmd: Document) -> Request {
        Request::new(db.to_string(), cmd)
    }

    #[test]
    fn reads_writes_and_aggregate_targets() {
        use Action::*;
        assert_eq!(
            requirement(&req("db1", doc! { "find": "c" })),
            Requirement::Actions(vec![(Resource::db("db1"), Find)])
        );
        assert_eq!(
            requirement(&req("db1", doc! { "insert": "c", "documents": [] })),
            Requirement::Actions(vec![(Resource::db("db1"), Insert)])
        );
        let agg = req(
            "db1",
            doc! { "aggregate": "c", "pipeline": [ { "$match": {} }, { "$out": { "db": "db2", "coll": "o" } } ] },
        );
        assert_eq!(
            requirement(&agg),
            Requirement::Actions(vec![
                (Resource::db("db1"), Find),
                (Resource::db("db2"), Insert),
                (Resource::db("db2"), Remove),
            ])
        );
        assert_eq!(
            requirement(&req("db1", doc! { "find": "system.users" })),
            Requirement::Actions(vec![(Resource::collection("db1", "system.users"), Find)])
        );
        assert_eq!(
            requirement(&req("admin", doc! { "explain": { "find": "c" } })),
            Requirement::Actions(vec![(Resource::db("admin"), Find)])
        );
        assert_eq!(
            requirement(&req("db1", doc! { "ping": 1 })),
            Requirement::PreAuth
        );
        assert_eq!(
            requirement(&req("db1", doc! { "noSuchThing": 1 })),
            Requirement::Unknown
        );
        assert_eq!(
            requirement(&req(
                "admin",
                doc! { "renameCollection": "a.x", "to": "b.y" }
            )),
            Requirement::Actions(vec![
                (Resource::db("a"), Find),
                (Resource::db("a"), DropCollection),
                (Resource::db("b"), Insert),
                (Resource::db("b"), CreateCollection),
            ])
        );
    }

    #[test]
    fn every_command_the_sim_answers_has_a_requirement() {
        // Everything in the shared command table the simulator implements
        // must be classified; only commands it does not have are Unknown.
        let not_in_sim = [
            "atlasVersion",
            "bulkWrite",
            "cloneCollectionAsCapped",
            "convertToCapped",
            "createRole",
            "dropAllUsersFromDatabase",
            "dropRole",
            "getLastError",
            "getlasterror",
            "getnonce",
            "grantRolesToUser",
            "revokeRolesFromUser",
            "validateDBMetadata",
        ];
        for c in holdfast_wire::commands::COMMANDS {
            let r = requirement(&req("admin", doc! { c.name: 1 }));
            assert_eq!(
                r == Requirement::Unknown,
                not_in_sim.contains(&c.name),
                "{}: {r:?}",
                c.name
            );
        }
    }

    #[test]
    fn messages_look_like_mongod() {
        let r = req(
            "db2",
            doc! { "insert": "c", "documents": [ { "_id": 1, "x": 1.5 } ], "ordered": true, "$db": "db2" },
        );
        assert_eq!(
            not_authorized(&r).errmsg,
            "not authorized on db2 to execute command { insert: \"c\", documents: [ { _id: 1, x: 1.5 } ], ordered: true, $db: \"db2\" }"
        );
        let r = req(
            "admin",
            doc! { "createUser": "u", "pwd": "hunter2", "roles": [] },
        );
        let m = not_authorized(&r).errmsg;
        assert!(!m.contains("hunter2") && m.contains("pwd: \"xxx\""), "{m}");
        assert_eq!(
            requires_authentication("find").errmsg,
            "command find requires authentication"
        );
    }
}
