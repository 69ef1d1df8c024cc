package keyspace

import (
	"slices"
	"strings"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Layer is rows written over base rows and not yet in them: a command's
// own writes (its transaction) or the leader's sequenced, unapplied
// entries (its overlay). It is a Writer, so ops reach it through Apply,
// and Rows, so it is read through a Reader like the stored data. Every
// write shadows the base and earlier layer writes; a range delete hides
// base rows and earlier layer rows in its span, not later ones.
//
// Each write is tagged with the LSN set by SetLSN, so that Forget can drop
// what the base has since applied. A Layer is not safe for concurrent use.
type Layer struct {
	base   Rows
	lsn    uint64
	seq    uint64
	points map[string]*layerPoint
	ranges []layerRange
}

type layerPoint struct {
	val      []byte
	deleted  bool
	seq, lsn uint64
}

type layerRange struct {
	lo, hi   string
	seq, lsn uint64
}

// NewLayer returns an empty layer over base.
func NewLayer(base Rows) *Layer {
	return &Layer{base: base, points: map[string]*layerPoint{}}
}

// SetBase changes the rows under the layer (the leader's committed data at
// a new clock).
func (l *Layer) SetBase(base Rows) { l.base = base }

// SetLSN tags the writes that follow with lsn.
func (l *Layer) SetLSN(lsn uint64) { l.lsn = lsn }

// Len is the number of rows and range deletes the layer holds.
func (l *Layer) Len() int { return len(l.points) + len(l.ranges) }

// Set implements Writer.
func (l *Layer) Set(k, v []byte) {
	l.seq++
	l.points[string(k)] = &layerPoint{val: v, seq: l.seq, lsn: l.lsn} // see Writer: v is kept
}

// Delete implements Writer.
func (l *Layer) Delete(k []byte) {
	l.seq++
	l.points[string(k)] = &layerPoint{deleted: true, seq: l.seq, lsn: l.lsn}
}

// DeleteRange implements Writer.
func (l *Layer) DeleteRange(lo, hi []byte) {
	l.seq++
	l.ranges = append(l.ranges, layerRange{lo: string(lo), hi: string(hi), seq: l.seq, lsn: l.lsn})
}

// ApplyOps applies ops to the layer, tagged with lsn.
func (l *Layer) ApplyOps(lsn uint64, ops []logrec.Op) error {
	l.lsn = lsn
	for i := range ops {
		if err := Apply(l, &ops[i]); err != nil {
			return err
		}
	}
	return nil
}

// Forget drops the writes of ops (the ops of entries the base now holds)
// tagged with an LSN at or below applied; a row written again by a later
// entry stays. It visits only the rows ops name, not the whole layer.
func (l *Layer) Forget(ops []logrec.Op, applied uint64) {
	f := forgetter{l: l, applied: applied}
	for i := range ops {
		_ = Apply(&f, &ops[i])
	}
	if f.ranges {
		kept := l.ranges[:0]
		for _, r := range l.ranges {
			if r.lsn > applied {
				kept = append(kept, r)
			}
		}
		clear(l.ranges[len(kept):])
		l.ranges = kept
	}
}

type forgetter struct {
	l       *Layer
	applied uint64
	ranges  bool
}

func (f *forgetter) Set(k, _ []byte) { f.Delete(k) }
func (f *forgetter) Delete(k []byte) {
	if p, ok := f.l.points[string(k)]; ok && p.lsn <= f.applied {
		delete(f.l.points, string(k))
	}
}
func (f *forgetter) DeleteRange(_, _ []byte) { f.ranges = true }

// covered reports whether a range delete newer than seq covers k.
func (l *Layer) covered(k string, seq uint64) bool {
	for _, r := range l.ranges {
		if r.seq > seq && k >= r.lo && k < r.hi {
			return true
		}
	}
	return false
}

// Get implements Rows.
func (l *Layer) Get(k []byte) ([]byte, bool, error) {
	if p, ok := l.points[string(k)]; ok {
		if p.deleted || l.covered(string(k), p.seq) {
			return nil, false, nil
		}
		return p.val, true, nil
	}
	if l.covered(string(k), 0) {
		return nil, false, nil
	}
	return l.base.Get(k)
}

// Iter implements Rows: the layer's rows merged into the base's. It sorts
// the layer's keys in the span, so it costs the layer's size; the writes it
// serves (a transaction, the leader's in-flight entries) are small.
func (l *Layer) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	return l.iter(lo, hi, false, fn)
}

// IterReverse implements Rows: Iter's merge, in descending order.
func (l *Layer) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	return l.iter(lo, hi, true, fn)
}

func (l *Layer) iter(lo, hi []byte, rev bool, fn func(k, v []byte) bool) error {
	var keys []string
	for k := range l.points {
		if k >= string(lo) && k < string(hi) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	// before reports whether layer key a comes before base key b in the
	// iteration's order.
	before := func(a, b string) bool { return a < b }
	base := l.base.Iter
	if rev {
		slices.Reverse(keys)
		before = func(a, b string) bool { return a > b }
		base = l.base.IterReverse
	}
	stop := false
	// emit yields the layer's row at k if it is live; false stops.
	emit := func(k string) bool {
		p := l.points[k]
		if p.deleted || l.covered(k, p.seq) {
			return true
		}
		return fn([]byte(k), p.val)
	}
	err := base(lo, hi, func(k, v []byte) bool {
		for len(keys) > 0 && before(keys[0], string(k)) {
			if !emit(keys[0]) {
				stop = true
				return false
			}
			keys = keys[1:]
		}
		if len(keys) > 0 && keys[0] == string(k) {
			keys = keys[1:]
			if !emit(string(k)) {
				stop = true
				return false
			}
			return true
		}
		if l.covered(string(k), 0) {
			return true
		}
		if !fn(k, v) {
			stop = true
			return false
		}
		return true
	})
	for !stop && err == nil && len(keys) > 0 {
		stop = !emit(keys[0])
		keys = keys[1:]
	}
	return err
}

// String lists the layer's rows, for test failures.
func (l *Layer) String() string {
	var b strings.Builder
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range l.points {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		p := l.points[k]
		if p.deleted {
			b.WriteString("del ")
		} else {
			b.WriteString("set ")
		}
		b.WriteString(strings.ToValidUTF8(k, "?"))
		b.WriteString("\n")
	}
	for _, r := range l.ranges {
		b.WriteString("delrange " + strings.ToValidUTF8(r.lo, "?") + " " + strings.ToValidUTF8(r.hi, "?") + "\n")
	}
	return b.String()
}
