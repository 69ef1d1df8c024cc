package resp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
)

// thenFake is a fakeBackend with ThenBackend (and PipelineBackend): a
// write handed over is ordered at once and answered, from a goroutine of
// the fake's, when the test releases it.
type thenFake struct {
	*fakeBackend
	handed  chan struct{} // one per SubmitThen
	release chan struct{} // one per answer
	reads   chan struct{} // one per Read
	thens   atomic.Int64
}

func newThenFake() *thenFake {
	return &thenFake{fakeBackend: newFake(), handed: make(chan struct{}, 16), release: make(chan struct{}, 16), reads: make(chan struct{}, 16)}
}

func (f *thenFake) SubmitThen(ctx context.Context, spec *commands.Spec, args [][]byte, done func(commands.Reply, uint64, error)) {
	f.thens.Add(1)
	reply, lsn, err := f.apply(spec, args) // ordered now
	f.handed <- struct{}{}
	go func() {
		<-f.release
		done(reply, lsn, err)
	}()
}

func (f *thenFake) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	reply, lsn, err := f.apply(spec, args)
	return func() (commands.Reply, uint64, error) { return reply, lsn, err }
}

func (f *thenFake) Read(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, error) {
	f.reads <- struct{}{}
	return f.fakeBackend.Read(ctx, spec, args)
}

// A write's reply written by the write path comes before the reply of
// the next command, which is not even run until then.
func TestOwedReplyKeepsOrder(t *testing.T) {
	f := newThenFake()
	_, addr := startServer(t, f, Config{})
	c := rawConn(t, addr)
	c.send(t, "SET", "k", "v")
	<-f.handed
	c.send(t, "GET", "k")
	releaseAfterNoRead(t, f, "the SET's")
	c.expect(t, "+OK")
	c.expect(t, "$1", "v")
	if n := f.thens.Load(); n != 1 {
		t.Fatalf("%d writes handed over, want 1", n)
	}
}

// Every owed reply of a connection is signalled on the same channel
// (owe): the second write's reply is waited for as the first's was, not
// taken as paid by what the first left behind.
func TestOwedRepliesInARowKeepOrder(t *testing.T) {
	f := newThenFake()
	_, addr := startServer(t, f, Config{})
	c := rawConn(t, addr)
	for i, v := range []string{"v1", "v2", "v3"} {
		c.send(t, "SET", "k", v)
		<-f.handed
		if i < 2 {
			f.release <- struct{}{}
			c.expect(t, "+OK")
		}
	}
	c.send(t, "GET", "k")
	releaseAfterNoRead(t, f, "the third SET's")
	c.expect(t, "+OK")
	c.expect(t, "$2", "v3")
}

// The owed reply's writer records the write's LSN before the reply goes
// out: a WAIT right after it waits for that write.
func TestOwedReplySetsWaitLSN(t *testing.T) {
	f := newThenFake()
	_, addr := startServer(t, f, Config{})
	c := rawConn(t, addr)
	c.send(t, "SET", "k", "v")
	<-f.handed
	f.release <- struct{}{}
	c.expect(t, "+OK")
	c.send(t, "WAIT", "0", "0")
	c.line(t) // the fake's replica count
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waitLSNs) != 1 || f.waitLSNs[0] != 1 {
		t.Fatalf("WAIT waited for %v, want [1]", f.waitLSNs)
	}
}

// A pipeline's writes and a write under a durability floor are not
// handed over: their replies go out from the connection's goroutine.
func TestOwedOnlyForALoneWrite(t *testing.T) {
	f := newThenFake()
	_, addr := startServer(t, f, Config{})
	c := rawConn(t, addr)
	c.write(t, string(encode("SET", "a", "1"))+string(encode("SET", "b", "2")))
	c.expect(t, "+OK")
	c.expect(t, "+OK")
	c.send(t, "TANDEM.DURABILITY", "REPLICAS", "1")
	c.expect(t, "+OK")
	c.send(t, "SET", "c", "3")
	c.expect(t, "+OK")
	if n := f.thens.Load(); n != 0 {
		t.Fatalf("%d writes handed over, want 0", n)
	}
}

// An owed tail (EXEC's reply after the MULTI and QUEUED replies buffered
// before it) goes out after the bytes of the flush it follows, whether
// the reply is ready before the flush or after it, and the next
// command's payOwed waits for it.
func TestOwedTailFollowsFlush(t *testing.T) {
	for _, readyFirst := range []bool{true, false} {
		cc, g := guardPair(t, 1<<20)
		tail := g.oweAfterFlush()
		if readyFirst {
			tail.ready([]byte("exec\n"))
		}
		if _, err := g.Write([]byte("multi queued\n")); err != nil {
			t.Fatal(err)
		}
		if !readyFirst {
			tail.ready([]byte("exec\n"))
		}
		g.payOwed() // what the next command waits for
		if _, err := g.Write([]byte("next\n")); err != nil {
			t.Fatal(err)
		}
		_ = cc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 0, 64)
		buf := make([]byte, 64)
		for len(got) < len("multi queued\nexec\nnext\n") {
			n, err := cc.Read(buf)
			if err != nil {
				t.Fatalf("read after %q: %v", got, err)
			}
			got = append(got, buf[:n]...)
		}
		if want := "multi queued\nexec\nnext\n"; string(got) != want {
			t.Errorf("ready first %v: the connection got %q, want %q", readyFirst, got, want)
		}
	}
}

