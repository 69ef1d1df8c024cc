// Package pubsub is a node's pub/sub registry: which subscribers listen to
// which channels and patterns, and the one place a published message is
// matched and handed to them.
//
// # What it promises
//
//   - Once per subscription: a message published on a channel is handed
//     to each subscriber of that channel once, and once more for each
//     pattern (Redis's glob, commands.Match) the subscriber holds that
//     matches the channel, as Redis does (a client subscribed to "a" and
//     to "a*" gets a message and a pmessage).
//   - One order: every subscriber is handed messages in the order Publish
//     was called, because Publish delivers under the registry's lock. A
//     subscription made before Publish began sees the message; one made
//     after it returned does not.
//   - Nothing here blocks on a subscriber: Subscriber.Deliver must queue
//     and return (the RESP layer bounds that queue and cuts off a client
//     that does not read, as Redis's pubsub output limit does).
//   - Woken once per run of messages: a subscriber is woken (Wake) to
//     send what Deliver queued only when Deliver says its queue was
//     empty, and a caller that publishes several messages at once (a
//     follower taking a batch of the leader's) uses PublishHeld and
//     SPublishHeld, whose wake-ups wait for its WakeHeld: each subscriber
//     is then woken once per batch, and sends the batch in one write,
//     not one a message.
//
// Sharded channels (SSUBSCRIBE, SPUBLISH) are a namespace of their own:
// a sharded message reaches the sharded subscriptions of its channel only
// (no patterns), and a PUBLISH never reaches them.
//
// The registry is node-local: how messages reach the other nodes (the
// replication stream) is the node's and package replication's business.
package pubsub

import (
	"sort"
	"sync"

	"github.com/tandemdb/tandem/internal/commands"
)

// Message is one delivery: a message published on Channel, for a
// subscription to Channel (Pattern false) or to a pattern matching it.
type Message struct {
	// IsPattern: the subscription is the pattern Pattern.
	IsPattern bool
	Pattern   string
	// Shard: a sharded message (SPUBLISH), for a sharded subscription.
	Shard   bool
	Channel []byte
	Payload []byte
	// Encoded is for the subscribers to share one encoding of the
	// delivery per protocol (index 0 RESP2, 1 RESP3): empty until the
	// first that needs it writes it (appending to it), lent for the
	// call as Channel and Payload are. The registry keeps its buffers
	// from one delivery to the next, so that a message to n subscribers
	// is encoded once, not n times, and costs no allocation.
	Encoded [2][]byte
}

// Subscriber receives the messages of its subscriptions. Deliver and Wake
// are called with the registry's lock held: they must not block nor call
// back into the registry, and Deliver must not keep m's slices past the
// call unless it owns them (Publish's caller lends them for the call
// only).
type Subscriber interface {
	// Deliver queues m (the registry's, reused: lent for the call). It
	// returns true when the subscriber must be woken
	// (Wake) to send it: when nothing was queued before m. A queue that
	// held something has a wake-up due already, and m goes with it.
	Deliver(m *Message) bool
	// Wake makes the subscriber send what it has queued (without
	// blocking: a signal).
	Wake()
}

// Registry is a node's subscriptions. The zero value is not usable; call
// New. Safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	channels map[string]map[Subscriber]struct{}
	patterns map[string]map[Subscriber]struct{}
	shards   map[string]map[Subscriber]struct{}
	// held are the subscribers PublishHeld and SPublishHeld queued a
	// first message for, to be woken by WakeHeld.
	held []Subscriber
	// msg is the delivery being handed out (one a publish, and one for
	// each pattern that matches): the registry's, so that passing it to
	// Deliver allocates nothing; enc keeps its encodings' buffers.
	msg Message
	enc [2][]byte
}

// delivery readies r.msg, with its encodings empty, for m.
func (r *Registry) delivery(m Message) *Message {
	r.msg = m
	r.msg.Encoded = [2][]byte{r.enc[0][:0], r.enc[1][:0]}
	return &r.msg
}

// delivered keeps the delivery's buffers for the next one and drops its
// slices of the caller's bytes.
func (r *Registry) delivered() {
	r.enc = r.msg.Encoded
	for i, b := range r.enc {
		if cap(b) > maxKeptEncoding {
			r.enc[i] = nil // one huge message does not hold its size for ever
		}
	}
	r.msg = Message{}
}

// maxKeptEncoding bounds an encoding buffer the registry keeps.
const maxKeptEncoding = 64 << 10

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		channels: make(map[string]map[Subscriber]struct{}),
		patterns: make(map[string]map[Subscriber]struct{}),
		shards:   make(map[string]map[Subscriber]struct{}),
	}
}

func add(m map[string]map[Subscriber]struct{}, key string, s Subscriber) bool {
	set := m[key]
	if set == nil {
		set = make(map[Subscriber]struct{})
		m[key] = set
	}
	if _, ok := set[s]; ok {
		return false
	}
	set[s] = struct{}{}
	return true
}

func remove(m map[string]map[Subscriber]struct{}, key string, s Subscriber) bool {
	set := m[key]
	if _, ok := set[s]; !ok {
		return false
	}
	delete(set, s)
	if len(set) == 0 {
		delete(m, key)
	}
	return true
}

