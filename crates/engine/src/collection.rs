//! One collection: documents in natural (insertion) order, the unique `_id`
//! index as a hash map, and secondary index specs (unique ones enforced).

use std::collections::{BTreeMap, HashMap};

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::matcher::Filter;
use super::path::{candidates, split};
use super::value::{key_of, mongo_fmt};

/// A duplicate key violation.
#[derive(Clone, Debug, PartialEq)]
pub struct DupKey {
    pub index: String,
    pub key_pattern: Document,
    pub key_value: Document,
}

impl DupKey {
    pub fn message(&self, ns: &str) -> String {
        let shown: Vec<String> = self
            .key_value
            .iter()
            .map(|(k, v)| format!("{k}: {}", mongo_fmt(v)))
            .collect();
        format!(
            "E11000 duplicate key error collection: {ns} index: {} dup key: {{ {} }}",
            self.index,
            shown.join(", ")
        )
    }

    pub fn to_error(&self, ns: &str) -> CommandError {
        CommandError::new(11000, self.message(ns))
    }
}

#[derive(Clone, Debug)]
pub struct Index {
    /// The spec as listed by `listIndexes` (`v`, `key`, `name`, options).
    pub spec: Document,
    pub name: String,
    pub key: Document,
    fields: Vec<(String, Vec<String>)>,
    unique: bool,
    sparse: bool,
    partial: Option<Filter>,
    /// For unique indexes: key bytes -> record id.
    entries: HashMap<Vec<u8>, u64>,
}

impl Index {
    pub fn from_spec(spec: &Document) -> Res<Index> {
        let Some(Bson::Document(key)) = spec.get("key") else {
            return Err(CommandError::failed_to_parse(
                "The 'key' field is a required property of an index specification",
            ));
        };
        let name = match spec.get("name") {
            Some(Bson::String(n)) => n.clone(),
            _ => default_index_name(key),
        };
        let partial = match spec.get("partialFilterExpression") {
            Some(Bson::Document(f)) => Some(Filter::parse(f)?),
            Some(_) => {
                return Err(CommandError::type_mismatch(
                    "partialFilterExpression must be an object",
                ))
            }
            None => None,
        };
        let truthy = |k: &str| spec.get(k).map(super::value::truthy).unwrap_or(false);
        let mut full = Document::new();
        full.insert("v", 2);
        full.insert("key", key.clone());
        full.insert("name", name.clone());
        for (k, v) in spec {
            if !matches!(k.as_str(), "v" | "key" | "name" | "ns") {
                full.insert(k.clone(), v.clone());
            }
        }
        Ok(Index {
            spec: full,
            name,
            key: key.clone(),
            fields: key.keys().map(|k| (k.clone(), split(k))).collect(),
            unique: truthy("unique"),
            sparse: truthy("sparse"),
            partial,
            entries: HashMap::new(),
        })
    }

    pub fn is_unique(&self) -> bool {
        self.unique
    }

    /// Options that make two specs with the same key different indexes.
    pub fn same_options(&self, other: &Index) -> bool {
        let strip = |d: &Document| {
            let mut o = d.clone();
            for k in ["v", "name", "key", "background"] {
                o.remove(k);
            }
            o
        };
        super::value::docs_identical(&strip(&self.spec), &strip(&other.spec))
    }

