package commands

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP). Exec is
// each one's non-blocking form: it pops at once if it can and otherwise
// answers the null reply Redis gives a blocking command that cannot block
// (inside MULTI or a script) and changes nothing. Waiting is the caller's:
// Spec.Block gives the keys to wait on and the timeout, and the caller runs
// Exec again, as a new write, each time one of those keys may have
// received data (the node's blocking registry). So the pop is always an
// ordinary write through the log, sequenced after the push that fed it.

var (
	errTimeoutNotFloat = newError("timeout is not a float or out of range")
	errTimeoutNegative = newError("timeout is negative")
	errTimeoutRange    = newError("timeout is out of range")
)

// BlockArgs is what a blocking command waits for.
type BlockArgs struct {
	// Keys are the keys whose data may serve the command, in argument
	// order.
	Keys [][]byte
	// Timeout is how long to wait; 0 means forever.
	Timeout time.Duration
}

// TimeoutReply is what a blocking command answers when its timeout passes:
// the null array for all of them, as Redis's replyToBlockedClientTimedOut
// answers (BLMOVE's and BRPOPLPUSH's non-blocking null is a null bulk).
var TimeoutReply Reply = Array(nil)

// parseTimeout parses a blocking command's timeout in seconds the way
// Redis 7's getTimeoutFromObjectOrReply does: a float (no spaces, no NaN),
// truncated to milliseconds; negative milliseconds are an error, 0 means
// forever.
func parseTimeout(b []byte) (time.Duration, error) {
	if len(b) == 0 || isSpace(b[0]) || isSpace(b[len(b)-1]) {
		return 0, errTimeoutNotFloat
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) {
		return 0, errTimeoutNotFloat
	}
	ms := f * 1000
	if ms < 0 && ms > -1 {
		ms = 0 // (long long) truncates toward zero: -0.0001 s is 0
	}
	if ms < 0 {
		return 0, errTimeoutNegative
	}
	// Redis refuses a deadline past LLONG_MAX ms; a Duration holds about
	// 292 years, which is the practical bound here.
	if ms >= float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, errTimeoutRange
	}
	return time.Duration(int64(ms)) * time.Millisecond, nil
}

// blockLastTimeout is Block for BLPOP and BRPOP: keys 1..n-2, the timeout
// last.
func blockLastTimeout(args [][]byte) (BlockArgs, error) {
	d, err := parseTimeout(args[len(args)-1])
	if err != nil {
		return BlockArgs{}, err
	}
	return BlockArgs{Keys: args[1 : len(args)-1], Timeout: d}, nil
}

func execBLPop(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return bpop(v, args, true, blocked(ctx))
}

func execBRPop(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return bpop(v, args, false, blocked(ctx))
}

func blocked(ctx *Ctx) bool { return ctx != nil && ctx.Blocked }

// sourceList reads a blocking command's source key: for a client that
// blocked (skipWrong), a key of another type is absent.
func sourceList(v View, key []byte, skipWrong bool) (list, bool, error) {
	l, ok, err := getList(v, key)
	if skipWrong && errors.Is(err, errWrongType) {
		return list{}, false, nil
	}
	return l, ok, err
}

// bpop pops one element from the first existing list among the keys and
// answers [key, element]; the first existing key of another type is a
// WRONGTYPE error, as in Redis.
func bpop(v View, args [][]byte, left, skipWrong bool) (Result, error) {
	b, err := blockLastTimeout(args)
	if err != nil {
		return Result{}, err
	}
	for _, key := range b.Keys {
		l, ok, err := sourceList(v, key, skipWrong)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			continue
		}
		t := txn{v: v}
		vals, err := l.pop(&t, left, 1)
		if err != nil {
			return Result{}, err
		}
		l.save(&t, left)
		// BulkPair, not Array{Bulk, Bulk}: one allocation, not three, for
		// the reply every job of a queue gets.
		return t.result(BulkPair{key, vals[0]})
	}
	return Result{Reply: Array(nil)}, nil
}

