//! Execution of pipeline stages over a document stream.

use bson::{Bson, Document};

use super::group::{group, Acc};
use super::{Pipeline, Source, Stage};
use crate::error::{CommandError, Res};
use crate::expr::{EvalCtx, Expr};
use crate::matcher::{Filter, Pred};
use crate::path::{id_first, leaf_values, split};
use crate::sort::SortSpec;

/// Runs one stage over the output of the previous one.
pub(super) fn run_stage(st: &Stage, docs: Vec<Document>, src: &dyn Source) -> Res<Vec<Document>> {
    Ok(match st {
        Stage::Match(f) => docs.into_iter().filter(|d| f.matches(d)).collect(),
        Stage::Project(p) => docs
            .iter()
            .map(|d| p.apply(d, None))
            .collect::<Res<Vec<_>>>()?,
        Stage::AddFields(fields) => add_fields(docs, fields)?,
        Stage::Sort(s) => {
            let mut docs = docs;
            s.sort(&mut docs);
            docs
        }
        Stage::Skip(n) => docs.into_iter().skip(*n as usize).collect(),
        Stage::Limit(n) => docs.into_iter().take(*n as usize).collect(),
        Stage::Group { id, accs } => group(docs, id, accs)?,
        Stage::Count(name) => count(docs, name)?,
        Stage::Unwind {
            path,
            index,
            preserve,
        } => unwind(docs, path, index.as_ref(), *preserve)?,
        Stage::ReplaceRoot(e) => replace_root(docs, e)?,
        Stage::SortByCount(e) => sort_by_count(docs, e)?,
        Stage::Lookup {
            from,
            local,
            foreign,
            pipeline,
            as_,
        } => lookup(
            docs,
            src,
            from,
            local.as_deref(),
            foreign.as_deref(),
            pipeline.as_ref(),
            as_,
        )?,
        Stage::Facet(facets) => facet(docs, facets, src)?,
        Stage::Documents(ds) => ds.iter().cloned().map(id_first_keep).collect(),
    })
}

/// `$addFields`/`$set`: every expression is evaluated against the input
/// document, then the fields are set in order.
fn add_fields(docs: Vec<Document>, fields: &[(Vec<String>, Expr)]) -> Res<Vec<Document>> {
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
    Ok(out)
}

/// `$count`: one document `{name: n}`, or none for an empty input.
fn count(docs: Vec<Document>, name: &str) -> Res<Vec<Document>> {
    Ok(if docs.is_empty() {
        Vec::new()
    } else {
        let mut d = Document::new();
        let n = docs.len();
        d.insert(
            name,
            match i32::try_from(n) {
                Ok(i) => Bson::Int32(i),
                Err(_) => Bson::Int64(n as i64),
            },
        );
        vec![d]
    })
}

/// `$unwind`: one document per element of the array at `path`, with the
/// element index in `index` if asked; empty arrays, null and missing values
/// are kept (without the field) only with `preserve`, other values as they are.
fn unwind(
    docs: Vec<Document>,
    path: &[String],
    index: Option<&String>,
    preserve: bool,
) -> Res<Vec<Document>> {
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
                if preserve {
                    let mut n = d.clone();
                    set_field_agg(&mut n, path, None);
                    if let Some(ix) = index {
                        n.insert(ix.clone(), Bson::Null);
                    }
                    out.push(n);
                }
            }
            None | Some(Bson::Null) | Some(Bson::Undefined) => {
                if preserve {
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
    Ok(out)
}

/// `$replaceRoot`/`$replaceWith`: the expression must evaluate to a document
/// (40228).
fn replace_root(docs: Vec<Document>, e: &Expr) -> Res<Vec<Document>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in &docs {
        match e.eval(&EvalCtx::new(d))? {
            Some(Bson::Document(n)) => out.push(n),
            other => {
                return Err(CommandError::new(
                    40228,
                    format!(
                        "'replacement document' must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'. Input document: {}",
                        other.as_ref().map(crate::value::mongo_fmt).unwrap_or_else(|| "MISSING".into()),
                        other.as_ref().map(crate::value::type_name).unwrap_or("missing"),
                        crate::value::mongo_fmt_doc(d)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// `$sortByCount`: `$group` by the expression counting documents, then
/// `$sort: {count: -1}`.
fn sort_by_count(docs: Vec<Document>, e: &Expr) -> Res<Vec<Document>> {
    let mut g = group(
        docs,
        e,
        &[("count".to_string(), Acc::Sum, Expr::Lit(Bson::Int32(1)))],
    )?;
    let spec = SortSpec::parse(&bson::doc! {"count": -1})?.expect("non-empty");
    spec.sort(&mut g);
    Ok(g)
}

/// `$lookup`: adds to each document the array `as_` of the documents of
/// `from` whose `foreign` field matches a value of its `local` field (or all
/// of them), run through `pipeline`.
fn lookup(
    docs: Vec<Document>,
    src: &dyn Source,
    from: &str,
    local: Option<&[String]>,
    foreign: Option<&str>,
    pipeline: Option<&Pipeline>,
    as_: &[String],
) -> Res<Vec<Document>> {
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
    Ok(out)
}

/// `$facet`: one document with, for each facet, the results of its pipeline
/// over all input documents.
fn facet(
    docs: Vec<Document>,
    facets: &[(String, Pipeline)],
    src: &dyn Source,
) -> Res<Vec<Document>> {
    let mut d = Document::new();
    for (name, p) in facets {
        let r = p.run(docs.clone(), src)?;
        d.insert(
            name.clone(),
            Bson::Array(r.into_iter().map(Bson::Document).collect()),
        );
    }
    Ok(vec![d])
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

fn get_doc_path<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let mut cur = doc.get(&path[0])?;
    for p in &path[1..] {
        cur = cur.as_document()?.get(p)?;
    }
    Some(cur)
}

fn id_first_keep(d: Document) -> Document {
    id_first(d)
}
