package commands

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Hash commands. A hash is a metadata row (version, size, expiry) and one
// sub-key row per field (package keyspace): a write logs the fields it
// changes and, when the size changes, the metadata row; HGET reads one row.

var (
	errHashNotInt   = newError("hash value is not an integer")
	errHashNotFloat = newError("hash value is not a float")
	errNaNOrInf     = newError("value is NaN or Infinity")
	errCountRange   = newError("value is out of range")
	errNoVersion    = errors.New("commands: a write created a collection on a view with no entry to version it")
)

// metaOp is the metadata row of collection key after a write.
func metaOp(key []byte, h Value, expireAt int64) logrec.Op {
	return logrec.Op{Kind: logrec.OpMeta, Key: key, Type: uint8(h.Type), ExpireAtMs: expireAt, Version: h.Version, Size: h.Size}
}

// hsetFields sets field/value pairs and returns how many were new.
func hsetFields(t *txn, key []byte, pairs [][]byte) (int, error) {
	h, existed, err := collectionForWrite(t, key, keyspace.TypeHash)
	if err != nil {
		return 0, err
	}
	added := 0
	for i := 0; i+1 < len(pairs); i += 2 {
		_, had, err := t.view().Sub(key, h.Version, pairs[i])
		if err != nil {
			return 0, err
		}
		if !had {
			added++
		}
		t.record(logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: h.Version, Sub: pairs[i], Value: pairs[i+1]})
	}
	if !existed || added > 0 {
		h.Size += uint64(added)
		t.record(metaOp(key, h, h.ExpireAtMs))
	}
	return added, nil
}

func execHSet(_ *Ctx, v View, args [][]byte) (Result, error) {
	if len(args)%2 != 0 {
		return Result{}, &ArityError{Name: "hset"}
	}
	t := txn{v: v}
	n, err := hsetFields(&t, args[1], args[2:])
	if err != nil {
		return Result{}, err
	}
	return t.result(Int(n))
}

func execHMSet(_ *Ctx, v View, args [][]byte) (Result, error) {
	if len(args)%2 != 0 {
		return Result{}, &ArityError{Name: "hmset"}
	}
	t := txn{v: v}
	if _, err := hsetFields(&t, args[1], args[2:]); err != nil {
		return Result{}, err
	}
	return t.result(OK)
}

func execHSetNX(_ *Ctx, v View, args [][]byte) (Result, error) {
	key, field := args[1], args[2]
	h, ok, err := getTyped(v, key, keyspace.TypeHash)
	if err != nil {
		return Result{}, err
	}
	if ok {
		if _, had, err := v.Sub(key, h.Version, field); err != nil || had {
			return Result{Reply: Int(0)}, err
		}
	}
	t := txn{v: v}
	if _, err := hsetFields(&t, key, args[2:4]); err != nil {
		return Result{}, err
	}
	return t.result(Int(1))
}

func execHGet(_ *Ctx, v View, args [][]byte) (Result, error) {
	h, ok, err := getTyped(v, args[1], keyspace.TypeHash)
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	val, ok, err := v.Sub(args[1], h.Version, args[2])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	return Result{Reply: Bulk(val)}, nil
}

func execHMGet(ctx *Ctx, v View, args [][]byte) (Result, error) {
	h, ok, err := getTyped(v, args[1], keyspace.TypeHash)
	if err != nil {
		return Result{}, err
	}
	out := make(Array, len(args)-2)
	b := newBudget(ctx)
	for i, f := range args[2:] {
		out[i] = Null
		if !ok {
			continue
		}
		val, had, err := v.Sub(args[1], h.Version, f)
		if err != nil {
			return Result{}, err
		}
		if !b.add(len(val)) {
			break // one field asked for many times may multiply a value
		}
		if had {
			out[i] = Bulk(val)
		}
	}
	return b.result(out, nil)
}

func execHDel(_ *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	t := txn{v: v}
	h, ok, err := getTyped(v, key, keyspace.TypeHash)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	n := 0
	for _, f := range args[2:] {
		_, had, err := t.view().Sub(key, h.Version, f)
		if err != nil {
			return Result{}, err
		}
		if had {
			t.record(logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: h.Version, Sub: f})
			n++
		}
	}
	if n == 0 {
		return Result{Reply: Int(0)}, nil
	}
	h.Size -= uint64(n)
	if h.Size == 0 {
		// The last field went: the key goes, as in Redis, and its rows
		// with it (one drop instead of the field deletes).
		return Result{Reply: Int(n), Ops: []logrec.Op{keyspace.DeleteOp(key, h)}}, nil
	}
	t.record(metaOp(key, h, h.ExpireAtMs))
	return t.result(Int(n))
}

func execHLen(_ *Ctx, v View, args [][]byte) (Result, error) {
	h, _, err := getTyped(v, args[1], keyspace.TypeHash)
	return Result{Reply: Int(h.Size)}, err
}

