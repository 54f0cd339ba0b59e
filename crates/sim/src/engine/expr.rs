//! Aggregation expressions (`"$field"`, `"$$var"`, `{$op: args}`, literals,
//! expression objects and arrays). `None` stands for a missing value.

use std::cmp::Ordering;
use std::collections::HashMap;

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::path::{get_agg, split};
use super::value::{arith, cmp_bson, key_of, to_exact_i64, to_f64, truthy, type_name, ArithOp};

pub type Val = Option<Bson>;

/// Evaluation context: `$$ROOT`/`$$CURRENT` and user variables.
#[derive(Clone, Debug)]
pub struct EvalCtx<'a> {
    pub root: &'a Document,
    vars: HashMap<String, Bson>,
}

impl<'a> EvalCtx<'a> {
    pub fn new(root: &'a Document) -> Self {
        EvalCtx {
            root,
            vars: HashMap::new(),
        }
    }

    fn with(&self, bindings: Vec<(String, Bson)>) -> EvalCtx<'a> {
        let mut c = self.clone();
        for (k, v) in bindings {
            c.vars.insert(k, v);
        }
        c
    }
}

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Lit(Bson),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Obj(Vec<(String, Expr)>),
    Arr(Vec<Expr>),
    Op(String, Vec<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Let(Vec<(String, Expr)>, Box<Expr>),
    Map {
        input: Box<Expr>,
        var: String,
        body: Box<Expr>,
    },
    Filter {
        input: Box<Expr>,
        var: String,
        cond: Box<Expr>,
        limit: Option<Box<Expr>>,
    },
    Reduce {
        input: Box<Expr>,
        initial: Box<Expr>,
        body: Box<Expr>,
    },
    Switch {
        branches: Vec<(Expr, Expr)>,
        default: Option<Box<Expr>>,
    },
}

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
                                    super::value::mongo_fmt_doc(d)
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
            "$cond" => match arg {
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
            },
            "$let" => {
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
            "$map" => {
                let d = named_args(name, arg, &["input", "as", "in"])?;
                Ok(Expr::Map {
                    input: Box::new(req(&d, name, "input")?),
                    var: var_name(&d, "as", "this")?,
                    body: Box::new(req(&d, name, "in")?),
                })
            }
            "$filter" => {
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
            "$reduce" => {
                let d = named_args(name, arg, &["input", "initialValue", "in"])?;
                Ok(Expr::Reduce {
                    input: Box::new(req(&d, name, "input")?),
                    initial: Box::new(req(&d, name, "initialValue")?),
                    body: Box::new(req(&d, name, "in")?),
                })
            }
            "$switch" => {
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
            "$getField" => match arg {
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
            },
            "$regexMatch" => {
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
            "$trim" | "$ltrim" | "$rtrim" => {
                let d = named_args(name, arg, &["input", "chars"])?;
                let chars = match d.get("chars") {
                    Some(c) => Expr::parse(c)?,
                    None => Expr::Lit(Bson::Null),
                };
                Ok(Expr::Op(name.into(), vec![req(&d, name, "input")?, chars]))
            }
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

    /// Evaluates to a value, or `None` for missing.
    pub fn eval(&self, ctx: &EvalCtx<'_>) -> Res<Val> {
        match self {
            Expr::Lit(v) => Ok(Some(v.clone())),
            Expr::Field(p) => Ok(get_agg_doc(ctx.root, p)),
            Expr::Var(name, p) => {
                let base = match name.as_str() {
                    "ROOT" | "CURRENT" => Bson::Document(ctx.root.clone()),
                    "REMOVE" => return Ok(None),
                    "NOW" => Bson::DateTime(bson::DateTime::now()),
                    other => match ctx.vars.get(other) {
                        Some(v) => v.clone(),
                        None => {
                            return Err(CommandError::new(
                                17276,
                                format!("Use of undefined variable: {other}"),
                            ))
                        }
                    },
                };
                if p.is_empty() {
                    Ok(Some(base))
                } else {
                    Ok(get_agg(&base, p))
                }
            }
            Expr::Obj(fields) => {
                let mut out = Document::new();
                for (k, e) in fields {
                    if let Some(v) = e.eval(ctx)? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Bson::Document(out)))
            }
            Expr::Arr(items) => {
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    out.push(e.eval(ctx)?.unwrap_or(Bson::Null));
                }
                Ok(Some(Bson::Array(out)))
            }
            Expr::Cond(c, t, e) => {
                if c.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
                    t.eval(ctx)
                } else {
                    e.eval(ctx)
                }
            }
            Expr::Let(bindings, body) => {
                let mut vals = Vec::new();
                for (k, e) in bindings {
                    vals.push((k.clone(), e.eval(ctx)?.unwrap_or(Bson::Null)));
                }
                body.eval(&ctx.with(vals))
            }
            Expr::Map { input, var, body } => match input.eval(ctx)? {
                None | Some(Bson::Null) => Ok(Some(Bson::Null)),
                Some(Bson::Array(a)) => {
                    let mut out = Vec::with_capacity(a.len());
                    for el in a {
                        let c = ctx.with(vec![(var.clone(), el)]);
                        out.push(body.eval(&c)?.unwrap_or(Bson::Null));
                    }
                    Ok(Some(Bson::Array(out)))
                }
                Some(other) => Err(CommandError::new(
                    16883,
                    format!("input to $map must be an array not {}", type_name(&other)),
                )),
            },
            Expr::Filter {
                input,
                var,
                cond,
                limit,
            } => {
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
                            let c = ctx.with(vec![(var.clone(), el.clone())]);
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
            Expr::Reduce {
                input,
                initial,
                body,
            } => match input.eval(ctx)? {
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
            },
            Expr::Switch { branches, default } => {
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
            Expr::Op(name, args) => eval_op(name, args, ctx),
        }
    }
}

fn get_agg_doc(doc: &Document, path: &[String]) -> Val {
    let first = doc.get(&path[0])?;
    get_agg(first, &path[1..])
}

fn nullish(v: &Val) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

fn arity(name: &str, args: &[Expr], n: usize) -> Res<()> {
    if args.len() != n {
        return Err(CommandError::new(
            16020,
            format!(
                "Expression {name} takes exactly {n} arguments. {} were passed in.",
                args.len()
            ),
        ));
    }
    Ok(())
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

fn num_err(name: &str, v: &Bson) -> CommandError {
    CommandError::new(
        16554,
        format!("{name} only supports numeric types, not {}", type_name(v)),
    )
}

fn string_of(_name: &str, v: &Val) -> Res<String> {
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
        other => super::value::mongo_fmt(other),
    }
}

fn sum_values<'a>(vals: impl Iterator<Item = &'a Bson>) -> Bson {
    let mut acc = Bson::Int32(0);
    for v in vals {
        if super::value::is_number(v) {
            acc = match arith(&acc, v, ArithOp::Add) {
                Some(r) => r,
                None => Bson::Double(to_f64(&acc).unwrap_or(0.0) + to_f64(v).unwrap_or(0.0)),
            };
        }
    }
    acc
}

fn array_arg(name: &str, v: Val) -> Res<Option<Vec<Bson>>> {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::Array(a)) => Ok(Some(a)),
        Some(other) => Err(CommandError::new(
            28765,
            format!("{name} only supports arrays, not {}", type_name(&other)),
        )),
    }
}

