//! holdfast-engine: an in-memory document store that executes MongoDB 7.0's
//! query, update and aggregation language over `bson::Document`s, with no
//! I/O, no async and no wire protocol.
//!
//! It is the data engine of holdfast-sim (the simulated replica set every
//! holdfast test runs against): each simulated member owns one [`Store`],
//! and the simulator's server layer turns wire-protocol commands into
//! [`Store::execute`] calls and replicates the resulting [`Op`]s. The sim
//! re-exports this crate as `holdfast_sim::engine`.
//!
//! A [`Store`] holds all databases of one replica-set member. The server layer
//! calls [`Store::execute`] with a command body (first key = command name) and
//! gets back either a complete reply body or a result set to serve through a
//! cursor, plus the list of [`Op`]s to replicate. Applying those ops, in
//! order, to another store ([`Store::apply`]) reproduces the primary's state
//! exactly (documents, natural order, indexes).
//!
//! # Covered
//!
//! * Commands: `insert`, `update`, `delete`, `findAndModify`, `find`, `count`,
//!   `distinct`, `aggregate`, `create`, `drop`, `dropDatabase`,
//!   `listDatabases`, `listCollections`, `listIndexes`, `createIndexes`,
//!   `dropIndexes`, `renameCollection`, `dbStats`. Anything else is 59
//!   CommandNotFound. Generic fields (`$db`, `lsid`, `txnNumber`,
//!   `writeConcern`, `readConcern`, `$readPreference`, `comment`, ...) and
//!   unknown options are ignored.
//! * Storage: natural (insertion) order; `_id` is a hash index keyed by a
//!   canonical encoding in which `1`, `1.0`, `NumberLong(1)` and
//!   `NumberDecimal("1")` are the same key, so `{_id: v}` and
//!   `{_id: {$in: [...]}}` lookups are O(1). Implicit creation of collections
//!   and databases on insert, upsert and `createIndexes`. Secondary index specs
//!   are stored and listed; `unique` (with `sparse` and
//!   `partialFilterExpression`, multikey, compound) is enforced.
//! * Queries: equality with array and dotted-path semantics, `$eq $ne $gt $gte
//!   $lt $lte $in $nin $exists $type $and $or $nor $not $regex/$options $size
//!   $all $elemMatch $mod $expr $comment`, MongoDB's cross-type ordering with
//!   type brackets, null-matches-missing.
//! * Projection: inclusion/exclusion (31253/31254 on mixing), dotted paths,
//!   `_id` by default, computed fields (aggregation expressions), `$slice`,
//!   `$elemMatch` and positional `field.$`.
//! * Sort: several keys, BSON order, arrays by min/max element, stable.
//! * Updates: replacement, `$set $unset $inc $mul $min $max $rename $push
//!   ($each $position $sort $slice) $addToSet ($each) $pull $pullAll $pop
//!   $setOnInsert $currentDate $bit`, positional `$`, `$[]`, `$[id]` with
//!   `arrayFilters`, pipeline-style updates (`$set/$addFields $project $unset
//!   $replaceRoot $replaceWith`), numeric promotion, `_id` immutability (66),
//!   conflicts (40), upserts seeded from the query's equalities, `nModified`
//!   counting real changes only.
//! * Aggregation: `$match $project $addFields/$set $unset $sort $skip $limit
//!   $group ($sum $avg $min $max $first $last $push $addToSet $count
//!   $mergeObjects) $count $unwind $replaceRoot $replaceWith $sortByCount
//!   $lookup (localField/foreignField and uncorrelated pipeline) $facet
//!   $documents`, and about 80 expression operators (arithmetic, comparison,
//!   boolean, string, array, set, object, type conversion, `$cond $ifNull
//!   $switch $let $map $filter $reduce`).
//!
//! # Not covered
//!
//! * Views, capped/time-series/clustered collections, validators, collations
//!   (strings compare bytewise), text/geo search (`$text`, `$near`), `$where`
//!   and JavaScript, `$jsonSchema`, `$out`/`$merge`, `$lookup` with `let`,
//!   `$sample`, `$bucket`, `$graphLookup`, `$unionWith`, window functions,
//!   change streams, date operators other than `$add`/`$subtract` on dates.
//! * Secondary indexes are not used for query planning (only `_id` is);
//!   non-unique index specs are bookkeeping only.
//! * `create` options are accepted but not stored (`listCollections` shows
//!   `options: {}`); Decimal128 arithmetic goes through f64.
//! * Cursors, batching, sessions, transactions and write concern belong to the
//!   server layer of holdfast-sim (a `Store` is `Clone` so it can snapshot
//!   for transactions).
#![forbid(unsafe_code)]

