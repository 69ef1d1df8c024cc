package client

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"
)

// scripted is a fake tandem leader: it answers ROLE as a master and each
// command first with the errors scripted for it ("EOF" closes the
// connection instead), then normally, and counts what it received.
type scripted struct {
	addr string
	mu   sync.Mutex
	errs map[string][]string
	got  map[string]int
	// notYet is how many more ROLE probes it answers as a replica that
	// knows no leader, as a node does before it leads.
	notYet int
}

func startScripted(t *testing.T) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{addr: ln.Addr().String(), errs: map[string][]string{}, got: map[string]int{}}
	go redcon.Serve(ln, s.handle, nil, nil)
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *scripted) script(cmd string, errs ...string) {
	s.mu.Lock()
	s.errs[cmd] = errs
	s.mu.Unlock()
}

func (s *scripted) count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[cmd]
}

func (s *scripted) handle(c redcon.Conn, cmd redcon.Command) {
	name := strings.ToLower(string(cmd.Args[0]))
	switch name {
	case "role":
		s.mu.Lock()
		replica := s.notYet > 0
		s.notYet--
		s.mu.Unlock()
		if replica {
			c.WriteArray(5)
			c.WriteBulkString("slave")
			c.WriteBulkString("")
			c.WriteInt(0)
			c.WriteBulkString("connect")
			c.WriteInt(-1)
			return
		}
		c.WriteArray(3)
		c.WriteBulkString("master")
		c.WriteInt(0)
		c.WriteArray(0)
		return
	case "hello":
		c.WriteError("ERR unknown command 'hello'")
		return
	case "client", "select", "ping":
		c.WriteString("OK")
		return
	case "info":
		c.WriteBulkString("# Replication\r\nrole:master\r\ntandem_epoch:7\r\ntandem_node_id:fake\r\n")
		return
	}
	s.mu.Lock()
	s.got[name]++
	var e string
	if q := s.errs[name]; len(q) > 0 {
		e = q[0]
		if q[0] != "always READONLY" {
			s.errs[name] = q[1:]
		}
	}
	s.mu.Unlock()
	switch {
	case e == "EOF":
		c.Close()
	case e == "always READONLY":
		c.WriteError("READONLY You can't write against a read only replica.")
	case e != "":
		c.WriteError(e)
	case name == "get":
		c.WriteBulkString("v")
	case name == "set":
		c.WriteString("OK")
	default:
		c.WriteInt(1)
	}
}

const (
	uncertain  = "UNCERTAIN tandem: the leader stopped before this write committed; it may or may not take effect"
	noReplicas = "NOREPLICAS Not enough good replicas to write."
	readOnly   = "READONLY You can't write against a read only replica. (tandem: this node is not the leader)"
	tryAgain   = "TRYAGAIN tandem: too many writes waiting for commit; retry"
)

// TestRetryPolicy checks, against a scripted node, which commands are sent
// again after which errors, and how often the node saw each.
func TestRetryPolicy(t *testing.T) {
	s := startScripted(t)
	c := newClient(t, Options{
		Addrs:           []string{s.addr},
		Redis:           &redis.Options{Protocol: 2, DisableIdentity: true},
		FailoverTimeout: 300 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if id, addr, epoch := c.Leader(); id != "fake" || addr != s.addr || epoch != 7 {
		t.Fatalf("Leader() = %s %s %d", id, addr, epoch)
	}

	check := func(what string, err error, wantErr bool, cmd string, sent int) {
		t.Helper()
		if (err != nil) != wantErr {
			t.Errorf("%s: err %v, want error %v", what, err, wantErr)
		}
		if n := s.count(cmd); n != sent {
			t.Errorf("%s: the node got %s %d times, want %d", what, cmd, n, sent)
		}
	}

	s.script("incr", uncertain)
	err := c.Incr(ctx, "n").Err()
	check("INCR, UNCERTAIN", err, true, "incr", 1)
	if Classify(err) != RetryIdempotent {
		t.Errorf("INCR's error %v is %v", err, Classify(err))
	}

	s.script("get", uncertain, noReplicas, "EOF")
	v, err := c.Get(ctx, "k").Result()
	check("GET, UNCERTAIN NOREPLICAS EOF", err, false, "get", 4)
	if v != "v" {
		t.Errorf("GET = %q", v)
	}

	s.script("incrby", readOnly, tryAgain)
	check("INCRBY, READONLY TRYAGAIN", c.IncrBy(ctx, "n", 2).Err(), false, "incrby", 3)

	s.script("decr", "EOF")
	check("DECR, EOF", c.Decr(ctx, "n").Err(), true, "decr", 1)

	s.script("set", "EOF")
	check("SET k v, EOF", c.Set(ctx, "k", "v", time.Minute).Err(), false, "set", 2)
	s.script("set", "EOF")
	check("SET k v NX, EOF", c.SetNX(ctx, "k", "v", 0).Err(), true, "set", 3)

	// A pipeline: a refused write and the read after it go again.
	s.script("append", readOnly)
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "k")
		p.Append(ctx, "k", "x")
		p.Get(ctx, "k")
		return nil
	})
	check("pipeline GET APPEND(READONLY) GET", err, false, "append", 2)
	if n := s.count("get"); n != 4+3 {
		t.Errorf("pipeline: GET sent %d times in all, want 7", n)
	}
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			t.Errorf("pipeline: %v", cmd.Err())
		}
	}
	// An uncertain counter stops the pipeline's retry.
	s.script("incr", uncertain)
	cmds, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "n")
		p.Get(ctx, "k")
		return nil
	})
	check("pipeline INCR(UNCERTAIN) GET", err, true, "incr", 2)
	if cmds[1].Err() != nil {
		t.Errorf("pipeline: GET after an uncertain INCR: %v", cmds[1].Err())
	}

	// Retries end at FailoverTimeout.
	s.script("setrange", "always READONLY")
	start := time.Now()
	err = c.SetRange(ctx, "k", 0, "x").Err()
	took := time.Since(start)
	if Classify(err) != RetryAny || took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("always refused: %v after %v", err, took)
	}
	if n := s.count("setrange"); n < 3 {
		t.Errorf("always refused: sent %d times", n)
	}

	// The caller's context ends the retries too.
	s.script("setrange", "always READONLY")
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	start = time.Now()
	if err := c.SetRange(short, "k", 0, "x").Err(); err == nil || time.Since(start) > 250*time.Millisecond {
		t.Errorf("refused until the context ends: %v after %v", err, time.Since(start))
	}
}

