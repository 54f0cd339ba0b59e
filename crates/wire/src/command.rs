//! A zero-copy view of a request's command, and its classification.

use bson::{RawBsonRef, RawDocument};

use crate::commands::{self, Kind};
use crate::error::WireError;
use crate::msg::{DocumentSequence, OpMsg};
use crate::query::OpQuery;
use crate::values::{as_bool, as_i64};

/// What the proxy needs to know about a command, gathered in one pass over
/// the body's top-level fields. Everything borrows from the frame.
#[derive(Debug, Clone)]
pub struct CommandView<'a> {
    /// The first field's name (the command).
    pub name: &'a str,
    /// The whole command document (for OP_QUERY, unwrapped from `$query`).
    pub body: &'a RawDocument,
    /// `$db` (OP_MSG) or the namespace's database (OP_QUERY).
    pub db: Option<&'a str>,
    pub lsid: Option<&'a RawDocument>,
    pub txn_number: Option<i64>,
    pub autocommit: Option<bool>,
    pub start_transaction: bool,
    pub read_preference: Option<&'a RawDocument>,
    /// `readConcern` (level, afterClusterTime).
    pub read_concern: Option<&'a RawDocument>,
    pub max_time_ms: Option<i64>,
    /// The cursor id of a `getMore`.
    pub cursor_id: Option<i64>,
    /// `writeConcern.w` is 0.
    pub write_concern_w0: bool,
    /// The OP_MSG had `moreToCome` set (no reply will come).
    pub more_to_come: bool,
    /// The OP_MSG had `exhaustAllowed` set.
    pub exhaust_allowed: bool,
    /// An `aggregate` whose last stage is `$out` or `$merge`.
    pub has_out_or_merge: bool,
    /// An `update` with `multi: true` or a `delete` with `limit: 0` in any statement.
    pub multi_statement: bool,
    sequences: &'a [DocumentSequence],
}

/// How the proxy treats a request (see `docs/failover.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandClass {
    /// `hello`/`isMaster`/`ismaster`: answered locally.
    Handshake,
    /// `saslStart`/`saslContinue`/`authenticate` (and `getnonce`, `logout`).
    Auth,
    /// On the retryable-reads list: safe to replay.
    RetryableRead,
    /// `getMore`/`killCursors`: pinned to the cursor's member, never replayed.
    CursorContinuation,
    /// A write; `retryable` when the server can deduplicate it (lsid+txnNumber,
    /// single-statement semantics, acknowledged, outside a transaction).
    Write {
        retryable: bool,
    },
    /// A statement inside a multi-document transaction (`autocommit: false`).
    TransactionStatement,
    CommitTransaction,
    AbortTransaction,
    /// Side-effect-free diagnostics (`ping`, `buildInfo`, …): safe to replay.
    Diagnostic,
    /// Anything else: outcome unknown if interrupted.
    Other,
}

impl CommandClass {
    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            CommandClass::Handshake => "handshake",
            CommandClass::Auth => "auth",
            CommandClass::RetryableRead => "read",
            CommandClass::CursorContinuation => "cursor",
            CommandClass::Write { retryable: true } => "retryable_write",
            CommandClass::Write { retryable: false } => "write",
            CommandClass::TransactionStatement => "txn_statement",
            CommandClass::CommitTransaction => "txn_commit",
            CommandClass::AbortTransaction => "txn_abort",
            CommandClass::Diagnostic => "diagnostic",
            CommandClass::Other => "other",
        }
    }
}

fn bad(e: bson::raw::Error) -> WireError {
    WireError::BadBson {
        what: "command",
        detail: e.to_string(),
    }
}

