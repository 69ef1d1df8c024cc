package keyspace

import (
	"slices"
	"sort"
	"strings"
	"unsafe"

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
// what the base has since applied. A Layer is not safe for concurrent use,
// its reads included (an iteration sorts the keys written since the last).
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
	// slab is where the next new points are made, a few at a time: one
	// allocation per slabPoints rows rather than per row (every write
	// the leader sequences puts its rows here). A slab stays in memory
	// while any of its points is in points.
	slab []layerPoint
	// forgetKey is Forget's row key buffer, reused from call to call.
	forgetKey []byte
}

// slabPoints is how many points one slab allocation holds.
const slabPoints = 32

type layerPoint struct {
	val      []byte
	deleted  bool
	seq, lsn uint64
	// str: val is a long string's value (SetString), expiring at exp;
	// its metadata row is built when read.
	str bool
	exp int64
}

// row is the point's row.
func (p *layerPoint) row() []byte {
	if p.str {
		return AppendMetaRow(nil, Value{Type: TypeString, Data: p.val, ExpireAtMs: p.exp})
	}
	return p.val
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

// Set implements Writer. The layer keeps k, as Writer's contract allows:
// it must not be modified afterwards.
func (l *Layer) Set(k, v []byte) {
	l.seq++
	l.put(k, layerPoint{val: v, seq: l.seq, lsn: l.lsn}) // see Writer: v is kept
}

// SetString implements StringWriter: the value is kept as it is (see
// Writer), its row built only when read, so that a long string in the
// leader's overlay costs no copy of it (a read of it while it is there
// costs one).
func (l *Layer) SetString(key, value []byte, expireAtMs int64) {
	l.seq++
	l.put(MetaKey(key), layerPoint{val: value, str: true, exp: expireAtMs, seq: l.seq, lsn: l.lsn})
}

// Delete implements Writer. The layer keeps k, as Set does.
func (l *Layer) Delete(k []byte) {
	l.seq++
	l.put(k, layerPoint{deleted: true, seq: l.seq, lsn: l.lsn})
}

func (l *Layer) put(k []byte, p layerPoint) {
	if old, ok := l.points[string(k)]; ok {
		*old = p
		return
	}
	// The map and order key on k's bytes without a copy: a row key Apply
	// built for this write, which no one writes again (Writer), so the
	// string stays what it was for as long as the layer holds it (a copy
	// was one allocation per row the leader sequences, the most of any
	// step of its overlay's). The key keeps its arena (one entry's rows,
	// at most 64 KiB) in memory while the map or order lists it: a key
	// written again keeps its first write's, and order lists forgotten
	// keys until trim, so at most about twice the live points' arenas.
	key := unsafe.String(unsafe.SliceData(k), len(k))
	if len(l.slab) == 0 {
		l.slab = make([]layerPoint, slabPoints)
	}
	np := &l.slab[0]
	l.slab = l.slab[1:]
	*np = p
	l.points[key] = np
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
//
// The rows of one call are built in one arena (one allocation instead of a
// key and a row per op on every write the leader sequences): the layer
// keeps the rows until Forget, the arena lives as long as any of them.
func (l *Layer) ApplyOps(lsn uint64, ops []logrec.Op) error {
	return l.ApplyOpsIn(lsn, ops, NewArena(OpsBytes(ops)))
}

// OpsBytes is RowBytes summed over ops: how many bytes of an arena
// Layer.ApplyOpsIn builds for them.
func OpsBytes(ops []logrec.Op) int {
	size := 0
	for i := range ops {
		size += RowBytes(&ops[i])
	}
	return size
}

// ApplyOpsIn is ApplyOps building the row keys and rows in a, which the
// layer keeps (and a with them) while it holds them.
func (l *Layer) ApplyOpsIn(lsn uint64, ops []logrec.Op, a *Arena) error {
	l.lsn = lsn
	for i := range ops {
		if err := ApplyIn(l, &ops[i], a); err != nil {
			return err
		}
	}
	return nil
}

// Forget drops the writes of ops (the ops of entries the base now holds)
// tagged with an LSN at or below applied; a row written again by a later
// entry stays. It visits only the rows ops name, not the whole layer.
//
// An op that writes only a metadata row, or one sub-key row, is forgotten
// by its key alone, built in a reused buffer, without Apply building the
// row (a SET's value would be copied once more only to be thrown away).
func (l *Layer) Forget(ops []logrec.Op, applied uint64) {
	f := forgetter{l: l, applied: applied, key: l.forgetKey}
	defer func() { l.forgetKey = f.key }()
	for i := range ops {
		switch op := &ops[i]; op.Kind {
		case logrec.OpPut, logrec.OpDelete, logrec.OpMeta:
			f.key = AppendMetaKey(f.key[:0], op.Key)
			f.Delete(f.key)
		case logrec.OpSubPut, logrec.OpSubDel:
			// The row key in the same reused buffer: Apply would build
			// one of its own per element only to look it up.
			f.key = append(AppendSubPrefix(f.key[:0], op.Key, op.Version), op.Sub...)
			f.Delete(f.key)
		default:
			// A drop's or a FLUSHALL's rows, through Apply: a copy
			// of f, for what Apply is handed escapes to the heap, and
			// f itself then would for every call, the common ones too.
			g := f
			_ = Apply(&g, op)
			f = g
		}
	}
	l.trim()
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

// trim drops the keys Forget removed from order and added once they are
// most of the keys listed. Only an iteration (sorted) merged them away
// before, and only range reads iterate: under plain writes (SET) the
// leader's overlay kept every key it had ever held, a leak that grew the
// heap to its limit and kept the GC running back to back under a long
// write load. Amortized O(1) per forgotten key: it runs when more than
// half of the listed keys are gone, and removes them all. order gets a new
// slice (an iteration may hold the old one); added is the layer's own.
func (l *Layer) trim() {
	if n := len(l.order) + len(l.added); n <= trimFloor || n <= 2*len(l.points) {
		return
	}
	order := make([]string, 0, len(l.points))
	for _, k := range l.order {
		if _, ok := l.points[k]; ok {
			order = append(order, k)
		}
	}
	added := l.added[:0]
	for _, k := range l.added {
		if _, ok := l.points[k]; ok {
			added = append(added, k)
		}
	}
	clear(l.added[len(added):])
	l.order, l.added, l.stale = order, added, 0
}

// trimFloor is how many keys order and added may list before trim looks
// (a variable so the model test can trim at any size).
var trimFloor = 64

type forgetter struct {
	l       *Layer
	applied uint64
	ranges  bool
	key     []byte // a metadata row key, reused
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

// coveredBytes is covered of a row key given as bytes, compared without
// converting it (string(k) handed to covered is a copy on the heap for a
// key over 32 bytes: every read of a field, member or element row through
// the leader's overlay allocated one).
func (l *Layer) coveredBytes(k []byte, seq uint64) bool {
	for _, r := range l.ranges {
		if r.seq > seq && string(k) >= r.lo && string(k) < r.hi {
			return true
		}
	}
	return false
}

// Get implements Rows.
func (l *Layer) Get(k []byte) ([]byte, bool, error) {
	if p, ok := l.points[string(k)]; ok {
		if p.deleted || l.coveredBytes(k, p.seq) {
			return nil, false, nil
		}
		return p.row(), true, nil
	}
	if l.coveredBytes(k, 0) {
		return nil, false, nil
	}
	return l.base.Get(k)
}

// Own is the layer's own write of the row at k, without reading the base:
// held is false when the layer has neither written k nor range-deleted it.
// A deleted row is (nil, false, true); a long string's (SetString) is
// long, its row not built.
func (l *Layer) Own(k []byte) (row []byte, long, held bool) {
	if p, ok := l.points[string(k)]; ok {
		if p.deleted || l.coveredBytes(k, p.seq) {
			return nil, false, true
		}
		if p.str {
			return nil, true, true
		}
		return p.val, false, true
	}
	if l.coveredBytes(k, 0) {
		return nil, false, true
	}
	return nil, false, false
}

// WrittenAt is the LSN tag of the layer's write that decides the row at
// k (its point write, or a range delete over it), 0 when the layer has
// neither written k nor range-deleted it: the base's row is read. It
// never reads the base.
func (l *Layer) WrittenAt(k []byte) uint64 {
	var lsn uint64
	if p, ok := l.points[string(k)]; ok {
		lsn = p.lsn
	}
	for _, r := range l.ranges {
		if string(k) >= r.lo && string(k) < r.hi {
			lsn = max(lsn, r.lsn)
		}
	}
	return lsn
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
	base := l.base.Iter
	if rev {
		base = l.base.IterReverse
	}
	if from == to && len(l.ranges) == 0 {
		return base(lo, hi, fn) // nothing of the layer's in the span
	}
	m := &layerMerge{l: l, keys: keys[from:to], rev: rev, fn: fn}
	err := base(lo, hi, m.visit)
	for !m.stop && err == nil && len(m.keys) > 0 {
		m.stop = !m.emit(m.pop())
	}
	return err
}

// layerMerge merges a layer's keys in a span into an iteration of the
// base rows, in the iteration's order.
type layerMerge struct {
	l    *Layer
	keys []string // the layer's keys not yet merged, ascending
	rev  bool
	stop bool // fn returned false
	fn   func(k, v []byte) bool
}

// next is the layer's next key in the iteration's order.
func (m *layerMerge) next() string {
	if m.rev {
		return m.keys[len(m.keys)-1]
	}
	return m.keys[0]
}

// pop returns the next key and moves past it.
func (m *layerMerge) pop() string {
	if m.rev {
		k := m.keys[len(m.keys)-1]
		m.keys = m.keys[:len(m.keys)-1]
		return k
	}
	k := m.keys[0]
	m.keys = m.keys[1:]
	return k
}

// emit yields the layer's row at k if it is live; false stops.
func (m *layerMerge) emit(k string) bool {
	p := m.l.points[k]
	if p == nil || p.deleted || m.l.covered(k, p.seq) {
		return true // p == nil: Forget removed it
	}
	return m.fn([]byte(k), p.row())
}

// visit is the base iteration's callback: the layer's rows before k,
// then k's row, the layer's when it has one.
func (m *layerMerge) visit(k, v []byte) bool {
	for len(m.keys) > 0 {
		n := m.next()
		// Compared without converting k, which would copy it.
		if (!m.rev && n >= string(k)) || (m.rev && n <= string(k)) {
			break
		}
		m.pop()
		if !m.emit(n) {
			m.stop = true
			return false
		}
	}
	if len(m.keys) > 0 && m.next() == string(k) {
		m.pop()
		if m.l.points[string(k)] != nil {
			if !m.emit(string(k)) {
				m.stop = true
				return false
			}
			return true
		}
	}
	if len(m.l.ranges) > 0 && m.l.coveredBytes(k, 0) {
		return true
	}
	if !m.fn(k, v) {
		m.stop = true
		return false
	}
	return true
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
