package node

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tandemdb/tandem/internal/replication"
)

// BenchmarkFollowerWrite is what a follower does per replicated write: an
// in-process leader with two async followers (real disk, loopback TCP,
// gRPC streams) under `clients` connections each sending pipelines of
// `depth` SETs, as redis-benchmark -c clients -P depth -t set does. It
// reports, per write, one follower's stream messages, steps, log appends
// (one fdatasync each), applies (one Pebble batch each) and progress
// reports (replication.FollowerCounts), and the process's CPU (every
// node and the clients: compare runs, not absolutes; bench/follower.sh
// measures a follower's own CPU per SET).
//
//	go test ./internal/node -run '^$' -bench FollowerWrite -benchtime 20000x -count 3
func BenchmarkFollowerWrite(b *testing.B) {
	for _, tc := range []struct{ clients, depth int }{{50, 1}, {50, 16}} {
		b.Run(fmt.Sprintf("c=%d/P=%d", tc.clients, tc.depth), func(b *testing.B) {
			benchFollowerWrite(b, tc.clients, tc.depth)
		})
	}
}

func benchFollowerWrite(b *testing.B, clients, depth int) {
	leader := testNode(b, "l", nil)
	var followers []*replication.Follower
	for _, id := range []string{"f1", "f2"} {
		n := testNode(b, id, nil)
		respAddr, peer, _ := leader.Addrs()
		if err := n.Follow(respAddr, peer); err != nil {
			b.Fatal(err)
		}
		followers = append(followers, n.current().(*following).f)
	}
	waitStreams(b, leader.current().(*leading).l, 2)

	conns := dialPipeConns(b, leader.respAddr, clients)
	var seq atomic.Int64
	run := func(pipelines int64) {
		driveConns(b, conns, pipelines, func(pc *pipeConn) error { return pc.setPipeline(&seq, depth) })
	}
	run(int64(clients) * 20) // warm up
	f := followers[0]
	c0, cpu0 := f.Counts(), processCPU()
	b.ResetTimer()
	pipelines := int64(max(b.N/depth, 1))
	run(pipelines)
	b.StopTimer()
	c, cpu := f.Counts().Sub(c0), processCPU()-cpu0
	writes := float64(pipelines * int64(depth))
	b.ReportMetric(float64(cpu.Microseconds())/writes, "cpu-µs/write")
	for _, k := range []struct {
		name string
		n    uint64
	}{{"msgs", c.Messages}, {"steps", c.Steps}, {"appends", c.Appends}, {"applies", c.Applies}, {"reports", c.Reports}, {"wakes", c.Wakes}} {
		b.ReportMetric(float64(k.n)/writes, k.name+"/write")
	}
}
