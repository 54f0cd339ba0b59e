// Legacy-client scenarios for the official Go driver 1.8.4 (Debian's
// golang-mongodb-mongo-driver-dev), kept for the authentication tests to
// come. It uses OP_MSG on MongoDB 3.6+ and OP_QUERY commands below.
//
//	godriver-client URI crud
//	godriver-client URI read-loop SECONDS [WORKERS]
//	godriver-client URI write-loop SECONDS WRITER_ID
//
// Prints one JSON object on stdout; driver failures are reported in it (exit
// code 0). Built in GOPATH mode by scripts/install-test-deps.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/version"
)

type obj = map[string]interface{}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func errCode(err error) interface{} {
	var we mongo.WriteException
	var ce mongo.CommandError
	var be mongo.BulkWriteException
	switch {
	case errors.As(err, &we) && len(we.WriteErrors) > 0:
		return we.WriteErrors[0].Code
	case errors.As(err, &we) && we.WriteConcernError != nil:
		return we.WriteConcernError.Code
	case errors.As(err, &be) && len(be.WriteErrors) > 0:
		return be.WriteErrors[0].Code
	case errors.As(err, &ce):
		return ce.Code
	}
	return nil
}

func errObj(err error, step string) obj {
	d := obj{"type": fmt.Sprintf("%T", err), "code": errCode(err), "message": trunc(err.Error(), 500)}
	if step != "" {
		d["step"] = step
	}
	return d
}

func short(err error) string { return trunc(fmt.Sprintf("%T: %v", err, err), 300) }

// commands counts the commands the driver starts and remembers failed ones.
type commands struct {
	sync.Mutex
	started map[string]int
	failed  []string
}

func (c *commands) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			c.Lock()
			c.started[e.CommandName]++
			c.Unlock()
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			c.Lock()
			c.failed = append(c.failed, e.CommandName)
			c.Unlock()
		},
	}
}

func (c *commands) count(name string) int { c.Lock(); defer c.Unlock(); return c.started[name] }

func connect(uri string, cmds *commands, pool uint64) (*mongo.Client, error) {
	opts := options.Client().ApplyURI(uri).
		SetRetryReads(false).SetRetryWrites(false). // both default to true
		SetServerSelectionTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetSocketTimeout(30 * time.Second).
		SetMaxPoolSize(pool)
	if cmds != nil {
		opts.SetMonitor(cmds.monitor())
	}
	return mongo.Connect(context.Background(), opts)
}

func crud(uri string) obj {
	out := obj{}
	cmds := &commands{started: map[string]int{}}
	ctx := context.Background()
	client, err := connect(uri, cmds, 100)
	if err != nil {
		out["error"] = errObj(err, "connect")
		return out
	}
	defer client.Disconnect(ctx)
	c := client.Database("legacy").Collection(fmt.Sprintf("crud_%d_%d", os.Getpid(), time.Now().UnixNano()/1e6))
	step := "insert"
	fail := func(err error) obj { out["error"] = errObj(err, step); out["commands"] = cmds.started; return out }

	docs := make([]interface{}, 10)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "n", Value: i}}
	}
	res, err := c.InsertMany(ctx, docs)
	if err != nil {
		return fail(err)
	}
	out["inserted"] = len(res.InsertedIDs)

	step = "find"
	before := cmds.count("getMore")
	sorted := bson.D{{Key: "_id", Value: 1}}
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetSort(sorted).SetBatchSize(3))
	if err != nil {
		return fail(err)
	}
	var all []bson.M
	if err := cur.All(ctx, &all); err != nil {
		return fail(err)
	}
	out["found"] = len(all)
	out["batches_seen"] = 1 + cmds.count("getMore") - before

	step = "kill"
	cur, err = c.Find(ctx, bson.D{}, options.Find().SetSort(sorted).SetBatchSize(2))
	if err != nil {
		return fail(err)
	}
	cur.Next(ctx) // the first batch (2 documents) came with the find
	failedBefore := len(cmds.failed)
	if err := cur.Close(ctx); err != nil { // killCursors
		return fail(err)
	}
	out["killed"] = len(cmds.failed) == failedBefore

	step = "dup"
	_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
	if err == nil {
		return fail(errors.New("duplicate _id was accepted"))
	}
	if !mongo.IsDuplicateKeyError(err) {
		return fail(err)
	}
	out["dup"] = errObj(err, "")

	step = "count"
	n, err := c.CountDocuments(ctx, bson.D{})
	if err != nil {
		return fail(err)
	}
	out["count"] = n

	step = "upsert"
	ur, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 100}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 100}}}},
		options.Update().SetUpsert(true))
	if err != nil {
		return fail(err)
	}
	out["upsert"] = obj{"matched": ur.MatchedCount, "modified": ur.ModifiedCount, "upserted_id": ur.UpsertedID}

	step = "delete"
	dr, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		return fail(err)
	}
	out["deleted"] = dr.DeletedCount

	step = "final_count"
	if n, err = c.CountDocuments(ctx, bson.D{}); err != nil {
		return fail(err)
	}
	out["final_count"] = n
	out["commands"] = cmds.started
	return out
}

