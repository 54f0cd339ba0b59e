// CRUD, cursors across getMore batches, bulk writes, a transaction and a w:0
// insert through holdfast with the Node driver. Usage: node scenario.mjs URI PROXY_ADDR
import { MongoClient } from 'mongodb';
import assert from 'node:assert/strict';

const [uri, proxyAddr] = process.argv.slice(2);
const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
await client.connect();
const coll = client.db('e2e_node').collection('things');
await coll.drop().catch(() => {});
await coll.insertMany(Array.from({ length: 250 }, (_, i) => ({ i, tag: i % 2 ? 'x' : 'y' })));
assert.equal(await coll.countDocuments({}), 250);
const u = await coll.updateOne({ i: 3 }, { $set: { tag: 'z' } });
assert.equal(u.modifiedCount, 1);
assert.equal((await coll.deleteOne({ i: 4 })).deletedCount, 1);
const all = await coll.find({}).batchSize(20).sort({ i: 1 }).toArray();
assert.equal(all.length, 249);
const bulk = await coll.bulkWrite([{ insertOne: { document: { i: 1000 } } }, { updateOne: { filter: { i: 1000 }, update: { $set: { b: true } } } }, { deleteOne: { filter: { i: 5 } } }]);
assert.equal(bulk.insertedCount, 1); assert.equal(bulk.modifiedCount, 1); assert.equal(bulk.deletedCount, 1);
const session = client.startSession();
await session.withTransaction(async () => {
  await coll.insertOne({ i: 2000, t: 1 }, { session });
  await coll.updateOne({ i: 2000 }, { $inc: { t: 1 } }, { session });
});
await session.endSession();
assert.equal((await coll.findOne({ i: 2000 })).t, 2);
await coll.insertOne({ i: 3000 }, { writeConcern: { w: 0 } });
for (let t = 0; !(await coll.findOne({ i: 3000 })); t++) { assert.ok(t < 100, 'w:0 insert never arrived'); await new Promise(r => setTimeout(r, 50)); }
const servers = [...client.topology.description.servers.entries()].map(([a, d]) => [a, d.type]);
assert.deepEqual(servers, [[proxyAddr, 'Mongos']]);
const hello = await client.db('admin').command({ hello: 1 });
assert.ok(!('hosts' in hello) && !('primary' in hello));
console.log(JSON.stringify({ node: 'ok', servers }));
await client.close();
