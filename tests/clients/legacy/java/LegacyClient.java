// Legacy-client scenarios for the MongoDB Java driver 3.6.3 (Debian's
// libmongodb-java, /usr/share/java/mongo-java-driver.jar). 3.6 uses OP_MSG
// only when the server's maxWireVersion is 6 (3.6) or more; below that every
// command is an OP_QUERY on <db>.$cmd (and below wire version 4 finds are
// OP_QUERY on the collection, cursors are closed with OP_KILL_CURSORS).
//
//   java -cp build/java:/usr/share/java/mongo-java-driver.jar LegacyClient URI crud
//   ... LegacyClient URI read-loop SECONDS [WORKERS]
//   ... LegacyClient URI write-loop SECONDS WRITER_ID
//
// Prints one JSON object on stdout; driver failures are reported in it (exit
// code 0). Compiled by scripts/install-test-deps.sh.

import com.mongodb.MongoClient;
import com.mongodb.MongoClientOptions;
import com.mongodb.MongoClientURI;
import com.mongodb.MongoCommandException;
import com.mongodb.MongoException;
import com.mongodb.MongoWriteConcernException;
import com.mongodb.MongoWriteException;
import com.mongodb.WriteConcern;
import com.mongodb.client.MongoCollection;
import com.mongodb.client.MongoCursor;
import com.mongodb.client.model.Filters;
import com.mongodb.client.model.UpdateOptions;
import com.mongodb.client.result.UpdateResult;
import com.mongodb.event.CommandFailedEvent;
import com.mongodb.event.CommandListener;
import com.mongodb.event.CommandStartedEvent;
import com.mongodb.event.CommandSucceededEvent;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.bson.BsonValue;
import org.bson.Document;
import org.bson.json.JsonMode;
import org.bson.json.JsonWriterSettings;

public class LegacyClient {
    /** Counts the commands the driver starts and remembers the failed ones. */
    static class Commands implements CommandListener {
        final Map<String, Integer> started = new ConcurrentHashMap<>();
        final List<String> failed = Collections.synchronizedList(new ArrayList<>());

        public void commandStarted(CommandStartedEvent e) { started.merge(e.getCommandName(), 1, Integer::sum); }
        public void commandSucceeded(CommandSucceededEvent e) { }
        public void commandFailed(CommandFailedEvent e) { failed.add(e.getCommandName()); }
        int count(String name) { return started.getOrDefault(name, 0); }
    }

    static MongoClient connect(String uri, Commands commands, int pool) {
        MongoClientOptions.Builder b = MongoClientOptions.builder()
            .serverSelectionTimeout(10000).connectTimeout(10000).socketTimeout(30000)
            .connectionsPerHost(pool)
            .retryWrites(false); // 3.6 has no retryable reads; retryable writes are off by default
        if (commands != null) b.addCommandListener(commands);
        return new MongoClient(new MongoClientURI(uri, b));
    }

    static String trunc(String s, int n) { return s == null ? "" : s.length() > n ? s.substring(0, n) : s; }

    static Object code(Throwable e) {
        if (e instanceof MongoWriteException) return ((MongoWriteException) e).getError().getCode();
        if (e instanceof MongoWriteConcernException) return ((MongoWriteConcernException) e).getWriteConcernError().getCode();
        if (e instanceof MongoException) return ((MongoException) e).getCode(); // -3 etc. when the driver made it
        return null;
    }

    static Document err(Throwable e, String step) {
        Document d = new Document("type", e.getClass().getSimpleName()).append("code", code(e))
            .append("message", trunc(e.getMessage(), 500));
        if (step != null) d.append("step", step);
        return d;
    }

    static String shortErr(Throwable e) { return trunc(e.getClass().getSimpleName() + ": " + e.getMessage(), 300); }

    static Object plain(BsonValue v) {
        if (v == null) return null;
        if (v.isInt32()) return v.asInt32().getValue();
        if (v.isInt64()) return v.asInt64().getValue();
        if (v.isString()) return v.asString().getValue();
        return v.toString();
    }

    static Document crud(String uri) {
        Document out = new Document();
        Commands cmds = new Commands();
        String step = "insert";
        try (MongoClient client = connect(uri, cmds, 100)) {
            MongoCollection<Document> c = client.getDatabase("legacy")
                .getCollection("crud_" + ProcessHandle.current().pid() + "_" + System.currentTimeMillis());
            try {
                List<Document> docs = new ArrayList<>();
                for (int i = 0; i < 10; i++) docs.add(new Document("_id", i).append("n", i));
                c.insertMany(docs);
                out.append("inserted", docs.size());

                step = "find";
                int before = cmds.count("getMore");
                int n = 0;
                for (Document d : c.find().sort(new Document("_id", 1)).batchSize(3)) n++;
                out.append("found", n).append("batches_seen", 1 + cmds.count("getMore") - before);

                step = "kill";
                int failedBefore = cmds.failed.size();
                MongoCursor<Document> cur = c.find().sort(new Document("_id", 1)).batchSize(2).iterator();
                cur.next();  // the first batch (2 documents); the server keeps the cursor
                cur.close(); // killCursors; the driver logs its failure instead of throwing
                out.append("killed", cmds.failed.size() == failedBefore);

                step = "dup";
                try {
                    c.insertOne(new Document("_id", 0));
                    throw new IllegalStateException("duplicate _id was accepted");
                } catch (MongoWriteException e) {
                    if (e.getError().getCode() != 11000) throw e;
                    out.append("dup", err(e, null));
                }

                step = "count";
                out.append("count", c.count()); // the count command (countDocuments is 3.8+)

                step = "upsert";
                UpdateResult r = c.updateOne(Filters.eq("_id", 100), new Document("$set", new Document("n", 100)),
                    new UpdateOptions().upsert(true));
                out.append("upsert", new Document("matched", r.getMatchedCount())
                    .append("modified", r.isModifiedCountAvailable() ? r.getModifiedCount() : null)
                    .append("upserted_id", plain(r.getUpsertedId())));

                step = "delete";
                out.append("deleted", c.deleteOne(Filters.eq("_id", 1)).getDeletedCount());

                step = "final_count";
                out.append("final_count", c.count());
            } catch (RuntimeException e) {
                out.append("error", err(e, step));
            }
        }
        out.append("commands", new Document(new java.util.TreeMap<String, Object>(cmds.started)));
        return out;
    }

