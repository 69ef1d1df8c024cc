package resp

import (
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds, for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAdmissionHoldsBackConnections checks that with every slot taken a
// connection's command waits, parked, until one is given back.
func TestAdmissionHoldsBackConnections(t *testing.T) {
	s, addr := startServer(t, newFake(), Config{MaxActive: 1})
	c := rawConn(t, addr)
	c.send(t, "PING")
	c.expect(t, "+PONG")
	waitFor(t, "the slot given back", func() bool { return s.Admission().Active == 0 })

	s.admit.slots <- struct{}{} // the one slot, taken
	c.send(t, "PING")
	waitFor(t, "a connection waiting for a slot", func() bool { return s.Admission().Waiting == 1 })
	if st := s.Admission(); st.Waits != 1 || st.Slots != 1 {
		t.Fatalf("admission %+v, want 1 wait of 1 slot", st)
	}
	<-s.admit.slots
	c.expect(t, "+PONG")
	waitFor(t, "the slot given back", func() bool { return s.Admission().Active == 0 })
}

// TestAdmissionOffByDefault checks a server without MaxActive admits
// everyone: the sentinel's and the proxy's endpoints do not limit.
func TestAdmissionOffByDefault(t *testing.T) {
	s, addr := startServer(t, newFake(), Config{})
	c := rawConn(t, addr)
	c.send(t, "PING")
	c.expect(t, "+PONG")
	if st := s.Admission(); st != (AdmissionStats{}) {
		t.Fatalf("admission %+v without MaxActive", st)
	}
}

// TestAdmissionCommitWaitGivesSlotBack checks a connection waiting for
// its writes to commit holds no slot, in a pipeline and alone: a slot held
// across the wait would let no other connection's writes join the group
// commit.
func TestAdmissionCommitWaitGivesSlotBack(t *testing.T) {
	for _, tc := range []struct {
		name, blocked string
		b             func(*fakeBackend) Backend
		send          func(*rawClient)
		replies       []string
	}{
		{"pipeline", "wait", func(f *fakeBackend) Backend { return blockingPipe{f} },
			func(c *rawClient) { c.write(t, string(encode("SET", "a", "1"))+string(encode("SET", "b", "2"))) },
			[]string{"+OK", "+OK"}},
		{"write", "write", func(f *fakeBackend) Backend { return f },
			func(c *rawClient) { c.send(t, "SET", "a", "1") },
			[]string{"+OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			block := make(chan struct{})
			f.block, f.blocked = block, make(chan string, 1)
			s, addr := startServer(t, tc.b(f), Config{MaxActive: 1})
			c := rawConn(t, addr)
			tc.send(c)
			blockedIn(t, f, tc.blocked)
			if st := s.Admission(); st.Active != 0 {
				t.Fatalf("admission %+v while the write waits for its commit", st)
			}
			other := rawConn(t, addr)
			other.send(t, "PING")
			other.expect(t, "+PONG")
			close(block)
			c.expect(t, tc.replies...)
		})
	}
}

// TestAdmissionLongCallGivesSlotBack checks that a Backend call that
// blocks (here a read) gives its slot back once it outlasts watchDelay, so
// the one slot does not keep every other connection waiting.
func TestAdmissionLongCallGivesSlotBack(t *testing.T) {
	f := newFake()
	block := make(chan struct{})
	f.block, f.blockReads, f.blocked = block, true, make(chan string, 1)
	_, addr := startServer(t, f, Config{MaxActive: 1})
	c := rawConn(t, addr)
	c.send(t, "GET", "k")
	blockedIn(t, f, "read")
	other := rawConn(t, addr)
	other.send(t, "PING")
	other.expect(t, "+PONG")
	close(block)
	c.expect(t, "$-1")
}

// TestAdmissionSlowReaderGivesSlotBack checks that a client that does not
// read its replies, whose connection's write then blocks, holds no slot.
func TestAdmissionSlowReaderGivesSlotBack(t *testing.T) {
	s, addr := startServer(t, newFake(), Config{MaxActive: 1})
	c := rawConn(t, addr)
	big := strings.Repeat("x", 1<<20)
	c.send(t, "SET", "big", big)
	c.expect(t, "+OK")
	// Replies of 64 MiB that the client does not read fill both sockets'
	// buffers: the server's write blocks.
	var gets []byte
	for range 64 {
		gets = append(gets, encode("GET", "big")...)
	}
	c.write(t, string(gets))
	// The first reply's header: the server is in its write of them all.
	if got := c.line(t); got != "$1048576" {
		t.Fatalf("got %q, want the big value's header", got)
	}
	other := rawConn(t, addr)
	other.send(t, "PING")
	other.expect(t, "+PONG")
	c.Close()
	waitFor(t, "the slot given back", func() bool { return s.Admission().Active == 0 })
}
