//! A legacy wire client for the tests: exact OP_QUERY, OP_GET_MORE,
//! OP_KILL_CURSORS and OP_INSERT/UPDATE/DELETE frames, and the OP_REPLY
//! answers.

use bson::{doc, Document};
use bytes::Bytes;
use futures::StreamExt;
use holdfast_wire::legacy::{LegacyOp, OpGetMore, OpInsert};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{Frame, FrameCodec, Limits, Message, OpQuery, OpReply, QueryFlags, ReplyFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use super::Harness;

pub struct Legacy {
    frames: FramedRead<TcpStream, FrameCodec>,
    pub next: i32,
}

pub fn query(ns: &str, q: Document, skip: i32, ret: i32, flags: QueryFlags) -> OpQuery {
    OpQuery {
        flags,
        full_collection_name: ns.into(),
        number_to_skip: skip,
        number_to_return: ret,
        query: document_bytes(&q),
        return_fields_selector: None,
    }
}

/// The documents of an OP_REPLY.
pub fn docs(r: &OpReply) -> Vec<Document> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < r.documents.len() {
        let len = i32::from_le_bytes(r.documents[at..at + 4].try_into().unwrap()) as usize;
        out.push(Document::from_reader(&r.documents[at..at + len]).unwrap());
        at += len;
    }
    out
}

pub fn insert_op(coll: &str, ds: &[Document], flags: i32) -> LegacyOp {
    let mut b = Vec::new();
    for d in ds {
        b.extend_from_slice(&document_bytes(d));
    }
    LegacyOp::Insert(OpInsert {
        flags,
        full_collection_name: format!("app.{coll}"),
        documents: Bytes::from(b),
    })
}

pub fn get_more(ns: &str, cursor_id: i64, number_to_return: i32) -> LegacyOp {
    LegacyOp::GetMore(OpGetMore {
        full_collection_name: ns.into(),
        number_to_return,
        cursor_id,
    })
}

impl Legacy {
    pub async fn connect(h: &Harness) -> Legacy {
        let s = TcpStream::connect(&h.hf.listen_addr).await.unwrap();
        Legacy {
            frames: FramedRead::new(s, FrameCodec::default()),
            next: 1,
        }
    }

    pub fn id(&mut self) -> i32 {
        self.next += 1;
        self.next
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.frames.get_mut().write_all(bytes).await.unwrap();
    }

    pub fn query_bytes(&mut self, q: OpQuery) -> (i32, Vec<u8>) {
        let id = self.id();
        (id, Message::Query(q).to_frame(id, 0).raw().to_vec())
    }

    pub fn op_bytes(&mut self, op: LegacyOp) -> Vec<u8> {
        let id = self.id();
        op.encode(id)
    }

    pub async fn reply(&mut self, to: i32) -> OpReply {
        let f: Frame = tokio::time::timeout(std::time::Duration::from_secs(20), self.frames.next())
            .await
            .expect("a reply")
            .expect("open")
            .unwrap();
        assert_eq!(f.response_to(), to);
        match f.parse(&Limits::default()).unwrap() {
            Message::Reply(r) => r,
            other => panic!("not an OP_REPLY: {other:?}"),
        }
    }

    pub async fn query(&mut self, q: OpQuery) -> OpReply {
        let (id, b) = self.query_bytes(q);
        self.write(&b).await;
        self.reply(id).await
    }

    /// A legacy op that gets a reply (OP_GET_MORE).
    pub async fn op(&mut self, op: LegacyOp) -> OpReply {
        let b = self.op_bytes(op);
        let id = self.next;
        self.write(&b).await;
        self.reply(id).await
    }

    pub async fn command(&mut self, db: &str, cmd: Document) -> Document {
        let r = self
            .query(query(
                &format!("{db}.$cmd"),
                cmd,
                0,
                -1,
                QueryFlags::empty(),
            ))
            .await;
        assert!(r.response_flags.contains(ReplyFlags::AWAIT_CAPABLE));
        docs(&r).remove(0)
    }

    /// A legacy write and a getLastError in the same socket write.
    pub async fn write_then_gle(&mut self, op: LegacyOp, gle: Document) -> Document {
        let mut b = self.op_bytes(op);
        let (id, g) = self.query_bytes(query("app.$cmd", gle, 0, -1, QueryFlags::empty()));
        b.extend_from_slice(&g);
        self.write(&b).await;
        docs(&self.reply(id).await).remove(0)
    }

    /// `getLastError` on its own.
    pub async fn last_error(&mut self) -> Document {
        self.command("app", doc! {"getLastError": 1}).await
    }
}
