//! Command dispatch: one request in, one reply body out.

pub mod admin;
pub mod crud;
pub mod hello;
pub mod repl;
pub mod sasl;
pub mod txn;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document};
use holdfast_wire::commands::{self, Kind};
use holdfast_wire::Compressor;

use crate::auth::ConnAuth;
use crate::errors::{self, CmdError, LabelContext};
use crate::member::{Member, TopologyVersion};
use crate::set::SetInner;

/// A command as the server sees it, document sequences merged in.
#[derive(Debug, Clone)]
pub struct Request {
    pub db: String,
    pub name: String,
    pub cmd: Document,
    /// `lsid.id` bytes.
    pub lsid: Option<Vec<u8>>,
    pub txn_number: Option<i64>,
    pub autocommit: Option<bool>,
    pub start_transaction: bool,
    /// The request's `$readPreference` has a mode other than `primary`, so
    /// a secondary may run its opt-in commands (`find`, `aggregate`, …).
    /// Over OP_QUERY the SecondaryOk flag counts as `secondaryPreferred`.
    pub secondary_ok: bool,
    /// A `$readPreference` mongod would refuse to parse.
    pub read_pref_error: Option<CmdError>,
    pub exhaust_allowed: bool,
    pub more_to_come: bool,
    /// Came over OP_QUERY.
    pub legacy: bool,
}

impl Request {
    pub fn new(db: String, cmd: Document) -> Request {
        let name = cmd.keys().next().cloned().unwrap_or_default();
        let lsid = match cmd.get("lsid") {
            Some(Bson::Document(l)) => match l.get("id") {
                Some(Bson::Binary(b)) => Some(b.bytes.clone()),
                _ => Some(bson::to_vec(l).unwrap_or_default()),
            },
            _ => None,
        };
        let txn_number = cmd.get("txnNumber").and_then(as_i64);
        let autocommit = match cmd.get("autocommit") {
            Some(Bson::Boolean(b)) => Some(*b),
            Some(_) => Some(false),
            None => None,
        };
        let start_transaction = matches!(cmd.get("startTransaction"), Some(Bson::Boolean(true)));
        let (secondary_ok, read_pref_error) = match read_preference(&cmd) {
            Ok(ok) => (ok, None),
            Err(e) => (false, Some(e)),
        };
        Request {
            db,
            name,
            cmd,
            lsid,
            txn_number,
            autocommit,
            start_transaction,
            secondary_ok,
            read_pref_error,
            exhaust_allowed: false,
            more_to_come: false,
            legacy: false,
        }
    }

    pub fn in_transaction(&self) -> bool {
        commands::in_transaction(self.autocommit)
    }

    fn label_context(&self) -> LabelContext<'_> {
        LabelContext {
            command: &self.name,
            has_txn_number: self.txn_number.is_some(),
            has_autocommit: self.autocommit.is_some(),
        }
    }

    pub fn require_admin(&self) -> Result<(), CmdError> {
        if self.db != "admin" {
            return Err(CmdError::admin_only(&self.name));
        }
        Ok(())
    }
}

/// Parses `$readPreference` as mongod does (`ReadPreferenceSetting::
/// fromContainingBSON`): whether it lets a secondary run opt-in commands.
/// Absent means `primary`.
fn read_preference(cmd: &Document) -> Result<bool, CmdError> {
    let Some(rp) = cmd.get("$readPreference") else {
        return Ok(false);
    };
    let Bson::Document(rp) = rp else {
        return Err(CmdError::new(
            errors::TYPE_MISMATCH,
            format!(
                "$readPreference has incorrect type: expected object but got {}",
                type_name(rp)
            ),
        ));
    };
    let mode = match rp.get("mode") {
        None => {
            return Err(CmdError::new(
                errors::IDL_MISSING_FIELD,
                "BSON field 'readPreference.mode' is missing but a required field",
            ))
        }
        Some(Bson::String(m)) => m.as_str(),
        Some(other) => {
            return Err(CmdError::new(
                errors::TYPE_MISMATCH,
                format!(
                "BSON field 'readPreference.mode' is the wrong type '{}', expected type 'string'",
                type_name(other)
            ),
            ))
        }
    };
    if !matches!(
        mode,
        "primary" | "primaryPreferred" | "secondary" | "secondaryPreferred" | "nearest"
    ) {
        return Err(CmdError::bad_value(format!(
            "Enumeration value '{mode}' for field 'readPreference.mode' is not a valid value."
        )));
    }
    let primary = mode == "primary";
    if primary {
        // `[]` and `[{}]` are the primary's (empty) tag sets.
        let only_empty = match rp.get("tags") {
            None => true,
            Some(Bson::Array(sets)) => sets
                .iter()
                .all(|t| matches!(t, Bson::Document(d) if d.is_empty())),
            Some(_) => false,
        };
        if !only_empty {
            return Err(CmdError::bad_value(
                "Only empty tags are allowed with primary read preference",
            ));
        }
        if rp
            .get("maxStalenessSeconds")
            .and_then(as_i64)
            .is_some_and(|s| s != 0)
        {
            return Err(CmdError::bad_value(
                "maxStalenessSeconds can not be set for the primary mode",
            ));
        }
    }
    if rp
        .get("maxStalenessSeconds")
        .and_then(as_i64)
        .is_some_and(|s| s < 0)
    {
        return Err(CmdError::bad_value(
            "maxStalenessSeconds must be a non-negative integer",
        ));
    }
    Ok(!primary)
}

