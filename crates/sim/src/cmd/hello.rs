//! hello / isMaster / ismaster, awaitable and exhaust.

use std::time::Duration;

use bson::{doc, Bson, DateTime, Document};
use holdfast_wire::Compressor;

use super::{ConnCtx, ExhaustHello, Request};
use crate::errors::CmdError;
use crate::member::TopologyVersion;

pub const MAX_WIRE_VERSION: i32 = 21;
pub const MAX_BSON_OBJECT_SIZE: i32 = 16 * 1024 * 1024;
pub const MAX_MESSAGE_SIZE_BYTES: i32 = 48_000_000;
pub const MAX_WRITE_BATCH_SIZE: i32 = 100_000;

/// Compressors this server accepts and advertises.
pub const SERVER_COMPRESSORS: [Compressor; 3] =
    [Compressor::Snappy, Compressor::Zstd, Compressor::Zlib];

pub fn is_hello(name: &str) -> bool {
    matches!(name, "hello" | "isMaster" | "ismaster")
}

pub async fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let seen = conn.seen_hello;
    conn.seen_hello = true;
    if req.cmd.contains_key("client") && seen {
        return Err(CmdError::new(
            crate::errors::CLIENT_METADATA_CANNOT_BE_MUTATED,
            "The client metadata document may only be sent in the first hello",
        ));
    }
    if let Some(Bson::Array(list)) = req.cmd.get("compression") {
        conn.compressors = list
            .iter()
            .filter_map(|v| v.as_str().and_then(Compressor::from_name))
            .filter(|c| SERVER_COMPRESSORS.contains(c))
            .collect();
    }
    let hello_names = req.name == "hello";
    let hello_ok = matches!(req.cmd.get("helloOk"), Some(v) if super::as_bool(v));

    let awaited = awaitable(conn, req)?;
    if let Some((client_tv, max_await)) = awaited {
        await_change(conn, client_tv, max_await).await;
    }
    let latency = conn.member().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (mut body, tv) = build(conn, hello_names, hello_ok);
    super::sasl::hello_fields(conn, req, &mut body);
    if let Some((_, max_await)) = awaited {
        if req.exhaust_allowed && !req.legacy {
            conn.after = super::After::Exhaust(ExhaustHello {
                topology: tv,
                max_await,
                hello_names,
                hello_ok,
                prev_request_id: 0,
            });
        }
    }
    Ok(body)
}

/// Validates the awaitable-hello fields; returns what to wait for.
fn awaitable(
    conn: &ConnCtx,
    req: &Request,
) -> Result<Option<(TopologyVersion, Duration)>, CmdError> {
    let tv = req.cmd.get("topologyVersion");
    let max_await = req.cmd.get("maxAwaitTimeMS");
    match (tv, max_await) {
        (None, None) => {
            if req.exhaust_allowed {
                return Err(CmdError::new(
                    51756,
                    "A hello request with exhaust must specify 'maxAwaitTimeMS'",
                ));
            }
            Ok(None)
        }
        (Some(_), None) | (None, Some(_)) => Err(CmdError::new(
            31368,
            "A request to the hello command must contain both 'topologyVersion' and 'maxAwaitTimeMS' or neither",
        )),
        (Some(tv), Some(ms)) => {
            let ms = super::as_i64(ms)
                .ok_or_else(|| CmdError::new(crate::errors::TYPE_MISMATCH, "maxAwaitTimeMS must be a number"))?;
            if ms < 0 {
                return Err(CmdError::new(31373, "maxAwaitTimeMS must be a non-negative integer"));
            }
            let Bson::Document(tv) = tv else {
                return Err(CmdError::new(crate::errors::TYPE_MISMATCH, "topologyVersion must be an object"));
            };
            let process_id = match tv.get("processId") {
                Some(Bson::ObjectId(o)) => *o,
                _ => {
                    return Err(CmdError::new(
                        crate::errors::TYPE_MISMATCH,
                        "topologyVersion.processId must be an ObjectId",
                    ))
                }
            };
            let counter = tv.get("counter").and_then(super::as_i64).ok_or_else(|| {
                CmdError::new(crate::errors::TYPE_MISMATCH, "topologyVersion.counter must be a number")
            })?;
            if counter < 0 {
                return Err(CmdError::new(31372, "topologyVersion must have a non-negative counter"));
            }
            let current = conn.member().topology_version();
            if process_id == current.process_id && counter > current.counter {
                return Err(CmdError::new(
                    31382,
                    "Received a topology version with the same process ID and a higher counter than the server",
                ));
            }
            Ok(Some((
                TopologyVersion {
                    process_id,
                    counter,
                },
                Duration::from_millis(ms as u64),
            )))
        }
    }
}

