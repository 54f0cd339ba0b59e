// Run by mongosh against holdfast: CRUD, cursor batches, bulk, transaction, w:0.
const c = db.getSiblingDB('e2e_mongosh').things;
c.drop();
c.insertMany(Array.from({ length: 250 }, (_, i) => ({ i })));
if (c.countDocuments({}) !== 250) throw new Error('count');
if (c.updateOne({ i: 3 }, { $set: { z: 1 } }).modifiedCount !== 1) throw new Error('update');
if (c.deleteOne({ i: 4 }).deletedCount !== 1) throw new Error('delete');
if (c.find().batchSize(20).toArray().length !== 249) throw new Error('cursor');
const b = c.bulkWrite([{ insertOne: { document: { i: 1000 } } }, { deleteOne: { filter: { i: 5 } } }]);
if (b.insertedCount !== 1 || b.deletedCount !== 1) throw new Error('bulk');
const s = db.getMongo().startSession();
s.startTransaction();
s.getDatabase('e2e_mongosh').things.insertOne({ i: 2000 });
s.commitTransaction();
if (!c.findOne({ i: 2000 })) throw new Error('txn');
c.insertOne({ i: 3000 }, { writeConcern: { w: 0 } });
let n = 0; while (!c.findOne({ i: 3000 })) { if (++n > 100) throw new Error('w0'); sleep(50); }
const h = db.hello();
if (h.hosts || h.primary || h.msg !== 'isdbgrid') throw new Error('hello leaks members: ' + JSON.stringify(h));
print('mongosh-ok');
