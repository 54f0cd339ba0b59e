//! MongoDB's error codes, their names, and the code sets drivers and
//! servers act on (the server's `error_codes.yml` categories and the
//! families the SDAM specification names). holdfast and holdfast-sim both
//! use these, so the proxy and the server it is tested against cannot
//! disagree about what a code means.

pub const INTERNAL_ERROR: i32 = 1;
pub const BAD_VALUE: i32 = 2;
pub const HOST_UNREACHABLE: i32 = 6;
pub const HOST_NOT_FOUND: i32 = 7;
pub const FAILED_TO_PARSE: i32 = 9;
pub const USER_NOT_FOUND: i32 = 11;
pub const UNAUTHORIZED: i32 = 13;
pub const TYPE_MISMATCH: i32 = 14;
pub const PROTOCOL_ERROR: i32 = 17;
pub const AUTHENTICATION_FAILED: i32 = 18;
pub const INVALID_BSON: i32 = 22;
pub const LOCK_TIMEOUT: i32 = 24;
pub const CURSOR_NOT_FOUND: i32 = 43;
pub const MAX_TIME_MS_EXPIRED: i32 = 50;
pub const COMMAND_NOT_FOUND: i32 = 59;
pub const WRITE_CONCERN_FAILED: i32 = 64;
pub const INVALID_OPTIONS: i32 = 72;
pub const NO_REPLICATION_ENABLED: i32 = 76;
pub const UNKNOWN_REPL_WRITE_CONCERN: i32 = 79;
pub const NETWORK_TIMEOUT: i32 = 89;
pub const SHUTDOWN_IN_PROGRESS: i32 = 91;
pub const NOT_SECONDARY: i32 = 95;
pub const UNSATISFIABLE_WRITE_CONCERN: i32 = 100;
pub const WRITE_CONFLICT: i32 = 112;
pub const CONFLICTING_OPERATION_IN_PROGRESS: i32 = 117;
pub const COMMAND_FAILED: i32 = 125;
pub const READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET: i32 = 134;
pub const FAILED_TO_SATISFY_READ_PREFERENCE: i32 = 133;
pub const EXCEEDED_MEMORY_LIMIT: i32 = 146;
pub const MAX_STALENESS_OUT_OF_RANGE: i32 = 160;
pub const CLIENT_METADATA_CANNOT_BE_MUTATED: i32 = 186;
pub const PRIMARY_STEPPED_DOWN: i32 = 189;
pub const ILLEGAL_OP_MSG_FLAG: i32 = 223;
pub const TRANSACTION_TOO_OLD: i32 = 225;
pub const SNAPSHOT_UNAVAILABLE: i32 = 246;
pub const NO_SUCH_TRANSACTION: i32 = 251;
pub const TRANSACTION_COMMITTED: i32 = 256;
pub const EXCEEDED_TIME_LIMIT: i32 = 262;
pub const OPERATION_NOT_SUPPORTED_IN_TRANSACTION: i32 = 263;
pub const CHECKSUM_MISMATCH: i32 = 288;
pub const UNSUPPORTED_OP_QUERY_COMMAND: i32 = 352;
pub const PREPARED_TRANSACTION_IN_PROGRESS: i32 = 239;
pub const SOCKET_EXCEPTION: i32 = 9001;
pub const BSON_OBJECT_TOO_LARGE: i32 = 10334;
pub const DUPLICATE_KEY: i32 = 11000;
pub const LEGACY_NOT_PRIMARY: i32 = 10058;
pub const NOT_WRITABLE_PRIMARY: i32 = 10107;
pub const INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
pub const INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
pub const NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
pub const NOT_PRIMARY_OR_SECONDARY: i32 = 13436;
/// OP_QUERY on a non-command namespace, or OP_GET_MORE, on MongoDB 5.1+.
pub const OP_QUERY_REMOVED: i32 = 5739101;

