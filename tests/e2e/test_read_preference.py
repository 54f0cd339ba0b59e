"""Read preference through holdfast with real clients (pymongo 4, the Node
driver, mongosh): which member serves a read is read from that member's own
serverStatus.opcounters (the sim counts per member), not from holdfast."""
import json
import os
import threading
import time

import pymongo
from pymongo.read_preferences import Nearest, PrimaryPreferred, Secondary, SecondaryPreferred

from conftest import NODE_DIR, PY3, run, wait_until

DB, COLL = "e2e_rp", "docs"


def client(proxy, **kw):
    return pymongo.MongoClient(proxy.uri, **dict(dict(retryReads=False, retryWrites=False,
                                                      serverSelectionTimeoutMS=20000), **kw))


def seed(proxy, n=20):
    c = client(proxy)
    coll = c[DB].get_collection(COLL, write_concern=pymongo.WriteConcern(w=3))
    coll.drop()
    coll.insert_many([{"_id": i, "v": i} for i in range(n)])
    return c


def counters(sim, key="query"):
    out = []
    for m in sim.members:
        with sim.direct(m) as c:
            out.append(c.admin.command("serverStatus")["opcounters"][key])
    return out


def delta(after, before):
    return [a - b for a, b in zip(after, before)]


def roles(sim):
    p = sim.members.index(sim.primary())
    return p, [i for i in range(len(sim.members)) if i != p]


def reads(c, pref, n):
    coll = c[DB].get_collection(COLL, read_preference=pref)
    for i in range(n):
        assert coll.find_one({"_id": i % 20})["_id"] == i % 20


def test_secondary_reads_spread_over_both_secondaries(sim, proxy):
    c = seed(proxy)
    p, secs = roles(sim)
    before = counters(sim)
    counted = proxy.metric("holdfast_reads_total", mode="secondary", role="secondary")
    reads(c, Secondary(), 200)
    d = delta(counters(sim), before)
    assert d[p] == 0, d
    # A random member of the latency window: both secondaries serve a share.
    assert all(d[s] >= 30 for s in secs) and sum(d) == 200, d
    assert proxy.metric("holdfast_reads_total", mode="secondary", role="secondary") - counted == 200
    # Mode primary (the default) stays on the primary.
    before = counters(sim)
    reads(c, pymongo.ReadPreference.PRIMARY, 50)
    assert delta(counters(sim), before)[p] == 50


def test_node_driver_and_mongosh_read_from_secondaries(sim, proxy):
    seed(proxy)
    p, secs = roles(sim)
    before = counters(sim)
    out = run(["node", os.path.join(NODE_DIR, "read_preference.mjs"), proxy.uri, "secondary", "100"])
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": 100}
    d = delta(counters(sim), before)
    assert d[p] == 0 and sum(d) == 100 and all(d[s] > 0 for s in secs), d

    before = counters(sim)
    mongosh = os.path.join(NODE_DIR, "node_modules", ".bin", "mongosh")
    script = (f"const c = db.getSiblingDB('{DB}').getCollection('{COLL}'); let n = 0;"
              "for (let i = 0; i < 40; i++) { if (c.findOne({_id: i % 20})) n++; } print('found=' + n);")
    out = run([mongosh, proxy.uri + "?readPreference=secondaryPreferred", "--quiet", "--norc", "--eval", script])
    assert "found=40" in out, out
    d = delta(counters(sim), before)
    assert d[p] == 0 and sum(d) >= 40, d


