package sentinel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp"
)

// nodeStub is a Backend for a node endpoint that only ever serves
// connection commands: HELLO asks it for the role, nothing else is called.
type nodeStub struct{}

var errStub = errors.New("stub backend")

func (nodeStub) Read(context.Context, *commands.Spec, [][]byte) (commands.Reply, error) {
	return nil, errStub
}
func (nodeStub) Write(context.Context, *commands.Spec, [][]byte) (commands.Reply, uint64, error) {
	return nil, 0, errStub
}
func (nodeStub) Info([]string) string { return "" }
func (nodeStub) Role() commands.Reply {
	return commands.Array{commands.Bulk("master"), commands.Int(0), commands.Array{}}
}
func (nodeStub) Wait(context.Context, uint64, int, time.Duration) int { return 0 }
func (nodeStub) ReplicaOf(context.Context, string, string) error      { return errStub }
func (nodeStub) ReplicaOfNoOne(context.Context) error                 { return errStub }

// startNode serves the node's RESP front end on a loopback port.
func startNode(t *testing.T) string {
	t.Helper()
	srv := resp.NewServer(resp.Config{Version: "7.2.0", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}, nodeStub{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("node Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("node Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// wire is a raw connection that returns each reply's exact bytes.
type wire struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dialWire(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wire{t: t, c: c, rd: bufio.NewReader(c)}
}

// do writes raw bytes and returns the raw bytes of the next reply.
func (w *wire) do(raw string) []byte {
	w.t.Helper()
	w.c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(w.c, raw); err != nil {
		w.t.Fatalf("send %q: %v", raw, err)
	}
	b, err := rawReply(w.rd, nil)
	if err != nil {
		w.t.Fatalf("reply to %q: %v", raw, err)
	}
	return b
}

// closed reports whether the server closed the connection with nothing
// more to read.
func (w *wire) closed() bool {
	w.c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := w.rd.ReadByte()
	return errors.Is(err, io.EOF)
}

// rawReply appends one RESP2 or RESP3 reply, exactly as sent, to b.
func rawReply(rd *bufio.Reader, b []byte) ([]byte, error) {
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return b, err
	}
	b = append(b, line...)
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return b, fmt.Errorf("bad line %q", line)
	}
	n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
	switch line[0] {
	case '$', '=', '!':
		if n < 0 {
			return b, nil
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(rd, body); err != nil {
			return b, err
		}
		return append(b, body...), nil
	case '*', '~', '>', '%', '|':
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if b, err = rawReply(rd, b); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}

// cmd encodes a command as a client library would.
func cmd(args ...string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// TestSameConnectionLayer sends the same connection commands to a data
// node's RESP port and to the Sentinel endpoint and compares the replies
// byte for byte: both are front ends on one connection layer, so a
// connection command cannot answer differently on the two. The only
// differences allowed are the ones a front end declares: HELLO's mode
// ("standalone" against "sentinel"), and the Sentinel endpoint speaking
// RESP2 only, so that its HELLO 3 is refused as a node refuses HELLO 4.
func TestSameConnectionLayer(t *testing.T) {
	nodeAddr := startNode(t)
	sent := start(t, testState(), Config{})
	// The first connection on each: CLIENT ID and HELLO's id are 1 on both.
	node, sen := dialWire(t, nodeAddr), dialWire(t, sent.addr)

	const modeNode, modeSentinel = "$4\r\nmode\r\n$10\r\nstandalone\r\n", "$4\r\nmode\r\n$8\r\nsentinel\r\n"
	script := []struct {
		send  string
		hello bool // the reply is HELLO's map, with the mode each declares
	}{
		{cmd("HELLO", "2"), true},
		{cmd("hello"), true},
		{cmd("HELLO", "2", "SETNAME", "app"), true},
		{cmd("CLIENT", "GETNAME"), false},
		{cmd("CLIENT", "SETNAME", "other"), false},
		{cmd("client", "getname"), false},
		{cmd("CLIENT", "SETNAME", "a b"), false},
		{cmd("CLIENT", "SETNAME"), false},
		{cmd("CLIENT", "ID"), false},
		{cmd("CLIENT", "SETINFO", "LIB-NAME", "go-redis(,go1.26)"), false},
		{cmd("CLIENT", "SETINFO", "lib-ver", "a b"), false},
		{cmd("CLIENT", "SETINFO", "foo", "x"), false},
		{cmd("CLIENT", "NOSUCH"), false},
		{cmd("CLIENT"), false},
		{cmd("AUTH", "secret"), false},
		{cmd("AUTH", "u", "p"), false},
		{cmd("AUTH", "default", "p"), false},
		{cmd("AUTH", "a", "b", "c"), false},
		{cmd("AUTH"), false},
		{cmd("HELLO", "2", "AUTH", "u", "p"), false},
		{cmd("HELLO", "2", "AUTH", "default", "p"), true},
		{cmd("HELLO", "x"), false},
		{cmd("HELLO", "4"), false},
		{cmd("HELLO", "2", "FOO"), false},
		{cmd("PING"), false},
		{cmd("ping", "hi"), false},
		{cmd("PING", "a", "b"), false},
		{"PING\r\n", false}, // inline
		{cmd("ECHO", "hi"), false},
		{cmd("ECHO"), false},
		{cmd("SELECT", "0"), false},
		{cmd("SELECT", "1"), false},
		{cmd("SELECT", "x"), false},
		{cmd("NOSUCH", "x", "y"), false},
		{"NOSUCH\r\n", false},
		{cmd("RESET"), false},
		{cmd("CLIENT", "GETNAME"), false},
		{cmd("QUIT"), false},
	}
	for _, step := range script {
		want, got := node.do(step.send), sen.do(step.send)
		if step.hello {
			if !bytes.Contains(want, []byte(modeNode)) {
				t.Fatalf("%q: the node's HELLO reply has no standalone mode:\n%q", step.send, want)
			}
			want = bytes.Replace(want, []byte(modeNode), []byte(modeSentinel), 1)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q:\nsentinel %q\nnode     %q", step.send, got, want)
		}
	}
	if !node.closed() || !sen.closed() {
		t.Error("QUIT left a connection open")
	}

	// HELLO 3: the node switches to RESP3; the Sentinel endpoint, which
	// declares RESP2 only, refuses it exactly as the node refuses HELLO 4.
	n3 := dialWire(t, nodeAddr).do(cmd("HELLO", "3"))
	if !bytes.HasPrefix(n3, []byte("%7\r\n")) {
		t.Errorf("node HELLO 3: %q, want a RESP3 map", n3)
	}
	noProto := dialWire(t, nodeAddr).do(cmd("HELLO", "4"))
	s3 := dialWire(t, sent.addr)
	if got := s3.do(cmd("HELLO", "3")); !bytes.Equal(got, noProto) {
		t.Errorf("sentinel HELLO 3: %q, want the node's HELLO 4 reply %q", got, noProto)
	}
	if got := s3.do(cmd("CLIENT", "GETNAME")); string(got) != "$-1\r\n" {
		t.Errorf("sentinel after a refused HELLO 3: %q, want RESP2's null", got)
	}

	// Framing violations: the same protocol error, then the connection
	// closes. The bulk header is over both endpoints' limits.
	for _, bad := range []string{
		"*2\r\n$4\r\nPING\r\n$1000000000\r\n",
		"*x\r\n",
		"*1\r\n$-5\r\n",
	} {
		nw, sw := dialWire(t, nodeAddr), dialWire(t, sent.addr)
		want, got := nw.do(bad), sw.do(bad)
		if !bytes.HasPrefix(want, []byte("-ERR Protocol error: ")) || !bytes.Equal(got, want) {
			t.Errorf("%q:\nsentinel %q\nnode     %q", bad, got, want)
		}
		if !nw.closed() || !sw.closed() {
			t.Errorf("%q left a connection open", bad)
		}
	}
}
