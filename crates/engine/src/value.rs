//! BSON value semantics: MongoDB's cross-type ordering, numeric equivalence,
//! canonical hash keys, exact ("binary") identity, arithmetic with MongoDB's
//! type promotion, and the server's `{ a: 1 }` text rendering used in messages.

use std::cmp::Ordering;

use bson::{Bson, Decimal128, Document};

/// MongoDB's canonical type rank (`canonicalizeBSONType`): values of
/// different ranks compare by rank; the same rank compares by value.
pub fn canonical_rank(v: &Bson) -> i32 {
    match v {
        Bson::MinKey => -1,
        Bson::Undefined => 0,
        Bson::Null => 5,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number reduced to something comparable: exact integers stay exact.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Int(i64),
    Float(f64),
}

pub fn decimal_to_f64(d: &Decimal128) -> f64 {
    d.to_string().parse::<f64>().unwrap_or(f64::NAN)
}

pub fn as_num(v: &Bson) -> Option<Num> {
    match v {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(f) => Some(Num::Float(*f)),
        Bson::Decimal128(d) => Some(Num::Float(decimal_to_f64(d))),
        _ => None,
    }
}

pub fn is_number(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

/// Numeric value as f64 (lossy for huge Int64).
pub fn to_f64(v: &Bson) -> Option<f64> {
    match as_num(v)? {
        Num::Int(i) => Some(i as f64),
        Num::Float(f) => Some(f),
    }
}

/// An integral numeric value as i64, if it is one exactly.
pub fn to_exact_i64(v: &Bson) -> Option<i64> {
    match as_num(v)? {
        Num::Int(i) => Some(i),
        Num::Float(f) => f64_to_exact_i64(f),
    }
}

/// 2^63 as a double.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

pub fn f64_to_exact_i64(f: f64) -> Option<i64> {
    if f.is_finite() && f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) {
        Some(f as i64)
    } else {
        None
    }
}

fn cmp_i64_f64(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            if f > t {
                Ordering::Less
            } else if f < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

pub fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_i64_f64(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_i64_f64(y, x).reverse(),
        (Num::Float(x), Num::Float(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        },
    }
}

fn str_of(v: &Bson) -> &str {
    match v {
        Bson::String(s) | Bson::Symbol(s) => s,
        _ => "",
    }
}

/// Total order over BSON values as MongoDB sorts and compares them
/// (binary string comparison, i.e. the simple collation).
pub fn cmp_bson(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (canonical_rank(a), canonical_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == 10 => cmp_num(as_num(a).unwrap(), as_num(b).unwrap()),
        _ if ra == 15 => str_of(a).as_bytes().cmp(str_of(b).as_bytes()),
        (Bson::Document(x), Bson::Document(y)) => cmp_docs(x, y),
        (Bson::Array(x), Bson::Array(y)) => cmp_arrays(x, y),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .cmp(&y.pattern)
            .then_with(|| x.options.cmp(&y.options)),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x
            .code
            .cmp(&y.code)
            .then_with(|| cmp_docs(&x.scope, &y.scope)),
        (Bson::DbPointer(x), Bson::DbPointer(y)) => format!("{x:?}").cmp(&format!("{y:?}")),
        _ => Ordering::Equal,
    }
}

pub fn cmp_docs(x: &Document, y: &Document) -> Ordering {
    let mut ix = x.iter();
    let mut iy = y.iter();
    loop {
        match (ix.next(), iy.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = canonical_rank(va)
                    .cmp(&canonical_rank(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                    .then_with(|| cmp_bson(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

pub fn cmp_arrays(x: &[Bson], y: &[Bson]) -> Ordering {
    for (a, b) in x.iter().zip(y.iter()) {
        let o = canonical_rank(a)
            .cmp(&canonical_rank(b))
            .then_with(|| cmp_bson(a, b));
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// MongoDB equality (`$eq` semantics on single values): numbers compare by value.
pub fn bson_eq(a: &Bson, b: &Bson) -> bool {
    cmp_bson(a, b) == Ordering::Equal
}

/// Exact identity: same types, same field order, same bits. This is what
/// MongoDB uses to decide whether an update actually modified a document.
pub fn identical(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Double(x), Bson::Double(y)) => x.to_bits() == y.to_bits(),
        (Bson::Document(x), Bson::Document(y)) => docs_identical(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| identical(p, q))
        }
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => {
            x.code == y.code && docs_identical(&x.scope, &y.scope)
        }
        _ => a == b,
    }
}

pub fn docs_identical(x: &Document, y: &Document) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && identical(va, vb))
}

/// A byte string that is equal for two values exactly when MongoDB considers
/// them equal (`1`, `1.0`, `NumberLong(1)` and `NumberDecimal("1")` share a key).
/// Used for the `_id` index, unique indexes, `$group` and `distinct`.
pub fn key_of(v: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_key(v, &mut out);
    out
}

fn push_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn encode_key(v: &Bson, out: &mut Vec<u8>) {
    out.push((canonical_rank(v) + 1) as u8);
    match v {
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
            match as_num(v).unwrap() {
                Num::Int(i) => {
                    out.push(b'i');
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Num::Float(f) => match f64_to_exact_i64(f) {
                    Some(i) => {
                        out.push(b'i');
                        out.extend_from_slice(&i.to_le_bytes());
                    }
                    None => {
                        out.push(b'f');
                        let bits = if f.is_nan() {
                            f64::NAN.to_bits()
                        } else {
                            f.to_bits()
                        };
                        out.extend_from_slice(&bits.to_le_bytes());
                    }
                },
            }
        }
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => push_str(s, out),
        Bson::Document(d) => {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            for (k, x) in d {
                push_str(k, out);
                encode_key(x, out);
            }
        }
        Bson::Array(a) => {
            out.extend_from_slice(&(a.len() as u32).to_le_bytes());
            for x in a {
                encode_key(x, out);
            }
        }
        Bson::Binary(b) => {
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&(b.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => out.extend_from_slice(&d.timestamp_millis().to_le_bytes()),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_le_bytes());
            out.extend_from_slice(&t.increment.to_le_bytes());
        }
        Bson::RegularExpression(r) => {
            push_str(&r.pattern, out);
            push_str(&r.options, out);
        }
        Bson::JavaScriptCodeWithScope(c) => {
            push_str(&c.code, out);
            encode_key(&Bson::Document(c.scope.clone()), out);
        }
        Bson::DbPointer(p) => push_str(&format!("{p:?}"), out),
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => {}
    }
}

/// Arithmetic result classes, following MongoDB's promotion rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NumClass {
    I32,
    I64,
    F64,
    Dec,
}

fn class_of(v: &Bson) -> Option<NumClass> {
    match v {
        Bson::Int32(_) => Some(NumClass::I32),
        Bson::Int64(_) => Some(NumClass::I64),
        Bson::Double(_) => Some(NumClass::F64),
        Bson::Decimal128(_) => Some(NumClass::Dec),
        _ => None,
    }
}

fn int_of(v: &Bson) -> i64 {
    match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        _ => 0,
    }
}

pub fn f64_to_decimal(f: f64) -> Bson {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{f:?}")
    };
    s.parse::<Decimal128>()
        .map(Bson::Decimal128)
        .unwrap_or(Bson::Double(f))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Mul,
}

/// `a (+|*) b` for two numeric values. Int32 overflow promotes to Int64;
/// Int64 overflow yields `None` (the caller reports an error or falls back to
/// double). Decimal arithmetic is approximated through f64.
pub fn arith(a: &Bson, b: &Bson, op: ArithOp) -> Option<Bson> {
    let cls = class_of(a)?.max(class_of(b)?);
    let fa = to_f64(a)?;
    let fb = to_f64(b)?;
    let fop = |x: f64, y: f64| match op {
        ArithOp::Add => x + y,
        ArithOp::Mul => x * y,
    };
    match cls {
        NumClass::Dec => Some(f64_to_decimal(fop(fa, fb))),
        NumClass::F64 => Some(Bson::Double(fop(fa, fb))),
        NumClass::I32 | NumClass::I64 => {
            let (x, y) = (int_of(a), int_of(b));
            let r = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Mul => x.checked_mul(y),
            }?;
            if cls == NumClass::I32 {
                match i32::try_from(r) {
                    Ok(i) => Some(Bson::Int32(i)),
                    Err(_) => Some(Bson::Int64(r)),
                }
            } else {
                Some(Bson::Int64(r))
            }
        }
    }
}

/// MongoDB type name as used in error messages and `$type`.
pub fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MinKey => "minKey",
        Bson::MaxKey => "maxKey",
    }
}

