//! Sort specifications: multiple keys, BSON ordering, arrays sort by their
//! smallest (ascending) or largest (descending) element, stable.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::path::{candidates, split};
use super::value::{cmp_bson, to_f64};

#[derive(Clone, Debug)]
pub struct SortSpec {
    keys: Vec<(Vec<String>, bool)>,
}

impl SortSpec {
    /// Parses `{a: 1, b: -1}`. Returns `None` for an empty spec.
    pub fn parse(spec: &Document) -> Res<Option<SortSpec>> {
        let mut keys = Vec::new();
        for (k, v) in spec {
            let asc =
                match v {
                    Bson::Document(d) if d.get("$meta").is_some() => {
                        return Err(CommandError::bad_value(
                            "$meta sort is not supported by holdfast-sim",
                        ))
                    }
                    other => match to_f64(other) {
                        Some(1.0) => true,
                        Some(-1.0) => false,
                        Some(_) => return Err(CommandError::new(
                            15975,
                            "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                        )),
                        None => {
                            return Err(CommandError::new(
                                15974,
                                format!(
                                    "Illegal key in $sort specification: {k}: {}",
                                    super::value::mongo_fmt(other)
                                ),
                            ))
                        }
                    },
                };
            if k.is_empty() {
                return Err(CommandError::new(
                    40352,
                    "FieldPath cannot be constructed with empty string",
                ));
            }
            keys.push((split(k), asc));
        }
        Ok(if keys.is_empty() {
            None
        } else {
            Some(SortSpec { keys })
        })
    }

    fn key_for(&self, doc: &Document) -> Vec<Bson> {
        self.keys
            .iter()
            .map(|(path, asc)| sort_key(doc, path, *asc))
            .collect()
    }

    fn cmp_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for (i, (_, asc)) in self.keys.iter().enumerate() {
            let o = cmp_bson(&a[i], &b[i]);
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Sorts in place, stably.
    pub fn sort(&self, docs: &mut Vec<Document>) {
        let mut keyed: Vec<(Vec<Bson>, Document)> =
            docs.drain(..).map(|d| (self.key_for(&d), d)).collect();
        keyed.sort_by(|a, b| self.cmp_keys(&a.0, &b.0));
        docs.extend(keyed.into_iter().map(|(_, d)| d));
    }

    /// Sorts arbitrary items by a document view of each.
    pub fn sort_by<T>(&self, items: &mut Vec<T>, view: impl Fn(&T) -> &Document) {
        let mut keyed: Vec<(Vec<Bson>, T)> = items
            .drain(..)
            .map(|t| (self.key_for(view(&t)), t))
            .collect();
        keyed.sort_by(|a, b| self.cmp_keys(&a.0, &b.0));
        items.extend(keyed.into_iter().map(|(_, t)| t));
    }
}

/// The value a document sorts by for one key.
pub fn sort_key(doc: &Document, path: &[String], asc: bool) -> Bson {
    let mut best: Option<Bson> = None;
    let mut consider = |v: Bson| {
        let better = match &best {
            None => true,
            Some(b) => {
                let o = cmp_bson(&v, b);
                if asc {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                }
            }
        };
        if better {
            best = Some(v);
        }
    };
    for c in candidates(doc, path) {
        match c.value {
            None => consider(Bson::Null),
            Some(Bson::Array(a)) if a.is_empty() => consider(Bson::Undefined),
            Some(Bson::Array(a)) => {
                for el in a {
                    consider(el.clone());
                }
            }
            Some(v) => consider(v.clone()),
        }
    }
    best.unwrap_or(Bson::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn ids(docs: &[Document]) -> Vec<i32> {
        docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
    }

    #[test]
    fn multi_key_and_types() {
        let mut docs = vec![
            doc! {"_id": 1, "a": 2, "b": 1},
            doc! {"_id": 2, "a": 1, "b": 5},
            doc! {"_id": 3, "a": "x", "b": 0},
            doc! {"_id": 4, "b": 3},
            doc! {"_id": 5, "a": 1.5, "b": 2},
            doc! {"_id": 6, "a": 1, "b": 7},
        ];
        let s = SortSpec::parse(&doc! {"a": 1, "b": -1}).unwrap().unwrap();
        s.sort(&mut docs);
        assert_eq!(ids(&docs), vec![4, 6, 2, 5, 1, 3]);
        let s = SortSpec::parse(&doc! {"a": -1}).unwrap().unwrap();
        s.sort(&mut docs);
        assert_eq!(ids(&docs), vec![3, 1, 5, 6, 2, 4]);
    }

    #[test]
    fn arrays_use_min_or_max() {
        let mut docs = vec![
            doc! {"_id": 1, "a": [1, 10]},
            doc! {"_id": 2, "a": [5]},
            doc! {"_id": 3, "a": []},
        ];
        SortSpec::parse(&doc! {"a": 1})
            .unwrap()
            .unwrap()
            .sort(&mut docs);
        assert_eq!(ids(&docs), vec![3, 1, 2]);
        SortSpec::parse(&doc! {"a": -1})
            .unwrap()
            .unwrap()
            .sort(&mut docs);
        assert_eq!(ids(&docs), vec![1, 2, 3]);
    }

    #[test]
    fn stable_and_validated() {
        let mut docs = vec![
            doc! {"_id": 1, "a": 1},
            doc! {"_id": 2, "a": 1},
            doc! {"_id": 3, "a": 0},
        ];
        SortSpec::parse(&doc! {"a": 1})
            .unwrap()
            .unwrap()
            .sort(&mut docs);
        assert_eq!(ids(&docs), vec![3, 1, 2]);
        assert_eq!(SortSpec::parse(&doc! {"a": 2}).unwrap_err().code, 15975);
        assert!(SortSpec::parse(&doc! {}).unwrap().is_none());
    }
}
