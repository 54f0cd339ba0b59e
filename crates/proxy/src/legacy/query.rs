//! OP_QUERY → command, as mongos 5.0 and the server's legacy request
//! up-conversion did it.
//!
//! - On `<db>.$cmd`: a command. `$query`/`query` unwrapped, `$readPreference`
//!   kept, the SecondaryOk flag read as `secondaryPreferred`, `$db` from the
//!   namespace (a `$db` in the command is refused with 40621).
//! - On `<db>.<collection>`: a find. The filter is the query, or its
//!   `$query`/`query` field when that is a document (then the other fields
//!   are modifiers); `numberToSkip` → `skip`; `numberToReturn` 0 → the
//!   server's batch, 1 or negative → a limit of |n| in one batch, > 1 → a
//!   batch size; the projection; the cursor flags. Exhaust is refused.

use bson::{doc, Bson, Document, RawBsonRef, RawDocument};
use holdfast_wire::codes;
use holdfast_wire::command::edit_fields;
use holdfast_wire::legacy::split_namespace;
use holdfast_wire::{OpQuery, QueryFlags};

use super::LegacyError;

/// What an OP_QUERY asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A command, as an OP_MSG body (`$db` included).
    Command { name: String, body: bytes::Bytes },
    /// `getLastError`: answered from the connection's last-error state.
    GetLastError,
    /// `getnonce` (MONGODB-CR's first step, which mgo sends on every new
    /// connection): answered with a nonce; nothing uses it.
    GetNonce,
    /// A legacy find, as a `find` (or `explain`) command body.
    Find {
        body: Document,
        /// `db.collection`.
        ns: String,
        explain: bool,
    },
}

fn bad_value(message: impl Into<String>) -> LegacyError {
    LegacyError::new(codes::BAD_VALUE, message)
}

fn bson_of(v: RawBsonRef<'_>) -> Result<Bson, LegacyError> {
    Bson::try_from(v).map_err(|e| bad_value(format!("invalid BSON in the query: {e}")))
}

fn document_of(d: &RawDocument) -> Result<Document, LegacyError> {
    Document::try_from(d).map_err(|e| bad_value(format!("invalid BSON in the query: {e}")))
}

fn secondary_preferred() -> Document {
    doc! {"mode": "secondaryPreferred"}
}

/// Translates one OP_QUERY.
pub fn translate(q: &OpQuery) -> Result<Query, LegacyError> {
    if q.flags.contains(QueryFlags::EXHAUST) {
        return Err(LegacyError::new(
            18526,
            "holdfast does not support exhaust cursors over OP_QUERY; request the results without the Exhaust flag",
        ));
    }
    let outer = q
        .query_doc()
        .map_err(|e| LegacyError::new(codes::INVALID_BSON, e.to_string()))?;
    match q.command_db() {
        Some(db) => command(q, db, outer),
        None => find(q, outer),
    }
}

fn command(q: &OpQuery, db: &str, outer: &RawDocument) -> Result<Query, LegacyError> {
    if db.is_empty() {
        return Err(LegacyError::new(73, "Invalid database name: ''"));
    }
    let first = outer
        .iter()
        .next()
        .transpose()
        .map_err(|e| bad_value(e.to_string()))?;
    let (inner, wrapper) = match first {
        Some(("$query" | "query", RawBsonRef::Document(inner))) => (inner, Some(outer)),
        Some(_) => (outer, None),
        None => return Err(LegacyError::new(40585, "the command document is empty")),
    };
    let name = match inner.iter().next() {
        Some(Ok((name, _))) => name.to_string(),
        _ => return Err(LegacyError::new(40585, "the command document is empty")),
    };
    if inner.get("$db").ok().flatten().is_some() {
        return Err(LegacyError::new(
            40621,
            "$db is not allowed in OP_QUERY requests",
        ));
    }
    match name.to_ascii_lowercase().as_str() {
        "getlasterror" => return Ok(Query::GetLastError),
        "getnonce" => return Ok(Query::GetNonce),
        _ => {}
    }
    let read_pref = wrapper
        .and_then(|w| match w.get("$readPreference") {
            Ok(Some(RawBsonRef::Document(rp))) => Some(document_of(rp)),
            _ => None,
        })
        .transpose()?
        .or_else(|| {
            q.flags
                .contains(QueryFlags::SECONDARY_OK)
                .then(secondary_preferred)
        });
    let mut append = doc! {"$db": db};
    let mut remove: &[&str] = &[];
    if let Some(rp) = read_pref {
        append.insert("$readPreference", rp);
        remove = &["$readPreference"];
    }
    Ok(Query::Command {
        name,
        body: edit_fields(inner, remove, &append),
    })
}

