package replication

import (
	"fmt"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkOverlaySet is the overlay's share of a SET on the leader:
// each entry (one put of a 100-byte value, redis-benchmark's -d 100 -r
// 100000) is added when it is sequenced and dropped once its group of 32
// is applied, as the leader does under c=50. Its allocations per write
// are the figure to watch: every write on the leader passes here.
//
//	go test ./internal/replication -run '^$' -bench OverlaySet -benchmem
func BenchmarkOverlaySet(b *testing.B) {
	const group = 32
	value := make([]byte, 100)
	keys := make([][]byte, 100000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key:%012d", i*7919%len(keys))
	}
	var o overlay
	ps := make([]*proposal, 0, group)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		lsn := uint64(i + 1)
		p := &proposal{lsn: lsn, entry: logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: keys[i%len(keys)], Value: value}}}}
		o.add(&p.entry, nil)
		ps = append(ps, p)
		if len(ps) == group {
			o.drop(ps, lsn)
			ps = ps[:0]
		}
	}
}
