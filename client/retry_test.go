package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyErr is an error reply as go-redis hands it over.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Retry
	}{
		{"nil", nil, NoRetry},
		{"nil reply", redis.Nil, NoRetry},
		{"READONLY", replyErr("READONLY You can't write against a read only replica."), RetryAny},
		{"READONLY between roles", replyErr("READONLY You can't write against a read only replica. (tandem: this node is not the leader)"), RetryAny},
		{"MASTERDOWN", replyErr("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (tandem: this node is fenced: lease lost)"), RetryAny},
		{"TRYAGAIN", replyErr("TRYAGAIN tandem: too many writes waiting for commit; retry"), RetryAny},
		{"LOADING", replyErr("LOADING Redis is loading the dataset in memory"), RetryAny},
		{"refused dial", &DialError{Addr: "127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, RetryAny},
		{"no leader", &DialError{Err: ErrNoLeader}, RetryAny},
		{"bare dial error", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, RetryAny},
		{"pool timeout", redis.ErrPoolTimeout, RetryAny},
		{"stale connection", &notSentError{errStale}, RetryAny},
		{"write sent nothing", &notSentError{&net.OpError{Op: "write", Err: syscall.EPIPE}}, RetryAny},
		{"wrapped not sent", fmt.Errorf("redis: %w", &notSentError{errStale}), RetryAny},
		{"UNCERTAIN", replyErr("UNCERTAIN tandem: the leader stopped before this write committed; it may or may not take effect"), RetryIdempotent},
		{"NOREPLICAS", replyErr("NOREPLICAS Not enough good replicas to write."), RetryIdempotent},
		{"shutting down", replyErr("ERR internal error: server shutting down"), RetryIdempotent},
		{"EOF", io.EOF, RetryIdempotent},
		{"unexpected EOF", io.ErrUnexpectedEOF, RetryIdempotent},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, RetryIdempotent},
		{"broken pipe", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, RetryIdempotent},
		{"closed", net.ErrClosed, RetryIdempotent},
		{"read timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, RetryIdempotent},
		{"canceled", context.Canceled, NoRetry},
		{"deadline", context.DeadlineExceeded, NoRetry},
		{"client closed", redis.ErrClosed, NoRetry},
		{"ERR", replyErr("ERR value is not an integer or out of range"), NoRetry},
		{"internal", replyErr("ERR internal error; see the server log, incident 0badf00d"), NoRetry},
		{"WRONGTYPE", replyErr("WRONGTYPE Operation against a key holding the wrong kind of value"), NoRetry},
		{"unknown", errors.New("something else"), NoRetry},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestIsIdempotent(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  redis.Cmder
		want bool
	}{
		{redis.NewStringCmd(ctx, "get", "k"), true},
		{redis.NewSliceCmd(ctx, "MGET", "a", "b"), true},
		{redis.NewIntCmd(ctx, "ttl", "k"), true},
		{redis.NewScanCmd(ctx, nil, "scan", 0), true},
		{redis.NewStatusCmd(ctx, "ping"), true},
		{redis.NewStatusCmd(ctx, "set", "k", "v"), true},
		{redis.NewStatusCmd(ctx, "set", "k", "nx"), true}, // the value is "nx"
		{redis.NewStatusCmd(ctx, "set", "k", "v", "ex", 10), true},
		{redis.NewStatusCmd(ctx, "SET", "k", "v", "PXAT", 1e12), true},
		{redis.NewStatusCmd(ctx, "set", "k", "v", "nx"), false},
		{redis.NewStatusCmd(ctx, "set", "k", "v", "xx"), false},
		{redis.NewStatusCmd(ctx, "set", "k", "v", "get"), false},
		{redis.NewStatusCmd(ctx, "set", "k", "v", "keepttl"), false},
		{redis.NewStatusCmd(ctx, "set", "k", "v", "ex", 10, "nx"), false},
		{redis.NewStatusCmd(ctx, "set", "k"), false},
		{redis.NewStatusCmd(ctx, "setex", "k", 10, "v"), true},
		{redis.NewStatusCmd(ctx, "mset", "a", 1, "b", 2), true},
		{redis.NewBoolCmd(ctx, "msetnx", "a", 1), false},
		{redis.NewStringCmd(ctx, "getex", "k"), true},
		{redis.NewStringCmd(ctx, "getex", "k", "persist"), true},
		{redis.NewStringCmd(ctx, "getex", "k", "ex", 10), false},
		{redis.NewIntCmd(ctx, "incr", "k"), false},
		{redis.NewIntCmd(ctx, "incrby", "k", 2), false},
		{redis.NewIntCmd(ctx, "append", "k", "x"), false},
		{redis.NewIntCmd(ctx, "setrange", "k", 0, "x"), false},
		{redis.NewIntCmd(ctx, "del", "k"), false},
		{redis.NewBoolCmd(ctx, "expire", "k", 10), false},
		{redis.NewBoolCmd(ctx, "persist", "k"), false},
		{redis.NewStringCmd(ctx, "getset", "k", "v"), false},
		{redis.NewStringCmd(ctx, "getdel", "k"), false},
		{redis.NewStatusCmd(ctx, "rename", "a", "b"), false},
		{redis.NewIntCmd(ctx, "wait", 1, 0), false},
		{redis.NewCmd(ctx, "eval", "return 1", 0), false},
		{redis.NewCmd(ctx), false},
	} {
		if got := IsIdempotent(tc.cmd.Args()); got != tc.want {
			t.Errorf("IsIdempotent(%v) = %v, want %v", tc.cmd.Args(), got, tc.want)
		}
	}
}

func TestPipelineRetrySuffix(t *testing.T) {
	ctx := context.Background()
	c := &Client{}
	readonly := replyErr("READONLY You can't write against a read only replica.")
	uncertain := replyErr("UNCERTAIN tandem: the leader stopped before this write committed; it may or may not take effect")
	mk := func(name string, err error) redis.Cmder {
		cmd := redis.NewCmd(ctx, name, "k")
		cmd.SetErr(err)
		return cmd
	}
	for _, tc := range []struct {
		name string
		cmds []redis.Cmder
		want int // commands retried: the last want
	}{
		{"all fine", []redis.Cmder{mk("incr", nil), mk("get", nil)}, 0},
		{"an answer", []redis.Cmder{mk("incr", replyErr("ERR value is not an integer or out of range"))}, 0},
		{"refused write, then a read", []redis.Cmder{mk("get", nil), mk("incr", readonly), mk("get", nil)}, 2},
		{"uncertain counter", []redis.Cmder{mk("incr", uncertain), mk("get", uncertain)}, 0},
		{"uncertain reads", []redis.Cmder{mk("incr", nil), mk("get", uncertain), mk("get", uncertain)}, 2},
		{"counter after a refusal, answered", []redis.Cmder{mk("get", readonly), mk("incr", nil)}, 0},
		{"EOF on all", []redis.Cmder{mk("get", io.EOF), mk("exists", io.EOF)}, 2},
		{"EOF on a counter", []redis.Cmder{mk("get", io.EOF), mk("incr", io.EOF)}, 0},
	} {
		got := c.retrySuffix(tc.cmds)
		if len(got) != tc.want || (tc.want > 0 && got[0] != tc.cmds[len(tc.cmds)-tc.want]) {
			t.Errorf("%s: retried %d commands, want the last %d", tc.name, len(got), tc.want)
		}
	}
}

// TestStaleConnRefusesToSend checks that a connection to a former leader
// sends nothing, and says so, and fails the pool's health check.
func TestStaleConnRefusesToSend(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		b, _ := io.ReadAll(s)
		got <- b
	}()
	c := &Client{log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	c.view.init()
	addr := l.Addr().String()
	c.setLeader(leader{id: "n1", addr: addr, epoch: 1})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := c.conns.wrap(c, nc, addr)
	sc, ok := cn.(syscall.Conn)
	if !ok {
		t.Fatal("a wrapped TCP connection is not a syscall.Conn")
	}
	if _, err := sc.SyscallConn(); err != nil {
		t.Fatalf("health check on the leader's connection: %v", err)
	}
	if _, err := cn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	c.view.set(leader{id: "n2", addr: "127.0.0.1:1", epoch: 2})
	// A request already being written goes on...
	if _, err := cn.Write([]byte("x")); err != nil {
		t.Fatalf("rest of a request: %v", err)
	}
	// ...but after a read the next one is refused.
	cn.(*sysConn).sending = false
	if _, err := cn.Write([]byte("SET k v\r\n")); Classify(err) != RetryAny {
		t.Fatalf("write on a stale connection: %v (%v), want a RetryAny error", err, Classify(err))
	}
	if _, err := sc.SyscallConn(); err == nil {
		t.Fatal("a stale connection passes the health check")
	}
	c.conns.closeStale(&c.view)
	if b := <-got; string(b) != "PING\r\nx" {
		t.Fatalf("server got %q", b)
	}
}
