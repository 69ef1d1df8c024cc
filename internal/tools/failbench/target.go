package failbench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Target is a replicated store the benchmark can start, load, kill and heal.
// A trial calls, in order: WaitHealthy, NewClient (once per trial, or once
// per worker), Leader, Kill, Restart (while the workload still runs),
// WaitHealthy, Leader (for the read-back). Start is called once before the
// first trial and Stop once after the last. The methods are called from
// one goroutine; a client is used by many workers at once.
type Target interface {
	// Name is the target's name in the report (and in --targets).
	Name() string
	// Start starts every process of the target and returns once the leader
	// takes writes and every replica follows it.
	Start(ctx context.Context) error
	// NewClient returns a client for the workload whose pool holds
	// poolSize connections, safe for concurrent use. It must route writes
	// to the current leader, follow a failover by itself, and not retry a
	// failed command (the workload counts errors). A trial makes one,
	// shared by its workers, or one per worker (Options.ClientPerWorker);
	// it closes them.
	NewClient(poolSize int) redis.UniversalClient
	// Leader names the current leader: its process and the address it
	// serves clients on.
	Leader(ctx context.Context) (Node, error)
	// Kill kills n's process with SIGKILL.
	Kill(n Node) error
	// Restart starts again the process of n, killed by Kill, so that it
	// rejoins the target as a replica (or however the target brings a dead
	// node back). It returns once the process is started, not once it has
	// caught up.
	Restart(ctx context.Context, n Node) error
	// WaitHealthy returns once every node runs, exactly one leads, and every
	// replica has caught up with it, or ctx ends.
	WaitHealthy(ctx context.Context) error
	// Stop stops every process the target started.
	Stop() error
}

// Node is one process of a target.
type Node struct {
	// ID names the node within its target (for Kill and Restart, and the
	// report).
	ID string
	// Addr is the host:port it serves clients on.
	Addr string
	// PID is its process id.
	PID int
}

func (n Node) String() string { return fmt.Sprintf("%s (%s, pid %d)", n.ID, n.Addr, n.PID) }

// FailoverReporter is implemented by a target that can say when it detected
// a leader's failure and when it promoted a new one.
type FailoverReporter interface {
	// Failover reports the failover that followed a kill at killed. It is
	// called after the trial's load stopped; it may wait (until ctx ends) for
	// a failover it expects but has not seen yet.
	Failover(ctx context.Context, killed time.Time) (Failover, error)
}

// Failover is a target's own account of one failover, times measured from
// the kill.
type Failover struct {
	// Detected is the time from the kill until the target declared the
	// leader failed (zero if unknown).
	Detected time.Duration
	// Promoted is the time from the kill until the new leader was in place
	// (zero if unknown).
	Promoted time.Duration
	// Promotions counts the promotions the target made during the trial
	// (more than one is a repeated failover).
	Promotions int
	// Detail is anything else worth a word in the trial's line.
	Detail string
}

// Config is what a target's constructor gets.
type Config struct {
	// Dir is a directory of the target's own (data, configuration, logs).
	Dir string
	Log *slog.Logger
}

// NewTargetFunc makes a target of one kind.
type NewTargetFunc func(Config) (Target, error)

// targetKinds are the targets --targets can name, in the order the default
// runs them (the first is the one the others are compared with). A new kind
// of target adds itself here.
var targetKinds = []struct {
	name string
	make NewTargetFunc
}{
	{"redis-sentinel", func(c Config) (Target, error) { return NewSentinel(c), nil }},
	{"tandem", func(c Config) (Target, error) { return NewTandem(c), nil }},
}

// TargetNames lists the kinds of target, in the default order.
func TargetNames() []string {
	var names []string
	for _, k := range targetKinds {
		names = append(names, k.name)
	}
	return names
}

func newTarget(name string, cfg Config) (Target, error) {
	for _, k := range targetKinds {
		if k.name == name {
			return k.make(cfg)
		}
	}
	return nil, fmt.Errorf("failbench: unknown target %q (known: %s)", name, strings.Join(TargetNames(), ", "))
}

// validTargets checks a --targets list.
func validTargets(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("failbench: no targets")
	}
	for i, n := range names {
		if !slices.Contains(TargetNames(), n) {
			return fmt.Errorf("failbench: unknown target %q (known: %s)", n, strings.Join(TargetNames(), ", "))
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("failbench: target %q named twice", n)
		}
	}
	return nil
}
