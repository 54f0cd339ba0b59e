//! Parsing of aggregation expressions into [`Expr`] trees.

use bson::{Bson, Document};

use super::Expr;
use crate::error::{CommandError, Res};
use crate::path::split;

const SIMPLE_OPS: &[&str] = &[
    "$add",
    "$subtract",
    "$multiply",
    "$divide",
    "$mod",
    "$abs",
    "$ceil",
    "$floor",
    "$round",
    "$trunc",
    "$sqrt",
    "$pow",
    "$exp",
    "$ln",
    "$log10",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$cmp",
    "$and",
    "$or",
    "$not",
    "$ifNull",
    "$concat",
    "$toLower",
    "$toUpper",
    "$substr",
    "$substrBytes",
    "$substrCP",
    "$strLenBytes",
    "$strLenCP",
    "$split",
    "$strcasecmp",
    "$size",
    "$arrayElemAt",
    "$first",
    "$last",
    "$concatArrays",
    "$in",
    "$isArray",
    "$slice",
    "$reverseArray",
    "$indexOfArray",
    "$range",
    "$sum",
    "$avg",
    "$min",
    "$max",
    "$mergeObjects",
    "$objectToArray",
    "$arrayToObject",
    "$type",
    "$toString",
    "$toInt",
    "$toLong",
    "$toDouble",
    "$toBool",
    "$toDecimal",
    "$isNumber",
    "$setUnion",
    "$setIntersection",
    "$setDifference",
    "$setIsSubset",
    "$setEquals",
    "$anyElementTrue",
    "$allElementsTrue",
    "$toObjectId",
];

fn named_args(name: &str, v: &Bson, allowed: &[&str]) -> Res<Document> {
    let Bson::Document(d) = v else {
        return Err(CommandError::failed_to_parse(format!(
            "{name} only supports an object as its argument"
        )));
    };
    for k in d.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(CommandError::failed_to_parse(format!(
                "Unrecognized parameter to {name}: {k}"
            )));
        }
    }
    Ok(d.clone())
}

fn req(d: &Document, name: &str, field: &str) -> Res<Expr> {
    match d.get(field) {
        Some(v) => Expr::parse(v),
        None => Err(CommandError::failed_to_parse(format!(
            "Missing '{field}' parameter to {name}"
        ))),
    }
}

fn var_name(d: &Document, field: &str, default: &str) -> Res<String> {
    match d.get(field) {
        None => Ok(default.to_string()),
        Some(Bson::String(s)) => Ok(s.clone()),
        Some(_) => Err(CommandError::failed_to_parse(format!(
            "'{field}' must be a string"
        ))),
    }
}

impl Expr {
    /// Parses an aggregation expression: `"$path"`, `"$$var.path"`, `{$op:
    /// args}`, an expression object or array, or a literal.
    pub fn parse(v: &Bson) -> Res<Expr> {
        match v {
            Bson::String(s) if s.starts_with("$$") => {
                let mut parts = split(&s[2..]);
                let name = parts.remove(0);
                Ok(Expr::Var(name, parts))
            }
            Bson::String(s) if s.starts_with('$') => {
                if s.len() == 1 {
                    return Err(CommandError::new(
                        16872,
                        "'$' by itself is not a valid FieldPath",
                    ));
                }
                Ok(Expr::Field(split(&s[1..])))
            }
            Bson::Document(d) => {
                let first = d.keys().next().cloned();
                match first {
                    Some(k) if k.starts_with('$') => {
                        if d.len() != 1 {
                            return Err(CommandError::new(
                                15983,
                                format!(
                                    "an expression specification must contain exactly one field, the name of the expression. Found {} fields in {}",
                                    d.len(),
                                    crate::value::mongo_fmt_doc(d)
                                ),
                            ));
                        }
                        Expr::parse_op(&k, d.get(&k).unwrap())
                    }
                    _ => {
                        let mut fields = Vec::new();
                        for (k, x) in d {
                            if k.starts_with('$') {
                                return Err(CommandError::new(
                                    16410,
                                    "FieldPath field names may not start with '$'. Consider using $getField or $setField.",
                                ));
                            }
                            fields.push((k.clone(), Expr::parse(x)?));
                        }
                        Ok(Expr::Obj(fields))
                    }
                }
            }
            Bson::Array(a) => Ok(Expr::Arr(a.iter().map(Expr::parse).collect::<Res<_>>()?)),
            other => Ok(Expr::Lit(other.clone())),
        }
    }

    fn parse_op(name: &str, arg: &Bson) -> Res<Expr> {
        match name {
            "$literal" => Ok(Expr::Lit(arg.clone())),
            "$cond" => parse_cond(name, arg),
            "$let" => parse_let(name, arg),
            "$map" => parse_map(name, arg),
            "$filter" => parse_filter(name, arg),
            "$reduce" => parse_reduce(name, arg),
            "$switch" => parse_switch(name, arg),
            "$getField" => parse_get_field(name, arg),
            "$regexMatch" => parse_regex_match(name, arg),
            "$trim" | "$ltrim" | "$rtrim" => parse_trim(name, arg),
            _ if SIMPLE_OPS.contains(&name) => {
                let args = match arg {
                    Bson::Array(a) => a.iter().map(Expr::parse).collect::<Res<Vec<_>>>()?,
                    other => vec![Expr::parse(other)?],
                };
                // Single-argument accumulators over one array literal keep the array as one arg.
                Ok(Expr::Op(name.into(), args))
            }
            _ => Err(CommandError::new(
                168,
                format!("Unrecognized expression '{name}'"),
            )),
        }
    }
}

