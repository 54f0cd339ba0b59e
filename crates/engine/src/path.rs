//! Dotted-path traversal (with MongoDB's implicit array traversal) and
//! strict path mutation used by updates and projections.

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::value::mongo_fmt;

/// Splits a dotted path into components.
pub fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

/// Is this path component an array index (`0`, `12`; no sign, no leading `+`)?
pub fn as_index(part: &str) -> Option<usize> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if part.len() > 1 && part.starts_with('0') {
        return None;
    }
    part.parse().ok()
}

/// One value reached by query-style traversal; `value` is `None` when the
/// path is missing along this branch. `pos` is the first array index crossed.
#[derive(Clone, Copy, Debug)]
pub struct Cand<'a> {
    pub value: Option<&'a Bson>,
    pub pos: Option<usize>,
}

/// Query-style traversal: through embedded documents, into every document
/// element of an array met before the end of the path, and by position for
/// numeric components. Leaf arrays are returned whole (callers expand them).
pub fn candidates<'a>(doc: &'a Document, path: &[String]) -> Vec<Cand<'a>> {
    let mut out = Vec::new();
    match doc.get(&path[0]) {
        Some(v) => walk(v, &path[1..], None, &mut out),
        None => out.push(Cand {
            value: None,
            pos: None,
        }),
    }
    if out.is_empty() {
        out.push(Cand {
            value: None,
            pos: None,
        });
    }
    out
}

fn walk<'a>(v: &'a Bson, rest: &[String], pos: Option<usize>, out: &mut Vec<Cand<'a>>) {
    if rest.is_empty() {
        out.push(Cand {
            value: Some(v),
            pos,
        });
        return;
    }
    match v {
        Bson::Document(d) => match d.get(&rest[0]) {
            Some(x) => walk(x, &rest[1..], pos, out),
            None => out.push(Cand { value: None, pos }),
        },
        Bson::Array(arr) => {
            if let Some(i) = as_index(&rest[0]) {
                if let Some(x) = arr.get(i) {
                    walk(x, &rest[1..], pos.or(Some(i)), out);
                }
                for (j, el) in arr.iter().enumerate() {
                    if let Bson::Document(d) = el {
                        if let Some(x) = d.get(&rest[0]) {
                            walk(x, &rest[1..], pos.or(Some(j)), out);
                        }
                    }
                }
            } else {
                for (j, el) in arr.iter().enumerate() {
                    if let Bson::Document(d) = el {
                        match d.get(&rest[0]) {
                            Some(x) => walk(x, &rest[1..], pos.or(Some(j)), out),
                            None => out.push(Cand {
                                value: None,
                                pos: pos.or(Some(j)),
                            }),
                        }
                    }
                }
            }
        }
        _ => out.push(Cand { value: None, pos }),
    }
}

/// Index/distinct-style values: every reachable value with leaf arrays
/// expanded into their elements; missing branches are skipped.
pub fn leaf_values<'a>(doc: &'a Document, path: &[String]) -> Vec<&'a Bson> {
    let mut out = Vec::new();
    for c in candidates(doc, path) {
        if let Some(v) = c.value {
            match v {
                Bson::Array(a) => out.extend(a.iter()),
                other => out.push(other),
            }
        }
    }
    out
}

