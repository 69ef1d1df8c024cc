package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/storage"
	"github.com/tandemdb/tandem/internal/testutil"
)

// pubRec records the messages one node delivered, and checks, as each
// arrives, that the write published before it is readable on that node.
// A follower's pubRec holds what it is handed until the follower says the
// run is delivered (FollowerConfig.Delivered), as the node's registry
// holds its subscribers' wake-ups: a message it is never told of is not
// counted as delivered.
type pubRec struct {
	db       *storage.DB // nil: do not check writes
	held     bool        // got only at delivered
	mu       sync.Mutex
	queued   []string
	got      []string
	problems []string
}

func (r *pubRec) delivered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, r.queued...)
	r.queued = nil
}

func (r *pubRec) deliver(channel, message []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		r.queued = append(r.queued, string(channel)+"="+string(message))
	} else {
		r.got = append(r.got, string(channel)+"="+string(message))
	}
	// "w<i>" was published right after the write k=i was acknowledged.
	if r.db == nil || !strings.HasPrefix(string(message), "w") {
		return
	}
	want, _ := strconv.Atoi(string(message[1:]))
	v, ok, err := storage.View{DB: r.db, NowMs: time.Now().UnixMilli()}.Get([]byte("k"))
	have, _ := strconv.Atoi(string(v.Data))
	if err != nil || !ok || have < want {
		r.problems = append(r.problems, fmt.Sprintf("%s delivered before the write k=%d was applied (k=%q, %v, %v)", message, want, v.Data, ok, err))
	}
}

func (r *pubRec) snapshot() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...), append([]string(nil), r.problems...)
}

// runPublishOrder publishes on the leader (some after a write) and
// through a follower (forwarded to the leader), and returns what is wrong
// with the deliveries on the three nodes: each must deliver every message
// once, in one order for all nodes, the leader's in their publish order,
// and each "w" message after its write. reorder plants the follower fault.
func runPublishOrder(t *testing.T, reorder bool, within time.Duration) []string {
	leaderRec := &pubRec{}
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.DeliverLocal = func(ch, msg []byte) int { leaderRec.deliver(ch, msg); return 1 }
	})
	recs := []*pubRec{{held: true}, {held: true}}
	var fs []*testFollower
	for i, r := range recs {
		n := &testFollower{id: fmt.Sprintf("f%d", i+1), fs: vfs.NewMem(), tweak: func(c *FollowerConfig) {
			r.db = c.DB
			c.Deliver, c.Delivered = r.deliver, r.delivered
			c.Buggify.FollowerPubReorder = reorder
		}}
		n.start(t, l.dialer)
		t.Cleanup(func() { n.stop(t) })
		fs = append(fs, n)
	}
	waitConnected(t, l, 2)
	waitFor(t, "followers to take messages", func() (bool, string) {
		return fs[0].f.pub.fwdOK.Load() && fs[1].f.pub.fwdOK.Load(), ""
	})

	const n = 300
	var fromLeader, fromFollower []string
	for i := range n {
		switch {
		case i%3 == 0:
			propose(t, l, putExec("k", strconv.Itoa(i)))
			m := "w" + strconv.Itoa(i)
			l.Publish([]byte("ch"), []byte(m))
			fromLeader = append(fromLeader, "ch="+m)
		case i%3 == 1:
			m := "f" + strconv.Itoa(i)
			if !fs[0].f.Publish([]byte("fw"), []byte(m)) {
				t.Fatalf("follower refused to forward %s", m)
			}
			fromFollower = append(fromFollower, "fw="+m)
		default:
			m := "p" + strconv.Itoa(i)
			l.Publish([]byte("ch"), []byte(m))
			fromLeader = append(fromLeader, "ch="+m)
		}
	}
	total := len(fromLeader) + len(fromFollower)
	all := append([]*pubRec{leaderRec}, recs...)
	testutil.Until(within, func() bool {
		for _, r := range all {
			if got, _ := r.snapshot(); len(got) < total {
				return false
			}
		}
		return true
	})

	var problems []string
	ref, _ := leaderRec.snapshot()
	for i, r := range all {
		got, ps := r.snapshot()
		problems = append(problems, ps...)
		if len(got) != total {
			problems = append(problems, fmt.Sprintf("node %d delivered %d messages, want %d", i, len(got), total))
		}
		if !inOrder(got, fromLeader) || !inOrder(got, fromFollower) {
			problems = append(problems, fmt.Sprintf("node %d delivered out of publish order", i))
		}
		if i > 0 && strings.Join(got, ",") != strings.Join(ref, ",") {
			problems = append(problems, fmt.Sprintf("node %d's order differs from the leader's", i))
		}
	}
	return problems
}

// inOrder: the messages of want appear in got exactly once each, in
// want's order.
func inOrder(got, want []string) bool {
	pos := map[string]int{}
	for i, g := range got {
		if _, dup := pos[g]; dup {
			return false
		}
		pos[g] = i
	}
	last := -1
	for _, w := range want {
		p, ok := pos[w]
		if !ok || p < last {
			return false
		}
		last = p
	}
	return true
}

