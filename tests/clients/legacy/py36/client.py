"""Legacy-client scenarios for pymongo 3.x (3.6.1 in .venv/py36, 3.12.3 in .venv/py3).

    python client.py URI crud
    python client.py URI read-loop SECONDS [WORKERS]
    python client.py URI write-loop SECONDS WRITER_ID
    python client.py URI once

Prints one JSON object on stdout. Failures of the driver are reported in the
JSON (exit code 0); only a usage error exits non-zero.

pymongo 3.6 never sends OP_MSG: every command, including find/getMore/
killCursors, goes as an OP_QUERY on <db>.$cmd (3.12 uses OP_MSG on MongoDB
3.6+). Its C extensions do not work on Python >= 3.10, so .venv/py36 runs
the pure-Python build (pymongo.has_c() is False).
"""
import json
import os
import sys
import threading
import time
import warnings

import pymongo
from pymongo import monitoring
from pymongo.write_concern import WriteConcern

# count() and friends are deprecated in 3.12; the old API is the point here.
warnings.simplefilter("ignore", DeprecationWarning)

DB = "legacy"
TIMEOUTS = dict(serverSelectionTimeoutMS=10000, connectTimeoutMS=10000, socketTimeoutMS=30000)


def err(e, step=None):
    d = {"type": type(e).__name__, "code": getattr(e, "code", None), "message": str(e)[:500]}
    if step:
        d["step"] = step
    return d


class CommandLog(monitoring.CommandListener):
    """Counts the commands the driver runs (pymongo 3.6 also reports its
    OP_QUERY finds, getMores and killCursors as command events)."""

    def __init__(self):
        self.counts = {}
        self.failures = []

    def started(self, event):
        self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        self.failures.append((event.command_name, str(event.failure)[:200]))


def client(uri, **kw):
    opts = dict(TIMEOUTS, **kw)
    if pymongo.version_tuple >= (3, 9):
        opts["retryReads"] = False   # 3.6 has no retryable reads at all
    opts["retryWrites"] = False      # default False in 3.6, True from 3.9
    return pymongo.MongoClient(uri, **opts)


def crud(uri):
    log = CommandLog()
    out = {}
    c = client(uri, event_listeners=[log])
    coll = c[DB]["crud_%d_%d" % (os.getpid(), time.time() * 1000)]
    step = "insert"
    try:
        out["inserted"] = len(coll.insert_many([{"_id": i, "n": i} for i in range(10)]).inserted_ids)

        step = "find"
        before = log.counts.get("getMore", 0)
        out["found"] = len(list(coll.find().sort("_id", 1).batch_size(3)))
        out["batches_seen"] = 1 + log.counts.get("getMore", 0) - before

        step = "kill"
        failures = len(log.failures)
        cur = coll.find().sort("_id", 1).batch_size(2)
        next(cur)       # the first batch (2 documents); the server keeps the cursor open
        cur.close()     # killCursors; pymongo 3.x swallows its errors (and retries them later)
        out["killed"] = not any(name == "killCursors" for name, _ in log.failures[failures:])

        step = "dup"
        try:
            coll.insert_one({"_id": 0})
            raise RuntimeError("duplicate _id was accepted")
        except pymongo.errors.DuplicateKeyError as e:
            out["dup"] = err(e)

        step = "count"
        out["count"] = coll.count()  # the count command; count_documents() is 3.7+

        step = "upsert"
        r = coll.update_one({"_id": 100}, {"$set": {"n": 100}}, upsert=True)
        out["upsert"] = {"matched": r.matched_count, "modified": r.modified_count, "upserted_id": r.upserted_id}

        step = "delete"
        out["deleted"] = coll.delete_one({"_id": 1}).deleted_count

        step = "final_count"
        out["final_count"] = coll.count()
    except Exception as e:  # noqa: BLE001 - reported as JSON
        out["error"] = err(e, step)
    out["commands"] = log.counts
    c.close()
    return out


