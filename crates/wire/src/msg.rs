//! OP_MSG: flag bits, kind-0 body, kind-1 document sequences, CRC-32C checksum.

use bitflags::bitflags;
use bytes::Bytes;

use crate::bytes_util::{cstring, document_len, need, raw_document};
use crate::error::WireError;
use crate::header::{read_i32, read_u32, HEADER_LEN};

bitflags! {
    /// OP_MSG flagBits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MsgFlags: u32 {
        const CHECKSUM_PRESENT = 1 << 0;
        const MORE_TO_COME = 1 << 1;
        const EXHAUST_ALLOWED = 1 << 16;
        // Unknown high bits are optional and ignored, as the server does.
        const _ = !0xFFFF;
    }
}

impl MsgFlags {
    /// Bits in the low 16 that are not defined: the server rejects them (223).
    pub const REQUIRED_MASK: u32 = 0xFFFF;
    pub const KNOWN_REQUIRED: u32 = 0b11;

    pub fn check(bits: u32) -> Result<MsgFlags, WireError> {
        if bits & Self::REQUIRED_MASK & !Self::KNOWN_REQUIRED != 0 {
            return Err(WireError::IllegalOpMsgFlag(bits));
        }
        Ok(MsgFlags::from_bits_retain(bits))
    }
}

/// A kind-1 section: an identifier and zero or more BSON documents, kept as
/// one `Bytes` slice of the frame (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSequence {
    pub identifier: String,
    /// The documents, back to back.
    pub documents: Bytes,
}

impl DocumentSequence {
    pub fn new(identifier: impl Into<String>, documents: Bytes) -> Self {
        DocumentSequence {
            identifier: identifier.into(),
            documents,
        }
    }

    /// Iterates the documents. Their lengths were checked when the frame was
    /// parsed; each is validated as a `RawDocument` when yielded.
    pub fn iter(&self) -> impl Iterator<Item = Result<&bson::RawDocument, WireError>> + '_ {
        let buf = &self.documents[..];
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= buf.len() {
                return None;
            }
            let r = document_len(buf, at, "document sequence").and_then(|len| {
                let d = raw_document(&buf[at..at + len], "document sequence");
                at += len;
                d
            });
            if r.is_err() {
                at = buf.len();
            }
            Some(r)
        })
    }

    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// Size of this section on the wire, kind byte included.
    pub fn wire_len(&self) -> usize {
        1 + 4 + self.identifier.len() + 1 + self.documents.len()
    }
}

/// A parsed OP_MSG. Body and sequences are slices of the original frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpMsg {
    pub flags: MsgFlags,
    /// The kind-0 body, a whole BSON document.
    pub body: Bytes,
    pub sequences: Vec<DocumentSequence>,
    /// The checksum the frame carried (already verified), if any.
    pub checksum: Option<u32>,
}

impl OpMsg {
    /// Builds a message with a body and no sequences.
    pub fn new(flags: MsgFlags, body: Bytes) -> Self {
        OpMsg {
            flags: flags - MsgFlags::CHECKSUM_PRESENT,
            body,
            sequences: Vec::new(),
            checksum: None,
        }
    }

