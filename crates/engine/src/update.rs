//! Update documents: replacements, update operators (with positional
//! `$`, `$[]` and `$[<id>]` paths and `arrayFilters`), pipeline-style updates,
//! and building the document inserted by an upsert.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::error::{CommandError, Res};
use super::matcher::{match_value, parse_operators, Filter, Pred, Re};
use super::path::{as_index, get_strict, id_first, remove_path, set_path, split, unset_path};
use super::pipeline::Pipeline;
use super::sort::SortSpec;
use super::value::{
    arith, bson_eq, cmp_bson, docs_identical, identical, is_number, mongo_fmt, type_name, ArithOp,
};

#[derive(Clone, Debug)]
enum PushSort {
    Value(bool),
    Doc(SortSpec),
}

#[derive(Clone, Debug)]
enum PullCond {
    Query(Filter),
    Value(Pred),
}

/// `$push` and its modifiers.
#[derive(Clone, Debug)]
struct PushSpec {
    each: Vec<Bson>,
    position: Option<i64>,
    slice: Option<i64>,
    sort: Option<PushSort>,
}

#[derive(Clone, Debug)]
enum Kind {
    Set(Bson),
    SetOnInsert(Bson),
    Unset,
    Inc(Bson),
    Mul(Bson),
    Min(Bson),
    Max(Bson),
    Rename(Vec<String>),
    Push(PushSpec),
    AddToSet(Vec<Bson>),
    Pull(PullCond),
    PullAll(Vec<Bson>),
    Pop(bool),
    CurrentDate(bool),
    Bit(Vec<(String, Bson)>),
}

/// One modification of an operator-style update.
#[derive(Clone, Debug)]
pub struct ModOp {
    path: Vec<String>,
    name: &'static str,
    kind: Kind,
}

/// A parsed update (`u` of an update statement, `update` of findAndModify).
#[derive(Clone, Debug)]
pub enum Update {
    Replacement(Document),
    Ops(Vec<ModOp>),
    Pipeline(Pipeline),
}

/// Per-statement context for applying an update.
pub struct ApplyCtx<'a> {
    /// True when the update is applied to a document being upserted.
    pub is_insert: bool,
    /// Array position recorded by the query, for `$` paths.
    pub pos: Option<usize>,
    pub array_filters: &'a [(String, Filter)],
}

const OPERATORS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
    "$setOnInsert",
    "$currentDate",
    "$bit",
];

fn static_name(n: &str) -> &'static str {
    OPERATORS
        .iter()
        .copied()
        .find(|o| *o == n)
        .unwrap_or("$set")
}

