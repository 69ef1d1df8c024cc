package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/testbin"
	"github.com/tandemdb/tandem/internal/testutil"
)

// counterLib: a write (bump) and a read (peek, no-writes).
const counterLib = "#!lua name=counter\n" +
	"redis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\n" +
	"redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}"

// TestFunctionsSurviveKill9: a library is data: a node killed with
// SIGKILL after FUNCTION LOAD (and a FLUSHALL, which leaves it) has it
// when it starts again, from its own log and data alone (it is the only
// node: nothing could send it back).
func TestFunctionsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	c, err := cluster.Start(context.Background(), cluster.Config{
		Binary: testbin.Path(t), Dir: t.TempDir(), Nodes: 1, BasePort: 41200,
	}, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(c.LogPath(1))
			t.Logf("--- log of node 1 ---\n%s", tail(string(b), 60))
		}
	})
	ctx := context.Background()
	cl := client(t, c.Node(1).RESPAddr)
	if got, err := cl.Do(ctx, "FUNCTION", "LOAD", counterLib).Text(); err != nil || got != "counter" {
		t.Fatalf("FUNCTION LOAD: %q, %v", got, err)
	}
	if err := cl.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := cl.Do(ctx, "FCALL", "bump", "1", "n", "3").Int(); err != nil || n != 3 {
		t.Fatalf("FCALL bump: %d, %v", n, err)
	}
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(1); err != nil {
		t.Fatal(err)
	}
	cl2 := client(t, c.Node(1).RESPAddr)
	testutil.Eventually(t, "the restarted node to run the library's functions", 20*time.Second, func() (bool, string) {
		n, err := cl2.Do(ctx, "FCALL", "bump", "1", "n", "1").Int()
		return err == nil && n == 4, fmt.Sprintf("%d, %v", n, err)
	})
	libs, err := cl2.Do(ctx, "FUNCTION", "LIST", "WITHCODE").Slice()
	if err != nil || len(libs) != 1 {
		t.Fatalf("FUNCTION LIST after the restart: %v, %v", libs, err)
	}
}

// TestFunctionsSurviveFailover: a library loaded on the leader is on
// every follower (FCALL_RO there), and after the leader is killed with
// SIGKILL the new leader runs its writes.
func TestFunctionsSurviveFailover(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.BasePort = 41500 })
	ctx := context.Background()
	old, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := client(t, c.Node(old).RESPAddr)
	if got, err := l.Do(ctx, "FUNCTION", "LOAD", counterLib).Text(); err != nil || got != "counter" {
		t.Fatalf("FUNCTION LOAD: %q, %v", got, err)
	}
	if n, err := l.Do(ctx, "FCALL", "bump", "1", "n", "7").Int(); err != nil || n != 7 {
		t.Fatalf("FCALL bump: %d, %v", n, err)
	}
	for _, n := range c.Nodes() {
		if n.ID == old {
			continue
		}
		fc := client(t, n.RESPAddr)
		testutil.Eventually(t, n.Name+" to run the library", 15*time.Second, func() (bool, string) {
			v, err := fc.Do(ctx, "FCALL_RO", "peek", "1", "n").Text()
			return err == nil && v == "7", fmt.Sprintf("%q, %v", v, err)
		})
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	var nl *redis.Client
	testutil.Eventually(t, "a new leader to serve the library", 20*time.Second, func() (bool, string) {
		id, _, err := c.Leader(ctx)
		if err != nil || id == old {
			return false, fmt.Sprint(id, err)
		}
		cl := redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, MaxRetries: -1})
		v, err := cl.Do(ctx, "FCALL_RO", "peek", "1", "n").Text()
		if err != nil || v != "7" {
			cl.Close()
			return false, fmt.Sprintf("%q, %v", v, err)
		}
		nl = cl
		return true, ""
	})
	defer nl.Close()
	testutil.Eventually(t, "the new leader to take writes", 20*time.Second, func() (bool, string) {
		err := nl.Set(ctx, "probe", "1", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	if n, err := nl.Do(ctx, "FCALL", "bump", "1", "n", "1").Int(); err != nil || n != 8 {
		t.Fatalf("FCALL bump on the new leader: %d, %v", n, err)
	}
}
