package commands

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// do runs a command on v and applies its ops, as the leader would.
func do(t *testing.T, v *memView, args ...string) Reply {
	t.Helper()
	res, err := run(&Ctx{NowMs: v.now, Cursors: NewCursorTable(16)}, v, args...)
	if err != nil {
		return ErrorReply("ERR " + err.Error())
	}
	v.apply(res.Ops)
	return asArray(res.Reply)
}

// asArray is r with a Bulks reply as the Array of Bulk it stands for (the
// same bytes on the wire), so that tests compare either with Array values.
func asArray(r Reply) Reply {
	b, ok := r.(Bulks)
	if !ok {
		return r
	}
	out := make(Array, len(b))
	for i, e := range b {
		out[i] = Bulk(e)
	}
	return out
}

func TestHashCommands(t *testing.T) {
	v := newMem(1000)
	steps := []struct {
		args string
		want Reply
	}{
		{"HSET h a 1 b 2", Int(2)},
		{"HSET h a 10 c 3", Int(1)},
		{"HGET h a", Bulk("10")},
		{"HGET h zz", Null},
		{"HGET nokey a", Null},
		{"HMGET h a zz c", Array{Bulk("10"), Null, Bulk("3")}},
		{"HMGET nokey a", Array{Null}},
		{"HLEN h", Int(3)},
		{"HLEN nokey", Int(0)},
		{"HEXISTS h b", Int(1)},
		{"HEXISTS h zz", Int(0)},
		{"HSTRLEN h a", Int(2)},
		{"HSTRLEN h zz", Int(0)},
		{"HGETALL h", Map{Bulk("a"), Bulk("10"), Bulk("b"), Bulk("2"), Bulk("c"), Bulk("3")}},
		{"HGETALL nokey", Map{}},
		{"HKEYS h", Array{Bulk("a"), Bulk("b"), Bulk("c")}},
		{"HVALS h", Array{Bulk("10"), Bulk("2"), Bulk("3")}},
		{"HSETNX h a 99", Int(0)},
		{"HSETNX h d 4", Int(1)},
		{"HSETNX h2 x y", Int(1)},
		{"HDEL h a zz a", Int(1)},
		{"HLEN h", Int(3)},
		{"HINCRBY h n 5", Int(5)},
		{"HINCRBY h n -7", Int(-2)},
		{"HINCRBY h b x", ErrorReply("ERR value is not an integer or out of range")},
		{"HSET h s abc", Int(1)},
		{"HINCRBY h s 1", ErrorReply("ERR hash value is not an integer")},
		{"HSET h big 9223372036854775807", Int(1)},
		{"HINCRBY h big 1", ErrorReply("ERR increment or decrement would overflow")},
		{"HINCRBYFLOAT h f 10.5", Bulk("10.5")},
		{"HINCRBYFLOAT h f 0.1", Bulk("10.6")},
		{"HINCRBYFLOAT h s 1", ErrorReply("ERR hash value is not a float")},
		{"HINCRBYFLOAT h f x", ErrorReply("ERR value is not a valid float")},
		{"HINCRBYFLOAT h f +inf", ErrorReply("ERR value is NaN or Infinity")},
		{"TYPE h", SimpleString("hash")},
		{"TYPE nokey", SimpleString("none")},
		{"SET str v", OK},
		{"TYPE str", SimpleString("string")},
		{"HGET str a", WrongType},
		{"HSET str a 1", WrongType},
		{"HLEN str", WrongType},
		{"HGETALL str", WrongType},
		{"GET h", WrongType},
		{"INCR h", WrongType},
		{"APPEND h x", WrongType},
		{"STRLEN h", WrongType},
		{"GETSET h x", WrongType},
		{"SET h x GET", WrongType},
		{"MGET h str", Array{Null, Bulk("v")}},
		{"EXISTS h h2 str nokey", Int(3)},
		{"HSET h a", ErrorReply("ERR wrong number of arguments for 'hset' command")},
		{"HMSET h a", ErrorReply("ERR wrong number of arguments for 'hmset' command")},
		{"HMSET h2 p 1 q 2", OK},
		{"HRANDFIELD nokey", Null},
		{"HRANDFIELD nokey 3", Array{}},
		{"HRANDFIELD h2 0", Array{}},
		{"HRANDFIELD h2 1 withvalues x", ErrorReply("ERR syntax error")},
		{"HRANDFIELD h2 -9223372036854775807 withvalues", ErrorReply("ERR value is out of range")},
		{"HSCAN nokey 0", Array{Bulk("0"), Array{}}},
		{"HSCAN h2 0 MATCH p*", Array{Bulk("0"), Array{Bulk("p"), Bulk("1")}}},
		{"HSCAN h2 0 COUNT 0", ErrorReply("ERR syntax error")},
		{"HSCAN h2 x", ErrorReply("ERR invalid cursor")},
		{"RENAME h2 h3", OK},
		{"HGETALL h3", Map{Bulk("p"), Bulk("1"), Bulk("q"), Bulk("2"), Bulk("x"), Bulk("y")}},
		{"EXISTS h2", Int(0)},
		{"EXPIRE h3 100", Int(1)},
		{"TTL h3", Int(100)},
		{"PERSIST h3", Int(1)},
		{"TTL h3", Int(-1)},
		{"DEL h3", Int(1)},
		{"HGETALL h3", Map{}},
		{"HSET h3 z 1", Int(1)},
		{"HGETALL h3", Map{Bulk("z"), Bulk("1")}}, // no field of the old h3 comes back
		{"SET h3 s", OK},                          // over the hash, without reading it
		{"HSET h3 w 1", WrongType},
		{"DEL h3", Int(1)},
		{"HSET h3 w 1", Int(1)},
		{"HGETALL h3", Map{Bulk("w"), Bulk("1")}}, // nor of the hash SET replaced
		{"HDEL h3 w", Int(1)},
		{"EXISTS h3", Int(0)}, // the last field took the key with it
		{"SCAN 0 TYPE hash", Array{Bulk("0"), Array{Bulk("h")}}},
		{"FLUSHALL", OK},
		{"HGETALL h", Map{}},
	}
	for _, s := range steps {
		if got := do(t, v, strings.Fields(s.args)...); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s = %#v, want %#v", s.args, got, s.want)
		}
	}
}

