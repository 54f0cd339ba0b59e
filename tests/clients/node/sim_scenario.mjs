// The Node driver against holdfast-sim as a replica set: finds and inserts.
import { MongoClient } from 'mongodb';
import assert from 'node:assert/strict';
const client = new MongoClient(process.argv[2], { serverSelectionTimeoutMS: 10000 });
await client.connect();
const c = client.db('simnode').collection('t');
await c.deleteMany({});
await c.insertMany([{ a: 1 }, { a: 2 }, { a: 3 }]);
assert.equal((await c.find({ a: { $gt: 1 } }).toArray()).length, 2);
const types = [...client.topology.description.servers.values()].map(s => s.type).sort();
assert.deepEqual(types, ['RSPrimary', 'RSSecondary', 'RSSecondary']);
console.log(JSON.stringify({ node: 'ok', types }));
await client.close();
