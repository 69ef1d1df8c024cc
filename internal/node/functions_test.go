package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/testutil"
)

// The library the functions tests load: a counter (a write) and a read
// (no-writes, so FCALL_RO runs it on any node).
const counterLib = "#!lua name=counter\n" +
	"redis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\n" +
	"redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}"

// TestFunctionsReplicate: a library loaded on the leader is a write
// through the log: a follower streaming the log has it, a follower seeded
// by snapshot after it has it, FLUSHALL leaves it on every node, a
// FUNCTION DELETE reaches every node, and the digests (which cover the
// libraries) agree.
func TestFunctionsReplicate(t *testing.T) {
	ctx := context.Background()
	leader := testNode(t, "l", nil)
	f1 := testNode(t, "f1", nil)
	follow(t, f1, leader)
	lc := newClient(t, leader)
	_, before, err := leader.db.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := lc.Do(ctx, "FUNCTION", "LOAD", counterLib).Text(); err != nil || got != "counter" {
		t.Fatalf("FUNCTION LOAD: %q, %v", got, err)
	}
	if _, after, _ := leader.db.Digest(); after == before {
		t.Fatal("the digest does not cover the function libraries")
	}
	if n, err := lc.Do(ctx, "FCALL", "bump", "1", "n", "5").Int(); err != nil || n != 5 {
		t.Fatalf("FCALL bump: %d, %v", n, err)
	}
	// FLUSHALL drops the keys, not the libraries.
	if err := lc.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := lc.Do(ctx, "FCALL", "bump", "1", "n", "2").Int(); err != nil || n != 2 {
		t.Fatalf("FCALL bump after FLUSHALL: %d, %v", n, err)
	}
	// A follower seeded by a snapshot taken after the load.
	f2 := testNode(t, "f2", nil)
	follow(t, f2, leader)
	waitConverged(t, leader, []*Node{f1, f2})
	if f2.db.SeedGeneration() == 0 {
		t.Fatal("f2 was not seeded by a snapshot")
	}
	for _, f := range []*Node{f1, f2} {
		fc := newClient(t, f)
		testutil.Eventually(t, f.cfg.ID+" to run the leader's function", 10*time.Second, func() (bool, string) {
			v, err := fc.Do(ctx, "FCALL_RO", "peek", "1", "n").Text()
			return err == nil && v == "2", fmt.Sprintf("%q, %v", v, err)
		})
		libs, err := fc.Do(ctx, "FUNCTION", "LIST").Slice()
		if err != nil || len(libs) != 1 {
			t.Fatalf("%s FUNCTION LIST: %v, %v", f.cfg.ID, libs, err)
		}
		// A follower refuses the writes (they are the leader's).
		if err := fc.Do(ctx, "FUNCTION", "DELETE", "counter").Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
			t.Fatalf("%s answered FUNCTION DELETE with %v, want READONLY", f.cfg.ID, err)
		}
	}
	if err := lc.Do(ctx, "FUNCTION", "DELETE", "counter").Err(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, leader, []*Node{f1, f2})
	for _, f := range []*Node{f1, f2} {
		if err := newClient(t, f).Do(ctx, "FCALL_RO", "peek", "1", "n").Err(); err == nil || err.Error() != "ERR Function not found" {
			t.Fatalf("%s FCALL_RO after FUNCTION DELETE: %v", f.cfg.ID, err)
		}
	}
}
