"""Legacy clients through holdfast: every old driver does CRUD, a cursor
over several batches, an early kill, a duplicate key reported its own way,
a count, an upsert and a delete — through holdfast in front of holdfast-sim,
which refuses their wire formats (test_legacy_refused.py)."""
import pytest

from legacy_clients import DRIVERS, assert_crud_ok, run_client


@pytest.mark.parametrize("driver", DRIVERS)
def test_crud_through_holdfast(proxy, driver):
    out = run_client(driver, proxy.uri, "crud")
    assert_crud_ok(out)
    print(driver, out["driver"], out.get("dup"))


# pymongo 3.12 announced wire version 3 (MongoDB 3.0) uses OP_QUERY finds,
# OP_GET_MORE and OP_KILL_CURSORS, and legacy opcodes for w:0 writes; at 5
# (3.4) commands over OP_QUERY.
@pytest.mark.parametrize("wire", [3, 5])
def test_pymongo_312_at_old_wire_versions(make_sim, make_proxy, wire):
    sim = make_sim()
    proxy = make_proxy(sim.uri, f"advertise_max_wire_version = {wire}\n")
    out = run_client("py312", proxy.uri, "crud")
    assert_crud_ok(out)
    legacy = proxy.metric("holdfast_legacy_requests_total")
    assert legacy > 0, "the driver used legacy formats"
    if wire == 3:
        for op in ["op_query_find", "op_get_more", "op_kill_cursors"]:
            assert proxy.metric("holdfast_legacy_requests_total", opcode=op) >= 1, op
    assert proxy.metric("holdfast_legacy_translation_errors_total") == 0


@pytest.mark.parametrize("driver", ["py36", "node2", "node3", "mgo"])
def test_legacy_drivers_at_wire_version_3(make_sim, make_proxy, driver):
    sim = make_sim()
    proxy = make_proxy(sim.uri, "advertise_max_wire_version = 3\n")
    out = run_client(driver, proxy.uri, "crud")
    assert_crud_ok(out)
    # Below wire version 4 (MongoDB 3.2) drivers query with OP_QUERY and
    # continue with OP_GET_MORE.
    used = {op: proxy.metric("holdfast_legacy_requests_total", opcode=op)
            for op in ["op_query_command", "op_query_find", "op_get_more", "op_kill_cursors",
                       "op_insert", "op_update", "op_delete"]}
    print(driver, used)
    assert used["op_query_find"] >= 1 and used["op_get_more"] >= 1, used
    # Every batch after the first came by OP_GET_MORE, and the early close
    # of the second cursor by OP_KILL_CURSORS.
    assert used["op_get_more"] >= out["batches_seen"] - 1, (used, out)
    assert used["op_kill_cursors"] >= 1, used
    assert proxy.metric("holdfast_legacy_translation_errors_total") == 0


# The Java driver 3.6 chooses OP_MSG and the find command by buildInfo's
# version, not the wire version: holdfast caps that version too, so at 5
# (3.4) every command goes as OP_QUERY, and at 3 (3.0) finds, getMores and
# kills are OP_QUERY, OP_GET_MORE and OP_KILL_CURSORS.
@pytest.mark.parametrize("wire", [3, 5])
def test_java_driver_at_old_wire_versions(make_sim, make_proxy, wire):
    sim = make_sim()
    proxy = make_proxy(sim.uri, f"advertise_max_wire_version = {wire}\n")
    out = run_client("java", proxy.uri, "crud")
    assert_crud_ok(out)
    used = {op: proxy.metric("holdfast_legacy_requests_total", opcode=op)
            for op in ["op_query_command", "op_query_find", "op_get_more", "op_kill_cursors"]}
    commands = out["commands"]   # what the driver ran, by its command monitoring
    print(wire, used, commands)
    as_opcodes = {"find": "op_query_find", "getMore": "op_get_more",
                  "killCursors": "op_kill_cursors"} if wire == 3 else {}
    for name, op in as_opcodes.items():
        assert commands.get(name, 0) >= 1 and used[op] >= commands[name], (name, used, commands)
    # Every other command was an OP_QUERY on <db>.$cmd (besides the handshake's).
    as_commands = sum(n for name, n in commands.items() if name not in as_opcodes)
    assert as_commands >= 6 and used["op_query_command"] >= as_commands, (used, commands)
    assert proxy.metric("holdfast_legacy_translation_errors_total") == 0


