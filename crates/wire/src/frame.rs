//! A frame: one whole message as it came off the wire, and its parsed form.

use bytes::{Bytes, BytesMut};

use crate::compressed::OpCompressed;
use crate::error::WireError;
use crate::header::{MsgHeader, OpCode, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN};
use crate::msg::{MsgFlags, OpMsg};
use crate::query::{OpQuery, OpReply};

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted messageLength (header included).
    pub max_message_size: usize,
    /// Verify OP_MSG CRC-32C checksums when present.
    pub verify_checksum: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            verify_checksum: true,
        }
    }
}

/// One whole message, header included, as a single `Bytes` (zero-copy slice
/// of the read buffer). Its header was checked; its body is parsed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: MsgHeader,
    raw: Bytes,
}

/// A parsed message. Every payload is a slice of the frame's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Msg(OpMsg),
    Query(OpQuery),
    Reply(OpReply),
    Compressed(OpCompressed),
    /// OP_INSERT/UPDATE/DELETE/GET_MORE/KILL_CURSORS/OP_COMMAND and unknown
    /// opcodes: recognised as frames, body kept raw.
    Legacy {
        op_code: OpCode,
        body: Bytes,
    },
}

impl Frame {
    /// Wraps a complete message. The header is checked, and its length must
    /// equal `raw.len()`.
    pub fn from_bytes(raw: Bytes, max_message_size: usize) -> Result<Frame, WireError> {
        let header = MsgHeader::parse(&raw, max_message_size)?;
        let len = header.message_length as usize;
        if len != raw.len() {
            return Err(WireError::Truncated {
                what: "message",
                needed: len,
                available: raw.len(),
            });
        }
        Ok(Frame { header, raw })
    }

    pub(crate) fn from_parts_unchecked(header: MsgHeader, raw: Bytes) -> Frame {
        Frame { header, raw }
    }

    pub fn header(&self) -> &MsgHeader {
        &self.header
    }

    pub fn op_code(&self) -> OpCode {
        self.header.op_code
    }

    pub fn request_id(&self) -> i32 {
        self.header.request_id
    }

    pub fn response_to(&self) -> i32 {
        self.header.response_to
    }

    /// The whole message, header included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_bytes(self) -> Bytes {
        self.raw
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Parses the body according to the opcode.
    pub fn parse(&self, limits: &Limits) -> Result<Message, WireError> {
        Ok(match self.header.op_code {
            OpCode::Msg => Message::Msg(OpMsg::parse(&self.raw, limits.verify_checksum)?),
            OpCode::Query => Message::Query(OpQuery::parse(&self.raw)?),
            OpCode::Reply => Message::Reply(OpReply::parse(&self.raw)?),
            OpCode::Compressed => {
                Message::Compressed(OpCompressed::parse(&self.raw, limits.max_message_size)?)
            }
            op => Message::Legacy {
                op_code: op,
                body: self.raw.slice(HEADER_LEN..),
            },
        })
    }

    /// For OP_MSG frames, the flag bits (no full parse).
    pub fn msg_flags(&self) -> Option<MsgFlags> {
        if self.header.op_code != OpCode::Msg || self.raw.len() < HEADER_LEN + 4 {
            return None;
        }
        Some(MsgFlags::from_bits_retain(crate::header::read_u32(
            &self.raw, HEADER_LEN,
        )))
    }

