package commands

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Sorted-set commands. A sorted set is a metadata row (version, size =
// members, expiry) and two rows per member (package keyspace, zset.go): a
// member row holding its score and an index row ordered by score, then
// member. So ZSCORE reads one row and a range by score or lex seeks in the
// index and reads what it returns (plus, for REV and LIMIT, the rows it
// skips). The index is read from either end (View.SubScanReverse), so
// ZPOPMIN, ZPOPMAX, ZREVRANGE and the REV forms cost what they return (a
// pop of n reads n rows), and a range
// by rank is read from the nearer end. What the layout does not give, and
// costs O(rank) rows as in Apache Kvrocks: ranks far from both ends (ZRANK,
// a range by rank reads the rows between its start and that end). A write logs the rows it
// changes: a score update is the member row, the old index row's delete
// and the new one's put.

var (
	errZAddXXNX      = newError("XX and NX options at the same time are not compatible")
	errZAddGTLTNX    = newError("GT, LT, and/or NX options at the same time are not compatible")
	errZAddIncrPairs = newError("INCR option supports a single increment-element pair")
	errScoreNaN      = newError("resulting score is not a number (NaN)")
	errMinMaxFloat   = newError("min or max is not a float")
	errMinMaxLex     = newError("min or max not valid string range item")
	errWeightFloat   = newError("weight value is not a float")
	errLimitRank     = newError("syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
	errLexScores     = newError("syntax error, WITHSCORES not supported in combination with BYLEX")
	errPopCount      = newError("value is out of range, must be positive")
	errNumKeysZero   = newError("numkeys should be greater than 0")
	errCountZero     = newError("count should be greater than 0")
)

// parseScore parses a score or weight as Redis's getDoubleFromObject: no
// leading space, the whole string, no NaN, no overflow.
func parseScore(b []byte) (float64, bool) {
	if len(b) == 0 || isSpace(b[0]) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// zitem is a member and its score.
type zitem struct {
	member []byte
	score  float64
	// subs, when set, is the item's index sub-key then its member row's
	// sub-key, in one allocation whose tail is member (zpopItem): what
	// zremove logs, built with the member's copy.
	subs []byte
}

// zpopItem is a popped member m at score s (a row's bytes, valid only
// during the read) as zremove deletes it: its copy and its two sub-keys
// in one allocation (a pop's three).
func zpopItem(s float64, m []byte) zitem {
	n := 1 + keyspace.ScoreLen + len(m)
	b := make([]byte, 0, n+1+len(m))
	b = keyspace.AppendScore(append(b, keyspace.ZSetIndexFamily), s)
	b = append(append(append(b, m...), keyspace.ZSetMemberFamily), m...)
	return zitem{member: b[n+1:], score: s, subs: b}
}

// zsetGet reads key as a sorted set (errWrongType for another type).
func zsetGet(v View, key []byte) (Value, bool, error) {
	return getTyped(v, key, keyspace.TypeZSet)
}

// zscoreOf reads member's score in the sorted set z at key.
func zscoreOf(v View, key []byte, z Value, member []byte) (float64, bool, error) {
	return zscoreAt(v, key, z, member, keyspace.ZSetMemberSub(member))
}

// zscoreAt is zscoreOf with member's sub-key given (msub).
func zscoreAt(v View, key []byte, z Value, member, msub []byte) (float64, bool, error) {
	row, ok, err := v.Sub(key, z.Version, msub)
	if err != nil || !ok {
		return 0, false, err
	}
	s, err := keyspace.DecodeScore(row)
	if err != nil {
		return 0, false, fmt.Errorf("commands: sorted set %q member %q: %w", key, member, err)
	}
	return s, true, nil
}

// zindex calls fn for the members of z in index order (score, then
// member), from index sub-key start (nil: the lowest), until fn returns
// false. The member slice is valid only during the call.
func zindex(v View, key []byte, z Value, start []byte, fn func(score float64, member []byte) bool) error {
	if start == nil {
		start = []byte{keyspace.ZSetIndexFamily}
	}
	return zscanIndex(v.SubScan, key, z, start, fn)
}

// zindexRev calls fn for the members of z in reverse index order, from
// below index sub-key end (nil: the highest), until fn returns false: a
// read from the high end that costs the rows it returns.
func zindexRev(v View, key []byte, z Value, end []byte, fn func(score float64, member []byte) bool) error {
	if end == nil {
		end = []byte{keyspace.ZSetIndexFamily + 1}
	}
	return zscanIndex(v.SubScanReverse, key, z, end, fn)
}

// zscanIndex runs scan (a View's SubScan or SubScanReverse) from bound
// over z's index rows, parsing each for fn, and stops at the first row
// outside the index family.
func zscanIndex(scan func(key []byte, version uint64, bound []byte, fn func(sub, val []byte) bool) error,
	key []byte, z Value, bound []byte, fn func(score float64, member []byte) bool) error {
	var derr error
	err := scan(key, z.Version, bound, func(sub, _ []byte) bool {
		if sub[0] != keyspace.ZSetIndexFamily {
			return false
		}
		s, m, err := keyspace.ParseZSetIndexSub(sub)
		if err != nil {
			derr = fmt.Errorf("commands: sorted set %q: %w", key, err)
			return false
		}
		return fn(s, m)
	})
	if derr != nil {
		return derr
	}
	return err
}

// zmembers calls fn for the members of z in member order, from member
// row start (nil: the first), until fn returns false: the member rows,
// for ZSCAN, ZRANDMEMBER and reading a whole set.
func zmembers(v View, key []byte, z Value, start []byte, fn func(member []byte, score float64) bool) error {
	if start == nil {
		start = []byte{keyspace.ZSetMemberFamily}
	}
	var derr error
	err := v.SubScan(key, z.Version, start, func(sub, val []byte) bool {
		if sub[0] != keyspace.ZSetMemberFamily {
			return false
		}
		s, err := keyspace.DecodeScore(val)
		if err != nil {
			derr = fmt.Errorf("commands: sorted set %q member %q: %w", key, sub[1:], err)
			return false
		}
		return fn(sub[1:], s)
	})
	if derr != nil {
		return derr
	}
	return err
}

// zput sets member's score in z (the state the txn left key in). old and
// had are its current score. It logs the member row and moves the index
// row; a member whose score does not change logs nothing.
func zput(t *txn, key []byte, z *Value, member []byte, score, old float64, had bool) {
	r := newZRows(member)
	r.put(t, key, z, score, old, had)
}

// zrows is the rows zput writes for a member: its member sub-key, then
// (put) its index sub-key and its member row (the score), carved from one
// allocation (they were three of their own, of a ZADD's nine), each
// capped at its length so that an append to one never writes over the
// next. ZADD reads the member's score with the member sub-key it writes.
type zrows struct {
	member []byte
	msub   []byte // ZSetMemberSub(member)
	rest   []byte // room for the index sub-key and the score row
}

func newZRows(member []byte) zrows {
	m := 1 + len(member)
	buf := make([]byte, 0, m+1+keyspace.ScoreLen+len(member)+keyspace.ScoreLen)
	msub := append(append(buf, keyspace.ZSetMemberFamily), member...)
	return zrows{member: member, msub: msub[:m:m], rest: buf[m:m]}
}

// put is zput with the member's rows in r. It is called at most once.
func (r *zrows) put(t *txn, key []byte, z *Value, score, old float64, had bool) {
	if had {
		if old == score {
			return
		}
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: z.Version, Sub: keyspace.ZSetIndexSub(old, r.member)})
	} else {
		z.Size++
	}
	n := 1 + keyspace.ScoreLen + len(r.member)
	index := append(keyspace.AppendScore(append(r.rest, keyspace.ZSetIndexFamily), score), r.member...)
	row := keyspace.AppendScore(r.rest[n:n], score)
	t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: z.Version, Sub: index[:n:n]})
	t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: z.Version, Sub: r.msub, Value: row[:keyspace.ScoreLen:keyspace.ScoreLen]})
}

