package relay

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with the same line, and records the lines
// it received.
type echoServer struct {
	ln      net.Listener
	mu      sync.Mutex
	got     []string
	changed chan struct{} // closed and replaced when got grows
	wg      sync.WaitGroup
	echo    bool
}

func startEcho(t *testing.T, echo bool) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, echo: echo, changed: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				rd := bufio.NewReader(c)
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					s.mu.Lock()
					s.got = append(s.got, line[:len(line)-1])
					close(s.changed)
					s.changed = make(chan struct{})
					s.mu.Unlock()
					if s.echo {
						if _, err := c.Write([]byte(line)); err != nil {
							return
						}
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *echoServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// waitLast waits until the last line the server received is line.
func (s *echoServer) waitLast(t *testing.T, line string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		got, ch := s.got, s.changed
		s.mu.Unlock()
		if len(got) > 0 && got[len(got)-1] == line {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("target never received %q; got %v", line, got)
		}
	}
}

func startRelay(t *testing.T, target string) *Relay {
	t.Helper()
	r, err := Listen(target, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends line and waits up to wait for its echo.
func roundTrip(c net.Conn, rd *bufio.Reader, line string, wait time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	s, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func mustEcho(t *testing.T, c net.Conn, rd *bufio.Reader, line string) {
	t.Helper()
	got, err := roundTrip(c, rd, line, 5*time.Second)
	if err != nil || got != line {
		t.Fatalf("echo of %.40q (%d bytes) = %.40q (%d bytes), %v", line, len(line), got, len(got), err)
	}
}

// closedSoon checks that the connection is closed by the relay: a read
// ends with EOF or a reset, not a timeout.
func closedSoon(t *testing.T, c net.Conn, rd *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rd.ReadString('\n')
	if err == nil {
		t.Fatal("read data from a connection that should be closed")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open: read timed out")
	}
}

func TestPass(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	for _, l := range []string{"a", "bb", "ccc"} {
		mustEcho(t, c, rd, l)
	}
	// A large message arrives whole and in order.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	mustEcho(t, c, rd, string(big))
}

func TestCutAndHeal(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "before")

	r.Cut()
	closedSoon(t, c, rd)
	// New connections are accepted and closed at once.
	c2, rd2 := dial(t, r.Addr())
	closedSoon(t, c2, rd2)

	r.Heal()
	c3, rd3 := dial(t, r.Addr())
	mustEcho(t, c3, rd3, "after")
}

func TestDelay(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "warm")

	const d = 100 * time.Millisecond
	r.Delay(d)
	start := time.Now()
	mustEcho(t, c, rd, "slow")
	// Delayed once each way.
	if rtt := time.Since(start); rtt < 2*d || rtt > 2*time.Second {
		t.Fatalf("round trip %v under delay %v, want about %v", rtt, d, 2*d)
	}
	r.Heal()
	start = time.Now()
	mustEcho(t, c, rd, "fast")
	if rtt := time.Since(start); rtt >= d {
		t.Fatalf("round trip %v after heal, want < %v", rtt, d)
	}
}

func TestDropForward(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "before")

	r.Drop(Forward)
	if got, err := roundTrip(c, rd, "lost", 300*time.Millisecond); err == nil {
		t.Fatalf("echo %q through a dropped link", got)
	}
	for _, l := range s.received() {
		if l == "lost" {
			t.Fatal("target received a dropped line")
		}
	}
	// Healing closes the connection that lost bytes; a new one works.
	r.Heal()
	closedSoon(t, c, rd)
	c2, rd2 := dial(t, r.Addr())
	mustEcho(t, c2, rd2, "after")
}

func TestDropBackward(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "before")
	// An untouched connection survives the heal.
	other, otherRd := dial(t, r.Addr())
	mustEcho(t, other, otherRd, "other")

	r.Drop(Backward)
	if got, err := roundTrip(c, rd, "one-way", 300*time.Millisecond); err == nil {
		t.Fatalf("echo %q through a link dropping replies", got)
	}
	// The forward direction still flows: the target got the line.
	s.waitLast(t, "one-way", 5*time.Second)
	r.Heal()
	closedSoon(t, c, rd)
	mustEcho(t, other, otherRd, "still here")
}

// TestBlackHoleBackward: a sticky drop leaves the connections that lost
// bytes open and deaf after the heal (replies never come back, nothing
// closes them), while a connection untouched by the fault and one opened
// after the heal pass.
func TestBlackHoleBackward(t *testing.T) {
	s := startEcho(t, true)
	r := startRelay(t, s.ln.Addr().String())
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "before")
	other, otherRd := dial(t, r.Addr())
	mustEcho(t, other, otherRd, "other")

	r.BlackHole(Backward)
	if got, err := roundTrip(c, rd, "one-way", 300*time.Millisecond); err == nil {
		t.Fatalf("echo %q through a black-holed link", got)
	}
	s.waitLast(t, "one-way", 5*time.Second)
	r.Heal()
	var ne net.Error
	if got, err := roundTrip(c, rd, "after heal", 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("black-holed connection after the heal: echo %q, err %v; want silence on an open connection", got, err)
	}
	s.waitLast(t, "after heal", 5*time.Second) // still open forward
	mustEcho(t, other, otherRd, "still here")
	c2, rd2 := dial(t, r.Addr())
	mustEcho(t, c2, rd2, "new")
}

func TestCloseEndsConnections(t *testing.T) {
	s := startEcho(t, true)
	r, err := Listen(s.ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, rd := dial(t, r.Addr())
	mustEcho(t, c, rd, "x")
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	closedSoon(t, c, rd)
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		// The port may be reused by now; only a successful relay would be wrong.
		t.Log("port reachable after close (reused?)")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{{}: "pass", {Cut: true}: "cut", {Delay: time.Second}: "delay 1s", {Drop: Forward}: "drop forward", {Drop: Backward, Sticky: true}: "black-hole backward"} {
		if m.String() != want {
			t.Errorf("%+v = %q, want %q", m, m.String(), want)
		}
	}
}
