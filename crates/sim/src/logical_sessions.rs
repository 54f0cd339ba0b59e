//! A member's logical session cache, as mongod keeps it
//! (`LogicalSessionCacheImpl`): the sessions used since the last refresh,
//! the sessions `endSessions` named, and the refresh that records the first
//! in `config.system.sessions` and removes the second from it.
//!
//! - Every command that carries an `lsid` vivifies its session here (so do
//!   `startSession` and `refreshSessions`).
//! - `endSessions` only marks sessions as ending; the next refresh drops
//!   them from the cache and deletes their records.
//! - The refresh runs every [`REFRESH_INTERVAL`] (mongod's
//!   `logicalSessionRefreshMillis`, 5 minutes) and on
//!   `refreshLogicalSessionCacheNow`. It writes through the primary, as a
//!   secondary's refresh does in a replica set; without a writable primary
//!   the sessions stay for the next one.
//! - `serverStatus.logicalSessionRecordCache` reports the cache:
//!   `activeSessionsCount` (sessions used since the last refresh, ending
//!   ones included until it runs), and the last refresh's
//!   `lastSessionsCollectionJobEntriesRefreshed` / `…EntriesEnded`.
//!
//! The cache is process memory: a killed member starts with an empty one.
//! Retryable-write records (`config.transactions`) are separate and outlive
//! `endSessions`, as in mongod.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bson::{doc, Bson, DateTime, Document};

/// mongod's default `logicalSessionRefreshMillis`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Where refreshed sessions are recorded.
pub const SESSIONS_NS: &str = "config.system.sessions";

/// Sessions are keyed as the rest of the simulator keys them: the 16 bytes
/// of `lsid.id`, followed for an authenticated user by the SHA-256 of the
/// user ([`crate::auth::UserName::session_digest`]).
pub type SessionKey = Vec<u8>;

#[derive(Debug, Default)]
pub struct LogicalSessionCache {
    /// Used since the last refresh, with the time of the last use.
    active: HashMap<SessionKey, DateTime>,
    /// Named by `endSessions` since the last refresh.
    ending: HashSet<SessionKey>,
    stats: RefreshStats,
}

#[derive(Debug, Default, Clone, Copy)]
struct RefreshStats {
    jobs: i32,
    last_at: Option<DateTime>,
    last_duration_ms: i32,
    last_refreshed: i32,
    last_ended: i32,
}

/// What one refresh takes out of the cache.
#[derive(Debug, Default)]
pub struct RefreshBatch {
    /// Sessions to record, with their last use (ending ones excluded).
    pub active: HashMap<SessionKey, DateTime>,
    pub ending: HashSet<SessionKey>,
}

impl LogicalSessionCache {
    /// A command used session `key`.
    pub fn vivify(&mut self, key: &[u8]) {
        self.active.insert(key.to_vec(), DateTime::now());
    }

    /// `endSessions`: the sessions end at the next refresh.
    pub fn end(&mut self, keys: impl IntoIterator<Item = SessionKey>) {
        self.ending.extend(keys);
    }

    /// Starts a refresh: takes the active and ending sessions out of the
    /// cache (sessions used meanwhile start a new set).
    pub fn take(&mut self) -> RefreshBatch {
        self.stats.jobs += 1;
        self.stats.last_at = Some(DateTime::now());
        self.stats.last_duration_ms = 0;
        self.stats.last_refreshed = 0;
        self.stats.last_ended = 0;
        let ending = std::mem::take(&mut self.ending);
        let mut active = std::mem::take(&mut self.active);
        active.retain(|k, _| !ending.contains(k));
        RefreshBatch { active, ending }
    }

    /// A refresh that could not write: its sessions go back, merged with
    /// those used meanwhile.
    pub fn put_back(&mut self, batch: RefreshBatch) {
        for (k, used) in batch.active {
            let e = self.active.entry(k).or_insert(used);
            if used.timestamp_millis() > e.timestamp_millis() {
                *e = used;
            }
        }
        self.ending.extend(batch.ending);
    }

    /// A refresh wrote its batch.
    pub fn refreshed(&mut self, refreshed: usize, ended: usize, took: Duration) {
        self.stats.last_refreshed = refreshed as i32;
        self.stats.last_ended = ended as i32;
        self.stats.last_duration_ms = took.as_millis() as i32;
    }

    /// The process died: the cache is gone (the statistics too).
    pub fn clear(&mut self) {
        *self = LogicalSessionCache::default();
    }

