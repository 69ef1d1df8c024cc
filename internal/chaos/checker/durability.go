package checker

import (
	"fmt"

	"github.com/tandemdb/tandem/internal/chaos/history"
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
// shortfall is the number of lost increments. A counter above the number of
// INCRs ever sent is a value never written.
//
// A key with acknowledged writes but no OK final read is Unverified: the
// harness could not check it, so it must not pass.
func Durability(ops []history.Op) (vs []Violation, lost int) {
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
		var n int
		if history.IsCounter(kops) {
			v, n = counterDurability(key, kops, *final)
		} else {
			v, n = registerDurability(key, kops, *final)
		}
		vs = append(vs, v...)
		lost += n
	}
	return vs, lost
}

func registerDurability(key string, ops []history.Op, final history.Op) ([]Violation, int) {
	var from history.Op // the write whose value the final read shows
	if final.Found {
		w, ok := writesByValue(ops)[final.Result]
		if !ok || w.Outcome == history.Failed {
			return []Violation{{Kind: NeverWritten, Key: key, Detail: fmt.Sprintf("final value %q was never written: %s", final.Result, final)}}, 0
		}
		from = w
	}
	lost := 0
	var last history.Op
	for _, o := range ops {
		if o.Kind != history.Write || o.Outcome != history.OK || o.Value == from.Value {
			continue
		}
		// Without a final value every acknowledged write is lost; with
		// one, those invoked after its write returned are.
		if !final.Found || (from.Outcome == history.OK && from.Return < o.Call) {
			lost++
			last = o
		}
	}
	if lost == 0 {
		return nil, 0
	}
	shown := "nil"
	if final.Found {
		shown = final.Result
	}
	return []Violation{{Kind: LostWrite, Key: key, At: last.Call, Lost: lost, Detail: fmt.Sprintf(
		"final value %s, but %d acknowledged later writes are missing, the last %s", shown, lost, last)}}, lost
}

func counterDurability(key string, ops []history.Op, final history.Op) ([]Violation, int) {
	got, err := counterValue(final)
	if err != nil {
		return []Violation{{Kind: NeverWritten, Key: key, Detail: err.Error()}}, 0
	}
	var acked, sent, maxAck, lastAck int64
	for _, o := range ops {
		if o.Kind != history.Incr || o.Outcome == history.Failed {
			continue
		}
		sent++
		if o.Outcome == history.OK {
			acked++
			maxAck = max(maxAck, o.N)
			lastAck = max(lastAck, o.Call)
		}
	}
	want := max(acked, maxAck)
	switch {
	case got < want:
		return []Violation{{Kind: LostWrite, Key: key, At: lastAck, Lost: int(want - got), Detail: fmt.Sprintf(
			"final value %d, but %d INCRs were acknowledged (largest result %d): %d lost", got, acked, maxAck, want-got)}}, int(want - got)
	case got > sent:
		return []Violation{{Kind: NeverWritten, Key: key, Detail: fmt.Sprintf(
			"final value %d, but only %d INCRs were sent", got, sent)}}, 0
	}
	return nil, 0
}