// TestHashOpsPerField: a write logs the fields it changes, never the hash:
// one field on a hash of 1000 is one op (two when the size changes).
func TestHashOpsPerField(t *testing.T) {
	v := newMem(1000)
	args := []string{"HSET", "h"}
	for i := range 1000 {
		args = append(args, fmt.Sprintf("f%d", i), "v")
	}
	do(t, v, args...)
	for _, tc := range []struct {
		args  string
		kinds []logrec.OpKind
	}{
		{"HSET h f5 new", []logrec.OpKind{logrec.OpSubPut}},
		{"HSET h extra 1", []logrec.OpKind{logrec.OpSubPut, logrec.OpMeta}},
		{"HDEL h f7", []logrec.OpKind{logrec.OpSubDel, logrec.OpMeta}},
		{"HINCRBY h n 1", []logrec.OpKind{logrec.OpSubPut, logrec.OpMeta}},
		{"EXPIRE h 10", []logrec.OpKind{logrec.OpMeta}},
		{"DEL h", []logrec.OpKind{logrec.OpDrop}},
	} {
		res, err := run(&Ctx{NowMs: v.now}, v, strings.Fields(tc.args)...)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []logrec.OpKind
		for _, op := range res.Ops {
			kinds = append(kinds, op.Kind)
		}
		if !slices.Equal(kinds, tc.kinds) {
			t.Errorf("%s logs %v, want %v", tc.args, kinds, tc.kinds)
		}
		v.apply(res.Ops)
	}
}

// hashModel is the obvious hash semantics: maps, and strings beside them.
type hashModel struct {
	hashes  map[string]map[string]string
	strings map[string]string
}

