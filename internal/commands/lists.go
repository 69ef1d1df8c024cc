package commands

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// List commands. A list is a metadata row (version, size, expiry), a head
// row holding the index of its first element, and one sub-key row per
// element keyed by its index (package keyspace, "Lists"). Push, pop, LINDEX
// and LSET at a known position touch O(1) rows; LRANGE reads only the rows
// it returns. LINSERT and LREM rewrite the elements between the change and
// the nearer end (O(N) rows at worst, as Kvrocks's do), and LTRIM deletes
// the rows it trims or, when it keeps fewer than it trims, copies the kept
// ones to a new version.

var (
	errIndexRange     = newError("index out of range")
	errRankZero       = newError("RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
	errCountNegative  = newError("COUNT can't be negative")
	errMaxlenNegative = newError("MAXLEN can't be negative")
	errNumkeys        = newError("numkeys should be greater than 0")
	errCountPositive  = newError("count should be greater than 0")
)

// list is a live list as a command sees it: its metadata and head. The
// element at position p (0 = head end) has index head+p.
type list struct {
	key  []byte
	meta Value
	head uint64
	// spare: 8 bytes push left over for save's head row (nil: none), so
	// that a push's index sub-keys and head row are one allocation.
	spare []byte
}

func (l *list) index(pos int64) []byte { return keyspace.ListIndexSub(l.head + uint64(pos)) }

func (l *list) size() int64 { return int64(l.meta.Size) }

// indexes is the sub-keys of the n positions from from, 8 bytes each, in
// one allocation (subAt cuts them).
func (l *list) indexes(from, n int64) []byte {
	b := make([]byte, 0, 8*n)
	for i := range n {
		b = binary.BigEndian.AppendUint64(b, l.head+uint64(from+i))
	}
	return b
}

// subAt is the i-th sub-key of indexes' buffer, capped so an append to it
// never writes over the next.
func subAt(subs []byte, i int64) []byte { return subs[8*i : 8*i+8 : 8*i+8] }

// getList reads key as a list (errWrongType for another type).
func getList(v View, key []byte) (list, bool, error) {
	m, ok, err := getTyped(v, key, keyspace.TypeList)
	if err != nil || !ok {
		return list{}, false, err
	}
	row, ok, err := v.Sub(key, m.Version, keyspace.ListHeadSub)
	if err != nil {
		return list{}, false, err
	}
	if !ok {
		return list{}, false, noHeadRow(key, m.Version)
	}
	head, err := keyspace.DecodeListHead(row)
	if err != nil {
		return list{}, false, fmt.Errorf("commands: list %q: %w", key, err)
	}
	return list{key: key, meta: m, head: head}, true, nil
}

func noHeadRow(key []byte, version uint64) error {
	return fmt.Errorf("commands: list %q version %d has no head row: %w", key, version, keyspace.ErrCorrupt)
}

// listForWrite reads key as a list for a write: the live list, or a new
// empty one at the view's new version.
func listForWrite(t *txn, key []byte) (list, bool, error) {
	l, ok, err := getList(t.view(), key)
	if err != nil || ok {
		return l, ok, err
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return list{}, false, err
	}
	return list{key: key, meta: Value{Type: keyspace.TypeList, Version: ver}, head: keyspace.ListStartIndex}, false, nil
}

// push adds vals at the head end (left) or the tail end, one at a time in
// order, as Redis does (LPUSH a b c leaves c first).
//
// The elements' index sub-keys are carved from one allocation, with 8
// bytes more for save's head row (l.spare): an LPUSH of one element made
// two allocations of 8 bytes, now one of 16.
func (l *list) push(t *txn, left bool, vals [][]byte) {
	buf := make([]byte, 0, 8*(len(vals)+1))
	for i, val := range vals {
		pos := l.size()
		if left {
			l.head--
			pos = 0
		}
		sub := binary.BigEndian.AppendUint64(buf[8*i:8*i], l.head+uint64(pos))
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: l.key, Version: l.meta.Version, Sub: sub[:8:8], Value: val})
		l.meta.Size++
	}
	l.spare = buf[8*len(vals) : 8*len(vals) : 8*len(vals)+8]
}