/// MongoDB's name of a BSON type, for parse errors.
fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        _ => "other",
    }
}

/// Whether this member may run `req` now, as mongod decides before it
/// runs any command (`service_entry_point_common.cpp`), from the shared
/// table's `on_secondary`: a member that is not the writable primary runs
/// `Always` commands, `OptIn` ones only under a non-primary read
/// preference (else 13435 NotPrimaryNoSecondaryOk) and never `Never` ones
/// (10107 NotWritablePrimary). An `aggregate` that writes (`$out`,
/// `$merge`) needs the primary too. Statements of transactions are the
/// transaction code's to refuse.
fn check_member_role(conn: &ConnCtx, req: &Request) -> Result<(), CmdError> {
    use holdfast_wire::commands::OnSecondary;
    if req.autocommit.is_some() || conn.member().is_writable() {
        return Ok(());
    }
    let Some(info) = commands::lookup(&req.name) else {
        return Ok(());
    };
    match info.on_secondary {
        OnSecondary::Always => Ok(()),
        OnSecondary::OptIn if !req.secondary_ok => Err(CmdError::not_primary_no_secondary_ok()),
        OnSecondary::OptIn if req.name == "aggregate" && crud::pipeline_writes(&req.cmd) => {
            Err(CmdError::not_writable_primary())
        }
        OnSecondary::OptIn => Ok(()),
        OnSecondary::Never => Err(CmdError::not_writable_primary()),
    }
}

/// What the connection does after sending (or not sending) the reply.
#[derive(Debug, Clone, Default)]
pub enum After {
    #[default]
    Nothing,
    /// Close the connection (FIN).
    Close,
    /// Keep streaming hello replies with `moreToCome`.
    Exhaust(ExhaustHello),
    /// Kill this member once the reply is out (shutdown, simFault kill).
    KillSelf { graceful: bool },
}

/// State of an exhaust hello stream.
#[derive(Debug, Clone)]
pub struct ExhaustHello {
    /// The topologyVersion of the last reply sent.
    pub topology: TopologyVersion,
    pub max_await: Duration,
    /// `hello` (isWritablePrimary) or `isMaster` (ismaster).
    pub hello_names: bool,
    pub hello_ok: bool,
    /// requestID of the last reply sent (the next one responds to it).
    pub prev_request_id: i32,
}

/// Per-connection state.
pub struct ConnCtx {
    pub set: Arc<SetInner>,
    pub idx: usize,
    pub conn_id: i64,
    pub peer: SocketAddr,
    pub seen_hello: bool,
    pub compressors: Vec<Compressor>,
    pub after: After,
    /// Send no reply at all (shutdown).
    pub no_reply: bool,
    /// Who the connection is (authentication, TLS peer).
    pub auth: ConnAuth,
}

impl ConnCtx {
    pub fn member(&self) -> &Member {
        &self.set.members[self.idx]
    }
}

pub fn ok() -> Document {
    doc! { "ok": 1.0 }
}

/// Any BSON number as an i64.
pub use holdfast_wire::values::bson_as_i64 as as_i64;

pub fn as_bool(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        other => as_i64(other).is_some_and(|n| n != 0),
    }
}

/// Commands that change data (need the primary, may carry a write concern).
pub fn is_write(name: &str) -> bool {
    matches!(commands::kind(name), Kind::Write | Kind::TransactionControl)
}

