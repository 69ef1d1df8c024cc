package commands

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
)

// Random members of a set (SPOP, SRANDMEMBER) without loading the set.
//
// A set's rows are ordered by member and carry no rank, so a uniform pick
// by rank costs a pass over the rows. randomMembers chooses between two
// ways:
//
//   - By rank, exactly uniform: a set of at most exactSampleMax members, or
//     a request for so many members that the walks below would read about
//     as many rows as the set has (n*walkCost >= size). One pass over the
//     rows keeps only the members it picks (Knuth's selection sampling for
//     distinct members, sorted random ranks for repeats), so memory is the
//     reply's, never the set's.
//   - By a random walk, for a few members of a big set: the walk descends
//     the members' byte trie from the empty prefix. At each level it reads
//     the first and the last member under the prefix (one seek each,
//     forward and reverse); every member under the prefix shares their
//     common prefix, so the walk goes down to it at once, and the next
//     bytes there lie in [lo, hi], the two members' bytes after it. It
//     takes one of the bytes in use uniformly (rejection: a random byte of
//     the range, kept if a member uses it; after childTries misses, the
//     bytes in use are listed), or stops at the prefix, as one more
//     choice, when the prefix is a member itself; until no member extends
//     the prefix. It lands on the first member at or after the prefix and
//     picks uniformly among the walkWindow members from there (wrapping to
//     the first). Cost: about two seeks per level of the trie where
//     members differ (five for a million decimal ids), at most
//     maxWalkSeeks, plus walkWindow/2 rows per pick on average (the
//     choice in the window is drawn first), whatever the set's
//     size.
//
// Fairness of the walk: each level is uniform over the subtrees of the
// trie, so the walk is uniform when members spread evenly over the bytes
// they use (random ids, hashes, UUIDs, fixed-width numbers); where the
// trie is lopsided (decimal ids of different lengths: "9" alone beside
// "10".."99"), members of small subtrees are favoured. The window spreads
// a member's favour over the walkWindow members that follow it, so every
// member can come up, but the favour is only bounded by the trie's shape:
// 100 members "new0".."new99" beside a million "m:..." get half the picks
// (the first byte is 'm' or 'n' with even odds). Decimal ids 0..249 come
// out at most about 6x the mean (the test), random ids uniformly.
// Redis's own SRANDMEMBER on a hashtable is not uniform either: it picks
// a random bucket, then a member of that bucket's chain, favouring
// members of short chains. TestSetRandomWalkFairness measures both shapes.
//
// The choice is made where the command runs (SPOP only on the leader) and
// logged as row deletes, so replicas never draw random numbers.

// errEmptySet: a set whose metadata counts members has no member rows
// (damaged data, or a bug in this package).
var errEmptySet = errors.New("commands: a set with a size in its metadata has no member rows")

// randSource returns a uniform integer in [0, n), n > 0.
type randSource func(n uint64) uint64

// defaultRand is the process's generator (safe for concurrent use).
var defaultRand randSource = rand.Uint64N

const (
	// exactSampleMax is the largest set sampled by rank whatever the
	// count: one pass over at most this many rows.
	exactSampleMax = 1024
	// walkCost is about how many rows one walk costs; a request whose
	// walks would cost as much as a pass is answered by a pass.
	walkCost = 64
	// walkWindow is how many members after a walk's landing point a pick
	// is uniform among.
	walkWindow = 32
	// maxWalkSeeks bounds one walk's seeks (about 2 per level).
	maxWalkSeeks = 256
	// childTries is how many random bytes a walk tries at one level before
	// it lists the bytes in use.
	childTries = 8
)

// randomMembers returns n members of the set s at key: distinct ones
// (n < s.Size) or, with repeats allowed, n independent picks.
func randomMembers(v View, key []byte, s Value, n int64, distinct bool, rnd randSource) ([][]byte, error) {
	if s.Size == 0 || n <= 0 {
		return nil, nil
	}
	if s.Size <= exactSampleMax || uint64(n) >= s.Size/walkCost {
		return sampleByRank(v, key, s, uint64(n), distinct, rnd)
	}
	return sampleByWalk(v, key, s, uint64(n), distinct, rnd)
}

// sampleByRank picks by rank in one pass over the rows.
func sampleByRank(v View, key []byte, s Value, n uint64, distinct bool, rnd randSource) ([][]byte, error) {
	var out [][]byte
	var err error
	if distinct {
		need, left := min(n, s.Size), s.Size
		err = v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
			if left == 0 {
				return false
			}
			if rnd(left) < need {
				out = append(out, clone(m))
				need--
			}
			left--
			return need > 0
		})
	} else {
		ranks := make([]uint64, n)
		for i := range ranks {
			ranks[i] = rnd(s.Size)
		}
		slices.Sort(ranks)
		var i uint64
		err = v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
			if len(ranks) > 0 && ranks[0] == i {
				c := clone(m)
				for len(ranks) > 0 && ranks[0] == i {
					out = append(out, c)
					ranks = ranks[1:]
				}
			}
			i++
			return len(ranks) > 0
		})
	}
	if err != nil {
		return nil, err
	}
	shuffle(out, rnd)
	return out, nil
}

