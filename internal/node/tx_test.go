package node

import (
	"bufio"
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestTxOneEntryOnRealStorage: a transaction that makes, overwrites,
// deletes and re-makes one key is one log entry, applied right by the
// leader and its followers (storage's Apply with key counts, row cache
// and range deletes in one Pebble batch), DBSIZE and INFO keyspace
// included.
func TestTxOneEntryOnRealStorage(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	n3 := testNode(t, "n3", nil)
	follow(t, n2, n1)
	follow(t, n3, n1)
	ctx := context.Background()
	c := newClient(t, n1)
	mustDo(t, c, "HSET", "h", "old", "0")
	mustDo(t, c, "SET", "other", "1")
	before := n1.db.Durable().LSN

	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "h", "a", "1")
		p.Set(ctx, "h", "x", 0)
		p.Del(ctx, "h")
		p.HSet(ctx, "h", "c", "3")
		p.Incr(ctx, "h") // a runtime error: its own reply, the rest applies
		p.HGetAll(ctx, "h")
		return nil
	})
	if len(cmds) != 6 {
		t.Fatalf("EXEC gave %d replies (%v)", len(cmds), err)
	}
	if n := cmds[0].(*redis.IntCmd).Val(); n != 1 {
		t.Errorf("HSET h a 1 = %d", n)
	}
	if s := cmds[1].(*redis.StatusCmd).Val(); s != "OK" {
		t.Errorf("SET h x = %q", s)
	}
	if n := cmds[2].(*redis.IntCmd).Val(); n != 1 {
		t.Errorf("DEL h = %d", n)
	}
	if n := cmds[3].(*redis.IntCmd).Val(); n != 1 {
		t.Errorf("HSET h c 3 = %d", n)
	}
	if err := cmds[4].Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Errorf("INCR h = %v, want WRONGTYPE", err)
	}
	if m := cmds[5].(*redis.MapStringStringCmd).Val(); len(m) != 1 || m["c"] != "3" {
		t.Errorf("HGETALL h in the transaction = %v", m)
	}
	if after := n1.db.Durable().LSN; after != before+1 {
		t.Fatalf("the transaction made %d entries, want 1", after-before)
	}
	waitConverged(t, n1, []*Node{n2, n3})
	for _, n := range []*Node{n1, n2, n3} {
		rc := newClient(t, n)
		if m := rc.HGetAll(ctx, "h").Val(); len(m) != 1 || m["c"] != "3" {
			t.Errorf("%s: HGETALL h = %v", n.cfg.ID, m)
		}
		if d := rc.DBSize(ctx).Val(); d != 2 {
			t.Errorf("%s: DBSIZE = %d, want 2", n.cfg.ID, d)
		}
		if info := rc.Info(ctx, "keyspace").Val(); !strings.Contains(info, "db0:keys=2,expires=0,") {
			t.Errorf("%s: INFO keyspace = %q", n.cfg.ID, info)
		}
		// A transaction of reads on every node, followers included.
		got, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HGet(ctx, "h", "c")
			p.Get(ctx, "other")
			return nil
		})
		if err != nil || got[0].(*redis.StringCmd).Val() != "3" || got[1].(*redis.StringCmd).Val() != "1" {
			t.Errorf("%s: read-only transaction = %v, %v", n.cfg.ID, got, err)
		}
	}
	if after := n1.db.Durable().LSN; after != before+1 {
		t.Fatalf("read-only transactions made %d entries", after-before-1)
	}
}

