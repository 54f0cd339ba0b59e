//! The replicated log: one per set, shared by every member.
//!
//! The primary appends an entry for every write it executes; each secondary
//! applies the entries to its own store after the configured lag. An entry
//! is identified by its [`OpTime`] (timestamp and election term), and the
//! log obeys Raft's log-matching rule: two members whose entries at the same
//! index have the same optime hold the same prefix.

use std::sync::Arc;
use std::time::Instant;

use bson::{doc, DateTime, Document, Timestamp};

use crate::engine::Op;

/// A point in the log: `{ts, t}` as mongod reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTime {
    pub ts: Timestamp,
    pub term: i64,
}

impl OpTime {
    pub const NULL: OpTime = OpTime {
        ts: Timestamp {
            time: 0,
            increment: 0,
        },
        term: -1,
    };

    pub fn to_document(self) -> Document {
        doc! { "ts": self.ts, "t": self.term }
    }
}

/// Packs a timestamp into a u64 (time in the high half) so it can live in
/// an atomic and compare as a number.
pub fn pack_ts(ts: Timestamp) -> u64 {
    ((ts.time as u64) << 32) | ts.increment as u64
}

pub fn unpack_ts(v: u64) -> Timestamp {
    Timestamp {
        time: (v >> 32) as u32,
        increment: v as u32,
    }
}

/// What an entry does when a member applies it.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// No data change (the "new primary" no-op each election writes).
    Noop(&'static str),
    /// Plain operations of one write command.
    Ops(Vec<Op>),
    /// A retryable write: its operations and its reply, recorded under
    /// (lsid, txnNumber) as mongod records it in `config.transactions`.
    Retryable {
        lsid: Vec<u8>,
        txn_number: i64,
        reply: Document,
        ops: Vec<Op>,
    },
    /// A committed multi-document transaction, applied atomically.
    Transaction {
        lsid: Vec<u8>,
        txn_number: i64,
        ops: Vec<Op>,
    },
}

impl EntryKind {
    pub fn ops(&self) -> &[Op] {
        match self {
            EntryKind::Noop(_) => &[],
            EntryKind::Ops(ops)
            | EntryKind::Retryable { ops, .. }
            | EntryKind::Transaction { ops, .. } => ops,
        }
    }
}

/// One log entry.
#[derive(Debug)]
pub struct Entry {
    pub optime: OpTime,
    /// Wall-clock time of the write (`lastWriteDate`).
    pub wall: DateTime,
    /// When the primary appended it (secondaries apply it `repl_lag` later).
    pub at: Instant,
    pub kind: EntryKind,
}

pub type EntryRef = Arc<Entry>;

/// Generates strictly increasing timestamps: seconds since the epoch and an
/// increment within the second.
#[derive(Debug)]
pub struct Clock {
    last: Timestamp,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            last: Timestamp {
                time: 0,
                increment: 0,
            },
        }
    }
}

impl Clock {
    pub fn tick(&mut self) -> Timestamp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let ts = if now > self.last.time {
            Timestamp {
                time: now,
                increment: 1,
            }
        } else {
            Timestamp {
                time: self.last.time,
                increment: self.last.increment + 1,
            }
        };
        self.last = ts;
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_strictly_increasing_and_packs_in_order() {
        let mut c = Clock::default();
        let mut prev = 0u64;
        for _ in 0..1000 {
            let ts = c.tick();
            let p = pack_ts(ts);
            assert!(p > prev);
            assert_eq!(unpack_ts(p), ts);
            prev = p;
        }
    }
}
