//! The logical session cache's refresh ([`crate::logical_sessions`]):
//! sessions used since the last refresh are recorded in
//! `config.system.sessions` and those ended are deleted from it, written
//! through the primary as one log entry.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::Op;
use crate::logical_sessions::{record_id, REFRESH_INTERVAL, SESSIONS_NS};
use crate::oplog::EntryKind;

use super::SetInner;

impl SetInner {
    /// Refreshes member `i`'s logical session cache. Without a writable
    /// primary the sessions stay in the cache for the next refresh.
    pub fn refresh_logical_sessions(&self, i: usize) {
        let started = Instant::now();
        let cache = &self.members[i].logical_sessions;
        let batch = cache.lock().take();
        let Some(p) = self.repl.lock().writable_primary() else {
            cache.lock().put_back(batch);
            return;
        };
        let appended = {
            let mut data = self.members[p].data.lock();
            if !data.writable {
                drop(data);
                cache.lock().put_back(batch);
                return;
            }
            let mut ops = Vec::new();
            for (key, used) in &batch.active {
                let Some(id) = record_id(key) else { continue };
                let doc = bson::doc! { "_id": id.clone(), "lastUse": *used };
                ops.push(Op::Update {
                    ns: SESSIONS_NS.into(),
                    id,
                    doc,
                });
            }
            for key in &batch.ending {
                let Some(id) = record_id(key) else { continue };
                if data.store.find_by_id(SESSIONS_NS, &id).is_some() {
                    ops.push(Op::Delete {
                        ns: SESSIONS_NS.into(),
                        id,
                    });
                }
            }
            if ops.is_empty() {
                false
            } else {
                for op in &ops {
                    data.store.apply(op);
                }
                let mut repl = self.repl.lock();
                self.append(&mut repl, p, EntryKind::Ops(ops));
                true
            }
        };
        if appended {
            self.notify_log();
        }
        cache
            .lock()
            .refreshed(batch.active.len(), batch.ending.len(), started.elapsed());
    }

    /// Every member's periodic refresh ([`REFRESH_INTERVAL`]).
    pub async fn session_refresher(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
            for (i, m) in self.members.iter().enumerate() {
                if m.is_alive() {
                    self.refresh_logical_sessions(i);
                }
            }
        }
    }
}