def test_tag_sets_choose_members_in_order(make_sim, make_proxy):
    sim = make_sim(args=["--member-tags", "0:dc=a", "--member-tags", "1:dc=b", "--member-tags", "2:dc=c"])
    proxy = make_proxy(sim.uri, "pool_size = 10\n")
    c = seed(proxy)
    p, secs = roles(sim)
    dc = {0: "a", 1: "b", 2: "c"}
    target = secs[1]
    before = counters(sim)
    # The first set matches no member, the second names one secondary.
    reads(c, Secondary(tag_sets=[{"dc": "nowhere"}, {"dc": dc[target]}]), 40)
    d = delta(counters(sim), before)
    assert d[target] == 40 and sum(d) == 40, d
    # Node: a tag set naming the primary's tags matches no secondary, then {}.
    before = counters(sim)
    tags = json.dumps([{"dc": dc[p]}, {}])
    out = run(["node", os.path.join(NODE_DIR, "read_preference.mjs"), proxy.uri, "secondary", "30", tags])
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": 30}
    d = delta(counters(sim), before)
    assert d[p] == 0 and sum(d) == 30, d


def test_max_staleness_excludes_a_lagging_secondary(make_sim, make_proxy):
    # The primary writes a no-op every second, so its lastWriteDate advances
    # while the lagging member's stays where its lag began.
    sim = make_sim(args=["--periodic-noop-ms", "1000"])
    proxy = make_proxy(sim.uri, "pool_size = 10\n")
    c = seed(proxy)
    p, (lagging, fresh) = roles(sim)
    sim.fault(simFault="lag", member=lagging, ms=600_000)
    stale_ok = Secondary(max_staleness=90)

    def excluded():
        before = counters(sim)
        reads(c, stale_ok, 20)
        return delta(counters(sim), before)[lagging] == 0
    # Staleness grows by a second per second from the moment the lag began:
    # about 90 s until the member passes maxStalenessSeconds.
    wait_until(excluded, 150, "the lagging member excluded by maxStalenessSeconds")
    before = counters(sim)
    reads(c, stale_ok, 60)
    d = delta(counters(sim), before)
    assert d[lagging] == 0 and d[fresh] == 60, d
    # Without maxStalenessSeconds both secondaries still serve.
    before = counters(sim)
    reads(c, Secondary(), 60)
    d = delta(counters(sim), before)
    assert d[lagging] > 0 and d[fresh] > 0 and d[p] == 0, d
    # Below 90 s: the error mongos gives.
    try:
        c[DB].command({"find": COLL, "$readPreference": {"mode": "secondary", "maxStalenessSeconds": 30}})
        raise AssertionError("maxStalenessSeconds 30 was accepted")
    except pymongo.errors.OperationFailure as e:
        assert e.code == 160, e.details


def test_reads_that_allow_a_secondary_do_not_pause_during_an_election(make_sim, make_proxy):
    sim = make_sim(election_ms=3000)
    proxy = make_proxy(sim.uri, "pool_size = 20\n")
    seed(proxy)
    modes = {"secondaryPreferred": SecondaryPreferred(), "primaryPreferred": PrimaryPreferred(),
             "nearest": Nearest(), "primary": pymongo.ReadPreference.PRIMARY}
    results = {m: {"ok": 0, "errors": [], "longest": 0.0} for m in modes}
    stop = threading.Event()

    def reader(mode):
        c = client(proxy)
        coll = c[DB].get_collection(COLL, read_preference=modes[mode])
        r = results[mode]
        i = 0
        while not stop.is_set():
            t0 = time.time()
            try:
                assert coll.find_one({"_id": i % 20})["_id"] == i % 20
                r["ok"] += 1
            except Exception as e:  # noqa: BLE001 - counted, asserted below
                r["errors"].append(repr(e))
            r["longest"] = max(r["longest"], time.time() - t0)
            i += 1
        c.close()
    threads = [threading.Thread(target=reader, args=(m,)) for m in modes for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1)
    held = proxy.metric("holdfast_held_requests_total", outcome="released")
    old = sim.step_down()
    wait_until(lambda: sim.primary() not in (None, old), 20, "a new primary")
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(30)
    for m, r in results.items():
        assert r["errors"] == [] and r["ok"] > 0, (m, r)
    # The election takes 3 s: a read that allows a secondary is answered by
    # one at once; primary-mode reads were held at the gate for the new primary.
    for m in ("secondaryPreferred", "primaryPreferred", "nearest"):
        assert results[m]["longest"] < 0.5, (m, results[m]["longest"])
    assert results["primary"]["longest"] > 1.0, results["primary"]
    assert proxy.metric("holdfast_held_requests_total", outcome="released") > held


