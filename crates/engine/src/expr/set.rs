//! Set operators: `$setUnion $setIntersection $setDifference $setIsSubset
//! $setEquals $anyElementTrue $allElementsTrue`.

use bson::Bson;

use super::array::array_arg;
use super::{arity, EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::{key_of, truthy};

/// `$setUnion`, `$setIntersection`, `$setDifference` (null if an operand is
/// nullish), `$setIsSubset` and `$setEquals` (every operand must be an array).
pub(super) fn set_op(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let mut arrays = Vec::new();
    for v in all()? {
        match array_arg(name, v)? {
            Some(a) => arrays.push(a),
            None if matches!(name, "$setUnion" | "$setIntersection" | "$setDifference") => {
                return Ok(Some(Bson::Null))
            }
            None => {
                return Err(CommandError::new(
                    17310,
                    format!("All operands of {name} must be arrays."),
                ))
            }
        }
    }
    let keys = |a: &Vec<Bson>| {
        a.iter()
            .map(key_of)
            .collect::<std::collections::HashSet<_>>()
    };
    Ok(Some(match name {
        "$setUnion" => Bson::Array(set_of(&arrays.concat())),
        "$setIntersection" => {
            let mut cur = arrays.first().map(|a| set_of(a)).unwrap_or_default();
            for a in arrays.iter().skip(1) {
                let k = keys(a);
                cur.retain(|v| k.contains(&key_of(v)));
            }
            Bson::Array(cur)
        }
        "$setDifference" => {
            arity(name, args, 2)?;
            let k = keys(&arrays[1]);
            Bson::Array(
                set_of(&arrays[0])
                    .into_iter()
                    .filter(|v| !k.contains(&key_of(v)))
                    .collect(),
            )
        }
        "$setIsSubset" => {
            arity(name, args, 2)?;
            let k = keys(&arrays[1]);
            Bson::Boolean(arrays[0].iter().all(|v| k.contains(&key_of(v))))
        }
        _ => {
            let first = arrays.first().map(keys).unwrap_or_default();
            Bson::Boolean(arrays.iter().all(|a| keys(a) == first))
        }
    }))
}

/// `$anyElementTrue` and `$allElementsTrue`.
pub(super) fn any_all_elements_true(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let Some(Bson::Array(a)) = ev(0)? else {
        return Err(CommandError::new(
            17041,
            format!("{name}'s argument must be an array"),
        ));
    };
    Ok(Some(Bson::Boolean(if name == "$anyElementTrue" {
        a.iter().any(truthy)
    } else {
        a.iter().all(truthy)
    })))
}

fn set_of(items: &[Bson]) -> Vec<Bson> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|v| seen.insert(key_of(v)))
        .cloned()
        .collect()
}
