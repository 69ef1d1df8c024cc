package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// The redsync-style lock release: delete the lock only if it still holds
// this owner's token.
var unlock = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then
	return redis.call("del", KEYS[1])
else
	return 0
end`)

// A fixed-window rate limiter: ARGV[1] calls per ARGV[2] ms.
var limiter = redis.NewScript(`local n = redis.call("incr", KEYS[1])
if n == 1 then redis.call("pexpire", KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return 1`)

// A script no two runs of which write the same: replicated as its
// effects, every replica holds the leader's value.
var random = redis.NewScript(`local v = tostring(math.random()) .. ":" .. redis.call("time")[2]
redis.call("set", KEYS[1], v)
redis.call("hset", KEYS[2], "v", v, "n", redis.call("incr", KEYS[3]))
return v`)

func lsnOf(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	n, err := c.Do(context.Background(), "TANDEM.LSN").Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestScriptsReplicateEffects: a lock and a rate limiter run as scripts
// on the leader; each script that writes is one log entry, one that only
// reads is none; the followers converge to the leader's keyspace without
// running Lua (their script caches stay empty, and a script whose writes
// are random lands on them as the leader's values).
func TestScriptsReplicateEffects(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	leader := client(t, c.Node(1).RESPAddr)

	// The lock.
	if ok, err := leader.SetNX(ctx, "lock", "owner-1", 30*time.Second).Result(); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	before := lsnOf(t, leader)
	if n, err := unlock.Run(ctx, leader, []string{"lock"}, "owner-2").Int(); err != nil || n != 0 {
		t.Fatalf("release by another owner: %d, %v", n, err)
	}
	if after := lsnOf(t, leader); after != before {
		t.Fatalf("a script that only read logged %d entries", after-before)
	}
	if n, err := unlock.Run(ctx, leader, []string{"lock"}, "owner-1").Int(); err != nil || n != 1 {
		t.Fatalf("release by the owner: %d, %v", n, err)
	}
	if err := leader.Get(ctx, "lock").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("lock after release: %v", err)
	}

	// The rate limiter: 5 calls in the window pass, the rest are refused.
	allowed := 0
	for range 12 {
		n, err := limiter.Run(ctx, leader, []string{"rate:user1"}, 5, 60000).Int()
		if err != nil {
			t.Fatal(err)
		}
		allowed += n
	}
	if allowed != 5 {
		t.Fatalf("rate limiter allowed %d of 12, want 5", allowed)
	}

	// Three writes, one entry.
	before = lsnOf(t, leader)
	v, err := random.Run(ctx, leader, []string{"r", "rh", "rn"}).Text()
	if err != nil {
		t.Fatal(err)
	}
	if after := lsnOf(t, leader); after != before+1 {
		t.Fatalf("a script of three writes logged %d entries, want 1", after-before)
	}

	// A script's error after a write: the write stands, as in Redis.
	if err := leader.HSet(ctx, "h2", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	err = leader.Eval(ctx, `redis.call("set", KEYS[1], "2"); return redis.call("incr", KEYS[2])`, []string{"partial", "h2"}).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("script that met a hash: %v", err)
	}

	waitConverged(t, c)
	sha := []string{unlock.Hash(), limiter.Hash(), random.Hash()}
	for _, id := range []int{2, 3} {
		f := client(t, c.Node(id).RESPAddr)
		// A follower answers LOADING until it has caught up once.
		testutil.Eventually(t, "the follower to serve reads", 10*time.Second, func() (bool, string) {
			err := f.Get(ctx, "r").Err()
			return err == nil || !strings.HasPrefix(err.Error(), "LOADING"), fmt.Sprint(err)
		})
		if got, err := f.Get(ctx, "r").Result(); err != nil || got != v {
			t.Errorf("n%d: r = %q, %v; the leader's script wrote %q", id, got, err, v)
		}
		if got, err := f.HGet(ctx, "rh", "v").Result(); err != nil || got != v {
			t.Errorf("n%d: rh.v = %q, %v", id, got, err)
		}
		if got, err := f.Get(ctx, "partial").Result(); err != nil || got != "2" {
			t.Errorf("n%d: partial = %q, %v (the write before the error)", id, got, err)
		}
		if ttl, err := f.PTTL(ctx, "rate:user1").Result(); err != nil || ttl <= 0 {
			t.Errorf("n%d: rate:user1 pttl = %v, %v", id, ttl, err)
		}
		// No Lua ran here: the follower never saw a script.
		if ex, err := f.ScriptExists(ctx, sha...).Result(); err != nil || ex[0] || ex[1] || ex[2] {
			t.Errorf("n%d: SCRIPT EXISTS = %v, %v: a follower cached a script it should never have run", id, ex, err)
		}
		// A follower runs read-only scripts, and refuses the others.
		if got, err := f.EvalRO(ctx, `return redis.call("get", KEYS[1])`, []string{"r"}).Text(); err != nil || got != v {
			t.Errorf("n%d: EVAL_RO = %q, %v", id, got, err)
		}
		err := f.Eval(ctx, `return redis.call("get", KEYS[1])`, []string{"r"}).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
			t.Errorf("n%d: EVAL on a follower: %v", id, err)
		}
		err = f.Eval(ctx, "#!lua flags=no-writes\nreturn 1", nil).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
			t.Errorf("n%d: EVAL of a no-writes script on a follower: %v (tandem runs EVAL on the leader only; EVAL_RO reads)", id, err)
		}
	}
}

// TestScriptCacheAfterFailover: SCRIPT LOAD reaches only the leader it
// was sent to; after a failover EVALSHA answers NOSCRIPT on the new
// leader, and go-redis's Script.Run (EVALSHA, then EVAL on NOSCRIPT)
// works unchanged.
func TestScriptCacheAfterFailover(t *testing.T) {
	c := startControlled(t, 3, nil)
	ctx := context.Background()
	old, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := client(t, c.Node(old).RESPAddr)
	sha, err := l.ScriptLoad(ctx, `return redis.call("incr", KEYS[1])`).Result()
	if err != nil || sha != redis.NewScript(`return redis.call("incr", KEYS[1])`).Hash() {
		t.Fatalf("SCRIPT LOAD: %s, %v", sha, err)
	}
	if n, err := l.EvalSha(ctx, sha, []string{"n"}).Int(); err != nil || n != 1 {
		t.Fatalf("EVALSHA on the leader: %d, %v", n, err)
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	var nl *redis.Client
	testutil.Eventually(t, "a new leader", 15*time.Second, func() (bool, string) {
		id, _, err := c.Leader(ctx)
		if err != nil || id == old {
			return false, fmt.Sprint(id, err)
		}
		nl = redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, MaxRetries: -1})
		if err := nl.Set(ctx, "probe", "1", 0).Err(); err != nil {
			nl.Close()
			return false, err.Error()
		}
		return true, ""
	})
	defer nl.Close()
	err = nl.EvalSha(ctx, sha, []string{"n"}).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("EVALSHA on the new leader: %v, want NOSCRIPT", err)
	}
	if n, err := redis.NewScript(`return redis.call("incr", KEYS[1])`).Run(ctx, nl, []string{"n"}).Int(); err != nil || n != 2 {
		t.Fatalf("Script.Run on the new leader: %d, %v", n, err)
	}
	if n, err := nl.EvalSha(ctx, sha, []string{"n"}).Int(); err != nil || n != 3 {
		t.Fatalf("EVALSHA after the fallback cached it: %d, %v", n, err)
	}
}

// TestScriptAllOrNothingUnderKill: clients run a script of three writes
// (two strings and a hash field, one value) through whichever node leads,
// in semisync; the leader is killed -9 twice. On every node, once
// converged, each script's writes are all there or none (one log entry),
// and no acknowledged script is lost.
func TestScriptAllOrNothingUnderKill(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "semisync"}
		cfg.OrchestratorArgs = []string{"--mode", "semisync"}
	})
	testutil.Eventually(t, "a published sync set", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return len(top.SyncSet) == 1, fmt.Sprintf("%+v", top)
	})
	three := redis.NewScript(`redis.call("set", KEYS[1], ARGV[1])
redis.call("set", KEYS[2], ARGV[1])
redis.call("hset", KEYS[3], "v", ARGV[1])
return 1`)
	ctx, cancel := context.WithCancel(context.Background())
	leaders := watchLeader(ctx, c)
	var mu sync.Mutex
	var acked []string
	sent := make([]int, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients := map[int]*redis.Client{}
			defer func() {
				for _, cl := range clients {
					cl.Close()
				}
			}()
			for i := 0; ctx.Err() == nil; i++ {
				id, changed := leaders.get()
				if id == 0 {
					leaders.await(ctx, changed)
					continue
				}
				cl := clients[id]
				if cl == nil {
					cl = redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, Protocol: 2, MaxRetries: -1,
						DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 250 * time.Millisecond, PoolSize: 1})
					clients[id] = cl
				}
				v := fmt.Sprintf("%d:%d", w, i)
				mu.Lock()
				sent[w] = i + 1
				mu.Unlock()
				if err := three.Run(ctx, cl, []string{"a:" + v, "b:" + v, "h:" + v}, v).Err(); err == nil {
					mu.Lock()
					acked = append(acked, v)
					mu.Unlock()
				} else {
					leaders.await(ctx, changed)
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for round := 1; round <= 2; round++ {
		testutil.Eventually(t, "some scripts", 15*time.Second, func() (bool, string) { return count() > 200*round, "" })
		old, _, err := c.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(old); err != nil {
			t.Fatal(err)
		}
		before := count()
		testutil.Eventually(t, "scripts acknowledged by a new leader", 15*time.Second, func() (bool, string) { return count() > before+50, "" })
		waitStatus(t, c, old, "following the new leader", func(s statusdoc.Node) bool {
			return s.Role == statusdoc.RoleFollower && s.State == "streaming"
		})
	}
	cancel()
	wg.Wait()
	waitConverged(t, c)
	bg := context.Background()
	for _, n := range c.Nodes() {
		cl := client(t, n.RESPAddr)
		testutil.Eventually(t, "the node to serve reads", 10*time.Second, func() (bool, string) {
			err := cl.Get(bg, "probe").Err()
			return err == nil || errors.Is(err, redis.Nil), fmt.Sprint(err)
		})
		partial, present := 0, 0
		for w, k := range sent {
			for i := range k {
				v := fmt.Sprintf("%d:%d", w, i)
				a, _ := cl.Get(bg, "a:"+v).Result()
				b, _ := cl.Get(bg, "b:"+v).Result()
				h, _ := cl.HGet(bg, "h:"+v, "v").Result()
				switch {
				case a == v && b == v && h == v:
					present++
				case a == "" && b == "" && h == "":
				default:
					partial++
					t.Errorf("%s: script %s half applied: a=%q b=%q h=%q", n.Name, v, a, b, h)
				}
			}
		}
		for _, v := range acked {
			if a, _ := cl.Get(bg, "a:"+v).Result(); a != v {
				t.Errorf("%s: acknowledged script %s lost", n.Name, v)
			}
		}
		t.Logf("%s: %d scripts applied whole, %d partial, %d acknowledged", n.Name, present, partial, len(acked))
	}
}
