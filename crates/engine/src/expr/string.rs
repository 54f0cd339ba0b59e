//! String operators: `$concat $toLower $toUpper $substr $substrBytes
//! $substrCP $strLenBytes $strLenCP $split $trim $ltrim $rtrim $strcasecmp
//! $regexMatch`.

use std::cmp::Ordering;

use bson::Bson;

use super::{arity, nullish, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{to_f64, type_name};

/// `$concat`: strings only (null if any operand is nullish).
pub(super) fn concat(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let mut s = String::new();
    for v in all()? {
        match v {
            None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
            Some(Bson::String(x)) => s.push_str(&x),
            Some(other) => {
                return Err(CommandError::new(
                    16702,
                    format!("$concat only supports strings, not {}", type_name(&other)),
                ))
            }
        }
    }
    Ok(Some(Bson::String(s)))
}

/// `$toLower` and `$toUpper`.
pub(super) fn change_case(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    let s = string_of(name, &ev(0)?)?;
    Ok(Some(Bson::String(if name == "$toLower" {
        s.to_lowercase()
    } else {
        s.to_uppercase()
    })))
}

/// `$substr`/`$substrBytes` (byte offsets, which must fall on character
/// boundaries) and `$substrCP` (code points).
pub(super) fn substr(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 3)?;
    let s = string_of(name, &ev(0)?)?;
    let start = ev(1)?.as_ref().and_then(to_f64).unwrap_or(0.0).max(0.0) as usize;
    let len = ev(2)?.as_ref().and_then(to_f64).unwrap_or(-1.0);
    if name == "$substrCP" {
        let chars: Vec<char> = s.chars().collect();
        let start = start.min(chars.len());
        let end = if len < 0.0 {
            chars.len()
        } else {
            (start + len as usize).min(chars.len())
        };
        return Ok(Some(Bson::String(chars[start..end].iter().collect())));
    }
    let bytes = s.as_bytes();
    let start = start.min(bytes.len());
    let end = if len < 0.0 {
        bytes.len()
    } else {
        (start + len as usize).min(bytes.len())
    };
    match std::str::from_utf8(&bytes[start..end]) {
        Ok(x) => Ok(Some(Bson::String(x.to_string()))),
        Err(_) => Err(CommandError::new(
            28656,
            format!("{name}:  Invalid range, starting index is a UTF-8 continuation byte."),
        )),
    }
}

/// `$strLenBytes` and `$strLenCP`.
pub(super) fn str_len(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    match ev(0)? {
        Some(Bson::String(s)) => Ok(Some(Bson::Int32(if name == "$strLenBytes" {
            s.len() as i32
        } else {
            s.chars().count() as i32
        }))),
        other => Err(CommandError::new(
            34471,
            format!(
                "{name} requires a string argument, found: {}",
                other.as_ref().map(type_name).unwrap_or("missing")
            ),
        )),
    }
}

/// `$split`: a string cut at every occurrence of a non-empty separator.
pub(super) fn split(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let (a, b) = (ev(0)?, ev(1)?);
    if nullish(&a) {
        return Ok(Some(Bson::Null));
    }
    match (a, b) {
        (Some(Bson::String(s)), Some(Bson::String(sep))) => {
            if sep.is_empty() {
                return Err(CommandError::new(
                    40087,
                    "$split requires a non-empty separator",
                ));
            }
            Ok(Some(Bson::Array(
                s.split(sep.as_str())
                    .map(|p| Bson::String(p.into()))
                    .collect(),
            )))
        }
        _ => Err(CommandError::new(
            40085,
            "$split requires an expression that evaluates to a string as a first argument",
        )),
    }
}

/// `$trim`, `$ltrim` and `$rtrim`: `chars` (default: whitespace and NUL)
/// removed from both ends, the start or the end.
pub(super) fn trim(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let input = ev(0)?;
    if nullish(&input) {
        return Ok(Some(Bson::Null));
    }
    let Some(Bson::String(s)) = input else {
        return Err(CommandError::new(
            50699,
            format!("{name} requires its input to be a string"),
        ));
    };
    let chars: Vec<char> = match ev(1)? {
        Some(Bson::String(c)) => c.chars().collect(),
        _ => vec![' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\0', '\u{a0}'],
    };
    let f = |c: char| chars.contains(&c);
    Ok(Some(Bson::String(match name {
        "$trim" => s.trim_matches(f).to_string(),
        "$ltrim" => s.trim_start_matches(f).to_string(),
        _ => s.trim_end_matches(f).to_string(),
    })))
}

/// `$strcasecmp`: case-insensitive comparison, -1, 0 or 1.
pub(super) fn strcasecmp(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let a = string_of(name, &ev(0)?)?.to_lowercase();
    let b = string_of(name, &ev(1)?)?.to_lowercase();
    Ok(Some(Bson::Int32(match a.cmp(&b) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    })))
}

/// `$regexMatch`: whether `input` matches `regex` (string or regex, plus
/// `options`).
pub(super) fn regex_match(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let input = ev(0)?;
    let (pattern, mut opts) = match ev(1)? {
        Some(Bson::String(p)) => (p, String::new()),
        Some(Bson::RegularExpression(r)) => (r.pattern, r.options),
        _ => {
            return Err(CommandError::new(
                51105,
                "$regexMatch needs 'regex' to be of type string or regex",
            ))
        }
    };
    if let Some(Bson::String(o)) = ev(2)? {
        opts.push_str(&o);
    }
    let re = crate::matcher::Re::new(&pattern, &opts)?;
    Ok(Some(Bson::Boolean(match input {
        Some(Bson::String(s)) => re.re.is_match(&s),
        None | Some(Bson::Null) => false,
        Some(_) => {
            return Err(CommandError::new(
                51104,
                "$regexMatch needs 'input' to be of type string",
            ))
        }
    })))
}

pub(super) fn string_of(_name: &str, v: &Val) -> Res<String> {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(String::new()),
        Some(Bson::String(s)) | Some(Bson::Symbol(s)) => Ok(s.clone()),
        Some(other @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)))
        | Some(other @ (Bson::DateTime(_) | Bson::ObjectId(_) | Bson::Boolean(_))) => {
            Ok(to_string_value(other))
        }
        Some(other) => Err(CommandError::new(
            16007,
            format!(
                "can't convert from BSON type {} to String",
                type_name(other)
            ),
        )),
    }
}

fn to_string_value(v: &Bson) -> String {
    match v {
        Bson::String(s) | Bson::Symbol(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                format!("{f}")
            }
        }
        Bson::Decimal128(d) => d.to_string(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::Boolean(b) => b.to_string(),
        Bson::DateTime(d) => d
            .try_to_rfc3339_string()
            .unwrap_or_else(|_| d.timestamp_millis().to_string()),
        other => crate::value::mongo_fmt(other),
    }
}
