//! Server error codes and the error labels mongod attaches to them.

use bson::{doc, Bson, Document};

use crate::engine::CommandError;

/// A failed command as mongod reports it: `{ok: 0, errmsg, code, codeName}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
}

pub const BAD_VALUE: i32 = 2;
pub const FAILED_TO_PARSE: i32 = 9;
pub const UNAUTHORIZED: i32 = 13;
pub const TYPE_MISMATCH: i32 = 14;
pub const AUTHENTICATION_FAILED: i32 = 18;
pub const CURSOR_NOT_FOUND: i32 = 43;
pub const INVALID_OPTIONS: i32 = 72;
pub const CONFLICTING_OPERATION_IN_PROGRESS: i32 = 117;
pub const COMMAND_NOT_FOUND: i32 = 59;
pub const WRITE_CONCERN_FAILED: i32 = 64;
pub const NO_REPLICATION_ENABLED: i32 = 76;
pub const UNKNOWN_REPL_WRITE_CONCERN: i32 = 79;
pub const NOT_SECONDARY: i32 = 95;
pub const UNSATISFIABLE_WRITE_CONCERN: i32 = 100;
pub const WRITE_CONFLICT: i32 = 112;
pub const COMMAND_FAILED: i32 = 125;
pub const CLIENT_METADATA_CANNOT_BE_MUTATED: i32 = 186;
pub const PRIMARY_STEPPED_DOWN: i32 = 189;
pub const TRANSACTION_TOO_OLD: i32 = 225;
pub const NO_SUCH_TRANSACTION: i32 = 251;
pub const TRANSACTION_COMMITTED: i32 = 256;
pub const EXCEEDED_TIME_LIMIT: i32 = 262;
pub const OPERATION_NOT_SUPPORTED_IN_TRANSACTION: i32 = 263;
pub const UNSUPPORTED_OP_QUERY_COMMAND: i32 = 352;
pub const NOT_WRITABLE_PRIMARY: i32 = 10107;
pub const INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
pub const INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
pub const NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
pub const NOT_PRIMARY_OR_SECONDARY: i32 = 13436;
pub const SHUTDOWN_IN_PROGRESS: i32 = 91;
pub const OP_QUERY_REMOVED: i32 = 5739101;

/// The symbolic name mongod gives a code (`Location<code>` when it has none).
pub fn code_name(code: i32) -> &'static str {
    match code {
        BAD_VALUE => "BadValue",
        FAILED_TO_PARSE => "FailedToParse",
        UNAUTHORIZED => "Unauthorized",
        TYPE_MISMATCH => "TypeMismatch",
        AUTHENTICATION_FAILED => "AuthenticationFailed",
        CURSOR_NOT_FOUND => "CursorNotFound",
        INVALID_OPTIONS => "InvalidOptions",
        CONFLICTING_OPERATION_IN_PROGRESS => "ConflictingOperationInProgress",
        COMMAND_NOT_FOUND => "CommandNotFound",
        WRITE_CONCERN_FAILED => "WriteConcernFailed",
        NO_REPLICATION_ENABLED => "NoReplicationEnabled",
        UNKNOWN_REPL_WRITE_CONCERN => "UnknownReplWriteConcern",
        NOT_SECONDARY => "NotSecondary",
        UNSATISFIABLE_WRITE_CONCERN => "UnsatisfiableWriteConcern",
        WRITE_CONFLICT => "WriteConflict",
        COMMAND_FAILED => "CommandFailed",
        CLIENT_METADATA_CANNOT_BE_MUTATED => "ClientMetadataCannotBeMutated",
        PRIMARY_STEPPED_DOWN => "PrimarySteppedDown",
        TRANSACTION_TOO_OLD => "TransactionTooOld",
        NO_SUCH_TRANSACTION => "NoSuchTransaction",
        TRANSACTION_COMMITTED => "TransactionCommitted",
        EXCEEDED_TIME_LIMIT => "ExceededTimeLimit",
        OPERATION_NOT_SUPPORTED_IN_TRANSACTION => "OperationNotSupportedInTransaction",
        UNSUPPORTED_OP_QUERY_COMMAND => "UnsupportedOpQueryCommand",
        NOT_WRITABLE_PRIMARY => "NotWritablePrimary",
        INTERRUPTED_AT_SHUTDOWN => "InterruptedAtShutdown",
        INTERRUPTED_DUE_TO_REPL_STATE_CHANGE => "InterruptedDueToReplStateChange",
        NOT_PRIMARY_NO_SECONDARY_OK => "NotPrimaryNoSecondaryOk",
        NOT_PRIMARY_OR_SECONDARY => "NotPrimaryOrSecondary",
        SHUTDOWN_IN_PROGRESS => "ShutdownInProgress",
        31368 => "Location31368",
        31372 => "Location31372",
        31373 => "Location31373",
        31382 => "Location31382",
        51756 => "Location51756",
        40571 => "Location40571",
        40433 => "Location40433",
        16979 => "Location16979",
        18527 => "Location18527",
        OP_QUERY_REMOVED => "Location5739101",
        _ => "UnknownError",
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

/// `RetriableError` category of mongod's `error_codes.yml` (the codes that
/// earn `RetryableWriteError` on retryable writes and commit/abort).
pub fn is_retriable(code: i32) -> bool {
    matches!(
        code,
        6 | 7 | 89 | 91 | 134 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
    )
}

/// Codes after which a driver marks the server Unknown: mongod attaches its
/// `topologyVersion` to them.
pub fn is_state_change(code: i32) -> bool {
    matches!(
        code,
        10107 | 13435 | 13436 | 11600 | 11602 | 189 | 91 | 10058
    )
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
            labels.push("RetryableWriteError".to_string());
        }
    }
    if ctx.has_autocommit || commit_or_abort {
        if let Some(c) = code {
            let transient = if commit_or_abort {
                c == NO_SUCH_TRANSACTION && wc_code.is_none()
            } else {
                c == NO_SUCH_TRANSACTION
                    || c == WRITE_CONFLICT
                    || c == 24
                    || c == 239
                    || c == 246
                    || is_retriable(c)
            };
            if transient {
                labels.push("TransientTransactionError".to_string());
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
