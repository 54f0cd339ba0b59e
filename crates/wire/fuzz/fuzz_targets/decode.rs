//! Fuzz target `decode`: the input is a byte stream as a client would send it.
//!
//! It is fed to `FrameCodec` (1 MiB frame limit, so the length checks are
//! reachable) until the codec wants more bytes or fails; every frame is then
//! parsed and taken through everything the proxy does with a request:
//! `CommandView` + `classify` (+ `kill_cursor_ids`, every document sequence
//! iterated), `OpCompressed::decompress` and one level of recursion into the
//! decompressed frame, `clear_msg_flags(EXHAUST_ALLOWED)` and `with_ids(..)`
//! (both must still parse when the original did), and `Message::to_frame`
//! (re-encoding a parsed message must parse back to the same message).
//!
//! Errors are fine; a panic (including a failed property assertion) is a bug.
#![no_main]

use bytes::BytesMut;
use holdfast_wire::{CommandView, Frame, FrameCodec, Limits, Message, MsgFlags, OpMsg, WireError};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Small limit so that `LengthTooLarge` and the reserve path are explored.
const MAX: usize = 1024 * 1024;

const VERIFY: Limits = Limits {
    max_message_size: MAX,
    verify_checksum: true,
};
const NO_VERIFY: Limits = Limits {
    max_message_size: MAX,
    verify_checksum: false,
};

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(VERIFY);
    let mut buf = BytesMut::from(data);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert_eq!(frame.len(), frame.header().message_length as usize);
                check_frame(&frame, 0);
            }
            Ok(None) => {
                // End of stream: what is left is an incomplete frame.
                if let Err(e) = codec.decode_eof(&mut buf) {
                    touch_error(&e);
                }
                break;
            }
            Err(e) => {
                touch_error(&e);
                break;
            }
        }
    }
});

/// Uses everything an error offers (Display, classification, code).
fn touch_error(e: &WireError) {
    let _ = e.to_string();
    let _ = e.is_connection_fatal();
    let _ = e.server_code();
}

fn check_frame(frame: &Frame, depth: u32) {
    let _ = frame.op_code().name();
    let _ = frame.msg_flags();

    // Parse with checksum verification; frames whose CRC the fuzzer could not
    // get right are also parsed without it, so their sections are explored.
    let (limits, parsed) = match frame.parse(&VERIFY) {
        Err(WireError::ChecksumMismatch { .. }) => (NO_VERIFY, frame.parse(&NO_VERIFY)),
        r => (VERIFY, r),
    };
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => {
            touch_error(&e);
            return;
        }
    };
    check_message(frame, &msg, depth);
    check_rewrites(frame, &msg, &limits);
    check_reencode(&msg);
}

fn check_message(frame: &Frame, msg: &Message, depth: u32) {
    match msg {
        Message::Msg(m) => check_msg(m),
        Message::Query(q) => {
            let _ = q.command_db();
            match CommandView::from_query(q) {
                Ok(view) => check_view(&view),
                Err(e) => touch_error(&e),
            }
        }
        Message::Reply(r) => {
            let _ = r.first_doc();
        }
        Message::Compressed(c) => {
            match c.decompress(frame.header(), MAX) {
                Ok(inner) => {
                    assert_eq!(inner.request_id(), frame.request_id());
                    assert_eq!(inner.response_to(), frame.response_to());
                    assert_eq!(inner.op_code(), c.original_opcode);
                    assert_eq!(inner.len(), 16 + c.uncompressed_size as usize);
                    // Recurse once: a decompressed frame is never itself
                    // OP_COMPRESSED, but stop anyway after one level.
                    if depth == 0 {
                        check_frame(&inner, depth + 1);
                    }
                }
                Err(e) => touch_error(&e),
            }
        }
        Message::Legacy { op_code, body } => {
            let _ = op_code.is_legacy();
            assert_eq!(body.len() + 16, frame.len());
        }
    }
}

fn check_msg(m: &OpMsg) {
    let _ = m.body_doc();
    let _ = m.encoded_len(m.checksum.is_some());
    for s in &m.sequences {
        let _ = s.wire_len();
        assert!(m.sequence(&s.identifier).is_some());
        let mut n = 0usize;
        for d in s.iter() {
            match d {
                Ok(doc) => {
                    for el in doc.iter() {
                        if el.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => touch_error(&e),
            }
            n += 1;
        }
        assert_eq!(n, s.count());
    }
    match CommandView::from_msg(m) {
        Ok(view) => {
            assert_eq!(view.more_to_come, m.more_to_come());
            assert_eq!(view.exhaust_allowed, m.exhaust_allowed());
            check_view(&view);
            for s in &m.sequences {
                assert!(view.sequence(&s.identifier).is_some());
            }
        }
        Err(e) => touch_error(&e),
    }
}

fn check_view(view: &CommandView<'_>) {
    let class = view.classify();
    let _ = class.label();
    let ids = view.kill_cursor_ids();
    if view.name != "killCursors" {
        assert!(ids.is_empty());
    }
    let _ = view.is_unacknowledged();
    let _ = view.in_transaction();
    let _ = view.sequence("documents");
}

/// `clear_msg_flags` and `with_ids` produce frames that must parse whenever
/// the original did, with the same body and sequences.
fn check_rewrites(frame: &Frame, msg: &Message, limits: &Limits) {
    let cleared = frame.clear_msg_flags(MsgFlags::EXHAUST_ALLOWED);
    assert_eq!(cleared.len(), cleared.header().message_length as usize);
    let reparsed = cleared
        .parse(limits)
        .expect("clear_msg_flags(EXHAUST_ALLOWED) broke a frame that parsed");
    if let (Message::Msg(a), Message::Msg(b)) = (msg, &reparsed) {
        assert!(!b.exhaust_allowed());
        assert_eq!(a.body, b.body);
        assert_eq!(a.sequences, b.sequences);
        assert_eq!(a.more_to_come(), b.more_to_come());
    } else {
        assert_eq!(msg, &reparsed);
    }

    let renumbered = frame.with_ids(0x1234_5678, -7);
    assert_eq!(renumbered.request_id(), 0x1234_5678);
    assert_eq!(renumbered.response_to(), -7);
    assert_eq!(renumbered.len(), frame.len());
    // with_ids recomputes an OP_MSG checksum, so the renumbered frame must
    // parse even with verification on.
    let again = renumbered
        .parse(&VERIFY)
        .expect("with_ids broke a frame that parsed");
    match (msg, &again) {
        (Message::Msg(a), Message::Msg(b)) => {
            assert_eq!(a.body, b.body);
            assert_eq!(a.sequences, b.sequences);
            assert_eq!(a.flags, b.flags);
        }
        _ => assert_eq!(msg, &again),
    }
}

/// A parsed message, encoded again, parses back to the same message.
fn check_reencode(msg: &Message) {
    let f = msg.to_frame(42, 43);
    assert_eq!(f.len(), f.header().message_length as usize);
    let back = f
        .parse(&Limits {
            max_message_size: usize::MAX,
            verify_checksum: true,
        })
        .expect("Message::to_frame produced a frame that does not parse");
    match (msg, &back) {
        (Message::Msg(a), Message::Msg(b)) => {
            assert_eq!(a.flags, b.flags);
            assert_eq!(a.body, b.body);
            assert_eq!(a.sequences, b.sequences);
            assert_eq!(a.checksum.is_some(), b.checksum.is_some());
        }
        _ => assert_eq!(msg, &back),
    }
}
