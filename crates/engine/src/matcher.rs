//! The query language: parsing a filter document into a [`Filter`] tree and
//! matching documents against it with MongoDB's array and null semantics.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::expr::{EvalCtx, Expr};
use super::path::{candidates, split, Cand};
use super::value::{
    as_num, canonical_rank, cmp_bson, f64_to_exact_i64, truthy, type_alias, type_number,
};

/// A compiled regular expression with its MongoDB source form.
#[derive(Clone, Debug)]
pub struct Re {
    pub re: regex::Regex,
    pub pattern: String,
    pub options: String,
}

impl Re {
    pub fn new(pattern: &str, options: &str) -> Res<Re> {
        let mut flags = String::new();
        for c in options.chars() {
            match c {
                'i' | 'm' | 's' | 'x' => flags.push(c),
                'u' | 'l' => {}
                other => {
                    return Err(CommandError::new(
                        51108,
                        format!("invalid flag in regex options: {other}"),
                    ))
                }
            }
        }
        let src = if flags.is_empty() {
            pattern.to_string()
        } else {
            format!("(?{flags}){pattern}")
        };
        let re = regex::Regex::new(&src).map_err(|e| {
            CommandError::new(
                51091,
                format!(
                    "Regular expression is invalid: {}",
                    first_line(&e.to_string())
                ),
            )
        })?;
        Ok(Re {
            re,
            pattern: pattern.to_string(),
            options: options.to_string(),
        })
    }

    /// Matches a string (or symbol), or a stored regex with the same source.
    pub fn matches(&self, v: &Bson) -> bool {
        match v {
            Bson::String(s) | Bson::Symbol(s) => self.re.is_match(s),
            Bson::RegularExpression(r) => r.pattern == self.pattern && r.options == self.options,
            _ => false,
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeSel {
    Code(i32),
    Number,
}

/// A predicate on the value(s) found at a path.
#[derive(Clone, Debug)]
pub enum Pred {
    Eq(Bson),
    Cmp(CmpOp, Bson),
    In(Vec<Bson>, Vec<Re>),
    Exists(bool),
    Type(Vec<TypeSel>),
    Regex(Re),
    Size(i64),
    ElemObj(Box<Filter>),
    ElemVal(Vec<Pred>),
    Mod(i64, i64),
    Not(Box<Pred>),
    All(Vec<Pred>),
    Const(bool),
}

/// A compiled filter document.
#[derive(Clone, Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Path(Vec<String>, Pred),
    Expr(Box<Expr>),
    Const(bool),
}

impl Filter {
    /// Parses a filter document.
    pub fn parse(doc: &Document) -> Res<Filter> {
        let mut parts = Vec::new();
        for (k, v) in doc {
            if let Some(op) = k.strip_prefix('$') {
                match op {
                    "and" | "or" | "nor" => {
                        let Bson::Array(arr) = v else {
                            return Err(CommandError::bad_value(format!(
                                "{k} must be an array"
                            )));
                        };
                        if arr.is_empty() {
                            return Err(CommandError::bad_value(
                                "$and/$or/$nor must be a nonempty array",
                            ));
                        }
                        let mut subs = Vec::with_capacity(arr.len());
                        for el in arr {
                            let Bson::Document(d) = el else {
                                return Err(CommandError::bad_value(format!(
                                    "{k} argument's entries must be objects"
                                )));
                            };
                            subs.push(Filter::parse(d)?);
                        }
                        parts.push(match op {
                            "and" => Filter::And(subs),
                            "or" => Filter::Or(subs),
                            _ => Filter::Nor(subs),
                        });
                    }
                    "expr" => parts.push(Filter::Expr(Box::new(Expr::parse(v)?))),
                    "comment" => {}
                    "alwaysTrue" => parts.push(Filter::Const(true)),
                    "alwaysFalse" => parts.push(Filter::Const(false)),
                    "where" => {
                        return Err(CommandError::new(
                            115,
                            "$where is not supported by holdfast-sim",
                        ))
                    }
                    "text" => {
                        return Err(CommandError::new(
                            27,
                            "text index required for $text query",
                        ))
                    }
                    _ => {
                        return Err(CommandError::bad_value(format!(
                            "unknown top level operator: {k}. If you have a field name that starts with a '$' symbol, consider using $getField or $setField."
                        )))
                    }
                }
            } else {
                parts.push(Filter::Path(split(k), parse_value(v)?));
            }
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Filter::And(parts)
        })
    }

    pub fn matches(&self, doc: &Document) -> bool {
        let mut pos = None;
        self.matches_pos(doc, &mut pos)
    }

    /// Matches and records the array position used (for the positional `$` update/projection).
    pub fn matches_pos(&self, doc: &Document, pos: &mut Option<usize>) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches_pos(doc, pos)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches_pos(doc, pos)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(doc)),
            Filter::Path(path, pred) => match_path(doc, path, pred, pos),
            Filter::Expr(e) => {
                let ctx = EvalCtx::new(doc);
                e.eval(&ctx).ok().flatten().is_some_and(|v| truthy(&v))
            }
            Filter::Const(b) => *b,
        }
    }

    /// The `_id` values this filter pins down by equality (`{_id: v}`,
    /// `{_id: {$eq: v}}`, `{_id: {$in: [...]}}`, possibly inside a top-level `$and`).
    pub fn id_lookup(&self) -> Option<Vec<Bson>> {
        match self {
            Filter::Path(p, pred) if p.len() == 1 && p[0] == "_id" => match pred {
                Pred::Eq(v) if !matches!(v, Bson::Array(_)) => Some(vec![v.clone()]),
                Pred::In(vs, res)
                    if res.is_empty() && !vs.iter().any(|v| matches!(v, Bson::Array(_))) =>
                {
                    Some(vs.clone())
                }
                _ => None,
            },
            Filter::And(fs) => fs.iter().find_map(Filter::id_lookup),
            _ => None,
        }
    }
}

