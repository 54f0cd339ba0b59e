// Legacy-client scenarios for mgo (gopkg.in/mgo.v2, 2016), the Go driver
// that old Go services still use. mgo never sends OP_MSG: commands are
// OP_QUERY on <db>.$cmd, finds are the find command from wire version 4 (3.2)
// on, cursors are closed with OP_KILL_CURSORS, and below wire version 2 writes
// are OP_INSERT/OP_UPDATE/OP_DELETE followed by getLastError.
//
//	mgo-client URI crud
//	mgo-client URI read-loop SECONDS [WORKERS]
//	mgo-client URI write-loop SECONDS WRITER_ID
//
// Prints one JSON object on stdout; driver failures are reported in it (exit
// code 0). crud reads mgo's debug log (batches_seen) and checks its kill
// with a getMore of the killed cursor. Built from Debian's golang-gopkg-mgo.v2-dev in GOPATH mode by
// scripts/install-test-deps.sh.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	mgo "gopkg.in/mgo.v2"
	"gopkg.in/mgo.v2/bson"
)

type obj = map[string]interface{}

func errObj(err error, step string) obj {
	d := obj{"type": fmt.Sprintf("%T", err), "code": nil, "message": trunc(err.Error(), 500)}
	var le *mgo.LastError
	var qe *mgo.QueryError
	if errors.As(err, &le) {
		d["code"] = le.Code
	} else if errors.As(err, &qe) {
		d["code"] = qe.Code
	}
	if step != "" {
		d["step"] = step
	}
	return d
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func short(err error) string { return trunc(fmt.Sprintf("%T: %v", err, err), 300) }

// dial connects in mgo's default Strong mode (all operations on the primary).
// mgo has no retryable reads or writes to turn off. DialWithTimeout waits for
// the cluster sync to find a server and pings it before it returns; when no
// server is usable it gives "no reachable servers" after the whole 5 s.
func dial(uri string) (*mgo.Session, error) {
	s, err := mgo.DialWithTimeout(uri, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s.SetSocketTimeout(30 * time.Second)
	s.SetSyncTimeout(10 * time.Second)
	return s, nil
}

// iterLog is mgo's debug log, read for what mgo does not expose: how many
// getMores an iterator sent (for batches_seen, as command monitoring gives
// it in other drivers). Lines also go to tee, if set (MGO_DEBUG).
type iterLog struct {
	sync.Mutex
	lines []string
	tee   *log.Logger
}

func (l *iterLog) Output(calldepth int, s string) error {
	l.Lock()
	l.lines = append(l.lines, s)
	l.Unlock()
	if l.tee != nil {
		return l.tee.Output(calldepth+1, s)
	}
	return nil
}

// iterPrefix is how mgo's log names an iterator.
func iterPrefix(it *mgo.Iter) string { return fmt.Sprintf("Iter %p ", it) }

// getMores counts the "requesting more documents" lines of one iterator.
func (l *iterLog) getMores(it *mgo.Iter) int {
	l.Lock()
	defer l.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.HasPrefix(s, iterPrefix(it)) && strings.Contains(s, "requesting more documents") {
			n++
		}
	}
	return n
}

// openCursor is the id of the cursor the iterator holds (0: none). mgo
// keeps it unexported (Iter.op.cursorId); reflection reads it.
func openCursor(it *mgo.Iter) int64 {
	return reflect.ValueOf(it).Elem().FieldByName("op").FieldByName("cursorId").Int()
}

// isCursorNotFound: a getMore of a cursor the server no longer has, as mgo
// reports it (the getMore command's error 43, or OP_GET_MORE's
// CursorNotFound flag, which mgo calls ErrCursor).
func isCursorNotFound(err error) bool {
	var qe *mgo.QueryError
	if errors.As(err, &qe) {
		return qe.Code == 43
	}
	return err == mgo.ErrCursor
}

func crud(uri string, logs *iterLog) obj {
	out := obj{}
	s, err := dial(uri)
	if err != nil {
		out["error"] = errObj(err, "connect")
		return out
	}
	defer s.Close()
	c := s.DB("legacy").C(fmt.Sprintf("crud_%d_%d", os.Getpid(), time.Now().UnixNano()/1e6))
	step := "insert"
	fail := func(err error) obj { out["error"] = errObj(err, step); return out }

	docs := make([]interface{}, 10)
	for i := range docs {
		docs[i] = bson.M{"_id": i, "n": i}
	}
	if err := c.Insert(docs...); err != nil {
		return fail(err)
	}
	out["inserted"] = len(docs)

	step = "find"
	var doc bson.M
	n := 0
	it := c.Find(nil).Sort("_id").Batch(3).Iter()
	for it.Next(&doc) {
		n++
	}
	if err := it.Close(); err != nil {
		return fail(err)
	}
	out["found"] = n
	out["batches_seen"] = 1 + logs.getMores(it)

	step = "kill"
	// Prefetch(0): no getMore before the buffered batch is used up.
	it = c.Find(nil).Sort("_id").Batch(2).Prefetch(0).Iter()
	if !it.Next(&doc) {
		return fail(fmt.Errorf("no first document: %v", it.Err()))
	}
	cursor := openCursor(it)
	if cursor == 0 {
		return fail(errors.New("the first batch left no open cursor to kill"))
	}
	if err := it.Close(); err != nil { // OP_KILL_CURSORS (no reply, mgo cannot see it fail)
		return fail(err)
	}
	// The kill is real if a getMore of that cursor now finds nothing.
	var rest []bson.M
	err = c.NewIter(nil, nil, cursor, nil).All(&rest)
	if err != nil && !isCursorNotFound(err) {
		return fail(err)
	}
	out["killed"] = isCursorNotFound(err)
	out["after_kill"] = obj{"documents": len(rest), "error": fmt.Sprint(err)}

	step = "dup"
	err = c.Insert(bson.M{"_id": 0})
	if err == nil {
		return fail(errors.New("duplicate _id was accepted"))
	}
	if !mgo.IsDup(err) {
		return fail(err)
	}
	out["dup"] = errObj(err, "")

	step = "count"
	if n, err = c.Count(); err != nil {
		return fail(err)
	}
	out["count"] = n

	step = "upsert"
	info, err := c.Upsert(bson.M{"_id": 100}, bson.M{"$set": bson.M{"n": 100}})
	if err != nil {
		return fail(err)
	}
	out["upsert"] = obj{"matched": info.Matched, "modified": info.Updated, "upserted_id": info.UpsertedId}

	step = "delete"
	// Remove deletes one document and reports no count; RemoveAll would.
	if err := c.Remove(bson.M{"_id": 1}); err != nil {
		return fail(err)
	}
	out["deleted"] = 1

	step = "final_count"
	if n, err = c.Count(); err != nil {
		return fail(err)
	}
	out["final_count"] = n
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
	s, err := dial(uri)
	if err != nil {
		return obj{"reads": 0, "errors": 1, "first_errors": []string{short(err)}, "error": errObj(err, "connect")}
	}
	defer s.Close()
	s.SetPoolLimit(workers + 10)
	key := fmt.Sprintf("r-%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := s.DB("legacy").C("read_loop").Insert(bson.M{"_id": key, "n": 1}); err != nil {
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
				// A session keeps its socket after a network error and fails
				// until Refresh(); mgo applications copy the session per
				// request, as here, and so get a fresh socket each time.
				cs := s.Copy()
				var doc bson.M
				err := cs.DB("legacy").C("read_loop").FindId(key).One(&doc)
				cs.Close()
				if err != nil {
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
	s, err := dial(uri)
	if err != nil {
		return obj{"acked_incs": 0, "acked_inserts": []string{}, "errors": 1, "first_errors": []string{short(err)}, "error": errObj(err, "connect")}
	}
	defer s.Close()
	s.SetSafe(&mgo.Safe{WMode: "majority"})
	var t tally
	ackedIncs, failedIncs := 0, 0
	acked, failed := []string{}, []string{}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for k := 0; time.Now().Before(deadline); k++ {
		cs := s.Copy()
		c := cs.DB("legacy").C("write_loop")
		if _, err := c.Upsert(bson.M{"_id": writer}, bson.M{"$inc": bson.M{"n": 1}}); err != nil {
			failedIncs++
			t.add(err)
		} else {
			ackedIncs++
		}
		id := fmt.Sprintf("%s-%d", writer, k)
		if err := c.Insert(bson.M{"_id": id}); err != nil {
			failed = append(failed, id)
			t.add(err)
		} else {
			acked = append(acked, id)
		}
		cs.Close()
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
	fmt.Fprintln(os.Stderr, "usage: mgo-client URI crud | read-loop SECONDS [WORKERS] | write-loop SECONDS WRITER_ID")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	uri, scenario, args := os.Args[1], os.Args[2], os.Args[3:]
	var tee *log.Logger
	if os.Getenv("MGO_DEBUG") != "" { // mgo's own log of cluster sync and sockets, on stderr
		tee = log.New(os.Stderr, "mgo: ", log.Lmicroseconds)
		mgo.SetLogger(tee)
		mgo.SetDebug(os.Getenv("MGO_DEBUG") == "2")
	}
	var out obj
	switch {
	case scenario == "crud":
		// crud reads mgo's debug log (iterLog); MGO_DEBUG still gets a copy.
		logs := &iterLog{tee: tee}
		mgo.SetLogger(logs)
		mgo.SetDebug(true)
		out = crud(uri, logs)
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
	out["driver"] = "mgo r2016.08.01"
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}
