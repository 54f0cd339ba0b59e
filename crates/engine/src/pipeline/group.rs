//! `$group` and its accumulators.

use std::collections::HashSet;

use bson::{Bson, Document};
use indexmap::IndexMap;

use crate::error::{CommandError, Res};
use crate::expr::{EvalCtx, Expr};
use crate::value::{arith, cmp_bson, is_number, key_of, to_f64, ArithOp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acc {
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
                        crate::value::mongo_fmt(&other),
                        crate::value::type_name(&other)
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

pub(super) fn group(
    docs: Vec<Document>,
    id: &Expr,
    accs: &[(String, Acc, Expr)],
) -> Res<Vec<Document>> {
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
