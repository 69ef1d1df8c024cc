package storage

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

func withPrior(op logrec.Op, p logrec.Prior) logrec.Op {
	op.Prior = p
	return op
}

// A put that says its prior row (logrec.Op.Prior) is applied without a
// read of the old row, for new keys and overwrites alike, and the counts
// hold; a put without one still reads. The row cache is off, so that
// every read is a Pebble read, counted.
func TestPriorSparesTheRead(t *testing.T) {
	d, err := Open(dir, Options{FS: vfs.NewMem(), CacheBytes: 1 << 20, RowCacheBytes: -1, Logger: testLogger(t), CheckPriors: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 1000
	lsn := uint64(0)
	// write puts key:0..n-1, every other one expiring when exp, with the
	// prior prior(i) gives.
	write := func(what string, exp bool, prior func(i int) logrec.Prior) int64 {
		t.Helper()
		reads := d.filters.reads.Load()
		for lo := 0; lo < n; lo += 100 {
			var es []logrec.Entry
			for i := lo; i < lo+100; i++ {
				lsn++
				at := int64(0)
				if exp && i%2 == 1 {
					at = int64(i)
				}
				es = append(es, entry(1, lsn, withPrior(putExp(fmt.Sprintf("key:%d", i), "v", at), prior(i))))
			}
			mustAppend(t, d, es...)
			mustApply(t, d, es...)
		}
		checkCounts(t, what, d)
		return d.filters.reads.Load() - reads
	}
	if reads := write("new keys", true, func(int) logrec.Prior { return logrec.PriorNone }); reads != 0 {
		t.Errorf("%d reads of an old row for %d new keys that said so, want 0", reads, n)
	}
	overwrite := func(i int) logrec.Prior {
		if i%2 == 1 {
			return logrec.PriorExpiring
		}
		return logrec.PriorPlain
	}
	if reads := write("overwrites", false, overwrite); reads != 0 {
		t.Errorf("%d reads of an old row for %d overwrites that said their rows, want 0", reads, n)
	}
	if got := d.KeyCounts(); got != (KeyCounts{n, 0}) {
		t.Errorf("counts %+v after the overwrites dropped every expiry, want {%d 0}", got, n)
	}
	if reads := write("overwrites without a prior", false, func(int) logrec.Prior { return logrec.PriorUnknown }); reads != n {
		t.Errorf("%d reads of an old row for %d overwrites that did not say, want %d", reads, n, n)
	}
}

// Within one batch a key's row written by an earlier op is what the next
// put replaces, and its Prior says so (CheckPriors compares them); a
// FLUSHALL earlier in the batch leaves no row.
func TestPriorAfterTheBatchsOwnWrites(t *testing.T) {
	d, err := Open(dir, Options{FS: vfs.NewMem(), RowCacheBytes: -1, Logger: testLogger(t), CheckPriors: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	es := []logrec.Entry{
		entry(1, 1, withPrior(putExp("a", "1", 50), logrec.PriorNone), withPrior(put("a", "2"), logrec.PriorExpiring), withPrior(put("b", "1"), logrec.PriorNone)),
		entry(1, 2, withPrior(put("a", "3"), logrec.PriorPlain), del("b"), withPrior(put("b", "2"), logrec.PriorNone)),
		entry(1, 3, logrec.Op{Kind: logrec.OpFlushAll}, withPrior(putExp("a", "4", 60), logrec.PriorNone)),
	}
	mustAppend(t, d, es...)
	for i := range es {
		mustApply(t, d, es[i])
		checkCounts(t, fmt.Sprintf("entry %d", i+1), d)
	}
	if got := d.KeyCounts(); got != (KeyCounts{1, 1}) {
		t.Errorf("counts %+v, want {1 1}", got)
	}
}

// CheckPriors catches a put whose Prior is not the row it replaces: a new
// key said to exist, an existing one said new, an expiry said absent, and
// the same against the batch's own write. Without it such a put is
// counted as it says, and the counts leave the rows (unless the batch
// wrote the key: it knows better).
func TestCheckPriorsCatchesAWrongPrior(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup []logrec.Op
		put   logrec.Op
		// together: one Apply of both entries, so the batch's own write
		// is the row the put replaces.
		together bool
	}{
		{"new key said to exist", nil, withPrior(put("k", "v"), logrec.PriorPlain), false},
		{"existing key said new", []logrec.Op{put("k", "v")}, withPrior(put("k", "w"), logrec.PriorNone), false},
		{"expiry said absent", []logrec.Op{putExp("k", "v", 99)}, withPrior(put("k", "w"), logrec.PriorPlain), false},
		{"no expiry said present", []logrec.Op{put("k", "v")}, withPrior(put("k", "w"), logrec.PriorExpiring), false},
		{"the batch's own write said absent", []logrec.Op{putExp("k", "v", 99)}, withPrior(put("k", "w"), logrec.PriorNone), true},
		{"a FLUSHALL in the batch said to leave a row", []logrec.Op{put("k", "v"), {Kind: logrec.OpFlushAll}}, withPrior(put("k", "w"), logrec.PriorPlain), true},
	} {
		for _, check := range []bool{true, false} {
			d, err := Open(dir, Options{FS: vfs.NewMem(), Logger: testLogger(t), CheckPriors: check})
			if err != nil {
				t.Fatal(err)
			}
			es := []logrec.Entry{entry(1, 1, tt.setup...), entry(1, 2, tt.put)}
			mustAppend(t, d, es...)
			if tt.together {
				err = d.Apply(es)
			} else {
				mustApply(t, d, es[0])
				err = d.Apply(es[1:])
			}
			if check {
				if err == nil || !strings.Contains(err.Error(), "prior row") {
					t.Errorf("%s: Apply with CheckPriors = %v, want the wrong prior reported", tt.name, err)
				}
			} else if tt.together {
				// The batch knows better than the put: the counts hold.
				if err != nil {
					t.Errorf("%s: Apply without CheckPriors: %v", tt.name, err)
				}
				checkCounts(t, tt.name, d)
			} else {
				want, cerr := d.countRows()
				if err != nil || cerr != nil || d.KeyCounts() == want {
					t.Errorf("%s: Apply without CheckPriors = %v; counts %+v, rows %+v (%v): want them apart", tt.name, err, d.KeyCounts(), want, cerr)
				}
			}
			d.Close()
		}
	}
}