impl<'a> CommandView<'a> {
    /// Views the command of an OP_MSG.
    pub fn from_msg(msg: &'a OpMsg) -> Result<CommandView<'a>, WireError> {
        let body = msg.body_doc()?;
        let mut v = Self::scan(body, &msg.sequences)?;
        v.more_to_come = msg.more_to_come();
        v.exhaust_allowed = msg.exhaust_allowed();
        Ok(v)
    }

    /// Views the command of an OP_QUERY on `db.$cmd`, unwrapping `$query`/`query`
    /// and taking `$readPreference` from the wrapper.
    pub fn from_query(q: &'a OpQuery) -> Result<CommandView<'a>, WireError> {
        let db = q
            .command_db()
            .ok_or_else(|| WireError::NotACommandNamespace(q.full_collection_name.clone()))?;
        let outer = q.query_doc()?;
        let mut first = outer.iter();
        let (k, v) = first.next().ok_or(WireError::EmptyCommand)?.map_err(bad)?;
        let (body, wrapper) = match (k, v) {
            ("$query" | "query", RawBsonRef::Document(inner)) => (inner, Some(outer)),
            _ => (outer, None),
        };
        let mut view = Self::scan(body, &[])?;
        if view.db.is_none() {
            view.db = Some(db);
        }
        if let Some(w) = wrapper {
            if let Ok(Some(RawBsonRef::Document(rp))) = w.get("$readPreference") {
                view.read_preference = Some(rp);
            }
        }
        Ok(view)
    }

    /// One pass over the body's top-level fields. Well-formed bodies made of
    /// the BSON types drivers put in commands are walked by [`fast_element`],
    /// which does not decode values the proxy never reads; anything else (a
    /// malformed body, or a rare type such as a regex or code) goes through
    /// bson's validating iterator. Both give the same view and the same errors.
    #[inline]
    fn scan(
        body: &'a RawDocument,
        sequences: &'a [DocumentSequence],
    ) -> Result<CommandView<'a>, WireError> {
        // Filled in place: the view is large, and moving it between helpers
        // costs more than the walk of a small command.
        let mut v = Self::empty(body, sequences);
        if !v.fill_fast() {
            v = Self::empty(body, sequences);
            v.fill_bson()?;
        }
        for s in sequences {
            let check: fn(&RawDocument) -> bool = match (v.name, s.identifier.as_str()) {
                ("update", "updates") => is_multi_update,
                ("delete", "deletes") => is_multi_delete,
                _ => continue,
            };
            for d in s.iter() {
                if check(d?) {
                    v.multi_statement = true;
                }
            }
        }
        Ok(v)
    }

    /// The fast walk ([`fast_element`] for each field). `false` when the
    /// body needs bson's full validation; the view is then partly filled and
    /// must be discarded.
    #[inline]
    fn fill_fast(&mut self) -> bool {
        let doc = self.body.as_bytes();
        // RawDocument guarantees len ≥ 5 and a NUL last byte; like bson's
        // iterator, the walk must land exactly on that byte.
        let last = doc.len() - 1;
        let mut at = 4;
        let mut first = true;
        while at < last {
            let Some((key, value, next)) = fast_element(doc, at) else {
                return false;
            };
            at = next;
            if first {
                first = false;
                let Ok(name) = std::str::from_utf8(key) else {
                    return false;
                };
                self.name = name;
                if name == "getMore" {
                    self.cursor_id = value.value().and_then(as_i64);
                }
            } else {
                self.field(key, value);
            }
        }
        !first && at == last
    }

    /// The walk with bson's iterator, which decodes and checks every value.
    fn fill_bson(&mut self) -> Result<(), WireError> {
        let mut it = self.body.iter();
        let (name, first_value) = it.next().ok_or(WireError::EmptyCommand)?.map_err(bad)?;
        self.name = name;
        if name == "getMore" {
            self.cursor_id = as_i64(first_value);
        }
        for el in it {
            let (k, val) = el.map_err(bad)?;
            self.field(k.as_bytes(), Field::from_bson(val));
        }
        Ok(())
    }

    fn empty(body: &'a RawDocument, sequences: &'a [DocumentSequence]) -> CommandView<'a> {
        CommandView {
            name: "",
            body,
            db: None,
            lsid: None,
            txn_number: None,
            autocommit: None,
            start_transaction: false,
            read_preference: None,
            read_concern: None,
            max_time_ms: None,
            cursor_id: None,
            write_concern_w0: false,
            more_to_come: false,
            exhaust_allowed: false,
            has_out_or_merge: false,
            multi_statement: false,
            sequences,
        }
    }