/// The symbolic name MongoDB gives `code` (`codeName`); `Location<code>`
/// style codes that have no name are spelled that way.
pub fn name(code: i32) -> &'static str {
    match code {
        INTERNAL_ERROR => "InternalError",
        BAD_VALUE => "BadValue",
        HOST_UNREACHABLE => "HostUnreachable",
        HOST_NOT_FOUND => "HostNotFound",
        FAILED_TO_PARSE => "FailedToParse",
        USER_NOT_FOUND => "UserNotFound",
        UNAUTHORIZED => "Unauthorized",
        TYPE_MISMATCH => "TypeMismatch",
        PROTOCOL_ERROR => "ProtocolError",
        AUTHENTICATION_FAILED => "AuthenticationFailed",
        INVALID_BSON => "InvalidBSON",
        LOCK_TIMEOUT => "LockTimeout",
        CURSOR_NOT_FOUND => "CursorNotFound",
        MAX_TIME_MS_EXPIRED => "MaxTimeMSExpired",
        COMMAND_NOT_FOUND => "CommandNotFound",
        WRITE_CONCERN_FAILED => "WriteConcernFailed",
        INVALID_OPTIONS => "InvalidOptions",
        NO_REPLICATION_ENABLED => "NoReplicationEnabled",
        UNKNOWN_REPL_WRITE_CONCERN => "UnknownReplWriteConcern",
        NETWORK_TIMEOUT => "NetworkTimeout",
        SHUTDOWN_IN_PROGRESS => "ShutdownInProgress",
        NOT_SECONDARY => "NotSecondary",
        UNSATISFIABLE_WRITE_CONCERN => "UnsatisfiableWriteConcern",
        WRITE_CONFLICT => "WriteConflict",
        CONFLICTING_OPERATION_IN_PROGRESS => "ConflictingOperationInProgress",
        COMMAND_FAILED => "CommandFailed",
        FAILED_TO_SATISFY_READ_PREFERENCE => "FailedToSatisfyReadPreference",
        EXCEEDED_MEMORY_LIMIT => "ExceededMemoryLimit",
        READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET => "ReadConcernMajorityNotAvailableYet",
        MAX_STALENESS_OUT_OF_RANGE => "MaxStalenessOutOfRange",
        CLIENT_METADATA_CANNOT_BE_MUTATED => "ClientMetadataCannotBeMutated",
        PRIMARY_STEPPED_DOWN => "PrimarySteppedDown",
        ILLEGAL_OP_MSG_FLAG => "IllegalOpMsgFlag",
        TRANSACTION_TOO_OLD => "TransactionTooOld",
        PREPARED_TRANSACTION_IN_PROGRESS => "PreparedTransactionInProgress",
        SNAPSHOT_UNAVAILABLE => "SnapshotUnavailable",
        NO_SUCH_TRANSACTION => "NoSuchTransaction",
        TRANSACTION_COMMITTED => "TransactionCommitted",
        EXCEEDED_TIME_LIMIT => "ExceededTimeLimit",
        OPERATION_NOT_SUPPORTED_IN_TRANSACTION => "OperationNotSupportedInTransaction",
        CHECKSUM_MISMATCH => "ChecksumMismatch",
        UNSUPPORTED_OP_QUERY_COMMAND => "UnsupportedOpQueryCommand",
        SOCKET_EXCEPTION => "SocketException",
        BSON_OBJECT_TOO_LARGE => "BSONObjectTooLarge",
        DUPLICATE_KEY => "DuplicateKey",
        LEGACY_NOT_PRIMARY => "LegacyNotPrimary",
        NOT_WRITABLE_PRIMARY => "NotWritablePrimary",
        INTERRUPTED_AT_SHUTDOWN => "InterruptedAtShutdown",
        INTERRUPTED_DUE_TO_REPL_STATE_CHANGE => "InterruptedDueToReplStateChange",
        NOT_PRIMARY_NO_SECONDARY_OK => "NotPrimaryNoSecondaryOk",
        NOT_PRIMARY_OR_SECONDARY => "NotPrimaryOrSecondary",
        16979 => "Location16979",
        18527 => "Location18527",
        31368 => "Location31368",
        31372 => "Location31372",
        31373 => "Location31373",
        31382 => "Location31382",
        40430 => "Location40430",
        40431 => "Location40431",
        40432 => "Location40432",
        40433 => "Location40433",
        40473 => "Location40473",
        40571 => "Location40571",
        40585 => "Location40585",
        40587 => "Location40587",
        51756 => "Location51756",
        OP_QUERY_REMOVED => "Location5739101",
        _ => "UnknownError",
    }
}

