package commands

import (
	"math"
	"strconv"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

func execDel(_ *Ctx, v View, args [][]byte) (Result, error) {
	t := txn{v: v}
	n := 0
	for _, k := range args[1:] {
		val, found, err := t.get(k)
		if err != nil {
			return Result{}, err
		}
		if found {
			t.del(k, val)
			n++
		}
	}
	return t.result(Int(n))
}

func execExists(_ *Ctx, v View, args [][]byte) (Result, error) {
	n := 0
	for _, k := range args[1:] {
		_, found, err := stat(v, k)
		if err != nil {
			return Result{}, err
		}
		if found {
			n++ // a key named twice counts twice, as in Redis
		}
	}
	return Result{Reply: Int(n)}, nil
}

func execType(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, found, err := stat(v, args[1])
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Reply: SimpleString("none")}, nil
	}
	return Result{Reply: SimpleString(val.Type.String())}, nil
}

// ttlReply is Redis's ttlGenericCommand: -2 for a missing key, -1 for no
// expiry, else the time left, never negative, in milliseconds or in
// seconds rounded to the nearest (Redis rounds, (ms+500)/1000: it does not
// take the ceiling).
func ttlReply(ctx *Ctx, v View, key []byte, ms bool) (Result, error) {
	val, found, err := v.Get(key)
	switch {
	case err != nil:
		return Result{}, err
	case !found:
		return Result{Reply: Int(-2)}, nil
	case val.ExpireAtMs == 0:
		return Result{Reply: Int(-1)}, nil
	}
	left := max(val.ExpireAtMs-ctx.NowMs, 0)
	if !ms {
		left = (left + 500) / 1000
	}
	return Result{Reply: Int(left)}, nil
}

func execTTL(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return ttlReply(ctx, v, args[1], false)
}
func execPTTL(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return ttlReply(ctx, v, args[1], true)
}

func expireTimeReply(v View, key []byte, ms bool) (Result, error) {
	val, found, err := v.Get(key)
	switch {
	case err != nil:
		return Result{}, err
	case !found:
		return Result{Reply: Int(-2)}, nil
	case val.ExpireAtMs == 0:
		return Result{Reply: Int(-1)}, nil
	case ms:
		return Result{Reply: Int(val.ExpireAtMs)}, nil
	}
	return Result{Reply: Int(val.ExpireAtMs / 1000)}, nil
}

func execExpireTime(_ *Ctx, v View, args [][]byte) (Result, error) {
	return expireTimeReply(v, args[1], false)
}

func execPExpireTime(_ *Ctx, v View, args [][]byte) (Result, error) {
	return expireTimeReply(v, args[1], true)
}

// Options of the EXPIRE family (Redis's EXPIRE_NX...).
const (
	expNX = 1 << iota
	expXX
	expGT
	expLT
)

var (
	errExpireNXCombo = newError("NX and XX, GT or LT options at the same time are not compatible")
	errExpireGTLT    = newError("GT and LT options at the same time are not compatible")
)

// expireGeneric is Redis's expireGenericCommand. relative says the time is
// added to now (EXPIRE, PEXPIRE); seconds says it is in seconds.
func expireGeneric(ctx *Ctx, v View, args [][]byte, name string, relative, seconds bool) (Result, error) {
	var flags int
	for _, opt := range args[3:] {
		switch {
		case eqFold(opt, "nx"):
			flags |= expNX
		case eqFold(opt, "xx"):
			flags |= expXX
		case eqFold(opt, "gt"):
			flags |= expGT
		case eqFold(opt, "lt"):
			flags |= expLT
		default:
			return Result{}, newError("Unsupported option " + string(opt))
		}
	}
	if flags&expNX != 0 && flags&(expXX|expGT|expLT) != 0 {
		return Result{}, errExpireNXCombo
	}
	if flags&expGT != 0 && flags&expLT != 0 {
		return Result{}, errExpireGTLT
	}
	when, ok := parseInt(args[2])
	if !ok {
		return Result{}, ErrNotInteger
	}
	if seconds {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			return Result{}, invalidExpire(name)
		}
		when *= 1000
	}
	if relative {
		if when > math.MaxInt64-ctx.NowMs {
			return Result{}, invalidExpire(name)
		}
		when += ctx.NowMs
	}
	key := args[1]
	val, found, err := v.Get(key)
	if err != nil || !found {
		return Result{Reply: Int(0)}, err
	}
	cur := val.ExpireAtMs // 0: no expiry, which GT and LT treat as infinite
	switch {
	case flags&expNX != 0 && cur != 0,
		flags&expXX != 0 && cur == 0,
		flags&expGT != 0 && (cur == 0 || when <= cur),
		flags&expLT != 0 && cur != 0 && when >= cur:
		return Result{Reply: Int(0)}, nil
	}
	if when <= ctx.NowMs {
		return Result{Reply: Int(1), Ops: []logrec.Op{keyspace.DeleteOp(key, val)}}, nil
	}
	return Result{Reply: Int(1), Ops: []logrec.Op{withExpiry(key, val, when)}}, nil
}

