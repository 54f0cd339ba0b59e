//! The replicated log: appending on the primary, applying on secondaries
//! (each secondary's applier, `repl_lag_ms` plus its `lag` fault behind),
//! compaction, and the primary's periodic no-op.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::DateTime;

use super::{Repl, SetInner};
use crate::member::MemberData;
use crate::oplog::{pack_ts, Entry, EntryKind, EntryRef, OpTime};

/// Entries kept behind the slowest live member when the log is compacted.
pub const LOG_RETAIN: usize = 10_000;

impl Repl {
    /// Index of the last entry (entries are numbered from 1).
    pub fn end(&self) -> usize {
        self.base + self.log.len()
    }

    /// Index of the oldest entry still kept, minus one.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Entry `index` (1-based), if still kept.
    pub fn entry(&self, index: usize) -> Option<&EntryRef> {
        if index <= self.base {
            return None;
        }
        self.log.get(index - 1 - self.base)
    }

    /// Entries after position `start` (0-based count of entries), or `None`
    /// if some of them were compacted away.
    pub fn entries_after(&self, start: usize) -> Option<&[EntryRef]> {
        if start < self.base {
            return None;
        }
        Some(self.log.get(start - self.base..).unwrap_or(&[]))
    }

    fn push(&mut self, e: EntryRef) {
        self.log.push(e);
    }

    /// Drops entries after `end`.
    pub(super) fn truncate(&mut self, end: usize) {
        self.log.truncate(end.saturating_sub(self.base));
    }

    /// Forgets entries every live member applied long ago.
    fn compact(&mut self) {
        let retain = self.retain.max(1);
        if self.log.len() < 3 * retain {
            return;
        }
        let slowest = self
            .members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.applied)
            .min()
            .unwrap_or(0);
        let cut = slowest.saturating_sub(retain);
        if cut <= self.base + retain {
            return;
        }
        let e = &self.log[cut - 1 - self.base];
        self.base_optime = (e.optime, e.wall);
        self.log.drain(..cut - self.base);
        self.base = cut;
    }

    /// Highest log position held by a live member: what can still be
    /// replicated from someone.
    pub fn max_live_applied(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.applied)
            .max()
            .unwrap_or(0)
            .min(self.end())
    }

    /// The optime and wall time of log position `index` (1-based).
    pub fn optime_at(&self, index: usize) -> (OpTime, DateTime) {
        if index == 0 || index > self.end() {
            return (OpTime::NULL, DateTime::from_millis(0));
        }
        match self.entry(index) {
            Some(e) => (e.optime, e.wall),
            None => self.base_optime,
        }
    }

    /// The majority commit point: the highest position applied by a
    /// majority of members.
    pub fn majority_index(&self, majority: usize) -> usize {
        let mut applied: Vec<usize> = self.members.iter().map(|m| m.applied).collect();
        applied.sort_unstable_by(|a, b| b.cmp(a));
        applied
            .get(majority.saturating_sub(1))
            .copied()
            .unwrap_or(0)
            .min(self.end())
    }
}

impl SetInner {
    /// Appends an entry written by `member` (the primary, whose store already
    /// reflects it). Returns its 1-based index. Caller holds the member's
    /// data lock and `repl`, and calls [`Self::notify_log`] after unlocking.
    pub fn append(&self, repl: &mut Repl, member: usize, kind: EntryKind) -> usize {
        let ts = repl.clock.tick();
        let entry = Arc::new(Entry {
            optime: OpTime {
                ts,
                term: repl.term,
            },
            wall: DateTime::now(),
            at: Instant::now(),
            kind,
        });
        repl.push(entry.clone());
        let index = repl.end();
        self.mark_applied(repl, member, index, &entry);
        repl.compact();
        index
    }

    fn mark_applied(&self, repl: &mut Repl, member: usize, index: usize, entry: &Entry) {
        let mr = &mut repl.members[member];
        mr.applied = index;
        mr.last = entry.optime;
        mr.last_wall = entry.wall;
        let m = &self.members[member];
        m.applied.store(index, Ordering::Release);
        let packed = pack_ts(entry.optime.ts);
        m.last_applied_ts.store(packed, Ordering::Release);
        self.cluster_time.fetch_max(packed, Ordering::AcqRel);
    }

    /// Applies log positions `applied..target` of `member` to its data.
    pub(super) fn apply_range(
        &self,
        data: &mut MemberData,
        repl: &mut Repl,
        member: usize,
        target: usize,
    ) {
        let start = repl.members[member].applied;
        for k in start..target.min(repl.end()) {
            let Some(e) = repl.entry(k + 1).cloned() else {
                // Compacted away: only an initial sync can catch up.
                return;
            };
            data.apply_entry(&e, k + 1);
            self.mark_applied(repl, member, k + 1, &e);
        }
    }

    /// Writes `ops` on the primary as one log entry and applies it on every
    /// other member at once (what the set holds when it starts: the
    /// `--user` users). Call before the members' processes start.
    pub fn seed(&self, ops: Vec<crate::engine::Op>) {
        if ops.is_empty() {
            return;
        }
        let Some(primary) = self.repl.lock().primary else {
            return;
        };
        let index = {
            let mut data = self.members[primary].data.lock();
            for op in &ops {
                data.store.apply(op);
            }
            let mut repl = self.repl.lock();
            self.append(&mut repl, primary, EntryKind::Ops(ops))
        };
        for (i, m) in self.members.iter().enumerate() {
            if i != primary {
                let mut data = m.data.lock();
                let mut repl = self.repl.lock();
                self.apply_range(&mut data, &mut repl, i, index);
            }
        }
        self.notify_log();
    }