    /// Takes in one top-level field after the first (`k` is its name).
    #[inline]
    fn field(&mut self, k: &[u8], f: Field<'a>) {
        let name = self.name;
        match k {
            b"$db" => {
                if let Some(RawBsonRef::String(s)) = f.value() {
                    self.db = Some(s);
                }
            }
            b"lsid" => {
                if let Some(RawBsonRef::Document(d)) = f.value() {
                    self.lsid = Some(d);
                }
            }
            b"txnNumber" => self.txn_number = f.value().and_then(as_i64),
            b"autocommit" => self.autocommit = f.value().and_then(as_bool),
            b"startTransaction" => {
                self.start_transaction = f.value().and_then(as_bool).unwrap_or(false)
            }
            b"$readPreference" => {
                if let Some(RawBsonRef::Document(d)) = f.value() {
                    self.read_preference = Some(d);
                }
            }
            b"maxTimeMS" => self.max_time_ms = f.value().and_then(as_i64),
            b"readConcern" => {
                if let Some(RawBsonRef::Document(d)) = f.value() {
                    self.read_concern = Some(d);
                }
            }
            b"writeConcern" => {
                if let Some(RawBsonRef::Document(wc)) = f.value() {
                    if let Ok(Some(w)) = wc.get("w") {
                        self.write_concern_w0 = as_i64(w) == Some(0);
                    }
                }
            }
            b"pipeline" if name == "aggregate" => {
                if let Some(stages) = f.array() {
                    if let Some(Ok((_, RawBsonRef::Document(last)))) = stages.iter().last() {
                        if let Some(Ok((stage, _))) = last.iter().next() {
                            self.has_out_or_merge = stage == "$out" || stage == "$merge";
                        }
                    }
                }
            }
            b"updates" if name == "update" => {
                if let Some(a) = f.array() {
                    self.multi_statement |= a.iter().any(
                        |s| matches!(s, Ok((_, RawBsonRef::Document(d))) if is_multi_update(d)),
                    );
                }
            }
            b"deletes" if name == "delete" => {
                if let Some(a) = f.array() {
                    self.multi_statement |= a.iter().any(
                        |s| matches!(s, Ok((_, RawBsonRef::Document(d))) if is_multi_delete(d)),
                    );
                }
            }
            _ => {}
        }
    }

