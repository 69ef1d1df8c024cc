package commands

import (
	"math"
	"math/big"
	"strconv"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

func execGet(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, ok, err := getString(v, args[1])
	if err != nil || !ok {
		return Result{Reply: Null}, err
	}
	return Result{Reply: Bulk(val.Data)}, nil
}

// execMGet is MGET key...: it stops at max-reply-bytes, which a key named
// many times can pass with one value.
func execMGet(ctx *Ctx, v View, args [][]byte) (Result, error) {
	out := make(Array, len(args)-1)
	b := newBudget(ctx)
	for i, k := range args[1:] {
		val, ok, err := v.Get(k)
		if err != nil {
			return Result{}, err
		}
		if ok && val.IsString() { // MGET answers nil for another type
			if !b.add(len(val.Data)) {
				break
			}
			out[i] = Bulk(val.Data)
		} else {
			out[i] = Null
		}
	}
	return b.result(out, nil)
}

func execStrlen(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, ok, err := stat(v, args[1]) // a long string's chunks are not read
	if err != nil || !ok {
		return Result{Reply: Int(0)}, err
	}
	if !val.IsString() {
		return Result{}, errWrongType
	}
	return Result{Reply: Int(keyspace.StrLen(val))}, nil
}

func execGetRange(_ *Ctx, v View, args [][]byte) (Result, error) {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return Result{}, ErrNotInteger
	}
	val, _, err := getString(v, args[1])
	if err != nil {
		return Result{}, err
	}
	n := int64(len(val.Data))
	if start < 0 && end < 0 && start > end {
		return Result{Reply: Bulk{}}, nil
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start, end = max(start, 0), max(end, 0)
	if end >= n {
		end = n - 1
	}
	if start > end || n == 0 {
		return Result{Reply: Bulk{}}, nil
	}
	return Result{Reply: Bulk(val.Data[start : end+1])}, nil
}

// Flags of the SET family's extended arguments (Redis's OBJ_SET_*).
const (
	setNX = 1 << iota
	setXX
	setGet
	setKeepTTL
	setPersist
	setEX
	setPX
	setEXAT
	setPXAT
)

const setExpireFlags = setEX | setPX | setEXAT | setPXAT

// parseSetArgs parses SET's (forGetEx false) or GETEX's (forGetEx true)
// options from args, in Redis's order of checks: every option first (a
// syntax error wins over a bad number), then the expire time. It returns
// the flags and the absolute expiry in milliseconds (0 for none).
func parseSetArgs(ctx *Ctx, name string, args [][]byte, forGetEx bool) (flags int, expireAt int64, err error) {
	var expire []byte
	for j := 0; j < len(args); j++ {
		opt := args[j]
		hasNext := j+1 < len(args)
		switch {
		case !forGetEx && eqFold(opt, "nx") && flags&setXX == 0:
			flags |= setNX
		case !forGetEx && eqFold(opt, "xx") && flags&setNX == 0:
			flags |= setXX
		case !forGetEx && eqFold(opt, "get"):
			flags |= setGet
		case !forGetEx && eqFold(opt, "keepttl") && flags&(setPersist|setExpireFlags) == 0:
			flags |= setKeepTTL
		case forGetEx && eqFold(opt, "persist") && flags&(setKeepTTL|setExpireFlags) == 0:
			flags |= setPersist
		case eqFold(opt, "ex") && flags&(setKeepTTL|setPersist|setPX|setEXAT|setPXAT) == 0 && hasNext:
			flags |= setEX
			expire = args[j+1]
			j++
		case eqFold(opt, "px") && flags&(setKeepTTL|setPersist|setEX|setEXAT|setPXAT) == 0 && hasNext:
			flags |= setPX
			expire = args[j+1]
			j++
		case eqFold(opt, "exat") && flags&(setKeepTTL|setPersist|setEX|setPX|setPXAT) == 0 && hasNext:
			flags |= setEXAT
			expire = args[j+1]
			j++
		case eqFold(opt, "pxat") && flags&(setKeepTTL|setPersist|setEX|setPX|setEXAT) == 0 && hasNext:
			flags |= setPXAT
			expire = args[j+1]
			j++
		default:
			return 0, 0, ErrSyntax
		}
	}
	if expire != nil {
		expireAt, err = expireMillis(ctx, name, expire, flags&(setEX|setEXAT) != 0, flags&(setEX|setPX) != 0)
	}
	return flags, expireAt, err
}

// expireMillis is Redis's getExpireMillisecondsOrReply: a positive number
// of seconds or milliseconds, relative to now or absolute, as absolute
// Unix milliseconds.
func expireMillis(ctx *Ctx, name string, arg []byte, seconds, relative bool) (int64, error) {
	ms, ok := parseInt(arg)
	if !ok {
		return 0, ErrNotInteger
	}
	if ms <= 0 || (seconds && ms > math.MaxInt64/1000) {
		return 0, invalidExpire(name)
	}
	if seconds {
		ms *= 1000
	}
	if relative {
		if ms > math.MaxInt64-ctx.NowMs {
			return 0, invalidExpire(name)
		}
		ms += ctx.NowMs
	}
	if ms <= 0 {
		return 0, invalidExpire(name)
	}
	return ms, nil
}

// expired reports whether an absolute expiry is already due, in which case
// a write logs a delete instead of a put that would never be visible.
func expired(ctx *Ctx, expireAt int64) bool { return keyspace.Expired(expireAt, ctx.NowMs) }

func execSet(ctx *Ctx, v View, args [][]byte) (Result, error) {
	flags, expireAt, err := parseSetArgs(ctx, "set", args[3:], false)
	if err != nil {
		return Result{}, err
	}
	key, value := args[1], args[2]
	// The common SET key value needs no read at all.
	if flags&(setNX|setXX|setGet|setKeepTTL) == 0 {
		return Result{Reply: OK, Ops: []logrec.Op{setOp(ctx, key, value, expireAt)}}, nil
	}
	old, found, err := v.Get(key)
	if err != nil {
		return Result{}, err
	}
	if flags&setGet != 0 && found && !old.IsString() {
		return Result{}, errWrongType
	}
	reply := Reply(OK)
	if flags&setGet != 0 {
		reply = Null
		if found {
			reply = Bulk(old.Data)
		}
	}
	if (flags&setNX != 0 && found) || (flags&setXX != 0 && !found) {
		if flags&setGet == 0 {
			reply = Null
		}
		return Result{Reply: reply}, nil
	}
	if flags&setKeepTTL != 0 && found {
		expireAt = old.ExpireAtMs
	}
	if found && !old.IsString() {
		// A collection is replaced: its rows go with it. (SET without
		// options does not read; the rows it leaves are swept: see
		// storage.DB.Sweep.)
		return Result{Reply: reply, Ops: []logrec.Op{keyspace.DeleteOp(key, old), setOp(ctx, key, value, expireAt)}}, nil
	}
	return Result{Reply: reply, Ops: []logrec.Op{setOp(ctx, key, value, expireAt)}}, nil
}

// setOp is the operation that stores value with expireAt, or deletes the
// key when that expiry is already due (SET ... PXAT <past>).
func setOp(ctx *Ctx, key, value []byte, expireAt int64) logrec.Op {
	if expired(ctx, expireAt) {
		return logrec.Op{Kind: logrec.OpDelete, Key: key}
	}
	return logrec.Op{Kind: logrec.OpPut, Key: key, Value: value, ExpireAtMs: expireAt}
}

func execSetNX(_ *Ctx, v View, args [][]byte) (Result, error) {
	_, found, err := v.Get(args[1])
	if err != nil || found {
		return Result{Reply: Int(0)}, err
	}
	return Result{Reply: Int(1), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: args[1], Value: args[2]}}}, nil
}

