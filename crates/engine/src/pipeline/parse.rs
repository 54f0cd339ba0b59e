//! Parsing of pipeline stages.

use bson::{Bson, Document};

use super::{Acc, Pipeline, Stage};
use crate::error::{CommandError, Res};
use crate::expr::Expr;
use crate::matcher::Filter;
use crate::path::split;
use crate::projection::{Flavor, Projection};
use crate::sort::SortSpec;
use crate::value::{to_exact_i64, to_f64};

pub(super) fn stage_doc(v: &Bson) -> Res<(&str, &Bson)> {
    match v {
        Bson::Document(d) if d.len() == 1 => {
            let (k, x) = d.iter().next().unwrap();
            Ok((k.as_str(), x))
        }
        _ => Err(CommandError::new(
            40323,
            "A pipeline stage specification object must contain exactly one field.",
        )),
    }
}

fn parse_add_fields(name: &str, v: &Bson) -> Res<Vec<(Vec<String>, Expr)>> {
    let Bson::Document(d) = v else {
        return Err(CommandError::new(
            40272,
            format!(
                "{name} specification stage must be an object, got {}",
                crate::value::type_name(v)
            ),
        ));
    };
    let mut out = Vec::new();
    flatten_fields(d, &[], &mut out)?;
    Ok(out)
}

fn flatten_fields(d: &Document, prefix: &[String], out: &mut Vec<(Vec<String>, Expr)>) -> Res<()> {
    for (k, v) in d {
        if k.starts_with('$') {
            return Err(CommandError::new(
                16410,
                "FieldPath field names may not start with '$'. Consider using $getField or $setField.",
            ));
        }
        let mut path = prefix.to_vec();
        path.extend(split(k));
        match v {
            Bson::Document(sub)
                if !sub.is_empty() && !sub.keys().next().unwrap().starts_with('$') =>
            {
                flatten_fields(sub, &path, out)?;
            }
            other => out.push((path, Expr::parse(other)?)),
        }
    }
    Ok(())
}

fn parse_acc(name: &str) -> Option<Acc> {
    Some(match name {
        "$sum" => Acc::Sum,
        "$avg" => Acc::Avg,
        "$min" => Acc::Min,
        "$max" => Acc::Max,
        "$first" => Acc::First,
        "$last" => Acc::Last,
        "$push" => Acc::Push,
        "$addToSet" => Acc::AddToSet,
        "$count" => Acc::Count,
        "$mergeObjects" => Acc::MergeObjects,
        _ => return None,
    })
}

/// Parses stage `index` of a pipeline, `{name: arg}`.
pub(super) fn parse_stage(name: &str, arg: &Bson, index: usize) -> Res<Stage> {
    match name {
        "$match" => parse_match(arg),
        "$project" => parse_project(arg),
        "$addFields" | "$set" => Ok(Stage::AddFields(parse_add_fields(name, arg)?)),
        "$unset" => parse_unset(arg),
        "$sort" => parse_sort(arg),
        "$skip" => parse_skip(arg),
        "$limit" => parse_limit(arg),
        "$group" => parse_group(arg),
        "$count" => parse_count(arg),
        "$unwind" => parse_unwind(arg),
        "$replaceRoot" => parse_replace_root(arg),
        "$replaceWith" => Ok(Stage::ReplaceRoot(Expr::parse(arg)?)),
        "$sortByCount" => Ok(Stage::SortByCount(Expr::parse(arg)?)),
        "$lookup" => parse_lookup(arg),
        "$facet" => parse_facet(arg),
        "$documents" => parse_documents(arg, index),
        "$out" | "$merge" | "$changeStream" | "$collStats" | "$indexStats" | "$currentOp"
        | "$listSessions" | "$planCacheStats" | "$search" | "$geoNear" | "$graphLookup"
        | "$unionWith" | "$bucket" | "$bucketAuto" | "$sample" | "$redact" | "$densify"
        | "$fill" | "$setWindowFields" => Err(CommandError::new(
            115,
            format!("{name} is not supported by holdfast-sim"),
        )),
        other => Err(CommandError::new(
            40324,
            format!("Unrecognized pipeline stage name: '{other}'"),
        )),
    }
}

/// `$match: {filter}`.
fn parse_match(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            15959,
            "the match filter must be an expression in an object",
        ));
    };
    Ok(Stage::Match(Filter::parse(d)?))
}

/// `$project: {spec}`.
fn parse_project(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            15969,
            "$project specification must be an object",
        ));
    };
    Ok(Stage::Project(
        Projection::parse(d, Flavor::Project)?.expect("non-empty"),
    ))
}

