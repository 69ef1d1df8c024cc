package storage

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkApplySub is the apply of HSET-shaped entries (a field put and
// the hash's metadata row) of random fields of one hash, and of
// LPUSH/LPOP-shaped ones, in groups of 32: what writing sub-key rows
// through the row cache costs (compare RowCacheBytes -1, no cache).
func BenchmarkApplySub(b *testing.B) {
	for _, rc := range []struct {
		name  string
		bytes int64
	}{{"rowcache", 0}, {"nocache", -1}} {
		for _, shape := range []string{"hset", "push-pop"} {
			b.Run(rc.name+"/"+shape, func(b *testing.B) {
				d, err := Open("bench", Options{FS: vfs.NewMem(), RowCacheBytes: rc.bytes})
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				val := []byte(strings.Repeat("v", 100))
				r := rand.New(rand.NewPCG(1, 2))
				var lsn, size uint64
				head := keyspace.ListStartIndex
				op := func(i int) []logrec.Op {
					if shape == "hset" {
						size++
						return []logrec.Op{
							{Kind: logrec.OpSubPut, Key: []byte("myhash"), Version: 1, Sub: fmt.Appendf(nil, "element:%012d", r.IntN(100000)), Value: val},
							{Kind: logrec.OpMeta, Key: []byte("myhash"), Type: uint8(keyspace.TypeHash), Version: 1, Size: size},
						}
					}
					if i%2 == 0 { // a push at the tail
						size++
						return []logrec.Op{
							{Kind: logrec.OpSubPut, Key: []byte("mylist"), Version: 1, Sub: keyspace.ListIndexSub(head + size - 1), Value: val},
							{Kind: logrec.OpMeta, Key: []byte("mylist"), Type: uint8(keyspace.TypeList), Version: 1, Size: size},
						}
					}
					// a pop at the head
					size--
					head++
					return []logrec.Op{
						{Kind: logrec.OpSubDel, Key: []byte("mylist"), Version: 1, Sub: keyspace.ListIndexSub(head - 1)},
						{Kind: logrec.OpSubPut, Key: []byte("mylist"), Version: 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(head)},
						{Kind: logrec.OpMeta, Key: []byte("mylist"), Type: uint8(keyspace.TypeList), Version: 1, Size: size},
					}
				}
				const group = 32
				batches := make([][]logrec.Entry, b.N)
				for i := range batches {
					es := make([]logrec.Entry, group)
					for j := range es {
						lsn++
						es[j] = logrec.Entry{Epoch: 1, LSN: lsn, TimeNs: int64(lsn), Ops: op(i*group + j)}
					}
					batches[i] = es
					if err := d.AppendLog(encodeAll(es...)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range batches {
					if err := d.Apply(batches[i]); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N*group), "µs/entry")
			})
		}
	}
}
