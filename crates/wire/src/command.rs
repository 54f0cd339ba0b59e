//! A zero-copy view of a request's command, and its classification.

use bson::{RawBsonRef, RawDocument};

use crate::error::WireError;
use crate::msg::{DocumentSequence, OpMsg};
use crate::query::OpQuery;

/// What the proxy needs to know about a command, gathered in one pass over
/// the body's top-level fields. Everything borrows from the frame.
#[derive(Debug, Clone)]
pub struct CommandView<'a> {
    /// The first field's name (the command).
    pub name: &'a str,
    /// The whole command document (for OP_QUERY, unwrapped from `$query`).
    pub body: &'a RawDocument,
    /// `$db` (OP_MSG) or the namespace's database (OP_QUERY).
    pub db: Option<&'a str>,
    pub lsid: Option<&'a RawDocument>,
    pub txn_number: Option<i64>,
    pub autocommit: Option<bool>,
    pub start_transaction: bool,
    pub read_preference: Option<&'a RawDocument>,
    pub max_time_ms: Option<i64>,
    /// The cursor id of a `getMore`.
    pub cursor_id: Option<i64>,
    /// `writeConcern.w` is 0.
    pub write_concern_w0: bool,
    /// The OP_MSG had `moreToCome` set (no reply will come).
    pub more_to_come: bool,
    /// The OP_MSG had `exhaustAllowed` set.
    pub exhaust_allowed: bool,
    /// An `aggregate` whose last stage is `$out` or `$merge`.
    pub has_out_or_merge: bool,
    /// An `update` with `multi: true` or a `delete` with `limit: 0` in any statement.
    pub multi_statement: bool,
    sequences: &'a [DocumentSequence],
}

/// How the proxy treats a request (see mongo-semantics.md §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandClass {
    /// `hello`/`isMaster`/`ismaster`: answered locally.
    Handshake,
    /// `saslStart`/`saslContinue`/`authenticate` (and `getnonce`, `logout`).
    Auth,
    /// On the retryable-reads list: safe to replay.
    RetryableRead,
    /// `getMore`/`killCursors`: pinned to the cursor's member, never replayed.
    CursorContinuation,
    /// A write; `retryable` when the server can deduplicate it (lsid+txnNumber,
    /// single-statement semantics, acknowledged, outside a transaction).
    Write {
        retryable: bool,
    },
    /// A statement inside a multi-document transaction (`autocommit: false`).
    TransactionStatement,
    CommitTransaction,
    AbortTransaction,
    /// Side-effect-free diagnostics (`ping`, `buildInfo`, …): safe to replay.
    Diagnostic,
    /// Anything else: outcome unknown if interrupted.
    Other,
}

impl CommandClass {
    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            CommandClass::Handshake => "handshake",
            CommandClass::Auth => "auth",
            CommandClass::RetryableRead => "read",
            CommandClass::CursorContinuation => "cursor",
            CommandClass::Write { retryable: true } => "retryable_write",
            CommandClass::Write { retryable: false } => "write",
            CommandClass::TransactionStatement => "txn_statement",
            CommandClass::CommitTransaction => "txn_commit",
            CommandClass::AbortTransaction => "txn_abort",
            CommandClass::Diagnostic => "diagnostic",
            CommandClass::Other => "other",
        }
    }

    /// May the proxy send this again after the first attempt's fate is unknown?
    pub fn is_replayable(self) -> bool {
        matches!(
            self,
            CommandClass::RetryableRead
                | CommandClass::Diagnostic
                | CommandClass::Handshake
                | CommandClass::Write { retryable: true }
        )
    }
}

/// The retryable-reads list (mongo-semantics.md §4): `aggregate` only without
/// `$out`/`$merge`, checked separately.
pub fn is_retryable_read_name(name: &str) -> bool {
    matches!(
        name,
        "find"
            | "aggregate"
            | "distinct"
            | "count"
            | "listDatabases"
            | "listCollections"
            | "listIndexes"
    )
}

/// Commands that change data or metadata.
pub fn is_write_name(name: &str) -> bool {
    matches!(
        name,
        "insert"
            | "update"
            | "delete"
            | "findAndModify"
            | "findandmodify"
            | "bulkWrite"
            | "create"
            | "drop"
            | "dropDatabase"
            | "createIndexes"
            | "dropIndexes"
            | "renameCollection"
            | "collMod"
            | "convertToCapped"
            | "cloneCollectionAsCapped"
            | "createView"
    )
}

