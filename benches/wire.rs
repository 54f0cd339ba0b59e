//! Criterion benchmarks for holdfast-wire's request path: `FrameCodec::decode`,
//! `Frame::parse`, `CommandView` and `classify`, the work the proxy does for
//! every client frame.
//!
//! Attached to the `holdfast-wire` crate (`[[bench]] path = "../../benches/wire.rs"`)
//! because the root manifest is virtual. Run:
//!
//! ```text
//! nice -n 19 cargo bench -p holdfast-wire --bench wire
//! ```
//!
//! Groups:
//! - `find_op_msg`: a ~200-byte `find` decoded from a buffer holding many
//!   copies back to back (as a read buffer holds pipelined frames), measured
//!   in frames/s. Two frames: pymongo 4's captured fixture, and one built
//!   with every field pymongo sends to a replica set (`$clusterTime` included).
//! - `insert_1mb`: a 1 MB `insert` with a kind-1 `documents` sequence of 1000
//!   ~1 KB documents, in bytes/s, side by side with a `memcpy` of the same
//!   size: the decode path must be far faster than copying the payload.
//!
//! Before the benchmarks, allocations per frame are counted and printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Timestamp};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use holdfast_wire::msg::DocumentSequence;
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{CommandClass, CommandView, FrameCodec, Limits, Message, MsgFlags, OpMsg};
use tokio_util::codec::Decoder;

// ---------------------------------------------------------------------------
// Counting allocator.
//
// The library crates are `#![forbid(unsafe_code)]`; this bench binary is not a
// library and needs `unsafe impl GlobalAlloc` to wrap the system allocator so
// that it can count allocations per decoded frame. It only forwards to
// `System` and bumps counters while `COUNTING` is on (one relaxed load when
// off, so timings are not disturbed).
// ---------------------------------------------------------------------------
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

