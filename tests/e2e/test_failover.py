"""The failover contract (docs/failover.md), one test per row, plus the seed
scenario, mixed legacy reads and writes, a modern client and a blackholed
primary. Real pymongo clients against holdfast and holdfast-sim processes."""
import threading
import time

import pymongo
import pytest
from pymongo.errors import ExecutionTimeout, OperationFailure, PyMongoError

LEGACY = dict(retryReads=False, retryWrites=False, serverSelectionTimeoutMS=20000)


def legacy(proxy, **kw):
    return pymongo.MongoClient(proxy.uri, **dict(LEGACY, **kw))


def in_thread(fn):
    box = {}

    def run():
        t0 = time.time()
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001 - returned to the test
            box["error"] = e
        box["seconds"] = time.time() - t0
    t = threading.Thread(target=run)
    t.start()
    return t, box


def member_index(sim, addr):
    return sim.members.index(addr)


def in_flight_at_stepdown(sim, fn):
    """Slows the primary to 1 s per operation, starts fn in a thread, and
    steps that primary down while fn's operation is in flight. Returns the
    old primary and fn's outcome box (after it ended)."""
    p = sim.primary()
    with sim.direct(p) as d:
        d.admin.command({"simFault": "latency", "ms": 1000})
    t, box = in_thread(fn)
    time.sleep(0.3)
    sim.fault(simFault="stepDown", member=member_index(sim, p))
    t.join(30)
    return p, box


# Row: new request, no primary known -> held, then sent to the new primary.
def test_new_request_is_held_until_a_new_primary(sim, proxy):
    c = legacy(proxy)
    c.db.c.insert_one({"_id": 1}, )
    before = proxy.metric("holdfast_held_requests_total", outcome="released")
    old = sim.step_down()
    t0 = time.time()
    assert c.db.c.find_one({"_id": 1}) == {"_id": 1}
    waited = time.time() - t0
    assert proxy.metric("holdfast_held_requests_total", outcome="released") > before
    assert sim.primary() not in (None, old)
    assert waited < 5, waited


# Row: hold queue full -> one clear error for the refused requests.
def test_full_hold_queue_refuses_with_a_clear_error(make_sim, make_proxy):
    sim = make_sim(election_ms=2500)
    proxy = make_proxy(sim.uri, "max_held_requests = 3\n")
    c = legacy(proxy, maxPoolSize=50)
    c.db.c.insert_one({"_id": 1})
    sim.step_down()
    boxes = [in_thread(lambda: c.db.c.find_one({"_id": 1})) for _ in range(12)]
    for t, _ in boxes:
        t.join(30)
    errors = [b["error"] for _, b in boxes if "error" in b]
    ok = [b for _, b in boxes if "result" in b]
    assert len(ok) >= 3 and errors, (len(ok), errors)
    for e in errors:
        assert isinstance(e, pymongo.errors.NotPrimaryError), repr(e)
        assert e.details["code"] == 10107
        assert "hold queue is full" in e.details["errmsg"] and "was not sent" in e.details["errmsg"]
        assert e.details["holdfast"]["reason"] == "queue_full"
    assert proxy.metric("holdfast_held_requests_total", outcome="queue_full") == len(errors)


# Row: hold_timeout passes with no primary -> one clear error naming the wait.
def test_hold_timeout_gives_a_clear_error(make_sim, make_proxy):
    sim = make_sim(election_ms=4000)
    proxy = make_proxy(sim.uri, "hold_timeout_ms = 500\n")
    c = legacy(proxy)
    c.db.c.insert_one({"_id": 1})
    sim.step_down()
    t0 = time.time()
    with pytest.raises(pymongo.errors.NotPrimaryError) as ei:
        c.db.c.find_one({"_id": 1})
    assert 0.4 < time.time() - t0 < 3
    msg = ei.value.details["errmsg"]
    assert "within 0.5 s (hold_timeout)" in msg and "was not sent" in msg, msg
    # Once the election completes the same client works again, without reconnecting.
    deadline = time.time() + 10
    while True:
        try:
            assert c.db.c.find_one({"_id": 1}) == {"_id": 1}
            break
        except pymongo.errors.NotPrimaryError:
            assert time.time() < deadline
            time.sleep(0.2)


