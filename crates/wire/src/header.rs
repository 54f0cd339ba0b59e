//! The 16-byte MsgHeader and the opcode enum.

use crate::error::WireError;

/// Size of the standard message header.
pub const HEADER_LEN: usize = 16;

/// MongoDB's `MaxMessageSizeBytes` (48,000,000), the default frame limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 48_000_000;

/// `maxBsonObjectSize` advertised by the server (16 MiB).
pub const MAX_BSON_OBJECT_SIZE: usize = 16 * 1024 * 1024;

/// Every opcode in MongoDB's `message.h`. An opcode the decoder does not know
/// is kept as [`OpCode::Unknown`], never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    Reply,
    Update,
    Insert,
    Query,
    GetMore,
    Delete,
    KillCursors,
    /// OP_COMMAND (2010), intra-cluster, removed in 4.2.
    Command,
    /// OP_COMMANDREPLY (2011), intra-cluster, removed in 4.2.
    CommandReply,
    Compressed,
    Msg,
    Unknown(i32),
}

impl OpCode {
    pub fn from_i32(v: i32) -> OpCode {
        match v {
            1 => OpCode::Reply,
            2001 => OpCode::Update,
            2002 => OpCode::Insert,
            2004 => OpCode::Query,
            2005 => OpCode::GetMore,
            2006 => OpCode::Delete,
            2007 => OpCode::KillCursors,
            2010 => OpCode::Command,
            2011 => OpCode::CommandReply,
            2012 => OpCode::Compressed,
            2013 => OpCode::Msg,
            other => OpCode::Unknown(other),
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            OpCode::Reply => 1,
            OpCode::Update => 2001,
            OpCode::Insert => 2002,
            OpCode::Query => 2004,
            OpCode::GetMore => 2005,
            OpCode::Delete => 2006,
            OpCode::KillCursors => 2007,
            OpCode::Command => 2010,
            OpCode::CommandReply => 2011,
            OpCode::Compressed => 2012,
            OpCode::Msg => 2013,
            OpCode::Unknown(v) => v,
        }
    }

    /// A short, bounded name (safe as a metric label).
    pub fn name(self) -> &'static str {
        match self {
            OpCode::Reply => "OP_REPLY",
            OpCode::Update => "OP_UPDATE",
            OpCode::Insert => "OP_INSERT",
            OpCode::Query => "OP_QUERY",
            OpCode::GetMore => "OP_GET_MORE",
            OpCode::Delete => "OP_DELETE",
            OpCode::KillCursors => "OP_KILL_CURSORS",
            OpCode::Command => "OP_COMMAND",
            OpCode::CommandReply => "OP_COMMANDREPLY",
            OpCode::Compressed => "OP_COMPRESSED",
            OpCode::Msg => "OP_MSG",
            OpCode::Unknown(_) => "unknown",
        }
    }

    /// Legacy opcodes that MongoDB 5.1+ no longer supports.
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            OpCode::Update
                | OpCode::Insert
                | OpCode::GetMore
                | OpCode::Delete
                | OpCode::KillCursors
                | OpCode::Command
                | OpCode::CommandReply
        )
    }
}

/// The standard message header (little-endian on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    /// Total message size, header included.
    pub message_length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: OpCode,
}

impl MsgHeader {
    /// Reads a header from the first 16 bytes of `buf` and checks its length
    /// against `max_message_size`. Nothing is allocated.
    pub fn parse(buf: &[u8], max_message_size: usize) -> Result<MsgHeader, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "message header",
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let message_length = read_i32(buf, 0);
        check_length(message_length, max_message_size)?;
        Ok(MsgHeader {
            message_length,
            request_id: read_i32(buf, 4),
            response_to: read_i32(buf, 8),
            op_code: OpCode::from_i32(read_i32(buf, 12)),
        })
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.message_length.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.response_to.to_le_bytes());
        out.extend_from_slice(&self.op_code.as_i32().to_le_bytes());
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.message_length.to_le_bytes());
        b[4..8].copy_from_slice(&self.request_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.response_to.to_le_bytes());
        b[12..16].copy_from_slice(&self.op_code.as_i32().to_le_bytes());
        b
    }
}

/// Checks a declared messageLength: 16 ≤ len ≤ max (negative values included).
pub fn check_length(len: i32, max_message_size: usize) -> Result<usize, WireError> {
    if len < HEADER_LEN as i32 {
        return Err(WireError::LengthTooSmall(len));
    }
    if len as usize > max_message_size {
        return Err(WireError::LengthTooLarge {
            len: len as i64,
            max: max_message_size,
        });
    }
    Ok(len as usize)
}

#[inline]
pub(crate) fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_unknown_is_a_value() {
        for v in [
            1, 2001, 2002, 2004, 2005, 2006, 2007, 2010, 2011, 2012, 2013,
        ] {
            let op = OpCode::from_i32(v);
            assert_ne!(op, OpCode::Unknown(v));
            assert_eq!(op.as_i32(), v);
        }
        assert_eq!(OpCode::from_i32(2003), OpCode::Unknown(2003));
        assert_eq!(OpCode::from_i32(-7).as_i32(), -7);
    }

    #[test]
    fn header_length_bounds() {
        let mut h = MsgHeader {
            message_length: 15,
            request_id: 1,
            response_to: 0,
            op_code: OpCode::Msg,
        };
        assert_eq!(
            MsgHeader::parse(&h.to_bytes(), 100),
            Err(WireError::LengthTooSmall(15))
        );
        h.message_length = -1;
        assert_eq!(
            MsgHeader::parse(&h.to_bytes(), 100),
            Err(WireError::LengthTooSmall(-1))
        );
        h.message_length = 101;
        assert!(matches!(
            MsgHeader::parse(&h.to_bytes(), 100),
            Err(WireError::LengthTooLarge { len: 101, max: 100 })
        ));
        h.message_length = 100;
        assert_eq!(MsgHeader::parse(&h.to_bytes(), 100).unwrap(), h);
        assert!(matches!(
            MsgHeader::parse(&[0u8; 10], 100),
            Err(WireError::Truncated { .. })
        ));
    }
}