/// "Not writable primary" (SDAM): the server refused the command before
/// executing it because it is not (or no longer) the primary.
pub fn is_not_writable_primary(code: i32) -> bool {
    matches!(
        code,
        NOT_WRITABLE_PRIMARY | NOT_PRIMARY_NO_SECONDARY_OK | LEGACY_NOT_PRIMARY
    )
}

/// "Node is recovering" (SDAM): the member is stepping down, shutting down
/// or not yet a primary or secondary; an operation may have been
/// interrupted while it ran.
pub fn is_node_recovering(code: i32) -> bool {
    matches!(
        code,
        INTERRUPTED_AT_SHUTDOWN
            | INTERRUPTED_DUE_TO_REPL_STATE_CHANGE
            | NOT_PRIMARY_OR_SECONDARY
            | PRIMARY_STEPPED_DOWN
            | SHUTDOWN_IN_PROGRESS
    )
}

/// A state-change error (SDAM): either family above. Drivers mark the
/// server unknown after one; mongod attaches its `topologyVersion` to it.
pub fn is_state_change(code: i32) -> bool {
    is_not_writable_primary(code) || is_node_recovering(code)
}

/// The shutdown codes: drivers clear their connection pool after them.
pub fn is_shutdown(code: i32) -> bool {
    matches!(code, INTERRUPTED_AT_SHUTDOWN | SHUTDOWN_IN_PROGRESS)
}

/// The `RetriableError` category of the server's `error_codes.yml`: the
/// codes that earn `RetryableWriteError` on retryable writes and on
/// commit/abort.
pub fn is_retriable(code: i32) -> bool {
    matches!(
        code,
        HOST_UNREACHABLE
            | HOST_NOT_FOUND
            | NETWORK_TIMEOUT
            | SHUTDOWN_IN_PROGRESS
            | READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET
            | PRIMARY_STEPPED_DOWN
            | EXCEEDED_TIME_LIMIT
            | SOCKET_EXCEPTION
            | NOT_WRITABLE_PRIMARY
            | INTERRUPTED_AT_SHUTDOWN
            | INTERRUPTED_DUE_TO_REPL_STATE_CHANGE
            | NOT_PRIMARY_NO_SECONDARY_OK
            | NOT_PRIMARY_OR_SECONDARY
    )
}

/// Codes on which the server labels a transaction statement
/// `TransientTransactionError` (besides every [`is_retriable`] code).
pub fn is_transient_transaction(code: i32) -> bool {
    matches!(
        code,
        NO_SUCH_TRANSACTION
            | WRITE_CONFLICT
            | LOCK_TIMEOUT
            | PREPARED_TRANSACTION_IN_PROGRESS
            | SNAPSHOT_UNAVAILABLE
    ) || is_retriable(code)
}

/// Error labels.
pub mod label {
    pub const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";
    pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";
    pub const UNKNOWN_TRANSACTION_COMMIT_RESULT: &str = "UnknownTransactionCommitResult";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_the_sdam_lists() {
        for c in [10107, 13435, 10058] {
            assert!(is_not_writable_primary(c) && is_state_change(c) && !is_node_recovering(c));
        }
        for c in [11600, 11602, 13436, 189, 91] {
            assert!(is_node_recovering(c) && is_state_change(c) && !is_not_writable_primary(c));
        }
        for c in [0, 6, 11000, 50, 43, 251] {
            assert!(!is_state_change(c), "{c}");
        }
        assert!(is_shutdown(91) && is_shutdown(11600) && !is_shutdown(11602));
    }

    #[test]
    fn retriable_is_the_server_category() {
        let want = [
            6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
        ];
        for c in -1..20_000 {
            assert_eq!(is_retriable(c), want.contains(&c), "{c}");
        }
        assert!(is_transient_transaction(251) && is_transient_transaction(112));
        assert!(!is_transient_transaction(11000));
    }

    #[test]
    fn every_named_constant_has_its_name() {
        assert_eq!(name(NOT_WRITABLE_PRIMARY), "NotWritablePrimary");
        assert_eq!(name(OP_QUERY_REMOVED), "Location5739101");
        assert_eq!(name(123_456), "UnknownError");
        for c in [1, 2, 6, 13, 18, 43, 50, 91, 189, 225, 251, 11000, 11602] {
            assert_ne!(name(c), "UnknownError", "{c}");
        }
    }
}
