//! Command implementations.

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Document};

use super::collection::{default_index_name, Collection, DupKey, Index, InsertError};
use super::error::{CommandError, Res};
use super::matcher::Filter;
use super::path::{id_first, leaf_values, split};
use super::pipeline::{Pipeline, Source};
use super::projection::{Flavor, Projection};
use super::sort::SortSpec;
use super::update::{build_upsert, unchanged, ApplyCtx, Update};
use super::value::{cmp_bson, key_of, to_exact_i64, truthy, type_name};
use super::{Executed, Op, Outcome, Store};

pub(super) fn execute(store: &mut Store, db: &str, cmd: &Document) -> Res<Executed> {
    let Some(name) = cmd.keys().next().cloned() else {
        return Err(CommandError::new(59, "no such command: ''"));
    };
    let mut ops = Vec::new();
    let outcome = match name.as_str() {
        "insert" => insert(store, db, cmd, &mut ops)?,
        "update" => update(store, db, cmd, &mut ops)?,
        "delete" => delete(store, db, cmd, &mut ops)?,
        "findAndModify" | "findandmodify" => find_and_modify(store, db, cmd, &name, &mut ops)?,
        "find" => find(store, db, cmd)?,
        "count" => count(store, db, cmd)?,
        "distinct" => distinct(store, db, cmd)?,
        "aggregate" => aggregate(store, db, cmd)?,
        "create" => create(store, db, cmd, &mut ops)?,
        "drop" => drop(store, db, cmd, &mut ops)?,
        "dropDatabase" => drop_database(store, db, &mut ops),
        "listDatabases" => list_databases(store, cmd)?,
        "listCollections" => list_collections(store, db, cmd)?,
        "listIndexes" => list_indexes(store, db, cmd)?,
        "createIndexes" => create_indexes(store, db, cmd, &mut ops)?,
        "dropIndexes" | "deleteIndexes" => drop_indexes(store, db, cmd, &name, &mut ops)?,
        "renameCollection" => rename_collection(store, cmd, &mut ops)?,
        "dbStats" => db_stats(store, db),
        _ => return Err(CommandError::new(59, format!("no such command: '{name}'"))),
    };
    Ok(Executed { outcome, ops })
}

// ---------------------------------------------------------------- helpers

fn reply(mut d: Document) -> Outcome {
    d.insert("ok", 1.0);
    Outcome::Reply(d)
}

fn int(n: usize) -> Bson {
    match i32::try_from(n) {
        Ok(i) => Bson::Int32(i),
        Err(_) => Bson::Int64(n as i64),
    }
}

fn missing_field(cmd: &str, field: &str) -> CommandError {
    CommandError::new(
        40414,
        format!("BSON field '{cmd}.{field}' is missing but a required field"),
    )
}

fn wrong_type(cmd: &str, field: &str, v: &Bson, expected: &str) -> CommandError {
    CommandError::type_mismatch(format!(
        "BSON field '{cmd}.{field}' is the wrong type '{}', expected type '{expected}'",
        type_name(v)
    ))
}

fn coll_name(cmd: &Document, name: &str) -> Res<String> {
    match cmd.get(name) {
        Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Bson::String(_)) => Err(CommandError::new(73, "Invalid namespace specified ''")),
        Some(other) => Err(CommandError::new(
            73,
            format!("collection name has invalid type {}", type_name(other)),
        )),
        None => Err(CommandError::new(73, "Invalid namespace specified")),
    }
}

fn opt_doc(cmd: &Document, cmd_name: &str, field: &str) -> Res<Option<Document>> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d.clone())),
        Some(other) => Err(wrong_type(cmd_name, field, other, "object")),
    }
}

fn opt_bool(cmd: &Document, cmd_name: &str, field: &str, default: bool) -> Res<bool> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(default),
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(v @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => Ok(truthy(v)),
        Some(other) => Err(wrong_type(cmd_name, field, other, "bool")),
    }
}

fn opt_count(cmd: &Document, cmd_name: &str, field: &str) -> Res<Option<i64>> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => match to_exact_i64(v) {
            Some(n) => Ok(Some(n)),
            None => match v {
                Bson::Double(f) if f.is_finite() => Ok(Some(f.trunc() as i64)),
                _ => Err(wrong_type(cmd_name, field, v, "long")),
            },
        },
    }
}

fn validate_db_name(db: &str) -> Res<()> {
    if db.is_empty() || db.len() >= 64 || db.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(CommandError::new(
            73,
            format!("Invalid database name: '{db}'"),
        ));
    }
    Ok(())
}

fn validate_coll_name(db: &str, c: &str) -> Res<()> {
    if c.is_empty() || c.contains('$') || c.contains('\0') || c.starts_with('.') {
        return Err(CommandError::new(
            73,
            format!("Invalid collection name: {db}.{c}"),
        ));
    }
    Ok(())
}

/// Gets or implicitly creates a collection, recording the creation op.
fn ensure<'a>(
    store: &'a mut Store,
    db: &str,
    c: &str,
    ops: &mut Vec<Op>,
) -> Res<&'a mut Collection> {
    if store.coll(db, c).is_none() {
        validate_db_name(db)?;
        validate_coll_name(db, c)?;
        let ns = format!("{db}.{c}");
        let uuid = store.new_uuid(&ns);
        store
            .dbs
            .entry(db.to_string())
            .or_default()
            .insert(c.to_string(), std::sync::Arc::new(Collection::new(uuid)));
        ops.push(Op::CreateCollection { ns });
    }
    Ok(store.coll_mut(db, c).expect("exists"))
}

