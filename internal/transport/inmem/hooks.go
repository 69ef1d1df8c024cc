package inmem

import (
	"math/rand/v2"
	"time"
)

// Hooks for the usual faults. Each draws only from the link's source, so a
// run stays a function of its seed.

// DropRandom drops each message with probability p.
func DropRandom(p float64) Hook {
	return func(_ Message, r *rand.Rand) Action { return Action{Drop: r.Float64() < p} }
}

// DropIf drops the messages for which pred is true.
func DropIf(pred func(Message) bool) Hook {
	return func(m Message, _ *rand.Rand) Action { return Action{Drop: pred(m)} }
}

// CutRandom loses each message with probability p together with its
// connection (Action.Cut): a link whose connections reset now and then.
// Unlike DropRandom it keeps what a stream promises in order: what arrives
// is a prefix of what was sent, then ErrCut.
func CutRandom(p float64) Hook {
	return func(_ Message, r *rand.Rand) Action { return Action{Cut: r.Float64() < p} }
}

// Delay holds every message back a uniformly random time in [lo, hi],
// keeping their order: a slow link.
func Delay(lo, hi time.Duration) Hook {
	return func(_ Message, r *rand.Rand) Action { return Action{Delay: between(r, lo, hi)} }
}

// Reorder holds each message back by a random time in (0, hi] with
// probability p and lets the messages behind it overtake it.
func Reorder(p float64, hi time.Duration) Hook {
	return func(_ Message, r *rand.Rand) Action {
		if r.Float64() >= p {
			return Action{}
		}
		return Action{Delay: between(r, 1, hi), Reorder: true}
	}
}

// Chain applies hooks in order: the message is dropped if any drops it,
// its connection cut if any cuts it, delayed by the sum of their delays,
// and reordered if any reorders it.
// Every hook runs for every message, so each draws the same numbers
// whatever the others decide.
func Chain(hooks ...Hook) Hook {
	return func(m Message, r *rand.Rand) Action {
		var out Action
		for _, h := range hooks {
			a := h(m, r)
			out.Drop = out.Drop || a.Drop
			out.Delay += a.Delay
			out.Reorder = out.Reorder || a.Reorder
			out.Cut = out.Cut || a.Cut
		}
		return out
	}
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
