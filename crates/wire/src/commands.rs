//! One table of the commands holdfast and holdfast-sim know: what kind of
//! command each is, whether a secondary may run it, whether MongoDB 5.1+
//! still accepts it over OP_QUERY, and whether it must run on `admin`.
//! The proxy classifies requests from it and the simulator dispatches and
//! checks requests with it, so the two cannot drift apart.

/// What a command does, as far as routing and failover care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `hello`, `isMaster`, `ismaster`.
    Handshake,
    /// SASL, `authenticate`, `getnonce`, `logout`.
    Auth,
    /// On the retryable-reads list (an `aggregate` with `$out`/`$merge` is
    /// a write; see [`crate::CommandView::classify`]).
    Read,
    /// `getMore`, `killCursors`: continue a cursor on its member.
    Cursor,
    /// Changes data or metadata.
    Write,
    /// `commitTransaction`, `abortTransaction`.
    TransactionControl,
    /// Side-effect-free diagnostics: safe to send again.
    Diagnostic,
    /// Anything else.
    Other,
}

/// Where a command may run, as mongod's `AllowedOnSecondary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnSecondary {
    /// Any member runs it (diagnostics, cursors, the handshake).
    Always,
    /// A secondary runs it only under a read preference other than
    /// primary; otherwise it answers 13435 NotPrimaryNoSecondaryOk.
    OptIn,
    /// Only the primary: a secondary answers 10107 NotWritablePrimary.
    Never,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    pub name: &'static str,
    pub kind: Kind,
    pub on_secondary: OnSecondary,
    /// MongoDB 5.1+ still accepts it as an OP_QUERY command.
    pub over_op_query: bool,
    /// Runs only against the `admin` database.
    pub admin_only: bool,
    /// One of the writes a session can make retryable (`insert`, `update`,
    /// `delete`, `findAndModify`): the server deduplicates them by
    /// `lsid` + `txnNumber`.
    pub retryable_write: bool,
}

const fn row(name: &'static str, kind: Kind, on_secondary: OnSecondary) -> CommandInfo {
    CommandInfo {
        name,
        kind,
        on_secondary,
        over_op_query: false,
        admin_only: false,
        retryable_write: false,
    }
}

const fn admin(mut c: CommandInfo) -> CommandInfo {
    c.admin_only = true;
    c
}

const fn op_query(mut c: CommandInfo) -> CommandInfo {
    c.over_op_query = true;
    c
}

const fn retryable(mut c: CommandInfo) -> CommandInfo {
    c.retryable_write = true;
    c
}

use Kind::*;
use OnSecondary::{Always, Never, OptIn};

