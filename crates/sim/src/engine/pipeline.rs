//! Aggregation pipelines: stage parsing and execution over a document stream.

use std::collections::HashSet;

use bson::{Bson, Document};
use indexmap::IndexMap;

use super::error::{CommandError, Res};
use super::expr::{EvalCtx, Expr};
use super::matcher::{Filter, Pred};
use super::path::{id_first, leaf_values, split};
use super::projection::{Flavor, Projection};
use super::sort::SortSpec;
use super::value::{arith, cmp_bson, is_number, key_of, to_exact_i64, to_f64, ArithOp};

/// Gives `$lookup` access to other collections of the same database.
pub trait Source {
    fn collection_docs(&self, coll: &str) -> Vec<Document>;
}

/// A source with no collections (for update pipelines and tests).
pub struct NoSource;

impl Source for NoSource {
    fn collection_docs(&self, _coll: &str) -> Vec<Document> {
        Vec::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    Count,
    MergeObjects,
}

#[derive(Clone, Debug)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(Vec<String>, Expr)>),
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Group {
        id: Expr,
        accs: Vec<(String, Acc, Expr)>,
    },
    Count(String),
    Unwind {
        path: Vec<String>,
        index: Option<String>,
        preserve: bool,
    },
    ReplaceRoot(Expr),
    SortByCount(Expr),
    Lookup {
        from: String,
        local: Option<Vec<String>>,
        foreign: Option<String>,
        pipeline: Option<Pipeline>,
        as_: Vec<String>,
    },
    Facet(Vec<(String, Pipeline)>),
    Documents(Vec<Document>),
}

/// A parsed pipeline.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

