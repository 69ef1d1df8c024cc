package resp

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/testutil"
)

// blockedWait starts a server whose WAIT blocks like one no replica
// answers, sends WAIT 1 timeoutMs on a raw connection, and returns once
// WAIT blocks, so what the test sends next arrives while it does.
func blockedWait(t *testing.T, timeoutMs string) (*fakeBackend, *rawClient) {
	t.Helper()
	b := newFake()
	b.waitBlocks, b.waitStarted, b.waitEnded = true, make(chan struct{}, 1), make(chan error, 1)
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "WAIT", "1", timeoutMs)
	select {
	case <-b.waitStarted:
	case <-time.After(5 * time.Second):
		t.Fatal("WAIT never started")
	}
	return b, c
}

// waitEnd returns why the blocked WAIT ended (nil: its timeout).
func waitEnd(t *testing.T, b *fakeBackend) error {
	t.Helper()
	select {
	case err := <-b.waitEnded:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("WAIT still blocked after 5 s")
		return nil
	}
}

// TestWaitEndsWhenClientLeaves: WAIT 1 0 blocks until a replica answers,
// maybe forever; a client that disconnects must cancel it, as Redis frees
// a blocked client, rather than pin a goroutine until the server stops.
func TestWaitEndsWhenClientLeaves(t *testing.T) {
	b, c := blockedWait(t, "0")
	c.Close()
	if err := waitEnd(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want the client's context canceled", err)
	}
}

// TestParkedSweeperWakesForACall: an idle server's sweeper parks (it
// wakes for nothing); a call that then blocks still gets its watch, so
// a client that leaves during it cancels it.
func TestParkedSweeperWakesForACall(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitStarted, b.waitEnded = true, make(chan struct{}, 1), make(chan error, 1)
	s, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "PING")
	c.expect(t, "+PONG")
	testutil.Eventually(t, "the idle sweeper parked", 5*time.Second, func() (bool, string) {
		return s.sweepParked.Load(), "not parked"
	})
	c.send(t, "WAIT", "1", "0")
	select {
	case <-b.waitStarted:
	case <-time.After(5 * time.Second):
		t.Fatal("WAIT never started")
	}
	testutil.Eventually(t, "the blocked WAIT watched", 5*time.Second, func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, sess := range s.sessions {
			if sess.call.Load()&callWatched != 0 {
				return true, ""
			}
		}
		return false, "no watch"
	})
	c.Close()
	if err := waitEnd(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want the client's context canceled (the parked sweeper never watched it)", err)
	}
}

// TestBlockedCallWatchedAtOnce: a call that blocks (BlockedCall: BLPOP
// and its kin) has its socket watched from the moment it blocks, not
// once the sweeper finds it, so a client that leaves stops counting as
// blocked as soon as its close arrives. The sweeper is held off (its
// lock taken) until the call has blocked: only BlockedCall can have
// started the watch. Left to the sweeper, a blocked client closed in
// its first 5–85 ms stayed in INFO blocked_clients that long, and
// Redis's "client unblock tests", sending CLIENT UNBLOCK on seeing the
// count, hung.
func TestBlockedCallWatchedAtOnce(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitStarted, b.waitEnded = true, make(chan struct{}, 1), make(chan error, 1)
	b.waitIsBlockedCall = true
	s, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "PING")
	c.expect(t, "+PONG")
	s.mu.Lock()
	c.send(t, "WAIT", "1", "0")
	select {
	case <-b.waitStarted:
	case <-time.After(5 * time.Second):
		s.mu.Unlock()
		t.Fatal("WAIT never started")
	}
	s.mu.Unlock()
	b.mu.Lock()
	watched := b.watchedAtBlock
	b.mu.Unlock()
	if !watched {
		t.Fatal("a blocked call's socket is not watched when it blocks: a client that leaves counts as blocked until the sweeper comes")
	}
	c.Close()
	if err := waitEnd(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want the client's context canceled", err)
	}
}

