//! Fuzz target `command_view`: the input is the BSON body of a command.
//!
//! Its length prefix and terminator are forced to fit (so the fuzzer spends
//! its time on the elements, not on framing), then it is wrapped three ways
//! and taken through `Frame::parse` + `CommandView` + `classify`:
//! - as the kind-0 body of an OP_MSG (built with `reply::msg_reply_bytes`);
//! - as the command of an OP_QUERY on `admin.$cmd` (`CommandView::from_query`,
//!   which unwraps `$query`/`query`);
//! - as the single document of a kind-1 `updates` / `deletes` sequence under
//!   an `update` / `delete` body (the multi-statement scan of sequences).
//!
//! For the OP_MSG cases, the view is also checked against a reference: the
//! original bson-iterator implementation of the scan, kept here, so the fast
//! top-level walk in `CommandView` must agree with it on every input (same
//! fields, and an error exactly when the reference errs).
#![no_main]

use bson::{doc, RawBsonRef, RawDocument};
use bytes::Bytes;
use holdfast_wire::msg::DocumentSequence;
use holdfast_wire::reply::{document_bytes, msg_reply_bytes};
use holdfast_wire::{CommandView, Frame, Limits, Message, MsgFlags, OpMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let mut body = data.to_vec();
    let n = body.len() as i32;
    body[0..4].copy_from_slice(&n.to_le_bytes());
    *body.last_mut().unwrap() = 0;
    let body = Bytes::from(body);
    let limits = Limits::default();

    // 1. OP_MSG body.
    let frame = msg_reply_bytes(1, 0, MsgFlags::empty(), body.clone());
    view_frame(&frame, &limits);
    differential(&frame, &limits);

    // 2. OP_QUERY command.
    let mut q = Vec::with_capacity(body.len() + 40);
    let len = (16 + 4 + 11 + 8 + body.len()) as i32;
    q.extend_from_slice(&len.to_le_bytes());
    q.extend_from_slice(&2i32.to_le_bytes());
    q.extend_from_slice(&0i32.to_le_bytes());
    q.extend_from_slice(&2004i32.to_le_bytes());
    q.extend_from_slice(&0i32.to_le_bytes());
    q.extend_from_slice(b"admin.$cmd\0");
    q.extend_from_slice(&0i32.to_le_bytes());
    q.extend_from_slice(&(-1i32).to_le_bytes());
    q.extend_from_slice(&body);
    if let Ok(frame) = Frame::from_bytes(Bytes::from(q), usize::MAX) {
        view_frame(&frame, &limits);
    }

    // 3. The document as a statement of a kind-1 sequence.
    for (cmd, ident) in [("update", "updates"), ("delete", "deletes")] {
        let mut m = OpMsg::new(
            MsgFlags::empty(),
            document_bytes(&doc! { cmd: "c", "$db": "app" }),
        );
        m.sequences.push(DocumentSequence::new(ident, body.clone()));
        let frame = Message::Msg(m).to_frame(3, 0);
        view_frame(&frame, &limits);
        differential(&frame, &limits);
    }
});

fn view_frame(frame: &Frame, limits: &Limits) {
    match frame.parse(limits) {
        Ok(Message::Msg(m)) => {
            if let Ok(v) = CommandView::from_msg(&m) {
                check(&v);
            }
        }
        Ok(Message::Query(q)) => {
            if let Ok(v) = CommandView::from_query(&q) {
                check(&v);
            }
        }
        Ok(other) => panic!("built frame parsed as {other:?}"),
        Err(_) => {}
    }
}

fn check(v: &CommandView<'_>) {
    let class = v.classify();
    let _ = class.label();
    let _ = v.kill_cursor_ids();
    let _ = v.is_unacknowledged();
    let _ = v.in_transaction();
    if let Some(s) = v.sequence("updates").or_else(|| v.sequence("deletes")) {
        for d in s.iter() {
            let _ = d;
        }
    }
}

/// `CommandView::from_msg` must agree with the reference scan.
fn differential(frame: &Frame, limits: &Limits) {
    let Ok(Message::Msg(m)) = frame.parse(limits) else {
        return;
    };
    let Ok(body) = RawDocument::from_bytes(&m.body[..]) else {
        return;
    };
    let expected = reference(body, &m.sequences);
    let got = CommandView::from_msg(&m).map(|v| Summary {
        name: v.name,
        db: v.db,
        lsid: v.lsid.map(|d| d.as_bytes()),
        txn_number: v.txn_number,
        autocommit: v.autocommit,
        start_transaction: v.start_transaction,
        read_preference: v.read_preference.map(|d| d.as_bytes()),
        max_time_ms: v.max_time_ms,
        cursor_id: v.cursor_id,
        write_concern_w0: v.write_concern_w0,
        has_out_or_merge: v.has_out_or_merge,
        multi_statement: v.multi_statement,
    });
    match (&expected, &got) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "view differs from the reference"),
        (Err(()), Err(_)) => {}
        _ => panic!("reference {expected:?} but CommandView {got:?}"),
    }
}