func TestPublishReachesEveryNodeInOrder(t *testing.T) {
	if problems := runPublishOrder(t, false, waitTimeout); len(problems) > 0 {
		t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// TestPublishOrderCatchesReorder: the planted fault (a follower delivers
// in swapped pairs) is caught by the same check.
func TestPublishOrderCatchesReorder(t *testing.T) {
	problems := runPublishOrder(t, true, 2*time.Second)
	for _, p := range problems {
		if strings.Contains(p, "order") {
			t.Logf("caught: %s (and %d more problems)", p, len(problems)-1)
			return
		}
	}
	t.Fatalf("a follower delivering out of order went unnoticed: %q", problems)
}

// TestWritePublishesOnceApplied: a write's messages (Result.Publish, its
// keyspace notifications) are published by the leader once the write is
// applied there and before its writer is answered, so every node
// delivers each after the write is readable on it, once, in log order;
// a write that fails publishes nothing.
func TestWritePublishesOnceApplied(t *testing.T) {
	var l *testLeader
	leaderRec := &pubRec{}
	l = newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		leaderRec.db = c.DB
		c.DeliverLocal = func(ch, msg []byte) int { leaderRec.deliver(ch, msg); return 1 }
	})
	rec := &pubRec{}
	f := &testFollower{id: "f1", fs: vfs.NewMem(), tweak: func(c *FollowerConfig) {
		rec.db = c.DB
		c.Deliver = rec.deliver
	}}
	f.start(t, l.dialer)
	t.Cleanup(func() { f.stop(t) })
	waitConnected(t, l, 1)
	waitFor(t, "the follower to take messages", func() (bool, string) { return f.f.pub.fwdOK.Load(), "" })

	const n = 100
	var want []string
	for i := 1; i <= n; i++ {
		m := "w" + strconv.Itoa(i)
		exec := func(v commands.View, now int64) (commands.Result, error) {
			res, err := putExec("k", strconv.Itoa(i))(v, now)
			res.Publish = []commands.Message{{Channel: []byte("ks"), Payload: []byte(m)}}
			return res, err
		}
		if i%10 == 0 {
			// Fails after building its messages: nothing is published.
			if _, _, err := l.Propose(context.Background(), func(v commands.View, now int64) (commands.Result, error) {
				res, _ := exec(v, now)
				return res, errors.New("refused")
			}); err == nil {
				t.Fatal("a failing exec was accepted")
			}
		}
		propose(t, l, exec)
		want = append(want, "ks="+m)
		if got, _ := leaderRec.snapshot(); len(got) != i {
			t.Fatalf("write %d answered with %d messages delivered on the leader, want %d", i, len(got), i)
		}
	}
	testutil.Until(waitTimeout, func() bool {
		got, _ := rec.snapshot()
		return len(got) >= n
	})
	for name, r := range map[string]*pubRec{"leader": leaderRec, "follower": rec} {
		got, problems := r.snapshot()
		if len(problems) > 0 {
			t.Errorf("%s: %s", name, strings.Join(problems, "; "))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s delivered %v, want %v", name, got, want)
		}
	}
}

// TestSettingsReachEveryFollower: the leader's settings are the first
// thing on every follower stream and follow every change in publish
// order, so a follower (the next leader after a failover) has the
// cluster's; a follower that joins later starts with the current ones.
func TestSettingsReachEveryFollower(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Settings = Settings{NotifyKeyspaceEvents: "KEA"}
	})
	type rec struct {
		mu  sync.Mutex
		got []string
	}
	add := func(r *rec, s string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, s)
	}
	follower := func(id string, r *rec) {
		n := &testFollower{id: id, fs: vfs.NewMem(), tweak: func(c *FollowerConfig) {
			c.Deliver = func(ch, msg []byte) { add(r, string(ch)+"="+string(msg)) }
			c.SetSettings = func(s Settings) { add(r, "settings="+s.NotifyKeyspaceEvents) }
		}}
		n.start(t, l.dialer)
		t.Cleanup(func() { n.stop(t) })
	}
	wait := func(r *rec, want ...string) {
		t.Helper()
		ok := testutil.Until(10*time.Second, func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.got) >= len(want)
		})
		r.mu.Lock()
		defer r.mu.Unlock()
		if !ok || strings.Join(r.got, ",") != strings.Join(want, ",") {
			t.Fatalf("the follower got %q, want %q", r.got, want)
		}
	}
	var f1, f2 rec
	follower("f1", &f1)
	waitConnected(t, l, 1)
	wait(&f1, "settings=KEA")
	l.Publish([]byte("ch"), []byte("a"))
	l.PublishSettings(Settings{NotifyKeyspaceEvents: "Elx"})
	l.Publish([]byte("ch"), []byte("b"))
	wait(&f1, "settings=KEA", "ch=a", "settings=Elx", "ch=b")
	if got := l.Settings().NotifyKeyspaceEvents; got != "Elx" {
		t.Fatalf("the leader's settings = %q, want Elx", got)
	}
	follower("f2", &f2)
	waitConnected(t, l, 2)
	wait(&f2, "settings=Elx")
}

// TestCloneBoth: a queued message owns its channel and payload, in one
// allocation, neither growing into the other.
func TestCloneBoth(t *testing.T) {
	channel, message := []byte("news"), []byte("hello")
	var ch, msg []byte
	if n := testing.AllocsPerRun(10, func() { ch, msg = cloneBoth(channel, message) }); n != 1 {
		t.Errorf("cloneBoth: %v allocations, want 1", n)
	}
	channel[0], message[0] = 'X', 'X'
	if string(ch) != "news" || string(msg) != "hello" {
		t.Fatalf("cloneBoth = %q, %q: aliases its arguments", ch, msg)
	}
	_ = append(ch, '!')
	if string(msg) != "hello" {
		t.Fatalf("appending to the channel changed the message to %q", msg)
	}
}
