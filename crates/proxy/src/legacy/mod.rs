//! Legacy clients: the wire formats drivers used before OP_MSG, which
//! MongoDB 5.1+ refuses, translated into commands. OP_QUERY commands and
//! finds ([`query`]), OP_GET_MORE, OP_KILL_CURSORS, OP_INSERT, OP_UPDATE and
//! OP_DELETE ([`writes`] and the connection's glue in `client/legacy.rs`);
//! answers in the legacy conventions ([`replies`]). Translated requests take
//! the request path like any other, so the failover contract applies to
//! them unchanged.
//!
//! Everything here is pure (bytes in, bytes out) and tested on its own.

pub mod query;
pub mod replies;
pub mod writes;

/// A legacy request holdfast cannot translate: its MongoDB error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyError {
    pub code: i32,
    pub message: String,
}

impl LegacyError {
    pub fn new(code: i32, message: impl Into<String>) -> LegacyError {
        LegacyError {
            code,
            message: message.into(),
        }
    }
}

/// The bounded label of a legacy request kind, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    QueryCommand,
    QueryFind,
    GetMore,
    KillCursors,
    Insert,
    Update,
    Delete,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::QueryCommand,
        Kind::QueryFind,
        Kind::GetMore,
        Kind::KillCursors,
        Kind::Insert,
        Kind::Update,
        Kind::Delete,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::QueryCommand => "op_query_command",
            Kind::QueryFind => "op_query_find",
            Kind::GetMore => "op_get_more",
            Kind::KillCursors => "op_kill_cursors",
            Kind::Insert => "op_insert",
            Kind::Update => "op_update",
            Kind::Delete => "op_delete",
        }
    }
}