#[derive(Debug, PartialEq)]
struct Summary<'a> {
    name: &'a str,
    db: Option<&'a str>,
    lsid: Option<&'a [u8]>,
    txn_number: Option<i64>,
    autocommit: Option<bool>,
    start_transaction: bool,
    read_preference: Option<&'a [u8]>,
    max_time_ms: Option<i64>,
    cursor_id: Option<i64>,
    write_concern_w0: bool,
    has_out_or_merge: bool,
    multi_statement: bool,
}

fn as_i64(v: RawBsonRef<'_>) -> Option<i64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as i64),
        RawBsonRef::Int64(i) => Some(i),
        RawBsonRef::Double(d) if d.is_finite() && d.fract() == 0.0 => Some(d as i64),
        _ => None,
    }
}

fn as_bool(v: RawBsonRef<'_>) -> Option<bool> {
    match v {
        RawBsonRef::Boolean(b) => Some(b),
        other => as_i64(other).map(|n| n != 0),
    }
}

fn is_multi_update(d: &RawDocument) -> bool {
    matches!(d.get("multi"), Ok(Some(v)) if as_bool(v) == Some(true))
}

fn is_multi_delete(d: &RawDocument) -> bool {
    matches!(d.get("limit"), Ok(Some(v)) if as_i64(v) == Some(0))
}

/// The scan as first written: bson's iterator over every top-level field.
fn reference<'a>(
    body: &'a RawDocument,
    sequences: &'a [DocumentSequence],
) -> Result<Summary<'a>, ()> {
    let mut it = body.iter();
    let (name, first_value) = it.next().ok_or(())?.map_err(|_| ())?;
    let mut v = Summary {
        name,
        db: None,
        lsid: None,
        txn_number: None,
        autocommit: None,
        start_transaction: false,
        read_preference: None,
        max_time_ms: None,
        cursor_id: None,
        write_concern_w0: false,
        has_out_or_merge: false,
        multi_statement: false,
    };
    if name == "getMore" {
        v.cursor_id = as_i64(first_value);
    }
    for el in it {
        let (k, val) = el.map_err(|_| ())?;
        match k {
            "$db" => {
                if let RawBsonRef::String(s) = val {
                    v.db = Some(s);
                }
            }
            "lsid" => {
                if let RawBsonRef::Document(d) = val {
                    v.lsid = Some(d.as_bytes());
                }
            }
            "txnNumber" => v.txn_number = as_i64(val),
            "autocommit" => v.autocommit = as_bool(val),
            "startTransaction" => v.start_transaction = as_bool(val).unwrap_or(false),
            "$readPreference" => {
                if let RawBsonRef::Document(d) = val {
                    v.read_preference = Some(d.as_bytes());
                }
            }
            "maxTimeMS" => v.max_time_ms = as_i64(val),
            "writeConcern" => {
                if let RawBsonRef::Document(wc) = val {
                    if let Ok(Some(w)) = wc.get("w") {
                        v.write_concern_w0 = as_i64(w) == Some(0);
                    }
                }
            }
            "pipeline" if name == "aggregate" => {
                if let RawBsonRef::Array(stages) = val {
                    if let Some(Ok(RawBsonRef::Document(last))) = stages.into_iter().last() {
                        if let Some(Ok((stage, _))) = last.iter().next() {
                            v.has_out_or_merge = stage == "$out" || stage == "$merge";
                        }
                    }
                }
            }
            "updates" if name == "update" => {
                if let RawBsonRef::Array(a) = val {
                    v.multi_statement |= a
                        .into_iter()
                        .any(|s| matches!(s, Ok(RawBsonRef::Document(d)) if is_multi_update(d)));
                }
            }
            "deletes" if name == "delete" => {
                if let RawBsonRef::Array(a) = val {
                    v.multi_statement |= a
                        .into_iter()
                        .any(|s| matches!(s, Ok(RawBsonRef::Document(d)) if is_multi_delete(d)));
                }
            }
            _ => {}
        }
    }
    for s in sequences {
        let check: fn(&RawDocument) -> bool = match (name, s.identifier.as_str()) {
            ("update", "updates") => is_multi_update,
            ("delete", "deletes") => is_multi_delete,
            _ => continue,
        };
        for d in s.iter() {
            if check(d.map_err(|_| ())?) {
                v.multi_statement = true;
            }
        }
    }
    Ok(v)
}
