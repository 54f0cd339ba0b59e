//! One rejection test per malformed case the decoder must catch.

use bson::doc;
use bytes::{Bytes, BytesMut};
use holdfast_wire::*;
use tokio_util::codec::Decoder;

fn body(d: bson::Document) -> Bytes {
    holdfast_wire::reply::document_bytes(&d)
}

fn msg_frame(flags: u32, sections: &[u8], checksum: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let len = 16 + 4 + sections.len() + if checksum { 4 } else { 0 };
    v.extend_from_slice(&(len as i32).to_le_bytes());
    v.extend_from_slice(&7i32.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&2013i32.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(sections);
    if checksum {
        let crc = crc32c::crc32c(&v);
        v.extend_from_slice(&crc.to_le_bytes());
    }
    v
}

fn kind0(d: &Bytes) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(d);
    v
}

fn kind1(ident: &str, docs: &[Bytes]) -> Vec<u8> {
    let payload: usize = docs.iter().map(|d| d.len()).sum();
    let mut v = vec![1u8];
    v.extend_from_slice(&((4 + ident.len() + 1 + payload) as i32).to_le_bytes());
    v.extend_from_slice(ident.as_bytes());
    v.push(0);
    for d in docs {
        v.extend_from_slice(d);
    }
    v
}

fn parse(raw: Vec<u8>) -> Result<Message, WireError> {
    let f = Frame::from_bytes(Bytes::from(raw), DEFAULT_MAX_MESSAGE_SIZE)?;
    f.parse(&Limits::default())
}

fn decode_all(raw: &[u8], limits: Limits) -> Result<Option<Frame>, WireError> {
    let mut c = FrameCodec::new(limits);
    let mut b = BytesMut::from(raw);
    c.decode(&mut b)
}

fn ping() -> Bytes {
    body(doc! {"ping": 1, "$db": "admin"})
}

#[test]
fn well_formed_baseline_parses() {
    let m = parse(msg_frame(0, &kind0(&ping()), false)).unwrap();
    assert!(matches!(m, Message::Msg(ref m) if m.sequences.is_empty() && m.checksum.is_none()));
}

#[test]
fn message_length_below_header_is_rejected() {
    for len in [0i32, 4, 15] {
        let mut raw = msg_frame(0, &kind0(&ping()), false);
        raw[0..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            decode_all(&raw, Limits::default()),
            Err(WireError::LengthTooSmall(len))
        );
    }
}

#[test]
fn negative_message_length_is_rejected_before_buffering() {
    let raw = (-5i32).to_le_bytes();
    assert_eq!(
        decode_all(&raw, Limits::default()),
        Err(WireError::LengthTooSmall(-5))
    );
    let raw = i32::MIN.to_le_bytes();
    assert_eq!(
        decode_all(&raw, Limits::default()),
        Err(WireError::LengthTooSmall(i32::MIN))
    );
}