// TestRepliesBeforeABlockedCallAreWritten: the replies of the commands a
// client sent before a call that blocks, in the same read, reach it while
// the call blocks, as Redis writes them before it blocks the client;
// redcon writes a read's replies only after its last command.
func TestRepliesBeforeABlockedCallAreWritten(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitStarted, b.waitEnded = true, make(chan struct{}, 1), make(chan error, 1)
	b.waitIsBlockedCall = true
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, string(encode("PING"))+string(encode("ECHO", "before"))+string(encode("WAIT", "1", "0")))
	select {
	case <-b.waitStarted:
	case <-time.After(5 * time.Second):
		t.Fatal("WAIT never started")
	}
	c.expect(t, "+PONG", "$6", "before") // while WAIT blocks
	c.Close()
	if err := waitEnd(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want the client's context canceled", err)
	}
}

// TestCommandsPipelinedBehindWait: what a client sends while WAIT blocks
// is read by the watch and must still be served, in order, afterwards;
// a command it left incomplete is completed by bytes sent after WAIT.
func TestCommandsPipelinedBehindWait(t *testing.T) {
	b, c := blockedWait(t, "300")
	c.write(t, string(encode("SET", "k", "v"))+"PING\r\n"+string(encode("GET", "k"))+"*2\r\n$3\r\nGET")
	if err := waitEnd(t, b); err != nil {
		t.Fatalf("WAIT ended with %v, want its timeout", err)
	}
	c.write(t, "\r\n$1\r\nk\r\n")
	c.expect(t, ":0", "+OK", "+PONG", "$1", "v", "$1", "v")
}

// TestProtocolErrorBehindWait: a malformed command sent while WAIT blocks
// ends the wait, and the connection after the commands before it are
// answered.
func TestProtocolErrorBehindWait(t *testing.T) {
	b, c := blockedWait(t, "0")
	c.write(t, "PING\r\n*1\r\n$x\r\n")
	if err := waitEnd(t, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want canceled by the protocol error", err)
	}
	c.expect(t, ":0", "+PONG")
	if l := c.line(t); !strings.HasPrefix(l, "-ERR Protocol error") {
		t.Fatalf("got %q, want the protocol error", l)
	}
}

// blockingServer starts a server on b (fakeBackend or blockingPipe) whose
// Backend calls block until the test closes the returned channel.
func blockingServer(t *testing.T, f *fakeBackend, b Backend) (*Server, string, chan struct{}) {
	t.Helper()
	block := make(chan struct{})
	f.set(func(f *fakeBackend) {
		f.block, f.blocked, f.unblocked = block, make(chan string, 16), make(chan error, 16)
	})
	s, addr := startServer(t, b, Config{})
	return s, addr, block
}

// blockedIn waits until a call blocks in the fake and checks which.
func blockedIn(t *testing.T, f *fakeBackend, want string) {
	t.Helper()
	select {
	case got := <-f.blocked:
		if got != want {
			t.Fatalf("%s blocked, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s blocked", want)
	}
}

// unblockedBy returns why a blocked call in the fake ended.
func unblockedBy(t *testing.T, f *fakeBackend) error {
	t.Helper()
	select {
	case err := <-f.unblocked:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("call still blocked after 5 s")
		return nil
	}
}

// TestBlockedCallsEndWhenClientLeaves: a client that disconnects while a
// write waits for commit (alone or in a pipeline) or a read waits in the
// backend frees the call at once: its context ends.
func TestBlockedCallsEndWhenClientLeaves(t *testing.T) {
	for _, tc := range []struct {
		name, send, blocked string
		pipe, reads         bool
	}{
		{"write", string(encode("SET", "k", "v")), "write", false, false},
		{"pipelined write", string(encode("SET", "k", "v")) + string(encode("SET", "j", "v")), "wait", true, false},
		{"read", string(encode("GET", "k")), "read", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.blockReads = tc.reads
			var b Backend = f
			if tc.pipe {
				b = blockingPipe{f}
			}
			_, addr, _ := blockingServer(t, f, b)
			c := rawConn(t, addr)
			c.write(t, tc.send)
			blockedIn(t, f, tc.blocked)
			c.Close()
			if err := unblockedBy(t, f); !errors.Is(err, context.Canceled) {
				t.Fatalf("blocked %s ended with %v, want its context canceled", tc.blocked, err)
			}
		})
	}
}

