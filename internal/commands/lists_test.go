package commands

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

func TestListCommands(t *testing.T) {
	v := newMem(1000)
	b := func(s ...string) Array {
		out := Array{}
		for _, x := range s {
			out = append(out, Bulk(x))
		}
		return out
	}
	steps := []struct {
		args string
		want Reply
	}{
		{"LPUSH l a b c", Int(3)},
		{"LRANGE l 0 -1", b("c", "b", "a")},
		{"RPUSH l d e", Int(5)},
		{"LRANGE l 0 -1", b("c", "b", "a", "d", "e")},
		{"LLEN l", Int(5)},
		{"LLEN nokey", Int(0)},
		{"TYPE l", SimpleString("list")},
		{"OBJECT ENCODING l", Bulk("quicklist")},
		{"LRANGE l 1 2", b("b", "a")},
		{"LRANGE l -2 -1", b("d", "e")},
		{"LRANGE l -100 1", b("c", "b")},
		{"LRANGE l 3 100", b("d", "e")},
		{"LRANGE l 4 3", b()},
		{"LRANGE l 5 10", b()},
		{"LRANGE l -1 -2", b()},
		{"LRANGE l x 1", ErrorReply("ERR value is not an integer or out of range")},
		{"LRANGE nokey 0 -1", b()},
		{"LINDEX l 0", Bulk("c")},
		{"LINDEX l -1", Bulk("e")},
		{"LINDEX l -5", Bulk("c")},
		{"LINDEX l 5", Null},
		{"LINDEX l -6", Null},
		{"LINDEX l x", ErrorReply("ERR value is not an integer or out of range")},
		{"LINDEX nokey 0", Null},
		{"LSET l 1 B", OK},
		{"LSET l -1 E", OK},
		{"LSET l 5 x", ErrorReply("ERR index out of range")},
		{"LSET nokey 0 x", ErrorReply("ERR no such key")},
		{"LRANGE l 0 -1", b("c", "B", "a", "d", "E")},
		{"LPUSHX nokey a", Int(0)},
		{"RPUSHX nokey a", Int(0)},
		{"EXISTS nokey", Int(0)},
		{"LPUSHX l z", Int(6)},
		{"RPUSHX l y", Int(7)},
		{"LPOP l", Bulk("z")},
		{"RPOP l", Bulk("y")},
		{"LPOP l 0", Array{}},
		{"LPOP nokey", Null},
		{"LPOP nokey 2", Array(nil)},
		{"LPOP l -1", ErrorReply("ERR value is out of range, must be positive")},
		{"LPOP l x", ErrorReply("ERR value is out of range, must be positive")},
		{"LPOP l 1 1", ErrorReply("ERR wrong number of arguments for 'lpop' command")},
		{"RPOP l 2", b("E", "d")},
		{"LPOP l 2", b("c", "B")},
		{"LRANGE l 0 -1", b("a")},
		{"RPOP l 10", b("a")},
		{"EXISTS l", Int(0)},
		{"RPUSH l a b c b a", Int(5)},
		{"LINSERT l BEFORE c x", Int(6)},
		{"LINSERT l AFTER c y", Int(7)},
		{"LRANGE l 0 -1", b("a", "b", "x", "c", "y", "b", "a")},
		{"LINSERT l AFTER a first", Int(8)},
		{"LINSERT l BEFORE a zero", Int(9)},
		{"LRANGE l 0 -1", b("zero", "a", "first", "b", "x", "c", "y", "b", "a")},
		{"LINSERT l BEFORE nope x", Int(-1)},
		{"LINSERT l middle a x", ErrorReply("ERR syntax error")},
		{"LINSERT nokey BEFORE a x", Int(0)},
		{"LPOS l b", Int(3)},
		{"LPOS l b RANK 2", Int(7)},
		{"LPOS l b RANK -1", Int(7)},
		{"LPOS l b RANK -2", Int(3)},
		{"LPOS l b RANK 3", Null},
		{"LPOS l b COUNT 0", Array{Int(3), Int(7)}},
		{"LPOS l b COUNT 1 RANK -1", Array{Int(7)}},
		{"LPOS l b COUNT 0 MAXLEN 4", Array{Int(3)}},
		{"LPOS l b COUNT 0 RANK -1 MAXLEN 2", Array{Int(7)}},
		{"LPOS l b MAXLEN 3", Null},
		{"LPOS l nope COUNT 2", Array{}},
		{"LPOS nokey a", Null},
		{"LPOS nokey a COUNT 1", Array{}},
		{"LPOS l b RANK 0", ErrorReply("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")},
		{"LPOS l b COUNT -1", ErrorReply("ERR COUNT can't be negative")},
		{"LPOS l b MAXLEN -1", ErrorReply("ERR MAXLEN can't be negative")},
		{"LPOS l b RANK", ErrorReply("ERR syntax error")},
		{"LPOS l b FOO 1", ErrorReply("ERR syntax error")},
		{"LREM l 1 b", Int(1)},
		{"LRANGE l 0 -1", b("zero", "a", "first", "x", "c", "y", "b", "a")},
		{"LREM l -1 a", Int(1)},
		{"LRANGE l 0 -1", b("zero", "a", "first", "x", "c", "y", "b")},
		{"LREM l 0 nope", Int(0)},
		{"LREM nokey 0 a", Int(0)},
		{"LREM l x a", ErrorReply("ERR value is not an integer or out of range")},
		{"LTRIM l 1 -2", OK},
		{"LRANGE l 0 -1", b("a", "first", "x", "c", "y")},
		{"LTRIM l 3 3", OK},
		{"LRANGE l 0 -1", b("c")},
		{"LTRIM nokey 0 1", OK},
		{"LTRIM l 5 10", OK},
		{"EXISTS l", Int(0)},
		{"RPUSH l a b c", Int(3)},
		{"RPUSH m x", Int(1)},
		{"LMOVE l m LEFT RIGHT", Bulk("a")},
		{"LMOVE l m RIGHT LEFT", Bulk("c")},
		{"LRANGE m 0 -1", b("c", "x", "a")},
		{"LMOVE m m LEFT RIGHT", Bulk("c")},
		{"LRANGE m 0 -1", b("x", "a", "c")},
		{"LMOVE l m UP LEFT", ErrorReply("ERR syntax error")},
		{"LMOVE nokey m LEFT LEFT", Null},
		{"RPOPLPUSH l l", Bulk("b")}, // the last element, onto itself
		{"LRANGE l 0 -1", b("b")},
		{"RPOPLPUSH l new", Bulk("b")},
		{"EXISTS l", Int(0)},
		{"LRANGE new 0 -1", b("b")},
		{"LMPOP 2 nokey m LEFT", Array{Bulk("m"), b("x")}},
		{"LMPOP 2 nokey m RIGHT COUNT 5", Array{Bulk("m"), b("c", "a")}},
		{"LMPOP 1 m LEFT", Array(nil)},
		{"LMPOP 0 m LEFT", ErrorReply("ERR numkeys should be greater than 0")},
		{"LMPOP -1 m LEFT", ErrorReply("ERR numkeys should be greater than 0")},
		{"LMPOP a m LEFT", ErrorReply("ERR numkeys should be greater than 0")},
		{"LMPOP 2 m LEFT", ErrorReply("ERR syntax error")},
		{"LMPOP 1 m bad", ErrorReply("ERR syntax error")},
		{"LMPOP 1 m LEFT COUNT", ErrorReply("ERR syntax error")},
		{"LMPOP 1 m LEFT COUNT 1 COUNT 2", ErrorReply("ERR syntax error")},
		{"LMPOP 1 m LEFT COUNT 0", ErrorReply("ERR count should be greater than 0")},
		{"LMPOP 1 m LEFT COUNT a", ErrorReply("ERR count should be greater than 0")},
		{"LMPOP 1 m", ErrorReply("ERR wrong number of arguments for 'lmpop' command")},
		// WRONGTYPE both ways.
		{"SET s v", OK},
		{"LPUSH s a", WrongType},
		{"RPUSHX s a", WrongType},
		{"LPOP s", WrongType},
		{"LLEN s", WrongType},
		{"LRANGE s 0 1", WrongType},
		{"LINDEX s 0", WrongType},
		{"LSET s 0 x", WrongType},
		{"LINSERT s BEFORE a b", WrongType},
		{"LREM s 0 a", WrongType},
		{"LTRIM s 0 1", WrongType},
		{"LPOS s a", WrongType},
		{"LMOVE s new LEFT LEFT", WrongType},
		{"LMOVE new s LEFT LEFT", WrongType},
		{"LMOVE nokey s LEFT LEFT", Null}, // the destination is looked at only with a source
		{"LMPOP 2 nokey s LEFT", WrongType},
		{"HSET h f v", Int(1)},
		{"LPUSH h a", WrongType},
		{"GET new", WrongType},
		{"HGET new a", WrongType},
		// DEL, RENAME and expiry of a list.
		{"RPUSH r 1 2 3", Int(3)},
		{"LPUSH r 0", Int(4)},
		{"RENAME r r2", OK},
		{"LRANGE r2 0 -1", b("0", "1", "2", "3")},
		{"LPUSH r2 -1", Int(5)},
		{"RPOP r2", Bulk("3")},
		{"LRANGE r2 0 -1", b("-1", "0", "1", "2")},
		{"EXPIRE r2 100", Int(1)},
		{"TTL r2", Int(100)},
		{"LTRIM r2 0 0", OK}, // kept 1 < trimmed 3: a new version, same expiry
		{"TTL r2", Int(100)},
		{"LRANGE r2 0 -1", b("-1")},
		{"DEL r2", Int(1)},
		{"RPUSH r2 x", Int(1)},
		{"LRANGE r2 0 -1", b("x")}, // no element of the old r2 comes back
		{"SCAN 0 TYPE list", Array{Bulk("0"), Array{Bulk("new"), Bulk("r2")}}},
	}
	for _, s := range steps {
		if got := do(t, v, strings.Fields(s.args)...); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s = %#v, want %#v", s.args, got, s.want)
		}
	}
}

