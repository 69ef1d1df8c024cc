package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
)

// The leader manages its own sync set (Patroni's synchronous mode keeps
// the same order), so that every acknowledged write is durable on at least
// one member of the set that etcd holds for the current epoch:
//
//   - to add a member, publish the larger set in etcd first (a compare and
//     swap on the epoch), then count the member's acknowledgements; a member
//     is added only once it has caught up to the commit LSN;
//   - to remove one, stop counting it first, note the commit LSN c then,
//     and publish the smaller set only once every remaining member has made
//     c durable (every write acknowledged while it still counted is at or
//     below c).
//
// semisync wants one healthy member, sync every connected follower. A
// member the leader has not heard from for syncMemberTimeout is replaced
// by the most caught-up follower (writes resume within about that long);
// the last member is never dropped without a replacement (writes then
// wait, and answer NOREPLICAS after the write timeout: sync-fallback
// never).
const syncMemberTimeout = 500 * time.Millisecond

// syncManager is the leader-side state of one leadership's sync set.
type syncManager struct {
	// removing: members no longer counted locally, still published, and
	// the commit LSN every remaining member must reach before the smaller
	// set is published.
	removing  []string
	removeAt  uint64
	lostSince map[string]time.Time
	// unmetSince: since when no member is there and none can be added;
	// degraded: sync-fallback has switched the leader to async.
	unmetSince time.Time
	degraded   bool
}