// TestCommandsPipelinedBehindWrite: what a client sends while a write
// blocks long enough to be watched is served after it, in order.
func TestCommandsPipelinedBehindWrite(t *testing.T) {
	f := newFake()
	s, addr, block := blockingServer(t, f, f)
	c := rawConn(t, addr)
	c.send(t, "SET", "k", "v")
	blockedIn(t, f, "write")
	waitWatched(t, s)
	c.write(t, "PING\r\n"+string(encode("GET", "k"))+"*2\r\n$3\r\nGET")
	close(block)
	if err := unblockedBy(t, f); err != nil {
		t.Fatalf("write ended with %v, want its commit", err)
	}
	c.write(t, "\r\n$1\r\nk\r\n")
	c.expect(t, "+OK", "+PONG", "$1", "v", "$1", "v")
}

// waitWatched waits until the sweeper watches a blocked call.
func waitWatched(t *testing.T, s *Server) {
	t.Helper()
	testutil.Eventually(t, "the sweeper to watch a blocked call", 5*time.Second, func() (bool, string) {
		for _, sess := range s.sessionsByID() {
			if sess.call.Load()&callWatched != 0 {
				return true, ""
			}
		}
		return false, "no call watched"
	})
}

// TestWatchesComeAndGo streams a pipeline whose commits take up to twice
// watchDelay, so that watches start and stop while commands arrive; every
// reply must come back, in order.
func TestWatchesComeAndGo(t *testing.T) {
	b := &pipeFake{fakeBackend: newFake(), commitDelay: 2 * watchDelay}
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	const n = 300
	replied := make(chan int, n) // replies read so far, after each one
	go func() {
		sent := 0
		for k := 0; sent < n; k++ {
			for range min(1+k%7, n-sent) {
				if _, err := c.Write(encode("INCR", "n")); err != nil {
					return
				}
				sent++
			}
			// Leave 0 to 2 commands in flight, so that the next burst
			// arrives sometimes while a watched call blocks and
			// sometimes once the connection is idle again.
			for want := sent - k%3; <-replied < want; {
			}
		}
	}()
	for i := range n {
		c.expect(t, ":"+strconv.Itoa(i+1))
		replied <- i + 1
	}
}

// copyArgs: a queued command's arguments are copies that neither the
// connection's buffer (reused after the command) nor the transaction's
// later commands (which may fill and replace its storage) change.
func TestTxCopyArgsKeepsEachCommand(t *testing.T) {
	var tx txState
	var want [][]string
	var got [][][]byte
	for i := range 40 {
		src := [][]byte{[]byte("SET"), []byte("key" + strconv.Itoa(i)), bytes.Repeat([]byte{byte('a' + i%26)}, i*7)}
		w := make([]string, len(src))
		for j, a := range src {
			w[j] = string(a)
		}
		got = append(got, tx.copyArgs(src))
		want = append(want, w)
		for _, a := range src {
			clear(a) // the connection reuses its buffer
		}
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("command %d: %d arguments, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range got[i] {
			if string(got[i][j]) != want[i][j] {
				t.Fatalf("command %d argument %d: %q, want %q", i, j, got[i][j], want[i][j])
			}
		}
		// Appending to one command's arguments must not reach the next's.
		if cap(got[i]) != len(got[i]) {
			t.Fatalf("command %d: its argument list has room past its end (cap %d, len %d)", i, cap(got[i]), len(got[i]))
		}
	}
}
