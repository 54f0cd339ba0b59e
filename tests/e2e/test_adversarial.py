"""Clients that try to knock holdfast over, each with its expected outcome
(a clear error or a close, a metric, a log line) and a check that a normal
client's latency meanwhile stays within a small factor of its baseline
measured in the same run: p50 at most 5x the baseline's plus 5 ms.

holdfast runs with short client timeouts (1.5 s) and a 64 MiB memory budget
so each case is bounded in time; everything stays on loopback."""
import os
import random
import socket
import struct
import threading
import time
import zlib

import pymongo
import pytest
from bson import encode

from conftest import Holdfast, Sim, wait_until

TIMEOUT_MS = 1500
BUDGET = 64 * 1024 * 1024
CONFIG = f"""client_first_message_timeout_ms = {TIMEOUT_MS}
client_frame_timeout_ms = {TIMEOUT_MS}
max_buffered_bytes = {BUDGET}
max_client_connections = 12000
"""


def op_msg(doc, request_id=1):
    body = struct.pack("<I", 0) + b"\x00" + encode(doc)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Normal:
    """A well-behaved client: its p50 latency of find-one by _id."""

    def __init__(self, uri):
        self.c = pymongo.MongoClient(uri, maxPoolSize=4)
        self.coll = self.c.adv.items
        self.coll.insert_many([{"_id": i} for i in range(100)])
        self.p50()  # warm
        self.baseline = self.p50()

    def p50(self, n=60):
        lat = []
        for i in range(n):
            t = time.perf_counter()
            assert self.coll.find_one({"_id": i % 100}) == {"_id": i % 100}
            lat.append(time.perf_counter() - t)
        lat.sort()
        return lat[len(lat) // 2]

    def unaffected(self, what):
        p = self.p50()
        limit = 5 * self.baseline + 0.005
        print(f"{what}: normal client p50 {p * 1e3:.2f} ms (baseline {self.baseline * 1e3:.2f} ms)")
        assert p <= limit, f"{what}: p50 {p * 1e3:.2f} ms > {limit * 1e3:.2f} ms"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("adversarial"))
    sim = Sim(tmp)
    cfg = os.path.join(tmp, "holdfast.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    proxy = Holdfast(tmp, sim.uri, "--config", cfg, "--pool-size", "20")
    normal = Normal(proxy.uri)
    yield proxy, normal
    normal.c.close()
    proxy.stop()
    sim.stop()


def connect(proxy):
    host, port = proxy.addr.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_within(socks, seconds):
    """Waits until every socket is closed by the peer; returns how many were."""
    deadline = time.time() + seconds
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            while s.recv(65536):
                pass
            closed += 1
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            closed += 1
        finally:
            s.close()
    return closed


def closes(proxy, reason):
    return proxy.metric("holdfast_client_connections_closed_total", reason=reason)


def log_has(proxy, text):
    return text in open(proxy.proc.path).read()


def test_silent_connections_are_closed_by_the_first_message_timeout(world):
    proxy, normal = world
    before = closes(proxy, "first_message_timeout")
    socks = [connect(proxy) for _ in range(2000)]
    normal.unaffected("2000 silent connections")
    assert closed_within(socks, TIMEOUT_MS / 1000 + 10) == 2000
    wait_until(lambda: closes(proxy, "first_message_timeout") - before >= 2000, 10, "metric")
    assert log_has(proxy, "first_message_timeout")


def test_slowloris_is_closed_by_the_frame_timeout(world):
    proxy, normal = world
    before = closes(proxy, "frame_timeout")
    frame = op_msg({"ping": 1, "$db": "admin"})
    socks = []
    for _ in range(300):
        s = connect(proxy)
        s.sendall(frame)           # a whole first message...
        s.recv(65536)
        s.sendall(frame[:10])      # ...then half of the next, dripped
        socks.append(s)
    stop = threading.Event()

    def drip():
        i = 10
        while not stop.is_set() and i < len(frame):
            for s in socks:
                try:
                    s.sendall(frame[i:i + 1])
                except OSError:
                    pass
            i += 1
            time.sleep(0.2)
    t = threading.Thread(target=drip)
    t.start()
    normal.unaffected("300 slowloris connections")
    assert closed_within(socks, TIMEOUT_MS / 1000 + 10) == 300
    stop.set()
    t.join()
    assert closes(proxy, "frame_timeout") - before >= 300
    assert log_has(proxy, "frame_timeout")


@pytest.mark.parametrize("length", [49_000_000, -5, 3, 2**31 - 1])
def test_bad_lengths_close_the_connection(world, length):
    proxy, normal = world
    before = proxy.metric("holdfast_protocol_errors_total", kind="framing")
    s = connect(proxy)
    s.sendall(struct.pack("<iiii", length, 1, 0, 2013) + b"\x00" * 16)
    assert closed_within([s], 10) == 1
    wait_until(lambda: proxy.metric("holdfast_protocol_errors_total", kind="framing") > before, 5, "metric")
    normal.unaffected(f"length {length}")


def test_truncated_sections_get_an_error_or_a_close(world):
    proxy, normal = world
    before = proxy.metric("holdfast_protocol_errors_total")
    doc = encode({"ping": 1, "$db": "admin"})
    cases = [
        # a kind-0 document claiming more bytes than the message holds
        struct.pack("<I", 0) + b"\x00" + struct.pack("<i", len(doc) + 100) + doc[4:],
        # a kind-1 sequence whose size runs past the end
        struct.pack("<I", 0) + b"\x00" + doc + b"\x01" + struct.pack("<i", 1000) + b"documents\x00",
        # flags, then nothing
        struct.pack("<I", 0),
    ]
    for body in cases:
        s = connect(proxy)
        s.sendall(struct.pack("<iiii", 16 + len(body), 7, 0, 2013) + body)
        s.settimeout(10)
        reply = s.recv(65536)
        if reply:   # an error reply to request 7, then the connection still works
            assert struct.unpack("<i", reply[8:12])[0] == 7
            assert b"errmsg" in reply
        s.close()
    assert proxy.metric("holdfast_protocol_errors_total") >= before + len(cases)
    normal.unaffected("truncated sections")


def compressed(inner_len_claimed, payload, compressor_id=2, original_opcode=2013):
    body = struct.pack("<iiB", original_opcode, inner_len_claimed, compressor_id) + payload
    return struct.pack("<iiii", 16 + len(body), 3, 0, 2012) + body


def test_compression_bombs_are_refused_before_they_inflate(world):
    proxy, normal = world
    pid = proxy.proc.p.pid
    rss0 = rss_mb(pid)
    before = proxy.metric("holdfast_protocol_errors_total", kind="compression") + \
        proxy.metric("holdfast_protocol_errors_total", kind="malformed")
    bomb = zlib.compress(b"\x00" * (40 * 1024 * 1024), 9)     # 40 MB of zeros in ~40 KB
    import zstandard
    zbomb = zstandard.ZstdCompressor().compress(b"\x00" * (40 * 1024 * 1024))
    # (frame, expected): "close" when the payload is a lie found while
    # inflating (the output is capped at the declared size), an error reply
    # when the declared size alone is refused.
    cases = [
        (compressed(100, bomb), "close"),                     # declares 100 bytes, inflates to 40 MB
        (compressed(2_000_000_000, bomb), b"declares uncompressed size"),  # more than max_message_size
        (compressed(100, zbomb, compressor_id=3), "close"),   # zstd
        (compressed(100, b"\xff\xff\xff\xff\x0f" + b"\x00" * 20, compressor_id=1), "close"),  # snappy claiming 4 GB
    ]
    for frame, expected in cases:
        s = connect(proxy)
        s.sendall(frame)
        s.settimeout(10)
        got = s.recv(65536)
        if expected == "close":
            assert got == b"", got[:100]
        else:
            assert expected in got, got[:300]
        s.close()
    counted = lambda: proxy.metric("holdfast_protocol_errors_total", kind="compression") + \
        proxy.metric("holdfast_protocol_errors_total", kind="malformed")  # noqa: E731
    wait_until(lambda: counted() >= before + len(cases), 10, "compression errors counted")
    assert rss_mb(pid) - rss0 < 30, "a bomb inflated"
    normal.unaffected("compression bombs")


def test_random_garbage_closes_only_those_connections(world):
    proxy, normal = world
    rng = random.Random(16)
    socks = []
    for _ in range(100):
        s = connect(proxy)
        s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))))
        socks.append(s)
    normal.unaffected("100 garbage connections")
    # Garbage either breaks framing at once or is an incomplete frame that
    # the frame timeout closes.
    assert closed_within(socks, TIMEOUT_MS / 1000 + 10) == 100