    pub fn notify_log(&self) {
        self.log_tx.send_modify(|v| *v = v.wrapping_add(1));
        self.notify_progress();
    }

    pub fn notify_progress(&self) {
        self.progress_tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Members alive that applied log position `index`.
    pub fn count_applied(&self, index: usize) -> usize {
        self.members
            .iter()
            .filter(|m| m.is_alive() && m.applied.load(Ordering::Acquire) >= index)
            .count()
    }

    /// Applies what is due on secondary `i`. Returns when the next entry
    /// becomes due, if one is waiting for its lag.
    fn apply_due(&self, i: usize) -> Option<Instant> {
        const CHUNK: usize = 2048;
        let m = &self.members[i];
        let mut data = m.data.lock();
        let mut repl = self.repl.lock();
        if !repl.members[i].alive || repl.primary == Some(i) {
            return None;
        }
        // Entries can come from any live member that has them.
        let avail = repl
            .members
            .iter()
            .enumerate()
            .filter(|(j, mr)| *j != i && mr.alive)
            .map(|(_, mr)| mr.applied)
            .max()
            .unwrap_or(0)
            .min(repl.end());
        let start = repl.members[i].applied;
        if start >= avail || start < repl.base() {
            return None;
        }
        let now = Instant::now();
        let lag = self.lag + m.extra_lag();
        let mut k = start;
        let mut next_due = None;
        while k < avail {
            if k - start >= CHUNK {
                next_due = Some(now);
                break;
            }
            let due = repl.entry(k + 1).map(|e| e.at + lag).unwrap_or(now);
            if due > now {
                next_due = Some(due);
                break;
            }
            k += 1;
        }
        if k > start {
            self.apply_range(&mut data, &mut repl, i, k);
        }
        drop(repl);
        drop(data);
        if k > start {
            self.notify_progress();
        }
        next_due
    }

    /// A secondary's replication loop: applies entries after the lag
    /// (`repl_lag_ms` plus the member's `lag` fault).
    pub async fn applier(self: Arc<Self>, i: usize) {
        let mut log_rx = self.log_tx.subscribe();
        let lag_changed = &self.members[i].lag_changed;
        loop {
            log_rx.borrow_and_update();
            let next = self.apply_due(i);
            match next {
                // Entries appended meanwhile are due later: no need to
                // wake for them (unless the lag shrinks).
                Some(t) => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = lag_changed.notified() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        r = log_rx.changed() => if r.is_err() { return },
                        _ = lag_changed.notified() => {}
                    }
                }
            }
        }
    }

    /// MongoDB's periodic no-op writer: every `every`, a primary that has
    /// written nothing since the previous turn appends a no-op
    /// (`{msg: "periodic noop"}`, no data change), so that an idle set's
    /// `lastWrite` keeps advancing. A new primary starts counting afresh.
    pub async fn noop_writer(self: Arc<Self>, every: Duration) {
        let mut known = None;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            known = self.noop_turn(known);
        }
    }

    /// One turn of [`Self::noop_writer`]: `known` is the primary and its
    /// last optime at the previous turn; returns them now.
    fn noop_turn(&self, known: Option<(usize, OpTime)>) -> Option<(usize, OpTime)> {
        let p = self.repl.lock().writable_primary()?;
        let data = self.members[p].data.lock();
        let mut repl = self.repl.lock();
        if !data.writable || repl.writable_primary() != Some(p) {
            return None;
        }
        let last = repl.members[p].last;
        if known != Some((p, last)) {
            return Some((p, last));
        }
        self.append(&mut repl, p, EntryKind::Noop("periodic noop"));
        let now = repl.members[p].last;
        drop(repl);
        drop(data);
        self.notify_log();
        Some((p, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    fn set() -> SetInner {
        let addrs = (0..3)
            .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], 40_000 + i)))
            .collect();
        let set = SetInner::new(SimConfig::default(), addrs, None);
        set.initial_election();
        set
    }

    #[test]
    fn the_periodic_noop_is_written_only_when_the_primary_was_idle() {
        let set = set();
        let end = || set.repl.lock().end();
        assert_eq!(end(), 1, "the election's no-op");
        // The first turn only notes where the primary is.
        let known = set.noop_turn(None);
        assert_eq!(known.map(|k| k.0), Some(0));
        assert_eq!(end(), 1);
        // Nothing written since: a no-op that changes no data.
        let known = set.noop_turn(known);
        assert_eq!(end(), 2);
        let e = set.repl.lock().entry(2).cloned().unwrap();
        assert!(matches!(e.kind, EntryKind::Noop("periodic noop")));
        assert_eq!(set.repl.lock().members[0].last, e.optime);
        // A write in between: no no-op this turn, one the next.
        {
            let _data = set.members[0].data.lock();
            let mut repl = set.repl.lock();
            set.append(&mut repl, 0, EntryKind::Ops(Vec::new()));
        }
        let known = set.noop_turn(known);
        assert_eq!(end(), 3);
        let known = set.noop_turn(known);
        assert_eq!(end(), 4);
        // No writable primary: nothing, and a new primary starts afresh.
        {
            let mut data = set.members[0].data.lock();
            let mut repl = set.repl.lock();
            set.demote_locked(&mut data, &mut repl, 0);
        }
        assert_eq!(set.noop_turn(known), None);
        assert_eq!(end(), 4);
    }
}
