//! What a server's reply says, read from its top-level fields in one pass:
//! `ok`, `code`, `writeConcernError.code`, `cursor.id` and whether it
//! carries a `topologyVersion`. The proxy reads this from every reply, so
//! the common case walks the reply by element types and lengths (no value is
//! decoded that is not read; a `firstBatch` is skipped by its length);
//! anything that walk does not take goes through bson's iterator.

use bson::{RawBsonRef, RawDocument};

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

    /// The fast walk: each element's type, key and length, and only the
    /// values the summary reads are decoded. `None` when an element is of a
    /// type it does not take (regex, code, DBPointer, …) or does not fit.
    /// It checks lengths, not UTF-8 (the reply is passed on as it is; only
    /// these few fields are read), so on a reply bson cannot read it may
    /// see fields past bson's first error.
    pub fn fast(doc: &[u8]) -> Option<ReplySummary> {
        let mut s = ReplySummary::default();
        walk(doc, |key, tag, value| {
            // Keys the summary reads are 2, 4, 6, 15 and 17 bytes long;
            // anything else is skipped without comparing.
            match (key.len(), tag) {
                (2, _) if key == b"ok" => s.ok = number(tag, value) == Some(1.0),
                (4, _) if key == b"code" => s.code = number(tag, value).map(|c| c as i32),
                (17, 0x03) if key == b"writeConcernError" => {
                    s.wce_code = match first(value, b"code")? {
                        Some((tag, v)) => number(tag, v).map(|c| c as i32),
                        None => None,
                    }
                }
                (6, 0x03) if key == b"cursor" => {
                    if let Some((0x12, v)) = first(value, b"id")? {
                        s.cursor_id = Some(i64::from_le_bytes(*v.first_chunk::<8>()?));
                    }
                }
                (15, _) if key == b"topologyVersion" => s.has_topology_version = true,
                _ => {}
            }
            Some(())
        })?;
        Some(s)
    }
}

/// A double, int32 or int64 value as f64 (what bson's `num` reading gives).
#[inline]
fn number(tag: u8, v: &[u8]) -> Option<f64> {
    match tag {
        0x01 => Some(f64::from_le_bytes(*v.first_chunk::<8>()?)),
        0x10 => Some(f64::from(i32::from_le_bytes(*v.first_chunk::<4>()?))),
        0x12 => Some(i64::from_le_bytes(*v.first_chunk::<8>()?) as f64),
        _ => None,
    }
}

/// The element at `at` of `doc` (whose last byte is its NUL): key, type,
/// value bytes and where the next element starts.
#[inline(always)]
fn element(doc: &[u8], at: usize) -> Option<(&[u8], u8, &[u8], usize)> {
    let tag = *doc.get(at)?;
    let (nul, _) = crate::command::cstring_end(doc, at + 1)?;
    let key = &doc[at + 1..nul];
    let p = nul + 1;
    let len_prefix = || -> Option<usize> {
        usize::try_from(i32::from_le_bytes(*doc.get(p..)?.first_chunk::<4>()?)).ok()
    };
    let size = match tag {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x10 => 4,
        0x08 => 1,
        0x07 => 12,
        0x13 => 16,
        0x06 | 0x0A | 0x7F | 0xFF => 0,
        0x02 | 0x0D | 0x0E => len_prefix()?.checked_add(4)?,
        0x03 | 0x04 => len_prefix().filter(|n| *n >= 5)?,
        0x05 => len_prefix()?.checked_add(5)?,
        _ => return None,
    };
    let value = doc.get(p..p.checked_add(size)?)?;
    Some((key, tag, value, p + size))
}

/// Calls `f` for each top-level element of the document `doc`. `None` if
/// `f` does or an element does not fit.
#[inline(always)]
fn walk<'a>(doc: &'a [u8], mut f: impl FnMut(&'a [u8], u8, &'a [u8]) -> Option<()>) -> Option<()> {
    let last = checked_len(doc)? - 1;
    let mut at = 4;
    while at < last {
        let (key, tag, value, next) = element(doc, at)?;
        f(key, tag, value)?;
        at = next;
    }
    (at == last).then_some(())
}

/// The length of the document `doc`, if it is one whole, well-framed
/// document (the codec's check, and nothing after it).
#[inline(always)]
fn checked_len(doc: &[u8]) -> Option<usize> {
    crate::bytes_util::document_len(doc, 0, "reply")
        .ok()
        .filter(|&len| len == doc.len())
}

/// The first element named `name` of `doc` (what bson's `get` returns), as
/// (type, value): `Some(None)` when there is none. Stops there, as bson does.
fn first<'a>(doc: &'a [u8], name: &[u8]) -> Option<Option<(u8, &'a [u8])>> {
    let last = checked_len(doc)? - 1;
    let mut at = 4;
    while at < last {
        let (key, tag, value, next) = element(doc, at)?;
        if key == name {
            return Some(Some((tag, value)));
        }
        at = next;
    }
    (at == last).then_some(None)
}
