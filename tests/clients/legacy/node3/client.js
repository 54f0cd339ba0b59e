// Node.js driver 3.x (the newest, 3.7): uses OP_MSG on MongoDB 3.6+, OP_QUERY
// commands below. With the default (legacy) topology, as old applications
// run it; `useUnifiedTopology` is not set, so the driver prints a
// deprecation warning on stderr.
// Scenarios and output: ../node_scenarios.js.
'use strict';
const mongodb = require('mongodb');
const { main } = require('../node_scenarios.js');

async function connect(uri, opts) {
  const commands = { counts: {}, failed: [] };
  const client = await mongodb.MongoClient.connect(uri, Object.assign({
    connectTimeoutMS: 10000, socketTimeoutMS: 30000, serverSelectionTimeoutMS: 10000,
    // retryWrites defaults to false in 3.x, retryReads to true (3.6+)
    retryWrites: false, retryReads: false,
    bufferMaxEntries: 0, // fail while disconnected instead of queueing
    monitorCommands: true,
  }, opts));
  client.on('commandStarted', (e) => { commands.counts[e.commandName] = (commands.counts[e.commandName] || 0) + 1; });
  client.on('commandFailed', (e) => { commands.failed.push({ name: e.commandName, failure: String(e.failure) }); });
  return { db: client.db('legacy'), close: () => client.close(), commands };
}

main(`node mongodb ${require('mongodb/package.json').version}`, connect);
