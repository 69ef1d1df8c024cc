package resp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
)

func newClient(t *testing.T, addr string, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, MaxRetries: -1, DialTimeout: 2 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGoRedis drives the data and server commands through go-redis with
// both protocols; go-redis sends HELLO 3 itself for Protocol 3.
func TestGoRedis(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			ctx := context.Background()
			b := newFake()
			_, addr := startServer(t, b, Config{})
			c := newClient(t, addr, proto)

			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			eq := func(got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
			eq(c.Ping(ctx).Val(), "PONG")
			eq(c.Echo(ctx, "hi").Val(), "hi")
			must(c.Set(ctx, "a", "1", 0).Err())
			eq(c.Get(ctx, "a").Val(), "1")
			if err := c.Get(ctx, "missing").Err(); err != redis.Nil {
				t.Fatalf("GET missing: %v, want redis.Nil", err)
			}
			eq(c.Incr(ctx, "a").Val(), 2)
			eq(c.IncrBy(ctx, "a", 10).Val(), 12)
			eq(c.Decr(ctx, "a").Val(), 11)
			eq(c.IncrByFloat(ctx, "f", 1.5).Val(), 1.5)
			must(c.MSet(ctx, "b", "2", "c", "3").Err())
			eq(c.MGet(ctx, "a", "b", "nope").Val(), []any{"11", "2", nil})
			eq(c.Append(ctx, "b", "xy").Val(), 3)
			eq(c.StrLen(ctx, "b").Val(), 3)
			eq(c.Exists(ctx, "a", "b", "nope").Val(), 2)
			eq(c.SetNX(ctx, "a", "x", 0).Val(), false)
			eq(c.SetNX(ctx, "n", "x", 0).Val(), true)
			eq(c.Expire(ctx, "a", time.Minute).Val(), true)
			eq(c.TTL(ctx, "a").Val(), time.Minute)
			eq(c.Persist(ctx, "a").Val(), true)
			eq(c.TTL(ctx, "a").Val(), time.Duration(-1))
			eq(c.TTL(ctx, "nope").Val(), time.Duration(-2))
			must(c.Set(ctx, "e", "v", 10*time.Second).Err())
			if d := c.PTTL(ctx, "e").Val(); d <= 9*time.Second || d > 10*time.Second {
				t.Fatalf("PTTL = %v", d)
			}
			//lint:ignore SA1019 GETSET is deprecated in Redis but clients still send it
			eq(c.GetSet(ctx, "e", "w").Val(), "v")
			eq(c.GetDel(ctx, "e").Val(), "w")
			eq(c.Del(ctx, "n", "n", "nope").Val(), 1)
			eq(c.DBSize(ctx).Val(), 4)
			eq(c.Keys(ctx, "[ab]").Val(), []string{"a", "b"})
			eq(c.Type(ctx, "a").Val(), "string")
			for i := range 100 {
				must(c.Set(ctx, fmt.Sprintf("k%03d", i), i, 0).Err())
			}
			seen := map[string]bool{}
			it := c.Scan(ctx, 0, "k*", 7).Iterator()
			for it.Next(ctx) {
				if seen[it.Val()] {
					t.Fatalf("SCAN returned %s twice", it.Val())
				}
				seen[it.Val()] = true
			}
			must(it.Err())
			eq(len(seen), 100)

			// Errors keep Redis's texts.
			errIs := func(err error, want string) {
				t.Helper()
				if err == nil || err.Error() != want {
					t.Fatalf("error %v, want %q", err, want)
				}
			}
			errIs(c.Incr(ctx, "b").Err(), "ERR value is not an integer or out of range")
			errIs(c.Do(ctx, "SET", "k", "v", "NX", "XX").Err(), "ERR syntax error")
			errIs(c.Do(ctx, "SET", "k", "v", "EX", "0").Err(), "ERR invalid expire time in 'set' command")
			errIs(c.Do(ctx, "GET").Err(), "ERR wrong number of arguments for 'get' command")
			errIs(c.Do(ctx, "NOSUCH", "x", "y").Err(), "ERR unknown command 'NOSUCH', with args beginning with: 'x' 'y' ")
			errIs(c.Do(ctx, "SELECT", "1").Err(), "ERR DB index is out of range")
			must(c.Do(ctx, "SELECT", "0").Err())

			// Server commands.
			hello, err := c.Do(ctx, "HELLO").Result()
			must(err)
			var m map[any]any
			if proto == 3 {
				m = hello.(map[any]any)
			} else {
				arr := hello.([]any)
				m = map[any]any{}
				for i := 0; i+1 < len(arr); i += 2 {
					m[arr[i]] = arr[i+1]
				}
			}
			eq(m["server"], "redis")
			eq(m["proto"], proto)
			eq(m["role"], "master")
			eq(m["mode"], "standalone")
			id := c.ClientID(ctx).Val()
			eq(m["id"], id)
			must(c.Do(ctx, "CLIENT", "SETNAME", "me").Err())
			eq(c.ClientGetName(ctx).Val(), "me")
			if !strings.Contains(c.ClientList(ctx).Val(), "name=me") {
				t.Fatalf("CLIENT LIST lacks name=me: %q", c.ClientList(ctx).Val())
			}
			eq(c.Do(ctx, "TANDEM.LSN").Val(), b.lsn)
			info := c.Info(ctx, "Server").Val()
			if !strings.Contains(info, "sections:server") {
				t.Fatalf("INFO = %q", info)
			}
			cfg := c.ConfigGet(ctx, "save").Val()
			eq(cfg, map[string]string{"save": ""})
			cmds, err := c.Command(ctx).Result()
			must(err)
			if cmds["get"] == nil || !cmds["get"].ReadOnly || cmds["set"] == nil || cmds["set"].ReadOnly {
				t.Fatalf("COMMAND: get %+v, set %+v", cmds["get"], cmds["set"])
			}
			must(c.Do(ctx, "COMMAND", "DOCS").Err())
			eq(c.Do(ctx, "ROLE").Val(), []any{"master", 0, []any{}})
			must(c.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
			must(c.Do(ctx, "REPLICAOF", "localhost", "6390").Err())
			errIs(c.Do(ctx, "REPLICAOF", "localhost", "x").Err(), "ERR Invalid master port")
			errIs(c.Do(ctx, "REPLICAOF", "unreachable", "1").Err(), "ERR node: cannot reach unreachable:1")
		})
	}
}

