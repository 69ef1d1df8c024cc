// Package nemesis injects faults into a running cluster on a schedule.
//
// A fault is a small type implementing Fault; a fault kind (Kind) is a name
// plus a constructor that picks the fault's targets from a seeded random
// source. Adding a fault means adding one type and one Kinds entry: the
// planner, the runner, the report and the CLI pick it up by name.
//
// Targets that depend on the cluster's state (the leader, a follower, the
// active orchestrator) are chosen when the fault is injected (Deferred),
// since under the control plane the leader moves; the seed still fixes
// every choice (which follower: the k-th in id order). A fault that may
// make a node look dead to the control plane names it (Suspecter), and
// the history records it, so the checker can tell a failover it caused
// from a false one.
//
// Promises:
//   - Plan is a pure function of (seed, kinds, topology, timing): the same
//     seed gives the same schedule, so a failing run can be replayed.
//   - Faults are injected one at a time and every injected fault is healed,
//     even when the run is cancelled, before Run returns.
//   - Every injection and healing is recorded in the history with its time.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
	"github.com/tandemdb/tandem/internal/tools/chaos/relay"
)

// ErrUnsupported is returned by a fault the environment cannot inject (a
// partition without a relay on the link).
var ErrUnsupported = errors.New("nemesis: fault not supported by this cluster")

// Env is what faults act on: process control of the nodes and
// orchestrators, the relays on the links, and who currently leads. The
// chaos runner adapts a cluster.Cluster to it; tests use a fake.
type Env interface {
	Kill(id int) error
	Start(id int) error
	Pause(id int) error
	Resume(id int) error
	// WaitReady blocks until node id answers clients again.
	WaitReady(ctx context.Context, id int) error
	// Write performs one write on node id, recorded in the history like a
	// client's, and returns nil once it is acknowledged.
	Write(ctx context.Context, id int) error
	// Link returns the relay that carries from's connections to to, or
	// nil if that link has none. Endpoints are named "n1" (a node), "o1"
	// (an orchestrator) and "etcd".
	Link(from, to string) *relay.Relay
	// Leader is the node the topology names now (static: node 1).
	Leader(ctx context.Context) (int, error)
	// Nodes lists the node ids.
	Nodes() []int
	// ActiveOrchestrator is the orchestrator holding the election (1 for
	// "o1"); KillOrchestrator and StartOrchestrator control its process.
	ActiveOrchestrator(ctx context.Context) (int, error)
	KillOrchestrator(i int) error
	StartOrchestrator(i int) error
}

// Topology is what the planner knows about the cluster: its nodes. Who
// leads is looked up when a fault is injected (Env.Leader), since under
// the control plane it changes during a run.
type Topology struct {
	Nodes []int
}

// Node names node id as a link endpoint.
func Node(id int) string { return fmt.Sprintf("n%d", id) }

// Orchestrator names orchestrator i as a link endpoint.
func Orchestrator(i int) string { return fmt.Sprintf("o%d", i) }

// Etcd names etcd as a link endpoint.
const Etcd = "etcd"

// Fault is one fault with its targets chosen.
type Fault interface {
	// Name says what the fault does to whom ("kill n1").
	Name() string
	// Inject starts the fault.
	Inject(ctx context.Context, env Env) error
	// Heal ends it and returns when the cluster can recover (a killed node
	// is running and answering again).
	Heal(ctx context.Context, env Env) error
}

// Suspecter is implemented by faults that may make nodes look dead to the
// control plane; Run records Suspects with the fault (history.FaultEvent).
type Suspecter interface {
	Suspects() []int
}

// Kind is a named family of faults.
type Kind struct {
	Name string
	Doc  string
	// New chooses a fault's targets. It must draw randomness only from r,
	// so that the schedule is a function of the seed.
	New func(r *rand.Rand, t Topology) Fault
}