func execExpire(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return expireGeneric(ctx, v, args, "expire", true, true)
}

func execPExpire(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return expireGeneric(ctx, v, args, "pexpire", true, false)
}

func execExpireAt(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return expireGeneric(ctx, v, args, "expireat", false, true)
}

func execPExpireAt(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return expireGeneric(ctx, v, args, "pexpireat", false, false)
}

func execPersist(_ *Ctx, v View, args [][]byte) (Result, error) {
	val, found, err := v.Get(args[1])
	if err != nil || !found || val.ExpireAtMs == 0 {
		return Result{Reply: Int(0)}, err
	}
	return Result{Reply: Int(1), Ops: []logrec.Op{withExpiry(args[1], val, 0)}}, nil
}

// withExpiry is the op that gives key (whose value is val) the expiry at:
// a string's put, or a collection's metadata row (O(1) for any size).
func withExpiry(key []byte, val Value, at int64) logrec.Op {
	if val.IsString() {
		return logrec.Op{Kind: logrec.OpPut, Key: key, Value: val.Data, ExpireAtMs: at}
	}
	return metaOp(key, val, at)
}

var errNoSuchKey = newError("no such key")

// rename is RENAME (nx false) and RENAMENX (nx true). The destination
// takes the source's value and TTL.
func rename(v View, args [][]byte, nx bool) (Result, error) {
	src, dst := args[1], args[2]
	val, found, err := v.Get(src)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{}, errNoSuchKey
	}
	if string(src) == string(dst) {
		if nx {
			return Result{Reply: Int(0)}, nil
		}
		return Result{Reply: OK}, nil
	}
	if nx {
		if _, exists, err := v.Get(dst); err != nil || exists {
			return Result{Reply: Int(0)}, err
		}
	}
	t := txn{v: v}
	if old, exists, err := t.get(dst); err != nil {
		return Result{}, err
	} else if exists {
		t.del(dst, old)
	}
	if err := copyValue(&t, src, dst, val); err != nil {
		return Result{}, err
	}
	t.del(src, val)
	ops := t.ops
	if nx {
		return Result{Reply: Int(1), Ops: ops}, nil
	}
	return Result{Reply: OK, Ops: ops}, nil
}

func execRename(_ *Ctx, v View, args [][]byte) (Result, error)   { return rename(v, args, false) }
func execRenameNX(_ *Ctx, v View, args [][]byte) (Result, error) { return rename(v, args, true) }

// execFlush is FLUSHDB and FLUSHALL [ASYNC|SYNC]: one small op (a log
// format v2 op) whatever the keyspace's size.
func execFlush(_ *Ctx, _ View, args [][]byte) (Result, error) {
	if len(args) > 2 || (len(args) == 2 && !eqFold(args[1], "async") && !eqFold(args[1], "sync")) {
		return Result{}, ErrSyntax
	}
	return Result{Reply: OK, Ops: []logrec.Op{{Kind: logrec.OpFlushAll}}}, nil
}

// execDBSize answers in O(1) from a KeyCounter view; any other view (a
// test's, one with uncommitted writes) is counted by a scan of its live
// keys.
func execDBSize(_ *Ctx, v View, _ [][]byte) (Result, error) {
	if kc, ok := v.(KeyCounter); ok {
		return Result{Reply: Int(kc.KeyCount())}, nil
	}
	n := 0
	err := v.Scan(nil, func([]byte, Value) bool { n++; return true })
	return Result{Reply: Int(n)}, err
}