// zremove deletes items (distinct members of z, with their scores) and
// logs z's new metadata row, or the drop of the key if it empties (one op
// instead of the row deletes, as Redis deletes an empty sorted set).
func zremove(t *txn, key []byte, z Value, items []zitem) {
	if len(items) == 0 {
		return
	}
	if uint64(len(items)) >= z.Size {
		t.record(keyspace.DeleteOp(key, z))
		return
	}
	for _, it := range items {
		var msub, isub []byte
		if it.subs != nil {
			n := len(it.subs) - 1 - len(it.member)
			msub, isub = it.subs[n:], it.subs[:n:n]
		} else {
			msub, isub = keyspace.ZSetMemberSub(it.member), keyspace.ZSetIndexSub(it.score, it.member)
		}
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: z.Version, Sub: msub})
		t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: z.Version, Sub: isub})
	}
	z.Size -= uint64(len(items))
	t.record(metaOp(key, z, z.ExpireAtMs))
}

// zstore replaces dst, whatever it holds, with a sorted set of items
// (distinct members), or deletes it when items is empty: the STORE forms.
func zstore(t *txn, dst []byte, items []zitem) error {
	old, ok, err := t.view().Get(dst)
	if err != nil {
		return err
	}
	if ok {
		t.del(dst, old)
	}
	if len(items) == 0 {
		return nil
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return err
	}
	z := Value{Type: keyspace.TypeZSet, Version: ver}
	for _, it := range items {
		zput(t, dst, &z, it.member, it.score, 0, false)
	}
	t.record(metaOp(dst, z, 0))
	return nil
}

// scoresReply is items as a reply: members, or member/score pairs.
func scoresReply(items []zitem, withScores bool) Reply {
	if !withScores {
		out := make(Array, len(items))
		for i, it := range items {
			out[i] = Bulk(it.member)
		}
		return out
	}
	out := make(Pairs, 0, 2*len(items))
	for _, it := range items {
		out = append(out, Bulk(it.member), Double(it.score))
	}
	return out
}

// ZADD and ZINCRBY.

func execZAdd(_ *Ctx, v View, args [][]byte) (Result, error) {
	var nx, xx, gt, lt, ch, incr bool
	i := 2
flags:
	for ; i < len(args); i++ {
		switch a := args[i]; {
		case eqFold(a, "nx"):
			nx = true
		case eqFold(a, "xx"):
			xx = true
		case eqFold(a, "gt"):
			gt = true
		case eqFold(a, "lt"):
			lt = true
		case eqFold(a, "ch"):
			ch = true
		case eqFold(a, "incr"):
			incr = true
		default:
			break flags
		}
	}
	pairs := args[i:]
	switch {
	case len(pairs) == 0 || len(pairs)%2 != 0:
		return Result{}, ErrSyntax
	case nx && xx:
		return Result{}, errZAddXXNX
	case (gt && nx) || (lt && nx) || (gt && lt):
		return Result{}, errZAddGTLTNX
	case incr && len(pairs) > 2:
		return Result{}, errZAddIncrPairs
	}
	return zadd(v, args[1], pairs, zaddFlags{nx: nx, xx: xx, gt: gt, lt: lt, ch: ch, incr: incr})
}

type zaddFlags struct{ nx, xx, gt, lt, ch, incr bool }

func zadd(v View, key []byte, pairs [][]byte, f zaddFlags) (Result, error) {
	// A few scores (redis-benchmark's ZADD gives one) on the stack.
	var few [4]float64
	scores := few[:0]
	if len(pairs)/2 > len(few) {
		scores = make([]float64, 0, len(pairs)/2)
	}
	scores = scores[:len(pairs)/2]
	for j := range scores {
		s, ok := parseScore(pairs[2*j])
		if !ok {
			return Result{}, ErrNotFloat
		}
		scores[j] = s
	}
	t := txn{v: v}
	z, existed, err := zsetGet(v, key)
	if err != nil {
		return Result{}, err
	}
	if !existed {
		if f.xx {
			if f.incr {
				return Result{Reply: Null}, nil
			}
			return Result{Reply: Int(0)}, nil
		}
		if z, _, err = collectionForWrite(&t, key, keyspace.TypeZSet); err != nil {
			return Result{}, err
		}
	}
	var added, updated, processed int
	var score float64
	for j, s := range scores {
		member := pairs[2*j+1]
		score = s
		rows := newZRows(member)
		old, had, err := zscoreAt(t.view(), key, z, member, rows.msub)
		if err != nil {
			return Result{}, err
		}
		if !had {
			if f.xx {
				continue
			}
			rows.put(&t, key, &z, score, 0, false)
			added++
			processed++
			continue
		}
		if f.nx {
			continue
		}
		if f.incr {
			score += old
			if math.IsNaN(score) {
				return Result{}, errScoreNaN
			}
		}
		if (f.lt && score >= old) || (f.gt && score <= old) {
			continue
		}
		if score != old {
			updated++
		}
		processed++
		rows.put(&t, key, &z, score, old, true)
	}
	if !existed || added > 0 {
		t.record(metaOp(key, z, z.ExpireAtMs))
	}
	if f.incr {
		if processed == 0 {
			return t.result(Null)
		}
		return t.result(Double(score))
	}
	if f.ch {
		return t.result(Int(added + updated))
	}
	return t.result(Int(added))
}

