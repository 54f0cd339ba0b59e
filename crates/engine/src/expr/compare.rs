//! Comparison (`$eq $ne $gt $gte $lt $lte $cmp`) and boolean (`$and $or
//! $not`) operators.

use std::cmp::Ordering;

use bson::Bson;

use super::{arity, EvalCtx, Expr, Val};
use crate::error::Res;
use crate::value::{cmp_bson, truthy};

/// `$eq $ne $gt $gte $lt $lte` (a boolean) and `$cmp` (-1, 0 or 1), in BSON
/// order with missing below null.
pub(super) fn compare(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let o = cmp_val(&ev(0)?, &ev(1)?);
    Ok(Some(match name {
        "$eq" => Bson::Boolean(o == Ordering::Equal),
        "$ne" => Bson::Boolean(o != Ordering::Equal),
        "$gt" => Bson::Boolean(o == Ordering::Greater),
        "$gte" => Bson::Boolean(o != Ordering::Less),
        "$lt" => Bson::Boolean(o == Ordering::Less),
        "$lte" => Bson::Boolean(o != Ordering::Greater),
        _ => Bson::Int32(match o {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }),
    }))
}

/// `$and`: true if every operand is truthy (stops at the first that is not).
pub(super) fn and(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    for a in args {
        if !a.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
            return Ok(Some(Bson::Boolean(false)));
        }
    }
    Ok(Some(Bson::Boolean(true)))
}

/// `$or`: true if an operand is truthy (stops at the first that is).
pub(super) fn or(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    for a in args {
        if a.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
            return Ok(Some(Bson::Boolean(true)));
        }
    }
    Ok(Some(Bson::Boolean(false)))
}

/// `$not`: the negated truthiness of its one operand.
pub(super) fn not(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 1)?;
    Ok(Some(Bson::Boolean(
        !ev(0)?.map(|v| truthy(&v)).unwrap_or(false),
    )))
}

/// Missing compares below null in expressions.
fn cmp_val(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_bson(x, y),
    }
}