func execHExists(_ *Ctx, v View, args [][]byte) (Result, error) {
	h, ok, err := getTyped(v, args[1], keyspace.TypeHash)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	_, had, err := v.Sub(args[1], h.Version, args[2])
	if had {
		return Result{Reply: Int(1)}, err
	}
	return Result{Reply: Int(0)}, err
}

func execHStrlen(_ *Ctx, v View, args [][]byte) (Result, error) {
	h, ok, err := getTyped(v, args[1], keyspace.TypeHash)
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	val, _, err := v.Sub(args[1], h.Version, args[2])
	return Result{Reply: Int(len(val))}, err
}

// hashEach calls fn for every field of the hash at key in field order
// until fn returns false; a hash found presizes the reply for per fields.
func hashEach(v View, key []byte, per int, out *[]Reply, fn func(f, val []byte) bool) error {
	h, ok, err := getTyped(v, key, keyspace.TypeHash)
	if err != nil || !ok {
		return err
	}
	*out = make([]Reply, 0, min(h.Size, presizeMax)*uint64(per))
	return v.SubScan(key, h.Version, nil, fn)
}

// presizeMax caps the elements a reply is presized for from a
// collection's size: a larger one grows as its rows are read, so that a
// reply refused at max-reply-bytes never held more than it read.
const presizeMax = 1 << 16

// HGETALL, HKEYS and HVALS build their reply as they read the fields, and
// stop at max-reply-bytes.

func execHGetAll(ctx *Ctx, v View, args [][]byte) (Result, error) {
	out := []Reply{}
	b, a := newBudget(ctx), arena{}
	err := hashEach(v, args[1], 2, &out, func(f, val []byte) bool {
		if !b.add(len(f)) || !b.add(len(val)) {
			return false
		}
		out = append(out, Bulk(a.copy(f)), Bulk(a.copy(val)))
		return true
	})
	return b.result(Map(out), err)
}

func execHKeys(ctx *Ctx, v View, args [][]byte) (Result, error) {
	out := []Reply{}
	b, a := newBudget(ctx), arena{}
	err := hashEach(v, args[1], 1, &out, func(f, _ []byte) bool {
		if !b.add(len(f)) {
			return false
		}
		out = append(out, Bulk(a.copy(f)))
		return true
	})
	return b.result(Array(out), err)
}

func execHVals(ctx *Ctx, v View, args [][]byte) (Result, error) {
	out := []Reply{}
	b, a := newBudget(ctx), arena{}
	err := hashEach(v, args[1], 1, &out, func(_, val []byte) bool {
		if !b.add(len(val)) {
			return false
		}
		out = append(out, Bulk(a.copy(val)))
		return true
	})
	return b.result(Array(out), err)
}

func execHIncrBy(_ *Ctx, v View, args [][]byte) (Result, error) {
	key, field := args[1], args[2]
	delta, ok := parseInt(args[3])
	if !ok {
		return Result{}, ErrNotInteger
	}
	t := txn{v: v}
	h, _, err := collectionForWrite(&t, key, keyspace.TypeHash)
	if err != nil {
		return Result{}, err
	}
	old, had, err := v.Sub(key, h.Version, field)
	if err != nil {
		return Result{}, err
	}
	var cur int64
	if had {
		if cur, ok = parseInt(old); !ok {
			return Result{}, errHashNotInt
		}
	}
	if (delta < 0 && cur < 0 && delta < math.MinInt64-cur) || (delta > 0 && cur > 0 && delta > math.MaxInt64-cur) {
		return Result{}, ErrOverflow
	}
	cur += delta
	if _, err := hsetFields(&t, key, [][]byte{field, strconv.AppendInt(nil, cur, 10)}); err != nil {
		return Result{}, err
	}
	return t.result(Int(cur))
}

func execHIncrByFloat(_ *Ctx, v View, args [][]byte) (Result, error) {
	key, field := args[1], args[2]
	incr, ok := parseLongDouble(args[3])
	if !ok {
		return Result{}, ErrNotFloat
	}
	if incr.IsInf() {
		return Result{}, errNaNOrInf
	}
	t := txn{v: v}
	h, _, err := collectionForWrite(&t, key, keyspace.TypeHash)
	if err != nil {
		return Result{}, err
	}
	old, had, err := v.Sub(key, h.Version, field)
	if err != nil {
		return Result{}, err
	}
	cur := new(big.Float).SetPrec(longDoublePrec)
	if had {
		if cur, ok = parseLongDouble(old); !ok || cur.IsInf() {
			return Result{}, errHashNotFloat
		}
	}
	sum := new(big.Float).SetPrec(longDoublePrec).Add(cur, incr)
	if sum.MantExp(nil) > maxLongDoubleExp {
		return Result{}, ErrNaN
	}
	val, ok := formatLongDouble(sum)
	if !ok {
		return Result{}, ErrNaN
	}
	if _, err := hsetFields(&t, key, [][]byte{field, val}); err != nil {
		return Result{}, err
	}
	return t.result(Bulk(val))
}