/// Waits until this member's topologyVersion differs from the client's or
/// `max_await` passes.
pub async fn await_change(conn: &ConnCtx, client: TopologyVersion, max_await: Duration) {
    let mut rx = conn.member().topology.subscribe();
    let changed =
        |tv: &TopologyVersion| tv.process_id != client.process_id || tv.counter > client.counter;
    let _ = tokio::time::timeout(max_await, rx.wait_for(changed)).await;
}

/// The next reply of an exhaust stream (waits for a change first).
pub async fn next_streamed(conn: &ConnCtx, ex: &mut ExhaustHello) -> Document {
    await_change(conn, ex.topology, ex.max_await).await;
    let latency = conn.member().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (body, tv) = build(conn, ex.hello_names, ex.hello_ok);
    ex.topology = tv;
    body
}

/// The hello reply of this member, as MongoDB 7.0 builds it.
pub fn build(conn: &ConnCtx, hello_names: bool, hello_ok: bool) -> (Document, TopologyVersion) {
    let set = &conn.set;
    let m = conn.member();
    // Read the counter before the state it describes: a change in between
    // makes the client ask again instead of missing it.
    let tv = m.topology_version();
    let (writable, primary, term, last, majority, stepping_down) = {
        let repl = set.repl.lock();
        let me = &repl.members[conn.idx];
        let writable = repl.primary == Some(conn.idx) && !me.stepping_down;
        let primary = repl.writable_primary().map(|p| set.hosts[p].clone());
        // This member's committed snapshot: the commit point, as far as
        // it has applied it.
        let maj = repl.majority_index(set.cfg.majority()).min(me.applied);
        (
            writable,
            primary,
            repl.term,
            me.last,
            repl.optime_at(maj).0,
            me.stepping_down,
        )
    };
    let mut d = Document::new();
    d.insert("topologyVersion", tv.to_document());
    d.insert("hosts", set.hosts.clone());
    d.insert("setName", set.cfg.set_name.clone());
    d.insert("setVersion", 1);
    d.insert(
        if hello_names {
            "isWritablePrimary"
        } else {
            "ismaster"
        },
        writable,
    );
    d.insert("secondary", !writable && !stepping_down);
    if let Some(p) = primary {
        d.insert("primary", p);
    }
    let tags = set.cfg.tags_of(conn.idx);
    if !tags.is_empty() {
        d.insert("tags", tags_document(tags));
    }
    d.insert("me", m.host.clone());
    if writable {
        d.insert("electionId", election_id(term));
    }
    // As mongod: from this member's last applied optime and its committed
    // snapshot; the dates are the optimes' seconds.
    d.insert(
        "lastWrite",
        doc! {
            "opTime": last.to_document(),
            "lastWriteDate": optime_date(last),
            "majorityOpTime": majority.to_document(),
            "majorityWriteDate": optime_date(majority),
        },
    );
    d.insert("maxBsonObjectSize", MAX_BSON_OBJECT_SIZE);
    d.insert("maxMessageSizeBytes", MAX_MESSAGE_SIZE_BYTES);
    d.insert("maxWriteBatchSize", MAX_WRITE_BATCH_SIZE);
    d.insert("localTime", DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", conn.conn_id);
    d.insert("minWireVersion", 0);
    d.insert("maxWireVersion", MAX_WIRE_VERSION);
    d.insert("readOnly", false);
    if !conn.compressors.is_empty() {
        let names: Vec<&str> = conn.compressors.iter().map(|c| c.name()).collect();
        d.insert("compression", names);
    }
    if hello_ok {
        d.insert("helloOk", true);
    }
    d.insert("ok", 1.0);
    (d, tv)
}

/// A member's tags as its configuration and hello show them.
pub fn tags_document(tags: &[(String, String)]) -> Document {
    tags.iter()
        .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
        .collect()
}

/// The date of an optime as mongod reports it (`lastWriteDate`,
/// `optimeDate`): its timestamp's seconds.
pub fn optime_date(op: crate::oplog::OpTime) -> DateTime {
    DateTime::from_millis(i64::from(op.ts.time) * 1000)
}

/// mongod's `OID::fromTerm`: 0x7fffffff then the term, big-endian. Rises
/// with the term.
pub fn election_id(term: i64) -> bson::oid::ObjectId {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    b[4..].copy_from_slice(&term.to_be_bytes());
    bson::oid::ObjectId::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_ids_rise_with_the_term() {
        assert!(election_id(1) < election_id(2));
        assert_eq!(election_id(3).to_hex(), "7fffffff0000000000000003");
    }
}