    /// The kind-1 sequence with this identifier, if any.
    pub fn sequence(&self, identifier: &str) -> Option<&'a DocumentSequence> {
        self.sequences.iter().find(|s| s.identifier == identifier)
    }

    /// The cursor ids a `killCursors` names.
    pub fn kill_cursor_ids(&self) -> Vec<i64> {
        if self.name != "killCursors" {
            return Vec::new();
        }
        match self.body.get("cursors") {
            Ok(Some(RawBsonRef::Array(a))) => a
                .into_iter()
                .filter_map(|v| v.ok().and_then(as_i64))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// No reply is expected or the write is unacknowledged (`w: 0`).
    pub fn is_unacknowledged(&self) -> bool {
        self.more_to_come || self.write_concern_w0
    }

    /// A write holdfast may make retryable with a session of its own: one
    /// of the retryable-write commands, every statement single-document,
    /// acknowledged, outside a transaction, and without a `txnNumber` of
    /// its own.
    pub fn may_be_made_retryable(&self) -> bool {
        commands::lookup(self.name).is_some_and(|c| c.retryable_write)
            && self.txn_number.is_none()
            && !self.in_transaction()
            && !self.multi_statement
            && !self.is_unacknowledged()
    }

    /// A statement of a multi-document transaction, or its commit/abort.
    pub fn in_transaction(&self) -> bool {
        commands::in_transaction(self.autocommit)
    }

    /// How the proxy treats this request ([`commands::COMMANDS`] says what
    /// each command is; the request's own fields refine it).
    pub fn classify(&self) -> CommandClass {
        let info = commands::lookup(self.name);
        match info.map_or(Kind::Other, |c| c.kind) {
            Kind::Handshake => CommandClass::Handshake,
            Kind::TransactionControl if self.name == "commitTransaction" => {
                CommandClass::CommitTransaction
            }
            Kind::TransactionControl => CommandClass::AbortTransaction,
            _ if self.in_transaction() => CommandClass::TransactionStatement,
            Kind::Auth => CommandClass::Auth,
            Kind::Cursor => CommandClass::CursorContinuation,
            Kind::Read if self.has_out_or_merge => CommandClass::Write { retryable: false },
            Kind::Read => CommandClass::RetryableRead,
            Kind::Write => CommandClass::Write {
                retryable: info.is_some_and(|c| c.retryable_write)
                    && self.lsid.is_some()
                    && self.txn_number.is_some()
                    && !self.multi_statement
                    && !self.is_unacknowledged(),
            },
            Kind::Diagnostic => CommandClass::Diagnostic,
            Kind::Other => CommandClass::Other,
        }
    }
}

/// `doc` without its top-level fields named in `remove`, with the fields of
/// `append` added at the end. The kept fields are copied as bytes, without
/// decoding them (bson decodes only a document the fast walk cannot).
pub fn edit_fields(doc: &RawDocument, remove: &[&str], append: &bson::Document) -> bytes::Bytes {
    let src = doc.as_bytes();
    let mut out = Vec::with_capacity(src.len() + 64);
    out.extend_from_slice(&[0; 4]);
    let last = src.len() - 1;
    let mut at = 4;
    let mut fast = true;
    while at < last {
        let Some((key, _, next)) = fast_element(src, at) else {
            fast = false;
            break;
        };
        if !remove.iter().any(|r| r.as_bytes() == key) {
            out.extend_from_slice(&src[at..next]);
        }
        at = next;
    }
    if !fast || at != last {
        // A rare type or a malformed document: go through bson.
        let mut d = bson::Document::try_from(doc).unwrap_or_default();
        for r in remove {
            d.remove(*r);
        }
        for (k, v) in append {
            d.insert(k.clone(), v.clone());
        }
        return crate::reply::document_bytes(&d);
    }
    let tail = crate::reply::document_bytes(append);
    out.extend_from_slice(&tail[4..tail.len() - 1]);
    out.push(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    bytes::Bytes::from(out)
}

fn is_multi_update(d: &RawDocument) -> bool {
    matches!(d.get("multi"), Ok(Some(v)) if as_bool(v) == Some(true))
}

fn is_multi_delete(d: &RawDocument) -> bool {
    matches!(d.get("limit"), Ok(Some(v)) if as_i64(v) == Some(0))
}

/// A top-level field's value as [`CommandView::scan`] reads it. The fast
/// walk has already checked every byte of it; it is turned into a bson value
/// only when the scan reads it.
#[derive(Clone, Copy)]
enum Field<'a> {
    Value(RawBsonRef<'a>),
    /// A string's bytes (valid UTF-8, checked).
    Str(&'a [u8]),
    /// An embedded document's bytes (length prefix and NUL checked).
    Doc(&'a [u8]),
    /// An array's bytes, as a document (keys "0", "1", …): iterating it
    /// yields the same values, in the same order, as `RawArray`'s iterator.
    Array(&'a [u8]),
    /// A well-formed value of a type the scan never reads (ObjectId, date,
    /// timestamp, decimal, binary, null, undefined, min/max key).
    Skipped,
}

impl<'a> Field<'a> {
    fn from_bson(v: RawBsonRef<'a>) -> Field<'a> {
        match v {
            RawBsonRef::Array(a) => Field::Array(a.as_bytes()),
            other => Field::Value(other),
        }
    }

    /// The value, for the types the scan reads (conversions cannot fail:
    /// the bytes were checked by the walk).
    fn value(self) -> Option<RawBsonRef<'a>> {
        match self {
            Field::Value(v) => Some(v),
            Field::Str(b) => std::str::from_utf8(b).ok().map(RawBsonRef::String),
            Field::Doc(b) => RawDocument::from_bytes(b).ok().map(RawBsonRef::Document),
            Field::Array(_) | Field::Skipped => None,
        }
    }

    fn array(self) -> Option<&'a RawDocument> {
        match self {
            Field::Array(b) => RawDocument::from_bytes(b).ok(),
            _ => None,
        }
    }
}

/// Finds the NUL that ends the C string starting at `i` (the caller knows
/// `buf` ends with a NUL). Returns its index, and whether every byte before
/// it is ASCII. Eight bytes at a time: keys are short, and this is the
/// innermost loop of the command scan.
#[inline]
pub(crate) fn cstring_end(buf: &[u8], mut i: usize) -> Option<(usize, bool)> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    while let Some(w) = buf.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*w);
        // The lowest set bit marks the first zero byte exactly (borrows
        // only disturb the bytes after it).
        let zero = x.wrapping_sub(LO) & !x & HI;
        if zero != 0 {
            let n = (zero.trailing_zeros() / 8) as usize;
            let before = if n == 0 {
                0
            } else {
                x & (u64::MAX >> (64 - 8 * n))
            };
            return Some((i + n, (high | before) & HI == 0));
        }
        high |= x;
        i += 8;
    }
    let mut ascii = high & HI == 0;
    loop {
        let b = *buf.get(i)?;
        if b == 0 {
            return Some((i, ascii));
        }
        ascii &= b.is_ascii();
        i += 1;
    }
}

/// UTF-8 check with a fast path for ASCII, which command strings nearly
/// always are.
#[inline]
fn is_utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

/// The element at `at` in `doc`: its key's bytes, its value and where the
/// next element starts. Checks what bson's `RawIter` + `RawElement::value`
/// would, without building a bson value (see [`Field`]), and is never more
/// lenient: for any element it is not sure of (a rare type, a bad length,
/// invalid UTF-8, …) it returns `None`, and the caller falls back to bson,
/// which then yields exactly what it always did.
#[inline(always)]
fn fast_element(doc: &[u8], at: usize) -> Option<(&[u8], Field<'_>, usize)> {
    let tag = *doc.get(at)?;
    let (nul, ascii) = cstring_end(doc, at + 1)?;
    let key = &doc[at + 1..nul];
    if !ascii && std::str::from_utf8(key).is_err() {
        return None;
    }
    let p = nul + 1;
    let bytes = |n: usize| doc.get(p..p.checked_add(n)?);
    let len_prefix = || {
        let b = doc.get(p..)?.first_chunk::<4>()?;
        usize::try_from(i32::from_le_bytes(*b)).ok()
    };
    let (size, field) = match tag {
        // double
        0x01 => {
            let b = bytes(8)?;
            let f = f64::from_le_bytes(b.try_into().ok()?);
            (8, Field::Value(RawBsonRef::Double(f)))
        }
        // string: int32 length (≥ 1, NUL included), UTF-8, NUL
        0x02 => {
            let n = len_prefix()?;
            if n < 1 {
                return None;
            }
            let b = bytes(n.checked_add(4)?)?;
            let s = &b[4..b.len() - 1];
            if b[b.len() - 1] != 0 || !is_utf8(s) {
                return None;
            }
            (b.len(), Field::Str(s))
        }
        // document, array: length ≥ 5 and within bounds, last byte NUL
        // (what RawDocument::from_bytes checks)
        0x03 | 0x04 => {
            let n = len_prefix()?;
            if n < 5 {
                return None;
            }
            let b = bytes(n)?;
            if b[n - 1] != 0 {
                return None;
            }
            (
                n,
                if tag == 0x03 {
                    Field::Doc(b)
                } else {
                    Field::Array(b)
                },
            )
        }
        // binary: int32 length, subtype, bytes; the old subtype 2 has an
        // inner length that only bson checks
        0x05 => {
            let b = bytes(len_prefix()?.checked_add(5)?)?;
            if b[4] == 0x02 {
                return None;
            }
            (b.len(), Field::Skipped)
        }
        // undefined, null, max key, min key
        0x06 | 0x0A | 0x7F | 0xFF => (0, Field::Skipped),
        // ObjectId
        0x07 => (bytes(12)?.len(), Field::Skipped),
        // boolean: 0 or 1 only
        0x08 => {
            let b = *doc.get(p)?;
            if b > 1 {
                return None;
            }
            (1, Field::Value(RawBsonRef::Boolean(b == 1)))
        }
        // UTC datetime, timestamp
        0x09 | 0x11 => (bytes(8)?.len(), Field::Skipped),
        0x10 => {
            let b = doc.get(p..)?.first_chunk::<4>()?;
            (4, Field::Value(RawBsonRef::Int32(i32::from_le_bytes(*b))))
        }
        0x12 => {
            let b = doc.get(p..)?.first_chunk::<8>()?;
            (8, Field::Value(RawBsonRef::Int64(i64::from_le_bytes(*b))))
        }
        // decimal128
        0x13 => (bytes(16)?.len(), Field::Skipped),
        // regex, DBPointer, code, symbol, code with scope, unknown tags
        _ => return None,
    };
    // `p + size` ≤ len here; past the terminating NUL it makes the caller's
    // end check fail, as bson's "iteration overflowed" does.
    Some((key, field, p + size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Limits, Message};

    /// Every command document of the captured fixtures (OP_MSG bodies,
    /// OP_QUERY commands, compressed frames decompressed).
    fn fixture_commands() -> Vec<Vec<u8>> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "bin") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        walk(&dir, &mut files);
        files.sort();
        let limits = Limits::default();
        let mut docs = Vec::new();
        for f in files {
            let raw = bytes::Bytes::from(std::fs::read(&f).unwrap());
            let mut frame = Frame::from_bytes(raw, limits.max_message_size).unwrap();
            if let Ok(Message::Compressed(c)) = frame.parse(&limits) {
                frame = c
                    .decompress(frame.header(), limits.max_message_size)
                    .unwrap();
            }
            match frame.parse(&limits).unwrap() {
                Message::Msg(m) => docs.push(m.body.to_vec()),
                Message::Query(q) => docs.push(q.query.to_vec()),
                other => panic!("{}: {other:?}", f.display()),
            }
        }
        assert!(docs.len() >= 100, "only {} fixture commands", docs.len());
        docs
    }

    fn fast(body: &RawDocument) -> Option<CommandView<'_>> {
        let mut v = CommandView::empty(body, &[]);
        v.fill_fast().then_some(v)
    }

    fn slow(body: &RawDocument) -> Result<CommandView<'_>, WireError> {
        let mut v = CommandView::empty(body, &[]);
        v.fill_bson().map(|()| v)
    }

    fn same(doc: &[u8]) {
        let Ok(body) = RawDocument::from_bytes(doc) else {
            return;
        };
        let reference = format!("{:?}", slow(body));
        if let Some(fast) = fast(body) {
            assert_eq!(format!("{:?}", Ok::<_, WireError>(fast)), reference);
        }
        assert_eq!(format!("{:?}", CommandView::scan(body, &[])), reference);
    }

    #[test]
    fn fast_scan_takes_every_fixture_command() {
        for doc in fixture_commands() {
            let body = RawDocument::from_bytes(&doc).unwrap();
            let fast = fast(body).expect("fast path taken");
            let slow = slow(body).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
    }

    /// Differential: every one-byte change of every fixture command gives the
    /// same view (or error) through `scan` as through bson alone.
    #[test]
    fn fast_scan_agrees_with_bson_on_mutations() {
        for doc in fixture_commands() {
            same(&doc);
            let mut m = doc.clone();
            for i in 4..doc.len() {
                let orig = doc[i];
                for b in [
                    0x00,
                    0x01,
                    0x02,
                    0x05,
                    0x7F,
                    0xFF,
                    orig ^ 0x80,
                    orig.wrapping_add(1),
                ] {
                    m[i] = b;
                    same(&m);
                }
                m[i] = orig;
            }
        }
    }

    #[test]
    fn edit_fields_removes_and_appends_without_touching_the_rest() {
        use bson::{doc, Bson};
        let d = doc! {"insert": "c", "lsid": {"id": 1}, "ordered": false, "$db": "x", "re": Bson::RegularExpression(bson::Regex { pattern: "a".into(), options: "".into() })};
        for (src, fast) in [
            (d.clone(), false),
            (
                {
                    let mut e = d.clone();
                    e.remove("re");
                    e
                },
                true,
            ),
        ] {
            let raw = crate::reply::document_bytes(&src);
            let body = RawDocument::from_bytes(&raw).unwrap();
            assert_eq!(
                fast,
                CommandView::scan(body, &[]).is_ok() && fast_walks(body)
            );
            let out = edit_fields(
                body,
                &["lsid"],
                &doc! {"lsid": {"id": 2}, "txnNumber": 7i64},
            );
            let got = bson::Document::from_reader(&out[..]).unwrap();
            let mut want = src.clone();
            want.remove("lsid");
            want.insert("lsid", doc! {"id": 2});
            want.insert("txnNumber", 7i64);
            assert_eq!(got, want);
            assert_eq!(got.keys().next().map(String::as_str), Some("insert"));
        }
    }

    fn fast_walks(body: &RawDocument) -> bool {
        fast(body).is_some()
    }

    #[test]
    fn cstring_end_matches_a_byte_loop() {
        for len in 0..40usize {
            for extra in 0..10usize {
                for bad in std::iter::once(None).chain((0..len).map(Some)) {
                    let mut buf: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if let Some(i) = bad {
                        buf[i] = 0xC3;
                    }
                    buf.push(0);
                    buf.resize(buf.len() + extra, 0x80);
                    buf.push(0);
                    for start in 0..=len.min(9) {
                        let nul = start + buf[start..].iter().position(|&b| b == 0).unwrap();
                        let ascii = buf[start..nul].is_ascii();
                        assert_eq!(cstring_end(&buf, start), Some((nul, ascii)));
                    }
                }
            }
        }
        assert_eq!(cstring_end(b"abc", 0), None);
        assert_eq!(cstring_end(b"abc", 7), None);
    }

    #[test]
    fn fast_scan_agrees_with_bson_on_non_ascii() {
        use bson::doc;
        for d in [
            doc! {"find": "ünïcödé", "ключ": 1, "$db": "базa", "lsid": {"id": 1}},
            doc! {"é": 1, "$db": "x"},
            doc! {"find": "c", "a-very-long-key-name-that-spans-words-ü": "ß", "$db": "x"},
        ] {
            let mut raw = Vec::new();
            d.to_writer(&mut raw).unwrap();
            let body = RawDocument::from_bytes(&raw).unwrap();
            assert!(fast(body).is_some());
            same(&raw);
        }
    }

    #[test]
    fn fast_scan_agrees_with_bson_on_every_type() {
        use bson::{doc, spec::BinarySubtype, Binary, Bson, JavaScriptCodeWithScope, Regex};
        let values: Vec<Bson> = vec![
            Bson::Double(0.0),
            Bson::String("s".into()),
            Bson::Document(doc! {"a": 1}),
            Bson::Array(vec![Bson::Int32(1), Bson::Document(doc! {"multi": true})]),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1, 2],
            }),
            Bson::Binary(Binary {
                subtype: BinarySubtype::BinaryOld,
                bytes: vec![1, 2],
            }),
            Bson::Undefined,
            Bson::ObjectId(bson::oid::ObjectId::from_bytes([1; 12])),
            Bson::Boolean(true),
            Bson::Boolean(false),
            Bson::DateTime(bson::DateTime::from_millis(5)),
            Bson::Null,
            Bson::RegularExpression(Regex {
                pattern: "a".into(),
                options: "i".into(),
            }),
            Bson::JavaScriptCode("x".into()),
            Bson::Symbol("y".into()),
            Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: "z".into(),
                scope: doc! {"q": 1},
            }),
            Bson::Int32(0),
            Bson::Timestamp(bson::Timestamp {
                time: 1,
                increment: 2,
            }),
            Bson::Int64(0),
            Bson::Decimal128(bson::Decimal128::from_bytes([0; 16])),
            Bson::MaxKey,
            Bson::MinKey,
        ];
        for cmd in ["getMore", "update", "delete", "aggregate", "insert"] {
            for k in [
                "x",
                "txnNumber",
                "autocommit",
                "startTransaction",
                "maxTimeMS",
                "$db",
                "lsid",
                "writeConcern",
                "updates",
                "deletes",
                "pipeline",
            ] {
                for v in &values {
                    let d = doc! {cmd: v.clone(), k: v.clone(), "$db": "app"};
                    let mut raw = Vec::new();
                    d.to_writer(&mut raw).unwrap();
                    same(&raw);
                }
            }
        }
    }
}