// Kinds lists every fault kind, in the order the CLI shows them. Append new
// kinds here. Targets that depend on the topology ("the leader", "a
// follower") are resolved at injection (Deferred); the seed fixes which
// follower (the k-th, in id order) and every other choice.
var Kinds = []Kind{
	{"kill-leader", "kill -9 the leader, restart it on heal", func(r *rand.Rand, t Topology) Fault {
		return OnLeader("kill the leader", func(l int, _ []int) Fault { return Kill{ID: l} })
	}},
	{"kill-leader-after-ack", "kill -9 the leader the moment it acknowledges a write, restart it on heal", func(r *rand.Rand, t Topology) Fault {
		return OnLeader("kill the leader after an ack", func(l int, _ []int) Fault { return KillAfterAck{ID: l} })
	}},
	{"kill-follower", "kill -9 a follower, restart it on heal", func(r *rand.Rand, t Topology) Fault {
		k := r.IntN(max(1, len(t.Nodes)-1))
		return OnLeader("kill a follower", func(_ int, fs []int) Fault { return Kill{ID: nth(fs, k)} })
	}},
	{"pause", "SIGSTOP the leader, SIGCONT on heal", func(r *rand.Rand, t Topology) Fault {
		return OnLeader("pause the leader", func(l int, _ []int) Fault { return Pause{ID: l} })
	}},
	{"pause-follower", "SIGSTOP a follower, SIGCONT on heal", func(r *rand.Rand, t Topology) Fault {
		k := r.IntN(max(1, len(t.Nodes)-1))
		return OnLeader("pause a follower", func(_ int, fs []int) Fault { return Pause{ID: nth(fs, k)} })
	}},
	{"partition", "cut a follower's links to and from the leader", func(r *rand.Rand, t Topology) Fault {
		k := r.IntN(max(1, len(t.Nodes)-1))
		return OnLeader("partition a follower from the leader", func(l int, fs []int) Fault {
			f := nth(fs, k)
			return Links{Link{From: Node(f), To: Node(l), Mode: relay.Mode{Cut: true}}, Link{From: Node(l), To: Node(f), Mode: relay.Mode{Cut: true}, Optional: true}}
		})
	}},
	{"delay", "delay a follower's link to the leader by 50-500ms", func(r *rand.Rand, t Topology) Fault {
		d := time.Duration(50+r.IntN(451)) * time.Millisecond
		k := r.IntN(max(1, len(t.Nodes)-1))
		return OnLeader("delay a follower's link to the leader", func(l int, fs []int) Fault {
			return Link{From: Node(nth(fs, k)), To: Node(l), Mode: relay.Mode{Delay: d}}
		})
	}},
	{"drop-oneway", "drop one direction of a follower's link to the leader", func(r *rand.Rand, t Topology) Fault {
		dir := relay.Forward
		k := r.IntN(max(1, len(t.Nodes)-1))
		if r.IntN(2) == 1 {
			dir = relay.Backward
		}
		return OnLeader("drop one way on a follower's link to the leader", func(l int, fs []int) Fault {
			return Link{From: Node(nth(fs, k)), To: Node(l), Mode: relay.Mode{Drop: dir}}
		})
	}},
	{"blackhole-stream", "black-hole the leader->follower direction of a follower's connections to the leader for good (a middlebox that lost the flow; connections opened after the heal pass)", func(r *rand.Rand, t Topology) Fault {
		k := r.IntN(max(1, len(t.Nodes)-1))
		return OnLeader("black-hole a follower's stream from the leader", func(l int, fs []int) Fault {
			return Link{From: Node(nth(fs, k)), To: Node(l), Mode: relay.Mode{Drop: relay.Backward, Sticky: true}}
		})
	}},
	{"cut-leader-etcd", "cut the leader's link to etcd (it cannot renew its lease)", func(r *rand.Rand, t Topology) Fault {
		return OnLeader("cut the leader from etcd", func(l int, _ []int) Fault {
			return Link{From: Node(l), To: Etcd, Mode: relay.Mode{Cut: true}, Suspect: l}
		})
	}},
	{"cut-orchestrator-leader", "cut the active orchestrator's probes of the leader (must not fail over)", func(r *rand.Rand, t Topology) Fault {
		return Deferred{Desc: "cut the active orchestrator from the leader", Resolve: func(ctx context.Context, env Env) (Fault, error) {
			l, err := env.Leader(ctx)
			if err != nil {
				return nil, err
			}
			o, err := env.ActiveOrchestrator(ctx)
			if err != nil {
				return nil, err
			}
			return Link{From: Orchestrator(o), To: Node(l), Mode: relay.Mode{Cut: true}}, nil
		}}
	}},
	{"kill-orchestrator", "kill -9 the active orchestrator, restart it on heal", func(r *rand.Rand, t Topology) Fault {
		return Deferred{Desc: "kill the active orchestrator", Resolve: func(ctx context.Context, env Env) (Fault, error) {
			o, err := env.ActiveOrchestrator(ctx)
			if err != nil {
				return nil, err
			}
			return KillOrchestrator{I: o}, nil
		}}
	}},
}

// FailoverKinds are the kinds that need the control plane.
var FailoverKinds = []string{"cut-leader-etcd", "cut-orchestrator-leader", "kill-orchestrator"}

// DefaultKinds are the kinds `tandem chaos` runs without --faults.
var DefaultKinds = []string{"kill-leader", "kill-follower", "pause", "partition", "cut-leader-etcd", "cut-orchestrator-leader", "kill-orchestrator"}