fn stage_doc(v: &Bson) -> Res<(&str, &Bson)> {
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
                super::value::type_name(v)
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

impl Pipeline {
    /// Parses an aggregation pipeline (array of stage documents).
    pub fn parse(stages: &[Bson]) -> Res<Pipeline> {
        let mut out = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            let (name, arg) = stage_doc(s)?;
            out.push(Self::parse_stage(name, arg, i)?);
        }
        Ok(Pipeline { stages: out })
    }

    /// Parses an update pipeline (only document-shaping stages are allowed).
    pub fn parse_update(stages: &[Bson]) -> Res<Pipeline> {
        for s in stages {
            let (name, _) = stage_doc(s)?;
            if !matches!(
                name,
                "$addFields" | "$set" | "$project" | "$unset" | "$replaceRoot" | "$replaceWith"
            ) {
                return Err(CommandError::new(
                    72,
                    format!("{name} is not allowed to be used within an update"),
                ));
            }
        }
        Self::parse(stages)
    }

    fn parse_stage(name: &str, arg: &Bson, index: usize) -> Res<Stage> {
        Ok(match name {
            "$match" => {
                let Bson::Document(d) = arg else {
                    return Err(CommandError::new(
                        15959,
                        "the match filter must be an expression in an object",
                    ));
                };
                Stage::Match(Filter::parse(d)?)
            }
            "$project" => {
                let Bson::Document(d) = arg else {
                    return Err(CommandError::new(
                        15969,
                        "$project specification must be an object",
                    ));
                };
                Stage::Project(Projection::parse(d, Flavor::Project)?.expect("non-empty"))
            }
            "$addFields" | "$set" => Stage::AddFields(parse_add_fields(name, arg)?),
            "$unset" => {
                let paths: Vec<String> = match arg {
                    Bson::String(s) => vec![s.clone()],
                    Bson::Array(a) if !a.is_empty() && a.iter().all(|x| matches!(x, Bson::String(_))) => {
                        a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                    }
                    _ => {
                        return Err(CommandError::new(
                            31002,
                            "$unset specification must be a string or an array containing only string values",
                        ))
                    }
                };
                Stage::Project(Projection::exclusion_of(&paths)?)
            }
            "$sort" => {
                let Bson::Document(d) = arg else {
                    return Err(CommandError::new(
                        15973,
                        "the $sort key specification must be an object",
                    ));
                };
                match SortSpec::parse(d)? {
                    Some(s) => Stage::Sort(s),
                    None => {
                        return Err(CommandError::new(
                            15976,
                            "$sort stage must have at least one sort key",
                        ))
                    }
                }
            }
            "$skip" => match to_f64(arg) {
                None => {
                    return Err(CommandError::new(
                        15972,
                        format!(
                            "Argument to $skip must be a number not {}",
                            super::value::type_name(arg)
                        ),
                    ))
                }
                Some(f) if f < 0.0 => {
                    return Err(CommandError::new(
                        15956,
                        format!(
                            "Argument to $skip cannot be negative: {}",
                            super::value::mongo_fmt(arg)
                        ),
                    ))
                }
                Some(_) => Stage::Skip(to_exact_i64(arg).unwrap_or(0) as u64),
            },
            "$limit" => match to_f64(arg) {
                None => {
                    return Err(CommandError::new(
                        15957,
                        "the limit must be specified as a number",
                    ))
                }
                Some(f) if f <= 0.0 => {
                    return Err(CommandError::new(15958, "the limit must be positive"))
                }
                Some(_) => Stage::Limit(to_exact_i64(arg).unwrap_or(0) as u64),
            },
            "$group" => {
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
                Stage::Group { id, accs }
            }
            "$count" => {
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
                Stage::Count(s.clone())
            }
            "$unwind" => {
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
                            Some(_) => {
                                return Err(CommandError::new(28809, "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage"))
                            }
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
                    _ => return Err(CommandError::new(
                        15981,
                        "expected either a string or an object as specification for $unwind stage",
                    )),
                };
                let Some(p) = path.strip_prefix('$') else {
                    return Err(CommandError::new(
                        28818,
                        format!(
                            "path option to $unwind stage should be prefixed with a '$': {path}"
                        ),
                    ));
                };
                Stage::Unwind {
                    path: split(p),
                    index,
                    preserve,
                }
            }
            "$replaceRoot" => {
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
                Stage::ReplaceRoot(Expr::parse(nr)?)
            }
            "$replaceWith" => Stage::ReplaceRoot(Expr::parse(arg)?),
            "$sortByCount" => Stage::SortByCount(Expr::parse(arg)?),
            "$lookup" => {
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
                Stage::Lookup {
                    from,
                    local: local.map(|l| split(&l)),
                    foreign,
                    pipeline,
                    as_: split(&as_),
                }
            }
            "$facet" => {
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
                                super::value::type_name(v)
                            ),
                        ));
                    };
                    facets.push((k.clone(), Pipeline::parse(a)?));
                }
                Stage::Facet(facets)
            }
            "$documents" => {
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
                Stage::Documents(docs)
            }
            "$out" | "$merge" | "$changeStream" | "$collStats" | "$indexStats" | "$currentOp"
            | "$listSessions" | "$planCacheStats" | "$search" | "$geoNear" | "$graphLookup"
            | "$unionWith" | "$bucket" | "$bucketAuto" | "$sample" | "$redact" | "$densify"
            | "$fill" | "$setWindowFields" => {
                return Err(CommandError::new(
                    115,
                    format!("{name} is not supported by holdfast-sim"),
                ))
            }
            other => {
                return Err(CommandError::new(
                    40324,
                    format!("Unrecognized pipeline stage name: '{other}'"),
                ))
            }
        })
    }

    /// Whether the pipeline starts with `$documents` (collection-less aggregate).
    pub fn starts_with_documents(&self) -> bool {
        matches!(self.stages.first(), Some(Stage::Documents(_)))
    }

    /// Runs the pipeline over `docs`.
    pub fn run(&self, mut docs: Vec<Document>, src: &dyn Source) -> Res<Vec<Document>> {
        for st in &self.stages {
            docs = run_stage(st, docs, src)?;
        }
        Ok(docs)
    }

    /// Runs a document-shaping pipeline over one document (update pipelines).
    pub fn apply_to_doc(&self, doc: &Document) -> Res<Document> {
        let out = self.run(vec![doc.clone()], &NoSource)?;
        Ok(out.into_iter().next().unwrap_or_default())
    }
}

