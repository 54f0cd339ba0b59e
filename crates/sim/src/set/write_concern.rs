//! Write concern: parsing `writeConcern`, and waiting until a write
//! satisfies it (or a read's `afterClusterTime` is applied).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::{doc, Document, Timestamp};

use super::SetInner;
use crate::errors::{self, CmdError};
use crate::oplog::pack_ts;

/// `w` of a write concern.
#[derive(Debug, Clone, PartialEq)]
pub enum W {
    Nodes(i64),
    Majority,
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WriteConcern {
    pub w: W,
    pub wtimeout_ms: Option<i64>,
    /// Given by the client (otherwise the implicit default `w: "majority"`).
    pub explicit: bool,
}

impl WriteConcern {
    /// Parses `writeConcern` from a command. Without one, MongoDB 5.0+
    /// replica sets use the implicit default `{w: "majority"}`.
    pub fn from_command(cmd: &Document) -> Result<WriteConcern, CmdError> {
        let Some(wc) = cmd.get("writeConcern") else {
            return Ok(WriteConcern {
                w: W::Majority,
                wtimeout_ms: None,
                explicit: false,
            });
        };
        let bson::Bson::Document(wc) = wc else {
            return Err(CmdError::new(
                errors::FAILED_TO_PARSE,
                "writeConcern must be an object",
            ));
        };
        let w = match wc.get("w") {
            None => W::Majority,
            Some(v) => match v {
                bson::Bson::String(s) if s == "majority" => W::Majority,
                bson::Bson::String(s) => W::Tag(s.clone()),
                other => match crate::cmd::as_i64(other) {
                    Some(n) if n >= 0 => W::Nodes(n),
                    _ => {
                        return Err(CmdError::new(
                            errors::FAILED_TO_PARSE,
                            "w has to be a number or string",
                        ))
                    }
                },
            },
        };
        let wtimeout_ms = wc.get("wtimeout").and_then(crate::cmd::as_i64);
        Ok(WriteConcern {
            w,
            wtimeout_ms,
            explicit: true,
        })
    }

    pub fn is_unacknowledged(&self) -> bool {
        self.w == W::Nodes(0)
    }

    fn to_document(&self) -> Document {
        let mut d = match &self.w {
            W::Nodes(n) => doc! { "w": *n as i32 },
            W::Majority => doc! { "w": "majority" },
            W::Tag(t) => doc! { "w": t.clone() },
        };
        d.insert("wtimeout", self.wtimeout_ms.unwrap_or(0) as i32);
        d.insert(
            "provenance",
            if self.explicit {
                "clientSupplied"
            } else {
                "implicitDefault"
            },
        );
        d
    }
}

impl SetInner {
    /// Waits until `index` satisfies the write concern. Returns the
    /// `writeConcernError` to attach to the reply, if any. `epoch` is the
    /// member's role epoch when the write executed: a role change since
    /// (stepdown) interrupts the wait with 11602.
    pub async fn wait_write_concern(
        &self,
        member: usize,
        index: usize,
        wc: &WriteConcern,
        epoch: u64,
    ) -> Option<Document> {
        let needed = match &wc.w {
            W::Nodes(n) => *n as usize,
            W::Majority => self.cfg.majority(),
            W::Tag(t) => {
                return Some(errors::write_concern_error(
                    errors::UNKNOWN_REPL_WRITE_CONCERN,
                    &format!(
                        "No write concern mode named '{t}' found in replica set configuration"
                    ),
                    None,
                ))
            }
        };
        if needed <= 1 {
            return None;
        }
        if needed > self.members.len() {
            return Some(errors::write_concern_error(
                errors::UNSATISFIABLE_WRITE_CONCERN,
                "Not enough data-bearing nodes",
                None,
            ));
        }
        let m = &self.members[member];
        let mut progress = self.progress_tx.subscribe();
        let mut role = m.role_epoch.subscribe();
        let deadline = wc
            .wtimeout_ms
            .filter(|t| *t > 0)
            .map(|t| tokio::time::Instant::now() + Duration::from_millis(t as u64));
        loop {
            if *role.borrow_and_update() != epoch {
                return Some(errors::write_concern_error(
                    errors::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
                    "operation was interrupted because a node stepped down",
                    None,
                ));
            }
            progress.borrow_and_update();
            if self.count_applied(index) >= needed {
                return None;
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = progress.changed() => {}
                _ = role.changed() => {}
                _ = timeout => {
                    return Some(errors::write_concern_error(
                        errors::WRITE_CONCERN_FAILED,
                        "waiting for replication timed out",
                        Some(doc! { "wtimeout": true, "writeConcern": wc.to_document() }),
                    ));
                }
            }
        }
    }

    /// Waits until member `i` applied cluster time `ts`
    /// (`readConcern.afterClusterTime`), at most `limit`. Returns whether
    /// it did; a time later than any member applied counts as reached.
    pub async fn wait_applied_ts(&self, i: usize, ts: Timestamp, limit: Duration) -> bool {
        let target = pack_ts(ts);
        let m = &self.members[i];
        let mut progress = self.progress_tx.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            progress.borrow_and_update();
            if m.last_applied_ts.load(Ordering::Acquire) >= target
                || self.cluster_time.load(Ordering::Acquire) < target
            {
                return true;
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}