    /// The index keys of a document (several for multikey), with the values shown in messages.
    fn keys_of(&self, doc: &Document) -> Res<IndexKeys> {
        if let Some(p) = &self.partial {
            if !p.matches(doc) {
                return Ok(Vec::new());
            }
        }
        let mut per_field: Vec<Vec<Bson>> = Vec::new();
        let mut any_present = false;
        let mut array_fields = Vec::new();
        for (name, path) in &self.fields {
            let mut vals = Vec::new();
            let mut is_array = false;
            for c in candidates(doc, path) {
                match c.value {
                    None => vals.push(Bson::Null),
                    Some(Bson::Array(a)) => {
                        any_present = true;
                        is_array = true;
                        if a.is_empty() {
                            vals.push(Bson::Undefined);
                        } else {
                            vals.extend(a.iter().cloned());
                        }
                    }
                    Some(v) => {
                        any_present = true;
                        vals.push(v.clone());
                    }
                }
            }
            if is_array || vals.len() > 1 {
                array_fields.push(name.clone());
            }
            per_field.push(vals);
        }
        if self.sparse && !any_present {
            return Ok(Vec::new());
        }
        if array_fields.len() > 1 {
            return Err(CommandError::new(
                171,
                format!(
                    "cannot index parallel arrays [{}] [{}]",
                    array_fields[1], array_fields[0]
                ),
            ));
        }
        let mut combos: Vec<Vec<Bson>> = vec![Vec::new()];
        for vals in &per_field {
            let mut next = Vec::new();
            for c in &combos {
                for v in vals {
                    let mut n = c.clone();
                    n.push(v.clone());
                    next.push(n);
                }
            }
            combos = next;
        }
        let mut out: IndexKeys = Vec::new();
        for combo in combos {
            let mut bytes = Vec::new();
            let mut shown = Document::new();
            for ((name, _), v) in self.fields.iter().zip(combo) {
                super::value::encode_key(&v, &mut bytes);
                shown.insert(name.clone(), v);
            }
            if !out.iter().any(|(b, _)| *b == bytes) {
                out.push((bytes, shown));
            }
        }
        Ok(out)
    }
}

/// Default index name: `a_1_b_-1`.
pub fn default_index_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| format!("{k}_{}", index_value_str(v)))
        .collect::<Vec<_>>()
        .join("_")
}

fn index_value_str(v: &Bson) -> String {
    match v {
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) if f.fract() == 0.0 => format!("{}", *f as i64),
        Bson::Double(f) => f.to_string(),
        Bson::String(s) => s.clone(),
        other => mongo_fmt(other),
    }
}

/// Index keys of one document for one index: canonical bytes and the displayed key.
type IndexKeys = Vec<(Vec<u8>, Document)>;

/// One collection's contents.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    docs: BTreeMap<u64, Document>,
    ids: HashMap<Vec<u8>, u64>,
    next: u64,
    pub indexes: Vec<Index>,
    pub uuid: [u8; 16],
}

impl Collection {
    pub fn new(uuid: [u8; 16]) -> Collection {
        Collection {
            uuid,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Documents in natural order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Document)> {
        self.docs.iter().map(|(k, v)| (*k, v))
    }

    pub fn get(&self, rid: u64) -> Option<&Document> {
        self.docs.get(&rid)
    }

    pub fn rid_of(&self, id: &Bson) -> Option<u64> {
        self.ids.get(&key_of(id)).copied()
    }

    pub fn find_id(&self, id: &Bson) -> Option<&Document> {
        self.rid_of(id).and_then(|r| self.docs.get(&r))
    }

    /// Approximate data size (sum of BSON document sizes).
    pub fn data_size(&self) -> u64 {
        self.docs
            .values()
            .map(|d| bson::to_vec(d).map(|v| v.len() as u64).unwrap_or(0))
            .sum()
    }

    fn id_dup(id: &Bson) -> DupKey {
        let mut kv = Document::new();
        kv.insert("_id", id.clone());
        DupKey {
            index: "_id_".into(),
            key_pattern: bson::doc! {"_id": 1},
            key_value: kv,
        }
    }

    /// Checks secondary unique indexes for `doc` (as record `rid`).
    fn check_unique(&self, doc: &Document, rid: u64) -> Result<Vec<IndexKeys>, InsertError> {
        let mut all = Vec::with_capacity(self.indexes.len());
        for ix in &self.indexes {
            if !ix.unique {
                all.push(Vec::new());
                continue;
            }
            let keys = ix.keys_of(doc).map_err(InsertError::Other)?;
            for (bytes, shown) in &keys {
                if let Some(owner) = ix.entries.get(bytes) {
                    if *owner != rid {
                        return Err(InsertError::Dup(Box::new(DupKey {
                            index: ix.name.clone(),
                            key_pattern: ix.key.clone(),
                            key_value: shown.clone(),
                        })));
                    }
                }
            }
            all.push(keys);
        }
        Ok(all)
    }

    fn index_add(&mut self, rid: u64, keys: Vec<IndexKeys>) {
        for (ix, ks) in self.indexes.iter_mut().zip(keys) {
            for (b, _) in ks {
                ix.entries.insert(b, rid);
            }
        }
    }

    fn index_remove_doc(&mut self, rid: u64, doc: &Document) {
        for ix in self.indexes.iter_mut().filter(|i| i.unique) {
            match ix.keys_of(doc) {
                Ok(keys) => {
                    for (b, _) in keys {
                        if ix.entries.get(&b) == Some(&rid) {
                            ix.entries.remove(&b);
                        }
                    }
                }
                Err(_) => ix.entries.retain(|_, r| *r != rid),
            }
        }
    }

    /// Inserts a document that already has an `_id`.
    pub fn insert(&mut self, doc: Document) -> Result<u64, InsertError> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        let key = key_of(&id);
        if self.ids.contains_key(&key) {
            return Err(InsertError::Dup(Box::new(Self::id_dup(&id))));
        }
        let rid = self.next;
        let keys = self.check_unique(&doc, rid)?;
        self.next += 1;
        self.index_add(rid, keys);
        self.ids.insert(key, rid);
        self.docs.insert(rid, doc);
        Ok(rid)
    }

