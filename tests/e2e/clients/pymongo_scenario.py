"""CRUD, multi-batch cursors, bulk writes, a transaction and a w:0 insert
through holdfast with pymongo (run under pymongo 4.x or 3.12.3).

Usage: python pymongo_scenario.py URI PROXY_ADDR
Prints one JSON line with what it saw; exits non-zero on any failure.
"""
import json
import sys
import time

import pymongo
from bson import ObjectId
from pymongo import InsertOne, UpdateOne, DeleteOne, WriteConcern

uri, proxy_addr = sys.argv[1], sys.argv[2]
client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
db = client["e2e_" + pymongo.version.replace(".", "_")]
coll = db["things"]
coll.drop()

# CRUD
ids = coll.insert_many([{"i": i, "tag": "x" if i % 2 else "y"} for i in range(250)]).inserted_ids
assert len(ids) == 250
assert coll.count_documents({}) == 250
r = coll.update_one({"i": 3}, {"$set": {"tag": "z"}, "$inc": {"n": 1}})
assert r.modified_count == 1, r.raw_result
assert coll.find_one({"i": 3})["tag"] == "z"
assert coll.delete_one({"i": 4}).deleted_count == 1
assert coll.count_documents({}) == 249

# A cursor across several getMore batches.
seen = [d["i"] for d in coll.find({}, batch_size=20).sort("i", 1)]
assert seen == sorted(seen) and len(seen) == 249, len(seen)
agg = list(coll.aggregate([{"$match": {"tag": "x"}}, {"$group": {"_id": "$tag", "n": {"$sum": 1}}}], batchSize=1))
assert agg == [{"_id": "x", "n": 124}], agg  # 125 odd i, minus i=3 retagged "z"

# Bulk writes.
bulk = coll.bulk_write([InsertOne({"i": 1000}), UpdateOne({"i": 1000}, {"$set": {"b": True}}), DeleteOne({"i": 5})])
assert bulk.inserted_count == 1 and bulk.modified_count == 1 and bulk.deleted_count == 1, bulk.bulk_api_result

# A multi-document transaction.
txn_ok = False
with client.start_session() as s:
    with s.start_transaction():
        coll.insert_one({"i": 2000, "t": 1}, session=s)
        coll.update_one({"i": 2000}, {"$inc": {"t": 1}}, session=s)
    txn_ok = coll.find_one({"i": 2000})["t"] == 2
assert txn_ok

# w:0 insert (OP_MSG moreToCome), then confirm it landed.
coll.with_options(write_concern=WriteConcern(w=0)).insert_one({"i": 3000, "unack": True})
deadline = time.time() + 5
while coll.find_one({"i": 3000}) is None:
    assert time.time() < deadline, "w:0 insert never arrived"
    time.sleep(0.05)

# What the driver knows about the deployment: only holdfast, as a mongos.
desc = client.topology_description
servers = {"%s:%d" % sd.address: sd.server_type_name for sd in desc.server_descriptions().values()}
hello = client.admin.command("ismaster")
print(json.dumps({"pymongo": pymongo.version, "servers": servers, "topology": desc.topology_type_name,
                  "hello_has_hosts": "hosts" in hello, "msg": hello.get("msg")}))
assert list(servers) == [proxy_addr], servers
assert servers[proxy_addr] == "Mongos", servers
assert "hosts" not in hello and "primary" not in hello and "me" not in hello
client.close()
