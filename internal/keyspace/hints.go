package keyspace

import (
	"bytes"
	"slices"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Hints is Rows over base rows that remembers where the live rows at the
// ends of a collection's span are, so that a pop does not step over the
// rows earlier pops deleted, and what the lists' head rows hold.
//
// # Why
//
// In an LSM a deleted row leaves a tombstone until a compaction drops
// it, and an iteration steps over every tombstone in its way. Pops take
// a sorted set's lowest (or highest) members, so each one deletes the
// rows at the front of the span and leaves tombstones there that the
// next pop's seek from the span's start steps over: ZPOPMIN N times costs
// O(N²) (the queue pattern; RocksDB's wiki, "Implement Queue Service
// Using RocksDB", gives the cure used here: remember where the live rows
// start and seek there).
//
// # What it keeps
//
// For an iteration forward from a span start lo (the sub-key prefix of a
// (key, version), or that prefix and one byte: a sorted set's family) it
// records the first row the iteration met, f: no live row lies in
// [lo, f). The next Iter from lo seeks to f. Likewise for IterReverse up
// to a span end hi: no live row lies in [g, hi), where g is just above
// the last row it met. A delete only makes more rows dead, so it leaves
// the hints true; a row written inside a dead range (Set, through Apply)
// shrinks the range to end (or start) at it. So the hints hold as long
// as every write to the rows below goes through Set, in order, before a
// read can see it.
//
// It also keeps the rows at empty sub-keys (list head rows, which every
// list command reads and every push or pop at the head end writes) as the
// writes passed to Set left them, or as first read, and serves their
// point reads itself: a list push or pop on the leader reads no head row
// from the LSM.
//
// And for a span start that a read met before (the second pop from the
// front), a window: the live rows from the forward hint on, read ahead
// (at most windowRows rows, windowBytes bytes), with the key below which
// they are every live row (upto). The pops that follow take their rows
// from it instead of opening an iteration of the rows below (an LSM
// iterator's open, seek and close, and the overlay's merge: about a
// tenth of the leader's CPU under ZPOPMIN); a delete passed to Delete
// takes its row out, any row written into the span (Set) or range
// deleted drops it, so it holds by the same rule as the hints.
//
// And for a list's pops, runs (ListPop, listruns.go): elements of the
// list at a contiguous range of indexes, held for the pops from one end,
// read ahead in one iteration once the pops from that end keep coming
// (4 rows, then twice as many each time, at most windowRows, windowBytes)
// and kept exact by every write passed here: a push at either end of a
// run extends it, an overwrite replaces its value, a pop takes it out, a
// delete elsewhere cuts the run back, a drop forgets it.
//
// The leader's overlay keeps one: every write the leader sequences goes
// through it first (Apply of the entry's ops), and the committed data
// changes only by applying those entries. Followers do not pop.
//
// The number of hints is bounded (maxHints); past it they are
// forgotten, which costs the next pop of each collection one walk over
// its tombstones. A Hints is not safe for concurrent use, its reads
// included (a head row read is remembered).
type Hints struct {
	base Rows
	// fwd: span start lo -> f, no live row in [lo, f).
	fwd map[string]*spanHint
	// rev: span end hi -> g, no live row in [g, hi).
	rev map[string]*spanHint
	// dels: sub-key prefix of a (key, version) -> the point deletes of
	// its rows passed to Delete (Deleted). heads' and dels' values are
	// pointers so that a key held already is updated through them, with
	// no map store: a store makes its key a string, a copy, an allocation
	// for every list push and pop the leader sequences.
	dels map[string]*uint64
	// heads: a row at an empty sub-key (a list's head row, which every
	// push and pop at the head end writes and every list command reads)
	// -> its value as the writes passed to Set and Delete left it, or as
	// read from the rows below when none has been since (nil: no row).
	// Get serves it without a read of the rows below: those rows change
	// only by the writes passed here first.
	heads map[string]*headHint
	// samples: a set's key -> members a command drew ahead (Sample).
	samples map[string]*Sample
	// wins: span start lo -> the live rows from its forward hint on,
	// read ahead (window).
	wins map[string]*window
	// lists: a list version's sub-key prefix -> its runs (ListPop).
	lists map[string]*listRuns
	// scratch builds the lists' keys for lookups.
	scratch []byte
	// runPops and readAheads count the list pops served from a run and
	// the reads ahead (tests).
	runPops, readAheads int
}

// window is the live rows of a span from where a read began (the forward
// hint of its start), in order, copied: every live row below upto.
type window struct {
	rows  []windowRow
	upto  []byte
	bytes int
	// closed: a row did not fit, or the read passed end, and upto is
	// its key (or end).
	closed bool
	// end: the end of lo's family when lo is one's start (nil: the span's
	// end); the window holds no row at or past it.
	end []byte
}

type windowRow struct{ k, v []byte }

// Windows hold at most windowRows rows and about windowBytes bytes each,
// and at most maxWindows are kept (past it they are forgotten).
const (
	windowRows  = 64
	windowBytes = 16 << 10
	maxWindows  = 64
)

// add keeps row (k, v) in w, or closes w at k when it has no room.
func (w *window) add(k, v []byte) {
	if len(w.rows) >= windowRows || w.bytes >= windowBytes {
		w.upto, w.closed = bytes.Clone(k), true
		return
	}
	w.rows = append(w.rows, windowRow{bytes.Clone(k), bytes.Clone(v)})
	w.bytes += len(k) + len(v)
}

// serve calls fn for w's rows below hi, then for the rows below from
// upto on, until fn returns false.
func (w *window) serve(base Rows, hi []byte, fn func(k, v []byte) bool) error {
	for _, r := range w.rows {
		if bytes.Compare(r.k, hi) >= 0 || !fn(r.k, r.v) {
			return nil
		}
	}
	if bytes.Compare(w.upto, hi) >= 0 {
		return nil
	}
	return base.Iter(w.upto, hi, fn)
}

// drop takes row k out of w, if it holds it.
func (w *window) drop(k []byte) {
	i, ok := slices.BinarySearchFunc(w.rows, k, func(r windowRow, k []byte) int { return bytes.Compare(r.k, k) })
	switch {
	case !ok:
	case i == 0:
		w.rows = w.rows[1:] // a pop from the front
	default:
		w.rows = slices.Delete(w.rows, i, i+1)
	}
}

// Sample is members of a set drawn at random ahead of time by a command
// on the leader (SPOP: package commands), kept between commands. Hints
// keeps it for the command and keeps one promise about it: Members is
// emptied when a row is written into the sub-keys of (the key, Version)
// (a member added after the draw could not come up from it). The rest
// (which members are still in the set, what Credit means) is the
// command's.
type Sample struct {
	Version uint64
	// Members are handed out from the front.
	Members [][]byte
	// Credit is the command's own accounting of the reads a draw costs.
	Credit int64
}

// maxSamples bounds the sets Hints keeps samples of; past it they are
// forgotten (each costs its members).
const maxSamples = 64

// maxHints bounds the span hints and tombstone counts kept, and
// separately the head rows; each costs its key and value.
const maxHints = 4096

// NewHints returns hints over base, with none yet.
func NewHints(base Rows) *Hints {
	return &Hints{base: base, fwd: map[string]*spanHint{}, rev: map[string]*spanHint{}, dels: map[string]*uint64{}, heads: map[string]*headHint{}, samples: map[string]*Sample{}, wins: map[string]*window{}, lists: map[string]*listRuns{}}
}

// SetBase changes the rows under the hints (the leader's rows at a new
// clock). The rows must be the same data, or the data the writes already
// given to Set have made.
func (h *Hints) SetBase(base Rows) { h.base = base }

// Len is the number of hints held.
func (h *Hints) Len() int {
	return len(h.fwd) + len(h.rev) + len(h.dels) + len(h.heads) + len(h.wins) + len(h.lists)
}

// spanEnd reports whether k is a span start or end that hints are kept
// for: a sub-key prefix of a (key, version), alone or with one more byte.
func spanEnd(k []byte) bool {
	if len(k) == 0 || k[0] != PrefixSub {
		return false
	}
	_, _, sub, err := ParseSubKey(k)
	return err == nil && len(sub) <= 1
}

// familyEnd is the end of the family whose start lo is (a sub-key prefix
// and one byte b: the prefix and b+1), nil if lo is no family's start or
// b is 0xff (its family ends with the span).
func familyEnd(lo []byte) []byte {
	if _, _, sub, err := ParseSubKey(lo); err == nil && len(sub) == 1 && sub[0] < 0xff {
		return append(bytes.Clone(lo[:len(lo)-1]), sub[0]+1)
	}
	return nil
}

// familyStart is the start of the family whose end hi is (a sub-key
// prefix and one byte c: the prefix and c-1), nil if hi is no family's
// end.
func familyStart(hi []byte) []byte {
	if _, _, sub, err := ParseSubKey(hi); err == nil && len(sub) == 1 && sub[0] > 0 {
		return append(bytes.Clone(hi[:len(hi)-1]), sub[0]-1)
	}
	return nil
}

// headRow reports whether k is a row at an empty sub-key.
func headRow(k []byte) bool {
	if len(k) == 0 || k[0] != PrefixSub {
		return false
	}
	_, _, sub, err := ParseSubKey(k)
	return err == nil && len(sub) == 0
}

// Get implements Rows.
func (h *Hints) Get(k []byte) ([]byte, bool, error) {
	if !headRow(k) {
		return h.base.Get(k)
	}
	if hh, ok := h.heads[string(k)]; ok {
		return hh.v, hh.v != nil, nil
	}
	v, ok, err := h.base.Get(k)
	if err != nil {
		return nil, false, err
	}
	h.noteHead(k, v, ok)
	return v, ok, nil
}

// noteHead records the head row at k: v, or none (!ok). The head rows
// have a bound of their own, so that writes to many lists do not make the
// pops forget their hints.
func (h *Hints) noteHead(k, v []byte, ok bool) {
	if !ok {
		v = nil
	} else if v == nil {
		v = []byte{}
	}
	if hh, had := h.heads[string(k)]; had {
		hh.v = v
		return
	}
	if len(h.heads) >= maxHints {
		clear(h.heads)
	}
	h.heads[string(k)] = &headHint{v: v}
}

// headHint is a head row's value as Hints knows it (nil: no row).
type headHint struct{ v []byte }

// Iter implements Rows.
func (h *Hints) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	if !spanEnd(lo) {
		return h.base.Iter(lo, hi, fn)
	}
	if w, ok := h.wins[string(lo)]; ok {
		if len(w.rows) > 0 || bytes.Compare(w.upto, hi) >= 0 {
			if len(w.rows) > 0 {
				// As a read would note it (the key is never changed),
				// so that the deletes move it on and the read ahead
				// after the window starts past them.
				h.note(h.fwd, lo, w.rows[0].k)
			}
			return w.serve(h.base, hi, fn)
		}
		delete(h.wins, string(lo)) // used up: read ahead again
	}
	from := lo
	var f []byte
	fh, hinted := h.fwd[string(lo)]
	if hinted {
		if f = fh.at; bytes.Compare(f, hi) >= 0 {
			return nil // [lo, hi) is dead
		}
		from = f
	}
	// A read from a start read before (a pop after a pop) reads ahead
	// into a window, past where fn stops.
	var w *window
	if hinted {
		// A window from a family's start ends at the family's end: a
		// write into the span drops the windows of its own family and
		// of the whole span only (Set).
		w = &window{end: familyEnd(lo)}
	}
	var first []byte
	seen, more := false, true
	err := h.base.Iter(from, hi, func(k, v []byte) bool {
		if !seen {
			seen, first = true, bytes.Clone(k)
		}
		if w != nil && !w.closed {
			if w.end != nil && bytes.Compare(k, w.end) >= 0 {
				w.upto, w.closed = w.end, true
			} else {
				w.add(k, v)
			}
		}
		if more {
			more = fn(k, v)
		}
		return more || (w != nil && !w.closed)
	})
	if err != nil {
		return err
	}
	if !seen {
		first = bytes.Clone(hi)
	}
	if end := familyEnd(lo); end != nil && bytes.Compare(first, end) > 0 {
		// The hint of a family's start says nothing past the family:
		// a write into another family does not move it (Set).
		first = end
	}
	h.note(h.fwd, lo, first)
	if w != nil {
		if !w.closed {
			w.upto = bytes.Clone(hi) // every live row in [from, hi)
			if w.end != nil && bytes.Compare(w.end, hi) < 0 {
				w.upto = w.end
			}
		}
		if len(h.wins) >= maxWindows {
			clear(h.wins)
		}
		h.wins[string(lo)] = w
	}
	return nil
}

