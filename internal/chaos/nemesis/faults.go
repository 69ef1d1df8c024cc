package nemesis

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/chaos/relay"
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

// Heal implements Fault.
func (p Pause) Heal(_ context.Context, env Env) error { return env.Resume(p.ID) }

// Link puts the relay on the link From -> To into Mode (cut, delay or
// one-way drop); healing returns it to pass-through.
type Link struct {
	From, To int
	Mode     relay.Mode
}

// Name implements Fault.
func (l Link) Name() string { return fmt.Sprintf("%s n%d->n%d", l.Mode, l.From, l.To) }

// Inject implements Fault.
func (l Link) Inject(_ context.Context, env Env) error {
	var r *relay.Relay
	if l.From >= 1 && l.To >= 1 {
		r = env.Link(l.From, l.To)
	}
	if r == nil {
		return fmt.Errorf("%w: no relay on n%d->n%d", ErrUnsupported, l.From, l.To)
	}
	r.SetMode(l.Mode)
	return nil
}

// Heal implements Fault.
func (l Link) Heal(_ context.Context, env Env) error {
	r := env.Link(l.From, l.To)
	if r == nil {
		return errors.New("nemesis: relay vanished")
	}
	r.Heal()
	return nil
}