// execHRandField is HRANDFIELD key [count [WITHVALUES]]. It reads the
// fields it picks from in one pass over the hash.
func execHRandField(ctx *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	if len(args) == 2 {
		h, ok, err := getTyped(v, key, keyspace.TypeHash)
		if err != nil || !ok {
			return Result{Reply: Null}, err
		}
		pick := rand.Uint64N(h.Size)
		var out Reply = Null
		var i uint64
		err = v.SubScan(key, h.Version, nil, func(f, _ []byte) bool {
			if i == pick {
				out = Bulk(clone(f))
				return false
			}
			i++
			return true
		})
		return Result{Reply: out}, err
	}
	if len(args) > 4 || (len(args) == 4 && !eqFold(args[3], "withvalues")) {
		return Result{}, ErrSyntax
	}
	withValues := len(args) == 4
	n, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if n == math.MinInt64 || (withValues && n < -math.MaxInt64/2) {
		return Result{}, errCountRange
	}
	h, found, err := getTyped(v, key, keyspace.TypeHash)
	if err != nil || !found || n == 0 {
		return Result{Reply: Array{}}, err
	}
	var fields, vals [][]byte
	err = v.SubScan(key, h.Version, nil, func(f, val []byte) bool {
		fields = append(fields, clone(f))
		vals = append(vals, clone(val))
		return true
	})
	if err != nil || len(fields) == 0 {
		return Result{Reply: Array{}}, err
	}
	// With repetition (n < 0) -n picks, else up to n distinct ones; the
	// picks are made as the reply grows, so that it stops at
	// max-reply-bytes before holding more.
	count, pick := -n, func(int64) int { return rand.IntN(len(fields)) }
	if n > 0 {
		perm := rand.Perm(len(fields))
		count, pick = min(n, int64(len(perm))), func(j int64) int { return perm[j] }
	}
	out := make(Array, 0, min(count, presizeMax)*2)
	b := newBudget(ctx)
	for j := range count {
		i := pick(j)
		if !b.add(len(fields[i])) || (withValues && !b.add(len(vals[i]))) {
			break
		}
		out = append(out, Bulk(fields[i]))
		if withValues {
			out = append(out, Bulk(vals[i]))
		}
	}
	if withValues {
		return b.result(Pairs(out), nil)
	}
	return b.result(out, nil)
}

// execHScan is HSCAN key cursor [MATCH pattern] [COUNT count]. A cursor
// names the next field (Ctx.Cursors), so a page costs COUNT rows.
func execHScan(ctx *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	o, err := parseScan(args[2], args[3:], false)
	if err != nil {
		return Result{}, err
	}
	cursor, count, pat := o.cursor, o.count, o.pattern
	h, found, err := getTyped(v, key, keyspace.TypeHash)
	if err != nil {
		return Result{}, err
	}
	zero := Bulk("0")
	if !found {
		return Result{Reply: Array{zero, Array{}}}, nil
	}
	var start []byte
	if cursor != 0 {
		if ctx.Cursors == nil {
			return Result{}, ErrInvalidCursor
		}
		var ok bool
		if start, ok = ctx.Cursors.Get(cursor); !ok {
			return Result{}, ErrInvalidCursor
		}
	}
	if ctx.Cursors == nil {
		count = math.MaxInt64
	}
	items := Array{}
	var next []byte
	var visited int64
	b := scanBudget(ctx) // a page ends early at max-reply-bytes
	err = v.SubScan(key, h.Version, start, func(f, val []byte) bool {
		if visited == count {
			next = clone(f)
			return false
		}
		visited++
		if pat == nil || Match(pat, f) {
			if !b.page(len(f)+len(val), 2, len(items) > 0, ctx.Cursors != nil) {
				next = clone(f)
				return false
			}
			items = append(items, Bulk(clone(f)), Bulk(clone(val)))
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

// copyValue writes src's value val to dst (which the caller has emptied):
// a string's put, or a collection copied row by row under a new version.
func copyValue(t *txn, src, dst []byte, val Value) error {
	if val.IsString() {
		t.put(dst, val.Data, val.ExpireAtMs)
		return nil
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return err
	}
	var subs []logrec.Op
	err = t.view().SubScan(src, val.Version, nil, func(f, v []byte) bool {
		subs = append(subs, logrec.Op{Kind: logrec.OpSubPut, Key: dst, Version: ver, Sub: clone(f), Value: clone(v)})
		return true
	})
	if err != nil {
		return err
	}
	for _, op := range subs {
		t.record(op)
	}
	h := val
	h.Version = ver
	t.record(metaOp(dst, h, val.ExpireAtMs))
	return nil
}
