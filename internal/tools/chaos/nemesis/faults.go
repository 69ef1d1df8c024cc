package nemesis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/relay"
)

// Kill kills node ID with SIGKILL; healing restarts it on its data
// directory and waits until it answers.
type Kill struct{ ID int }

// Name implements Fault.
func (k Kill) Name() string { return fmt.Sprintf("kill n%d", k.ID) }

// Inject implements Fault.
func (k Kill) Inject(_ context.Context, env Env) error {
	if k.ID < 1 {
		return fmt.Errorf("%w: no node to kill", ErrUnsupported)
	}
	return env.Kill(k.ID)
}

// Suspects implements Suspecter.
func (k Kill) Suspects() []int { return []int{k.ID} }

// Heal implements Fault.
func (k Kill) Heal(ctx context.Context, env Env) error {
	if err := env.Start(k.ID); err != nil {
		return err
	}
	return env.WaitReady(ctx, k.ID)
}

// KillAfterAck writes to node ID and kills it with SIGKILL as soon as the
// write is acknowledged; healing restarts it and waits until it answers.
// A random kill finds an acknowledged write that is not durable yet only by
// luck of timing; this one always has a write acknowledged a moment before
// (microseconds: well inside any group commit), so a node that
// acknowledges before the write is durable loses it every time, and the
// durability check sees it. If the write fails the node is killed all the
// same; the write's outcome is in the history.
type KillAfterAck struct{ ID int }

// Name implements Fault.
func (k KillAfterAck) Name() string { return fmt.Sprintf("kill n%d after an ack", k.ID) }

// Inject implements Fault.
func (k KillAfterAck) Inject(ctx context.Context, env Env) error {
	if k.ID < 1 {
		return fmt.Errorf("%w: no node to kill", ErrUnsupported)
	}
	_ = env.Write(ctx, k.ID) // recorded in the history either way
	return env.Kill(k.ID)
}

// Suspects implements Suspecter.
func (k KillAfterAck) Suspects() []int { return []int{k.ID} }

// Heal implements Fault.
func (k KillAfterAck) Heal(ctx context.Context, env Env) error { return Kill(k).Heal(ctx, env) }

// Pause stops node ID with SIGSTOP; healing continues it with SIGCONT.
type Pause struct{ ID int }

// Name implements Fault.
func (p Pause) Name() string { return fmt.Sprintf("pause n%d", p.ID) }

// Inject implements Fault.
func (p Pause) Inject(_ context.Context, env Env) error {
	if p.ID < 1 {
		return fmt.Errorf("%w: no node to pause", ErrUnsupported)
	}
	return env.Pause(p.ID)
}

// Suspects implements Suspecter.
func (p Pause) Suspects() []int { return []int{p.ID} }

// Heal implements Fault.
func (p Pause) Heal(_ context.Context, env Env) error { return env.Resume(p.ID) }

// Link puts the relay on the link From -> To (endpoint names: see
// Env.Link) into Mode (cut, delay or one-way drop); healing returns it to
// pass-through. Suspect, if not 0, is the node the cut may make look dead
// (a leader cut off from etcd cannot renew its lease).
type Link struct {
	From, To string
	Mode     relay.Mode
	Suspect  int
	// Optional: a link without a relay is left alone instead of failing
	// the injection (the leader->follower direction of a partition, which
	// the static topology never dials).
	Optional bool
}

// Name implements Fault.
func (l Link) Name() string { return fmt.Sprintf("%s %s->%s", l.Mode, l.From, l.To) }

// Suspects implements Suspecter.
func (l Link) Suspects() []int {
	if l.Suspect == 0 {
		return nil
	}
	return []int{l.Suspect}
}

// Inject implements Fault.
func (l Link) Inject(_ context.Context, env Env) error {
	r := env.Link(l.From, l.To)
	if r == nil {
		if l.Optional {
			return nil
		}
		return fmt.Errorf("%w: no relay on %s->%s", ErrUnsupported, l.From, l.To)
	}
	r.SetMode(l.Mode)
	return nil
}

// Heal implements Fault.
func (l Link) Heal(_ context.Context, env Env) error {
	r := env.Link(l.From, l.To)
	if r == nil {
		if l.Optional {
			return nil
		}
		return errors.New("nemesis: relay vanished")
	}
	r.Heal()
	return nil
}

// Links is several link faults injected and healed together (both
// directions of a partition).
type Links []Link

// Name implements Fault.
func (ls Links) Name() string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Name())
	}
	return strings.Join(names, ", ")
}

// Inject implements Fault. Links injected before one that fails are
// healed again, so a failed injection leaves nothing behind.
func (ls Links) Inject(ctx context.Context, env Env) error {
	for i, l := range ls {
		if err := l.Inject(ctx, env); err != nil {
			_ = ls[:i].Heal(ctx, env)
			return err
		}
	}
	return nil
}

// Heal implements Fault.
func (ls Links) Heal(ctx context.Context, env Env) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Heal(ctx, env))
	}
	return errors.Join(errs...)
}

// KillOrchestrator kills orchestrator I with SIGKILL; healing restarts it
// (as a standby: another one holds the election by then).
type KillOrchestrator struct{ I int }

// Name implements Fault.
func (k KillOrchestrator) Name() string { return fmt.Sprintf("kill o%d", k.I) }

// Inject implements Fault.
func (k KillOrchestrator) Inject(_ context.Context, env Env) error {
	if k.I < 1 {
		return fmt.Errorf("%w: no orchestrator to kill", ErrUnsupported)
	}
	return env.KillOrchestrator(k.I)
}

// Heal implements Fault.
func (k KillOrchestrator) Heal(_ context.Context, env Env) error { return env.StartOrchestrator(k.I) }

// Deferred is a fault whose targets depend on the cluster's state when it
// is injected (who leads, which orchestrator is active). Run calls Resolve
// at injection and injects and heals the fault it returns, recording that
// fault's name; Desc names the deferred fault in a planned schedule.
type Deferred struct {
	Desc    string
	Resolve func(ctx context.Context, env Env) (Fault, error)
}

// Name implements Fault.
func (d Deferred) Name() string { return d.Desc }

// Inject implements Fault; Run resolves first, so this runs only when a
// Deferred is used on its own.
func (d Deferred) Inject(context.Context, Env) error {
	return errors.New("nemesis: a deferred fault must be resolved first")
}

// Heal implements Fault.
func (d Deferred) Heal(context.Context, Env) error { return nil }

// OnLeader is a Deferred fault built from the leader at injection time and
// the other nodes (the followers, in id order).
func OnLeader(desc string, build func(leader int, followers []int) Fault) Deferred {
	return Deferred{Desc: desc, Resolve: func(ctx context.Context, env Env) (Fault, error) {
		l, err := env.Leader(ctx)
		if err != nil {
			return nil, fmt.Errorf("nemesis: who leads: %w", err)
		}
		var fs []int
		for _, n := range env.Nodes() {
			if n != l {
				fs = append(fs, n)
			}
		}
		return build(l, fs), nil
	}}
}

// resolve returns the fault to inject for f: f itself, or what a Deferred
// resolves to (within 2 s).
func resolve(ctx context.Context, env Env, f Fault) (Fault, error) {
	d, ok := f.(Deferred)
	if !ok {
		return f, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return d.Resolve(ctx, env)
}