// pointReads is the most positions list.read reads with a point read
// each rather than an iterator: an LSM iterator positions itself in every
// level (memtables and sstables alike) before it yields a row, while a
// point read stops at the newest level holding the row, so a pop of the
// element a push just wrote reads only the memtable (LPOP and RPOP cost
// 9 µs less of leader CPU in BenchmarkSuite).
const pointReads = 4

// read returns the values at positions [from, to) in order: a point read
// each for a few, else one seek and a scan.
func (l *list) read(v View, from, to int64) ([][]byte, error) {
	return l.readAt(v, from, to, nil)
}

// readAt is read with the sub-keys of positions [from, to) given (subs,
// 8 bytes each, as indexes builds them) for the point reads, or built
// when subs is nil.
func (l *list) readAt(v View, from, to int64, subs []byte) ([][]byte, error) {
	out := make([][]byte, 0, to-from)
	if to-from <= pointReads {
		for p := from; p < to; p++ {
			var sub []byte
			if subs != nil {
				sub = subAt(subs, p-from)
			} else {
				sub = l.index(p)
			}
			val, ok, err := v.Sub(l.key, l.meta.Version, sub)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("commands: list %q has no row at position %d of %d: %w", l.key, p, l.size(), keyspace.ErrCorrupt)
			}
			// View.Sub's row is the caller's to keep.
			out = append(out, val)
		}
		return out, nil
	}
	a := arena{left: int(to - from)}
	err := eachElement(v, l.key, l.meta, l.head, from, to, func(val []byte, keep bool) bool {
		if !keep {
			val = a.copy(val)
		}
		out = append(out, val)
		return true
	})
	return out, err
}

// eachElement calls fn with the values at positions [from, to) of the
// list key (metadata m, first index head) in order, until fn returns
// false. keep says the value is the caller's to keep (an immutable row);
// else it is valid only during the call. Each row must be at the index
// the head and the position say, else the list is corrupt.
//
// When the view's rows can answer from memory (keyspace.CachedRows: the
// committed rows on any node, whose row cache holds the elements a push
// wrote or a read fetched), the leading positions are read from there, a
// hash lookup each and no copy; from the first position not held, one
// seek and a scan of the rows it passes to fn. A scan from the head end
// of a list pays an iterator positioned in every level of the store (a
// memtable and each sstable holding part of the list) and a copy per row:
// LRANGE 0 99 cost twice the CPU of the lookups (BenchmarkLRange).
//
// The head comes from a point read (getList), not from the same scan
// although the head row is the first row of the list's span: every push
// at the head rewrites that row, and until a compaction drops the old
// versions an iterator steps over each of them (60,000 LPUSHes made
// LRANGE 0 99 ten times slower), while a point read takes the newest.
// cacheScanned is the most rows eachElement keeps in memory from a scan
// (keyspace.CachedRows.IterCaching): LRANGE_300's, and a bound on what
// one long LRANGE can push out of the row cache.
const cacheScanned = 512