func execSetEX(ctx *Ctx, _ View, args [][]byte) (Result, error) {
	return setWithTTL(ctx, "setex", args, true)
}

func execPSetEX(ctx *Ctx, _ View, args [][]byte) (Result, error) {
	return setWithTTL(ctx, "psetex", args, false)
}

func setWithTTL(ctx *Ctx, name string, args [][]byte, seconds bool) (Result, error) {
	expireAt, err := expireMillis(ctx, name, args[2], seconds, true)
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: OK, Ops: []logrec.Op{setOp(ctx, args[1], args[3], expireAt)}}, nil
}

func execGetSet(_ *Ctx, v View, args [][]byte) (Result, error) {
	old, found, err := getString(v, args[1])
	if err != nil {
		return Result{}, err
	}
	reply := Null
	if found {
		reply = Bulk(old.Data)
	}
	// GETSET replaces the value and, like SET, drops the TTL.
	return Result{Reply: reply, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: args[1], Value: args[2]}}}, nil
}

func execGetDel(_ *Ctx, v View, args [][]byte) (Result, error) {
	old, found, err := getString(v, args[1])
	if err != nil || !found {
		return Result{Reply: Null}, err
	}
	return Result{Reply: Bulk(old.Data), Ops: []logrec.Op{{Kind: logrec.OpDelete, Key: args[1]}}}, nil
}

func execGetEx(ctx *Ctx, v View, args [][]byte) (Result, error) {
	flags, expireAt, err := parseSetArgs(ctx, "getex", args[2:], true)
	if err != nil {
		return Result{}, err
	}
	key := args[1]
	val, found, err := getString(v, key)
	if err != nil || !found {
		return Result{Reply: Null}, err
	}
	res := Result{Reply: Bulk(val.Data)}
	switch {
	case flags&setExpireFlags != 0:
		res.Ops = []logrec.Op{setOp(ctx, key, val.Data, expireAt)}
	case flags&setPersist != 0 && val.ExpireAtMs != 0:
		res.Ops = []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val.Data}}
	}
	return res, nil
}