// execKeys is KEYS pattern, stopping at max-reply-bytes.
func execKeys(ctx *Ctx, v View, args [][]byte) (Result, error) {
	pat := args[1]
	all := len(pat) == 1 && pat[0] == '*'
	out := Array{}
	b, a := newBudget(ctx), arena{}
	err := v.Scan(literalPrefix(pat), func(key []byte, _ Value) bool {
		if all || Match(pat, key) {
			if !b.add(len(key)) {
				return false
			}
			out = append(out, Bulk(a.copy(key)))
		}
		return prefixMayMatch(pat, key)
	})
	return b.result(out, err)
}

// literalPrefix is the part of a glob before its first special character:
// every matching key starts with it, so a scan can start there.
func literalPrefix(pat []byte) []byte {
	for i, c := range pat {
		switch c {
		case '*', '?', '[', '\\':
			return pat[:i]
		}
	}
	return pat
}

// prefixMayMatch reports whether keys at or after key (in order) may still
// match pat, i.e. key has not run past pat's literal prefix.
func prefixMayMatch(pat, key []byte) bool {
	p := literalPrefix(pat)
	return len(key) >= len(p) && string(key[:len(p)]) == string(p)
}

// scanDefaultCount is SCAN's COUNT when none is given, as in Redis.
const scanDefaultCount = 10

// scanOptions are a SCAN-family command's cursor and options.
type scanOptions struct {
	cursor   uint64
	count    int64
	pattern  []byte // nil: every name (no MATCH, or MATCH *)
	typeName []byte // SCAN ... TYPE only
}

// parseScan reads a cursor and the options after it ([MATCH pattern]
// [COUNT count], and [TYPE type] where withType), with Redis's errors:
// one parser for SCAN and every type's xSCAN.
func parseScan(cursorArg []byte, opts [][]byte, withType bool) (scanOptions, error) {
	cursor, err := strconv.ParseUint(string(cursorArg), 10, 64)
	if err != nil {
		return scanOptions{}, ErrInvalidCursor
	}
	o := scanOptions{cursor: cursor, count: scanDefaultCount}
	for i := 0; i < len(opts); i += 2 {
		if i+1 >= len(opts) {
			return scanOptions{}, ErrSyntax
		}
		opt, arg := opts[i], opts[i+1]
		switch {
		case eqFold(opt, "count"):
			n, ok := parseInt(arg)
			if !ok {
				return scanOptions{}, ErrNotInteger
			}
			if n < 1 {
				return scanOptions{}, ErrSyntax
			}
			o.count = n
		case eqFold(opt, "match"):
			o.pattern = arg
			if len(arg) == 1 && arg[0] == '*' {
				o.pattern = nil
			}
		case withType && eqFold(opt, "type"):
			o.typeName = arg
		default:
			return scanOptions{}, ErrSyntax
		}
	}
	return o, nil
}

func execScan(ctx *Ctx, v View, args [][]byte) (Result, error) {
	o, err := parseScan(args[1], args[2:], true)
	if err != nil {
		return Result{}, err
	}
	cursor, count, pat, typeName := o.cursor, o.count, o.pattern, o.typeName
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
	// COUNT bounds the keys visited, not the keys returned, as in Redis:
	// with MATCH a page may come back short or even empty.
	keys := Array{}
	var next []byte
	var visited int64
	b := scanBudget(ctx) // a page ends early at max-reply-bytes
	err = v.Scan(start, func(key []byte, val Value) bool {
		if visited == count {
			next = clone(key)
			return false
		}
		visited++
		if (typeName == nil || eqFold(typeName, val.Type.String())) && (pat == nil || Match(pat, key)) {
			if !b.page(len(key), 1, len(keys) > 0, ctx.Cursors != nil) {
				next = clone(key)
				return false
			}
			keys = append(keys, Bulk(clone(key)))
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
	return Result{Reply: Array{Bulk(strconv.AppendUint(nil, id, 10)), keys}}, nil
}