fn validate_path(path: &str) -> Res<()> {
    if path.is_empty() {
        return Err(CommandError::new(56, "An empty update path is not valid."));
    }
    if path.split('.').any(str::is_empty) {
        return Err(CommandError::new(
            56,
            format!("The update path '{path}' contains an empty field name, which is not allowed."),
        ));
    }
    Ok(())
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl Update {
    /// Parses an update specification (document or pipeline array).
    pub fn parse(u: &Bson) -> Res<Update> {
        match u {
            Bson::Array(stages) => Ok(Update::Pipeline(Pipeline::parse_update(stages)?)),
            Bson::Document(d) => {
                let is_ops = d.keys().next().is_some_and(|k| k.starts_with('$'));
                if !is_ops {
                    for k in d.keys() {
                        if k.starts_with('$') {
                            return Err(CommandError::new(
                                52,
                                format!("The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."),
                            ));
                        }
                    }
                    return Ok(Update::Replacement(d.clone()));
                }
                Update::parse_ops(d)
            }
            other => Err(CommandError::failed_to_parse(format!(
                "Update argument must be either an object or an array, found {}",
                type_name(other)
            ))),
        }
    }

    fn parse_ops(d: &Document) -> Res<Update> {
        let mut ops = Vec::new();
        for (op, arg) in d {
            if !OPERATORS.contains(&op.as_str()) {
                return Err(CommandError::failed_to_parse(format!(
                    "Unknown modifier: {op}. Expected a valid update modifier or pipeline-style update specified as an array"
                )));
            }
            let Bson::Document(fields) = arg else {
                return Err(CommandError::failed_to_parse(format!(
                    "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{op}: {}}}",
                    type_name(arg),
                    mongo_fmt(arg)
                )));
            };
            for (path, v) in fields {
                validate_path(path)?;
                let kind = parse_kind(op, path, v)?;
                ops.push(ModOp {
                    path: split(path),
                    name: static_name(op),
                    kind,
                });
            }
        }
        // Conflicts between paths (including $rename sources).
        let mut all: Vec<(Vec<String>, String)> = Vec::new();
        for o in &ops {
            all.push((o.path.clone(), o.path.join(".")));
            if let Kind::Rename(to) = &o.kind {
                all.push((to.clone(), to.join(".")));
            }
        }
        for i in 0..all.len() {
            for j in 0..all.len() {
                if i != j && is_prefix(&all[i].0, &all[j].0) {
                    return Err(CommandError::new(
                        40,
                        format!(
                            "Updating the path '{}' would create a conflict at '{}'",
                            all[j].1, all[i].1
                        ),
                    ));
                }
            }
        }
        // mongod applies modifications in field-name order.
        ops.sort_by(|a, b| {
            let ka = match &a.kind {
                Kind::Rename(to) => to,
                _ => &a.path,
            };
            let kb = match &b.kind {
                Kind::Rename(to) => to,
                _ => &b.path,
            };
            ka.cmp(kb)
        });
        Ok(Update::Ops(ops))
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self, Update::Replacement(_))
    }

    /// The array-filter identifiers used by `$[<id>]` paths.
    fn identifiers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Update::Ops(ops) = self {
            for o in ops {
                for p in &o.path {
                    if let Some(id) = p.strip_prefix("$[").and_then(|x| x.strip_suffix(']')) {
                        if !id.is_empty() && !out.contains(&id.to_string()) {
                            out.push(id.to_string());
                        }
                    }
                }
            }
        }
        out
    }

    /// Parses `arrayFilters` and checks them against the update's identifiers.
    pub fn parse_array_filters(&self, filters: Option<&Bson>) -> Res<Vec<(String, Filter)>> {
        let mut out: Vec<(String, Filter)> = Vec::new();
        if let Some(f) = filters {
            let Bson::Array(arr) = f else {
                return Err(CommandError::type_mismatch("arrayFilters must be an array"));
            };
            for el in arr {
                let Bson::Document(d) = el else {
                    return Err(CommandError::type_mismatch(
                        "arrayFilters must be an array of objects",
                    ));
                };
                let mut ident: Option<String> = None;
                for k in d.keys() {
                    if k.starts_with('$') {
                        continue;
                    }
                    let id = k.split('.').next().unwrap_or("").to_string();
                    match &ident {
                        None => ident = Some(id),
                        Some(prev) if *prev != id => {
                            return Err(CommandError::failed_to_parse(format!(
                                "Error parsing array filter :: caused by :: Expected a single top-level field name, found '{prev}' and '{id}'"
                            )))
                        }
                        _ => {}
                    }
                }
                let Some(ident) = ident else {
                    return Err(CommandError::failed_to_parse(
                        "Cannot use an expression without a top-level field name in arrayFilters",
                    ));
                };
                if out.iter().any(|(i, _)| *i == ident) {
                    return Err(CommandError::failed_to_parse(format!(
                        "Found multiple array filters with the same top-level field name {ident}"
                    )));
                }
                out.push((ident, Filter::parse(d)?));
            }
        }
        let used = self.identifiers();
        for id in &used {
            if !out.iter().any(|(i, _)| i == id) {
                return Err(CommandError::bad_value(format!(
                    "No array filter found for identifier '{id}' in path"
                )));
            }
        }
        for (id, _) in &out {
            if !used.contains(id) {
                return Err(CommandError::failed_to_parse(format!(
                    "The array filter for identifier '{id}' was not used in the update"
                )));
            }
        }
        Ok(out)
    }

    /// Applies the update to `doc`, returning the post-image. Enforces `_id` immutability.
    pub fn apply(&self, doc: &Document, ctx: &ApplyCtx<'_>) -> Res<Document> {
        let old_id = doc.get("_id");
        match self {
            Update::Replacement(r) => {
                let mut new = r.clone();
                match (old_id, new.get("_id")) {
                    (Some(o), Some(n)) if !identical(o, n) && !ctx.is_insert => {
                        return Err(CommandError::new(
                            66,
                            format!(
                                "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {}",
                                mongo_fmt(n)
                            ),
                        ))
                    }
                    (Some(o), None) => {
                        new.insert("_id", o.clone());
                    }
                    _ => {}
                }
                Ok(id_first(new))
            }
            Update::Ops(ops) => {
                let mut new = doc.clone();
                for op in ops {
                    apply_op(&mut new, doc, op, ctx)?;
                }
                check_id(old_id, &new, ctx)?;
                Ok(new)
            }
            Update::Pipeline(p) => {
                let mut new = p.apply_to_doc(doc)?;
                match (old_id, new.get("_id")) {
                    (Some(o), None) => {
                        new.insert("_id", o.clone());
                        new = id_first(new);
                    }
                    _ => check_id(old_id, &new, ctx)?,
                }
                Ok(new)
            }
        }
    }
}

fn check_id(old_id: Option<&Bson>, new: &Document, ctx: &ApplyCtx<'_>) -> Res<()> {
    if ctx.is_insert {
        return Ok(());
    }
    if let Some(o) = old_id {
        match new.get("_id") {
            Some(n) if identical(o, n) => {}
            _ => {
                return Err(CommandError::new(
                    66,
                    "Performing an update on the path '_id' would modify the immutable field '_id'",
                ))
            }
        }
    }
    Ok(())
}

fn parse_kind(op: &str, path: &str, v: &Bson) -> Res<Kind> {
    Ok(match op {
        "$set" => Kind::Set(v.clone()),
        "$setOnInsert" => Kind::SetOnInsert(v.clone()),
        "$unset" => Kind::Unset,
        "$inc" | "$mul" => parse_inc_mul(op, path, v)?,
        "$min" => Kind::Min(v.clone()),
        "$max" => Kind::Max(v.clone()),
        "$rename" => parse_rename(path, v)?,
        "$push" => parse_push(v)?,
        "$addToSet" => parse_add_to_set(v)?,
        "$pull" => Kind::Pull(match v {
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                PullCond::Value(parse_operators(d)?)
            }
            Bson::Document(d) => PullCond::Query(Filter::parse(d)?),
            Bson::RegularExpression(r) => {
                PullCond::Value(Pred::Regex(Re::new(&r.pattern, &r.options)?))
            }
            other => PullCond::Value(Pred::Eq(other.clone())),
        }),
        "$pullAll" => match v {
            Bson::Array(a) => Kind::PullAll(a.clone()),
            other => {
                return Err(CommandError::bad_value(format!(
                    "$pullAll requires an array argument but was given a {}",
                    type_name(other)
                )))
            }
        },
        "$pop" => parse_pop(v)?,
        "$currentDate" => parse_current_date(v)?,
        "$bit" => parse_bit(v)?,
        _ => unreachable!("checked by caller"),
    })
}

/// `$inc`/`$mul`: the argument must be a number.
fn parse_inc_mul(op: &str, path: &str, v: &Bson) -> Res<Kind> {
    let desc = || format!("{{{path}: {}}}", mongo_fmt(v));
    if !is_number(v) {
        let verb = if op == "$inc" {
            "increment"
        } else {
            "multiply"
        };
        return Err(CommandError::type_mismatch(format!(
            "Cannot {verb} with non-numeric argument: {}",
            desc()
        )));
    }
    Ok(if op == "$inc" {
        Kind::Inc(v.clone())
    } else {
        Kind::Mul(v.clone())
    })
}

