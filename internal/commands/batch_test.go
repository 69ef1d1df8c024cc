package commands

import (
	"reflect"
	"strings"
	"testing"
)

// runBatch runs each line as one command of a batch on v, applies the
// batch's ops as one entry and returns the replies.
func runBatch(t *testing.T, v *memView, lines ...string) []Reply {
	t.Helper()
	b := NewBatch(v)
	ctx := &Ctx{NowMs: v.now}
	var replies []Reply
	for _, line := range lines {
		args := strings.Fields(line)
		spec, ok := Lookup([]byte(args[0]))
		if !ok {
			t.Fatalf("unknown command %q", args[0])
		}
		a := bargs(args...)
		if err := Check(spec, a); err != nil {
			t.Fatal(err)
		}
		r, err := b.Run(ctx, spec, a)
		if err != nil {
			if !IsInputError(err) {
				t.Fatal(err)
			}
			r = ErrorReply("ERR " + err.Error())
		}
		replies = append(replies, r)
	}
	v.apply(b.Ops())
	return replies
}

// TestBatchSeesItsOwnWrites: each command reads what the ones before it
// wrote, and the ops replayed as one entry give the same keyspace.
func TestBatchSeesItsOwnWrites(t *testing.T) {
	v := newMem(now)
	got := runBatch(t, v, "SET a 1", "INCR a", "HSET h f x", "HGET h f", "GET a", "DEL a", "EXISTS a")
	want := []Reply{OK, Int(2), Int(1), Bulk("x"), Bulk("2"), Int(1), Int(0)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	if r := do(t, v, "HGETALL", "h"); !reflect.DeepEqual(r, Map{Bulk("f"), Bulk("x")}) {
		t.Fatalf("after the entry: HGETALL h = %v", r)
	}
}

// TestBatchRecreatesAtOneVersion: a key created, replaced and created
// again in one batch gets the entry's one version each time; none of the
// first creation's fields may come back.
func TestBatchRecreatesAtOneVersion(t *testing.T) {
	for _, replace := range []string{"SET h s", "DEL h", "PEXPIREAT h 1"} {
		v := newMem(now)
		runBatch(t, v, "HSET h a 1 b 2", replace, "DEL h", "HSET h c 3")
		if r := do(t, v, "HGETALL", "h"); !reflect.DeepEqual(r, Map{Bulk("c"), Bulk("3")}) {
			t.Errorf("replaced by %q: HGETALL h = %v, want only c", replace, r)
		}
		if r := do(t, v, "HLEN", "h"); r != Int(1) {
			t.Errorf("replaced by %q: HLEN h = %v", replace, r)
		}
	}
}

// TestBatchWrongTypeChangesNothing: a command that fails in a batch
// leaves the others' writes and adds none of its own.
func TestBatchWrongTypeChangesNothing(t *testing.T) {
	v := newMem(now)
	got := runBatch(t, v, "SET s 1", "HSET s f v", "INCR s")
	want := []Reply{OK, WrongType, Int(2)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
}

// TestBatchReplacesOlderCollection: a collection from before the batch,
// replaced and created again in it, does not come back: the batch does
// not read the key before the SET (no op of its own touched it), and the
// new creation's version is not the old one's.
func TestBatchReplacesOlderCollection(t *testing.T) {
	v := newMem(now)
	runBatch(t, v, "HSET h a 1 b 2")
	runBatch(t, v, "SET h s", "GET h", "DEL h", "HSET h c 3")
	if r := do(t, v, "HGETALL", "h"); !reflect.DeepEqual(r, Map{Bulk("c"), Bulk("3")}) {
		t.Errorf("HGETALL h = %v, want only c", r)
	}
}

// TestBatchRecreatesAtOneVersionManyOps is TestBatchRecreatesAtOneVersion
// past scanOps ops, where the batch keeps a set of the keys it touched.
func TestBatchRecreatesAtOneVersionManyOps(t *testing.T) {
	v := newMem(now)
	var lines []string
	for i := range scanOps + 8 {
		lines = append(lines, "SET k"+strings.Repeat("x", i)+" v")
	}
	lines = append(lines, "HSET h a 1 b 2")
	for i := range 8 {
		lines = append(lines, "SET j"+strings.Repeat("x", i)+" v")
	}
	lines = append(lines, "SET h s", "DEL h", "HSET h c 3")
	runBatch(t, v, lines...)
	if r := do(t, v, "HGETALL", "h"); !reflect.DeepEqual(r, Map{Bulk("c"), Bulk("3")}) {
		t.Errorf("HGETALL h = %v, want only c", r)
	}
}
