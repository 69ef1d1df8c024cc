package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
)

// receive returns the next message of ps's channel within d, or nil. (A
// Receive that times out would make go-redis reconnect the subscriber.)
func receive(t *testing.T, ch <-chan *redis.Message, d time.Duration) *redis.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(d):
		return nil
	}
}

// untilDelivered publishes probes with publish until sub gets one (the
// follower's stream takes messages only once it is up), within 10 s.
func untilDelivered(t *testing.T, sub <-chan *redis.Message, publish func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
		if receive(t, sub, 200*time.Millisecond) != nil {
			return
		}
	}
	t.Fatal("no probe delivered in 10 s")
}

// drainThrough drops sub's messages up to and including the first for
// which last holds (within 10 s). After untilDelivered, the probes sent
// before the one delivered may still be on their way; messages arrive in
// the order they were published, so a marker published after the probes
// is the end of them. (Draining until a quiet spell of 50 ms left a late
// probe, on a busy machine, for the test to take as its first message.)
func drainThrough(t *testing.T, sub <-chan *redis.Message, last func(*redis.Message) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-sub:
			if last(m) {
				return
			}
		case <-deadline:
			t.Fatal("the marker after the probes did not arrive in 10 s")
		}
	}
}

// TestShardedPubSubAcrossNodes: SPUBLISH on the leader or on a follower
// (forwarded) reaches the sharded subscribers of every node, as
// "smessage", and never a channel or pattern subscriber of the same name;
// PUBLISH never reaches a sharded subscriber.
func TestShardedPubSubAcrossNodes(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c1, c2 := newClient(t, n1), newClient(t, n2)

	shard2 := newClient(t, n2).SSubscribe(ctx, "sc")
	defer shard2.Close()
	shard1 := newClient(t, n1).SSubscribe(ctx, "sc")
	defer shard1.Close()
	classic2 := newClient(t, n2).Subscribe(ctx, "sc")
	defer classic2.Close()
	if err := classic2.PSubscribe(ctx, "s*"); err != nil {
		t.Fatal(err)
	}
	for _, ps := range []*redis.PubSub{shard1, shard2, classic2} {
		if _, err := ps.Receive(ctx); err != nil { // the (s)subscribe confirmation
			t.Fatal(err)
		}
	}
	if _, err := classic2.Receive(ctx); err != nil { // psubscribe's
		t.Fatal(err)
	}
	s1, s2, cl2 := shard1.Channel(), shard2.Channel(), classic2.Channel()
	untilDelivered(t, s2, func() error { return c1.SPublish(ctx, "sc", "probe").Err() })
	mustDo(t, c1, "SPUBLISH", "sc", "probes-end")
	for _, s := range []<-chan *redis.Message{s1, s2} {
		drainThrough(t, s, func(m *redis.Message) bool { return m.Payload == "probes-end" })
	}

	if n, err := c1.SPublish(ctx, "sc", "from-leader").Result(); err != nil || n != 1 {
		t.Fatalf("SPUBLISH on the leader = %d, %v; want its 1 sharded subscriber", n, err)
	}
	if n, err := c2.SPublish(ctx, "sc", "from-follower").Result(); err != nil || n != 1 {
		t.Fatalf("SPUBLISH on the follower = %d, %v; want its 1 sharded subscriber", n, err)
	}
	for name, ps := range map[string]<-chan *redis.Message{"n1": s1, "n2": s2} {
		for _, want := range []string{"from-leader", "from-follower"} {
			if m := receive(t, ps, 10*time.Second); m == nil || m.Channel != "sc" || m.Payload != want {
				t.Fatalf("%s sharded subscriber got %+v, want %q", name, m, want)
			}
		}
	}
	// The channel subscriber's first message is the PUBLISH: no sharded
	// message reached it; the sharded subscriber gets no PUBLISH.
	mustDo(t, c1, "PUBLISH", "sc", "classic")
	if m := receive(t, cl2, 10*time.Second); m == nil || m.Payload != "classic" {
		t.Fatalf("channel subscriber got %+v first, want the PUBLISH", m)
	}
	mustDo(t, c1, "SPUBLISH", "sc", "last")
	if m := receive(t, s2, 10*time.Second); m == nil || m.Payload != "last" {
		t.Fatalf("sharded subscriber got %+v, want the SPUBLISH after the PUBLISH", m)
	}

	if got := c2.PubSubShardChannels(ctx, "*").Val(); len(got) != 1 || got[0] != "sc" {
		t.Errorf("PUBSUB SHARDCHANNELS on n2 = %v", got)
	}
	if got := c2.PubSubShardNumSub(ctx, "sc", "none").Val(); got["sc"] != 1 || got["none"] != 0 {
		t.Errorf("PUBSUB SHARDNUMSUB on n2 = %v", got)
	}
	if got := c2.PubSubNumSub(ctx, "sc").Val(); got["sc"] != 1 {
		t.Errorf("PUBSUB NUMSUB sc on n2 = %v: the sharded subscription counted as a channel one?", got)
	}
}

