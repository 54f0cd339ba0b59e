//! Projections, shared by `find` (with `$slice`, `$elemMatch` and the
//! positional `field.$` forms) and the `$project` / `$unset` stages.

use bson::{Bson, Document};
use indexmap::IndexMap;

use super::error::{CommandError, Res};
use super::expr::{EvalCtx, Expr};
use super::matcher::Filter;
use super::path::split;
use super::value::{to_exact_i64, truthy};

#[derive(Clone, Debug)]
enum Node {
    Include,
    Exclude,
    Expr(Expr),
    Slice(i64, Option<i64>),
    ElemMatch(Filter),
    Positional,
    Sub(Tree),
}

type Tree = IndexMap<String, Node>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Inclusion,
    Exclusion,
}

/// A parsed projection.
#[derive(Clone, Debug)]
pub struct Projection {
    tree: Tree,
    kind: Kind,
}

/// Which flavour of projection is being parsed (decides error prefixes and operators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Find,
    Project,
}

fn wrap(flavor: Flavor, e: CommandError) -> CommandError {
    match flavor {
        Flavor::Find => e,
        Flavor::Project => CommandError {
            errmsg: format!("Invalid $project :: caused by :: {}", e.errmsg),
            ..e
        },
    }
}

fn is_bool_like(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

fn insert_node(tree: &mut Tree, path: &[String], node: Node, full: &str) -> Res<()> {
    if path.len() == 1 {
        if tree.contains_key(&path[0]) {
            return Err(CommandError::new(
                31250,
                format!("Path collision at {full}"),
            ));
        }
        tree.insert(path[0].clone(), node);
        return Ok(());
    }
    let entry = tree
        .entry(path[0].clone())
        .or_insert_with(|| Node::Sub(Tree::new()));
    match entry {
        Node::Sub(t) => insert_node(t, &path[1..], node, full),
        _ => Err(CommandError::new(
            31250,
            format!(
                "Path collision at {full} remaining portion {}",
                path[1..].join(".")
            ),
        )),
    }
}

impl Projection {
    /// Parses a projection spec. `None` for find's empty projection (return whole documents).
    pub fn parse(spec: &Document, flavor: Flavor) -> Res<Option<Projection>> {
        if spec.is_empty() {
            return match flavor {
                Flavor::Find => Ok(None),
                Flavor::Project => Err(CommandError::new(
                    51272,
                    "Invalid $project :: caused by :: projection specification must have at least one field",
                )),
            };
        }
        let mut tree = Tree::new();
        let mut kind: Option<Kind> = None;
        let mut id_node: Option<Node> = None;
        Self::parse_into(spec, "", flavor, &mut tree, &mut kind, &mut id_node)
            .map_err(|e| wrap(flavor, e))?;
        let kind = match (kind, &id_node) {
            (Some(k), _) => k,
            // `{_id: 1}` alone is an inclusion projection; `{_id: 0}` alone an exclusion.
            (None, Some(Node::Include | Node::Expr(_))) => Kind::Inclusion,
            (None, _) => Kind::Exclusion,
        };
        // `_id` is included by default.
        let mut full = Tree::new();
        match id_node {
            Some(n) => {
                full.insert("_id".to_string(), n);
            }
            None if kind == Kind::Inclusion => {
                full.insert("_id".to_string(), Node::Include);
            }
            None => {}
        }
        for (k, v) in tree {
            full.insert(k, v);
        }
        Ok(Some(Projection { tree: full, kind }))
    }

    fn parse_into(
        spec: &Document,
        prefix: &str,
        flavor: Flavor,
        tree: &mut Tree,
        kind: &mut Option<Kind>,
        id_node: &mut Option<Node>,
    ) -> Res<()> {
        for (k, v) in spec {
            let full = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if k.starts_with('$') && !(flavor == Flavor::Find && k == "$") {
                return Err(CommandError::new(
                    31344,
                    format!("Cannot use a $-prefixed field name in a projection: {full}"),
                ));
            }
            let (path_str, positional) = match full.strip_suffix(".$") {
                Some(p) if flavor == Flavor::Find => (p.to_string(), true),
                _ => (full.clone(), false),
            };
            let node = if positional {
                Node::Positional
            } else {
                match v {
                    v if is_bool_like(v) => {
                        if truthy(v) {
                            Node::Include
                        } else {
                            Node::Exclude
                        }
                    }
                    Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                        let op = d.keys().next().unwrap().as_str();
                        match (flavor, op) {
                            (Flavor::Find, "$slice") => Node::Slice(
                                parse_slice(d.get("$slice").unwrap())?.0,
                                parse_slice(d.get("$slice").unwrap())?.1,
                            ),
                            (Flavor::Find, "$elemMatch") => {
                                let Some(Bson::Document(f)) = d.get("$elemMatch") else {
                                    return Err(CommandError::bad_value(
                                        "elemMatch: Invalid argument, object required.",
                                    ));
                                };
                                Node::ElemMatch(Filter::parse(f)?)
                            }
                            _ => Node::Expr(Expr::parse(v)?),
                        }
                    }
                    Bson::Document(d) => {
                        if d.is_empty() {
                            return Err(CommandError::new(
                                51270,
                                format!("An empty sub-projection is not a valid value. Found empty object at path {full}"),
                            ));
                        }
                        Self::parse_into(d, &full, flavor, tree, kind, id_node)?;
                        continue;
                    }
                    other => Node::Expr(Expr::parse(other)?),
                }
            };
            if full == "_id" {
                *id_node = Some(node);
                continue;
            }
            let this_kind = match node {
                Node::Exclude => Some(Kind::Exclusion),
                Node::Slice(..) => None,
                _ => Some(Kind::Inclusion),
            };
            if let Some(tk) = this_kind {
                match *kind {
                    None => *kind = Some(tk),
                    Some(Kind::Inclusion) if tk == Kind::Exclusion => {
                        return Err(CommandError::new(
                            31254,
                            format!("Cannot do exclusion on field {full} in inclusion projection"),
                        ))
                    }
                    Some(Kind::Exclusion) if tk == Kind::Inclusion => {
                        return Err(CommandError::new(
                            31253,
                            format!("Cannot do inclusion on field {full} in exclusion projection"),
                        ))
                    }
                    _ => {}
                }
            }
            insert_node(tree, &split(&path_str), node, &full)?;
        }
        Ok(())
    }

    /// Builds an exclusion projection from `$unset` paths.
    pub fn exclusion_of(paths: &[String]) -> Res<Projection> {
        let mut tree = Tree::new();
        for p in paths {
            insert_node(&mut tree, &split(p), Node::Exclude, p)?;
        }
        Ok(Projection {
            tree,
            kind: Kind::Exclusion,
        })
    }

    /// Applies the projection. `pos` is the array position recorded by the
    /// query (for `field.$`).
    pub fn apply(&self, doc: &Document, pos: Option<usize>) -> Res<Document> {
        let ctx = EvalCtx::new(doc);
        match self.kind {
            Kind::Inclusion => {
                let mut out = include(&self.tree, doc, pos)?;
                computed(&self.tree, &mut out, &ctx)?;
                Ok(super::path::id_first(out))
            }
            Kind::Exclusion => {
                let mut out = exclude(&self.tree, doc);
                computed(&self.tree, &mut out, &ctx)?;
                Ok(out)
            }
        }
    }
}

