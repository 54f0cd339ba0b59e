//! Routing state that outlives a request: which member opened a cursor, and
//! which member a transaction is pinned to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cursor id → member that opened it. Learned from replies; entries go
/// away when the cursor is exhausted or killed, or after `idle` (the
/// server's own idle cursor timeout is 10 minutes).
pub struct Cursors {
    map: Mutex<HashMap<i64, (Arc<str>, Instant)>>,
    idle: Duration,
}

impl Cursors {
    pub fn new(idle: Duration) -> Cursors {
        Cursors {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    pub fn insert(&self, id: i64, member: Arc<str>) {
        if id != 0 {
            self.map
                .lock()
                .unwrap()
                .insert(id, (member, Instant::now()));
        }
    }

    pub fn get(&self, id: i64) -> Option<Arc<str>> {
        let mut m = self.map.lock().unwrap();
        m.get_mut(&id).map(|(member, at)| {
            *at = Instant::now();
            member.clone()
        })
    }

    pub fn remove(&self, id: i64) {
        self.map.lock().unwrap().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries idle for longer than the server keeps cursors.
    pub fn sweep(&self) {
        let idle = self.idle;
        self.map
            .lock()
            .unwrap()
            .retain(|_, (_, at)| at.elapsed() < idle);
    }
}

/// A pinned transaction: its txnNumber, its member, when last used.
type Pin = (i64, Arc<str>, Instant);

/// lsid (raw bytes of the `lsid` document) → its transaction's pin.
pub struct TxnPins {
    map: Mutex<HashMap<Vec<u8>, Pin>>,
    idle: Duration,
}

impl TxnPins {
    pub fn new(idle: Duration) -> TxnPins {
        TxnPins {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    pub fn pin(&self, lsid: &[u8], txn: i64, member: Arc<str>) {
        self.map
            .lock()
            .unwrap()
            .insert(lsid.to_vec(), (txn, member, Instant::now()));
    }

    /// The member of this session's transaction `txn`, if pinned.
    pub fn get(&self, lsid: &[u8], txn: i64) -> Option<Arc<str>> {
        let m = self.map.lock().unwrap();
        m.get(lsid)
            .filter(|(t, _, _)| *t == txn)
            .map(|(_, member, _)| member.clone())
    }

    pub fn unpin(&self, lsid: &[u8]) {
        self.map.lock().unwrap().remove(lsid);
    }

    pub fn sweep(&self) {
        let idle = self.idle;
        self.map
            .lock()
            .unwrap()
            .retain(|_, (_, _, at)| at.elapsed() < idle);
    }
}