func eachElement(v View, key []byte, m Value, head uint64, from, to int64, fn func(val []byte, keep bool) bool) error {
	if from >= to {
		return nil
	}
	scan := v.SubScan
	rows := v.Rows()
	// k is the version's sub-key prefix with room for an element's
	// sub-key or a block's (9 bytes).
	var k []byte
	if lb, ok := rows.(keyspace.ListBlockRows); ok {
		// Blocks first: one lookup per 32 elements (keyspace's
		// listblock.go), as far as they can be had from memory.
		k = keyspace.AppendSubPrefix(make([]byte, 0, 13+len(key)+9), key, m.Version)
		tail := head + m.Size
		for from < to {
			idx := head + uint64(from)
			b, ok := lb.ListBlock(k, head, tail, idx)
			if !ok {
				break
			}
			for i := int(idx - b.First); i < b.Len() && from < to; i++ {
				if !fn(b.Elem(i), true) {
					return nil
				}
				from++
			}
		}
		if from == to {
			return nil
		}
	}
	if c, ok := rows.(keyspace.CachedRows); ok {
		if k == nil {
			k = keyspace.AppendSubPrefix(make([]byte, 0, 13+len(key)+9), key, m.Version)
		}
		n := len(k)
		for ; from < to; from++ {
			k = binary.BigEndian.AppendUint64(k[:n], head+uint64(from))
			val, ok := c.Cached(k)
			if !ok {
				break
			}
			if !fn(val, true) {
				return nil
			}
		}
		if from == to {
			return nil
		}
		// The rest is scanned, and the scan keeps what it read in
		// memory (up to cacheScanned rows), so the next read of these
		// positions answers from there: once the row cache is full, a
		// push's row is not admitted (rowcache: writers never evict), and
		// every LRANGE of a list's new head paid the scan.
		scan = func(key []byte, version uint64, start []byte, fn func(sub, val []byte) bool) error {
			lo, hi := keyspace.SubSpan(key, version)
			return c.IterCaching(append(lo, start...), hi, cacheScanned, func(k, v []byte) bool {
				return fn(k[len(lo):], v)
			})
		}
	}
	var n int64 // rows passed to fn
	var derr error
	stopped := false
	err := scan(key, m.Version, keyspace.ListIndexSub(head+uint64(from)), func(sub, val []byte) bool {
		if len(sub) != 8 || binary.BigEndian.Uint64(sub) != head+uint64(from+n) {
			derr = fmt.Errorf("commands: list %q has a row at sub-key %x for position %d: %w", key, sub, from+n, keyspace.ErrCorrupt)
			return false
		}
		n++
		if !fn(val, false) {
			stopped = true
			return false
		}
		return n < to-from
	})
	if err == nil {
		err = derr
	}
	if err == nil && !stopped && n != to-from {
		err = fmt.Errorf("commands: list %q has %d rows at positions [%d, %d): %w", key, n, from, to, keyspace.ErrCorrupt)
	}
	return err
}

// pop removes n elements (1 <= n <= size) from one end and returns them
// in the order they were popped. Taking the last element deletes the key
// (one drop, no element deletes), as in Redis.
func (l *list) pop(t *txn, left bool, n int64) ([][]byte, error) {
	from := int64(0)
	if !left {
		from = l.size() - n
	}
	// A few elements (LPOP, BLPOP, a job queue's every pop) are point
	// reads (list.read), not an iterator, which would also step over the
	// tombstones of the elements popped before them; on the leader, read
	// through its runs (ListPopper: the elements a run of pops takes,
	// read ahead). The reads and the deletes share the elements'
	// sub-keys, made in one allocation.
	subs := l.indexes(from, n)
	var vals [][]byte
	if lp, ok := t.view().(ListPopper); ok && n <= pointReads {
		vals = make([][]byte, 0, n)
		for i := range n {
			p := from + i // in the order popped
			if !left {
				p = from + n - 1 - i
			}
			val, ok, err := lp.ListPop(l.key, l.meta.Version, l.head+uint64(p), !left)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("commands: list %q has no row at position %d of %d: %w", l.key, p, l.size(), keyspace.ErrCorrupt)
			}
			vals = append(vals, val)
		}
	} else {
		var err error
		if vals, err = l.readAt(t.view(), from, from+n, subs); err != nil {
			return nil, err
		}
		if !left {
			slices.Reverse(vals)
		}
	}
	if n == l.size() {
		t.record(keyspace.DeleteOp(l.key, l.meta))
		l.meta.Size = 0
		return vals, nil
	}
	// The deletes in the order popped: the leader's run for this end
	// (keyspace.Hints.ListPop) takes each from its near end; a delete
	// behind it would cut the run there.
	for i := range n {
		if !left {
			i = n - 1 - i
		}
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: l.key, Version: l.meta.Version, Sub: subAt(subs, i)})
	}
	if left {
		l.head += uint64(n)
	}
	l.meta.Size -= uint64(n)
	return vals, nil
}

