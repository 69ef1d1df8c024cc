package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/hooks"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// ErrRefused: a manual operation was refused (the message says why); it
// survives the HTTP API (orchapi).
var ErrRefused = orchapi.ErrRefused

// Promote makes node the leader now, at a new epoch, without waiting for
// the old leader: for when it is known dead. It refuses a node that is
// unreachable, and one behind another reachable node (that would lose the
// writes only the other has) unless acceptDataLoss, which is recorded in
// the event.
func (o *Orchestrator) Promote(ctx context.Context, node string, acceptDataLoss bool) (orchapi.Result, error) {
	o.opMu.Lock()
	defer o.opMu.Unlock()
	o.freshen(ctx)
	v := o.snapshot()
	if v.TopoErr != nil {
		return orchapi.Result{}, fmt.Errorf("%w: the topology in etcd does not decode (%v); fix it first", ErrRefused, v.TopoErr)
	}
	lost, already, err := failover.PromoteCheck(v, node, acceptDataLoss)
	if err != nil {
		return orchapi.Result{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if already {
		return orchapi.Result{OK: true, To: node, NewEpoch: v.Topo.Epoch}, nil
	}
	reason := "manual promote of " + node
	o.fire(hooks.Event{Kind: hooks.PrePromote, OldLeader: v.Topo.Leader, NewLeader: node, Epoch: v.Topo.Epoch, Reason: reason})
	ev, err := o.changeLocked(v, failover.KindPromote, reason, node, time.Time{}, lost, acceptDataLoss)
	if err != nil {
		return orchapi.Result{}, err
	}
	o.fire(hooks.Event{Kind: hooks.PostPromote, OldLeader: ev.From, NewLeader: node, Epoch: ev.NewEpoch, OldEpoch: ev.OldEpoch, Time: ev.At, Reason: reason})
	return orchapi.Result{OK: true, From: ev.From, To: node, OldEpoch: ev.OldEpoch, NewEpoch: ev.NewEpoch}, nil
}

// Switchover hands leadership to to (or the best follower) with no
// acknowledged write lost: the leader refuses new writes and answers the
// ones in flight, the target catches up to the leader's last durable
// position, then the epoch moves to the target and the old leader follows.
// If the target does not catch up within the deadline the old leader
// leads again at a new epoch.
func (o *Orchestrator) Switchover(ctx context.Context, to string) (orchapi.Result, error) {
	o.opMu.Lock()
	defer o.opMu.Unlock()
	o.freshen(ctx)
	v := o.snapshot()
	leader, target, err := failover.SwitchoverTarget(v, to)
	if err != nil {
		return orchapi.Result{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if to = target.ID; target == leader {
		return orchapi.Result{OK: true, To: to, NewEpoch: v.Topo.Epoch}, nil
	}
	if v.TopoErr != nil {
		return orchapi.Result{}, fmt.Errorf("%w: the topology in etcd does not decode (%v); fix it first", ErrRefused, v.TopoErr)
	}
	lconn, err := dial(o.peerAddr(leader.Member))
	if err != nil {
		return orchapi.Result{}, err
	}
	defer lconn.Close()
	tconn, err := dial(o.peerAddr(target.Member))
	if err != nil {
		return orchapi.Result{}, err
	}
	defer tconn.Close()
	lc, tc := peerpb.NewPeerClient(lconn), peerpb.NewPeerClient(tconn)
	reason := "planned switchover to " + to
	o.fire(hooks.Event{Kind: hooks.PreSwitchover, OldLeader: leader.ID, NewLeader: to, Epoch: v.Topo.Epoch, Reason: reason})

	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	stopped, err := lc.StopWrites(sctx, &peerpb.StopWritesRequest{Epoch: v.Topo.Epoch})
	cancel()
	if err != nil {
		// The leader may have stopped writes before failing: lead again.
		o.relead(v, leader.ID, "switchover aborted: stop writes: "+err.Error())
		return orchapi.Result{}, fmt.Errorf("switchover: stop writes on %s: %w", leader.ID, err)
	}
	want := logrec.Position{Epoch: stopped.Durable.Epoch, LSN: stopped.Durable.Lsn}
	caught := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		rep, err := tc.Heartbeat(hctx, &peerpb.HeartbeatRequest{OrchestratorId: o.cfg.ID, Epoch: v.Topo.Epoch})
		cancel()
		if err == nil && failover.Durable(rep) == want {
			caught = true
			break
		}
		if !coord.Sleep(ctx, 2*time.Millisecond) {
			break
		}
	}
	if !caught {
		o.relead(v, leader.ID, "switchover aborted: "+to+" did not catch up")
		return orchapi.Result{}, fmt.Errorf("%w: %s did not reach the leader's position %d/%d within 5 s; %s leads again", ErrRefused, to, want.Epoch, want.LSN, leader.ID)
	}
	ev, err := o.changeLocked(v, failover.KindSwitchover, reason, to, time.Time{}, 0, false)
	if err != nil {
		o.relead(v, leader.ID, "switchover aborted: "+err.Error())
		return orchapi.Result{}, err
	}
	// The pause ends when the new leader answers writes.
	for time.Now().Before(start.Add(10 * time.Second)) {
		hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		rep, err := tc.Heartbeat(hctx, &peerpb.HeartbeatRequest{OrchestratorId: o.cfg.ID, Epoch: ev.NewEpoch})
		cancel()
		if err == nil && rep.Role == statusdoc.RoleLeader && rep.LeadingEpoch == ev.NewEpoch && rep.Answering {
			break
		}
		if !coord.Sleep(ctx, 2*time.Millisecond) {
			break
		}
	}
	pause := float64(time.Since(start).Microseconds()) / 1000
	if err := o.amendEvent(ev, func(e *coord.Event) { e.PauseMs = pause }); err != nil {
		o.log.Warn("record switchover pause", "err", err)
	}
	o.log.Info("switchover done", "from", leader.ID, "to", to, "epoch", ev.NewEpoch, "pause_ms", pause)
	o.fire(hooks.Event{Kind: hooks.PostSwitchover, OldLeader: leader.ID, NewLeader: to, Epoch: ev.NewEpoch, OldEpoch: ev.OldEpoch, Time: ev.At, Reason: reason})
	return orchapi.Result{OK: true, From: leader.ID, To: to, OldEpoch: ev.OldEpoch, NewEpoch: ev.NewEpoch, PauseMs: pause}, nil
}

// relead gives the old leader a new epoch after a failed switchover (its
// lease is revoked for good once it stopped writes).
func (o *Orchestrator) relead(v failover.View, leader, reason string) {
	if _, err := o.changeLocked(v, failover.KindSwitchoverAbort, reason, leader, time.Time{}, 0, false); err != nil {
		o.log.Error("switchover: could not give the leader back its role", "err", err)
	}
}

// Status reports the orchestrator's view (its /status).
func (o *Orchestrator) Status(ctx context.Context) statusdoc.Orchestrator {
	v := o.snapshot()
	o.mu.Lock()
	st := statusdoc.Orchestrator{ID: o.cfg.ID, Active: o.active, EtcdOK: o.etcdReachable(),
		Epoch: v.Topo.Epoch, Leader: v.Topo.Leader}
	if v.TopoErr != nil {
		st.TopologyError = v.TopoErr.Error()
	}
	o.policyStatus(&st)
	var last *coord.Event // a copy: amendEvent changes o.last under o.mu
	if o.last != nil {
		c := *o.last
		last = &c
	}
	errs := map[string]string{}
	for id, ns := range o.nodes {
		errs[id] = ns.probe.LastErr
	}
	o.mu.Unlock()
	if evs, err := o.store.Events(ctx, 1); err == nil && len(evs) == 1 {
		st.LastFailover = FailoverDoc(evs[0])
	} else if last != nil {
		st.LastFailover = FailoverDoc(*last)
	}
	for _, n := range v.Nodes {
		// φ grows without bound (+Inf) for a silent node; JSON has no Inf.
		h := statusdoc.OrchestratorNode{ID: n.ID, Error: errs[n.ID], Health: statusdoc.Health{Phi: min(n.Phi, maxPhi), Reachable: n.Fresh}}
		if !n.LastBeat.IsZero() {
			h.LastHeartbeatMs = float64(v.Now.Sub(n.LastBeat).Microseconds()) / 1000
		}
		if n.Reply != nil {
			h.Role, h.DurableLSN = n.Reply.Role, failover.Durable(n.Reply).LSN
		}
		st.Nodes = append(st.Nodes, h)
	}
	return st
}

// maxPhi is the largest φ status reports: past it a node is as good as
// certainly down.
const maxPhi = 999

// FailoverDoc is ev as `tandem status` shows it.
func FailoverDoc(ev coord.Event) *statusdoc.Failover {
	return &statusdoc.Failover{At: ev.At.UTC().Format(time.RFC3339Nano), Kind: ev.Kind, Reason: ev.Reason, From: ev.From, To: ev.To,
		OldEpoch: ev.OldEpoch, NewEpoch: ev.NewEpoch, DetectionMs: ev.DetectionMs, PromotionMs: ev.PromotionMs,
		PauseMs: ev.PauseMs, LostWrites: ev.LostWrites}
}

func (o *Orchestrator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+orchapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, o.Status(r.Context()))
	})
	mux.Handle("GET "+orchapi.PathMetrics, o.metrics())
	op := func(f func(r *http.Request) (orchapi.Result, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !o.Active() {
				writeJSON(w, orchapi.StatusCode(errNotActive), orchapi.Result{Error: errNotActive.Error()})
				return
			}
			res, err := f(r)
			if err != nil {
				writeJSON(w, orchapi.StatusCode(err), orchapi.Result{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, res)
		}
	}
	mux.HandleFunc("POST "+orchapi.PathPromote, op(func(r *http.Request) (orchapi.Result, error) {
		q := r.URL.Query()
		accept, _ := strconv.ParseBool(q.Get(orchapi.ParamAcceptDataLoss))
		return o.Promote(r.Context(), q.Get(orchapi.ParamNode), accept)
	}))
	mux.HandleFunc("POST "+orchapi.PathSwitchover, op(func(r *http.Request) (orchapi.Result, error) {
		return o.Switchover(r.Context(), r.URL.Query().Get(orchapi.ParamTo))
	}))
	// Profiles, as a node has them: what an orchestrator burns, idle or not.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
