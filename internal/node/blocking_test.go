package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// The registry alone: turns in FIFO order, one per key, handed on when a
// pop is sequenced.

func pushOps(keys ...string) []logrec.Op {
	var ops []logrec.Op
	for _, k := range keys {
		ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: []byte(k), Version: 1, Sub: []byte{1}})
	}
	return ops
}

func woken(w *waiter) bool {
	select {
	case <-w.wake:
		return true
	default:
		return false
	}
}

var (
	took    = commands.Result{Reply: commands.Array{commands.Bulk("k"), commands.Bulk("v")}}
	nothing = commands.Result{Reply: commands.Array(nil)}
)

func TestRegistryFIFOTurns(t *testing.T) {
	r := newBlockRegistry()
	a := r.add(nil, nil, [][]byte{[]byte("k")})
	b := r.add(nil, nil, [][]byte{[]byte("k")})
	c := r.add(nil, nil, [][]byte{[]byte("k"), []byte("k")}) // a key twice counts once
	if n := r.waiting("k"); n != 3 {
		t.Fatalf("%d waiting, want 3", n)
	}
	// A push of several elements (one entry, many rows) is one turn.
	r.sequenced(append(pushOps("k", "k", "k"), pushOps("other")...))
	if !woken(a) || woken(b) || woken(c) {
		t.Fatal("the push did not give the turn to the first waiter alone")
	}
	// A second push while a holds the turn gives no second turn...
	r.sequenced(pushOps("k"))
	if woken(b) {
		t.Fatal("a second turn was given while the first is held")
	}
	// ... and a's pop that takes something hands it to b at once.
	r.attempt(a)
	r.ran(a, took, nil)
	if !woken(b) || woken(c) {
		t.Fatal("a's pop did not hand the turn to b")
	}
	r.remove(a)
	// b's pop finds nothing (another client took the element): b waits
	// again, the turn is dropped.
	r.attempt(b)
	r.ran(b, nothing, nil)
	if woken(c) {
		t.Fatal("a pop that found nothing handed the turn on")
	}
	// A push during b's pop (after it was sequenced: dirty) ... b got it
	// back, first in line.
	r.sequenced(pushOps("k"))
	if !woken(b) {
		t.Fatal("b is first in line and got no turn")
	}
	// b leaves holding the turn unused: c gets it.
	r.remove(b)
	if !woken(c) {
		t.Fatal("a turn held by a leaving waiter was not passed on")
	}
	// A failed pop (WRONGTYPE on the destination) also hands on.
	d := r.add(nil, nil, [][]byte{[]byte("k")})
	r.attempt(c)
	r.ran(c, commands.Result{}, errors.New("WRONGTYPE"))
	if !woken(d) {
		t.Fatal("a failed pop did not hand the turn on")
	}
	r.remove(c)
	r.remove(d)
	if n := r.waiting("k"); n != 0 || len(r.keys) != 0 {
		t.Fatalf("%d waiting, %d keys left", n, len(r.keys))
	}
}

// TestRegistryDirtyTurn: a push sequenced after a holder's pop found
// nothing... before ran is impossible (both under the sequencing lock), but
// a push while the holder waits to run its pop marks the turn dirty: a pop
// that then finds nothing still hands the turn on.
func TestRegistryDirtyTurn(t *testing.T) {
	r := newBlockRegistry()
	a := r.add(nil, nil, [][]byte{[]byte("k")})
	b := r.add(nil, nil, [][]byte{[]byte("k")})
	r.sequenced(pushOps("k"))
	woken(a)
	r.sequenced(pushOps("k")) // dirty
	r.attempt(a)
	r.ran(a, nothing, nil)
	if !woken(a) {
		t.Fatal("a dirty turn was not handed on (to a, still first)")
	}
	_ = b
}

// TestRegistryMultiKey: a waiter on two keys holds a turn on each; its pop
// hands both on.
func TestRegistryMultiKey(t *testing.T) {
	r := newBlockRegistry()
	a := r.add(nil, nil, [][]byte{[]byte("k1"), []byte("k2")})
	b := r.add(nil, nil, [][]byte{[]byte("k2")})
	c := r.add(nil, nil, [][]byte{[]byte("k1")})
	r.sequenced(pushOps("k1", "k2")) // one entry, e.g. MULTI
	if !woken(a) || woken(b) || woken(c) {
		t.Fatal("turns of both keys should go to a, the oldest on each")
	}
	r.attempt(a)
	r.ran(a, took, nil)
	if !woken(b) || !woken(c) {
		t.Fatal("a's pop did not hand on the turns of both keys")
	}
}