/// Matching record ids in natural order, with the array position each match used.
fn select(coll: &Collection, filter: &Filter, one: bool) -> Vec<(u64, Option<usize>)> {
    let mut out = Vec::new();
    if let Some(ids) = filter.id_lookup() {
        let mut rids: Vec<u64> = ids.iter().filter_map(|id| coll.rid_of(id)).collect();
        rids.sort_unstable();
        rids.dedup();
        for rid in rids {
            let doc = coll.get(rid).expect("indexed");
            let mut pos = None;
            if filter.matches_pos(doc, &mut pos) {
                out.push((rid, pos));
                if one {
                    break;
                }
            }
        }
        return out;
    }
    for (rid, doc) in coll.iter() {
        let mut pos = None;
        if filter.matches_pos(doc, &mut pos) {
            out.push((rid, pos));
            if one {
                break;
            }
        }
    }
    out
}

/// A failed write statement.
struct WriteErr {
    err: CommandError,
    dup: Option<Box<DupKey>>,
}

impl From<CommandError> for WriteErr {
    fn from(err: CommandError) -> Self {
        WriteErr { err, dup: None }
    }
}

fn insert_err(e: InsertError, ns: &str) -> WriteErr {
    match e {
        InsertError::Dup(d) => WriteErr {
            err: d.to_error(ns),
            dup: Some(d),
        },
        InsertError::Other(err) => WriteErr { err, dup: None },
    }
}

fn write_error_doc(index: usize, e: &WriteErr) -> Bson {
    let mut d = Document::new();
    d.insert("index", int(index));
    d.insert("code", e.err.code);
    if let Some(dup) = &e.dup {
        d.insert("keyPattern", dup.key_pattern.clone());
        d.insert("keyValue", dup.key_value.clone());
    }
    d.insert("errmsg", e.err.errmsg.clone());
    Bson::Document(d)
}

/// Runs the statements of a write command in order: a failing one becomes
/// a `writeErrors` entry (with its index) and, when `ordered`, ends the
/// batch. Returns the `writeErrors` entries.
fn each_statement<T>(
    stmts: impl IntoIterator<Item = T>,
    ordered: bool,
    mut run: impl FnMut(usize, T) -> Result<(), WriteErr>,
) -> Vec<Bson> {
    let mut errors = Vec::new();
    for (i, stmt) in stmts.into_iter().enumerate() {
        if let Err(e) = run(i, stmt) {
            errors.push(write_error_doc(i, &e));
            if ordered {
                break;
            }
        }
    }
    errors
}

/// `{n, writeErrors}` of a write command's reply (`writeErrors` only when
/// there are some).
fn write_counts(n: usize, errors: Vec<Bson>) -> Document {
    let mut r = doc! {"n": int(n)};
    if !errors.is_empty() {
        r.insert("writeErrors", errors);
    }
    r
}

fn statements(cmd: &Document, cmd_name: &str, field: &str) -> Res<Vec<Document>> {
    let arr = match cmd.get(field) {
        Some(Bson::Array(a)) => a,
        Some(other) => return Err(wrong_type(cmd_name, field, other, "array")),
        None => return Err(missing_field(cmd_name, field)),
    };
    if arr.is_empty() {
        return Err(CommandError::new(
            16,
            "Write batch sizes must be between 1 and 100000. Got 0 operations.",
        ));
    }
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Bson::Document(d) => Ok(d.clone()),
            other => Err(wrong_type(
                cmd_name,
                &format!("{field}.{i}"),
                other,
                "object",
            )),
        })
        .collect()
}

// ---------------------------------------------------------------- writes

fn prepare_insert_doc(mut doc: Document) -> Res<Document> {
    match doc.get("_id") {
        None => {
            let mut d = Document::new();
            d.insert("_id", bson::oid::ObjectId::new());
            for (k, v) in doc {
                d.insert(k, v);
            }
            doc = d;
        }
        Some(Bson::Array(_)) => {
            return Err(CommandError::new(
                53,
                "The '_id' value cannot be of type array",
            ))
        }
        Some(Bson::Undefined) => {
            return Err(CommandError::new(53, "can't use a undefined for _id"))
        }
        Some(Bson::RegularExpression(_)) => {
            return Err(CommandError::new(53, "can't use a regex for _id"))
        }
        Some(_) => doc = id_first(doc),
    }
    Ok(doc)
}

fn insert(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "insert")?;
    let docs = statements(cmd, "insert", "documents")?;
    let ordered = opt_bool(cmd, "insert", "ordered", true)?;
    let ns = format!("{db}.{c}");
    let coll = ensure(store, db, &c, ops)?;
    let mut n = 0usize;
    let errors = each_statement(docs, ordered, |_, d| {
        let d = prepare_insert_doc(d)?;
        coll.insert(d.clone()).map_err(|e| insert_err(e, &ns))?;
        n += 1;
        ops.push(Op::Insert {
            ns: ns.clone(),
            doc: d,
        });
        Ok(())
    });
    Ok(reply(write_counts(n, errors)))
}