func execZIncrBy(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zadd(v, args[1], args[2:4], zaddFlags{incr: true})
}

// Single-member reads.

func execZScore(_ *Ctx, v View, args [][]byte) (Result, error) {
	z, ok, err := zsetGet(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	s, ok, err := zscoreOf(v, args[1], z, args[2])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	return Result{Reply: Double(s)}, nil
}

func execZMScore(_ *Ctx, v View, args [][]byte) (Result, error) {
	z, found, err := zsetGet(v, args[1])
	if err != nil {
		return Result{}, err
	}
	out := make(Array, len(args)-2)
	for i, m := range args[2:] {
		out[i] = Null
		if !found {
			continue
		}
		s, ok, err := zscoreOf(v, args[1], z, m)
		if err != nil {
			return Result{}, err
		}
		if ok {
			out[i] = Double(s)
		}
	}
	return Result{Reply: out}, nil
}

func execZCard(_ *Ctx, v View, args [][]byte) (Result, error) {
	z, _, err := zsetGet(v, args[1])
	return Result{Reply: Int(z.Size)}, err
}

func execZRem(_ *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	z, ok, err := zsetGet(v, key)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	var items []zitem
	seen := map[string]bool{}
	for _, m := range args[2:] {
		if seen[string(m)] {
			continue
		}
		seen[string(m)] = true
		s, had, err := zscoreOf(v, key, z, m)
		if err != nil {
			return Result{}, err
		}
		if had {
			items = append(items, zitem{member: m, score: s})
		}
	}
	t := txn{v: v}
	zremove(&t, key, z, items)
	return t.result(Int(len(items)))
}

// zrankOf is the rank of member, whose score is s, in z: from the lowest
// score, or from the highest (rev), reading the index rows before it from
// that end: O(rank).
func zrankOf(v View, key []byte, z Value, member []byte, s float64, rev bool) (int64, bool, error) {
	var rank int64
	found := false
	each := func(s2 float64, m []byte) bool {
		if s2 == s && bytes.Equal(m, member) {
			found = true
			return false
		}
		rank++
		return true
	}
	if rev {
		err := zindexRev(v, key, z, nil, each)
		return rank, found, err
	}
	err := zindex(v, key, z, nil, each)
	return rank, found, err
}

func execZRank(_ *Ctx, v View, args [][]byte) (Result, error) { return zrank(v, args, false) }

func execZRevRank(_ *Ctx, v View, args [][]byte) (Result, error) { return zrank(v, args, true) }

// zrank is Z[REV]RANK key member [WITHSCORE] (WITHSCORE is Redis 7.2's:
// the rank and the score, or a null array).
func zrank(v View, args [][]byte, rev bool) (Result, error) {
	if len(args) > 4 {
		return Result{}, &ArityError{Name: string(bytes.ToLower(args[0]))}
	}
	withScore := len(args) == 4
	if withScore && !eqFold(args[3], "withscore") {
		return Result{}, ErrSyntax
	}
	var null Reply = Null
	if withScore {
		null = Array(nil)
	}
	z, ok, err := zsetGet(v, args[1])
	if err != nil || !ok {
		return Result{Reply: null}, err
	}
	s, ok, err := zscoreOf(v, args[1], z, args[2])
	if err != nil || !ok {
		return Result{Reply: null}, err
	}
	r, _, err := zrankOf(v, args[1], z, args[2], s, rev)
	if err != nil {
		return Result{}, err
	}
	if withScore {
		return Result{Reply: Array{Int(r), Double(s)}}, nil
	}
	return Result{Reply: Int(r)}, nil
}

// Ranges.

// scoreRange is a range of scores, Redis's zrangespec.
type scoreRange struct {
	min, max     float64
	minEx, maxEx bool
}

// parseScoreBound parses a score range bound as Redis's zslParseRange:
// "(" for exclusive, strtod's syntax otherwise (leading space and
// overflow to an infinity allowed, NaN not).
func parseScoreBound(b []byte) (f float64, ex, ok bool) {
	if len(b) > 0 && b[0] == '(' {
		ex = true
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, ex, true // strtod of "" consumes nothing and leaves the end: 0
	}
	b = bytes.TrimLeft(b, " \t\n\v\f\r")
	f, err := strconv.ParseFloat(string(b), 64)
	if (err != nil && !math.IsInf(f, 0)) || math.IsNaN(f) {
		return 0, false, false
	}
	return f, ex, true
}

func parseScoreRange(min, max []byte) (scoreRange, error) {
	var r scoreRange
	var ok1, ok2 bool
	r.min, r.minEx, ok1 = parseScoreBound(min)
	r.max, r.maxEx, ok2 = parseScoreBound(max)
	if !ok1 || !ok2 {
		return r, errMinMaxFloat
	}
	return r, nil
}

func (r scoreRange) empty() bool {
	return r.min > r.max || (r.min == r.max && (r.minEx || r.maxEx))
}

func (r scoreRange) lteMax(s float64) bool { return s < r.max || (!r.maxEx && s == r.max) }

func (r scoreRange) gteMin(s float64) bool { return s > r.min || (!r.minEx && s == r.min) }

// end is the index sub-key a reverse scan of r starts below.
func (r scoreRange) end() []byte {
	if r.maxEx {
		return keyspace.ZSetIndexFrom(r.max)
	}
	return keyspace.ZSetIndexAfter(r.max)
}

// start is the index sub-key a scan of r starts at.
func (r scoreRange) start() []byte {
	if r.minEx {
		return keyspace.ZSetIndexAfter(r.min)
	}
	return keyspace.ZSetIndexFrom(r.min)
}

// lexBound is a BYLEX bound: a member, or "-" (inf -1) or "+" (inf 1).
type lexBound struct {
	val []byte
	inf int
	ex  bool
}

type lexRange struct{ min, max lexBound }

func parseLexBound(b []byte) (lexBound, bool) {
	if len(b) == 0 {
		return lexBound{}, false
	}
	switch b[0] {
	case '+', '-':
		if len(b) != 1 {
			return lexBound{}, false
		}
		if b[0] == '+' {
			return lexBound{inf: 1, ex: true}, true
		}
		return lexBound{inf: -1, ex: true}, true
	case '(':
		return lexBound{val: b[1:], ex: true}, true
	case '[':
		return lexBound{val: b[1:]}, true
	}
	return lexBound{}, false
}

func parseLexRange(min, max []byte) (lexRange, error) {
	lo, ok1 := parseLexBound(min)
	hi, ok2 := parseLexBound(max)
	if !ok1 || !ok2 {
		return lexRange{}, errMinMaxLex
	}
	return lexRange{lo, hi}, nil
}

// cmpLex compares a bound with a member or another bound ("-" below
// everything, "+" above), as Redis's sdscmplex.
func cmpLex(a lexBound, b lexBound) int {
	if a.inf != 0 || b.inf != 0 {
		return a.inf - b.inf
	}
	return bytes.Compare(a.val, b.val)
}

func (r lexRange) empty() bool {
	c := cmpLex(r.min, r.max)
	return c > 0 || (c == 0 && (r.min.ex || r.max.ex))
}

func (r lexRange) gteMin(m []byte) bool {
	c := cmpLex(lexBound{val: m}, r.min)
	return c > 0 || (c == 0 && !r.min.ex)
}

func (r lexRange) lteMax(m []byte) bool {
	c := cmpLex(lexBound{val: m}, r.max)
	return c < 0 || (c == 0 && !r.max.ex)
}

// zspec is a range of a sorted set: ranks [lo, hi] (forward, already
// clamped), a score range or a lex range.
type zspec struct {
	kind   int
	lo, hi int64
	score  scoreRange
	lex    lexRange
	// budget, if not nil, counts each member zcollect keeps (plus
	// scoreCost with scores), and zcollect stops at its bound: the
	// reply's max-reply-bytes.
	budget    *budget
	scoreCost int
}

// keep counts a member zcollect keeps against sp's budget.
func (sp *zspec) keep(m []byte) bool {
	return sp.budget == nil || (sp.budget.add(len(m)) && sp.budget.add(sp.scoreCost))
}

// doubleCost is what a score counts in a reply (%.17g is at most 24
// bytes).
const doubleCost = 24

const (
	zByRank = iota
	zByScore
	zByLex
)

// zeach calls fn for the members of sp in index order, or in reverse
// (rev), until fn returns false. It seeks to the range's start (its end,
// in reverse) in the index, except for ranks, which it counts from the
// end it starts at.
func zeach(v View, key []byte, z Value, sp *zspec, rev bool, fn func(score float64, member []byte) bool) error {
	switch sp.kind {
	case zByRank:
		var i int64
		if rev {
			// The i-th row from the top has rank n-1-i.
			n := int64(z.Size)
			return zindexRev(v, key, z, nil, func(s float64, m []byte) bool {
				r := n - 1 - i
				i++
				if r < sp.lo {
					return false
				}
				return r > sp.hi || fn(s, m)
			})
		}
		return zindex(v, key, z, nil, func(s float64, m []byte) bool {
			if i > sp.hi {
				return false
			}
			i++
			if i-1 < sp.lo {
				return true
			}
			return fn(s, m)
		})
	case zByScore:
		if sp.score.empty() {
			return nil
		}
		if rev {
			return zindexRev(v, key, z, sp.score.end(), func(s float64, m []byte) bool {
				return sp.score.gteMin(s) && fn(s, m)
			})
		}
		return zindex(v, key, z, sp.score.start(), func(s float64, m []byte) bool {
			return sp.score.lteMax(s) && fn(s, m)
		})
	}
	if sp.lex.empty() {
		return nil
	}
	if rev {
		return zeachLexRev(v, key, z, sp, fn)
	}
	// BYLEX is meant for members of one score (Redis leaves other sets
	// undefined): seek to the minimum within the lowest score, then read
	// while members are within the maximum, as Redis's skiplist walk does.
	var start []byte
	if sp.lex.min.inf == 0 {
		var low float64
		found := false
		if err := zindex(v, key, z, nil, func(s float64, _ []byte) bool {
			low, found = s, true
			return false
		}); err != nil || !found {
			return err
		}
		start = keyspace.ZSetIndexSub(low, sp.lex.min.val)
	}
	started := false
	return zindex(v, key, z, start, func(s float64, m []byte) bool {
		if !started {
			if !sp.lex.gteMin(m) {
				return true
			}
			started = true
		}
		return sp.lex.lteMax(m) && fn(s, m)
	})
}

// zeachLexRev is zeach of a lex range in reverse: seek to the maximum
// within the highest score, then read down while members are within the
// minimum.
func zeachLexRev(v View, key []byte, z Value, sp *zspec, fn func(score float64, member []byte) bool) error {
	var end []byte
	if sp.lex.max.inf == 0 {
		var high float64
		found := false
		if err := zindexRev(v, key, z, nil, func(s float64, _ []byte) bool {
			high, found = s, true
			return false
		}); err != nil || !found {
			return err
		}
		end = keyspace.ZSetIndexSub(high, sp.lex.max.val)
		if !sp.lex.max.ex {
			end = append(end, 0) // the maximum itself is in
		}
	}
	started := false
	return zindexRev(v, key, z, end, func(s float64, m []byte) bool {
		if !started {
			if !sp.lex.lteMax(m) {
				return true
			}
			started = true
		}
		return sp.lex.gteMin(m) && fn(s, m)
	})
}

// zcollect returns the members of sp in reply order, forward or reversed
// (rev), skipping offset of them and returning at most limit (all when
// limit < 0), reading the index from the end the reply starts at. A rank
// range is read from the end nearer to it, so that the highest ranks
// (ZRANGE key -10 -1) cost what they return, as the lowest do.
func zcollect(v View, key []byte, z Value, sp *zspec, rev bool, offset, limit int64) ([]zitem, error) {
	if offset < 0 || limit == 0 {
		return nil, nil
	}
	read := rev
	if sp.kind == zByRank && offset == 0 && limit < 0 {
		read = int64(z.Size)-1-sp.hi < sp.lo
	}
	var out []zitem
	err := zeach(v, key, z, sp, read, func(s float64, m []byte) bool {
		if offset > 0 {
			offset--
			return true
		}
		if !sp.keep(m) {
			return false
		}
		out = append(out, zitem{member: clone(m), score: s})
		return limit < 0 || int64(len(out)) < limit
	})
	if err != nil {
		return nil, err
	}
	if read != rev {
		slices.Reverse(out)
	}
	return out, nil
}

// rankSpan clamps ranks start and end of a set of size n as Redis does;
// ok is false for an empty range.
func rankSpan(start, end, n int64) (lo, hi int64, ok bool) {
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	if start < 0 {
		start = 0
	}
	if start > end || start >= n {
		return 0, 0, false
	}
	if end >= n {
		end = n - 1
	}
	return start, end, true
}

// zrangeReq is a parsed ZRANGE family command.
type zrangeReq struct {
	budget        *budget // the reply's, nil for ZRANGESTORE
	src, dst      []byte  // dst for ZRANGESTORE
	kind          int
	rev           bool
	withScores    bool
	offset, limit int64
	start, end    int64 // ranks
	score         scoreRange
	lex           lexRange
}

// parseZRange parses the ZRANGE family as Redis's zrangeGenericCommand:
// args[first] is the source key, followed by min, max and options. kind
// and rev are preset (>= 0, true) by the legacy commands, which then
// refuse BYSCORE, BYLEX and REV.
func parseZRange(args [][]byte, first int, store bool, kind int, rev bool) (zrangeReq, error) {
	r := zrangeReq{src: args[first], kind: kind, rev: rev, limit: -1}
	if store {
		r.dst = args[1]
	}
	// A legacy command fixes both the kind and the direction.
	kindSet, revSet := kind >= 0, kind >= 0
	limitSet := false
	for j := first + 3; j < len(args); j++ {
		left := len(args) - j - 1
		switch a := args[j]; {
		case !store && eqFold(a, "withscores"):
			r.withScores = true
		case eqFold(a, "limit") && left >= 2:
			var ok1, ok2 bool
			r.offset, ok1 = parseInt(args[j+1])
			r.limit, ok2 = parseInt(args[j+2])
			if !ok1 || !ok2 {
				return r, ErrNotInteger
			}
			limitSet = true
			j += 2
		case !revSet && eqFold(a, "rev"):
			r.rev, revSet = true, true
		case !kindSet && eqFold(a, "bylex"):
			r.kind, kindSet = zByLex, true
		case !kindSet && eqFold(a, "byscore"):
			r.kind, kindSet = zByScore, true
		default:
			return r, ErrSyntax
		}
	}
	if !kindSet {
		r.kind = zByRank
	}
	if limitSet && r.kind == zByRank {
		return r, errLimitRank
	}
	if r.withScores && r.kind == zByLex {
		return r, errLexScores
	}
	min, max := args[first+1], args[first+2]
	if r.rev && r.kind != zByRank {
		min, max = max, min
	}
	var err error
	switch r.kind {
	case zByRank:
		var ok1, ok2 bool
		r.start, ok1 = parseInt(min)
		r.end, ok2 = parseInt(max)
		if !ok1 || !ok2 {
			return r, ErrNotInteger
		}
	case zByScore:
		r.score, err = parseScoreRange(min, max)
	case zByLex:
		r.lex, err = parseLexRange(min, max)
	}
	return r, err
}

// items runs the request against z.
func (r *zrangeReq) items(v View, z Value) ([]zitem, error) {
	sp := zspec{kind: r.kind, score: r.score, lex: r.lex, budget: r.budget}
	if r.withScores {
		sp.scoreCost = doubleCost
	}
	if r.kind != zByRank {
		return zcollect(v, r.src, z, &sp, r.rev, r.offset, r.limit)
	}
	n := int64(z.Size)
	lo, hi, ok := rankSpan(r.start, r.end, n)
	if !ok {
		return nil, nil
	}
	if r.rev {
		lo, hi = n-1-hi, n-1-lo
	}
	sp.lo, sp.hi = lo, hi
	return zcollect(v, r.src, z, &sp, r.rev, 0, -1)
}

func zrangeCmd(kind int, rev bool) func(*Ctx, View, [][]byte) (Result, error) {
	return func(ctx *Ctx, v View, args [][]byte) (Result, error) {
		r, err := parseZRange(args, 1, false, kind, rev)
		if err != nil {
			return Result{}, err
		}
		z, ok, err := zsetGet(v, r.src)
		if err != nil || !ok {
			return Result{Reply: Array{}}, err
		}
		b := newBudget(ctx)
		r.budget = &b
		items, err := r.items(v, z)
		if err != nil {
			return Result{}, err
		}
		return b.result(scoresReply(items, r.withScores), nil)
	}
}

func execZRangeStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	r, err := parseZRange(args, 2, true, -1, false)
	if err != nil {
		return Result{}, err
	}
	z, ok, err := zsetGet(v, r.src)
	if err != nil {
		return Result{}, err
	}
	var items []zitem
	if ok {
		if items, err = r.items(v, z); err != nil {
			return Result{}, err
		}
	}
	t := txn{v: v}
	if err := zstore(&t, r.dst, items); err != nil {
		return Result{}, err
	}
	return t.result(Int(len(items)))
}

