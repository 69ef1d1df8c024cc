package node

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tandemdb/tandem/internal/script"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkApps is what `tandem bench apps` measures, in process: an
// in-process leader with two async followers (real disk, loopback TCP,
// gRPC streams) under 50 connections, each sending one call at a time of
// a SET (the yardstick), a MULTI of 5 SETs and EXEC in one write (as
// go-redis TxPipelined sends it), or an EVALSHA of the compare-and-set
// script (GET, compare, SET, on a key of the connection's own), or, for
// the queue, half the connections LPUSH jobs and half BLPOP them from one
// list (a call is one job: its push and its pop). Per call it reports the process's CPU, heap allocations and read/write system
// calls (the clients and both followers included: compare the
// sub-benchmarks with each other and across builds, not as absolutes)
// and the log entries the leader made; for the queue, how its pops ran.
//
//	go test ./internal/node -run '^$' -bench Apps -benchtime 20000x -count 3
func BenchmarkApps(b *testing.B) {
	for _, w := range []string{"set", "multi", "evalsha", "queue"} {
		b.Run(w, func(b *testing.B) { benchApps(b, w, 50) })
	}
}

// BenchmarkAppsBaselines are the plain commands the apps' calls are made
// of, to hold each against: setown is a SET of the connection's own
// compare-and-set key (the write EVALSHA's script makes, to an existing
// key, where SET's yardstick writes mostly new keys), and lpopqueue is the
// job queue with LPOP for BLPOP (a consumer that finds the list empty
// calls again; each of its calls that pops a job counts), so that what
// BLPOP costs beyond a pop shows. queuefull is the job queue on a leader
// whose row cache other keys have filled first, as `tandem bench apps`
// runs it after SET and MULTI have written their 100,000 keys.
// queueblocked is the job queue with 10 producers and 40 consumers, so
// that the list is mostly empty and a job's consumer is mostly blocked
// when it is pushed: what a pop served in the push's entry and its
// wake-up cost.
//
//	go test ./internal/node -run '^$' -bench AppsBaselines -benchtime 20000x -count 3
func BenchmarkAppsBaselines(b *testing.B) {
	for _, w := range []string{"setown", "lpopqueue", "queuefull", "queueblocked"} {
		b.Run(w, func(b *testing.B) { benchApps(b, w, 50) })
	}
}

// casScript is the compare-and-set script of `tandem bench apps`.
const casScript = "local v = redis.call('GET', KEYS[1])\nif v == ARGV[1] then\n  redis.call('SET', KEYS[1], ARGV[2])\n  return 1\nend\nreturn 0"

