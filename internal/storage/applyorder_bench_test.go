package storage

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkApplyShapes applies entries shaped as redis-benchmark's suite
// writes them (SET of a random key; HSET and SADD of a random field or
// member of one collection, with its metadata row; ZADD of a new member:
// member row, index row, metadata row; LPUSH: element, head and metadata
// rows; LPOP and ZPOPMIN of what an unmeasured fill of LPUSHes or ZADDs
// applied first, in the order a pop takes it), in groups of 32 as a node
// under c=50 applies them, into one memtable (no flush while it runs),
// and reports per entry the Pebble records written, the key comparisons
// Pebble made (the memtable's skiplist searches, which are most of an
// Apply's CPU; a count the machine's load does not move) and this
// thread's CPU time:
//
//	go test ./internal/storage -run '^$' -bench ApplyShapes -benchtime 20480x
func BenchmarkApplyShapes(b *testing.B) {
	for _, shape := range []string{"set", "hset", "sadd", "zadd", "lpush", "lpop", "zpopmin"} {
		b.Run(shape, func(b *testing.B) {
			var compares atomic.Uint64
			tune := func(o *pebble.Options) {
				c := *pebble.DefaultComparer
				if o.Comparer != nil {
					c = *o.Comparer
				}
				cmp := c.Compare
				c.Compare = func(a, b []byte) int { compares.Add(1); return cmp(a, b) }
				o.Comparer = &c
			}
			d, err := Open("bench", Options{FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler), tune: &tune})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			val := []byte(strings.Repeat("x", 100))
			r := rand.New(rand.NewPCG(1, 2))
			randInt := func() []byte { return fmt.Appendf(nil, "%012d", r.IntN(100000)) }
			var lsn, size uint64
			key := []byte("my" + strings.TrimSuffix(strings.TrimSuffix(shape, "pop"), "popmin"))
			head := keyspace.ListStartIndex
			var zfill [][2][]byte // the ZADDs' (index sub-key, member sub-key), for the pops
			op := func(shape string) []logrec.Op {
				switch shape {
				case "set":
					return []logrec.Op{{Kind: logrec.OpPut, Key: append([]byte("key:"), randInt()...), Value: val}}
				case "zadd":
					size++
					member := append([]byte("element:"), randInt()...)
					score := float64(r.IntN(100000))
					isub, msub := keyspace.ZSetIndexSub(score, member), keyspace.ZSetMemberSub(member)
					zfill = append(zfill, [2][]byte{isub, msub})
					return []logrec.Op{
						{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: msub, Value: keyspace.AppendScore(nil, score)},
						{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: isub, Value: []byte{}},
						{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeZSet), Version: 1, Size: size},
					}
				case "zpopmin": // the lowest member of the fill
					size--
					z := zfill[0]
					zfill = zfill[1:]
					return []logrec.Op{
						{Kind: logrec.OpSubDel, Key: key, Version: 1, Sub: z[1]},
						{Kind: logrec.OpSubDel, Key: key, Version: 1, Sub: z[0]},
						{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeZSet), Version: 1, Size: size},
					}
				case "lpush":
					size++
					head--
					return []logrec.Op{
						{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ListIndexSub(head), Value: val},
						{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(head)},
						{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeList), Version: 1, Size: size},
					}
				case "lpop":
					size--
					head++
					return []logrec.Op{
						{Kind: logrec.OpSubDel, Key: key, Version: 1, Sub: keyspace.ListIndexSub(head - 1)},
						{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: keyspace.ListHeadSub, Value: keyspace.ListHeadRow(head)},
						{Kind: logrec.OpMeta, Key: key, Type: uint8(keyspace.TypeList), Version: 1, Size: size},
					}
				}
				size++
				typ, v := keyspace.TypeHash, val
				if shape == "sadd" {
					typ, v = keyspace.TypeSet, []byte{}
				}
				return []logrec.Op{
					{Kind: logrec.OpSubPut, Key: key, Version: 1, Sub: append([]byte("element:"), randInt()...), Value: v},
					{Kind: logrec.OpMeta, Key: key, Type: uint8(typ), Version: 1, Size: size},
				}
			}
			const group = 32
			batchesOf := func(shape string) [][]logrec.Entry {
				batches := make([][]logrec.Entry, (b.N+group-1)/group)
				for i := range batches {
					es := make([]logrec.Entry, group)
					for j := range es {
						lsn++
						es[j] = logrec.Entry{Epoch: 1, LSN: lsn, TimeNs: int64(lsn), Ops: op(shape)}
					}
					batches[i] = es
					if err := d.AppendLog(encodeAll(es...)); err != nil {
						b.Fatal(err)
					}
				}
				return batches
			}
			// The pops first get what they pop, applied unmeasured.
			if fill, ok := map[string]string{"lpop": "lpush", "zpopmin": "zadd"}[shape]; ok {
				for _, es := range batchesOf(fill) {
					if err := d.Apply(es); err != nil {
						b.Fatal(err)
					}
				}
				if shape == "zpopmin" {
					slices.SortFunc(zfill, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
				}
			}
			batches := batchesOf(shape)
			records, c0 := d.ApplyRecords(), compares.Load()
			b.ReportAllocs()
			b.ResetTimer()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu := rusageThreadCPU(b)
			for i := range batches {
				if err := d.Apply(batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			cpu = rusageThreadCPU(b) - cpu
			b.StopTimer()
			n := float64(len(batches) * group)
			b.ReportMetric(float64(d.ApplyRecords()-records)/n, "records/entry")
			b.ReportMetric(float64(compares.Load()-c0)/n, "compares/entry")
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/n, "cpu-µs/entry")
		})
	}
}

// rusageThreadCPU is the calling thread's CPU time (the caller locks its
// goroutine to the thread).
func rusageThreadCPU(tb testing.TB) time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
