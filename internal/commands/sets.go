package commands

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Set commands. A set is a metadata row (version, size, expiry) and one
// sub-key row per member with an empty value (package keyspace): SADD or
// SREM logs the members it changes and, when the size changes, the
// metadata row; SISMEMBER reads one row. SPOP and SRANDMEMBER pick members
// without loading the set (randomMembers); SPOP's picks are made here, on
// the leader, and logged as sub-key deletes, so followers replay exactly
// what the leader chose.

var (
	errMustBePositive = newError("value is out of range, must be positive")
	errNumKeys        = newError("numkeys should be greater than 0")
	errNumKeysArgs    = newError("Number of keys can't be greater than number of args")
	errLimitNegative  = newError("LIMIT can't be negative")
	// errRandomCount: SRANDMEMBER with a negative count asks for that many
	// picks whatever the set's size; Redis would stream them until its
	// client buffer limit cuts the connection, tandem refuses the command.
	errRandomCount = newError("count is out of range: tandem replies with at most " + strconv.Itoa(maxRandomCount) + " random members")
)

// maxRandomCount bounds SRANDMEMBER's repeated picks (16 Mi members, at
// least 64 MiB of reply).
const maxRandomCount = 1 << 24

// saddMembers adds members to the set at key and returns how many were
// new. A member already there logs nothing; the metadata row is logged
// only when the size changes (or the set is new).
func saddMembers(t *txn, key []byte, members [][]byte) (int, error) {
	s, existed, err := collectionForWrite(t, key, keyspace.TypeSet)
	if err != nil {
		return 0, err
	}
	added := 0
	for _, m := range members {
		_, had, err := t.view().Sub(key, s.Version, m)
		if err != nil {
			return 0, err
		}
		if had {
			continue
		}
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: s.Version, Sub: m, Value: []byte{}})
		added++
	}
	if !existed || added > 0 {
		s.Size += uint64(added)
		t.record(metaOp(key, s, s.ExpireAtMs))
	}
	return added, nil
}

// sremMembers removes members from the set s at key (read through t) and
// returns how many were there. The set goes when its last member does: a
// drop of its version instead of a delete per member.
func sremMembers(t *txn, key []byte, s Value, members [][]byte) (int, error) {
	var gone [][]byte
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		if _, dup := seen[string(m)]; dup {
			continue
		}
		seen[string(m)] = struct{}{}
		_, had, err := t.view().Sub(key, s.Version, m)
		if err != nil {
			return 0, err
		}
		if had {
			gone = append(gone, m)
		}
	}
	n := len(gone)
	switch {
	case n == 0:
		return 0, nil
	case uint64(n) >= s.Size:
		t.del(key, s)
		return n, nil
	}
	for _, m := range gone {
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: s.Version, Sub: m})
	}
	s.Size -= uint64(n)
	t.record(metaOp(key, s, s.ExpireAtMs))
	return n, nil
}

func execSAdd(_ *Ctx, v View, args [][]byte) (Result, error) {
	t := txn{v: v}
	n, err := saddMembers(&t, args[1], args[2:])
	if err != nil {
		return Result{}, err
	}
	return shapeOnly(t.result(Int(n)))
}

// shapeOnly marks a result that logs nothing ShapeOnly: for SADD and
// SREM, whose reply, when they change nothing, is 0 whatever the set's
// size, decided by its metadata row's type and version and the member
// rows read with View.Sub.
func shapeOnly(r Result, err error) (Result, error) {
	r.ShapeOnly = len(r.Ops) == 0
	return r, err
}

func execSRem(_ *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	s, ok, err := getTyped(v, key, keyspace.TypeSet)
	if err != nil || !ok {
		return Result{Reply: Int(0), ShapeOnly: true}, err
	}
	t := txn{v: v}
	n, err := sremMembers(&t, key, s, args[2:])
	if err != nil {
		return Result{}, err
	}
	return shapeOnly(t.result(Int(n)))
}

