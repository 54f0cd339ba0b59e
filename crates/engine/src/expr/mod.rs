//! Aggregation expressions (`"$field"`, `"$$var"`, `{$op: args}`, literals,
//! expression objects and arrays). `None` stands for a missing value.
//!
//! [`Expr::parse`] (in `parse`) builds the tree; [`Expr::eval`] evaluates it
//! and routes each operator to the file of its family: `arith`, `compare`
//! (comparison and boolean), `string`, `array`, `set`, `object`, `convert`
//! (types and conversions) and `control` (conditionals, variables and
//! iteration).

mod arith;
mod array;
mod compare;
mod control;
mod convert;
mod object;
mod parse;
mod set;
mod string;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bson::{Bson, Document};

use crate::error::{CommandError, Res};
use crate::path::get_agg;

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

impl Expr {
    /// Evaluates to a value, or `None` for missing.
    pub fn eval(&self, ctx: &EvalCtx<'_>) -> Res<Val> {
        match self {
            Expr::Lit(v) => Ok(Some(v.clone())),
            Expr::Field(p) => Ok(get_agg_doc(ctx.root, p)),
            Expr::Var(name, p) => eval_var(name, p, ctx),
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
            Expr::Cond(c, t, e) => control::cond(c, t, e, ctx),
            Expr::Let(bindings, body) => control::let_in(bindings, body, ctx),
            Expr::Map { input, var, body } => control::map(input, var, body, ctx),
            Expr::Filter {
                input,
                var,
                cond,
                limit,
            } => control::filter(input, var, cond, limit.as_deref(), ctx),
            Expr::Reduce {
                input,
                initial,
                body,
            } => control::reduce(input, initial, body, ctx),
            Expr::Switch { branches, default } => {
                control::switch(branches, default.as_deref(), ctx)
            }
            Expr::Op(name, args) => eval_op(name, args, ctx),
        }
    }
}

/// `$$ROOT`, `$$CURRENT`, `$$REMOVE` (missing), `$$NOW` or a user variable,
/// followed by a field path.
fn eval_var(name: &str, p: &[String], ctx: &EvalCtx<'_>) -> Res<Val> {
    let base = match name {
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

/// Evaluates `{name: args}`: routes the operator to its family.
fn eval_op(name: &str, args: &[Expr], ctx: &EvalCtx<'_>) -> Res<Val> {
    match name {
        "$add" => arith::add(args, ctx),
        "$subtract" => arith::subtract(name, args, ctx),
        "$multiply" => arith::multiply(args, ctx),
        "$divide" | "$mod" | "$pow" => arith::divide_mod_pow(name, args, ctx),
        "$abs" | "$ceil" | "$floor" | "$sqrt" | "$exp" | "$ln" | "$log10" | "$round" | "$trunc" => {
            arith::unary(name, args, ctx)
        }
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$cmp" => {
            compare::compare(name, args, ctx)
        }
        "$and" => compare::and(args, ctx),
        "$or" => compare::or(args, ctx),
        "$not" => compare::not(name, args, ctx),
        "$ifNull" => control::if_null(args, ctx),
        "$concat" => string::concat(args, ctx),
        "$toLower" | "$toUpper" => string::change_case(name, args, ctx),
        "$substr" | "$substrBytes" | "$substrCP" => string::substr(name, args, ctx),
        "$strLenBytes" | "$strLenCP" => string::str_len(name, args, ctx),
        "$split" => string::split(name, args, ctx),
        "$trim" | "$ltrim" | "$rtrim" => string::trim(name, args, ctx),
        "$strcasecmp" => string::strcasecmp(name, args, ctx),
        "$regexMatch" => string::regex_match(args, ctx),
        "$size" => array::size(name, args, ctx),
        "$arrayElemAt" => array::array_elem_at(name, args, ctx),
        "$first" | "$last" => array::first_last(name, args, ctx),
        "$concatArrays" => array::concat_arrays(name, args, ctx),
        "$in" => array::is_in(name, args, ctx),
        "$isArray" => array::is_array(args, ctx),
        "$slice" => array::slice(name, args, ctx),
        "$reverseArray" => array::reverse_array(name, args, ctx),
        "$indexOfArray" => array::index_of_array(name, args, ctx),
        "$range" => array::range(args, ctx),
        "$sum" | "$avg" | "$min" | "$max" => array::accumulate(name, args, ctx),
        "$mergeObjects" => object::merge_objects(args, ctx),
        "$objectToArray" => object::object_to_array(args, ctx),
        "$arrayToObject" => object::array_to_object(name, args, ctx),
        "$getField" => object::get_field(args, ctx),
        "$type" => convert::type_of(name, args, ctx),
        "$isNumber" => convert::is_number(args, ctx),
        "$toString" => convert::to_string(name, args, ctx),
        "$toInt" | "$toLong" | "$toDouble" | "$toDecimal" => convert::to_number(name, args, ctx),
        "$toBool" => convert::to_bool(args, ctx),
        "$toObjectId" => convert::to_object_id(args, ctx),
        "$setUnion" | "$setIntersection" | "$setDifference" | "$setIsSubset" | "$setEquals" => {
            set::set_op(name, args, ctx)
        }
        "$anyElementTrue" | "$allElementsTrue" => set::any_all_elements_true(name, args, ctx),
        other => Err(CommandError::new(
            168,
            format!("Unrecognized expression '{other}'"),
        )),
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
