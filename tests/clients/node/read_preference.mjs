// Reads through holdfast with a read preference, with the Node driver.
// Usage: node read_preference.mjs URI MODE COUNT [TAGS_JSON]
// Prints one line: {"ok": N} once COUNT finds (each by _id, in e2e_rp.docs) returned their document.
import { MongoClient, ReadPreference } from 'mongodb';
import assert from 'node:assert/strict';

const [uri, mode, count, tags] = process.argv.slice(2);
const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000, retryReads: false });
await client.connect();
const pref = new ReadPreference(mode, tags ? JSON.parse(tags) : undefined);
const coll = client.db('e2e_rp').collection('docs', { readPreference: pref });
let ok = 0;
for (let i = 0; i < Number(count); i++) {
  const d = await coll.findOne({ _id: i % 20 });
  assert.equal(d._id, i % 20);
  ok++;
}
console.log(JSON.stringify({ ok }));
await client.close();