    static class Tally {
        final AtomicLong errors = new AtomicLong();
        final List<String> first = Collections.synchronizedList(new ArrayList<>());

        void add(Throwable e) {
            errors.incrementAndGet();
            synchronized (first) { if (first.size() < 5) first.add(shortErr(e)); }
            try { Thread.sleep(10); } catch (InterruptedException ie) { } // an error comes back at once; do not spin
        }
    }

    static Document readLoop(String uri, double seconds, int workers) throws InterruptedException {
        Tally t = new Tally();
        AtomicLong reads = new AtomicLong();
        try (MongoClient client = connect(uri, null, workers + 10)) {
            MongoCollection<Document> c = client.getDatabase("legacy").getCollection("read_loop");
            String key = "r-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
            try {
                c.insertOne(new Document("_id", key).append("n", 1));
            } catch (RuntimeException e) {
                return new Document("reads", 0).append("errors", 1).append("first_errors", List.of(shortErr(e)))
                    .append("error", err(e, "insert"));
            }
            long deadline = System.nanoTime() + (long) (seconds * 1e9);
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < workers; w++) {
                Thread th = new Thread(() -> {
                    while (System.nanoTime() < deadline) {
                        try {
                            if (c.find(Filters.eq("_id", key)).first() == null)
                                throw new IllegalStateException("document " + key + " not found");
                            reads.incrementAndGet();
                        } catch (RuntimeException e) {
                            t.add(e);
                        }
                    }
                });
                th.start();
                threads.add(th);
            }
            for (Thread th : threads) th.join();
        }
        return new Document("reads", reads.get()).append("errors", t.errors.get()).append("first_errors", t.first);
    }

    static Document writeLoop(String uri, double seconds, String writer) {
        Tally t = new Tally();
        long ackedIncs = 0, failedIncs = 0;
        List<String> acked = new ArrayList<>(), failed = new ArrayList<>();
        try (MongoClient client = connect(uri, null, 10)) {
            MongoCollection<Document> c = client.getDatabase("legacy").getCollection("write_loop")
                .withWriteConcern(WriteConcern.MAJORITY);
            long deadline = System.nanoTime() + (long) (seconds * 1e9);
            for (int k = 0; System.nanoTime() < deadline; k++) {
                try {
                    c.updateOne(Filters.eq("_id", writer), new Document("$inc", new Document("n", 1)),
                        new UpdateOptions().upsert(true));
                    ackedIncs++;
                } catch (RuntimeException e) {
                    failedIncs++;
                    t.add(e);
                }
                String id = writer + "-" + k;
                try {
                    c.insertOne(new Document("_id", id));
                    acked.add(id);
                } catch (RuntimeException e) {
                    failed.add(id);
                    t.add(e);
                }
            }
        }
        return new Document("acked_incs", ackedIncs).append("failed_incs", failedIncs).append("acked_inserts", acked)
            .append("failed_inserts", failed).append("errors", t.errors.get()).append("first_errors", t.first);
    }

    /** The Bundle-Version of the driver's jar (Debian's build has no version class or Implementation-Version). */
    static String driverVersion() {
        try (java.util.jar.JarFile jar = new java.util.jar.JarFile(
                MongoClient.class.getProtectionDomain().getCodeSource().getLocation().getPath())) {
            return jar.getManifest().getMainAttributes().getValue("Bundle-Version");
        } catch (Exception e) {
            return "unknown";
        }
    }

    static void usage() {
        System.err.println("usage: LegacyClient URI crud | read-loop SECONDS [WORKERS] | write-loop SECONDS WRITER_ID");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        // The driver logs through java.util.logging (no SLF4J on the class path): keep stderr quiet.
        Logger.getLogger("org.mongodb.driver").setLevel(Level.WARNING);
        if (args.length < 2) usage();
        String uri = args[0], scenario = args[1];
        Document out = null;
        try {
            if (scenario.equals("crud")) out = crud(uri);
            else if (scenario.equals("read-loop") && args.length >= 3)
                out = readLoop(uri, Double.parseDouble(args[2]), args.length > 3 ? Integer.parseInt(args[3]) : 8);
            else if (scenario.equals("write-loop") && args.length >= 4)
                out = writeLoop(uri, Double.parseDouble(args[2]), args[3]);
            else usage();
        } catch (NumberFormatException e) {
            usage();
        } catch (RuntimeException e) {
            out = new Document("error", err(e, null)); // the driver failed outside a step
        }
        out.append("driver", "java driver " + driverVersion());
        System.out.println(out.toJson(JsonWriterSettings.builder().outputMode(JsonMode.RELAXED).build()));
        System.exit(0); // the driver's monitor threads are not daemons in every version
    }
}
