"""Chaos soak: a seeded random schedule of faults against holdfast in front
of holdfast-sim, with legacy readers and writers and a modern client, and
exact accounting at the end.

Faults (one at a time, a few seconds apart, each undone before the next):
stepdown of the primary; kill of the primary (revived after 1-3 s); a
blackholed primary (partitioned: it answers nothing while the others elect)
healed after 1-3 s; a latency spike on the primary (50-300 ms per request
for 2 s); replication lag on a secondary (0.5-2 s for 3 s).

Clients for the whole run:
- legacy readers: pymongo 3.6.1 (OP_QUERY) and mgo, find-one loops, driver
  retries off;
- legacy writers: pymongo 3.6.1 and the Java driver 3.6.3, `$inc` and
  inserts with w:"majority", retries off (the write-loop scenario of
  tests/clients/legacy, which reports every acknowledged id);
- a modern client: pymongo 4, inserts with w:"majority" (its own retryable
  writes) and secondaryPreferred reads.

Checks: every acknowledged w:"majority" write is present exactly once
(counters equal the acknowledged increments, the stored ids are exactly the
acknowledged ones, plus at most those whose outcome was reported unknown);
no read error; every error is one of holdfast's documented clear ones; the
resident memory of holdfast sampled every second, with its slope.

    python tests/e2e/chaos.py --seconds 600 --seed 7 [--json FILE]

tests/e2e/test_chaos.py runs it for 75 s in CI.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pymongo  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402

from conftest import Holdfast, Sim  # noqa: E402
from legacy_clients import run_client  # noqa: E402


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def slope_mb_per_min(samples):
    """Least-squares slope of (seconds, kB) samples, in MB per minute."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    sxx = sum((t - mx) ** 2 for t, _ in samples)
    if sxx == 0:
        return 0.0
    sxy = sum((t - mx) * (v - my) for t, v in samples)
    return sxy / sxx * 60 / 1024


def documented(message):
    """Errors holdfast may return by its contract, when a fault outlasts
    what it can mask (not expected here, but allowed)."""
    return any(s in message for s in ("holdfast:", "may or may not have been applied", "not master"))