// TestWaitUsesSessionLSN checks that WAIT waits for the connection's own
// last write, and for LSN 0 on a connection that never wrote.
func TestWaitUsesSessionLSN(t *testing.T) {
	ctx := context.Background()
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c1, c2 := rawConn(t, addr), rawConn(t, addr)
	c1.send(t, "SET", "a", "1")
	c1.expect(t, "+OK")
	c1.send(t, "SET", "a", "2")
	c1.expect(t, "+OK")
	c2.send(t, "SET", "b", "1")
	c2.expect(t, "+OK")
	c1.send(t, "WAIT", "1", "100")
	c1.expect(t, ":2")
	c3 := rawConn(t, addr)
	c3.send(t, "WAIT", "1", "0")
	c3.expect(t, ":2")
	c3.send(t, "WAIT", "1", "-1")
	c3.expect(t, "-ERR timeout is negative")
	c3.send(t, "WAIT", "x", "1")
	c3.expect(t, "-ERR value is not an integer or out of range")
	b.mu.Lock()
	got := fmt.Sprint(b.waitLSNs)
	b.mu.Unlock()
	if got != "[2 0]" {
		t.Fatalf("Wait LSNs %s, want [2 0]", got)
	}
	_ = ctx
}

func TestErrorMapping(t *testing.T) {
	ctx := context.Background()
	b := newFake()
	var logged syncBuffer
	_, addr := startServer(t, b, Config{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	c := newClient(t, addr, 3)
	const fenced = "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (tandem: this node is fenced"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ErrReadOnly, "READONLY You can't write against a read only replica."},
		{fmt.Errorf("wrapped: %w", ErrReadOnly), "READONLY You can't write against a read only replica."},
		{ErrLoading, "LOADING Redis is loading the dataset in memory"},
		{ErrNotLeader, "READONLY You can't write against a read only replica. (tandem: this node is not the leader)"},
		{ErrFenced, fenced + ")"},
		{fmt.Errorf("lease lost: %w", ErrFenced), fenced + ": lease lost)"},
		{fmt.Errorf("lease\r\nlost: %w", ErrFenced), fenced + ": lease lost)"},
		{fmt.Errorf("%w (since 3s)", ErrFenced), fenced + ")"},
		{ErrNoReplicas, "NOREPLICAS Not enough good replicas to write."},
		{fmt.Errorf("replication: write timeout: %w", ErrNoReplicas), "NOREPLICAS Not enough good replicas to write."},
		{ErrOverloaded, "TRYAGAIN tandem: too many writes waiting for commit; retry"},
		{ErrBusy, "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."},
		{ErrBusyFunction, "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."},
		{&commands.ArityError{Name: "get"}, "ERR wrong number of arguments for 'get' command"},
		{commands.ErrSyntax, "ERR syntax error"},
	} {
		b.set(func(b *fakeBackend) { b.failWith = tc.err })
		if err := c.Set(ctx, "k", "v", 0).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("SET with %v: %v, want %q", tc.err, err, tc.want)
		}
		if err := c.Get(ctx, "k").Err(); err == nil || err.Error() != tc.want {
			t.Errorf("GET with %v: %v, want %q", tc.err, err, tc.want)
		}
	}

	// An internal error keeps its text in the log: the client gets a
	// fixed text and the incident id that finds the log line.
	b.set(func(b *fakeBackend) { b.failWith = errors.New("storage: get: disk on fire") })
	err := c.Get(ctx, "k").Err()
	const prefix = "ERR internal error; see the server log, incident "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "disk") {
		t.Fatalf("GET with a storage error: %v, want %q and an id", err, prefix)
	}
	incident := strings.TrimPrefix(err.Error(), prefix)
	log := logged.String()
	if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "incident="+incident) ||
		!strings.Contains(log, "cmd=get") || !strings.Contains(log, `err="storage: get: disk on fire"`) {
		t.Fatalf("log lacks the failure with incident %s, cmd and err:\n%s", incident, log)
	}
}