// save records the list's metadata row and, when the head moved or the
// list is new, its head row. A list left empty must have been dropped
// (pop); save does nothing for it.
func (l *list) save(t *txn, headMoved bool) {
	if l.meta.Size == 0 {
		return
	}
	if headMoved {
		var row []byte
		if cap(l.spare) == 8 {
			row = binary.BigEndian.AppendUint64(l.spare, l.head)
			l.spare = nil // handed out once
		} else {
			row = keyspace.ListHeadRow(l.head)
		}
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: l.key, Version: l.meta.Version, Sub: keyspace.ListHeadSub, Value: row})
	}
	t.record(metaOp(l.key, l.meta, l.meta.ExpireAtMs))
}

// pushCommand is LPUSH, RPUSH, LPUSHX and RPUSHX.
func pushCommand(v View, args [][]byte, left, onlyExisting bool) (Result, error) {
	t := txn{v: v}
	if onlyExisting {
		if _, ok, err := getList(v, args[1]); err != nil || !ok {
			return Result{Reply: Int(0)}, err
		}
	}
	l, existed, err := listForWrite(&t, args[1])
	if err != nil {
		return Result{}, err
	}
	l.push(&t, left, args[2:])
	l.save(&t, left || !existed)
	return t.result(Int(l.size()))
}

func execLPush(_ *Ctx, v View, args [][]byte) (Result, error) {
	return pushCommand(v, args, true, false)
}

func execRPush(_ *Ctx, v View, args [][]byte) (Result, error) {
	return pushCommand(v, args, false, false)
}

func execLPushX(_ *Ctx, v View, args [][]byte) (Result, error) {
	return pushCommand(v, args, true, true)
}

func execRPushX(_ *Ctx, v View, args [][]byte) (Result, error) {
	return pushCommand(v, args, false, true)
}

// popCommand is LPOP and RPOP key [count].
func popCommand(v View, args [][]byte, left bool) (Result, error) {
	if len(args) > 3 {
		return Result{}, &ArityError{Name: string(lower(args[0]))}
	}
	count := int64(-1)
	if len(args) == 3 {
		n, ok := parseInt(args[2])
		if !ok || n < 0 {
			return Result{}, errMustBePositive
		}
		count = n
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		if count >= 0 {
			return Result{Reply: Array(nil)}, err
		}
		return Result{Reply: Null}, err
	}
	if count == 0 {
		return Result{Reply: Array{}}, nil
	}
	n := min(max(count, 1), l.size())
	t := txn{v: v}
	vals, err := l.pop(&t, left, n)
	if err != nil {
		return Result{}, err
	}
	l.save(&t, left)
	if count < 0 {
		return t.result(Bulk(vals[0]))
	}
	return t.result(bulks(vals, make(Array, 0, len(vals))))
}

func lower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func execLPop(_ *Ctx, v View, args [][]byte) (Result, error) { return popCommand(v, args, true) }

func execRPop(_ *Ctx, v View, args [][]byte) (Result, error) { return popCommand(v, args, false) }

func execLLen(_ *Ctx, v View, args [][]byte) (Result, error) {
	m, _, err := getTyped(v, args[1], keyspace.TypeList)
	return Result{Reply: Int(m.Size)}, err
}

