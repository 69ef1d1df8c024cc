package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/pubsub"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
)

// Pub/sub on a node: its subscribers are in n.pubsub; messages travel
// between nodes on the replication stream (replication/pubsub.go).
//
// SPUBLISH and SSUBSCRIBE (sharded pub/sub) are the same in a namespace
// of their own: the cluster is one shard, so every node serves them (Redis
// Cluster would send a client to the channel's shard).
//
// PUBLISH's reply is the number of subscriptions on the node that served
// it that the message reaches (Redis Cluster's meaning: a node's own
// receivers); subscribers on other nodes receive it too, but no node can
// count them without a round trip, which PUBLISH does not wait for.
//
//   - On the leader: published at once (Leader.Publish), to its own
//     subscribers and every follower's; the reply counts its own.
//   - On a follower: forwarded to the leader, which publishes it to the
//     whole cluster in its one order, this follower's subscribers
//     included (they get it back from the leader); the reply counts this
//     node's subscriptions that match now. Not connected to a leader, a
//     follower delivers it to its own subscribers only (as a Redis replica
//     does with every PUBLISH), and so does a fenced node.

var _ resp.PubSubBackend = backend{}

func (b backend) PubSub() *pubsub.Registry { return b.n.pubsub }

func (b backend) Publish(_ context.Context, channel, message []byte) (int, error) {
	n := b.n
	switch r := n.current().(type) {
	case *leading:
		return r.l.Publish(channel, message), nil
	case *following:
		if r.f.Publish(channel, message) {
			return n.pubsub.Receivers(channel), nil
		}
	}
	return n.pubsub.Publish(channel, message), nil
}

// PublishShard is SPUBLISH: a tandem cluster is one shard, so it takes
// PUBLISH's path (and order) to the sharded subscribers of every node.
func (b backend) PublishShard(_ context.Context, channel, message []byte) (int, error) {
	n := b.n
	switch r := n.current().(type) {
	case *leading:
		return r.l.PublishShard(channel, message), nil
	case *following:
		if r.f.PublishShard(channel, message) {
			return n.pubsub.SReceivers(channel), nil
		}
	}
	return n.pubsub.SPublish(channel, message), nil
}

// infoStats is INFO's "# Stats": Redis's pub/sub counts (this node's),
// and the messages this node dropped (replication/pubsub.go): as a leader
// for follower streams that fell 32 MiB behind, as a follower held past
// that or its own PUBLISHes that found no room to the leader; and the
// process's write commands that logged nothing, and of those the ones
// that waited for an entry to be applied (replication.NoOpWrites).
func (b backend) infoStats(sb *strings.Builder) {
	n := b.n
	var dropped uint64
	switch r := n.current().(type) {
	case *leading:
		dropped = r.l.PubDropped()
	case *following:
		dropped = r.f.PubDropped()
	}
	noOps, noOpWaits := replication.NoOpWrites()
	fmt.Fprintf(sb, "# Stats\r\npubsub_channels:%d\r\npubsub_patterns:%d\r\ntandem_pubsub_dropped:%d\r\ntandem_noop_writes:%d\r\ntandem_noop_write_waits:%d\r\n\r\n",
		len(n.pubsub.Channels(nil, true)), n.pubsub.NumPat(), dropped, noOps, noOpWaits)
}

// Cluster-wide settings (replication/settings.go): notify-keyspace-events
// is the cluster's. The leader sends its own to every follower, first on
// each stream and on every CONFIG SET, and a follower takes them, so a
// failover keeps the notifications the cluster had. A CONFIG SET that
// would change it on a node that does not lead is refused (READONLY,
// SettingsLeader): it would last only until the leader's settings next
// arrive, so it would seem to work and then silently be undone.

var _ resp.SettingsBackend = backend{}

// SettingsChanged implements resp.SettingsBackend: on the leader, the
// cluster's settings are this node's now.
func (b backend) SettingsChanged() {
	if r, ok := b.n.current().(*leading); ok {
		r.l.PublishSettings(b.n.settings())
	}
}

// SettingsLeader implements resp.SettingsBackend: only the leader's
// settings are the cluster's.
func (b backend) SettingsLeader() bool {
	_, ok := b.n.current().(*leading)
	return ok
}

// settings returns this node's settings, the cluster's while it leads.
func (n *Node) settings() replication.Settings {
	return replication.Settings{NotifyKeyspaceEvents: commands.NotifyKeyspaceEvents()}
}

// setSettings takes the leader's settings as this node's.
func (n *Node) setSettings(s replication.Settings) {
	if !commands.SetNotifyKeyspaceEvents(s.NotifyKeyspaceEvents) {
		n.log.Warn("node: the leader's notify-keyspace-events is not valid here; kept this node's", "value", s.NotifyKeyspaceEvents)
	}
}