// A custom command's failure is worded by the error table too: a
// sentinel gets its reply, an internal error's text stays in the log.
func TestCustomErrorsFromTable(t *testing.T) {
	ctx := context.Background()
	var logged syncBuffer
	_, addr := startServer(t, newFake(), Config{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	c := newClient(t, addr, 2)
	for cmd, want := range map[string]string{
		"TANDEM.NOTLEADER": replyNotLeader,
		"TANDEM.ARITY":     "ERR wrong number of arguments for 'tandem.arity' command",
	} {
		if err := c.Do(ctx, cmd).Err(); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", cmd, err, want)
		}
	}
	err := c.Do(ctx, "TANDEM.FAIL").Err()
	const prefix = "ERR internal error; see the server log, incident "
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("TANDEM.FAIL: %v, want %q and an id, not the error's text", err, prefix)
	}
	if log := logged.String(); !strings.Contains(log, "cmd=tandem.fail") || !strings.Contains(log, "secret path") {
		t.Fatalf("log lacks the custom command's failure:\n%s", log)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawClient speaks RESP by hand, for what a library would not send.
type rawClient struct {
	net.Conn
	r *bufio.Reader
}

func rawConn(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{Conn: c, r: bufio.NewReader(c)}
}

func encode(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

func (c *rawClient) send(t *testing.T, args ...string) {
	t.Helper()
	c.write(t, string(encode(args...)))
}

func (c *rawClient) write(t *testing.T, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// line reads one reply line (without CRLF).
func (c *rawClient) line(t *testing.T) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

func (c *rawClient) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := c.line(t); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

// expectClosed checks the server closed the connection.
func (c *rawClient) expectClosed(t *testing.T) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) != 0 {
		t.Fatalf("connection not closed cleanly: %q, %v", rest, err)
	}
}

func TestRawProtocol(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Config{})
	tests := []struct {
		name   string
		send   string
		want   []string
		closed bool
	}{
		{"inline", "SET a b\r\nGET a\r\n", []string{"+OK", "$1", "b"}, false},
		{"blank lines", "\r\n\r\n  \r\nPING\r\n", []string{"+PONG"}, false},
		{"ping arity", "PING a b\r\n", []string{"-ERR wrong number of arguments for 'ping' command"}, false},
		{"unknown no args", "FOO\r\n", []string{"-ERR unknown command 'FOO', with args beginning with: "}, false},
		{"hello 4", "HELLO 4\r\n", []string{"-NOPROTO unsupported protocol version"}, false},
		{"hello bad", "HELLO x\r\n", []string{"-ERR Protocol version is not an integer or out of range"}, false},
		{"hello option", "HELLO 3 FOO\r\n", []string{"-ERR Syntax error in HELLO option 'FOO'"}, false},
		{"hello wrong user", "HELLO 3 AUTH bob pw\r\n", []string{"-WRONGPASS invalid username-password pair or user is disabled."}, false},
		{"client arity", "CLIENT SETNAME\r\n", []string{"-ERR wrong number of arguments for 'client|setname' command"}, false},
		{"client bad name", "CLIENT SETNAME \"a b\"\r\n", []string{"-ERR Client names cannot contain spaces, newlines or special characters."}, false},
		{"client unknown", "CLIENT FOO\r\n", []string{"-ERR unknown subcommand 'FOO'. Try CLIENT HELP."}, false},
		{"client setinfo", "CLIENT SETINFO LIB-NAME x\r\n", []string{"+OK"}, false},
		{"config get", "CONFIG GET appendonly\r\n", []string{"*2", "$10", "appendonly", "$2", "no"}, false},
		{"command docs", "COMMAND DOCS\r\n", []string{"*0"}, false},
		{"select", "SELECT x\r\n", []string{"-ERR value is not an integer or out of range"}, false},
		{"null bulk resp2", "GET nope\r\n", []string{"$-1"}, false},
		{"quit", "QUIT\r\nPING\r\n", []string{"+OK"}, true},
		{"bad multibulk", "*x\r\n", []string{"-ERR Protocol error: invalid multibulk length"}, true},
		{"zero multibulk", "*0\r\n", []string{"-ERR Protocol error: invalid multibulk length"}, true},
		{"bad bulk", "*1\r\n$x\r\n", []string{"-ERR Protocol error: invalid bulk length"}, true},
		{"negative bulk", "*1\r\n$-1\r\n", []string{"-ERR Protocol error: invalid bulk length"}, true},
		{"missing dollar", "*1\r\n+PING\r\n", []string{"-ERR Protocol error: expected '$', got '+'"}, true},
		{"bad terminator", "*1\r\n$4\r\nPINGxx", []string{"-ERR Protocol error: invalid bulk length"}, true},
		{"good then bad", "PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$-5\r\n", []string{"+PONG", "+PONG", "-ERR Protocol error: invalid bulk length"}, true},
		{"unbalanced quotes", "SET \"a b\r\n", []string{"-ERR Protocol error: unbalanced quotes in request"}, true},
		{"too many args", "*2000000\r\n", []string{"-ERR Protocol error: invalid multibulk length"}, true},
		{"inline too big", strings.Repeat("a", 70<<10), []string{"-ERR Protocol error: too big inline request"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, addr)
			c.write(t, tc.send)
			c.expect(t, tc.want...)
			if tc.closed {
				c.expectClosed(t)
			}
		})
	}
	// None of that disturbed the server.
	c := rawConn(t, addr)
	c.send(t, "PING")
	c.expect(t, "+PONG")
}