/// The parts of a legacy query document.
#[derive(Default)]
struct Parts {
    filter: Document,
    modifiers: Vec<(String, Bson)>,
}

/// `{$query: filter, $orderby: …}` (or `query`) is wrapped: the filter and
/// modifiers. Anything else is the filter itself.
fn split(outer: &RawDocument) -> Result<Parts, LegacyError> {
    let wrapped = matches!(outer.get("$query"), Ok(Some(_)))
        || matches!(outer.get("query"), Ok(Some(RawBsonRef::Document(_))));
    if !wrapped {
        return Ok(Parts {
            filter: document_of(outer)?,
            modifiers: Vec::new(),
        });
    }
    let mut parts = Parts::default();
    for el in outer.iter() {
        let (k, v) = el.map_err(|e| bad_value(e.to_string()))?;
        match (k, v) {
            ("$query" | "query", RawBsonRef::Document(f)) => parts.filter = document_of(f)?,
            ("$query" | "query", _) => return Err(bad_value("$query must be a document")),
            _ => parts.modifiers.push((k.to_string(), bson_of(v)?)),
        }
    }
    Ok(parts)
}

/// Applies one query modifier to the find command; `explain` is set by
/// `$explain`.
fn modifier(find: &mut Document, k: &str, v: Bson, explain: &mut bool) -> Result<(), LegacyError> {
    let field = match k {
        "$orderby" | "orderby" => "sort",
        "$hint" => "hint",
        "$min" => "min",
        "$max" => "max",
        "$returnKey" => "returnKey",
        "$showDiskLoc" => "showRecordId",
        "$maxTimeMS" => "maxTimeMS",
        "$comment" => "comment",
        "$readPreference" => "$readPreference",
        "$explain" => {
            *explain = !matches!(v, Bson::Boolean(false));
            return Ok(());
        }
        // Gone from the server since 4.0 and 4.2; current servers ignore them
        // in legacy queries.
        "$snapshot" | "$maxScan" => return Ok(()),
        other => return Err(bad_value(format!("unknown query modifier {other:?}"))),
    };
    find.insert(field, v);
    Ok(())
}

/// The cursor options of the OP_QUERY flags.
fn flags(find: &mut Document, f: QueryFlags) {
    for (flag, field) in [
        (QueryFlags::TAILABLE, "tailable"),
        (QueryFlags::AWAIT_DATA, "awaitData"),
        (QueryFlags::NO_CURSOR_TIMEOUT, "noCursorTimeout"),
        (QueryFlags::OPLOG_REPLAY, "oplogReplay"),
        (QueryFlags::PARTIAL, "allowPartialResults"),
    ] {
        if f.contains(flag) {
            find.insert(field, true);
        }
    }
}

/// `numberToReturn` as the find command's limit, batch size and single batch.
fn number_to_return(find: &mut Document, n: i32) -> Result<(), LegacyError> {
    match n {
        0 => {}
        i32::MIN => return Err(bad_value("numberToReturn cannot be -2147483648")),
        1 => {
            find.insert("limit", 1i64);
            find.insert("singleBatch", true);
        }
        n if n < 0 => {
            find.insert("limit", -(n as i64));
            find.insert("singleBatch", true);
        }
        n => {
            find.insert("batchSize", n as i64);
        }
    }
    Ok(())
}