fn is_operator_doc(d: &Document) -> bool {
    match d.keys().next() {
        Some(k) => k.starts_with('$') && !matches!(k.as_str(), "$ref" | "$id" | "$db"),
        None => false,
    }
}

/// Parses the value side of `{field: value}`.
fn parse_value(v: &Bson) -> Res<Pred> {
    match v {
        Bson::Document(d) if is_operator_doc(d) => parse_operators(d),
        Bson::RegularExpression(r) => Ok(Pred::Regex(Re::new(&r.pattern, &r.options)?)),
        other => Ok(Pred::Eq(other.clone())),
    }
}

fn and_preds(mut preds: Vec<Pred>) -> Pred {
    if preds.len() == 1 {
        preds.pop().unwrap()
    } else {
        Pred::All(preds)
    }
}

fn number_arg(v: &Bson) -> Option<f64> {
    super::value::to_f64(v)
}

/// Parses an operator document such as `{$gt: 1, $lt: 5}`.
pub fn parse_operators(d: &Document) -> Res<Pred> {
    let mut preds = Vec::new();
    let regex_opts = d.get("$options");
    for (k, v) in d {
        let p = match k.as_str() {
            "$eq" => Pred::Eq(v.clone()),
            "$ne" => {
                if matches!(v, Bson::RegularExpression(_)) {
                    return Err(CommandError::bad_value("Can't have regex as arg to $ne."));
                }
                Pred::Not(Box::new(Pred::Eq(v.clone())))
            }
            "$gt" => Pred::Cmp(CmpOp::Gt, v.clone()),
            "$gte" => Pred::Cmp(CmpOp::Gte, v.clone()),
            "$lt" => Pred::Cmp(CmpOp::Lt, v.clone()),
            "$lte" => Pred::Cmp(CmpOp::Lte, v.clone()),
            "$in" => parse_in(v, "$in")?,
            "$nin" => Pred::Not(Box::new(parse_in(v, "$nin")?)),
            "$exists" => Pred::Exists(truthy(v)),
            "$type" => Pred::Type(parse_types(v)?),
            "$regex" => parse_regex(v, regex_opts)?,
            "$options" => {
                if !d.contains_key("$regex") {
                    return Err(CommandError::bad_value("$options needs a $regex"));
                }
                continue;
            }
            "$size" => parse_size(v)?,
            "$all" => parse_all(v)?,
            "$elemMatch" => parse_elem_match(v)?,
            "$not" => parse_not(v)?,
            "$mod" => parse_mod(v)?,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other}"
                )))
            }
        };
        preds.push(p);
    }
    Ok(and_preds(preds))
}