func shuffle(ms [][]byte, rnd randSource) {
	for i := len(ms) - 1; i > 0; i-- {
		j := rnd(uint64(i) + 1)
		ms[i], ms[j] = ms[j], ms[i]
	}
}

// sampleByWalk picks each member by a random walk (see the top of the
// file). Distinct picks retry a member already taken; past a bound of
// tries (a skewed set), the rest are the members that follow a last walk's
// landing point, in order.
func sampleByWalk(v View, key []byte, s Value, n uint64, distinct bool, rnd randSource) ([][]byte, error) {
	w := walker{v: v, key: key, ver: s.Version, rnd: rnd}
	out := make([][]byte, 0, n)
	taken := map[string]struct{}{}
	for tries := uint64(0); uint64(len(out)) < n && (!distinct || tries < 4*n+16); tries++ {
		m, err := w.pick()
		if err != nil {
			return nil, err
		}
		if distinct {
			if _, dup := taken[string(m)]; dup {
				continue
			}
			taken[string(m)] = struct{}{}
		}
		out = append(out, m)
	}
	if uint64(len(out)) == n {
		return out, nil
	}
	start, err := w.prefix()
	if err != nil {
		return nil, err
	}
	err = w.from(start, s.Size, func(m []byte) bool {
		if _, dup := taken[string(m)]; !dup {
			taken[string(m)] = struct{}{}
			out = append(out, clone(m))
		}
		return uint64(len(out)) < n
	})
	return out, err
}

// walker walks one set's rows.
type walker struct {
	v   View
	key []byte
	ver uint64
	rnd randSource
}

// first returns the first member at or after start.
func (w *walker) first(start []byte) (m []byte, ok bool, err error) {
	err = w.v.SubScan(w.key, w.ver, start, func(sub, _ []byte) bool {
		m, ok = clone(sub), true
		return false
	})
	return m, ok, err
}

// last returns the last member with prefix p, if any: one reverse seek.
func (w *walker) last(p []byte) (m []byte, ok bool, err error) {
	err = w.v.SubScanReverse(w.key, w.ver, prefixEnd(p), func(sub, _ []byte) bool {
		m, ok = clone(sub), bytes.HasPrefix(sub, p)
		return false
	})
	return m, ok, err
}

