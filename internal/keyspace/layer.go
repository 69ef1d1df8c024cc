package keyspace

import (
	"slices"
	"sort"
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
	// order is the points' keys in ascending order as of the last
	// iteration, added the keys put in points since (unsorted): an
	// iteration merges them (sorted) into a new order, then finds its span
	// by binary search, so that it costs the rows in its span, not the
	// layer's size (the leader's overlay holds every in-flight entry's
	// rows, and SPOP's walk iterates a dozen times per pick). A key Forget
	// removed stays in order, skipped by iterations, until stale keys
	// make up half of it. order is never written in place once built: an
	// iteration holds on to the one it started with.
	order []string
	added []string
	stale int
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
	l.put(k, layerPoint{val: v, seq: l.seq, lsn: l.lsn}) // see Writer: v is kept
}

// Delete implements Writer.
func (l *Layer) Delete(k []byte) {
	l.seq++
	l.put(k, layerPoint{deleted: true, seq: l.seq, lsn: l.lsn})
}

func (l *Layer) put(k []byte, p layerPoint) {
	if old, ok := l.points[string(k)]; ok {
		*old = p
		return
	}
	key := string(k)
	l.points[key] = &p
	l.added = append(l.added, key)
}

// sorted returns the points' keys in ascending order, with keys Forget
// removed perhaps among them.
func (l *Layer) sorted() []string {
	if len(l.added) == 0 && l.stale <= len(l.order)/2 {
		return l.order
	}
	slices.Sort(l.added)
	compact := l.stale > len(l.order)/2
	merged := make([]string, 0, len(l.order)+len(l.added))
	i, j := 0, 0
	for i < len(l.order) || j < len(l.added) {
		var k string
		if j == len(l.added) || (i < len(l.order) && l.order[i] <= l.added[j]) {
			k, i = l.order[i], i+1
		} else {
			k, j = l.added[j], j+1
		}
		// A key put again after Forget removed it is in both.
		if len(merged) > 0 && merged[len(merged)-1] == k {
			continue
		}
		if compact {
			if _, ok := l.points[k]; !ok {
				continue
			}
		}
		merged = append(merged, k)
	}
	clear(l.added)
	l.order, l.added = merged, l.added[:0]
	if compact {
		l.stale = 0
	}
	return merged
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
		f.l.stale++
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
	keys := l.sorted()
	from := sort.Search(len(keys), func(i int) bool { return keys[i] >= string(lo) })
	to := from + sort.Search(len(keys)-from, func(i int) bool { return keys[from+i] >= string(hi) })
	keys = keys[from:to]
	// next is the layer's next key in the iteration's order, and pop
	// moves past it.
	next := func() string {
		if rev {
			return keys[len(keys)-1]
		}
		return keys[0]
	}
	pop := func() {
		if rev {
			keys = keys[:len(keys)-1]
		} else {
			keys = keys[1:]
		}
	}
	base := l.base.Iter
	if rev {
		base = l.base.IterReverse
	}
	stop := false
	// emit yields the layer's row at k if it is live; false stops.
	emit := func(k string) bool {
		p := l.points[k]
		if p == nil || p.deleted || l.covered(k, p.seq) {
			return true // p == nil: Forget removed it
		}
		return fn([]byte(k), p.val)
	}
	err := base(lo, hi, func(k, v []byte) bool {
		for len(keys) > 0 {
			n := next()
			// Compared without converting k, which would copy it.
			if (!rev && n >= string(k)) || (rev && n <= string(k)) {
				break
			}
			pop()
			if !emit(n) {
				stop = true
				return false
			}
		}
		if len(keys) > 0 && next() == string(k) {
			pop()
			if p := l.points[string(k)]; p != nil {
				if !emit(string(k)) {
					stop = true
					return false
				}
				return true
			}
		}
		if len(l.ranges) > 0 && l.covered(string(k), 0) {
			return true
		}
		if !fn(k, v) {
			stop = true
			return false
		}
		return true
	})
	for !stop && err == nil && len(keys) > 0 {
		n := next()
		pop()
		stop = !emit(n)
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