// execLRange is LRANGE key start stop: one seek and a scan of the rows it
// returns. The reply (Bulks: no allocation per element) is built as the
// rows are read, their values copied into a few shared buffers, and
// refused once it passes max-reply-bytes.
func execLRange(ctx *Ctx, v View, args [][]byte) (Result, error) {
	start, ok1 := parseInt(args[2])
	stop, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return Result{}, ErrNotInteger
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Array{}}, err
	}
	from, to, ok := clampRange(start, stop, l.size())
	if !ok {
		return Result{Reply: Array{}}, nil
	}
	out := make(Bulks, 0, to-from)
	b := newBudget(ctx)
	a := arena{left: int(to - from)}
	err = eachElement(v, l.key, l.meta, l.head, from, to, func(val []byte, keep bool) bool {
		if !b.add(len(val)) {
			return false
		}
		if !keep {
			val = a.copy(val)
		}
		out = append(out, val)
		return true
	})
	if err == nil {
		err = b.err()
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: out}, nil
}

// clampRange turns Redis's inclusive start and stop (negative counting
// from the end) into positions [from, to) of a list of n elements; ok is
// false when the range is empty.
func clampRange(start, stop, n int64) (from, to int64, ok bool) {
	if start < 0 {
		start += n
	}
	if stop < 0 {
		stop += n
	}
	start = max(start, 0)
	if start > stop || start >= n {
		return 0, 0, false
	}
	stop = min(stop, n-1)
	return start, stop + 1, true
}

// position turns an index (negative from the end) into a position of l.
func (l *list) position(idx int64) (int64, bool) {
	if idx < 0 {
		idx += l.size()
	}
	return idx, idx >= 0 && idx < l.size()
}

func execLIndex(_ *Ctx, v View, args [][]byte) (Result, error) {
	idx, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	p, ok := l.position(idx)
	if !ok {
		return Result{Reply: Null}, nil
	}
	val, ok, err := v.Sub(l.key, l.meta.Version, l.index(p))
	if err == nil && !ok {
		err = fmt.Errorf("commands: list %q has no row at position %d: %w", l.key, p, keyspace.ErrCorrupt)
	}
	return Result{Reply: Bulk(val)}, err
}

func execLSet(_ *Ctx, v View, args [][]byte) (Result, error) {
	idx, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	l, ok, err := getList(v, args[1])
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, errNoSuchKey
	}
	p, ok := l.position(idx)
	if !ok {
		return Result{}, errIndexRange
	}
	t := txn{v: v}
	t.record(logrec.Op{Kind: logrec.OpSubPut, Key: l.key, Version: l.meta.Version, Sub: l.index(p), Value: args[3]})
	return t.result(OK)
}

// rewrite records the rows that replace the elements at positions
// [from, to) with vals (len(vals) - (to-from) = delta elements more), by
// moving the elements on one side by delta: atHead true moves the ones
// before from (the head moves by -delta), false the ones from to on (the
// tail moves by delta). moved is the values of the side that moves, in
// order, read by the caller; the other side keeps its rows. It costs
// len(moved)+len(vals) puts, plus a delete per freed row when it shrinks.
func (l *list) rewrite(t *txn, atHead bool, from, to int64, vals, moved [][]byte) {
	delta := int64(len(vals)) - (to - from)
	oldSize := l.size()
	put := func(p int64, val []byte) {
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: l.key, Version: l.meta.Version, Sub: l.index(p), Value: val})
	}
	del := func(p int64) {
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: l.key, Version: l.meta.Version, Sub: l.index(p)})
	}
	if atHead {
		// New positions relative to the old head: the prefix moves by
		// -delta, vals follow it, the tail stays.
		for i, val := range moved {
			put(int64(i)-delta, val)
		}
		for i, val := range vals {
			put(from-delta+int64(i), val)
		}
		for p := int64(0); p < -delta; p++ { // shrunk: free the first rows
			del(p)
		}
		l.head -= uint64(delta)
	} else {
		for i, val := range vals {
			put(from+int64(i), val)
		}
		for i, val := range moved {
			put(to+delta+int64(i), val)
		}
		for p := oldSize + delta; p < oldSize; p++ { // shrunk: free the last rows
			del(p)
		}
	}
	l.meta.Size = uint64(oldSize + delta)
}