func TestRESP3Nulls(t *testing.T) {
	_, addr := startServer(t, newFake(), Config{})
	c := rawConn(t, addr)
	c.write(t, "HELLO 3\r\n")
	if got := c.line(t); got != "%7" {
		t.Fatalf("HELLO 3 reply starts %q, want a 7-entry map", got)
	}
	for range 14 * 2 { // seven keys and values, each a header and data line, except ints
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.r.ReadString('\n'); err != nil {
			break
		}
	}
	c.send(t, "GET", "nope")
	c.expect(t, "_")
	c.send(t, "MGET", "nope")
	c.expect(t, "*1", "_")
	c.send(t, "CONFIG", "GET", "save")
	c.expect(t, "%1", "$4", "save", "$0", "")
}

// TestOversizeBulkRefusedEarly sends a header announcing 600 MB and checks
// the refusal comes at once and nothing near that size was allocated.
func TestOversizeBulkRefusedEarly(t *testing.T) {
	_, addr := startServer(t, newFake(), Config{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := rawConn(t, addr)
	start := time.Now()
	c.write(t, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n")
	c.expect(t, "-ERR Protocol error: invalid bulk length")
	c.expectClosed(t)
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v", d)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("allocated %d bytes while refusing", grew)
	}
	// A configured limit applies the same way.
	_, addr2 := startServer(t, newFake(), Config{MaxBulkLen: 10, MaxArgs: 3})
	c2 := rawConn(t, addr2)
	c2.send(t, "SET", "k", "0123456789")
	c2.expect(t, "+OK")
	c2.send(t, "SET", "k", "01234567890")
	c2.expect(t, "-ERR Protocol error: invalid bulk length")
	c3 := rawConn(t, addr2)
	c3.send(t, "MGET", "a", "b", "c")
	c3.expect(t, "-ERR Protocol error: invalid multibulk length")
	// A command over MaxCommandLen is refused from the header that crosses it.
	_, addr3 := startServer(t, newFake(), Config{MaxCommandLen: 64})
	c4 := rawConn(t, addr3)
	c4.send(t, "SET", "k", strings.Repeat("x", 30))
	c4.expect(t, "+OK")
	c4.send(t, "SET", "k", strings.Repeat("x", 60))
	c4.expect(t, "-ERR Protocol error: command exceeds the query buffer limit")
}

func TestPipeline(t *testing.T) {
	ctx := context.Background()
	_, addr := startServer(t, newFake(), Config{})
	c := rawConn(t, addr)
	var buf []byte
	for i := range 1000 {
		buf = append(buf, encode("INCR", "n")...)
		if i%100 == 0 {
			buf = append(buf, "PING\r\n"...)
		}
	}
	c.write(t, string(buf))
	for i := range 1000 {
		c.expect(t, ":"+strconv.Itoa(i+1))
		if i%100 == 0 {
			c.expect(t, "+PONG")
		}
	}
	gc := newClient(t, addr, 3)
	pipe := gc.Pipeline()
	for range 1000 {
		pipe.Incr(ctx, "m")
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := cmds[999].(*redis.IntCmd).Val(); got != 1000 {
		t.Fatalf("last INCR = %d", got)
	}
}

// TestConnectionKilledMidCommand closes connections halfway through a
// command and while a write is blocked; the server keeps serving others and
// the half-sent command never runs.
func TestConnectionKilledMidCommand(t *testing.T) {
	ctx := context.Background()
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc")
	c.Close()

	block := make(chan struct{})
	b.set(func(b *fakeBackend) { b.block, b.blocked = block, make(chan string, 1) })
	blocked := rawConn(t, addr)
	blocked.send(t, "SET", "blocked", "1")
	blockedIn(t, b, "write")
	blocked.Close()

	reader := newClient(t, addr, 2)
	if err := reader.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET k: %v, want redis.Nil", err)
	}
	close(block)
	b.set(func(b *fakeBackend) { b.block = nil })
	if err := reader.Set(ctx, "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseUnblocksWrites checks Close ends a write stuck waiting for
// commit and returns only when no command runs any more.
func TestCloseUnblocksWrites(t *testing.T) {
	b := newFake()
	b.block, b.blocked = make(chan struct{}), make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{}, b)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c := rawConn(t, ln.Addr().String())
	c.send(t, "SET", "k", "v")
	blockedIn(t, b, "write")
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if s.Addr() == nil {
		t.Fatal("Addr is nil after Serve")
	}
	// Close before Serve: Serve refuses.
	s2 := NewServer(Config{}, b)
	s2.Close()
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s2.Serve(ln2); err != net.ErrClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestManyClients(t *testing.T) {
	ctx := context.Background()
	_, addr := startServer(t, newFake(), Config{})
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 50})
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := c.Set(ctx, fmt.Sprintf("w%d:%d", w, i), i, 0).Err(); err != nil {
					errs <- err
					return
				}
				if err := c.Incr(ctx, "total").Err(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := c.Get(ctx, "total").Val(); n != "5000" {
		t.Fatalf("total = %s, want 5000", n)
	}
}

// TestPipelinedWritesShareCommits checks that with a PipelineBackend a
// pipeline of writes costs about one commit, keeps its reply order, and
// that reads and WAIT in the pipeline see the writes before them.
func TestPipelinedWritesShareCommits(t *testing.T) {
	const delay = 5 * time.Millisecond
	b := &pipeFake{fakeBackend: newFake(), commitDelay: delay}
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	var buf []byte
	const n = 400
	for i := range n {
		buf = append(buf, encode("SET", "k", strconv.Itoa(i))...)
		buf = append(buf, encode("INCR", "ctr")...)
		if i == n/2 {
			buf = append(buf, encode("GET", "k")...)
			buf = append(buf, encode("SET", "k")...) // arity error, in order
		}
	}
	buf = append(buf, encode("WAIT", "1", "10")...)
	buf = append(buf, encode("GET", "ctr")...)
	start := time.Now()
	c.write(t, string(buf))
	for i := range n {
		c.expect(t, "+OK", ":"+strconv.Itoa(i+1))
		if i == n/2 {
			c.expect(t, "$3", strconv.Itoa(n/2), "-ERR wrong number of arguments for 'set' command")
		}
	}
	c.expect(t, ":2", "$3", strconv.Itoa(n))
	if d := time.Since(start); d > n*delay/4 {
		t.Errorf("pipeline of %d writes took %v; serial commits would take %v", 2*n, d, 2*n*delay)
	}
	b.mu.Lock()
	waited := b.waitLSNs[len(b.waitLSNs)-1]
	b.mu.Unlock()
	if waited != 2*n {
		t.Errorf("WAIT waited for LSN %d, want %d", waited, 2*n)
	}

	// QUIT ends the pipeline: nothing after it runs.
	c2 := rawConn(t, addr)
	c2.write(t, string(append(append(encode("SET", "q", "1"), encode("QUIT")...), encode("SET", "q", "2")...)))
	c2.expect(t, "+OK", "+OK")
	c2.expectClosed(t)
	b.mu.Lock()
	defer b.mu.Unlock()
	if v := string(b.data["q"].Data); v != "1" {
		t.Errorf("q = %q after QUIT, want 1", v)
	}
}

func TestQuitStopsPipeline(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, "QUIT\r\nSET after quit\r\n")
	c.expect(t, "+OK")
	c.expectClosed(t)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.data["after"]; ok {
		t.Error("a command after QUIT ran")
	}
}

// TestDurabilityFloor checks TANDEM.DURABILITY: a connection's writes
// are answered only once as many replicas as it asks for have them, the
// others' writes are not held, a floor that is not reached in time answers
// NOREPLICAS with the write still applied, and RESET clears the floor.
func TestDurabilityFloor(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Config{})
	strict, plain := rawConn(t, addr), rawConn(t, addr)
	waits := func() string {
		b.mu.Lock()
		defer b.mu.Unlock()
		s := fmt.Sprint(b.waitLSNs)
		b.waitLSNs = nil
		return s
	}

	strict.send(t, "TANDEM.DURABILITY")
	strict.expect(t, "$7", "default")
	strict.send(t, "tandem.durability", "replicas", "2")
	strict.expect(t, "+OK")
	strict.send(t, "TANDEM.DURABILITY")
	strict.expect(t, "$10", "replicas 2")
	strict.send(t, "SET", "a", "1")
	strict.expect(t, "+OK")
	plain.send(t, "SET", "b", "1")
	plain.expect(t, "+OK")
	strict.send(t, "DEL", "missing") // logs nothing: nothing to wait for
	strict.expect(t, ":0")
	if got := waits(); got != "[1]" {
		t.Fatalf("Wait calls for LSNs %s, want [1] (the strict connection's SET only)", got)
	}

	strict.send(t, "TANDEM.DURABILITY", "REPLICAS", "3", "TIMEOUT", "50")
	strict.expect(t, "+OK")
	strict.send(t, "SET", "a", "2")
	strict.expect(t, "-NOREPLICAS tandem: the write is committed under the cluster's mode but only 2 of the 3 replicas that TANDEM.DURABILITY asks for stored it in time; it may still reach them")
	strict.send(t, "GET", "a")
	strict.expect(t, "$1", "2") // committed under the cluster's mode all the same

	// A pipeline: every write's reply waits for the floor, in order.
	b.mu.Lock()
	b.replicas = 3
	b.mu.Unlock()
	strict.write(t, string(append(append(encode("SET", "p", "1"), encode("INCR", "n")...), encode("GET", "p")...)))
	strict.expect(t, "+OK", ":1", "$1", "1")
	if got := waits(); got != "[3 4 5]" {
		t.Fatalf("Wait calls for LSNs %s, want [3 4 5]", got)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"REPLICAS", "x"}, "-ERR value is not an integer or out of range"},
		{[]string{"REPLICAS", "-1"}, "-ERR value is not an integer or out of range"},
		{[]string{"REPLICAS", "1", "TIMEOUT", "0"}, "-ERR timeout must be a positive number of milliseconds"},
		{[]string{"REPLICAS", "1", "LATER"}, "-ERR syntax error"},
		{[]string{"SOMETIMES"}, "-ERR syntax: TANDEM.DURABILITY [REPLICAS n [TIMEOUT ms] | DEFAULT]"},
	} {
		strict.send(t, append([]string{"TANDEM.DURABILITY"}, bad.args...)...)
		strict.expect(t, bad.want)
	}
	strict.send(t, "TANDEM.DURABILITY")
	strict.expect(t, "$21", "replicas 3 timeout 50") // a refused change changes nothing

	strict.send(t, "RESET")
	strict.expect(t, "+RESET")
	strict.send(t, "TANDEM.DURABILITY")
	strict.expect(t, "$7", "default")
	strict.send(t, "TANDEM.DURABILITY", "REPLICAS", "1")
	strict.expect(t, "+OK")
	strict.send(t, "TANDEM.DURABILITY", "DEFAULT")
	strict.expect(t, "+OK")
	strict.send(t, "SET", "a", "3")
	strict.expect(t, "+OK")
	if got := waits(); got != "[]" {
		t.Fatalf("Wait calls for LSNs %s after DEFAULT, want none", got)
	}
}