// TestRegistryPlantedDropTurn: the planted bug (turns never handed on)
// leaves the next waiter without one.
func TestRegistryPlantedDropTurn(t *testing.T) {
	r := newBlockRegistry()
	r.dropTurn = true
	a := r.add(nil, nil, [][]byte{[]byte("k")})
	b := r.add(nil, nil, [][]byte{[]byte("k")})
	r.sequenced(pushOps("k", "k"))
	woken(a)
	r.attempt(a)
	r.ran(a, took, nil)
	if woken(b) {
		t.Fatal("the planted bug did not take effect")
	}
}

// waitBlocked waits until k clients are blocked on n.
func waitBlocked(t *testing.T, n *Node, k int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got, changed := n.blocked.blockedChanged()
		if got == k {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d clients blocked, want %d", got, k)
		}
	}
}

// bg runs a command on its own client and returns its result later.
func bg(t *testing.T, n *Node, args ...any) <-chan *redis.Cmd {
	t.Helper()
	c := newClient(t, n)
	out := make(chan *redis.Cmd, 1)
	go func() { out <- c.Do(context.Background(), args...) }()
	return out
}

func result(t *testing.T, ch <-chan *redis.Cmd) *redis.Cmd {
	t.Helper()
	select {
	case cmd := <-ch:
		return cmd
	case <-time.After(10 * time.Second):
		t.Fatal("no reply in 10 s")
	}
	return nil
}

// TestBlockingWrongTypeDestination: two clients BRPOPLPUSH from one list,
// the first into a key of another type: one push answers the first
// WRONGTYPE and passes the element to the second (Redis's "BRPOPLPUSH
// with multiple blocked clients").
func TestBlockingWrongTypeDestination(t *testing.T) {
	n := testNode(t, "n1", nil)
	c := newClient(t, n)
	mustDo(t, c, "SET", "t1", "nolist")
	r1 := bg(t, n, "BRPOPLPUSH", "bl", "t1", "0")
	waitBlocked(t, n, 1)
	r2 := bg(t, n, "BRPOPLPUSH", "bl", "t2", "0")
	waitBlocked(t, n, 2)
	mustDo(t, c, "LPUSH", "bl", "foo")
	if err := result(t, r1).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("first BRPOPLPUSH: %v, want WRONGTYPE", err)
	}
	if v, err := result(t, r2).Text(); err != nil || v != "foo" {
		t.Fatalf("second BRPOPLPUSH = %q, %v", v, err)
	}
	if got := c.LRange(context.Background(), "t2", 0, -1).Val(); len(got) != 1 || got[0] != "foo" {
		t.Fatalf("t2 = %v", got)
	}
}

// TestBlockingSemantics: FIFO across clients, a client on several keys,
// the timeout, MULTI isolation (LPUSH + DEL wakes no one), the
// non-blocking form inside MULTI, and a client that disconnects.
func TestBlockingSemantics(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)

	// Errors, before anything blocks.
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"BLPOP", "q", "-1"}, "ERR timeout is negative"},
		{[]any{"BLPOP", "q", "abc"}, "ERR timeout is not a float or out of range"},
		{[]any{"BLMOVE", "a", "b", "up", "left", "0"}, "ERR syntax error"},
		{[]any{"BLMPOP", "0", "0", "q", "left"}, "ERR numkeys should be greater than 0"},
	} {
		if err := c.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}

	// FIFO: three clients on q, one push of three elements serves them
	// in the order they blocked (a, b, c in log order: a gets the head).
	var rs []<-chan *redis.Cmd
	for i := range 3 {
		rs = append(rs, bg(t, n, "BLPOP", "q", "0"))
		waitBlocked(t, n, int64(i+1))
	}
	mustDo(t, c, "RPUSH", "q", "x1", "x2", "x3")
	for i, r := range rs {
		got, err := result(t, r).StringSlice()
		if err != nil || len(got) != 2 || got[1] != fmt.Sprintf("x%d", i+1) {
			t.Errorf("client %d got %v, %v; want [q x%d]", i, got, err, i+1)
		}
	}

	// Several keys: served by the one that gets data.
	r := bg(t, n, "BRPOP", "k1", "k2", "0")
	waitBlocked(t, n, 1)
	mustDo(t, c, "RPUSH", "k2", "v")
	if got, err := result(t, r).StringSlice(); err != nil || strings.Join(got, " ") != "k2 v" {
		t.Errorf("BRPOP k1 k2 = %v, %v", got, err)
	}

	// Timeout: a null array after about the timeout.
	start := time.Now()
	if err := c.Do(ctx, "BLPOP", "none", "0.05").Err(); err != redis.Nil {
		t.Errorf("BLPOP with a timeout: %v, want nil", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("BLPOP returned after %v, before its timeout", d)
	}

	// MULTI isolation: LPUSH + DEL in one transaction serves no one; the
	// client stays blocked and the next push serves it.
	r = bg(t, n, "BLPOP", "m", "0")
	waitBlocked(t, n, 1)
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, "m", "a")
		p.Del(ctx, "m")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, c, "LPUSH", "m", "b")
	if got, err := result(t, r).StringSlice(); err != nil || strings.Join(got, " ") != "m b" {
		t.Errorf("after MULTI LPUSH DEL and LPUSH b: %v, %v", got, err)
	}

	// Inside MULTI a blocking pop is its non-blocking form.
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.BLPop(ctx, 0, "empty")
		return nil
	})
	if err != redis.Nil || len(cmds) != 1 || cmds[0].Err() != redis.Nil {
		t.Errorf("BLPOP in MULTI: %v %v", cmds, err)
	}

	// A client that disconnects while blocked is removed from the queues.
	conn, err := net.Dial("tcp", n.respAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("*3\r\n$5\r\nBLPOP\r\n$4\r\ngone\r\n$1\r\n0\r\n")); err != nil {
		t.Fatal(err)
	}
	waitBlocked(t, n, 1)
	conn.Close()
	waitBlocked(t, n, 0)
	testutilEventuallyNoWaiters(t, n, "gone")
	mustDo(t, c, "RPUSH", "gone", "kept")
	if v := c.LRange(ctx, "gone", 0, -1).Val(); len(v) != 1 {
		t.Errorf("gone = %v: the element went to a client that left", v)
	}
}