def read_loop(uri, seconds, workers=8):
    c = client(uri, maxPoolSize=max(100, workers))
    coll = c[DB]["read_loop"]
    key = "r-%d-%d" % (os.getpid(), time.time() * 1000)
    try:
        coll.insert_one({"_id": key, "n": 1})
    except Exception as e:  # noqa: BLE001
        return {"reads": 0, "errors": 1, "first_errors": [repr(e)], "error": err(e, "insert")}
    lock = threading.Lock()
    stats = {"reads": 0, "errors": 0, "first_errors": []}
    deadline = time.monotonic() + seconds

    def work():
        while time.monotonic() < deadline:
            try:
                if coll.find_one({"_id": key}) is None:
                    raise LookupError("document %s not found" % key)
                with lock:
                    stats["reads"] += 1
            except Exception as e:  # noqa: BLE001 - counted
                with lock:
                    stats["errors"] += 1
                    if len(stats["first_errors"]) < 5:
                        stats["first_errors"].append("%s: %s" % (type(e).__name__, str(e)[:300]))
                time.sleep(0.01)  # an error comes back at once; do not spin

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    return stats


def write_loop(uri, seconds, writer):
    c = client(uri)
    coll = c[DB].get_collection("write_loop", write_concern=WriteConcern(w="majority"))
    out = {"acked_incs": 0, "failed_incs": 0, "acked_inserts": [], "failed_inserts": [],
           "errors": 0, "first_errors": []}

    def failed(e):
        out["errors"] += 1
        if len(out["first_errors"]) < 5:
            out["first_errors"].append("%s: %s" % (type(e).__name__, str(e)[:300]))
        time.sleep(0.01)

    deadline = time.monotonic() + seconds
    k = 0
    while time.monotonic() < deadline:
        try:
            coll.update_one({"_id": writer}, {"$inc": {"n": 1}}, upsert=True)
            out["acked_incs"] += 1
        except Exception as e:  # noqa: BLE001 - counted; its outcome is unknown
            out["failed_incs"] += 1
            failed(e)
        doc_id = "%s-%d" % (writer, k)
        k += 1
        try:
            coll.insert_one({"_id": doc_id})
            out["acked_inserts"].append(doc_id)
        except Exception as e:  # noqa: BLE001
            out["failed_inserts"].append(doc_id)
            failed(e)
    c.close()
    return out


def once(uri):
    """One find_one and one insert_one, each reported as {"ok": true} or as the
    error the driver raised, with whether it is an AutoReconnect (what legacy
    applications catch to retry after a failover)."""
    c = client(uri)
    coll = c[DB]["once"]
    out = {}
    for step, op in (("find", lambda: coll.find_one({"_id": 1})),
                     ("insert", lambda: coll.insert_one({"at": time.time()}))):
        try:
            op()
            out[step] = {"ok": True}
        except Exception as e:  # noqa: BLE001 - reported as JSON
            d = err(e)
            d["auto_reconnect"] = isinstance(e, pymongo.errors.AutoReconnect)
            out[step] = d
    c.close()
    return out


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    uri, scenario, args = argv[1], argv[2], argv[3:]
    try:
        if scenario == "crud":
            out = crud(uri)
        elif scenario == "read-loop":
            out = read_loop(uri, float(args[0]), int(args[1]) if len(args) > 1 else 8)
        elif scenario == "write-loop":
            out = write_loop(uri, float(args[0]), args[1])
        elif scenario == "once":
            out = once(uri)
        else:
            sys.exit("unknown scenario %r\n%s" % (scenario, __doc__))
    except (IndexError, ValueError):
        sys.exit(__doc__)
    except Exception as e:  # noqa: BLE001 - the driver failed outside a step
        out = {"error": err(e)}
    out["driver"] = "pymongo %s%s" % (pymongo.version, " (C)" if pymongo.has_c() else "")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main(sys.argv)
