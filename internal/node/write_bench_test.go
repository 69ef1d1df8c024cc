package node

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkWriteHandoffs is the write path of an in-process leader with
// two async followers (real disk, loopback TCP, gRPC streams) under
// `clients` connections each sending pipelines of `depth` SETs, as
// redis-benchmark -c clients -P depth -t set does. Besides time it
// reports the leader's goroutine hand-offs (replication.Handoffs) per
// write and per pipeline, by kind, and the process's CPU and heap
// allocations per write (the clients and both followers included: compare
// runs, not absolutes).
//
//	go test ./internal/node -run '^$' -bench WriteHandoffs -benchtime 20000x
func BenchmarkWriteHandoffs(b *testing.B) {
	for _, tc := range []struct{ clients, depth int }{{50, 1}, {50, 16}, {1, 1}} {
		b.Run(fmt.Sprintf("c=%d/P=%d", tc.clients, tc.depth), func(b *testing.B) {
			benchWriteHandoffs(b, tc.clients, tc.depth)
		})
	}
}

func benchWriteHandoffs(b *testing.B, clients, depth int) {
	leader, followers := benchCluster(b)
	l := leader.current().(*leading).l
	waitStreams(b, l, 2)

	conns := dialPipeConns(b, leader.respAddr, clients)
	var seq atomic.Int64
	run := func(pipelines int64) {
		driveConns(b, conns, pipelines, func(pc *pipeConn) error { return pc.setPipeline(&seq, depth) })
	}
	run(int64(clients) * 20) // warm up: connections, buffers, group commit's average
	_, peer, _ := leader.Addrs()
	hb := probeHeartbeats(b, peer)
	h0, cpu0, a0, cy0 := l.Handoffs(), processCPU(), heapObjects(), l.Cycle()
	r0, w0, sysOK := testutil.ProcSyscalls()
	la0, _ := leader.db.AppendStats()
	fa0, _ := followers[0].db.AppendStats()
	b.ResetTimer()
	pipelines := int64(max(b.N/depth, 1))
	run(pipelines)
	b.StopTimer()
	p50, p99 := hb()
	b.ReportMetric(p50, "hb-p50-ms")
	b.ReportMetric(p99, "hb-p99-ms")
	h, cpu, allocs := l.Handoffs().Sub(h0), processCPU()-cpu0, heapObjects()-a0
	r1, w1, _ := testutil.ProcSyscalls()
	la, _ := leader.db.AppendStats()
	fa, _ := followers[0].db.AppendStats()
	writes := float64(pipelines * int64(depth))
	b.ReportMetric(float64(h.Total())/writes, "handoffs/write")
	b.ReportMetric(float64(h.Total())/float64(pipelines), "handoffs/pipeline")
	for _, k := range []struct {
		name string
		n    uint64
	}{{"append", h.Append}, {"apply", h.Apply}, {"writer", h.Writer}, {"answer", h.Answer}, {"stream", h.Stream},
		{"streamsend", h.StreamSend}, {"progress", h.Progress}, {"timer", h.Timer}, {"wait", h.Wait}} {
		b.ReportMetric(float64(k.n)/writes, k.name+"/write")
	}
	b.ReportMetric(float64(cpu.Microseconds())/writes, "cpu-µs/write")
	b.ReportMetric(float64(allocs)/writes, "allocs/write")
	// Read and write system calls of the whole process (clients, leader,
	// followers: read(2), write(2), pwrite(2), recvmsg/sendmsg...), a
	// count that load does not inflate as it does CPU time.
	if sysOK {
		b.ReportMetric(float64(r1-r0)/writes, "syscr/write")
		b.ReportMetric(float64(w1-w0)/writes, "syscw/write")
	}
	// Log appends (one fdatasync each) per write, on the leader and on a
	// follower: the inverse of the group size, which every per-group cost
	// (fsync, stream message, ack, Pebble commit) is divided by.
	b.ReportMetric(float64(la-la0)/writes, "lead-appends/write")
	b.ReportMetric(float64(fa-fa0)/writes, "foll-appends/write")
	reportCycle(b, l.Cycle().Sub(cy0))
}