// TestNoLeader: with no node reachable a command fails after
// FailoverTimeout, with an error that says nothing was sent.
func TestNoLeader(t *testing.T) {
	c, err := New(Options{Addrs: []string{freeAddr(t)}, FailoverTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Set(context.Background(), "k", "v", 0).Err()
	took := time.Since(start)
	var dialErr *DialError
	if !errors.As(err, &dialErr) || !errors.Is(err, ErrNoLeader) || Classify(err) != RetryAny {
		t.Errorf("SET without a leader: %v (%T)", err, err)
	}
	if took < 200*time.Millisecond || took > time.Second {
		t.Errorf("SET without a leader failed after %v, want about 200ms", took)
	}
	if id, addr, _ := c.Leader(); id != "" || addr != "" {
		t.Errorf("Leader() = %q %q without one", id, addr)
	}
}

// TestWaitForLeaderLooksAgain: a node that leads only from its fourth
// probe on is found, although each lookup before that finds no leader and
// so changes nothing a waiter could be woken by (WaitForLeader once waited
// for such a change for ever: CI failed TestFollowsLeaderByRole at f5139b4).
func TestWaitForLeaderLooksAgain(t *testing.T) {
	s := startScripted(t)
	s.notYet = 3
	c, err := New(Options{Addrs: []string{s.addr}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitForLeader(ctx); err != nil {
		t.Fatalf("WaitForLeader: %v", err)
	}
	if id, addr, epoch := c.Leader(); id != "fake" || addr != s.addr || epoch != 7 {
		t.Errorf("Leader() = %s %s %d, want fake %s 7", id, addr, epoch, s.addr)
	}
}

// TestNewConnectionToFormerLeader: a connection dialed to the leader that
// is replaced before go-redis has set the connection up (HELLO, CLIENT
// SETINFO, sent inside the command that needed the connection) makes the
// command take a new connection to the new leader at once. The set-up's
// commands were once retried on that same connection, which refuses to
// send to a former leader, until FailoverTimeout: CI failed
// TestFollowsLeaderByRole when a dial raced a leader change.
func TestNewConnectionToFormerLeader(t *testing.T) {
	old, next := startScripted(t), startScripted(t)
	next.notYet = 1 << 30 // a replica until it leads
	var c *Client
	var armed atomic.Bool // from the SET on: the probes dial too
	var once sync.Once
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := net.Dial(network, addr)
		if err != nil || addr != old.addr || !armed.Load() {
			return nc, err
		}
		once.Do(func() {
			// The leader changes just after this dial connected.
			old.mu.Lock()
			old.notYet = 1 << 30
			old.mu.Unlock()
			next.mu.Lock()
			next.notYet = 0
			next.mu.Unlock()
			c.lookAgain()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, a, _ := c.Leader(); a == next.addr {
					return
				}
				runtime.Gosched()
			}
			t.Error("the client did not see the new leader")
		})
		return nc, nil
	}
	var err error
	c, err = New(Options{Addrs: []string{old.addr, next.addr}, FailoverTimeout: 30 * time.Second,
		Redis: &redis.Options{Dialer: dialer}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, a, _ := c.Leader(); a != old.addr {
		t.Fatalf("first leader %s, want %s", a, old.addr)
	}
	armed.Store(true)
	start := time.Now()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v after %v", err, time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("SET took %v", took)
	}
	if n, m := old.count("set"), next.count("set"); n != 0 || m != 1 {
		t.Errorf("SETs received: former leader %d, new leader %d; want 0 and 1", n, m)
	}
}
