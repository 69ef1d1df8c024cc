package node

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkSuiteWrites is the write commands of redis-benchmark's issue-17
// suite (bench/run.sh TESTS=suite: -c 50 -d 100 -r 100000, one call at a
// time) on the node path: an in-process leader with two async followers
// (real disk, loopback TCP, gRPC streams), a fresh cluster per command.
// The pops first get what they pop (the pushes, adds and ZADDs, not
// measured), so that every measured pop takes an element. Per call it
// reports the process's CPU (the clients and both followers included, as
// BenchmarkApps: compare a command with SET in the same run, not as an
// absolute), its heap allocations, the leader's log bytes (the entry's
// size, which each follower receives, persists and applies), log
// appends (fsyncs) and the records the leader's Apply put in its Pebble
// batches (each follower's are the same) per call. spop0 and zpopmin0
// are the pops that find nothing (redis-benchmark's SPOP and ZPOPMIN
// drain their key part-way through its run): no fill, every call a write
// command that logs nothing.
//
//	go test ./internal/node -run '^$' -bench SuiteWrites -benchtime 20000x -count 2
func BenchmarkSuiteWrites(b *testing.B) {
	for _, cmd := range []string{"set", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "spop", "zadd", "zpopmin", "mset", "spop0", "zpopmin0"} {
		b.Run(cmd, func(b *testing.B) { benchSuiteWrite(b, cmd, 50) })
	}
}

// suiteCmd appends one redis-benchmark call of cmd to buf, without an
// allocation (the clients' allocations count in the process's): id is
// __rand_int__ (a key id, written as 12 zero-padded digits), the value
// -d 100's.
func suiteCmd(buf []byte, cmd string, id func() int) []byte {
	cmd = strings.TrimSuffix(cmd, "0") // the same call on an empty key
	head := func(n int) { buf = fmt.Appendf(buf, "*%d\r\n", n) }
	lit := func(a string) { buf = fmt.Appendf(buf, "$%d\r\n%s\r\n", len(a), a) }
	rnd := func(prefix string) { buf = fmt.Appendf(buf, "$%d\r\n%s%012d\r\n", len(prefix)+12, prefix, id()) }
	val := func() { buf = append(buf, "$100\r\n"+suiteValue+"\r\n"...) }
	switch cmd {
	case "set":
		head(3)
		lit("SET")
		rnd("key:")
		val()
	case "incr":
		head(2)
		lit("INCR")
		rnd("counter:")
	case "lpush", "rpush":
		head(3)
		lit(cmd)
		lit("mylist")
		val()
	case "lpop", "rpop":
		head(2)
		lit(cmd)
		lit("mylist")
	case "sadd":
		head(3)
		lit("SADD")
		lit("myset")
		rnd("element:")
	case "hset":
		head(4)
		lit("HSET")
		lit("myhash")
		rnd("element:")
		val()
	case "spop":
		head(2)
		lit("SPOP")
		lit("myset")
	case "zadd":
		head(4)
		lit("ZADD")
		lit("myzset")
		rnd("")
		rnd("element:")
	case "zpopmin":
		head(2)
		lit("ZPOPMIN")
		lit("myzset")
	case "mset":
		head(21)
		lit("MSET")
		for range 10 {
			rnd("key:")
			val()
		}
	default:
		panic("unknown suite command " + cmd)
	}
	return buf
}

// suiteValue is redis-benchmark's -d 100 value.
var suiteValue = strings.Repeat("x", 100)

// suiteFill is what a pop needs before it: the command that fills its
// key (with distinct ids, so that each adds a member).
var suiteFill = map[string]string{"lpop": "lpush", "rpop": "rpush", "spop": "sadd", "zpopmin": "zadd"}

func benchSuiteWrite(b *testing.B, cmd string, clients int) {
	leader, _ := benchCluster(b)
	waitStreams(b, leader.current().(*leading).l, 2)
	conns := make([]*suiteConn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", leader.respAddr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns[i] = &suiteConn{c: c, r: bufio.NewReader(c)}
	}
	random := func() int { return rand.IntN(100000) }
	// A fill's ids are distinct, so that each adds a member.
	var seq atomic.Int64
	distinct := func() int { return int(seq.Add(1)) }
	run := func(cmd string, id func() int, calls int64) {
		driveConns(b, conns, calls, func(sc *suiteConn) error {
			sc.buf = suiteCmd(sc.buf[:0], cmd, id)
			return sc.call(cmd)
		})
	}
	const warm = 1000
	if fill, ok := suiteFill[cmd]; ok {
		run(fill, distinct, int64(b.N)+warm)
	}
	run(cmd, random, warm)
	la0, _ := leader.db.AppendStats()
	r0 := leader.db.ApplyRecords()
	_, lb0 := leader.db.LogSize()
	cpu0, a0 := processCPU(), heapObjects()
	b.ResetTimer()
	run(cmd, random, int64(b.N))
	b.StopTimer()
	calls := float64(b.N)
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/calls, "cpu-µs/call")
	b.ReportMetric(float64(heapObjects()-a0)/calls, "allocs/call")
	la, _ := leader.db.AppendStats()
	_, lb := leader.db.LogSize()
	b.ReportMetric(float64(lb-lb0)/calls, "log-B/call")
	b.ReportMetric(float64(la-la0)/calls, "appends/call")
	b.ReportMetric(float64(leader.db.ApplyRecords()-r0)/calls, "records/call")
}

// suiteConn is a raw RESP connection making one call at a time.
type suiteConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// call writes the call in buf and reads its reply, which must not be an
// error or, for a pop, a null (every measured pop takes an element), but
// for spop0 and zpopmin0 must be a pop's null or empty reply.
func (sc *suiteConn) call(cmd string) error {
	if _, err := sc.c.Write(sc.buf); err != nil {
		return err
	}
	line, err := sc.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if strings.HasSuffix(cmd, "0") {
		if string(line) != "$-1\r\n" && string(line) != "*0\r\n" {
			return fmt.Errorf("%s: reply %q, want a pop's null or empty reply", cmd, line)
		}
		return nil
	}
	switch line[0] {
	case '-':
		return fmt.Errorf("%s: %q", cmd, line)
	case '$':
		n, err := strconv.Atoi(string(bytes.TrimSpace(line[1:])))
		if err != nil {
			return fmt.Errorf("%s: reply %q", cmd, line)
		}
		if n < 0 {
			return fmt.Errorf("%s: null reply", cmd)
		}
		_, err = sc.r.Discard(n + 2)
		return err
	case '*':
		// ZPOPMIN's member and score.
		n, err := strconv.Atoi(string(bytes.TrimSpace(line[1:])))
		if err != nil || n <= 0 {
			return fmt.Errorf("%s: reply %q", cmd, line)
		}
		for range n {
			l, err := sc.r.ReadSlice('\n')
			if err != nil {
				return err
			}
			m, err := strconv.Atoi(string(bytes.TrimSpace(l[1:])))
			if err != nil || l[0] != '$' {
				return fmt.Errorf("%s: element %q", cmd, l)
			}
			if _, err := sc.r.Discard(m + 2); err != nil {
				return err
			}
		}
	}
	return nil
}