struct UpdateResult {
    n: usize,
    modified: usize,
    upserted: Option<Bson>,
}

fn update_stmt(
    store: &mut Store,
    db: &str,
    c: &str,
    stmt: &Document,
    ops: &mut Vec<Op>,
) -> Result<UpdateResult, WriteErr> {
    let ns = format!("{db}.{c}");
    let q = match stmt.get("q") {
        Some(Bson::Document(d)) => d.clone(),
        Some(other) => return Err(wrong_type("update.updates", "q", other, "object").into()),
        None => return Err(missing_field("update.updates", "q").into()),
    };
    let u = stmt
        .get("u")
        .ok_or_else(|| missing_field("update.updates", "u"))?;
    let multi = opt_bool(stmt, "update.updates", "multi", false)?;
    let upsert = opt_bool(stmt, "update.updates", "upsert", false)?;
    let filter = Filter::parse(&q)?;
    let update = Update::parse(u)?;
    if multi && update.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        )
        .into());
    }
    let array_filters = update.parse_array_filters(stmt.get("arrayFilters"))?;
    let matches = match store.coll(db, c) {
        Some(coll) => select(coll, &filter, !multi),
        None => Vec::new(),
    };
    if matches.is_empty() {
        if !upsert {
            return Ok(UpdateResult {
                n: 0,
                modified: 0,
                upserted: None,
            });
        }
        let doc = build_upsert(&q, &update, &array_filters)?;
        let doc = prepare_insert_doc(doc)?;
        let coll = ensure(store, db, c, ops)?;
        coll.insert(doc.clone()).map_err(|e| insert_err(e, &ns))?;
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        ops.push(Op::Insert { ns, doc });
        return Ok(UpdateResult {
            n: 1,
            modified: 0,
            upserted: Some(id),
        });
    }
    let coll = store.coll_mut(db, c).expect("matched");
    let mut n = 0;
    let mut modified = 0;
    for (rid, pos) in matches {
        let old = coll.get(rid).expect("selected").clone();
        let ctx = ApplyCtx {
            is_insert: false,
            pos,
            array_filters: &array_filters,
        };
        let new = update.apply(&old, &ctx)?;
        n += 1;
        if unchanged(&old, &new) {
            continue;
        }
        coll.replace(rid, new.clone())
            .map_err(|e| insert_err(e, &ns))?;
        modified += 1;
        ops.push(Op::Update {
            ns: ns.clone(),
            id: old.get("_id").cloned().unwrap_or(Bson::Null),
            doc: new,
        });
    }
    Ok(UpdateResult {
        n,
        modified,
        upserted: None,
    })
}

fn update(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "update")?;
    let stmts = statements(cmd, "update", "updates")?;
    let ordered = opt_bool(cmd, "update", "ordered", true)?;
    let mut n = 0;
    let mut modified = 0;
    let mut upserted = Vec::new();
    let errors = each_statement(&stmts, ordered, |i, stmt| {
        let r = update_stmt(store, db, &c, stmt, ops)?;
        n += r.n;
        modified += r.modified;
        if let Some(id) = r.upserted {
            upserted.push(Bson::Document(doc! {"index": int(i), "_id": id}));
        }
        Ok(())
    });
    let mut r = write_counts(n, errors);
    if !upserted.is_empty() {
        r.insert("upserted", upserted);
    }
    r.insert("nModified", int(modified));
    Ok(reply(r))
}

fn delete_stmt(
    store: &mut Store,
    db: &str,
    c: &str,
    stmt: &Document,
    ops: &mut Vec<Op>,
) -> Result<usize, WriteErr> {
    let q = match stmt.get("q") {
        Some(Bson::Document(d)) => d.clone(),
        Some(other) => return Err(wrong_type("delete.deletes", "q", other, "object").into()),
        None => return Err(missing_field("delete.deletes", "q").into()),
    };
    let limit = match stmt.get("limit") {
        None => return Err(missing_field("delete.deletes", "limit").into()),
        Some(v) => match to_exact_i64(v) {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return Err(CommandError::failed_to_parse(format!(
                    "The limit field in delete objects must be 0 or 1. Got {}",
                    super::value::mongo_fmt(v)
                ))
                .into())
            }
        },
    };
    let filter = Filter::parse(&q)?;
    let ns = format!("{db}.{c}");
    let Some(coll) = store.coll_mut(db, c) else {
        return Ok(0);
    };
    let matches = select(coll, &filter, limit);
    for (rid, _) in &matches {
        if let Some(doc) = coll.remove(*rid) {
            ops.push(Op::Delete {
                ns: ns.clone(),
                id: doc.get("_id").cloned().unwrap_or(Bson::Null),
            });
        }
    }
    Ok(matches.len())
}

fn delete(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "delete")?;
    let stmts = statements(cmd, "delete", "deletes")?;
    let ordered = opt_bool(cmd, "delete", "ordered", true)?;
    let mut n = 0;
    let errors = each_statement(&stmts, ordered, |_, stmt| {
        n += delete_stmt(store, db, &c, stmt, ops)?;
        Ok(())
    });
    Ok(reply(write_counts(n, errors)))
}