// TestHashModel runs random hash, string and key commands on a few keys
// against the model, checking every reply and, after each command, every
// key's full contents.
func TestHashModel(t *testing.T) {
	keys := []string{"a", "b", "c"}
	fields := []string{"x", "y", "z", "w"}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		v := newMem(1000)
		m := hashModel{hashes: map[string]map[string]string{}, strings: map[string]string{}}
		pick := func(s []string) string { return s[r.IntN(len(s))] }
		var history []string
		for range 40 {
			k, f, val := pick(keys), pick(fields), strconv.Itoa(r.IntN(50))
			var args []string
			var want Reply
			h, isHash := m.hashes[k]
			_, isString := m.strings[k]
			switch r.IntN(9) {
			case 0, 1:
				f2 := pick(fields)
				args = []string{"HSET", k, f, val, f2, val}
				if isString {
					want = WrongType
					break
				}
				if h == nil {
					h = map[string]string{}
					m.hashes[k] = h
				}
				n := 0
				for _, ff := range []string{f, f2} {
					if _, ok := h[ff]; !ok {
						n++
					}
					h[ff] = val
				}
				want = Int(n)
			case 2:
				f2 := pick(fields)
				args = []string{"HDEL", k, f, f2}
				if isString {
					want = WrongType
					break
				}
				n := 0
				for _, ff := range []string{f, f2} {
					if _, ok := h[ff]; ok {
						delete(h, ff)
						n++
					}
				}
				if isHash && len(h) == 0 {
					delete(m.hashes, k)
				}
				want = Int(n)
			case 3:
				args = []string{"HINCRBY", k, f, "3"}
				if isString {
					want = WrongType
					break
				}
				if h == nil {
					h = map[string]string{}
					m.hashes[k] = h
				}
				cur, err := strconv.Atoi(h[f] + "0")
				cur /= 10
				if _, ok := h[f]; ok && err != nil {
					want = ErrorReply("ERR hash value is not an integer")
					break
				}
				h[f] = strconv.Itoa(cur + 3)
				want = Int(cur + 3)
			case 4:
				args = []string{"DEL", k}
				want = Int(0)
				if isHash || isString {
					want = Int(1)
				}
				delete(m.hashes, k)
				delete(m.strings, k)
			case 5:
				args = []string{"SET", k, "s" + val}
				delete(m.hashes, k)
				m.strings[k] = "s" + val
				want = OK
			case 6:
				k2 := pick(keys)
				args = []string{"RENAME", k, k2}
				switch {
				case !isHash && !isString:
					want = ErrorReply("ERR no such key")
				case k == k2:
					want = OK
				default:
					delete(m.hashes, k2)
					delete(m.strings, k2)
					if isHash {
						m.hashes[k2] = h
						delete(m.hashes, k)
					} else {
						m.strings[k2] = m.strings[k]
						delete(m.strings, k)
					}
					want = OK
				}
			case 7:
				args = []string{"HSETNX", k, f, val}
				switch {
				case isString:
					want = WrongType
				case h[f] != "" || (h != nil && hasKey(h, f)):
					want = Int(0)
				default:
					if h == nil {
						h = map[string]string{}
						m.hashes[k] = h
					}
					h[f] = val
					want = Int(1)
				}
			case 8:
				args = []string{"HGET", k, f}
				switch {
				case isString:
					want = WrongType
				case hasKey(h, f):
					want = Bulk(h[f])
				default:
					want = Null
				}
			}
			history = append(history, strings.Join(args, " "))
			if got := do(t, v, args...); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d: after\n%s\n%s = %#v, want %#v", seed, strings.Join(history[:len(history)-1], "\n"), history[len(history)-1], got, want)
			}
			for _, k := range keys {
				got := do(t, v, "TYPE", k)
				wantType := SimpleString("none")
				if _, ok := m.hashes[k]; ok {
					wantType = "hash"
				} else if _, ok := m.strings[k]; ok {
					wantType = "string"
				}
				if got != wantType {
					t.Fatalf("seed %d: after\n%s\nTYPE %s = %v, want %v", seed, strings.Join(history, "\n"), k, got, wantType)
				}
				if wantType != "hash" {
					continue
				}
				wantAll := Map{}
				for _, f := range slices.Sorted(maps.Keys(m.hashes[k])) {
					wantAll = append(wantAll, Bulk(f), Bulk(m.hashes[k][f]))
				}
				if got := do(t, v, "HGETALL", k); !reflect.DeepEqual(got, wantAll) {
					t.Fatalf("seed %d: after\n%s\nHGETALL %s = %v, want %v", seed, strings.Join(history, "\n"), k, got, wantAll)
				}
				if got := do(t, v, "HLEN", k); got != Int(len(m.hashes[k])) {
					t.Fatalf("seed %d: after\n%s\nHLEN %s = %v, want %d", seed, strings.Join(history, "\n"), k, got, len(m.hashes[k]))
				}
			}
		}
	}
}

func hasKey(h map[string]string, f string) bool {
	_, ok := h[f]
	return ok
}