/// Strict lookup through documents and array positions only.
pub fn get_strict<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let mut cur = doc.get(&path[0])?;
    for part in &path[1..] {
        cur = match cur {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(a) => a.get(as_index(part)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Aggregation-style field path lookup: arrays of documents map over their
/// elements, producing arrays; missing values yield `None`.
pub fn get_agg(v: &Bson, path: &[String]) -> Option<Bson> {
    if path.is_empty() {
        return Some(v.clone());
    }
    match v {
        Bson::Document(d) => get_agg(d.get(&path[0])?, &path[1..]),
        Bson::Array(arr) => {
            let mut out = Vec::new();
            for el in arr {
                match el {
                    Bson::Document(_) | Bson::Array(_) => {
                        if let Some(x) = get_agg(el, path) {
                            out.push(x);
                        }
                    }
                    _ => {}
                }
            }
            Some(Bson::Array(out))
        }
        _ => None,
    }
}

fn element_desc(key: &str, v: &Bson) -> String {
    format!("{{{key}: {}}}", mongo_fmt(v))
}

/// Sets `path` to `value`, creating intermediate documents; arrays are only
/// entered by numeric index (padding with nulls). Errors as mongod's 28
/// PathNotViable.
pub fn set_path(doc: &mut Document, path: &[String], value: Bson) -> Res<()> {
    if path.len() == 1 {
        doc.insert(path[0].clone(), value);
        return Ok(());
    }
    let key = &path[0];
    if !doc.contains_key(key) {
        let mut child = Document::new();
        set_path(&mut child, &path[1..], value)?;
        doc.insert(key.clone(), Bson::Document(child));
        return Ok(());
    }
    let child = doc.get_mut(key).expect("checked");
    set_in_value(child, key, &path[1..], value)
}

fn set_in_value(target: &mut Bson, key: &str, rest: &[String], value: Bson) -> Res<()> {
    match target {
        Bson::Document(d) => set_path(d, rest, value),
        Bson::Array(arr) => {
            let Some(i) = as_index(&rest[0]) else {
                return Err(CommandError::new(
                    28,
                    format!(
                        "Cannot create field '{}' in element {}",
                        rest[0],
                        element_desc(key, &Bson::Array(arr.clone()))
                    ),
                ));
            };
            while arr.len() <= i {
                arr.push(Bson::Null);
            }
            if rest.len() == 1 {
                arr[i] = value;
                Ok(())
            } else {
                if arr[i] == Bson::Null {
                    arr[i] = Bson::Document(Document::new());
                }
                set_in_value(&mut arr[i], &rest[0], &rest[1..], value)
            }
        }
        other => Err(CommandError::new(
            28,
            format!(
                "Cannot create field '{}' in element {}",
                rest[0],
                element_desc(key, other)
            ),
        )),
    }
}

/// Removes the field at `path` (array elements are set to null, as `$unset`
/// does). Returns whether anything was there.
pub fn unset_path(doc: &mut Document, path: &[String]) -> bool {
    if path.len() == 1 {
        return doc.remove(&path[0]).is_some();
    }
    match doc.get_mut(&path[0]) {
        Some(v) => unset_in_value(v, &path[1..]),
        None => false,
    }
}

fn unset_in_value(v: &mut Bson, rest: &[String]) -> bool {
    match v {
        Bson::Document(d) => unset_path(d, rest),
        Bson::Array(arr) => {
            let Some(i) = as_index(&rest[0]) else {
                return false;
            };
            if i >= arr.len() {
                return false;
            }
            if rest.len() == 1 {
                arr[i] = Bson::Null;
                true
            } else {
                unset_in_value(&mut arr[i], &rest[1..])
            }
        }
        _ => false,
    }
}

/// Removes the field at `path` without leaving nulls (used by projections
/// and `$rename`); only documents are entered.
pub fn remove_path(doc: &mut Document, path: &[String]) -> Option<Bson> {
    if path.len() == 1 {
        return doc.remove(&path[0]);
    }
    match doc.get_mut(&path[0]) {
        Some(Bson::Document(d)) => remove_path(d, &path[1..]),
        _ => None,
    }
}

/// Puts `_id` first (MongoDB always stores `_id` as the first field).
pub fn id_first(doc: Document) -> Document {
    if doc.keys().next().map(String::as_str) == Some("_id") || !doc.contains_key("_id") {
        return doc;
    }
    let mut out = Document::new();
    out.insert("_id", doc.get("_id").cloned().unwrap_or(Bson::Null));
    for (k, v) in doc {
        if k != "_id" {
            out.insert(k, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn vals(doc: &Document, path: &str) -> Vec<Option<Bson>> {
        candidates(doc, &split(path))
            .into_iter()
            .map(|c| c.value.cloned())
            .collect()
    }

    #[test]
    fn traversal_through_arrays() {
        let d = doc! {"a": [{"b": 1}, {"c": 2}, 3, {"b": [4, 5]}]};
        assert_eq!(
            vals(&d, "a.b"),
            vec![
                Some(Bson::Int32(1)),
                None,
                Some(Bson::Array(vec![Bson::Int32(4), Bson::Int32(5)]))
            ]
        );
        assert_eq!(vals(&d, "a.1.c"), vec![Some(Bson::Int32(2))]);
        assert_eq!(vals(&d, "x.y"), vec![None]);
        let e = doc! {"a": [1, 2]};
        assert_eq!(vals(&e, "a.b"), vec![None]);
        assert_eq!(
            leaf_values(&d, &split("a.b")),
            vec![&Bson::Int32(1), &Bson::Int32(4), &Bson::Int32(5)]
        );
    }

    #[test]
    fn set_and_unset() {
        let mut d = doc! {"a": {"b": 1}, "arr": [1]};
        set_path(&mut d, &split("a.c.d"), Bson::Int32(2)).unwrap();
        assert_eq!(d, doc! {"a": {"b": 1, "c": {"d": 2}}, "arr": [1]});
        set_path(&mut d, &split("arr.3"), Bson::Int32(9)).unwrap();
        assert_eq!(
            d.get_array("arr").unwrap(),
            &vec![Bson::Int32(1), Bson::Null, Bson::Null, Bson::Int32(9)]
        );
        let err = set_path(&mut d, &split("a.b.x"), Bson::Int32(1)).unwrap_err();
        assert_eq!(err.code, 28);
        assert_eq!(err.errmsg, "Cannot create field 'x' in element {b: 1}");
        assert!(unset_path(&mut d, &split("arr.0")));
        assert_eq!(d.get_array("arr").unwrap()[0], Bson::Null);
        assert!(unset_path(&mut d, &split("a.c")));
        assert_eq!(d.get_document("a").unwrap(), &doc! {"b": 1});
    }

    #[test]
    fn agg_paths_map_over_arrays() {
        let d = Bson::Document(doc! {"a": [{"b": 1}, {"b": 2}, {"c": 3}]});
        assert_eq!(
            get_agg(&d, &split("a.b")),
            Some(Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]))
        );
        assert_eq!(get_agg(&d, &split("z")), None);
    }
}
