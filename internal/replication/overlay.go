package replication

import (
	"slices"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// overlay holds the latest uncommitted value of every key that a sequenced,
// not yet applied write touched, so that the next write command sees the
// writes ordered before it. The Leader's seqMu guards it.
type overlay map[string]overlayValue

type overlayValue struct {
	lsn     uint64
	val     commands.Value
	deleted bool
}

// add records e's operations as the latest uncommitted values.
func (o overlay) add(e *logrec.Entry) {
	for _, op := range e.Ops {
		o[string(op.Key)] = overlayValue{
			lsn:     e.LSN,
			val:     commands.Value{Data: op.Value, ExpireAtMs: op.ExpireAtMs},
			deleted: op.Kind == logrec.OpDelete,
		}
	}
}

// drop forgets the keys of applied entries through last, unless a later
// write has touched them again: the committed data now holds them.
func (o overlay) drop(applied []*proposal, last uint64) {
	for _, p := range applied {
		for _, op := range p.entry.Ops {
			if ov, ok := o[string(op.Key)]; ok && ov.lsn <= last {
				delete(o, string(op.Key))
			}
		}
	}
}

// overlayView reads uncommitted writes first, then the committed data.
type overlayView struct {
	o    overlay
	base storage.View
}

func (v overlayView) Get(key []byte) (commands.Value, bool, error) {
	if ov, ok := v.o[string(key)]; ok {
		if ov.deleted || (ov.val.ExpireAtMs != 0 && ov.val.ExpireAtMs <= v.base.NowMs) {
			return commands.Value{}, false, nil
		}
		return ov.val, true, nil
	}
	return v.base.Get(key)
}

// Scan merges the overlay into the committed keys, sorting the overlay's
// keys on each call. One write command scans: FLUSHALL (FLUSHDB), which
// deletes every key it sees, under the sequencing lock; it and the rare
// scanning read that meets uncommitted writes pay that sort.
func (v overlayView) Scan(start []byte, fn func(key []byte, val commands.Value) bool) error {
	var keys []string
	for k := range v.o {
		if k >= string(start) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	stop := false
	err := v.base.Scan(start, func(key []byte, val commands.Value) bool {
		for len(keys) > 0 && keys[0] < string(key) {
			if !v.emit(keys[0], fn) {
				stop = true
				return false
			}
			keys = keys[1:]
		}
		if len(keys) > 0 && keys[0] == string(key) {
			keys = keys[1:]
			if !v.emit(string(key), fn) {
				stop = true
				return false
			}
			return true
		}
		if !fn(key, val) {
			stop = true
			return false
		}
		return true
	})
	for !stop && err == nil && len(keys) > 0 {
		stop = !v.emit(keys[0], fn)
		keys = keys[1:]
	}
	return err
}

func (v overlayView) emit(k string, fn func([]byte, commands.Value) bool) bool {
	val, ok, _ := v.Get([]byte(k))
	if !ok {
		return true
	}
	return fn([]byte(k), val)
}