// TestTxErrors: queuing errors abort EXEC, the errors of the protocol's
// own commands, and a follower refusing a write when it is queued.
func TestTxErrors(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c := newClient(t, n1)
	conn := c.Conn()
	defer conn.Close()
	do := func(args ...any) (any, error) { return conn.Do(ctx, args...).Result() }
	expectErr := func(prefix string, args ...any) {
		t.Helper()
		if _, err := do(args...); err == nil || !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("%v = %v, want %s...", args, err, prefix)
		}
	}
	expectErr("ERR EXEC without MULTI", "EXEC")
	expectErr("ERR DISCARD without MULTI", "DISCARD")
	if _, err := do("MULTI"); err != nil {
		t.Fatal(err)
	}
	expectErr("ERR MULTI calls can not be nested", "MULTI")
	expectErr("ERR WATCH inside MULTI is not allowed", "WATCH", "x")
	if r, err := do("SET", "q1", "1"); err != nil || r != "QUEUED" {
		t.Fatalf("SET in MULTI = %v, %v", r, err)
	}
	expectErr("ERR wrong number of arguments for 'get' command", "GET")
	expectErr("ERR unknown command", "NOSUCH")
	expectErr("EXECABORT Transaction discarded because of previous errors.", "EXEC")
	if n := c.Exists(ctx, "q1").Val(); n != 0 {
		t.Fatal("an aborted transaction applied a command")
	}
	if r, err := do("PING"); err != nil || r != "PONG" {
		t.Fatalf("after EXECABORT the connection is still in MULTI: %v %v", r, err)
	}

	// On a follower: reads queue, a write is refused at once (raw: a
	// go-redis connection takes READONLY as a reason to drop itself).
	fc, err := net.Dial("tcp", n2.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, err := fc.Write([]byte("MULTI\r\nGET x\r\nSET x 1\r\nEXEC\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(fc)
	for _, want := range []string{"+OK", "+QUEUED", "-READONLY ", "-EXECABORT Transaction discarded because of previous errors.", "+PONG"} {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, want) {
			t.Fatalf("on a follower: got %q (%v), want %s...", line, err, want)
		}
	}
}

// TestWatchCompareAndSet: concurrent optimistic increments through
// go-redis's Watch lose no update, and a WATCH made under one leadership
// fails the EXEC under the next.
func TestWatchCompareAndSet(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	ctx := context.Background()
	const clients, each = 4, 25
	var wg sync.WaitGroup
	for range clients {
		c := newClient(t, n1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					err := c.Watch(ctx, func(tx *redis.Tx) error {
						v, err := tx.Get(ctx, "counter").Int()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
							p.Set(ctx, "counter", v+1, 0)
							return nil
						})
						return err
					}, "counter")
					if errors.Is(err, redis.TxFailedErr) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	c := newClient(t, n1)
	if v, _ := c.Get(ctx, "counter").Int(); v != clients*each {
		t.Fatalf("counter = %d after %d increments: WATCH let an update be lost", v, clients*each)
	}

	// A WATCH made under one leadership: the node leads again (a new
	// leadership, as after a failover back to it), and EXEC is refused.
	if err := c.Watch(ctx, func(tx *redis.Tx) error {
		n1.Fence("test: a new leadership")
		if err := n1.Lead(); err != nil {
			t.Fatal(err)
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "counter", 0, 0)
			return nil
		})
		return err
	}, "counter"); !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC under a new leadership after WATCH = %v, want a failed transaction", err)
	}
}

// TestExecNullReply: a failed WATCH answers RESP2's null array and
// RESP3's null; RESET and UNWATCH forget the watches, DISCARD too.
func TestExecNullReply(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	raw := func(script string, want ...string) {
		t.Helper()
		c, err := net.Dial("tcp", n1.respAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(strings.ReplaceAll(script, ";", "\r\n") + "\r\n")); err != nil {
			t.Fatal(err)
		}
		// "..." skips lines up to the next wanted one.
		br := bufio.NewReader(c)
		skipping := false
		for _, w := range want {
			if w == "..." {
				skipping = true
				continue
			}
			for {
				line, err := br.ReadString('\n')
				if err == nil && strings.TrimSuffix(line, "\r\n") == w {
					break
				}
				if err != nil || !skipping {
					t.Fatalf("%q: got %q (%v), want %q", script, line, err, w)
				}
			}
			skipping = false
		}
	}
	raw("SET x 1;WATCH x;SET x 2;MULTI;PING;EXEC", "+OK", "+OK", "+OK", "+OK", "+QUEUED", "*-1")
	// RESP3: HELLO's map first (skipped), then the null.
	raw("HELLO 3;SET x 1;WATCH x;SET x 2;MULTI;PING;EXEC;MULTI;EXEC", "%7", "...", "+QUEUED", "_", "+OK", "*0")
	raw("SET x 1;WATCH x;SET x 2;MULTI;PING;EXEC;MULTI;PING;EXEC", "+OK", "+OK", "+OK", "+OK", "+QUEUED", "*-1", "+OK", "+QUEUED", "*1", "+PONG")
	raw("WATCH x;SET x 3;RESET;MULTI;PING;EXEC", "+OK", "+OK", "+RESET", "+OK", "+QUEUED", "*1", "+PONG")
	raw("WATCH x;SET x 3;UNWATCH;MULTI;PING;EXEC", "+OK", "+OK", "+OK", "+OK", "+QUEUED", "*1", "+PONG")
	raw("WATCH x;SET x 3;MULTI;DISCARD;MULTI;PING;EXEC", "+OK", "+OK", "+OK", "+OK", "+OK", "+QUEUED", "*1", "+PONG")
}

