//! Arithmetic: `$add $subtract $multiply $divide $mod $pow` and the
//! one-number operators (`$abs $ceil $floor $round $trunc $sqrt $exp $ln
//! $log10`). `$add` and `$subtract` also take dates.

use bson::Bson;

use super::{arity, nullish, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{arith, to_exact_i64, to_f64, type_name, ArithOp};

/// `$add`: numbers, and at most one date (the sum is then a date,
/// milliseconds added).
pub(super) fn add(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let vals = all()?;
    let mut acc = Bson::Int32(0);
    let mut date: Option<i64> = None;
    for v in &vals {
        match v {
            None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
            Some(Bson::DateTime(d)) => {
                if date.is_some() {
                    return Err(CommandError::new(
                        16612,
                        "only one date allowed in an $add expression",
                    ));
                }
                date = Some(d.timestamp_millis());
            }
            Some(x) if crate::value::is_number(x) => {
                acc = arith(&acc, x, ArithOp::Add).unwrap_or_else(|| {
                    Bson::Double(to_f64(&acc).unwrap_or(0.0) + to_f64(x).unwrap_or(0.0))
                })
            }
            Some(x) => {
                return Err(CommandError::new(
                    16554,
                    format!(
                        "$add only supports numeric or date types, not {}",
                        type_name(x)
                    ),
                ))
            }
        }
    }
    Ok(Some(match date {
        Some(ms) => Bson::DateTime(bson::DateTime::from_millis(
            ms + to_f64(&acc).unwrap_or(0.0).round() as i64,
        )),
        None => acc,
    }))
}

/// `$subtract`: two numbers, a date minus milliseconds (a date), or a date
/// minus a date (milliseconds, a long).
pub(super) fn subtract(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let (a, b) = (ev(0)?, ev(1)?);
    if nullish(&a) || nullish(&b) {
        return Ok(Some(Bson::Null));
    }
    let (a, b) = (a.unwrap(), b.unwrap());
    match (&a, &b) {
        (Bson::DateTime(x), Bson::DateTime(y)) => Ok(Some(Bson::Int64(
            x.timestamp_millis() - y.timestamp_millis(),
        ))),
        (Bson::DateTime(x), n) if crate::value::is_number(n) => Ok(Some(Bson::DateTime(
            bson::DateTime::from_millis(x.timestamp_millis() - to_f64(n).unwrap().round() as i64),
        ))),
        _ if crate::value::is_number(&a) && crate::value::is_number(&b) => {
            let neg = arith(&b, &Bson::Int32(-1), ArithOp::Mul)
                .unwrap_or(Bson::Double(-to_f64(&b).unwrap()));
            Ok(Some(arith(&a, &neg, ArithOp::Add).unwrap_or_else(|| {
                Bson::Double(to_f64(&a).unwrap() - to_f64(&b).unwrap())
            })))
        }
        _ => Err(CommandError::new(
            16556,
            format!(
                "cant $subtract a {} from a {}",
                type_name(&b),
                type_name(&a)
            ),
        )),
    }
}

/// `$multiply`: the product of numbers (null if any operand is nullish).
pub(super) fn multiply(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let mut acc = Bson::Int32(1);
    for v in all()? {
        match v {
            None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
            Some(x) if crate::value::is_number(&x) => {
                acc = arith(&acc, &x, ArithOp::Mul).unwrap_or_else(|| {
                    Bson::Double(to_f64(&acc).unwrap_or(0.0) * to_f64(&x).unwrap_or(0.0))
                })
            }
            Some(x) => return Err(num_err("$multiply", &x)),
        }
    }
    Ok(Some(acc))
}

/// `$divide`, `$mod` and `$pow`: two numeric operands.
pub(super) fn divide_mod_pow(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    arity(name, args, 2)?;
    let (a, b) = (ev(0)?, ev(1)?);
    if nullish(&a) || nullish(&b) {
        return Ok(Some(Bson::Null));
    }
    let (a, b) = (a.unwrap(), b.unwrap());
    let (Some(x), Some(y)) = (to_f64(&a), to_f64(&b)) else {
        let bad = if to_f64(&a).is_none() { &a } else { &b };
        return Err(num_err(name, bad));
    };
    match name {
        "$divide" => {
            if y == 0.0 {
                return Err(CommandError::bad_value("can't $divide by zero"));
            }
            Ok(Some(Bson::Double(x / y)))
        }
        "$mod" => {
            if y == 0.0 {
                return Err(CommandError::new(16610, "can't $mod by zero"));
            }
            match (&a, &b) {
                (Bson::Int32(p), Bson::Int32(q)) => Ok(Some(Bson::Int32(p.wrapping_rem(*q)))),
                (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
                    Ok(Some(Bson::Int64(
                        to_exact_i64(&a)
                            .unwrap()
                            .wrapping_rem(to_exact_i64(&b).unwrap()),
                    )))
                }
                _ => Ok(Some(Bson::Double(x % y))),
            }
        }
        _ => {
            let r = x.powf(y);
            match (&a, &b) {
                (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_))
                    if y >= 0.0 && r.abs() < 9.0e18 =>
                {
                    let i = r as i64;
                    Ok(Some(match (&a, &b, i32::try_from(i)) {
                        (Bson::Int32(_), Bson::Int32(_), Ok(s)) => Bson::Int32(s),
                        _ => Bson::Int64(i),
                    }))
                }
                _ => Ok(Some(Bson::Double(r))),
            }
        }
    }
}

/// The one-number operators `$abs $ceil $floor $sqrt $exp $ln $log10`, and
/// `$round`/`$trunc` with their optional number of places.
pub(super) fn unary(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let a = ev(0)?;
    if nullish(&a) {
        return Ok(Some(Bson::Null));
    }
    let a = a.unwrap();
    let Some(f) = to_f64(&a) else {
        return Err(num_err(name, &a));
    };
    let places = if args.len() > 1 {
        ev(1)?.as_ref().and_then(to_exact_i64).unwrap_or(0)
    } else {
        0
    };
    match (name, &a) {
        ("$abs", Bson::Int32(i)) => Ok(Some(match i.checked_abs() {
            Some(x) => Bson::Int32(x),
            None => Bson::Int64(i64::from(*i).abs()),
        })),
        ("$abs", Bson::Int64(i)) => Ok(Some(Bson::Int64(i.wrapping_abs()))),
        ("$ceil" | "$floor" | "$round" | "$trunc", Bson::Int32(_) | Bson::Int64(_)) => {
            Ok(Some(a.clone()))
        }
        _ => {
            let r = match name {
                "$abs" => f.abs(),
                "$ceil" => f.ceil(),
                "$floor" => f.floor(),
                "$sqrt" => f.sqrt(),
                "$exp" => f.exp(),
                "$ln" => f.ln(),
                "$log10" => f.log10(),
                "$round" => round_to(f, places),
                _ => {
                    let m = 10f64.powi(places as i32);
                    (f * m).trunc() / m
                }
            };
            Ok(Some(match a {
                Bson::Decimal128(_) => crate::value::f64_to_decimal(r),
                _ => Bson::Double(r),
            }))
        }
    }
}

fn num_err(name: &str, v: &Bson) -> CommandError {
    CommandError::new(
        16554,
        format!("{name} only supports numeric types, not {}", type_name(v)),
    )
}

fn round_to(f: f64, places: i64) -> f64 {
    let m = 10f64.powi(places as i32);
    let x = f * m;
    // Round half to even, like MongoDB.
    let r = x.round();
    let r = if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        r - x.signum()
    } else {
        r
    };
    r / m
}
