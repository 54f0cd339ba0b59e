"""pymongo (4.x or 3.12.3) against holdfast-sim as a replica set.
Usage: python sim_pymongo.py URI  — prints one JSON line; exits non-zero on failure."""
import json
import sys
import time

import pymongo
from pymongo.errors import NotPrimaryError

uri = sys.argv[1]
client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
coll = client.simdb.things
coll.drop()
coll.insert_many([{"i": i} for i in range(120)])
assert coll.count_documents({"i": {"$gte": 100}}) == 20
assert coll.update_one({"i": 1}, {"$set": {"x": 1}}).modified_count == 1
assert coll.delete_many({"i": {"$lt": 10}}).deleted_count == 10
assert [d["i"] for d in coll.find({}, batch_size=7).sort("i", -1)][:3] == [119, 118, 117]
# Discovery: all three members, one primary.
deadline = time.time() + 10
while True:
    desc = client.topology_description
    kinds = sorted(sd.server_type_name for sd in desc.server_descriptions().values())
    if kinds == ["RSPrimary", "RSSecondary", "RSSecondary"]:
        break
    assert time.time() < deadline, kinds
    time.sleep(0.1)
primary = "%s:%d" % client.primary
# A legacy client on the primary; step it down; its next write is refused.
legacy = pymongo.MongoClient(primary, directConnection=True, retryWrites=False, retryReads=False)
legacy.simdb.things.insert_one({"before": True})
legacy.admin.command({"replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 0, "force": True})
try:
    legacy.simdb.things.insert_one({"after": True})
    raise AssertionError("write to the old primary succeeded")
except NotPrimaryError as e:
    err = {"type": type(e).__name__, "code": e.details.get("code")}
# The replica-set client finds the new primary.
t0 = time.time()
coll.insert_one({"after_stepdown": True})
print(json.dumps({"pymongo": pymongo.version, "members": kinds, "old_primary_error": err,
                  "new_primary": "%s:%d" % client.primary, "write_after_stepdown_s": round(time.time() - t0, 2)}))
assert "%s:%d" % client.primary != primary
