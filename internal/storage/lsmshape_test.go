package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestTablesHoldOneKindOfRow: every table a flush or a compaction writes
// holds keys of one first byte only (splitAtPrefixes), so a flushed table
// of data rows does not reach the metadata rows each Apply writes.
func TestTablesHoldOneKindOfRow(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	var lsn uint64
	write := func(from int) {
		var es []logrec.Entry
		for i := from; i < from+100; i++ {
			lsn++
			// Data rows, expiry index rows and (every Apply) metadata rows.
			es = append(es, entry(1, lsn, put(fmt.Sprintf("key:%d", i), "v"), putExp(fmt.Sprintf("exp:%d", i), "v", 1<<50)))
		}
		mustAppend(t, d, es...)
		mustApply(t, d, es...)
		if err := d.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		levels, err := d.pdb.SSTables()
		if err != nil {
			t.Fatal(err)
		}
		tables := 0
		kinds := map[byte]bool{}
		for l, ts := range levels {
			for _, tb := range ts {
				tables++
				lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey
				if lo[0] != hi[0] {
					t.Fatalf("%s: table %s in L%d spans %q..%q: rows of two kinds", when, tb.FileNum, l, lo, hi)
				}
				kinds[lo[0]] = true
			}
		}
		if !kinds['d'] || !kinds['e'] || !kinds['m'] {
			t.Fatalf("%s: %d tables hold the kinds %v; want d, e and m", when, tables, kinds)
		}
	}
	write(0)
	check("after a flush")
	write(50) // overlapping the first: a compaction merges them
	if err := d.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	check("after a compaction")
}
