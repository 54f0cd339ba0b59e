//! The tokio-util `Decoder`/`Encoder` pair.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::WireError;
use crate::frame::{Frame, Limits};
use crate::header::{check_length, MsgHeader};

/// Splits a byte stream into [`Frame`]s. The declared length is checked
/// against the limit *before* any buffer space is reserved for it; a complete
/// frame is taken with `split_to(..).freeze()`, so its bytes are never copied.
#[derive(Debug, Clone, Default)]
pub struct FrameCodec {
    limits: Limits,
}

impl FrameCodec {
    pub fn new(limits: Limits) -> Self {
        FrameCodec { limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let declared = i32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        let len = check_length(declared, self.limits.max_message_size)?;
        if src.len() < len {
            // Safe to reserve: `len` is bounded by the limit.
            src.reserve(len - src.len());
            return Ok(None);
        }
        let raw = src.split_to(len).freeze();
        let header = MsgHeader::parse(&raw, self.limits.max_message_size)?;
        Ok(Some(Frame::from_parts_unchecked(header, raw)))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        dst.extend_from_slice(item.raw());
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), WireError> {
        dst.extend_from_slice(item.raw());
        Ok(())
    }
}