fn parse_slice(v: &Bson) -> Res<(i64, Option<i64>)> {
    match v {
        Bson::Array(a) if a.len() == 2 => {
            let (Some(s), Some(l)) = (to_exact_i64(&a[0]), to_exact_i64(&a[1])) else {
                return Err(CommandError::bad_value("$slice only supports numbers"));
            };
            if l <= 0 {
                return Err(CommandError::bad_value(format!(
                    "$slice limit must be positive, got {l}"
                )));
            }
            Ok((s, Some(l)))
        }
        other => match to_exact_i64(other) {
            Some(n) => Ok((n, None)),
            None => Err(CommandError::bad_value(
                "$slice only supports numbers and [skip, limit] arrays",
            )),
        },
    }
}

fn apply_slice(v: &Bson, skip: i64, limit: Option<i64>) -> Bson {
    let Bson::Array(a) = v else {
        return v.clone();
    };
    let len = a.len() as i64;
    let (start, end) = match limit {
        None if skip >= 0 => (0, skip.min(len)),
        None => ((len + skip).max(0), len),
        Some(l) => {
            let s = if skip < 0 {
                (len + skip).max(0)
            } else {
                skip.min(len)
            };
            (s, (s + l).min(len))
        }
    };
    Bson::Array(a[start as usize..end as usize].to_vec())
}