func testutilEventuallyNoWaiters(t *testing.T, n *Node, key string) {
	t.Helper()
	if w := n.blocked.waiting(key); w != 0 {
		t.Fatalf("%d waiters left on %q", w, key)
	}
}

// runQueue runs a job queue on leader. First a burst: consumers idle
// workers each BLPOP one job and leave, then one RPUSH brings as many jobs:
// every idle worker must get one (each is a separate client, so one that
// pops cannot drain the rest). Then the steady state: consumers BLPOP in a
// loop while producers RPUSH jobs (some one at a time, some three in one
// push). It returns an error unless every job was popped exactly once
// within the wait.
func runQueue(t *testing.T, leader *Node, consumers, producers, perProducer int, wait time.Duration) error {
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	total := consumers + producers*perProducer
	popped := make(chan struct{}, total+consumers)
	record := func(job string) {
		mu.Lock()
		got[job]++
		mu.Unlock()
		popped <- struct{}{}
	}
	// The burst.
	var burst []any
	for i := range consumers {
		c := newClient(t, leader)
		go func() {
			if v, err := c.BLPop(ctx, 0, "jobs").Result(); err == nil {
				record(v[1])
			}
		}()
		waitBlocked(t, leader, int64(i+1))
		burst = append(burst, fmt.Sprintf("burst-%d", i))
	}
	if err := newClient(t, leader).RPush(ctx, "jobs", burst...).Err(); err != nil {
		return err
	}
	deadline := time.After(wait)
	for i := range consumers {
		select {
		case <-popped:
		case <-deadline:
			// The workers end when the test closes the node.
			return fmt.Errorf("burst: %d of %d idle workers got a job within %v", i, consumers, wait)
		}
	}
	// The steady state.
	var cwg sync.WaitGroup
	for range consumers {
		c := newClient(t, leader)
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				v, err := c.BLPop(ctx, 0, "jobs").Result()
				if err != nil || v[1] == "stop" {
					return // the end, or the node closed after a failure
				}
				record(v[1])
			}
		}()
	}
	var pwg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		c := newClient(t, leader)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := 0; i < perProducer; {
				batch := []any{}
				for j := 0; j < 1+2*(i%2) && i < perProducer; j++ {
					batch = append(batch, fmt.Sprintf("p%d-%d", p, i))
					i++
				}
				if err := c.RPush(context.Background(), "jobs", batch...).Err(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	pwg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	for i := consumers; i < total; i++ {
		select {
		case <-popped:
		case <-deadline:
			// The consumers end when the test closes the node.
			return fmt.Errorf("%d of %d jobs popped within %v", i, total, wait)
		}
	}
	stop := newClient(t, leader)
	for range consumers {
		if err := stop.RPush(ctx, "jobs", "stop").Err(); err != nil {
			return err
		}
	}
	cwg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != total {
		return fmt.Errorf("%d distinct jobs popped, want %d", len(got), total)
	}
	for job, k := range got {
		if k != 1 {
			return fmt.Errorf("job %s popped %d times", job, k)
		}
	}
	return nil
}

// TestJobQueue: several BLPOP consumers and producers on a leader with a
// follower: every job is popped exactly once, none is left, and the
// follower applied the same pops (LLEN 0, digests agree).
func TestJobQueue(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	if err := runQueue(t, n1, 6, 4, 150, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, n1, []*Node{n2})
	for _, n := range []*Node{n1, n2} {
		if l := newClient(t, n).LLen(context.Background(), "jobs").Val(); l != 0 {
			t.Errorf("%s: LLEN jobs = %d after every job was popped", n.cfg.ID, l)
		}
	}
}

// TestJobQueueCatchesDroppedTurn: the planted bug (a pop that took something
// keeps the key's turn) leaves jobs of a multi-element push unpopped while
// consumers wait: runQueue reports it.
func TestJobQueueCatchesDroppedTurn(t *testing.T) {
	n := testNode(t, "n1", nil)
	n.blocked.dropTurn = true
	if err := runQueue(t, n, 4, 2, 30, 2*time.Second); err == nil {
		t.Fatal("the queue check missed the planted dropped-turn bug")
	} else {
		t.Logf("caught: %v", err)
	}
}

// TestBlockingChain: a move by a blocked BLMOVE is a push that serves the
// next blocked client (Redis's "Linked LMOVEs"), once both replied.
func TestBlockingChain(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	r1 := bg(t, n, "BLMOVE", "list1", "list2", "RIGHT", "LEFT", "0")
	waitBlocked(t, n, 1)
	r2 := bg(t, n, "BLMOVE", "list2", "list3", "LEFT", "RIGHT", "0")
	waitBlocked(t, n, 2)
	mustDo(t, c, "RPUSH", "list1", "foo")
	for i, r := range []<-chan *redis.Cmd{r1, r2} {
		if v, err := result(t, r).Text(); err != nil || v != "foo" {
			t.Fatalf("BLMOVE %d = %q, %v", i+1, v, err)
		}
	}
	for key, want := range map[string]int64{"list1": 0, "list2": 0, "list3": 1} {
		if l := c.LLen(ctx, key).Val(); l != want {
			t.Errorf("LLEN %s = %d, want %d", key, l, want)
		}
	}
}

// TestBlockingSortedSets: BZPOPMIN, BZPOPMAX and BZMPOP block and are
// served by ZADD, in order.
func TestBlockingSortedSets(t *testing.T) {
	n := testNode(t, "n1", nil)
	c := newClient(t, n)
	r1 := bg(t, n, "BZPOPMIN", "z", "0")
	waitBlocked(t, n, 1)
	r2 := bg(t, n, "BZPOPMAX", "z", "0")
	waitBlocked(t, n, 2)
	r3 := bg(t, n, "BZMPOP", "0", "1", "z", "MIN", "COUNT", "5")
	waitBlocked(t, n, 3)
	mustDo(t, c, "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
	if v, err := result(t, r1).Slice(); err != nil || fmt.Sprint(v) != "[z a 1]" {
		t.Errorf("BZPOPMIN = %v, %v", v, err)
	}
	if v, err := result(t, r2).Slice(); err != nil || fmt.Sprint(v) != "[z d 4]" {
		t.Errorf("BZPOPMAX = %v, %v", v, err)
	}
	if v, err := result(t, r3).Slice(); err != nil || fmt.Sprint(v) != "[z [[b 2] [c 3]]]" {
		t.Errorf("BZMPOP = %v, %v", v, err)
	}
}

// TestBlockingLeadershipEnds: a client blocked on a leader that steps down
// is answered UNBLOCKED (to retry on the new leader) and leaves the queue;
// a blocking command on a node that does not lead is refused like a write.
func TestBlockingLeadershipEnds(t *testing.T) {
	n := testNode(t, "n1", nil)
	r := bg(t, n, "BLPOP", "q", "0")
	waitBlocked(t, n, 1)
	n.Fence("test: step down")
	if err := result(t, r).Err(); err == nil || !strings.HasPrefix(err.Error(), "UNBLOCKED") {
		t.Fatalf("blocked BLPOP after the leader stepped down: %v, want UNBLOCKED", err)
	}
	waitBlocked(t, n, 0)
	if w := n.blocked.waiting("q"); w != 0 {
		t.Fatalf("%d waiters left", w)
	}
	if err := newClient(t, n).Do(context.Background(), "BLPOP", "q", "0").Err(); err == nil {
		t.Fatal("a fenced node served BLPOP")
	}
}

// TestClientUnblock: CLIENT UNBLOCK ends a blocked pop as a timeout
// (default, TIMEOUT) or with Redis's UNBLOCKED error (ERROR), answers 0
// for a client that is not blocked, and the unblocked client leaves the
// queue: the next push serves the client blocked after it.
func TestClientUnblock(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	a := newClient(t, n).Conn()
	defer a.Close()
	id, err := a.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	blpop := func() <-chan error {
		out := make(chan error, 1)
		go func() { out <- a.BLPop(ctx, 0, "q").Err() }()
		return out
	}
	for _, tc := range []struct {
		mode []any
		want string
	}{{nil, "redis: nil"}, {[]any{"TIMEOUT"}, "redis: nil"}, {[]any{"ERROR"}, "UNBLOCKED client unblocked via CLIENT UNBLOCK"}} {
		r := blpop()
		waitBlocked(t, n, 1)
		if got, err := c.Do(ctx, append([]any{"CLIENT", "UNBLOCK", id}, tc.mode...)...).Int(); err != nil || got != 1 {
			t.Fatalf("CLIENT UNBLOCK %d %v = %d, %v; want 1", id, tc.mode, got, err)
		}
		select {
		case err := <-r:
			if err == nil || err.Error() != tc.want {
				t.Fatalf("unblocked with %v: %v, want %q", tc.mode, err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("CLIENT UNBLOCK %v did not end the BLPOP", tc.mode)
		}
		waitBlocked(t, n, 0)
	}
	if got, err := c.Do(ctx, "CLIENT", "UNBLOCK", id).Int(); err != nil || got != 0 {
		t.Fatalf("CLIENT UNBLOCK of a client not blocked = %d, %v; want 0", got, err)
	}
	for _, bad := range [][]any{{"CLIENT", "UNBLOCK", "asd"}, {"CLIENT", "UNBLOCK", id, "later"}} {
		if err := c.Do(ctx, bad...).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%v: %v, want an ERR", bad, err)
		}
	}

	// Unblocked, it leaves the queue: the push goes to the one after it.
	r := blpop()
	waitBlocked(t, n, 1)
	r2 := bg(t, n, "BLPOP", "q", "0")
	waitBlocked(t, n, 2)
	mustDo(t, c, "CLIENT", "UNBLOCK", strconv.FormatInt(id, 10))
	if err := <-r; err != redis.Nil {
		t.Fatalf("unblocked: %v", err)
	}
	mustDo(t, c, "RPUSH", "q", "x")
	if got, err := result(t, r2).StringSlice(); err != nil || strings.Join(got, " ") != "q x" {
		t.Fatalf("the client blocked second got %v, %v", got, err)
	}
}

// TestPushServesBlockedPops: a push serves the clients blocked on its key
// in its own entry, as Redis serves them inside the push: one LPUSH of
// four elements to three blocked BLPOPs is one log entry (not four), the
// clients get the elements in the order they blocked, the fourth stays,
// and the follower applied the same.
func TestPushServesBlockedPops(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	c := newClient(t, n1)
	var rs []<-chan *redis.Cmd
	for i := range 3 {
		rs = append(rs, bg(t, n1, "BLPOP", "q", "0"))
		waitBlocked(t, n1, int64(i+1))
	}
	before := n1.db.Applied()
	mustDo(t, c, "LPUSH", "q", "a", "b", "c", "d")
	for i, want := range []string{"d", "c", "b"} {
		got, err := result(t, rs[i]).StringSlice()
		if err != nil || len(got) != 2 || got[1] != want {
			t.Fatalf("client %d: BLPOP = %q, %v, want [q %s]", i, got, err, want)
		}
	}
	if after := n1.db.Applied(); after != before+1 {
		t.Fatalf("the push and its pops took %d entries, want 1", after-before)
	}
	waitConverged(t, n1, []*Node{n2})
	for _, n := range []*Node{n1, n2} {
		if got := newClient(t, n).LRange(context.Background(), "q", 0, -1).Val(); len(got) != 1 || got[0] != "a" {
			t.Errorf("%s: q = %q, want [a]", n.cfg.ID, got)
		}
	}
	waitBlocked(t, n1, 0)
}

// TestServedJobLeavesNoList: a job pushed to an empty list and served at
// once to the client blocked on it makes no list rows on any node: its
// entry is the key's metadata row written and deleted (foldNewDrops), not
// also the element and head rows and a range deletion of them; the key
// stays absent and counted so on both nodes, a WATCH of it still sees the
// push, and the next push makes the list as usual.
func TestServedJobLeavesNoList(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c, w := newClient(t, n1), newClient(t, n1)
	// A transaction WATCHing q, on a connection of its own.
	if err := w.Watch(ctx, func(tx *redis.Tx) error {
		r := bg(t, n1, "BLPOP", "q", "0")
		waitBlocked(t, n1, 1)
		before := n1.db.Applied()
		mustDo(t, c, "LPUSH", "q", "job")
		if got, err := result(t, r).StringSlice(); err != nil || strings.Join(got, " ") != "q job" {
			t.Fatalf("BLPOP = %q, %v", got, err)
		}
		after := n1.db.Applied()
		if after != before+1 {
			t.Fatalf("the push and its pop took %d entries, want 1", after-before)
		}
		raws, err := n1.db.ReadLog(after, after, 1<<20)
		if err != nil || len(raws) != 1 {
			t.Fatalf("ReadLog(%d) = %d entries, %v", after, len(raws), err)
		}
		e, err := logrec.Decode(raws[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Ops) != 2 || e.Ops[0].Kind != logrec.OpMeta || e.Ops[1].Kind != logrec.OpDelete || string(e.Ops[1].Key) != "q" {
			t.Fatalf("the served job's entry has ops %+v, want q's metadata row written and deleted", e.Ops)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "x", "1", 0)
			return nil
		})
		if !errors.Is(err, redis.TxFailedErr) {
			t.Fatalf("EXEC after the served push to the WATCHed key: %v, want it to fail", err)
		}
		return nil
	}, "q"); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, n1, []*Node{n2})
	for _, n := range []*Node{n1, n2} {
		nc := newClient(t, n)
		if got := nc.Exists(ctx, "q").Val(); got != 0 {
			t.Errorf("%s: EXISTS q = %d after the job was taken", n.cfg.ID, got)
		}
		if got := nc.DBSize(ctx).Val(); got != 0 {
			t.Errorf("%s: DBSIZE = %d, want 0", n.cfg.ID, got)
		}
	}
	mustDo(t, c, "RPUSH", "q", "a", "b")
	waitConverged(t, n1, []*Node{n2})
	for _, n := range []*Node{n1, n2} {
		if got := newClient(t, n).LRange(ctx, "q", 0, -1).Val(); strings.Join(got, " ") != "a b" {
			t.Errorf("%s: q = %q, want [a b]", n.cfg.ID, got)
		}
	}
}

// TestFoldNewDrops: the sub-key rows of a collection the entry makes and
// drops go, its drop becomes a deletion; its metadata writes, other keys,
// older versions and the collection made again after the drop stay.
func TestFoldNewDrops(t *testing.T) {
	const nv = 9
	op := func(kind logrec.OpKind, key string, version uint64, sub string) logrec.Op {
		return logrec.Op{Kind: kind, Key: []byte(key), Version: version, Sub: []byte(sub)}
	}
	ops := []logrec.Op{
		op(logrec.OpDrop, "q", 3, ""),     // an older list of q, dropped
		op(logrec.OpSubPut, "q", nv, "e"), // q made again
		op(logrec.OpSubPut, "o", nv, "e"), // another key's rows
		op(logrec.OpMeta, "q", nv, ""),
		op(logrec.OpSubDel, "q", nv, "e"),
		op(logrec.OpDrop, "q", nv, ""),    // and dropped: folded
		op(logrec.OpSubPut, "q", nv, "f"), // made a third time: stays
		op(logrec.OpMeta, "q", nv, ""),
		op(logrec.OpMeta, "o", nv, ""),
	}
	got := foldNewDrops(ops, nv)
	want := []logrec.Op{
		op(logrec.OpDrop, "q", 3, ""),
		op(logrec.OpSubPut, "o", nv, "e"),
		op(logrec.OpMeta, "q", nv, ""),
		{Kind: logrec.OpDelete, Key: []byte("q")},
		op(logrec.OpSubPut, "q", nv, "f"),
		op(logrec.OpMeta, "q", nv, ""),
		op(logrec.OpMeta, "o", nv, ""),
	}
	if len(got) != len(want) {
		t.Fatalf("folded to %d ops %+v, want %+v", len(got), got, want)
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || string(got[i].Key) != string(want[i].Key) || got[i].Version != want[i].Version || string(got[i].Sub) != string(want[i].Sub) {
			t.Errorf("op %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// noRows is an empty keyspace.
type noRows struct{}

func (noRows) Get([]byte) ([]byte, bool, error)                        { return nil, false, nil }
func (noRows) Iter(_, _ []byte, _ func(k, v []byte) bool) error        { return nil }
func (noRows) IterReverse(_, _ []byte, _ func(k, v []byte) bool) error { return nil }

// serveLPush runs "LPUSH key elems..." on an empty keyspace and has r
// serve it.
func serveLPush(t *testing.T, r *blockRegistry, key string, elems ...string) (commands.Result, []*servedPop) {
	t.Helper()
	v := keyspace.Reader{R: noRows{}, NowMs: 1, LSN: 7}
	spec, _ := commands.Lookup([]byte("LPUSH"))
	args := [][]byte{[]byte("LPUSH"), []byte(key)}
	for _, e := range elems {
		args = append(args, []byte(e))
	}
	res, err := spec.Exec(&commands.Ctx{NowMs: 1}, v, args)
	if err != nil {
		t.Fatal(err)
	}
	res, served, err := r.serve(v, commands.Ctx{NowMs: 1}, res)
	if err != nil {
		t.Fatal(err)
	}
	return res, served
}

func blpop(r *blockRegistry, key string) *waiter {
	spec, _ := commands.Lookup([]byte("BLPOP"))
	return r.add(spec, [][]byte{[]byte("BLPOP"), []byte(key), []byte("0")}, [][]byte{[]byte(key)})
}

// TestRegistryServe: a push serves idle waiters in FIFO order while the
// list has elements; one that leaves after it was served gets its
// element (leave returns the pop); the entry that emptied the list gives
// no turn; a waiter whose pop is under way (not idle) is left to the
// turns, and so is every one behind it.
func TestRegistryServe(t *testing.T) {
	r := newBlockRegistry()
	a, b, c := blpop(r, "q"), blpop(r, "q"), blpop(r, "q")
	for _, w := range []*waiter{a, b, c} {
		r.ran(w, nothing, nil) // its first pop found nothing: idle
	}
	res, served := serveLPush(t, r, "q", "x", "y")
	if len(served) != 2 || served[0].w != a || served[1].w != b {
		t.Fatalf("served %d waiters, want a and b", len(served))
	}
	for i, want := range []string{"y", "x"} {
		if got, ok := served[i].reply.(commands.BulkPair); !ok || string(got[1]) != want {
			t.Errorf("waiter %d got %v, want [q %s]", i, served[i].reply, want)
		}
	}
	// A served waiter is woken once, when its entry's outcome is there
	// (a wake-up before it would only wait for that).
	if woken(a) || woken(b) || woken(c) {
		t.Fatal("a waiter was woken before its entry's outcome")
	}
	for _, s := range served {
		s.answer(popResult{reply: s.reply, lsn: 7})
	}
	if !woken(a) || !woken(b) || woken(c) {
		t.Fatal("the served waiters were not woken with their outcome, or c was")
	}
	if s := r.leave(a); s != served[0] {
		t.Fatal("a, served as it timed out, lost its pop")
	}
	r.sequenced(res.Ops)
	if woken(c) {
		t.Fatal("c got a turn on a list the entry emptied")
	}
	if s := r.leave(c); s != nil {
		t.Fatal("c left with a pop it was never served")
	}

	// d's pop is under way (a turn woke it): neither d nor e, behind it,
	// is served; the turns serve d first.
	r = newBlockRegistry()
	d, e := blpop(r, "q"), blpop(r, "q")
	r.ran(d, nothing, nil)
	r.ran(e, nothing, nil)
	r.sequenced(pushOps("q"))
	if !woken(d) {
		t.Fatal("d got no turn")
	}
	if _, served := serveLPush(t, r, "q", "x"); len(served) != 0 {
		t.Fatalf("served %d waiters while the oldest's pop was under way", len(served))
	}
}

// TestJobQueueShortTimeouts: consumers whose BLPOPs time out every 10 ms,
// so that pushes serve clients as they leave: every job is popped exactly
// once (a served client that times out still answers its element).
func TestJobQueueShortTimeouts(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	const producers, consumers, perProducer = 4, 8, 150
	var mu sync.Mutex
	got := map[string]int{}
	popped := make(chan struct{}, producers*perProducer)
	stop := make(chan struct{})
	var cwg sync.WaitGroup
	for range consumers {
		c := newClient(t, n)
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, err := c.Do(ctx, "BLPOP", "jobs", "0.01").StringSlice()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					t.Errorf("BLPOP: %v", err)
					return
				}
				mu.Lock()
				got[v[1]]++
				mu.Unlock()
				select {
				case popped <- struct{}{}:
				default: // popped twice: the check below says so
				}
			}
		}()
	}
	var pwg sync.WaitGroup
	for p := range producers {
		c := newClient(t, n)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := range perProducer {
				if err := c.LPush(ctx, "jobs", fmt.Sprintf("p%d-%d", p, i)).Err(); err != nil {
					t.Errorf("LPUSH: %v", err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	deadline := time.After(30 * time.Second)
wait:
	for range producers * perProducer {
		select {
		case <-popped:
		case <-deadline:
			break wait
		}
	}
	close(stop)
	cwg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != producers*perProducer {
		t.Fatalf("%d distinct jobs popped of %d (LLEN %d)", len(got), producers*perProducer, newClient(t, n).LLen(ctx, "jobs").Val())
	}
	for job, k := range got {
		if k != 1 {
			t.Fatalf("job %s popped %d times", job, k)
		}
	}
}

// TestPipelineServesBlockedPops: a pipeline's pushes serve the clients
// blocked on their keys in the pipeline's own entry, as a lone push does
// (one entry for the pushes and the pops), after every command of the
// batch: a pop in the pipeline takes its element first, and a key the
// pipeline empties again serves no one. The planted batchServesNoOne
// (the batch leaves them to the turns) takes more entries.
func TestPipelineServesBlockedPops(t *testing.T) {
	for _, planted := range []bool{false, true} {
		t.Run(fmt.Sprintf("planted=%v", planted), func(t *testing.T) {
			n1 := testNode(t, "n1", nil)
			n1.blocked.batchServesNoOne = planted
			c := newClient(t, n1)
			var q, gone []<-chan *redis.Cmd
			for i := range 3 {
				q = append(q, bg(t, n1, "BLPOP", "q", "0"))
				waitBlocked(t, n1, int64(i+1))
			}
			gone = append(gone, bg(t, n1, "BLPOP", "gone", "1"))
			waitBlocked(t, n1, 4)
			before := n1.db.Applied()
			ctx := context.Background()
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.RPush(ctx, "q", "a", "b")
				p.LPop(ctx, "q") // the pipeline's own pop comes first: a
				p.RPush(ctx, "q", "c", "d")
				p.RPush(ctx, "gone", "x")
				p.Del(ctx, "gone") // emptied within the batch: no one served
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := cmds[1].(*redis.StringCmd).Val(); got != "a" {
				t.Fatalf("the pipeline's LPOP = %q, want a", got)
			}
			for i, want := range []string{"b", "c", "d"} {
				got, err := result(t, q[i]).StringSlice()
				if err != nil || len(got) != 2 || got[1] != want {
					t.Fatalf("client %d: BLPOP = %q, %v, want [q %s]", i, got, err, want)
				}
			}
			entries := n1.db.Applied() - before
			if !planted && entries != 1 {
				t.Fatalf("the pipeline and its pops took %d entries, want 1", entries)
			}
			if planted && entries == 1 {
				t.Fatalf("planted batchServesNoOne: one entry, the test cannot see it")
			}
			if err := result(t, gone[0]).Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("BLPOP gone = %v, want a timeout (nil)", err)
			}
			if got := c.Exists(ctx, "q", "gone").Val(); got != 0 {
				t.Fatalf("EXISTS q gone = %d, want 0", got)
			}
			waitBlocked(t, n1, 0)
		})
	}
}

// TestTransactionServesBlockedPops: a transaction's pushes serve the
// clients blocked on their keys in its one entry, once it is whole (a
// push it pops again within itself serves no one). The planted
// batchServesNoOne leaves them to the turns: more entries.
func TestTransactionServesBlockedPops(t *testing.T) {
	for _, planted := range []bool{false, true} {
		t.Run(fmt.Sprintf("planted=%v", planted), func(t *testing.T) {
			n1 := testNode(t, "n1", nil)
			n1.blocked.batchServesNoOne = planted
			c := newClient(t, n1)
			var q []<-chan *redis.Cmd
			for i := range 2 {
				q = append(q, bg(t, n1, "BLPOP", "q", "0"))
				waitBlocked(t, n1, int64(i+1))
			}
			before := n1.db.Applied()
			ctx := context.Background()
			if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.RPush(ctx, "q", "a", "b", "c")
				p.LPop(ctx, "q") // the transaction's own: a
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"b", "c"} {
				got, err := result(t, q[i]).StringSlice()
				if err != nil || len(got) != 2 || got[1] != want {
					t.Fatalf("client %d: BLPOP = %q, %v, want [q %s]", i, got, err, want)
				}
			}
			entries := n1.db.Applied() - before
			if !planted && entries != 1 {
				t.Fatalf("the transaction and its pops took %d entries, want 1", entries)
			}
			if planted && entries == 1 {
				t.Fatalf("planted batchServesNoOne: one entry, the test cannot see it")
			}
			waitBlocked(t, n1, 0)
		})
	}
}

// TestDeletedLast: a push gives no turn when the entry's last op of its
// key deletes it, and only then.
func TestDeletedLast(t *testing.T) {
	op := func(kind logrec.OpKind, key string) logrec.Op { return logrec.Op{Kind: kind, Key: []byte(key)} }
	for _, c := range []struct {
		name string
		ops  []logrec.Op
		want bool
	}{
		{"nothing after", nil, false},
		{"dropped", []logrec.Op{op(logrec.OpMeta, "q"), op(logrec.OpDrop, "q")}, true},
		{"deleted", []logrec.Op{op(logrec.OpDelete, "q")}, true},
		{"dropped and made again", []logrec.Op{op(logrec.OpDrop, "q"), op(logrec.OpSubPut, "q"), op(logrec.OpMeta, "q")}, false},
		{"another key dropped", []logrec.Op{op(logrec.OpDrop, "o"), op(logrec.OpMeta, "o")}, false},
		{"dropped, then another key", []logrec.Op{op(logrec.OpDrop, "q"), op(logrec.OpMeta, "o")}, true},
		{"flushed after", []logrec.Op{op(logrec.OpDrop, "q"), op(logrec.OpFlushAll, "")}, false},
	} {
		if got := deletedLast(c.ops, []byte("q")); got != c.want {
			t.Errorf("%s: deletedLast = %v, want %v", c.name, got, c.want)
		}
	}
}
