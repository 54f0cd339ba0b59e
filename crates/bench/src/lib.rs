//! holdfast-bench: the pieces of the load generator that the `replay`
//! benchmark reuses. Requests are OP_MSG frames encoded once; per send only
//! the requestID (and, where the workload needs it, the 8 bytes of one Int64
//! value) are patched in place. Replies are framed with
//! [`holdfast_wire::FrameCodec`] and checked with a byte scan, not decoded.

use std::net::SocketAddr;
use std::time::Duration;

use bson::{doc, Bson, Document};
use bytes::BytesMut;
use holdfast_wire::reply::{document_bytes, msg_reply_bytes};
use holdfast_wire::{Frame, FrameCodec, MsgFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// Placeholder Int64 written where a per-request value (an `_id`) goes; its
/// offset in the encoded frame is found once and patched on every send.
pub const SLOT: i64 = 0x5A5A_1234_5678_9ABC;

/// One pre-encoded request: the frame bytes and the offset of the patchable
/// Int64, if any.
#[derive(Clone, Debug)]
pub struct Template {
    pub bytes: Vec<u8>,
    pub slot: Option<usize>,
}

impl Template {
    /// Encodes `body` (which must contain `$db`) as an OP_MSG.
    pub fn new(body: &Document) -> Template {
        let bytes = msg_reply_bytes(0, 0, MsgFlags::empty(), document_bytes(body))
            .raw()
            .to_vec();
        let needle = SLOT.to_le_bytes();
        let slot = bytes.windows(8).position(|w| w == needle);
        Template { bytes, slot }
    }

    /// Sets the requestID (bytes 4..8 of the header).
    #[inline]
    pub fn set_request_id(&mut self, id: i32) {
        self.bytes[4..8].copy_from_slice(&id.to_le_bytes());
    }

    /// Sets the patchable Int64 value.
    #[inline]
    pub fn set_value(&mut self, v: i64) {
        if let Some(o) = self.slot {
            self.bytes[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// `find` by `_id` (Int64) with `limit: 1, singleBatch: true`.
pub fn find_template(db: &str, coll: &str) -> Template {
    Template::new(&doc! {
        "find": coll,
        "filter": { "_id": SLOT },
        "limit": 1i32,
        "singleBatch": true,
        "$db": db,
    })
}

/// `insert` of one ~100-byte document with an Int64 `_id`, `w: 1`.
pub fn insert_template(db: &str, coll: &str) -> Template {
    Template::new(&doc! {
        "insert": coll,
        "documents": [ bench_doc(SLOT) ],
        "ordered": true,
        "writeConcern": { "w": 1i32 },
        "$db": db,
    })
}

/// The documents the benchmarks store: 100 bytes of BSON each.
pub fn bench_doc(id: i64) -> Document {
    doc! {
        "_id": id,
        "name": "holdfast-bench-user",
        "n": (id % 97) as i32,
        "pad": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
    }
}

/// `hello` as a driver sends it on a new connection.
pub fn hello_template() -> Template {
    Template::new(&doc! {
        "hello": 1i32,
        "client": {
            "driver": { "name": "holdfast-bench", "version": env!("CARGO_PKG_VERSION") },
            "os": { "type": std::env::consts::OS },
        },
        "$db": "admin",
    })
}

pub fn ping_template() -> Template {
    Template::new(&doc! { "ping": 1i32, "$db": "admin" })
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a reply says, from a scan of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Top-level `ok` is 1 (double, int32 or int64) and no `writeErrors`.
    pub ok: bool,
    /// A `find` reply holds a document (`firstBatch` element "0").
    pub hit: bool,
}

/// Cheap check of an OP_MSG reply: finds the `ok` element by its bytes.
/// The `ok` field comes last in server replies, so the scan runs from the
/// end; it cannot be fooled by a stored value because the element header
/// (type byte, `ok`, NUL) is followed by exactly the value's bytes.
pub fn check_reply(frame: &[u8]) -> Verdict {
    let ok = find_ok(frame);
    let write_errors = find_bytes(frame, b"\x04writeErrors\x00").is_some();
    let hit = find_bytes(frame, b"firstBatch\x00").is_some_and(|i| {
        // The array's first element is the embedded document "0".
        frame.get(i + 11 + 4..i + 11 + 7) == Some(b"\x030\x00".as_slice())
    });
    Verdict {
        ok: ok && !write_errors,
        hit,
    }
}

fn find_ok(frame: &[u8]) -> bool {
    let n = frame.len();
    let mut i = n.saturating_sub(8);
    loop {
        let w = &frame[i..];
        if w.len() >= 4 + 8 && &w[1..4] == b"ok\x00" {
            match w[0] {
                0x01 => return f64::from_le_bytes(w[4..12].try_into().unwrap()) == 1.0,
                0x12 => return i64::from_le_bytes(w[4..12].try_into().unwrap()) == 1,
                _ => {}
            }
        }
        if w.len() >= 4 + 4 && &w[1..4] == b"ok\x00" && w[0] == 0x10 {
            return i32::from_le_bytes(w[4..8].try_into().unwrap()) == 1;
        }
        if i == 0 {
            return false;
        }
        i -= 1;
    }
}

/// One client connection with one request outstanding at a time.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
    codec: FrameCodec,
    next_id: i32,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            codec: FrameCodec::default(),
            next_id: 1,
        })
    }

    /// Sends `t` with a fresh requestID and reads its reply.
    pub async fn round_trip(&mut self, t: &mut Template) -> std::io::Result<Frame> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1) & 0x7fff_ffff;
        t.set_request_id(id);
        self.stream.write_all(&t.bytes).await?;
        let f = self.recv().await?;
        if f.response_to() != id {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("reply to {} while waiting for {id}", f.response_to()),
            ));
        }
        Ok(f)
    }

    pub async fn recv(&mut self) -> std::io::Result<Frame> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8192);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
        }
    }

    /// A whole OP_MSG command (not pre-encoded; for setup only).
    pub async fn command(&mut self, body: &Document) -> std::io::Result<Document> {
        let mut t = Template::new(body);
        let f = self.round_trip(&mut t).await?;
        let raw = f.raw();
        // header 16, flags 4, section kind 1.
        Document::from_reader(&raw[21..]).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("reply: {e}"))
        })
    }

    /// Drops the read buffer's spare capacity (idle connections).
    pub fn shrink(&mut self) {
        self.buf = BytesMut::new();
    }
}

