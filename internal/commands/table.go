package commands

import "sort"

// table lists every data command. Arity and key positions are Redis 7's
// (COMMAND INFO), so that clients and proxies that route by them agree.
var table = []*Spec{
	// Reads.
	{Name: "get", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGet},
	{Name: "mget", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execMGet},
	{Name: "exists", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execExists},
	// TOUCH counts the keys that exist, as EXISTS: tandem keeps no access
	// time to update (it evicts nothing).
	{Name: "touch", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execExists},
	{Name: "strlen", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execStrlen},
	{Name: "getrange", Arity: 4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetRange},
	{Name: "substr", Arity: 4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetRange},
	{Name: "ttl", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execTTL},
	{Name: "pttl", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPTTL},
	{Name: "expiretime", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execExpireTime},
	{Name: "pexpiretime", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPExpireTime},
	{Name: "type", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execType},
	{Name: "scan", Arity: -2, Flags: FlagRead, Exec: execScan},
	{Name: "keys", Arity: 2, Flags: FlagRead, Exec: execKeys},
	{Name: "dbsize", Arity: 1, Flags: FlagRead, Exec: execDBSize},
	{Name: "object", Arity: -2, Flags: FlagRead, FirstKey: 2, LastKey: 2, KeyStep: 1, Exec: execObject},
	{Name: "memory", Arity: -2, Flags: FlagRead, FirstKey: 2, LastKey: 2, KeyStep: 1, Exec: execMemory},
	{Name: "hget", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHGet},
	{Name: "hmget", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHMGet},
	{Name: "hlen", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHLen},
	{Name: "hexists", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHExists},
	{Name: "hstrlen", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHStrlen},
	{Name: "hgetall", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHGetAll},
	{Name: "hkeys", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHKeys},
	{Name: "hvals", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHVals},
	{Name: "hrandfield", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHRandField},
	{Name: "llen", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLLen},
	{Name: "lrange", Arity: 4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLRange},
	{Name: "sort", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSort},
	{Name: "sort_ro", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSortRO},
	{Name: "lindex", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLIndex},
	{Name: "lpos", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLPos},
	{Name: "smembers", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSMembers},
	{Name: "sismember", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSIsMember},
	{Name: "smismember", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSMIsMember},
	{Name: "scard", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSCard},
	{Name: "srandmember", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSRandMember},
	{Name: "sinter", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSInter},
	{Name: "sunion", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSUnion},
	{Name: "sdiff", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSDiff},
	// SINTERCARD's keys follow numkeys: COMMAND INFO reports no fixed
	// positions (Redis: movablekeys), so 0s here.
	{Name: "sintercard", Arity: -3, Flags: FlagRead, Exec: execSInterCard},
	{Name: "sscan", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSScan},
	{Name: "hscan", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHScan},
	{Name: "zscore", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZScore},
	{Name: "zmscore", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZMScore},
	{Name: "zcard", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZCard},
	{Name: "zcount", Arity: 4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZCount},
	{Name: "zlexcount", Arity: 4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZLexCount},
	{Name: "zrank", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRank},
	{Name: "zrevrank", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRevRank},
	{Name: "zrange", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(-1, false)},
	{Name: "zrevrange", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(zByRank, true)},
	{Name: "zrangebyscore", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(zByScore, false)},
	{Name: "zrevrangebyscore", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(zByScore, true)},
	{Name: "zrangebylex", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(zByLex, false)},
	{Name: "zrevrangebylex", Arity: -4, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: zrangeCmd(zByLex, true)},
	{Name: "zrandmember", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRandMember},
	{Name: "zscan", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZScan},
	// ZUNION, ZINTER, ZDIFF, ZINTERCARD and ZMPOP find their keys through
	// numkeys: like Redis (movable keys), no key range.
	{Name: "zunion", Arity: -3, Flags: FlagRead, Exec: execZUnion},
	{Name: "zinter", Arity: -3, Flags: FlagRead, Exec: execZInter},
	{Name: "zdiff", Arity: -3, Flags: FlagRead, Exec: execZDiff},
	{Name: "zintercard", Arity: -3, Flags: FlagRead, Exec: execZInterCard},
	{Name: "getbit", Arity: 3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetBit},
	{Name: "bitcount", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execBitCount},
	{Name: "bitpos", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execBitPos},
	{Name: "bitfield_ro", Arity: -2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execBitfieldRO},
	{Name: "lcs", Arity: -3, Flags: FlagRead, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execLCS},
	{Name: "dump", Arity: 2, Flags: FlagRead, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execDump},
	{Name: "randomkey", Arity: 1, Flags: FlagRead, Exec: execRandomKey},
	// Scripts (scripts.go): keys are movable (numkeys), so no key positions.
	{Name: "eval_ro", Arity: -3, Flags: FlagRead, Exec: scriptExec(true, false)},
	{Name: "evalsha_ro", Arity: -3, Flags: FlagRead, Exec: scriptExec(true, true)},
	{Name: "fcall_ro", Arity: -3, Flags: FlagRead, Exec: fcallExec(true)},

	// Writes.
	{Name: "set", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSet},
	{Name: "setnx", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSetNX},
	{Name: "setex", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSetEX},
	{Name: "psetex", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPSetEX},
	{Name: "getset", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetSet},
	{Name: "getdel", Arity: 2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetDel},
	{Name: "getex", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execGetEx},
	{Name: "mset", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 2, Exec: execMSet},
	{Name: "msetnx", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 2, Exec: execMSetNX},
	{Name: "append", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execAppend},
	{Name: "setrange", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSetRange},
	{Name: "incr", Arity: 2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execIncr},
	{Name: "decr", Arity: 2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execDecr},
	{Name: "incrby", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execIncrBy},
	{Name: "decrby", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execDecrBy},
	{Name: "incrbyfloat", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execIncrByFloat},
	{Name: "del", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execDel},
	{Name: "unlink", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execDel},
	{Name: "expire", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execExpire},
	{Name: "pexpire", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPExpire},
	{Name: "expireat", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execExpireAt},
	{Name: "pexpireat", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPExpireAt},
	{Name: "persist", Arity: 2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execPersist},
	{Name: "rename", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execRename},
	{Name: "renamenx", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execRenameNX},
	{Name: "hset", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHSet},
	{Name: "hmset", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHMSet},
	{Name: "hsetnx", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHSetNX},
	{Name: "hdel", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHDel},
	{Name: "hincrby", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHIncrBy},
	{Name: "setbit", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSetBit},
	{Name: "bitop", Arity: -4, Flags: FlagWrite, FirstKey: 2, LastKey: -1, KeyStep: 1, Exec: execBitOp},
	{Name: "bitfield", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execBitfield},
	{Name: "copy", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execCopy},
	{Name: "restore", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execRestore},
	{Name: "hincrbyfloat", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execHIncrByFloat},
	{Name: "zadd", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZAdd},
	{Name: "zincrby", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZIncrBy},
	{Name: "zrem", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRem},
	{Name: "zremrangebyscore", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRemRangeByScore},
	{Name: "zremrangebyrank", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRemRangeByRank},
	{Name: "zremrangebylex", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZRemRangeByLex},
	{Name: "zpopmin", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZPopMin},
	{Name: "zpopmax", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZPopMax},
	{Name: "zmpop", Arity: -4, Flags: FlagWrite, Exec: execZMPop},
	{Name: "zrangestore", Arity: -5, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execZRangeStore},
	{Name: "zunionstore", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZUnionStore},
	{Name: "zinterstore", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZInterStore},
	{Name: "zdiffstore", Arity: -4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execZDiffStore},
	{Name: "lpush", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLPush},
	{Name: "rpush", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execRPush},
	{Name: "lpushx", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLPushX},
	{Name: "rpushx", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execRPushX},
	{Name: "lpop", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLPop},
	{Name: "rpop", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execRPop},
	{Name: "lset", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLSet},
	{Name: "linsert", Arity: 5, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLInsert},
	{Name: "lrem", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLRem},
	{Name: "ltrim", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execLTrim},
	{Name: "lmove", Arity: 5, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execLMove},
	{Name: "rpoplpush", Arity: 3, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execRPopLPush},
	// LMPOP's keys follow numkeys (movable): Redis reports no key range.
	{Name: "lmpop", Arity: -4, Flags: FlagWrite, Exec: execLMPop},
	{Name: "blpop", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -2, KeyStep: 1, Exec: execBLPop, Block: blockLastTimeout},
	{Name: "brpop", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -2, KeyStep: 1, Exec: execBRPop, Block: blockLastTimeout},
	{Name: "blmove", Arity: 6, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execBLMove, Block: blockBLMove},
	{Name: "brpoplpush", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execBRPopLPush, Block: blockBRPopLPush},
	{Name: "blmpop", Arity: -5, Flags: FlagWrite, Exec: execBLMPop, Block: blockBLMPop},
	{Name: "bzpopmin", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -2, KeyStep: 1, Exec: execBZPopMin, Block: blockLastTimeout},
	{Name: "bzpopmax", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -2, KeyStep: 1, Exec: execBZPopMax, Block: blockLastTimeout},
	{Name: "bzmpop", Arity: -5, Flags: FlagWrite, Exec: execBZMPop, Block: blockBZMPop},
	{Name: "sadd", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSAdd},
	{Name: "srem", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSRem},
	{Name: "spop", Arity: -2, Flags: FlagWrite, FirstKey: 1, LastKey: 1, KeyStep: 1, Exec: execSPop},
	{Name: "smove", Arity: 4, Flags: FlagWrite, FirstKey: 1, LastKey: 2, KeyStep: 1, Exec: execSMove},
	{Name: "sinterstore", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSInterStore},
	{Name: "sunionstore", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSUnionStore},
	{Name: "sdiffstore", Arity: -3, Flags: FlagWrite, FirstKey: 1, LastKey: -1, KeyStep: 1, Exec: execSDiffStore},
	{Name: "flushdb", Arity: -1, Flags: FlagWrite, Exec: execFlush},
	{Name: "flushall", Arity: -1, Flags: FlagWrite, Exec: execFlush},
	{Name: "eval", Arity: -3, Flags: FlagWrite, Exec: scriptExec(false, false)},
	{Name: "evalsha", Arity: -3, Flags: FlagWrite, Exec: scriptExec(false, true)},
	{Name: "fcall", Arity: -3, Flags: FlagWrite, Exec: fcallExec(false)},
}