def test_ten_thousand_connections(world):
    proxy, normal = world
    pid = proxy.proc.p.pid
    rss0 = rss_mb(pid)
    hello = op_msg({"hello": 1, "$db": "admin"})
    socks = []
    for _ in range(10_000):
        s = connect(proxy)
        s.sendall(hello)
        socks.append(s)
    wait_until(lambda: proxy.metric("holdfast_client_connections") >= 10_000, 30, "10,000 connections")
    per_conn_kb = (rss_mb(pid) - rss0) * 1024 / 10_000
    print(f"10,000 connections: {per_conn_kb:.1f} KiB each")
    normal.unaffected("10,000 open connections")
    assert per_conn_kb < 16
    for s in socks:
        s.close()
    wait_until(lambda: proxy.metric("holdfast_client_connections") < 100, 30, "connections closed")


def test_resets_mid_request_leave_no_trace(world):
    proxy, normal = world
    find = op_msg({"find": "items", "filter": {"_id": 1}, "$db": "adv"})
    for cut in [len(find), len(find) // 2]:
        for _ in range(200):
            s = connect(proxy)
            s.sendall(find[:cut])
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()   # RST
    normal.unaffected("400 resets mid-request")
    # Connections to the members stay within the pool's bound (20 per
    # member): none leaked by requests whose client went away.
    assert proxy.metric("holdfast_backend_connections") <= 3 * 20


def test_a_client_that_never_reads_replies_is_closed_and_bounded(world):
    proxy, normal = world
    pid = proxy.proc.p.pid
    big = "x" * (4 * 1024 * 1024)
    normal.coll.database.big.insert_many([{"_id": i, "b": big} for i in range(3)])
    rss0 = rss_mb(pid)
    before = closes(proxy, "write_timeout")
    s = connect(proxy)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frame = op_msg({"find": "big", "filter": {}, "$db": "adv"})
    for i in range(50):
        try:
            s.sendall(frame)
        except OSError:
            break
    normal.unaffected("a client that never reads")
    wait_until(lambda: closes(proxy, "write_timeout") > before, 20, "write_timeout close")
    s.close()
    assert rss_mb(pid) - rss0 < 64, "replies piled up"


def test_a_flood_of_large_frames_stays_within_the_memory_budget(world):
    """300 connections announce 40 MB frames and send 1 MB of each."""
    proxy, normal = world
    pid = proxy.proc.p.pid
    rss0 = rss_mb(pid)
    before = proxy.metric("holdfast_memory_budget_refusals_total", what="request")
    header = struct.pack("<iiii", 40_000_000, 9, 0, 2013) + struct.pack("<I", 0) + b"\x00"
    chunk = header + b"\x00" * (1024 * 1024 - len(header))
    socks, peak = [], 0.0
    for _ in range(300):
        s = connect(proxy)
        try:
            s.sendall(chunk)
        except OSError:
            pass
        socks.append(s)
        peak = max(peak, rss_mb(pid))
    time.sleep(1.5)
    peak = max(peak, rss_mb(pid))
    print(f"flood: holdfast RSS {rss0:.0f} MB -> peak {peak:.0f} MB with a 64 MiB budget")
    normal.unaffected("300 x 40 MB frames")
    assert peak - rss0 < 64 + 48, f"RSS grew {peak - rss0:.0f} MB"
    wait_until(lambda: proxy.metric("holdfast_memory_budget_refusals_total", what="request") > before,
               15, "budget refusals")
    assert log_has(proxy, "over the memory budget")
    closed_within(socks, TIMEOUT_MS / 1000 + 10)
