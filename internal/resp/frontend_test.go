package resp

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// toyFrontEnd is a third front end such as the proxy will be: it supplies
// only its own commands and gets the connection layer for free.
type toyFrontEnd struct {
	resets  int
	started int // commands Start took
	flushes int
	owed    []string      // started commands' replies, in order
	blocked chan error    // what ended a BLOCK: its context's error
	began   chan struct{} // a BLOCK began
}

func (f *toyFrontEnd) frontEnd() FrontEnd {
	t := Commands{
		"get": {Arity: 2, Run: func(c redcon.Conn, _ *Session, args [][]byte) {
			c.WriteBulkString("v:" + string(args[1]))
		}},
		// W is also served one at a time, when it is not in a pipeline.
		"w": {Arity: 2, Run: func(c redcon.Conn, _ *Session, args [][]byte) {
			c.WriteString("w:" + string(args[1]))
		}},
		"block": {Arity: 1, Run: func(c redcon.Conn, sess *Session, _ [][]byte) {
			ctx := sess.Enter()
			f.began <- struct{}{}
			<-ctx.Done()
			sess.Leave()
			f.blocked <- ctx.Err()
			c.WriteString("OK")
		}},
	}
	t.Check()
	return FrontEnd{
		Mode:  "toy",
		Role:  func() string { return "replica" },
		Serve: t.Serve,
		Reset: func(*Session) { f.resets++ },
		Start: func(_ *Session, args [][]byte) bool {
			if !eqFold(args[0], "w") || len(args) != 2 {
				return false
			}
			f.started++
			f.owed = append(f.owed, "+w:"+string(args[1]))
			return true
		},
		Flush: func(c redcon.Conn, _ *Session) {
			f.flushes++
			for _, r := range f.owed {
				c.WriteRaw([]byte(r + "\r\n"))
			}
			f.owed = f.owed[:0]
		},
	}
}

func startEndpoint(t *testing.T, cfg Config, fe FrontEnd) (*Server, string) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := NewEndpoint(cfg, fe)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// TestEndpointFrontEnd: a front end that supplies only its commands gets
// the connection commands, HELLO with its declared mode and role, arity
// and unknown-command errors, and its Reset hook on RESET.
func TestEndpointFrontEnd(t *testing.T) {
	f := &toyFrontEnd{}
	_, addr := startEndpoint(t, Config{}, f.frontEnd())
	c := rawConn(t, addr)
	c.send(t, "GET", "k")
	c.expect(t, "$3", "v:k")
	c.send(t, "get")
	c.expect(t, "-ERR wrong number of arguments for 'get' command")
	c.send(t, "NOSUCH", "a")
	c.expect(t, "-ERR unknown command 'NOSUCH', with args beginning with: 'a' ")
	c.send(t, "ECHO", "x")
	c.expect(t, "$1", "x")
	c.send(t, "HELLO", "3")
	c.expect(t, "%7", "$6", "server", "$5", "redis", "$7", "version", "$5", "7.0.0", "$5", "proto", ":3",
		"$2", "id", ":1", "$4", "mode", "$3", "toy", "$4", "role", "$7", "replica", "$7", "modules", "*0")
	c.send(t, "CLIENT", "GETNAME")
	c.expect(t, "_") // RESP3 now
	c.send(t, "RESET")
	c.expect(t, "+RESET")
	c.send(t, "CLIENT", "GETNAME")
	c.expect(t, "$-1") // RESET went back to RESP2
	if f.resets != 1 {
		t.Errorf("Reset hook ran %d times, want 1", f.resets)
	}

	defer func() {
		if recover() == nil {
			t.Error("a front-end table naming PING did not panic")
		}
	}()
	Commands{"ping": {Arity: 1}}.Check()
}

// TestEndpointPipelineOrder: commands a front end starts ahead owe their
// replies until the layer serves something else (a connection command,
// a command Start does not take), which first has the owed replies
// flushed: replies keep the order the commands were sent in. The client
// is a net.Pipe, so the pipeline reaches the server in one read.
func TestEndpointPipelineOrder(t *testing.T) {
	f := &toyFrontEnd{}
	s := NewEndpoint(Config{Logger: slog.New(slog.DiscardHandler)}, f.frontEnd())
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Serve(&pipeListener{conn: server, closed: make(chan struct{})}) }()
	defer func() {
		client.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c := &rawClient{Conn: client, r: bufio.NewReader(client)}
	go c.Write([]byte(string(encode("W", "a")) + string(encode("W", "b")) + "PING\r\n" + string(encode("GET", "k")) + string(encode("W", "c"))))
	c.expect(t, "+w:a", "+w:b", "+PONG", "$3", "v:k", "+w:c")
	if f.started != 3 || f.flushes != 3 {
		t.Errorf("Start took %d commands and Flush ran %d times, want 3 and 3 (before PING, before GET, at the end)", f.started, f.flushes)
	}
}

// pipeListener accepts conn once, then blocks until Close.
type pipeListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *pipeListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestEndpointContextEndsWhenClientLeaves: a front end's blocking call
// made with Session.Enter's context ends when the client disconnects, as
// the node's Backend calls do.
func TestEndpointContextEndsWhenClientLeaves(t *testing.T) {
	f := &toyFrontEnd{blocked: make(chan error, 1), began: make(chan struct{}, 1)}
	_, addr := startEndpoint(t, Config{}, f.frontEnd())
	c := rawConn(t, addr)
	c.send(t, "BLOCK")
	select {
	case <-f.began:
	case <-time.After(5 * time.Second):
		t.Fatal("BLOCK never started")
	}
	c.Close()
	select {
	case err := <-f.blocked:
		if err != context.Canceled {
			t.Errorf("BLOCK ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("BLOCK still running 5 s after its client left")
	}
}

// TestConnectionCommandsNotInCommandsTable: the layer answers connection
// commands before the node looks at its commands table, so a data command
// of the same name would silently never run.
func TestConnectionCommandsNotInCommandsTable(t *testing.T) {
	for name := range connCmds {
		if _, ok := commands.Lookup([]byte(name)); ok {
			t.Errorf("%s is both a connection command and in the commands table", name)
		}
	}
}