fn find_and_modify(
    store: &mut Store,
    db: &str,
    cmd: &Document,
    name: &str,
    ops: &mut Vec<Op>,
) -> Res<Outcome> {
    let c = coll_name(cmd, name)?;
    let ns = format!("{db}.{c}");
    let query = opt_doc(cmd, name, "query")?.unwrap_or_default();
    let sort = match opt_doc(cmd, name, "sort")? {
        Some(s) => SortSpec::parse(&s)?,
        None => None,
    };
    let fields = match opt_doc(cmd, name, "fields")? {
        Some(f) => Projection::parse(&f, Flavor::Find)?,
        None => None,
    };
    let remove = opt_bool(cmd, name, "remove", false)?;
    let return_new = opt_bool(cmd, name, "new", false)?;
    let upsert = opt_bool(cmd, name, "upsert", false)?;
    let update_spec = match cmd.get("update") {
        None | Some(Bson::Null) => None,
        Some(u) => Some(u),
    };
    check_find_and_modify_modes(remove, update_spec.is_some(), return_new, upsert)?;
    let filter = Filter::parse(&query)?;
    let update = match update_spec {
        Some(u) => Some(Update::parse(u)?),
        None => None,
    };
    let array_filters = match &update {
        Some(u) => u.parse_array_filters(cmd.get("arrayFilters"))?,
        None => Vec::new(),
    };
    let project = |d: &Document, pos: Option<usize>| -> Res<Bson> {
        Ok(Bson::Document(match &fields {
            Some(p) => p.apply(d, pos)?,
            None => d.clone(),
        }))
    };
    // Pick the target document.
    let target = match store.coll(db, &c) {
        None => None,
        Some(coll) => find_and_modify_target(coll, &filter, sort.as_ref()),
    };
    if remove {
        let (leo, value) = match target {
            Some((rid, pos)) => {
                let coll = store.coll_mut(db, &c).expect("exists");
                let old = coll.remove(rid).expect("selected");
                ops.push(Op::Delete {
                    ns: ns.clone(),
                    id: old.get("_id").cloned().unwrap_or(Bson::Null),
                });
                (doc! {"n": 1}, project(&old, pos)?)
            }
            None => (doc! {"n": 0}, Bson::Null),
        };
        return Ok(reply(doc! {"lastErrorObject": leo, "value": value}));
    }
    let update = update.expect("checked");
    match target {
        Some((rid, pos)) => {
            let coll = store.coll_mut(db, &c).expect("exists");
            let old = coll.get(rid).expect("selected").clone();
            let ctx = ApplyCtx {
                is_insert: false,
                pos,
                array_filters: &array_filters,
            };
            let new = update.apply(&old, &ctx)?;
            if !unchanged(&old, &new) {
                coll.replace(rid, new.clone())
                    .map_err(|e| e.into_error(&ns))?;
                ops.push(Op::Update {
                    ns: ns.clone(),
                    id: old.get("_id").cloned().unwrap_or(Bson::Null),
                    doc: new.clone(),
                });
            }
            let value = if return_new {
                project(&new, pos)?
            } else {
                project(&old, pos)?
            };
            Ok(reply(doc! {
                "lastErrorObject": {"n": 1, "updatedExisting": true},
                "value": value,
            }))
        }
        None if upsert => {
            let doc = prepare_insert_doc(build_upsert(&query, &update, &array_filters)?)?;
            let coll = ensure(store, db, &c, ops)?;
            coll.insert(doc.clone()).map_err(|e| e.into_error(&ns))?;
            let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
            ops.push(Op::Insert {
                ns,
                doc: doc.clone(),
            });
            let value = if return_new {
                project(&doc, None)?
            } else {
                Bson::Null
            };
            Ok(reply(doc! {
                "lastErrorObject": {"n": 1, "updatedExisting": false, "upserted": id},
                "value": value,
            }))
        }
        None => Ok(reply(doc! {
            "lastErrorObject": {"n": 0, "updatedExisting": false},
            "value": Bson::Null,
        })),
    }
}

/// The combinations of `remove`, `update`, `new` and `upsert` that
/// findAndModify rejects.
fn check_find_and_modify_modes(
    remove: bool,
    has_update: bool,
    return_new: bool,
    upsert: bool,
) -> Res<()> {
    if remove && has_update {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both an update and remove=true",
        ));
    }
    if !remove && !has_update {
        return Err(CommandError::failed_to_parse(
            "Either an update or remove=true must be specified",
        ));
    }
    if remove && return_new {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document",
        ));
    }
    if remove && upsert {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both upsert=true and remove=true",
        ));
    }
    Ok(())
}

/// The document findAndModify works on: the first match in natural order,
/// or the first by `sort`; with the array position the query matched.
fn find_and_modify_target(
    coll: &Collection,
    filter: &Filter,
    sort: Option<&SortSpec>,
) -> Option<(u64, Option<usize>)> {
    match sort {
        None => select(coll, filter, true).into_iter().next(),
        Some(s) => {
            let mut cands: Vec<(u64, Option<usize>, Document)> = select(coll, filter, false)
                .into_iter()
                .map(|(rid, pos)| (rid, pos, coll.get(rid).expect("selected").clone()))
                .collect();
            s.sort_by(&mut cands, |t| &t.2);
            cands.into_iter().next().map(|(rid, pos, _)| (rid, pos))
        }
    }
}

// ---------------------------------------------------------------- reads