// TestWatchesReleased: the leader forgets a connection's watches on
// EXEC, DISCARD, UNWATCH, RESET and when the connection closes.
func TestWatchesReleased(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	watched := func() int { return n1.current().(*leading).l.WatchedKeys() }
	for _, end := range []string{"EXEC", "DISCARD", "UNWATCH", "RESET", "close"} {
		c, err := net.Dial("tcp", n1.respAddr)
		if err != nil {
			t.Fatal(err)
		}
		script, replies := "WATCH a b\r\nMULTI\r\n", 2
		if end == "UNWATCH" || end == "RESET" {
			script, replies = "WATCH a b\r\n", 1
		}
		if _, err := c.Write([]byte(script)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for range replies {
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		if got := watched(); got != 2 {
			t.Fatalf("%s: %d keys watched after WATCH a b, want 2", end, got)
		}
		if end == "close" {
			c.Close()
			waitFor(t, "the closed connection's watches to go", 5*time.Second, func() bool { return watched() == 0 })
			continue
		}
		if _, err := c.Write([]byte(end + "\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if got := watched(); got != 0 {
			t.Fatalf("%d keys still watched after %s", got, end)
		}
		c.Close()
	}
}

// TestPipelinedExecOwed: an EXEC that ends a pipelined read is answered
// by the goroutine that commits it (resp's owed tail), after the OK and
// QUEUEDs buffered before it, and before the next command runs; a watched
// key changed by another client makes it the null array, still in order.
func TestPipelinedExecOwed(t *testing.T) {
	n := testNode(t, "n1", nil)
	c, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(want ...string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for _, w := range want {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("want %q: %v", w, err)
			}
			if got := strings.TrimSuffix(line, "\r\n"); got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		}
	}
	send := func(cmds ...[]string) {
		t.Helper()
		var b strings.Builder
		for _, args := range cmds {
			b.WriteString(respCmd(args...))
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	l := n.current().(*leading).l
	before := l.Handoffs()
	for range 10 {
		send([]string{"MULTI"}, []string{"SET", "k", "1"}, []string{"INCR", "k"}, []string{"EXEC"})
		expect("+OK", "+QUEUED", "+QUEUED", "*2", "+OK", ":2")
	}
	if woke := l.Handoffs().Sub(before).Writer; woke != 0 {
		t.Errorf("10 EXECs woke %d writers, want 0: each is answered by the goroutine that commits it", woke)
	}
	for range 10 {
		send([]string{"MULTI"}, []string{"SET", "k", "1"}, []string{"INCR", "k"}, []string{"EXEC"})
		send([]string{"GET", "k"}) // may arrive in the same read: the EXEC is then not last
		expect("+OK", "+QUEUED", "+QUEUED", "*2", "+OK", ":2", "$1", "2")
		send([]string{"WATCH", "k"})
		expect("+OK")
		mustDo(t, newClient(t, n), "SET", "k", "changed")
		send([]string{"MULTI"}, []string{"INCR", "k"}, []string{"EXEC"}, []string{"GET", "k"})
		expect("+OK", "+QUEUED", "*-1", "$7", "changed")
	}
}

// TestTxCommandNamesAnyCase: inside MULTI the transaction's own commands
// are known in any letter case (EXEC, DISCARD, MULTI, WATCH are not
// queued), and a name longer than any of them is queued or refused as
// any other command is.
func TestTxCommandNamesAnyCase(t *testing.T) {
	n := testNode(t, "n1", nil)
	conn, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A reply shorter than wanted would leave call reading for ever.
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	ac := &appConn{c: conn, r: bufio.NewReader(conn)}
	for _, step := range []struct{ cmd, want string }{
		{respCmd("mUlTi"), "+OK\r\n"},
		{respCmd("MuLtI"), "-ERR MULTI calls can not be nested\r\n"},
		{respCmd("wAtCh", "k"), "-ERR WATCH inside MULTI is not allowed\r\n"},
		{respCmd("sEt", "k", "1"), "+QUEUED\r\n"},
		{respCmd("incrBYfloat", "k", "1.5"), "+QUEUED\r\n"},
		{respCmd("ExEc"), "*2\r\n+OK\r\n$3\r\n2.5\r\n"},
		{respCmd("MULTI"), "+OK\r\n"},
		{respCmd("SET", "k", "2"), "+QUEUED\r\n"},
		{respCmd("dIsCaRd"), "+OK\r\n"},
		{respCmd("GET", "k"), "$3\r\n2.5\r\n"},
		{respCmd("multi"), "+OK\r\n"},
		{respCmd("execexecx"), "-ERR unknown command 'execexecx', with args beginning with: \r\n"},
		{respCmd("exec"), "-EXECABORT Transaction discarded because of previous errors.\r\n"},
	} {
		if err := ac.call([]byte(step.cmd), step.want); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBusyScriptRefusesTransactionWrites: while a script holds the
// sequencer past busy-reply-threshold (set with CONFIG SET under its old
// name, lua-time-limit, as Redis's tests do), a write queued in MULTI is
// refused with BUSY and flags the transaction, and an EXEC of a
// transaction that writes is EXECABORT with BUSY's cause, as Redis
// answers; once SCRIPT KILL ends the script, nothing of it ran.
func TestBusyScriptRefusesTransactionWrites(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	if err := c.ConfigSet(ctx, "lua-time-limit", "10").Err(); err != nil {
		t.Fatalf("CONFIG SET lua-time-limit: %v", err)
	}
	if got := c.ConfigGet(ctx, "busy-reply-threshold").Val()["busy-reply-threshold"]; got != "10" {
		t.Fatalf("CONFIG GET busy-reply-threshold = %q, want 10", got)
	}
	if err := c.Set(ctx, "xx", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	raw := func() (*bufio.Reader, net.Conn) {
		conn, err := net.Dial("tcp", n.respAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return bufio.NewReader(conn), conn
	}
	expect := func(br *bufio.Reader, want ...string) {
		t.Helper()
		for _, w := range want {
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, w) {
				t.Fatalf("got %q (%v), want %s...", line, err, w)
			}
		}
	}
	// Two transactions, each with a write queued before the script.
	before, bc := raw()
	body, yc := raw()
	for _, conn := range []net.Conn{bc, yc} {
		if _, err := conn.Write([]byte("MULTI\r\nINCR xx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	expect(before, "+OK", "+QUEUED")
	expect(body, "+OK", "+QUEUED")

	script, sc := raw()
	if _, err := sc.Write([]byte("EVAL \"while true do end\" 0\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.scripts.Busy() {
		if time.Now().After(deadline) {
			t.Fatal("the script never became busy")
		}
		runtime.Gosched()
	}
	if _, err := yc.Write([]byte("INCR xx\r\nGET xx\r\n")); err != nil {
		t.Fatal(err)
	}
	expect(body, "-BUSY ", "+QUEUED")
	if _, err := bc.Write([]byte("EXEC\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	expect(before, "-EXECABORT Transaction discarded because of: BUSY ", "+PONG")

	if err := c.ScriptKill(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT KILL: %v", err)
	}
	expect(script, "-ERR Script killed by user")
	if _, err := yc.Write([]byte("EXEC\r\n")); err != nil {
		t.Fatal(err)
	}
	expect(body, "-EXECABORT Transaction discarded because of previous errors.")
	if v := c.Get(ctx, "xx").Val(); v != "1" {
		t.Fatalf("xx = %q after two aborted transactions, want 1", v)
	}
}

// TestBusyReplyNamesItsKill: a write refused while a function holds the
// sequencer past busy-reply-threshold names FUNCTION KILL, and while a
// script does, SCRIPT KILL, as Redis 7's BUSY replies do.
func TestBusyReplyNamesItsKill(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	if err := c.ConfigSet(ctx, "busy-reply-threshold", "10").Err(); err != nil {
		t.Fatalf("CONFIG SET busy-reply-threshold: %v", err)
	}
	lib := "#!lua name=spin\nredis.register_function('spin', function() while true do end end)"
	if err := c.FunctionLoad(ctx, lib).Err(); err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}
	for _, tc := range []struct {
		run, kill []any
		want      string
	}{
		{[]any{"FCALL", "spin", "0"}, []any{"FUNCTION", "KILL"}, "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."},
		{[]any{"EVAL", "while true do end", "0"}, []any{"SCRIPT", "KILL"}, "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."},
	} {
		runner := newClient(t, n)
		done := make(chan error, 1)
		go func() { done <- runner.Do(ctx, tc.run...).Err() }()
		deadline := time.Now().Add(10 * time.Second)
		for !n.scripts.Busy() {
			if time.Now().After(deadline) {
				t.Fatalf("%v never became busy", tc.run)
			}
			runtime.Gosched()
		}
		if err := c.Set(ctx, "k", "v", 0).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("SET while %v runs: %v, want %q", tc.run, err, tc.want)
		}
		if err := c.Do(ctx, tc.kill...).Err(); err != nil {
			t.Fatalf("%v: %v", tc.kill, err)
		}
		if err := <-done; err == nil || !strings.Contains(err.Error(), "killed by user") {
			t.Fatalf("%v after %v: %v, want killed by user", tc.run, tc.kill, err)
		}
	}
}

// TestScriptCommandsQueueInMulti: SCRIPT and FUNCTION KILL and HELP are
// queued inside MULTI and answered at their place in EXEC's reply, and a
// bad one (arity, unknown subcommand, FUNCTION's included) is refused when
// queued and discards the transaction, with redis-server 7.0.15's replies;
// TANDEM.* commands stay unknown there.
func TestScriptCommandsQueueInMulti(t *testing.T) {
	n := testNode(t, "n1", nil)
	conn, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(cmds ...string) {
		t.Helper()
		var b strings.Builder
		for _, c := range cmds {
			b.WriteString(c + "\r\n")
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			line, err := br.ReadString('\n')
			if err != nil || line != w+"\r\n" {
				t.Fatalf("got %q (%v), want %q", line, err, w)
			}
		}
	}
	send("MULTI", "FUNCTION KILL", "SCRIPT KILL", `SCRIPT LOAD "return 1"`, "SET a 1",
		"SCRIPT EXISTS e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "EXEC")
	expect("+OK", "+QUEUED", "+QUEUED", "+QUEUED", "+QUEUED", "+QUEUED", "*5",
		"-NOTBUSY No scripts in execution right now.", "-NOTBUSY No scripts in execution right now.",
		"$40", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "+OK", "*1", ":1")
	send("MULTI", "SCRIPT", "SCRIPT FOO", "FUNCTION KILL x", "FUNCTION BAR", "FUNCTION LOAD", "TANDEM.LSN", "SET a 2", "EXEC", "GET a")
	expect("+OK",
		"-ERR wrong number of arguments for 'script' command",
		"-ERR unknown subcommand 'FOO'. Try SCRIPT HELP.",
		"-ERR wrong number of arguments for 'function|kill' command",
		"-ERR unknown subcommand 'BAR'. Try FUNCTION HELP.",
		"-ERR wrong number of arguments for 'function|load' command",
		"-ERR unknown command 'TANDEM.LSN', with args beginning with: ",
		"+QUEUED",
		"-EXECABORT Transaction discarded because of previous errors.",
		"$1", "1")
}