    /// For an OP_MSG whose first section is its body (kind 0, as in every
    /// server reply), that body's bytes, found without parsing the rest of
    /// the message or checking its checksum: what a proxy reads from each
    /// reply. `None` otherwise; [`Frame::parse`] then has the answer.
    pub fn msg_body(&self) -> Option<Bytes> {
        let flags = self.msg_flags()?;
        let end = self.raw.len()
            - if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
                4
            } else {
                0
            };
        let at = HEADER_LEN + 4;
        if *self.raw.get(at)? != 0 {
            return None;
        }
        let len = crate::bytes_util::document_len(self.raw.get(..end)?, at + 1, "body").ok()?;
        Some(self.raw.slice(at + 1..at + 1 + len))
    }

    /// For an OP_MSG, a copy with `body` as its kind-0 section (document
    /// sequences and ids kept, any checksum dropped). `None` for other
    /// opcodes or a frame that does not parse.
    pub fn with_msg_body(&self, body: Bytes) -> Option<Frame> {
        let limits = Limits {
            verify_checksum: false,
            max_message_size: usize::MAX,
        };
        let Message::Msg(mut m) = self.parse(&limits).ok()? else {
            return None;
        };
        m.body = body;
        m.checksum = None;
        let mut out = Vec::with_capacity(m.encoded_len(false));
        m.encode(self.request_id(), self.response_to(), false, &mut out);
        Frame::from_bytes(Bytes::from(out), usize::MAX).ok()
    }

    /// A copy of this frame with new request/response ids. An OP_MSG
    /// checksum, if present, is recomputed.
    pub fn with_ids(&self, request_id: i32, response_to: i32) -> Frame {
        let mut b = BytesMut::from(&self.raw[..]);
        b[4..8].copy_from_slice(&request_id.to_le_bytes());
        b[8..12].copy_from_slice(&response_to.to_le_bytes());
        if let Some(flags) = self.msg_flags() {
            if flags.contains(MsgFlags::CHECKSUM_PRESENT) && b.len() >= HEADER_LEN + 8 {
                let end = b.len() - 4;
                let crc = crc32c::crc32c(&b[..end]);
                b[end..].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let mut header = self.header;
        header.request_id = request_id;
        header.response_to = response_to;
        Frame::from_parts_unchecked(header, b.freeze())
    }

    /// For an OP_MSG, returns a frame with the `clear` flag bits removed. When
    /// any byte changes and the frame carried a checksum, the checksum is
    /// stripped (bit 0 cleared, 4 bytes dropped, length fixed). Other opcodes,
    /// and frames that need no change, are returned as they are (no copy).
    pub fn clear_msg_flags(&self, clear: MsgFlags) -> Frame {
        let Some(flags) = self.msg_flags() else {
            return self.clone();
        };
        if !flags.intersects(clear) {
            return self.clone();
        }
        let mut new_flags = flags - clear;
        let mut len = self.raw.len();
        if flags.contains(MsgFlags::CHECKSUM_PRESENT) && len >= HEADER_LEN + 8 {
            new_flags -= MsgFlags::CHECKSUM_PRESENT;
            len -= 4;
        }
        let mut b = BytesMut::from(&self.raw[..len]);
        b[0..4].copy_from_slice(&(len as i32).to_le_bytes());
        b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&new_flags.bits().to_le_bytes());
        let mut header = self.header;
        header.message_length = len as i32;
        Frame::from_parts_unchecked(header, b.freeze())
    }
}

impl Message {
    /// Encodes this message as a frame with the given ids. OP_MSG frames get
    /// a checksum when `self` carried one.
    pub fn to_frame(&self, request_id: i32, response_to: i32) -> Frame {
        let mut out = Vec::new();
        match self {
            Message::Msg(m) => m.encode(request_id, response_to, m.checksum.is_some(), &mut out),
            Message::Query(q) => q.encode(request_id, response_to, &mut out),
            Message::Reply(r) => r.encode(request_id, response_to, &mut out),
            Message::Compressed(c) => {
                let len = HEADER_LEN + 9 + c.payload.len();
                MsgHeader {
                    message_length: len as i32,
                    request_id,
                    response_to,
                    op_code: OpCode::Compressed,
                }
                .write_to(&mut out);
                out.extend_from_slice(&c.original_opcode.as_i32().to_le_bytes());
                out.extend_from_slice(&c.uncompressed_size.to_le_bytes());
                out.push(c.compressor_id);
                out.extend_from_slice(&c.payload);
            }
            Message::Legacy { op_code, body } => {
                MsgHeader {
                    message_length: (HEADER_LEN + body.len()) as i32,
                    request_id,
                    response_to,
                    op_code: *op_code,
                }
                .write_to(&mut out);
                out.extend_from_slice(body);
            }
        }
        let header = MsgHeader::parse(&out, usize::MAX).expect("encoded header is valid");
        Frame::from_parts_unchecked(header, Bytes::from(out))
    }
}
