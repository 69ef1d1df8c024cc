package node

import (
	"time"

	"github.com/tandemdb/tandem/internal/replication"
)

// logRetentionEvery is how often a node that does not lead trims its log.
const logRetentionEvery = time.Second

// logRetentionLoop trims the log of a node that does not lead (the
// leader's retention is its replication core's rule, which knows what
// each follower needs). A follower's log serves no one while it follows:
// it keeps the entries Pebble may not have made durable (storage never
// trims past the applied LSN, and deletes a segment only once a Pebble
// flush holds its applies),
// and the newest RetainMinBytes of applied ones, for the rollback file of
// a diverged suffix and for the followers it would serve if promoted
// (they follow the same leader, so they are about as far along). Without
// it a follower's log grew without bound.
func (n *Node) logRetentionLoop() {
	defer n.bg.Done()
	keep := n.cfg.RetainMinBytes
	if keep <= 0 {
		keep = replication.DefaultRetainMinBytes
	}
	t := time.NewTicker(logRetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-n.closed:
			return
		}
		if _, leading := n.current().(*leading); leading {
			continue
		}
		if err := n.db.TrimLogTo(keep); err != nil {
			n.log.Warn("log retention", "err", err)
		}
	}
}
