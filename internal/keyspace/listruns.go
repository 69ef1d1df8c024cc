package keyspace

import (
	"encoding/binary"
	"fmt"
)

// List runs (Hints.ListPop): a list's elements held in memory for the
// pops from one of its ends, so that a run of pops reads its elements in
// one iteration instead of an LSM point read each (an element pushed
// while the row cache was full, or long ago, is not in it: RPOP paid
// about 0.4 row-cache misses per call under redis-benchmark's suite).
//
// # The invariant
//
// A run is a range of indexes [lo, lo+n) of one list's version and the
// n values vals: for every j < n, the row at index lo+j holds vals[j],
// exactly, as the writes passed to the hints left it. A run claims
// nothing about any other index. A pop of index i that the run covers is
// served from it, and nothing else is: the run can never serve a row
// other than the one a point read would return. The rows below change
// only by the writes passed to Set, Delete and DeleteRange first (as for
// every hint), and each one keeps the invariant:
//
//   - Set of an index inside the run replaces its value (LSET, the
//     rewrites of LINSERT and LREM);
//   - Set of the index just outside either end extends the run by it: a
//     push at the end the run serves (a LIFO job queue pushes where it
//     pops) is held, the run's far end shed to make room; a push at the
//     far end is held only if there is room;
//   - Delete of the run's near end takes it out (a pop); a Delete
//     anywhere else inside cuts the run back to the part on its near
//     side, which still holds (LTRIM, LREM);
//   - DeleteRange of the list's span (DEL, an expiry's drop, RENAME's
//     drop of the source, FLUSHALL) forgets both runs.
//
// A version is never reused by another list (it is the LSN of the entry
// that created it; a batch that drops and re-creates a key at one
// version drops it first, a DeleteRange), so a run of a version that
// is no longer the key's (expired, overwritten by a string) is never
// read again and only waits for the bound.
//
// # Sized by evidence
//
// A pop of an index that no run covers is a point read, after which the
// run is empty and anchored where the next pop from that end would read.
// Only a pop there, just beyond the run's far end (the run used up, and
// pops keep coming from that end; or a pop of a few walking past it, its
// deletes still to come with its entry), reads ahead and extends the run,
// firstAhead rows the first time, twice as many each time after (at most
// windowRows rows, windowBytes bytes): a single pop, or pops that the
// pushes keep ahead of, read nothing more than before. A pop elsewhere
// (after an LTRIM, a far-end pop taking the run's rows) starts over from
// a point read. The pops of one command delete in the order they popped
// (package commands), so that each delete takes the run's near end.
//
// The leader's hints are the only ones that pop: followers keep none,
// and a new leader (a failover, a restart, a rollback's re-election)
// starts with empty hints, so a run lives no longer than the overlay
// whose writes keep it.

// firstAhead is the rows the first read ahead of a run of pops reads.
const firstAhead = 4

// maxListRuns bounds the lists whose runs are kept (past it they are all
// forgotten); each holds at most 2 × windowBytes of values.
const maxListRuns = 64

// bigElement: an element longer than this is never held in a run (it is
// read by a point read, and a run's copies stay small).
const bigElement = windowBytes / 4

// listRuns is one list version's runs: head serves LPOP's end, tail
// RPOP's.
type listRuns struct {
	head, tail listRun
}

// listRun is the elements at indexes [lo, lo+n) of one list version
// (see the invariant above), in a ring: the element at index lo+j is
// ring[(start+j) % windowRows].
type listRun struct {
	ring  *[windowRows][]byte
	start int
	n     int
	lo    uint64
	bytes int
	// tail: the run serves pops from the tail end (its near end is lo+n-1);
	// else from the head end (lo).
	tail bool
	// primed: lo (n = 0) is where a pop last left the run (see next).
	primed bool
	// ahead is the rows its next read ahead reads.
	ahead int
	// buf is the free end of the chunk the run copies values into: a
	// chunk's bytes are never written twice, so a value handed out stays.
	buf []byte
}