func execMSet(_ *Ctx, v View, args [][]byte) (Result, error) {
	if len(args)%2 == 0 {
		return Result{}, &ArityError{Name: "mset"}
	}
	t := txn{v: v, ops: make([]logrec.Op, 0, (len(args)-1)/2)}
	for i := 1; i < len(args); i += 2 {
		t.put(args[i], args[i+1], 0)
	}
	return t.result(OK)
}

func execMSetNX(_ *Ctx, v View, args [][]byte) (Result, error) {
	if len(args)%2 == 0 {
		return Result{}, &ArityError{Name: "msetnx"}
	}
	for i := 1; i < len(args); i += 2 {
		_, found, err := v.Get(args[i])
		if err != nil || found {
			return Result{Reply: Int(0)}, err
		}
	}
	t := txn{v: v, ops: make([]logrec.Op, 0, (len(args)-1)/2)}
	for i := 1; i < len(args); i += 2 {
		t.put(args[i], args[i+1], 0)
	}
	return t.result(Int(1))
}

func execIncr(_ *Ctx, v View, args [][]byte) (Result, error) {
	return incrBy(v, args[1], 1)
}

func execDecr(_ *Ctx, v View, args [][]byte) (Result, error) {
	return incrBy(v, args[1], -1)
}

func execIncrBy(_ *Ctx, v View, args [][]byte) (Result, error) {
	n, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	return incrBy(v, args[1], n)
}

func execDecrBy(_ *Ctx, v View, args [][]byte) (Result, error) {
	n, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if n == math.MinInt64 {
		return Result{}, ErrDecrOverflow
	}
	return incrBy(v, args[1], -n)
}

// incrBy adds delta to the integer at key (0 if missing). The new value
// keeps the key's TTL, as Redis's INCR does.
func incrBy(v View, key []byte, delta int64) (Result, error) {
	old, found, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	var cur int64
	if found {
		var ok bool
		if cur, ok = parseInt(old.Data); !ok {
			return Result{}, ErrNotInteger
		}
	}
	if (delta < 0 && cur < 0 && delta < math.MinInt64-cur) || (delta > 0 && cur > 0 && delta > math.MaxInt64-cur) {
		return Result{}, ErrOverflow
	}
	cur += delta
	val := strconv.AppendInt(make([]byte, 0, 20), cur, 10)
	return Result{Reply: Int(cur), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: old.ExpireAtMs}}}, nil
}

func execIncrByFloat(_ *Ctx, v View, args [][]byte) (Result, error) {
	key := args[1]
	old, found, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	cur := new(big.Float).SetPrec(longDoublePrec)
	if found {
		var ok bool
		if cur, ok = parseLongDouble(old.Data); !ok {
			return Result{}, ErrNotFloat
		}
	}
	incr, ok := parseLongDouble(args[2])
	if !ok {
		return Result{}, ErrNotFloat
	}
	if cur.IsInf() || incr.IsInf() {
		// inf+x is inf and inf-inf is NaN: neither may be stored.
		return Result{}, ErrNaN
	}
	sum := new(big.Float).SetPrec(longDoublePrec).Add(cur, incr)
	if sum.MantExp(nil) > maxLongDoubleExp {
		return Result{}, ErrNaN
	}
	val, ok := formatLongDouble(sum)
	if !ok {
		return Result{}, ErrNaN
	}
	return Result{Reply: Bulk(val), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: old.ExpireAtMs}}}, nil
}

func execAppend(_ *Ctx, v View, args [][]byte) (Result, error) {
	key, suffix := args[1], args[2]
	old, found, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Reply: Int(len(suffix)), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: suffix}}}, nil
	}
	if int64(len(old.Data))+int64(len(suffix)) > MaxValueLen {
		return Result{}, ErrTooLarge
	}
	// A fresh slice: old.Data may be shared with the View.
	val := make([]byte, 0, len(old.Data)+len(suffix))
	val = append(append(val, old.Data...), suffix...)
	return Result{Reply: Int(len(val)), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: old.ExpireAtMs}}}, nil
}

func execSetRange(_ *Ctx, v View, args [][]byte) (Result, error) {
	key, patch := args[1], args[3]
	off, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if off < 0 {
		return Result{}, ErrOffsetRange
	}
	old, found, err := getString(v, key)
	if err != nil {
		return Result{}, err
	}
	if len(patch) == 0 {
		return Result{Reply: Int(len(old.Data))}, nil
	}
	if off > MaxValueLen || off+int64(len(patch)) > MaxValueLen {
		return Result{}, ErrTooLarge
	}
	n := max(int64(len(old.Data)), off+int64(len(patch)))
	val := make([]byte, n)
	copy(val, old.Data)
	copy(val[off:], patch)
	var exp int64
	if found {
		exp = old.ExpireAtMs
	}
	return Result{Reply: Int(n), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: exp}}}, nil
}
