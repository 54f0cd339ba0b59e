// Node.js driver 2.2.36 (mongodb-core 2.1): never sends OP_MSG. Commands
// (insert, find, getMore, killCursors, ...) go as OP_QUERY on <db>.$cmd;
// below wire version 4 finds are OP_QUERY on the collection, below 2 writes
// are OP_INSERT/OP_UPDATE/OP_DELETE followed by getLastError.
// Scenarios and output: ../node_scenarios.js.
'use strict';
const mongodb = require('mongodb');
const { main } = require('../node_scenarios.js');

async function connect(uri, opts) {
  const commands = { counts: {}, failed: [] };
  // 2.2's APM hook is process-wide: it wraps the driver's prototypes.
  const apm = mongodb.instrument();
  apm.on('started', (e) => { commands.counts[e.commandName] = (commands.counts[e.commandName] || 0) + 1; });
  apm.on('failed', (e) => { commands.failed.push({ name: e.commandName, failure: String(e.failure) }); });
  // In 2.2 connect() resolves to a Db, not a client. bufferMaxEntries: 0 makes
  // operations fail while the driver is disconnected instead of queueing them
  // until it reconnects (2.2 retries nothing else).
  const db = await mongodb.MongoClient.connect(uri, Object.assign({
    connectTimeoutMS: 10000, socketTimeoutMS: 30000, bufferMaxEntries: 0,
  }, opts));
  return { db: db.db ? db.db('legacy') : db, close: () => db.close(), commands };
}

main(`node mongodb ${require('mongodb/package.json').version}`, connect);