// covers reports whether index i is in the run.
func (r *listRun) covers(i uint64) bool { return i-r.lo < uint64(r.n) }

// at is the element at index i, which the run covers.
func (r *listRun) at(i uint64) []byte { return r.ring[(r.start+int(i-r.lo))%windowRows] }

// next is the index the next pop from the run's end reads if it
// continues from the run: its near end.
func (r *listRun) next() uint64 {
	if r.tail {
		return r.lo + uint64(r.n) - 1
	}
	return r.lo
}

// beyond is the index just past the run's far end, where the pops from
// its end continue once they have taken every element it holds: next
// when it is empty.
func (r *listRun) beyond() uint64 {
	if r.tail {
		return r.lo - 1
	}
	return r.lo + uint64(r.n)
}

// fits reports whether a value of size b can be added without shedding.
func (r *listRun) fits(b int) bool { return r.n < windowRows && r.bytes+b <= windowBytes }

// copyIn copies v into the run's chunk.
func (r *listRun) copyIn(v []byte) []byte {
	if cap(r.buf)-len(r.buf) < len(v) {
		r.buf = make([]byte, 0, max(len(v), runChunk))
	}
	n := len(r.buf)
	r.buf = append(r.buf, v...)
	c := r.buf[n:len(r.buf):len(r.buf)]
	r.buf = r.buf[len(r.buf):]
	return c
}

// runChunk is the size of the chunks a run copies its values into.
const runChunk = 4 << 10

func (r *listRun) addFront(v []byte) {
	if r.ring == nil {
		r.ring = new([windowRows][]byte)
	}
	r.start = (r.start + windowRows - 1) % windowRows
	r.ring[r.start] = r.copyIn(v)
	r.n++
	r.lo--
	r.bytes += len(v)
}

func (r *listRun) addBack(v []byte) {
	if r.ring == nil {
		r.ring = new([windowRows][]byte)
	}
	r.ring[(r.start+r.n)%windowRows] = r.copyIn(v)
	r.n++
	r.bytes += len(v)
}

func (r *listRun) dropFront() {
	r.bytes -= len(r.ring[r.start])
	r.ring[r.start] = nil
	r.start = (r.start + 1) % windowRows
	r.n--
	r.lo++
}

func (r *listRun) dropBack() {
	j := (r.start + r.n - 1) % windowRows
	r.bytes -= len(r.ring[j])
	r.ring[j] = nil
	r.n--
}

// reset empties the run and anchors it so that next is i.
func (r *listRun) reset(i uint64) {
	for r.n > 0 {
		r.dropBack()
	}
	r.lo, r.primed = i, true
	if r.tail {
		r.lo = i + 1
	}
}

// set: the row at index i is now v.
func (r *listRun) set(i uint64, v []byte) {
	if !r.primed {
		return
	}
	switch {
	case r.covers(i):
		if len(v) > bigElement {
			r.cut(i) // not held: the run ends before it
			return
		}
		j := (r.start + int(i-r.lo)) % windowRows
		r.bytes += len(v) - len(r.ring[j])
		r.ring[j] = r.copyIn(v)
		for r.bytes > windowBytes && r.n > 1 {
			r.shed()
		}
	case len(v) > bigElement:
	case i == r.lo-1:
		if !r.tail { // a push where the pops are
			for r.n > 0 && !r.fits(len(v)) {
				r.dropBack()
			}
			r.addFront(v)
		} else if r.fits(len(v)) {
			r.addFront(v)
		}
	case i == r.lo+uint64(r.n):
		if r.tail {
			for r.n > 0 && !r.fits(len(v)) {
				r.dropFront()
			}
			r.addBack(v)
		} else if r.fits(len(v)) {
			r.addBack(v)
		}
	}
}

// shed drops the element at the run's far end.
func (r *listRun) shed() {
	if r.tail {
		r.dropFront()
	} else {
		r.dropBack()
	}
}

