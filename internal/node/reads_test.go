package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/testutil"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestReadPoliciesUnderLag writes a key on the leader and reads it at once
// from a follower that applies every batch late (Buggify
// FollowerApplyDelay: real lag, in the same process), under each read
// policy. Under any the reads are stale; under ryw (the token handed from
// the writing connection, as a web app hands it in a cookie), monotonic,
// linearizable, ryw by user (another connection of the same user, no
// token) and bounded (measured against the writes acknowledged more than
// the bound before the read began) never. One follower waits out its lag
// within the read wait; the other lags past it and answers TRYAGAIN read
// elsewhere, on which the reader goes to the leader, as a proxy or the
// tandem client does.
func TestReadPoliciesUnderLag(t *testing.T) {
	leader := testNode(t, "l", nil)
	near := testNode(t, "near", func(c *Config) { c.Buggify.FollowerApplyDelay = 30 * time.Millisecond })
	far := testNode(t, "far", func(c *Config) {
		c.Buggify.FollowerApplyDelay = 150 * time.Millisecond
		c.ReadWait = 50 * time.Millisecond
	})
	follow(t, near, leader)
	follow(t, far, leader)
	ctx := context.Background()
	const rounds = 12
	// elsewhereOn counts the reads each node answered "read elsewhere",
	// by policy, as the readers saw them: what the node's counters must
	// say. (How many there are is up to the machine: a reader that a
	// loaded machine holds up past the far follower's lag less its read
	// wait gets its read served there.)
	elsewhereOn := map[*Node]map[string]int{near: {}, far: {}}
	// A node that just started serves follower reads once it has caught
	// up with its leader (LOADING before).
	for _, f := range []*Node{near, far} {
		testutil.Eventually(t, f.cfg.ID+" to catch up", 10*time.Second, func() (bool, string) {
			r, ok := f.current().(*following)
			return ok && r.f.CaughtUp(), "not caught up"
		})
	}

	for _, tc := range []struct {
		name   string
		policy []any // TANDEM.READPOLICY arguments
		token  bool  // hand the writer's token to the reader
		user   bool  // writer and reader name the same user instead
		bound  time.Duration
	}{
		{name: "any", policy: []any{"any"}},
		{name: "ryw", policy: []any{"ryw"}, token: true},
		{name: "monotonic", policy: []any{"monotonic"}, token: true},
		{name: "linearizable", policy: []any{"linearizable"}},
		{name: "ryw-user", policy: []any{"ryw"}, user: true},
		{name: "bounded", policy: []any{"bounded", "10"}, bound: 10 * time.Millisecond},
	} {
		for _, f := range []*Node{near, far} {
			t.Run(tc.name+"/"+f.cfg.ID, func(t *testing.T) {
				w, r, fallback := newClient(t, leader), newClient(t, f), newClient(t, leader)
				user := "u-" + tc.name + "-" + f.cfg.ID
				for _, c := range []*redis.Client{w, r, fallback} {
					if tc.user {
						mustDo(t, c, "tandem.user", user)
					}
					mustDo(t, c, append([]any{"tandem.readpolicy"}, tc.policy...)...)
				}
				key := "k-" + tc.name + "-" + f.cfg.ID
				var acked []time.Time // acked[i]: when write i+1 was acknowledged
				stale, elsewhere, last := 0, 0, 0
				for i := 1; i <= rounds; i++ {
					mustDo(t, w, "set", key, strconv.Itoa(i))
					acked = append(acked, time.Now())
					if tc.token {
						tok := mustDo(t, w, "tandem.token").(string)
						mustDo(t, r, "tandem.token", tok)
					}
					began := time.Now()
					v, err := r.Get(ctx, key).Result()
					if err != nil && strings.HasPrefix(err.Error(), "TRYAGAIN tandem: read elsewhere: ") {
						elsewhere++
						if tc.token {
							mustDo(t, fallback, "tandem.token", mustDo(t, r, "tandem.token"))
						}
						v, err = fallback.Get(ctx, key).Result()
					}
					if err != nil && err != redis.Nil {
						t.Fatalf("read %d: %v", i, err)
					}
					got, _ := strconv.Atoi(v)
					// The write the read must reflect: the session's own
					// (and so every earlier one), or under bounded the
					// last acknowledged more than the bound before it began.
					want := i
					if tc.bound > 0 {
						want = 0
						for j, at := range acked {
							if at.Before(began.Add(-tc.bound)) {
								want = j + 1
							}
						}
					}
					if got < want || got < last {
						stale++
					}
					last = max(last, got)
				}
				elsewhereOn[f][tc.policy[0].(string)] += elsewhere
				t.Logf("%s on %s: %d of %d reads stale, %d answered read elsewhere", tc.name, f.cfg.ID, stale, rounds, elsewhere)
				switch {
				case tc.name == "any" && stale == 0:
					t.Errorf("no stale read under any: the lag injector does not work")
				case tc.name != "any" && stale > 0:
					t.Errorf("%d stale reads under %s", stale, tc.name)
				case tc.name != "any" && tc.name != "bounded" && f == far && elsewhere == 0:
					t.Errorf("the far follower (lag above its read wait) never answered read elsewhere")
				}
			})
		}
	}

	// Counted per policy and outcome (INFO and /metrics show them).
	if got, want := far.reads[resp.PolicyRYW][readElsewhere].Load(), elsewhereOn[far]["ryw"]; got != uint64(want) { // ryw and ryw-user
		t.Errorf("far follower counted %d ryw reads answered elsewhere, its readers saw %d", got, want)
	}
	if got := near.reads[resp.PolicyAny][readServed].Load(); got != rounds {
		t.Errorf("near follower counted %d reads served under any, want %d", got, rounds)
	}
	if info := newClient(t, near).Info(ctx, "replication").Val(); !strings.Contains(info, "tandem_read_staleness_ms:") {
		t.Errorf("follower INFO has no tandem_read_staleness_ms:\n%s", info)
	}
}