/// `$rename: {path: "to"}`: a different, non-overlapping, non-positional
/// target.
fn parse_rename(path: &str, v: &Bson) -> Res<Kind> {
    let Bson::String(to) = v else {
        return Err(CommandError::bad_value(format!(
            "The 'to' field for $rename must be a string: {path}: {}",
            mongo_fmt(v)
        )));
    };
    validate_path(to)?;
    if to == path {
        return Err(CommandError::bad_value(format!(
            "The source and target field for $rename must differ: {path}: \"{to}\""
        )));
    }
    let (f, t) = (split(path), split(to));
    if is_prefix(&f, &t) || is_prefix(&t, &f) {
        return Err(CommandError::bad_value(format!(
            "The source and target field for $rename must not be on the same path: {path}: \"{to}\""
        )));
    }
    if f.iter().chain(t.iter()).any(|p| p.starts_with('$')) {
        return Err(CommandError::bad_value(format!(
            "The source field for $rename may not be dynamic: {path}"
        )));
    }
    Ok(Kind::Rename(t))
}

/// `$addToSet`: one value, or `{$each: [...]}`.
fn parse_add_to_set(v: &Bson) -> Res<Kind> {
    Ok(match v {
        Bson::Document(d) if d.keys().next().map(String::as_str) == Some("$each") => {
            match d.get("$each") {
                Some(Bson::Array(a)) => Kind::AddToSet(a.clone()),
                Some(other) => {
                    return Err(CommandError::type_mismatch(format!(
                        "The argument to $each in $addToSet must be an array but it was of type {}",
                        type_name(other)
                    )))
                }
                None => unreachable!(),
            }
        }
        other => Kind::AddToSet(vec![other.clone()]),
    })
}

/// `$pop`: 1 (last) or -1 (first).
fn parse_pop(v: &Bson) -> Res<Kind> {
    Ok(match super::value::to_f64(v) {
        Some(1.0) => Kind::Pop(false),
        Some(-1.0) => Kind::Pop(true),
        _ => {
            return Err(CommandError::failed_to_parse(format!(
                "$pop expects 1 or -1, found: {}",
                mongo_fmt(v)
            )))
        }
    })
}

/// `$currentDate`: `true` or `{$type: "date" | "timestamp"}`.
fn parse_current_date(v: &Bson) -> Res<Kind> {
    Ok(match v {
        Bson::Boolean(_) => Kind::CurrentDate(false),
        Bson::Document(d) => match d.get("$type") {
            Some(Bson::String(t)) if t == "date" => Kind::CurrentDate(false),
            Some(Bson::String(t)) if t == "timestamp" => Kind::CurrentDate(true),
            _ => {
                return Err(CommandError::bad_value(
                    "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}",
                ))
            }
        },
        other => {
            return Err(CommandError::bad_value(format!(
                "{} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({{$type: 'timestamp/date'}}).",
                type_name(other)
            )))
        }
    })
}

/// `$bit: {and | or | xor: <int32 or int64>, ...}`.
fn parse_bit(v: &Bson) -> Res<Kind> {
    let Bson::Document(d) = v else {
        return Err(CommandError::bad_value(format!(
            "The $bit modifier is not compatible with a {}. You must pass in an embedded document: {{$bit: {{field: {{and/or/xor: #}}}}",
            type_name(v)
        )));
    };
    let mut bits = Vec::new();
    for (k, x) in d {
        if !matches!(k.as_str(), "and" | "or" | "xor") {
            return Err(CommandError::bad_value(format!(
                "The $bit modifier only supports 'and', 'or', and 'xor', not '{k}' which is an unknown operator: {{{k}: {}}}",
                mongo_fmt(x)
            )));
        }
        if !matches!(x, Bson::Int32(_) | Bson::Int64(_)) {
            return Err(CommandError::bad_value(format!(
                "The $bit modifier field must be an Integer(32/64 bit); a '{}' is not supported here: {{{k}: {}}}",
                type_name(x),
                mongo_fmt(x)
            )));
        }
        bits.push((k.clone(), x.clone()));
    }
    Ok(Kind::Bit(bits))
}

fn parse_push(v: &Bson) -> Res<Kind> {
    let Bson::Document(d) = v else {
        return Ok(Kind::Push(PushSpec {
            each: vec![v.clone()],
            position: None,
            slice: None,
            sort: None,
        }));
    };
    if !d.contains_key("$each") {
        return Ok(Kind::Push(PushSpec {
            each: vec![v.clone()],
            position: None,
            slice: None,
            sort: None,
        }));
    }
    let mut each = Vec::new();
    let mut position = None;
    let mut slice = None;
    let mut sort = None;
    for (k, x) in d {
        match k.as_str() {
            "$each" => match x {
                Bson::Array(a) => each = a.clone(),
                other => {
                    return Err(CommandError::bad_value(format!(
                        "The argument to $each in $push must be an array but it was of type: {}",
                        type_name(other)
                    )))
                }
            },
            "$position" => match super::value::to_exact_i64(x) {
                Some(n) => position = Some(n),
                None => return Err(CommandError::bad_value("The value for $position must be an integer value")),
            },
            "$slice" => match super::value::to_exact_i64(x) {
                Some(n) => slice = Some(n),
                None => return Err(CommandError::bad_value("The value for $slice must be an integer value")),
            },
            "$sort" => {
                sort = Some(match x {
                    Bson::Document(s) => match SortSpec::parse(s)? {
                        Some(spec) => PushSort::Doc(spec),
                        None => return Err(CommandError::bad_value("The $sort pattern is empty when it should be a set of fields.")),
                    },
                    other => match super::value::to_f64(other) {
                        Some(1.0) => PushSort::Value(true),
                        Some(-1.0) => PushSort::Value(false),
                        _ => return Err(CommandError::bad_value("The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")),
                    },
                })
            }
            other => {
                return Err(CommandError::bad_value(format!(
                    "Unrecognized clause in $push: {other}"
                )))
            }
        }
    }
    Ok(Kind::Push(PushSpec {
        each,
        position,
        slice,
        sort,
    }))
}