// TestConfigSetLists: the list parameters Redis's tests set (by either
// name) are kept for CONFIG GET within their ranges, and `save ""` is
// accepted (tandem writes no RDB) but no other save schedule.
func TestConfigSetLists(t *testing.T) {
	_, addr := startServer(t, newFake(), Config{})
	c := rawConn(t, addr)
	size, depth := commands.ListConfig()
	t.Cleanup(func() { commands.SetListConfig(size, depth) })
	c.send(t, "CONFIG", "SET", "list-max-ziplist-size", "-3", "list-compress-depth", "2")
	c.expect(t, "+OK")
	c.send(t, "CONFIG", "GET", "list-max-listpack-size")
	c.expect(t, "*2", "$22", "list-max-listpack-size", "$2", "-3")
	c.send(t, "CONFIG", "GET", "list-compress-depth")
	c.expect(t, "*2", "$19", "list-compress-depth", "$1", "2")
	c.send(t, "CONFIG", "SET", "list-max-listpack-size", "4294967296")
	c.expect(t, "-ERR CONFIG SET failed (possibly related to argument 'list-max-listpack-size') - argument couldn't be parsed into an integer")
	c.send(t, "CONFIG", "SET", "list-compress-depth", "-1")
	c.expect(t, "-ERR CONFIG SET failed (possibly related to argument 'list-compress-depth') - argument couldn't be parsed into an integer")
	c.send(t, "CONFIG", "SET", "save", "")
	c.expect(t, "+OK")
	c.send(t, "CONFIG", "SET", "save", "900 1")
	c.expect(t, "-ERR Unknown option or number of arguments for CONFIG SET - 'save'")
}

