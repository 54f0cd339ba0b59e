//! Server errors and the error labels mongod attaches to them. The codes,
//! their names and code families are holdfast-wire's (`codes`), shared with
//! the proxy.

use bson::{doc, Bson, Document};

use crate::engine::CommandError;

/// A failed command as mongod reports it: `{ok: 0, errmsg, code, codeName}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
}

pub use holdfast_wire::codes::*;

/// 31 RoleNotFound.
pub const ROLE_NOT_FOUND: i32 = 31;
/// A linearizable read whose no-op write did not reach a majority in time.
pub const LINEARIZABLE_READ_CONCERN_ERROR: i32 = 170;
/// An IDL-parsed command lacks a required field.
pub const IDL_MISSING_FIELD: i32 = 40414;
/// `createUser` of a user that exists.
pub const USER_ALREADY_EXISTS: i32 = 51003;
/// Authenticating as a second user of the same database.
pub const AUTHENTICATED_ONCE: i32 = 5626701;
/// Authenticating as a second user of another database.
pub const AUTHENTICATED_ON_MULTIPLE_DATABASES: i32 = 5626702;

/// The symbolic name mongod gives a code (`Location<code>` when it has none).
pub fn code_name(code: i32) -> &'static str {
    match code {
        ROLE_NOT_FOUND => "RoleNotFound",
        LINEARIZABLE_READ_CONCERN_ERROR => "LinearizableReadConcernError",
        IDL_MISSING_FIELD => "Location40414",
        USER_ALREADY_EXISTS => "Location51003",
        AUTHENTICATED_ONCE => "Location5626701",
        AUTHENTICATED_ON_MULTIPLE_DATABASES => "Location5626702",
        _ => holdfast_wire::codes::name(code),
    }
}

impl CmdError {
    pub fn new(code: i32, errmsg: impl Into<String>) -> Self {
        CmdError {
            code,
            code_name: code_name(code),
            errmsg: errmsg.into(),
        }
    }

    pub fn bad_value(msg: impl Into<String>) -> Self {
        Self::new(BAD_VALUE, msg)
    }

    pub fn not_writable_primary() -> Self {
        Self::new(NOT_WRITABLE_PRIMARY, "not primary")
    }

    pub fn not_primary_no_secondary_ok() -> Self {
        Self::new(
            NOT_PRIMARY_NO_SECONDARY_OK,
            "not primary and secondaryOk=false",
        )
    }

    pub fn interrupted_repl_state_change() -> Self {
        Self::new(
            INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
            "operation was interrupted because a node stepped down",
        )
    }

    pub fn command_not_found(name: &str) -> Self {
        Self::new(COMMAND_NOT_FOUND, format!("no such command: '{name}'"))
    }

    pub fn admin_only(name: &str) -> Self {
        Self::new(
            UNAUTHORIZED,
            format!("{name} may only be run against the admin database."),
        )
    }

    /// The reply body (labels and topologyVersion are added by the caller).
    pub fn to_document(&self) -> Document {
        doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name,
        }
    }
}

impl From<CommandError> for CmdError {
    fn from(e: CommandError) -> Self {
        CmdError {
            code: e.code,
            code_name: e.code_name,
            errmsg: e.errmsg,
        }
    }
}

/// What the server knows about the request when it labels an error
/// (`error_labels.cpp`).
#[derive(Debug, Clone, Copy)]
pub struct LabelContext<'a> {
    pub command: &'a str,
    pub has_txn_number: bool,
    /// `autocommit` was present (a transaction statement, or commit/abort).
    pub has_autocommit: bool,
}

/// The `errorLabels` mongod adds to a reply with top-level error `code`
/// and/or write concern error `wc_code`.
pub fn error_labels(ctx: LabelContext<'_>, code: Option<i32>, wc_code: Option<i32>) -> Vec<String> {
    let mut labels = Vec::new();
    let commit_or_abort = matches!(ctx.command, "commitTransaction" | "abortTransaction");
    if (ctx.has_txn_number && !ctx.has_autocommit) || commit_or_abort {
        let retryable = code.is_some_and(is_retriable) || wc_code.is_some_and(is_retriable);
        if retryable {
            labels.push(label::RETRYABLE_WRITE_ERROR.to_string());
        }
    }
    if ctx.has_autocommit || commit_or_abort {
        if let Some(c) = code {
            let transient = if commit_or_abort {
                c == NO_SUCH_TRANSACTION && wc_code.is_none()
            } else {
                is_transient_transaction(c)
            };
            if transient {
                labels.push(label::TRANSIENT_TRANSACTION_ERROR.to_string());
            }
        }
    }
    labels
}

/// `{code, codeName, errmsg}` of a write concern error.
pub fn write_concern_error(code: i32, errmsg: &str, err_info: Option<Document>) -> Document {
    let mut d = doc! {
        "code": code,
        "codeName": code_name(code),
        "errmsg": errmsg,
    };
    if let Some(info) = err_info {
        d.insert("errInfo", info);
    }
    d
}

/// The `code` of a reply's `writeConcernError`, if it has one.
pub fn wc_error_code(reply: &Document) -> Option<i32> {
    match reply.get("writeConcernError") {
        Some(Bson::Document(d)) => match d.get("code") {
            Some(Bson::Int32(c)) => Some(*c),
            Some(Bson::Int64(c)) => Some(*c as i32),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(command: &str, txn: bool, autocommit: bool) -> LabelContext<'_> {
        LabelContext {
            command,
            has_txn_number: txn,
            has_autocommit: autocommit,
        }
    }

    #[test]
    fn retryable_write_label_only_for_retryable_writes() {
        assert_eq!(
            error_labels(ctx("insert", true, false), Some(10107), None),
            vec!["RetryableWriteError"]
        );
        assert!(error_labels(ctx("insert", false, false), Some(10107), None).is_empty());
        assert_eq!(
            error_labels(ctx("insert", true, false), None, Some(11602)),
            vec!["RetryableWriteError"]
        );
        assert!(error_labels(ctx("insert", true, false), Some(11000), None).is_empty());
    }

    #[test]
    fn transaction_labels() {
        assert_eq!(
            error_labels(ctx("insert", true, true), Some(251), None),
            vec!["TransientTransactionError"]
        );
        assert_eq!(
            error_labels(ctx("find", true, true), Some(10107), None),
            vec!["TransientTransactionError"]
        );
        assert_eq!(
            error_labels(ctx("commitTransaction", true, true), Some(10107), None),
            vec!["RetryableWriteError"]
        );
        assert_eq!(
            error_labels(ctx("commitTransaction", true, true), Some(251), None),
            vec!["TransientTransactionError"]
        );
    }
}