/// `$unset: "path"` or `["path", ...]` (an exclusion projection).
fn parse_unset(arg: &Bson) -> Res<Stage> {
    let paths: Vec<String> =
        match arg {
            Bson::String(s) => vec![s.clone()],
            Bson::Array(a) if !a.is_empty() && a.iter().all(|x| matches!(x, Bson::String(_))) => {
                a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
            }
            _ => return Err(CommandError::new(
                31002,
                "$unset specification must be a string or an array containing only string values",
            )),
        };
    Ok(Stage::Project(Projection::exclusion_of(&paths)?))
}

/// `$sort: {key: 1 | -1, ...}` (at least one key).
fn parse_sort(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            15973,
            "the $sort key specification must be an object",
        ));
    };
    Ok(match SortSpec::parse(d)? {
        Some(s) => Stage::Sort(s),
        None => {
            return Err(CommandError::new(
                15976,
                "$sort stage must have at least one sort key",
            ))
        }
    })
}

/// `$skip: n` (a number, not negative).
fn parse_skip(arg: &Bson) -> Res<Stage> {
    Ok(match to_f64(arg) {
        None => {
            return Err(CommandError::new(
                15972,
                format!(
                    "Argument to $skip must be a number not {}",
                    crate::value::type_name(arg)
                ),
            ))
        }
        Some(f) if f < 0.0 => {
            return Err(CommandError::new(
                15956,
                format!(
                    "Argument to $skip cannot be negative: {}",
                    crate::value::mongo_fmt(arg)
                ),
            ))
        }
        Some(_) => Stage::Skip(to_exact_i64(arg).unwrap_or(0) as u64),
    })
}

/// `$limit: n` (a positive number).
fn parse_limit(arg: &Bson) -> Res<Stage> {
    Ok(match to_f64(arg) {
        None => {
            return Err(CommandError::new(
                15957,
                "the limit must be specified as a number",
            ))
        }
        Some(f) if f <= 0.0 => return Err(CommandError::new(15958, "the limit must be positive")),
        Some(_) => Stage::Limit(to_exact_i64(arg).unwrap_or(0) as u64),
    })
}

/// `$group: {_id: expr, field: {$acc: expr}, ...}`.
fn parse_group(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            15947,
            "a group's fields must be specified in an object",
        ));
    };
    let Some(idv) = d.get("_id") else {
        return Err(CommandError::new(
            15955,
            "a group specification must include an _id",
        ));
    };
    let id = Expr::parse(idv)?;
    let mut accs = Vec::new();
    for (k, v) in d {
        if k == "_id" {
            continue;
        }
        if k.contains('.') {
            return Err(CommandError::new(
                40235,
                format!("The field name '{k}' cannot contain '.'"),
            ));
        }
        let Bson::Document(a) = v else {
            return Err(CommandError::new(
                40234,
                format!("The field '{k}' must be an accumulator object"),
            ));
        };
        if a.len() != 1 {
            return Err(CommandError::new(
                40238,
                format!("The field '{k}' must specify one accumulator"),
            ));
        }
        let (op, x) = a.iter().next().unwrap();
        let Some(acc) = parse_acc(op) else {
            return Err(CommandError::new(
                15952,
                format!("unknown group operator '{op}'"),
            ));
        };
        let e = if acc == Acc::Count {
            match x {
                Bson::Document(cd) if cd.is_empty() => Expr::Lit(Bson::Null),
                _ => {
                    return Err(CommandError::new(
                        40285,
                        "$count takes no arguments, i.e. $count:{}",
                    ))
                }
            }
        } else {
            Expr::parse(x)?
        };
        accs.push((k.clone(), acc, e));
    }
    Ok(Stage::Group { id, accs })
}

/// `$count: "field"` (non-empty, no `$` prefix, no dot).
fn parse_count(arg: &Bson) -> Res<Stage> {
    let Bson::String(s) = arg else {
        return Err(CommandError::new(
            40156,
            "the count field must be a non-empty string",
        ));
    };
    if s.is_empty() {
        return Err(CommandError::new(
            40157,
            "the count field must be a non-empty string",
        ));
    }
    if s.starts_with('$') {
        return Err(CommandError::new(
            40158,
            "the count field cannot be a $-prefixed path",
        ));
    }
    if s.contains('.') {
        return Err(CommandError::new(
            40160,
            "the count field cannot contain '.'",
        ));
    }
    Ok(Stage::Count(s.clone()))
}