// prefixEnd is the least byte string above every string with prefix p,
// or nil when there is none (p empty or all 0xff).
func prefixEnd(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			end := clone(p[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// prefix is a random walk down the members' trie: a start point for a
// pick.
//
// A level's first and last members under the prefix are often known from
// the level above (the first under its lowest byte, the last under its
// highest, and the first under a byte the choice tested): those seeks
// are not made again.
func (w *walker) prefix() ([]byte, error) {
	var p, knownFirst, knownLast []byte
	for seeks := 0; seeks < maxWalkSeeks; {
		m := knownFirst
		if m == nil {
			var ok bool
			var err error
			m, ok, err = w.first(p)
			seeks++
			if err != nil {
				return nil, err
			}
			if !ok || !bytes.HasPrefix(m, p) {
				break
			}
		}
		last := knownLast
		if last == nil {
			var ok bool
			var err error
			last, ok, err = w.last(p)
			seeks++
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
		}
		// Every member under p lies between m and last in order, so it
		// shares their common prefix: the walk goes down to it at once
		// (the levels it skips have one child each and no member, which
		// would sort before m).
		n := len(p)
		for n < len(m) && n < len(last) && m[n] == last[n] {
			n++
		}
		p = clone(m[:n])
		member := len(m) == n // p itself is a member
		if member {
			if len(last) == n {
				break // the only member under p: land on p
			}
			var ok bool
			var err error
			if m, ok, err = w.first(append(clone(p), 0)); err != nil {
				return nil, err
			}
			seeks++
			if !ok || !bytes.HasPrefix(m, p) {
				break
			}
		}
		b, firstUnder, stop, err := w.child(p, m[n], last[n], member, &seeks)
		if err != nil {
			return nil, err
		}
		if stop {
			break
		}
		knownFirst, knownLast = firstUnder, nil
		switch b {
		case m[n]:
			knownFirst = m
		case last[n]:
			knownLast = last
		}
		p = append(p, b)
	}
	return p, nil
}

// child picks the next byte of the walk under prefix p, uniformly among
// the bytes members under p use (they lie in [lo, hi], both used), or
// stop, as one more choice, when p is a member itself. A random byte of the
// range is tried (one seek each, rejected when no member uses it) a few
// times; then the used bytes are listed (one seek each) and one is taken.
//
// firstUnder is the first member under p+b when a seek found it (nil
// when unknown).
func (w *walker) child(p []byte, lo, hi byte, member bool, seeks *int) (b byte, firstUnder []byte, stop bool, err error) {
	choices := uint64(hi-lo) + 1
	if member {
		choices++
	}
	used := func(b byte) ([]byte, bool, error) {
		if b == lo || b == hi {
			return nil, true, nil
		}
		q := append(clone(p), b)
		m, ok, err := w.first(q)
		*seeks++
		if ok && bytes.HasPrefix(m, q) {
			return m, true, err
		}
		return nil, false, err
	}
	for range childTries {
		c := w.rnd(choices)
		if c == uint64(hi-lo)+1 {
			return 0, nil, true, nil
		}
		m, ok, err := used(lo + byte(c))
		if err != nil || ok {
			return lo + byte(c), m, false, err
		}
	}
	kids := []byte{lo}
	firsts := [][]byte{nil}
	for next := int(lo) + 1; next <= int(hi) && *seeks < maxWalkSeeks; {
		m, ok, err := w.first(append(clone(p), byte(next)))
		*seeks++
		if err != nil {
			return 0, nil, false, err
		}
		if !ok || !bytes.HasPrefix(m, p) {
			break
		}
		kids = append(kids, m[len(p)])
		firsts = append(firsts, m)
		next = int(m[len(p)]) + 1
	}
	n := uint64(len(kids))
	if member {
		n++
	}
	c := w.rnd(n)
	if c == uint64(len(kids)) {
		return 0, nil, true, nil
	}
	return kids[c], firsts[c], false, nil
}

// from calls fn for up to limit members from start onward, wrapping to
// the first member after the last, until fn returns false. The member is
// valid only during the call.
func (w *walker) from(start []byte, limit uint64, fn func(m []byte) bool) error {
	var seen uint64
	more := true
	visit := func(m, _ []byte) bool {
		seen++
		more = fn(m) && seen < limit
		return more
	}
	if err := w.v.SubScan(w.key, w.ver, start, visit); err != nil || !more || len(start) == 0 {
		return err
	}
	return w.v.SubScan(w.key, w.ver, nil, func(m, val []byte) bool {
		if string(m) >= string(start) {
			return false
		}
		return visit(m, val)
	})
}

// pick is one member: a walk, then a uniform choice among the walkWindow
// members from where it lands. The choice is drawn first, so that only
// the members up to it are read (half the window on average); a set of
// fewer than walkWindow members is all window, and the choice is drawn
// again among them.
func (w *walker) pick() ([]byte, error) {
	start, err := w.prefix()
	if err != nil {
		return nil, err
	}
	r := w.rnd(walkWindow)
	var m []byte
	var seen uint64
	err = w.from(start, r+1, func(row []byte) bool {
		if seen == r {
			m = clone(row)
		}
		seen++
		return true
	})
	if err != nil {
		return nil, err
	}
	switch {
	case seen == 0:
		return nil, errEmptySet
	case m == nil:
		// Fewer members than r+1, every one seen once.
		return w.nth(start, w.rnd(seen))
	}
	return m, nil
}

// nth is the member n places from start (wrapping), n below the set's size.
func (w *walker) nth(start []byte, n uint64) ([]byte, error) {
	var m []byte
	var seen uint64
	err := w.from(start, n+1, func(row []byte) bool {
		if seen == n {
			m = clone(row)
		}
		seen++
		return true
	})
	if err == nil && m == nil {
		err = errEmptySet
	}
	return m, err
}

// Drawn ahead: SPOP on the leader.
//
// A walk costs about a dozen seeks, each a descent through every memtable
// and level, so SPOP of a set of tens of thousands of members cost tens
// of microseconds a pop; a pass by rank over a set of at most
// exactSampleMax members reads half its rows a pop on average, and the
// tombstones of the pops before (up to twice its size, rewriteMax), so
// draining a set's last thousand members by SPOP cost 80-90 µs a pop. A
// set of more than drawMinSize and at most drawMaxSize members is instead
// drawn ahead when the view keeps samples (SampleKeeper: the leader's):
// one pass over its rows picks
// size/drawRowsPerPick (at most drawMax) distinct members uniformly
// (selection sampling), in random order, and the view keeps them for the
// next pops; each pop hands out the next one still in the set (a point
// read).
//
// Why the pops stay uniform: the drawn members are the start of a
// uniformly random order of the set as it was at the draw. A member
// removed since (SREM, SMOVE, another pop) is skipped, and no removal
// depends on that order, so the first drawn member still in the set is
// uniform over the set as it is now, as long as no member was added
// since: Hints empties the sample whenever a row is written into the
// set's version (keyspace.Sample), and the version names the set (a drop
// or a rewrite gives a new one).
//
// Cost bound: a draw reads the set's rows (its tombstones too). Credit
// lets a draw happen only once the pops since the last one, at walkCost
// rows each, would have cost as much as it, so a set whose sample is
// emptied after every pop (SADD and SPOP interleaved) falls back to walks
// and costs at most about twice what walks alone do.
const (
	// drawMinSize is the largest set popped by a pass by rank whatever
	// the view: at most this many rows and their tombstones.
	drawMinSize = walkCost
	// drawMaxSize is the largest set drawn ahead: a draw is one pass over
	// its rows under the leader's sequencing lock. Above it each pop
	// walks, and a walk's dozen seeks go through every level on a node
	// (460 µs of leader CPU a pop on a set of 117k members, from
	// sstables), so that the pops until the set is down to the bound
	// cost far more lock time than the draws would (one pass per drawMax
	// pops); redis-benchmark's SADD -n 200000 -r 100000 makes a set of
	// about 86k. The bound stays for the stall of one pass.
	drawMaxSize = 1 << 18
	// drawRowsPerPick: a draw picks one member per this many rows read.
	// 2, not 8: a pass reads the tombstones of the set's earlier pops
	// too (up to twice its members, more above rewriteMax), so fewer
	// passes are most of a drained set's SPOP cost (BenchmarkSuite
	// SUITE_N=60000 spop exec 7.0-8.6 -> 3.8-4.4 µs/op with
	// drawMinSize), while what a draw holds stays bounded by drawMax
	// and drawBytesMax.
	drawRowsPerPick = 2
	// drawMax bounds the members of one draw, drawBytesMax their bytes
	// (a draw past it is dropped: the set is walked).
	drawMax      = 8192
	drawBytesMax = 256 << 10
	// drawPopMax is the largest count a pop takes from a draw.
	drawPopMax = 16
)

// popDrawn returns n (at most drawPopMax) distinct members of the set s
// at key from the members drawn ahead (drawing when there are too few and
// the credit allows), taking them from the sample, or ok false, taking
// none, when the view keeps no samples, the set is not of a size drawn
// ahead, or the sample and the credit do not give n: the caller walks.
func popDrawn(v View, key []byte, s Value, n uint64, rnd randSource) (picked [][]byte, ok bool, err error) {
	keeper, is := v.(SampleKeeper)
	if !is || s.Size <= drawMinSize || s.Size > drawMaxSize || n > drawPopMax {
		return nil, false, nil
	}
	sm := keeper.SetSample(key)
	if sm.Version != s.Version {
		sm.Version, sm.Members = s.Version, nil
	}
	// Every pop earns the credit of the walk it spares or makes.
	defer func() { sm.Credit = min(sm.Credit+walkCost*int64(n), 0) }()
	drew := false
	for uint64(len(picked)) < n {
		if len(sm.Members) == 0 {
			if drew || sm.Credit < 0 {
				// Give back what was taken: the front of the sample, in
				// its order, all still in the set.
				sm.Members = append(picked, sm.Members...)
				return nil, false, nil
			}
			drew = true
			sm.Credit -= int64(s.Size)
			if sm.Members, err = drawAhead(v, key, s, rnd); err != nil {
				return nil, false, err
			}
			continue
		}
		m := sm.Members[0]
		sm.Members = sm.Members[1:]
		// A new draw may hold a member this pop took from the old one
		// (its delete is not written yet).
		if drew && slices.ContainsFunc(picked, func(p []byte) bool { return bytes.Equal(p, m) }) {
			continue
		}
		if _, in, err := v.Sub(key, s.Version, m); err != nil {
			return nil, false, err
		} else if in {
			picked = append(picked, m)
		}
	}
	return picked, true, nil
}

// drawAhead picks size/drawRowsPerPick (at most drawMax) distinct members
// of the set s at key uniformly, in random order, in one pass; none when
// they would pass drawBytesMax.
func drawAhead(v View, key []byte, s Value, rnd randSource) ([][]byte, error) {
	need, left := min(s.Size/drawRowsPerPick, drawMax), s.Size
	out := make([][]byte, 0, need)
	size := 0
	err := v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
		if left == 0 {
			return false
		}
		if rnd(left) < need {
			if size += len(m); size > drawBytesMax {
				out = nil
				return false
			}
			out = append(out, clone(m))
			need--
		}
		left--
		return need > 0
	})
	if err != nil {
		return nil, err
	}
	shuffle(out, rnd)
	return out, nil
}
