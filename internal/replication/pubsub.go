package replication

import (
	"sync/atomic"

	"github.com/tandemdb/tandem/internal/peerpb"
)

// Pub/sub messages on the replication stream
//
// PUBLISH is not data: a message is never logged, stored or acknowledged.
// It rides the follower streams beside the appends (peerpb.Publish), so
// that a subscriber on any node receives it, with these promises:
//
//   - One order. Leader.Publish is the cluster's one ordering point: it
//     hands the message to the leader's own subscribers (LeaderConfig.
//     DeliverLocal) and queues it for every follower stream under one
//     lock, and a stream sends its queue in order. A follower delivers in
//     the order received. A PUBLISH sent to a follower is forwarded to the
//     leader (FollowerMessage.publish) and published there, so it too
//     takes its place in that order, on every node, the follower's own
//     subscribers included.
//   - After the writes before it. Each message carries the leader's
//     applied LSN when it was published (after_lsn); a follower delivers
//     it only once it has applied that far, so a client that writes a key
//     and then publishes "changed" has the change readable on a follower
//     by the time that follower's subscribers hear of it (Redis's
//     replicas give the same, since PUBLISH is in their stream).
//   - Lost, never duplicated, while a link is down: a follower not
//     connected to a leader gets nothing published meanwhile (as a Redis
//     Cluster node cut off from the bus), and a stream that cannot keep
//     up (over maxPubQueued bytes queued) drops what does not fit,
//     counted in PubDropped and logged, rather than hold up the
//     publisher or the appends.
//
// A follower hands the messages of each Publish from the leader, and
// those each apply releases, to the node as one run (Deliver calls ended
// by FollowerConfig.Delivered), so that the node wakes each subscriber
// once per run rather than once per message.
//
// Streams negotiate it: a follower says Hello.takes_publish, a leader says
// Start.takes_publish; a node from before pub/sub is sent none and sends
// none.
//
// Sharded pub/sub (SPUBLISH/SSUBSCRIBE): a tandem cluster is one shard,
// so a sharded message takes the same path and order as the others, with
// PubMessage.shard set, and is delivered to sharded subscriptions only
// (DeliverShard, FollowerConfig.DeliverShard). Negotiated apart
// (takes_spublish both ways), so a node from before it, which would
// deliver it as a PUBLISH, is sent none.

// maxPubQueued bounds the message bytes queued for one follower stream,
// and those a follower holds waiting for their after_lsn.
const maxPubQueued = 32 << 20

func pubSize(m *peerpb.PubMessage) int { return len(m.Channel) + len(m.Message) + 16 }

// Publish publishes a message to the cluster: to this node's subscribers
// (DeliverLocal, whose count it returns: PUBLISH's reply) and to every
// follower stream that takes messages, in one order for all (see above).
// It never blocks on a follower.
func (l *Leader) Publish(channel, message []byte) int { return l.publish(channel, message, false) }

// PublishShard is Publish for a sharded message (SPUBLISH): delivered
// to sharded subscriptions only (DeliverShard here), and sent only
// to streams that take sharded messages.
func (l *Leader) PublishShard(channel, message []byte) int { return l.publish(channel, message, true) }

func (l *Leader) publish(channel, message []byte, shard bool) int {
	ch, msg := cloneBoth(channel, message)
	m := &peerpb.PubMessage{
		Channel:  ch,
		Message:  msg,
		AfterLsn: l.cfg.DB.Applied(),
		Shard:    shard,
	}
	size := pubSize(m)
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	n := 0
	if deliver := l.cfg.DeliverLocal; deliver != nil && !shard {
		n = deliver(channel, message)
	} else if deliver := l.cfg.DeliverShard; deliver != nil && shard {
		n = deliver(channel, message)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, out := range l.streams {
		if !out.takesPub || (shard && !out.takesShard) {
			continue
		}
		if out.pubBytes+size > maxPubQueued {
			l.pubDropped.Add(1)
			continue
		}
		out.pub = append(out.pub, m)
		out.pubBytes += size
		signal(out.pubWake)
	}
	return n
}

// cloneBoth copies channel and message into one allocation, not two:
// the queued message owns them (the caller's are lent for the call). Each
// is capped at its length, so that neither can grow into the other.
func cloneBoth(channel, message []byte) (ch, msg []byte) {
	buf := make([]byte, len(channel)+len(message))
	n := copy(buf, channel)
	copy(buf[n:], message)
	return buf[:n:n], buf[n:]
}

// pubMessage is a follower's PUBLISH to forward, owning its bytes.
func pubMessage(channel, message []byte, shard bool) *peerpb.PubMessage {
	ch, msg := cloneBoth(channel, message)
	return &peerpb.PubMessage{Channel: ch, Message: msg, Shard: shard}
}

// PubDropped counts the messages dropped for streams that could not keep
// up, since the leader started.
func (l *Leader) PubDropped() uint64 { return l.pubDropped.Load() }

// sendPublished sends the stream's queued messages, in order, in
// messages of at most MaxBatchBytes (one message at least).
func (l *Leader) sendPublished(stream LeaderStream, out *streamOut) error {
	l.mu.Lock()
	queue := out.pub
	out.pub, out.pubBytes = nil, 0
	l.mu.Unlock()
	for len(queue) > 0 {
		n, size := 0, 0
		for n < len(queue) && (n == 0 || size+pubSize(queue[n]) <= l.cfg.MaxBatchBytes) {
			size += pubSize(queue[n])
			n++
		}
		err := stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Publish{Publish: &peerpb.Publish{Messages: queue[:n]}}})
		if err != nil {
			return err
		}
		queue = queue[n:]
	}
	return nil
}