// execLInsert is LINSERT key BEFORE|AFTER pivot element: it shifts the
// elements between the pivot and the nearer end by one.
func execLInsert(_ *Ctx, v View, args [][]byte) (Result, error) {
	var after bool
	switch {
	case eqFold(args[2], "after"):
		after = true
	case eqFold(args[2], "before"):
	default:
		return Result{}, ErrSyntax
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	pivot := args[3]
	var prefix [][]byte
	found := int64(-1)
	err = v.SubScan(l.key, l.meta.Version, l.index(0), func(_, val []byte) bool {
		if string(val) == string(pivot) {
			found = int64(len(prefix))
			return false
		}
		prefix = append(prefix, clone(val))
		return true
	})
	if err != nil || found < 0 {
		return Result{Reply: Int(-1)}, err
	}
	pos := found // the new element's position
	if after {
		pos++
		prefix = append(prefix, clone(pivot))
	}
	t := txn{v: v}
	if pos <= l.size()-pos {
		l.rewrite(&t, true, pos, pos, [][]byte{args[4]}, prefix)
		l.save(&t, true)
	} else {
		suffix, err := l.read(v, pos, l.size())
		if err != nil {
			return Result{}, err
		}
		l.rewrite(&t, false, pos, pos, [][]byte{args[4]}, suffix)
		l.save(&t, false)
	}
	return t.result(Int(l.size()))
}

// execLRem is LREM key count element. It reads the list, then rewrites
// the elements between the first and last removed one and the nearer end.
func execLRem(_ *Ctx, v View, args [][]byte) (Result, error) {
	count, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	all, err := l.read(v, 0, l.size())
	if err != nil {
		return Result{}, err
	}
	elem := string(args[3])
	removed := make([]bool, len(all))
	n := int64(0)
	limit := count
	if limit < 0 {
		limit = -limit
		if count == math.MinInt64 {
			limit = math.MaxInt64
		}
	}
	for i := range all {
		j := i
		if count < 0 {
			j = len(all) - 1 - i
		}
		if string(all[j]) == elem {
			removed[j] = true
			n++
			if limit != 0 && n == limit {
				break
			}
		}
	}
	if n == 0 {
		return Result{Reply: Int(0)}, nil
	}
	t := txn{v: v}
	if n == l.size() {
		t.record(keyspace.DeleteOp(l.key, l.meta))
		return t.result(Int(n))
	}
	first, last := int64(-1), int64(0)
	var kept [][]byte
	for i, r := range removed {
		if r {
			if first < 0 {
				first = int64(i)
			}
			last = int64(i)
		}
	}
	for i := first; i <= last; i++ {
		if !removed[i] {
			kept = append(kept, all[i])
		}
	}
	// Rewrite [first, last] as kept, moving the shorter side.
	if first < l.size()-1-last {
		l.rewrite(&t, true, first, last+1, kept, all[:first])
		l.save(&t, true)
	} else {
		l.rewrite(&t, false, first, last+1, kept, all[last+1:])
		l.save(&t, false)
	}
	return t.result(Int(n))
}

// execLTrim is LTRIM key start stop. It deletes the trimmed rows, or when
// fewer are kept than trimmed, copies the kept ones to a new version and
// drops the old one (one range delete): min(kept, trimmed) rows either way.
func execLTrim(_ *Ctx, v View, args [][]byte) (Result, error) {
	start, ok1 := parseInt(args[2])
	stop, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return Result{}, ErrNotInteger
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		return Result{Reply: OK}, err
	}
	from, to, ok := clampRange(start, stop, l.size())
	t := txn{v: v}
	if !ok {
		t.record(keyspace.DeleteOp(l.key, l.meta))
		return t.result(OK)
	}
	kept, trimmed := to-from, l.size()-(to-from)
	if trimmed == 0 {
		return Result{Reply: OK}, nil
	}
	if kept < trimmed {
		vals, err := l.read(v, from, to)
		if err != nil {
			return Result{}, err
		}
		ver, err := newVersion(v)
		if err != nil {
			return Result{}, err
		}
		t.record(keyspace.DeleteOp(l.key, l.meta))
		nl := list{key: l.key, meta: Value{Type: keyspace.TypeList, Version: ver, ExpireAtMs: l.meta.ExpireAtMs}, head: keyspace.ListStartIndex}
		nl.push(&t, false, vals)
		nl.save(&t, true)
		return t.result(OK)
	}
	for p := int64(0); p < from; p++ {
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: l.key, Version: l.meta.Version, Sub: l.index(p)})
	}
	for p := to; p < l.size(); p++ {
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: l.key, Version: l.meta.Version, Sub: l.index(p)})
	}
	l.head += uint64(from)
	l.meta.Size = uint64(kept)
	l.save(&t, from > 0)
	return t.result(OK)
}