fn find(q: &OpQuery, outer: &RawDocument) -> Result<Query, LegacyError> {
    let ns = q.full_collection_name.as_str();
    let (db, coll) = split_namespace(ns)
        .ok_or_else(|| LegacyError::new(73, format!("Invalid namespace specified '{ns}'")))?;
    let parts = split(outer)?;
    let mut find = doc! {"find": coll, "filter": parts.filter};
    let mut explain = false;
    for (k, v) in parts.modifiers {
        modifier(&mut find, &k, v, &mut explain)?;
    }
    if let Some(p) = &q.return_fields_selector {
        let p = RawDocument::from_bytes(p).map_err(|e| bad_value(e.to_string()))?;
        find.insert("projection", document_of(p)?);
    }
    if q.number_to_skip < 0 {
        return Err(bad_value("numberToSkip must not be negative"));
    }
    if q.number_to_skip > 0 {
        find.insert("skip", q.number_to_skip as i64);
    }
    number_to_return(&mut find, q.number_to_return)?;
    flags(&mut find, q.flags);
    let read_pref = find.remove("$readPreference").or_else(|| {
        q.flags
            .contains(QueryFlags::SECONDARY_OK)
            .then(|| Bson::Document(secondary_preferred()))
    });
    let mut body = if explain {
        doc! {"explain": find}
    } else {
        find
    };
    body.insert("$db", db);
    if let Some(rp) = read_pref {
        body.insert("$readPreference", rp);
    }
    Ok(Query::Find {
        body,
        ns: ns.to_string(),
        explain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_wire::reply::document_bytes;

    fn op(ns: &str, query: Document, skip: i32, ret: i32, flags: QueryFlags) -> OpQuery {
        OpQuery {
            flags,
            full_collection_name: ns.into(),
            number_to_skip: skip,
            number_to_return: ret,
            query: document_bytes(&query),
            return_fields_selector: None,
        }
    }

    fn find_body(q: &OpQuery) -> Document {
        match translate(q).unwrap() {
            Query::Find { body, .. } => body,
            other => panic!("{other:?}"),
        }
    }

    fn command_body(q: &OpQuery) -> Document {
        match translate(q).unwrap() {
            Query::Command { body, .. } => Document::from_reader(&body[..]).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_get_db_from_the_namespace_and_keep_the_read_preference() {
        let q = op(
            "app.$cmd",
            doc! {"count": "c", "query": {"a": 1}},
            0,
            -1,
            QueryFlags::empty(),
        );
        assert_eq!(
            command_body(&q),
            doc! {"count": "c", "query": {"a": 1}, "$db": "app"}
        );
        let wrapped =
            doc! {"$query": {"find": "c", "filter": {}}, "$readPreference": {"mode": "nearest"}};
        let q = op("app.$cmd", wrapped, 0, -1, QueryFlags::SECONDARY_OK);
        assert_eq!(
            command_body(&q),
            doc! {"find": "c", "filter": {}, "$db": "app", "$readPreference": {"mode": "nearest"}}
        );
        // SecondaryOk without a read preference: secondaryPreferred.
        let q = op("app.$cmd", doc! {"ping": 1}, 0, 1, QueryFlags::SECONDARY_OK);
        assert_eq!(
            command_body(&q),
            doc! {"ping": 1, "$db": "app", "$readPreference": {"mode": "secondaryPreferred"}}
        );
        let q = op(
            "app.$cmd",
            doc! {"ping": 1, "$db": "x"},
            0,
            1,
            QueryFlags::empty(),
        );
        assert_eq!(translate(&q).unwrap_err().code, 40621);
        let q = op("app.$cmd", doc! {}, 0, 1, QueryFlags::empty());
        assert_eq!(translate(&q).unwrap_err().code, 40585);
    }

    #[test]
    fn get_last_error_and_getnonce_are_recognised_in_any_case() {
        for name in ["getLastError", "getlasterror", "GETLASTERROR"] {
            let q = op(
                "app.$cmd",
                doc! {name: 1, "w": 2},
                0,
                -1,
                QueryFlags::empty(),
            );
            assert_eq!(translate(&q).unwrap(), Query::GetLastError);
        }
        let q = op(
            "admin.$cmd",
            doc! {"getnonce": 1},
            0,
            -1,
            QueryFlags::empty(),
        );
        assert_eq!(translate(&q).unwrap(), Query::GetNonce);
    }

    #[test]
    fn a_plain_query_is_the_filter() {
        let q = op(
            "app.users.active",
            doc! {"$or": [{"a": 1}, {"b": 2}]},
            5,
            0,
            QueryFlags::empty(),
        );
        assert_eq!(
            find_body(&q),
            doc! {"find": "users.active", "filter": {"$or": [{"a": 1}, {"b": 2}]}, "skip": 5i64, "$db": "app"}
        );
    }

    #[test]
    fn every_modifier_maps_to_its_find_option() {
        let query = doc! {
            "$query": {"x": {"$gt": 1}}, "$orderby": {"x": -1}, "$hint": "x_1",
            "$min": {"x": 1}, "$max": {"x": 9}, "$returnKey": true, "$showDiskLoc": true,
            "$maxTimeMS": 500, "$comment": "hi", "$snapshot": true, "$maxScan": 10,
        };
        let mut q = op("app.c", query, 0, 0, QueryFlags::empty());
        q.return_fields_selector = Some(document_bytes(&doc! {"x": 1, "_id": 0}));
        assert_eq!(
            find_body(&q),
            doc! {
                "find": "c", "filter": {"x": {"$gt": 1}}, "sort": {"x": -1}, "hint": "x_1",
                "min": {"x": 1}, "max": {"x": 9}, "returnKey": true, "showRecordId": true,
                "maxTimeMS": 500, "comment": "hi", "projection": {"x": 1, "_id": 0}, "$db": "app",
            }
        );
        // The old spellings (Node 2.2 sends query/orderby).
        let q = op(
            "app.c",
            doc! {"query": {"a": 1}, "orderby": {"a": 1}},
            0,
            0,
            QueryFlags::empty(),
        );
        assert_eq!(
            find_body(&q),
            doc! {"find": "c", "filter": {"a": 1}, "sort": {"a": 1}, "$db": "app"}
        );
        // `query` that is not a document is a field of the filter.
        let q = op("app.c", doc! {"query": 5}, 0, 0, QueryFlags::empty());
        assert_eq!(
            find_body(&q),
            doc! {"find": "c", "filter": {"query": 5}, "$db": "app"}
        );
        let q = op(
            "app.c",
            doc! {"$query": {}, "$bogus": 1},
            0,
            0,
            QueryFlags::empty(),
        );
        assert_eq!(translate(&q).unwrap_err().code, 2);
    }

    #[test]
    fn number_to_return_follows_the_legacy_rules() {
        let body = |n| find_body(&op("d.c", doc! {}, 0, n, QueryFlags::empty()));
        assert!(!body(0).contains_key("limit") && !body(0).contains_key("batchSize"));
        assert_eq!(body(1).get_i64("limit").unwrap(), 1);
        assert!(body(1).get_bool("singleBatch").unwrap());
        assert_eq!(body(-7).get_i64("limit").unwrap(), 7);
        assert!(body(-7).get_bool("singleBatch").unwrap());
        assert_eq!(body(20).get_i64("batchSize").unwrap(), 20);
        assert!(!body(20).contains_key("limit"));
        let q = op("d.c", doc! {}, 0, i32::MIN, QueryFlags::empty());
        assert_eq!(translate(&q).unwrap_err().code, 2);
        let q = op("d.c", doc! {}, -1, 0, QueryFlags::empty());
        assert_eq!(translate(&q).unwrap_err().code, 2);
    }

    #[test]
    fn flags_become_cursor_options_and_exhaust_is_refused() {
        let f = QueryFlags::TAILABLE
            | QueryFlags::AWAIT_DATA
            | QueryFlags::NO_CURSOR_TIMEOUT
            | QueryFlags::OPLOG_REPLAY
            | QueryFlags::PARTIAL
            | QueryFlags::SECONDARY_OK;
        let b = find_body(&op("d.c", doc! {}, 0, 0, f));
        for k in [
            "tailable",
            "awaitData",
            "noCursorTimeout",
            "oplogReplay",
            "allowPartialResults",
        ] {
            assert!(b.get_bool(k).unwrap(), "{k}");
        }
        assert_eq!(
            b.get_document("$readPreference").unwrap(),
            &doc! {"mode": "secondaryPreferred"}
        );
        let e = translate(&op("d.c", doc! {}, 0, 0, QueryFlags::EXHAUST)).unwrap_err();
        assert_eq!(e.code, 18526);
        assert!(e.message.contains("exhaust"));
    }

    #[test]
    fn explain_wraps_the_find() {
        let q = op(
            "d.c",
            doc! {"$query": {"a": 1}, "$explain": true},
            0,
            0,
            QueryFlags::empty(),
        );
        match translate(&q).unwrap() {
            Query::Find { body, explain, ns } => {
                assert!(explain);
                assert_eq!(ns, "d.c");
                assert_eq!(
                    body,
                    doc! {"explain": {"find": "c", "filter": {"a": 1}}, "$db": "d"}
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_namespaces_are_refused() {
        for ns in ["nodot", ".c", "d."] {
            assert_eq!(
                translate(&op(ns, doc! {}, 0, 0, QueryFlags::empty()))
                    .unwrap_err()
                    .code,
                73
            );
        }
    }
}
