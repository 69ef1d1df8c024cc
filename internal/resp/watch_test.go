package resp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
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