// lposWindow is how many rows LPOS reads at a time when it searches from
// the tail (the View scans only forward).
const lposWindow = 128

// execLPos is LPOS key element [RANK rank] [COUNT num] [MAXLEN len].
func execLPos(_ *Ctx, v View, args [][]byte) (Result, error) {
	rank, count, maxlen := int64(1), int64(-1), int64(0)
	for j := 3; j < len(args); j++ {
		more := j+1 < len(args)
		switch {
		case eqFold(args[j], "rank") && more:
			j++
			n, ok := parseInt(args[j])
			if !ok {
				return Result{}, ErrNotInteger
			}
			if n == 0 || n == math.MinInt64 {
				return Result{}, errRankZero
			}
			rank = n
		case eqFold(args[j], "count") && more:
			j++
			n, ok := parseInt(args[j])
			if !ok || n < 0 {
				return Result{}, errCountNegative
			}
			count = n
		case eqFold(args[j], "maxlen") && more:
			j++
			n, ok := parseInt(args[j])
			if !ok || n < 0 {
				return Result{}, errMaxlenNegative
			}
			maxlen = n
		default:
			return Result{}, ErrSyntax
		}
	}
	l, ok, err := getList(v, args[1])
	if err != nil || !ok {
		if count >= 0 {
			return Result{Reply: Array{}}, err
		}
		return Result{Reply: Null}, err
	}
	elem := string(args[2])
	fromTail := rank < 0
	skip := rank - 1
	if fromTail {
		skip = -rank - 1
	}
	var matches Array
	visited := int64(0)
	// match looks at the element at position p; false stops the search.
	match := func(p int64, val []byte) bool {
		if maxlen != 0 && visited == maxlen {
			return false
		}
		visited++
		if string(val) != elem {
			return true
		}
		if skip > 0 {
			skip--
			return true
		}
		matches = append(matches, Int(p))
		switch {
		case count == 0: // COUNT 0: every match
			return true
		case count < 0: // no COUNT: the first
			return false
		}
		return int64(len(matches)) < count
	}
	if !fromTail {
		p := int64(0)
		err = v.SubScan(l.key, l.meta.Version, l.index(0), func(_, val []byte) bool {
			ok := match(p, val)
			p++
			return ok && p < l.size()
		})
	} else {
		for hi := l.size(); hi > 0 && err == nil; {
			lo := max(hi-lposWindow, 0)
			var vals [][]byte
			if vals, err = l.read(v, lo, hi); err != nil {
				break
			}
			stopped := false
			for i := len(vals) - 1; i >= 0; i-- {
				if !match(lo+int64(i), vals[i]) {
					stopped = true
					break
				}
			}
			if stopped {
				break
			}
			hi = lo
		}
	}
	if err != nil {
		return Result{}, err
	}
	if count < 0 {
		if len(matches) == 0 {
			return Result{Reply: Null}, nil
		}
		return Result{Reply: matches[0]}, nil
	}
	if matches == nil {
		matches = Array{}
	}
	return Result{Reply: matches}, nil
}

