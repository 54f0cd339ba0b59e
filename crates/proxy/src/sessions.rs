//! holdfast's own server sessions, for the writes it makes retryable.
//!
//! A write sent with an `lsid` and a `txnNumber` is deduplicated by the
//! server: a retry of the same pair on a new primary returns the first
//! attempt's result if it replicated, and runs it once if it did not
//! (the record travels with the replicated log). Legacy applications send
//! writes without either, so holdfast lends each eligible write one of its
//! own sessions:
//!
//! - one operation per session at a time (a session is checked out for a
//!   write and all of its attempts);
//! - `txnNumber` strictly increasing per session;
//! - bounded: at most `max` sessions exist; a write waits for one;
//! - never used near the server's expiry: the server forgets a session
//!   `logicalSessionTimeoutMinutes` (30) after its last use, so a session
//!   idle for half of that is retired and ended with `endSessions`, as all
//!   are at shutdown.
//!
//! The client's own `lsid` is never used for these writes: a later
//! transaction of the client on its lsid must not meet holdfast's
//! txnNumbers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document, Uuid};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One of holdfast's server sessions.
#[derive(Debug)]
struct Session {
    id: Uuid,
    /// The txnNumber the next write on this session gets.
    next_txn: i64,
    last_used: Instant,
}

/// The pool of holdfast's sessions.
pub struct Sessions {
    idle: Mutex<Vec<Session>>,
    /// One permit per session that may exist.
    slots: Arc<Semaphore>,
    /// Sessions idle longer than this are retired.
    max_idle: Duration,
    max: usize,
}

/// A session lent to one write. Its `lsid` and `txn_number` are fixed for
/// every attempt of that write; dropping the lease returns the session.
pub struct Lease {
    session: Option<Session>,
    txn_number: i64,
    pool: Arc<Sessions>,
    _slot: OwnedSemaphorePermit,
}

impl Lease {
    /// `{id: <UUID>}`, the value of the command's `lsid`.
    pub fn lsid(&self) -> Document {
        let id = self.session.as_ref().expect("held until drop").id;
        doc! {"id": id}
    }

    pub fn txn_number(&self) -> i64 {
        self.txn_number
    }

    /// The fields that make a write retryable under this lease.
    pub fn fields(&self) -> Document {
        doc! {"lsid": self.lsid(), "txnNumber": Bson::Int64(self.txn_number)}
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.last_used = Instant::now();
            self.pool.idle.lock().unwrap().push(s);
        }
    }
}

impl Sessions {
    /// At most `max` sessions; sessions idle for longer than `max_idle`
    /// are retired ([`Sessions::retire_idle`]).
    pub fn new(max: usize, max_idle: Duration) -> Arc<Sessions> {
        Arc::new(Sessions {
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max.max(1))),
            max_idle,
            max: max.max(1),
        })
    }

    /// The default for a server whose sessions expire after
    /// `timeout_minutes`: retire at half of it.
    pub fn for_timeout(max: usize, timeout_minutes: i32) -> Arc<Sessions> {
        let minutes = u64::try_from(timeout_minutes.max(2)).unwrap_or(30);
        Self::new(max, Duration::from_secs(minutes * 60 / 2))
    }

    /// Lends a session (the most recently used one, or a new one) with the
    /// next txnNumber. Waits while `max` are lent.
    pub async fn lease(self: &Arc<Self>) -> Lease {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the sessions semaphore is never closed");
        // Returned sessions are pushed at the end: the last is the most
        // recently used. If even it is too old to trust, all are, and they
        // are left for retire_idle's endSessions.
        let reusable = {
            let mut idle = self.idle.lock().unwrap();
            match idle.last() {
                Some(s) if s.last_used.elapsed() < self.max_idle => idle.pop(),
                _ => None,
            }
        };
        let mut session = reusable.unwrap_or_else(|| Session {
            id: Uuid::new(),
            next_txn: 1,
            last_used: Instant::now(),
        });
        let txn_number = session.next_txn;
        session.next_txn += 1;
        Lease {
            session: Some(session),
            txn_number,
            pool: self.clone(),
            _slot: slot,
        }
    }

    /// Removes the sessions idle for longer than `max_idle` and returns
    /// their lsids, for `endSessions`.
    pub fn retire_idle(&self) -> Vec<Document> {
        let mut idle = self.idle.lock().unwrap();
        let (old, keep): (Vec<Session>, Vec<Session>) = idle
            .drain(..)
            .partition(|s| s.last_used.elapsed() >= self.max_idle);
        *idle = keep;
        old.into_iter().map(|s| doc! {"id": s.id}).collect()
    }

    /// Removes every idle session and returns their lsids (at shutdown).
    pub fn drain(&self) -> Vec<Document> {
        let mut idle = self.idle.lock().unwrap();
        idle.drain(..).map(|s| doc! {"id": s.id}).collect()
    }

    /// Sessions that exist now (lent or idle).
    pub fn len(&self) -> usize {
        self.max - self.slots.available_permits() + self.idle.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `endSessions` commands for `lsids`, at most 10,000 per command (the
/// server's limit).
pub fn end_sessions_commands(lsids: Vec<Document>) -> Vec<Document> {
    lsids
        .chunks(10_000)
        .map(|c| doc! {"endSessions": c.to_vec(), "$db": "admin"})
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn txn_numbers_increase_per_session_and_sessions_are_reused() {
        let s = Sessions::new(4, Duration::from_secs(60));
        let a = s.lease().await;
        let (id, t1) = (a.lsid(), a.txn_number());
        drop(a);
        let b = s.lease().await;
        assert_eq!(b.lsid(), id, "the idle session is lent again");
        assert_eq!(b.txn_number(), t1 + 1);
        assert_eq!(
            b.fields().get_i64("txnNumber").unwrap(),
            t1 + 1,
            "txnNumber is an Int64"
        );
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn one_write_per_session_at_a_time() {
        let s = Sessions::new(8, Duration::from_secs(60));
        let a = s.lease().await;
        let b = s.lease().await;
        assert_ne!(a.lsid(), b.lsid(), "a lent session is not lent twice");
        assert_eq!(s.len(), 2);
    }

    #[tokio::test]
    async fn the_pool_is_bounded() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let a = s.lease().await;
        let _b = s.lease().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), s.lease()).await;
        assert!(waiting.is_err(), "a third lease waits");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(500), s.lease())
            .await
            .expect("a returned session is lent");
        assert_eq!(c.txn_number(), 2);
        assert_eq!(s.len(), 2);
    }

    #[tokio::test]
    async fn idle_sessions_are_retired_not_reused() {
        let s = Sessions::new(4, Duration::from_millis(20));
        let a = s.lease().await;
        let old = a.lsid();
        drop(a);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let b = s.lease().await;
        assert_ne!(b.lsid(), old, "a session near expiry is not used");
        assert_eq!(b.txn_number(), 1);
        assert_eq!(s.retire_idle(), vec![old]);
        assert!(s.retire_idle().is_empty());
        drop(b);
        assert_eq!(s.drain().len(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn end_sessions_in_chunks_of_ten_thousand() {
        let lsids: Vec<Document> = (0..25_000).map(|_| doc! {"id": Uuid::new()}).collect();
        let cmds = end_sessions_commands(lsids);
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0].get_array("endSessions").unwrap().len(), 10_000);
        assert_eq!(cmds[2].get_array("endSessions").unwrap().len(), 5_000);
        assert_eq!(cmds[0].get_str("$db").unwrap(), "admin");
    }
}