fn set_of(items: &[Bson]) -> Vec<Bson> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .filter(|v| seen.insert(key_of(v)))
        .cloned()
        .collect()
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

fn eval_op(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    let ev = |i: usize| -> Res<Val> { args[i].eval(ctx) };
    let all = || -> Res<Vec<Val>> { args.iter().map(|a| a.eval(ctx)).collect() };
    match name {
        "$add" => {
            let vals = all()?;
            let mut acc = Bson::Int32(0);
            let mut date: Option<i64> = None;
            for v in &vals {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::DateTime(d)) => {
                        if date.is_some() {
                            return Err(CommandError::new(16612, "only one date allowed in an $add expression"));
                        }
                        date = Some(d.timestamp_millis());
                    }
                    Some(x) if super::value::is_number(x) => {
                        acc = arith(&acc, x, ArithOp::Add).unwrap_or_else(|| {
                            Bson::Double(to_f64(&acc).unwrap_or(0.0) + to_f64(x).unwrap_or(0.0))
                        })
                    }
                    Some(x) => {
                        return Err(CommandError::new(
                            16554,
                            format!("$add only supports numeric or date types, not {}", type_name(x)),
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
        "$subtract" => {
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
                (Bson::DateTime(x), n) if super::value::is_number(n) => Ok(Some(Bson::DateTime(
                    bson::DateTime::from_millis(x.timestamp_millis() - to_f64(n).unwrap().round() as i64),
                ))),
                _ if super::value::is_number(&a) && super::value::is_number(&b) => {
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
        "$multiply" => {
            let mut acc = Bson::Int32(1);
            for v in all()? {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(x) if super::value::is_number(&x) => {
                        acc = arith(&acc, &x, ArithOp::Mul).unwrap_or_else(|| {
                            Bson::Double(to_f64(&acc).unwrap_or(0.0) * to_f64(&x).unwrap_or(0.0))
                        })
                    }
                    Some(x) => return Err(num_err("$multiply", &x)),
                }
            }
            Ok(Some(acc))
        }
        "$divide" | "$mod" | "$pow" => {
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
                                to_exact_i64(&a).unwrap().wrapping_rem(to_exact_i64(&b).unwrap()),
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
        "$abs" | "$ceil" | "$floor" | "$sqrt" | "$exp" | "$ln" | "$log10" | "$round" | "$trunc" => {
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
                        Bson::Decimal128(_) => super::value::f64_to_decimal(r),
                        _ => Bson::Double(r),
                    }))
                }
            }
        }
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$cmp" => {
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
        "$and" => {
            for a in args {
                if !a.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
                    return Ok(Some(Bson::Boolean(false)));
                }
            }
            Ok(Some(Bson::Boolean(true)))
        }
        "$or" => {
            for a in args {
                if a.eval(ctx)?.map(|v| truthy(&v)).unwrap_or(false) {
                    return Ok(Some(Bson::Boolean(true)));
                }
            }
            Ok(Some(Bson::Boolean(false)))
        }
        "$not" => {
            arity(name, args, 1)?;
            Ok(Some(Bson::Boolean(!ev(0)?.map(|v| truthy(&v)).unwrap_or(false))))
        }
        "$ifNull" => {
            if args.len() < 2 {
                return Err(CommandError::new(1257300, "$ifNull needs at least two arguments"));
            }
            for (i, a) in args.iter().enumerate() {
                let v = a.eval(ctx)?;
                if !nullish(&v) || i == args.len() - 1 {
                    return Ok(v);
                }
            }
            Ok(Some(Bson::Null))
        }
        "$concat" => {
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
        "$toLower" | "$toUpper" => {
            arity(name, args, 1)?;
            let s = string_of(name, &ev(0)?)?;
            Ok(Some(Bson::String(if name == "$toLower" {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            })))
        }
        "$substr" | "$substrBytes" | "$substrCP" => {
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
        "$strLenBytes" | "$strLenCP" => {
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
        "$split" => {
            arity(name, args, 2)?;
            let (a, b) = (ev(0)?, ev(1)?);
            if nullish(&a) {
                return Ok(Some(Bson::Null));
            }
            match (a, b) {
                (Some(Bson::String(s)), Some(Bson::String(sep))) => {
                    if sep.is_empty() {
                        return Err(CommandError::new(40087, "$split requires a non-empty separator"));
                    }
                    Ok(Some(Bson::Array(
                        s.split(sep.as_str()).map(|p| Bson::String(p.into())).collect(),
                    )))
                }
                _ => Err(CommandError::new(40085, "$split requires an expression that evaluates to a string as a first argument")),
            }
        }
        "$trim" | "$ltrim" | "$rtrim" => {
            let input = ev(0)?;
            if nullish(&input) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::String(s)) = input else {
                return Err(CommandError::new(50699, format!("{name} requires its input to be a string")));
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
        "$strcasecmp" => {
            arity(name, args, 2)?;
            let a = string_of(name, &ev(0)?)?.to_lowercase();
            let b = string_of(name, &ev(1)?)?.to_lowercase();
            Ok(Some(Bson::Int32(match a.cmp(&b) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            })))
        }
        "$regexMatch" => {
            let input = ev(0)?;
            let (pattern, mut opts) = match ev(1)? {
                Some(Bson::String(p)) => (p, String::new()),
                Some(Bson::RegularExpression(r)) => (r.pattern, r.options),
                _ => return Err(CommandError::new(51105, "$regexMatch needs 'regex' to be of type string or regex")),
            };
            if let Some(Bson::String(o)) = ev(2)? {
                opts.push_str(&o);
            }
            let re = super::matcher::Re::new(&pattern, &opts)?;
            Ok(Some(Bson::Boolean(match input {
                Some(Bson::String(s)) => re.re.is_match(&s),
                None | Some(Bson::Null) => false,
                Some(_) => {
                    return Err(CommandError::new(51104, "$regexMatch needs 'input' to be of type string"))
                }
            })))
        }
        "$size" => {
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
        "$arrayElemAt" => {
            arity(name, args, 2)?;
            let (a, i) = (ev(0)?, ev(1)?);
            if nullish(&a) || nullish(&i) {
                return Ok(Some(Bson::Null));
            }
            let Some(arr) = array_arg(name, a)? else {
                return Ok(Some(Bson::Null));
            };
            let Some(i) = i.as_ref().and_then(to_exact_i64) else {
                return Err(CommandError::new(28690, "$arrayElemAt's second argument must be a numeric value"));
            };
            let idx = if i < 0 { arr.len() as i64 + i } else { i };
            Ok(if idx < 0 { None } else { arr.get(idx as usize).cloned() })
        }
        "$first" | "$last" => {
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
        "$concatArrays" => {
            let mut out = Vec::new();
            for v in all()? {
                match array_arg(name, v)? {
                    Some(a) => out.extend(a),
                    None => return Ok(Some(Bson::Null)),
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        "$in" => {
            arity(name, args, 2)?;
            let (x, arr) = (ev(0)?, ev(1)?);
            let Some(Bson::Array(arr)) = arr else {
                return Err(CommandError::new(40081, "$in requires an array as a second argument"));
            };
            let x = x.unwrap_or(Bson::Undefined);
            Ok(Some(Bson::Boolean(
                arr.iter().any(|e| cmp_bson(e, &x) == Ordering::Equal),
            )))
        }
        "$isArray" => Ok(Some(Bson::Boolean(matches!(ev(0)?, Some(Bson::Array(_)))))),
        "$isNumber" => Ok(Some(Bson::Boolean(
            ev(0)?.as_ref().is_some_and(super::value::is_number),
        ))),
        "$slice" => {
            if args.len() != 2 && args.len() != 3 {
                return Err(CommandError::new(28667, "Expression $slice takes at least 2 arguments, and at most 3"));
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
                let s = if n1 < 0 { (len + n1).max(0) } else { n1.min(len) };
                (s, n2.max(0))
            };
            let end = (start + count).min(len);
            Ok(Some(Bson::Array(arr[start as usize..end.max(start) as usize].to_vec())))
        }
        "$reverseArray" => {
            let Some(mut arr) = array_arg(name, ev(0)?)? else {
                return Ok(Some(Bson::Null));
            };
            arr.reverse();
            Ok(Some(Bson::Array(arr)))
        }
        "$indexOfArray" => {
            let Some(arr) = array_arg(name, ev(0)?)? else {
                return Ok(Some(Bson::Null));
            };
            let x = ev(1)?.unwrap_or(Bson::Undefined);
            let pos = arr.iter().position(|e| cmp_bson(e, &x) == Ordering::Equal);
            Ok(Some(Bson::Int32(pos.map(|p| p as i32).unwrap_or(-1))))
        }
        "$range" => {
            let start = ev(0)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
            let end = ev(1)?.as_ref().and_then(to_exact_i64).unwrap_or(0);
            let step = if args.len() > 2 {
                ev(2)?.as_ref().and_then(to_exact_i64).unwrap_or(1)
            } else {
                1
            };
            if step == 0 {
                return Err(CommandError::new(34449, "$range requires a non-zero step value"));
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i < end) || (step < 0 && i > end) {
                out.push(Bson::Int32(i as i32));
                i += step;
            }
            Ok(Some(Bson::Array(out)))
        }
        "$sum" | "$avg" | "$min" | "$max" => {
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
                    let it = vals.into_iter().filter(|v| !matches!(v, Bson::Null | Bson::Undefined));
                    let best = if name == "$min" {
                        it.min_by(cmp_bson)
                    } else {
                        it.max_by(cmp_bson)
                    };
                    best.unwrap_or(Bson::Null)
                }
            }))
        }
        "$mergeObjects" => {
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
                            format!("$mergeObjects requires object inputs, but input {} is of type {}", super::value::mongo_fmt(&other), type_name(&other)),
                        ))
                    }
                }
            }
            Ok(Some(Bson::Document(out)))
        }
        "$objectToArray" => match ev(0)? {
            None | Some(Bson::Null) => Ok(Some(Bson::Null)),
            Some(Bson::Document(d)) => Ok(Some(Bson::Array(
                d.into_iter()
                    .map(|(k, v)| Bson::Document(bson::doc! {"k": k, "v": v}))
                    .collect(),
            ))),
            Some(other) => Err(CommandError::new(
                40390,
                format!("$objectToArray requires a document input, found: {}", type_name(&other)),
            )),
        },
        "$arrayToObject" => {
            let Some(arr) = array_arg(name, ev(0)?)? else {
                return Ok(Some(Bson::Null));
            };
            let mut out = Document::new();
            for el in arr {
                match el {
                    Bson::Document(d) => {
                        let (Some(Bson::String(k)), Some(v)) = (d.get("k"), d.get("v")) else {
                            return Err(CommandError::new(40392, "$arrayToObject requires an object keys of 'k' and 'v'"));
                        };
                        out.insert(k.clone(), v.clone());
                    }
                    Bson::Array(pair) if pair.len() == 2 => {
                        let Bson::String(k) = &pair[0] else {
                            return Err(CommandError::new(40395, "$arrayToObject requires an array of key-value pairs, where the key must be of type string"));
                        };
                        out.insert(k.clone(), pair[1].clone());
                    }
                    _ => return Err(CommandError::new(40398, "Unrecognised input type format for $arrayToObject")),
                }
            }
            Ok(Some(Bson::Document(out)))
        }
        "$getField" => {
            let Some(Bson::String(field)) = ev(0)? else {
                return Err(CommandError::new(5654602, "$getField requires 'field' to evaluate to type String"));
            };
            match ev(1)? {
                Some(Bson::Document(d)) => Ok(d.get(&field).cloned()),
                None | Some(Bson::Null) => Ok(Some(Bson::Null)),
                Some(_) => Ok(None),
            }
        }
        "$type" => {
            arity(name, args, 1)?;
            Ok(Some(Bson::String(
                ev(0)?.as_ref().map(type_name).unwrap_or("missing").to_string(),
            )))
        }
        "$toString" => {
            let v = ev(0)?;
            if nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            Ok(Some(Bson::String(string_of(name, &v)?)))
        }
        "$toInt" | "$toLong" | "$toDouble" | "$toDecimal" => {
            let v = ev(0)?;
            if nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            let v = v.unwrap();
            let f = match &v {
                Bson::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
                Bson::String(s) => s.trim().parse::<f64>().ok().filter(|_| !s.trim().is_empty()),
                Bson::DateTime(d) => Some(d.timestamp_millis() as f64),
                other => to_f64(other),
            };
            let Some(f) = f else {
                return Err(CommandError::new(
                    241,
                    format!("Unsupported conversion from {} to {} in $convert with no onError value", type_name(&v), &name[3..].to_lowercase()),
                ));
            };
            Ok(Some(match name {
                "$toInt" => match (&v, to_exact_i64(&v)) {
                    (_, Some(i)) if i32::try_from(i).is_ok() => Bson::Int32(i as i32),
                    _ if f.is_finite() && f.trunc().abs() < 2_147_483_648.0 => Bson::Int32(f.trunc() as i32),
                    _ => return Err(CommandError::new(241, "Conversion would overflow target type in $convert with no onError value")),
                },
                "$toLong" => match to_exact_i64(&v) {
                    Some(i) => Bson::Int64(i),
                    None if f.is_finite() && f.trunc().abs() < 9.2e18 => Bson::Int64(f.trunc() as i64),
                    None => return Err(CommandError::new(241, "Conversion would overflow target type in $convert with no onError value")),
                },
                "$toDecimal" => super::value::f64_to_decimal(f),
                _ => Bson::Double(f),
            }))
        }
        "$toBool" => {
            let v = ev(0)?;
            if nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            Ok(Some(Bson::Boolean(truthy(&v.unwrap()))))
        }
        "$toObjectId" => match ev(0)? {
            None | Some(Bson::Null) => Ok(Some(Bson::Null)),
            Some(Bson::ObjectId(o)) => Ok(Some(Bson::ObjectId(o))),
            Some(Bson::String(s)) => bson::oid::ObjectId::parse_str(&s)
                .map(|o| Some(Bson::ObjectId(o)))
                .map_err(|_| CommandError::new(241, format!("Failed to parse objectId '{s}' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found {}", s.len()))),
            Some(other) => Err(CommandError::new(241, format!("Unsupported conversion from {} to objectId in $convert with no onError value", type_name(&other)))),
        },
        "$setUnion" | "$setIntersection" | "$setDifference" | "$setIsSubset" | "$setEquals" => {
            let mut arrays = Vec::new();
            for v in all()? {
                match array_arg(name, v)? {
                    Some(a) => arrays.push(a),
                    None if matches!(name, "$setUnion" | "$setIntersection" | "$setDifference") => {
                        return Ok(Some(Bson::Null))
                    }
                    None => return Err(CommandError::new(17310, format!("All operands of {name} must be arrays."))),
                }
            }
            let keys = |a: &Vec<Bson>| a.iter().map(key_of).collect::<std::collections::HashSet<_>>();
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
                    Bson::Array(set_of(&arrays[0]).into_iter().filter(|v| !k.contains(&key_of(v))).collect())
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
        "$anyElementTrue" | "$allElementsTrue" => {
            let Some(Bson::Array(a)) = ev(0)? else {
                return Err(CommandError::new(17041, format!("{name}'s argument must be an array")));
            };
            Ok(Some(Bson::Boolean(if name == "$anyElementTrue" {
                a.iter().any(truthy)
            } else {
                a.iter().all(truthy)
            })))
        }
        other => Err(CommandError::new(
            168,
            format!("Unrecognized expression '{other}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn eval(e: Bson, d: Document) -> Val {
        Expr::parse(&e).unwrap().eval(&EvalCtx::new(&d)).unwrap()
    }

    #[test]
    fn field_paths_and_literals() {
        let d = doc! {"a": {"b": 5}, "arr": [{"x": 1}, {"x": 2}]};
        assert_eq!(
            eval(Bson::String("$a.b".into()), d.clone()),
            Some(Bson::Int32(5))
        );
        assert_eq!(eval(Bson::String("$nope".into()), d.clone()), None);
        assert_eq!(
            eval(Bson::String("$arr.x".into()), d.clone()),
            Some(Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$literal": "$a"}), d.clone()),
            Some(Bson::String("$a".into()))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"x": "$a.b", "y": "$missing"}), d),
            Some(Bson::Document(doc! {"x": 5}))
        );
    }

    #[test]
    fn arithmetic_and_comparison() {
        let d = doc! {"a": 2, "b": 3.5, "s": "Hi"};
        assert_eq!(
            eval(Bson::Document(doc! {"$add": ["$a", 1]}), d.clone()),
            Some(Bson::Int32(3))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$add": ["$a", "$b"]}), d.clone()),
            Some(Bson::Double(5.5))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$subtract": ["$a", 5]}), d.clone()),
            Some(Bson::Int32(-3))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$multiply": ["$a", 4i64]}), d.clone()),
            Some(Bson::Int64(8))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$divide": ["$a", 4]}), d.clone()),
            Some(Bson::Double(0.5))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$add": ["$a", "$zz"]}), d.clone()),
            Some(Bson::Null)
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$gt": ["$b", "$a"]}), d.clone()),
            Some(Bson::Boolean(true))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$eq": ["$zz", null]}), d.clone()),
            Some(Bson::Boolean(false))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$cmp": ["$s", "Ha"]}), d.clone()),
            Some(Bson::Int32(1))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$toUpper": "$s"}), d.clone()),
            Some(Bson::String("HI".into()))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$concat": ["$s", "!"]}), d.clone()),
            Some(Bson::String("Hi!".into()))
        );
        let err = Expr::parse(&Bson::Document(doc! {"$add": ["$s", 1]}))
            .unwrap()
            .eval(&EvalCtx::new(&d))
            .unwrap_err();
        assert_eq!(err.code, 16554);
    }

    #[test]
    fn conditionals_and_arrays() {
        let d = doc! {"a": [1, 2, 3], "n": null};
        assert_eq!(
            eval(
                Bson::Document(doc! {"$cond": [{"$gt": [{"$size": "$a"}, 2]}, "big", "small"]}),
                d.clone()
            ),
            Some(Bson::String("big".into()))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$ifNull": ["$n", "dflt"]}), d.clone()),
            Some(Bson::String("dflt".into()))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$arrayElemAt": ["$a", -1]}), d.clone()),
            Some(Bson::Int32(3))
        );
        assert_eq!(
            eval(
                Bson::Document(
                    doc! {"$map": {"input": "$a", "as": "x", "in": {"$multiply": ["$$x", 10]}}}
                ),
                d.clone()
            ),
            Some(Bson::Array(vec![
                Bson::Int32(10),
                Bson::Int32(20),
                Bson::Int32(30)
            ]))
        );
        assert_eq!(
            eval(
                Bson::Document(doc! {"$filter": {"input": "$a", "cond": {"$gte": ["$$this", 2]}}}),
                d.clone()
            ),
            Some(Bson::Array(vec![Bson::Int32(2), Bson::Int32(3)]))
        );
        assert_eq!(
            eval(
                Bson::Document(
                    doc! {"$reduce": {"input": "$a", "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}
                ),
                d.clone()
            ),
            Some(Bson::Int32(6))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$sum": "$a"}), d.clone()),
            Some(Bson::Int32(6))
        );
        assert_eq!(
            eval(Bson::Document(doc! {"$max": "$a"}), d.clone()),
            Some(Bson::Int32(3))
        );
        assert_eq!(
            eval(
                Bson::Document(doc! {"$let": {"vars": {"k": 4}, "in": {"$add": ["$$k", 1]}}}),
                d
            ),
            Some(Bson::Int32(5))
        );
    }

    #[test]
    fn unknown_expression() {
        let e = Expr::parse(&Bson::Document(doc! {"$nope": 1})).unwrap_err();
        assert_eq!(e.code, 168);
        assert_eq!(e.errmsg, "Unrecognized expression '$nope'");
    }
}
