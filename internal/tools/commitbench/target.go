package commitbench

import (
	"context"
	"time"
)

// Target is a replicated store the benchmark measures: started fresh for
// its measurement, stopped after it. A target is loaded either by the
// benchmark's own Go workers (WorkerTarget) or by a load generator of its
// own (RunnerTarget, e.g. pgbench); it implements exactly one of the two.
type Target interface {
	// Name is the target's name in the report and in --targets.
	Name() string
	// Describe says in one line what runs and what its write rule is
	// (e.g. "Redis 7.0.15, primary + 1 replica, appendfsync always, SET +
	// WAIT 1 0").
	Describe() string
	// Start starts every process of the target under dir (empty, its
	// own) and returns once it takes writes with every replica attached.
	Start(ctx context.Context, dir string) error
	// Processes are the target's server processes, for the CPU time per
	// operation in the report; a process's children (PostgreSQL's
	// backends) count with it.
	Processes() []Process
	// Stop stops every process the target started and waits for them.
	Stop() error
}

// Process is one server process of a target.
type Process struct {
	Role string // "leader", "follower", "primary", "replica", "member"...
	PID  int
}

// WorkerTarget is a target loaded by the benchmark's Go workers: Load.Clients
// workers, each with its own Worker, writing one key at a time.
type WorkerTarget interface {
	Target
	// NewWorker returns a worker's connection. The benchmark calls it
	// Load.Clients times after Start and closes every worker before Stop.
	NewWorker(ctx context.Context) (Worker, error)
}

// Worker writes to the target through one connection (or one client).
type Worker interface {
	// Write stores value under key and returns once the target
	// acknowledged it under the rule Describe names (for Redis: SET and
	// WAIT 1 0 answered with at least 1); an error is counted, not
	// retried.
	Write(ctx context.Context, key string, value []byte) error
	Close() error
}

// RunnerTarget is a target loaded by a load generator of its own.
type RunnerTarget interface {
	Target
	// Run runs the load l against the started target: l.Clients
	// concurrent clients each upserting a random key of l.Keyspace with
	// an l.ValueSize-byte value, for l.Warmup (not measured) and then
	// l.Duration, and returns what was measured after the warmup.
	Run(ctx context.Context, l Load) (Result, error)
}

// Load is the workload, the same for every target.
type Load struct {
	Clients   int
	ValueSize int
	Keyspace  int
	Warmup    time.Duration
	Duration  time.Duration
}

// Result is what one target's measured window gave.
type Result struct {
	// Latencies holds one entry per acknowledged write, invoke to
	// acknowledgement, in any order.
	Latencies []time.Duration
	// Errors counts writes that failed.
	Errors int
	// Elapsed is the measured window's length.
	Elapsed time.Duration
}
