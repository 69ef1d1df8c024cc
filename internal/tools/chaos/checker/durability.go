package checker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Durability checks the final reads (ops marked Final, taken from the leader
// after every fault was healed) against the acknowledged writes, and returns
// the violations and how many acknowledged writes were lost.
//
// A register's final value must come from a write that was acknowledged or
// of unknown outcome, and no acknowledged write may certainly follow that
// write (be invoked after it returned): such a later write was acknowledged
// and then lost. A counter's final value must be at least the number of
// acknowledged INCRs and at least the largest acknowledged INCR result; the
// shortfall is the number of lost increments, and so is (when larger) the
// number of acknowledged INCRs whose result another one had already. A counter above the number of
// INCRs ever sent is a value never written.
//
// A key with acknowledged writes but no OK final read is Unverified: the
// harness could not check it, so it must not pass.
func Durability(ops []history.Op) (vs []Violation, lost int) {
	vs, losses := DurabilityLosses(ops)
	for _, l := range losses {
		vs = append(vs, l.Violation())
		lost += l.N
	}
	sortViolations(vs)
	return vs, lost
}

// Loss is what one key lost: acknowledged writes missing from its final
// value.
type Loss struct {
	Key string
	// Writes are a register's lost SETs (nil for a counter).
	Writes []history.Op
	// Incrs are a counter's acknowledged INCRs (the candidates for the
	// lost ones: which of them are missing the final value cannot say).
	Incrs []history.Op
	// N is how many acknowledged writes were lost; At is when the last of
	// them was invoked.
	N      int
	At     int64
	Detail string
}

// Violation is the loss as a LostWrite.
func (l Loss) Violation() Violation {
	return Violation{Kind: LostWrite, Key: l.Key, At: l.At, Lost: l.N, Detail: l.Detail}
}

// DurabilityLosses is Durability with the losses apart from the other
// violations (values never written, keys not verified), so that async
// mode can look for the lost writes in the rollback files (Vanished).
func DurabilityLosses(ops []history.Op) (vs []Violation, losses []Loss) {
	byKey := history.ByKey(ops)
	for _, key := range sortedKeys(byKey) {
		kops := byKey[key]
		var final *history.Op
		acked := 0
		for i, o := range kops {
			if o.Final && o.Kind == history.Read && o.Outcome == history.OK {
				final = &kops[i]
			}
			if o.Outcome == history.OK && (o.Kind == history.Write || o.Kind == history.Incr) {
				acked++
			}
		}
		if final == nil {
			if acked > 0 {
				vs = append(vs, Violation{Kind: Unverified, Key: key, Detail: fmt.Sprintf("%d acknowledged writes but no final read", acked)})
			}
			continue
		}
		var v []Violation
		var l *Loss
		if history.IsCounter(kops) {
			v, l = counterDurability(key, kops, *final)
		} else {
			v, l = registerDurability(key, kops, *final)
		}
		vs = append(vs, v...)
		if l != nil {
			losses = append(losses, *l)
		}
	}
	return vs, losses
}

// sortViolations orders violations by key, as Durability always has.
func sortViolations(vs []Violation) {
	slices.SortStableFunc(vs, func(a, b Violation) int { return strings.Compare(a.Key, b.Key) })
}

func registerDurability(key string, ops []history.Op, final history.Op) ([]Violation, *Loss) {
	var from history.Op // the write whose value the final read shows
	if final.Found {
		w, ok := writesByValue(ops)[final.Result]
		if !ok || w.Outcome == history.Failed {
			return []Violation{{Kind: NeverWritten, Key: key, Detail: fmt.Sprintf("final value %q was never written: %s", final.Result, final)}}, nil
		}
		from = w
	}
	var lost []history.Op
	for _, o := range ops {
		if o.Kind != history.Write || o.Outcome != history.OK || o.Value == from.Value {
			continue
		}
		// Without a final value every acknowledged write is lost; with
		// one, those invoked after its write returned are.
		if !final.Found || (from.Outcome == history.OK && from.Return < o.Call) {
			lost = append(lost, o)
		}
	}
	if len(lost) == 0 {
		return nil, nil
	}
	shown := "nil"
	if final.Found {
		shown = final.Result
	}
	last := lost[len(lost)-1]
	return nil, &Loss{Key: key, Writes: lost, N: len(lost), At: last.Call, Detail: fmt.Sprintf(
		"final value %s, but %d acknowledged later writes are missing, the last %s", shown, len(lost), last)}
}

func counterDurability(key string, ops []history.Op, final history.Op) ([]Violation, *Loss) {
	got, err := counterValue(final)
	if err != nil {
		return []Violation{{Kind: NeverWritten, Key: key, Detail: err.Error()}}, nil
	}
	var acked, sent, maxAck, lastAck int64
	var incrs []history.Op
	for _, o := range ops {
		if o.Kind != history.Incr || o.Outcome == history.Failed {
			continue
		}
		sent++
		if o.Outcome == history.OK {
			acked++
			maxAck = max(maxAck, o.N)
			lastAck = max(lastAck, o.Call)
			incrs = append(incrs, o)
		}
	}
	want := max(acked, maxAck)
	// Two acknowledged INCRs with the same result: one of them was lost
	// (a failover gave its result out again), even when the count of
	// INCRs of unknown outcome hides the shortfall in the final value.
	results := map[int64]history.Op{}
	var dups int64
	at := lastAck
	for _, o := range incrs {
		if first, ok := results[o.N]; ok {
			// The first of the two was acknowledged and lost: the
			// report ties the loss to when it was invoked.
			dups++
			at = first.Call
			continue
		}
		results[o.N] = o
	}
	switch {
	case got < want || dups > 0:
		n := max(want-got, dups)
		return nil, &Loss{Key: key, Incrs: incrs, N: int(n), At: at, Detail: fmt.Sprintf(
			"final value %d, but %d INCRs were acknowledged (largest result %d, %d results given out twice): %d lost", got, acked, maxAck, dups, n)}
	case got > sent:
		return []Violation{{Kind: NeverWritten, Key: key, Detail: fmt.Sprintf(
			"final value %d, but only %d INCRs were sent", got, sent)}}, nil
	}
	return nil, nil
}