func benchApps(b *testing.B, workload string, clients int) {
	leader := testNode(b, "l", nil)
	var followers []*Node
	for _, id := range []string{"f1", "f2"} {
		f := testNode(b, id, nil)
		respAddr, peer, _ := leader.Addrs()
		if err := f.Follow(respAddr, peer); err != nil {
			b.Fatal(err)
		}
		followers = append(followers, f)
	}
	waitStreams(b, leader.current().(*leading).l, 2)
	sha := script.SHA1([]byte(casScript))
	conns := make([]*appConn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", leader.respAddr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		ac := &appConn{c: c, r: bufio.NewReader(c), key: "cas:" + strconv.Itoa(i)}
		conns[i] = ac
		if err := ac.call([]byte(respCmd("SCRIPT", "LOAD", casScript)), "$40\r\n"+sha+"\r\n"); err != nil {
			b.Fatal(err)
		}
		if err := ac.call([]byte(respCmd("SET", ac.key, "1000000")), "+OK\r\n"); err != nil {
			b.Fatal(err)
		}
	}
	var keys atomic.Int64
	// The calls are encoded by hand into the connection's buffer: the
	// client's allocations count in the process's too.
	appendSet := func(b []byte) []byte {
		b = append(b, "*3\r\n$3\r\nSET\r\n$10\r\nkey:"...)
		b = strconv.AppendInt(b, 100000+keys.Add(1)%100000, 10)
		return append(b, "\r\n$3\r\nxxx\r\n"...)
	}
	multiReply := "+OK\r\n" + strings.Repeat("+QUEUED\r\n", 5) + "*5\r\n" + strings.Repeat("+OK\r\n", 5)
	op := func(ac *appConn) error {
		ac.cmd = ac.cmd[:0]
		switch workload {
		case "set":
			ac.cmd = appendSet(ac.cmd)
			return ac.call(ac.cmd, "+OK\r\n")
		case "setown":
			ac.cmd = append(ac.cmd, "*3\r\n$3\r\nSET\r\n$"...)
			ac.cmd = strconv.AppendInt(ac.cmd, int64(len(ac.key)), 10)
			ac.cmd = append(ac.cmd, "\r\n"...)
			ac.cmd = append(ac.cmd, ac.key...)
			ac.cmd = append(ac.cmd, "\r\n$7\r\n"...)
			ac.cmd = strconv.AppendInt(ac.cmd, 1000000+ac.seq, 10)
			ac.cmd = append(ac.cmd, "\r\n"...)
			ac.seq++
			return ac.call(ac.cmd, "+OK\r\n")
		case "multi":
			ac.cmd = append(ac.cmd, "*1\r\n$5\r\nMULTI\r\n"...)
			for range 5 {
				ac.cmd = appendSet(ac.cmd)
			}
			ac.cmd = append(ac.cmd, "*1\r\n$4\r\nEXEC\r\n"...)
			return ac.call(ac.cmd, multiReply)
		case "evalsha":
			// Values of one width (1000000+), so the command's size is fixed.
			ac.cmd = append(ac.cmd, "*6\r\n$7\r\nEVALSHA\r\n$40\r\n"...)
			ac.cmd = append(ac.cmd, sha...)
			ac.cmd = append(ac.cmd, "\r\n$1\r\n1\r\n$"...)
			ac.cmd = strconv.AppendInt(ac.cmd, int64(len(ac.key)), 10)
			ac.cmd = append(ac.cmd, "\r\n"...)
			ac.cmd = append(ac.cmd, ac.key...)
			ac.cmd = append(ac.cmd, "\r\n$7\r\n"...)
			ac.cmd = strconv.AppendInt(ac.cmd, 1000000+ac.seq, 10)
			ac.cmd = append(ac.cmd, "\r\n$7\r\n"...)
			ac.cmd = strconv.AppendInt(ac.cmd, 1000000+ac.seq+1, 10)
			ac.cmd = append(ac.cmd, "\r\n"...)
			ac.seq++
			return ac.call(ac.cmd, ":1\r\n")
		}
		return fmt.Errorf("unknown workload %q", workload)
	}
	if workload == "queuefull" {
		fillRowCache(b, leader)
		workload = "queue"
	}
	run := func(calls int64) { driveConns(b, conns, calls, op) }
	switch workload {
	case "queue":
		run = func(jobs int64) { driveQueue(b, conns, len(conns)/2, jobs, false) }
	case "queueblocked":
		run = func(jobs int64) { driveQueue(b, conns, len(conns)/5, jobs, false) }
	case "lpopqueue":
		run = func(jobs int64) { driveQueue(b, conns, len(conns)/2, jobs, true) }
	}
	run(int64(clients) * 20) // warm up
	served0, own0, empty0 := leader.blocked.servedInPush.Load(), leader.blocked.ownPops.Load(), leader.blocked.emptyPops.Load()
	woken0, lsn0 := leader.blocked.wokenPops.Load(), leader.db.Durable().LSN
	wakes0 := leader.blocked.wakeUps.Load()
	appends0, _ := leader.db.AppendStats()
	rc0 := leader.db.RowCacheStats()
	f1 := followers[0].current().(*following).f
	rec0, frec0, fc0, h0 := leader.db.ApplyRecords(), followers[0].db.ApplyRecords(), f1.Counts(), leader.current().(*leading).l.Handoffs()
	_, lb0 := leader.db.LogSize()
	cpu0, a0 := processCPU(), heapObjects()
	r0, w0, _ := testutil.ProcSyscalls()
	cs0 := contextSwitches()
	b.ResetTimer()
	run(int64(b.N))
	b.StopTimer()
	calls := float64(b.N)
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/calls, "cpu-µs/call")
	b.ReportMetric(float64(heapObjects()-a0)/calls, "allocs/call")
	r1, w1, _ := testutil.ProcSyscalls()
	b.ReportMetric(float64(r1-r0+w1-w0)/calls, "rw-syscalls/call")
	// The process's context switches (voluntary and not) per call: a
	// thread that sleeps (a goroutine parked with nothing else to run on
	// its P) and is woken again costs system calls and scheduling.
	b.ReportMetric(float64(contextSwitches()-cs0)/calls, "ctxsw/call")
	// Log entries per call (each is a proposal, an encoding, an append
	// and an apply on every node): a count that load does not move.
	b.ReportMetric(float64(leader.db.Durable().LSN-lsn0)/calls, "entries/call")
	// The leader's log appends (one fdatasync each) per call: entries/call
	// over this is the group commit's size, which the entry's fixed costs
	// (the fsync, a message to each follower, their appends) are shared by.
	appends1, _ := leader.db.AppendStats()
	b.ReportMetric(float64(appends1-appends0)/calls, "appends/call")
	// The leader's log bytes per call: the entries' size, which each
	// follower receives, persists and applies.
	_, lb := leader.db.LogSize()
	b.ReportMetric(float64(lb-lb0)/calls, "log-B/call")
	// The leader's point reads the row cache missed (each a Pebble
	// lookup) per call.
	b.ReportMetric(float64(leader.db.RowCacheStats().Misses-rc0.Misses)/calls, "rowcache-misses/call")
	// Pebble records (rows written or deleted, range deletes, each
	// batch's own) the leader's and a follower's Apply wrote per call:
	// each a memtable insert.
	b.ReportMetric(float64(leader.db.ApplyRecords()-rec0)/calls, "records/call")
	b.ReportMetric(float64(followers[0].db.ApplyRecords()-frec0)/calls, "f-records/call")
	// A follower's stream messages and log appends (one fdatasync each)
	// per call, and the leader's goroutine hand-offs (replication.Handoffs).
	fc := f1.Counts().Sub(fc0)
	b.ReportMetric(float64(fc.Messages)/calls, "f-msgs/call")
	b.ReportMetric(float64(fc.Appends)/calls, "f-appends/call")
	b.ReportMetric(float64(leader.current().(*leading).l.Handoffs().Sub(h0).Total())/calls, "handoffs/call")
	if strings.Contains(workload, "queue") {
		// How the pops ran (INFO's blocked_pops_*), per job: in the push's
		// entry, by the client taking a job at once, finding none.
		reg := leader.blocked
		b.ReportMetric(float64(reg.servedInPush.Load()-served0)/calls, "served-in-push/call")
		b.ReportMetric(float64(reg.ownPops.Load()-own0)/calls, "own-pops/call")
		b.ReportMetric(float64(reg.emptyPops.Load()-empty0)/calls, "empty-pops/call")
		// Pops run after a wake-up (the client had blocked and its key's
		// turn came): each is a wake-up of the client's goroutine.
		b.ReportMetric(float64(reg.wokenPops.Load()-woken0)/calls, "woken-pops/call")
		// Blocked clients' goroutines woken (a turn, a served pop's
		// outcome) per job.
		b.ReportMetric(float64(reg.wakeUps.Load()-wakes0)/calls, "client-wakes/call")
	}
}