/// `$regex` (a string or a regex), with the options of `$options` if there
/// are none in the regex.
fn parse_regex(v: &Bson, regex_opts: Option<&Bson>) -> Res<Pred> {
    let (pattern, mut options) = match v {
        Bson::String(s) => (s.clone(), String::new()),
        Bson::RegularExpression(r) => (r.pattern.clone(), r.options.clone()),
        _ => return Err(CommandError::bad_value("$regex has to be a string")),
    };
    if let Some(o) = regex_opts {
        let Bson::String(o) = o else {
            return Err(CommandError::bad_value("$options has to be a string"));
        };
        if !options.is_empty() {
            return Err(CommandError::bad_value(
                "options set in both $regex and $options",
            ));
        }
        options = o.clone();
    }
    Ok(Pred::Regex(Re::new(&pattern, &options)?))
}

/// `$size: n` (a non-negative whole number).
fn parse_size(v: &Bson) -> Res<Pred> {
    let Some(f) = number_arg(v) else {
        return Err(CommandError::bad_value("$size needs a number"));
    };
    if f < 0.0 {
        return Err(CommandError::bad_value("$size may not be negative"));
    }
    Ok(match f64_to_exact_i64(f) {
        Some(n) => Pred::Size(n),
        None => return Err(CommandError::bad_value("$size must be a whole number")),
    })
}

/// `$all: [values or {$elemMatch}]` (an empty array matches nothing).
fn parse_all(v: &Bson) -> Res<Pred> {
    let Bson::Array(arr) = v else {
        return Err(CommandError::bad_value("$all needs an array"));
    };
    Ok(if arr.is_empty() {
        Pred::Const(false)
    } else {
        let mut subs = Vec::new();
        for el in arr {
            subs.push(match el {
                Bson::Document(e) if e.keys().next().map(String::as_str) == Some("$elemMatch") => {
                    parse_operators(e)?
                }
                Bson::Document(e) if is_operator_doc(e) => {
                    return Err(CommandError::bad_value("no $ expressions in $all"))
                }
                Bson::RegularExpression(r) => Pred::Regex(Re::new(&r.pattern, &r.options)?),
                other => Pred::Eq(other.clone()),
            });
        }
        Pred::All(subs)
    })
}

/// `$elemMatch`: over values (`{$gt: 1}`) or over documents (a query).
fn parse_elem_match(v: &Bson) -> Res<Pred> {
    let Bson::Document(e) = v else {
        return Err(CommandError::bad_value("$elemMatch needs an Object"));
    };
    let value_form = match e.keys().next() {
        Some(k) => {
            k.starts_with('$')
                && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr" | "$where")
        }
        None => false,
    };
    Ok(if value_form {
        match parse_operators(e)? {
            Pred::All(ps) => Pred::ElemVal(ps),
            p => Pred::ElemVal(vec![p]),
        }
    } else {
        Pred::ElemObj(Box::new(Filter::parse(e)?))
    })
}

/// `$not`: a regex or an operator document.
fn parse_not(v: &Bson) -> Res<Pred> {
    Ok(match v {
        Bson::RegularExpression(r) => {
            Pred::Not(Box::new(Pred::Regex(Re::new(&r.pattern, &r.options)?)))
        }
        Bson::Document(e) => {
            if e.is_empty() {
                return Err(CommandError::bad_value("$not cannot be empty"));
            }
            if !is_operator_doc(e) {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {}",
                    e.keys().next().unwrap()
                )));
            }
            Pred::Not(Box::new(parse_operators(e)?))
        }
        _ => return Err(CommandError::bad_value("$not needs a regex or a document")),
    })
}