// batchFake is a pipeFake with BatchBackend: it records the size of each
// batch and writes its commands in order, as the node's one entry does.
type batchFake struct {
	*pipeFake
	batches []int // under fakeBackend.mu
}

func (p *batchFake) SubmitBatch(ctx context.Context, cmds []TxCommand) func(int) (commands.Reply, uint64, error) {
	p.mu.Lock()
	p.batches = append(p.batches, len(cmds))
	p.mu.Unlock()
	waits := make([]func() (commands.Reply, uint64, error), len(cmds))
	for i, c := range cmds {
		waits[i] = p.Submit(ctx, c.Spec, c.Args)
	}
	return func(i int) (commands.Reply, uint64, error) { return waits[i]() }
}

// TestPipelinedWritesGoAsBatches: with a BatchBackend a pipeline's
// consecutive writes are submitted as batches (of at most maxBatchCmds),
// cut by a command that is not started ahead (which sees the writes
// before it), and the replies keep their order.
func TestPipelinedWritesGoAsBatches(t *testing.T) {
	b := &batchFake{pipeFake: &pipeFake{fakeBackend: newFake(), commitDelay: time.Millisecond}}
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	var buf []byte
	const n = maxBatchCmds + 50
	for i := range n {
		buf = append(buf, encode("INCR", "ctr")...)
		if i == 9 {
			buf = append(buf, encode("GET", "ctr")...)
		}
	}
	buf = append(buf, encode("GET", "ctr")...)
	c.write(t, string(buf))
	for i := range n {
		c.expect(t, ":"+strconv.Itoa(i+1))
		if i == 9 {
			c.expect(t, "$2", "10")
		}
	}
	c.expect(t, "$3", strconv.Itoa(n))
	// The guard hands redcon about 4 KiB at a time: each read's writes
	// are their own batches (here [10 167 129]), never more than the bound.
	b.mu.Lock()
	defer b.mu.Unlock()
	total := 0
	for _, k := range b.batches {
		if k > maxBatchCmds {
			t.Errorf("a batch of %d commands, more than %d", k, maxBatchCmds)
		}
		total += k
	}
	if total != n || len(b.batches) < 3 {
		t.Errorf("batches %v: %d commands in %d batches, want %d in at least 3", b.batches, total, len(b.batches), n)
	}
}