// byName indexes table by lower-case name. It is built once and never
// written again, so concurrent lookups need no lock.
var byName = func() map[string]*Spec {
	m := make(map[string]*Spec, len(table))
	for _, s := range table {
		s.Exec = boundReply(wrapWrongType(s.Exec))
		if _, dup := m[s.Name]; dup {
			panic("commands: duplicate command " + s.Name)
		}
		m[s.Name] = s
	}
	return m
}()

// maxNameLen is longer than any command name, so Lookup can lower-case a
// name into a fixed array on the stack.
const maxNameLen = 16

// Lookup returns the data command named name, in any letter case. It does
// not allocate.
func Lookup(name []byte) (*Spec, bool) {
	if len(name) > maxNameLen {
		return nil, false
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	// The compiler does not allocate for a map index by string(bytes).
	s, ok := byName[string(buf[:len(name)])]
	return s, ok
}

// All returns every data command, sorted by name. The Specs are shared and
// must not be modified.
func All() []*Spec {
	out := append([]*Spec(nil), table...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ArityOK is Redis's arity rule, the one copy every endpoint uses: a
// positive arity is the exact number of arguments n (the name included),
// a negative one -arity or more.
func ArityOK(arity, n int) bool {
	return (arity > 0 && n == arity) || (arity < 0 && n >= -arity)
}

// Check returns an *ArityError if args (the name included) do not fit
// spec's arity. Exec functions rely on it having passed.
func Check(spec *Spec, args [][]byte) error {
	if !ArityOK(spec.Arity, len(args)) {
		return &ArityError{Name: spec.Name}
	}
	if spec == FunctionWrite || spec == FunctionRead {
		_, err := CheckFunction(args)
		return err
	}
	return nil
}
