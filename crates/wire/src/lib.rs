//! holdfast-wire: MongoDB wire-protocol frames for a failover-masking proxy.
//!
//! - [`FrameCodec`]: a tokio-util `Decoder`/`Encoder` that splits a byte
//!   stream into [`Frame`]s with every length checked before allocating and
//!   no copy of bodies (`split_to(..).freeze()`).
//! - [`Frame::parse`]: OP_MSG ([`OpMsg`]), OP_QUERY ([`OpQuery`]), OP_REPLY
//!   ([`OpReply`]), OP_COMPRESSED ([`OpCompressed`], snappy/zlib/zstd) and the
//!   legacy opcodes as raw frames.
//! - [`CommandView`]: a zero-copy view of a request's command, and
//!   [`CommandClass`]: how the proxy treats it.
//! - [`commands`]: the table of commands (kind, where they may run, OP_QUERY,
//!   admin-only) that the proxy and the simulator share; [`codes`]: error
//!   codes, their names and the code families drivers act on.
//! - [`reply`]: error and command reply builders, OP_MSG or OP_REPLY.
#![forbid(unsafe_code)]

mod bytes_util;
pub mod codec;
pub mod codes;
pub mod command;
pub mod commands;
pub mod compressed;
pub mod error;
pub mod frame;
pub mod header;
pub mod legacy;
pub mod msg;
pub mod query;
pub mod reply;
pub mod summary;
pub mod values;

pub use codec::FrameCodec;
pub use command::{CommandClass, CommandView};
pub use compressed::{Compressor, OpCompressed};
pub use error::WireError;
pub use frame::{Frame, Limits, Message};
pub use header::{MsgHeader, OpCode, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN, MAX_BSON_OBJECT_SIZE};
pub use legacy::LegacyOp;
pub use msg::{DocumentSequence, MsgFlags, OpMsg};
pub use query::{OpQuery, OpReply, QueryFlags, ReplyFlags};
pub use reply::ErrorReply;
pub use summary::ReplySummary;
