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
//! - per principal: the server ties a session to the user that created
//!   it, so each principal (the upstream identity, or a user logging in
//!   upstream as itself) writes on sessions of its own, never another's;
//! - bounded: at most `max` sessions exist, whatever the number of
//!   principals; a write waits for one;
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

use crate::auth::Principal;

/// One of holdfast's server sessions. The server ties a session to the
/// user that created it, so a session serves only its owner's writes.
#[derive(Debug)]
struct Session {
    id: Uuid,
    owner: Arc<Principal>,
    /// The txnNumber the next write on this session gets.
    next_txn: i64,
    last_used: Instant,
}

/// Sessions to end with `endSessions`, each as its owner.
pub type Ended = Vec<(Arc<Principal>, Document)>;

/// The pool of holdfast's sessions.
pub struct Sessions {
    idle: Mutex<Vec<Session>>,
    /// Sessions made room for (another owner needed one): ended with the
    /// next [`Sessions::retire_idle`].
    evicted: Mutex<Vec<Session>>,
    /// One permit per session that may be lent.
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
            evicted: Mutex::new(Vec::new()),
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

    /// Lends a session of `owner` (its most recently used one, or a new
    /// one) with the next txnNumber. Waits while `max` are lent.
    pub async fn lease(self: &Arc<Self>, owner: &Arc<Principal>) -> Lease {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the sessions semaphore is never closed");
        // Returned sessions are pushed at the end: the last of an owner is
        // its most recently used. If even it is too old to trust, all of
        // the owner's are, and they are left for retire_idle's endSessions.
        let reusable = {
            let mut idle = self.idle.lock().unwrap();
            match idle.iter().rposition(|s| s.owner.key == owner.key) {
                Some(i) if idle[i].last_used.elapsed() < self.max_idle => Some(idle.remove(i)),
                _ => {
                    self.make_room(&mut idle);
                    None
                }
            }
        };
        let mut session = reusable.unwrap_or_else(|| Session {
            id: Uuid::new(),
            owner: owner.clone(),
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

    /// Before a new session: the oldest idle ones go (to be ended) until
    /// lent and idle sessions fit in `max`.
    fn make_room(&self, idle: &mut Vec<Session>) {
        let lent = self.max - self.slots.available_permits();
        while !idle.is_empty() && idle.len() + lent > self.max {
            let s = idle.remove(0);
            self.evicted.lock().unwrap().push(s);
        }
    }

    /// Removes the sessions idle for longer than `max_idle` (and those
    /// made room for) and returns them, for `endSessions`.
    pub fn retire_idle(&self) -> Ended {
        let mut idle = self.idle.lock().unwrap();
        let (old, keep): (Vec<Session>, Vec<Session>) = idle
            .drain(..)
            .partition(|s| s.last_used.elapsed() >= self.max_idle);
        *idle = keep;
        let evicted = std::mem::take(&mut *self.evicted.lock().unwrap());
        ended(old.into_iter().chain(evicted))
    }

    /// Removes every idle session and returns them (at shutdown).
    pub fn drain(&self) -> Ended {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap());
        let evicted = std::mem::take(&mut *self.evicted.lock().unwrap());
        ended(idle.into_iter().chain(evicted))
    }

    /// Sessions that exist now (lent or idle).
    pub fn len(&self) -> usize {
        self.max - self.slots.available_permits() + self.idle.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn ended(sessions: impl Iterator<Item = Session>) -> Ended {
    sessions.map(|s| (s.owner, doc! {"id": s.id})).collect()
}

/// The sessions of `ended` grouped by owner, in the order owners appear.
pub fn by_owner(ended: Ended) -> Vec<(Arc<Principal>, Vec<Document>)> {
    let mut groups: Vec<(Arc<Principal>, Vec<Document>)> = Vec::new();
    for (owner, lsid) in ended {
        match groups.iter_mut().find(|(o, _)| o.key == owner.key) {
            Some((_, lsids)) => lsids.push(lsid),
            None => groups.push((owner, vec![lsid])),
        }
    }
    groups
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

    fn svc() -> Arc<Principal> {
        thread_local!(static SVC: Arc<Principal> = Principal::service(None));
        SVC.with(|p| p.clone())
    }

    fn user(name: &str) -> Arc<Principal> {
        Arc::new(Principal {
            key: Arc::from(name),
            login: None,
        })
    }

    #[tokio::test]
    async fn each_principal_writes_on_its_own_sessions() {
        let s = Sessions::new(4, Duration::from_secs(60));
        let (a, b) = (user("admin.a"), user("admin.b"));
        let la = s.lease(&a).await;
        let a_id = la.lsid();
        drop(la);
        // b never gets a's idle session...
        let lb = s.lease(&b).await;
        assert_ne!(lb.lsid(), a_id);
        let b_id = lb.lsid();
        drop(lb);
        // ...and each gets its own back, with the next txnNumber.
        let la = s.lease(&a).await;
        assert_eq!((la.lsid(), la.txn_number()), (a_id.clone(), 2));
        let lb = s.lease(&b).await;
        assert_eq!((lb.lsid(), lb.txn_number()), (b_id.clone(), 2));
        drop((la, lb));
        let ended = by_owner(s.drain());
        assert_eq!(ended.len(), 2);
        for (owner, lsids) in ended {
            assert_eq!(lsids.len(), 1);
            assert_eq!(
                lsids[0],
                if &*owner.key == "admin.a" {
                    a_id.clone()
                } else {
                    b_id.clone()
                }
            );
        }
    }

    #[tokio::test]
    async fn many_principals_stay_within_the_bound_and_evicted_sessions_are_ended() {
        let s = Sessions::new(2, Duration::from_secs(60));
        for i in 0..5 {
            drop(s.lease(&user(&format!("admin.u{i}"))).await);
            assert!(s.len() <= 2, "{} sessions", s.len());
        }
        // Three were made room for; they are ended with the idle ones.
        assert_eq!(s.retire_idle().len(), 3);
        assert_eq!(s.drain().len(), 2);
    }

    #[tokio::test]
    async fn txn_numbers_increase_per_session_and_sessions_are_reused() {
        let s = Sessions::new(4, Duration::from_secs(60));
        let a = s.lease(&svc()).await;
        let (id, t1) = (a.lsid(), a.txn_number());
        drop(a);
        let b = s.lease(&svc()).await;
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
        let a = s.lease(&svc()).await;
        let b = s.lease(&svc()).await;
        assert_ne!(a.lsid(), b.lsid(), "a lent session is not lent twice");
        assert_eq!(s.len(), 2);
    }

    #[tokio::test]
    async fn the_pool_is_bounded() {
        let s = Sessions::new(2, Duration::from_secs(60));
        let a = s.lease(&svc()).await;
        let _b = s.lease(&svc()).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), s.lease(&svc())).await;
        assert!(waiting.is_err(), "a third lease waits");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(500), s.lease(&svc()))
            .await
            .expect("a returned session is lent");
        assert_eq!(c.txn_number(), 2);
        assert_eq!(s.len(), 2);
    }

    #[tokio::test]
    async fn idle_sessions_are_retired_not_reused() {
        let s = Sessions::new(4, Duration::from_millis(20));
        let a = s.lease(&svc()).await;
        let old = a.lsid();
        drop(a);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let b = s.lease(&svc()).await;
        assert_ne!(b.lsid(), old, "a session near expiry is not used");
        assert_eq!(b.txn_number(), 1);
        let retired = s.retire_idle();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].1, old);
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