/// `$unwind: "$path"` or `{path, includeArrayIndex, preserveNullAndEmptyArrays}`.
fn parse_unwind(arg: &Bson) -> Res<Stage> {
    let (path, index, preserve) = match arg {
        Bson::String(s) => (s.clone(), None, false),
        Bson::Document(d) => {
            let Some(Bson::String(p)) = d.get("path") else {
                return Err(CommandError::new(
                    28812,
                    "no path specified to $unwind stage",
                ));
            };
            let index = match d.get("includeArrayIndex") {
                None => None,
                Some(Bson::String(s)) if !s.is_empty() && !s.starts_with('$') => Some(s.clone()),
                Some(_) => {
                    return Err(CommandError::new(28810, "includeArrayIndex option to $unwind stage should be a non-empty string not starting with '$'"))
                }
            };
            let preserve = match d.get("preserveNullAndEmptyArrays") {
                None => false,
                Some(Bson::Boolean(b)) => *b,
                Some(_) => return Err(CommandError::new(
                    28809,
                    "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage",
                )),
            };
            for k in d.keys() {
                if !matches!(
                    k.as_str(),
                    "path" | "includeArrayIndex" | "preserveNullAndEmptyArrays"
                ) {
                    return Err(CommandError::new(
                        28811,
                        format!("unrecognized option to $unwind stage: {k}"),
                    ));
                }
            }
            (p.clone(), index, preserve)
        }
        _ => {
            return Err(CommandError::new(
                15981,
                "expected either a string or an object as specification for $unwind stage",
            ))
        }
    };
    let Some(p) = path.strip_prefix('$') else {
        return Err(CommandError::new(
            28818,
            format!("path option to $unwind stage should be prefixed with a '$': {path}"),
        ));
    };
    Ok(Stage::Unwind {
        path: split(p),
        index,
        preserve,
    })
}

/// `$replaceRoot: {newRoot: expr}`.
fn parse_replace_root(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            40229,
            "expected an object as specification for $replaceRoot stage",
        ));
    };
    let Some(nr) = d.get("newRoot") else {
        return Err(CommandError::new(
            40231,
            "no newRoot specified for the $replaceRoot stage",
        ));
    };
    Ok(Stage::ReplaceRoot(Expr::parse(nr)?))
}

/// `$lookup: {from, localField, foreignField, pipeline, as}` (no `let`).
fn parse_lookup(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::failed_to_parse(
            "the $lookup specification must be an Object",
        ));
    };
    let s = |k: &str| -> Res<Option<String>> {
        match d.get(k) {
            None => Ok(None),
            Some(Bson::String(x)) => Ok(Some(x.clone())),
            Some(_) => Err(CommandError::failed_to_parse(format!(
                "$lookup argument '{k}' must be a string"
            ))),
        }
    };
    if d.contains_key("let") {
        return Err(CommandError::new(
            115,
            "$lookup with 'let' is not supported by holdfast-sim",
        ));
    }
    let Some(from) = s("from")? else {
        return Err(CommandError::failed_to_parse("$lookup requires 'from'"));
    };
    let Some(as_) = s("as")? else {
        return Err(CommandError::failed_to_parse(
            "must specify 'as' field for a $lookup",
        ));
    };
    let pipeline = match d.get("pipeline") {
        Some(Bson::Array(a)) => Some(Pipeline::parse(a)?),
        Some(_) => {
            return Err(CommandError::failed_to_parse(
                "$lookup argument 'pipeline' must be an array",
            ))
        }
        None => None,
    };
    let local = s("localField")?;
    let foreign = s("foreignField")?;
    if local.is_some() != foreign.is_some() || (local.is_none() && pipeline.is_none()) {
        return Err(CommandError::failed_to_parse(
            "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified",
        ));
    }
    Ok(Stage::Lookup {
        from,
        local: local.map(|l| split(&l)),
        foreign,
        pipeline,
        as_: split(&as_),
    })
}

/// `$facet: {name: [stages], ...}`.
fn parse_facet(arg: &Bson) -> Res<Stage> {
    let Bson::Document(d) = arg else {
        return Err(CommandError::new(
            15947,
            "the $facet specification must be an object",
        ));
    };
    let mut facets = Vec::new();
    for (k, v) in d {
        let Bson::Array(a) = v else {
            return Err(CommandError::new(
                40170,
                format!(
                    "arguments to $facet must be arrays, {k} is type {}",
                    crate::value::type_name(v)
                ),
            ));
        };
        facets.push((k.clone(), Pipeline::parse(a)?));
    }
    Ok(Stage::Facet(facets))
}

/// `$documents: [docs]`, only as the first stage (`index` 0).
fn parse_documents(arg: &Bson, index: usize) -> Res<Stage> {
    if index != 0 {
        return Err(CommandError::new(
            40602,
            "$documents is only valid as the first stage in a pipeline",
        ));
    }
    let Bson::Array(a) = arg else {
        return Err(CommandError::new(5858203, "an array is expected"));
    };
    let mut docs = Vec::new();
    for x in a {
        match x {
            Bson::Document(d) => docs.push(d.clone()),
            _ => {
                return Err(CommandError::new(
                    5858203,
                    "an array of documents is expected",
                ))
            }
        }
    }
    Ok(Stage::Documents(docs))
}