func execSCard(_ *Ctx, v View, args [][]byte) (Result, error) {
	s, _, err := getTyped(v, args[1], keyspace.TypeSet)
	return Result{Reply: Int(s.Size)}, err
}

func execSIsMember(_ *Ctx, v View, args [][]byte) (Result, error) {
	s, ok, err := getTyped(v, args[1], keyspace.TypeSet)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	_, had, err := v.Sub(args[1], s.Version, args[2])
	if had {
		return Result{Reply: Int(1)}, err
	}
	return Result{Reply: Int(0)}, err
}

func execSMIsMember(_ *Ctx, v View, args [][]byte) (Result, error) {
	s, ok, err := getTyped(v, args[1], keyspace.TypeSet)
	if err != nil {
		return Result{}, err
	}
	out := make(Array, len(args)-2)
	for i, m := range args[2:] {
		out[i] = Int(0)
		if !ok {
			continue
		}
		_, had, err := v.Sub(args[1], s.Version, m)
		if err != nil {
			return Result{}, err
		}
		if had {
			out[i] = Int(1)
		}
	}
	return Result{Reply: out}, nil
}

// setMembers returns every member of the set s at key, in member order.
func setMembers(v View, key []byte, s Value) ([][]byte, error) {
	return membersWithin(v, key, s, nil)
}

// membersWithin is setMembers counting each member against b (nil: no
// bound): it stops reading at the bound, and b.err() says so.
func membersWithin(v View, key []byte, s Value, b *budget) ([][]byte, error) {
	out := make([][]byte, 0, min(s.Size, presizeMax))
	a := arena{left: int(min(s.Size, presizeMax))}
	err := v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
		if b != nil && !b.add(len(m)) {
			return false
		}
		out = append(out, a.copy(m))
		return true
	})
	return out, err
}