#[inline]
fn count(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters have no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` with allocation counting on; returns (allocations, bytes).
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCS.store(0, Ordering::Relaxed);
    ALLOC_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (
        r,
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------

/// pymongo 4.20's `find` as captured by the fixtures (201 bytes).
const FIND_FIXTURE: &[u8] = include_bytes!("../crates/wire/tests/fixtures/pymongo4/05-find.bin");

fn op_msg(body: bson::Document, sequences: Vec<DocumentSequence>) -> Bytes {
    let mut m = OpMsg::new(MsgFlags::empty(), document_bytes(&body));
    m.sequences = sequences;
    Message::Msg(m).to_frame(0x1959_5cff, 0).into_bytes()
}

fn session_id() -> Binary {
    Binary {
        subtype: BinarySubtype::Uuid,
        bytes: (0u8..16).collect(),
    }
}

fn cluster_time() -> bson::Document {
    doc! {
        "clusterTime": Timestamp { time: 1_700_000_000, increment: 7 },
        "signature": {
            "hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0u8; 20] },
            "keyId": 0i64,
        },
    }
}

/// A `find` with every field pymongo 4 sends to a replica set.
fn find_pymongo_shape() -> Bytes {
    op_msg(
        doc! {
            "find": "coll",
            "filter": { "_id": ObjectId::from_bytes([7u8; 12]) },
            "limit": 1,
            "singleBatch": true,
            "lsid": { "id": session_id() },
            "$clusterTime": cluster_time(),
            "$db": "app",
            "$readPreference": { "mode": "primaryPreferred" },
        },
        Vec::new(),
    )
}

/// A ~1 MB `insert`: 1000 documents of ~1 KB in a kind-1 `documents` sequence.
fn insert_1mb() -> Bytes {
    let mut docs = Vec::with_capacity(1_050_000);
    for i in 0..1000i32 {
        let d = doc! {
            "_id": ObjectId::from_bytes([(i % 251) as u8; 12]),
            "n": i,
            "name": format!("document number {i}"),
            "payload": "x".repeat(960),
        };
        d.to_writer(&mut docs).unwrap();
    }
    op_msg(
        doc! {
            "insert": "coll",
            "ordered": true,
            "lsid": { "id": session_id() },
            "txnNumber": 1i64,
            "$clusterTime": cluster_time(),
            "$db": "app",
        },
        vec![DocumentSequence::new("documents", Bytes::from(docs))],
    )
}

// ---------------------------------------------------------------------------
// The measured work.
// ---------------------------------------------------------------------------

/// Parses, views and classifies one decoded frame: the proxy's per-request work.
#[inline]
fn handle(frame: &holdfast_wire::Frame, limits: &Limits) -> CommandClass {
    let msg = match frame.parse(limits) {
        Ok(Message::Msg(m)) => m,
        other => panic!("not an OP_MSG: {other:?}"),
    };
    let view = CommandView::from_msg(&msg).expect("valid command");
    black_box(view.db);
    view.classify()
}

/// Decodes every frame in `buf`, handling each; returns how many.
#[inline]
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut, limits: &Limits) -> u64 {
    let mut n = 0;
    while let Some(frame) = codec.decode(buf).expect("valid stream") {
        black_box(handle(&frame, limits));
        n += 1;
    }
    n
}

/// Frames per refill of the read buffer (~200 KB for a 200-byte frame).
const BATCH: usize = 1024;

fn bench_find(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("find_op_msg");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("pymongo4_fixture_201B", Bytes::from_static(FIND_FIXTURE)),
        ("pymongo_shape_clustertime", find_pymongo_shape()),
    ] {
        let stream: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * BATCH)
            .collect();
        let id = format!("{name}/{}B", frame.len());
        g.bench_function(id, |b| {
            // Each iteration is one frame. The buffer is refilled with BATCH
            // copies (the socket read, not timed) and drained through the
            // codec (timed), so frames share the read buffer as in the proxy.
            b.iter_custom(|iters| {
                let mut codec = FrameCodec::new(limits);
                let mut buf = BytesMut::with_capacity(stream.len());
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let want = ((iters - done) as usize).min(BATCH);
                    buf.extend_from_slice(&stream[..want * frame.len()]);
                    let t0 = Instant::now();
                    done += drain(&mut codec, &mut buf, &limits);
                    total += t0.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn bench_insert(c: &mut Criterion) {
    let limits = Limits::default();
    let frame = insert_1mb();
    let len = frame.len();
    let mut g = c.benchmark_group("insert_1mb");
    g.throughput(Throughput::Bytes(len as u64));
    g.sample_size(50);
    g.bench_function(format!("decode_parse_view_classify/{len}B"), |b| {
        // The frame is copied into a fresh read buffer outside the timing;
        // the timed part is decode + parse + CommandView + classify, and the
        // frame is dropped after the clock stops.
        b.iter_custom(|iters| {
            let mut codec = FrameCodec::new(limits);
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut buf = BytesMut::with_capacity(len);
                buf.extend_from_slice(&frame);
                let t0 = Instant::now();
                let f = codec.decode(&mut buf).unwrap().unwrap();
                let class = handle(&f, &limits);
                total += t0.elapsed();
                black_box(class);
                drop(f);
            }
            total
        })
    });
    g.bench_function(format!("memcpy_baseline/{len}B"), |b| {
        let mut dst = vec![0u8; len];
        b.iter(|| {
            dst.copy_from_slice(black_box(&frame[..]));
            black_box(&mut dst);
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// Allocation counts.
// ---------------------------------------------------------------------------

fn report_allocations() {
    let limits = Limits::default();
    println!("allocations per frame (decode + parse + CommandView + classify):");
    for (name, frame) in [
        ("find pymongo4 fixture", Bytes::from_static(FIND_FIXTURE)),
        ("find pymongo shape", find_pymongo_shape()),
    ] {
        const N: usize = 10_000;
        let stream: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * N)
            .collect();
        let mut buf = BytesMut::from(&stream[..]);
        let mut codec = FrameCodec::new(limits);
        let (n, allocs, bytes) = counted(|| drain(&mut codec, &mut buf, &limits));
        assert_eq!(n, N as u64);
        println!(
            "  {name:<24} {:>4} B: {:.3} allocs/frame, {:.1} bytes/frame (over {N} frames)",
            frame.len(),
            allocs as f64 / N as f64,
            bytes as f64 / N as f64,
        );
    }

    let frame = insert_1mb();
    let mut buf = BytesMut::from(&frame[..]);
    let base = buf.as_ptr() as usize;
    let mut codec = FrameCodec::new(limits);
    let ((f, class), allocs, bytes) = counted(|| {
        let f = codec.decode(&mut buf).unwrap().unwrap();
        let class = handle(&f, &limits);
        (f, class)
    });
    // Zero-copy: the documents are a slice of the read buffer itself.
    let Ok(Message::Msg(m)) = f.parse(&limits) else {
        unreachable!()
    };
    let docs = &m.sequence("documents").unwrap().documents;
    let p = docs.as_ptr() as usize;
    assert!(p > base && p + docs.len() <= base + frame.len());
    assert_eq!(m.sequence("documents").unwrap().count(), 1000);
    println!(
        "  {:<24} {:>4} B: {allocs} allocs, {bytes} bytes allocated for the whole frame; \
         class {class:?}; documents slice points into the read buffer (no copy)",
        "insert 1000 docs",
        frame.len(),
    );
}

fn main() {
    report_allocations();
    let mut c = Criterion::default().configure_from_args();
    bench_find(&mut c);
    bench_insert(&mut c);
    c.final_summary();
}