mod collection;
mod commands;
mod error;
mod expr;
mod matcher;
mod path;
mod pipeline;
mod projection;
mod sort;
mod update;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bson::{Bson, Document};

pub use collection::Collection;
pub use error::CommandError;
pub use value::{cmp_bson, key_of};

/// Result of executing one command.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    pub outcome: Outcome,
    /// What must be replicated, in order.
    pub ops: Vec<Op>,
}

/// What a command produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Complete reply body including `ok: 1.0`.
    Reply(Document),
    /// A result set; the server layer builds `firstBatch`, the cursor id and `getMore`.
    Cursor { ns: String, docs: Vec<Document> },
}

/// Deterministic, replayable operations (the oplog).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Insert {
        ns: String,
        doc: Document,
    },
    /// Full post-image replacement of the document with this `_id`.
    Update {
        ns: String,
        id: Bson,
        doc: Document,
    },
    Delete {
        ns: String,
        id: Bson,
    },
    CreateCollection {
        ns: String,
    },
    DropCollection {
        ns: String,
    },
    DropDatabase {
        db: String,
    },
    CreateIndexes {
        ns: String,
        specs: Vec<Document>,
    },
    DropIndexes {
        ns: String,
        names: Vec<String>,
    },
}

impl Op {
    /// The namespace the op touches: `db.coll`, or just `db` for `DropDatabase`.
    pub fn ns(&self) -> &str {
        match self {
            Op::Insert { ns, .. }
            | Op::Update { ns, .. }
            | Op::Delete { ns, .. }
            | Op::CreateCollection { ns }
            | Op::DropCollection { ns }
            | Op::CreateIndexes { ns, .. }
            | Op::DropIndexes { ns, .. } => ns,
            Op::DropDatabase { db } => db,
        }
    }
}

/// All databases of one replica-set member.
///
/// Cloning is cheap: collections are shared copy-on-write, so a clone (a
/// transaction snapshot, a rollback point) costs O(number of collections) and
/// a collection is copied only when one side first writes to it.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub(crate) dbs: BTreeMap<String, BTreeMap<String, Arc<Collection>>>,
    /// Number of collections ever created (seeds deterministic UUIDs).
    pub(crate) created: u64,
}

/// Splits `db.coll` at the first dot.
pub fn split_ns(ns: &str) -> (&str, &str) {
    match ns.find('.') {
        Some(i) => (&ns[..i], &ns[i + 1..]),
        None => (ns, ""),
    }
}

impl Store {
    pub fn new() -> Self {
        Store::default()
    }

    /// Runs one data command against database `db`.
    pub fn execute(&mut self, db: &str, cmd: &Document) -> Result<Executed, CommandError> {
        commands::execute(self, db, cmd)
    }