    /// Replaces record `rid` (same `_id`) after checking unique indexes.
    pub fn replace(&mut self, rid: u64, doc: Document) -> Result<(), InsertError> {
        let keys = self.check_unique(&doc, rid)?;
        if let Some(old) = self.docs.get(&rid).cloned() {
            self.index_remove_doc(rid, &old);
        }
        self.index_add(rid, keys);
        self.docs.insert(rid, doc);
        Ok(())
    }

    pub fn remove(&mut self, rid: u64) -> Option<Document> {
        let doc = self.docs.remove(&rid)?;
        if let Some(id) = doc.get("_id") {
            self.ids.remove(&key_of(id));
        }
        self.index_remove_doc(rid, &doc);
        Some(doc)
    }

    /// Replication: insert or overwrite by `_id`, never failing.
    pub fn upsert_unchecked(&mut self, doc: Document) {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        match self.rid_of(&id) {
            Some(rid) => {
                if let Some(old) = self.docs.get(&rid).cloned() {
                    self.index_remove_doc(rid, &old);
                }
                let keys = self.unique_keys_lenient(&doc);
                self.index_add(rid, keys);
                self.docs.insert(rid, doc);
            }
            None => {
                let rid = self.next;
                self.next += 1;
                let keys = self.unique_keys_lenient(&doc);
                self.index_add(rid, keys);
                self.ids.insert(key_of(&id), rid);
                self.docs.insert(rid, doc);
            }
        }
    }