/// Inserts `_id` 0..n into `db.coll` in batches of 1000 (duplicates from an
/// earlier preload are fine). Returns how many are present now (`count`).
pub async fn preload(addr: SocketAddr, db: &str, coll: &str, n: u64) -> anyhow::Result<u64> {
    let mut c = Conn::connect(addr).await?;
    let mut i = 0u64;
    while i < n {
        let end = (i + 1000).min(n);
        let docs: Vec<Bson> = (i..end)
            .map(|k| Bson::Document(bench_doc(k as i64)))
            .collect();
        let r = c
            .command(&doc! {
                "insert": coll, "documents": docs, "ordered": false,
                "writeConcern": { "w": 1i32 }, "$db": db,
            })
            .await?;
        if r.get_f64("ok").unwrap_or(0.0) != 1.0 && r.get_i32("ok").unwrap_or(0) != 1 {
            anyhow::bail!("preload insert failed: {r}");
        }
        if let Ok(errs) = r.get_array("writeErrors") {
            for e in errs {
                let code = e.as_document().and_then(|d| d.get_i32("code").ok());
                if code != Some(11000) {
                    anyhow::bail!("preload insert failed: {r}");
                }
            }
        }
        i = end;
    }
    let r = c
        .command(&doc! { "count": coll, "query": {}, "$db": db })
        .await?;
    let n = match r.get("n") {
        Some(Bson::Int32(v)) => *v as u64,
        Some(Bson::Int64(v)) => *v as u64,
        Some(Bson::Double(v)) => *v as u64,
        _ => anyhow::bail!("count failed: {r}"),
    };
    Ok(n)
}

/// Waits until `addr` accepts connections and answers a ping.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut c = Conn::connect(addr).await?;
            c.round_trip(&mut ping_template()).await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(f)) if check_reply(f.raw()).ok => return Ok(()),
            _ if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("{addr} did not answer a ping within {timeout:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_their_slot() {
        let t = find_template("bench", "users");
        assert!(t.slot.is_some());
        let t = insert_template("bench", "users");
        assert!(t.slot.is_some());
        let d = bench_doc(123);
        let mut v = Vec::new();
        d.to_writer(&mut v).unwrap();
        assert!((90..=110).contains(&v.len()), "{}", v.len());
        assert!(hello_template().slot.is_none());
    }

    #[test]
    fn reply_scan() {
        let f = |d: Document| {
            msg_reply_bytes(1, 2, MsgFlags::empty(), document_bytes(&d))
                .raw()
                .to_vec()
        };
        let ok = f(
            doc! {"cursor": {"firstBatch": [ {"_id": 1i64} ], "id": 0i64, "ns": "a.b"}, "ok": 1.0},
        );
        assert_eq!(
            check_reply(&ok),
            Verdict {
                ok: true,
                hit: true
            }
        );
        let miss = f(doc! {"cursor": {"firstBatch": [], "id": 0i64, "ns": "a.b"}, "ok": 1.0});
        assert_eq!(
            check_reply(&miss),
            Verdict {
                ok: true,
                hit: false
            }
        );
        let err = f(doc! {"ok": 0.0, "errmsg": "x", "code": 13435});
        assert!(!check_reply(&err).ok);
        let werr = f(doc! {"n": 0, "writeErrors": [{"index": 0, "code": 11000}], "ok": 1.0});
        assert!(!check_reply(&werr).ok);
        assert!(check_reply(&f(doc! {"ok": 1i32})).ok);
        assert!(check_reply(&f(doc! {"ok": 1i64})).ok);
    }
}
