package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkAppsPublish is `tandem bench apps`' PUBLISH fan-out, in
// process: an in-process leader with two async followers, 99 subscribers
// of one channel (33 on each node, each on its own connection, reading
// what it is sent in 64 KiB reads) and 8 publishers on the leader, each
// one PUBLISH at a time. A call is one message, published and received by
// every subscriber. Per call it reports the process's CPU, heap
// allocations and read/write system calls (the clients included, as in
// BenchmarkApps: compare builds, not absolutes).
//
//	go test ./internal/node -run '^$' -bench AppsPublish -benchtime 20000x -count 3
func BenchmarkAppsPublish(b *testing.B) {
	const perNode, publishers = 33, 8
	leader := testNode(b, "l", nil)
	nodes := []*Node{leader}
	for _, id := range []string{"f1", "f2"} {
		f := testNode(b, id, nil)
		respAddr, peer, _ := leader.Addrs()
		if err := f.Follow(respAddr, peer); err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, f)
	}
	waitStreams(b, leader.current().(*leading).l, 2)

	// Every delivery is msgSize bytes, its payload last: a subscriber
	// counts the messages of payload ('x's), not the warm-up's probes
	// ('p's), some of which a follower's subscribers miss (published
	// before its stream took messages).
	payload, probe := strings.Repeat("x", 16), strings.Repeat("p", 16)
	msgSize := len(respCmd("message", "ch", payload))
	// Per subscriber: the messages and the probes it got.
	type subGot struct{ msgs, probes atomic.Int64 }
	var subs []*subGot
	var readers sync.WaitGroup
	// Registered first, so run last: after the connections close.
	b.Cleanup(readers.Wait)
	for _, n := range nodes {
		for range perNode {
			c, err := net.Dial("tcp", n.respAddr)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			if _, err := c.Write([]byte(respCmd("SUBSCRIBE", "ch"))); err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReaderSize(c, 64<<10)
			want := "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
				b.Fatalf("SUBSCRIBE: %q, %v", got, err)
			}
			count := new(subGot)
			subs = append(subs, count)
			readers.Go(func() {
				// One 64 KiB read takes what is there; the messages are
				// then taken from the buffer.
				msg := make([]byte, msgSize)
				for {
					if _, err := io.ReadFull(r, msg); err != nil {
						return
					}
					if msg[msgSize-3] == 'x' {
						count.msgs.Add(1)
					} else {
						count.probes.Add(1)
					}
				}
			})
		}
	}

	pubs := make([]*appConn, publishers)
	for i := range pubs {
		c, err := net.Dial("tcp", leader.respAddr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		pubs[i] = &appConn{c: c, r: bufio.NewReader(c)}
	}
	publish := []byte(respCmd("PUBLISH", "ch", payload))
	reply := ":" + strconv.Itoa(perNode) + "\r\n"
	op := func(ac *appConn) error { return ac.call(publish, reply) }
	probeCmd := []byte(respCmd("PUBLISH", "ch", probe))
	// allGot waits until every subscriber has at least want messages.
	allGot := func(want int64, d time.Duration) {
		testutil.Eventually(b, "every subscriber to get the messages", d, func() (bool, string) {
			for i, s := range subs {
				if got := s.msgs.Load(); got < want {
					return false, fmt.Sprintf("subscriber %d has %d of %d", i, got, want)
				}
			}
			return true, ""
		})
	}
	// Warm up until the followers' streams carry messages: one published
	// before a stream took them is lost to its subscribers.
	// Probes go one at a time until each subscriber has had one: every
	// stream takes messages from then on.
	testutil.Eventually(b, "a probe to reach every subscriber", 10*time.Second, func() (bool, string) {
		if err := pubs[0].call(probeCmd, reply); err != nil {
			b.Fatal(err)
		}
		for i, s := range subs {
			if s.probes.Load() == 0 {
				return false, fmt.Sprintf("subscriber %d has had no probe", i)
			}
		}
		return true, ""
	})
	const warm = 1000
	driveConns(b, pubs, warm, op)
	allGot(warm, 10*time.Second)
	cpu0, a0 := processCPU(), heapObjects()
	r0, w0, _ := testutil.ProcSyscalls()
	b.ResetTimer()
	driveConns(b, pubs, int64(b.N), op)
	allGot(warm+int64(b.N), time.Minute)
	b.StopTimer()
	calls := float64(b.N)
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/calls, "cpu-µs/msg")
	b.ReportMetric(float64(heapObjects()-a0)/calls, "allocs/msg")
	r1, w1, _ := testutil.ProcSyscalls()
	b.ReportMetric(float64(r1-r0)/calls, "r-syscalls/msg")
	b.ReportMetric(float64(w1-w0)/calls, "w-syscalls/msg")
}
