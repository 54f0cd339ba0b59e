//! Bounds-checked readers for the pieces every opcode is made of.

use crate::error::WireError;
use crate::header::read_i32;

/// Minimum size of a BSON document: int32 length + terminating NUL.
pub const MIN_DOC_LEN: usize = 5;

/// Checks the BSON document starting at `at` in `buf` and returns its length.
/// The length prefix must be ≥ 5, fit in what remains, and the last byte must be 0.
pub fn document_len(buf: &[u8], at: usize, what: &'static str) -> Result<usize, WireError> {
    let available = buf.len().saturating_sub(at);
    if available < 4 {
        return Err(WireError::Truncated {
            what,
            needed: 4,
            available,
        });
    }
    let len = read_i32(buf, at);
    if len < MIN_DOC_LEN as i32 {
        return Err(WireError::BadDocumentLength {
            what,
            len,
            why: "shorter than the 5-byte minimum",
        });
    }
    if len as usize > available {
        return Err(WireError::BadDocumentLength {
            what,
            len,
            why: "overruns its section",
        });
    }
    if buf[at + len as usize - 1] != 0 {
        return Err(WireError::BadDocumentLength {
            what,
            len,
            why: "does not end where its terminator is",
        });
    }
    Ok(len as usize)
}

/// Reads a C string starting at `at`, bounded by `buf`'s end; returns the
/// string and the number of bytes consumed (terminator included).
pub fn cstring<'a>(
    buf: &'a [u8],
    at: usize,
    what: &'static str,
) -> Result<(&'a str, usize), WireError> {
    let rest = buf.get(at..).unwrap_or(&[]);
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::UnterminatedCString(what))?;
    let s = std::str::from_utf8(&rest[..nul]).map_err(|_| WireError::InvalidCString(what))?;
    Ok((s, nul + 1))
}

pub fn need(buf: &[u8], at: usize, n: usize, what: &'static str) -> Result<(), WireError> {
    let available = buf.len().saturating_sub(at);
    if available < n {
        return Err(WireError::Truncated {
            what,
            needed: n,
            available,
        });
    }
    Ok(())
}

/// Validates a raw BSON document fully (every element) and returns it as a
/// `RawDocument` view. Used for command bodies, which the proxy inspects.
pub fn raw_document<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<&'a bson::RawDocument, WireError> {
    bson::RawDocument::from_bytes(bytes).map_err(|e| WireError::BadBson {
        what,
        detail: e.to_string(),
    })
}