fn set_field_agg(doc: &mut Document, path: &[String], v: Option<Bson>) {
    if path.len() == 1 {
        match v {
            Some(x) => {
                doc.insert(path[0].clone(), x);
            }
            None => {
                doc.remove(&path[0]);
            }
        }
        return;
    }
    match doc.get_mut(&path[0]) {
        Some(Bson::Document(d)) => set_field_agg(d, &path[1..], v),
        Some(Bson::Array(a)) => {
            for el in a.iter_mut() {
                match el {
                    Bson::Document(d) => set_field_agg(d, &path[1..], v.clone()),
                    other => {
                        let mut d = Document::new();
                        set_field_agg(&mut d, &path[1..], v.clone());
                        *other = Bson::Document(d);
                    }
                }
            }
        }
        _ => {
            if v.is_some() {
                let mut d = Document::new();
                set_field_agg(&mut d, &path[1..], v);
                doc.insert(path[0].clone(), d);
            }
        }
    }
}

enum AccState {
    Sum(Bson),
    Avg(f64, u64),
    Best(Option<Bson>),
    First(Option<Bson>),
    Last(Bson),
    List(Vec<Bson>, HashSet<Vec<u8>>),
    Count(i64),
    Merge(Document),
}

fn acc_init(a: Acc) -> AccState {
    match a {
        Acc::Sum => AccState::Sum(Bson::Int32(0)),
        Acc::Avg => AccState::Avg(0.0, 0),
        Acc::Min | Acc::Max => AccState::Best(None),
        Acc::First => AccState::First(None),
        Acc::Last => AccState::Last(Bson::Null),
        Acc::Push | Acc::AddToSet => AccState::List(Vec::new(), HashSet::new()),
        Acc::Count => AccState::Count(0),
        Acc::MergeObjects => AccState::Merge(Document::new()),
    }
}

fn acc_add(a: Acc, st: &mut AccState, v: Option<Bson>) -> Res<()> {
    match (a, st) {
        (Acc::Sum, AccState::Sum(s)) => {
            if let Some(x) = v.filter(is_number) {
                *s = arith(s, &x, ArithOp::Add).unwrap_or_else(|| {
                    Bson::Double(to_f64(s).unwrap_or(0.0) + to_f64(&x).unwrap_or(0.0))
                });
            }
        }
        (Acc::Avg, AccState::Avg(sum, n)) => {
            if let Some(f) = v.as_ref().filter(|x| is_number(x)).and_then(to_f64) {
                *sum += f;
                *n += 1;
            }
        }
        (Acc::Min | Acc::Max, AccState::Best(b)) => {
            if let Some(x) = v.filter(|x| !matches!(x, Bson::Null | Bson::Undefined)) {
                let replace = match b {
                    None => true,
                    Some(cur) => {
                        let o = cmp_bson(&x, cur);
                        if a == Acc::Min {
                            o == std::cmp::Ordering::Less
                        } else {
                            o == std::cmp::Ordering::Greater
                        }
                    }
                };
                if replace {
                    *b = Some(x);
                }
            }
        }
        (Acc::First, AccState::First(f)) if f.is_none() => {
            *f = Some(v.unwrap_or(Bson::Null));
        }
        (Acc::Last, AccState::Last(l)) => *l = v.unwrap_or(Bson::Null),
        (Acc::Push, AccState::List(l, _)) => {
            if let Some(x) = v {
                l.push(x);
            }
        }
        (Acc::AddToSet, AccState::List(l, seen)) => {
            if let Some(x) = v {
                if seen.insert(key_of(&x)) {
                    l.push(x);
                }
            }
        }
        (Acc::Count, AccState::Count(c)) => *c += 1,
        (Acc::MergeObjects, AccState::Merge(m)) => match v {
            None | Some(Bson::Null) => {}
            Some(Bson::Document(d)) => {
                for (k, x) in d {
                    m.insert(k, x);
                }
            }
            Some(other) => {
                return Err(CommandError::new(
                    40400,
                    format!(
                        "$mergeObjects requires object inputs, but input {} is of type {}",
                        super::value::mongo_fmt(&other),
                        super::value::type_name(&other)
                    ),
                ))
            }
        },
        _ => {}
    }
    Ok(())
}

fn acc_result(st: AccState) -> Bson {
    match st {
        AccState::Sum(s) => s,
        AccState::Avg(sum, n) => {
            if n == 0 {
                Bson::Null
            } else {
                Bson::Double(sum / n as f64)
            }
        }
        AccState::Best(b) => b.unwrap_or(Bson::Null),
        AccState::First(f) => f.unwrap_or(Bson::Null),
        AccState::Last(l) => l,
        AccState::List(l, _) => Bson::Array(l),
        AccState::Count(c) => match i32::try_from(c) {
            Ok(i) => Bson::Int32(i),
            Err(_) => Bson::Int64(c),
        },
        AccState::Merge(m) => Bson::Document(m),
    }
}