// Subscribe subscribes s to channel; false if it already was.
func (r *Registry) Subscribe(s Subscriber, channel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return add(r.channels, channel, s)
}

// Unsubscribe ends s's subscription to channel; false if it had none.
func (r *Registry) Unsubscribe(s Subscriber, channel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return remove(r.channels, channel, s)
}

// PSubscribe subscribes s to the pattern; false if it already was.
func (r *Registry) PSubscribe(s Subscriber, pattern string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return add(r.patterns, pattern, s)
}

// PUnsubscribe ends s's subscription to the pattern; false if it had none.
func (r *Registry) PUnsubscribe(s Subscriber, pattern string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return remove(r.patterns, pattern, s)
}

// SSubscribe subscribes s to the sharded channel; false if it already was.
func (r *Registry) SSubscribe(s Subscriber, channel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return add(r.shards, channel, s)
}

// SUnsubscribe ends s's subscription to the sharded channel; false if it
// had none.
func (r *Registry) SUnsubscribe(s Subscriber, channel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return remove(r.shards, channel, s)
}

// SPublish hands a sharded message to the sharded subscriptions of its
// channel, in the order of the package comment, and returns how many.
func (r *Registry) SPublish(channel, payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spublishLocked(channel, payload, false)
}

// SPublishHeld is SPublish, but the subscribers it queues a first message
// for are woken only by the next WakeHeld.
func (r *Registry) SPublishHeld(channel, payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spublishLocked(channel, payload, true)
}

func (r *Registry) spublishLocked(channel, payload []byte, hold bool) int {
	subs := r.shards[string(channel)]
	if len(subs) == 0 {
		return 0
	}
	m := r.delivery(Message{Shard: true, Channel: channel, Payload: payload})
	for s := range subs {
		r.deliverLocked(s, m, hold)
	}
	r.delivered()
	return len(subs)
}

// deliverLocked hands m to s, and wakes s now or, if hold, at WakeHeld,
// when s asks for it.
func (r *Registry) deliverLocked(s Subscriber, m *Message, hold bool) {
	if !s.Deliver(m) {
		return
	}
	if hold {
		r.held = append(r.held, s)
	} else {
		s.Wake()
	}
}

// WakeHeld wakes the subscribers PublishHeld and SPublishHeld queued
// messages for since the last WakeHeld. A caller of those calls it once
// it has published what it had (before it waits for anything): until
// then the messages are not sent.
func (r *Registry) WakeHeld() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.held {
		s.Wake()
		r.held[i] = nil
	}
	r.held = r.held[:0]
}

// SReceivers returns how many subscriptions a sharded message on channel
// would be handed to now.
func (r *Registry) SReceivers(channel []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.shards[string(channel)])
}

// ShardChannels is Channels for sharded channels (PUBSUB SHARDCHANNELS).
func (r *Registry) ShardChannels(pattern []byte, all bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return names(r.shards, pattern, all)
}

// ShardNumSub is NumSub for a sharded channel (PUBSUB SHARDNUMSUB).
func (r *Registry) ShardNumSub(channel string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.shards[channel])
}

// Publish hands the message to every matching subscription, in the order
// of the package comment, and returns how many it was handed to.
func (r *Registry) Publish(channel, payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.publishLocked(channel, payload, false)
}

// PublishHeld is Publish, but the subscribers it queues a first message
// for are woken only by the next WakeHeld.
func (r *Registry) PublishHeld(channel, payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.publishLocked(channel, payload, true)
}

func (r *Registry) publishLocked(channel, payload []byte, hold bool) int {
	n := 0
	if subs := r.channels[string(channel)]; len(subs) > 0 {
		m := r.delivery(Message{Channel: channel, Payload: payload})
		for s := range subs {
			r.deliverLocked(s, m, hold)
			n++
		}
		r.delivered()
	}
	for pat, subs := range r.patterns {
		if !commands.Match([]byte(pat), channel) {
			continue
		}
		m := r.delivery(Message{IsPattern: true, Pattern: pat, Channel: channel, Payload: payload})
		for s := range subs {
			r.deliverLocked(s, m, hold)
			n++
		}
		r.delivered()
	}
	return n
}

// Receivers returns how many subscriptions a message on channel would be
// handed to now (what Publish would return), without delivering it.
func (r *Registry) Receivers(channel []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.channels[string(channel)])
	for pat, subs := range r.patterns {
		if commands.Match([]byte(pat), channel) {
			n += len(subs)
		}
	}
	return n
}

// Channels returns the channels with at least one subscriber, those
// matching pattern unless all, sorted (PUBSUB CHANNELS).
func (r *Registry) Channels(pattern []byte, all bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return names(r.channels, pattern, all)
}

func names(m map[string]map[Subscriber]struct{}, pattern []byte, all bool) []string {
	var out []string
	for ch := range m {
		if all || commands.Match(pattern, []byte(ch)) {
			out = append(out, ch)
		}
	}
	sort.Strings(out)
	return out
}

// NumSub returns the number of subscribers of channel (PUBSUB NUMSUB).
func (r *Registry) NumSub(channel string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.channels[channel])
}

// NumPat returns the number of distinct patterns subscribed to by anyone
// (PUBSUB NUMPAT, which counts patterns, not subscriptions).
func (r *Registry) NumPat() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.patterns)
}