/// BSON type number (`$type` numeric form).
pub fn type_number(v: &Bson) -> i32 {
    match v {
        Bson::Double(_) => 1,
        Bson::String(_) => 2,
        Bson::Document(_) => 3,
        Bson::Array(_) => 4,
        Bson::Binary(_) => 5,
        Bson::Undefined => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Null => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::Symbol(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::Int32(_) => 16,
        Bson::Timestamp(_) => 17,
        Bson::Int64(_) => 18,
        Bson::Decimal128(_) => 19,
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
    }
}

/// Maps a `$type` alias to its type number; "number" maps to `None` inside `Some`.
pub fn type_alias(name: &str) -> Option<Option<i32>> {
    let n = match name {
        "double" => 1,
        "string" => 2,
        "object" => 3,
        "array" => 4,
        "binData" => 5,
        "undefined" => 6,
        "objectId" => 7,
        "bool" => 8,
        "date" => 9,
        "null" => 10,
        "regex" => 11,
        "dbPointer" => 12,
        "javascript" => 13,
        "symbol" => 14,
        "javascriptWithScope" => 15,
        "int" => 16,
        "timestamp" => 17,
        "long" => 18,
        "decimal" => 19,
        "minKey" => -1,
        "maxKey" => 127,
        "number" => return Some(None),
        _ => return None,
    };
    Some(Some(n))
}

/// Truthiness as in aggregation expressions.
pub fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Null | Bson::Undefined => false,
        Bson::Int32(i) => *i != 0,
        Bson::Int64(i) => *i != 0,
        Bson::Double(f) => *f != 0.0,
        Bson::Decimal128(d) => decimal_to_f64(d) != 0.0,
        _ => true,
    }
}