/// Every command, sorted by name (binary search; checked by a test).
pub static COMMANDS: &[CommandInfo] = &[
    op_query(row("_isSelf", Diagnostic, Always)),
    admin(row("abortTransaction", TransactionControl, Never)),
    row("aggregate", Read, OptIn),
    row("atlasVersion", Diagnostic, Always),
    op_query(row("authenticate", Auth, Always)),
    op_query(row("buildInfo", Diagnostic, Always)),
    op_query(row("buildinfo", Diagnostic, Always)),
    admin(row("bulkWrite", Write, Never)),
    row("cloneCollectionAsCapped", Write, Never),
    row("collMod", Write, Never),
    row("collStats", Diagnostic, OptIn),
    admin(row("commitTransaction", TransactionControl, Never)),
    row("connectionStatus", Diagnostic, Always),
    row("convertToCapped", Write, Never),
    row("count", Read, OptIn),
    row("create", Write, Never),
    row("createIndexes", Write, Never),
    row("createRole", Write, Never),
    row("createUser", Write, Never),
    admin(row("currentOp", Diagnostic, Always)),
    row("dataSize", Diagnostic, OptIn),
    row("dbStats", Diagnostic, OptIn),
    retryable(row("delete", Write, Never)),
    row("deleteIndexes", Write, Never),
    row("distinct", Read, OptIn),
    row("drop", Write, Never),
    row("dropAllUsersFromDatabase", Write, Never),
    row("dropDatabase", Write, Never),
    row("dropIndexes", Write, Never),
    row("dropRole", Write, Never),
    row("dropUser", Write, Never),
    row("endSessions", Diagnostic, Always),
    row("explain", Diagnostic, OptIn),
    row("features", Diagnostic, Always),
    row("find", Read, OptIn),
    retryable(row("findAndModify", Write, Never)),
    retryable(row("findandmodify", Write, Never)),
    admin(row("getCmdLineOpts", Diagnostic, Always)),
    admin(row("getDefaultRWConcern", Diagnostic, Always)),
    row("getFreeMonitoringStatus", Diagnostic, Always),
    row("getLastError", Other, Always),
    admin(row("getLog", Diagnostic, Always)),
    row("getMore", Cursor, Always),
    admin(row("getParameter", Diagnostic, Always)),
    row("getlasterror", Other, Always),
    row("getnonce", Auth, Always),
    row("grantRolesToUser", Write, Never),
    op_query(row("hello", Handshake, Always)),
    row("hostInfo", Diagnostic, Always),
    retryable(row("insert", Write, Never)),
    op_query(row("isMaster", Handshake, Always)),
    row("isSelf", Diagnostic, Always),
    op_query(row("ismaster", Handshake, Always)),
    row("killAllSessions", Other, Always),
    row("killAllSessionsByPattern", Other, Always),
    row("killCursors", Cursor, Always),
    admin(row("killOp", Other, Always)),
    row("killSessions", Other, Always),
    row("listCollections", Read, OptIn),
    row("listCommands", Diagnostic, Always),
    admin(row("listDatabases", Read, OptIn)),
    row("listIndexes", Read, OptIn),
    admin(row("lockInfo", Diagnostic, Always)),
    row("logout", Auth, Always),
    row("ping", Diagnostic, Always),
    row("refreshSessions", Other, Always),
    admin(row("renameCollection", Write, Never)),
    admin(row("replSetFreeze", Other, Always)),
    admin(row("replSetGetConfig", Other, Always)),
    admin(row("replSetGetStatus", Other, Always)),
    admin(row("replSetInitiate", Other, Always)),
    admin(row("replSetReconfig", Other, Always)),
    admin(row("replSetStepDown", Other, Always)),
    admin(row("replSetStepUp", Other, Always)),
    row("revokeRolesFromUser", Write, Never),
    op_query(row("saslContinue", Auth, Always)),
    op_query(row("saslStart", Auth, Always)),
    row("serverStatus", Diagnostic, Always),
    admin(row("shutdown", Other, Always)),
    row("startSession", Other, Always),
    retryable(row("update", Write, Never)),
    row("updateUser", Write, Never),
    row("usersInfo", Other, OptIn),
    row("validate", Other, Always),
    row("validateDBMetadata", Diagnostic, Always),
    row("whatsmyuri", Diagnostic, Always),
];

/// The row of `name` (case-sensitive, as the server matches commands).
pub fn lookup(name: &str) -> Option<&'static CommandInfo> {
    COMMANDS
        .binary_search_by(|c| c.name.cmp(name))
        .ok()
        .map(|i| &COMMANDS[i])
}

/// The kind of `name` ([`Kind::Other`] for a command not in the table).
pub fn kind(name: &str) -> Kind {
    lookup(name).map_or(Kind::Other, |c| c.kind)
}

/// A command of a transaction: `autocommit` is present (drivers send
/// `autocommit: false` with every statement of a transaction and with
/// commit/abort; the server refuses any other value).
pub fn in_transaction(autocommit: Option<bool>) -> bool {
    autocommit.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in COMMANDS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for c in COMMANDS {
            assert_eq!(lookup(c.name), Some(c));
        }
        assert_eq!(lookup("nope"), None);
        assert_eq!(lookup("FIND"), None);
    }

    #[test]
    fn rows_are_consistent() {
        for c in COMMANDS {
            if c.kind == Write || c.kind == TransactionControl {
                assert_eq!(c.on_secondary, Never, "{}", c.name);
            }
            if c.retryable_write {
                assert_eq!(c.kind, Write, "{}", c.name);
            }
            if c.kind == Handshake || c.kind == Cursor {
                assert_eq!(c.on_secondary, Always, "{}", c.name);
            }
        }
        // What MongoDB 5.1+ accepts over OP_QUERY.
        let over: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.over_op_query)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            over,
            [
                "_isSelf",
                "authenticate",
                "buildInfo",
                "buildinfo",
                "hello",
                "isMaster",
                "ismaster",
                "saslContinue",
                "saslStart"
            ]
        );
    }
}