// contextSwitches is the process's voluntary and involuntary context
// switches so far (getrusage).
func contextSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}

// driveQueue has the first np of conns LPUSH jobs onto one list and the
// rest BLPOP them, jobs in all, each connection its share, one call at a
// time; every pop must take a job (none waits past its 10 s timeout).
// With lpop the consumers LPOP instead, calling again when the list is
// empty, until they have taken their share.
func driveQueue(b *testing.B, conns []*appConn, np int, jobs int64, lpop bool) {
	producers, consumers := conns[:np], conns[np:]
	const push = "*3\r\n$5\r\nLPUSH\r\n$5\r\nqueue\r\n$3\r\njob\r\n"
	pop, popped := "*3\r\n$5\r\nBLPOP\r\n$5\r\nqueue\r\n$2\r\n10\r\n", "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"
	if lpop {
		pop, popped = "*2\r\n$4\r\nLPOP\r\n$5\r\nqueue\r\n", "$3\r\njob\r\n"
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	share := func(group []*appConn, cmd, want string) {
		for i, ac := range group {
			n := jobs / int64(len(group))
			if int64(i) < jobs%int64(len(group)) {
				n++
			}
			wg.Go(func() {
				for i := int64(0); i < n; {
					// The reply's length only: LPUSH answers the list's length.
					took, err := ac.callReply([]byte(cmd), want)
					if err != nil {
						errs <- err
						return
					}
					if took {
						i++
					}
				}
			})
		}
	}
	share(producers, push, "")
	share(consumers, pop, popped)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// callReply writes cmd and reads one reply: an integer if want is empty,
// else exactly want or, reported as not took, a null bulk string (LPOP of
// an empty list).
func (ac *appConn) callReply(cmd []byte, want string) (took bool, err error) {
	if _, err := ac.c.Write(cmd); err != nil {
		return false, err
	}
	line, err := ac.r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if want == "" {
		if len(line) == 0 || line[0] != ':' {
			return false, fmt.Errorf("%q: reply %q, want an integer", cmd, line)
		}
		return true, nil
	}
	if string(line) == "$-1\r\n" {
		return false, nil
	}
	ac.got = append(ac.got[:0], line...)
	for len(ac.got) < len(want) {
		if line, err = ac.r.ReadSlice('\n'); err != nil {
			return false, err
		}
		ac.got = append(ac.got, line...)
	}
	if string(ac.got) != want {
		return false, fmt.Errorf("%q: replies %q, want %q", cmd, ac.got, want)
	}
	return true, nil
}

// appConn is a raw RESP client connection making one call at a time.
type appConn struct {
	c   net.Conn
	r   *bufio.Reader
	key string // its compare-and-set key
	seq int64  // the value the key holds, less 1000000
	cmd []byte
	got []byte
}

// call writes cmd and reads len(want) bytes of replies, which must be want.
func (ac *appConn) call(cmd []byte, want string) error {
	if _, err := ac.c.Write(cmd); err != nil {
		return err
	}
	ac.got = ac.got[:0]
	for len(ac.got) < len(want) {
		line, err := ac.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		ac.got = append(ac.got, line...)
	}
	if !bytes.Equal(ac.got, []byte(want)) {
		return fmt.Errorf("%q: replies %q, want %q", cmd, ac.got, want)
	}
	return nil
}

// fillRowCache writes keys of 100-byte values to n, 16 SETs a round trip,
// until its row cache is full: no room left in nearly every shard, so a
// written row not cached before is not cached now (rowcache: a writer
// never evicts), as on a node that has served other keys for a while.
func fillRowCache(b *testing.B, n *Node) {
	c, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	value := strings.Repeat("v", 100)
	var buf []byte
	var rows uint64
	for i := 0; ; i++ {
		if i%64 == 0 {
			// Puts stop being admitted shard by shard: stop once the
			// cached rows stop growing over 1024 SETs.
			st := n.db.RowCacheStats()
			if i > 0 && st.Rows == rows {
				return
			}
			rows = st.Rows
		}
		buf = buf[:0]
		for j := range 16 {
			k := "fill:" + strconv.Itoa(16*i+j)
			buf = fmt.Appendf(buf, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(value), value)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		for range 16 {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if string(line) != "+OK\r\n" {
				b.Fatalf("SET: reply %q", line)
			}
		}
	}
}
