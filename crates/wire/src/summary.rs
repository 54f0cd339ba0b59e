//! What a server's reply says, read from its top-level fields in one pass:
//! `ok`, `code`, `writeConcernError.code`, `cursor.id` and whether it
//! carries a `topologyVersion`. The proxy reads this from every reply, so
//! the common case walks the reply with the command scan's
//! [`fast_element`](crate::command) (no value is decoded that is not read;
//! a `firstBatch` is skipped by its length); anything that walk is not sure
//! of goes through bson's iterator, with the same result.

use bson::{RawBsonRef, RawDocument};

use crate::command::{fast_element, Field};

/// The fields of a reply the proxy acts on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplySummary {
    /// `ok` is 1 (double, int32 or int64).
    pub ok: bool,
    /// `code`, when numeric.
    pub code: Option<i32>,
    /// `writeConcernError.code`, when numeric.
    pub wce_code: Option<i32>,
    /// `cursor.id`, when an Int64.
    pub cursor_id: Option<i64>,
    /// The reply has a `topologyVersion` field (a state-change error does).
    pub has_topology_version: bool,
}

fn num(v: RawBsonRef<'_>) -> Option<f64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as f64),
        RawBsonRef::Int64(i) => Some(i as f64),
        RawBsonRef::Double(d) => Some(d),
        _ => None,
    }
}

impl ReplySummary {
    /// Reads `body`: the fast walk when it can, bson's iterator otherwise.
    pub fn of(body: &RawDocument) -> ReplySummary {
        Self::fast(body.as_bytes()).unwrap_or_else(|| Self::bson(body))
    }

    /// The walk with bson's iterator. Elements after one bson cannot read
    /// are ignored.
    pub fn bson(body: &RawDocument) -> ReplySummary {
        let mut s = ReplySummary::default();
        for el in body.iter().flatten() {
            match el {
                ("ok", v) => s.ok = num(v) == Some(1.0),
                ("code", v) => s.code = num(v).map(|c| c as i32),
                ("writeConcernError", RawBsonRef::Document(w)) => {
                    s.wce_code = w.get("code").ok().flatten().and_then(num).map(|c| c as i32)
                }
                ("cursor", RawBsonRef::Document(c)) => {
                    if let Ok(Some(RawBsonRef::Int64(id))) = c.get("id") {
                        s.cursor_id = Some(id);
                    }
                }
                ("topologyVersion", _) => s.has_topology_version = true,
                _ => {}
            }
        }
        s
    }

    /// The fast walk; `None` when any element needs bson (the result would
    /// then be partial).
    pub fn fast(doc: &[u8]) -> Option<ReplySummary> {
        let mut s = ReplySummary::default();
        walk(doc, |key, field| {
            match key {
                b"ok" => s.ok = field.value().and_then(num) == Some(1.0),
                b"code" => s.code = field.value().and_then(num).map(|c| c as i32),
                b"writeConcernError" => {
                    if let Field::Doc(w) = field {
                        s.wce_code = first(w, b"code")?
                            .and_then(|f| f.value())
                            .and_then(num)
                            .map(|c| c as i32);
                    }
                }
                b"cursor" => {
                    if let Field::Doc(c) = field {
                        if let Some(Field::Value(RawBsonRef::Int64(id))) = first(c, b"id")? {
                            s.cursor_id = Some(id);
                        }
                    }
                }
                b"topologyVersion" => s.has_topology_version = true,
                _ => {}
            }
            Some(())
        })?;
        Some(s)
    }
}

/// Calls `f` for each top-level element of the document `doc`. `None` if
/// `f` does or an element is not one the fast walk takes.
fn walk<'a>(doc: &'a [u8], mut f: impl FnMut(&'a [u8], Field<'a>) -> Option<()>) -> Option<()> {
    let len = usize::try_from(i32::from_le_bytes(*doc.first_chunk::<4>()?)).ok()?;
    if len < 5 || len != doc.len() || doc[len - 1] != 0 {
        return None;
    }
    let last = len - 1;
    let mut at = 4;
    while at < last {
        let (key, field, next) = fast_element(doc, at)?;
        f(key, field)?;
        at = next;
    }
    (at == last).then_some(())
}

/// The first element named `name` of `doc` (what bson's `get` returns):
/// `Some(None)` when there is none. The walk stops at that element, as
/// bson's does, so later elements are not checked.
fn first<'a>(doc: &'a [u8], name: &[u8]) -> Option<Option<Field<'a>>> {
    let len = usize::try_from(i32::from_le_bytes(*doc.first_chunk::<4>()?)).ok()?;
    if len < 5 || len != doc.len() || doc[len - 1] != 0 {
        return None;
    }
    let last = len - 1;
    let mut at = 4;
    while at < last {
        let (key, field, next) = fast_element(doc, at)?;
        if key == name {
            return Some(Some(field));
        }
        at = next;
    }
    (at == last).then_some(None)
}
