package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/replication"
)

// TestMaxReplyBytes: CONFIG SET max-reply-bytes bounds every reply; a
// command past it is answered a clear error and the connection and node
// go on; a MULTI/EXEC's replies share the bound, the command that would
// pass it refused (its write not made), the others answered.
func TestMaxReplyBytes(t *testing.T) {
	t.Cleanup(func() { commands.SetMaxReplyBytes(commands.DefaultMaxReplyBytes) })
	n1 := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n1)
	val := strings.Repeat("v", 100)
	for range 100 {
		mustDo(t, c, "RPUSH", "l", val)
	}
	if got := c.ConfigGet(ctx, "max-reply-bytes").Val()["max-reply-bytes"]; got != "536870912" {
		t.Fatalf("CONFIG GET max-reply-bytes = %q, want the default 536870912", got)
	}
	for _, bad := range []string{"0", "-1", "x"} {
		if err := c.ConfigSet(ctx, "max-reply-bytes", bad).Err(); err == nil {
			t.Errorf("CONFIG SET max-reply-bytes %s accepted", bad)
		}
	}
	mustDo(t, c, "CONFIG", "SET", "max-reply-bytes", "2000")
	if got := c.ConfigGet(ctx, "max-reply-bytes").Val()["max-reply-bytes"]; got != "2000" {
		t.Fatalf("CONFIG GET max-reply-bytes = %q after SET 2000", got)
	}
	err := c.LRange(ctx, "l", 0, -1).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "ERR reply would exceed max-reply-bytes (2000 bytes)") {
		t.Fatalf("LRANGE l 0 -1 of 10 KB under 2000 bytes: %v", err)
	}
	if n := len(c.LRange(ctx, "l", 0, 9).Val()); n != 10 {
		t.Fatalf("LRANGE l 0 9 gave %d elements", n)
	}
	// Each LRANGE of 10 fits alone (1160 bytes), not both; the SET after
	// them does not fit either and is not made.
	cmds, _ := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRange(ctx, "l", 0, 9)
		p.LRange(ctx, "l", 10, 19)
		p.Set(ctx, "k", strings.Repeat("x", 900), 0)
		p.Set(ctx, "small", "1", 0)
		return nil
	})
	if len(cmds) != 4 || cmds[0].Err() != nil || len(cmds[0].(*redis.StringSliceCmd).Val()) != 10 {
		t.Fatalf("EXEC: %v", cmds)
	}
	if err := cmds[1].Err(); err == nil || !strings.Contains(err.Error(), "max-reply-bytes") {
		t.Errorf("second LRANGE in EXEC: %v, want refused", err)
	}
	if err := cmds[3].Err(); err != nil {
		t.Errorf("SET small in EXEC: %v", err)
	}
	if got := c.Get(ctx, "small").Val(); got != "1" {
		t.Errorf("GET small = %q", got)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after refusals: %v", err)
	}
	// A script's reply is bounded once built.
	err = c.Eval(ctx, "return redis.call('LRANGE', KEYS[1], 0, 9)", []string{"l"}).Err()
	if err != nil {
		t.Fatalf("EVAL of 10 elements: %v", err)
	}
	err = c.Eval(ctx, "local t = {} for i = 1, 5 do for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, 9)) do t[#t+1] = v end end return t", []string{"l"}).Err()
	if err == nil || !strings.Contains(err.Error(), "max-reply-bytes") {
		t.Fatalf("EVAL of 50 elements under 2000 bytes: %v", err)
	}
}

// TestEntryTooLargeRefused: a write whose log entry would be larger than
// the leader's bound is refused with a clear error, nothing logged; the
// node goes on serving, and a follower stays in step.
func TestEntryTooLargeRefused(t *testing.T) {
	n1 := testNode(t, "n1", func(c *Config) { c.MaxEntryBytes = 64 << 10 })
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c := newClient(t, n1)
	mustDo(t, c, "SET", "a", "1")
	before := n1.db.Durable().LSN
	big := strings.Repeat("x", 40<<10)
	for _, args := range [][]any{
		{"MSET", "k1", big, "k2", big},
		{"SET", "k", strings.Repeat("x", 70<<10)},
		{"EVAL", "redis.call('SET', 'e1', ARGV[1]) redis.call('SET', 'e2', ARGV[1]) return 1", "0", big},
	} {
		err := c.Do(ctx, args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR this write's log entry would be") || !strings.Contains(err.Error(), "(65536 bytes)") {
			t.Fatalf("%v: %v, want refused", args[0], err)
		}
	}
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "t1", big, 0)
		p.Set(ctx, "t2", big, 0)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "log entry") {
		t.Fatalf("EXEC of 80 KB: %v, %v", cmds, err)
	}
	if d := n1.db.Durable().LSN; d != before {
		t.Fatalf("durable LSN %d after refused writes, want %d", d, before)
	}
	if n := c.Exists(ctx, "k1", "k2", "k", "e1", "e2", "t1", "t2").Val(); n != 0 {
		t.Fatalf("%d keys of refused writes exist", n)
	}
	mustDo(t, c, "MSET", "k1", big, "z", "1")
	if got := c.StrLen(ctx, "k1").Val(); got != int64(len(big)) {
		t.Fatalf("STRLEN k1 = %d", got)
	}
	if n, err := c.Do(ctx, "WAIT", "1", "5000").Int(); n != 1 {
		t.Fatalf("WAIT 1 = %d, %v: the follower is not in step", n, err)
	}
}

// TestEntryFitsMessage: the largest entry a leader sequences travels in
// one stream message with room for the message's other fields.
func TestEntryFitsMessage(t *testing.T) {
	if replication.DefaultMaxEntryBytes+64<<10 > maxMessage {
		t.Fatalf("DefaultMaxEntryBytes %d leaves less than 64 KiB of a %d-byte message", replication.DefaultMaxEntryBytes, maxMessage)
	}
}

// TestLargeValueReplicates: a value larger than a stream part (4 MiB)
// reaches a follower over gRPC, sent in parts through the leader's codec,
// and the follower serves it whole.
func TestLargeValueReplicates(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c := newClient(t, n1)
	mustDo(t, c, "SET", "a", "1")
	big := strings.Repeat("0123456789abcdef", (10<<20)/16+3)
	mustDo(t, c, "SET", "big", big)
	want := n1.db.Applied()
	waitFor(t, "n2 to apply the value", 30*time.Second, func() bool { return n2.db.Applied() >= want })
	if got, err := newClient(t, n2).Get(ctx, "big").Result(); err != nil || got != big {
		t.Fatalf("follower GET big: %d bytes, %v; want %d bytes", len(got), err, len(big))
	}
}
