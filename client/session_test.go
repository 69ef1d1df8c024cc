package client

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/node"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestSessionReads runs sessions against three nodes under the control
// plane whose followers apply every batch 30 ms late (real lag): under
// ReadYourWrites a session reads its own writes at once, from followers;
// a second session of the same user, and one started from the first's
// token, read them too; under Any the same reads are stale.
func TestSessionReads(t *testing.T) {
	tc := startClusterWith(t, "async", func(c *node.Config) {
		if c.ID != "n1" {
			c.Buggify.FollowerApplyDelay = 30 * time.Millisecond
		}
	})
	c := newClient(t, Options{Etcd: []string{tc.etcd.Endpoint}})
	testutil.Eventually(t, "the client to know both followers", 10*time.Second, func() (bool, string) {
		return len(c.replicaAddrs()) == 2, fmt.Sprint(c.replicaAddrs())
	})
	ctx := context.Background()
	const rounds = 15

	session := func(opt SessionOptions) *Session {
		s, err := c.NewSession(opt)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	read := func(s *Session, key string) int {
		t.Helper()
		v, err := s.Get(ctx, key).Text()
		if err != nil && err != redis.Nil {
			t.Fatalf("read %s: %v", key, err)
		}
		n, _ := strconv.Atoi(v)
		return n
	}

	own, device, any := session(SessionOptions{User: "alice"}), session(SessionOptions{User: "alice"}), session(SessionOptions{Policy: Any})
	ownStale, deviceStale, tokenStale, anyStale := 0, 0, 0, 0
	for i := 1; i <= rounds; i++ {
		if err := own.Do(ctx, "set", "k", i).Err(); err != nil {
			t.Fatal(err)
		}
		if read(own, "k") != i {
			ownStale++
		}
		if read(device, "k") != i {
			deviceStale++
		}
		handed := session(SessionOptions{Token: own.Token()})
		if read(handed, "k") != i {
			tokenStale++
		}
		if err := any.Do(ctx, "set", "a", i).Err(); err != nil {
			t.Fatal(err)
		}
		if read(any, "a") != i {
			anyStale++
		}
	}
	f, l, e := own.Stats()
	t.Logf("ryw: %d stale of %d; reads served by followers %d, by the leader %d, read-elsewhere %d", ownStale, rounds, f, l, e)
	t.Logf("same user, other session: %d stale; token handed over: %d stale; any: %d stale", deviceStale, tokenStale, anyStale)
	if ownStale+deviceStale+tokenStale > 0 {
		t.Errorf("stale reads: own %d, other device %d, handed token %d", ownStale, deviceStale, tokenStale)
	}
	if f == 0 {
		t.Errorf("no ryw read was served by a follower")
	}
	if anyStale == 0 {
		t.Errorf("no stale read under Any: the lag injector does not work")
	}
	// The textbook variants: the leader for a while after a write, and
	// for keys under a prefix; under Any, so only the routing keeps
	// these reads fresh.
	after := session(SessionOptions{Policy: Any, LeaderAfterWrite: time.Minute})
	prefixed := session(SessionOptions{Policy: Any, LeaderPrefixes: []string{"user:"}})
	for i := 1; i <= 5; i++ {
		if err := after.Do(ctx, "set", "b", i).Err(); err != nil {
			t.Fatal(err)
		}
		if got := read(after, "b"); got != i {
			t.Errorf("LeaderAfterWrite: read b = %d, want %d", got, i)
		}
		if err := prefixed.Do(ctx, "set", "user:1", i).Err(); err != nil {
			t.Fatal(err)
		}
		if got := read(prefixed, "user:1"); got != i {
			t.Errorf("LeaderPrefixes: read user:1 = %d, want %d", got, i)
		}
	}
	if f, l, _ := after.Stats(); f != 0 || l != 5 {
		t.Errorf("LeaderAfterWrite: %d follower reads, %d leader reads; want 0 and 5", f, l)
	}
	if _, err := c.NewSession(SessionOptions{Policy: "fast"}); err == nil {
		t.Errorf("NewSession accepted an unknown policy")
	}
	if _, err := c.NewSession(SessionOptions{Token: "t1:x"}); err == nil {
		t.Errorf("NewSession accepted a malformed token")
	}
	if Bounded(10*time.Millisecond) != "bounded 10" || Bounded(1500*time.Microsecond) != "bounded 2" {
		t.Errorf("Bounded: %q %q", Bounded(10*time.Millisecond), Bounded(1500*time.Microsecond))
	}
}

// TestSessionReadsAcrossFailover: under quorum 1 (n2 has every
// acknowledged write; n3 applies 1 s late), after the leader becomes
// n2, a session's token and its user's writes are still honoured:
// by the new leader, whose per-user floor is its start position, and by
// the followers, which wait for it or send the read to the leader.
func TestSessionReadsAcrossFailover(t *testing.T) {
	tc := startClusterWith(t, "quorum 1", func(c *node.Config) {
		if c.ID == "n3" {
			c.Buggify.FollowerApplyDelay = time.Second
		}
	})
	c := newClient(t, Options{Etcd: []string{tc.etcd.Endpoint}})
	ctx := context.Background()
	a, err := c.NewSession(SessionOptions{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	// n3 streams (it is not being seeded, which would refuse its reads)
	// before the writes it will lag behind.
	if err := a.Do(ctx, "set", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	n3 := tc.direct("n3")
	testutil.Eventually(t, "n3 to apply the first write", 10*time.Second, func() (bool, string) {
		lsn, err := n3.Do(ctx, "tandem.lsn").Int()
		return err == nil && lsn >= 1, fmt.Sprint(lsn, err)
	})
	const n = 20
	for i := 1; i <= n; i++ {
		if err := a.Do(ctx, "set", "x", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tok := a.Token()
	tc.setLeader("n2")
	testutil.Eventually(t, "the client to follow n2", 5*time.Second, func() (bool, string) {
		id, _, epoch := c.Leader()
		return id == "n2" && epoch == 2, fmt.Sprint(id, epoch)
	})
	check := func(what string, s *Session, want int) {
		t.Helper()
		for range 10 {
			v, err := s.Get(ctx, "x").Int()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if v != want {
				t.Fatalf("%s read x = %d, want %d", what, v, want)
			}
		}
	}
	device, _ := c.NewSession(SessionOptions{User: "bob"})
	check("the user's other session after the failover", device, n)
	handed, _ := c.NewSession(SessionOptions{Token: tok})
	check("a session given the token before the failover", handed, n)
	check("the writing session", a, n)
	if err := a.Do(ctx, "set", "x", n+1).Err(); err != nil {
		t.Fatal(err)
	}
	check("the writing session after a write to the new leader", a, n+1)
	check("the user's other session after a write to the new leader", device, n+1)
	f, l, e := device.Stats()
	t.Logf("other device: reads served by followers %d, the leader %d, read-elsewhere %d", f, l, e)
}