/// Side-effect-free commands that drivers and shells send.
pub fn is_diagnostic_name(name: &str) -> bool {
    matches!(
        name,
        "ping"
            | "buildInfo"
            | "buildinfo"
            | "serverStatus"
            | "getParameter"
            | "listCommands"
            | "connectionStatus"
            | "hostInfo"
            | "getCmdLineOpts"
            | "dbStats"
            | "collStats"
            | "dataSize"
            | "explain"
            | "whatsmyuri"
            | "atlasVersion"
            | "getLog"
            | "features"
            | "endSessions"
            | "getFreeMonitoringStatus"
            | "lockInfo"
            | "validateDBMetadata"
    )
}

fn is_auth_name(name: &str) -> bool {
    matches!(
        name,
        "saslStart" | "saslContinue" | "authenticate" | "getnonce" | "logout"
    )
}

pub fn is_handshake_name(name: &str) -> bool {
    matches!(name, "hello" | "isMaster" | "ismaster")
}

fn as_i64(v: RawBsonRef<'_>) -> Option<i64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as i64),
        RawBsonRef::Int64(i) => Some(i),
        RawBsonRef::Double(d) if d.is_finite() && d.fract() == 0.0 => Some(d as i64),
        _ => None,
    }
}

fn as_bool(v: RawBsonRef<'_>) -> Option<bool> {
    match v {
        RawBsonRef::Boolean(b) => Some(b),
        other => as_i64(other).map(|n| n != 0),
    }
}

fn bad(e: bson::raw::Error) -> WireError {
    WireError::BadBson {
        what: "command",
        detail: e.to_string(),
    }
}

impl<'a> CommandView<'a> {
    /// Views the command of an OP_MSG.
    pub fn from_msg(msg: &'a OpMsg) -> Result<CommandView<'a>, WireError> {
        let body = msg.body_doc()?;
        let mut v = Self::scan(body, &msg.sequences)?;
        v.more_to_come = msg.more_to_come();
        v.exhaust_allowed = msg.exhaust_allowed();
        Ok(v)
    }

    /// Views the command of an OP_QUERY on `db.$cmd`, unwrapping `$query`/`query`
    /// and taking `$readPreference` from the wrapper.
    pub fn from_query(q: &'a OpQuery) -> Result<CommandView<'a>, WireError> {
        let db = q
            .command_db()
            .ok_or_else(|| WireError::NotACommandNamespace(q.full_collection_name.clone()))?;
        let outer = q.query_doc()?;
        let mut first = outer.iter();
        let (k, v) = first.next().ok_or(WireError::EmptyCommand)?.map_err(bad)?;
        let (body, wrapper) = match (k, v) {
            ("$query" | "query", RawBsonRef::Document(inner)) => (inner, Some(outer)),
            _ => (outer, None),
        };
        let mut view = Self::scan(body, &[])?;
        if view.db.is_none() {
            view.db = Some(db);
        }
        if let Some(w) = wrapper {
            if let Ok(Some(RawBsonRef::Document(rp))) = w.get("$readPreference") {
                view.read_preference = Some(rp);
            }
        }
        Ok(view)
    }

    fn scan(
        body: &'a RawDocument,
        sequences: &'a [DocumentSequence],
    ) -> Result<CommandView<'a>, WireError> {
        let mut it = body.iter();
        let (name, first_value) = it.next().ok_or(WireError::EmptyCommand)?.map_err(bad)?;
        let mut v = CommandView {
            name,
            body,
            db: None,
            lsid: None,
            txn_number: None,
            autocommit: None,
            start_transaction: false,
            read_preference: None,
            max_time_ms: None,
            cursor_id: None,
            write_concern_w0: false,
            more_to_come: false,
            exhaust_allowed: false,
            has_out_or_merge: false,
            multi_statement: false,
            sequences,
        };
        if name == "getMore" {
            v.cursor_id = as_i64(first_value);
        }
        for el in it {
            let (k, val) = el.map_err(bad)?;
            match k {
                "$db" => {
                    if let RawBsonRef::String(s) = val {
                        v.db = Some(s);
                    }
                }
                "lsid" => {
                    if let RawBsonRef::Document(d) = val {
                        v.lsid = Some(d);
                    }
                }
                "txnNumber" => v.txn_number = as_i64(val),
                "autocommit" => v.autocommit = as_bool(val),
                "startTransaction" => v.start_transaction = as_bool(val).unwrap_or(false),
                "$readPreference" => {
                    if let RawBsonRef::Document(d) = val {
                        v.read_preference = Some(d);
                    }
                }
                "maxTimeMS" => v.max_time_ms = as_i64(val),
                "writeConcern" => {
                    if let RawBsonRef::Document(wc) = val {
                        if let Ok(Some(w)) = wc.get("w") {
                            v.write_concern_w0 = as_i64(w) == Some(0);
                        }
                    }
                }
                "pipeline" if name == "aggregate" => {
                    if let RawBsonRef::Array(stages) = val {
                        if let Some(Ok(RawBsonRef::Document(last))) = stages.into_iter().last() {
                            if let Some(Ok((stage, _))) = last.iter().next() {
                                v.has_out_or_merge = stage == "$out" || stage == "$merge";
                            }
                        }
                    }
                }
                "updates" if name == "update" => {
                    if let RawBsonRef::Array(a) = val {
                        v.multi_statement |= a.into_iter().any(
                            |s| matches!(s, Ok(RawBsonRef::Document(d)) if is_multi_update(d)),
                        );
                    }
                }
                "deletes" if name == "delete" => {
                    if let RawBsonRef::Array(a) = val {
                        v.multi_statement |= a.into_iter().any(
                            |s| matches!(s, Ok(RawBsonRef::Document(d)) if is_multi_delete(d)),
                        );
                    }
                }
                _ => {}
            }
        }
        for s in sequences {
            let check: fn(&RawDocument) -> bool = match (name, s.identifier.as_str()) {
                ("update", "updates") => is_multi_update,
                ("delete", "deletes") => is_multi_delete,
                _ => continue,
            };
            for d in s.iter() {
                if check(d?) {
                    v.multi_statement = true;
                }
            }
        }
        Ok(v)
    }

    /// The kind-1 sequence with this identifier, if any.
    pub fn sequence(&self, identifier: &str) -> Option<&'a DocumentSequence> {
        self.sequences.iter().find(|s| s.identifier == identifier)
    }

