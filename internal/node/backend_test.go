package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
)

func TestLeaderErrorMapsToRespSentinels(t *testing.T) {
	other := errors.New("something else")
	for _, tc := range []struct {
		in, want error
	}{
		{nil, nil},
		{replication.ErrNotLeader, resp.ErrNotLeader},
		{fmt.Errorf("wrapped: %w", replication.ErrStaleEpoch), resp.ErrNotLeader},
		{replication.ErrWriteTimeout, resp.ErrNoReplicas},
		{fmt.Errorf("wrapped: %w", replication.ErrOverloaded), resp.ErrOverloaded},
		{other, other},
	} {
		if got := leaderError(tc.in); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("leaderError(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestFatalGoesToConfig checks that the leader's Fatal hook reaches
// Config.Fatal instead of exiting the process.
func TestFatalGoesToConfig(t *testing.T) {
	var got error
	n := testNode(t, "n1", func(c *Config) { c.Fatal = func(err error) { got = err } })
	want := errors.New("persist epoch failed")
	n.fatal(want)
	if got != want {
		t.Fatalf("Config.Fatal got %v, want %v", got, want)
	}
}

// TestForgetFollower: TANDEM.FORGET on the leader forgets a follower (it
// comes back once it reconnects); on a follower it is refused.
func TestForgetFollower(t *testing.T) {
	leader := testNode(t, "n1", nil)
	f := testNode(t, "n2", nil)
	follow(t, f, leader)
	known := func() bool {
		for _, fp := range leader.Status().Followers {
			if fp.ID == "n2" {
				return true
			}
		}
		return false
	}
	waitFor(t, "n2 to be known", 10*time.Second, known)
	ctx := context.Background()
	lc, fc := newClient(t, leader), newClient(t, f)
	if n, err := lc.Do(ctx, "TANDEM.FORGET", "n2").Int(); err != nil || n != 1 {
		t.Fatalf("TANDEM.FORGET n2 = %d, %v; want 1", n, err)
	}
	if n, err := lc.Do(ctx, "TANDEM.FORGET", "nobody").Int(); err != nil || n != 0 {
		t.Errorf("TANDEM.FORGET nobody = %d, %v; want 0", n, err)
	}
	if err := fc.Do(ctx, "TANDEM.FORGET", "n2").Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY ") {
		t.Errorf("TANDEM.FORGET on a follower: %v, want READONLY", err)
	}
	waitFor(t, "n2 to reconnect and be known again", 10*time.Second, known)
}

// TestInfoKeyspace: INFO's keyspace figures follow the writes (storage's
// counts, no scan), and a node with no key prints none, as Redis does.
func TestInfoKeyspace(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	keyspace := func() string {
		info, err := c.Info(ctx, "keyspace").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if strings.HasPrefix(l, "db0:") {
				return l
			}
		}
		return ""
	}
	if got := keyspace(); got != "" {
		t.Fatalf("empty node: %q", got)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, "a", "1", 0).Err())
	must(c.Set(ctx, "b", "2", time.Hour).Err())
	must(c.Set(ctx, "c", "3", 0).Err())
	must(c.Set(ctx, "a", "4", 0).Err())
	if got, want := keyspace(), "db0:keys=3,expires=1,avg_ttl=0"; got != want {
		t.Errorf("after 3 keys, 1 with a TTL: %q, want %q", got, want)
	}
	must(c.Del(ctx, "b", "nothing").Err())
	if got, want := keyspace(), "db0:keys=2,expires=0,avg_ttl=0"; got != want {
		t.Errorf("after DEL b: %q, want %q", got, want)
	}
	// A hash is one key, however many fields; DBSIZE reads the same counts.
	dbsize := func() int64 {
		n, err := c.DBSize(ctx).Result()
		must(err)
		return n
	}
	must(c.HSet(ctx, "h", "f1", "1", "f2", "2").Err())
	must(c.Expire(ctx, "h", time.Hour).Err())
	if got, want := keyspace(), "db0:keys=3,expires=1,avg_ttl=0"; got != want || dbsize() != 3 {
		t.Errorf("after a hash with a TTL: %q, DBSIZE %d, want %q and 3", got, dbsize(), want)
	}
	must(c.Del(ctx, "h").Err())
	if got, want := keyspace(), "db0:keys=2,expires=0,avg_ttl=0"; got != want || dbsize() != 2 {
		t.Errorf("after DEL h: %q, DBSIZE %d, want %q and 2", got, dbsize(), want)
	}
	must(c.FlushAll(ctx).Err())
	if got := keyspace(); got != "" || dbsize() != 0 {
		t.Errorf("after FLUSHALL: %q, DBSIZE %d, want none", got, dbsize())
	}
}