// TestKeyspaceNotificationsOnFollower: a write's notification reaches a
// follower's subscriber once the write is readable there.
func TestKeyspaceNotificationsOnFollower(t *testing.T) {
	t.Cleanup(func() { commands.SetNotifyKeyspaceEvents("") })
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c1, c2 := newClient(t, n1), newClient(t, n2)
	mustDo(t, c1, "CONFIG", "SET", "notify-keyspace-events", "KE$")
	sub := newClient(t, n2).PSubscribe(ctx, "__key*__:*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sub.Channel()
	untilDelivered(t, msgs, func() error { return c1.Set(ctx, "probe", "1", 0).Err() })
	mustDo(t, c1, "SET", "probes-end", "1")
	drainThrough(t, msgs, func(m *redis.Message) bool {
		return m.Channel == "__keyevent@0__:set" && m.Payload == "probes-end"
	})
	for i := range 20 {
		v := string(rune('a' + i))
		mustDo(t, c1, "SET", "foo", v)
		m := receive(t, msgs, 10*time.Second)
		if m == nil || m.Channel != "__keyspace@0__:foo" || m.Payload != "set" {
			t.Fatalf("got %+v, want the keyspace event of SET foo", m)
		}
		if got := c2.Get(ctx, "foo").Val(); got != v {
			t.Fatalf("notified of SET foo %s, the follower reads %q", v, got)
		}
		if m := receive(t, msgs, 10*time.Second); m == nil || m.Channel != "__keyevent@0__:set" || m.Payload != "foo" {
			t.Fatalf("got %+v, want the keyevent of SET foo", m)
		}
	}
}

// TestConfigSetSharedOnFollower: notify-keyspace-events is the cluster's,
// so a follower refuses to change it (READONLY: the leader's settings
// would undo the change when they next arrive) and keeps the value it
// has; setting the value it already has (in any spelling) is accepted, as
// are a follower's own settings; the leader changes it.
func TestConfigSetSharedOnFollower(t *testing.T) {
	t.Cleanup(func() { commands.SetNotifyKeyspaceEvents("") })
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	ctx := context.Background()
	c1, c2 := newClient(t, n1), newClient(t, n2)
	mustDo(t, c1, "CONFIG", "SET", "notify-keyspace-events", "KEA")

	err := c2.ConfigSet(ctx, "notify-keyspace-events", "Kx").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "READONLY ") || !strings.Contains(err.Error(), "notify-keyspace-events") {
		t.Fatalf("CONFIG SET notify-keyspace-events on a follower: %v, want a READONLY error naming it", err)
	}
	// All or nothing, as Redis checks every pair before it sets any.
	err = c2.Do(ctx, "CONFIG", "SET", "hash-max-listpack-entries", "7", "notify-keyspace-events", "").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "READONLY ") {
		t.Fatalf("CONFIG SET of two parameters, one shared, on a follower: %v, want READONLY", err)
	}
	if got := c2.ConfigGet(ctx, "hash-max-listpack-entries").Val()["hash-max-listpack-entries"]; got == "7" {
		t.Fatal("a refused CONFIG SET set its other parameter")
	}
	if got := c2.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]; got != "AKE" {
		t.Fatalf("after the refusal the follower's notify-keyspace-events is %q, want the leader's AKE", got)
	}
	// The same classes, spelled otherwise, change nothing: accepted.
	mustDo(t, c2, "CONFIG", "SET", "notify-keyspace-events", "EKA")
	// An invalid value is answered as Redis does, not as a refusal.
	if err := c2.ConfigSet(ctx, "notify-keyspace-events", "Q").Err(); err == nil || !strings.Contains(err.Error(), "Invalid event class character") {
		t.Fatalf("CONFIG SET notify-keyspace-events Q on a follower: %v, want Redis's invalid-class error", err)
	}
	// The leader changes it.
	mustDo(t, c1, "CONFIG", "SET", "notify-keyspace-events", "Kx")
	if got := c1.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]; got != "xK" {
		t.Fatalf("the leader's notify-keyspace-events is %q after CONFIG SET Kx, want xK", got)
	}
}