fn group(docs: Vec<Document>, id: &Expr, accs: &[(String, Acc, Expr)]) -> Res<Vec<Document>> {
    let mut groups: IndexMap<Vec<u8>, (Bson, Vec<AccState>)> = IndexMap::new();
    for d in &docs {
        let ctx = EvalCtx::new(d);
        let key = id.eval(&ctx)?.unwrap_or(Bson::Null);
        let entry = groups.entry(key_of(&key)).or_insert_with(|| {
            (
                key.clone(),
                accs.iter().map(|(_, a, _)| acc_init(*a)).collect(),
            )
        });
        for (i, (_, a, e)) in accs.iter().enumerate() {
            let v = if *a == Acc::Count {
                None
            } else {
                e.eval(&ctx)?
            };
            acc_add(*a, &mut entry.1[i], v)?;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, (key, states)) in groups {
        let mut d = Document::new();
        d.insert("_id", key);
        for ((name, _, _), st) in accs.iter().zip(states) {
            d.insert(name.clone(), acc_result(st));
        }
        out.push(d);
    }
    Ok(out)
}

fn get_doc_path<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let mut cur = doc.get(&path[0])?;
    for p in &path[1..] {
        cur = cur.as_document()?.get(p)?;
    }
    Some(cur)
}

fn run_stage(st: &Stage, docs: Vec<Document>, src: &dyn Source) -> Res<Vec<Document>> {
    Ok(match st {
        Stage::Match(f) => docs.into_iter().filter(|d| f.matches(d)).collect(),
        Stage::Project(p) => docs
            .iter()
            .map(|d| p.apply(d, None))
            .collect::<Res<Vec<_>>>()?,
        Stage::AddFields(fields) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                let ctx = EvalCtx::new(&d);
                let vals = fields
                    .iter()
                    .map(|(_, e)| e.eval(&ctx))
                    .collect::<Res<Vec<_>>>()?;
                let mut n = d.clone();
                for ((path, _), v) in fields.iter().zip(vals) {
                    set_field_agg(&mut n, path, v);
                }
                out.push(n);
            }
            out
        }
        Stage::Sort(s) => {
            let mut docs = docs;
            s.sort(&mut docs);
            docs
        }
        Stage::Skip(n) => docs.into_iter().skip(*n as usize).collect(),
        Stage::Limit(n) => docs.into_iter().take(*n as usize).collect(),
        Stage::Group { id, accs } => group(docs, id, accs)?,
        Stage::Count(name) => {
            if docs.is_empty() {
                Vec::new()
            } else {
                let mut d = Document::new();
                let n = docs.len();
                d.insert(
                    name.clone(),
                    match i32::try_from(n) {
                        Ok(i) => Bson::Int32(i),
                        Err(_) => Bson::Int64(n as i64),
                    },
                );
                vec![d]
            }
        }
        Stage::Unwind {
            path,
            index,
            preserve,
        } => {
            let mut out = Vec::new();
            for d in docs {
                match get_doc_path(&d, path).cloned() {
                    Some(Bson::Array(a)) if !a.is_empty() => {
                        for (i, el) in a.into_iter().enumerate() {
                            let mut n = d.clone();
                            set_field_agg(&mut n, path, Some(el));
                            if let Some(ix) = index {
                                n.insert(ix.clone(), Bson::Int64(i as i64));
                            }
                            out.push(n);
                        }
                    }
                    Some(Bson::Array(_)) => {
                        if *preserve {
                            let mut n = d.clone();
                            set_field_agg(&mut n, path, None);
                            if let Some(ix) = index {
                                n.insert(ix.clone(), Bson::Null);
                            }
                            out.push(n);
                        }
                    }
                    None | Some(Bson::Null) | Some(Bson::Undefined) => {
                        if *preserve {
                            let mut n = d.clone();
                            if let Some(ix) = index {
                                n.insert(ix.clone(), Bson::Null);
                            }
                            out.push(n);
                        }
                    }
                    Some(_) => {
                        let mut n = d.clone();
                        if let Some(ix) = index {
                            n.insert(ix.clone(), Bson::Null);
                        }
                        out.push(n);
                    }
                }
            }
            out
        }
        Stage::ReplaceRoot(e) => {
            let mut out = Vec::with_capacity(docs.len());
            for d in &docs {
                match e.eval(&EvalCtx::new(d))? {
                    Some(Bson::Document(n)) => out.push(n),
                    other => {
                        return Err(CommandError::new(
                            40228,
                            format!(
                                "'replacement document' must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'. Input document: {}",
                                other.as_ref().map(super::value::mongo_fmt).unwrap_or_else(|| "MISSING".into()),
                                other.as_ref().map(super::value::type_name).unwrap_or("missing"),
                                super::value::mongo_fmt_doc(d)
                            ),
                        ))
                    }
                }
            }
            out
        }
        Stage::SortByCount(e) => {
            let mut g = group(
                docs,
                e,
                &[("count".to_string(), Acc::Sum, Expr::Lit(Bson::Int32(1)))],
            )?;
            let spec = SortSpec::parse(&bson::doc! {"count": -1})?.expect("non-empty");
            spec.sort(&mut g);
            g
        }
        Stage::Lookup {
            from,
            local,
            foreign,
            pipeline,
            as_,
        } => {
            let foreign_docs = src.collection_docs(from);
            let mut out = Vec::with_capacity(docs.len());
            for d in docs {
                let mut matched: Vec<Document> = match (local, foreign) {
                    (Some(l), Some(f)) => {
                        let mut vals: Vec<Bson> = leaf_values(&d, l).into_iter().cloned().collect();
                        if vals.is_empty() {
                            vals.push(Bson::Null);
                        }
                        let filt = Filter::Path(split(f), Pred::In(vals, Vec::new()));
                        foreign_docs
                            .iter()
                            .filter(|fd| filt.matches(fd))
                            .cloned()
                            .collect()
                    }
                    _ => foreign_docs.clone(),
                };
                if let Some(p) = pipeline {
                    matched = p.run(matched, src)?;
                }
                let mut n = d.clone();
                set_field_agg(
                    &mut n,
                    as_,
                    Some(Bson::Array(
                        matched.into_iter().map(Bson::Document).collect(),
                    )),
                );
                out.push(n);
            }
            out
        }
        Stage::Facet(facets) => {
            let mut d = Document::new();
            for (name, p) in facets {
                let r = p.run(docs.clone(), src)?;
                d.insert(
                    name.clone(),
                    Bson::Array(r.into_iter().map(Bson::Document).collect()),
                );
            }
            vec![d]
        }
        Stage::Documents(ds) => ds.iter().cloned().map(id_first_keep).collect(),
    })
}