# Row: maxTimeMS -> time spent held counts against it.
def test_max_time_ms_counts_time_held(make_sim, make_proxy):
    sim = make_sim(election_ms=3000)
    proxy = make_proxy(sim.uri)
    c = legacy(proxy)
    c.db.c.insert_one({"_id": 1})
    sim.step_down()
    t0 = time.time()
    with pytest.raises(ExecutionTimeout) as ei:
        c.db.c.find_one({"_id": 1}, max_time_ms=300)
    assert time.time() - t0 < 2
    assert ei.value.code == 50
    assert "held" in ei.value.details["errmsg"]


# Row: read in flight when the primary fails (network error) -> replayed once.
def test_read_in_flight_is_replayed_after_the_primary_dies(sim, proxy):
    c = legacy(proxy)
    c.db.c.insert_one({"_id": 1, "v": "x"}, )
    time.sleep(0.3)  # let it replicate (w:1)
    p = sim.primary()
    with sim.direct(p) as d:
        d.admin.command({"simFault": "latency", "ms": 1500})
    t, box = in_thread(lambda: c.db.c.find_one({"_id": 1}))
    time.sleep(0.4)
    sim.fault(simFault="kill", member=member_index(sim, p))
    t.join(30)
    assert box.get("result") == {"_id": 1, "v": "x"}, box
    assert proxy.metric("holdfast_replays_total", **{"class": "read", "outcome": "network"}) >= 1


# Row: read answered with a state-change error -> replayed on the new primary.
def test_reads_refused_by_the_old_primary_are_replayed(sim, proxy):
    c = legacy(proxy, maxPoolSize=40)
    c.db.c.insert_one({"_id": 1})
    p = sim.primary()
    # The old primary's hello replies are slowed, so holdfast keeps sending
    # reads to it for a moment after the stepdown: they get 13435.
    with sim.direct(p) as d:
        d.admin.command({"simFault": "latency", "ms": 300})
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                assert c.db.c.find_one({"_id": 1}) == {"_id": 1}
            except Exception as e:  # noqa: BLE001
                errors.append(e)
    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    sim.fault(simFault="stepDown", member=member_index(sim, p))
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[:3]
    assert proxy.metric("holdfast_replays_total", **{"class": "read", "outcome": "state_change"}) >= 1


# Row: getMore/killCursors -> the cursor's member; survives a stepdown.
def test_cursor_survives_a_stepdown(sim, proxy):
    c = legacy(proxy)
    c.db.c.insert_many([{"i": i} for i in range(50)])
    cur = c.db.c.find({}, batch_size=5).sort("i", 1)
    first = [next(cur)["i"] for _ in range(7)]
    sim.step_down()
    rest = [d["i"] for d in cur]
    assert first + rest == list(range(50))


# Row: getMore whose member is gone -> a clear CursorNotFound.
def test_cursor_on_a_dead_member_is_cursor_not_found(sim, proxy):
    c = legacy(proxy)
    c.db.c.insert_many([{"i": i} for i in range(50)])
    p = sim.primary()
    cur = c.db.c.find({}, batch_size=5)
    next(cur)
    sim.fault(simFault="kill", member=member_index(sim, p))
    with pytest.raises(OperationFailure) as ei:
        list(cur)
    assert ei.value.code == 43, ei.value.details
    assert "cursor" in ei.value.details["errmsg"] and p in ei.value.details["errmsg"]


# Row: retryable write (lsid+txnNumber) in flight -> replayed, applied once.
def test_retryable_write_in_flight_is_replayed_once(sim, proxy):
    c = pymongo.MongoClient(proxy.uri, retryWrites=True)
    c.db.c.insert_one({"_id": "setup"})
    _, box = in_flight_at_stepdown(sim, lambda: c.db.c.update_one({"_id": "n"}, {"$inc": {"v": 1}}, upsert=True))
    assert "error" not in box, box
    assert c.db.c.find_one({"_id": "n"}) == {"_id": "n", "v": 1}
    assert proxy.metric("holdfast_writes_retried_total", reason="retryable_write") >= 1


