"""Failover scenarios: the seed scenario (600 legacy connections through
three stepdowns and a shutdown), mixed legacy reads and writes, a modern
client, and a blackholed primary. Counts are printed (pytest -s shows them)."""
import json
import threading
import time

import pymongo
from pymongo.errors import PyMongoError

from test_failover import LEGACY


def wait_primary(sim, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = sim.primary()
        if p:
            return p
        time.sleep(0.1)
    raise AssertionError("no primary")


def failovers(sim, stepdowns=3, shutdown=True, pause=2.5):
    """Steps the primary down `stepdowns` times, then shuts the primary down.
    Each stepped-down member may stand again after 2 s."""
    for _ in range(stepdowns):
        time.sleep(pause)
        wait_primary(sim)
        sim.step_down(secs=2)
    if shutdown:
        time.sleep(pause)
        p = wait_primary(sim)
        try:
            with sim.direct(p) as d:
                d.admin.command({"shutdown": 1, "force": True})
        except PyMongoError:
            pass  # the member closes the connection instead of replying
    time.sleep(pause + 1)
    wait_primary(sim)


def test_seed_scenario_600_legacy_readers_see_no_errors(sim, proxy):
    setup = pymongo.MongoClient(proxy.uri)
    setup.app.items.insert_many([{"_id": i, "v": i} for i in range(100)], )
    client = pymongo.MongoClient(proxy.uri, maxPoolSize=600, **LEGACY)
    coll = client.app.items
    stop = threading.Event()
    errors, reads = [], [0]
    lock = threading.Lock()
    started = threading.Barrier(601)

    def reader(k):
        started.wait(60)
        n = 0
        while not stop.is_set():
            try:
                assert coll.find_one({"_id": k % 100})["v"] == k % 100
                n += 1
            except Exception as e:  # noqa: BLE001 - counted
                errors.append(repr(e))
        with lock:
            reads[0] += n

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(600)]
    for t in threads:
        t.start()
    started.wait(60)
    failovers(sim)
    stop.set()
    for t in threads:
        t.join(60)
    report = {"connections": 600, "reads": reads[0], "read_errors": len(errors),
              "replays": proxy.metric("holdfast_replays_total"),
              "held": proxy.metric("holdfast_held_requests_total", outcome="released"),
              "client_connections_peak": proxy.metric("holdfast_client_connections_total")}
    print("seed scenario:", json.dumps(report))
    assert not errors, errors[:5]
    assert reads[0] > 600
    assert proxy.metric("holdfast_client_connections_total") >= 600
    assert proxy.metric("holdfast_primary_changes_total") >= 8  # 4 losses + 4 new primaries (+ the first)


def run_mixed(proxy, sim, client_kw, writers=10, readers=10):
    client = pymongo.MongoClient(proxy.uri, maxPoolSize=100, **client_kw)
    coll = client.app.counters
    wc = coll.with_options(write_concern=pymongo.WriteConcern(w="majority"))
    coll.delete_many({})
    wc.insert_many([{"_id": w, "n": 0} for w in range(writers)])
    stop = threading.Event()
    acked = [0] * writers
    unknown = [0] * writers
    write_errors, read_errors = [], []

    def writer(w):
        while not stop.is_set():
            try:
                wc.update_one({"_id": w}, {"$inc": {"n": 1}})
                acked[w] += 1
            except PyMongoError as e:
                write_errors.append(e)
                if isinstance(e, pymongo.errors.OperationFailure) or hasattr(e, "details"):
                    d = getattr(e, "details", None) or {}
                    if d.get("holdfast", {}).get("outcome") == "unknown":
                        unknown[w] += 1

    def reader():
        while not stop.is_set():
            try:
                coll.find_one({"_id": 0})
            except PyMongoError as e:
                read_errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    failovers(sim, stepdowns=3, shutdown=False)
    stop.set()
    for t in threads:
        t.join(60)
    final = {d["_id"]: d["n"] for d in coll.find()}
    return acked, unknown, final, write_errors, read_errors


def test_mixed_legacy_reads_and_writes_lose_nothing_and_apply_nothing_twice(sim, proxy):
    acked, unknown, final, write_errors, read_errors = run_mixed(proxy, sim, LEGACY)
    print("mixed legacy:", json.dumps({"acknowledged": sum(acked), "unknown_outcome_errors": sum(unknown),
                                       "write_errors": len(write_errors), "read_errors": len(read_errors),
                                       "applied": sum(final.values())}))
    assert not read_errors, read_errors[:3]
    for w, n in final.items():
        # Every acknowledged $inc is there; an unknown-outcome one may or may
        # not be; nothing is applied twice.
        assert acked[w] <= n <= acked[w] + unknown[w], (w, acked[w], unknown[w], n)
    for e in write_errors:
        d = getattr(e, "details", None) or {}
        assert isinstance(e, pymongo.errors.NotPrimaryError), repr(e)
        assert d.get("code") == 11602 and d.get("holdfast", {}).get("outcome") == "unknown", d
        assert "may or may not have been applied" in d["errmsg"]
    assert sum(acked) > 100


def test_modern_client_sees_no_errors_at_all(sim, proxy):
    acked, unknown, final, write_errors, read_errors = run_mixed(proxy, sim, {})
    print("modern:", json.dumps({"acknowledged": sum(acked), "write_errors": len(write_errors),
                                 "read_errors": len(read_errors), "applied": sum(final.values())}))
    assert not write_errors and not read_errors, (write_errors[:3], read_errors[:3])
    for w, n in final.items():
        assert n == acked[w], (w, acked[w], n)


def test_blackholed_primary_reads_are_replayed(sim, proxy):
    client = pymongo.MongoClient(proxy.uri, **LEGACY)
    client.app.items.insert_one({"_id": 1})
    time.sleep(0.3)
    p = sim.primary()
    idx = sim.members.index(p)
    box = {}

    def read():
        t0 = time.time()
        box["doc"] = client.app.items.find_one({"_id": 1})
        box["seconds"] = time.time() - t0
    # A full partition: the primary answers nothing and the others elect a new one.
    sim.fault(simFault="blackhole", member=idx)
    t = threading.Thread(target=read)
    t.start()
    sim.fault(simFault="stepDown", member=idx)
    t.join(30)
    print("blackhole: read answered after %.2f s" % box.get("seconds", -1))
    assert box.get("doc") == {"_id": 1}, box
    # stall_probe_ms (2 s) + probe_timeout_ms (1 s) + slack; the election (1.5 s) overlaps.
    assert box["seconds"] < 6
    assert proxy.metric("holdfast_replays_total", **{"class": "read", "outcome": "network"}) >= 1
    sim.fault(simFault="unblackhole", member=idx)
