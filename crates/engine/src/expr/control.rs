//! Conditionals, variables and iteration: `$cond $switch $ifNull $let $map
//! $filter $reduce`.

use bson::Bson;

use super::{nullish, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{to_exact_i64, truthy, type_name};

/// `$cond`: `then` if `if` is truthy, else `else`.
pub(super) fn cond(c: &Expr, t: &Expr, e: &Expr, ctx: &EvalCtx<'_>) -> Res<Val> {
    if c.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
        t.eval(ctx)
    } else {
        e.eval(ctx)
    }
}

/// `$let`: `body` with the bindings (evaluated in the outer context) added.
pub(super) fn let_in(bindings: &[(String, Expr)], body: &Expr, ctx: &EvalCtx<'_>) -> Res<Val> {
    let mut vals = Vec::new();
    for (k, e) in bindings {
        vals.push((k.clone(), e.eval(ctx)?.unwrap_or(Bson::Null)));
    }
    body.eval(&ctx.with(vals))
}

/// `$map`: `body` for each element of `input` bound to `var`.
pub(super) fn map(input: &Expr, var: &str, body: &Expr, ctx: &EvalCtx<'_>) -> Res<Val> {
    match input.eval(ctx)? {
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(Bson::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for el in a {
                let c = ctx.with(vec![(var.to_string(), el)]);
                out.push(body.eval(&c)?.unwrap_or(Bson::Null));
            }
            Ok(Some(Bson::Array(out)))
        }
        Some(other) => Err(CommandError::new(
            16883,
            format!("input to $map must be an array not {}", type_name(&other)),
        )),
    }
}

/// `$filter`: the elements of `input` (bound to `var`) for which `cond` is
/// truthy, at most `limit` of them.
pub(super) fn filter(
    input: &Expr,
    var: &str,
    cond: &Expr,
    limit: Option<&Expr>,
    ctx: &EvalCtx<'_>,
) -> Res<Val> {
    let limit = match limit {
        Some(l) => match l.eval(ctx)?.as_ref().and_then(to_exact_i64) {
            Some(n) if n > 0 => Some(n as usize),
            _ => {
                return Err(CommandError::new(
                    327391,
                    "$filter: limit must be greater than 0",
                ))
            }
        },
        None => None,
    };
    match input.eval(ctx)? {
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(Bson::Array(a)) => {
            let mut out = Vec::new();
            for el in a {
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
                let c = ctx.with(vec![(var.to_string(), el.clone())]);
                if cond.eval(&c)?.map(|v| truthy(&v)).unwrap_or(false) {
                    out.push(el);
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        Some(other) => Err(CommandError::new(
            28651,
            format!(
                "input to $filter must be an array not {}",
                type_name(&other)
            ),
        )),
    }
}

/// `$reduce`: folds `input` into `initial` with `body` (`$$value`, `$$this`).
pub(super) fn reduce(input: &Expr, initial: &Expr, body: &Expr, ctx: &EvalCtx<'_>) -> Res<Val> {
    match input.eval(ctx)? {
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(Bson::Array(a)) => {
            let mut acc = initial.eval(ctx)?.unwrap_or(Bson::Null);
            for el in a {
                let c = ctx.with(vec![("value".into(), acc), ("this".into(), el)]);
                acc = body.eval(&c)?.unwrap_or(Bson::Null);
            }
            Ok(Some(acc))
        }
        Some(other) => Err(CommandError::new(
            40080,
            format!(
                "$reduce requires an array as input, found: {}",
                type_name(&other)
            ),
        )),
    }
}

/// `$switch`: the `then` of the first truthy `case`, else `default` (40066
/// without one).
pub(super) fn switch(
    branches: &[(Expr, Expr)],
    default: Option<&Expr>,
    ctx: &EvalCtx<'_>,
) -> Res<Val> {
    for (c, t) in branches {
        if c.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
            return t.eval(ctx);
        }
    }
    match default {
        Some(d) => d.eval(ctx),
        None => Err(CommandError::new(
            40066,
            "$switch could not find a matching branch for an input, and no default was specified.",
        )),
    }
}

/// `$ifNull`: the first operand that is not nullish, else the last one.
pub(super) fn if_null(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    if args.len() < 2 {
        return Err(CommandError::new(
            1257300,
            "$ifNull needs at least two arguments",
        ));
    }
    for (i, a) in args.iter().enumerate() {
        let v = a.eval(ctx)?;
        if !nullish(&v) || i == args.len() - 1 {
            return Ok(v);
        }
    }
    Ok(Some(Bson::Null))
}
