//! Open cursors of one member (they live on the member that opened them,
//! and survive stepdown as on MongoDB 4.2+).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bson::Document;
use rand::Rng;

use crate::auth::UserName;

/// `cursorTimeoutMillis` default: idle cursors are reaped after 10 minutes.
pub const CURSOR_TIMEOUT: Duration = Duration::from_secs(600);

/// Replies stay under MongoDB's 16 MiB document limit.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024 - 16 * 1024;

/// Documents of the first batch when the request gives no batchSize.
pub const DEFAULT_FIRST_BATCH: usize = 101;

pub struct Cursor {
    pub ns: String,
    pub docs: VecDeque<Document>,
    pub last_used: Instant,
    /// The user that opened it (only that user may use it, with access
    /// control on).
    pub owner: Option<UserName>,
}

#[derive(Default)]
pub struct CursorTable {
    map: HashMap<i64, Cursor>,
}

impl CursorTable {
    /// Registers the rest of a result set; returns its (positive, random) id.
    pub fn open(&mut self, ns: String, docs: VecDeque<Document>) -> i64 {
        self.open_owned(ns, docs, None)
    }

    /// Like [`CursorTable::open`], remembering who opened it.
    pub fn open_owned(
        &mut self,
        ns: String,
        docs: VecDeque<Document>,
        owner: Option<UserName>,
    ) -> i64 {
        let now = Instant::now();
        self.map
            .retain(|_, c| now.duration_since(c.last_used) < CURSOR_TIMEOUT);
        let mut rng = rand::thread_rng();
        loop {
            let id: i64 = rng.gen_range(1..i64::MAX);
            if let std::collections::hash_map::Entry::Vacant(v) = self.map.entry(id) {
                v.insert(Cursor {
                    ns,
                    docs,
                    last_used: now,
                    owner,
                });
                return id;
            }
        }
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut Cursor> {
        self.map.get_mut(&id)
    }

    pub fn remove(&mut self, id: i64) -> Option<Cursor> {
        self.map.remove(&id)
    }

    pub fn get(&self, id: i64) -> Option<&Cursor> {
        self.map.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// Takes the next batch: at most `max` documents (`None`: no count limit)
/// and at most [`MAX_BATCH_BYTES`], but always at least one document.
pub fn take_batch(docs: &mut VecDeque<Document>, max: Option<usize>) -> Vec<Document> {
    let max = max.unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(max.min(docs.len()).min(1024));
    if max == 0 {
        return out;
    }
    if docs.len() == 1 {
        out.extend(docs.pop_front());
        return out;
    }
    let mut bytes = 0usize;
    while out.len() < max {
        let Some(d) = docs.front() else { break };
        let size = bson::to_vec(d).map(|v| v.len()).unwrap_or(0);
        if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
            break;
        }
        bytes += size;
        out.extend(docs.pop_front());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn batches_respect_count_and_keep_order() {
        let mut docs: VecDeque<Document> = (0..250).map(|i| doc! { "_id": i }).collect();
        let b = take_batch(&mut docs, Some(101));
        assert_eq!(b.len(), 101);
        assert_eq!(b[0], doc! { "_id": 0 });
        let b = take_batch(&mut docs, None);
        assert_eq!(b.len(), 149);
        assert!(docs.is_empty());
        let mut one: VecDeque<Document> = [doc! {"_id": 1}].into_iter().collect();
        assert!(take_batch(&mut one, Some(0)).is_empty());
        assert_eq!(take_batch(&mut one, Some(5)).len(), 1);
    }

    #[test]
    fn ids_are_positive_and_unique() {
        let mut t = CursorTable::default();
        let a = t.open("d.c".into(), VecDeque::new());
        let b = t.open("d.c".into(), VecDeque::new());
        assert!(a > 0 && b > 0 && a != b);
        assert!(t.remove(a).is_some());
        assert!(!t.contains(a));
    }
}