# Below wire version 2 (MongoDB 2.6) drivers write with OP_INSERT, OP_UPDATE
# and OP_DELETE, each followed by a getLastError in the same socket write.
@pytest.mark.parametrize("driver", ["node2", "mgo"])
def test_legacy_write_opcodes_with_get_last_error(make_sim, make_proxy, driver):
    sim = make_sim()
    proxy = make_proxy(sim.uri, "advertise_max_wire_version = 1\n")
    assert_crud_ok(run_client(driver, proxy.uri, "crud"))
    for op in ["op_insert", "op_update", "op_delete"]:
        assert proxy.metric("holdfast_legacy_requests_total", opcode=op) >= 1, op
    assert proxy.metric("holdfast_legacy_translation_errors_total") == 0


def test_legacy_readers_see_no_errors_across_failovers(sim, proxy):
    """pymongo 3.6.1 and mgo readers (never OP_MSG) through three stepdowns
    and a shutdown of the primary: every read answered."""
    import threading
    from test_scenarios import failovers

    results = {}

    def run(driver):
        results[driver] = run_client(driver, proxy.uri, "read-loop", 16, 16)

    threads = [threading.Thread(target=run, args=(d,)) for d in ("py36", "mgo", "node2")]
    for t in threads:
        t.start()
    failovers(sim, stepdowns=3, shutdown=True, pause=2.5)
    for t in threads:
        t.join(120)
    print("legacy readers:", {d: (r.get("reads"), r.get("errors")) for d, r in results.items()})
    for driver, r in results.items():
        assert "error" not in r, (driver, r)
        assert r["errors"] == 0, (driver, r["first_errors"])
        assert r["reads"] > 100, (driver, r)
    assert proxy.metric("holdfast_legacy_requests_total", opcode="op_query_command") > 100


def no_primary(sim, secs=120):
    """Leaves the set without a primary for `secs`: the secondaries are
    frozen (no candidacy), then the primary steps down."""
    p = sim.primary()
    for i, m in enumerate(sim.members):
        if m != p:
            sim.fault(simFault="freeze", member=i, secs=secs)
    sim.fault(simFault="stepDown", member=sim.members.index(p), secs=secs, force=True)
    assert sim.primary() is None


# pymongo 3.x maps an error to NotMasterError (an AutoReconnect) by its
# message only: "not master..." in errmsg, $err (OP_QUERY finds, below wire
# version 4) or getLastError's err. holdfast's own 10107 after hold_timeout
# must read that way to it; an OP_MSG client gets the message unchanged.
@pytest.mark.parametrize("wire", [None, 3])
def test_py36_sees_holdfast_not_primary_errors_as_auto_reconnect(make_sim, make_proxy, wire):
    import pymongo

    sim = make_sim()
    config = "hold_timeout_ms = 300\n"
    if wire is not None:
        config += f"advertise_max_wire_version = {wire}\n"
    proxy = make_proxy(sim.uri, config)
    no_primary(sim)
    out = run_client("py36", proxy.uri, "once")
    print(out)
    for step in ("find", "insert"):
        e = out[step]
        assert e.get("auto_reconnect") is True, (step, out)
        assert e["type"] == "NotMasterError", (step, out)
        assert e["message"].startswith("not master: holdfast: "), (step, out)
        assert "(hold_timeout)" in e["message"], (step, out)
    if wire == 3:
        # The find went as an OP_QUERY on the collection: its error was $err.
        assert proxy.metric("holdfast_legacy_requests_total", opcode="op_query_find") >= 1
        return
    # The same error to an OP_MSG client keeps holdfast's own message.
    with pymongo.MongoClient(proxy.uri, retryReads=False, serverSelectionTimeoutMS=5000) as c:
        with pytest.raises(pymongo.errors.NotPrimaryError) as ei:
            c.legacy.once.find_one({"_id": 1})
    assert ei.value.details["code"] == 10107
    assert ei.value.details["errmsg"].startswith("holdfast: "), ei.value.details
