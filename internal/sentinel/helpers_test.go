package sentinel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ioTimeout bounds every read and write a test makes.
const ioTimeout = 5 * time.Second

// fixture is a Server on a loopback port answering from a State the test
// sets.
type fixture struct {
	srv  *Server
	addr string
	st   atomic.Pointer[State]
}

func (f *fixture) set(st State) { f.st.Store(&st) }

// change sets the state and tells the server, as the orchestrator does.
func (f *fixture) change(st State) {
	old := *f.st.Load()
	f.set(st)
	f.srv.Changed(old, st)
}

func start(t *testing.T, st State, cfg Config) *fixture {
	t.Helper()
	f := &fixture{}
	f.set(st)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.srv = New(cfg, func() State { return *f.st.Load() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(l) }()
	t.Cleanup(func() {
		if err := f.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, ErrClosed) { // ErrClosed: closed before Serve began
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Errorf("Serve did not return after Close")
		}
	})
	return f
}

// rawConn speaks RESP to the server byte for byte, so that tests see the
// replies' exact shape and not a client library's reading of them.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, rd: bufio.NewReader(c)}
}

// do sends one command and returns its rendered reply.
func (r *rawConn) do(args ...string) string {
	r.t.Helper()
	r.send(args...)
	return r.read()
}

func (r *rawConn) send(args ...string) {
	r.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(r.c, b.String()); err != nil {
		r.t.Fatalf("send %q: %v", args, err)
	}
}

// read reads one reply and renders it: +simple, -error, :int, "bulk",
// (nil) for a null bulk, (nil array) for a null array, [a b] for arrays.
func (r *rawConn) read() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := readReply(r.rd)
	if err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	return s
}

func readReply(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(line, "\r\n") || len(line) < 3 {
		return "", fmt.Errorf("bad line %q", line)
	}
	line = line[:len(line)-2]
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return strconv.Quote(string(buf[:n])), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "(nil array)", nil
		}
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = readReply(rd); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(parts, " ") + "]", nil
	}
	return "", errors.New("unknown reply type " + line)
}

// bulks renders bulk strings as read renders an array of them.
func bulks(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return arr(q...)
}

// arr renders an array of rendered replies.
func arr(rendered ...string) string { return "[" + strings.Join(rendered, " ") + "]" }