    /// Sessions used since the last refresh.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// `serverStatus.logicalSessionRecordCache` (the transaction reaper is
    /// not simulated: its fields stay at zero).
    pub fn stats_document(&self, started: DateTime) -> Document {
        let s = self.stats;
        doc! {
            "activeSessionsCount": self.active.len() as i32,
            "sessionsCollectionJobCount": s.jobs,
            "lastSessionsCollectionJobDurationMillis": s.last_duration_ms,
            "lastSessionsCollectionJobTimestamp": s.last_at.unwrap_or(started),
            "lastSessionsCollectionJobEntriesRefreshed": s.last_refreshed,
            "lastSessionsCollectionJobEntriesEnded": s.last_ended,
            "lastSessionsCollectionJobCursorsClosed": 0,
            "transactionReaperJobCount": 0,
            "lastTransactionReaperJobDurationMillis": 0,
            "lastTransactionReaperJobTimestamp": started,
            "lastTransactionReaperJobEntriesCleanedUp": 0,
        }
    }
}

/// The `_id` of a session's record in `config.system.sessions`:
/// `{id: <UUID>, uid: <SHA-256 of the user, of "" without one>}`.
/// `None` for an `lsid` whose `id` is not a UUID.
pub fn record_id(key: &[u8]) -> Option<Bson> {
    let id: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let uid = match key.get(16..) {
        Some(digest) if digest.len() == 32 => digest.to_vec(),
        Some([]) => holdfast_scram::Mechanism::ScramSha256.hash(b""),
        _ => return None,
    };
    Some(Bson::Document(doc! {
        "id": bson::Uuid::from_bytes(id),
        "uid": Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: uid,
        }),
    }))
}

/// The session key of an `lsid` document (`{id: <UUID>}`) sent by a
/// connection authenticated as `digest`'s user, as commands key theirs.
pub fn key_of(lsid: &Bson, digest: Option<&[u8]>) -> Option<SessionKey> {
    let Bson::Document(d) = lsid else {
        return None;
    };
    let Some(Bson::Binary(b)) = d.get("id") else {
        return None;
    };
    let mut key = b.bytes.clone();
    if let Some(digest) = digest {
        key.extend_from_slice(digest);
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SessionKey {
        vec![n; 16]
    }

    #[test]
    fn ending_sessions_leave_at_the_next_refresh() {
        let mut c = LogicalSessionCache::default();
        c.vivify(&key(1));
        c.vivify(&key(2));
        c.end([key(2), key(3)]);
        assert_eq!(c.active_count(), 2, "ended sessions count until a refresh");
        let batch = c.take();
        assert_eq!(batch.active.keys().collect::<Vec<_>>(), vec![&key(1)]);
        assert_eq!(batch.ending.len(), 2);
        c.refreshed(batch.active.len(), batch.ending.len(), Duration::ZERO);
        assert_eq!(c.active_count(), 0);
        let s = c.stats_document(DateTime::now());
        assert_eq!(s.get_i32("sessionsCollectionJobCount").unwrap(), 1);
        assert_eq!(
            s.get_i32("lastSessionsCollectionJobEntriesRefreshed")
                .unwrap(),
            1
        );
        assert_eq!(
            s.get_i32("lastSessionsCollectionJobEntriesEnded").unwrap(),
            2
        );
    }

    #[test]
    fn a_failed_refresh_keeps_its_sessions() {
        let mut c = LogicalSessionCache::default();
        c.vivify(&key(1));
        c.end([key(4)]);
        let batch = c.take();
        c.vivify(&key(2));
        c.put_back(batch);
        assert_eq!(c.active_count(), 2);
        assert_eq!(c.take().ending.len(), 1);
    }

    #[test]
    fn records_are_keyed_by_id_and_user() {
        let anon = record_id(&key(7)).unwrap();
        let d = anon.as_document().unwrap();
        assert_eq!(
            d.get("id"),
            Some(&Bson::from(bson::Uuid::from_bytes([7; 16])))
        );
        let uid = match d.get("uid") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(uid, holdfast_scram::Mechanism::ScramSha256.hash(b""));
        let mut with_user = key(7);
        with_user.extend_from_slice(&[9; 32]);
        assert_ne!(record_id(&with_user).unwrap(), anon);
        assert_eq!(record_id(b"short"), None);
        let lsid = Bson::Document(doc! {"id": bson::Uuid::from_bytes([7; 16])});
        assert_eq!(key_of(&lsid, None), Some(key(7)));
        assert_eq!(key_of(&lsid, Some(&[9; 32])), Some(with_user));
    }
}
