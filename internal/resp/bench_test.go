package resp

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
)

// BenchmarkWrite measures one SET round trip over loopback against the
// fake backend, whose writes commit at once: the hot path of every write.
// Besides time it reports the goroutines the process created and the
// read/write system calls it made per operation (client and server
// together, so compare runs, not absolute numbers): a write that commits
// quickly must cost no goroutine and no syscall beyond its own I/O.
func BenchmarkWrite(b *testing.B) {
	benchRoundTrips(b, newFake(), 1)
}

// BenchmarkPipelinedWrites is the same with 16 SETs per round trip through
// the PipelineBackend path (Submit, then the waits).
func BenchmarkPipelinedWrites(b *testing.B) {
	benchRoundTrips(b, &instantPipe{newFake()}, 16)
}

// BenchmarkOwedWrite is BenchmarkWrite through the ThenBackend path: the
// write is handed over with its reply owed (owed.go), answered at once.
// Its allocs/op are the front end's share of a lone SET on the leader.
func BenchmarkOwedWrite(b *testing.B) {
	benchRoundTrips(b, &instantThen{newFake()}, 1)
}

func benchRoundTrips(b *testing.B, backend Backend, depth int) {
	_, addr := startServer(b, backend, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	req := bytes.Repeat(encode("SET", "k", "v"), depth)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for range depth {
			line, err := r.ReadSlice('\n')
			if err != nil || string(line) != "+OK\r\n" {
				b.Fatalf("reply %q, %v", line, err)
			}
		}
	}
	for range 100 {
		roundTrip() // warm up buffers and the connection's goroutine
	}
	g0, r0, w0 := goroutinesCreated(), syscalls("syscr"), syscalls("syscw")
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
	b.StopTimer()
	ops := float64(b.N * depth)
	b.ReportMetric(float64(goroutinesCreated()-g0)/ops, "goroutines/op")
	if r0 >= 0 {
		b.ReportMetric(float64(syscalls("syscr")-r0)/ops, "reads/op")
		b.ReportMetric(float64(syscalls("syscw")-w0)/ops, "writes/op")
	}
}

// instantPipe is a PipelineBackend whose writes commit at once.
type instantPipe struct{ *fakeBackend }

func (p *instantPipe) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	reply, lsn, err := p.fakeBackend.Write(ctx, spec, args)
	return func() (commands.Reply, uint64, error) { return reply, lsn, err }
}

// instantThen is a ThenBackend whose writes commit at once: done is
// called before SubmitThen returns.
type instantThen struct{ *fakeBackend }

func (t *instantThen) SubmitThen(ctx context.Context, spec *commands.Spec, args [][]byte, done func(commands.Reply, uint64, error)) {
	done(t.fakeBackend.Write(ctx, spec, args))
}

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// syscalls returns a counter from /proc/self/io (syscr: read system
// calls, syscw: write system calls), or -1 where there is none.
func syscalls(field string) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte(field+": ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// BenchmarkCallBookkeeping is what a Backend call that returns before
// watchDelay costs the connection beyond the call itself: enter and leave.
func BenchmarkCallBookkeeping(b *testing.B) {
	sess := &Session{}
	sess.ctx, sess.cancel = context.WithCancel(context.Background())
	defer sess.cancel()
	for b.Loop() {
		_ = sess.enter()
		sess.leave()
	}
}