fn find(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let c = coll_name(cmd, "find")?;
    let filter_doc = opt_doc(cmd, "find", "filter")?.unwrap_or_default();
    let filter = Filter::parse(&filter_doc)?;
    let projection = match opt_doc(cmd, "find", "projection")? {
        Some(p) => Projection::parse(&p, Flavor::Find)?,
        None => None,
    };
    let sort = match opt_doc(cmd, "find", "sort")? {
        Some(s) => SortSpec::parse(&s)?,
        None => None,
    };
    let skip = opt_count(cmd, "find", "skip")?.unwrap_or(0);
    if skip < 0 {
        return Err(CommandError::new(
            51024,
            format!("BSON field 'skip' value must be >= 0, actual value '{skip}'"),
        ));
    }
    let limit = opt_count(cmd, "find", "limit")?.unwrap_or(0);
    if limit < 0 {
        return Err(CommandError::new(
            51024,
            format!("BSON field 'limit' value must be >= 0, actual value '{limit}'"),
        ));
    }
    let ns = format!("{db}.{c}");
    let Some(coll) = store.coll(db, &c) else {
        return Ok(Outcome::Cursor {
            ns,
            docs: Vec::new(),
        });
    };
    let mut hits: Vec<(Option<usize>, Document)> = select(coll, &filter, false)
        .into_iter()
        .map(|(rid, pos)| (pos, coll.get(rid).expect("selected").clone()))
        .collect();
    if let Some(s) = &sort {
        s.sort_by(&mut hits, |t| &t.1);
    }
    let it = hits.into_iter().skip(skip as usize);
    let it: Box<dyn Iterator<Item = (Option<usize>, Document)>> = if limit > 0 {
        Box::new(it.take(limit as usize))
    } else {
        Box::new(it)
    };
    let docs = match &projection {
        Some(p) => it
            .map(|(pos, d)| p.apply(&d, pos))
            .collect::<Res<Vec<_>>>()?,
        None => it.map(|(_, d)| d).collect(),
    };
    Ok(Outcome::Cursor { ns, docs })
}

fn count(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let c = coll_name(cmd, "count")?;
    let query = opt_doc(cmd, "count", "query")?.unwrap_or_default();
    let filter = Filter::parse(&query)?;
    let skip = opt_count(cmd, "count", "skip")?.unwrap_or(0);
    if skip < 0 {
        return Err(CommandError::bad_value(
            "skip value is negative in count query",
        ));
    }
    let limit = opt_count(cmd, "count", "limit")?
        .unwrap_or(0)
        .unsigned_abs() as usize;
    let total = match store.coll(db, &c) {
        Some(coll) => select(coll, &filter, false).len(),
        None => 0,
    };
    let mut n = total.saturating_sub(skip as usize);
    if limit > 0 {
        n = n.min(limit);
    }
    Ok(reply(doc! {"n": int(n)}))
}

fn distinct(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let c = coll_name(cmd, "distinct")?;
    let key = match cmd.get("key") {
        Some(Bson::String(k)) => k.clone(),
        Some(other) => return Err(wrong_type("distinct", "key", other, "string")),
        None => return Err(missing_field("distinct", "key")),
    };
    if key.is_empty() {
        return Err(CommandError::new(
            40352,
            "FieldPath cannot be constructed with empty string",
        ));
    }
    let query = opt_doc(cmd, "distinct", "query")?.unwrap_or_default();
    let filter = Filter::parse(&query)?;
    let path = split(&key);
    let mut seen = std::collections::HashSet::new();
    let mut values = Vec::new();
    if let Some(coll) = store.coll(db, &c) {
        for (rid, _) in select(coll, &filter, false) {
            let doc = coll.get(rid).expect("selected");
            for v in leaf_values(doc, &path) {
                if seen.insert(key_of(v)) {
                    values.push(v.clone());
                }
            }
        }
    }
    values.sort_by(cmp_bson);
    Ok(reply(doc! {"values": values}))
}

struct DbSource<'a> {
    store: &'a Store,
    db: &'a str,
}

impl Source for DbSource<'_> {
    fn collection_docs(&self, coll: &str) -> Vec<Document> {
        self.store
            .coll(self.db, coll)
            .map(|c| c.iter().map(|(_, d)| d.clone()).collect())
            .unwrap_or_default()
    }
}

fn aggregate(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let target = cmd.get("aggregate").cloned().unwrap_or(Bson::Null);
    let stages = match cmd.get("pipeline") {
        Some(Bson::Array(a)) => a.clone(),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "'pipeline' option must be specified as an array",
            ))
        }
        None => return Err(missing_field("aggregate", "pipeline")),
    };
    if opt_bool(cmd, "aggregate", "explain", false)? {
        return Err(CommandError::new(
            115,
            "explain is not supported by holdfast-sim",
        ));
    }
    let pipeline = Pipeline::parse(&stages)?;
    let src = DbSource { store, db };
    match target {
        Bson::String(c) if !c.is_empty() => {
            let docs = src.collection_docs(&c);
            let out = pipeline.run(docs, &src)?;
            Ok(Outcome::Cursor {
                ns: format!("{db}.{c}"),
                docs: out,
            })
        }
        Bson::Int32(1) | Bson::Int64(1) | Bson::Double(_) if to_exact_i64(&target) == Some(1) => {
            if !pipeline.starts_with_documents() {
                return Err(CommandError::bad_value(
                    "{aggregate: 1} is not valid for '$match'; a collection is required.",
                ));
            }
            let out = pipeline.run(Vec::new(), &src)?;
            Ok(Outcome::Cursor {
                ns: format!("{db}.$cmd.aggregate"),
                docs: out,
            })
        }
        other => Err(CommandError::new(
            73,
            format!("collection name has invalid type {}", type_name(&other)),
        )),
    }
}

