//! Types and conversions: `$type $isNumber $toString $toInt $toLong $toDouble
//! $toDecimal $toBool $toObjectId`.

use bson::Bson;

use super::string::string_of;
use super::{arity, nullish, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{to_exact_i64, to_f64, truthy, type_name};

/// `$type`: the BSON type name ("missing" for a missing value).
pub(super) fn type_of(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    Ok(Some(Bson::String(
        ev(0)?
            .as_ref()
            .map(type_name)
            .unwrap_or("missing")
            .to_string(),
    )))
}

/// `$isNumber`.
pub(super) fn is_number(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    Ok(Some(Bson::Boolean(
        ev(0)?.as_ref().is_some_and(crate::value::is_number),
    )))
}

/// `$toString`.
pub(super) fn to_string(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let v = ev(0)?;
    if nullish(&v) {
        return Ok(Some(Bson::Null));
    }
    Ok(Some(Bson::String(string_of(name, &v)?)))
}

/// `$toInt`, `$toLong`, `$toDouble` and `$toDecimal` (from numbers, booleans,
/// numeric strings and dates; 241 ConversionFailure otherwise or on overflow).
pub(super) fn to_number(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let v = ev(0)?;
    if nullish(&v) {
        return Ok(Some(Bson::Null));
    }
    let v = v.unwrap();
    let f = match &v {
        Bson::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        Bson::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|_| !s.trim().is_empty()),
        Bson::DateTime(d) => Some(d.timestamp_millis() as f64),
        other => to_f64(other),
    };
    let Some(f) = f else {
        return Err(CommandError::new(
            241,
            format!(
                "Unsupported conversion from {} to {} in $convert with no onError value",
                type_name(&v),
                &name[3..].to_lowercase()
            ),
        ));
    };
    Ok(Some(match name {
        "$toInt" => match (&v, to_exact_i64(&v)) {
            (_, Some(i)) if i32::try_from(i).is_ok() => Bson::Int32(i as i32),
            _ if f.is_finite() && f.trunc().abs() < 2_147_483_648.0 => {
                Bson::Int32(f.trunc() as i32)
            }
            _ => {
                return Err(CommandError::new(
                    241,
                    "Conversion would overflow target type in $convert with no onError value",
                ))
            }
        },
        "$toLong" => match to_exact_i64(&v) {
            Some(i) => Bson::Int64(i),
            None if f.is_finite() && f.trunc().abs() < 9.2e18 => Bson::Int64(f.trunc() as i64),
            None => {
                return Err(CommandError::new(
                    241,
                    "Conversion would overflow target type in $convert with no onError value",
                ))
            }
        },
        "$toDecimal" => crate::value::f64_to_decimal(f),
        _ => Bson::Double(f),
    }))
}

/// `$toBool`: truthiness.
pub(super) fn to_bool(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let v = ev(0)?;
    if nullish(&v) {
        return Ok(Some(Bson::Null));
    }
    Ok(Some(Bson::Boolean(truthy(&v.unwrap()))))
}

/// `$toObjectId`: from an ObjectId or its 24-digit hex string.
pub(super) fn to_object_id(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    match ev(0)? {
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(Bson::ObjectId(o)) => Ok(Some(Bson::ObjectId(o))),
        Some(Bson::String(s)) => bson::oid::ObjectId::parse_str(&s)
            .map(|o| Some(Bson::ObjectId(o)))
            .map_err(|_| CommandError::new(241, format!("Failed to parse objectId '{s}' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found {}", s.len()))),
        Some(other) => Err(CommandError::new(241, format!("Unsupported conversion from {} to objectId in $convert with no onError value", type_name(&other)))),
    }
}