// followerPub is a follower's side: messages held until their after_lsn
// is applied, and the forwarding of its own PUBLISHes to the leader.
type followerPub struct {
	held      []*peerpb.PubMessage
	heldBytes int
	// fwd carries PUBLISHes made on this node to the stream's goroutine,
	// which alone sends on the stream; fwdOK says a stream that takes
	// them is up, fwdShardOK one that takes sharded ones too.
	fwd        chan *peerpb.PubMessage
	fwdOK      atomic.Bool
	fwdShardOK atomic.Bool
	dropped    atomic.Uint64
	// undelivered: deliver handed messages over since the last
	// delivered (the stream's goroutine only).
	undelivered bool
}

// delivered ends a run of deliver calls (FollowerConfig.Delivered).
func (f *Follower) delivered() {
	if f.pub.undelivered && f.cfg.Delivered != nil {
		f.cfg.Delivered()
	}
	f.pub.undelivered = false
}

// Publish forwards a PUBLISH made on this follower to the leader, which
// publishes it to the cluster (this node's subscribers get it back from
// there, in the cluster's order). false: no leader takes it now (not
// connected, or the forward queue is full); the caller delivers it to the
// local subscribers only.
func (f *Follower) Publish(channel, message []byte) bool { return f.publish(channel, message, false) }

// PublishShard is Publish for a sharded message (SPUBLISH).
func (f *Follower) PublishShard(channel, message []byte) bool {
	return f.publish(channel, message, true)
}

func (f *Follower) publish(channel, message []byte, shard bool) bool {
	if !f.pub.fwdOK.Load() || (shard && !f.pub.fwdShardOK.Load()) {
		return false
	}
	select {
	case f.pub.fwd <- pubMessage(channel, message, shard):
		return true
	default:
		f.pub.dropped.Add(1)
		return false
	}
}

// PubDropped counts the messages this follower dropped: held past
// maxPubQueued waiting for their writes, or its own PUBLISHes that found
// the forward queue full.
func (f *Follower) PubDropped() uint64 { return f.pub.dropped.Load() }

// deliver hands m to the local subscribers of its kind; the caller calls
// delivered once it has delivered what it had.
func (f *Follower) deliver(m *peerpb.PubMessage) {
	f.pub.undelivered = true
	if !m.Shard {
		f.cfg.Deliver(m.Channel, m.Message)
	} else if f.cfg.DeliverShard != nil {
		f.cfg.DeliverShard(m.Channel, m.Message)
	}
}

// received hands a Publish from the leader to the local subscribers in
// order: each once applied has reached its after_lsn, and none before an
// earlier one still held.
func (f *Follower) receivedPublish(p *peerpb.Publish, applied uint64) {
	for _, m := range p.Messages {
		if m.Settings != nil {
			f.takeSettings(m.Settings) // settings.go
			continue
		}
		if f.cfg.Deliver == nil {
			continue
		}
		if len(f.pub.held) == 0 && m.AfterLsn <= applied && !f.cfg.Buggify.FollowerPubReorder {
			f.deliver(m)
			continue
		}
		if f.pub.heldBytes+pubSize(m) > maxPubQueued {
			f.pub.dropped.Add(1)
			continue
		}
		f.pub.held = append(f.pub.held, m)
		f.pub.heldBytes += pubSize(m)
	}
	f.releasePublished(applied)
}

// releasePublished delivers the held messages whose after_lsn is applied,
// in order, stopping at the first that is not.
func (f *Follower) releasePublished(applied uint64) {
	defer f.delivered()
	if f.cfg.Buggify.FollowerPubReorder {
		// The planted fault: deliver held messages in swapped pairs, out
		// of the leader's order (regardless of after_lsn).
		for len(f.pub.held) >= 2 {
			a, b := f.pub.held[0], f.pub.held[1]
			f.pub.heldBytes -= pubSize(a) + pubSize(b)
			f.deliver(b)
			f.deliver(a)
			f.pub.held = f.pub.held[2:]
		}
		return
	}
	i := 0
	for ; i < len(f.pub.held) && f.pub.held[i].AfterLsn <= applied; i++ {
		m := f.pub.held[i]
		f.pub.heldBytes -= pubSize(m)
		f.deliver(m)
	}
	f.pub.held = f.pub.held[i:]
}
