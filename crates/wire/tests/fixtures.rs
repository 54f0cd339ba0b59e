//! Frames captured from real clients (see tests/fixtures/README.md): each is
//! decoded whole, at every split point, and byte by byte as part of its
//! client's stream, and what the decoder finds is compared with the capture
//! server's own (independent, Python) decoding in manifest.json.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::BytesMut;
use holdfast_wire::*;
use serde_json::Value;
use tokio_util::codec::Decoder;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["fixtures"].as_array().unwrap().clone()
}

fn decode_one(bytes: &[u8]) -> Frame {
    let mut c = FrameCodec::default();
    let mut b = BytesMut::from(bytes);
    let f = c.decode(&mut b).unwrap().expect("a whole frame");
    assert!(b.is_empty());
    f
}

/// Checks one frame against its manifest entry; returns the client name.
fn check(entry: &Value, frame: &Frame) {
    let file = entry["file"].as_str().unwrap();
    assert_eq!(
        frame.len() as u64,
        entry["length"].as_u64().unwrap(),
        "{file}"
    );
    assert_eq!(
        frame.request_id() as i64,
        entry["request_id"].as_i64().unwrap(),
        "{file}"
    );
    assert_eq!(
        frame.response_to() as i64,
        entry["response_to"].as_i64().unwrap(),
        "{file}"
    );
    assert_eq!(
        frame.op_code().as_i32() as i64,
        entry["opcode"].as_i64().unwrap(),
        "{file}"
    );
    let limits = Limits::default();
    let mut parsed = frame
        .parse(&limits)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let inner_frame;
    if let Message::Compressed(c) = parsed.clone() {
        let comp = &entry["compression"];
        assert_eq!(
            c.compressor_id as u64,
            comp["compressor_id"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            c.uncompressed_size as u64,
            comp["uncompressed_size"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            c.original_opcode.as_i32() as i64,
            comp["inner_opcode"].as_i64().unwrap(),
            "{file}"
        );
        inner_frame = c
            .decompress(frame.header(), limits.max_message_size)
            .unwrap();
        parsed = inner_frame.parse(&limits).unwrap();
        // Re-compressing with the same compressor and decompressing gives the same frame back.
        let again =
            OpCompressed::compress(&inner_frame, Compressor::from_id(c.compressor_id).unwrap())
                .unwrap();
        let Message::Compressed(c2) = again.parse(&limits).unwrap() else {
            panic!()
        };
        assert_eq!(
            c2.decompress(again.header(), limits.max_message_size)
                .unwrap(),
            inner_frame
        );
    }
    let view = match &parsed {
        Message::Msg(m) => {
            assert_eq!(
                m.flags.bits() as u64,
                entry["flag_bits"].as_u64().unwrap(),
                "{file}"
            );
            let seqs: Vec<&Value> = entry["sections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == 1)
                .collect();
            assert_eq!(m.sequences.len(), seqs.len(), "{file}");
            for (s, e) in m.sequences.iter().zip(seqs) {
                assert_eq!(s.identifier, e["identifier"].as_str().unwrap(), "{file}");
                assert_eq!(s.count() as u64, e["count"].as_u64().unwrap(), "{file}");
            }
            // Re-encoding the parsed message reproduces the captured bytes exactly.
            let re = Message::Msg(m.clone()).to_frame(frame.request_id(), frame.response_to());
            if !matches!(frame.op_code(), OpCode::Compressed) {
                assert_eq!(re.raw(), frame.raw(), "{file}: re-encoding differs");
            }
            CommandView::from_msg(m).unwrap_or_else(|e| panic!("{file}: {e}"))
        }
        Message::Query(q) => {
            let re = Message::Query(q.clone()).to_frame(frame.request_id(), frame.response_to());
            assert_eq!(re.raw(), frame.raw(), "{file}: re-encoding differs");
            CommandView::from_query(q).unwrap_or_else(|e| panic!("{file}: {e}"))
        }
        other => panic!("{file}: unexpected {other:?}"),
    };
    assert_eq!(view.name, entry["command"].as_str().unwrap(), "{file}");
    assert_eq!(view.db, entry["db"].as_str(), "{file}");
    assert_eq!(
        view.more_to_come,
        entry["more_to_come"].as_bool().unwrap(),
        "{file}"
    );
    let class = view.classify();
    if entry["handshake"].as_bool() == Some(true) {
        assert_eq!(class, CommandClass::Handshake, "{file}");
    }
    let expected = match view.name {
        "find" | "aggregate" => Some(CommandClass::RetryableRead),
        "getMore" => Some(CommandClass::CursorContinuation),
        "ping" | "buildinfo" | "buildInfo" | "getParameter" | "endSessions" | "atlasVersion" => {
            Some(CommandClass::Diagnostic)
        }
        _ => None,
    };
    if let Some(c) = expected {
        assert_eq!(class, c, "{file}");
    }
    if matches!(view.name, "insert" | "update" | "delete") {
        assert!(
            matches!(class, CommandClass::Write { .. }),
            "{file}: {class:?}"
        );
        if view.more_to_come {
            assert_eq!(
                class,
                CommandClass::Write { retryable: false },
                "{file}: w:0 is never retryable"
            );
        }
    }
}

#[test]
fn every_fixture_decodes_and_matches_the_manifest() {
    let entries = manifest();
    let mut per_client: BTreeMap<String, usize> = BTreeMap::new();
    for e in &entries {
        let bytes = std::fs::read(dir().join(e["file"].as_str().unwrap())).unwrap();
        check(e, &decode_one(&bytes));
        *per_client
            .entry(e["client"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for client in [
        "pymongo4",
        "pymongo4-compressed",
        "pymongo3",
        "node",
        "mongosh",
        "rust",
    ] {
        assert!(
            per_client.get(client).copied().unwrap_or(0) >= 10,
            "{client}: {per_client:?}"
        );
    }
}

#[test]
fn every_fixture_at_every_split_point() {
    for e in manifest() {
        let file = e["file"].as_str().unwrap();
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let whole = decode_one(&bytes);
        for i in 0..=bytes.len() {
            let mut c = FrameCodec::default();
            let mut b = BytesMut::new();
            b.extend_from_slice(&bytes[..i]);
            let first = c.decode(&mut b).unwrap();
            if i < bytes.len() {
                assert!(
                    first.is_none(),
                    "{file}: a frame from {i} of {} bytes",
                    bytes.len()
                );
                b.extend_from_slice(&bytes[i..]);
                let f = c
                    .decode(&mut b)
                    .unwrap()
                    .expect("whole frame after the rest");
                assert_eq!(f, whole, "{file} split at {i}");
            } else {
                assert_eq!(first.unwrap(), whole);
            }
            assert!(b.is_empty());
        }
    }
}

#[test]
fn each_clients_stream_byte_by_byte_and_in_every_two_piece_split() {
    let mut streams: BTreeMap<String, (Vec<u8>, Vec<Value>)> = BTreeMap::new();
    for e in manifest() {
        let bytes = std::fs::read(dir().join(e["file"].as_str().unwrap())).unwrap();
        let s = streams
            .entry(e["client"].as_str().unwrap().to_string())
            .or_default();
        s.0.extend_from_slice(&bytes);
        s.1.push(e);
    }
    for (client, (stream, entries)) in streams {
        // Byte by byte.
        let mut c = FrameCodec::default();
        let mut b = BytesMut::new();
        let mut frames = Vec::new();
        for byte in &stream {
            b.extend_from_slice(&[*byte]);
            while let Some(f) = c.decode(&mut b).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), entries.len(), "{client}");
        for (f, e) in frames.iter().zip(&entries) {
            check(e, f);
        }
        // Every two-piece split of the whole stream.
        for i in (0..=stream.len()).step_by(1) {
            let mut c = FrameCodec::default();
            let mut b = BytesMut::from(&stream[..i]);
            let mut n = 0;
            while c.decode(&mut b).unwrap().is_some() {
                n += 1;
            }
            b.extend_from_slice(&stream[i..]);
            while c.decode(&mut b).unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, entries.len(), "{client} split at {i}");
        }
    }
}
