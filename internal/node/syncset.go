package node

import (
	"context"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
)

// The leader's sync set is kept by failover.SyncSet, a pure state machine
// (its comment states the policy). The agent steps it with the topology's
// rules and the leader's status (every 50 ms, or once settled only on a
// stream or topology change or at the step's Until) and carries out what
// it returns, in order: a failed publication stops the step, so nothing it
// published for is counted.

// modeOf is the mode in force: the topology's if it names one, else the
// node's own --mode.
func (a *agent) modeOf(t coord.Topology) commit.Mode {
	return t.Mode.Or(a.n.cfg.Mode)
}

// manageSyncSet runs one step of the leader's sync-set policy and returns
// its Until (zero: step again at the usual cadence).
func (a *agent) manageSyncSet(ctx context.Context, r *leading) time.Time {
	t := a.topology()
	if t.Leader != a.n.cfg.ID || t.Epoch != r.l.Epoch() || r.lease == nil || r.lease.Revoked() {
		return time.Time{}
	}
	if r.sync == nil {
		r.sync = failover.NewSyncSet(a.n.cfg.ID)
	}
	st := r.l.Status()
	localMode, localSet := r.l.Mode()
	in := failover.SyncInput{Now: time.Now(), // the leader's clock, as LastSeen
		Mode: a.modeOf(t), Fallback: t.SyncFallback, SyncMin: t.SyncMin, Published: t.SyncSet,
		Commit: st.Commit, LocalMode: localMode, LocalSet: localSet}
	for _, f := range st.Followers {
		in.Followers = append(in.Followers, failover.SyncFollower{ID: f.NodeID, Connected: f.Connected, LastSeen: f.LastSeen, Durable: f.DurableLSN})
	}
	step := r.sync.Step(in)
	for _, act := range step.Actions {
		switch act.Kind {
		case failover.Publish:
			ok := a.publishSyncSet(ctx, t, act.Set)
			r.sync.Published(ok)
			if !ok {
				a.syncFlags(r.sync)
				return time.Time{}
			}
		case failover.Count:
			r.l.SetSyncSet(act.Set)
		case failover.SetMode:
			r.l.SetMode(act.Mode)
		case failover.Record:
			a.event(ctx, coord.Event{Kind: act.Event, Reason: act.Text, To: a.n.cfg.ID, OldEpoch: t.Epoch, NewEpoch: t.Epoch})
		case failover.Log:
			a.n.log.Log(ctx, act.Level, "control plane: "+act.Text)
		}
	}
	// After the step's event: status never says restored before etcd does.
	a.syncFlags(r.sync)
	return step.Until
}

// syncFlags shows the policy's state to writes, status and metrics.
func (a *agent) syncFlags(s *failover.SyncSet) {
	a.syncShort.Store(s.Short())
	a.degraded.Store(s.Degraded())
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

// event records e in etcd (best effort: the log line is already written).
func (a *agent) event(ctx context.Context, e coord.Event) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := a.store.AddEvent(cctx, e); err != nil {
		a.n.log.Warn("control plane: record event", "kind", e.Kind, "err", err)
	}
}