    /// Applies one replicated operation. Never fails: ops are applied
    /// idempotently (an insert of an existing `_id` overwrites it, deletes of
    /// missing documents are no-ops, missing collections are created).
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Insert { ns, doc } => {
                let (db, c) = split_ns(ns);
                self.ensure_for_apply(db, c).upsert_unchecked(doc.clone());
            }
            Op::Update { ns, id, doc } => {
                let (db, c) = split_ns(ns);
                let mut doc = doc.clone();
                if !doc.contains_key("_id") {
                    doc.insert("_id", id.clone());
                    doc = path::id_first(doc);
                }
                self.ensure_for_apply(db, c).upsert_unchecked(doc);
            }
            Op::Delete { ns, id } => {
                let (db, c) = split_ns(ns);
                if let Some(coll) = self.coll_mut(db, c) {
                    coll.delete_id(id);
                }
            }
            Op::CreateCollection { ns } => {
                let (db, c) = split_ns(ns);
                self.ensure_for_apply(db, c);
            }
            Op::DropCollection { ns } => {
                let (db, c) = split_ns(ns);
                self.remove_collection(db, c);
            }
            Op::DropDatabase { db } => {
                self.dbs.remove(db);
            }
            Op::CreateIndexes { ns, specs } => {
                let (db, c) = split_ns(ns);
                let coll = self.ensure_for_apply(db, c);
                for spec in specs {
                    if let Ok(ix) = collection::Index::from_spec(spec) {
                        if coll.indexes.iter().any(|i| i.name == ix.name) {
                            continue;
                        }
                        let _ = coll.add_index(ix, false, ns);
                    }
                }
            }
            Op::DropIndexes { ns, names } => {
                let (db, c) = split_ns(ns);
                if let Some(coll) = self.coll_mut(db, c) {
                    for n in names {
                        coll.drop_index(n);
                    }
                }
            }
        }
    }

    /// Number of documents in all collections.
    pub fn total_documents(&self) -> usize {
        self.dbs
            .values()
            .flat_map(|d| d.values())
            .map(|c| c.len())
            .sum()
    }

    /// Names of existing databases (those with at least one collection).
    pub fn database_names(&self) -> Vec<String> {
        self.dbs.keys().cloned().collect()
    }

    /// Names of the collections of `db`.
    pub fn collection_names(&self, db: &str) -> Vec<String> {
        self.dbs
            .get(db)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The documents of `db.coll` in natural order (empty if it does not exist).
    pub fn documents(&self, ns: &str) -> Vec<Document> {
        let (db, c) = split_ns(ns);
        self.coll(db, c)
            .map(|coll| coll.iter().map(|(_, d)| d.clone()).collect())
            .unwrap_or_default()
    }

    /// Looks a document up by `_id` (numeric types are interchangeable).
    pub fn find_by_id(&self, ns: &str, id: &Bson) -> Option<&Document> {
        let (db, c) = split_ns(ns);
        self.coll(db, c)?.find_id(id)
    }

    /// Exact comparison of two stores: same namespaces, same documents in the
    /// same natural order with identical field order and types, same indexes.
    pub fn same_contents(&self, other: &Store) -> bool {
        let a: Vec<(String, &Collection)> = self.namespaces();
        let b: Vec<(String, &Collection)> = other.namespaces();
        a.len() == b.len()
            && a.iter().zip(b.iter()).all(|((na, ca), (nb, cb))| {
                na == nb
                    && ca.len() == cb.len()
                    && ca
                        .iter()
                        .zip(cb.iter())
                        .all(|((_, x), (_, y))| value::docs_identical(x, y))
                    && ca.indexes.len() == cb.indexes.len()
                    && ca
                        .indexes
                        .iter()
                        .zip(cb.indexes.iter())
                        .all(|(x, y)| value::docs_identical(&x.spec, &y.spec))
            })
    }

    fn namespaces(&self) -> Vec<(String, &Collection)> {
        self.dbs
            .iter()
            .flat_map(|(db, cs)| {
                cs.iter()
                    .map(move |(c, coll)| (format!("{db}.{c}"), &**coll))
            })
            .collect()
    }

    pub(crate) fn coll(&self, db: &str, c: &str) -> Option<&Collection> {
        self.dbs.get(db)?.get(c).map(|a| &**a)
    }

    pub(crate) fn coll_mut(&mut self, db: &str, c: &str) -> Option<&mut Collection> {
        self.dbs.get_mut(db)?.get_mut(c).map(Arc::make_mut)
    }

    pub(crate) fn new_uuid(&mut self, ns: &str) -> [u8; 16] {
        self.created += 1;
        // FNV-1a over the namespace and the creation sequence: deterministic
        // across members replaying the same ops.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut out = [0u8; 16];
        for half in 0..2u64 {
            for b in ns
                .bytes()
                .chain(self.created.to_le_bytes())
                .chain(half.to_le_bytes())
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            out[(half as usize) * 8..(half as usize) * 8 + 8].copy_from_slice(&h.to_le_bytes());
        }
        out[6] = (out[6] & 0x0f) | 0x40;
        out[8] = (out[8] & 0x3f) | 0x80;
        out
    }

    fn ensure_for_apply(&mut self, db: &str, c: &str) -> &mut Collection {
        if self.coll(db, c).is_none() {
            let uuid = self.new_uuid(&format!("{db}.{c}"));
            self.dbs
                .entry(db.to_string())
                .or_default()
                .insert(c.to_string(), Arc::new(Collection::new(uuid)));
        }
        self.coll_mut(db, c).expect("just created")
    }

    pub(crate) fn remove_collection(&mut self, db: &str, c: &str) -> Option<Arc<Collection>> {
        let colls = self.dbs.get_mut(db)?;
        let out = colls.remove(c);
        if colls.is_empty() {
            self.dbs.remove(db);
        }
        out
    }
}