/// Expands positional components into concrete paths.
fn expand_paths(doc: &Document, path: &[String], ctx: &ApplyCtx<'_>) -> Res<Vec<Vec<String>>> {
    let mut out = Vec::new();
    let root = Bson::Document(doc.clone());
    expand_rec(Some(&root), path, Vec::new(), ctx, &mut out, path)?;
    Ok(out)
}

fn expand_rec(
    cur: Option<&Bson>,
    rest: &[String],
    prefix: Vec<String>,
    ctx: &ApplyCtx<'_>,
    out: &mut Vec<Vec<String>>,
    full: &[String],
) -> Res<()> {
    if rest.is_empty() {
        out.push(prefix);
        return Ok(());
    }
    let part = &rest[0];
    let with = |p: &str| {
        let mut n = prefix.clone();
        n.push(p.to_string());
        n
    };
    if part == "$" {
        let Some(i) = ctx.pos else {
            return Err(CommandError::bad_value(
                "The positional operator did not find the match needed from the query.",
            ));
        };
        let next = match cur {
            Some(Bson::Array(a)) => a.get(i),
            _ => None,
        };
        return expand_rec(next, &rest[1..], with(&i.to_string()), ctx, out, full);
    }
    if let Some(inner) = part.strip_prefix("$[").and_then(|x| x.strip_suffix(']')) {
        let arr = match cur {
            Some(Bson::Array(a)) => a,
            Some(other) => {
                return Err(CommandError::bad_value(format!(
                    "Cannot apply array updates to non-array element {}: {}",
                    prefix.last().map(String::as_str).unwrap_or(""),
                    mongo_fmt(other)
                )))
            }
            None => {
                return Err(CommandError::bad_value(format!(
                    "The path '{}' must exist in the document in order to apply array updates.",
                    full.join(".")
                )))
            }
        };
        let filter = if inner.is_empty() {
            None
        } else {
            match ctx.array_filters.iter().find(|(id, _)| id == inner) {
                Some((_, f)) => Some(f),
                None => {
                    return Err(CommandError::bad_value(format!(
                        "No array filter found for identifier '{inner}' in path '{}'",
                        full.join(".")
                    )))
                }
            }
        };
        for (i, el) in arr.iter().enumerate() {
            let ok = match filter {
                None => true,
                Some(f) => {
                    let mut wrapper = Document::new();
                    wrapper.insert(inner, el.clone());
                    f.matches(&wrapper)
                }
            };
            if ok {
                expand_rec(Some(el), &rest[1..], with(&i.to_string()), ctx, out, full)?;
            }
        }
        return Ok(());
    }
    let next = match cur {
        Some(Bson::Document(d)) => d.get(part),
        Some(Bson::Array(a)) => as_index(part).and_then(|i| a.get(i)),
        _ => None,
    };
    expand_rec(next, &rest[1..], with(part), ctx, out, full)
}

fn has_positional(path: &[String]) -> bool {
    path.iter().any(|p| p.starts_with('$'))
}

fn id_desc(orig: &Document) -> String {
    match orig.get("_id") {
        Some(id) => format!("{{_id: {}}}", mongo_fmt(id)),
        None => "{}".to_string(),
    }
}

fn apply_op(doc: &mut Document, orig: &Document, op: &ModOp, ctx: &ApplyCtx<'_>) -> Res<()> {
    let paths = if has_positional(&op.path) {
        expand_paths(doc, &op.path, ctx)?
    } else {
        vec![op.path.clone()]
    };
    for p in paths {
        apply_at(doc, orig, &p, op, ctx)?;
    }
    Ok(())
}

fn zero_like(v: &Bson) -> Bson {
    match v {
        Bson::Int32(_) => Bson::Int32(0),
        Bson::Int64(_) => Bson::Int64(0),
        Bson::Decimal128(_) => super::value::f64_to_decimal(0.0),
        _ => Bson::Double(0.0),
    }
}

fn apply_at(
    doc: &mut Document,
    orig: &Document,
    p: &[String],
    op: &ModOp,
    ctx: &ApplyCtx<'_>,
) -> Res<()> {
    let field = p.join(".");
    let last = p.last().cloned().unwrap_or_default();
    match &op.kind {
        Kind::Set(v) => set_path(doc, p, v.clone()),
        Kind::SetOnInsert(v) => {
            if ctx.is_insert {
                set_path(doc, p, v.clone())?;
            }
            Ok(())
        }
        Kind::Unset => {
            unset_path(doc, p);
            Ok(())
        }
        Kind::Inc(arg) | Kind::Mul(arg) => apply_inc_mul(doc, orig, p, op, arg, &last),
        Kind::Min(arg) | Kind::Max(arg) => apply_min_max(doc, p, op, arg),
        Kind::Rename(to) => apply_rename(doc, orig, p, to),
        Kind::Push(push) => apply_push(doc, orig, p, &field, push),
        Kind::AddToSet(items) => apply_add_to_set(doc, p, &last, items),
        Kind::Pull(cond) => remove_from_array(doc, p, "$pull", |el| match cond {
            PullCond::Query(f) => match el {
                Bson::Document(d) => f.matches(d),
                _ => false,
            },
            PullCond::Value(pred) => match_value(pred, el),
        }),
        Kind::PullAll(vals) => {
            remove_from_array(doc, p, "$pullAll", |el| vals.iter().any(|v| bson_eq(el, v)))
        }
        Kind::Pop(first) => apply_pop(doc, p, &field, *first),
        Kind::CurrentDate(ts) => apply_current_date(doc, p, *ts),
        Kind::Bit(bits) => apply_bit(doc, orig, p, &last, bits),
    }
}