// parseWhere parses LEFT or RIGHT: true for LEFT.
func parseWhere(b []byte) (left bool, err error) {
	switch {
	case eqFold(b, "left"):
		return true, nil
	case eqFold(b, "right"):
		return false, nil
	}
	return false, ErrSyntax
}

// lmove pops one element from src's end and pushes it on dst's: the one
// implementation of LMOVE and RPOPLPUSH. src and dst may be the same key
// (a rotation): the push reads the list as the pop left it.
func lmove(v View, src, dst []byte, fromLeft, toLeft bool) (Result, error) {
	sl, ok, err := getList(v, src)
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	if _, _, err := getTyped(v, dst, keyspace.TypeList); err != nil {
		return Result{}, err
	}
	t := txn{v: v}
	vals, err := sl.pop(&t, fromLeft, 1)
	if err != nil {
		return Result{}, err
	}
	sl.save(&t, fromLeft)
	dl, existed, err := listForWrite(&t, dst)
	if err != nil {
		return Result{}, err
	}
	dl.push(&t, toLeft, vals)
	dl.save(&t, toLeft || !existed)
	return t.result(Bulk(vals[0]))
}

func execLMove(_ *Ctx, v View, args [][]byte) (Result, error) {
	from, err := parseWhere(args[3])
	if err != nil {
		return Result{}, err
	}
	to, err := parseWhere(args[4])
	if err != nil {
		return Result{}, err
	}
	return lmove(v, args[1], args[2], from, to)
}

func execRPopLPush(_ *Ctx, v View, args [][]byte) (Result, error) {
	return lmove(v, args[1], args[2], false, true)
}

// parseLMPop parses LMPOP's arguments after its name: numkeys key [key
// ...] LEFT|RIGHT [COUNT count] (BLMPOP's after its timeout).
func parseLMPop(args [][]byte) (keys [][]byte, left bool, count int64, err error) {
	numkeys, ok := parseInt(args[1])
	if !ok || numkeys < 1 {
		return nil, false, 0, errNumkeys
	}
	if numkeys > int64(len(args))-3 {
		return nil, false, 0, ErrSyntax
	}
	keys = args[2 : 2+numkeys]
	rest := args[2+numkeys:]
	left, err = parseWhere(rest[0])
	if err != nil {
		return nil, false, 0, err
	}
	count = -1
	for j := 1; j < len(rest); j++ {
		if count == -1 && eqFold(rest[j], "count") && j+1 < len(rest) {
			j++
			n, ok := parseInt(rest[j])
			if !ok || n < 1 {
				return nil, false, 0, errCountPositive
			}
			count = n
			continue
		}
		return nil, false, 0, ErrSyntax
	}
	return keys, left, max(count, 1), nil
}

// execLMPop is LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: pops
// from the first non-empty list.
func execLMPop(_ *Ctx, v View, args [][]byte) (Result, error) { return lmpop(v, args, false) }

// lmpop is LMPOP, and BLMPOP's pop (skipWrong: see sourceList).
func lmpop(v View, args [][]byte, skipWrong bool) (Result, error) {
	keys, left, count, err := parseLMPop(args)
	if err != nil {
		return Result{}, err
	}
	for _, key := range keys {
		l, ok, err := sourceList(v, key, skipWrong)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			continue
		}
		t := txn{v: v}
		vals, err := l.pop(&t, left, min(count, l.size()))
		if err != nil {
			return Result{}, err
		}
		l.save(&t, left)
		return t.result(Array{Bulk(key), bulks(vals, make(Array, 0, len(vals)))})
	}
	return Result{Reply: Array(nil)}, nil
}
