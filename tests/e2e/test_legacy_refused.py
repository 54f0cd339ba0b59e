"""holdfast-sim is a MongoDB 7.0 server: it refuses the legacy wire formats
exactly as MongoDB 5.1+ does, and the drivers that speak only those formats
fail against it.

holdfast translates legacy formats for such drivers; these tests keep the
simulator from learning them, so that a legacy driver that works through
holdfast proves holdfast's translation and not the simulator's leniency.

(a) raw frames against a member; (b) the real legacy drivers
(tests/clients/legacy) pointed straight at the simulator, and as a control
the same programs with the drivers that speak OP_MSG.
"""
import socket
import struct

import bson
import pymongo
import pytest

from legacy_clients import LEGACY_ONLY, OP_MSG_CAPABLE, assert_crud_ok, run_client

OP_REPLY, OP_UPDATE, OP_INSERT, OP_QUERY, OP_GET_MORE, OP_DELETE, OP_KILL_CURSORS, OP_MSG = (
    1, 2001, 2002, 2004, 2005, 2006, 2007, 2013)
QUERY_FAILURE = 0x2        # OP_REPLY responseFlags bit 1
SLAVE_OK = 0x4             # OP_QUERY flags bit 2
UNSUPPORTED_OPCODE = 5739101
UNSUPPORTED_OP_QUERY_COMMAND = 352
DB, COLL = "legacy_refused", "c"
NS = f"{DB}.{COLL}"


def cstring(s):
    return s.encode() + b"\0"


class Wire:
    """One raw connection to a member."""

    def __init__(self, addr, timeout=5):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.next_id = 100

    def close(self):
        self.sock.close()

    def frame(self, opcode, body):
        self.next_id += 1
        return self.next_id, struct.pack("<iiii", 16 + len(body), self.next_id, 0, opcode) + body

    def send(self, opcode, body):
        rid, data = self.frame(opcode, body)
        self.sock.sendall(data)
        return rid

    def _exact(self, n):
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            data += chunk
        return data

    def reply(self):
        """The next reply as a dict, or None when the member closed the
        connection (a socket timeout raises: the member neither answered nor
        closed)."""
        head = self._exact(16)
        if head is None:
            return None
        length, _, response_to, opcode = struct.unpack("<iiii", head)
        body = self._exact(length - 16)
        if body is None:
            return None
        r = {"opcode": opcode, "response_to": response_to}
        if opcode == OP_REPLY:
            flags, cursor_id, starting_from, n = struct.unpack("<iqii", body[:20])
            r.update(flags=flags, cursor_id=cursor_id, starting_from=starting_from, n=n,
                     docs=bson.decode_all(body[20:]))
        elif opcode == OP_MSG:
            assert body[4] == 0, "expected a kind-0 section"
            r["doc"] = bson.decode(body[5:])
        return r

    def op_query(self, ns, query, number_to_return=-1, skip=0, flags=0):
        rid = self.send(OP_QUERY, struct.pack("<i", flags) + cstring(ns)
                        + struct.pack("<ii", skip, number_to_return) + bson.encode(query))
        r = self.reply()
        assert r is not None, "connection closed instead of an OP_REPLY"
        assert r["opcode"] == OP_REPLY and r["response_to"] == rid, r
        return r

    def command(self, db, cmd):
        """A command over OP_MSG (what 5.1+ accepts), its reply document."""
        rid = self.send(OP_MSG, struct.pack("<I", 0) + b"\0" + bson.encode(dict(cmd, **{"$db": db})))
        r = self.reply()
        assert r is not None and r["opcode"] == OP_MSG and r["response_to"] == rid, r
        return r["doc"]


@pytest.fixture
def primary(sim):
    """The primary's address, with five documents {_id: 0..4} in legacy_refused.c."""
    addr = sim.primary()
    with sim.direct(addr) as c:
        c[DB][COLL].insert_many([{"_id": i} for i in range(5)])
    return addr


@pytest.fixture
def wire(primary):
    w = Wire(primary)
    yield w
    w.close()


def docs_in(sim, addr):
    with sim.direct(addr) as c:
        return list(c[DB][COLL].find().sort("_id", 1))


def assert_unsupported_opcode(r, what):
    assert r["flags"] & QUERY_FAILURE, r
    assert r["cursor_id"] == 0 and r["n"] == 1, r
    err = r["docs"][0]
    assert err["code"] == UNSUPPORTED_OPCODE, err
    assert f"{what} is no longer supported" in err["$err"], err


# ---------------------------------------------------------------------------------------
# (a) raw frames

@pytest.mark.parametrize("query", [{}, {"$query": {}, "$orderby": {"_id": 1}}],
                         ids=["filter", "wrapped-with-orderby"])