class Faults:
    def __init__(self, sim, rng, log):
        self.sim, self.rng, self.log = sim, rng, log

    def primary_index(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            p = self.sim.primary()
            if p:
                return self.sim.members.index(p)
            time.sleep(0.1)
        raise RuntimeError("no primary for 30 s")

    def one(self):
        kind = self.rng.choice(["stepdown", "kill", "blackhole", "latency", "lag"])
        i = self.primary_index()
        t0 = time.time()
        if kind == "stepdown":
            self.sim.step_down(secs=2)
        elif kind == "kill":
            self.sim.fault(simFault="kill", member=i)
            time.sleep(self.rng.uniform(1, 3))
            self.sim.fault(simFault="revive", member=i)
        elif kind == "blackhole":
            self.sim.fault(simFault="blackhole", member=i)
            self.sim.fault(simFault="stepDown", member=i, secs=2)
            time.sleep(self.rng.uniform(1, 3))
            self.sim.fault(simFault="unblackhole", member=i)
        elif kind == "latency":
            ms = self.rng.randint(50, 300)
            self.sim.fault(simFault="latency", member=i, ms=ms)
            time.sleep(2)
            self.sim.fault(simFault="latency", member=i, ms=0)
        else:
            j = self.rng.choice([k for k in range(len(self.sim.members)) if k != i])
            ms = self.rng.randint(500, 2000)
            self.sim.fault(simFault="lag", member=j, ms=ms)
            time.sleep(3)
            self.sim.fault(simFault="lag", member=j, ms=0)
        self.log.append({"at": round(t0, 1), "fault": kind, "member": i, "took": round(time.time() - t0, 1)})


def modern(uri, stop, out):
    c = pymongo.MongoClient(uri, retryWrites=True, retryReads=True, serverSelectionTimeoutMS=30000,
                            readPreference="secondaryPreferred")
    coll = c.get_database("chaos", write_concern=pymongo.WriteConcern(w="majority")).modern
    k = 0
    while not stop.is_set():
        _id = f"m-{k}"
        k += 1
        try:
            coll.insert_one({"_id": _id})
            out["acked"].append(_id)
        except Exception as e:  # noqa: BLE001 - every failure is accounted for
            out["failed"].append(_id)
            out["errors"].append(f"{type(e).__name__}: {str(e)[:300]}")
        try:
            coll.find_one({"_id": out["acked"][-1]} if out["acked"] else {})
            out["reads"] += 1
        except Exception as e:  # noqa: BLE001
            out["read_errors"].append(f"{type(e).__name__}: {str(e)[:300]}")
    c.close()


def soak(work_dir, seconds, seed):
    rng = random.Random(seed)
    sim = Sim(work_dir, election_ms=1500)
    proxy = Holdfast(work_dir, sim.uri, "--pool-size", "50")
    pid = proxy.proc.p.pid
    results, threads, faults_log = {}, [], []
    stop = threading.Event()
    mem = []
    try:
        setup = pymongo.MongoClient(proxy.uri)
        setup.legacy.write_loop.delete_many({})
        setup.chaos.modern.delete_many({})

        def client(name, driver, scenario, *args):
            results[name] = run_client(driver, proxy.uri, scenario, *args, timeout=seconds + 180)

        plan = [("py36-reader", "py36", "read-loop", seconds, 8), ("mgo-reader", "mgo", "read-loop", seconds, 4),
                ("py36-writer", "py36", "write-loop", seconds, "py36-w"),
                ("java-writer", "java", "write-loop", seconds, "java-w")]
        for name, driver, scenario, *args in plan:
            threads.append(threading.Thread(target=client, args=(name, driver, scenario, *args)))
        modern_out = {"acked": [], "failed": [], "errors": [], "reads": 0, "read_errors": []}
        threads.append(threading.Thread(target=modern, args=(proxy.uri, stop, modern_out)))
        t_start = time.time()
        for t in threads:
            t.start()

        def sample():
            while not stop.is_set():
                mem.append((time.time() - t_start, rss_kb(pid)))
                time.sleep(1)
        sampler = threading.Thread(target=sample)
        sampler.start()
        faults = Faults(sim, rng, faults_log)
        time.sleep(5)
        while time.time() - t_start < seconds - 12:
            faults.one()
            time.sleep(rng.uniform(2, 4))
        while time.time() - t_start < seconds:
            time.sleep(0.5)
        stop.set()
        for t in threads + [sampler]:
            t.join(seconds + 240)
        summary = account(setup, results, modern_out)
        warm = [s for s in mem if s[0] >= seconds * 0.2]
        summary.update({
            "seed": seed, "seconds": seconds, "faults": faults_log,
            "fault_counts": {k: sum(1 for f in faults_log if f["fault"] == k)
                             for k in ("stepdown", "kill", "blackhole", "latency", "lag")},
            "rss_mb_start": round(mem[0][1] / 1024, 1) if mem else None,
            "rss_mb_max": round(max(v for _, v in mem) / 1024, 1) if mem else None,
            "rss_mb_end": round(mem[-1][1] / 1024, 1) if mem else None,
            "rss_slope_mb_per_min": round(slope_mb_per_min(warm), 3),
            "holdfast_replays": proxy.metric("holdfast_replays_total"),
            "holdfast_writes_resent": proxy.metric("holdfast_writes_retried_total"),
        })
        setup.close()
        return summary
    finally:
        stop.set()
        proxy.stop()
        sim.stop()


def account(setup, results, modern_out):
    """Exact accounting of what every client saw against what is stored."""
    problems = []
    s = {"reads": 0, "read_errors": 0, "writes_acked": 0, "write_errors": 0, "undocumented_errors": []}
    for name, r in results.items():
        if "error" in r:
            problems.append(f"{name}: {r['error']}")
            continue
        for e in r.get("first_errors", []):
            if not documented(e):
                s["undocumented_errors"].append(f"{name}: {e[:200]}")
        if "reads" in r:
            s["reads"] += r["reads"]
            s["read_errors"] += r["errors"]
            continue
        wid = name.replace("-writer", "-w")
        s["writes_acked"] += r["acked_incs"] + len(r["acked_inserts"])
        s["write_errors"] += r["errors"]
        doc = setup.legacy.write_loop.find_one({"_id": wid}) or {"n": 0}
        lo, hi = r["acked_incs"], r["acked_incs"] + r["failed_incs"]
        if not lo <= doc["n"] <= hi:
            problems.append(f"{wid}: counter {doc['n']} outside acknowledged [{lo}, {hi}]")
        stored = {d["_id"] for d in setup.legacy.write_loop.find({"_id": {"$regex": f"^{wid}-"}})}
        acked, failed = set(r["acked_inserts"]), set(r["failed_inserts"])
        if not acked <= stored:
            problems.append(f"{wid}: {len(acked - stored)} acknowledged inserts missing")
        if not stored <= acked | failed:
            problems.append(f"{wid}: {len(stored - acked - failed)} stored inserts never sent")
    stored = {d["_id"] for d in setup.chaos.modern.find()}
    acked = set(modern_out["acked"])
    if not acked <= stored or not stored <= acked | set(modern_out["failed"]):
        problems.append(f"modern: stored {len(stored)}, acknowledged {len(acked)}, failed {len(modern_out['failed'])}")
    s["writes_acked"] += len(acked)
    s["write_errors"] += len(modern_out["errors"])
    s["reads"] += modern_out["reads"]
    s["read_errors"] += len(modern_out["read_errors"])
    for e in modern_out["errors"] + modern_out["read_errors"]:
        if not documented(e):
            s["undocumented_errors"].append(f"modern: {e[:200]}")
    s["problems"] = problems
    s["clients"] = {k: {kk: v for kk, v in r.items() if kk not in ("acked_inserts", "failed_inserts")}
                    for k, r in results.items()}
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json", help="also write the summary to this file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="holdfast-chaos-") as d:
        summary = soak(d, a.seconds, a.seed)
    text = json.dumps(summary, indent=1)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    ok = not summary["problems"] and summary["read_errors"] == 0 and not summary["undocumented_errors"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