#[test]
fn message_length_over_limit_is_rejected_without_reserving() {
    let limits = Limits {
        max_message_size: 1000,
        verify_checksum: true,
    };
    let raw = 1001i32.to_le_bytes();
    let mut c = FrameCodec::new(limits);
    let mut b = BytesMut::from(&raw[..]);
    let cap_before = b.capacity();
    assert!(matches!(
        c.decode(&mut b),
        Err(WireError::LengthTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    assert_eq!(
        b.capacity(),
        cap_before,
        "no space reserved for a rejected length"
    );
    // i32::MAX against the default 48 MB limit.
    let raw = i32::MAX.to_le_bytes();
    assert!(matches!(
        decode_all(&raw, Limits::default()),
        Err(WireError::LengthTooLarge { .. })
    ));
}

#[test]
fn incomplete_frame_waits_for_more() {
    let raw = msg_frame(0, &kind0(&ping()), false);
    assert_eq!(
        decode_all(&raw[..raw.len() - 1], Limits::default()),
        Ok(None)
    );
    assert_eq!(decode_all(&raw[..3], Limits::default()), Ok(None));
}

#[test]
fn unknown_required_flag_bit_is_rejected() {
    let err = parse(msg_frame(1 << 4, &kind0(&ping()), false)).unwrap_err();
    assert_eq!(err, WireError::IllegalOpMsgFlag(1 << 4));
    assert!(err.is_connection_fatal());
    assert_eq!(err.server_code().0, 223);
}

#[test]
fn unknown_optional_flag_bit_is_ignored() {
    let m = parse(msg_frame(1 << 20, &kind0(&ping()), false)).unwrap();
    let Message::Msg(m) = m else { panic!() };
    assert!(m.flags.bits() & (1 << 20) != 0);
}

#[test]
fn checksum_is_verified() {
    let good = msg_frame(1, &kind0(&ping()), true);
    let Message::Msg(m) = parse(good.clone()).unwrap() else {
        panic!()
    };
    assert!(m.checksum.is_some());
    let mut bad = good;
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let err = parse(bad).unwrap_err();
    assert!(matches!(err, WireError::ChecksumMismatch { .. }));
    assert_eq!(err.server_code().0, 288);
}

#[test]
fn checksum_flag_without_room_for_it_is_truncated() {
    // flags say checksum present but the frame ends right after the flags.
    let raw = msg_frame(1, &[], false);
    assert!(matches!(parse(raw), Err(WireError::Truncated { .. })));
}

#[test]
fn missing_body_is_rejected() {
    let seq = kind1("documents", &[body(doc! {"a": 1})]);
    assert_eq!(
        parse(msg_frame(0, &seq, false)),
        Err(WireError::MissingBody)
    );
    assert_eq!(parse(msg_frame(0, &[], false)), Err(WireError::MissingBody));
}

#[test]
fn two_bodies_are_rejected() {
    let mut s = kind0(&ping());
    s.extend(kind0(&ping()));
    assert_eq!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::DuplicateBody)
    );
}

#[test]
fn unknown_section_kind_is_rejected() {
    let mut s = kind0(&ping());
    s.push(3);
    s.extend_from_slice(&[5, 0, 0, 0, 0]);
    let err = parse(msg_frame(0, &s, false)).unwrap_err();
    assert_eq!(err, WireError::UnsupportedSectionKind(3));
    assert!(err.is_connection_fatal());
}

#[test]
fn sequence_size_overrunning_frame_is_rejected() {
    let mut s = kind0(&ping());
    let mut seq = kind1("documents", &[body(doc! {"a": 1})]);
    seq[1..5].copy_from_slice(&1000i32.to_le_bytes());
    s.extend(seq);
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::BadSequenceSize { size: 1000, .. })
    ));
}

#[test]
fn negative_or_tiny_sequence_size_is_rejected() {
    for size in [-1i32, 0, 4] {
        let mut s = kind0(&ping());
        let mut seq = kind1("documents", &[]);
        seq[1..5].copy_from_slice(&size.to_le_bytes());
        s.extend(seq);
        assert!(matches!(
            parse(msg_frame(0, &s, false)),
            Err(WireError::BadSequenceSize { .. })
        ));
    }
}

#[test]
fn sequence_identifier_without_nul_is_rejected() {
    let mut s = kind0(&ping());
    s.push(1);
    s.extend_from_slice(&9i32.to_le_bytes());
    s.extend_from_slice(b"abcde"); // no NUL inside the section
    assert_eq!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::UnterminatedCString(
            "document sequence identifier"
        ))
    );
}

#[test]
fn document_in_sequence_overrunning_section_is_rejected() {
    let mut s = kind0(&ping());
    let d = body(doc! {"a": 1});
    let mut seq = kind1("documents", std::slice::from_ref(&d));
    // Claim the document is longer than the section.
    let at = 1 + 4 + "documents".len() + 1;
    seq[at..at + 4].copy_from_slice(&((d.len() + 10) as i32).to_le_bytes());
    s.extend(seq);
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::BadDocumentLength {
            what: "document in sequence",
            ..
        })
    ));
}