// IterReverse implements Rows.
func (h *Hints) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	if !spanEnd(hi) {
		return h.base.IterReverse(lo, hi, fn)
	}
	to := hi
	if g, ok := h.rev[string(hi)]; ok {
		if bytes.Compare(g.at, lo) <= 0 {
			return nil // [lo, hi) is dead
		}
		to = g.at
	}
	var after []byte
	seen := false
	err := h.base.IterReverse(lo, to, func(k, v []byte) bool {
		if !seen {
			// The smallest key above k: rows in [k+0, hi) are dead.
			seen, after = true, append(bytes.Clone(k), 0)
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	if !seen {
		after = bytes.Clone(lo)
	}
	if start := familyStart(hi); start != nil && bytes.Compare(after, start) < 0 {
		after = start // as in Iter: nothing below the family
	}
	h.note(h.rev, hi, after)
	return nil
}

// spanHint is a span hint's key (at). It is a pointer in its map, so
// that the hint of a span held already is moved with no map store (a
// store makes its key a string: an allocation for every pop); and own is
// a buffer of the hint's own that the moves past a deleted row (deadFwd,
// deadRev, liveRev) build the new key in, so that a pop after a pop
// allocates none either. at may be own or a key noted from elsewhere (a
// row key Apply built, a read's copy), never written; own is written
// only to make the next at, which no one else holds: Iter's reads use a
// hint's key only during the call, and none of these writes runs during
// a read.
type spanHint struct{ at, own []byte }

// note sets the hint of span end k in m to v.
func (h *Hints) note(m map[string]*spanHint, k, v []byte) {
	sh, ok := m[string(k)]
	if !ok {
		h.makeRoom()
		sh = &spanHint{}
		m[string(k)] = sh
	}
	sh.at = v
}

func (h *Hints) makeRoom() {
	if len(h.fwd)+len(h.rev)+len(h.dels) >= maxHints {
		clear(h.fwd)
		clear(h.rev)
		clear(h.dels)
	}
}

// SetString implements StringWriter: a metadata row, which no hint is
// about (and no copy of the value is made to say so).
func (h *Hints) SetString(key, value []byte, expireAtMs int64) {}

// Set implements Writer: row k is (or will be) written below, so no hint
// may say it is dead.
func (h *Hints) Set(k, v []byte) {
	if len(k) == 0 || k[0] != PrefixSub {
		return
	}
	key, version, sub, err := ParseSubKey(k)
	if err != nil {
		return
	}
	if len(sub) == 0 {
		h.noteHead(k, v, true) // see Writer: v is kept
	}
	if len(h.samples) > 0 {
		if sm, ok := h.samples[string(key)]; ok && sm.Version == version {
			sm.Members = nil
		}
	}
	prefix := k[:len(k)-len(sub)]
	if len(h.lists) > 0 {
		if i, ok := listIndex(sub); ok {
			if lr, ok := h.lists[string(prefix)]; ok {
				lr.head.set(i, v)
				lr.tail.set(i, v)
			}
		}
	}
	if len(h.wins) > 0 {
		// A row written into a window's span may be one it lacks.
		delete(h.wins, string(prefix))
		if len(sub) > 0 {
			delete(h.wins, string(k[:len(prefix)+1]))
		}
	}
	if len(h.fwd) == 0 && len(h.rev) == 0 {
		return
	}
	h.liveFwd(prefix, k)
	if len(sub) > 0 {
		h.liveFwd(k[:len(prefix)+1], k)
	}
	if len(h.rev) == 0 {
		return
	}
	_, spanHi := SubSpan(key, version)
	h.liveRev(spanHi, k)
	if len(sub) > 0 && sub[0] < 0xff {
		h.liveRev(append(bytes.Clone(prefix), sub[0]+1), k)
	}
}

// liveFwd makes the forward hint of span start lo, if any, leave row k
// live.
func (h *Hints) liveFwd(lo, k []byte) {
	if f, ok := h.fwd[string(lo)]; ok && bytes.Compare(k, f.at) < 0 {
		f.at = k
	}
}

// liveRev makes the reverse hint of span end hi, if any, leave row k live.
func (h *Hints) liveRev(hi, k []byte) {
	if g, ok := h.rev[string(hi)]; ok && bytes.Compare(k, g.at) >= 0 {
		g.setAfter(k)
	}
}

// Delete implements Writer: a delete leaves every hint true, and a
// delete of the row a hint starts at (ends after) moves the hint past it,
// so that the next pop seeks beyond every row popped before, those not
// yet applied below included (a pop would otherwise step over the rows
// the pops still in the leader's overlay deleted). It counts the point
// deletes of each collection's rows (Deleted).
func (h *Hints) Delete(k []byte) {
	if len(k) == 0 || k[0] != PrefixSub {
		return
	}
	key, version, sub, err := ParseSubKey(k)
	if err != nil {
		return
	}
	prefix := k[:len(k)-len(sub)]
	if len(sub) == 0 {
		h.noteHead(k, nil, false)
	}
	if len(h.lists) > 0 {
		if i, ok := listIndex(sub); ok {
			if lr, ok := h.lists[string(prefix)]; ok {
				lr.head.del(i)
				lr.tail.del(i)
			}
		}
	}
	if len(h.wins) > 0 {
		if w, ok := h.wins[string(prefix)]; ok {
			w.drop(k)
		}
		if len(sub) > 0 {
			if w, ok := h.wins[string(k[:len(prefix)+1])]; ok {
				w.drop(k)
			}
		}
	}
	if len(h.fwd) > 0 {
		h.deadFwd(prefix, k)
		if len(sub) > 0 {
			h.deadFwd(k[:len(prefix)+1], k)
		}
	}
	if len(h.rev) > 0 {
		_, spanHi := SubSpan(key, version)
		h.deadRev(spanHi, k)
		if len(sub) > 0 && sub[0] < 0xff {
			h.deadRev(append(bytes.Clone(prefix), sub[0]+1), k)
		}
	}
	if n, ok := h.dels[string(prefix)]; ok {
		*n++
		return
	}
	h.makeRoom()
	n := uint64(1)
	h.dels[string(prefix)] = &n
}

// setAfter sets the hint to k+0, the smallest key above k, in its own
// buffer.
func (sh *spanHint) setAfter(k []byte) {
	sh.own = append(append(sh.own[:0], k...), 0)
	sh.at = sh.own
}

// deadFwd: row k is deleted; if the forward hint of span start lo says
// the live rows start at k, they start after it.
func (h *Hints) deadFwd(lo, k []byte) {
	if f, ok := h.fwd[string(lo)]; ok && bytes.Equal(f.at, k) {
		f.setAfter(k)
	}
}

// deadRev: row k is deleted; if the reverse hint of span end hi says the
// live rows end at k (g = k+0), they end before it.
func (h *Hints) deadRev(hi, k []byte) {
	if g, ok := h.rev[string(hi)]; ok && len(g.at) == len(k)+1 && g.at[len(k)] == 0 && bytes.Equal(g.at[:len(k)], k) {
		g.own = append(g.own[:0], k...)
		g.at = g.own
	}
}

// Deleted is about how many rows of (key, version) were deleted one by
// one since the hints began (or were last forgotten): each left a
// tombstone in its span that reads over the span step over until a
// compaction drops it. A collection that has many next to few live rows
// is worth rewriting under a new version (SPOP does).
func (h *Hints) Deleted(key []byte, version uint64) uint64 {
	if n, ok := h.dels[string(AppendSubPrefix(nil, key, version))]; ok {
		return *n
	}
	return 0
}

// DeleteRange implements Writer: it leaves the span hints true, as
// Delete. A head row in the range is gone: a drop's range is one
// (key, version) span, whose head row is at its start; any other range
// (FLUSHALL's) forgets every head row.
func (h *Hints) DeleteRange(lo, hi []byte) {
	clear(h.wins) // seldom: a drop or FLUSHALL
	if len(h.heads) == 0 && len(h.lists) == 0 {
		return
	}
	if key, version, sub, err := ParseSubKey(lo); err == nil && len(sub) == 0 {
		if _, spanHi := SubSpan(key, version); string(hi) == string(spanHi) {
			delete(h.heads, string(lo))
			delete(h.lists, string(lo))
			return
		}
	}
	clear(h.heads)
	clear(h.lists)
}

// Sample is key's sample (see Sample), a new empty one if none is kept.
// The caller may change it; it stays until a bound forgets it.
func (h *Hints) Sample(key []byte) *Sample {
	if sm, ok := h.samples[string(key)]; ok {
		return sm
	}
	if len(h.samples) >= maxSamples {
		clear(h.samples)
	}
	sm := &Sample{}
	h.samples[string(key)] = sm
	return sm
}

// ApplyOps passes ops' writes to Set, Delete and DeleteRange. The ops
// that write only a metadata row (a string's put or delete, a
// collection's metadata) are skipped without building their rows: the
// hints concern sub-key rows only (every leader write passes here, and a
// SET's row would be built for nothing).
func (h *Hints) ApplyOps(ops []logrec.Op) error {
	// The row keys of the ops passed in one exact-size arena: a hint may
	// keep one (liveFwd), and with it the arena, as it would its own.
	return h.ApplyOpsIn(ops, NewArena(HintBytes(ops))) // FLUSHALL's ops build nothing: size 0, no buffer
}

// HintBytes is how many bytes of an arena Hints.ApplyOpsIn builds for ops.
func HintBytes(ops []logrec.Op) int {
	size := 0
	for i := range ops {
		if !metaOnly(ops[i].Kind) {
			size += RowBytes(&ops[i])
		}
	}
	return size
}

// ApplyOpsIn is ApplyOps building the row keys in a, which the hints may
// keep (liveFwd) and with them a: the leader's overlay shares one arena,
// sized for both, between its layer and its hints (an allocation fewer
// for every collection write it sequences).
func (h *Hints) ApplyOpsIn(ops []logrec.Op, a *Arena) error {
	for i := range ops {
		if metaOnly(ops[i].Kind) {
			continue
		}
		if err := ApplyIn(h, &ops[i], a); err != nil {
			return err
		}
	}
	return nil
}

// metaOnly reports whether ops of kind k write only a metadata row, which
// Hints.ApplyOps passes over.
func metaOnly(k logrec.OpKind) bool {
	return k == logrec.OpPut || k == logrec.OpDelete || k == logrec.OpMeta
}