func mustDo(t *testing.T, c *redis.Client, args ...any) any {
	t.Helper()
	v, err := c.Do(context.Background(), args...).Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

// TestTokenFromAnotherHistory: a token the leader's history replaced is
// refused with a clear error; one of a later epoch than a follower knows
// makes it answer read elsewhere; the leader serves the positions it has.
func TestTokenFromAnotherHistory(t *testing.T) {
	leader := testNode(t, "l", nil)
	f := testNode(t, "f", nil)
	follow(t, f, leader)
	ctx := context.Background()
	c := newClient(t, leader)
	mustDo(t, c, "set", "a", "1")
	// A new leadership (static: the next epoch) writes lsn 2.
	leader.Fence("test: a new leadership")
	if err := leader.Lead(); err != nil {
		t.Fatal(err)
	}
	epoch := leader.db.Epoch()
	c = newClient(t, leader)
	mustDo(t, c, "set", "a", "2")
	if tok := mustDo(t, c, "tandem.token").(string); tok != "t1:"+strconv.FormatUint(epoch, 10)+":2" {
		t.Fatalf("token after the write = %s, want epoch %d lsn 2", tok, epoch)
	}
	// The previous epoch at lsn 2: an entry this history replaced (as
	// when a write acknowledged under async is lost in a failover).
	c = newClient(t, leader)
	mustDo(t, c, "tandem.token", "t1:"+strconv.FormatUint(epoch-1, 10)+":2")
	if err := c.Get(ctx, "a").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR tandem: the session's position is not in this cluster's history") {
		t.Errorf("leader, replaced token: %v", err)
	}
	mustDo(t, c, "tandem.token", "reset")
	if err := c.Get(ctx, "a").Err(); err != nil {
		t.Errorf("leader after TANDEM.TOKEN RESET: %v", err)
	}
	// This leadership's epoch, past what it has written: never handed out.
	mustDo(t, c, "tandem.token", "t1:"+strconv.FormatUint(epoch, 10)+":1000")
	if err := c.Get(ctx, "a").Err(); err == nil || !strings.Contains(err.Error(), "was never written: this leadership has written up to lsn 2") {
		t.Errorf("leader, a position of its epoch it never wrote: %v", err)
	}
	mustDo(t, c, "tandem.token", "reset")
	r := newClient(t, f)
	later := strconv.FormatUint(epoch+1, 10)
	testutil.Eventually(t, "the follower to apply lsn 2", 10*time.Second, func() (bool, string) {
		return f.db.Applied() == 2, fmt.Sprint("applied ", f.db.Applied())
	})
	for _, tc := range []struct {
		c        *redis.Client
		tok, err string
	}{
		// A later epoch than any node has seen, past the end: the
		// follower may yet apply it and waits; the leader is not the
		// latest.
		{r, "t1:" + later + ":3", "TRYAGAIN tandem: read elsewhere: this node has not applied the position " + later + ":3 within the read wait"},
		{c, "t1:" + later + ":3", "TRYAGAIN tandem: read elsewhere: the position " + later + ":3 is from a later epoch than this leader's"},
		// A later epoch at an lsn both hold from an older one: neither
		// can serve it (a follower never declares a token lost).
		{r, "t1:" + later + ":2", "TRYAGAIN tandem: read elsewhere: this node's history differs from the position " + later + ":2"},
		{c, "t1:" + later + ":2", "TRYAGAIN tandem: read elsewhere: this node's history differs from the position " + later + ":2"},
	} {
		mustDo(t, tc.c, "tandem.token", "reset")
		mustDo(t, tc.c, "tandem.token", tc.tok)
		if err := tc.c.Get(ctx, "a").Err(); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("token %s: %v, want %q", tc.tok, err, tc.err)
		}
	}

	// A leadership that has written nothing yet (it began after lsn 2):
	// an entry of the previous epoch past its start is lost already, as
	// an async leader's acknowledged write its successor never had.
	leader.Fence("test: another leadership")
	if err := leader.Lead(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, leader)
	mustDo(t, c, "tandem.token", "t1:"+strconv.FormatUint(epoch, 10)+":3")
	if err := c.Get(ctx, "a").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR tandem: the session's position is not in this cluster's history") {
		t.Errorf("new leader, the previous epoch's position past its start: %v", err)
	}
}

func TestUserPositions(t *testing.T) {
	pos := func(e, n uint64) logrec.Position { return logrec.Position{Epoch: e, LSN: n} }
	u := newUserPositions(pos(2, 10), 2)
	if got := u.get("a"); got != pos(2, 10) {
		t.Errorf("unknown user = %v, want the start floor", got)
	}
	u.record("a", pos(3, 12))
	u.record("b", pos(3, 11))
	u.record("a", pos(3, 13))
	u.record("c", pos(3, 14)) // evicts b (least recent): the floor is its position
	for id, want := range map[string]logrec.Position{"a": pos(3, 13), "c": pos(3, 14), "b": pos(3, 11), "z": pos(3, 11)} {
		if got := u.get(id); got != want {
			t.Errorf("get(%s) = %v, want %v", id, got, want)
		}
	}
}
