package commands

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// memView is an in-memory View: package keyspace's rows in a Layer over
// no rows, read through a keyspace.Reader at now, as the storage View is.
// lsn numbers the entries apply takes, the versions of the collections
// they create.
type memView struct {
	rows *keyspace.Layer
	now  int64
	lsn  uint64
}

func newMem(now int64) *memView {
	return &memView{rows: keyspace.NewLayer(keyspace.Empty{}), now: now, lsn: 1}
}

func (m *memView) r() keyspace.Reader {
	return keyspace.Reader{R: m.rows, NowMs: m.now, LSN: m.lsn}
}

func (m *memView) Get(key []byte) (Value, bool, error) { return m.r().Get(key) }
func (m *memView) Scan(start []byte, fn func([]byte, Value) bool) error {
	return m.r().Scan(start, fn)
}
func (m *memView) Sub(key []byte, ver uint64, sub []byte) ([]byte, bool, error) {
	return m.r().Sub(key, ver, sub)
}
func (m *memView) SubScan(key []byte, ver uint64, start []byte, fn func(sub, val []byte) bool) error {
	return m.r().SubScan(key, ver, start, fn)
}
func (m *memView) SubScanReverse(key []byte, ver uint64, end []byte, fn func(sub, val []byte) bool) error {
	return m.r().SubScanReverse(key, ver, end, fn)
}
func (m *memView) Rows() keyspace.Rows { return m.rows }
func (m *memView) Now() int64          { return m.now }
func (m *memView) NewVersion() uint64  { return m.lsn }

// apply applies a command's ops as the entry at m.lsn, as storage would.
func (m *memView) apply(ops []logrec.Op) {
	if len(ops) == 0 {
		return
	}
	if err := m.rows.ApplyOps(m.lsn, ops); err != nil {
		panic(err)
	}
	m.lsn++
}

func (m *memView) set(k, v string, exp int64) {
	m.apply([]logrec.Op{{Kind: logrec.OpPut, Key: []byte(k), Value: []byte(v), ExpireAtMs: exp}})
}

// raw is key's value whether or not it expired.
func (m *memView) raw(k string) Value {
	v, _, _ := m.r().GetAny([]byte(k))
	return v
}

