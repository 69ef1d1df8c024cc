package sentinel

import (
	"bufio"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/testutil"
)

func TestEvents(t *testing.T) {
	base := testState()
	with := func(edit func(*State)) State {
		st := testState()
		edit(&st)
		return st
	}
	n1 := base.Leader
	for _, tc := range []struct {
		name     string
		old, new State
		prev     *Node
		want     []event
	}{
		{"nothing changed", base, base, n1, nil},
		{"switch", base, with(func(s *State) {
			s.Epoch = 8
			s.Leader = &Node{ID: "n2", Addr: "10.0.0.2:6379"}
		}), n1, []event{
			{"+new-epoch", "8"},
			{"+switch-master", "tandem 10.0.0.1 6379 10.0.0.2 6379"},
		}},
		{"leader after a gap names the last leader", with(func(s *State) { s.Leader = nil }), with(func(s *State) {
			s.Leader = &Node{ID: "n2", Addr: "10.0.0.2:6380"}
		}), n1, []event{{"+switch-master", "tandem 10.0.0.1 6379 10.0.0.2 6380"}}},
		{"first leader ever", with(func(s *State) { s.Leader = nil }), base, nil, []event{
			{"+switch-master", "tandem 10.0.0.1 6379 10.0.0.1 6379"},
		}},
		{"leader goes away: no event until the new one", base, with(func(s *State) { s.Leader = nil }), n1, nil},
		{"leader down", base, with(func(s *State) { s.Leader.Down = true }), n1, []event{
			{"+sdown", "master tandem 10.0.0.1 6379"},
			{"+odown", "master tandem 10.0.0.1 6379 #quorum 2/2"},
		}},
		{"leader back", with(func(s *State) { s.Leader.Down = true }), base, n1, []event{
			{"-sdown", "master tandem 10.0.0.1 6379"},
			{"-odown", "master tandem 10.0.0.1 6379"},
		}},
		{"replicas flip", base, with(func(s *State) {
			s.Replicas[0].Down = true
			s.Replicas[1].Down = false
		}), n1, []event{
			{"+sdown", "slave 10.0.0.2:6379 10.0.0.2 6379 @ tandem 10.0.0.1 6379"},
			{"-sdown", "slave 10.0.0.3:6379 10.0.0.3 6379 @ tandem 10.0.0.1 6379"},
		}},
		{"a new replica is no event", base, with(func(s *State) {
			s.Replicas = append(s.Replicas, Node{ID: "n4", Addr: "10.0.0.4:6379", Down: true})
		}), n1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := events(tc.old, tc.new, tc.prev); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestPublish: SUBSCRIBE and PSUBSCRIBE subscribers get the events of
// Changed in order; the others' channels are not theirs.
func TestPublish(t *testing.T) {
	f := start(t, testState(), Config{})
	sub := dialRaw(t, f.addr)
	if got, want := sub.do("SUBSCRIBE", "+switch-master", "+replica-reconf-done"), arr(`"subscribe"`, `"+switch-master"`, ":1"); got != want {
		t.Fatalf("SUBSCRIBE: got %s, want %s", got, want)
	}
	if got, want := sub.read(), arr(`"subscribe"`, `"+replica-reconf-done"`, ":2"); got != want {
		t.Fatalf("SUBSCRIBE: got %s, want %s", got, want)
	}
	psub := dialRaw(t, f.addr)
	if got, want := psub.do("PSUBSCRIBE", "*"), arr(`"psubscribe"`, `"*"`, ":1"); got != want {
		t.Fatalf("PSUBSCRIBE: got %s, want %s", got, want)
	}

	next := testState()
	next.Epoch = 8
	next.Leader = &Node{ID: "n2", Addr: "10.0.0.2:6379"}
	next.Replicas = []Node{{ID: "n1", Addr: "10.0.0.1:6379", Down: true}, next.Replicas[1]}
	f.change(next)

	if got, want := sub.read(), bulks("message", "+switch-master", "tandem 10.0.0.1 6379 10.0.0.2 6379"); got != want {
		t.Errorf("subscriber: got %s, want %s", got, want)
	}
	for _, want := range []string{
		bulks("pmessage", "*", "+new-epoch", "8"),
		bulks("pmessage", "*", "+switch-master", "tandem 10.0.0.1 6379 10.0.0.2 6379"),
	} {
		if got := psub.read(); got != want {
			t.Errorf("pattern subscriber: got %s, want %s", got, want)
		}
	}

	// Subscribed connections answer PING and UNSUBSCRIBE (redcon's side).
	if got, want := sub.do("PING"), bulks("pong", ""); got != want {
		t.Errorf("PING while subscribed: got %s, want %s", got, want)
	}
	sub.send("UNSUBSCRIBE")
	got := []string{sub.read(), sub.read()}
	if !(reflect.DeepEqual(got, []string{arr(`"unsubscribe"`, `"+switch-master"`, ":1"), arr(`"unsubscribe"`, `"+replica-reconf-done"`, ":0")}) ||
		reflect.DeepEqual(got, []string{arr(`"unsubscribe"`, `"+replica-reconf-done"`, ":1"), arr(`"unsubscribe"`, `"+switch-master"`, ":0")})) {
		t.Errorf("UNSUBSCRIBE: got %s", got)
	}
}

// TestSwitchAfterGap: a failover's two Changed calls, leader to none to
// the new one, publish +switch-master naming the old leader, also when a
// command read the new State before the second call.
func TestSwitchAfterGap(t *testing.T) {
	f := start(t, testState(), Config{})
	sub := dialRaw(t, f.addr)
	sub.do("SUBSCRIBE", "+switch-master")
	gap := testState()
	gap.Leader = nil
	f.change(gap)
	next := testState()
	next.Leader = &Node{ID: "n2", Addr: "10.0.0.2:6379"}
	f.set(next)
	if got := dialRaw(t, f.addr).do("SENTINEL", "get-master-addr-by-name", "tandem"); got != bulks("10.0.0.2", "6379") {
		t.Fatalf("new state: %s", got)
	}
	f.srv.Changed(gap, next)
	if got, want := sub.read(), bulks("message", "+switch-master", "tandem 10.0.0.1 6379 10.0.0.2 6379"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestCloseEndsSubscribers: Close closes the connections redcon detached
// for pub/sub too, and Serve returns.
func TestCloseEndsSubscribers(t *testing.T) {
	f := start(t, testState(), Config{})
	sub := dialRaw(t, f.addr)
	sub.do("SUBSCRIBE", "+switch-master")
	idle := dialRaw(t, f.addr)
	idle.do("PING")
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawConn{sub, idle} {
		c.c.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := c.rd.ReadByte(); err == nil {
			t.Error("connection still open after Close")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Error("connection still open after Close (read timed out)")
		}
	}
	f.srv.Changed(testState(), State{}) // after Close: dropped, no panic
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Serve(l); err != ErrClosed {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
}

// TestStuckSubscriber: a subscriber that stops reading is cut off after
// WriteTimeout, and the others still get every event.
//
// The live subscriber reads from the first event on, on a goroutine of its
// own, and the timeout is a second. The publisher writes each event to
// each subscriber in turn, every write bounded by the timeout; with 50 ms,
// and the live one read only after all 400 changes, its socket was full
// by then, and a loaded machine (load 40-67) that kept its reader off the
// CPU for 50 ms had it rightly cut too (2 of 16 runs: "read reply:
// unexpected EOF"; 4 of 5 runs with the old test's reader delayed 500 ms).
func TestStuckSubscriber(t *testing.T) {
	f := start(t, testState(), Config{WriteTimeout: time.Second})
	stuck := dialRaw(t, f.addr)
	if tc, ok := stuck.c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096) // fill up sooner
	}
	stuck.do("SUBSCRIBE", "+switch-master")
	live := dialRaw(t, f.addr)
	live.do("SUBSCRIBE", "+switch-master")
	live.rd = bufio.NewReaderSize(live.c, 1<<20)
	if n := f.srv.rs.Clients(); n != 2 {
		t.Fatalf("%d clients, want the 2 subscribers", n)
	}

	// Big enough names that the kernel's buffers fill within a few hundred events.
	long := make([]byte, 16<<10)
	for i := range long {
		long[i] = 'x'
	}
	const rounds = 400
	read := make(chan error, 1)
	go func() {
		for i := range rounds {
			live.c.SetReadDeadline(time.Now().Add(ioTimeout))
			got, err := readReply(live.rd)
			if err == nil && len(got) < len(long) {
				err = fmt.Errorf("event %d: %.80s", i, got)
			}
			if err != nil {
				read <- fmt.Errorf("event %d: %w", i, err)
				return
			}
		}
		read <- nil
	}()
	a, b := testState(), testState()
	a.Leader = &Node{ID: "a", Addr: string(long) + "-a:1"}
	b.Leader = &Node{ID: "b", Addr: string(long) + "-b:2"}
	for i := range rounds {
		if i%2 == 0 {
			f.change(a)
		} else {
			f.change(b)
		}
	}
	if err := <-read; err != nil {
		t.Fatalf("live subscriber: %v", err)
	}
	// The stuck one, holding far more than its socket takes, is cut.
	testutil.Eventually(t, "the stuck subscriber cut off", ioTimeout, func() (bool, string) {
		n := f.srv.rs.Clients()
		return n == 1, fmt.Sprintf("%d clients", n)
	})
}

// TestCloseRaces: Close before Serve, and Changed racing Close, neither
// panic nor hang.
func TestCloseRaces(t *testing.T) {
	s := New(Config{}, testState)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		f := start(t, testState(), Config{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 100 {
				f.change(testState())
				next := testState()
				next.Epoch++
				f.change(next)
			}
		}()
		if err := f.srv.Close(); err != nil {
			t.Fatal(err)
		}
		<-done
	}
}

// TestOversizeInput: a command far larger than any Sentinel's is refused
// from its header, before its data, with the node's protocol error, and
// that connection only is closed.
func TestOversizeInput(t *testing.T) {
	f := start(t, testState(), Config{})
	big := dialRaw(t, f.addr)
	if _, err := big.c.Write([]byte("*2\r\n$4\r\nPING\r\n$1000000\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := big.read(); got != "-ERR Protocol error: invalid bulk length" {
		t.Errorf("an oversize command: got %s", got)
	}
	big.c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := big.rd.ReadByte(); err == nil {
		t.Error("more after the protocol error")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("an oversize command left the connection open")
	}

	// Within one argument's bound, a command longer than maxInput in all.
	long := dialRaw(t, f.addr)
	arg := strings.Repeat("x", maxInput/2)
	long.send("SUBSCRIBE", arg, arg, arg)
	if got := long.read(); got != "-ERR Protocol error: command exceeds the query buffer limit" {
		t.Errorf("an overlong command: got %.100s", got)
	}

	if got := dialRaw(t, f.addr).do("PING"); got != "+PONG" {
		t.Errorf("another connection: %s", got)
	}
}

// TestProtocolError: bad framing gets Redis's error and closes that
// connection only.
func TestProtocolError(t *testing.T) {
	f := start(t, testState(), Config{})
	bad := dialRaw(t, f.addr)
	if _, err := bad.c.Write([]byte("*x\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := bad.read(); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Errorf("got %s, want -ERR Protocol error...", got)
	}
	if _, err := bad.rd.ReadByte(); err == nil {
		t.Error("connection still open after a protocol error")
	}
	if got := dialRaw(t, f.addr).do("PING"); got != "+PONG" {
		t.Errorf("another connection: %s", got)
	}
}
