package replication

import (
	"sync/atomic"
	"time"
)

// Cycle sums what the leader's group-commit cycle spends, phase by phase,
// so that which phase bounds a leader's write throughput can be read off a
// running node (/metrics) or a benchmark. An entry waits to be appended
// (Queued: from its sequencing to its group's append). A group's Append is
// handed out some time after the last one ended (AppendGap: a group held
// for writers expected back, or no write to append), waits to be taken by
// the goroutine that runs it (AppendDelay: a committer busy applying the
// last group makes the next fsync wait), then the fdatasync (Fsync). Its
// Apply waits to be taken (ApplyDelay), then Pebble's apply (Apply), the
// rest of the apply (messages, the overlay's drop, the core's step:
// ApplyRest) and the replies written by the goroutine that applied the
// group (Answer). Times are sums (Queued over entries, the others over
// groups); divide by Entries, Appends or Applies for a mean.
type Cycle struct {
	Appends, Entries, Applies, Applied, Answered uint64
	Queued, AppendGap, AppendDelay, Fsync        time.Duration
	ApplyDelay, Apply, ApplyRest, Answer         time.Duration
}

// Sub is c minus an earlier count.
func (c Cycle) Sub(o Cycle) Cycle {
	return Cycle{
		Appends: c.Appends - o.Appends, Entries: c.Entries - o.Entries,
		Applies: c.Applies - o.Applies, Applied: c.Applied - o.Applied, Answered: c.Answered - o.Answered,
		Queued: c.Queued - o.Queued, AppendGap: c.AppendGap - o.AppendGap, AppendDelay: c.AppendDelay - o.AppendDelay, Fsync: c.Fsync - o.Fsync,
		ApplyDelay: c.ApplyDelay - o.ApplyDelay, Apply: c.Apply - o.Apply,
		ApplyRest: c.ApplyRest - o.ApplyRest, Answer: c.Answer - o.Answer,
	}
}

// cycleCounts is the leader's live Cycle (nanoseconds in the times).
type cycleCounts struct {
	appends, entries, applies, applied, answered atomic.Uint64
	queued, appendGap, appendDelay, fsync        atomic.Int64
	applyDelay, apply, applyRest, answer         atomic.Int64
}

// Cycle returns what this leadership's group-commit cycle has spent so
// far.
func (l *Leader) Cycle() Cycle {
	c := &l.cycle
	d := func(v *atomic.Int64) time.Duration { return time.Duration(v.Load()) }
	return Cycle{
		Appends: c.appends.Load(), Entries: c.entries.Load(),
		Applies: c.applies.Load(), Applied: c.applied.Load(), Answered: c.answered.Load(),
		Queued: d(&c.queued), AppendGap: d(&c.appendGap), AppendDelay: d(&c.appendDelay), Fsync: d(&c.fsync),
		ApplyDelay: d(&c.applyDelay), Apply: d(&c.apply), ApplyRest: d(&c.applyRest), Answer: d(&c.answer),
	}
}
