package storage

import (
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkLRange is redis-benchmark's LRANGE_100 and LRANGE_300 on the
// committed data, as a leader or follower serves a read: LRANGE mylist 0
// 99 (or 299) on a list of 10,000 100-byte elements pushed one per entry
// with LPUSH, flushed to sstables as a long-running node's list would be.
func BenchmarkLRange(b *testing.B) {
	d, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	spec, _ := commands.Lookup([]byte("lpush"))
	val := []byte(strings.Repeat("x", 100))
	var lsn uint64
	for range 100 {
		es := make([]logrec.Entry, 100)
		raws := make([][]byte, 100)
		for j := range es {
			lsn++
			v := keyspace.Reader{R: dbRows{d}, LSN: lsn}
			res, err := spec.Exec(&commands.Ctx{}, v, [][]byte{[]byte("lpush"), []byte("mylist"), val})
			if err != nil {
				b.Fatal(err)
			}
			es[j] = logrec.Entry{Epoch: 1, LSN: lsn, Ops: res.Ops}
			raws[j] = logrec.Encode(&es[j])
			if err := d.AppendLog(raws[j : j+1]); err != nil {
				b.Fatal(err)
			}
			if err := d.Apply(es[j : j+1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := d.pdb.Flush(); err != nil {
		b.Fatal(err)
	}
	lrange, _ := commands.Lookup([]byte("lrange"))
	for _, n := range []string{"99", "299"} {
		b.Run("0-"+n, func(b *testing.B) {
			args := [][]byte{[]byte("lrange"), []byte("mylist"), []byte("0"), []byte(n)}
			v := View{DB: d}
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU()
			for b.Loop() {
				res, err := lrange.Exec(&commands.Ctx{}, v, args)
				if err != nil {
					b.Fatal(err)
				}
				if a, ok := res.Reply.(commands.Bulks); !ok || len(a) == 0 {
					b.Fatalf("reply %v", res.Reply)
				}
			}
			// CPU time survives a loaded machine better than ns/op.
			b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