/// `$cond` as `[if, then, else]` or `{if, then, else}`.
fn parse_cond(name: &str, arg: &Bson) -> Res<Expr> {
    match arg {
        Bson::Array(a) if a.len() == 3 => Ok(Expr::Cond(
            Box::new(Expr::parse(&a[0])?),
            Box::new(Expr::parse(&a[1])?),
            Box::new(Expr::parse(&a[2])?),
        )),
        Bson::Document(_) => {
            let d = named_args(name, arg, &["if", "then", "else"])?;
            Ok(Expr::Cond(
                Box::new(req(&d, name, "if")?),
                Box::new(req(&d, name, "then")?),
                Box::new(req(&d, name, "else")?),
            ))
        }
        _ => Err(CommandError::new(
            16020,
            "Expression $cond takes exactly 3 arguments.",
        )),
    }
}

/// `$let: {vars: {...}, in}`.
fn parse_let(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["vars", "in"])?;
    let Some(Bson::Document(vars)) = d.get("vars") else {
        return Err(CommandError::failed_to_parse(
            "invalid parameter: expected an object (vars)",
        ));
    };
    let mut bindings = Vec::new();
    for (k, v) in vars {
        bindings.push((k.clone(), Expr::parse(v)?));
    }
    Ok(Expr::Let(bindings, Box::new(req(&d, name, "in")?)))
}

/// `$map: {input, as (default "this"), in}`.
fn parse_map(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["input", "as", "in"])?;
    Ok(Expr::Map {
        input: Box::new(req(&d, name, "input")?),
        var: var_name(&d, "as", "this")?,
        body: Box::new(req(&d, name, "in")?),
    })
}

/// `$filter: {input, as (default "this"), cond, limit}`.
fn parse_filter(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["input", "as", "cond", "limit"])?;
    Ok(Expr::Filter {
        input: Box::new(req(&d, name, "input")?),
        var: var_name(&d, "as", "this")?,
        cond: Box::new(req(&d, name, "cond")?),
        limit: match d.get("limit") {
            Some(l) => Some(Box::new(Expr::parse(l)?)),
            None => None,
        },
    })
}

/// `$reduce: {input, initialValue, in}` (`$$value`, `$$this`).
fn parse_reduce(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["input", "initialValue", "in"])?;
    Ok(Expr::Reduce {
        input: Box::new(req(&d, name, "input")?),
        initial: Box::new(req(&d, name, "initialValue")?),
        body: Box::new(req(&d, name, "in")?),
    })
}

/// `$switch: {branches: [{case, then}, ...], default}`.
fn parse_switch(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["branches", "default"])?;
    let Some(Bson::Array(brs)) = d.get("branches") else {
        return Err(CommandError::new(
            40060,
            "$switch expected an array for 'branches'",
        ));
    };
    let mut branches = Vec::new();
    for b in brs {
        let bd = named_args("$switch branch", b, &["case", "then"])?;
        branches.push((req(&bd, name, "case")?, req(&bd, name, "then")?));
    }
    Ok(Expr::Switch {
        branches,
        default: match d.get("default") {
            Some(x) => Some(Box::new(Expr::parse(x)?)),
            None => None,
        },
    })
}

/// `$getField: "name"` or `{field, input (default `$$CURRENT`)}`, as the
/// operator `[field, input]`.
fn parse_get_field(name: &str, arg: &Bson) -> Res<Expr> {
    match arg {
        Bson::String(s) => Ok(Expr::Op(
            "$getField".into(),
            vec![
                Expr::Lit(Bson::String(s.clone())),
                Expr::Var("CURRENT".into(), vec![]),
            ],
        )),
        _ => {
            let d = named_args(name, arg, &["field", "input"])?;
            let input = match d.get("input") {
                Some(x) => Expr::parse(x)?,
                None => Expr::Var("CURRENT".into(), vec![]),
            };
            Ok(Expr::Op(
                "$getField".into(),
                vec![req(&d, name, "field")?, input],
            ))
        }
    }
}

/// `$regexMatch: {input, regex, options}`, as the operator `[input, regex,
/// options (default "")]`.
fn parse_regex_match(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["input", "regex", "options"])?;
    let opts = match d.get("options") {
        Some(o) => Expr::parse(o)?,
        None => Expr::Lit(Bson::String(String::new())),
    };
    Ok(Expr::Op(
        "$regexMatch".into(),
        vec![req(&d, name, "input")?, req(&d, name, "regex")?, opts],
    ))
}

/// `$trim`/`$ltrim`/`$rtrim: {input, chars}`, as the operator `[input, chars
/// (default null: whitespace)]`.
fn parse_trim(name: &str, arg: &Bson) -> Res<Expr> {
    let d = named_args(name, arg, &["input", "chars"])?;
    let chars = match d.get("chars") {
        Some(c) => Expr::parse(c)?,
        None => Expr::Lit(Bson::Null),
    };
    Ok(Expr::Op(name.into(), vec![req(&d, name, "input")?, chars]))
}