// fallbackAfter is the topology's sync-fallback delay; 0 means never.
func fallbackAfter(t coord.Topology) time.Duration {
	if t.SyncFallback == "" || t.SyncFallback == "never" {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimPrefix(t.SyncFallback, "after "))
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// modeOf is the mode in force: the topology's if it names one, else the
// node's own --mode.
func (a *agent) modeOf(t coord.Topology) commit.Mode {
	if t.Mode != "" {
		if m, err := commit.ParseMode(t.Mode); err == nil {
			return m
		}
	}
	return a.n.cfg.Mode
}

// manageSyncSet runs one step of the leader's sync-set management.
func (a *agent) manageSyncSet(ctx context.Context, r *leading) {
	t := a.topology()
	if t.Leader != a.n.cfg.ID || t.Epoch != r.l.Epoch() || r.lease == nil || r.lease.Revoked() {
		return
	}
	mode := a.modeOf(t)
	if r.sync != nil && r.sync.degraded && mode.NeedsSyncSet() {
		a.restoreSync(ctx, r, t, mode)
		return
	}
	if cur, _ := r.l.Mode(); cur != mode {
		r.l.SetMode(mode)
		a.n.log.Info("control plane: mode", "mode", mode)
	}
	if !mode.NeedsSyncSet() {
		a.syncShort.Store(false)
		return
	}
	if r.sync == nil {
		r.sync = &syncManager{lostSince: map[string]time.Time{}}
		// The published set of the epoch, less this node (it leads now).
		r.l.SetSyncSet(without(t.SyncSet, a.n.cfg.ID))
	}
	m := r.sync
	st := r.l.Status()
	now := time.Now() // the leader's clock, as LastSeen
	// A follower counts as there if its stream is up and it reported
	// lately: a paused process keeps its connection open.
	connected := map[string]uint64{}
	for _, f := range st.Followers {
		if f.Connected && now.Sub(f.LastSeen) < syncMemberTimeout {
			connected[f.NodeID] = f.DurableLSN
		}
	}
	_, local := r.l.Mode()
	published := without(t.SyncSet, a.n.cfg.ID)

	// A removal under way: publish once the remaining members hold it.
	if len(m.removing) > 0 {
		done := true
		for _, id := range local {
			if connected[id] < m.removeAt {
				done = false
			}
		}
		if done && a.publishSyncSet(ctx, t, local) {
			a.n.log.Info("control plane: sync set shrunk", "removed", m.removing, "set", local)
			m.removing = nil
		}
		return
	}
	if !slices.Equal(published, t.SyncSet) {
		// This node was a member of the set it now leads: publish without it.
		a.publishSyncSet(ctx, t, published)
		return
	}

	var healthy, lost []string
	for _, id := range local {
		if _, ok := connected[id]; ok {
			delete(m.lostSince, id)
			healthy = append(healthy, id)
			continue
		}
		if _, ok := m.lostSince[id]; !ok {
			m.lostSince[id] = now
		}
		if now.Sub(m.lostSince[id]) >= syncMemberTimeout {
			lost = append(lost, id)
		}
	}
	a.syncShort.Store(t.SyncMin > 0 && len(healthy) < t.SyncMin)
	want := max(1, t.SyncMin)
	if mode.Kind == commit.Sync {
		want = max(want, len(connected))
	}
	// Add the most caught-up follower outside the set while short of it.
	if len(healthy) < want {
		best, bestLSN := "", uint64(0)
		for id, d := range connected {
			if !slices.Contains(local, id) && d >= st.Commit && (best == "" || d > bestLSN || (d == bestLSN && id < best)) {
				best, bestLSN = id, d
			}
		}
		if best != "" {
			next := append(slices.Clone(local), best)
			slices.Sort(next)
			if a.publishSyncSet(ctx, t, next) {
				r.l.SetSyncSet(next)
				a.n.log.Info("control plane: sync set grew", "added", best, "set", next)
			}
			m.unmetSince = time.Time{}
			return
		}
	}
	if len(healthy) == 0 {
		if m.unmetSince.IsZero() {
			m.unmetSince = now
		}
		if d := fallbackAfter(t); d > 0 && now.Sub(m.unmetSince) >= d {
			m.degraded = true
			r.l.SetMode(commit.Mode{Kind: commit.Async})
			a.degraded.Store(true)
			a.n.log.Error("control plane: SYNC FALLBACK: no sync-set member for the sync-fallback delay; writes are now acknowledged in async mode and may be lost on failover",
				"mode", mode, "after", d, "set", local)
			a.event(ctx, coord.Event{Kind: "sync-fallback", Reason: fmt.Sprintf("no member of %v for %v: degraded to async", local, d), To: a.n.cfg.ID, OldEpoch: t.Epoch, NewEpoch: t.Epoch})
			return
		}
	} else {
		m.unmetSince = time.Time{}
	}
	// Drop lost members once others remain to hold the writes.
	if len(lost) > 0 && len(healthy) > 0 {
		next := slices.DeleteFunc(slices.Clone(local), func(id string) bool { return slices.Contains(lost, id) })
		m.removing, m.removeAt = lost, st.Commit
		r.l.SetSyncSet(next) // stop counting them first
		a.n.log.Info("control plane: sync set shrinking", "removing", lost, "until_lsn", st.Commit)
	}
}

// publishSyncSet writes set as the sync set of t's epoch in etcd; false if
// the epoch moved on (the watch then makes this node follow).
func (a *agent) publishSyncSet(ctx context.Context, t coord.Topology, set []string) bool {
	next := t
	next.SyncSet = set
	next.Changed = time.Now()
	next.Reason = fmt.Sprintf("sync set %v", set)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.SetTopology(cctx, t.Epoch, next, nil); err != nil {
		a.n.log.Warn("control plane: publish sync set", "set", set, "err", err)
		return false
	}
	a.mu.Lock()
	if a.topo.Epoch == t.Epoch {
		a.topo = next
	}
	a.mu.Unlock()
	return true
}

func without(ids []string, id string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
}

// restoreSync ends a sync fallback once a follower has caught up: it is
// published as the sync set (before it counts), then the mode is restored.
func (a *agent) restoreSync(ctx context.Context, r *leading, t coord.Topology, mode commit.Mode) {
	st := r.l.Status()
	now := time.Now()
	best, bestLSN := "", uint64(0)
	for _, f := range st.Followers {
		if f.Connected && now.Sub(f.LastSeen) < syncMemberTimeout && f.DurableLSN >= st.Commit && (best == "" || f.DurableLSN > bestLSN) {
			best, bestLSN = f.NodeID, f.DurableLSN
		}
	}
	if best == "" {
		return
	}
	set := []string{best}
	if !a.publishSyncSet(ctx, t, set) {
		return
	}
	r.l.SetSyncSet(set)
	r.l.SetMode(mode)
	r.sync.degraded, r.sync.unmetSince = false, time.Time{}
	r.sync.lostSince = map[string]time.Time{}
	a.n.log.Warn("control plane: sync restored", "mode", mode, "set", set)
	a.event(ctx, coord.Event{Kind: "sync-restored", Reason: fmt.Sprintf("%s caught up: %s again", best, mode), To: a.n.cfg.ID, OldEpoch: t.Epoch, NewEpoch: t.Epoch})
	a.degraded.Store(false) // after the event: status never says restored before etcd does
}

// event records e in etcd (best effort: the log line is already written).
func (a *agent) event(ctx context.Context, e coord.Event) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.AddEvent(cctx, e); err != nil {
		a.n.log.Warn("control plane: record event", "kind", e.Kind, "err", err)
	}
}