/// `$inc`/`$mul` at `p` (a missing field becomes the argument, or zero of
/// its type for `$mul`).
fn apply_inc_mul(
    doc: &mut Document,
    orig: &Document,
    p: &[String],
    op: &ModOp,
    arg: &Bson,
    last: &str,
) -> Res<()> {
    let is_inc = matches!(op.kind, Kind::Inc(_));
    let cur = get_strict(doc, p).cloned();
    let new = match cur {
        None => {
            if is_inc {
                arg.clone()
            } else {
                zero_like(arg)
            }
        }
        Some(c) if is_number(&c) => {
            let r = arith(&c, arg, if is_inc { ArithOp::Add } else { ArithOp::Mul });
            match r {
                Some(r) => r,
                None => {
                    return Err(CommandError::bad_value(format!(
                        "Failed to apply {} operations to current value ((NumberLong){}) for document {}",
                        op.name,
                        mongo_fmt(&c),
                        id_desc(orig)
                    )))
                }
            }
        }
        Some(c) => {
            return Err(CommandError::type_mismatch(format!(
                "Cannot apply {} to a value of non-numeric type. {} has the field '{}' of non-numeric type {}",
                op.name,
                id_desc(orig),
                last,
                type_name(&c)
            )))
        }
    };
    set_path(doc, p, new)
}

/// `$min`/`$max` at `p`: sets the argument if the field is missing or
/// compares greater (`$min`) or less (`$max`).
fn apply_min_max(doc: &mut Document, p: &[String], op: &ModOp, arg: &Bson) -> Res<()> {
    let want = if matches!(op.kind, Kind::Min(_)) {
        Ordering::Less
    } else {
        Ordering::Greater
    };
    match get_strict(doc, p) {
        Some(c) if cmp_bson(arg, c) != want => Ok(()),
        _ => set_path(doc, p, arg.clone()),
    }
}

/// `$rename` of `p` to `to` (a missing source is a no-op; neither may
/// traverse an array).
fn apply_rename(doc: &mut Document, orig: &Document, p: &[String], to: &[String]) -> Res<()> {
    let Some(v) = get_strict(doc, p).cloned() else {
        return Ok(());
    };
    // Sources and targets may not traverse arrays.
    for (path, what) in [(p, "source"), (to, "destination")] {
        let mut cur: Option<&Bson> = None;
        for (i, part) in path.iter().enumerate().take(path.len() - 1) {
            cur = if i == 0 {
                doc.get(part)
            } else {
                cur.and_then(|c| c.as_document()).and_then(|d| d.get(part))
            };
            if let Some(Bson::Array(_)) = cur {
                return Err(CommandError::bad_value(format!(
                    "The {what} field cannot be an array element, '{}' in doc with {}",
                    path.join("."),
                    id_desc(orig)
                )));
            }
        }
    }
    remove_path(doc, p);
    set_path(doc, to, v)
}

/// `$push` at `p` with `$each`, `$position`, `$sort` and `$slice`.
fn apply_push(
    doc: &mut Document,
    orig: &Document,
    p: &[String],
    field: &str,
    push: &PushSpec,
) -> Res<()> {
    let PushSpec {
        each,
        position,
        slice,
        sort,
    } = push;
    let mut arr = match get_strict(doc, p) {
        None => Vec::new(),
        Some(Bson::Array(a)) => a.clone(),
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "The field '{field}' must be an array but is of type {} in document {}",
                type_name(other),
                id_desc(orig)
            )))
        }
    };
    let at = match position {
        None => arr.len(),
        Some(n) if *n >= 0 => (*n as usize).min(arr.len()),
        Some(n) => (arr.len() as i64 + n).max(0) as usize,
    };
    for (i, v) in each.iter().enumerate() {
        arr.insert(at + i, v.clone());
    }
    match sort {
        Some(PushSort::Value(asc)) => arr.sort_by(|a, b| {
            let o = cmp_bson(a, b);
            if *asc {
                o
            } else {
                o.reverse()
            }
        }),
        Some(PushSort::Doc(spec)) => {
            let mut keyed: Vec<(Document, Bson)> = arr
                .drain(..)
                .map(|v| (v.as_document().cloned().unwrap_or_default(), v))
                .collect();
            spec.sort_by(&mut keyed, |t| &t.0);
            arr = keyed.into_iter().map(|(_, v)| v).collect();
        }
        None => {}
    }
    if let Some(n) = slice {
        if *n >= 0 {
            arr.truncate(*n as usize);
        } else {
            let keep = (-*n) as usize;
            if arr.len() > keep {
                arr.drain(..arr.len() - keep);
            }
        }
    }
    set_path(doc, p, Bson::Array(arr))
}

/// `$addToSet` at `p`: appends the items not already present.
fn apply_add_to_set(doc: &mut Document, p: &[String], last: &str, items: &[Bson]) -> Res<()> {
    let mut arr = match get_strict(doc, p) {
        None => Vec::new(),
        Some(Bson::Array(a)) => a.clone(),
        Some(other) => {
            return Err(CommandError::bad_value(format!(
            "Cannot apply $addToSet to non-array field. Field named '{last}' has non-array type {}",
            type_name(other)
        )))
        }
    };
    for it in items {
        if !arr.iter().any(|x| bson_eq(x, it)) {
            arr.push(it.clone());
        }
    }
    set_path(doc, p, Bson::Array(arr))
}

/// `$pop` at `p`: removes the first or the last element.
fn apply_pop(doc: &mut Document, p: &[String], field: &str, first: bool) -> Res<()> {
    match get_strict(doc, p) {
        None => Ok(()),
        Some(Bson::Array(a)) => {
            if a.is_empty() {
                return Ok(());
            }
            let mut a = a.clone();
            if first {
                a.remove(0);
            } else {
                a.pop();
            }
            set_path(doc, p, Bson::Array(a))
        }
        Some(other) => Err(CommandError::type_mismatch(format!(
            "Path '{field}' contains an element of non-array type '{}'",
            type_name(other)
        ))),
    }
}

