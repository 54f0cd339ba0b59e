//! holdfast's own hello probe: one plain (non-awaitable) hello on a fresh
//! connection (TLS when the members require it), bounded by a timeout.
//! Monitoring connections do not authenticate: hello needs no login.

use std::time::Duration;

use bson::{doc, Document};
use futures::StreamExt;
use holdfast_tls::{Connector, Stream};
use holdfast_wire::{reply, FrameCodec, Message, MsgFlags};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

/// Sends `{hello: 1}` to `addr` (over TLS with `tls`) and returns the
/// reply document.
pub async fn hello(
    addr: &str,
    timeout: Duration,
    tls: Option<&Connector>,
) -> std::io::Result<Document> {
    tokio::time::timeout(timeout, hello_inner(addr, tls))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "hello probe timed out"))?
}

async fn hello_inner(addr: &str, tls: Option<&Connector>) -> std::io::Result<Document> {
    let mut stream = Stream::connect(addr, tls).await?;
    let body = doc! {"hello": 1, "$db": "admin"};
    let frame = reply::msg_reply_bytes(1, 0, MsgFlags::empty(), reply::document_bytes(&body));
    stream.write_all(frame.raw()).await?;
    let mut reader = FramedRead::new(stream, FrameCodec::default());
    let frame = reader
        .next()
        .await
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before hello reply",
            )
        })?
        .map_err(std::io::Error::other)?;
    match frame
        .parse(&Default::default())
        .map_err(std::io::Error::other)?
    {
        Message::Msg(m) => Document::from_reader(&m.body[..]).map_err(std::io::Error::other),
        Message::Reply(r) => Document::from_reader(&r.documents[..]).map_err(std::io::Error::other),
        _ => Err(std::io::Error::other("unexpected opcode in hello reply")),
    }
}