def test_election_reads_secondary_answers_primary_mode_reads_during_an_election(make_sim, make_proxy):
    sim = make_sim(election_ms=3000)
    proxy = make_proxy(sim.uri, 'pool_size = 10\nelection_reads = "secondary"\n')
    c = seed(proxy)
    old = sim.step_down()
    t0 = time.time()
    found = c[DB][COLL].find_one({"_id": 3})
    waited = time.time() - t0
    assert found == {"_id": 3, "v": 3}
    assert sim.primary() is None, "the read was meant to run while no primary existed"
    assert waited < 1.0, waited
    wait_until(lambda: sim.primary() not in (None, old), 20, "a new primary")


def test_causal_read_on_a_lagging_secondary_sees_the_write(sim, proxy):
    c = seed(proxy)
    p, secs = roles(sim)
    for s in secs:
        sim.fault(simFault="lag", member=s, ms=1500)
    coll = c[DB].get_collection(COLL, write_concern=pymongo.WriteConcern(w=1))
    on_secondary = coll.with_options(read_preference=SecondaryPreferred())
    # Without a session the lag is visible...
    coll.insert_one({"_id": "plain"})
    assert on_secondary.find_one({"_id": "plain"}) is None
    # ...with a causally consistent session the read waits for the write.
    with c.start_session(causal_consistency=True) as s:
        coll.insert_one({"_id": "causal"}, session=s)
        assert on_secondary.find_one({"_id": "causal"}, session=s) == {"_id": "causal"}
    for s in secs:
        sim.fault(simFault="lag", member=s, ms=0)


def test_a_secondary_cursor_survives_a_stepdown_of_the_primary(sim, proxy):
    c = seed(proxy, n=100)
    cursor = c[DB].get_collection(COLL, read_preference=Secondary()).find({}).sort("_id", 1).batch_size(10)
    got = [next(cursor)["_id"] for _ in range(10)]
    before = counters(sim, "getmore")
    sim.step_down()
    got += [d["_id"] for d in cursor]
    assert got == list(range(100))
    d = delta(counters(sim, "getmore"), before)
    # Every getMore went to the one member that holds the cursor.
    assert sorted(d)[-1] >= 9 and sorted(d)[:2] == [0, 0], d


PY3_SECONDARY_OK = """
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], readPreference=sys.argv[2], serverSelectionTimeoutMS=10000)
coll = c.e2e_rp.docs
print(sum(1 for i in range(30) if coll.find_one({"_id": i % 20})))
print(c.admin.command("ismaster")["maxWireVersion"])
"""


def test_pymongo3_over_op_query_reads_from_secondaries(sim, make_proxy):
    # At wire version 3 pymongo 3.12 sends OP_QUERY finds: secondaryPreferred
    # as the SecondaryOk flag alone, secondary wrapped in $readPreference.
    proxy = make_proxy(sim.uri, "advertise_max_wire_version = 3\n")
    with sim.direct(sim.primary()) as c:  # pymongo 4 needs wire version 9
        c[DB].get_collection(COLL, write_concern=pymongo.WriteConcern(w=3)).insert_many(
            [{"_id": i, "v": i} for i in range(20)])
    p, secs = roles(sim)
    for mode in ("secondaryPreferred", "secondary"):
        before = counters(sim)
        found, wire = run([PY3, "-c", PY3_SECONDARY_OK, proxy.uri, mode]).split()[-2:]
        assert (found, wire) == ("30", "3")
        d = delta(counters(sim), before)
        assert d[p] == 0 and sum(d) == 30, (mode, d)