// zcount counts the members of sp, reading them.
func zcount(v View, args [][]byte, sp zspec) (Result, error) {
	z, ok, err := zsetGet(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	var n int64
	err = zeach(v, args[1], z, &sp, false, func(float64, []byte) bool { n++; return true })
	return Result{Reply: Int(n)}, err
}

func execZCount(_ *Ctx, v View, args [][]byte) (Result, error) {
	r, err := parseScoreRange(args[2], args[3])
	if err != nil {
		return Result{}, err
	}
	return zcount(v, args, zspec{kind: zByScore, score: r})
}

func execZLexCount(_ *Ctx, v View, args [][]byte) (Result, error) {
	r, err := parseLexRange(args[2], args[3])
	if err != nil {
		return Result{}, err
	}
	return zcount(v, args, zspec{kind: zByLex, lex: r})
}

// zremRange removes the members of a range.
func zremRange(v View, args [][]byte, kind int) (Result, error) {
	sp := zspec{kind: kind}
	var err error
	var start, end int64
	switch kind {
	case zByScore:
		sp.score, err = parseScoreRange(args[2], args[3])
	case zByLex:
		sp.lex, err = parseLexRange(args[2], args[3])
	default:
		var ok1, ok2 bool
		start, ok1 = parseInt(args[2])
		end, ok2 = parseInt(args[3])
		if !ok1 || !ok2 {
			err = ErrNotInteger
		}
	}
	if err != nil {
		return Result{}, err
	}
	key := args[1]
	z, ok, err := zsetGet(v, key)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	if kind == zByRank {
		lo, hi, ok := rankSpan(start, end, int64(z.Size))
		if !ok {
			return Result{Reply: Int(0)}, nil
		}
		sp.lo, sp.hi = lo, hi
	}
	items, err := zcollect(v, key, z, &sp, false, 0, -1)
	if err != nil {
		return Result{}, err
	}
	t := txn{v: v}
	zremove(&t, key, z, items)
	return t.result(Int(len(items)))
}

func execZRemRangeByScore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zremRange(v, args, zByScore)
}

