//! OP_COMPRESSED: snappy, zlib and zstd, decoded into the original frame.

use std::io::Read;

use bytes::{Bytes, BytesMut};

use crate::error::WireError;
use crate::frame::Frame;
use crate::header::{read_i32, MsgHeader, OpCode, HEADER_LEN};

/// Compressor ids from the OP_COMPRESSED specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    Noop,
    Snappy,
    Zlib,
    Zstd,
}

impl Compressor {
    pub fn from_id(id: u8) -> Result<Compressor, WireError> {
        Ok(match id {
            0 => Compressor::Noop,
            1 => Compressor::Snappy,
            2 => Compressor::Zlib,
            3 => Compressor::Zstd,
            other => return Err(WireError::UnknownCompressor(other)),
        })
    }

    pub fn id(self) -> u8 {
        match self {
            Compressor::Noop => 0,
            Compressor::Snappy => 1,
            Compressor::Zlib => 2,
            Compressor::Zstd => 3,
        }
    }

    /// The name used in the handshake's `compression` array.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Noop => "noop",
            Compressor::Snappy => "snappy",
            Compressor::Zlib => "zlib",
            Compressor::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Compressor> {
        Some(match name {
            "noop" => Compressor::Noop,
            "snappy" => Compressor::Snappy,
            "zlib" => Compressor::Zlib,
            "zstd" => Compressor::Zstd,
            _ => return None,
        })
    }
}

/// Commands whose messages are never compressed (handshake and auth).
pub fn is_never_compressed(command: &str) -> bool {
    matches!(
        command,
        "hello"
            | "isMaster"
            | "ismaster"
            | "saslStart"
            | "saslContinue"
            | "getnonce"
            | "authenticate"
            | "createUser"
            | "updateUser"
            | "copydbSaslStart"
            | "copydbgetnonce"
            | "copydb"
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpCompressed {
    pub original_opcode: OpCode,
    /// Size of the original message without its header.
    pub uncompressed_size: i32,
    pub compressor_id: u8,
    pub payload: Bytes,
}

impl OpCompressed {
    pub fn parse(frame: &Bytes, max_message_size: usize) -> Result<OpCompressed, WireError> {
        let buf = &frame[..];
        crate::bytes_util::need(buf, HEADER_LEN, 9, "OP_COMPRESSED fields")?;
        let original = read_i32(buf, HEADER_LEN);
        let original_opcode = OpCode::from_i32(original);
        if original_opcode == OpCode::Compressed {
            return Err(WireError::BadCompressedOpcode(original));
        }
        let uncompressed_size = read_i32(buf, HEADER_LEN + 4);
        let max_body = max_message_size.saturating_sub(HEADER_LEN);
        if uncompressed_size < 0 || uncompressed_size as usize > max_body {
            return Err(WireError::BadUncompressedSize {
                size: uncompressed_size as i64,
                max: max_body,
            });
        }
        let compressor_id = buf[HEADER_LEN + 8];
        Ok(OpCompressed {
            original_opcode,
            uncompressed_size,
            compressor_id,
            payload: frame.slice(HEADER_LEN + 9..),
        })
    }

    /// Decompresses into the original frame (header rebuilt with the original
    /// opcode and the same request/response ids). The declared size was
    /// checked against the limit at parse time; the output is never allowed
    /// to grow past it.
    pub fn decompress(
        &self,
        outer: &MsgHeader,
        max_message_size: usize,
    ) -> Result<Frame, WireError> {
        let declared = self.uncompressed_size as usize;
        let compressor = Compressor::from_id(self.compressor_id)?;
        let mut out = BytesMut::with_capacity(
            HEADER_LEN + declared.min(self.payload.len().saturating_mul(8) + 1024),
        );
        let header = MsgHeader {
            message_length: (HEADER_LEN + declared) as i32,
            request_id: outer.request_id,
            response_to: outer.response_to,
            op_code: self.original_opcode,
        };
        out.extend_from_slice(&header.to_bytes());
        let body: Vec<u8> = match compressor {
            Compressor::Noop => self.payload.to_vec(),
            Compressor::Snappy => {
                let n = snap::raw::decompress_len(&self.payload)
                    .map_err(|e| WireError::Decompress(e.to_string()))?;
                if n != declared {
                    return Err(WireError::UncompressedSizeMismatch {
                        declared,
                        actual: n,
                    });
                }
                snap::raw::Decoder::new()
                    .decompress_vec(&self.payload)
                    .map_err(|e| WireError::Decompress(e.to_string()))?
            }
            Compressor::Zlib => {
                let mut v = Vec::new();
                flate2::read::ZlibDecoder::new(&self.payload[..])
                    .take(declared as u64 + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| WireError::Decompress(e.to_string()))?;
                v
            }
            Compressor::Zstd => {
                let mut v = Vec::new();
                zstd::stream::read::Decoder::new(&self.payload[..])
                    .map_err(|e| WireError::Decompress(e.to_string()))?
                    .take(declared as u64 + 1)
                    .read_to_end(&mut v)
                    .map_err(|e| WireError::Decompress(e.to_string()))?;
                v
            }
        };
        if body.len() != declared {
            return Err(WireError::UncompressedSizeMismatch {
                declared,
                actual: body.len(),
            });
        }
        out.extend_from_slice(&body);
        Frame::from_bytes(out.freeze(), max_message_size)
    }

    /// Compresses `frame` (any opcode but OP_COMPRESSED) with `compressor`.
    pub fn compress(frame: &Frame, compressor: Compressor) -> Result<Frame, WireError> {
        let h = frame.header();
        if h.op_code == OpCode::Compressed {
            return Err(WireError::BadCompressedOpcode(h.op_code.as_i32()));
        }
        let body = &frame.raw()[HEADER_LEN..];
        let payload: Vec<u8> = match compressor {
            Compressor::Noop => body.to_vec(),
            Compressor::Snappy => snap::raw::Encoder::new()
                .compress_vec(body)
                .map_err(|e| WireError::Decompress(e.to_string()))?,
            Compressor::Zlib => {
                use std::io::Write;
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(body)?;
                e.finish()?
            }
            Compressor::Zstd => zstd::bulk::compress(body, 1)?,
        };
        let len = HEADER_LEN + 9 + payload.len();
        let mut out = Vec::with_capacity(len);
        MsgHeader {
            message_length: len as i32,
            request_id: h.request_id,
            response_to: h.response_to,
            op_code: OpCode::Compressed,
        }
        .write_to(&mut out);
        out.extend_from_slice(&h.op_code.as_i32().to_le_bytes());
        out.extend_from_slice(&(body.len() as i32).to_le_bytes());
        out.push(compressor.id());
        out.extend_from_slice(&payload);
        Frame::from_bytes(Bytes::from(out), usize::MAX)
    }
}
