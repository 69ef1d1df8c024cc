package keyspace

import (
	"fmt"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkLayerOps is the leader's overlay and its hints taking one
// entry's ops and, 32 entries later, the overlay forgetting them once
// applied, for the op shapes of redis-benchmark's writes: the allocations
// per entry are the point.
func BenchmarkLayerOps(b *testing.B) {
	val := make([]byte, 100)
	shapes := map[string]func(i int) []logrec.Op{
		"set": func(i int) []logrec.Op {
			return []logrec.Op{{Kind: logrec.OpPut, Key: fmt.Appendf(nil, "key:%012d", i), Value: val}}
		},
		"sadd": func(i int) []logrec.Op {
			return []logrec.Op{
				{Kind: logrec.OpSubPut, Key: []byte("myset"), Version: 1, Sub: fmt.Appendf(nil, "element:%012d", i)},
				{Kind: logrec.OpMeta, Key: []byte("myset"), Type: uint8(TypeSet), Version: 1, Size: uint64(i)},
			}
		},
		"zadd": func(i int) []logrec.Op {
			m := fmt.Appendf(nil, "element:%012d", i)
			return []logrec.Op{
				{Kind: logrec.OpSubPut, Key: []byte("myzset"), Version: 1, Sub: ZSetIndexSub(float64(i), m)},
				{Kind: logrec.OpSubPut, Key: []byte("myzset"), Version: 1, Sub: ZSetMemberSub(m), Value: AppendScore(nil, float64(i))},
				{Kind: logrec.OpMeta, Key: []byte("myzset"), Type: uint8(TypeZSet), Version: 1, Size: uint64(i)},
			}
		},
	}
	for _, name := range []string{"set", "sadd", "zadd"} {
		b.Run(name, func(b *testing.B) {
			const inFlight, n = 32, 4096
			entries := make([][]logrec.Op, n)
			for i := range entries {
				entries[i] = shapes[name](i)
			}
			l := NewLayer(Empty{})
			h := NewHints(l)
			b.ReportAllocs()
			lsn := uint64(0)
			for b.Loop() {
				lsn++
				if err := l.ApplyOps(lsn, entries[lsn%n]); err != nil {
					b.Fatal(err)
				}
				if err := h.ApplyOps(entries[lsn%n]); err != nil {
					b.Fatal(err)
				}
				if lsn > inFlight {
					l.Forget(entries[(lsn-inFlight)%n], lsn-inFlight)
				}
			}
		})
	}
}