// Lookup returns the kinds with these names, or an error naming the
// unknown ones and listing the known ones.
func Lookup(names []string) ([]Kind, error) {
	var out []Kind
	var unknown []string
	for _, n := range names {
		i := slices.IndexFunc(Kinds, func(k Kind) bool { return k.Name == n })
		if i < 0 {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, Kinds[i])
	}
	if len(unknown) > 0 {
		var known []string
		for _, k := range Kinds {
			known = append(known, k.Name)
		}
		return nil, fmt.Errorf("nemesis: unknown fault %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// nth is the k-th of ids (0 if there are none: the fault's Inject
// reports it).
func nth(ids []int, k int) int {
	if len(ids) == 0 {
		return 0
	}
	return ids[k%len(ids)]
}

// Timing shapes a schedule.
type Timing struct {
	// Duration is the whole run.
	Duration time.Duration
	// Warmup is the fault-free start, so the history begins healthy.
	Warmup time.Duration
	// Tail is the fault-free end, so recovery after the last heal is seen.
	Tail time.Duration
	// Gap and Hold bound the (uniformly random) time between faults and
	// the time a fault lasts.
	MinGap, MaxGap   time.Duration
	MinHold, MaxHold time.Duration
}

// DefaultTiming suits a run of the given length: a few seconds of warm-up
// and tail, faults of 1-4 s with 1-3 s between them.
func DefaultTiming(d time.Duration) Timing {
	t := Timing{Duration: d, Warmup: 2 * time.Second, Tail: 5 * time.Second,
		MinGap: time.Second, MaxGap: 3 * time.Second, MinHold: time.Second, MaxHold: 4 * time.Second}
	if d < 20*time.Second {
		t.Warmup, t.Tail = d/10, d/4
	}
	return t
}

// Step is one fault in a schedule: injected At after the run began, healed
// Hold later.
type Step struct {
	At    time.Duration
	Hold  time.Duration
	Kind  string
	Fault Fault
}

func (s Step) String() string {
	return fmt.Sprintf("%v +%v %s: %s", s.At, s.Hold, s.Kind, s.Fault.Name())
}

// Plan draws a schedule from seed: faults one after another, kinds chosen
// uniformly, each fitting between Warmup and Duration-Tail. It returns no
// steps when kinds is empty.
func Plan(seed uint64, kinds []Kind, t Topology, tm Timing) []Step {
	if len(kinds) == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 0x6e656d65736973)) // "nemesis"
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
	var steps []Step
	at := tm.Warmup
	end := tm.Duration - tm.Tail
	for {
		k := kinds[r.IntN(len(kinds))]
		hold := between(tm.MinHold, tm.MaxHold)
		f := k.New(r, t)
		if at+hold > end {
			return steps
		}
		steps = append(steps, Step{At: at, Hold: hold, Kind: k.Name, Fault: f})
		at += hold + between(tm.MinGap, tm.MaxGap)
	}
}

// Run executes steps against env, timed from start, recording each fault in
// rec. It returns when the schedule is done or ctx ends; in both cases an
// injected fault is healed first (with a fresh context, bounded in time).
// Errors injecting or healing are recorded and logged, not returned: the
// run goes on and the report shows them. A fault whose injection failed is
// not healed.
func Run(ctx context.Context, env Env, steps []Step, start time.Time, rec *history.Recorder, log *slog.Logger) {
	for _, s := range steps {
		if !sleepUntil(ctx, start.Add(s.At)) {
			return
		}
		ev := history.FaultEvent{Kind: s.Kind, Name: s.Fault.Name(), Inject: rec.Now()}
		f, err := resolve(ctx, env, s.Fault)
		if err == nil {
			ev.Name = f.Name()
			if sf, ok := f.(Suspecter); ok {
				ev.Suspects = sf.Suspects()
			}
			log.Info("nemesis inject", "fault", ev.Name, "hold", s.Hold)
			err = f.Inject(ctx, env)
		}
		if err != nil {
			// Nothing to heal: the fault is recorded without a heal time,
			// so no recovery is measured for it.
			ev.InjectErr = err.Error()
			log.Warn("nemesis inject failed", "fault", ev.Name, "err", err)
			rec.AddFault(ev)
			continue
		}
		i := rec.AddFault(ev)
		sleepUntil(ctx, time.Now().Add(s.Hold))
		healCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		at := rec.Now()
		log.Info("nemesis heal", "fault", ev.Name)
		err = f.Heal(healCtx, env)
		cancel()
		if err != nil {
			log.Warn("nemesis heal failed", "fault", ev.Name, "err", err)
		}
		rec.Healed(i, at, err)
	}
}

// sleepUntil waits until t or ctx's end; it reports whether t was reached.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