/// `$currentDate` at `p`: now, as a date or as a timestamp.
fn apply_current_date(doc: &mut Document, p: &[String], ts: bool) -> Res<()> {
    let now = bson::DateTime::now();
    let v = if ts {
        Bson::Timestamp(bson::Timestamp {
            time: (now.timestamp_millis() / 1000) as u32,
            increment: 1,
        })
    } else {
        Bson::DateTime(now)
    };
    set_path(doc, p, v)
}

/// `$bit` at `p`: `and`/`or`/`xor` in order on an integer (missing: 0).
fn apply_bit(
    doc: &mut Document,
    orig: &Document,
    p: &[String],
    last: &str,
    bits: &[(String, Bson)],
) -> Res<()> {
    let cur = get_strict(doc, p).cloned();
    let mut acc = match cur {
        None => Bson::Int32(0),
        Some(c @ (Bson::Int32(_) | Bson::Int64(_))) => c,
        Some(other) => {
            return Err(CommandError::bad_value(format!(
                "Cannot apply $bit to a value of non-integral type.{} has the field {last} of non-integer type {}",
                id_desc(orig),
                type_name(&other)
            )))
        }
    };
    for (opn, x) in bits {
        let (a, b) = (
            super::value::to_exact_i64(&acc).unwrap_or(0),
            super::value::to_exact_i64(x).unwrap_or(0),
        );
        let r = match opn.as_str() {
            "and" => a & b,
            "or" => a | b,
            _ => a ^ b,
        };
        acc = if matches!(acc, Bson::Int32(_)) && matches!(x, Bson::Int32(_)) {
            Bson::Int32(r as i32)
        } else {
            Bson::Int64(r)
        };
    }
    set_path(doc, p, acc)
}

/// Builds the base document of an upsert from the equality parts of a query.
pub fn seed_from_query(filter: &Document) -> Res<Document> {
    let mut seed = Document::new();
    let mut set_paths: Vec<Vec<String>> = Vec::new();
    collect_equalities(filter, &mut seed, &mut set_paths)?;
    Ok(seed)
}

/// `$pull` / `$pullAll` at `p`: removes the array elements `remove`
/// selects (the field is written only if something went); a missing field
/// is left alone, anything but an array is an error.
fn remove_from_array(
    doc: &mut Document,
    p: &[String],
    op: &str,
    remove: impl Fn(&Bson) -> bool,
) -> Res<()> {
    match get_strict(doc, p) {
        None => Ok(()),
        Some(Bson::Array(a)) => {
            let kept: Vec<Bson> = a.iter().filter(|el| !remove(el)).cloned().collect();
            if kept.len() != a.len() {
                set_path(doc, p, Bson::Array(kept))?;
            }
            Ok(())
        }
        Some(_) => Err(CommandError::bad_value(format!(
            "Cannot apply {op} to a non-array value"
        ))),
    }
}