func execZRemRangeByRank(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zremRange(v, args, zByRank)
}

func execZRemRangeByLex(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zremRange(v, args, zByLex)
}

// Pops.

// zpop removes and returns the count lowest (or highest, max) members of
// the sorted set z at key. It reads the index from that end and stops at
// the last member it takes: a pop of n reads n rows (a rank range's
// reader, zcollect, reads one more to find the range's end, and its
// layers of callbacks cost ZPOPMIN a third of its allocations).
func zpop(t *txn, key []byte, z Value, max bool, count int64) ([]zitem, error) {
	n := int64(z.Size)
	if count < n {
		n = count
	}
	if n <= 0 {
		return nil, nil
	}
	// One allocation for the scan's state and a pop of one's item, where
	// the closures over them (zindex's and zscanIndex's) were five: each
	// escapes through View's scan.
	p := &zpopScan{key: key, n: int(n)}
	p.items = p.one[:0]
	if n > 1 {
		p.items = make([]zitem, 0, n)
	}
	scan, bound := t.view().SubScan, []byte{keyspace.ZSetIndexFamily}
	if max {
		scan, bound = t.view().SubScanReverse, []byte{keyspace.ZSetIndexFamily + 1}
	}
	if err := scan(key, z.Version, bound, p.row); err != nil {
		return nil, err
	}
	if p.err != nil {
		return nil, p.err
	}
	zremove(t, key, z, p.items)
	return p.items, nil
}