#[test]
fn duplicate_sequence_identifiers_are_rejected() {
    let mut s = kind0(&ping());
    s.extend(kind1("documents", &[body(doc! {"a": 1})]));
    s.extend(kind1("documents", &[body(doc! {"a": 2})]));
    assert_eq!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::DuplicateSequence("documents".into()))
    );
}

#[test]
fn body_length_prefix_disagreeing_with_section_is_rejected() {
    let d = ping();
    // Too long for the frame.
    let mut s = kind0(&d);
    s[1..5].copy_from_slice(&((d.len() + 1) as i32).to_le_bytes());
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::BadDocumentLength {
            what: "OP_MSG body",
            ..
        })
    ));
    // Shorter than the minimum.
    let mut s = kind0(&d);
    s[1..5].copy_from_slice(&4i32.to_le_bytes());
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::BadDocumentLength { .. })
    ));
    // Negative.
    let mut s = kind0(&d);
    s[1..5].copy_from_slice(&(-20i32).to_le_bytes());
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::BadDocumentLength { .. })
    ));
    // Shorter than the real document: the terminator is not where it says.
    let mut s = kind0(&d);
    s[1..5].copy_from_slice(&((d.len() - 2) as i32).to_le_bytes());
    assert!(parse(msg_frame(0, &s, false)).is_err());
}

#[test]
fn truncated_body_is_rejected() {
    let mut s = vec![0u8];
    s.extend_from_slice(&[20, 0]);
    assert!(matches!(
        parse(msg_frame(0, &s, false)),
        Err(WireError::Truncated { .. })
    ));
}

#[test]
fn garbage_inside_a_body_is_caught_by_the_command_view() {
    // Length and terminator fine, element type byte invalid.
    let mut d = ping().to_vec();
    d[4] = 0x7f;
    let m = parse(msg_frame(0, &kind0(&Bytes::from(d)), false)).unwrap();
    let Message::Msg(m) = m else { panic!() };
    assert!(CommandView::from_msg(&m).is_err());
}

#[test]
fn empty_command_is_rejected() {
    let m = parse(msg_frame(0, &kind0(&body(doc! {})), false)).unwrap();
    let Message::Msg(m) = m else { panic!() };
    assert_eq!(
        CommandView::from_msg(&m).unwrap_err(),
        WireError::EmptyCommand
    );
}

fn query_frame(ns: &str, tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let len = 16 + 4 + ns.len() + 1 + tail.len();
    v.extend_from_slice(&(len as i32).to_le_bytes());
    v.extend_from_slice(&1i32.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&2004i32.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(ns.as_bytes());
    v.push(0);
    v.extend_from_slice(tail);
    v
}

#[test]
fn op_query_truncated_cstring_is_rejected() {
    let mut v = Vec::new();
    v.extend_from_slice(&24i32.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&2004i32.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(b"adm$"); // no NUL before the end
    assert_eq!(
        parse(v),
        Err(WireError::UnterminatedCString(
            "OP_QUERY fullCollectionName"
        ))
    );
}

#[test]
fn op_query_missing_counts_and_bad_docs_are_rejected() {
    assert!(matches!(
        parse(query_frame("admin.$cmd", &[1, 0])),
        Err(WireError::Truncated { .. })
    ));
    let mut tail = vec![0u8; 8];
    tail.extend_from_slice(&100i32.to_le_bytes());
    tail.push(0);
    assert!(matches!(
        parse(query_frame("admin.$cmd", &tail)),
        Err(WireError::BadDocumentLength { .. })
    ));
    let mut tail = vec![0u8; 8];
    tail.extend_from_slice(&body(doc! {"isMaster": 1}));
    tail.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        parse(query_frame("admin.$cmd", &tail)),
        Err(WireError::BadDocumentLength { .. }) | Err(WireError::Truncated { .. })
    ));
}

