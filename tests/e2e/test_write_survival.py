"""Writes that survive failover: with write_retry = "retryable" (the
default) holdfast sends every eligible write without a txnNumber under one
of its own sessions and resends it after a failover; the new primary
deduplicates. Writers with driver retries off, w:"majority" $inc and
inserts, three stepdowns and a shutdown of the primary: no error reaches
the application and every counter is exact."""
import json
import threading

import pymongo
from pymongo.errors import PyMongoError

from test_failover import LEGACY
from test_scenarios import failovers


def write_load(uri, stop, writers, client_kw):
    """`writers` threads: even ones $inc their own counter, odd ones insert
    fresh documents. Returns per-writer acknowledged counts, errors, and the
    client."""
    client = pymongo.MongoClient(uri, maxPoolSize=writers + 5, **client_kw)
    db = client.get_database("survive", write_concern=pymongo.WriteConcern(w="majority"))
    db.counters.delete_many({})
    db.inserted.delete_many({})
    db.counters.insert_many([{"_id": w, "n": 0} for w in range(writers)])
    acked = [0] * writers
    errors = []

    def writer(w):
        k = 0
        while not stop.is_set():
            try:
                if w % 2 == 0:
                    db.counters.update_one({"_id": w}, {"$inc": {"n": 1}})
                else:
                    db.inserted.insert_one({"_id": f"{w}-{k}", "w": w})
                    k += 1
                acked[w] += 1
            except PyMongoError as e:
                errors.append(e)
                if w % 2 == 1:
                    k += 1  # that _id's fate is unknown: never reuse it

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    return client, db, threads, acked, errors


def check_exact(db, writers, acked):
    counters = {d["_id"]: d["n"] for d in db.counters.find()}
    for w in range(0, writers, 2):
        assert counters[w] == acked[w], ("$inc writer", w, acked[w], counters[w])
    for w in range(1, writers, 2):
        n = db.inserted.count_documents({"w": w})
        assert n == acked[w], ("insert writer", w, acked[w], n)


def test_legacy_writers_see_no_errors_and_every_count_is_exact(sim, proxy):
    before = proxy.metric("holdfast_writes_made_retryable_total")
    stop = threading.Event()
    writers = 40
    client, db, threads, acked, errors = write_load(proxy.uri, stop, writers, LEGACY)
    failovers(sim, stepdowns=3, shutdown=True)
    stop.set()
    for t in threads:
        t.join(60)
    made = proxy.metric("holdfast_writes_made_retryable_total") - before
    resent = proxy.metric("holdfast_writes_retried_total", reason="holdfast_session")
    print("legacy writers:", json.dumps({"writers": writers, "acknowledged": sum(acked), "errors": len(errors),
                                         "made_retryable": made, "resent": resent}))
    assert not errors, [repr(e) for e in errors[:5]]
    assert sum(acked) > 500
    assert made >= sum(acked)
    assert resent >= 1, "some writes were in flight at a failover and were resent"
    check_exact(db, writers, acked)


def test_a_modern_client_keeps_its_own_retryable_writes(sim, proxy):
    before = proxy.metric("holdfast_writes_made_retryable_total")
    stop = threading.Event()
    client, db, threads, acked, errors = write_load(proxy.uri, stop, 10, {"retryWrites": True})
    failovers(sim, stepdowns=1, shutdown=False)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, [repr(e) for e in errors[:5]]
    check_exact(db, 10, acked)
    # Its writes carry its own lsid and txnNumber: holdfast used none of its
    # sessions for them (the setup's delete_many is multi, so not eligible).
    assert proxy.metric("holdfast_writes_made_retryable_total") == before


def test_write_retry_safe_still_reports_unknown_outcomes(make_sim, make_proxy):
    sim = make_sim()
    proxy = make_proxy(sim.uri, 'write_retry = "safe"\n')
    stop = threading.Event()
    client, db, threads, acked, errors = write_load(proxy.uri, stop, 20, LEGACY)
    failovers(sim, stepdowns=2, shutdown=False)
    stop.set()
    for t in threads:
        t.join(60)
    # Every error is the documented one; nothing is applied twice.
    for e in errors:
        d = getattr(e, "details", None) or {}
        assert d.get("code") == 11602 and d.get("holdfast", {}).get("outcome") == "unknown", repr(e)
    assert proxy.metric("holdfast_writes_made_retryable_total") == 0
    counters = {d["_id"]: d["n"] for d in db.counters.find()}
    for w in range(0, 20, 2):
        assert acked[w] <= counters[w], (w, acked[w], counters[w])


def test_legacy_drivers_writes_survive_failover(sim, proxy):
    """pymongo 3.12 and the legacy Java driver 3.6.3 (retries off, w:majority
    $inc and inserts), several writers each, through three stepdowns and a
    shutdown: no error and exact accounting."""
    from legacy_clients import run_client

    writers = [("py312", f"py-{i}") for i in range(4)] + [("java", f"java-{i}") for i in range(4)]
    results = {}

    def run(driver, wid):
        results[wid] = run_client(driver, proxy.uri, "write-loop", 16, wid)

    threads = [threading.Thread(target=run, args=w) for w in writers]
    for t in threads:
        t.start()
    failovers(sim, stepdowns=3, shutdown=True, pause=2.5)
    for t in threads:
        t.join(120)
    check = pymongo.MongoClient(proxy.uri).legacy.write_loop
    summary = {}
    for driver, wid in writers:
        r = results[wid]
        assert "error" not in r, r
        assert r["errors"] == 0, (wid, r["first_errors"])
        doc = check.find_one({"_id": wid})
        assert doc["n"] == r["acked_incs"], (wid, doc, r["acked_incs"])
        stored = {d["_id"] for d in check.find({"_id": {"$regex": f"^{wid}-"}})}
        assert stored == set(r["acked_inserts"]), (wid, len(stored), len(r["acked_inserts"]))
        summary[driver] = summary.get(driver, 0) + r["acked_incs"] + len(r["acked_inserts"])
    print("legacy driver writers:", json.dumps(summary))
    assert all(v > 50 for v in summary.values()), summary