// del: the row at index i is gone.
func (r *listRun) del(i uint64) {
	if !r.covers(i) {
		return
	}
	if i == r.next() {
		// A pop: the run stays anchored at the next index.
		if r.tail {
			r.dropBack()
		} else {
			r.dropFront()
		}
		return
	}
	r.cut(i)
}

// cut shrinks the run, which covers i, to its part on the near side of i.
func (r *listRun) cut(i uint64) {
	if r.tail {
		for r.n > 0 && r.lo <= i {
			r.dropFront()
		}
		return
	}
	for r.n > 0 && r.lo+uint64(r.n) > i {
		r.dropBack()
	}
}

// listIndex parses the index of a list element's sub-key: ok is false
// for a sub-key of another length (the head row's, or another type's).
func listIndex(sub []byte) (uint64, bool) {
	if len(sub) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(sub), true
}

// ListPop is the element at index i of the list (key, version), read by
// a pop from its tail end (tail) or head end: the row a Get of its
// sub-key returns, from the end's run when the run covers i (see "List
// runs" above), else read ahead into the run when the pops from that end
// have used the run up, else a point read. The value is the caller's to
// keep.
func (h *Hints) ListPop(key []byte, version, i uint64, tail bool) ([]byte, bool, error) {
	h.scratch = AppendSubPrefix(h.scratch[:0], key, version)
	lr, ok := h.lists[string(h.scratch)]
	if !ok {
		if len(h.lists) >= maxListRuns {
			clear(h.lists)
		}
		lr = &listRuns{tail: listRun{tail: true}}
		h.lists[string(h.scratch)] = lr
	}
	r := &lr.head
	if tail {
		r = &lr.tail
	}
	if r.covers(i) {
		h.runPops++
		return r.at(i), true, nil
	}
	// after is the index the next pop from this end reads.
	after := i + 1
	if tail {
		after = i - 1
	}
	switch {
	case r.primed && i == r.beyond():
		// The pops from this end used the run up and keep coming (or,
		// a few in one command, are walking past it: their deletes come
		// with the command's entry).
		r.ahead = min(max(2*r.ahead, firstAhead), windowRows)
		return h.readAhead(r, key, version, i, after)
	case r.primed && r.n > 0 && after == r.next():
		// Just outside the run's near end (an element too big to hold):
		// the run stays.
	default:
		r.reset(after)
		r.ahead = 0
	}
	return h.base.Get(binary.BigEndian.AppendUint64(h.scratch, i))
}

// readAhead extends r, whose far end i is just beyond (empty: its next
// pop is at i), with up to r.ahead rows from index i on away from its
// end (down for a tail run), and returns the row at i. after is the
// index after i in that direction.
func (h *Hints) readAhead(r *listRun, key []byte, version, i, after uint64) ([]byte, bool, error) {
	h.readAheads++
	n := len(h.scratch) // the sub-key prefix
	want, m := i, 0
	var first []byte
	found := false
	keep := func(k, v []byte) bool {
		if j, ok := listIndex(k[n:]); !ok || j != want {
			return false
		}
		if m == 0 {
			found = true
			if len(v) > bigElement || !r.fits(len(v)) {
				first = append([]byte(nil), v...)
				return false
			}
		} else if len(v) > bigElement || !r.fits(len(v)) {
			return false
		}
		if r.tail {
			r.addFront(v)
			want--
		} else {
			r.addBack(v)
			want++
		}
		if m == 0 {
			first = r.at(i)
		}
		m++
		return m < r.ahead
	}
	lo, hi := SubSpan(key, version)
	var err error
	if r.tail {
		lo = append(lo, 0) // above the head row
		hi = append(binary.BigEndian.AppendUint64(lo[:n:n], i), 0)
		err = h.base.IterReverse(lo, hi, keep)
	} else {
		err = h.base.Iter(binary.BigEndian.AppendUint64(lo, i), hi, keep)
	}
	if err != nil {
		r.reset(i)
		return nil, false, fmt.Errorf("keyspace: list read ahead: %w", err)
	}
	if m == 0 && r.n == 0 {
		r.reset(after) // nothing held (no row, or one too big)
	}
	return first, found, nil
}