func execSMembers(ctx *Ctx, v View, args [][]byte) (Result, error) {
	s, ok, err := getTyped(v, args[1], keyspace.TypeSet)
	if err != nil || !ok {
		return Result{Reply: Set{}}, err
	}
	b := newBudget(ctx)
	ms, err := membersWithin(v, args[1], s, &b)
	if err == nil {
		err = b.err()
	}
	if err != nil {
		return Result{}, err
	}
	// Redis keeps a small set of integers as a sorted intset and answers
	// in numeric order; member order is Redis's for no other encoding.
	if isIntSet(ms) {
		slices.SortFunc(ms, func(a, b []byte) int {
			x, _ := parseInt(a)
			y, _ := parseInt(b)
			return cmpInt(x, y)
		})
	}
	return Result{Reply: bulks(ms, Set{})}, nil
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// isIntSet reports whether members would be an intset in Redis.
func isIntSet(ms [][]byte) bool {
	if int64(len(ms)) > setMaxIntsetEntries.Load() {
		return false
	}
	for _, m := range ms {
		if _, ok := parseInt(m); !ok {
			return false
		}
	}
	return true
}

// bulks appends ms to out as bulk strings.
func bulks[R ~[]Reply](ms [][]byte, out R) R {
	for _, m := range ms {
		out = append(out, Bulk(m))
	}
	return out
}

// execSPop is SPOP key [count]. The members go as sub-key deletes (the
// last one as a drop of the set), so the log says which were chosen.
func execSPop(_ *Ctx, v View, args [][]byte) (Result, error) {
	if len(args) > 3 {
		return Result{}, ErrSyntax
	}
	withCount := len(args) == 3
	count := int64(1)
	if withCount {
		n, ok := parseInt(args[2])
		if !ok {
			return Result{}, ErrNotInteger
		}
		if n < 0 {
			return Result{}, errMustBePositive
		}
		count = n
	}
	key := args[1]
	s, ok, err := getTyped(v, key, keyspace.TypeSet)
	if err != nil {
		return Result{}, err
	}
	if !ok || count == 0 {
		if withCount {
			return Result{Reply: Set{}}, nil
		}
		return Result{Reply: Null}, nil
	}
	t := txn{v: v}
	var picked [][]byte
	if uint64(count) >= s.Size {
		// Every member: Redis replies with the set and deletes the key.
		if picked, err = setMembers(v, key, s); err != nil {
			return Result{}, err
		}
		t.del(key, s)
	} else if stay := s.Size - uint64(count); stay < uint64(count) {
		// Most members go: as Redis does, keep the few that stay, which
		// here means logging them (under a new version, the old one
		// dropped) rather than a delete per member that goes.
		if picked, err = spopKeeping(&t, key, s, stay); err != nil {
			return Result{}, err
		}
	} else {
		drawn := false
		if picked, drawn, err = popDrawn(v, key, s, uint64(count), defaultRand); err != nil {
			return Result{}, err
		}
		if !drawn {
			if picked, err = randomMembers(v, key, s, count, true, defaultRand); err != nil {
				return Result{}, err
			}
		}
		if tombstoned(v, key, s) {
			// Earlier pops left more tombstones than the set has
			// members: every read of it steps over them (a walk's
			// seeks and window, a pass by rank), so the members that
			// stay are logged under a new version, which has none, in
			// one pass. Draining a set by SPOP stays O(1) rows per pop
			// (amortized: a rewrite follows twice as many pops as it
			// logs members).
			if err = spopRewrite(&t, key, s, picked); err != nil {
				return Result{}, err
			}
		} else {
			// The picks are distinct members just read: each is one
			// row delete.
			if uint64(len(picked)) >= s.Size {
				t.del(key, s)
			} else {
				for _, m := range picked {
					t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: s.Version, Sub: m})
				}
				s.Size -= uint64(len(picked))
				t.record(metaOp(key, s, s.ExpireAtMs))
			}
		}
	}
	if !withCount {
		return t.result(Bulk(picked[0]))
	}
	return t.result(bulks(picked, Set{}))
}

// rewriteMax is the largest set SPOP rewrites under a new version to
// leave its tombstones behind: the rewrite is one pass over the set's
// rows (tombstones included) under the sequencing lock, and one entry of
// every member.
const rewriteMax = 1 << 14

// tombstoned reports whether the set s at key is at most rewriteMax
// members and its span holds more than twice as many tombstones of earlier
// deletes as members, by the leader's count (TombstoneCounter).
func tombstoned(v View, key []byte, s Value) bool {
	tc, ok := v.(TombstoneCounter)
	return ok && s.Size <= rewriteMax && tc.SubDeleted(key, s.Version) > 2*s.Size+64
}

// spopRewrite pops the members picked (distinct members of the set s at
// key, fewer than all) by logging a drop of s's version and every other
// member under a new one.
func spopRewrite(t *txn, key []byte, s Value, picked [][]byte) error {
	gone := make(map[string]struct{}, len(picked))
	for _, m := range picked {
		gone[string(m)] = struct{}{}
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return err
	}
	var stay []logrec.Op
	a := arena{left: int(min(s.Size, presizeMax))}
	err = t.v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
		if _, ok := gone[string(m)]; !ok {
			stay = append(stay, logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: ver, Sub: a.copy(m), Value: []byte{}})
		}
		return true
	})
	if err != nil {
		return err
	}
	if uint64(len(stay)) != s.Size-uint64(len(picked)) {
		return fmt.Errorf("commands: set %q has %d members beside the %d popped, its metadata %d: %w", key, len(stay), len(picked), s.Size, keyspace.ErrCorrupt)
	}
	t.del(key, s)
	for i := range stay {
		t.record(stay[i])
	}
	t.record(metaOp(key, Value{Type: keyspace.TypeSet, Version: ver, Size: uint64(len(stay))}, s.ExpireAtMs))
	return nil
}