// zpopScan takes a pop's members from the index rows a scan passes it
// (row), up to n, as zscanIndex's callback and zpop's would.
type zpopScan struct {
	key   []byte
	n     int
	items []zitem
	one   [1]zitem
	err   error
}

func (p *zpopScan) row(sub, _ []byte) bool {
	if sub[0] != keyspace.ZSetIndexFamily {
		return false
	}
	s, m, err := keyspace.ParseZSetIndexSub(sub)
	if err != nil {
		p.err = fmt.Errorf("commands: sorted set %q: %w", p.key, err)
		return false
	}
	p.items = append(p.items, zpopItem(s, m))
	return len(p.items) < p.n
}

func execZPopMin(_ *Ctx, v View, args [][]byte) (Result, error) { return zpopCmd(v, args, false) }

func execZPopMax(_ *Ctx, v View, args [][]byte) (Result, error) { return zpopCmd(v, args, true) }

func zpopCmd(v View, args [][]byte, max bool) (Result, error) {
	if len(args) > 3 {
		return Result{}, ErrSyntax
	}
	count := int64(1)
	if len(args) == 3 {
		var ok bool
		if count, ok = parseInt(args[2]); !ok {
			return Result{}, ErrNotInteger
		}
		if count < 0 {
			return Result{}, errPopCount
		}
	}
	z, ok, err := zsetGet(v, args[1])
	if err != nil || !ok || count == 0 {
		return Result{Reply: Array{}}, err
	}
	t := txn{v: v}
	items, err := zpop(&t, args[1], z, max, count)
	if err != nil {
		return Result{}, err
	}
	if len(args) == 3 {
		return t.result(scoresReply(items, true))
	}
	return t.result(ScorePair{Member: items[0].member, Score: items[0].score})
}

// execZMPop is ZMPOP numkeys key [key ...] MIN|MAX [COUNT count].
func execZMPop(_ *Ctx, v View, args [][]byte) (Result, error) { return zmpop(v, args, false) }

// parseZMPop parses ZMPOP's arguments after its name (BZMPOP's after its
// timeout).
func parseZMPop(args [][]byte) (keys [][]byte, max bool, count int64, err error) {
	numKeys, ok := parseInt(args[1])
	if !ok || numKeys < 1 {
		return nil, false, 0, errNumKeysZero
	}
	where := 2 + numKeys
	if numKeys > int64(len(args)) || where >= int64(len(args)) {
		return nil, false, 0, ErrSyntax
	}
	switch a := args[where]; {
	case eqFold(a, "min"):
	case eqFold(a, "max"):
		max = true
	default:
		return nil, false, 0, ErrSyntax
	}
	count = -1
	for j := int(where) + 1; j < len(args); j++ {
		if count != -1 || !eqFold(args[j], "count") || j+1 >= len(args) {
			return nil, false, 0, ErrSyntax
		}
		if count, ok = parseInt(args[j+1]); !ok || count < 1 {
			return nil, false, 0, errCountZero
		}
		j++
	}
	if count == -1 {
		count = 1
	}
	return args[2:where], max, count, nil
}

