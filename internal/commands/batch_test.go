package commands

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
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

// TestBatchOverAnOlderCollection: a whole-value write in a batch over a
// collection from an earlier entry logs no drop (its rows are the
// sweeper's, as after a single SET) and reads nothing for it, and a
// collection created again in the batch shows none of the old fields.
func TestBatchOverAnOlderCollection(t *testing.T) {
	v := newMem(now)
	runBatch(t, v, "HSET h a 1 b 2")
	b := NewBatch(v)
	for _, line := range []string{"SET h s", "DEL h", "HSET h c 3"} {
		args := strings.Fields(line)
		spec, _ := Lookup([]byte(args[0]))
		if _, err := b.Run(&Ctx{NowMs: v.now}, spec, bargs(args...)); err != nil {
			t.Fatal(err)
		}
	}
	if op := b.Ops()[0]; op.Kind != logrec.OpPut {
		t.Errorf("the batch's first op is %v, want the SET's put (no drop of the older hash)", op.Kind)
	}
	v.apply(b.Ops())
	if r := do(t, v, "HGETALL", "h"); !reflect.DeepEqual(r, Map{Bulk("c"), Bulk("3")}) {
		t.Errorf("HGETALL h = %v, want only c", r)
	}
}

// TestBatchRecreatesAtOneVersionManyOps is TestBatchRecreatesAtOneVersion
// in a batch of many ops (a pipeline of writes is one batch).
func TestBatchRecreatesAtOneVersionManyOps(t *testing.T) {
	v := newMem(now)
	var lines []string
	for i := range 40 {
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

// TestBatchRecreatesManyCollections: a batch that creates more
// collections than it keeps in order (createdInline) still knows each of
// them, those it noted before it moved to its map and after, and logs the
// drop before a write over any: each is made again at the same version
// with only its new field.
func TestBatchRecreatesManyCollections(t *testing.T) {
	v := newMem(now)
	var lines []string
	n := 3 * createdInline
	for i := range n {
		lines = append(lines, fmt.Sprintf("HSET h%d a 1 b 2", i))
	}
	for i := range n {
		lines = append(lines, fmt.Sprintf("SET h%d s", i), fmt.Sprintf("DEL h%d", i), fmt.Sprintf("HSET h%d c 3", i))
	}
	runBatch(t, v, lines...)
	for i := range n {
		if r := do(t, v, "HGETALL", fmt.Sprintf("h%d", i)); !reflect.DeepEqual(r, Map{Bulk("c"), Bulk("3")}) {
			t.Errorf("HGETALL h%d = %v, want only c", i, r)
		}
	}
}

// TestBatchViewIsLazy: blind writes (a pipeline of SETs) never build the
// batch's layer, and a view read after later ops were added sees only
// the ops run before it was made (what Run's check of a write over a
// collection the batch created relies on).
func TestBatchViewIsLazy(t *testing.T) {
	v := newMem(now)
	b := NewBatch(v)
	ctx := &Ctx{NowMs: v.now}
	run := func(line string) Reply {
		t.Helper()
		args := strings.Fields(line)
		spec, _ := Lookup([]byte(args[0]))
		r, err := b.Run(ctx, spec, bargs(args...))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, line := range []string{"SET a 1", "SET b 2", "SET a 3"} {
		run(line)
	}
	if b.layer != nil {
		t.Fatalf("blind SETs built the batch's layer:\n%v", b.layer)
	}
	old := b.View()
	run("SET a 4")
	if got, ok, err := old.Get([]byte("a")); err != nil || !ok || string(got.Data) != "3" {
		t.Fatalf("a view made after 3 SETs reads a = %q, %v, %v after a 4th; want 3", got.Data, ok, err)
	}
	if r := run("GET a"); !reflect.DeepEqual(r, Bulk("4")) {
		t.Fatalf("GET a in the batch = %v, want 4", r)
	}
}

// TestBatchViewsAllocateNothing: with room reserved, a command's view
// allocates nothing (a Reader boxed as a View did, one per command), and
// a view made before the views' slice was moved (Reserve, growth) still
// reads the ops run before it.
func TestBatchViewsAllocateNothing(t *testing.T) {
	v := newMem(now)
	b := NewBatch(v)
	ctx := &Ctx{NowMs: v.now}
	set, _ := Lookup([]byte("set"))
	if _, err := b.Run(ctx, set, bargs("SET", "a", "1")); err != nil {
		t.Fatal(err)
	}
	first := b.View()
	b.Reserve(100, 0)
	if n := testing.AllocsPerRun(50, func() { _ = b.View() }); n != 0 {
		t.Fatalf("View with room reserved: %v allocations, want 0", n)
	}
	for i := range 200 { // past the reserved room: the slice grows
		if _, err := b.Run(ctx, set, bargs("SET", "a", strconv.Itoa(i+2))); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok, err := first.Get([]byte("a")); err != nil || !ok || string(got.Data) != "1" {
		t.Fatalf("the first view reads a = %q, %v, %v; want 1", got.Data, ok, err)
	}
	if got, ok, err := b.View().Get([]byte("a")); err != nil || !ok || string(got.Data) != "201" {
		t.Fatalf("the last view reads a = %q, %v, %v; want 201", got.Data, ok, err)
	}
}

// TestBatchReservedOps: a batch with room reserved for its commands' ops
// (a MULTI of 5 SETs) allocates only what the commands themselves do
// (each SET's op, the view and op slices once), never growing its ops
// slice command by command (1, 2, 4, 8: four more allocations).
func TestBatchReservedOps(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: v.now}
	set, _ := Lookup([]byte("set"))
	var cmds [5][][]byte
	for i := range cmds {
		cmds[i] = bargs("SET", "k"+strconv.Itoa(i), "v")
	}
	allocs := testing.AllocsPerRun(50, func() {
		b := NewBatch(v)
		b.Reserve(len(cmds), len(cmds))
		for _, args := range cmds {
			if _, err := b.Run(ctx, set, args); err != nil {
				t.Fatal(err)
			}
		}
		if len(b.Ops()) != len(cmds) {
			t.Fatalf("%d ops, want %d", len(b.Ops()), len(cmds))
		}
	})
	// The batch, its views and ops slices, and one op slice per SET.
	if want := float64(3 + len(cmds)); allocs > want {
		t.Fatalf("a batch of %d SETs with room reserved: %v allocations, want at most %v", len(cmds), allocs, want)
	}
}

// TestBatchAdoptsFirstOps: a batch with no room reserved (a script's)
// keeps the first writing command's ops slice as its own, no copy (one
// allocation a script fewer), capped at its length: the next command's
// op goes to a new slice, never into the spare room of the first's
// backing array, which the command may share.
func TestBatchAdoptsFirstOps(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: v.now}
	set, _ := Lookup([]byte("set"))
	alone := testing.AllocsPerRun(50, func() {
		if _, err := set.Exec(ctx, v, bargs("SET", "a", "1")); err != nil {
			t.Fatal(err)
		}
	})
	inBatch := testing.AllocsPerRun(50, func() {
		b := NewBatch(v)
		if _, err := b.Run(ctx, set, bargs("SET", "a", "1")); err != nil {
			t.Fatal(err)
		}
	})
	// The batch itself, and no ops slice of its own.
	if inBatch > alone+1 {
		t.Fatalf("a SET in a batch: %v allocations, alone %v: want at most one more (the batch)", inBatch, alone)
	}

	shared := make([]logrec.Op, 1, 2)
	shared[0] = logrec.Op{Kind: logrec.OpPut, Key: []byte("s"), Value: []byte("1")}
	sentinel := logrec.Op{Kind: logrec.OpPut, Key: []byte("untouched")}
	shared[:2][1] = sentinel
	spare := &Spec{Name: "spare", Arity: 1, Flags: FlagWrite, Exec: func(*Ctx, View, [][]byte) (Result, error) {
		return Result{Reply: OK, Ops: shared}, nil
	}}
	b := NewBatch(v)
	if _, err := b.Run(ctx, spare, bargs("SPARE")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx, set, bargs("SET", "a", "2")); err != nil {
		t.Fatal(err)
	}
	if got := shared[:2][1]; string(got.Key) != "untouched" {
		t.Fatalf("the second command's op was written into the first's backing array: %+v", got)
	}
	ops := b.Ops()
	if len(ops) != 2 || string(ops[0].Key) != "s" || string(ops[1].Key) != "a" || string(ops[1].Value) != "2" {
		t.Fatalf("ops %+v, want the put of s then of a", ops)
	}
	if r := b.View(); r != nil {
		if got, ok, err := r.Get([]byte("s")); err != nil || !ok || string(got.Data) != "1" {
			t.Fatalf("the batch's view reads s = %q, %v, %v; want 1", got.Data, ok, err)
		}
	}
}