fn collect_equalities(
    filter: &Document,
    seed: &mut Document,
    seen: &mut Vec<Vec<String>>,
) -> Res<()> {
    for (k, v) in filter {
        if k == "$and" {
            if let Bson::Array(arr) = v {
                for el in arr {
                    if let Bson::Document(d) = el {
                        collect_equalities(d, seed, seen)?;
                    }
                }
            }
            continue;
        }
        if k == "$or" || k == "$nor" {
            if let Bson::Array(arr) = v {
                if arr.len() == 1 && k == "$or" {
                    if let Some(Bson::Document(d)) = arr.first() {
                        collect_equalities(d, seed, seen)?;
                    }
                }
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let value = match v {
            Bson::Document(d) if d.keys().next().is_some_and(|x| x.starts_with('$')) => {
                match d.get("$eq") {
                    Some(x) => x.clone(),
                    None => continue,
                }
            }
            Bson::RegularExpression(_) => continue,
            other => other.clone(),
        };
        let path = split(k);
        for s in seen.iter() {
            if is_prefix(s, &path) || is_prefix(&path, s) {
                return Err(CommandError::new(
                    54,
                    format!(
                        "cannot infer query fields to set, path '{}' is matched twice",
                        s.join(".")
                    ),
                ));
            }
        }
        seen.push(path.clone());
        set_path(seed, &path, value)?;
    }
    Ok(())
}

/// Builds the document to insert for an upsert that matched nothing.
pub fn build_upsert(
    filter: &Document,
    update: &Update,
    array_filters: &[(String, Filter)],
) -> Res<Document> {
    let seed = seed_from_query(filter)?;
    let ctx = ApplyCtx {
        is_insert: true,
        pos: None,
        array_filters,
    };
    let mut doc = match update {
        Update::Replacement(r) => {
            let mut d = r.clone();
            if !d.contains_key("_id") {
                if let Some(id) = seed.get("_id") {
                    d.insert("_id", id.clone());
                }
            }
            d
        }
        other => other.apply(&seed, &ctx)?,
    };
    if let (Some(a), Some(b)) = (seed.get("_id"), doc.get("_id")) {
        if !identical(a, b) {
            if update.is_replacement() {
                return Err(CommandError::new(
                    66,
                    format!(
                        "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {}",
                        mongo_fmt(b)
                    ),
                ));
            }
            return Err(CommandError::new(
                66,
                "Performing an update on the path '_id' would modify the immutable field '_id'",
            ));
        }
    }
    if !doc.contains_key("_id") {
        doc.insert("_id", Bson::ObjectId(bson::oid::ObjectId::new()));
    }
    Ok(id_first(doc))
}

/// True when `a` and `b` are the same document, field order and types included.
pub fn unchanged(a: &Document, b: &Document) -> bool {
    docs_identical(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn upd(u: Document, d: Document) -> Res<Document> {
        let up = Update::parse(&Bson::Document(u))?;
        let ctx = ApplyCtx {
            is_insert: false,
            pos: None,
            array_filters: &[],
        };
        up.apply(&d, &ctx)
    }

    fn ok(u: Document, d: Document) -> Document {
        upd(u, d).unwrap()
    }

    #[test]
    fn set_unset_and_field_order() {
        assert_eq!(
            ok(doc! {"$set": {"b": 1, "a": 2}}, doc! {"_id": 1}),
            doc! {"_id": 1, "a": 2, "b": 1}
        );
        assert_eq!(
            ok(doc! {"$set": {"x.y.z": 1}}, doc! {"_id": 1}),
            doc! {"_id": 1, "x": {"y": {"z": 1}}}
        );
        assert_eq!(
            ok(doc! {"$set": {"a": 5}}, doc! {"_id": 1, "a": 1, "b": 2}),
            doc! {"_id": 1, "a": 5, "b": 2}
        );
        assert_eq!(
            ok(doc! {"$unset": {"a": ""}}, doc! {"_id": 1, "a": 1, "b": 2}),
            doc! {"_id": 1, "b": 2}
        );
        assert_eq!(
            ok(doc! {"$set": {"arr.1": 9}}, doc! {"_id": 1, "arr": [1, 2]}),
            doc! {"_id": 1, "arr": [1, 9]}
        );
        let e = upd(doc! {"$set": {"a.b": 1}}, doc! {"_id": 1, "a": 5}).unwrap_err();
        assert_eq!(e.code, 28);
    }

    #[test]
    fn inc_mul_promotion_and_errors() {
        assert_eq!(
            ok(doc! {"$inc": {"n": 1}}, doc! {"_id": 1, "n": i32::MAX}),
            doc! {"_id": 1, "n": i64::from(i32::MAX) + 1}
        );
        assert_eq!(
            ok(doc! {"$inc": {"n": 1.5}}, doc! {"_id": 1, "n": 1}),
            doc! {"_id": 1, "n": 2.5}
        );
        assert_eq!(
            ok(doc! {"$inc": {"n": 3}}, doc! {"_id": 1}),
            doc! {"_id": 1, "n": 3}
        );
        assert_eq!(
            ok(doc! {"$mul": {"n": 3i64}}, doc! {"_id": 1}),
            doc! {"_id": 1, "n": 0i64}
        );
        assert_eq!(
            ok(doc! {"$mul": {"n": 2}}, doc! {"_id": 1, "n": 4}),
            doc! {"_id": 1, "n": 8}
        );
        let e = upd(doc! {"$inc": {"s": 1}}, doc! {"_id": 1, "s": "x"}).unwrap_err();
        assert_eq!(e.code, 14);
        assert_eq!(
            e.errmsg,
            "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 's' of non-numeric type string"
        );
        let e = upd(doc! {"$inc": {"s": "x"}}, doc! {"_id": 1}).unwrap_err();
        assert_eq!(
            e.errmsg,
            "Cannot increment with non-numeric argument: {s: \"x\"}"
        );
        let e = upd(doc! {"$inc": {"n": 1}}, doc! {"_id": 1, "n": i64::MAX}).unwrap_err();
        assert_eq!(e.code, 2);
    }

    #[test]
    fn min_max_rename_currentdate() {
        assert_eq!(
            ok(doc! {"$min": {"a": 1}}, doc! {"_id": 1, "a": 3}),
            doc! {"_id": 1, "a": 1}
        );
        assert_eq!(
            ok(doc! {"$min": {"a": 5}}, doc! {"_id": 1, "a": 3}),
            doc! {"_id": 1, "a": 3}
        );
        assert_eq!(
            ok(doc! {"$max": {"a": 5}}, doc! {"_id": 1, "a": 3}),
            doc! {"_id": 1, "a": 5}
        );
        assert_eq!(
            ok(doc! {"$max": {"a": 5}}, doc! {"_id": 1}),
            doc! {"_id": 1, "a": 5}
        );
        assert_eq!(
            ok(
                doc! {"$rename": {"a": "b.c"}},
                doc! {"_id": 1, "a": 3, "z": 1}
            ),
            doc! {"_id": 1, "z": 1, "b": {"c": 3}}
        );
        assert_eq!(
            ok(doc! {"$rename": {"q": "r"}}, doc! {"_id": 1}),
            doc! {"_id": 1}
        );
        let d = ok(
            doc! {"$currentDate": {"t": true, "ts": {"$type": "timestamp"}}},
            doc! {"_id": 1},
        );
        assert!(matches!(d.get("t"), Some(Bson::DateTime(_))));
        assert!(matches!(d.get("ts"), Some(Bson::Timestamp(_))));
    }

    #[test]
    fn array_operators() {
        assert_eq!(
            ok(doc! {"$push": {"a": 1}}, doc! {"_id": 1}),
            doc! {"_id": 1, "a": [1]}
        );
        assert_eq!(
            ok(
                doc! {"$push": {"a": {"$each": [5, 1, 4], "$sort": 1, "$slice": -2}}},
                doc! {"_id": 1, "a": [3]}
            ),
            doc! {"_id": 1, "a": [4, 5]}
        );
        assert_eq!(
            ok(
                doc! {"$push": {"a": {"$each": [0], "$position": 0}}},
                doc! {"_id": 1, "a": [1, 2]}
            ),
            doc! {"_id": 1, "a": [0, 1, 2]}
        );
        assert_eq!(
            upd(doc! {"$push": {"a": 1}}, doc! {"_id": 1, "a": 1})
                .unwrap_err()
                .code,
            2
        );
        assert_eq!(
            ok(doc! {"$addToSet": {"a": 1.0}}, doc! {"_id": 1, "a": [1]}),
            doc! {"_id": 1, "a": [1]}
        );
        assert_eq!(
            ok(
                doc! {"$addToSet": {"a": {"$each": [1, 2, 2]}}},
                doc! {"_id": 1, "a": [1]}
            ),
            doc! {"_id": 1, "a": [1, 2]}
        );
        assert_eq!(
            ok(doc! {"$pull": {"a": 2}}, doc! {"_id": 1, "a": [1, 2, 3, 2]}),
            doc! {"_id": 1, "a": [1, 3]}
        );
        assert_eq!(
            ok(
                doc! {"$pull": {"a": {"$gte": 2}}},
                doc! {"_id": 1, "a": [1, 2, 3]}
            ),
            doc! {"_id": 1, "a": [1]}
        );
        assert_eq!(
            ok(
                doc! {"$pull": {"a": {"x": 1}}},
                doc! {"_id": 1, "a": [{"x": 1, "y": 2}, {"x": 2}]}
            ),
            doc! {"_id": 1, "a": [{"x": 2}]}
        );
        assert_eq!(
            ok(
                doc! {"$pullAll": {"a": [1, 3]}},
                doc! {"_id": 1, "a": [1, 2, 3]}
            ),
            doc! {"_id": 1, "a": [2]}
        );
        assert_eq!(
            ok(doc! {"$pop": {"a": 1}}, doc! {"_id": 1, "a": [1, 2, 3]}),
            doc! {"_id": 1, "a": [1, 2]}
        );
        assert_eq!(
            ok(doc! {"$pop": {"a": -1}}, doc! {"_id": 1, "a": [1, 2, 3]}),
            doc! {"_id": 1, "a": [2, 3]}
        );
        assert_eq!(
            ok(doc! {"$bit": {"a": {"and": 6}}}, doc! {"_id": 1, "a": 3}),
            doc! {"_id": 1, "a": 2}
        );
    }

    #[test]
    fn positional_forms() {
        let up = Update::parse(&Bson::Document(doc! {"$set": {"a.$": 9}})).unwrap();
        let ctx = ApplyCtx {
            is_insert: false,
            pos: Some(1),
            array_filters: &[],
        };
        assert_eq!(
            up.apply(&doc! {"_id": 1, "a": [1, 2, 3]}, &ctx).unwrap(),
            doc! {"_id": 1, "a": [1, 9, 3]}
        );
        assert_eq!(
            ok(doc! {"$inc": {"a.$[]": 1}}, doc! {"_id": 1, "a": [1, 2]}),
            doc! {"_id": 1, "a": [2, 3]}
        );
        let up = Update::parse(&Bson::Document(doc! {"$set": {"a.$[x].k": 0}})).unwrap();
        let filters = up
            .parse_array_filters(Some(&Bson::Array(vec![Bson::Document(
                doc! {"x.k": {"$gt": 1}},
            )])))
            .unwrap();
        let ctx = ApplyCtx {
            is_insert: false,
            pos: None,
            array_filters: &filters,
        };
        assert_eq!(
            up.apply(&doc! {"_id": 1, "a": [{"k": 1}, {"k": 5}]}, &ctx)
                .unwrap(),
            doc! {"_id": 1, "a": [{"k": 1}, {"k": 0}]}
        );
        assert!(up.parse_array_filters(None).is_err());
    }

    #[test]
    fn parse_errors() {
        let e = Update::parse(&Bson::Document(doc! {"$foo": {"a": 1}})).unwrap_err();
        assert_eq!(e.code, 9);
        assert!(e.errmsg.starts_with("Unknown modifier: $foo"));
        let e =
            Update::parse(&Bson::Document(doc! {"$set": {"a": 1}, "$inc": {"a": 1}})).unwrap_err();
        assert_eq!(e.code, 40);
        assert_eq!(
            e.errmsg,
            "Updating the path 'a' would create a conflict at 'a'"
        );
        let e = Update::parse(&Bson::Document(doc! {"$set": {"a.b": 1, "a": 1}})).unwrap_err();
        assert_eq!(e.code, 40);
        assert_eq!(
            Update::parse(&Bson::Document(doc! {"$set": 1}))
                .unwrap_err()
                .code,
            9
        );
        assert_eq!(
            Update::parse(&Bson::Document(doc! {"$pop": {"a": 2}}))
                .unwrap_err()
                .code,
            9
        );
    }

    #[test]
    fn id_is_immutable() {
        let e = upd(doc! {"$set": {"_id": 2}}, doc! {"_id": 1}).unwrap_err();
        assert_eq!(e.code, 66);
        assert!(upd(doc! {"$set": {"_id": 1}}, doc! {"_id": 1}).is_ok());
        let e = upd(doc! {"_id": 2, "a": 1}, doc! {"_id": 1}).unwrap_err();
        assert_eq!(e.code, 66);
        assert_eq!(
            ok(doc! {"a": 1}, doc! {"_id": 1, "b": 1}),
            doc! {"_id": 1, "a": 1}
        );
    }

    #[test]
    fn upsert_seed() {
        let u = Update::parse(&Bson::Document(
            doc! {"$set": {"c": 1}, "$setOnInsert": {"d": 2}},
        ))
        .unwrap();
        let d = build_upsert(
            &doc! {"_id": 7, "a.b": 1, "x": {"$gt": 1}, "$and": [{"y": 2}]},
            &u,
            &[],
        )
        .unwrap();
        assert_eq!(d, doc! {"_id": 7, "a": {"b": 1}, "y": 2, "c": 1, "d": 2});
        let r = Update::parse(&Bson::Document(doc! {"z": 1})).unwrap();
        assert_eq!(
            build_upsert(&doc! {"_id": 3, "q": 1}, &r, &[]).unwrap(),
            doc! {"_id": 3, "z": 1}
        );
        let g = build_upsert(&doc! {"q": 1}, &r, &[]).unwrap();
        assert!(matches!(g.get("_id"), Some(Bson::ObjectId(_))));
        assert_eq!(g.keys().next().unwrap(), "_id");
        assert_eq!(
            seed_from_query(&doc! {"a": 1, "a.b": 2}).unwrap_err().code,
            54
        );
    }
}