def test_op_query_find_gets_5739101(wire, query):
    r = wire.op_query(NS, query, number_to_return=0)
    assert_unsupported_opcode(r, "OP_QUERY")
    assert "_id" not in r["docs"][0]   # the error, not a stored document


def test_op_query_find_with_slave_ok_on_a_secondary_gets_5739101(sim, primary):
    secondary = next(m for m in sim.members if m != primary)
    w = Wire(secondary)
    try:
        assert_unsupported_opcode(w.op_query(NS, {}, number_to_return=2, flags=SLAVE_OK), "OP_QUERY")
    finally:
        w.close()


def test_op_get_more_gets_5739101_and_leaves_the_cursor_open(wire):
    cursor = wire.command(DB, {"find": COLL, "sort": {"_id": 1}, "batchSize": 1})["cursor"]
    assert cursor["firstBatch"] == [{"_id": 0}] and cursor["id"] != 0
    wire.send(OP_GET_MORE, struct.pack("<i", 0) + cstring(NS) + struct.pack("<iq", 2, cursor["id"]))
    r = wire.reply()
    assert r is not None and r["opcode"] == OP_REPLY, r
    assert_unsupported_opcode(r, "OP_GET_MORE")
    more = wire.command(DB, {"getMore": bson.Int64(cursor["id"]), "collection": COLL, "batchSize": 1})
    assert more["cursor"]["nextBatch"] == [{"_id": 1}], more


# Every command but the handshake (and, "temporarily", auth and buildInfo) is refused
# over OP_QUERY, including the ones legacy drivers open with (getnonce: mgo) or pipeline
# after legacy writes (getLastError).
@pytest.mark.parametrize("cmd", [
    {"insert": COLL, "documents": [{"_id": 99}]},
    {"find": COLL, "filter": {}},
    {"$query": {"count": COLL}, "$readPreference": {"mode": "primary"}},
    {"getLastError": 1, "w": 1},
    {"getnonce": 1},
    {"ping": 1},
], ids=["insert", "find", "wrapped-count", "getLastError", "getnonce", "ping"])
def test_op_query_commands_get_352(sim, primary, wire, cmd):
    r = wire.op_query(f"{DB}.$cmd", cmd)
    assert not r["flags"] & QUERY_FAILURE, r   # command errors are in-band
    assert r["n"] == 1, r
    reply = r["docs"][0]
    name = next(iter(cmd.get("$query", cmd)))
    assert reply["ok"] == 0 and reply["code"] == UNSUPPORTED_OP_QUERY_COMMAND, reply
    assert reply["codeName"] == "UnsupportedOpQueryCommand", reply
    assert f"Unsupported OP_QUERY command: {name}" in reply["errmsg"], reply
    assert docs_in(sim, primary) == [{"_id": i} for i in range(5)]   # the insert did not happen


@pytest.mark.parametrize("cmd", [
    {"isMaster": 1}, {"ismaster": 1}, {"hello": 1},
    {"$query": {"isMaster": 1}, "$readPreference": {"mode": "primaryPreferred"}},
], ids=["isMaster", "ismaster", "hello", "wrapped-isMaster"])
def test_op_query_handshake_works(wire, cmd):
    r = wire.op_query("admin.$cmd", cmd)
    assert not r["flags"] & QUERY_FAILURE, r
    reply = r["docs"][0]
    assert reply["ok"] == 1, reply
    assert reply.get("isWritablePrimary", reply.get("ismaster")) is True, reply
    assert reply["maxWireVersion"] == 21 and reply["setName"] == "rs0", reply


@pytest.mark.parametrize("name", ["buildinfo", "buildInfo"])
def test_op_query_buildinfo_works(wire, name):
    reply = wire.op_query("admin.$cmd", {name: 1})["docs"][0]
    assert reply["ok"] == 1 and reply["version"].startswith("7.0."), reply


def test_op_query_command_with_db_field_gets_40621(wire):
    reply = wire.op_query("admin.$cmd", {"isMaster": 1, "$db": "admin"})["docs"][0]
    assert reply["ok"] == 0 and reply["code"] == 40621, reply


def legacy_write(opcode):
    if opcode == OP_INSERT:
        return struct.pack("<i", 0) + cstring(NS) + bson.encode({"_id": "legacy"})
    if opcode == OP_UPDATE:
        return (struct.pack("<i", 0) + cstring(NS) + struct.pack("<i", 0)
                + bson.encode({"_id": 1}) + bson.encode({"$set": {"x": 1}}))
    if opcode == OP_DELETE:
        return struct.pack("<i", 0) + cstring(NS) + struct.pack("<i", 0) + bson.encode({"_id": 1})
    raise ValueError(opcode)


def assert_closed_without_reply(w):
    assert w.reply() is None, "expected the member to close the connection without a reply"