func bargs(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// run looks the command up, checks arity and executes it, as the resp
// package does.
func run(ctx *Ctx, v View, args ...string) (Result, error) {
	spec, ok := Lookup([]byte(args[0]))
	if !ok {
		return Result{}, fmt.Errorf("unknown command %q", args[0])
	}
	a := bargs(args...)
	if err := Check(spec, a); err != nil {
		return Result{}, err
	}
	return spec.Exec(ctx, v, a)
}

const now = int64(1_700_000_000_000)

func put(k, v string, exp int64) logrec.Op {
	return logrec.Op{Kind: logrec.OpPut, Key: []byte(k), Value: []byte(v), ExpireAtMs: exp}
}

func del(k string) logrec.Op { return logrec.Op{Kind: logrec.OpDelete, Key: []byte(k)} }

type kv struct {
	k, v string
	exp  int64
}

func TestCommands(t *testing.T) {
	base := []kv{
		{"s", "hello", 0},
		{"n", "10", 0},
		{"nt", "10", now + 5000},
		{"t", "v", now + 10_000},
		{"gone", "x", now}, // expired exactly now: invisible
		{"big", strconv.FormatInt(math.MaxInt64, 10), 0},
		{"small", strconv.FormatInt(math.MinInt64, 10), 0},
		{"lead0", "01", 0},
		{"f", "10.5", 0},
	}
	tests := []struct {
		args  string // space-separated; "" inside quotes not needed by these cases
		reply Reply
		ops   []logrec.Op
		err   string // expected error text, "" for none
	}{
		// GET family.
		{args: "GET s", reply: Bulk("hello")},
		{args: "get missing", reply: Null},
		{args: "GET gone", reply: Null},
		{args: "MGET s missing n", reply: Array{Bulk("hello"), Null, Bulk("10")}},
		{args: "STRLEN s", reply: Int(5)},
		{args: "STRLEN missing", reply: Int(0)},
		{args: "EXISTS s s missing n gone", reply: Int(3)},
		{args: "TYPE s", reply: SimpleString("string")},
		{args: "TYPE gone", reply: SimpleString("none")},
		{args: "GETRANGE s 1 3", reply: Bulk("ell")},
		{args: "GETRANGE s -3 -1", reply: Bulk("llo")},
		{args: "GETRANGE s 0 100", reply: Bulk("hello")},
		{args: "GETRANGE s -1 -5", reply: Bulk{}},
		{args: "GETRANGE missing 0 -1", reply: Bulk{}},
		{args: "GETRANGE s a 1", err: "value is not an integer or out of range"},

		// TTL family: Redis rounds seconds to the nearest.
		{args: "TTL missing", reply: Int(-2)},
		{args: "TTL s", reply: Int(-1)},
		{args: "TTL t", reply: Int(10)},
		{args: "PTTL t", reply: Int(10_000)},
		{args: "PTTL gone", reply: Int(-2)},
		{args: "EXPIRETIME t", reply: Int((now + 10_000) / 1000)},
		{args: "PEXPIRETIME t", reply: Int(now + 10_000)},
		{args: "PEXPIRETIME s", reply: Int(-1)},

		// SET and its options.
		{args: "SET k v", reply: OK, ops: []logrec.Op{put("k", "v", 0)}},
		{args: "SET t new", reply: OK, ops: []logrec.Op{put("t", "new", 0)}},
		{args: "SET t new KEEPTTL", reply: OK, ops: []logrec.Op{put("t", "new", now+10_000)}},
		{args: "SET k v KEEPTTL", reply: OK, ops: []logrec.Op{put("k", "v", 0)}},
		{args: "SET k v EX 10", reply: OK, ops: []logrec.Op{put("k", "v", now+10_000)}},
		{args: "set k v px 1500", reply: OK, ops: []logrec.Op{put("k", "v", now+1500)}},
		{args: "SET k v EXAT 1800000000", reply: OK, ops: []logrec.Op{put("k", "v", 1_800_000_000_000)}},
		{args: "SET k v PXAT 1800000000123", reply: OK, ops: []logrec.Op{put("k", "v", 1_800_000_000_123)}},
		{args: "SET s v PXAT 1000", reply: OK, ops: []logrec.Op{del("s")}},
		{args: "SET k v EX 10 EX 20", reply: OK, ops: []logrec.Op{put("k", "v", now+20_000)}},
		{args: "SET k v NX", reply: OK, ops: []logrec.Op{put("k", "v", 0)}},
		{args: "SET s v NX", reply: Null},
		{args: "SET gone v NX", reply: OK, ops: []logrec.Op{put("gone", "v", 0)}},
		{args: "SET s v XX", reply: OK, ops: []logrec.Op{put("s", "v", 0)}},
		{args: "SET k v XX", reply: Null},
		{args: "SET s v GET", reply: Bulk("hello"), ops: []logrec.Op{put("s", "v", 0)}},
		{args: "SET k v GET", reply: Null, ops: []logrec.Op{put("k", "v", 0)}},
		{args: "SET s v NX GET", reply: Bulk("hello")},
		{args: "SET k v XX GET", reply: Null},
		{args: "SET k v NX XX", err: "syntax error"},
		{args: "SET k v XX NX", err: "syntax error"},
		{args: "SET k v EX 10 PX 10", err: "syntax error"},
		{args: "SET k v EX 10 KEEPTTL", err: "syntax error"},
		{args: "SET k v KEEPTTL EX 10", err: "syntax error"},
		{args: "SET k v EX", err: "syntax error"},
		{args: "SET k v FOO", err: "syntax error"},
		{args: "SET k v PERSIST", err: "syntax error"},
		{args: "SET k v EX 0", err: "invalid expire time in 'set' command"},
		{args: "SET k v EX -5", err: "invalid expire time in 'set' command"},
		{args: "SET k v PX 0", err: "invalid expire time in 'set' command"},
		{args: "SET k v EX 9223372036854776", err: "invalid expire time in 'set' command"},
		{args: "SET k v PX 9223372036854775807", err: "invalid expire time in 'set' command"},
		{args: "SET k v EX abc", err: "value is not an integer or out of range"},
		{args: "SET k v EX 01", err: "value is not an integer or out of range"},
		{args: "SET k v EX abc FOO", err: "syntax error"},
		{args: "SETNX k v", reply: Int(1), ops: []logrec.Op{put("k", "v", 0)}},
		{args: "SETNX s v", reply: Int(0)},
		{args: "SETEX k 5 v", reply: OK, ops: []logrec.Op{put("k", "v", now+5000)}},
		{args: "SETEX k 0 v", err: "invalid expire time in 'setex' command"},
		{args: "SETEX k x v", err: "value is not an integer or out of range"},
		{args: "PSETEX k 5 v", reply: OK, ops: []logrec.Op{put("k", "v", now+5)}},
		{args: "PSETEX k -1 v", err: "invalid expire time in 'psetex' command"},
		{args: "GETSET t new", reply: Bulk("v"), ops: []logrec.Op{put("t", "new", 0)}},
		{args: "GETSET k new", reply: Null, ops: []logrec.Op{put("k", "new", 0)}},
		{args: "GETDEL s", reply: Bulk("hello"), ops: []logrec.Op{del("s")}},
		{args: "GETDEL missing", reply: Null},
		{args: "GETEX t", reply: Bulk("v")},
		{args: "GETEX t PERSIST", reply: Bulk("v"), ops: []logrec.Op{put("t", "v", 0)}},
		{args: "GETEX s PERSIST", reply: Bulk("hello")},
		{args: "GETEX s EX 5", reply: Bulk("hello"), ops: []logrec.Op{put("s", "hello", now+5000)}},
		{args: "GETEX s PXAT 5", reply: Bulk("hello"), ops: []logrec.Op{del("s")}},
		{args: "GETEX missing EX 5", reply: Null},
		{args: "GETEX s NX", err: "syntax error"},
		{args: "GETEX s EX 5 PERSIST", err: "syntax error"},

		// MSET: a key named twice ends with its last value, in one op.
		{args: "MSET a 1 b 2 a 3", reply: OK, ops: []logrec.Op{put("a", "3", 0), put("b", "2", 0)}},
		{args: "MSET t x", reply: OK, ops: []logrec.Op{put("t", "x", 0)}},
		{args: "MSET a 1 b", err: "wrong number of arguments for 'mset' command"},
		{args: "MSETNX a 1 a 2", reply: Int(1), ops: []logrec.Op{put("a", "2", 0)}},
		{args: "MSETNX a 1 s 2", reply: Int(0)},

		// INCR family: the op carries the new number and keeps the TTL.
		{args: "INCR n", reply: Int(11), ops: []logrec.Op{put("n", "11", 0)}},
		{args: "INCR nt", reply: Int(11), ops: []logrec.Op{put("nt", "11", now+5000)}},
		{args: "INCR missing", reply: Int(1), ops: []logrec.Op{put("missing", "1", 0)}},
		{args: "INCR gone", reply: Int(1), ops: []logrec.Op{put("gone", "1", 0)}},
		{args: "DECR n", reply: Int(9), ops: []logrec.Op{put("n", "9", 0)}},
		{args: "INCRBY n -20", reply: Int(-10), ops: []logrec.Op{put("n", "-10", 0)}},
		{args: "DECRBY n 3", reply: Int(7), ops: []logrec.Op{put("n", "7", 0)}},
		{args: "INCR s", err: "value is not an integer or out of range"},
		{args: "INCR lead0", err: "value is not an integer or out of range"},
		{args: "INCRBY n x", err: "value is not an integer or out of range"},
		{args: "INCRBY n +1", err: "value is not an integer or out of range"},
		{args: "INCRBY n 1.5", err: "value is not an integer or out of range"},
		{args: "INCRBY n 99999999999999999999", err: "value is not an integer or out of range"},
		{args: "INCR big", err: "increment or decrement would overflow"},
		{args: "INCRBY big 0", reply: Int(math.MaxInt64), ops: []logrec.Op{put("big", strconv.FormatInt(math.MaxInt64, 10), 0)}},
		{args: "DECR small", err: "increment or decrement would overflow"},
		{args: "DECRBY n -9223372036854775808", err: "decrement would overflow"},
		{args: "INCRBY small -1", err: "increment or decrement would overflow"},
		{args: "INCRBY small 9223372036854775807", reply: Int(-1), ops: []logrec.Op{put("small", "-1", 0)}},
		{args: "INCRBYFLOAT f 0.1", reply: Bulk("10.6"), ops: []logrec.Op{put("f", "10.6", 0)}},
		{args: "INCRBYFLOAT missing 0.1", reply: Bulk("0.1"), ops: []logrec.Op{put("missing", "0.1", 0)}},
		{args: "INCRBYFLOAT n -10", reply: Bulk("0"), ops: []logrec.Op{put("n", "0", 0)}},
		{args: "INCRBYFLOAT nt 5.0e3", reply: Bulk("5010"), ops: []logrec.Op{put("nt", "5010", now+5000)}},
		{args: "INCRBYFLOAT s 1", err: "value is not a valid float"},
		{args: "INCRBYFLOAT n abc", err: "value is not a valid float"},
		{args: "INCRBYFLOAT n inf", err: "increment would produce NaN or Infinity"},

		// APPEND and SETRANGE keep the TTL of an existing key.
		{args: "APPEND t x", reply: Int(2), ops: []logrec.Op{put("t", "vx", now+10_000)}},
		{args: "APPEND k abc", reply: Int(3), ops: []logrec.Op{put("k", "abc", 0)}},
		{args: "SETRANGE s 1 EY", reply: Int(5), ops: []logrec.Op{put("s", "hEYlo", 0)}},
		{args: "SETRANGE t 3 x", reply: Int(4), ops: []logrec.Op{put("t", "v\x00\x00x", now+10_000)}},
		{args: "SETRANGE k 2 x", reply: Int(3), ops: []logrec.Op{put("k", "\x00\x00x", 0)}},
		{args: "SETRANGE s -1 x", err: "offset is out of range"},
		{args: "SETRANGE s 536870912 x", err: "string exceeds maximum allowed size (proto-max-bulk-len)"},

		// DEL counts each key once even when named twice.
		{args: "DEL s s missing n gone", reply: Int(2), ops: []logrec.Op{del("s"), del("n")}},
		{args: "UNLINK t", reply: Int(1), ops: []logrec.Op{del("t")}},
		{args: "DEL missing", reply: Int(0)},

		// EXPIRE family.
		{args: "EXPIRE s 100", reply: Int(1), ops: []logrec.Op{put("s", "hello", now+100_000)}},
		{args: "PEXPIRE s 100", reply: Int(1), ops: []logrec.Op{put("s", "hello", now+100)}},
		{args: "EXPIREAT s 1800000000", reply: Int(1), ops: []logrec.Op{put("s", "hello", 1_800_000_000_000)}},
		{args: "PEXPIREAT s 1800000000001", reply: Int(1), ops: []logrec.Op{put("s", "hello", 1_800_000_000_001)}},
		{args: "EXPIRE s 0", reply: Int(1), ops: []logrec.Op{del("s")}},
		{args: "EXPIRE s -10", reply: Int(1), ops: []logrec.Op{del("s")}},
		{args: "PEXPIREAT s " + strconv.FormatInt(now, 10), reply: Int(1), ops: []logrec.Op{del("s")}},
		{args: "EXPIRE missing 10", reply: Int(0)},
		{args: "EXPIRE gone 10", reply: Int(0)},
		{args: "EXPIRE s 10 NX", reply: Int(1), ops: []logrec.Op{put("s", "hello", now+10_000)}},
		{args: "EXPIRE t 10 NX", reply: Int(0)},
		{args: "EXPIRE s 10 XX", reply: Int(0)},
		{args: "EXPIRE t 20 XX", reply: Int(1), ops: []logrec.Op{put("t", "v", now+20_000)}},
		{args: "EXPIRE t 20 GT", reply: Int(1), ops: []logrec.Op{put("t", "v", now+20_000)}},
		{args: "EXPIRE t 5 GT", reply: Int(0)},
		{args: "EXPIRE s 5 GT", reply: Int(0)},
		{args: "EXPIRE t 5 LT", reply: Int(1), ops: []logrec.Op{put("t", "v", now+5000)}},
		{args: "EXPIRE t 20 LT", reply: Int(0)},
		{args: "EXPIRE s 5 LT", reply: Int(1), ops: []logrec.Op{put("s", "hello", now+5000)}},
		{args: "EXPIRE t 20 xx gt", reply: Int(1), ops: []logrec.Op{put("t", "v", now+20_000)}},
		{args: "EXPIRE s 10 NX XX", err: "NX and XX, GT or LT options at the same time are not compatible"},
		{args: "EXPIRE s 10 GT LT", err: "GT and LT options at the same time are not compatible"},
		{args: "EXPIRE s 10 FOO", err: "Unsupported option FOO"},
		{args: "EXPIRE s ten", err: "value is not an integer or out of range"},
		{args: "EXPIRE s 9223372036854776", err: "invalid expire time in 'expire' command"},
		{args: "PEXPIRE s 9223372036854775807", err: "invalid expire time in 'pexpire' command"},
		{args: "PERSIST t", reply: Int(1), ops: []logrec.Op{put("t", "v", 0)}},
		{args: "PERSIST s", reply: Int(0)},
		{args: "PERSIST missing", reply: Int(0)},

		// RENAME carries the TTL.
		{args: "RENAME t u", reply: OK, ops: []logrec.Op{put("u", "v", now+10_000), del("t")}},
		{args: "RENAME missing u", err: "no such key"},
		{args: "RENAME s s", reply: OK},
		{args: "RENAMENX t s", reply: Int(0)},
		{args: "RENAMENX t u", reply: Int(1), ops: []logrec.Op{put("u", "v", now+10_000), del("t")}},

		// Key-space commands.
		{args: "DBSIZE", reply: Int(8)},
		{args: "KEYS *", reply: Array{Bulk("big"), Bulk("f"), Bulk("lead0"), Bulk("n"), Bulk("nt"), Bulk("s"), Bulk("small"), Bulk("t")}},
		{args: "KEYS n*", reply: Array{Bulk("n"), Bulk("nt")}},
		{args: "KEYS ?", reply: Array{Bulk("f"), Bulk("n"), Bulk("s"), Bulk("t")}},
		{args: "KEYS [a-f]*", reply: Array{Bulk("big"), Bulk("f")}},
		{args: "KEYS nomatch*", reply: Array{}},
		{args: "SCAN 0 COUNT 100 MATCH s*", reply: Array{Bulk("0"), Array{Bulk("s"), Bulk("small")}}},
		{args: "SCAN 0 COUNT 100 TYPE hash", reply: Array{Bulk("0"), Array{}}},
		{args: "SCAN 0 COUNT 0", err: "syntax error"},
		{args: "SCAN 0 COUNT x", err: "value is not an integer or out of range"},
		{args: "SCAN 0 COUNT", err: "syntax error"},
		{args: "SCAN 0 FOO bar", err: "syntax error"},
		{args: "SCAN x", err: "invalid cursor"},
		{args: "SCAN -1", err: "invalid cursor"},
		{args: "SCAN 12345", err: "invalid cursor"},
		{args: "FLUSHALL", reply: OK, ops: []logrec.Op{{Kind: logrec.OpFlushAll}}}, // one small op, whatever the size
		{args: "FLUSHDB NOW", err: "syntax error"},
	}
	for _, tc := range tests {
		t.Run(tc.args, func(t *testing.T) {
			v := newMem(now)
			for _, e := range base {
				v.set(e.k, e.v, e.exp)
			}
			ctx := &Ctx{NowMs: now, Cursors: NewCursorTable(16)}
			res, err := run(ctx, v, strings.Fields(tc.args)...)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if !IsInputError(err) {
					t.Fatalf("error %v is not an input error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(res.Reply, tc.reply) {
				t.Errorf("reply %#v, want %#v", res.Reply, tc.reply)
			}
			if len(res.Ops) != 0 || len(tc.ops) != 0 {
				if !reflect.DeepEqual(res.Ops, tc.ops) {
					t.Errorf("ops %v, want %v", fmtOps(res.Ops), fmtOps(tc.ops))
				}
			}
		})
	}
}

func fmtOps(ops []logrec.Op) string {
	var sb strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&sb, "{%s %q %q %d} ", op.Kind, op.Key, op.Value, op.ExpireAtMs)
	}
	return sb.String()
}