    /// The cursor ids a `killCursors` names.
    pub fn kill_cursor_ids(&self) -> Vec<i64> {
        if self.name != "killCursors" {
            return Vec::new();
        }
        match self.body.get("cursors") {
            Ok(Some(RawBsonRef::Array(a))) => a
                .into_iter()
                .filter_map(|v| v.ok().and_then(as_i64))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// No reply is expected or the write is unacknowledged (`w: 0`).
    pub fn is_unacknowledged(&self) -> bool {
        self.more_to_come || self.write_concern_w0
    }

    pub fn in_transaction(&self) -> bool {
        self.autocommit == Some(false)
    }

    pub fn classify(&self) -> CommandClass {
        let name = self.name;
        if is_handshake_name(name) {
            return CommandClass::Handshake;
        }
        match name {
            "commitTransaction" => return CommandClass::CommitTransaction,
            "abortTransaction" => return CommandClass::AbortTransaction,
            _ => {}
        }
        if self.in_transaction() {
            return CommandClass::TransactionStatement;
        }
        if is_auth_name(name) {
            return CommandClass::Auth;
        }
        if name == "getMore" || name == "killCursors" {
            return CommandClass::CursorContinuation;
        }
        if name == "aggregate" && self.has_out_or_merge {
            return CommandClass::Write { retryable: false };
        }
        if is_retryable_read_name(name) {
            return CommandClass::RetryableRead;
        }
        if is_write_name(name) {
            let retryable = matches!(
                name,
                "insert" | "update" | "delete" | "findAndModify" | "findandmodify"
            ) && self.lsid.is_some()
                && self.txn_number.is_some()
                && !self.multi_statement
                && !self.is_unacknowledged();
            return CommandClass::Write { retryable };
        }
        if is_diagnostic_name(name) {
            return CommandClass::Diagnostic;
        }
        CommandClass::Other
    }
}

fn is_multi_update(d: &RawDocument) -> bool {
    matches!(d.get("multi"), Ok(Some(v)) if as_bool(v) == Some(true))
}

fn is_multi_delete(d: &RawDocument) -> bool {
    matches!(d.get("limit"), Ok(Some(v)) if as_i64(v) == Some(0))
}