// spopKeeping pops all but stay random members of the set s at key: it
// logs a drop of s's version and the members that stay under a new one,
// and returns the members that go, in random order.
func spopKeeping(t *txn, key []byte, s Value, stay uint64) ([][]byte, error) {
	kept, err := randomMembers(t.v, key, s, int64(stay), true, defaultRand)
	if err != nil {
		return nil, err
	}
	keep := make(map[string]struct{}, len(kept))
	for _, m := range kept {
		keep[string(m)] = struct{}{}
	}
	var gone [][]byte
	err = t.v.SubScan(key, s.Version, nil, func(m, _ []byte) bool {
		if _, ok := keep[string(m)]; !ok {
			gone = append(gone, clone(m))
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return nil, err
	}
	t.del(key, s)
	for _, m := range kept {
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: ver, Sub: m, Value: []byte{}})
	}
	t.record(metaOp(key, Value{Type: keyspace.TypeSet, Version: ver, Size: uint64(len(kept))}, s.ExpireAtMs))
	shuffle(gone, defaultRand)
	return gone, nil
}

// execSRandMember is SRANDMEMBER key [count]: a positive count gives
// distinct members (at most the set), a negative one -count members that
// may repeat.
func execSRandMember(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if len(args) > 3 {
		return Result{}, ErrSyntax
	}
	key := args[1]
	if len(args) == 2 {
		s, ok, err := getTyped(v, key, keyspace.TypeSet)
		if err != nil || !ok {
			return Result{Reply: Null}, err
		}
		ms, err := randomMembers(v, key, s, 1, true, defaultRand)
		if err != nil {
			return Result{}, err
		}
		return Result{Reply: Bulk(ms[0])}, nil
	}
	n, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if n == math.MinInt64 {
		return Result{}, errCountRange
	}
	s, found, err := getTyped(v, key, keyspace.TypeSet)
	if err != nil || !found || n == 0 {
		return Result{Reply: Array{}}, err
	}
	distinct := n > 0
	if !distinct {
		n = -n
		if n > maxRandomCount {
			return Result{}, errRandomCount
		}
	}
	var ms [][]byte
	b := newBudget(ctx)
	if distinct && uint64(n) >= s.Size {
		ms, err = membersWithin(v, key, s, &b)
	} else {
		// At most s.Size or maxRandomCount members, some repeated
		// (one copy each): counted once picked.
		ms, err = randomMembers(v, key, s, n, distinct, defaultRand)
		for _, m := range ms {
			if !b.add(len(m)) {
				break
			}
		}
	}
	if err != nil {
		return Result{}, err
	}
	return b.result(bulks(ms, make(Array, 0, len(ms))), nil)
}

// execSMove is SMOVE source destination member.
func execSMove(_ *Ctx, v View, args [][]byte) (Result, error) {
	src, dst, m := args[1], args[2], args[3]
	s, ok, err := getTyped(v, src, keyspace.TypeSet)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	if _, _, err := getTyped(v, dst, keyspace.TypeSet); err != nil {
		return Result{}, err
	}
	if string(src) == string(dst) {
		_, had, err := v.Sub(src, s.Version, m)
		if had {
			return Result{Reply: Int(1)}, err
		}
		return Result{Reply: Int(0)}, err
	}
	t := txn{v: v}
	n, err := sremMembers(&t, src, s, [][]byte{m})
	if err != nil || n == 0 {
		return Result{Reply: Int(0)}, err
	}
	if _, err := saddMembers(&t, dst, [][]byte{m}); err != nil {
		return Result{}, err
	}
	return t.result(Int(1))
}

// readSets reads keys as sets, refusing any live key of another type
// before anything else (Redis checks every key first). A missing key is
// an empty set (found false).
func readSets(v View, keys [][]byte) ([]Value, []bool, error) {
	vals := make([]Value, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		var err error
		if vals[i], found[i], err = getTyped(v, k, keyspace.TypeSet); err != nil {
			return nil, nil, err
		}
	}
	return vals, found, nil
}