    /// Parses the OP_MSG at `frame` (which includes the 16-byte header).
    /// `verify_checksum`: check the CRC-32C when the flag says one is present.
    pub fn parse(frame: &Bytes, verify_checksum: bool) -> Result<OpMsg, WireError> {
        let buf = &frame[..];
        need(buf, HEADER_LEN, 4, "OP_MSG flagBits")?;
        let flags = MsgFlags::check(read_u32(buf, HEADER_LEN))?;
        let mut end = buf.len();
        let mut checksum = None;
        if flags.contains(MsgFlags::CHECKSUM_PRESENT) {
            need(buf, HEADER_LEN + 4, 4, "OP_MSG checksum")?;
            end -= 4;
            let expected = read_u32(buf, end);
            if verify_checksum {
                let actual = crc32c::crc32c(&buf[..end]);
                if actual != expected {
                    return Err(WireError::ChecksumMismatch { expected, actual });
                }
            }
            checksum = Some(expected);
        }
        let buf = &buf[..end];
        let mut at = HEADER_LEN + 4;
        let mut body: Option<Bytes> = None;
        let mut sequences: Vec<DocumentSequence> = Vec::new();
        while at < buf.len() {
            let kind = buf[at];
            at += 1;
            match kind {
                0 => {
                    let len = document_len(buf, at, "OP_MSG body")?;
                    if body.is_some() {
                        return Err(WireError::DuplicateBody);
                    }
                    body = Some(frame.slice(at..at + len));
                    at += len;
                }
                1 => {
                    need(buf, at, 4, "OP_MSG document sequence size")?;
                    let size = read_i32(buf, at);
                    if size < 5 {
                        return Err(WireError::BadSequenceSize {
                            size,
                            why: "smaller than its size field and identifier",
                        });
                    }
                    let size_u = size as usize;
                    if size_u > buf.len() - at {
                        return Err(WireError::BadSequenceSize {
                            size,
                            why: "overruns the frame",
                        });
                    }
                    let section = &buf[at..at + size_u];
                    let (ident, used) = cstring(section, 4, "document sequence identifier")?;
                    let docs_start = 4 + used;
                    let mut p = docs_start;
                    while p < section.len() {
                        p += document_len(section, p, "document in sequence")?;
                    }
                    if sequences.iter().any(|s| s.identifier == ident) {
                        return Err(WireError::DuplicateSequence(ident.to_string()));
                    }
                    sequences.push(DocumentSequence {
                        identifier: ident.to_string(),
                        documents: frame.slice(at + docs_start..at + size_u),
                    });
                    at += size_u;
                }
                other => return Err(WireError::UnsupportedSectionKind(other)),
            }
        }
        let body = body.ok_or(WireError::MissingBody)?;
        Ok(OpMsg {
            flags,
            body,
            sequences,
            checksum,
        })
    }

    /// The body as a validated raw BSON document.
    pub fn body_doc(&self) -> Result<&bson::RawDocument, WireError> {
        raw_document(&self.body, "OP_MSG body")
    }

    pub fn sequence(&self, identifier: &str) -> Option<&DocumentSequence> {
        self.sequences.iter().find(|s| s.identifier == identifier)
    }

    pub fn more_to_come(&self) -> bool {
        self.flags.contains(MsgFlags::MORE_TO_COME)
    }

    pub fn exhaust_allowed(&self) -> bool {
        self.flags.contains(MsgFlags::EXHAUST_ALLOWED)
    }

    /// Size of the encoded message, header included.
    pub fn encoded_len(&self, with_checksum: bool) -> usize {
        HEADER_LEN
            + 4
            + 1
            + self.body.len()
            + self.sequences.iter().map(|s| s.wire_len()).sum::<usize>()
            + if with_checksum { 4 } else { 0 }
    }

    /// Writes the whole message (header included) to `out`. A checksum is
    /// computed and appended when `with_checksum` is true; the
    /// `CHECKSUM_PRESENT` flag is set accordingly whatever `self.flags` says.
    pub fn encode(
        &self,
        request_id: i32,
        response_to: i32,
        with_checksum: bool,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        let len = self.encoded_len(with_checksum) as i32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&response_to.to_le_bytes());
        out.extend_from_slice(&2013i32.to_le_bytes());
        let mut flags = self.flags - MsgFlags::CHECKSUM_PRESENT;
        if with_checksum {
            flags |= MsgFlags::CHECKSUM_PRESENT;
        }
        out.extend_from_slice(&flags.bits().to_le_bytes());
        out.push(0);
        out.extend_from_slice(&self.body);
        for s in &self.sequences {
            out.push(1);
            let size = (4 + s.identifier.len() + 1 + s.documents.len()) as i32;
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(s.identifier.as_bytes());
            out.push(0);
            out.extend_from_slice(&s.documents);
        }
        if with_checksum {
            let crc = crc32c::crc32c(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
    }
}