// blockBLMove: BLMOVE src dst LEFT|RIGHT LEFT|RIGHT timeout waits on src.
func blockBLMove(args [][]byte) (BlockArgs, error) {
	if _, err := parseWhere(args[3]); err != nil {
		return BlockArgs{}, err
	}
	if _, err := parseWhere(args[4]); err != nil {
		return BlockArgs{}, err
	}
	d, err := parseTimeout(args[5])
	if err != nil {
		return BlockArgs{}, err
	}
	return BlockArgs{Keys: args[1:2], Timeout: d}, nil
}

func execBLMove(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if _, err := blockBLMove(args); err != nil {
		return Result{}, err
	}
	from, _ := parseWhere(args[3])
	to, _ := parseWhere(args[4])
	return blmove(ctx, v, args[1], args[2], from, to)
}

// blmove is lmove for a blocking command: for a client that blocked, a
// source of another type serves nothing (the destination's type is still
// checked once there is an element to move, as in Redis).
func blmove(ctx *Ctx, v View, src, dst []byte, from, to bool) (Result, error) {
	if blocked(ctx) {
		if _, ok, err := sourceList(v, src, true); err != nil || !ok {
			return Result{Reply: Null}, err
		}
	}
	return lmove(v, src, dst, from, to)
}

// blockBRPopLPush: BRPOPLPUSH src dst timeout waits on src.
func blockBRPopLPush(args [][]byte) (BlockArgs, error) {
	d, err := parseTimeout(args[3])
	if err != nil {
		return BlockArgs{}, err
	}
	return BlockArgs{Keys: args[1:2], Timeout: d}, nil
}

func execBRPopLPush(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if _, err := blockBRPopLPush(args); err != nil {
		return Result{}, err
	}
	return blmove(ctx, v, args[1], args[2], false, true)
}

// blockBLMPop: BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT n]
// waits on its keys; the rest is checked as LMPOP checks it.
func blockBLMPop(args [][]byte) (BlockArgs, error) {
	d, err := parseTimeout(args[1])
	if err != nil {
		return BlockArgs{}, err
	}
	keys, _, _, err := parseLMPop(args[1:])
	if err != nil {
		return BlockArgs{}, err
	}
	return BlockArgs{Keys: keys, Timeout: d}, nil
}

func execBLMPop(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if _, err := parseTimeout(args[1]); err != nil {
		return Result{}, err
	}
	return lmpop(v, args[1:], blocked(ctx))
}

// Sorted sets: BZPOPMIN, BZPOPMAX, BZMPOP.

func execBZPopMin(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return bzpop(v, args, false, blocked(ctx))
}

func execBZPopMax(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return bzpop(v, args, true, blocked(ctx))
}

// bzpop pops the lowest (or highest) member of the first existing sorted
// set among the keys and answers [key, member, score].
func bzpop(v View, args [][]byte, max, skipWrong bool) (Result, error) {
	b, err := blockLastTimeout(args)
	if err != nil {
		return Result{}, err
	}
	for _, key := range b.Keys {
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
		items, err := zpop(&t, key, z, max, 1)
		if err != nil {
			return Result{}, err
		}
		return t.result(Array{Bulk(key), Bulk(items[0].member), Double(items[0].score)})
	}
	return Result{Reply: Array(nil)}, nil
}

// blockBZMPop: BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT n].
func blockBZMPop(args [][]byte) (BlockArgs, error) {
	d, err := parseTimeout(args[1])
	if err != nil {
		return BlockArgs{}, err
	}
	keys, _, _, err := parseZMPop(args[1:])
	if err != nil {
		return BlockArgs{}, err
	}
	return BlockArgs{Keys: keys, Timeout: d}, nil
}

func execBZMPop(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if _, err := parseTimeout(args[1]); err != nil {
		return Result{}, err
	}
	return zmpop(v, args[1:], blocked(ctx))
}