// setAlgebra is SINTER, SUNION or SDIFF.
type setAlgebra int

const (
	opInter setAlgebra = iota
	opUnion
	opDiff
)

// combine computes op over the sets at keys, in member order. limit > 0
// stops an intersection after that many members (SINTERCARD's LIMIT).
//
// An intersection walks its smallest set and looks each member up in the
// others (one point read each), as Redis does; a difference walks the
// first set likewise; a union merges every set.
//
// A non-nil b counts every member kept (the reply being built) and stops
// the walk at its bound: b.err() then says so.
func combine(v View, keys [][]byte, op setAlgebra, limit int, b *budget) ([][]byte, error) {
	vals, found, err := readSets(v, keys)
	if err != nil {
		return nil, err
	}
	switch op {
	case opInter:
		small := 0
		for i := range keys {
			if !found[i] {
				return nil, nil
			}
			if vals[i].Size < vals[small].Size {
				small = i
			}
		}
		return filterMembers(v, keys, vals, small, func(i int, had bool) (bool, bool) {
			// Keep walking while every other set has it.
			return had, !had
		}, limit, b)
	case opDiff:
		if !found[0] {
			return nil, nil
		}
		return filterMembers(v, keys, vals, 0, func(i int, had bool) (bool, bool) {
			if !found[i] {
				return true, false // an empty set removes nothing
			}
			return !had, had
		}, 0, b)
	}
	seen := map[string]struct{}{}
	var out [][]byte
	for i, k := range keys {
		if !found[i] {
			continue
		}
		err := v.SubScan(k, vals[i].Version, nil, func(m, _ []byte) bool {
			if _, dup := seen[string(m)]; !dup {
				if b != nil && !b.add(len(m)) {
					return false
				}
				seen[string(m)] = struct{}{}
				out = append(out, clone(m))
			}
			return true
		})
		if err != nil || (b != nil && b.err() != nil) {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b []byte) int { return compareBytes(a, b) })
	return out, nil
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// filterMembers walks the set keys[walk] and keeps each member that every
// other set accepts: check(i, had) is called with whether set i has the
// member and says (keep so far, stop looking at the other sets).
func filterMembers(v View, keys [][]byte, vals []Value, walk int, check func(i int, had bool) (keep, done bool), limit int, b *budget) ([][]byte, error) {
	var out [][]byte
	var ierr error
	err := v.SubScan(keys[walk], vals[walk].Version, nil, func(m, _ []byte) bool {
		keep := true
		for i, k := range keys {
			if i == walk {
				continue
			}
			var had bool
			if vals[i].Version != 0 {
				if _, had, ierr = v.Sub(k, vals[i].Version, m); ierr != nil {
					return false
				}
			}
			var done bool
			keep, done = check(i, had)
			if done {
				break
			}
		}
		if keep {
			if b != nil && !b.add(len(m)) {
				return false
			}
			out = append(out, clone(m))
		}
		return limit <= 0 || len(out) < limit
	})
	if ierr != nil {
		return nil, ierr
	}
	return out, err
}

func execSInter(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return setOpReply(ctx, v, args[1:], opInter)
}

func execSUnion(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return setOpReply(ctx, v, args[1:], opUnion)
}

func execSDiff(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return setOpReply(ctx, v, args[1:], opDiff)
}

// setOpReply answers SINTER, SUNION or SDIFF, stopping at max-reply-bytes.
func setOpReply(ctx *Ctx, v View, keys [][]byte, op setAlgebra) (Result, error) {
	b := newBudget(ctx)
	ms, err := combine(v, keys, op, 0, &b)
	if err != nil {
		return Result{}, err
	}
	return b.result(bulks(ms, make(Set, 0, len(ms))), nil)
}

func execSInterStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return setOpStore(v, args[1], args[2:], opInter)
}

func execSUnionStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return setOpStore(v, args[1], args[2:], opUnion)
}

func execSDiffStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return setOpStore(v, args[1], args[2:], opDiff)
}

// setOpStore stores op over keys at dst, replacing whatever dst holds (of
// any type): dst's old value is dropped and the result written under a
// new version; an empty result leaves dst deleted.
func setOpStore(v View, dst []byte, keys [][]byte, op setAlgebra) (Result, error) {
	ms, err := combine(v, keys, op, 0, nil)
	if err != nil {
		return Result{}, err
	}
	t := txn{v: v}
	old, exists, err := v.Get(dst)
	if err != nil {
		return Result{}, err
	}
	if exists {
		t.del(dst, old)
	}
	if len(ms) > 0 {
		ver, err := newVersion(v)
		if err != nil {
			return Result{}, err
		}
		for _, m := range ms {
			t.record(logrec.Op{Kind: logrec.OpSubPut, Key: dst, Version: ver, Sub: m, Value: []byte{}})
		}
		t.record(metaOp(dst, Value{Type: keyspace.TypeSet, Version: ver, Size: uint64(len(ms))}, 0))
	}
	return t.result(Int(len(ms)))
}

// execSInterCard is SINTERCARD numkeys key [key ...] [LIMIT limit].
func execSInterCard(_ *Ctx, v View, args [][]byte) (Result, error) {
	numKeys, ok := parseInt(args[1])
	if !ok || numKeys < 1 {
		return Result{}, errNumKeys
	}
	if numKeys > int64(len(args)-2) {
		return Result{}, errNumKeysArgs
	}
	keys := args[2 : 2+numKeys]
	var limit int64
	for i := 2 + int(numKeys); i < len(args); i++ {
		if !eqFold(args[i], "limit") || i+1 >= len(args) {
			return Result{}, ErrSyntax
		}
		n, ok := parseInt(args[i+1])
		if !ok || n < 0 {
			return Result{}, errLimitNegative
		}
		limit = n
		i++
	}
	ms, err := combine(v, keys, opInter, int(min(limit, math.MaxInt32)), nil)
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: Int(len(ms))}, nil
}

// execSScan is SSCAN key cursor [MATCH pattern] [COUNT count]. A cursor
// names the next member (Ctx.Cursors), so a page costs COUNT rows.
func execSScan(ctx *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	o, err := parseScan(args[2], args[3:], false)
	if err != nil {
		return Result{}, err
	}
	s, found, err := getTyped(v, key, keyspace.TypeSet)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Reply: Array{Bulk("0"), Array{}}}, nil
	}
	var start []byte
	if o.cursor != 0 {
		var ok bool
		if ctx.Cursors != nil {
			start, ok = ctx.Cursors.Get(o.cursor)
		}
		if !ok {
			return Result{}, ErrInvalidCursor
		}
	}
	count := o.count
	if ctx.Cursors == nil {
		count = math.MaxInt64
	}
	items := Array{}
	var next []byte
	var visited int64
	b := scanBudget(ctx) // a page ends early at max-reply-bytes
	err = v.SubScan(key, s.Version, start, func(m, _ []byte) bool {
		if visited == count {
			next = clone(m)
			return false
		}
		visited++
		if o.pattern == nil || Match(o.pattern, m) {
			if !b.page(len(m), 1, len(items) > 0, ctx.Cursors != nil) {
				next = clone(m)
				return false
			}
			items = append(items, Bulk(clone(m)))
		}
		return true
	})
	if err == nil {
		err = b.err()
	}
	if err != nil {
		return Result{}, err
	}
	var id uint64
	if next != nil {
		id = ctx.Cursors.Put(next)
	}
	return Result{Reply: Array{Bulk(strconv.AppendUint(nil, id, 10)), items}}, nil
}
