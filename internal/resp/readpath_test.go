package resp

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// The read path: every byte a client sends is read and served, in order,
// however it arrives. These cases are the ones a read that skips a
// system call would get wrong: waiting for the socket to become readable
// when bytes already wait in it (the poller reports arrivals, not
// readable bytes, and forgets an arrival when a read begins) hangs the
// connection with a command unread.

// holdFrontEnd serves HOLD by waiting, on the connection's goroutine and
// outside any watched call, until the test lets it go; the connection
// commands (PING, ECHO) are served as usual.
type holdFrontEnd struct {
	held chan struct{} // receives when a HOLD starts waiting
	free chan struct{} // a HOLD returns when it receives
}

func (h *holdFrontEnd) frontEnd() FrontEnd {
	return FrontEnd{Serve: func(c redcon.Conn, _ *Session, args [][]byte) bool {
		if !strings.EqualFold(string(args[0]), "HOLD") {
			return false
		}
		h.held <- struct{}{}
		<-h.free
		c.WriteString("HELD")
		return true
	}}
}

// pollerSaw returns once the process's poller has taken the readiness of
// every connection whose bytes were sent before the call: it sends a byte
// on a second loopback connection and waits for a goroutine parked in a
// Read of it to be woken, which only the poller does. Loopback bytes are
// queued at the receiver before the sender's write returns, so the
// poller's pass that wakes that goroutine reports the earlier arrivals too.
func pollerSaw(t *testing.T) {
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
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	woke := make(chan error, 1)
	go func() {
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := sc.Read(make([]byte, 1))
		woke <- err
	}()
	if _, err := cc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("sentinel read: %v", err)
	}
}

// TestNextCommandBeforeTheReply: a command that arrives while the one
// before it is still being served (after the read that brought that one,
// before the connection reads again) and that the poller has already
// reported, is served at once. A client that pipelines without waiting,
// or sends its next command while the reply is on its way, does this.
func TestNextCommandBeforeTheReply(t *testing.T) {
	h := &holdFrontEnd{held: make(chan struct{}, 1), free: make(chan struct{})}
	_, addr := startEndpoint(t, Config{}, h.frontEnd())
	c := rawConn(t, addr)
	for i := range 3 {
		c.send(t, "HOLD")
		<-h.held
		// The HOLD's read is over and the connection is serving it.
		c.send(t, "ECHO", strconv.Itoa(i))
		pollerSaw(t)
		h.free <- struct{}{}
		c.expect(t, "+HELD")
		c.expect(t, "$"+strconv.Itoa(len(strconv.Itoa(i))), strconv.Itoa(i))
	}
	c.send(t, "PING")
	c.expect(t, "+PONG")
}

// TestCommandSplitAcrossPackets: a command whose bytes arrive in several
// segments, cut in its header, in a bulk's length, in a bulk's data and
// between its CR and LF, is served once all of it came, and a pipeline
// whose last command is cut that way too.
func TestCommandSplitAcrossPackets(t *testing.T) {
	_, addr := startEndpoint(t, Config{}, (&holdFrontEnd{}).frontEnd())
	c := rawConn(t, addr)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // each write its own segment
	}
	big := strings.Repeat("x", 40<<10) // longer than redcon's 4 KiB buffer
	cmd := string(encode("ECHO", big))
	for _, cuts := range [][]int{
		{1, 3, 5},                           // "*", "2\r", "\n$4..."
		{9, 11},                             // in "$4\r\nECHO"
		{16, 20, 1000, 20000, len(cmd) - 1}, // in the bulk's length and data, before the last LF
	} {
		prev := 0
		for _, at := range append(cuts, len(cmd)) {
			c.write(t, cmd[prev:at])
			prev = at
			pollerSaw(t) // the connection has had the chance to read this part alone
		}
		c.expect(t, "$"+strconv.Itoa(len(big)), big)
	}
	// A pipeline of small commands with a large one cut after them.
	var pipe strings.Builder
	for i := range 50 {
		pipe.Write(encode("ECHO", strconv.Itoa(i)))
	}
	pipe.WriteString(cmd[:len(cmd)/2])
	c.write(t, pipe.String())
	pollerSaw(t)
	c.write(t, cmd[len(cmd)/2:])
	for i := range 50 {
		c.expect(t, "$"+strconv.Itoa(len(strconv.Itoa(i))), strconv.Itoa(i))
	}
	c.expect(t, "$"+strconv.Itoa(len(big)), big)
}

// TestPipelineLargerThanTheReadBuffer: a pipeline far larger than any
// read buffer, all of it in the socket before the connection reads (so
// no arrival is reported after the reads begin), is served in full and
// in order: a read that fills its buffer must be followed by another read
// at once, never a wait for an arrival.
func TestPipelineLargerThanTheReadBuffer(t *testing.T) {
	_, addr := startEndpoint(t, Config{}, (&holdFrontEnd{}).frontEnd())
	for _, tc := range []struct {
		name     string
		n, width int
	}{
		{"small commands", 20000, 8},
		{"4 KiB commands", 300, 4 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			arg := func(i int) string { return fmt.Sprintf("%0*d", tc.width, i) }
			var pipe []byte
			for i := range tc.n {
				pipe = append(pipe, encode("ECHO", arg(i))...)
			}
			// Written by a goroutine: the replies must be read meanwhile,
			// or both sides' socket buffers fill.
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() { _, werr = conn.Write(pipe) })
			r := bufio.NewReaderSize(conn, 64<<10)
			for i := range tc.n {
				want := arg(i)
				hdr, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("reply %d of %d: %v", i, tc.n, err)
				}
				body, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("reply %d of %d: %v", i, tc.n, err)
				}
				if hdr != "$"+strconv.Itoa(len(want))+"\r\n" || body != want+"\r\n" {
					t.Fatalf("reply %d: %q %q, want %q", i, hdr, body, want)
				}
			}
			wg.Wait()
			if werr != nil {
				t.Fatalf("write: %v", werr)
			}
		})
	}
}

// TestRawReadForgetsReadiness pins the Go behaviour that keeps the
// connection's read after each served command (readConn, in bigarg.go):
// RawRead clears the poller's readiness mark before it calls its
// function, so a function that waits for readiness instead of reading
// misses bytes that arrived, and were reported, before the call. If Go
// keeps the mark one day, this fails: the read that finds nothing
// (EAGAIN, about one per request) could then be skipped after a short
// read, as readConn's comment says.
func TestRawReadForgetsReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := cc.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Read(buf); err != nil { // a short read
		t.Fatal(err)
	}
	if _, err := cc.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	pollerSaw(t) // the second PING's arrival is reported
	_ = sc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	waited, n := false, 0
	err = raw.Read(func(fd uintptr) bool {
		if !waited {
			waited = true
			return false // wait for readiness instead of reading
		}
		n, _ = syscall.Read(int(fd), buf)
		return true
	})
	if err == nil {
		t.Fatalf("RawRead kept the readiness of bytes that arrived before it (read %d bytes): "+
			"readConn may now skip its read after a short one", n)
	}
	if !isTimeout(err) {
		t.Fatalf("RawRead: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