#[test]
fn op_query_on_non_command_namespace_has_no_command_view() {
    let mut tail = vec![0u8; 8];
    tail.extend_from_slice(&body(doc! {"a": 1}));
    let Message::Query(q) = parse(query_frame("test.coll", &tail)).unwrap() else {
        panic!()
    };
    assert_eq!(
        CommandView::from_query(&q).unwrap_err(),
        WireError::NotACommandNamespace("test.coll".into())
    );
}

#[test]
fn op_reply_count_mismatch_is_rejected() {
    let d = body(doc! {"ok": 1});
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + 20 + d.len()) as i32).to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&1i32.to_le_bytes());
    v.extend_from_slice(&8i32.to_le_bytes());
    v.extend_from_slice(&0i64.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&2i32.to_le_bytes());
    v.extend_from_slice(&d);
    assert_eq!(
        parse(v),
        Err(WireError::ReplyCountMismatch {
            declared: 2,
            actual: 1
        })
    );
}

fn compressed_frame(original: i32, declared: i32, id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((16 + 9 + payload.len()) as i32).to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&2012i32.to_le_bytes());
    v.extend_from_slice(&original.to_le_bytes());
    v.extend_from_slice(&declared.to_le_bytes());
    v.push(id);
    v.extend_from_slice(payload);
    v
}

#[test]
fn compressed_declared_size_is_checked_before_decompressing() {
    let limits = Limits::default();
    for declared in [-1, 48_000_000] {
        let raw = compressed_frame(2013, declared, 2, &[1, 2, 3]);
        assert!(matches!(
            parse(raw),
            Err(WireError::BadUncompressedSize { .. })
        ));
    }
    let _ = limits;
}

#[test]
fn compressed_bomb_is_cut_at_the_declared_size() {
    // 1 MB of zeros compresses to ~1 KB; declare 100 bytes.
    let big = vec![0u8; 1 << 20];
    let z = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&big).unwrap();
        e.finish().unwrap()
    };
    let raw = compressed_frame(2013, 100, 2, &z);
    let f = Frame::from_bytes(Bytes::from(raw), DEFAULT_MAX_MESSAGE_SIZE).unwrap();
    let Message::Compressed(c) = f.parse(&Limits::default()).unwrap() else {
        panic!()
    };
    assert!(matches!(
        c.decompress(f.header(), DEFAULT_MAX_MESSAGE_SIZE),
        Err(WireError::UncompressedSizeMismatch {
            declared: 100,
            actual: 101
        })
    ));
}

#[test]
fn compressed_unknown_compressor_and_corrupt_payloads_are_errors() {
    for (id, payload) in [
        (9u8, vec![1u8, 2]),
        (1, vec![0xff, 0xff, 0xff]),
        (2, vec![1, 2, 3]),
        (3, vec![9, 9, 9, 9]),
    ] {
        let raw = compressed_frame(2013, 10, id, &payload);
        let f = Frame::from_bytes(Bytes::from(raw), DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        let Message::Compressed(c) = f.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        assert!(
            c.decompress(f.header(), DEFAULT_MAX_MESSAGE_SIZE).is_err(),
            "id {id}"
        );
    }
}

#[test]
fn compressed_may_not_wrap_compressed() {
    let raw = compressed_frame(2012, 10, 0, &[0; 10]);
    assert_eq!(parse(raw), Err(WireError::BadCompressedOpcode(2012)));
}

#[test]
fn legacy_and_unknown_opcodes_are_frames_not_panics() {
    for op in [2001i32, 2002, 2005, 2006, 2007, 2010, 9999, -3] {
        let mut v = Vec::new();
        v.extend_from_slice(&20i32.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&op.to_le_bytes());
        v.extend_from_slice(&[1, 2, 3, 4]);
        let Message::Legacy { op_code, body } = parse(v).unwrap() else {
            panic!()
        };
        assert_eq!(op_code.as_i32(), op);
        assert_eq!(&body[..], &[1, 2, 3, 4]);
    }
}