fn fmt_double(f: f64) -> String {
    if f.is_nan() {
        "nan.0".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf.0" } else { "-inf.0" }.into()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Renders a value the way mongod does in error messages (`{ _id: 1 }`).
pub fn mongo_fmt(v: &Bson) -> String {
    match v {
        Bson::Double(f) => fmt_double(*f),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Decimal128(d) => format!("{d}"),
        Bson::String(s) => format!("\"{s}\""),
        Bson::Symbol(s) => format!("\"{s}\""),
        Bson::Boolean(b) => b.to_string(),
        Bson::Null => "null".into(),
        Bson::Undefined => "undefined".into(),
        Bson::MinKey => "MinKey".into(),
        Bson::MaxKey => "MaxKey".into(),
        Bson::ObjectId(o) => format!("ObjectId('{}')", o.to_hex()),
        Bson::DateTime(d) => format!("new Date({})", d.timestamp_millis()),
        Bson::Timestamp(t) => format!("Timestamp({}, {})", t.time, t.increment),
        Bson::RegularExpression(r) => format!("/{}/{}", r.pattern, r.options),
        Bson::Document(d) => mongo_fmt_doc(d),
        Bson::Array(a) => {
            if a.is_empty() {
                "[]".into()
            } else {
                let parts: Vec<String> = a.iter().map(mongo_fmt).collect();
                format!("[ {} ]", parts.join(", "))
            }
        }
        other => format!("{other}"),
    }
}

pub fn mongo_fmt_doc(d: &Document) -> String {
    if d.is_empty() {
        return "{}".into();
    }
    let parts: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{k}: {}", mongo_fmt(v)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, Binary, DateTime, Timestamp};

    #[test]
    fn type_bracket_order() {
        let ordered = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(-5),
            Bson::Double(2.5),
            Bson::Int64(3),
            Bson::String("a".into()),
            Bson::String("b".into()),
            Bson::Document(doc! {"a": 1}),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Binary(Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1],
            }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(DateTime::from_millis(5)),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 1,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a".into(),
                options: String::new(),
            }),
            Bson::MaxKey,
        ];
        for i in 0..ordered.len() {
            for j in 0..ordered.len() {
                assert_eq!(
                    cmp_bson(&ordered[i], &ordered[j]),
                    i.cmp(&j),
                    "{:?} vs {:?}",
                    ordered[i],
                    ordered[j]
                );
            }
        }
    }

    #[test]
    fn numbers_compare_across_types() {
        assert!(bson_eq(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(bson_eq(&Bson::Int64(1), &Bson::Int32(1)));
        assert_eq!(
            cmp_bson(&Bson::Int64(i64::MAX), &Bson::Double(9.3e18)),
            Ordering::Less
        );
        assert_eq!(
            cmp_bson(&Bson::Int64(2), &Bson::Double(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            cmp_bson(&Bson::Double(f64::NAN), &Bson::Int32(-100)),
            Ordering::Less
        );
        let d: Decimal128 = "1".parse().unwrap();
        assert!(bson_eq(&Bson::Decimal128(d), &Bson::Int32(1)));
    }

    #[test]
    fn keys_normalise_numbers() {
        assert_eq!(key_of(&Bson::Int32(1)), key_of(&Bson::Double(1.0)));
        assert_eq!(key_of(&Bson::Int32(1)), key_of(&Bson::Int64(1)));
        assert_ne!(key_of(&Bson::Int32(1)), key_of(&Bson::Double(1.5)));
        assert_ne!(key_of(&Bson::Int32(1)), key_of(&Bson::String("1".into())));
        assert_eq!(
            key_of(&Bson::Document(doc! {"a": 1})),
            key_of(&Bson::Document(doc! {"a": 1.0}))
        );
        assert_ne!(
            key_of(&Bson::Document(doc! {"a": 1, "b": 2})),
            key_of(&Bson::Document(doc! {"b": 2, "a": 1}))
        );
    }

    #[test]
    fn documents_compare_fieldwise() {
        assert_eq!(
            cmp_docs(&doc! {"a": 1}, &doc! {"a": 1, "b": 1}),
            Ordering::Less
        );
        assert_eq!(cmp_docs(&doc! {"a": 2}, &doc! {"b": 1}), Ordering::Less);
        assert_eq!(
            cmp_docs(&doc! {"a": "x"}, &doc! {"a": 5}),
            Ordering::Greater
        );
    }

    #[test]
    fn arithmetic_promotion() {
        assert_eq!(
            arith(&Bson::Int32(i32::MAX), &Bson::Int32(1), ArithOp::Add),
            Some(Bson::Int64(i64::from(i32::MAX) + 1))
        );
        assert_eq!(
            arith(&Bson::Int32(2), &Bson::Double(0.5), ArithOp::Add),
            Some(Bson::Double(2.5))
        );
        assert_eq!(
            arith(&Bson::Int64(i64::MAX), &Bson::Int32(1), ArithOp::Add),
            None
        );
        assert_eq!(
            arith(&Bson::Int32(3), &Bson::Int64(4), ArithOp::Mul),
            Some(Bson::Int64(12))
        );
    }

    #[test]
    fn identity_is_type_exact() {
        assert!(!identical(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(identical(&Bson::Double(f64::NAN), &Bson::Double(f64::NAN)));
        assert!(!docs_identical(
            &doc! {"a": 1, "b": 2},
            &doc! {"b": 2, "a": 1}
        ));
    }

    #[test]
    fn formats_like_mongod() {
        assert_eq!(mongo_fmt_doc(&doc! {"_id": 1}), "{ _id: 1 }");
        assert_eq!(
            mongo_fmt_doc(&doc! {"a": "x", "b": 1.0}),
            "{ a: \"x\", b: 1.0 }"
        );
    }
}
