//! Array operators (`$size $arrayElemAt $first $last $concatArrays $in
//! $isArray $slice $reverseArray $indexOfArray $range`), and `$sum $avg $min
//! $max` as expressions.

use std::cmp::Ordering;

use bson::Bson;

use super::{arity, nullish, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{arith, cmp_bson, to_exact_i64, to_f64, type_name, ArithOp};

/// `$size`: the length of an array.
pub(super) fn size(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    match ev(0)? {
        Some(Bson::Array(a)) => Ok(Some(Bson::Int32(a.len() as i32))),
        other => Err(CommandError::new(
            17124,
            format!(
                "The argument to $size must be an array. Type of argument: {}",
                other.as_ref().map(type_name).unwrap_or("missing")
            ),
        )),
    }
}

/// `$arrayElemAt`: the element at an index (negative: from the end), or
/// missing when out of range.
pub(super) fn array_elem_at(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let (a, i) = (ev(0)?, ev(1)?);
    if nullish(&a) || nullish(&i) {
        return Ok(Some(Bson::Null));
    }
    let Some(arr) = array_arg(name, a)? else {
        return Ok(Some(Bson::Null));
    };
    let Some(i) = i.as_ref().and_then(to_exact_i64) else {
        return Err(CommandError::new(
            28690,
            "$arrayElemAt's second argument must be a numeric value",
        ));
    };
    let idx = if i < 0 { arr.len() as i64 + i } else { i };
    Ok(if idx < 0 {
        None
    } else {
        arr.get(idx as usize).cloned()
    })
}

/// `$first` and `$last` of an array (missing when it is empty).
pub(super) fn first_last(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    let a = ev(0)?;
    if nullish(&a) {
        return Ok(Some(Bson::Null));
    }
    let Some(arr) = array_arg(name, a)? else {
        return Ok(Some(Bson::Null));
    };
    Ok(if name == "$first" {
        arr.first().cloned()
    } else {
        arr.last().cloned()
    })
}

/// `$concatArrays` (null if any operand is nullish).
pub(super) fn concat_arrays(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let mut out = Vec::new();
    for v in all()? {
        match array_arg(name, v)? {
            Some(a) => out.extend(a),
            None => return Ok(Some(Bson::Null)),
        }
    }
    Ok(Some(Bson::Array(out)))
}

/// `$in`: whether the value is an element of the array.
pub(super) fn is_in(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let (x, arr) = (ev(0)?, ev(1)?);
    let Some(Bson::Array(arr)) = arr else {
        return Err(CommandError::new(
            40081,
            "$in requires an array as a second argument",
        ));
    };
    let x = x.unwrap_or(Bson::Undefined);
    Ok(Some(Bson::Boolean(
        arr.iter().any(|e| cmp_bson(e, &x) == Ordering::Equal),
    )))
}

/// `$isArray`.
pub(super) fn is_array(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    Ok(Some(Bson::Boolean(matches!(ev(0)?, Some(Bson::Array(_))))))
}

/// `$slice` with `n` (negative: from the end) or `position, n`.
pub(super) fn slice(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    if args.len() != 2 && args.len() != 3 {
        return Err(CommandError::new(
            28667,
            "Expression $slice takes at least 2 arguments, and at most 3",
        ));
    }
    let a = ev(0)?;
    let Some(arr) = array_arg(name, a)? else {
        return Ok(Some(Bson::Null));
    };
    let n1 = ev(1)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
    let len = arr.len() as i64;
    let (start, count) = if args.len() == 2 {
        if n1 >= 0 {
            (0, n1)
        } else {
            ((len + n1).max(0), -n1)
        }
    } else {
        let n2 = ev(2)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
        let s = if n1 < 0 {
            (len + n1).max(0)
        } else {
            n1.min(len)
        };
        (s, n2.max(0))
    };
    let end = (start + count).min(len);
    Ok(Some(Bson::Array(
        arr[start as usize..end.max(start) as usize].to_vec(),
    )))
}

/// `$reverseArray`.
pub(super) fn reverse_array(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let Some(mut arr) = array_arg(name, ev(0)?)? else {
        return Ok(Some(Bson::Null));
    };
    arr.reverse();
    Ok(Some(Bson::Array(arr)))
}

/// `$indexOfArray`: the index of the first equal element, or -1.
pub(super) fn index_of_array(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let Some(arr) = array_arg(name, ev(0)?)? else {
        return Ok(Some(Bson::Null));
    };
    let x = ev(1)?.unwrap_or(Bson::Undefined);
    let pos = arr.iter().position(|e| cmp_bson(e, &x) == Ordering::Equal);
    Ok(Some(Bson::Int32(pos.map(|p| p as i32).unwrap_or(-1))))
}

/// `$range`: integers from `start` (inclusive) to `end` (exclusive) by
/// `step` (default 1, not 0).
pub(super) fn range(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let start = ev(0)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
    let end = ev(1)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
    let step = if args.len() > 2 {
        ev(2)?.as_ref().and_then(to_exact_i64).unwrap_or(1)
    } else {
        1
    };
    if step == 0 {
        return Err(CommandError::new(
            34449,
            "$range requires a non-zero step value",
        ));
    }
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(Bson::Int32(i as i32));
        i += step;
    }
    Ok(Some(Bson::Array(out)))
}

/// `$sum`, `$avg`, `$min` and `$max` as expressions: over the elements of
/// their one operand if it is an array, else over their operands.
pub(super) fn accumulate(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let vals: Vec<Bson> = if args.len() == 1 {
        match ev(0)? {
            Some(Bson::Array(a)) => a,
            Some(v) => vec![v],
            None => vec![],
        }
    } else {
        all()?.into_iter().flatten().collect()
    };
    Ok(Some(match name {
        "$sum" => sum_values(vals.iter()),
        "$avg" => {
            let nums: Vec<f64> = vals.iter().filter_map(to_f64).collect();
            if nums.is_empty() {
                Bson::Null
            } else {
                Bson::Double(nums.iter().sum::<f64>() / nums.len() as f64)
            }
        }
        _ => {
            let it = vals
                .into_iter()
                .filter(|v| !matches!(v, Bson::Null | Bson::Undefined));
            let best = if name == "$min" {
                it.min_by(cmp_bson)
            } else {
                it.max_by(cmp_bson)
            };
            best.unwrap_or(Bson::Null)
        }
    }))
}

fn sum_values<'a>(vals: impl Iterator<Item = &'a Bson>) -> Bson {
    let mut acc = Bson::Int32(0);
    for v in vals {
        if crate::value::is_number(v) {
            acc = match arith(&acc, v, ArithOp::Add) {
                Some(r) => r,
                None => Bson::Double(to_f64(&acc).unwrap_or(0.0) + to_f64(v).unwrap_or(0.0)),
            };
        }
    }
    acc
}

pub(super) fn array_arg(name: &str, v: Val) -> Res<Option<Vec<Bson>>> {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::Array(a)) => Ok(Some(a)),
        Some(other) => Err(CommandError::new(
            28765,
            format!("{name} only supports arrays, not {}", type_name(&other)),
        )),
    }
}