// ---------------------------------------------------------------- DDL

const UNSUPPORTED_CREATE: &[&str] = &[
    "viewOn",
    "pipeline",
    "timeseries",
    "clusteredIndex",
    "encryptedFields",
];
const STATEFUL_CREATE: &[&str] = &[
    "capped",
    "size",
    "max",
    "validator",
    "validationLevel",
    "validationAction",
    "expireAfterSeconds",
    "changeStreamPreAndPostImages",
    "storageEngine",
    "indexOptionDefaults",
    "collation",
];

fn create(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "create")?;
    for k in UNSUPPORTED_CREATE {
        if cmd.contains_key(*k) {
            return Err(CommandError::new(
                115,
                format!("create with '{k}' is not supported by holdfast-sim"),
            ));
        }
    }
    if store.coll(db, &c).is_some() {
        // 7.0: creating an existing collection with identical (here: default) options succeeds.
        if let Some(k) = STATEFUL_CREATE.iter().find(|k| cmd.contains_key(**k)) {
            return Err(CommandError::new(
                48,
                format!("namespace {db}.{c} already exists, but with different options ({k})"),
            ));
        }
        return Ok(reply(Document::new()));
    }
    ensure(store, db, &c, ops)?;
    Ok(reply(Document::new()))
}

fn drop(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "drop")?;
    let ns = format!("{db}.{c}");
    match store.remove_collection(db, &c) {
        Some(coll) => {
            ops.push(Op::DropCollection { ns: ns.clone() });
            Ok(reply(
                doc! {"nIndexesWas": int(coll.indexes.len() + 1), "ns": ns},
            ))
        }
        // Since 7.0, dropping a missing collection succeeds.
        None => Ok(reply(Document::new())),
    }
}

fn drop_database(store: &mut Store, db: &str, ops: &mut Vec<Op>) -> Outcome {
    if store.dbs.remove(db).is_some() {
        ops.push(Op::DropDatabase { db: db.to_string() });
    }
    reply(doc! {"dropped": db})
}

fn list_databases(store: &Store, cmd: &Document) -> Res<Outcome> {
    let name_only = opt_bool(cmd, "listDatabases", "nameOnly", false)?;
    let filter = match opt_doc(cmd, "listDatabases", "filter")? {
        Some(f) => Some(Filter::parse(&f)?),
        None => None,
    };
    let mut dbs = Vec::new();
    let mut total: i64 = 0;
    for (name, colls) in &store.dbs {
        let size: i64 =
            colls.values().map(|c| c.data_size() as i64).sum::<i64>() + 4096 * colls.len() as i64;
        let d = if name_only {
            doc! {"name": name.clone()}
        } else {
            doc! {"name": name.clone(), "sizeOnDisk": size, "empty": size == 0}
        };
        if filter.as_ref().is_some_and(|f| !f.matches(&d)) {
            continue;
        }
        total += size;
        dbs.push(Bson::Document(d));
    }
    if name_only {
        return Ok(reply(doc! {"databases": dbs}));
    }
    Ok(reply(
        doc! {"databases": dbs, "totalSize": total, "totalSizeMb": total / (1024 * 1024)},
    ))
}

fn list_collections(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let name_only = opt_bool(cmd, "listCollections", "nameOnly", false)?;
    let filter = match opt_doc(cmd, "listCollections", "filter")? {
        Some(f) => Some(Filter::parse(&f)?),
        None => None,
    };
    let mut docs = Vec::new();
    if let Some(colls) = store.dbs.get(db) {
        for (name, coll) in colls {
            let d = if name_only {
                doc! {"name": name.clone(), "type": "collection"}
            } else {
                doc! {
                    "name": name.clone(),
                    "type": "collection",
                    "options": {},
                    "info": {
                        "readOnly": false,
                        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: coll.uuid.to_vec() },
                    },
                    "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                }
            };
            if filter.as_ref().is_some_and(|f| !f.matches(&d)) {
                continue;
            }
            docs.push(d);
        }
    }
    Ok(Outcome::Cursor {
        ns: format!("{db}.$cmd.listCollections"),
        docs,
    })
}

fn list_indexes(store: &Store, db: &str, cmd: &Document) -> Res<Outcome> {
    let c = coll_name(cmd, "listIndexes")?;
    let Some(coll) = store.coll(db, &c) else {
        return Err(CommandError::new(
            26,
            format!("ns does not exist: {db}.{c}"),
        ));
    };
    let mut docs = vec![doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}];
    docs.extend(coll.indexes.iter().map(|i| i.spec.clone()));
    Ok(Outcome::Cursor {
        ns: format!("{db}.$cmd.listIndexes.{c}"),
        docs,
    })
}