// zmpop is ZMPOP, and BZMPOP's pop (skipWrong: see sourceList).
func zmpop(v View, args [][]byte, skipWrong bool) (Result, error) {
	keys, max, count, err := parseZMPop(args)
	if err != nil {
		return Result{}, err
	}
	for _, key := range keys {
		z, ok, err := zsetGet(v, key)
		if skipWrong && errors.Is(err, errWrongType) {
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if !ok {
			continue
		}
		t := txn{v: v}
		items, err := zpop(&t, key, z, max, count)
		if err != nil {
			return Result{}, err
		}
		pairs := make(Array, len(items))
		for i, it := range items {
			pairs[i] = Array{Bulk(it.member), Double(it.score)}
		}
		return t.result(Array{Bulk(key), pairs})
	}
	return Result{Reply: Array(nil)}, nil
}

// maxRandRepeat bounds a negative ZRANDMEMBER count (picks with
// repetition, a reply that does not depend on the set's size): Redis would
// build any size of reply; tandem refuses one past 16M members as out of
// range rather than run out of memory building it.
const maxRandRepeat = 1 << 24

// execZRandMember is ZRANDMEMBER key [count [WITHSCORES]]. It reads the
// member rows once and holds no more members than it replies.
func execZRandMember(_ *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	if len(args) == 2 {
		z, ok, err := zsetGet(v, key)
		if err != nil || !ok {
			return Result{Reply: Null}, err
		}
		pick := rand.Uint64N(z.Size)
		var out Reply = Null
		var i uint64
		err = zmembers(v, key, z, nil, func(m []byte, _ float64) bool {
			if i == pick {
				out = Bulk(clone(m))
				return false
			}
			i++
			return true
		})
		return Result{Reply: out}, err
	}
	if len(args) > 4 || (len(args) == 4 && !eqFold(args[3], "withscores")) {
		return Result{}, ErrSyntax
	}
	withScores := len(args) == 4
	n, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if n == math.MinInt64 || (withScores && n < -math.MaxInt64/2) || n < -maxRandRepeat {
		return Result{}, errCountRange
	}
	z, found, err := zsetGet(v, key)
	if err != nil || !found || n == 0 {
		return Result{Reply: Array{}}, err
	}
	var items []zitem
	if n > 0 {
		// Without repetition: a reservoir of n members, then shuffled.
		var seen int64
		err = zmembers(v, key, z, nil, func(m []byte, s float64) bool {
			seen++
			if int64(len(items)) < n {
				items = append(items, zitem{member: clone(m), score: s})
			} else if j := rand.Int64N(seen); j < n {
				items[j] = zitem{member: clone(m), score: s}
			}
			return true
		})
		rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	} else {
		// With repetition: -n positions, filled in one pass.
		type slot struct{ pos, out int }
		slots := make([]slot, -n)
		for i := range slots {
			slots[i] = slot{int(rand.Uint64N(z.Size)), i}
		}
		slices.SortFunc(slots, func(a, b slot) int { return a.pos - b.pos })
		items = make([]zitem, -n)
		pos, next := 0, 0
		err = zmembers(v, key, z, nil, func(m []byte, s float64) bool {
			var it *zitem
			for next < len(slots) && slots[next].pos == pos {
				if it == nil {
					it = &zitem{member: clone(m), score: s}
				}
				items[slots[next].out] = *it
				next++
			}
			pos++
			return next < len(slots)
		})
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: scoresReply(items, withScores)}, nil
}

// execZScan is ZSCAN key cursor [MATCH pattern] [COUNT count]: a cursor
// names the next member row (Ctx.Cursors), so a page costs COUNT rows.
func execZScan(ctx *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	o, err := parseScan(args[2], args[3:], false)
	if err != nil {
		return Result{}, err
	}
	z, found, err := zsetGet(v, key)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Reply: Array{Bulk("0"), Array{}}}, nil
	}
	var start []byte
	if o.cursor != 0 {
		if ctx.Cursors == nil {
			return Result{}, ErrInvalidCursor
		}
		var ok bool
		if start, ok = ctx.Cursors.Get(o.cursor); !ok {
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
	err = zmembers(v, key, z, start, func(m []byte, s float64) bool {
		if visited == count {
			next = keyspace.ZSetMemberSub(m)
			return false
		}
		visited++
		if o.pattern == nil || Match(o.pattern, m) {
			if !b.page(len(m)+doubleCost, 2, len(items) > 0, ctx.Cursors != nil) {
				next = keyspace.ZSetMemberSub(m)
				return false
			}
			items = append(items, Bulk(clone(m)), Double(s))
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

// Set algebra: ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD.

// zsrc is an input of the set algebra: a sorted set or a set (whose
// members score 1, as in Redis).
type zsrc struct {
	key    []byte
	val    Value
	ok     bool
	weight float64
}

// each calls fn for every member of s with its score.
func (s *zsrc) each(v View, fn func(m []byte, score float64) bool) error {
	if !s.ok {
		return nil
	}
	if s.val.Type == keyspace.TypeZSet {
		return zmembers(v, s.key, s.val, nil, fn)
	}
	// A set: one sub-key row per member, the member itself (the sets'
	// layout, package keyspace).
	return v.SubScan(s.key, s.val.Version, nil, func(m, _ []byte) bool { return fn(m, 1) })
}

// score looks m up in s.
func (s *zsrc) score(v View, m []byte) (float64, bool, error) {
	if !s.ok {
		return 0, false, nil
	}
	if s.val.Type == keyspace.TypeZSet {
		return zscoreOf(v, s.key, s.val, m)
	}
	_, ok, err := v.Sub(s.key, s.val.Version, m)
	return 1, ok, err
}

const (
	zopUnion = iota
	zopInter
	zopDiff
)

const (
	zaggSum = iota
	zaggMin
	zaggMax
)

func aggregate(agg int, acc, x float64) float64 {
	switch agg {
	case zaggMin:
		return math.Min(acc, x)
	case zaggMax:
		return math.Max(acc, x)
	}
	if s := acc + x; !math.IsNaN(s) {
		return s
	}
	return 0 // inf + -inf: Redis scores it 0
}

// weighted is score*weight, 0 for NaN (0 * inf), as Redis.
func weighted(score, weight float64) float64 {
	if x := score * weight; !math.IsNaN(x) {
		return x
	}
	return 0
}

// zalgebra runs ZUNION/ZINTER/ZDIFF[STORE] and ZINTERCARD. numIdx is the
// position of numkeys; dst is set for the STORE forms.
func zalgebra(v View, args [][]byte, name string, op int, numIdx int, store, card bool) (Result, error) {
	n, ok := parseInt(args[numIdx])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if n < 1 {
		return Result{}, newError("at least 1 input key is needed for '" + name + "' command")
	}
	if n > int64(len(args)-numIdx-1) {
		return Result{}, ErrSyntax
	}
	srcs := make([]zsrc, n)
	j := numIdx + 1
	for i := range srcs {
		key := args[j]
		j++
		val, ok, err := v.Get(key)
		if err != nil {
			return Result{}, err
		}
		if ok && val.Type != keyspace.TypeZSet && val.Type != keyspace.TypeSet {
			return Result{}, errWrongType
		}
		srcs[i] = zsrc{key: key, val: val, ok: ok, weight: 1}
	}
	agg := zaggSum
	withScores := false
	limit := int64(0)
	for j < len(args) {
		left := len(args) - j
		switch a := args[j]; {
		case op != zopDiff && !card && left >= len(srcs)+1 && eqFold(a, "weights"):
			j++
			for i := range srcs {
				w, ok := parseScore(args[j])
				if !ok {
					return Result{}, errWeightFloat
				}
				srcs[i].weight = w
				j++
			}
		case op != zopDiff && !card && left >= 2 && eqFold(a, "aggregate"):
			switch b := args[j+1]; {
			case eqFold(b, "sum"):
				agg = zaggSum
			case eqFold(b, "min"):
				agg = zaggMin
			case eqFold(b, "max"):
				agg = zaggMax
			default:
				return Result{}, ErrSyntax
			}
			j += 2
		case !store && !card && eqFold(a, "withscores"):
			withScores = true
			j++
		case card && left >= 2 && eqFold(a, "limit"):
			l, ok := parseInt(args[j+1])
			if !ok || l < 0 {
				return Result{}, errLimitNegative
			}
			limit = l
			j += 2
		default:
			return Result{}, ErrSyntax
		}
	}

	var items []zitem
	var err error
	switch op {
	case zopUnion:
		items, err = zunion(v, srcs, agg)
	case zopInter:
		if card {
			c, err := zintercard(v, srcs, limit)
			return Result{Reply: Int(c)}, err
		}
		items, err = zinter(v, srcs, agg)
	default:
		items, err = zdiff(v, srcs)
	}
	if err != nil {
		return Result{}, err
	}
	slices.SortFunc(items, func(a, b zitem) int {
		if a.score != b.score {
			if a.score < b.score {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.member, b.member)
	})
	if store {
		t := txn{v: v}
		if err := zstore(&t, args[1], items); err != nil {
			return Result{}, err
		}
		return t.result(Int(len(items)))
	}
	return Result{Reply: scoresReply(items, withScores)}, nil
}

func zunion(v View, srcs []zsrc, agg int) ([]zitem, error) {
	idx := map[string]int{}
	var items []zitem
	for i := range srcs {
		s := &srcs[i]
		err := s.each(v, func(m []byte, score float64) bool {
			x := weighted(score, s.weight)
			if k, ok := idx[string(m)]; ok {
				items[k].score = aggregate(agg, items[k].score, x)
			} else {
				idx[string(m)] = len(items)
				items = append(items, zitem{member: clone(m), score: x})
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return items, nil
}

// bySize orders sources smallest first, as Redis does before an
// intersection (it then iterates the smallest).
func bySize(srcs []zsrc) []zsrc {
	out := slices.Clone(srcs)
	slices.SortStableFunc(out, func(a, b zsrc) int {
		switch {
		case a.val.Size < b.val.Size:
			return -1
		case a.val.Size > b.val.Size:
			return 1
		}
		return 0
	})
	return out
}

func zinter(v View, srcs []zsrc, agg int) ([]zitem, error) {
	for _, s := range srcs {
		if !s.ok {
			return nil, nil
		}
	}
	srcs = bySize(srcs)
	var items []zitem
	var ierr error
	err := srcs[0].each(v, func(m []byte, score float64) bool {
		acc := weighted(score, srcs[0].weight)
		for i := 1; i < len(srcs); i++ {
			s, ok, err := srcs[i].score(v, m)
			if err != nil {
				ierr = err
				return false
			}
			if !ok {
				return true
			}
			acc = aggregate(agg, acc, weighted(s, srcs[i].weight))
		}
		items = append(items, zitem{member: clone(m), score: acc})
		return true
	})
	if ierr != nil {
		return nil, ierr
	}
	return items, err
}

func zintercard(v View, srcs []zsrc, limit int64) (int64, error) {
	for _, s := range srcs {
		if !s.ok {
			return 0, nil
		}
	}
	srcs = bySize(srcs)
	var n int64
	var ierr error
	err := srcs[0].each(v, func(m []byte, _ float64) bool {
		for i := 1; i < len(srcs); i++ {
			_, ok, err := srcs[i].score(v, m)
			if err != nil {
				ierr = err
				return false
			}
			if !ok {
				return true
			}
		}
		n++
		return limit == 0 || n < limit
	})
	if ierr != nil {
		return 0, ierr
	}
	return n, err
}

func zdiff(v View, srcs []zsrc) ([]zitem, error) {
	var items []zitem
	var ierr error
	err := srcs[0].each(v, func(m []byte, score float64) bool {
		for i := 1; i < len(srcs); i++ {
			_, ok, err := srcs[i].score(v, m)
			if err != nil {
				ierr = err
				return false
			}
			if ok {
				return true
			}
		}
		items = append(items, zitem{member: clone(m), score: score})
		return true
	})
	if ierr != nil {
		return nil, ierr
	}
	return items, err
}

func execZUnion(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zunion", zopUnion, 1, false, false)
}

func execZInter(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zinter", zopInter, 1, false, false)
}

func execZDiff(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zdiff", zopDiff, 1, false, false)
}

func execZUnionStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zunionstore", zopUnion, 2, true, false)
}

func execZInterStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zinterstore", zopInter, 2, true, false)
}

func execZDiffStore(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zdiffstore", zopDiff, 2, true, false)
}

func execZInterCard(_ *Ctx, v View, args [][]byte) (Result, error) {
	return zalgebra(v, args, "zintercard", zopInter, 1, false, true)
}
