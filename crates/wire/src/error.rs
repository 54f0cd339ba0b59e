//! Typed errors for everything that can be wrong with bytes from the wire.

use thiserror::Error;

/// Why a frame (or part of one) was rejected. Never a panic: every length read
/// from the wire is checked against what is really there before it is used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("messageLength {0} is smaller than the 16-byte header")]
    LengthTooSmall(i32),
    #[error("messageLength {len} exceeds the maximum message size of {max} bytes")]
    LengthTooLarge { len: i64, max: usize },
    #[error("frame truncated: {what} needs {needed} bytes but only {available} remain")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("OP_MSG flag bits {0:#010x} include unknown required bits (IllegalOpMsgFlag)")]
    IllegalOpMsgFlag(u32),
    #[error("OP_MSG checksum mismatch: frame says {expected:#010x}, computed {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("OP_MSG has no kind-0 body section")]
    MissingBody,
    #[error("OP_MSG has more than one kind-0 body section")]
    DuplicateBody,
    #[error("OP_MSG section kind {0} is not supported")]
    UnsupportedSectionKind(u8),
    #[error("OP_MSG document sequence size {size} is invalid ({why})")]
    BadSequenceSize { size: i32, why: &'static str },
    #[error("OP_MSG document sequence identifier {0:?} appears twice")]
    DuplicateSequence(String),
    #[error("{what}: BSON length prefix {len} is invalid ({why})")]
    BadDocumentLength {
        what: &'static str,
        len: i32,
        why: &'static str,
    },
    #[error("{0}: missing NUL terminator of a C string")]
    UnterminatedCString(&'static str),
    #[error("{0}: C string is not valid UTF-8")]
    InvalidCString(&'static str),
    #[error("{what}: {extra} trailing bytes after the last field")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what}: malformed BSON: {detail}")]
    BadBson { what: &'static str, detail: String },
    #[error("OP_REPLY says numberReturned {declared} but holds {actual} documents")]
    ReplyCountMismatch { declared: i32, actual: usize },
    #[error("OP_COMPRESSED declares uncompressed size {size} (limit {max})")]
    BadUncompressedSize { size: i64, max: usize },
    #[error("OP_COMPRESSED compressor id {0} is not supported")]
    UnknownCompressor(u8),
    #[error("OP_COMPRESSED payload decompressed to {actual} bytes, header declared {declared}")]
    UncompressedSizeMismatch { declared: usize, actual: usize },
    #[error("OP_COMPRESSED payload is corrupt: {0}")]
    Decompress(String),
    #[error("OP_COMPRESSED may not wrap opcode {0}")]
    BadCompressedOpcode(i32),
    #[error("opcode {0} is not a request this decoder parses")]
    UnexpectedOpcode(i32),
    #[error("OP_KILL_CURSORS names {0} cursors (1 to 29999 allowed)")]
    BadKillCursorsCount(i32),
    #[error("the command document is empty")]
    EmptyCommand,
    #[error("OP_QUERY command namespace {0:?} does not end in .$cmd")]
    NotACommandNamespace(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl WireError {
    /// True when the peer's byte stream can no longer be trusted: the frame
    /// boundaries themselves are in doubt, or the server would drop the
    /// connection for this (ConnectionFatalMessageParseError: 223, 233, 288,
    /// and unknown section kinds, whose length cannot be known).
    pub fn is_connection_fatal(&self) -> bool {
        matches!(
            self,
            WireError::LengthTooSmall(_)
                | WireError::LengthTooLarge { .. }
                | WireError::IllegalOpMsgFlag(_)
                | WireError::ChecksumMismatch { .. }
                | WireError::UnsupportedSectionKind(_)
                | WireError::Io(_)
        )
    }

    /// The MongoDB error code a server would answer this with, where one exists.
    pub fn server_code(&self) -> (i32, &'static str) {
        match self {
            WireError::IllegalOpMsgFlag(_) => (223, "IllegalOpMsgFlag"),
            WireError::ChecksumMismatch { .. } => (288, "ChecksumMismatch"),
            WireError::MissingBody => (40587, "Location40587"),
            WireError::DuplicateBody => (40430, "Location40430"),
            WireError::DuplicateSequence(_) => (40431, "Location40431"),
            WireError::UnsupportedSectionKind(_) => (40432, "Location40432"),
            WireError::EmptyCommand => (40585, "Location40585"),
            WireError::NotACommandNamespace(_) => (40473, "Location40473"),
            WireError::BadKillCursorsCount(_) => (28794, "Location28794"),
            WireError::LengthTooLarge { .. } => (10334, "BSONObjectTooLarge"),
            _ => (22, "InvalidBSON"),
        }
    }
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e.to_string())
    }
}