/// `$mod: [divisor, remainder]` (numbers, truncated; the divisor not 0).
fn parse_mod(v: &Bson) -> Res<Pred> {
    let Bson::Array(arr) = v else {
        return Err(CommandError::bad_value(
            "malformed mod, needs to be an array",
        ));
    };
    if arr.len() < 2 {
        return Err(CommandError::bad_value(
            "malformed mod, not enough elements",
        ));
    }
    if arr.len() > 2 {
        return Err(CommandError::bad_value("malformed mod, too many elements"));
    }
    let (Some(d), Some(r)) = (number_arg(&arr[0]), number_arg(&arr[1])) else {
        return Err(CommandError::bad_value(
            "malformed mod, divisor not a number",
        ));
    };
    let (d, r) = (d.trunc() as i64, r.trunc() as i64);
    if d == 0 {
        return Err(CommandError::bad_value("divisor cannot be 0"));
    }
    Ok(Pred::Mod(d, r))
}

fn parse_in(v: &Bson, name: &str) -> Res<Pred> {
    let Bson::Array(arr) = v else {
        return Err(CommandError::bad_value(format!("{name} needs an array")));
    };
    let mut vals = Vec::new();
    let mut res = Vec::new();
    for el in arr {
        match el {
            Bson::RegularExpression(r) => res.push(Re::new(&r.pattern, &r.options)?),
            Bson::Document(d) if is_operator_doc(d) => {
                return Err(CommandError::bad_value("cannot nest $ under $in"))
            }
            other => vals.push(other.clone()),
        }
    }
    Ok(Pred::In(vals, res))
}

