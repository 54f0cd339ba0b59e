//! Property tests: every frame type survives encode → decode unchanged, also
//! when the byte stream arrives in arbitrary pieces.

use bson::{doc, Bson, Document};
use bytes::{Bytes, BytesMut};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::*;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn arb_doc() -> impl Strategy<Value = Document> {
    (
        "[a-z]{1,8}",
        prop::collection::vec(("[a-zA-Z_]{1,6}", any::<i64>(), ".{0,12}"), 0..5),
    )
        .prop_map(|(name, fields)| {
            let mut d = doc! {name: 1};
            for (k, n, s) in fields {
                d.insert(format!("{k}_n"), Bson::Int64(n));
                d.insert(format!("{k}_s"), Bson::String(s));
            }
            d
        })
}

fn arb_docs_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(arb_doc(), 0..4).prop_map(|ds| {
        let mut v = Vec::new();
        for d in ds {
            v.extend_from_slice(&document_bytes(&d));
        }
        Bytes::from(v)
    })
}

fn arb_msg() -> impl Strategy<Value = (OpMsg, bool)> {
    (
        arb_doc(),
        prop::collection::vec(("[a-z]{1,10}", arb_docs_bytes()), 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(body, seqs, more, exhaust, checksum)| {
            let mut flags = MsgFlags::empty();
            if more {
                flags |= MsgFlags::MORE_TO_COME;
            }
            if exhaust {
                flags |= MsgFlags::EXHAUST_ALLOWED;
            }
            let mut m = OpMsg::new(flags, document_bytes(&body));
            let mut seen = std::collections::HashSet::new();
            for (i, docs) in seqs {
                if seen.insert(i.clone()) {
                    m.sequences.push(DocumentSequence::new(i, docs));
                }
            }
            (m, checksum)
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_msg().prop_map(|(mut m, checksum)| {
            m.checksum = if checksum { Some(0) } else { None };
            Message::Msg(m)
        }),
        (
            arb_doc(),
            prop::option::of(arb_doc()),
            any::<i32>(),
            any::<i32>(),
            "[a-z]{1,8}",
            0i32..256
        )
            .prop_map(|(q, f, skip, ret, db, flags)| Message::Query(OpQuery {
                flags: QueryFlags::from_bits_retain(flags),
                full_collection_name: format!("{db}.$cmd"),
                number_to_skip: skip,
                number_to_return: ret,
                query: document_bytes(&q),
                return_fields_selector: f.map(|f| document_bytes(&f)),
            })),
        (
            prop::collection::vec(arb_doc(), 0..4),
            any::<i64>(),
            any::<i32>(),
            0i32..16
        )
            .prop_map(|(docs, cursor_id, starting_from, flags)| {
                let mut v = Vec::new();
                for d in &docs {
                    v.extend_from_slice(&document_bytes(d));
                }
                Message::Reply(OpReply {
                    response_flags: ReplyFlags::from_bits_retain(flags),
                    cursor_id,
                    starting_from,
                    number_returned: docs.len() as i32,
                    documents: Bytes::from(v),
                })
            }),
        (
            prop::sample::select(vec![2001i32, 2002, 2005, 2006, 2007, 4242]),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(op, body)| Message::Legacy {
                op_code: OpCode::from_i32(op),
                body: Bytes::from(body)
            }),
    ]
}

/// Normalises what encoding legitimately changes: a checksum is recomputed.
fn same(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Msg(x), Message::Msg(y)) => {
            x.flags - MsgFlags::CHECKSUM_PRESENT == y.flags - MsgFlags::CHECKSUM_PRESENT
                && x.body == y.body
                && x.sequences == y.sequences
                && x.checksum.is_some() == y.checksum.is_some()
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn encode_then_decode_round_trips(msg in arb_message(), rid in any::<i32>(), rto in any::<i32>()) {
        let frame = msg.to_frame(rid, rto);
        prop_assert_eq!(frame.request_id(), rid);
        prop_assert_eq!(frame.response_to(), rto);
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&frame.raw()[..]);
        let decoded = codec.decode(&mut buf).unwrap().expect("a whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&decoded, &frame);
        let parsed = decoded.parse(&Limits::default()).unwrap();
        prop_assert!(same(&msg, &parsed), "{:?} != {:?}", msg, parsed);
        // The shortcut to an OP_MSG's body finds what the full parse does.
        match &parsed {
            Message::Msg(m) => prop_assert_eq!(decoded.msg_body(), Some(m.body.clone())),
            _ => prop_assert_eq!(decoded.msg_body(), None),
        }
    }

    #[test]
    fn a_stream_in_random_pieces_decodes_to_the_same_frames(
        msgs in prop::collection::vec(arb_message(), 1..5),
        cuts in prop::collection::vec(1usize..40, 0..30),
    ) {
        let frames: Vec<Frame> = msgs.iter().enumerate().map(|(i, m)| m.to_frame(i as i32, 0)).collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.raw().to_vec()).collect();
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.into_iter();
        while at < stream.len() {
            let n = cuts.next().unwrap_or(stream.len()).min(stream.len() - at);
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn compression_round_trips(msg in arb_msg(), which in 0u8..4) {
        let (m, _) = msg;
        let frame = Message::Msg(m).to_frame(9, 0);
        let comp = Compressor::from_id(which).unwrap();
        let c = OpCompressed::compress(&frame, comp).unwrap();
        let Message::Compressed(oc) = c.parse(&Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(oc.compressor_id, which);
        let back = oc.decompress(c.header(), DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut codec = FrameCodec::new(Limits { max_message_size: 4096, verify_checksum: true });
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            let body = f.msg_body();
            if let (Some(body), Ok(Message::Msg(m))) = (&body, f.parse(codec.limits())) {
                // The parse accepted it and its first section is the body.
                prop_assert_eq!(body, &m.body);
            }
            if let Ok(m) = f.parse(codec.limits()) {
                match &m {
                    Message::Msg(m) => { let _ = CommandView::from_msg(m).map(|v| v.classify()); }
                    Message::Query(q) => { let _ = CommandView::from_query(q).map(|v| v.classify()); }
                    Message::Compressed(c) => { let _ = c.decompress(f.header(), 4096); }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn every_split_point_of_a_two_frame_stream() {
    let a = Message::Msg(OpMsg::new(
        MsgFlags::empty(),
        document_bytes(&doc! {"find": "c", "$db": "d"}),
    ))
    .to_frame(1, 0);
    let b = Message::Query(OpQuery {
        flags: QueryFlags::empty(),
        full_collection_name: "admin.$cmd".into(),
        number_to_skip: 0,
        number_to_return: -1,
        query: document_bytes(&doc! {"isMaster": 1}),
        return_fields_selector: None,
    })
    .to_frame(2, 0);
    let stream: Vec<u8> = [a.raw().to_vec(), b.raw().to_vec()].concat();
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in [&stream[..i], &stream[i..j], &stream[j..]] {
                buf.extend_from_slice(piece);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    out.push(f);
                }
            }
            assert_eq!(out, vec![a.clone(), b.clone()], "split at {i},{j}");
        }
    }
}
