package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/pubsub"
	"github.com/tandemdb/tandem/internal/testutil"
)

// psFake is a fakeBackend with pub/sub on one node: PUBLISH publishes to
// the local registry.
type psFake struct {
	*fakeBackend
	reg *pubsub.Registry
}

func newPSFake() *psFake { return &psFake{fakeBackend: newFake(), reg: pubsub.New()} }

func (p *psFake) PubSub() *pubsub.Registry { return p.reg }
func (p *psFake) Publish(_ context.Context, ch, msg []byte) (int, error) {
	return p.reg.Publish(ch, msg), nil
}
func (p *psFake) PublishShard(_ context.Context, ch, msg []byte) (int, error) {
	return p.reg.SPublish(ch, msg), nil
}

// TestShardedPubSubRESP2: SSUBSCRIBE's replies count sharded channels
// only (Redis 7), a sharded subscription alone puts the connection in
// subscribed mode, SPUBLISH delivers "smessage" to sharded subscribers
// and never to a channel or pattern one, and SUNSUBSCRIBE without names
// ends them all.
func TestShardedPubSubRESP2(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	sub := rawConn(t, addr)
	pub := rawConn(t, addr)

	sub.send(t, "SUNSUBSCRIBE")
	sub.expect(t, "*3", "$12", "sunsubscribe", "$-1", ":0")
	sub.send(t, "SSUBSCRIBE", "a", "b")
	sub.expect(t, "*3", "$10", "ssubscribe", "$1", "a", ":1", "*3", "$10", "ssubscribe", "$1", "b", ":2")
	sub.send(t, "GET", "k")
	sub.expect(t, "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	sub.send(t, "SUBSCRIBE", "a")
	sub.expect(t, "*3", "$9", "subscribe", "$1", "a", ":1")
	sub.send(t, "PSUBSCRIBE", "*")
	sub.expect(t, "*3", "$10", "psubscribe", "$1", "*", ":2")

	pub.send(t, "SPUBLISH", "a", "s1")
	pub.expect(t, ":1")
	pub.send(t, "PUBLISH", "a", "p1")
	pub.expect(t, ":2")
	sub.expect(t, "*3", "$8", "smessage", "$1", "a", "$2", "s1",
		"*3", "$7", "message", "$1", "a", "$2", "p1",
		"*4", "$8", "pmessage", "$1", "*", "$1", "a", "$2", "p1")

	pub.send(t, "PUBSUB", "SHARDCHANNELS")
	pub.expect(t, "*2", "$1", "a", "$1", "b")
	pub.send(t, "PUBSUB", "SHARDNUMSUB", "a", "c")
	pub.expect(t, "*4", "$1", "a", ":1", "$1", "c", ":0")
	pub.send(t, "PUBSUB", "CHANNELS")
	pub.expect(t, "*1", "$1", "a")

	sub.send(t, "SUNSUBSCRIBE")
	sub.expect(t, "*3", "$12", "sunsubscribe", "$1", "a", ":1", "*3", "$12", "sunsubscribe", "$1", "b", ":0")
	pub.send(t, "SPUBLISH", "a", "s2")
	pub.expect(t, ":0")
	sub.send(t, "UNSUBSCRIBE")
	sub.expect(t, "*3", "$11", "unsubscribe", "$1", "a", ":1")
	sub.send(t, "PUNSUBSCRIBE")
	sub.expect(t, "*3", "$12", "punsubscribe", "$1", "*", ":0")
	sub.send(t, "PING")
	sub.expect(t, "+PONG")
}

func TestPubSubRESP2(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	sub := rawConn(t, addr)
	pub := rawConn(t, addr)

	// Before subscribing: ordinary replies.
	sub.send(t, "PING")
	sub.expect(t, "+PONG")
	sub.send(t, "UNSUBSCRIBE")
	sub.expect(t, "*3", "$11", "unsubscribe", "$-1", ":0")

	// Pipelined: a write before the SUBSCRIBE and commands after it.
	sub.write(t, string(encode("SET", "k", "v"))+string(encode("SUBSCRIBE", "a", "b", "a"))+string(encode("PSUBSCRIBE", "a*"))+string(encode("GET", "k"))+string(encode("PING"))+string(encode("PING", "x")))
	sub.expect(t, "+OK",
		"*3", "$9", "subscribe", "$1", "a", ":1",
		"*3", "$9", "subscribe", "$1", "b", ":2",
		"*3", "$9", "subscribe", "$1", "a", ":2",
		"*3", "$10", "psubscribe", "$2", "a*", ":3",
		"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
		"*2", "$4", "pong", "$0", "",
		"*2", "$4", "pong", "$1", "x")

	pub.send(t, "PUBLISH", "a", "hello")
	pub.expect(t, ":2") // once per subscription: the channel and the pattern
	sub.expect(t, "*3", "$7", "message", "$1", "a", "$5", "hello",
		"*4", "$8", "pmessage", "$2", "a*", "$1", "a", "$5", "hello")

	pub.send(t, "PUBSUB", "NUMSUB", "a", "zz")
	pub.expect(t, "*4", "$1", "a", ":1", "$2", "zz", ":0")
	pub.send(t, "PUBSUB", "NUMPAT")
	pub.expect(t, ":1")
	pub.send(t, "PUBSUB", "CHANNELS")
	pub.expect(t, "*2", "$1", "a", "$1", "b")
	pub.send(t, "PUBSUB", "CHANNELS", "b*")
	pub.expect(t, "*1", "$1", "b")
	pub.send(t, "PUBSUB", "NOPE")
	pub.expect(t, "-ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.")

	// Unsubscribe everything: back to ordinary commands on the detached
	// connection.
	sub.send(t, "UNSUBSCRIBE")
	sub.expect(t, "*3", "$11", "unsubscribe", "$1", "a", ":2", "*3", "$11", "unsubscribe", "$1", "b", ":1")
	sub.send(t, "PUNSUBSCRIBE")
	sub.expect(t, "*3", "$12", "punsubscribe", "$2", "a*", ":0")
	sub.send(t, "GET", "k")
	sub.expect(t, "$1", "v")
	sub.send(t, "PING")
	sub.expect(t, "+PONG")
	pub.send(t, "PUBLISH", "a", "nobody")
	pub.expect(t, ":0")

	// RESET ends subscriptions; QUIT closes.
	sub.send(t, "SUBSCRIBE", "c")
	sub.expect(t, "*3", "$9", "subscribe", "$1", "c", ":1")
	sub.send(t, "RESET")
	sub.expect(t, "+RESET")
	pub.send(t, "PUBLISH", "c", "x")
	pub.expect(t, ":0")
	sub.send(t, "QUIT")
	sub.expect(t, "+OK")
	sub.expectClosed(t)
}

func TestPubSubRESP3(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	sub := rawConn(t, addr)
	sub.send(t, "HELLO", "3")
	for sub.line(t) != "*0" { // the HELLO map ends with "modules", an empty array
	}
	sub.send(t, "SUBSCRIBE", "a")
	sub.expect(t, ">3", "$9", "subscribe", "$1", "a", ":1")
	// RESP3: every command runs while subscribed.
	sub.send(t, "GET", "k")
	sub.expect(t, "_")
	sub.send(t, "PUBLISH", "a", "m")
	sub.expect(t, ">3", "$7", "message", "$1", "a", "$1", "m", ":1")
	sub.send(t, "UNSUBSCRIBE", "a", "b")
	sub.expect(t, ">3", "$11", "unsubscribe", "$1", "a", ":0", ">3", "$11", "unsubscribe", "$1", "b", ":0")
}

// TestPubSubMixedProtocols: subscribers of one channel and a pattern
// that speak RESP2 and RESP3 each get every message in their own
// protocol, though the registry shares one encoding per protocol among a
// message's subscribers: no subscriber gets another protocol's encoding
// nor an earlier message's.
func TestPubSubMixedProtocols(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	var two, three []*rawClient
	for range 2 {
		c := rawConn(t, addr)
		c.send(t, "SUBSCRIBE", "a")
		c.expect(t, "*3", "$9", "subscribe", "$1", "a", ":1")
		two = append(two, c)
		c = rawConn(t, addr)
		c.send(t, "HELLO", "3")
		for c.line(t) != "*0" { // the HELLO map ends with "modules", an empty array
		}
		c.send(t, "SUBSCRIBE", "a")
		c.expect(t, ">3", "$9", "subscribe", "$1", "a", ":1")
		c.send(t, "PSUBSCRIBE", "a*")
		c.expect(t, ">3", "$10", "psubscribe", "$2", "a*", ":2")
		three = append(three, c)
	}
	pub := rawConn(t, addr)
	for _, m := range []string{"first message", "m2"} {
		pub.send(t, "PUBLISH", "a", m)
		pub.expect(t, ":6")
		size := fmt.Sprintf("$%d", len(m))
		for _, c := range two {
			c.expect(t, "*3", "$7", "message", "$1", "a", size, m)
		}
		for _, c := range three {
			c.expect(t, ">3", "$7", "message", "$1", "a", size, m,
				">4", "$8", "pmessage", "$2", "a*", "$1", "a", size, m)
		}
	}
}

// TestPubSubGoRedis: go-redis's Subscribe and its PubSub type work
// unchanged, in both protocols, and a subscriber gets messages in the
// order they were published.
func TestPubSubGoRedis(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	for _, proto := range []int{2, 3} {
		c := newClient(t, addr, proto)
		ctx := context.Background()
		ps := c.Subscribe(ctx, "ch")
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		const n = 200
		for i := range n {
			if got, err := c.Publish(ctx, "ch", fmt.Sprint(i)).Result(); err != nil || got != 1 {
				t.Fatalf("proto %d: PUBLISH = %d, %v", proto, got, err)
			}
		}
		for i := range n {
			m, err := ps.ReceiveTimeout(ctx, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if msg, ok := m.(*redis.Message); !ok || msg.Payload != fmt.Sprint(i) {
				t.Fatalf("proto %d: message %d is %v", proto, i, m)
			}
		}
		if err := ps.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSubscriberClosedFreesEverything: a subscriber that disconnects
// leaves no subscription and no session behind.
func TestSubscriberClosedFreesEverything(t *testing.T) {
	b := newPSFake()
	srv, addr := startServer(t, b, Config{})
	sub := rawConn(t, addr)
	sub.send(t, "SUBSCRIBE", "a")
	sub.expect(t, "*3", "$9", "subscribe", "$1", "a", ":1")
	if n := b.reg.NumSub("a"); n != 1 {
		t.Fatalf("NumSub = %d", n)
	}
	sub.Close()
	testutil.Eventually(t, "the subscription and the session to go", 5*time.Second, func() (bool, string) {
		return b.reg.NumSub("a") == 0 && srv.Clients() == 0, fmt.Sprintf("NumSub %d, clients %d", b.reg.NumSub("a"), srv.Clients())
	})
}

// TestClientReply: CLIENT REPLY OFF silences every reply after it, SKIP
// the next one only, ON restores them, in a pipeline too; pub/sub
// confirmations and messages are never silenced; RESET turns replies on.
func TestClientReply(t *testing.T) {
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.write(t, string(encode("CLIENT", "REPLY", "OFF"))+string(encode("SET", "k", "v"))+string(encode("GET", "k"))+
		string(encode("PING"))+string(encode("CLIENT", "REPLY", "ON"))+string(encode("ECHO", "on")))
	c.expect(t, "+OK", "$2", "on")
	c.send(t, "CLIENT", "REPLY", "SKIP")
	c.send(t, "PING")
	c.send(t, "ECHO", "after")
	c.expect(t, "$5", "after")
	c.send(t, "CLIENT", "REPLY", "MAYBE")
	c.expect(t, "-ERR syntax error")

	pub := rawConn(t, addr)
	c.send(t, "CLIENT", "REPLY", "OFF")
	c.send(t, "SUBSCRIBE", "ch")
	c.expect(t, "*3", "$9", "subscribe", "$2", "ch", ":1")
	pub.send(t, "PUBLISH", "ch", "m")
	pub.expect(t, ":1")
	c.expect(t, "*3", "$7", "message", "$2", "ch", "$1", "m")
	c.send(t, "PING")
	c.send(t, "UNSUBSCRIBE", "ch")
	c.expect(t, "*3", "$11", "unsubscribe", "$2", "ch", ":0")
	c.send(t, "RESET")
	c.expect(t, "+RESET")
	c.send(t, "PING")
	c.expect(t, "+PONG")
}

// TestStalledSubscriberHoldsUpNoOne: the server's one writer of messages
// (pubWriter) never waits on a client. A subscriber that stops reading
// while messages far past its socket buffers are published holds up no
// other subscriber, and gets every message, in order, once it reads
// again: what its socket did not take went back to the head of its
// queue, for its own flusher.
func TestStalledSubscriberHoldsUpNoOne(t *testing.T) {
	const n, size = 1500, 8 << 10 // 12 MiB: past loopback's socket buffers, within maxQueued
	b := newPSFake()
	_, addr := startServer(t, b, Config{})
	want := "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
	subscribe := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(encode("SUBSCRIBE", "ch")); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReaderSize(c, 64<<10)
		got := make([]byte, len(want))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
			t.Fatalf("SUBSCRIBE: %q, %v", got, err)
		}
		return c, r
	}
	stalled, stalledR := subscribe()
	live, liveR := subscribe()
	payload := func(i int) string { return fmt.Sprintf("%08d", i) + strings.Repeat("x", size-8) }
	frame := func(i int) string {
		return fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\n%s\r\n", size, payload(i))
	}
	// readAll reads the n messages in order from r, within the deadline.
	readAll := func(c net.Conn, r *bufio.Reader, who string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, len(frame(0)))
		for i := range n {
			if _, err := io.ReadFull(r, buf); err != nil {
				t.Fatalf("%s subscriber: message %d of %d: %v", who, i, n, err)
			}
			if string(buf) != frame(i) {
				t.Fatalf("%s subscriber: message %d is %.60q…", who, i, buf)
			}
		}
	}
	go func() {
		for i := range n {
			b.reg.Publish([]byte("ch"), []byte(payload(i)))
		}
	}()
	readAll(live, liveR, "live") // while the other one reads nothing
	readAll(stalled, stalledR, "stalled")
}