fn id_first_keep(d: Document) -> Document {
    id_first(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn run(p: Vec<Document>, docs: Vec<Document>) -> Res<Vec<Document>> {
        let stages: Vec<Bson> = p.into_iter().map(Bson::Document).collect();
        Pipeline::parse(&stages)?.run(docs, &NoSource)
    }

    fn sample() -> Vec<Document> {
        vec![
            doc! {"_id": 1, "cat": "a", "n": 5, "tags": ["x", "y"]},
            doc! {"_id": 2, "cat": "b", "n": 3, "tags": []},
            doc! {"_id": 3, "cat": "a", "n": 1.5, "tags": ["x"]},
            doc! {"_id": 4, "n": 10},
        ]
    }

    #[test]
    fn match_sort_skip_limit_project() {
        let r = run(
            vec![
                doc! {"$match": {"n": {"$gte": 2}}},
                doc! {"$sort": {"n": -1}},
                doc! {"$skip": 1},
                doc! {"$limit": 1},
                doc! {"$project": {"n": 1, "_id": 0}},
            ],
            sample(),
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"n": 5}]);
    }

    #[test]
    fn group_accumulators() {
        let r = run(
            vec![
                doc! {"$group": {
                    "_id": "$cat",
                    "total": {"$sum": "$n"},
                    "count": {"$sum": 1},
                    "avg": {"$avg": "$n"},
                    "min": {"$min": "$n"},
                    "max": {"$max": "$n"},
                    "first": {"$first": "$_id"},
                    "last": {"$last": "$_id"},
                    "ids": {"$push": "$_id"},
                    "tags": {"$addToSet": "$cat"},
                    "c": {"$count": {}},
                }},
                doc! {"$sort": {"_id": 1}},
            ],
            sample(),
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            doc! {"_id": null, "total": 10, "count": 1, "avg": 10.0, "min": 10, "max": 10, "first": 4, "last": 4, "ids": [4], "tags": [], "c": 1}
        );
        assert_eq!(
            r[1],
            doc! {"_id": "a", "total": 6.5, "count": 2, "avg": 3.25, "min": 1.5, "max": 5, "first": 1, "last": 3, "ids": [1, 3], "tags": ["a"], "c": 2}
        );
        let e = run(vec![doc! {"$group": {"x": {"$sum": 1}}}], vec![]).unwrap_err();
        assert_eq!(e.code, 15955);
        let e = run(
            vec![doc! {"$group": {"_id": null, "x": {"$bogus": 1}}}],
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.code, 15952);
    }

    #[test]
    fn group_keys_are_numerically_normalised() {
        let r = run(
            vec![doc! {"$group": {"_id": "$k", "n": {"$sum": 1}}}],
            vec![doc! {"k": 1}, doc! {"k": 1.0}, doc! {"k": 2i64}],
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"_id": 1, "n": 2}, doc! {"_id": 2i64, "n": 1}]);
    }

    #[test]
    fn unwind_forms() {
        let r = run(
            vec![doc! {"$unwind": "$tags"}, doc! {"$project": {"tags": 1}}],
            sample(),
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                doc! {"_id": 1, "tags": "x"},
                doc! {"_id": 1, "tags": "y"},
                doc! {"_id": 3, "tags": "x"}
            ]
        );
        let r = run(
            vec![doc! {"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true, "includeArrayIndex": "i"}}],
            sample(),
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[1].get("i"), Some(&Bson::Int64(1)));
        assert_eq!(r[2], doc! {"_id": 2, "cat": "b", "n": 3, "i": null});
        assert_eq!(r[4], doc! {"_id": 4, "n": 10, "i": null});
    }

    #[test]
    fn add_fields_unset_count_replace_root() {
        let r = run(
            vec![
                doc! {"$set": {"m": {"$multiply": ["$n", 2]}, "sub.x": 1}},
                doc! {"$unset": ["tags", "cat"]},
                doc! {"$match": {"_id": 2}},
            ],
            sample(),
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"_id": 2, "n": 3, "m": 6, "sub": {"x": 1}}]);
        let r = run(
            vec![doc! {"$match": {"cat": "a"}}, doc! {"$count": "total"}],
            sample(),
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"total": 2}]);
        assert!(run(
            vec![doc! {"$match": {"cat": "zz"}}, doc! {"$count": "total"}],
            sample()
        )
        .unwrap()
        .is_empty());
        let r = run(
            vec![
                doc! {"$match": {"_id": 1}},
                doc! {"$replaceRoot": {"newRoot": {"c": "$cat"}}},
            ],
            sample(),
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"c": "a"}]);
        let r = run(vec![doc! {"$sortByCount": "$cat"}], sample()).unwrap();
        assert_eq!(r[0], doc! {"_id": "a", "count": 2});
    }

    #[test]
    fn facet_and_errors() {
        let r = run(
            vec![doc! {"$facet": {"n": [{"$count": "c"}], "top": [{"$sort": {"n": -1}}, {"$limit": 1}, {"$project": {"_id": 1}}]}}],
            sample(),
        )
        .unwrap();
        assert_eq!(r, vec![doc! {"n": [{"c": 4}], "top": [{"_id": 4}]}]);
        let e = run(vec![doc! {"$bogus": {}}], vec![]).unwrap_err();
        assert_eq!(
            (e.code, e.errmsg.as_str()),
            (40324, "Unrecognized pipeline stage name: '$bogus'")
        );
        assert_eq!(
            run(vec![doc! {"$limit": 0}], vec![]).unwrap_err().code,
            15958
        );
        assert_eq!(run(vec![doc! {"$out": "x"}], vec![]).unwrap_err().code, 115);
        assert_eq!(
            run(vec![doc! {"$match": {}, "$limit": 1}], vec![])
                .unwrap_err()
                .code,
            40323
        );
    }
}
