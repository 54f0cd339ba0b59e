//! Object operators: `$mergeObjects $objectToArray $arrayToObject $getField`.

use bson::{Bson, Document};

use super::array::array_arg;
use super::{EvalCtx, Expr, Val};
use crate::error::{CommandError, Res};
use crate::value::type_name;

/// `$mergeObjects`: later fields win; nulls are skipped, and one array
/// operand is merged element by element.
pub(super) fn merge_objects(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    let mut out = Document::new();
    for v in all()? {
        match v {
            None | Some(Bson::Null) => {}
            Some(Bson::Document(d)) => {
                for (k, x) in d {
                    out.insert(k, x);
                }
            }
            Some(Bson::Array(a)) if args.len() == 1 => {
                for el in a {
                    if let Bson::Document(d) = el {
                        for (k, x) in d {
                            out.insert(k, x);
                        }
                    }
                }
            }
            Some(other) => {
                return Err(CommandError::new(
                    40400,
                    format!(
                        "$mergeObjects requires object inputs, but input {} is of type {}",
                        crate::value::mongo_fmt(&other),
                        type_name(&other)
                    ),
                ))
            }
        }
    }
    Ok(Some(Bson::Document(out)))
}

/// `$objectToArray`: `[{k, v}, ...]` in field order.
pub(super) fn object_to_array(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    match ev(0)? {
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(Bson::Document(d)) => Ok(Some(Bson::Array(
            d.into_iter()
                .map(|(k, v)| Bson::Document(bson::doc! {"k": k, "v": v}))
                .collect(),
        ))),
        Some(other) => Err(CommandError::new(
            40390,
            format!(
                "$objectToArray requires a document input, found: {}",
                type_name(&other)
            ),
        )),
    }
}

/// `$arrayToObject`: from `[{k, v}, ...]` or `[[k, v], ...]`.
pub(super) fn array_to_object(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let Some(arr) = array_arg(name, ev(0)?)? else {
        return Ok(Some(Bson::Null));
    };
    let mut out = Document::new();
    for el in arr {
        match el {
            Bson::Document(d) => {
                let (Some(Bson::String(k)), Some(v)) = (d.get("k"), d.get("v")) else {
                    return Err(CommandError::new(
                        40392,
                        "$arrayToObject requires an object keys of 'k' and 'v'",
                    ));
                };
                out.insert(k.clone(), v.clone());
            }
            Bson::Array(pair) if pair.len() == 2 => {
                let Bson::String(k) = &pair[0] else {
                    return Err(CommandError::new(40395, "$arrayToObject requires an array of key-value pairs, where the key must be of type string"));
                };
                out.insert(k.clone(), pair[1].clone());
            }
            _ => {
                return Err(CommandError::new(
                    40398,
                    "Unrecognised input type format for $arrayToObject",
                ))
            }
        }
    }
    Ok(Some(Bson::Document(out)))
}

/// `$getField` (parsed into `[field, input]`): missing when `input` is not a
/// document, null when it is nullish.
pub(super) fn get_field(args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let Some(Bson::String(field)) = ev(0)? else {
        return Err(CommandError::new(
            5654602,
            "$getField requires 'field' to evaluate to type String",
        ));
    };
    match ev(1)? {
        Some(Bson::Document(d)) => Ok(d.get(&field).cloned()),
        None | Some(Bson::Null) => Ok(Some(Bson::Null)),
        Some(_) => Ok(None),
    }
}