fn parse_types(v: &Bson) -> Res<Vec<TypeSel>> {
    fn one(v: &Bson) -> Res<TypeSel> {
        match v {
            Bson::String(s) => match type_alias(s) {
                Some(Some(n)) => Ok(TypeSel::Code(n)),
                Some(None) => Ok(TypeSel::Number),
                None => Err(CommandError::bad_value(format!(
                    "Unknown type name alias: {s}"
                ))),
            },
            other => {
                let Some(n) = super::value::to_exact_i64(other) else {
                    return Err(CommandError::type_mismatch(
                        "type must be represented as a number or a string",
                    ));
                };
                let valid = matches!(n, -1 | 1..=19 | 127);
                if !valid {
                    return Err(CommandError::bad_value(format!(
                        "Invalid numerical type code: {n}"
                    )));
                }
                Ok(TypeSel::Code(n as i32))
            }
        }
    }
    match v {
        Bson::Array(arr) => arr.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn match_path(doc: &Document, path: &[String], pred: &Pred, pos: &mut Option<usize>) -> bool {
    match pred {
        Pred::Not(p) => !match_path(doc, path, p, &mut None),
        Pred::All(ps) => ps.iter().all(|p| match_path(doc, path, p, pos)),
        Pred::Const(b) => *b,
        Pred::Exists(want) => {
            let cands = candidates(doc, path);
            cands.iter().any(|c| c.value.is_some()) == *want
        }
        _ => {
            for c in candidates(doc, path) {
                if let Some(p) = match_cand(pred, c) {
                    if pos.is_none() {
                        *pos = p;
                    }
                    return true;
                }
            }
            false
        }
    }
}

/// Tests one traversal candidate; returns the matching array position (if any).
fn match_cand(pred: &Pred, c: Cand<'_>) -> Option<Option<usize>> {
    let Some(v) = c.value else {
        return match_missing(pred).then_some(c.pos);
    };
    if let Pred::Size(_) | Pred::ElemObj(_) | Pred::ElemVal(_) = pred {
        return match_value(pred, v).then_some(c.pos);
    }
    if match_value(pred, v) {
        return Some(c.pos);
    }
    if let Bson::Array(arr) = v {
        for (i, el) in arr.iter().enumerate() {
            if match_value(pred, el) {
                return Some(c.pos.or(Some(i)));
            }
        }
    }
    None
}

fn match_missing(pred: &Pred) -> bool {
    match pred {
        Pred::Eq(Bson::Null) => true,
        Pred::Cmp(CmpOp::Gte | CmpOp::Lte, Bson::Null) => true,
        Pred::In(vals, _) => vals.iter().any(|v| matches!(v, Bson::Null)),
        Pred::Exists(b) => !*b,
        Pred::Not(p) => !match_missing(p),
        Pred::All(ps) => ps.iter().all(match_missing),
        Pred::Const(b) => *b,
        _ => false,
    }
}

fn eq_value(v: &Bson, x: &Bson) -> bool {
    if matches!(x, Bson::Null) {
        return matches!(v, Bson::Null | Bson::Undefined);
    }
    cmp_bson(v, x) == Ordering::Equal
}

/// Tests a single value (no array expansion).
pub fn match_value(pred: &Pred, v: &Bson) -> bool {
    match pred {
        Pred::Eq(x) => eq_value(v, x),
        Pred::Cmp(op, x) => {
            // Only a MinKey/MaxKey operand compares across type brackets.
            let cross = matches!(x, Bson::MinKey | Bson::MaxKey);
            if !cross && canonical_rank(v) != canonical_rank(x) {
                return false;
            }
            let o = cmp_bson(v, x);
            match op {
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Gte => o != Ordering::Less,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Lte => o != Ordering::Greater,
            }
        }
        Pred::In(vals, res) => {
            vals.iter().any(|x| eq_value(v, x)) || res.iter().any(|r| r.matches(v))
        }
        Pred::Exists(b) => *b,
        Pred::Type(sels) => {
            let n = type_number(v);
            sels.iter().any(|s| match s {
                TypeSel::Code(c) => *c == n,
                TypeSel::Number => as_num(v).is_some(),
            })
        }
        Pred::Regex(r) => r.matches(v),
        Pred::Size(n) => matches!(v, Bson::Array(a) if a.len() as i64 == *n),
        Pred::ElemObj(f) => match v {
            Bson::Array(a) => a.iter().any(|el| match el {
                Bson::Document(d) => f.matches(d),
                _ => false,
            }),
            _ => false,
        },
        Pred::ElemVal(ps) => match v {
            Bson::Array(a) => a.iter().any(|el| ps.iter().all(|p| match_value(p, el))),
            _ => false,
        },
        Pred::Mod(d, r) => match as_num(v) {
            Some(super::value::Num::Int(i)) => i.wrapping_rem(*d) == *r,
            Some(super::value::Num::Float(f)) => {
                f.is_finite() && (f.trunc() as i64).wrapping_rem(*d) == *r
            }
            None => false,
        },
        Pred::Not(p) => !match_value(p, v),
        Pred::All(ps) => ps.iter().all(|p| match_value(p, v)),
        Pred::Const(b) => *b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn m(filter: Document, d: Document) -> bool {
        Filter::parse(&filter).unwrap().matches(&d)
    }

    fn err(filter: Document) -> CommandError {
        Filter::parse(&filter).unwrap_err()
    }

    #[test]
    fn equality_and_arrays() {
        assert!(m(doc! {"a": 1}, doc! {"a": 1.0}));
        assert!(m(doc! {"a": 1}, doc! {"a": [3, 1]}));
        assert!(m(doc! {"a": [3, 1]}, doc! {"a": [3, 1]}));
        assert!(!m(doc! {"a": [1, 3]}, doc! {"a": [3, 1]}));
        assert!(m(doc! {"a.b": 2}, doc! {"a": [{"b": 1}, {"b": 2}]}));
        assert!(m(doc! {"a.1": 5}, doc! {"a": [4, 5]}));
        assert!(m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1}}));
        assert!(!m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1, "c": 2}}));
        assert!(!m(doc! {"a": 1}, doc! {"a": "1"}));
        assert!(m(doc! {}, doc! {"x": 1}));
    }

    #[test]
    fn null_matches_missing() {
        assert!(m(doc! {"a": null}, doc! {"b": 1}));
        assert!(m(doc! {"a": null}, doc! {"a": null}));
        assert!(!m(doc! {"a": null}, doc! {"a": 0}));
        assert!(m(doc! {"a.b": null}, doc! {"a": [{"b": 1}, {"c": 1}]}));
        assert!(!m(doc! {"a": {"$ne": null}}, doc! {"b": 1}));
        assert!(m(doc! {"a": {"$gte": null}}, doc! {}));
        assert!(!m(doc! {"a": {"$gt": null}}, doc! {}));
        assert!(m(doc! {"a": {"$in": [null, 5]}}, doc! {}));
    }

    #[test]
    fn comparisons_stay_in_type_bracket() {
        assert!(m(doc! {"a": {"$gt": 1}}, doc! {"a": 2.5}));
        assert!(!m(doc! {"a": {"$gt": 1}}, doc! {"a": "zzz"}));
        assert!(m(doc! {"a": {"$lt": "b"}}, doc! {"a": "a"}));
        assert!(!m(doc! {"a": {"$lt": "b"}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$gte": 2, "$lte": 3}}, doc! {"a": [1, 2]}));
        // each bound may be satisfied by a different element
        assert!(m(doc! {"a": {"$gt": 5, "$lt": 3}}, doc! {"a": [1, 7]}));
        assert!(!m(
            doc! {"a": {"$elemMatch": {"$gt": 5, "$lt": 3}}},
            doc! {"a": [1, 7]}
        ));
        assert!(m(doc! {"a": {"$gt": bson::Bson::MinKey}}, doc! {"a": "x"}));
    }

    #[test]
    fn ne_nin_not_nor() {
        assert!(m(doc! {"a": {"$ne": 1}}, doc! {"a": 2}));
        assert!(!m(doc! {"a": {"$ne": 1}}, doc! {"a": [1, 2]}));
        assert!(m(doc! {"a": {"$ne": 1}}, doc! {}));
        assert!(m(doc! {"a": {"$nin": [1, 2]}}, doc! {"a": 3}));
        assert!(!m(doc! {"a": {"$nin": [1, 2]}}, doc! {"a": 2}));
        assert!(m(doc! {"a": {"$not": {"$gt": 5}}}, doc! {"a": 3}));
        assert!(m(doc! {"a": {"$not": {"$gt": 5}}}, doc! {}));
        assert!(m(
            doc! {"$nor": [{"a": 1}, {"b": 2}]},
            doc! {"a": 2, "b": 3}
        ));
        assert!(!m(
            doc! {"$nor": [{"a": 1}, {"b": 2}]},
            doc! {"a": 2, "b": 2}
        ));
        assert!(m(doc! {"$or": [{"a": 1}, {"b": 2}]}, doc! {"b": 2}));
        assert!(!m(doc! {"$and": [{"a": 1}, {"b": 2}]}, doc! {"b": 2}));
    }

    #[test]
    fn exists_type_size_all_mod() {
        assert!(m(doc! {"a": {"$exists": true}}, doc! {"a": null}));
        assert!(!m(doc! {"a": {"$exists": true}}, doc! {}));
        assert!(m(doc! {"a.b": {"$exists": false}}, doc! {"a": [1, 2]}));
        assert!(m(doc! {"a": {"$type": "string"}}, doc! {"a": "x"}));
        assert!(m(doc! {"a": {"$type": "number"}}, doc! {"a": 1i64}));
        assert!(m(doc! {"a": {"$type": 16}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$type": "array"}}, doc! {"a": [1]}));
        assert!(m(
            doc! {"a": {"$type": ["bool", "int"]}},
            doc! {"a": [true]}
        ));
        assert!(!m(doc! {"a": {"$type": "double"}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$size": 2}}, doc! {"a": [1, [2, 3]]}));
        assert!(!m(doc! {"a": {"$size": 1}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$all": [1, 2]}}, doc! {"a": [2, 3, 1]}));
        assert!(!m(doc! {"a": {"$all": [1, 4]}}, doc! {"a": [2, 3, 1]}));
        assert!(!m(doc! {"a": {"$all": []}}, doc! {"a": [1]}));
        assert!(m(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 9}));
        assert!(m(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 9.7}));
        assert!(!m(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 8}));
        assert_eq!(
            err(doc! {"a": {"$mod": [0, 1]}}).errmsg,
            "divisor cannot be 0"
        );
        assert_eq!(
            err(doc! {"a": {"$mod": [1]}}).errmsg,
            "malformed mod, not enough elements"
        );
    }

    #[test]
    fn elem_match() {
        let d = doc! {"a": [{"x": 1, "y": 2}, {"x": 2, "y": 1}]};
        assert!(m(doc! {"a": {"$elemMatch": {"x": 1, "y": 2}}}, d.clone()));
        assert!(!m(doc! {"a": {"$elemMatch": {"x": 1, "y": 1}}}, d.clone()));
        assert!(m(doc! {"a.x": 1, "a.y": 1}, d.clone()));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$gte": 2, "$lt": 3}}},
            doc! {"a": [1, 2.5]}
        ));
        assert!(!m(doc! {"a": {"$elemMatch": {"$gte": 2}}}, doc! {"a": 5}));
    }

    #[test]
    fn regexes() {
        assert!(m(doc! {"a": {"$regex": "^ab"}}, doc! {"a": "abc"}));
        assert!(!m(doc! {"a": {"$regex": "^ab"}}, doc! {"a": "ABC"}));
        assert!(m(
            doc! {"a": {"$regex": "^ab", "$options": "i"}},
            doc! {"a": "ABC"}
        ));
        let re = bson::Regex {
            pattern: "b$".into(),
            options: String::new(),
        };
        assert!(m(doc! {"a": re.clone()}, doc! {"a": ["x", "ab"]}));
        assert!(m(doc! {"a": {"$in": [re.clone(), 5]}}, doc! {"a": 5}));
        assert!(m(doc! {"a": {"$not": re}}, doc! {"a": "ba"}));
        assert!(!m(doc! {"a": {"$regex": "1"}}, doc! {"a": 1}));
        assert_eq!(err(doc! {"a": {"$regex": "(?<=x)"}}).code, 51091);
    }

    #[test]
    fn unknown_operators_are_rejected() {
        let e = err(doc! {"a": {"$foo": 1}});
        assert_eq!((e.code, e.errmsg.as_str()), (2, "unknown operator: $foo"));
        let e = err(doc! {"$foo": 1});
        assert_eq!(e.code, 2);
        assert!(e.errmsg.starts_with("unknown top level operator: $foo"));
        assert_eq!(
            err(doc! {"$or": []}).errmsg,
            "$and/$or/$nor must be a nonempty array"
        );
        assert_eq!(err(doc! {"a": {"$in": 1}}).errmsg, "$in needs an array");
    }

    #[test]
    fn expr_in_filters() {
        assert!(m(
            doc! {"$expr": {"$gt": ["$a", "$b"]}},
            doc! {"a": 3, "b": 2}
        ));
        assert!(!m(
            doc! {"$expr": {"$gt": ["$a", "$b"]}},
            doc! {"a": 1, "b": 2}
        ));
    }

    #[test]
    fn positions_are_recorded() {
        let f = Filter::parse(&doc! {"a.b": 5}).unwrap();
        let mut pos = None;
        assert!(f.matches_pos(&doc! {"a": [{"b": 1}, {"b": 5}]}, &mut pos));
        assert_eq!(pos, Some(1));
        let f = Filter::parse(&doc! {"a": {"$gt": 2}}).unwrap();
        let mut pos = None;
        assert!(f.matches_pos(&doc! {"a": [1, 2, 3]}, &mut pos));
        assert_eq!(pos, Some(2));
    }

    #[test]
    fn id_lookup_extraction() {
        let f = Filter::parse(&doc! {"_id": 5}).unwrap();
        assert_eq!(f.id_lookup(), Some(vec![Bson::Int32(5)]));
        let f = Filter::parse(&doc! {"_id": {"$in": [1, 2]}, "x": 1}).unwrap();
        assert_eq!(f.id_lookup(), Some(vec![Bson::Int32(1), Bson::Int32(2)]));
        let f = Filter::parse(&doc! {"_id": {"$gt": 5}}).unwrap();
        assert!(f.id_lookup().is_none());
    }
}
