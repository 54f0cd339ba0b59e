"""The chaos soak (tests/e2e/chaos.py) for 75 s: a seeded random schedule
of stepdowns, kills, partitions, latency spikes and replication lag against
legacy readers and writers (pymongo 3.6.1, mgo, the Java driver 3.6.3) and
a modern client, with exact accounting. HOLDFAST_CHAOS_SEED picks another
schedule; the seed is printed, so a failure can be replayed. The 10-minute
run is `bash benches/chaos.sh`."""
import json
import os

from chaos import soak

SEED = int(os.environ.get("HOLDFAST_CHAOS_SEED", "20261207"))


def test_chaos_soak_has_exact_accounting(tmp_path):
    s = soak(str(tmp_path), 75, SEED)
    print("chaos soak:", json.dumps({k: v for k, v in s.items() if k not in ("faults", "clients")}))
    assert s["problems"] == [], s["problems"]
    assert s["read_errors"] == 0, s["clients"]
    assert s["undocumented_errors"] == [], s["undocumented_errors"]
    assert sum(s["fault_counts"].values()) >= 8, s["faults"]
    assert s["reads"] > 1000 and s["writes_acked"] > 300, s