type tally struct {
	sync.Mutex
	errors      int
	firstErrors []string
}

func (t *tally) add(err error) {
	t.Lock()
	t.errors++
	if len(t.firstErrors) < 5 {
		t.firstErrors = append(t.firstErrors, short(err))
	}
	t.Unlock()
	time.Sleep(10 * time.Millisecond) // an error comes back at once; do not spin
}

func readLoop(uri string, seconds float64, workers int) obj {
	ctx := context.Background()
	client, err := connect(uri, nil, uint64(workers+10))
	if err != nil {
		return obj{"reads": 0, "errors": 1, "first_errors": []string{short(err)}, "error": errObj(err, "connect")}
	}
	defer client.Disconnect(ctx)
	c := client.Database("legacy").Collection("read_loop")
	key := fmt.Sprintf("r-%d-%d", os.Getpid(), time.Now().UnixNano())
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "n", Value: 1}}); err != nil {
		return obj{"reads": 0, "errors": 1, "first_errors": []string{short(err)}, "error": errObj(err, "insert")}
	}
	var t tally
	var reads int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				var doc bson.M
				if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&doc); err != nil {
					t.add(err)
					continue
				}
				t.Lock()
				reads++
				t.Unlock()
			}
		}()
	}
	wg.Wait()
	return obj{"reads": reads, "errors": t.errors, "first_errors": nonNil(t.firstErrors)}
}

func writeLoop(uri string, seconds float64, writer string) obj {
	ctx := context.Background()
	client, err := connect(uri, nil, 10)
	if err != nil {
		return obj{"acked_incs": 0, "acked_inserts": []string{}, "errors": 1, "first_errors": []string{short(err)}, "error": errObj(err, "connect")}
	}
	defer client.Disconnect(ctx)
	c := client.Database("legacy").Collection("write_loop",
		options.Collection().SetWriteConcern(writeconcern.New(writeconcern.WMajority())))
	var t tally
	ackedIncs, failedIncs := 0, 0
	acked, failed := []string{}, []string{}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for k := 0; time.Now().Before(deadline); k++ {
		_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: writer}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
			options.Update().SetUpsert(true))
		if err != nil {
			failedIncs++
			t.add(err)
		} else {
			ackedIncs++
		}
		id := fmt.Sprintf("%s-%d", writer, k)
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			failed = append(failed, id)
			t.add(err)
		} else {
			acked = append(acked, id)
		}
	}
	return obj{"acked_incs": ackedIncs, "failed_incs": failedIncs, "acked_inserts": acked,
		"failed_inserts": failed, "errors": t.errors, "first_errors": nonNil(t.firstErrors)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: godriver-client URI crud | read-loop SECONDS [WORKERS] | write-loop SECONDS WRITER_ID")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	uri, scenario, args := os.Args[1], os.Args[2], os.Args[3:]
	var out obj
	switch {
	case scenario == "crud":
		out = crud(uri)
	case scenario == "read-loop" && len(args) >= 1:
		secs, err1 := strconv.ParseFloat(args[0], 64)
		workers, err2 := 8, error(nil)
		if len(args) > 1 {
			workers, err2 = strconv.Atoi(args[1])
		}
		if err1 != nil || err2 != nil {
			usage()
		}
		out = readLoop(uri, secs, workers)
	case scenario == "write-loop" && len(args) >= 2:
		secs, err := strconv.ParseFloat(args[0], 64)
		if err != nil {
			usage()
		}
		out = writeLoop(uri, secs, args[1])
	default:
		usage()
	}
	out["driver"] = "go driver " + version.Driver
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}
