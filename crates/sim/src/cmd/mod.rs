//! Command dispatch: one request in, one reply body out.

pub mod admin;
pub mod crud;
pub mod hello;
pub mod repl;
pub mod txn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document};
use holdfast_wire::Compressor;

use crate::engine::Store;
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
    /// The read preference lets a secondary answer.
    pub secondary_ok: bool,
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
        let secondary_ok = match cmd.get("$readPreference") {
            Some(Bson::Document(rp)) => {
                !matches!(rp.get("mode"), Some(Bson::String(m)) if m == "primary")
            }
            _ => false,
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
            exhaust_allowed: false,
            more_to_come: false,
            legacy: false,
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.autocommit.is_some()
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
pub fn as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(*i as i64),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.is_finite() => Some(*d as i64),
        Bson::Decimal128(d) => d.to_string().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

pub fn as_bool(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        other => as_i64(other).is_some_and(|n| n != 0),
    }
}

/// Commands that change data (need the primary, may carry a write concern).
pub fn is_write(name: &str) -> bool {
    Store::is_write_command(name) || matches!(name, "commitTransaction" | "abortTransaction")
}

/// Runs a request and returns the reply body (labels, `topologyVersion` on
/// state-change errors; `$clusterTime` is added by the connection).
pub async fn dispatch(conn: &mut ConnCtx, req: &Request) -> Document {
    let result = run_with_latency(conn, req).await;
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
    conn.member().opcounters.count(&req.name);
    route(conn, req).await
}

async fn route(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let name = req.name.as_str();
    if name.is_empty() {
        return Err(CmdError::new(40585, "no command name"));
    }
    match name {
        "hello" | "isMaster" | "ismaster" => hello::run(conn, req).await,
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
            } else if Store::is_write_command(name) {
                crud::write(conn, req).await
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