// A connection's owed tail and its buffers are reused from one
// transaction to the next (guardConn.tailMem): each transaction's reply
// still follows its own flush's bytes, whichever comes first, and never
// carries bytes of the one before, over transactions whose flushes and
// replies differ in size.
func TestOwedTailReusedAcrossTransactions(t *testing.T) {
	cc, g := guardPair(t, 1<<20)
	var want strings.Builder
	type tx struct{ head, reply string }
	var txs []tx
	for i := range 12 {
		head := fmt.Sprintf("multi %d %s\n", i, strings.Repeat("q", (i*37)%200))
		reply := fmt.Sprintf("exec %d %s\n", i, strings.Repeat("r", (i*53)%150))
		txs = append(txs, tx{head, reply})
		want.WriteString(head + reply)
	}
	// The connection's goroutine, on its own: a tail that is never paid
	// would stop it in payOwed, and the read below then ends at its
	// deadline.
	go func() {
		for i, x := range txs {
			tail := g.oweAfterFlush()
			readyFirst := i%3 == 1
			if readyFirst {
				tail.ready(append([]byte(nil), x.reply...))
			}
			if _, err := g.Write([]byte(x.head)); err != nil {
				return
			}
			if !readyFirst {
				tail.ready(append([]byte(nil), x.reply...))
			}
			g.payOwed()
		}
	}()
	_ = cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 0, want.Len())
	buf := make([]byte, 64<<10)
	for len(got) < want.Len() {
		n, err := cc.Read(buf)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != want.String() {
		t.Errorf("the connection got\n%q\nwant\n%q", got, want.String())
	}
}

// countingConn counts the writes made to its connection. It hides the
// connection's SyscallConn, so writeOwed writes through it too.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A transaction's queued replies (the flush) and EXEC's owed reply go out
// in one write, whichever comes first, as Redis sends a pipelined
// transaction's; a flush too large to hold is written at once, the reply
// after it.
func TestOwedTailOneWrite(t *testing.T) {
	large := string(make([]byte, maxTailHeld+1))
	for _, tc := range []struct {
		name       string
		head       string
		readyFirst bool
		writes     int64
	}{
		{"flush first", "multi queued\n", false, 1},
		{"reply first", "multi queued\n", true, 1},
		{"large flush first", large, false, 2},
		{"large flush, reply first", large, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, g := guardPair(t, 1<<20)
			counted := &countingConn{Conn: g.Conn}
			g.Conn = counted
			tail := g.oweAfterFlush()
			if tc.readyFirst {
				tail.ready([]byte("exec\n"))
			}
			if _, err := g.Write([]byte(tc.head)); err != nil {
				t.Fatal(err)
			}
			if !tc.readyFirst {
				tail.ready([]byte("exec\n"))
			}
			g.payOwed()
			_ = cc.SetReadDeadline(time.Now().Add(5 * time.Second))
			want := tc.head + "exec\n"
			got := make([]byte, 0, len(want))
			buf := make([]byte, 64<<10)
			for len(got) < len(want) {
				n, err := cc.Read(buf)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				got = append(got, buf[:n]...)
			}
			if string(got) != want {
				t.Errorf("the connection got %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-20):], len(want), want[max(0, len(want)-20):])
			}
			if n := counted.writes.Load(); n != tc.writes {
				t.Errorf("%d writes, want %d", n, tc.writes)
			}
		})
	}
}

// guardPair returns the client end of a loopback TCP connection and a
// guardConn on its server end.
func guardPair(t *testing.T, maxCommand int64) (net.Conn, *guardConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	lim := testLimits
	lim.maxCommand = maxCommand
	return cc, &guardConn{Conn: sc, f: framer{lim: lim}, log: slog.New(slog.DiscardHandler)}
}

// releaseAfterNoRead looks, for a bounded time, for a read the fake must
// not have run while a write's reply (whose) is owed, then releases that
// write, and fails if the read ran.
func releaseAfterNoRead(t *testing.T, f *thenFake, whose string) {
	t.Helper()
	ranEarly := false
	select {
	case <-f.reads:
		ranEarly = true
	case <-time.After(50 * time.Millisecond): // a bounded look for what must not happen
	}
	f.release <- struct{}{}
	if ranEarly {
		t.Fatalf("GET ran while %s reply was owed", whose)
	}
}
