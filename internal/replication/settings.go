package replication

import "github.com/tandemdb/tandem/internal/peerpb"

// Cluster-wide settings
//
// Some settings are the cluster's, not a node's: notify-keyspace-events
// decides which keyspace notifications the leader computes for every
// write, so a failover to a node set otherwise would change them. The
// leader's settings ride the pub/sub path of every follower stream (a
// PubMessage with settings, never a log entry: like messages, they are
// not data): queued first on each stream when it joins, and again on
// every change (PublishSettings), in publish order. A follower takes them
// as its own (FollowerConfig.SetSettings), so whichever node leads next
// starts with them (LeaderConfig.Settings). A stream that breaks loses
// nothing: the next one starts with the settings of that moment.
// Negotiated by Hello.takes_settings (a node from before would deliver
// them as a message).

// Settings are the cluster's settings.
type Settings struct {
	// NotifyKeyspaceEvents is notify-keyspace-events as CONFIG GET shows
	// it ("": none).
	NotifyKeyspaceEvents string
}

func (s Settings) message() *peerpb.PubMessage {
	return &peerpb.PubMessage{Settings: &peerpb.Settings{NotifyKeyspaceEvents: s.NotifyKeyspaceEvents}}
}

// PublishSettings makes s the cluster's settings: queued for every
// follower stream that takes them, in order with the messages published
// around it. Never dropped for a slow stream (they are a few bytes).
func (l *Leader) PublishSettings(s Settings) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settings = s
	for _, out := range l.streams {
		l.queueSettingsLocked(out)
	}
}

// Settings returns the cluster's settings as this leader has them.
func (l *Leader) Settings() Settings {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settings
}

// queueSettingsLocked queues the settings for out, if it takes them.
// l.mu is held.
func (l *Leader) queueSettingsLocked(out *streamOut) {
	if !out.takesSettings {
		return
	}
	m := l.settings.message()
	out.pub = append(out.pub, m)
	out.pubBytes += pubSize(m)
	signal(out.pubWake)
}

// takeSettings hands the leader's settings to this node.
func (f *Follower) takeSettings(s *peerpb.Settings) {
	if f.cfg.SetSettings != nil {
		f.cfg.SetSettings(Settings{NotifyKeyspaceEvents: s.GetNotifyKeyspaceEvents()})
	}
}