    fn unique_keys_lenient(&self, doc: &Document) -> Vec<IndexKeys> {
        self.indexes
            .iter()
            .map(|ix| {
                if ix.unique {
                    ix.keys_of(doc).unwrap_or_default()
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// Replication: delete by `_id` if present.
    pub fn delete_id(&mut self, id: &Bson) {
        if let Some(rid) = self.rid_of(id) {
            self.remove(rid);
        }
    }

    /// Adds an index, building unique entries. With `strict`, a duplicate fails.
    pub fn add_index(&mut self, mut ix: Index, strict: bool, ns: &str) -> Res<()> {
        if ix.unique {
            for (rid, doc) in &self.docs {
                let keys = match ix.keys_of(doc) {
                    Ok(k) => k,
                    Err(e) if strict => return Err(e),
                    Err(_) => continue,
                };
                for (b, shown) in keys {
                    if let Some(owner) = ix.entries.get(&b) {
                        if *owner != *rid && strict {
                            return Err(DupKey {
                                index: ix.name.clone(),
                                key_pattern: ix.key.clone(),
                                key_value: shown,
                            }
                            .to_error(ns));
                        }
                    }
                    ix.entries.insert(b, *rid);
                }
            }
        } else if strict {
            for doc in self.docs.values() {
                ix.keys_of(doc)?;
            }
        }
        self.indexes.push(ix);
        Ok(())
    }

    pub fn drop_index(&mut self, name: &str) -> bool {
        let before = self.indexes.len();
        self.indexes.retain(|i| i.name != name);
        before != self.indexes.len()
    }
}

/// Why an insert/replace failed.
#[derive(Clone, Debug)]
pub enum InsertError {
    Dup(Box<DupKey>),
    Other(CommandError),
}

impl InsertError {
    pub fn into_error(self, ns: &str) -> CommandError {
        match self {
            InsertError::Dup(d) => d.to_error(ns),
            InsertError::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn natural_order_and_id_lookup() {
        let mut c = Collection::new([0; 16]);
        c.insert(doc! {"_id": 2}).unwrap();
        c.insert(doc! {"_id": 1}).unwrap();
        c.insert(doc! {"_id": "x"}).unwrap();
        let order: Vec<Bson> = c
            .iter()
            .map(|(_, d)| d.get("_id").unwrap().clone())
            .collect();
        assert_eq!(
            order,
            vec![Bson::Int32(2), Bson::Int32(1), Bson::String("x".into())]
        );
        assert!(c.find_id(&Bson::Double(1.0)).is_some());
        assert!(c.find_id(&Bson::Int64(2)).is_some());
        let rid = c.rid_of(&Bson::Int32(1)).unwrap();
        c.remove(rid);
        assert!(c.find_id(&Bson::Int32(1)).is_none());
        assert_eq!(c.len(), 2);
        match c.insert(doc! {"_id": 2.0}) {
            Err(InsertError::Dup(d)) => {
                assert_eq!(
                    d.message("t.c"),
                    "E11000 duplicate key error collection: t.c index: _id_ dup key: { _id: 2.0 }"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unique_secondary_index() {
        let mut c = Collection::new([0; 16]);
        c.insert(doc! {"_id": 1, "a": 1}).unwrap();
        c.insert(doc! {"_id": 2, "a": 1}).unwrap();
        let ix = Index::from_spec(&doc! {"key": {"a": 1}, "name": "a_1", "unique": true}).unwrap();
        let e = c.add_index(ix.clone(), true, "t.c").unwrap_err();
        assert_eq!(e.code, 11000);
        let rid = c.rid_of(&Bson::Int32(2)).unwrap();
        c.replace(rid, doc! {"_id": 2, "a": 2}).unwrap();
        c.add_index(ix, true, "t.c").unwrap();
        match c.insert(doc! {"_id": 3, "a": [5, 2]}) {
            Err(InsertError::Dup(d)) => {
                assert_eq!(d.index, "a_1");
                assert_eq!(d.key_value, doc! {"a": 2});
            }
            other => panic!("{other:?}"),
        }
        // changing a document's own key is fine; freeing a key makes it reusable
        c.replace(rid, doc! {"_id": 2, "a": 3}).unwrap();
        c.insert(doc! {"_id": 4, "a": 2}).unwrap();
        // missing fields collide as null unless sparse
        c.insert(doc! {"_id": 5}).unwrap();
        assert!(matches!(
            c.insert(doc! {"_id": 6}),
            Err(InsertError::Dup(_))
        ));
    }

    #[test]
    fn sparse_and_partial_indexes() {
        let mut c = Collection::new([0; 16]);
        let ix = Index::from_spec(
            &doc! {"key": {"a": 1}, "name": "a_1", "unique": true, "sparse": true},
        )
        .unwrap();
        c.add_index(ix, true, "t.c").unwrap();
        c.insert(doc! {"_id": 1}).unwrap();
        c.insert(doc! {"_id": 2}).unwrap();
        let ix = Index::from_spec(&doc! {"key": {"b": 1}, "name": "b_1", "unique": true, "partialFilterExpression": {"b": {"$gt": 5}}}).unwrap();
        c.add_index(ix, true, "t.c").unwrap();
        c.insert(doc! {"_id": 3, "b": 1}).unwrap();
        c.insert(doc! {"_id": 4, "b": 1}).unwrap();
        c.insert(doc! {"_id": 5, "b": 6}).unwrap();
        assert!(c.insert(doc! {"_id": 6, "b": 6}).is_err());
    }

    #[test]
    fn default_names() {
        assert_eq!(default_index_name(&doc! {"a": 1, "b": -1}), "a_1_b_-1");
        assert_eq!(default_index_name(&doc! {"t": "text"}), "t_text");
    }
}