/// Runs a request and returns the reply body (labels, `topologyVersion` on
/// state-change errors; `$clusterTime` is added by the connection).
pub async fn dispatch(conn: &mut ConnCtx, req: &Request) -> Document {
    let result = run_with_latency(conn, req).await;
    if let (Ok(reply), "insert") = (&result, req.name.as_str()) {
        let n = reply.get("n").and_then(as_i64).unwrap_or(0).max(0);
        conn.member().opcounters.got_inserts(n as u64);
    }
    finish(conn, req, result)
}

async fn run_with_latency(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let is_hello = hello::is_hello(&req.name);
    let latency = conn.member().latency();
    if !is_hello && !latency.is_zero() {
        let m = conn.member();
        if is_write(&req.name) && m.is_writable() {
            // A write "executing" during the delay is killed by a stepdown.
            let epoch = m.role_epoch();
            let mut role = m.role_epoch.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(latency) => {}
                _ = role.wait_for(|e| *e != epoch) => {
                    return Err(CmdError::interrupted_repl_state_change());
                }
            }
        } else {
            tokio::time::sleep(latency).await;
        }
    }
    route(conn, req).await
}

async fn route(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let name = req.name.as_str();
    if name.is_empty() {
        return Err(CmdError::new(40585, "no command name"));
    }
    if conn.set.cfg.auth {
        crate::auth::check::authorize(conn, req)?;
    }
    if commands::lookup(name).is_some_and(|c| c.admin_only) {
        req.require_admin()?;
    }
    if let Some(e) = &req.read_pref_error {
        return Err(e.clone());
    }
    if let Some(key) = &req.lsid {
        conn.member().logical_sessions.lock().vivify(key);
    }
    check_member_role(conn, req)?;
    conn.member().opcounters.count(name, &req.cmd);
    let result = execute(conn, req).await;
    if result.is_err() {
        conn.member().opcounters.command_failed(name);
    }
    result
}

/// Runs a command that passed the checks of [`route`].
async fn execute(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let name = req.name.as_str();
    match name {
        "hello" | "isMaster" | "ismaster" => hello::run(conn, req).await,
        "saslStart" | "saslContinue" | "authenticate" | "logout" => sasl::run(conn, req),
        "createUser" | "updateUser" | "dropUser" | "usersInfo" => users::run(conn, req).await,
        "commitTransaction" => txn::commit(conn, req).await,
        "abortTransaction" => txn::abort(conn, req).await,
        "getMore" => crud::get_more(conn, req),
        "killCursors" => crud::kill_cursors(conn, req),
        "replSetStepDown" | "replSetFreeze" | "replSetStepUp" | "replSetGetStatus"
        | "replSetGetConfig" | "shutdown" | "simFault" | "replSetInitiate" | "replSetReconfig" => {
            repl::run(conn, req).await
        }
        _ if crud::is_data_command(name) => {
            if req.autocommit.is_some() {
                txn::statement(conn, req).await
            } else if commands::kind(name) == Kind::Write {
                crud::write(conn, req).await
            } else if name == "listDatabases" && conn.set.cfg.auth {
                crud::list_databases(conn, req).await
            } else {
                crud::read(conn, req).await
            }
        }
        _ => admin::run(conn, req),
    }
}

fn finish(conn: &ConnCtx, req: &Request, result: Result<Document, CmdError>) -> Document {
    match result {
        Ok(mut body) => {
            if !body.contains_key("ok") {
                body.insert("ok", 1.0);
            }
            if let Some(wc) = errors::wc_error_code(&body) {
                let labels = errors::error_labels(req.label_context(), None, Some(wc));
                if !labels.is_empty() {
                    body.insert("errorLabels", labels);
                }
            }
            body
        }
        Err(e) => {
            let mut d = e.to_document();
            let labels = errors::error_labels(req.label_context(), Some(e.code), None);
            if !labels.is_empty() {
                d.insert("errorLabels", labels);
            }
            if errors::is_state_change(e.code) {
                d.insert(
                    "topologyVersion",
                    conn.member().topology_version().to_document(),
                );
            }
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_the_shared_tables_writes() {
        for w in [
            "insert",
            "update",
            "delete",
            "findAndModify",
            "create",
            "drop",
            "dropDatabase",
            "createIndexes",
            "dropIndexes",
            "renameCollection",
            "collMod",
            "commitTransaction",
            "abortTransaction",
        ] {
            assert!(is_write(w), "{w}");
        }
        for r in [
            "find",
            "count",
            "distinct",
            "aggregate",
            "listCollections",
            "listIndexes",
            "listDatabases",
            "hello",
            "simFault",
        ] {
            assert!(!is_write(r), "{r}");
        }
    }
}