fn include(tree: &Tree, doc: &Document, pos: Option<usize>) -> Res<Document> {
    let mut out = Document::new();
    for (k, v) in doc {
        let Some(node) = tree.get(k) else { continue };
        match node {
            Node::Include => {
                out.insert(k.clone(), v.clone());
            }
            Node::Sub(t) => match v {
                Bson::Document(d) => {
                    out.insert(k.clone(), include(t, d, pos)?);
                }
                Bson::Array(a) => {
                    out.insert(k.clone(), include_array(t, a, pos)?);
                }
                _ => {}
            },
            Node::Slice(s, l) => {
                out.insert(k.clone(), apply_slice(v, *s, *l));
            }
            Node::ElemMatch(f) => {
                if let Bson::Array(a) = v {
                    if let Some(el) = a.iter().find(|el| matches!(el, Bson::Document(d) if f.matches(d))) {
                        out.insert(k.clone(), Bson::Array(vec![el.clone()]));
                    }
                }
            }
            Node::Positional => match (v, pos) {
                (Bson::Array(a), Some(i)) if i < a.len() => {
                    out.insert(k.clone(), Bson::Array(vec![a[i].clone()]));
                }
                (Bson::Array(_), _) => {
                    return Err(CommandError::new(
                        51246,
                        "Executor error during find command :: caused by :: positional operator '.$' couldn't find a matching element in the array",
                    ))
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            Node::Exclude | Node::Expr(_) => {}
        }
    }
    Ok(out)
}

fn include_array(t: &Tree, a: &[Bson], pos: Option<usize>) -> Res<Bson> {
    let mut out = Vec::new();
    for el in a {
        match el {
            Bson::Document(d) => out.push(Bson::Document(include(t, d, pos)?)),
            Bson::Array(inner) => out.push(include_array(t, inner, pos)?),
            _ => {}
        }
    }
    Ok(Bson::Array(out))
}

fn exclude(tree: &Tree, doc: &Document) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        match tree.get(k) {
            None | Some(Node::Include) | Some(Node::Expr(_)) => {
                out.insert(k.clone(), v.clone());
            }
            Some(Node::Exclude) => {}
            Some(Node::Sub(t)) => {
                out.insert(k.clone(), exclude_value(t, v));
            }
            Some(Node::Slice(s, l)) => {
                out.insert(k.clone(), apply_slice(v, *s, *l));
            }
            Some(Node::ElemMatch(_)) | Some(Node::Positional) => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn exclude_value(t: &Tree, v: &Bson) -> Bson {
    match v {
        Bson::Document(d) => Bson::Document(exclude(t, d)),
        Bson::Array(a) => Bson::Array(a.iter().map(|el| exclude_value(t, el)).collect()),
        other => other.clone(),
    }
}

fn has_computed(t: &Tree) -> bool {
    t.values().any(|n| match n {
        Node::Expr(_) => true,
        Node::Sub(s) => has_computed(s),
        _ => false,
    })
}

fn computed(tree: &Tree, out: &mut Document, ctx: &EvalCtx<'_>) -> Res<()> {
    for (k, node) in tree {
        match node {
            Node::Expr(e) => match e.eval(ctx)? {
                Some(v) => {
                    out.insert(k.clone(), v);
                }
                None => {
                    out.remove(k);
                }
            },
            Node::Sub(t) if has_computed(t) => match out.get_mut(k) {
                Some(Bson::Document(d)) => computed(t, d, ctx)?,
                Some(Bson::Array(a)) => {
                    for el in a.iter_mut() {
                        if let Bson::Document(d) = el {
                            computed(t, d, ctx)?;
                        } else {
                            let mut d = Document::new();
                            computed(t, &mut d, ctx)?;
                            *el = Bson::Document(d);
                        }
                    }
                }
                _ => {
                    let mut d = Document::new();
                    computed(t, &mut d, ctx)?;
                    out.insert(k.clone(), d);
                }
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn proj(spec: Document, d: Document) -> Document {
        Projection::parse(&spec, Flavor::Find)
            .unwrap()
            .unwrap()
            .apply(&d, None)
            .unwrap()
    }

    #[test]
    fn inclusion_and_exclusion() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "e": [{"c": 1, "x": 2}, 5]};
        assert_eq!(proj(doc! {"a": 1}, d.clone()), doc! {"_id": 1, "a": 1});
        assert_eq!(proj(doc! {"a": 1, "_id": 0}, d.clone()), doc! {"a": 1});
        assert_eq!(
            proj(doc! {"b.c": 1}, d.clone()),
            doc! {"_id": 1, "b": {"c": 1}}
        );
        assert_eq!(
            proj(doc! {"e.c": 1}, d.clone()),
            doc! {"_id": 1, "e": [{"c": 1}]}
        );
        assert_eq!(
            proj(doc! {"b.c": 0, "a": 0}, d.clone()),
            doc! {"_id": 1, "b": {"d": 2}, "e": [{"c": 1, "x": 2}, 5]}
        );
        assert_eq!(
            proj(doc! {"e.c": 0, "_id": 0, "b": 0, "a": 0}, d.clone()),
            doc! {"e": [{"x": 2}, 5]}
        );
        assert_eq!(
            proj(doc! {"b": {"d": 1}}, d.clone()),
            doc! {"_id": 1, "b": {"d": 2}}
        );
        assert_eq!(proj(doc! {"_id": 1}, d.clone()), doc! {"_id": 1});
        assert_eq!(proj(doc! {"_id": 0}, d).len(), 3);
    }

    #[test]
    fn mixing_is_rejected() {
        let e = Projection::parse(&doc! {"a": 1, "b": 0}, Flavor::Find).unwrap_err();
        assert_eq!(e.code, 31254);
        assert_eq!(
            e.errmsg,
            "Cannot do exclusion on field b in inclusion projection"
        );
        let e = Projection::parse(&doc! {"a": 0, "b": 1}, Flavor::Find).unwrap_err();
        assert_eq!(e.code, 31253);
        let e = Projection::parse(&doc! {"a": 0, "b": 1}, Flavor::Project).unwrap_err();
        assert!(e.errmsg.starts_with("Invalid $project :: caused by :: "));
        assert_eq!(
            Projection::parse(&doc! {"a": 1, "a.b": 1}, Flavor::Find)
                .unwrap_err()
                .code,
            31250
        );
    }

    #[test]
    fn slice_elem_match_positional_and_expressions() {
        let d = doc! {"_id": 1, "a": [1, 2, 3, 4], "g": [{"s": 1}, {"s": 9}], "x": 5};
        assert_eq!(
            proj(doc! {"a": {"$slice": 2}}, d.clone())
                .get_array("a")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            proj(doc! {"a": {"$slice": -1}, "g": 0, "x": 0}, d.clone()),
            doc! {"_id": 1, "a": [4]}
        );
        assert_eq!(
            proj(
                doc! {"a": {"$slice": [1, 2]}, "_id": 0, "g": 0, "x": 0},
                d.clone()
            ),
            doc! {"a": [2, 3]}
        );
        assert_eq!(
            proj(doc! {"g": {"$elemMatch": {"s": {"$gt": 5}}}}, d.clone()),
            doc! {"_id": 1, "g": [{"s": 9}]}
        );
        assert_eq!(
            proj(doc! {"y": {"$add": ["$x", 1]}, "x": 1}, d.clone()),
            doc! {"_id": 1, "x": 5, "y": 6}
        );
        let p = Projection::parse(&doc! {"a.$": 1}, Flavor::Find)
            .unwrap()
            .unwrap();
        assert_eq!(p.apply(&d, Some(2)).unwrap(), doc! {"_id": 1, "a": [3]});
    }
}