fn validate_key_pattern(key: &Document) -> Res<()> {
    if key.is_empty() {
        return Err(CommandError::new(67, "Index keys cannot be empty."));
    }
    for (k, v) in key {
        if k.is_empty() {
            return Err(CommandError::new(
                67,
                "Index keys cannot be an empty field.",
            ));
        }
        let ok = match v {
            Bson::String(s) => matches!(
                s.as_str(),
                "text" | "2d" | "2dsphere" | "hashed" | "geoHaystack" | "wildcard"
            ),
            other => super::value::to_f64(other).is_some_and(|f| f != 0.0 && f.is_finite()),
        };
        if !ok {
            return Err(CommandError::new(
                67,
                format!(
                    "Values in v:2 index key pattern cannot be of type {}. Only numbers > 0, numbers < 0, and strings are allowed.",
                    type_name(v)
                ),
            ));
        }
    }
    Ok(())
}

/// The `indexes` of a createIndexes command, parsed (a missing `name` is
/// derived from the key pattern).
fn parse_index_specs(cmd: &Document) -> Res<Vec<Index>> {
    let specs = match cmd.get("indexes") {
        Some(Bson::Array(a)) => a.clone(),
        Some(other) => return Err(wrong_type("createIndexes", "indexes", other, "array")),
        None => return Err(missing_field("createIndexes", "indexes")),
    };
    if specs.is_empty() {
        return Err(CommandError::bad_value(
            "Must specify at least one index to create",
        ));
    }
    let mut parsed = Vec::new();
    for s in &specs {
        let Bson::Document(d) = s else {
            return Err(CommandError::type_mismatch(
                "The elements of the 'indexes' array must be objects",
            ));
        };
        let key = match d.get("key") {
            Some(Bson::Document(k)) => k.clone(),
            _ => {
                return Err(CommandError::failed_to_parse(format!(
                    "Error in specification {} :: caused by :: The 'key' field is a required property of an index specification",
                    super::value::mongo_fmt_doc(d)
                )))
            }
        };
        validate_key_pattern(&key)?;
        let mut d = d.clone();
        if !matches!(d.get("name"), Some(Bson::String(_))) {
            d.insert("name", default_index_name(&key));
        }
        parsed.push(Index::from_spec(&d)?);
    }
    Ok(parsed)
}

fn create_indexes(store: &mut Store, db: &str, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let c = coll_name(cmd, "createIndexes")?;
    let ns = format!("{db}.{c}");
    let parsed = parse_index_specs(cmd)?;
    let existed = store.coll(db, &c).is_some();
    if !existed {
        validate_db_name(db)?;
        validate_coll_name(db, &c)?;
    }
    // Nothing is modified until every check and the index builds have succeeded.
    let base: Collection = store.coll(db, &c).cloned().unwrap_or_default();
    let coll = &base;
    let before = coll.indexes.len() + 1;
    let mut to_add: Vec<Index> = Vec::new();
    for ix in parsed {
        if ix.name == "_id_" || ix.key == doc! {"_id": 1} {
            if ix.name == "_id_" && ix.key != doc! {"_id": 1} {
                return Err(CommandError::new(86, format!(
                    "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {{ v: 2, key: {{ _id: 1 }}, name: \"_id_\" }}",
                    super::value::mongo_fmt_doc(&ix.spec)
                )));
            }
            continue;
        }
        if !index_exists(coll.indexes.iter().chain(to_add.iter()), &ix)? {
            to_add.push(ix);
        }
    }
    if to_add.is_empty() {
        ensure(store, db, &c, ops)?;
        let mut r = doc! {"numIndexesBefore": int(before), "numIndexesAfter": int(before)};
        if !existed {
            r.insert("createdCollectionAutomatically", true);
        }
        r.insert("note", "all indexes already exist");
        return Ok(reply(r));
    }
    // Build all or nothing.
    let mut trial = base.clone();
    for ix in &to_add {
        trial.add_index(ix.clone(), true, &ns)?;
    }
    let coll = ensure(store, db, &c, ops)?;
    coll.indexes = trial.indexes;
    let after = coll.indexes.len() + 1;
    ops.push(Op::CreateIndexes {
        ns,
        specs: to_add.iter().map(|i| i.spec.clone()).collect(),
    });
    Ok(reply(doc! {
        "numIndexesBefore": int(before),
        "numIndexesAfter": int(after),
        "createdCollectionAutomatically": !existed,
        "commitQuorum": "votingMembers",
    }))
}

/// Checks a requested index against `existing` ones: `Ok(true)` if the same
/// index (name, key and options) exists already, an error if it conflicts
/// with one by name or by key.
fn index_exists<'a>(existing: impl Iterator<Item = &'a Index>, ix: &Index) -> Res<bool> {
    for e in existing {
        let same_key = super::value::docs_identical(&e.key, &ix.key);
        if e.name == ix.name {
            if same_key && e.same_options(ix) {
                return Ok(true);
            }
            if same_key {
                return Err(CommandError::new(85, format!(
                    "An equivalent index already exists with the same name but different options. Requested index: {}, existing index: {}",
                    super::value::mongo_fmt_doc(&ix.spec),
                    super::value::mongo_fmt_doc(&e.spec)
                )));
            }
            return Err(CommandError::new(86, format!(
                "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {}",
                super::value::mongo_fmt_doc(&ix.spec),
                super::value::mongo_fmt_doc(&e.spec)
            )));
        }
        if same_key && e.same_options(ix) {
            return Err(CommandError::new(
                85,
                format!("Index already exists with a different name: {}", e.name),
            ));
        }
    }
    Ok(false)
}

