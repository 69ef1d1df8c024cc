package node

import (
	"bytes"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkGets is the read path of an in-process leader under `clients`
// connections each sending pipelines of `depth` GETs of keys it holds, as
// redis-benchmark -c clients -P depth -t get does after its SET run: the
// keys were written (so the row cache holds them, write-through), then
// read on fresh connections (redis-benchmark opens new ones per test);
// "/ryw" reads on the connections that wrote, so each GET carries the
// session's read-your-writes floor. Besides time it reports, per GET, the
// process's CPU and heap allocations (count and bytes) and its read/write
// system calls (the raw clients included, which allocate nothing and make
// one write and two reads, one finding nothing, per pipeline), and the C
// allocator's trims during the run (cmem.go): a GET the row cache answers
// frees nothing of Pebble's and must cause none.
//
//	go test ./internal/node -run '^$' -bench Gets -benchtime 100000x
func BenchmarkGets(b *testing.B) {
	for _, tc := range []struct {
		clients, depth int
		ryw            bool
	}{{50, 1, false}, {50, 16, false}, {1, 1, false}, {50, 1, true}} {
		name := fmt.Sprintf("c=%d/P=%d", tc.clients, tc.depth)
		if tc.ryw {
			name += "/ryw"
		}
		b.Run(name, func(b *testing.B) {
			benchGets(b, tc.clients, tc.depth, tc.ryw)
		})
	}
}

// getKeys is how many keys the GETs read (all written first).
const getKeys = 10000

func benchGets(b *testing.B, clients, depth int, ryw bool) {
	leader := testNode(b, "l", nil)
	writers := dialPipeConns(b, leader.respAddr, clients)
	var seq atomic.Int64
	// Every key written once (SETs of keys 1..getKeys).
	driveConns(b, writers, getKeys/16, func(pc *pipeConn) error { return pc.setPipeline(&seq, 16) })
	seq.Store(0)
	conns := writers
	if !ryw {
		conns = dialPipeConns(b, leader.respAddr, clients)
	}
	run := func(pipelines int64) {
		driveConns(b, conns, pipelines, func(pc *pipeConn) error { return pc.getPipeline(&seq, depth) })
	}
	run(int64(clients) * 20) // warm up: connections, buffers
	st0 := leader.db.MemoryStats()
	cpu0, a0, by0 := processCPU(), heapObjects(), heapAllocated()
	r0, w0, sysOK := testutil.ProcSyscalls()
	b.ResetTimer()
	pipelines := int64(max(b.N/depth, 1))
	run(pipelines)
	b.StopTimer()
	cpu, allocs, bytes := processCPU()-cpu0, heapObjects()-a0, heapAllocated()-by0
	r1, w1, _ := testutil.ProcSyscalls()
	st := leader.db.MemoryStats()
	gets := float64(pipelines * int64(depth))
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/gets, "cpu-µs/get")
	b.ReportMetric(float64(allocs)/gets, "allocs/get")
	// Bytes allocated set how often the collector runs under a read
	// load, and each cycle slows the replies it overlaps.
	b.ReportMetric(float64(bytes)/gets, "B/get")
	if sysOK {
		b.ReportMetric(float64(r1-r0)/gets, "syscr/get")
		b.ReportMetric(float64(w1-w0)/gets, "syscw/get")
	}
	b.ReportMetric(float64(st.Trims-st0.Trims), "trims")
}

// getPipeline sends depth GETs of keys 0..getKeys-1 in turn in one write
// and reads their replies (each the value setPipeline wrote).
func (pc *pipeConn) getPipeline(seq *atomic.Int64, depth int) error {
	pc.buf = pc.buf[:0]
	for range depth {
		// Built without an allocation: allocs/get are the server's.
		var kb [24]byte
		k := strconv.AppendInt(append(kb[:0], "key:"...), 1+seq.Add(1)%getKeys, 10)
		pc.buf = append(pc.buf, "*2\r\n$3\r\nGET\r\n$"...)
		pc.buf = strconv.AppendInt(pc.buf, int64(len(k)), 10)
		pc.buf = append(pc.buf, "\r\n"...)
		pc.buf = append(append(pc.buf, k...), "\r\n"...)
	}
	if _, err := pc.c.Write(pc.buf); err != nil {
		return err
	}
	for range depth {
		line, err := pc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if !bytes.Equal(line, []byte("$3\r\n")) {
			return fmt.Errorf("GET: reply %q", line)
		}
		if line, err = pc.r.ReadSlice('\n'); err != nil || !bytes.Equal(line, []byte("xxx\r\n")) {
			return fmt.Errorf("GET: value %q, %v", line, err)
		}
	}
	return nil
}
