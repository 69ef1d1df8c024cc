package storage

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

func hmeta(k string, ver, size uint64) logrec.Op {
	return logrec.Op{Kind: logrec.OpMeta, Key: []byte(k), Type: uint8(keyspace.TypeHash), Version: ver, Size: size}
}

func hput(k string, ver uint64, f, v string) logrec.Op {
	return logrec.Op{Kind: logrec.OpSubPut, Key: []byte(k), Version: ver, Sub: []byte(f), Value: []byte(v)}
}

// hashDump is key's fields as f=v, read through the View.
func hashDump(t *testing.T, d *DB, key string) string {
	t.Helper()
	v := View{DB: d}
	h, ok, err := v.Get([]byte(key))
	if err != nil || !ok {
		return fmt.Sprintf("none (%v)", err)
	}
	var fs []string
	if err := v.SubScan([]byte(key), h.Version, nil, func(f, val []byte) bool {
		fs = append(fs, string(f)+"="+string(val))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s v%d n%d [%s]", h.Type, h.Version, h.Size, strings.Join(fs, " "))
}

func subRows(t *testing.T, d *DB) int {
	n := 0
	for _, r := range rowsDump(t, d) {
		if strings.HasPrefix(r, "73") { // 's'
			n++
		}
	}
	return n
}

// TestTypedApply: hash ops go to rows and read back through the View; a
// drop hides a version's rows at once (one range tombstone); a string
// put over a hash leaves garbage that Digest and snapshots skip and Sweep
// removes; FLUSHALL empties everything, the row cache included.
func TestTypedApply(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{
		entry(1, 1, hput("h", 1, "a", "1"), hput("h", 1, "b", "2"), hmeta("h", 1, 2), put("s", "x")),
		entry(1, 2, hput("h", 1, "a", "one"), logrec.Op{Kind: logrec.OpSubDel, Key: []byte("h"), Version: 1, Sub: []byte("b")}, hmeta("h", 1, 1)),
		entry(1, 3, hput("g", 3, "f", "v"), hmeta("g", 3, 1)),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if got := hashDump(t, d, "h"); got != "hash v1 n1 [a=one]" {
		t.Fatalf("h = %s", got)
	}
	if v, ok, _ := (View{DB: d}).Sub([]byte("g"), 3, []byte("f")); !ok || string(v) != "v" {
		t.Fatalf("g.f = %q, %v", v, ok)
	}
	// DEL h: a drop; SET g over the hash g: garbage.
	es = []logrec.Entry{
		entry(1, 4, logrec.Op{Kind: logrec.OpDrop, Key: []byte("h"), Version: 1}),
		entry(1, 5, put("g", "now a string")),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if got := hashDump(t, d, "h"); !strings.HasPrefix(got, "none") {
		t.Fatalf("h after drop = %s", got)
	}
	if n := subRows(t, d); n != 1 {
		t.Fatalf("%d sub-key rows after the drop and the overwrite, want g's 1 (garbage)", n)
	}
	_, before, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if removed, err := d.Sweep(1, 100); err != nil || removed != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 garbage group removed", removed, err)
	}
	if n := subRows(t, d); n != 0 {
		t.Fatalf("%d sub-key rows after Sweep, want 0", n)
	}
	if _, after, _ := d.Digest(); after != before {
		t.Fatal("Sweep changed the digest: it must hash live rows only")
	}
	// FLUSHALL, after a read cached h's and s's rows.
	_, _, _ = View{DB: d}.Get([]byte("s"))
	es = []logrec.Entry{entry(1, 6, putExp("e", "1", 99999), logrec.Op{Kind: logrec.OpFlushAll}, put("after", "1"))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if got := rowsDump(t, d); len(got) != 1 || got[0] != "646166746572=000000000000000031" {
		t.Fatalf("rows after FLUSHALL: %v", got)
	}
	if _, ok, _ := (View{DB: d}).Get([]byte("s")); ok {
		t.Fatal("s read from the row cache after FLUSHALL")
	}
	if rows := expiryRows(t, d); len(rows) != 0 {
		t.Fatalf("expiry index after FLUSHALL: %v", rows)
	}
}

// TestSweepBounded: a call visits at most its budget of groups, a pass
// resumes where the last call stopped, live groups are kept, and a new
// pass starts only sweepIntervalMs after the last one ended.
func TestSweepBounded(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	var es []logrec.Entry
	for i := range uint64(10) {
		k := fmt.Sprintf("k%d", i)
		ops := []logrec.Op{hput(k, i+1, "f", "v"), hmeta(k, i+1, 1)}
		if i%2 == 0 {
			ops = append(ops, put(k, "string")) // garbage
		}
		es = append(es, entry(1, i+1, ops...))
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	total := 0
	for call := 0; call < 4; call++ {
		n, err := d.Sweep(1000, 3)
		if err != nil {
			t.Fatal(err)
		}
		if n > 3 {
			t.Fatalf("call %d removed %d groups with a budget of 3", call, n)
		}
		total += n
	}
	if total != 5 || d.sweep.passes != 1 {
		t.Fatalf("removed %d groups in %d passes, want 5 in 1", total, d.sweep.passes)
	}
	if n := subRows(t, d); n != 5 {
		t.Fatalf("%d sub-key rows left, want the 5 live ones", n)
	}
	// Not due again yet.
	mustAppend(t, d, entry(1, 11, put("k1", "string")))
	mustApply(t, d, entry(1, 11, put("k1", "string")))
	if n, _ := d.Sweep(1000+sweepIntervalMs-1, 100); n != 0 {
		t.Fatalf("a pass started %d ms early", 1)
	}
	if n, _ := d.Sweep(1000+sweepIntervalMs, 100); n != 1 {
		t.Fatalf("the next pass removed %d groups, want 1", n)
	}
}

// TestIngestTyped: a snapshot carries the live rows of every type, and the
// seeded node has the source's digest.
func TestIngestTyped(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer src.Close()
	es := []logrec.Entry{
		entry(1, 1, hput("h", 1, "a", "1"), hmeta("h", 1, 1), putExp("s", "x", 1<<40)),
		entry(1, 2, hput("g", 2, "b", "2"), hmeta("g", 2, 1), put("g", "over")), // garbage
	}
	mustAppend(t, src, es...)
	mustApply(t, src, es...)
	dst := open(t, vfs.NewMem())
	defer dst.Close()
	ingest(t, src, dst, true)
	_, a, _ := src.Digest()
	_, b, _ := dst.Digest()
	if a != b {
		t.Fatal("seeded digest differs from the source's")
	}
	if got := hashDump(t, dst, "h"); got != "hash v1 n1 [a=1]" {
		t.Fatalf("seeded h = %s", got)
	}
	if n := subRows(t, dst); n != 1 {
		t.Fatalf("seeded %d sub-key rows, want 1 (no garbage)", n)
	}
	if rows := expiryRows(t, dst); len(rows) != 1 {
		t.Fatalf("seeded expiry index %v, want s's row", rows)
	}
	// Three keys (h, s, g), one expiring: sub-key rows are not keys.
	if got := dst.KeyCounts(); got != (KeyCounts{3, 1}) || got != src.KeyCounts() {
		t.Fatalf("seeded key counts %+v (source %+v), want {3 1}", got, src.KeyCounts())
	}
}

// TestApplyWritesAMetadataRowOnce: a group of entries that each write a
// field of one hash and its metadata row (HSET from many clients, a
// group commit) puts each field in the batch and the metadata row once,
// its last state; a key deleted and written again, or written and
// deleted, in one Apply ends as its last op says, and the key counts
// follow.
func TestApplyWritesAMetadataRowOnce(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	const n = 32
	var es []logrec.Entry
	for i := range n {
		es = append(es, entry(1, uint64(i+1), hput("h", 1, fmt.Sprint("f", i), "v"), hmeta("h", 1, uint64(i+1))))
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	// n fields, one metadata row, the applied LSN and the key counts.
	if got, want := d.ApplyRecords(), uint64(n+1+2); got != want {
		t.Errorf("%d entries of a field and the metadata row: %d records, want %d", n, got, want)
	}
	if got := hashDump(t, d, "h"); !strings.HasPrefix(got, fmt.Sprintf("hash v1 n%d [", n)) {
		t.Errorf("h = %s, want %d fields", got, n)
	}
	// A list pushed at its head by every entry (LPUSH): each element,
	// and its head row and metadata row once.
	ls := []logrec.Entry{}
	for i := range n {
		head := keyspace.ListStartIndex - uint64(i)
		ls = append(ls, entry(1, uint64(n+1+i),
			logrec.Op{Kind: logrec.OpSubPut, Key: []byte("l"), Version: n + 1, Sub: keyspace.ListIndexSub(head), Value: []byte("e")},
			logrec.Op{Kind: logrec.OpSubPut, Key: []byte("l"), Version: n + 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(head)},
			logrec.Op{Kind: logrec.OpMeta, Key: []byte("l"), Type: uint8(keyspace.TypeList), Version: n + 1, Size: uint64(i + 1)}))
	}
	r0 := d.ApplyRecords()
	mustAppend(t, d, ls...)
	mustApply(t, d, ls...)
	if got, want := d.ApplyRecords()-r0, uint64(n+2+2); got != want {
		t.Errorf("%d pushes at a list's head: %d records, want %d", n, got, want)
	}
	if got := hashDump(t, d, "l"); !strings.HasPrefix(got, fmt.Sprintf("list v%d n%d [=%s ", n+1, n, keyspace.ListHeadRow(keyspace.ListStartIndex-n+1))) {
		t.Errorf("l = %q, want %d elements and the last head", got, n)
	}
	// Written, deleted, written again; written then deleted.
	more := []logrec.Entry{
		entry(1, 2*n+1, put("s", "1"), del("t")),
		entry(1, 2*n+2, del("s"), put("t", "2")),
		entry(1, 2*n+3, put("s", "3"), logrec.Op{Kind: logrec.OpDrop, Key: []byte("h"), Version: 1}, logrec.Op{Kind: logrec.OpDrop, Key: []byte("l"), Version: n + 1}),
		entry(1, 2*n+4, put("t", "4"), del("t")),
	}
	mustAppend(t, d, more...)
	mustApply(t, d, more...)
	v := View{DB: d}
	for k, want := range map[string]string{"s": "3", "t": "", "h": "", "l": ""} {
		got, ok, err := v.Get([]byte(k))
		if err != nil || ok != (want != "") || (ok && string(got.Data) != want) {
			t.Errorf("%s = %q %v %v, want %q", k, got.Data, ok, err, want)
		}
	}
	if c := d.KeyCounts(); c.Keys != 1 {
		t.Errorf("key counts %+v, want 1 key", c)
	}
}

// TestApplyJobPushedAndPoppedWritesOneRow: a job queue's LPUSH/BLPOP is a
// stack, so under a backlog the pops of a group commit take the elements
// its pushes put at the list's head: within one Apply each element row
// is put and deleted again, and only the deletion goes into the batch
// (one record for the n jobs here, all at one index, not 2n). A row
// that was there before the Apply and that the batch puts and deletes
// is gone after it: the deletion is never left out with the put.
func TestApplyJobPushedAndPoppedWritesOneRow(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	const ver = 1
	head := keyspace.ListStartIndex
	listOps := func(at uint64, elem string, del bool, newHead uint64, size uint64) []logrec.Op {
		el := logrec.Op{Kind: logrec.OpSubPut, Key: []byte("q"), Version: ver, Sub: keyspace.ListIndexSub(at), Value: []byte(elem)}
		if del {
			el = logrec.Op{Kind: logrec.OpSubDel, Key: []byte("q"), Version: ver, Sub: keyspace.ListIndexSub(at)}
		}
		return []logrec.Op{el,
			{Kind: logrec.OpSubPut, Key: []byte("q"), Version: ver, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(newHead)},
			{Kind: logrec.OpMeta, Key: []byte("q"), Type: uint8(keyspace.TypeList), Version: ver, Size: size}}
	}
	// A backlog of two jobs: "old" at head, "older" after it.
	first := []logrec.Entry{
		entry(1, 1, listOps(head+1, "older", false, head+1, 1)...),
		entry(1, 2, listOps(head, "old", false, head, 2)...),
	}
	mustAppend(t, d, first...)
	mustApply(t, d, first...)
	want := func(what, dump string) {
		t.Helper()
		if got := hashDump(t, d, "q"); got != dump {
			t.Errorf("%s: q = %q, want %q", what, got, dump)
		}
	}
	row := func(i uint64, v string) string { return string(keyspace.ListIndexSub(i)) + "=" + v }
	want("backlog", fmt.Sprintf("list v1 n2 [=%s %s %s]", keyspace.ListHeadRow(head), row(head, "old"), row(head+1, "older")))
	// n jobs, each pushed at head-1 and popped from there, in one Apply.
	const n = 16
	var jobs []logrec.Entry
	lsn := uint64(3)
	for i := range n {
		jobs = append(jobs, entry(1, lsn, listOps(head-1, fmt.Sprint("job", i), false, head-1, 3)...))
		jobs = append(jobs, entry(1, lsn+1, listOps(head-1, "", true, head, 2)...))
		lsn += 2
	}
	r0 := d.ApplyRecords()
	mustAppend(t, d, jobs...)
	mustApply(t, d, jobs...)
	// The element row's deletion, the head and metadata rows once each,
	// the applied LSN and the key counts.
	if got, want := d.ApplyRecords()-r0, uint64(1+2+2); got != want {
		t.Errorf("%d jobs pushed and popped in one Apply: %d records, want %d", n, got, want)
	}
	want("after the jobs", fmt.Sprintf("list v1 n2 [=%s %s %s]", keyspace.ListHeadRow(head), row(head, "old"), row(head+1, "older")))
	// A row there before the Apply, put again and deleted in it (an LSET
	// then a pop of "old"): gone after it.
	again := []logrec.Entry{
		entry(1, lsn, listOps(head, "new", false, head, 2)...),
		entry(1, lsn+1, listOps(head, "", true, head+1, 1)...),
	}
	mustAppend(t, d, again...)
	mustApply(t, d, again...)
	want("after a put and a pop of the head", fmt.Sprintf("list v1 n1 [=%s %s]", keyspace.ListHeadRow(head+1), row(head+1, "older")))
}