@pytest.mark.parametrize("opcode", [OP_INSERT, OP_UPDATE, OP_DELETE], ids=["OP_INSERT", "OP_UPDATE", "OP_DELETE"])
def test_legacy_writes_close_the_connection_and_change_nothing(sim, primary, wire, opcode):
    wire.send(opcode, legacy_write(opcode))
    assert_closed_without_reply(wire)
    assert docs_in(sim, primary) == [{"_id": i} for i in range(5)]


def test_legacy_write_with_pipelined_getlasterror_gets_no_reply(sim, primary, wire):
    """How old drivers write below wire version 2: the write and its
    getLastError in one socket write. Neither is answered."""
    _, insert = wire.frame(OP_INSERT, legacy_write(OP_INSERT))
    _, gle = wire.frame(OP_QUERY, struct.pack("<i", 0) + cstring(f"{DB}.$cmd") + struct.pack("<ii", 0, -1)
                        + bson.encode({"getlasterror": 1}))
    wire.sock.sendall(insert + gle)
    assert_closed_without_reply(wire)
    assert docs_in(sim, primary) == [{"_id": i} for i in range(5)]


def test_op_kill_cursors_closes_the_connection_and_kills_nothing(primary, wire):
    cursor = wire.command(DB, {"find": COLL, "sort": {"_id": 1}, "batchSize": 1})["cursor"]
    other = Wire(primary)
    try:
        other.send(OP_KILL_CURSORS, struct.pack("<ii", 0, 1) + struct.pack("<q", cursor["id"]))
        assert_closed_without_reply(other)
    finally:
        other.close()
    more = wire.command(DB, {"getMore": bson.Int64(cursor["id"]), "collection": COLL, "batchSize": 1})
    assert more["cursor"]["nextBatch"] == [{"_id": 1}], more


# ---------------------------------------------------------------------------------------
# (b) real drivers straight to the simulator

def uri_for(sim, driver, topology):
    if topology == "replica-set":
        return sim.uri
    primary = sim.primary()
    # mgo discovers and dials every member unless told connect=direct.
    return f"mongodb://{primary}/?connect=direct" if driver == "mgo" else f"mongodb://{primary}/"


# How each legacy-only driver fails against MongoDB 5.1+:
#   pymongo 3.6 and Node 2.2 connect (their OP_QUERY isMaster is allowed) and
#   get 352 on their first write, an insert command over OP_QUERY;
#   mgo opens every connection with getnonce over OP_QUERY, gets 352 and an
#   empty nonce, drops the socket, and never finds a server.
LEGACY_FAILURE = {
    "py36": {"step": "insert", "code": 352, "type": "OperationFailure",
             "message": "Unsupported OP_QUERY command: insert"},
    "node2": {"step": "insert", "code": 352, "type": "MongoError",
              "message": "Unsupported OP_QUERY command: insert"},
    "mgo": {"step": "connect", "code": None, "message": "no reachable servers"},
}


@pytest.mark.parametrize("topology", ["replica-set", "direct-primary"])
@pytest.mark.parametrize("driver", LEGACY_ONLY)
def test_legacy_only_driver_fails_against_the_sim(sim, driver, topology):
    out = run_client(driver, uri_for(sim, driver, topology), "crud", timeout=60)
    want = LEGACY_FAILURE[driver]
    err = out.get("error")
    assert err, f"{driver} ran crud against holdfast-sim: {out}"
    assert err["step"] == want["step"] and err["code"] == want["code"], err
    assert want["message"] in err["message"], err
    if "type" in want:
        assert err["type"] == want["type"], err
    assert "inserted" not in out, out


@pytest.mark.parametrize("driver", OP_MSG_CAPABLE)
def test_op_msg_driver_runs_crud_against_the_sim(sim, driver):
    """The control: the same programs, against the same simulator, go through
    when their driver speaks OP_MSG."""
    assert_crud_ok(run_client(driver, sim.uri, "crud"))


@pytest.mark.parametrize("driver", OP_MSG_CAPABLE)
def test_op_msg_driver_loops_report_every_operation(sim, driver):
    reads = run_client(driver, sim.uri, "read-loop", 1, 4)
    assert "error" not in reads and reads["errors"] == 0 and reads["reads"] > 0, reads
    writer = f"{driver}-writer"
    out = run_client(driver, sim.uri, "write-loop", 1, writer)
    assert "error" not in out and out["errors"] == 0, out
    assert out["acked_incs"] > 0 and len(out["acked_inserts"]) > 0, out
    with pymongo.MongoClient(sim.uri, serverSelectionTimeoutMS=5000) as c:
        coll = c["legacy"]["write_loop"]
        assert coll.find_one({"_id": writer})["n"] == out["acked_incs"]
        stored = {d["_id"] for d in coll.find({"_id": {"$regex": f"^{writer}-"}})}
    assert stored == set(out["acked_inserts"]), (sorted(stored), out)
