package resp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestWaitEndsWhenClientLeaves: WAIT 1 0 blocks until a replica answers,
// maybe forever; a client that disconnects must cancel it, as Redis frees
// a blocked client, rather than pin a goroutine until the server stops.
func TestWaitEndsWhenClientLeaves(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitEnded = true, make(chan error, 1)
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "WAIT", "1", "0")
	time.Sleep(50 * time.Millisecond) // let WAIT start blocking
	c.Close()
	select {
	case err := <-b.waitEnded:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WAIT ended with %v, want the client's context canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WAIT still blocked 5 s after its client left")
	}
}

// TestCommandsPipelinedBehindWait: what a client sends while WAIT blocks
// is read by the watch and must still be served, in order, afterwards.
func TestCommandsPipelinedBehindWait(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitEnded = true, make(chan error, 1)
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, string(encode("WAIT", "1", "300")))
	time.Sleep(50 * time.Millisecond) // the rest arrives while WAIT blocks
	c.write(t, string(encode("SET", "k", "v"))+"PING\r\n"+string(encode("GET", "k"))+"*2\r\n$3\r\nGET")
	time.Sleep(20 * time.Millisecond)
	c.write(t, "\r\n$1\r\nk\r\n") // completes the last command after WAIT returned
	c.expect(t, ":0", "+OK", "+PONG", "$1", "v", "$1", "v")
	if err := <-b.waitEnded; err != nil {
		t.Fatalf("WAIT ended with %v, want its timeout", err)
	}
}

// TestProtocolErrorBehindWait: a malformed command sent while WAIT blocks
// ends the connection after the commands before it are answered.
func TestProtocolErrorBehindWait(t *testing.T) {
	b := newFake()
	b.waitBlocks, b.waitEnded = true, make(chan error, 1)
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, string(encode("WAIT", "1", "0")))
	time.Sleep(50 * time.Millisecond)
	c.write(t, "PING\r\n*1\r\n$x\r\n")
	if err := <-b.waitEnded; !errors.Is(err, context.Canceled) {
		t.Fatalf("WAIT ended with %v, want canceled by the protocol error", err)
	}
	c.expect(t, ":0", "+PONG")
	if l := c.line(t); !strings.HasPrefix(l, "-ERR Protocol error") {
		t.Fatalf("got %q, want the protocol error", l)
	}
}