func TestInvalidExpireIsSentinel(t *testing.T) {
	_, err := run(&Ctx{NowMs: now}, newMem(now), "SET", "k", "v", "EX", "0")
	if !errors.Is(err, ErrInvalidExpire) {
		t.Fatalf("errors.Is(%v, ErrInvalidExpire) = false", err)
	}
	if errors.Is(err, ErrSyntax) {
		t.Fatal("invalid expire matches ErrSyntax")
	}
}

func TestArity(t *testing.T) {
	tests := []struct {
		args string
		err  string
	}{
		{"GET", "wrong number of arguments for 'get' command"},
		{"get a b", "wrong number of arguments for 'get' command"},
		{"SET k", "wrong number of arguments for 'set' command"},
		{"MGET", "wrong number of arguments for 'mget' command"},
		{"DEL", "wrong number of arguments for 'del' command"},
		{"MSET k", "wrong number of arguments for 'mset' command"},
		{"EXPIRE k", "wrong number of arguments for 'expire' command"},
		{"DBSIZE x", "wrong number of arguments for 'dbsize' command"},
		{"SCAN", "wrong number of arguments for 'scan' command"},
		{"INCRBY k", "wrong number of arguments for 'incrby' command"},
		{"SETEX k 1", "wrong number of arguments for 'setex' command"},
	}
	for _, tc := range tests {
		_, err := run(&Ctx{NowMs: now}, newMem(now), strings.Fields(tc.args)...)
		var ae *ArityError
		if !errors.As(err, &ae) || err.Error() != tc.err {
			t.Errorf("%s: error %v, want ArityError %q", tc.args, err, tc.err)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, name := range []string{"get", "GET", "gEt"} {
		if s, ok := Lookup([]byte(name)); !ok || s.Name != "get" {
			t.Errorf("Lookup(%q) = %v, %v", name, s, ok)
		}
	}
	for _, name := range []string{"", "nosuch", "getx", strings.Repeat("g", 100), "ping"} {
		if _, ok := Lookup([]byte(name)); ok {
			t.Errorf("Lookup(%q) found a command", name)
		}
	}
	name := []byte("SeT")
	if n := testing.AllocsPerRun(100, func() { Lookup(name) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
	for _, s := range All() {
		if s.Flags&(FlagRead|FlagWrite) == 0 || s.Exec == nil || s.Arity == 0 || s.Name != strings.ToLower(s.Name) {
			t.Errorf("bad spec %+v", s)
		}
	}
}

// TestRowFormReplay checks the row-form contract on sequences: applying each
// command's ops to the state gives what the command's replies say.
func TestRowFormReplay(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	steps := []struct {
		args  string
		reply Reply
	}{
		{"SET a 1", OK},
		{"INCR a", Int(2)},
		{"INCRBY a 40", Int(42)},
		{"APPEND a x", Int(3)},
		{"GET a", Bulk("42x")},
		{"MSET a 1 a 2 b 3 a 4", OK},
		{"GET a", Bulk("4")},
		{"EXPIRE a 100", Int(1)},
		{"INCR a", Int(5)},
		{"TTL a", Int(100)},
		{"SET a 9", OK},
		{"TTL a", Int(-1)},
		{"EXPIRE a 10", Int(1)},
		{"SET a 10 KEEPTTL", OK},
		{"PTTL a", Int(10_000)},
		{"PERSIST a", Int(1)},
		{"TTL a", Int(-1)},
		{"EXPIRE a 0", Int(1)},
		{"EXISTS a b", Int(1)},
		{"DEL a b b", Int(1)},
		{"DBSIZE", Int(0)},
	}
	for _, st := range steps {
		res, err := run(ctx, v, strings.Fields(st.args)...)
		if err != nil {
			t.Fatalf("%s: %v", st.args, err)
		}
		if !reflect.DeepEqual(res.Reply, st.reply) {
			t.Fatalf("%s: reply %#v, want %#v", st.args, res.Reply, st.reply)
		}
		v.apply(res.Ops)
	}
}

// TestManyKeysOneCommand crosses txn's switch from linear search to a map.
func TestManyKeysOneCommand(t *testing.T) {
	v := newMem(now)
	args := []string{"MSET"}
	for i := range 50 {
		args = append(args, fmt.Sprintf("k%d", i%20), strconv.Itoa(i))
	}
	res, err := run(&Ctx{NowMs: now}, v, args...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ops) != 20 {
		t.Fatalf("%d ops, want 20", len(res.Ops))
	}
	v.apply(res.Ops)
	for i := range 20 {
		want := strconv.Itoa(40 + i) // pair j writes k<j%20>; the last is 40+i or 20+i
		if i >= 10 {
			want = strconv.Itoa(20 + i)
		}
		if got := string(v.raw(fmt.Sprintf("k%d", i)).Data); got != want {
			t.Errorf("k%d = %s, want %s", i, got, want)
		}
	}
	delArgs := []string{"DEL"}
	for i := range 40 {
		delArgs = append(delArgs, fmt.Sprintf("k%d", i%25))
	}
	res, err = run(&Ctx{NowMs: now}, v, delArgs...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reply != Int(20) || len(res.Ops) != 20 {
		t.Fatalf("DEL reply %v with %d ops, want 20 and 20", res.Reply, len(res.Ops))
	}
}

func TestTTLRounding(t *testing.T) {
	tests := []struct {
		left int64 // ms until expiry
		ttl  int64
	}{
		{10_000, 10}, {9_501, 10}, {9_500, 10}, {9_499, 9}, {499, 0}, {500, 1}, {1, 0},
	}
	for _, tc := range tests {
		v := newMem(now)
		v.set("k", "v", now+tc.left)
		res, err := run(&Ctx{NowMs: now}, v, "TTL", "k")
		if err != nil || res.Reply != Int(tc.ttl) {
			t.Errorf("TTL with %dms left = %v, %v; want %d", tc.left, res.Reply, err, tc.ttl)
		}
	}
}

func TestScanEveryKeyOnce(t *testing.T) {
	v := newMem(now)
	const n = 1000
	for i := range n {
		v.set(fmt.Sprintf("key:%04d", i), "x", 0)
		v.set(fmt.Sprintf("other:%04d", i), "x", 0)
	}
	for _, tc := range []struct {
		opts []string
		want int
	}{
		{nil, 2 * n},
		{[]string{"COUNT", "7"}, 2 * n},
		{[]string{"COUNT", "1"}, 2 * n},
		{[]string{"COUNT", "100", "MATCH", "key:*"}, n},
		{[]string{"MATCH", "*:00[0-4]?", "COUNT", "33"}, 100},
	} {
		ctx := &Ctx{NowMs: now, Cursors: NewCursorTable(8)}
		seen := map[string]int{}
		cursor := "0"
		calls := 0
		for {
			res, err := run(ctx, v, append([]string{"SCAN", cursor}, tc.opts...)...)
			if err != nil {
				t.Fatalf("%v: %v", tc.opts, err)
			}
			calls++
			page := res.Reply.(Array)
			cursor = string(page[0].(Bulk))
			for _, k := range page[1].(Array) {
				seen[string(k.(Bulk))]++
			}
			if cursor == "0" {
				break
			}
			if _, err := strconv.ParseUint(cursor, 10, 64); err != nil {
				t.Fatalf("cursor %q is not a uint64", cursor)
			}
			if calls > 3*n {
				t.Fatal("scan does not terminate")
			}
		}
		if len(seen) != tc.want {
			t.Errorf("%v: saw %d keys, want %d", tc.opts, len(seen), tc.want)
		}
		for k, c := range seen {
			if c != 1 {
				t.Errorf("%v: key %s returned %d times", tc.opts, k, c)
			}
		}
	}
}

func TestScanWithoutCursorTable(t *testing.T) {
	v := newMem(now)
	for i := range 50 {
		v.set(strconv.Itoa(i), "x", 0)
	}
	res, err := run(&Ctx{NowMs: now}, v, "SCAN", "0", "COUNT", "5")
	if err != nil {
		t.Fatal(err)
	}
	page := res.Reply.(Array)
	if string(page[0].(Bulk)) != "0" || len(page[1].(Array)) != 50 {
		t.Fatalf("got cursor %s and %d keys, want 0 and 50", page[0], len(page[1].(Array)))
	}
}

func TestCursorTable(t *testing.T) {
	ct := NewCursorTable(3)
	ids := make([]uint64, 5)
	for i := range ids {
		ids[i] = ct.Put([]byte{byte('a' + i)})
		if ids[i] == 0 {
			t.Fatal("cursor id 0 issued")
		}
	}
	for i, id := range ids {
		k, ok := ct.Get(id)
		if i < 2 && ok {
			t.Errorf("cursor %d survived eviction", i)
		}
		if i >= 2 && (!ok || k[0] != byte('a'+i)) {
			t.Errorf("cursor %d = %q, %v", i, k, ok)
		}
	}
	if ct.Len() != 3 {
		t.Errorf("Len = %d, want 3", ct.Len())
	}
	// Another table's ids are unknown here.
	if _, ok := NewCursorTable(3).Get(ids[4]); ok {
		t.Error("a fresh table knows a foreign cursor")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true},
		{"*", "abc", true},
		{"", "", true},
		{"", "a", false},
		{"a*", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*a*b*c*", "xaybzc", true},
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hello", false},
		{`a\`, `a\`, true},
		{`[\]]`, "]", true},
		{"[]a", "a", false},
		{"[abc", "b", true},
		{"[a-]", "]", true},
		{"a[", "a", false},
		{"*?", "", false},
		{"*??*", "ab", true},
		{"**a", "a", true},
		{"aA", "aa", false},
		{strings.Repeat("a*", 30) + "b", strings.Repeat("a", 60), false},
	}
	for _, tc := range tests {
		if got := Match([]byte(tc.pat), []byte(tc.s)); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

func TestParseInt(t *testing.T) {
	good := map[string]int64{"0": 0, "1": 1, "-1": -1, "9223372036854775807": math.MaxInt64, "-9223372036854775808": math.MinInt64}
	for s, want := range good {
		if got, ok := parseInt([]byte(s)); !ok || got != want {
			t.Errorf("parseInt(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "-", "+1", "01", "-0", " 1", "1 ", "1a", "9223372036854775808", "-9223372036854775809", "99999999999999999999999"} {
		if _, ok := parseInt([]byte(s)); ok {
			t.Errorf("parseInt(%q) accepted", s)
		}
	}
}

func TestIncrByFloatFormatting(t *testing.T) {
	tests := []struct{ start, incr, want string }{
		{"0.1", "0.2", "0.3"},
		{"10.50", "0.1", "10.6"},
		{"5.0e3", "2.0e2", "5200"},
		{"3", "-3", "0"},
		{"-1.5", "0.5", "-1"},
		{"1e18", "1", "1000000000000000001"},   // exact in a 64-bit mantissa
		{"1e20", "1", "100000000000000000000"}, // past it, as on x86 Redis
	}
	for _, tc := range tests {
		v := newMem(now)
		v.set("k", tc.start, 0)
		res, err := run(&Ctx{NowMs: now}, v, "INCRBYFLOAT", "k", tc.incr)
		if err != nil || string(res.Reply.(Bulk)) != tc.want {
			t.Errorf("%s + %s = %v, %v; want %s", tc.start, tc.incr, res.Reply, err, tc.want)
		}
	}
}

func BenchmarkSet(b *testing.B) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	args := bargs("SET", "key:000001", "xxx")
	b.ReportAllocs()
	for b.Loop() {
		spec, _ := Lookup(args[0])
		if err := Check(spec, args); err != nil {
			b.Fatal(err)
		}
		if _, err := spec.Exec(ctx, v, args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	v := newMem(now)
	v.set("key:000001", "xxx", 0)
	ctx := &Ctx{NowMs: now}
	args := bargs("GET", "key:000001")
	b.ReportAllocs()
	for b.Loop() {
		spec, _ := Lookup(args[0])
		if _, err := spec.Exec(ctx, v, args); err != nil {
			b.Fatal(err)
		}
	}
}

// countedView is a View that knows its key count (as storage's does).
type countedView struct {
	*memView
	n int64
}

func (v countedView) KeyCount() int64 { return v.n }

// TestDBSizeCounted: DBSIZE answers from a KeyCounter view's count (O(1),
// no scan), and scans any other view.
func TestDBSizeCounted(t *testing.T) {
	v := newMem(now)
	v.apply([]logrec.Op{put("a", "1", 0), put("b", "2", 0)})
	ctx := &Ctx{NowMs: now}
	for _, tc := range []struct {
		v    View
		want Reply
	}{{v, Int(2)}, {countedView{v, 7}, Int(7)}} {
		res, err := run(ctx, tc.v, "DBSIZE")
		if err != nil || !reflect.DeepEqual(res.Reply, tc.want) {
			t.Errorf("%T: DBSIZE %#v, %v; want %#v", tc.v, res.Reply, err, tc.want)
		}
	}
}

// TestMSetAllocations: MSET of redis-benchmark's 10 keys allocates its
// ops and its duplicate index (past linearMax keys), not a copy of each
// key for the index: that was 10 of its 15 allocations.
func TestMSetAllocations(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	args := [][]byte{[]byte("MSET")}
	for i := range 10 {
		args = append(args, fmt.Appendf(nil, "key:%012d", i), []byte(strings.Repeat("x", 100)))
	}
	n := testing.AllocsPerRun(100, func() {
		res, err := execMSet(ctx, v, args)
		if err != nil || len(res.Ops) != 10 {
			t.Fatalf("MSET: %d ops, %v", len(res.Ops), err)
		}
	})
	if n > 5 {
		t.Errorf("MSET of 10 keys: %v allocations, want at most 5", n)
	}
	// A key given twice is still one op holding the last value.
	dup := append(append([][]byte{}, args...), args[1], []byte("last"))
	res, err := execMSet(ctx, v, dup)
	if err != nil || len(res.Ops) != 10 || string(res.Ops[0].Value) != "last" {
		t.Errorf("MSET with key 0 twice: %d ops, first %q, %v", len(res.Ops), res.Ops[0].Value, err)
	}
}