// reportCycle reports the leader's group-commit cycle (replication.Cycle)
// per group: its entries, and the µs of its phases.
func reportCycle(b *testing.B, cy replication.Cycle) {
	if cy.Appends == 0 || cy.Applies == 0 {
		return
	}
	perAppend := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(cy.Appends) }
	perApply := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(cy.Applies) }
	b.ReportMetric(float64(cy.Entries)/float64(cy.Appends), "entries/group")
	b.ReportMetric(perAppend(cy.Fsync), "fsync-µs/group")
	b.ReportMetric(perAppend(cy.AppendGap), "gap-µs/group")
	b.ReportMetric(perAppend(cy.AppendDelay), "appdelay-µs/group")
	b.ReportMetric(perApply(cy.Apply), "apply-µs/group")
	b.ReportMetric(perApply(cy.Answer), "answer-µs/group")
}

// benchCluster starts an in-process leader ("l") and two followers ("f1",
// "f2") streaming from it. Each node is started under a pprof label
// node=ID, which every goroutine it starts inherits (its gRPC and RESP
// servers', the streams', the committer's), so that a CPU profile of a
// benchmark splits by node: `go tool pprof -tagfocus node=l` is the
// leader's part alone (the clients' goroutines carry no label).
func benchCluster(b *testing.B) (leader *Node, followers []*Node) {
	labeled := func(id string, f func()) {
		pprof.Do(context.Background(), pprof.Labels("node", id), func(context.Context) { f() })
	}
	labeled("l", func() { leader = testNode(b, "l", nil) })
	for _, id := range []string{"f1", "f2"} {
		labeled(id, func() {
			f := testNode(b, id, nil)
			followers = append(followers, f)
			respAddr, peer, _ := leader.Addrs()
			if err := f.Follow(respAddr, peer); err != nil {
				b.Fatal(err)
			}
		})
	}
	return leader, followers
}

// heapObjects is how many heap objects the process has allocated so far
// (the clients and both followers included, as cpuTime).
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// dialPipeConns opens n raw RESP connections to addr, closed when b ends.
func dialPipeConns(b *testing.B, addr string, n int) []*pipeConn {
	conns := make([]*pipeConn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns[i] = &pipeConn{c: c, r: bufio.NewReader(c)}
	}
	return conns
}

// driveConns makes calls calls of op, spread over conns, each connection
// making one at a time, and fails b on the first error.
func driveConns[C any](b *testing.B, conns []C, calls int64, op func(C) error) {
	var left atomic.Int64
	left.Store(calls)
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := op(c); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitStreams waits until the leader streams to n followers.
func waitStreams(b *testing.B, l *replication.Leader, n int) {
	testutil.Eventually(b, "the followers to stream", 10*time.Second, func() (bool, string) {
		connected := 0
		for _, f := range l.Status().Followers {
			if f.Connected {
				connected++
			}
		}
		return connected >= n, fmt.Sprintf("%d of %d followers connected", connected, n)
	})
}

// pipeConn is a raw RESP client connection.
type pipeConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// setPipeline sends depth SETs of fresh keys in one write and reads
// their replies.
func (pc *pipeConn) setPipeline(seq *atomic.Int64, depth int) error {
	pc.buf = pc.buf[:0]
	for range depth {
		k := strconv.AppendInt([]byte("key:"), seq.Add(1)%100000, 10)
		pc.buf = fmt.Appendf(pc.buf, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n", len(k), k)
	}
	if _, err := pc.c.Write(pc.buf); err != nil {
		return err
	}
	for range depth {
		line, err := pc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if string(line) != "+OK\r\n" {
			return fmt.Errorf("SET: reply %q", line)
		}
	}
	return nil
}

// probeHeartbeats calls the node's Heartbeat RPC at peer every 20 ms, as
// the orchestrator does, until the returned func is called, which
// returns the calls' median and 99th percentile in milliseconds: how
// answerable the node stays under the load (issue 19 item 8).
func probeHeartbeats(b *testing.B, peer string) func() (p50, p99 float64) {
	conn, err := dialPeer(peer)
	if err != nil {
		b.Fatal(err)
	}
	client := peerpb.NewPeerClient(conn)
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		var took []time.Duration
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- took
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			began := time.Now()
			_, err := client.Heartbeat(ctx, &peerpb.HeartbeatRequest{})
			cancel()
			if err == nil {
				took = append(took, time.Since(began))
			}
		}
	}()
	return func() (float64, float64) {
		close(stop)
		took := <-done
		conn.Close()
		if len(took) == 0 {
			return 0, 0
		}
		slices.Sort(took)
		ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))].Microseconds()) / 1000 }
		return ms(0.5), ms(0.99)
	}
}
