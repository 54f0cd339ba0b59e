// The legacy-client scenarios for the Node.js drivers 2.2 and 3.x, shared by
// node2/client.js and node3/client.js (each passes its own copy of the
// `mongodb` package and a `connect` that hides how the versions differ).
//
//   node client.js URI crud
//   node client.js URI read-loop SECONDS [WORKERS]
//   node client.js URI write-loop SECONDS WRITER_ID
//
// Prints one JSON object on stdout; driver failures are reported in it
// (exit code 0). Only a usage error exits non-zero.
'use strict';

function err(e, step) {
  const d = { type: (e && (e.name || e.constructor.name)) || typeof e, code: e && e.code !== undefined ? e.code : null,
    message: String((e && e.message) || e).slice(0, 500) };
  if (step) d.step = step;
  return d;
}

const short = (e) => `${(e && e.name) || 'Error'}: ${String((e && e.message) || e).slice(0, 300)}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// connect(uri, opts) resolves to {db, close, commands} where `commands`
// counts the commands started ({name: n}) and lists the failed ones.
async function crud(connect, uri) {
  const out = {};
  const conn = await connect(uri, {});
  const coll = conn.db.collection(`crud_${process.pid}_${Date.now()}`);
  let step = 'insert';
  try {
    const docs = [];
    for (let i = 0; i < 10; i++) docs.push({ _id: i, n: i });
    out.inserted = (await coll.insertMany(docs)).insertedCount;

    step = 'find';
    const before = conn.commands.counts.getMore || 0;
    out.found = (await coll.find({}).sort({ _id: 1 }).batchSize(3).toArray()).length;
    out.batches_seen = 1 + (conn.commands.counts.getMore || 0) - before;

    step = 'kill';
    const failures = conn.commands.failed.length;
    const cur = coll.find({}).sort({ _id: 1 }).batchSize(2);
    await cur.next(); // fetches the first batch (2 documents); the cursor stays open on the server
    await cur.close(); // killCursors
    out.killed = !conn.commands.failed.slice(failures).some((f) => f.name === 'killCursors');

    step = 'dup';
    try {
      await coll.insertOne({ _id: 0 });
      throw new Error('duplicate _id was accepted');
    } catch (e) {
      if (e.code !== 11000) throw e;
      out.dup = err(e);
    }

    step = 'count';
    out.count = await coll.count({}); // the count command (countDocuments is 3.1+)

    step = 'upsert';
    const r = await coll.updateOne({ _id: 100 }, { $set: { n: 100 } }, { upsert: true });
    // upsertedId is {index, _id} in 2.2, {_id} in 3.x
    out.upsert = { matched: r.matchedCount, modified: r.modifiedCount,
      upserted_id: r.upsertedId ? r.upsertedId._id : null };

    step = 'delete';
    out.deleted = (await coll.deleteOne({ _id: 1 })).deletedCount;

    step = 'final_count';
    out.final_count = await coll.count({});
  } catch (e) {
    out.error = err(e, step);
  }
  out.commands = conn.commands.counts;
  await conn.close();
  return out;
}

async function readLoop(connect, uri, seconds, workers) {
  const conn = await connect(uri, { poolSize: Math.max(10, workers) });
  const coll = conn.db.collection('read_loop');
  const key = `r-${process.pid}-${Date.now()}`;
  const stats = { reads: 0, errors: 0, first_errors: [] };
  try {
    await coll.insertOne({ _id: key, n: 1 });
  } catch (e) {
    await conn.close();
    return { reads: 0, errors: 1, first_errors: [short(e)], error: err(e, 'insert') };
  }
  const deadline = Date.now() + seconds * 1000;
  async function work() {
    while (Date.now() < deadline) {
      try {
        if ((await coll.findOne({ _id: key })) === null) throw new Error(`document ${key} not found`);
        stats.reads++;
      } catch (e) {
        stats.errors++;
        if (stats.first_errors.length < 5) stats.first_errors.push(short(e));
        await sleep(10); // an error comes back at once; do not spin
      }
    }
  }
  await Promise.all(Array.from({ length: workers }, work));
  await conn.close();
  return stats;
}

async function writeLoop(connect, uri, seconds, writer) {
  const conn = await connect(uri, {});
  const coll = conn.db.collection('write_loop');
  const wc = { w: 'majority' };
  const out = { acked_incs: 0, failed_incs: 0, acked_inserts: [], failed_inserts: [], errors: 0, first_errors: [] };
  const failed = async (e) => {
    out.errors++;
    if (out.first_errors.length < 5) out.first_errors.push(short(e));
    await sleep(10);
  };
  const deadline = Date.now() + seconds * 1000;
  for (let k = 0; Date.now() < deadline; k++) {
    try {
      await coll.updateOne({ _id: writer }, { $inc: { n: 1 } }, Object.assign({ upsert: true }, wc));
      out.acked_incs++;
    } catch (e) {
      out.failed_incs++;
      await failed(e);
    }
    const id = `${writer}-${k}`;
    try {
      await coll.insertOne({ _id: id }, wc);
      out.acked_inserts.push(id);
    } catch (e) {
      out.failed_inserts.push(id);
      await failed(e);
    }
  }
  await conn.close();
  return out;
}

const USAGE = 'usage: client.js URI crud | read-loop SECONDS [WORKERS] | write-loop SECONDS WRITER_ID';

// Runs the scenario named on the command line and prints its JSON.
async function main(driverName, connect) {
  const [uri, scenario, ...args] = process.argv.slice(2);
  let run;
  if (uri && scenario === 'crud') run = () => crud(connect, uri);
  else if (uri && scenario === 'read-loop' && args.length >= 1) run = () => readLoop(connect, uri, Number(args[0]), Number(args[1] || 8));
  else if (uri && scenario === 'write-loop' && args.length >= 2) run = () => writeLoop(connect, uri, Number(args[0]), args[1]);
  else {
    console.error(USAGE);
    process.exit(2);
  }
  let out;
  try {
    out = await run();
  } catch (e) {
    out = { error: err(e) };
  }
  out.driver = driverName;
  process.stdout.write(`${JSON.stringify(out)}\n`);
  // Old drivers may keep timers (reconnects, monitoring) alive after close().
  process.exit(0);
}

module.exports = { main };
