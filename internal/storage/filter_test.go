package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestBloomFiltersAboveTheBottomLevel: a flushed table (L0) carries a
// bloom filter, a table compacted into the bottom level none (see Open),
// and a point read finds its row either way.
func TestBloomFiltersAboveTheBottomLevel(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	var lsn uint64
	write := func() {
		var es []logrec.Entry
		for i := range 100 {
			lsn++
			es = append(es, entry(1, lsn, put(fmt.Sprintf("key:%d", i), fmt.Sprintf("v%d", lsn))))
		}
		if err := d.AppendLog(encodeAll(es...)); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(es); err != nil {
			t.Fatal(err)
		}
		if err := d.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	filters := func() map[int][]string { // level -> each table's filter policy
		levels, err := d.pdb.SSTables(pebble.WithProperties())
		if err != nil {
			t.Fatal(err)
		}
		out := map[int][]string{}
		for l, tables := range levels {
			for _, tb := range tables {
				out[l] = append(out[l], tb.Properties.FilterPolicyName)
			}
		}
		return out
	}
	get := func() {
		v := View{DB: d}
		if _, ok, err := v.Get([]byte("key:7")); err != nil || !ok {
			t.Fatalf("Get key:7: found %v, %v", ok, err)
		}
	}
	bottom := len(d.pdb.Metrics().Levels) - 1

	write()
	fs := filters()
	if len(fs[0]) == 0 || fs[0][0] == "" {
		t.Fatalf("after a flush, L0's tables have filters %q; want a bloom filter", fs[0])
	}
	get()
	write() // a second table over the same keys: the compaction rewrites both (one alone would be moved, filter and all)
	if err := d.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	fs = filters()
	if len(fs[bottom]) == 0 {
		t.Fatalf("after a full compaction no table is in L%d: %v", bottom, fs)
	}
	for _, f := range fs[bottom] {
		if f != "" {
			t.Fatalf("a table in the bottom level has filter %q; want none", f)
		}
	}
	get()
	write() // above the bottom again
	if fs = filters(); len(fs[0]) == 0 || fs[0][0] == "" {
		t.Fatalf("a flush on top of the bottom level made tables with filters %q; want a bloom filter", fs[0])
	}
}