fn drop_indexes(
    store: &mut Store,
    db: &str,
    cmd: &Document,
    name: &str,
    ops: &mut Vec<Op>,
) -> Res<Outcome> {
    let c = coll_name(cmd, name)?;
    let ns = format!("{db}.{c}");
    let Some(coll) = store.coll_mut(db, &c) else {
        return Err(CommandError::new(26, format!("ns not found {ns}")));
    };
    let was = coll.indexes.len() + 1;
    let spec = cmd
        .get("index")
        .ok_or_else(|| missing_field(name, "index"))?;
    let mut names: Vec<String> = Vec::new();
    let mut all = false;
    match spec {
        Bson::String(s) if s == "*" => {
            all = true;
            names = coll.indexes.iter().map(|i| i.name.clone()).collect();
        }
        Bson::String(s) => names.push(s.clone()),
        Bson::Array(a) => {
            for x in a {
                match x {
                    Bson::String(s) => names.push(s.clone()),
                    other => return Err(wrong_type(name, "index", other, "string")),
                }
            }
        }
        Bson::Document(k) => {
            if *k == doc! {"_id": 1} {
                return Err(CommandError::new(72, "cannot drop _id index"));
            }
            match coll
                .indexes
                .iter()
                .find(|i| super::value::docs_identical(&i.key, k))
            {
                Some(i) => names.push(i.name.clone()),
                None => {
                    return Err(CommandError::new(
                        27,
                        format!(
                            "can't find index with key: {}",
                            super::value::mongo_fmt_doc(k)
                        ),
                    ))
                }
            }
        }
        other => return Err(wrong_type(name, "index", other, "string")),
    }
    for n in &names {
        if n == "_id_" {
            return Err(CommandError::new(72, "cannot drop _id index"));
        }
        if !coll.indexes.iter().any(|i| i.name == *n) {
            return Err(CommandError::new(
                27,
                format!("index not found with name [{n}]"),
            ));
        }
    }
    for n in &names {
        coll.drop_index(n);
    }
    if !names.is_empty() {
        ops.push(Op::DropIndexes { ns, names });
    }
    let mut r = doc! {"nIndexesWas": int(was)};
    if all {
        r.insert("msg", "non-_id indexes dropped for collection");
    }
    Ok(reply(r))
}

fn rename_collection(store: &mut Store, cmd: &Document, ops: &mut Vec<Op>) -> Res<Outcome> {
    let from = match cmd.get("renameCollection") {
        Some(Bson::String(s)) => s.clone(),
        _ => {
            return Err(CommandError::type_mismatch(
                "'renameCollection' must be of type String",
            ))
        }
    };
    let to = match cmd.get("to") {
        Some(Bson::String(s)) => s.clone(),
        _ => return Err(CommandError::type_mismatch("'to' must be of type String")),
    };
    let drop_target = opt_bool(cmd, "renameCollection", "dropTarget", false)?;
    let (fdb, fc) = super::split_ns(&from);
    let (tdb, tc) = super::split_ns(&to);
    validate_db_name(tdb)?;
    validate_coll_name(tdb, tc)?;
    let Some(src) = store.coll(fdb, fc) else {
        return Err(CommandError::new(26, "Source collection does not exist"));
    };
    if from == to {
        return Err(CommandError::new(20, "Can't rename a collection to itself"));
    }
    let mut new_ops = Vec::new();
    if store.coll(tdb, tc).is_some() {
        if !drop_target {
            return Err(CommandError::new(48, "target namespace exists"));
        }
        new_ops.push(Op::DropCollection { ns: to.clone() });
    }
    new_ops.push(Op::CreateCollection { ns: to.clone() });
    if !src.indexes.is_empty() {
        new_ops.push(Op::CreateIndexes {
            ns: to.clone(),
            specs: src.indexes.iter().map(|i| i.spec.clone()).collect(),
        });
    }
    for (_, d) in src.iter() {
        new_ops.push(Op::Insert {
            ns: to.clone(),
            doc: d.clone(),
        });
    }
    new_ops.push(Op::DropCollection { ns: from.clone() });
    for op in &new_ops {
        store.apply(op);
    }
    ops.extend(new_ops);
    Ok(reply(Document::new()))
}

fn db_stats(store: &Store, db: &str) -> Outcome {
    let colls = store.dbs.get(db);
    let (mut objects, mut size, mut indexes, mut ncoll) = (0usize, 0u64, 0usize, 0usize);
    if let Some(cs) = colls {
        for c in cs.values() {
            ncoll += 1;
            objects += c.len();
            size += c.data_size();
            indexes += c.indexes.len() + 1;
        }
    }
    let avg = if objects > 0 {
        size as f64 / objects as f64
    } else {
        0.0
    };
    reply(doc! {
        "db": db,
        "collections": int(ncoll),
        "views": 0,
        "objects": int(objects),
        "avgObjSize": avg,
        "dataSize": size as f64,
        "storageSize": size as f64,
        "indexes": int(indexes),
        "indexSize": 0.0,
        "totalSize": size as f64,
        "scaleFactor": 1,
    })
}