# Row: write refused with NotWritablePrimary before executing -> sent to the new primary.
def test_write_refused_as_not_primary_is_sent_to_the_new_primary(make_sim, make_proxy):
    sim = make_sim(election_ms=2500)
    proxy = make_proxy(sim.uri)
    c = legacy(proxy)
    c.db.c.insert_one({"_id": "setup"})
    p = sim.primary()
    # Slow the primary down (its hello replies too): holdfast learns of the
    # stepdown about a second late and sends the write to the old primary,
    # which refuses it with 10107 without executing it.
    with sim.direct(p) as d:
        d.admin.command({"simFault": "latency", "ms": 1000})
    sim.fault(simFault="stepDown", member=member_index(sim, p))
    t0 = time.time()
    c.db.c.update_one({"_id": "n"}, {"$inc": {"v": 1}}, upsert=True)
    assert time.time() - t0 > 0.9
    assert c.db.c.find_one({"_id": "n"}) == {"_id": "n", "v": 1}
    assert proxy.metric("holdfast_writes_retried_total", reason="not_writable_primary") >= 1


# Row: write in flight with unknown outcome -> one clear error, not retried.
@pytest.mark.parametrize("write_retry", ["safe", "never"])
def test_write_of_unknown_outcome_gets_one_clear_error(make_sim, make_proxy, write_retry):
    sim = make_sim()
    proxy = make_proxy(sim.uri, f'write_retry = "{write_retry}"\n')
    # "never" applies to retryable writes too.
    c = legacy(proxy) if write_retry == "safe" else pymongo.MongoClient(proxy.uri, retryWrites=True)
    c.db.c.insert_one({"_id": "setup"})
    p, box = in_flight_at_stepdown(sim, lambda: c.db.c.update_one({"_id": "n"}, {"$inc": {"v": 1}}, upsert=True))
    e = box.get("error")
    assert isinstance(e, pymongo.errors.NotPrimaryError), box
    d = e.details
    assert d["code"] == 11602 and d["codeName"] == "InterruptedDueToReplStateChange"
    msg = d["errmsg"]
    assert "update" in msg and p in msg and "may or may not have been applied" in msg and "did not retry" in msg, msg
    assert "RetryableWriteError" not in d.get("errorLabels", [])
    assert d["holdfast"] == {"outcome": "unknown", "command": "update", "member": p, "retried": False}
    assert proxy.metric("holdfast_write_errors_total", reason="write") == 1
    # The client keeps working through holdfast at once (its pool was not cleared).
    assert c.db.c.find_one({"_id": "setup"}) == {"_id": "setup"}


# Row: statement of a transaction in flight -> TransientTransactionError, never replayed.
def test_transaction_statement_in_flight_is_labelled_transient(sim, proxy):
    c = pymongo.MongoClient(proxy.uri)
    c.db.c.insert_one({"_id": "setup"})
    s = c.start_session()
    s.start_transaction()
    c.db.c.insert_one({"_id": "t1"}, session=s)
    p, box = in_flight_at_stepdown(sim, lambda: c.db.c.insert_one({"_id": "t2"}, session=s))
    e = box.get("error")
    assert isinstance(e, PyMongoError), box
    assert e.has_error_label("TransientTransactionError"), e.details
    # The label is in the reply holdfast sent (not only added by the driver).
    assert "TransientTransactionError" in e.details["errorLabels"], e.details
    assert e.details["topologyVersion"]["processId"] != sim.hello(p)["topologyVersion"]["processId"]
    try:
        s.abort_transaction()
    except PyMongoError:
        pass
    assert c.db.c.find_one({"_id": "t2"}) is None
    assert c.db.c.find_one({"_id": "t1"}) is None


# Row: w:0 write during an election -> held and delivered, not lost.
def test_unacknowledged_write_during_an_election_is_delivered(sim, proxy):
    c = legacy(proxy)
    c.db.c.insert_one({"_id": "setup"})
    sim.step_down()
    c.db.c.with_options(write_concern=pymongo.WriteConcern(w=0)).insert_one({"_id": "w0"})
    deadline = time.time() + 10
    while c.db.c.find_one({"_id": "w0"}) is None:
        assert time.time() < deadline, "w:0 write lost"
        time.sleep(0.1)