// TestListEndsAreO1: on a list of a million elements, a push or pop at
// either end logs O(1) ops (the element, the metadata row, and the head
// row for a change at the head end), and LINDEX and LRANGE near either
// end read only the rows they return.
func TestListEndsAreO1(t *testing.T) {
	const n = 1_000_000
	// The list's rows, in key order, as RPUSH l 0 1 ... 999999 leaves
	// them (TestListModel checks that RPUSH does), under a Layer as the
	// stored rows are under the leader's overlay.
	base := &sortedRows{}
	add := func(k, v []byte) { base.keys, base.vals = append(base.keys, k), append(base.vals, v) }
	add(keyspace.MetaKey([]byte("l")), keyspace.AppendMetaRow(nil, Value{Type: keyspace.TypeList, Version: 1, Size: n}))
	add(keyspace.SubKey([]byte("l"), 1, keyspace.ListHeadSub), keyspace.ListHeadRow(keyspace.ListStartIndex))
	for i := range n {
		add(keyspace.SubKey([]byte("l"), 1, keyspace.ListIndexSub(keyspace.ListStartIndex+uint64(i))), []byte(strconv.Itoa(i)))
	}
	v := &memView{rows: keyspace.NewLayer(base), now: 1000, lsn: 2}
	if got := do(t, v, "LRANGE", "l", "0", "1"); !reflect.DeepEqual(got, Array{Bulk("0"), Bulk("1")}) {
		t.Fatalf("LRANGE l 0 1 = %v", got)
	}
	sub, meta := logrec.OpSubPut, logrec.OpMeta
	for _, tc := range []struct {
		args  string
		kinds []logrec.OpKind
		reply Reply
	}{
		{"LPUSH l x", []logrec.OpKind{sub, sub, meta}, Int(n + 1)},
		{"RPUSH l y", []logrec.OpKind{sub, meta}, Int(n + 2)},
		{"LPOP l", []logrec.OpKind{logrec.OpSubDel, sub, meta}, Bulk("x")},
		{"RPOP l", []logrec.OpKind{logrec.OpSubDel, meta}, Bulk("y")},
		{"LSET l -2 z", []logrec.OpKind{sub}, OK},
		{"LMOVE l l RIGHT LEFT", []logrec.OpKind{logrec.OpSubDel, meta, sub, sub, meta}, Bulk(strconv.Itoa(n - 1))},
		{"LINSERT l BEFORE 1 w", []logrec.OpKind{sub, sub, sub, sub, meta}, Int(n + 1)}, // shifts the 2 before it
		{"LTRIM l 0 -3", []logrec.OpKind{logrec.OpSubDel, logrec.OpSubDel, meta}, OK},
	} {
		res, err := run(&Ctx{NowMs: v.now}, v, strings.Fields(tc.args)...)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []logrec.OpKind
		for _, op := range res.Ops {
			kinds = append(kinds, op.Kind)
		}
		if !reflect.DeepEqual(res.Reply, tc.reply) || !slices.Equal(kinds, tc.kinds) {
			t.Errorf("%s = %#v logging %v, want %#v logging %v", tc.args, res.Reply, kinds, tc.reply, tc.kinds)
		}
		v.apply(res.Ops)
	}
	// The list is now 999999 0 w 1 2 ... 999996.
	for _, tc := range []struct {
		args              string
		want              Reply
		subs, scans, rows int
	}{
		{"LINDEX l 0", Bulk(strconv.Itoa(n - 1)), 2, 0, 0}, // head row + element
		{"LINDEX l -1", Bulk(strconv.Itoa(n - 4)), 2, 0, 0},
		{"LRANGE l 0 2", Array{Bulk(strconv.Itoa(n - 1)), Bulk("0"), Bulk("w")}, 1, 1, 3},
		{"LRANGE l -2 -1", Array{Bulk(strconv.Itoa(n - 5)), Bulk(strconv.Itoa(n - 4))}, 1, 1, 2},
		{"LLEN l", Int(n - 1), 0, 0, 0},
	} {
		c := &countingView{memView: v}
		res, err := run(&Ctx{NowMs: v.now}, c, strings.Fields(tc.args)...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(asArray(res.Reply), tc.want) || c.subs != tc.subs || c.scans != tc.scans || c.rows != tc.rows {
			t.Errorf("%s = %#v reading %d points, %d scans, %d rows; want %#v reading %d, %d, %d",
				tc.args, res.Reply, c.subs, c.scans, c.rows, tc.want, tc.subs, tc.scans, tc.rows)
		}
	}
}

// listModel is the obvious list semantics: Go slices, and strings beside
// them.
type listModel struct {
	lists   map[string][]string
	strings map[string]string
}

func (m *listModel) set(k string, l []string) {
	if len(l) == 0 {
		delete(m.lists, k)
		return
	}
	m.lists[k] = l
}

// modelLRem is LREM on a model list: l without the first (count > 0),
// last (count < 0) or every (0) |count| elements equal to v, and how many
// went.
func modelLRem(l []string, count int, v string) ([]string, int) {
	removed, limit := 0, max(count, -count)
	var out []string
	if count >= 0 {
		for _, e := range l {
			if e == v && (limit == 0 || removed < limit) {
				removed++
				continue
			}
			out = append(out, e)
		}
		return out, removed
	}
	for i := len(l) - 1; i >= 0; i-- {
		if l[i] == v && removed < limit {
			removed++
			continue
		}
		out = append([]string{l[i]}, out...)
	}
	return out, removed
}

func norm(i, n int) int {
	if i < 0 {
		i += n
	}
	return i
}

// TestListModel runs random list commands (and DEL, SET, RENAME) on a few
// keys against Go slices, checking every reply and, after each command,
// every key's type, length and full contents, and that each live list's
// rows are exactly its head row and its elements at head..head+size-1:
// the check that catches head or size drift.
func TestListModel(t *testing.T) {
	keys := []string{"a", "b", "c"}
	vals := []string{"x", "y", "z"}
	for seed := range uint64(400) {
		r := rand.New(rand.NewPCG(seed, 17))
		v := newMem(1000)
		m := listModel{lists: map[string][]string{}, strings: map[string]string{}}
		pick := func(s []string) string { return s[r.IntN(len(s))] }
		var history []string
		for range 60 {
			k, val := pick(keys), pick(vals)
			l := slices.Clone(m.lists[k])
			_, isString := m.strings[k]
			var args []string
			var want Reply
			idx := r.IntN(9) - 4
			switch op := r.IntN(16); op {
			case 0, 1, 2:
				cmd := []string{"LPUSH", "RPUSH", "LPUSHX", "RPUSHX"}[r.IntN(4)]
				val2 := pick(vals)
				args = []string{cmd, k, val, val2}
				switch {
				case isString:
					want = WrongType
				case strings.HasSuffix(cmd, "X") && len(l) == 0:
					want = Int(0)
				default:
					if cmd[0] == 'L' {
						l = append([]string{val2, val}, l...)
					} else {
						l = append(l, val, val2)
					}
					m.set(k, l)
					want = Int(len(l))
				}
			case 3, 4:
				cmd := []string{"LPOP", "RPOP"}[r.IntN(2)]
				cnt := r.IntN(4) - 1
				args = []string{cmd, k}
				if cnt >= 0 {
					args = append(args, strconv.Itoa(cnt))
				}
				switch {
				case isString:
					want = WrongType
				case len(l) == 0 && cnt >= 0:
					want = Array(nil)
				case len(l) == 0:
					want = Null
				case cnt == 0:
					want = Array{}
				default:
					got := Array{}
					for i := 0; i < max(cnt, 1) && len(l) > 0; i++ {
						if cmd == "LPOP" {
							got, l = append(got, Bulk(l[0])), l[1:]
						} else {
							got, l = append(got, Bulk(l[len(l)-1])), l[:len(l)-1]
						}
					}
					m.set(k, l)
					want = got
					if cnt < 0 {
						want = got[0]
					}
				}
			case 5:
				args = []string{"LINDEX", k, strconv.Itoa(idx)}
				i := norm(idx, len(l))
				switch {
				case isString:
					want = WrongType
				case i < 0 || i >= len(l):
					want = Null
				default:
					want = Bulk(l[i])
				}
			case 6:
				args = []string{"LSET", k, strconv.Itoa(idx), val}
				i := norm(idx, len(l))
				switch {
				case isString:
					want = WrongType
				case len(l) == 0:
					want = ErrorReply("ERR no such key")
				case i < 0 || i >= len(l):
					want = ErrorReply("ERR index out of range")
				default:
					l[i] = val
					m.set(k, l)
					want = OK
				}
			case 7:
				where := []string{"BEFORE", "AFTER"}[r.IntN(2)]
				pivot := pick(vals)
				args = []string{"LINSERT", k, where, pivot, "n" + val}
				i := slices.Index(l, pivot)
				switch {
				case isString:
					want = WrongType
				case len(l) == 0:
					want = Int(0)
				case i < 0:
					want = Int(-1)
				default:
					if where == "AFTER" {
						i++
					}
					l = slices.Insert(l, i, "n"+val)
					m.set(k, l)
					want = Int(len(l))
				}
			case 8:
				cnt := r.IntN(5) - 2
				args = []string{"LREM", k, strconv.Itoa(cnt), val}
				if isString {
					want = WrongType
					break
				}
				out, n := modelLRem(l, cnt, val)
				m.set(k, out)
				want = Int(n)
			case 9:
				start, stop := r.IntN(9)-4, r.IntN(9)-4
				args = []string{"LTRIM", k, strconv.Itoa(start), strconv.Itoa(stop)}
				if isString {
					want = WrongType
					break
				}
				m.set(k, rangeOf(l, start, stop))
				want = OK
			case 10:
				start, stop := r.IntN(9)-4, r.IntN(9)-4
				args = []string{"LRANGE", k, strconv.Itoa(start), strconv.Itoa(stop)}
				if isString {
					want = WrongType
					break
				}
				want = bulkArray(rangeOf(l, start, stop))
			case 11:
				k2 := pick(keys)
				from, to := pick([]string{"LEFT", "RIGHT"}), pick([]string{"LEFT", "RIGHT"})
				args = []string{"LMOVE", k, k2, from, to}
				_, dstString := m.strings[k2]
				switch {
				case isString:
					want = WrongType
				case len(l) == 0:
					want = Null
				case dstString:
					want = WrongType
				default:
					var e string
					if from == "LEFT" {
						e, l = l[0], l[1:]
					} else {
						e, l = l[len(l)-1], l[:len(l)-1]
					}
					m.set(k, l)
					d := slices.Clone(m.lists[k2])
					if to == "LEFT" {
						d = append([]string{e}, d...)
					} else {
						d = append(d, e)
					}
					m.set(k2, d)
					want = Bulk(e)
				}
			case 12:
				cnt := 1 + r.IntN(3)
				args = []string{"LMPOP", "2", k, pick(keys), "RIGHT", "COUNT", strconv.Itoa(cnt)}
				want = Array(nil)
				for _, kk := range args[2:4] {
					if _, s := m.strings[kk]; s {
						want = WrongType
						break
					}
					ll := slices.Clone(m.lists[kk])
					if len(ll) == 0 {
						continue
					}
					got := Array{}
					for i := 0; i < cnt && len(ll) > 0; i++ {
						got, ll = append(got, Bulk(ll[len(ll)-1])), ll[:len(ll)-1]
					}
					m.set(kk, ll)
					want = Array{Bulk(kk), got}
					break
				}
			case 13:
				args = []string{"DEL", k}
				want = Int(0)
				if len(l) > 0 || isString {
					want = Int(1)
				}
				delete(m.lists, k)
				delete(m.strings, k)
			case 14:
				args = []string{"SET", k, "s"}
				delete(m.lists, k)
				m.strings[k] = "s"
				want = OK
			case 15:
				k2 := pick(keys)
				args = []string{"RENAME", k, k2}
				switch {
				case len(l) == 0 && !isString:
					want = ErrorReply("ERR no such key")
				case k == k2:
					want = OK
				default:
					delete(m.lists, k2)
					delete(m.strings, k2)
					if isString {
						m.strings[k2] = m.strings[k]
					} else {
						m.lists[k2] = l
					}
					delete(m.lists, k)
					delete(m.strings, k)
					want = OK
				}
			}
			history = append(history, strings.Join(args, " "))
			fail := func(format string, a ...any) {
				t.Helper()
				t.Fatalf("seed %d: after\n%s\n"+format, append([]any{seed, strings.Join(history, "\n")}, a...)...)
			}
			if got := do(t, v, args...); !reflect.DeepEqual(got, want) {
				fail("got %#v, want %#v", got, want)
			}
			for _, k := range keys {
				wantType := SimpleString("none")
				if _, ok := m.lists[k]; ok {
					wantType = "list"
				} else if _, ok := m.strings[k]; ok {
					wantType = "string"
				}
				if got := do(t, v, "TYPE", k); got != wantType {
					fail("TYPE %s = %v, want %v", k, got, wantType)
				}
				if wantType != "list" {
					continue
				}
				if got, want := do(t, v, "LRANGE", k, "0", "-1"), bulkArray(m.lists[k]); !reflect.DeepEqual(got, want) {
					fail("LRANGE %s 0 -1 = %v, want %v", k, got, want)
				}
				if got := do(t, v, "LLEN", k); got != Int(len(m.lists[k])) {
					fail("LLEN %s = %v, want %d", k, got, len(m.lists[k]))
				}
				if err := checkListRows(v, k); err != nil {
					fail("%v", err)
				}
			}
		}
	}
}

// checkListRows checks that key's live rows are its head row and one row
// per index in [head, head+size), nothing more.
func checkListRows(v *memView, key string) error {
	l, ok, err := getList(v, []byte(key))
	if err != nil || !ok {
		return fmt.Errorf("list %s: %v, %v", key, ok, err)
	}
	var subs []string
	if err := v.SubScan(l.key, l.meta.Version, nil, func(sub, _ []byte) bool {
		subs = append(subs, string(sub))
		return true
	}); err != nil {
		return err
	}
	want := []string{string(keyspace.ListHeadSub)}
	for p := range l.size() {
		want = append(want, string(l.index(p)))
	}
	if !slices.Equal(subs, want) {
		return fmt.Errorf("list %s (head %#x, size %d) has rows %x, want %x", key, l.head, l.size(), subs, want)
	}
	return nil
}

// rangeOf is Redis's inclusive range of l (LRANGE, LTRIM).
func rangeOf(l []string, start, stop int) []string {
	n := len(l)
	start, stop = norm(start, n), norm(stop, n)
	start = max(start, 0)
	if start > stop || start >= n {
		return nil
	}
	return slices.Clone(l[start : min(stop, n-1)+1])
}

func bulkArray(l []string) Array {
	out := Array{}
	for _, e := range l {
		out = append(out, Bulk(e))
	}
	return out
}

// BenchmarkPop is LPOP and RPOP of one element, the command alone (its
// ops not applied, so every call pops the same element) over a list in
// memory: what the command itself allocates per pop.
func BenchmarkPop(b *testing.B) {
	for _, cmd := range []string{"LPOP", "RPOP"} {
		b.Run(cmd, func(b *testing.B) {
			v := newMem(now)
			res, err := run(&Ctx{NowMs: now}, v, "RPUSH", "l", "a", "b", "c")
			if err != nil {
				b.Fatal(err)
			}
			v.apply(res.Ops)
			ctx := &Ctx{NowMs: now}
			args := bargs(cmd, "l")
			spec, _ := Lookup(args[0])
			b.ReportAllocs()
			for b.Loop() {
				if _, err := spec.Exec(ctx, v, args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPushAllocations: LPUSH of one element (redis-benchmark's) on a
// list carves its element's index sub-key and its head row from one
// allocation (they were two), and its reads copy no row key.
func TestPushAllocations(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	res, err := run(ctx, v, "RPUSH", "mylist", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	v.apply(res.Ops)
	args := bargs("LPUSH", "mylist", "x")
	n := testing.AllocsPerRun(100, func() {
		res, err := execLPush(ctx, v, args)
		if err != nil || len(res.Ops) != 3 {
			t.Fatalf("LPUSH: %d ops, %v", len(res.Ops), err)
		}
	})
	if n > 4 {
		t.Errorf("LPUSH of one element: %v allocations, want at most 4", n)
	}
	// Pushed at both ends, several at a time: the elements and the head
	// are where Redis puts them.
	for _, c := range [][]string{{"LPUSH", "mylist", "x", "y"}, {"RPUSH", "mylist", "z", "w"}, {"LPUSH", "mylist", "q"}} {
		res, err := run(ctx, v, c...)
		if err != nil {
			t.Fatal(err)
		}
		v.apply(res.Ops)
	}
	got, err := run(ctx, v, "LRANGE", "mylist", "0", "-1")
	if err != nil {
		t.Fatal(err)
	}
	if s, want := fmt.Sprintf("%s", got.Reply), "[q y x a b z w]"; s != want {
		t.Errorf("LRANGE = %s, want %s", s, want)
	}
}
