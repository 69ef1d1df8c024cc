package commands

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

func TestZSetCommands(t *testing.T) {
	v := newMem(1000)
	d := func(f float64) Reply { return Double(f) }
	b := func(s string) Reply { return Bulk(s) }
	steps := []struct {
		args string
		want Reply
	}{
		{"ZADD z 1 a 2 b 3 c", Int(3)},
		{"ZADD z 1 a 5 b", Int(0)},
		{"ZADD z CH 1 a 6 b 4 d", Int(2)},
		{"ZCARD z", Int(4)},
		{"ZCARD nokey", Int(0)},
		{"ZSCORE z b", d(6)},
		{"ZSCORE z zz", Null},
		{"ZSCORE nokey a", Null},
		{"ZMSCORE z a zz d", Array{d(1), Null, d(4)}},
		{"ZMSCORE nokey a", Array{Null}},
		{"ZRANGE z 0 -1 WITHSCORES", Pairs{b("a"), d(1), b("c"), d(3), b("d"), d(4), b("b"), d(6)}},
		{"ZRANGE z 1 2", Array{b("c"), b("d")}},
		{"ZRANGE z -2 100", Array{b("d"), b("b")}},
		{"ZRANGE z 3 1", Array{}},
		{"ZREVRANGE z 0 1", Array{b("b"), b("d")}},
		{"ZRANGE z 0 1 REV", Array{b("b"), b("d")}},
		{"ZRANGE z (1 4 BYSCORE", Array{b("c"), b("d")}},
		{"ZRANGE z 4 (1 BYSCORE REV", Array{b("d"), b("c")}},
		{"ZRANGE z -inf +inf BYSCORE LIMIT 1 2", Array{b("c"), b("d")}},
		{"ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2", Array{b("d"), b("c")}},
		{"ZRANGE z +inf -inf BYSCORE REV LIMIT 3 -1", Array{b("a")}},
		{"ZRANGE z -inf +inf BYSCORE LIMIT -1 2", Array{}},
		{"ZRANGE z 0 -1 LIMIT 1 2", ErrorReply("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")},
		{"ZRANGE z - + BYLEX WITHSCORES", ErrorReply("ERR syntax error, WITHSCORES not supported in combination with BYLEX")},
		{"ZRANGEBYSCORE z 0 -1 REV", ErrorReply("ERR syntax error")},
		{"ZREVRANGE z 0 -1 BYSCORE", ErrorReply("ERR syntax error")},
		{"ZRANGEBYSCORE z (3 inf WITHSCORES", Pairs{b("d"), d(4), b("b"), d(6)}},
		{"ZREVRANGEBYSCORE z +inf 3 LIMIT 0 1", Array{b("b")}},
		{"ZRANGEBYSCORE z 1 nan", ErrorReply("ERR min or max is not a float")},
		{"ZRANGEBYSCORE z x 1", ErrorReply("ERR min or max is not a float")},
		{"ZRANGEBYSCORE z (4 (4", Array{}},
		{"ZCOUNT z (1 4", Int(2)},
		{"ZCOUNT z -inf +inf", Int(4)},
		{"ZRANK z d", Int(2)},
		{"ZREVRANK z d", Int(1)},
		{"ZRANK z zz", Null},
		{"ZRANK nokey a", Null},
		{"ZRANK z d WITHSCORE", Array{Int(2), d(4)}},
		{"ZREVRANK z d withscore", Array{Int(1), d(4)}},
		{"ZRANK z zz WITHSCORE", Array(nil)},
		{"ZRANK z d WITHSCORES", ErrorReply("ERR syntax error")},
		{"ZRANK z d WITHSCORE x", ErrorReply("ERR wrong number of arguments for 'zrank' command")},
		{"ZINCRBY z 2.5 a", d(3.5)},
		{"ZINCRBY z x a", ErrorReply("ERR value is not a valid float")},
		{"ZRANGE z 0 -1", Array{b("c"), b("a"), b("d"), b("b")}}, // the index moved with the score
		{"ZADD z NX XX 1 a", ErrorReply("ERR XX and NX options at the same time are not compatible")},
		{"ZADD z NX GT 1 a", ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")},
		{"ZADD z GT LT 1 a", ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")},
		{"ZADD z INCR 1 a 2 b", ErrorReply("ERR INCR option supports a single increment-element pair")},
		{"ZADD z 1 a 2", ErrorReply("ERR syntax error")},
		{"ZADD z NX 1", ErrorReply("ERR syntax error")},
		{"ZADD z nan a", ErrorReply("ERR value is not a valid float")},
		{"ZADD z 1 a x b", ErrorReply("ERR value is not a valid float")},
		{"ZADD z GT 1 a", Int(0)},
		{"ZADD z GT CH 10 a 0 zz", Int(2)}, // a raised, zz added: GT does not stop new members
		{"ZADD z LT INCR 1 a", Null},       // would raise: not updated, nil
		{"ZADD z GT INCR -1 a", Null},
		{"ZADD z GT INCR 1 a", d(11)},
		{"ZADD z XX 1 new", Int(0)},
		{"ZADD z NX 100 a", Int(0)},
		{"ZSCORE z a", d(11)},
		{"ZADD z XX INCR 1 nosuch", Null},
		{"ZADD nokey XX 1 a", Int(0)},
		{"EXISTS nokey", Int(0)},
		{"ZADD z +inf top -inf bottom", Int(2)},
		{"ZINCRBY z -inf top", ErrorReply("ERR resulting score is not a number (NaN)")},
		{"ZRANGE z 0 0 WITHSCORES", Pairs{b("bottom"), d(math.Inf(-1))}},
		{"ZRANGE z -1 -1 WITHSCORES", Pairs{b("top"), d(math.Inf(1))}},
		{"ZRANGEBYSCORE z (-inf (+inf", Array{b("zz"), b("c"), b("d"), b("b"), b("a")}},
		{"ZREM z top bottom zz nosuch top", Int(3)},
		{"ZCARD z", Int(4)},
		{"ZPOPMIN z", ScorePair{Member: []byte("c"), Score: 3}},
		{"ZPOPMAX z 2", Pairs{b("a"), d(11), b("b"), d(6)}},
		{"ZPOPMIN z -1", ErrorReply("ERR value is out of range, must be positive")},
		{"ZPOPMIN z 0", Array{}},
		{"ZPOPMIN z x", ErrorReply("ERR value is not an integer or out of range")},
		{"ZPOPMIN z 1 2", ErrorReply("ERR syntax error")},
		{"ZPOPMIN nokey", Array{}},
		{"ZPOPMAX z 10", Pairs{b("d"), d(4)}},
		{"EXISTS z", Int(0)}, // the last member took the key
		// Lex ranges: equal scores, ordered by member.
		{"ZADD l 0 a 0 b 0 c 0 d 0 e", Int(5)},
		{"ZRANGEBYLEX l [b (d", Array{b("b"), b("c")}},
		{"ZRANGEBYLEX l - +", Array{b("a"), b("b"), b("c"), b("d"), b("e")}},
		{"ZRANGEBYLEX l (b + LIMIT 1 2", Array{b("d"), b("e")}},
		{"ZREVRANGEBYLEX l + (b LIMIT 1 2", Array{b("d"), b("c")}},
		{"ZRANGE l [d - BYLEX REV", Array{b("d"), b("c"), b("b"), b("a")}},
		{"ZRANGEBYLEX l + -", Array{}},
		{"ZRANGEBYLEX l b d", ErrorReply("ERR min or max not valid string range item")},
		{"ZRANGEBYLEX l +x [d", ErrorReply("ERR min or max not valid string range item")},
		{"ZLEXCOUNT l [b [d", Int(3)},
		{"ZLEXCOUNT l - +", Int(5)},
		{"ZREMRANGEBYLEX l [b (d", Int(2)},
		{"ZRANGE l 0 -1", Array{b("a"), b("d"), b("e")}},
		{"ZREMRANGEBYRANK l 0 0", Int(1)},
		{"ZREMRANGEBYSCORE l -inf +inf", Int(2)},
		{"EXISTS l", Int(0)},
		// Set algebra.
		{"ZADD za 1 a 2 b 3 c", Int(3)},
		{"ZADD zb 1 b 2 c 3 d", Int(3)},
		{"ZUNION 2 za zb WITHSCORES", Pairs{b("a"), d(1), b("b"), d(3), b("d"), d(3), b("c"), d(5)}},
		{"ZUNION 2 za zb WEIGHTS 2 3 AGGREGATE MAX WITHSCORES", Pairs{b("a"), d(2), b("b"), d(4), b("c"), d(6), b("d"), d(9)}},
		{"ZINTER 2 za zb AGGREGATE MIN WITHSCORES", Pairs{b("b"), d(1), b("c"), d(2)}},
		{"ZINTER 2 za nokey", Array{}},
		{"ZDIFF 2 za zb WITHSCORES", Pairs{b("a"), d(1)}},
		{"ZDIFF 2 za zb WEIGHTS 1 1", ErrorReply("ERR syntax error")},
		{"ZINTERCARD 2 za zb", Int(2)},
		{"ZINTERCARD 2 za zb LIMIT 1", Int(1)},
		{"ZINTERCARD 2 za zb LIMIT -1", ErrorReply("ERR LIMIT can't be negative")},
		{"ZUNION 0 za", ErrorReply("ERR at least 1 input key is needed for 'zunion' command")},
		{"ZUNION 3 za zb", ErrorReply("ERR syntax error")},
		{"ZUNION 2 za zb WEIGHTS 1 x", ErrorReply("ERR weight value is not a float")},
		{"ZUNIONSTORE dst 2 za zb", Int(4)},
		{"ZRANGE dst 0 -1 WITHSCORES", Pairs{b("a"), d(1), b("b"), d(3), b("d"), d(3), b("c"), d(5)}},
		{"ZUNIONSTORE dst 2 za zb WITHSCORES", ErrorReply("ERR syntax error")},
		{"ZINTERSTORE dst 2 za nokey", Int(0)},
		{"EXISTS dst", Int(0)},
		{"SET s str", OK},
		{"ZDIFFSTORE s 1 za", Int(3)},
		{"TYPE s", SimpleString("zset")},
		{"ZINTERSTORE za 2 za za", Int(3)}, // dst among the sources
		{"ZRANGE za 0 -1 WITHSCORES", Pairs{b("a"), d(2), b("b"), d(4), b("c"), d(6)}},
		{"ZUNIONSTORE inf 2 zinf1 zinf2", Int(0)},
		{"ZADD zinf1 +inf k -inf j", Int(2)},
		{"ZADD zinf2 -inf k +inf j", Int(2)},
		{"ZUNION 2 zinf1 zinf2 WITHSCORES", Pairs{b("j"), d(0), b("k"), d(0)}}, // inf + -inf is 0, as Redis
		{"ZRANGESTORE dst za 1 -1", Int(2)},
		{"ZRANGE dst 0 -1", Array{b("b"), b("c")}},
		{"ZRANGESTORE dst za 5 +inf BYSCORE", Int(1)},
		{"ZRANGESTORE dst za 0 -1 WITHSCORES", ErrorReply("ERR syntax error")},
		{"ZRANGESTORE dst za 10 20", Int(0)},
		{"EXISTS dst", Int(0)},
		// ZMPOP.
		{"ZMPOP 2 nokey za MAX COUNT 2", Array{b("za"), Array{Array{b("c"), d(6)}, Array{b("b"), d(4)}}}},
		{"ZMPOP 1 nokey MIN", Array(nil)},
		{"ZMPOP 0 za MIN", ErrorReply("ERR numkeys should be greater than 0")},
		{"ZMPOP 1 za MIN COUNT 0", ErrorReply("ERR count should be greater than 0")},
		{"ZMPOP 1 za MIN COUNT 1 COUNT 2", ErrorReply("ERR syntax error")},
		{"ZMPOP 1 za LEFT", ErrorReply("ERR syntax error")},
		// ZRANDMEMBER.
		{"ZRANDMEMBER za", b("a")},
		{"ZRANDMEMBER za -3 WITHSCORES", Pairs{b("a"), d(2), b("a"), d(2), b("a"), d(2)}},
		{"ZRANDMEMBER za 5", Array{b("a")}},
		{"ZRANDMEMBER za 0", Array{}},
		{"ZRANDMEMBER nokey", Null},
		{"ZRANDMEMBER za 1 x", ErrorReply("ERR syntax error")},
		{"ZRANDMEMBER za -16777217", ErrorReply("ERR value is out of range")}, // a reply past 16M picks is refused
		// ZSCAN.
		{"ZSCAN za 0", Array{b("0"), Array{b("a"), d(2)}}},
		{"ZSCAN nokey 0", Array{b("0"), Array{}}},
		// Types.
		{"TYPE za", SimpleString("zset")},
		{"SET str v", OK},
		{"ZADD str 1 a", WrongType},
		{"ZSCORE str a", WrongType},
		{"ZRANGE str 0 -1", WrongType},
		{"ZRANGESTORE dst str 0 -1", WrongType},
		{"ZPOPMIN str 0", WrongType},
		{"ZMPOP 2 nokey str MIN", WrongType},
		{"ZUNION 2 za str", WrongType},
		{"ZCARD str", WrongType},
		{"ZSCAN str 0", WrongType},
		{"GET za", WrongType},
		{"HSET za f v", WrongType},
		{"ZINCRBY str 1 a", WrongType},
		{"RENAME za zc", OK},
		{"ZRANGE zc 0 -1 WITHSCORES", Pairs{b("a"), d(2)}},
		{"DEL zc", Int(1)},
		{"ZADD zc 1 x", Int(1)},
		{"ZRANGE zc 0 -1", Array{b("x")}}, // nothing of the old version comes back
		{"ZADD zc", ErrorReply("ERR wrong number of arguments for 'zadd' command")},
	}
	for _, s := range steps {
		if got := do(t, v, strings.Fields(s.args)...); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s = %#v, want %#v", s.args, got, s.want)
		}
	}
}

func TestFormatDouble(t *testing.T) {
	for f, want := range map[float64]string{1: "1", 1.5: "1.5", 1.1: "1.1000000000000001", -2: "-2", 1e20: "1e+20",
		math.Inf(1): "inf", math.Inf(-1): "-inf", 0.1: "0.10000000000000001", 1e-5: "1.0000000000000001e-05"} {
		if got := string(FormatDouble(f)); got != want {
			t.Errorf("FormatDouble(%g) = %q, want %q", f, got, want)
		}
	}
}

// TestZSetEncoding: OBJECT ENCODING reports what Redis would under the
// thresholds.
func TestZSetEncoding(t *testing.T) {
	defer SetZSetEncodingLimits(ZSetEncodingLimits())
	v := newMem(1000)
	do(t, v, "ZADD", "z", "1", "a", "2", "b")
	// 1 byte of key and 25 of metadata row, and four sub-key rows of 24
	// bytes (13 of key prefix, "ma" and a score, or "i", a score and "a"):
	// both row families counted.
	if got := do(t, v, "MEMORY", "USAGE", "z", "SAMPLES", "0"); got != Int(26+4*24) {
		t.Fatalf("MEMORY USAGE z = %v, want %d", got, 26+4*24)
	}
	SetZSetEncodingLimits(2, 3)
	if got := do(t, v, "OBJECT", "ENCODING", "z"); !reflect.DeepEqual(got, Bulk("listpack")) {
		t.Fatalf("encoding %v", got)
	}
	do(t, v, "ZADD", "z", "3", "c")
	if got := do(t, v, "OBJECT", "ENCODING", "z"); !reflect.DeepEqual(got, Bulk("skiplist")) {
		t.Fatalf("encoding after growing past 2: %v", got)
	}
	do(t, v, "ZADD", "y", "1", "long")
	if got := do(t, v, "OBJECT", "ENCODING", "y"); !reflect.DeepEqual(got, Bulk("skiplist")) {
		t.Fatalf("encoding of a member longer than 3: %v", got)
	}
}

// zsetRows reads key's sorted set straight from its rows: the members by
// their member rows, and the index rows, checking that the two families
// agree row for row (no index row left behind, none missing) and that the
// metadata's size counts them.
func zsetRows(t *testing.T, v *memView, key string) ([]zitem, error) {
	t.Helper()
	z, ok, err := v.Get([]byte(key))
	if err != nil || !ok {
		return nil, err
	}
	var members, index []zitem
	err = v.SubScan([]byte(key), z.Version, nil, func(sub, val []byte) bool {
		switch sub[0] {
		case keyspace.ZSetIndexFamily:
			s, m, e := keyspace.ParseZSetIndexSub(sub)
			if e != nil || len(val) != 0 {
				err = fmt.Errorf("index row %q = %q: %v", sub, val, e)
				return false
			}
			index = append(index, zitem{member: clone(m), score: s})
		case keyspace.ZSetMemberFamily:
			s, e := keyspace.DecodeScore(val)
			if e != nil {
				err = e
				return false
			}
			members = append(members, zitem{member: clone(sub[1:]), score: s})
		default:
			err = fmt.Errorf("row %q in neither family", sub)
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(members, cmpItems)
	if !reflect.DeepEqual(members, index) {
		return nil, fmt.Errorf("member rows %v, index rows %v", members, index)
	}
	if uint64(len(members)) != z.Size {
		return nil, fmt.Errorf("%d members, metadata size %d", len(members), z.Size)
	}
	return members, nil
}

func cmpItems(a, b zitem) int {
	if c := cmp.Compare(a.score, b.score); c != 0 {
		return c
	}
	return bytes.Compare(a.member, b.member)
}

// TestZSetModel runs random sorted-set commands on a few keys against a
// map model, checking every reply, and after each command the rows
// themselves (zsetRows: member and index rows agree) and ranges by rank,
// score and lex against the model's order.
func TestZSetModel(t *testing.T) {
	keys := []string{"a", "b"}
	members := []string{"p", "q", "r", "s", "t", "u"}
	scores := []string{"-inf", "-1", "0", "0.5", "1", "2", "+inf"}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 9))
		v := newMem(1000)
		model := map[string]map[string]float64{}
		pick := func(s []string) string { return s[r.IntN(len(s))] }
		var history []string
		sorted := func(k string) []zitem {
			var out []zitem
			for m, s := range model[k] {
				out = append(out, zitem{member: []byte(m), score: s})
			}
			slices.SortFunc(out, cmpItems)
			return out
		}
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("seed %d: after\n%s\n%s", seed, strings.Join(history, "\n"), fmt.Sprintf(format, a...))
		}
		for range 40 {
			k := pick(keys)
			z := model[k]
			var args []string
			var want Reply
			switch r.IntN(8) {
			case 0, 1, 2:
				flags := []string{}
				var nx, xx, gt, lt, ch, incr bool
				for _, f := range []string{"NX", "XX", "GT", "LT", "CH", "INCR"} {
					if r.IntN(5) == 0 {
						flags = append(flags, f)
						switch f {
						case "NX":
							nx = true
						case "XX":
							xx = true
						case "GT":
							gt = true
						case "LT":
							lt = true
						case "CH":
							ch = true
						case "INCR":
							incr = true
						}
					}
				}
				n := 1 + r.IntN(3)
				if incr {
					n = 1
				}
				args = append([]string{"ZADD", k}, flags...)
				type pair struct {
					m string
					s float64
				}
				var pairs []pair
				for range n {
					s, m := pick(scores), pick(members)
					f, _ := strconv.ParseFloat(s, 64)
					args = append(args, s, m)
					pairs = append(pairs, pair{m, f})
				}
				switch {
				case nx && xx:
					want = ErrorReply("ERR XX and NX options at the same time are not compatible")
				case (gt || lt) && nx || gt && lt:
					want = ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")
				default:
					next := map[string]float64{}
					for m, s := range z {
						next[m] = s
					}
					added, changed, processed := 0, 0, 0
					var last float64
					nan := false
					for _, p := range pairs {
						old, had := next[p.m]
						s := p.s
						if !had {
							if xx {
								continue
							}
							next[p.m] = s
							added++
							processed++
							last = s
							continue
						}
						if nx {
							continue
						}
						if incr {
							s += old
							if math.IsNaN(s) {
								nan = true
								break
							}
						}
						if (lt && s >= old) || (gt && s <= old) {
							continue
						}
						if s != old {
							changed++
						}
						processed++
						next[p.m] = s
						last = s
					}
					switch {
					case nan:
						want = ErrorReply("ERR resulting score is not a number (NaN)")
					case incr && processed == 0:
						want = Null
					case incr:
						want = Double(last)
					case ch:
						want = Int(added + changed)
					default:
						want = Int(added)
					}
					if !nan && len(next) > 0 {
						model[k] = next
					}
				}
			case 3:
				m := pick(members)
				s := pick(scores)
				args = []string{"ZINCRBY", k, s, m}
				f, _ := strconv.ParseFloat(s, 64)
				old := z[m]
				if math.IsNaN(old + f) {
					want = ErrorReply("ERR resulting score is not a number (NaN)")
					break
				}
				if z == nil {
					model[k] = map[string]float64{}
				}
				model[k][m] = old + f
				want = Double(old + f)
			case 4:
				m1, m2 := pick(members), pick(members)
				args = []string{"ZREM", k, m1, m2}
				n := 0
				for _, m := range []string{m1, m2} {
					if _, ok := z[m]; ok {
						delete(z, m)
						n++
					}
				}
				if z != nil && len(z) == 0 {
					delete(model, k)
				}
				want = Int(n)
			case 5:
				lo, hi := pick(scores), pick(scores)
				args = []string{"ZREMRANGEBYSCORE", k, lo, "(" + hi}
				flo, _ := strconv.ParseFloat(lo, 64)
				fhi, _ := strconv.ParseFloat(hi, 64)
				n := 0
				for m, s := range z {
					if s >= flo && s < fhi {
						delete(z, m)
						n++
					}
				}
				if z != nil && len(z) == 0 {
					delete(model, k)
				}
				want = Int(n)
			case 6:
				op := "ZPOPMIN"
				items := sorted(k)
				if r.IntN(2) == 0 {
					op = "ZPOPMAX"
					slices.Reverse(items)
				}
				c := 1 + r.IntN(3)
				args = []string{op, k, strconv.Itoa(c)}
				out := Pairs{}
				for _, it := range items[:min(c, len(items))] {
					out = append(out, Bulk(it.member), Double(it.score))
					delete(z, string(it.member))
				}
				if z != nil && len(z) == 0 {
					delete(model, k)
				}
				want = out
				if len(items) == 0 {
					want = Array{} // no key: the empty array, as Redis
				}
			case 7:
				k2 := pick(keys)
				args = []string{"ZUNIONSTORE", k2, "2", k, k}
				var items []zitem
				for _, it := range sorted(k) {
					s := it.score + it.score
					if math.IsNaN(s) {
						s = 0
					}
					items = append(items, zitem{member: it.member, score: s})
				}
				delete(model, k2)
				if len(items) > 0 {
					model[k2] = map[string]float64{}
					for _, it := range items {
						model[k2][string(it.member)] = it.score
					}
				}
				want = Int(len(items))
			}
			history = append(history, strings.Join(args, " "))
			if got := do(t, v, args...); !reflect.DeepEqual(got, want) {
				fail("%s = %#v, want %#v", history[len(history)-1], got, want)
			}
			for _, k := range keys {
				items := sorted(k)
				got, err := zsetRows(t, v, k)
				if err != nil {
					fail("rows of %s: %v", k, err)
				}
				if !reflect.DeepEqual(got, items) {
					fail("rows of %s: %v, model %v", k, got, items)
				}
				wantType := SimpleString("none")
				if len(items) > 0 {
					wantType = "zset"
				}
				if got := do(t, v, "TYPE", k); got != wantType {
					fail("TYPE %s = %v, want %v", k, got, wantType)
				}
				// Ranges through the commands, against the model's order.
				all := scoresReply(items, true)
				if got := do(t, v, "ZRANGE", k, "0", "-1", "WITHSCORES"); len(items) > 0 && !reflect.DeepEqual(got, all) {
					fail("ZRANGE %s = %v, want %v", k, got, all)
				}
				lo, hi := pick(scores), pick(scores)
				flo, _ := strconv.ParseFloat(lo, 64)
				fhi, _ := strconv.ParseFloat(hi, 64)
				var in []zitem
				for _, it := range items {
					if it.score > flo && it.score <= fhi {
						in = append(in, it)
					}
				}
				rev := slices.Clone(in)
				slices.Reverse(rev)
				if got := do(t, v, "ZRANGEBYSCORE", k, "("+lo, hi); !reflect.DeepEqual(got, scoresReply(in, false)) {
					fail("ZRANGEBYSCORE %s (%s %s = %v, want %v", k, lo, hi, got, scoresReply(in, false))
				}
				off, cnt := r.IntN(3), r.IntN(5)-1 // cnt -1: all
				rev = rev[min(off, len(rev)):]
				if cnt >= 0 {
					rev = rev[:min(cnt, len(rev))]
				}
				if got := do(t, v, "ZREVRANGEBYSCORE", k, hi, "("+lo, "LIMIT", strconv.Itoa(off), strconv.Itoa(cnt)); !reflect.DeepEqual(got, scoresReply(rev, false)) {
					fail("ZREVRANGEBYSCORE %s %s (%s LIMIT %d %d = %v, want %v", k, hi, lo, off, cnt, got, scoresReply(rev, false))
				}
				if got := do(t, v, "ZCOUNT", k, "("+lo, hi); got != Int(len(in)) {
					fail("ZCOUNT %s (%s %s = %v, want %d", k, lo, hi, got, len(in))
				}
				// Inclusive minimum, exclusive maximum, both ways.
				var in2 []zitem
				for _, it := range items {
					if it.score >= flo && it.score < fhi {
						in2 = append(in2, it)
					}
				}
				if got := do(t, v, "ZRANGE", k, lo, "("+hi, "BYSCORE"); len(items) > 0 && !reflect.DeepEqual(got, scoresReply(in2, false)) {
					fail("ZRANGE %s %s (%s BYSCORE = %v, want %v", k, lo, hi, got, scoresReply(in2, false))
				}
				slices.Reverse(in2)
				if got := do(t, v, "ZRANGE", k, "("+hi, lo, "BYSCORE", "REV", "WITHSCORES"); len(items) > 0 && !reflect.DeepEqual(got, scoresReply(in2, true)) {
					fail("ZRANGE %s (%s %s BYSCORE REV = %v, want %v", k, hi, lo, got, scoresReply(in2, true))
				}
				// Ranks from either end, forward and reversed.
				n := len(items)
				a, b := r.IntN(2*n+3)-n-1, r.IntN(2*n+3)-n-1
				var byRank []zitem
				if from, to, ok := rankSpan(int64(a), int64(b), int64(n)); ok {
					byRank = slices.Clone(items[from : to+1])
				}
				if got := do(t, v, "ZRANGE", k, strconv.Itoa(a), strconv.Itoa(b)); n > 0 && !reflect.DeepEqual(got, scoresReply(byRank, false)) {
					fail("ZRANGE %s %d %d = %v, want %v", k, a, b, got, scoresReply(byRank, false))
				}
				revItems := slices.Clone(items)
				slices.Reverse(revItems)
				byRank = nil
				if from, to, ok := rankSpan(int64(a), int64(b), int64(n)); ok {
					byRank = revItems[from : to+1]
				}
				if got := do(t, v, "ZRANGE", k, strconv.Itoa(a), strconv.Itoa(b), "REV", "WITHSCORES"); n > 0 && !reflect.DeepEqual(got, scoresReply(byRank, true)) {
					fail("ZRANGE %s %d %d REV = %v, want %v", k, a, b, got, scoresReply(byRank, true))
				}
				for i, it := range items {
					if got := do(t, v, "ZRANK", k, string(it.member)); got != Int(i) {
						fail("ZRANK %s %s = %v, want %d", k, it.member, got, i)
					}
					if got := do(t, v, "ZREVRANK", k, string(it.member), "WITHSCORE"); !reflect.DeepEqual(got, Array{Int(n - 1 - i), Double(it.score)}) {
						fail("ZREVRANK %s %s = %v, want %d", k, it.member, got, n-1-i)
					}
					if got := do(t, v, "ZREVRANGE", k, strconv.Itoa(len(items)-1-i), strconv.Itoa(len(items)-1-i)); !reflect.DeepEqual(got, Array{Bulk(it.member)}) {
						fail("ZREVRANGE %s at %d = %v, want %s", k, len(items)-1-i, got, it.member)
					}
				}
			}
		}
	}
}

// TestZSetOpsPerMember: a write logs the rows it changes, never the set:
// a score update on a set of 1000 is three rows (the member row and the
// index row's move), a new member two and the metadata.
func TestZSetOpsPerMember(t *testing.T) {
	v := newMem(1000)
	args := []string{"ZADD", "z"}
	for i := range 1000 {
		args = append(args, strconv.Itoa(i), fmt.Sprintf("m%d", i))
	}
	do(t, v, args...)
	for _, tc := range []struct {
		args  string
		kinds []logrec.OpKind
	}{
		{"ZADD z 5 m5", nil},
		{"ZADD z 7.5 m5", []logrec.OpKind{logrec.OpSubDel, logrec.OpSubPut, logrec.OpSubPut}},
		{"ZINCRBY z 1 m6", []logrec.OpKind{logrec.OpSubDel, logrec.OpSubPut, logrec.OpSubPut}},
		{"ZADD z 1 new", []logrec.OpKind{logrec.OpSubPut, logrec.OpSubPut, logrec.OpMeta}},
		{"ZREM z m7", []logrec.OpKind{logrec.OpSubDel, logrec.OpSubDel, logrec.OpMeta}},
		{"ZPOPMIN z", []logrec.OpKind{logrec.OpSubDel, logrec.OpSubDel, logrec.OpMeta}},
		{"DEL z", []logrec.OpKind{logrec.OpDrop}},
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

// TestZSetRangeReadsWhatItReturns: a range by score or lex on a big set
// seeks in the index and reads the rows it returns (and one to see the
// end), not the set; so does ZSCORE (one row). From either end: a reverse
// range, the highest ranks, ZREVRANK and ZPOPMAX read from the top.
func TestZSetRangeReadsWhatItReturns(t *testing.T) {
	v := newMem(1000)
	args := []string{"ZADD", "z"}
	for i := range 5000 {
		args = append(args, strconv.Itoa(i), fmt.Sprintf("m%05d", i))
	}
	do(t, v, args...)
	args = []string{"ZADD", "lex"}
	for i := range 5000 {
		args = append(args, "0", fmt.Sprintf("m%05d", i))
	}
	do(t, v, args...)
	for _, tc := range []struct {
		args    string
		n, rows int
	}{
		{"ZRANGEBYSCORE z 2500 2509", 10, 11},
		{"ZRANGEBYSCORE z (2500 2509 LIMIT 0 3", 3, 3},
		{"ZCOUNT z 4000 4009", 10, 11},
		{"ZRANGEBYLEX lex [m02500 (m02505", 5, 7},
		{"ZRANGE z 0 4", 5, 6},
		{"ZSCORE z m04000", 1, 1},
		// From the high end: reverse reads.
		{"ZREVRANGEBYSCORE z 2509 2500", 10, 11},
		{"ZREVRANGEBYSCORE z (2509 2500 LIMIT 0 3", 3, 3},
		{"ZRANGE z 2509 (2500 BYSCORE REV", 9, 10},
		{"ZREVRANGEBYLEX lex (m02505 [m02500", 5, 7},
		{"ZRANGE lex [m02505 [m02500 BYLEX REV LIMIT 1 2", 2, 5},
		{"ZREVRANGE z 0 4", 5, 6},
		{"ZRANGE z -5 -1", 5, 6},
		{"ZRANGE z 0 4 REV", 5, 6},
		{"ZREVRANK z m04990", 1, 11},
		{"ZRANK z m00009", 1, 11},
		{"ZPOPMAX z 3", 6, 3},
		{"ZPOPMIN z 3", 6, 3},
		{"ZPOPMIN z", 2, 1},
	} {
		c := &countingView{memView: v}
		res, err := run(&Ctx{NowMs: v.now}, c, strings.Fields(tc.args)...)
		if err != nil {
			t.Fatal(err)
		}
		n := 1
		switch r := res.Reply.(type) {
		case Array:
			n = len(r)
		case Pairs:
			n = len(r)
		case ScorePair:
			n = 2 // member and score, as the Array it stands for
		case Int:
			if !strings.Contains(tc.args, "RANK") {
				n = int(r)
			}
		}
		if n != tc.n || c.rows+c.subs > tc.rows {
			t.Errorf("%s: %d items reading %d rows, want %d items reading at most %d", tc.args, n, c.rows+c.subs, tc.n, tc.rows)
		}
	}
}

// TestZSetAlgebraWithSetInput: ZUNIONSTORE/ZINTER/ZDIFF read a set as
// members of score 1 (times its weight). The set is written here in the
// sets' layout (one sub-key row per member, the member itself), as SADD
// writes it.
func TestZSetAlgebraWithSetInput(t *testing.T) {
	v := newMem(1000)
	ops := []logrec.Op{{Kind: logrec.OpMeta, Key: []byte("s"), Type: uint8(keyspace.TypeSet), Version: v.lsn, Size: 3}}
	for _, m := range []string{"a", "b", "c"} {
		ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: []byte("s"), Version: v.lsn, Sub: []byte(m)})
	}
	v.apply(ops)
	do(t, v, "ZADD", "z", "1", "b", "2", "c", "3", "d")
	for _, tc := range []struct {
		args string
		want Reply
	}{
		{"ZINTER 2 s z WEIGHTS 2 3 WITHSCORES", Pairs{Bulk("b"), Double(5), Bulk("c"), Double(8)}},
		{"ZUNION 2 s z WITHSCORES", Pairs{Bulk("a"), Double(1), Bulk("b"), Double(2), Bulk("c"), Double(3), Bulk("d"), Double(3)}},
		{"ZDIFF 2 s z WITHSCORES", Pairs{Bulk("a"), Double(1)}},
		{"ZINTERCARD 2 z s", Int(2)},
		{"ZDIFFSTORE out 2 s z", Int(1)},
		{"ZRANGE out 0 -1 WITHSCORES", Pairs{Bulk("a"), Double(1)}},
		{"ZRANGE s 0 -1", WrongType},
	} {
		if got := do(t, v, strings.Fields(tc.args)...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.args, got, tc.want)
		}
	}
}

// TestZSetDumpRestoreCopy: DUMP/RESTORE and COPY move a sorted set's two
// row families; the copy answers ranges, scores and ranks as the source.
func TestZSetDumpRestoreCopy(t *testing.T) {
	v := newMem(1000)
	do(t, v, "ZADD", "z", "-inf", "a", "1.5", "b", "1.5", "c", "+inf", "d")
	payload, ok := do(t, v, "DUMP", "z").(Bulk)
	if !ok {
		t.Fatal("DUMP z did not answer a payload")
	}
	if got := do(t, v, "RESTORE", "r", "0", string(payload)); got != OK {
		t.Fatalf("RESTORE = %v", got)
	}
	if got := do(t, v, "COPY", "z", "c"); got != Int(1) {
		t.Fatalf("COPY = %v", got)
	}
	want := do(t, v, "ZRANGE", "z", "0", "-1", "WITHSCORES")
	for _, k := range []string{"r", "c"} {
		if got := do(t, v, "ZRANGE", k, "0", "-1", "WITHSCORES"); !reflect.DeepEqual(got, want) {
			t.Errorf("ZRANGE %s = %v, want %v", k, got, want)
		}
		if got := do(t, v, "ZRANGEBYSCORE", k, "(1", "2"); !reflect.DeepEqual(got, Array{Bulk("b"), Bulk("c")}) {
			t.Errorf("ZRANGEBYSCORE %s = %v", k, got)
		}
		if got := do(t, v, "ZREVRANK", k, "a"); got != Int(3) {
			t.Errorf("ZREVRANK %s a = %v", k, got)
		}
		if _, err := zsetRows(t, v, k); err != nil {
			t.Errorf("rows of %s: %v", k, err)
		}
	}
}

// TestZSetLexModel: BYLEX ranges of a set of one score, forward and
// reversed, with and without LIMIT, against the sorted members.
func TestZSetLexModel(t *testing.T) {
	members := []string{"", "a", "aa", "ab", "b", "ba", "c", "\xff"}
	bounds := []string{"-", "+", "[", "(", "[a", "(a", "[aa", "(ab", "[b", "(ba", "[c", "(c", "[\xff", "(\xff", "[zz"}
	for seed := range uint64(100) {
		r := rand.New(rand.NewPCG(seed, 11))
		v := newMem(1000)
		var in []string
		args := []string{"ZADD", "z"}
		for _, m := range members {
			if r.IntN(2) == 0 {
				in = append(in, m)
				args = append(args, "0", m)
			}
		}
		if len(in) == 0 {
			continue
		}
		do(t, v, args...)
		slices.Sort(in)
		for range 30 {
			lo, hi := bounds[r.IntN(len(bounds))], bounds[r.IntN(len(bounds))]
			rng, err := parseLexRange([]byte(lo), []byte(hi))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if !rng.empty() {
				for _, m := range in {
					if rng.gteMin([]byte(m)) && rng.lteMax([]byte(m)) {
						want = append(want, m)
					}
				}
			}
			off, cnt := r.IntN(3), r.IntN(4)-1
			limit := func(ms []string) Reply {
				ms = ms[min(off, len(ms)):]
				if cnt >= 0 {
					ms = ms[:min(cnt, len(ms))]
				}
				out := Array{}
				for _, m := range ms {
					out = append(out, Bulk(m))
				}
				return out
			}
			if got, w := do(t, v, "ZRANGEBYLEX", "z", lo, hi, "LIMIT", strconv.Itoa(off), strconv.Itoa(cnt)), limit(want); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", w) {
				t.Fatalf("seed %d: members %q: ZRANGEBYLEX z %q %q LIMIT %d %d = %q, want %q", seed, in, lo, hi, off, cnt, got, w)
			}
			rev := slices.Clone(want)
			slices.Reverse(rev)
			if got, w := do(t, v, "ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", strconv.Itoa(off), strconv.Itoa(cnt)), limit(rev); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", w) {
				t.Fatalf("seed %d: members %q: ZREVRANGEBYLEX z %q %q LIMIT %d %d = %q, want %q", seed, in, hi, lo, off, cnt, got, w)
			}
			if got := do(t, v, "ZLEXCOUNT", "z", lo, hi); got != Int(len(want)) {
				t.Fatalf("seed %d: ZLEXCOUNT z %q %q = %v, want %d", seed, lo, hi, got, len(want))
			}
		}
	}
}

// TestZAddAllocations: ZADD of one new member (redis-benchmark's) builds
// its member sub-key (which it reads the member with), index sub-key and
// score row in one allocation, keeps its score on the stack, and its read
// through a Layer (the leader's overlay) copies no row key: 11 → 7
// allocations, the test's argument slice among them.
// (The rows' meaning is TestZSet's: ZSCORE, ranges by score, a score
// moved.)
func TestZAddAllocations(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	res, err := run(ctx, v, "ZADD", "myzset", "1", "first")
	if err != nil {
		t.Fatal(err)
	}
	v.apply(res.Ops)
	members := make([][]byte, 102) // AllocsPerRun runs once more first
	for i := range members {
		members[i] = fmt.Appendf(nil, "element:%012d", i)
	}
	i := 0
	n := testing.AllocsPerRun(100, func() {
		i++
		res, err := execZAdd(ctx, v, [][]byte{[]byte("ZADD"), []byte("myzset"), []byte("7.5"), members[i]})
		if err != nil || len(res.Ops) != 3 || res.Reply != Int(1) {
			t.Fatalf("ZADD: %d ops, %v, %v", len(res.Ops), res.Reply, err)
		}
	})
	if n > 7 {
		t.Errorf("ZADD of a new member: %v allocations, want at most 7", n)
	}
	if got := string(res.Ops[0].Sub); got != string(keyspace.ZSetIndexSub(1, []byte("first"))) {
		t.Errorf("index sub-key %q", got)
	}
	if got := string(res.Ops[1].Sub) + "=" + string(res.Ops[1].Value); got != string(keyspace.ZSetMemberSub([]byte("first")))+"="+string(keyspace.AppendScore(nil, 1)) {
		t.Errorf("member row %q", got)
	}
}

// TestZPopMinAllocations: ZPOPMIN of one member takes it through one scan
// state (zpopScan) and answers a ScorePair, where closures over the scan's
// variables and an Array{Bulk, Double} cost more (17 allocations against
// this test's View; the leader's, through Hints: BenchmarkSuite in
// storage).
func TestZPopMinAllocations(t *testing.T) {
	v := newMem(now)
	ctx := &Ctx{NowMs: now}
	for i := range 300 {
		res, err := run(ctx, v, "ZADD", "myzset", strconv.Itoa(i), fmt.Sprintf("element:%012d", i))
		if err != nil {
			t.Fatal(err)
		}
		v.apply(res.Ops)
	}
	args := [][]byte{[]byte("ZPOPMIN"), []byte("myzset")}
	want := ScorePair{Member: []byte("element:000000000000"), Score: 0}
	n := testing.AllocsPerRun(100, func() {
		// Not applied: each pops the same lowest member.
		res, err := execZPopMin(ctx, v, args)
		if err != nil || len(res.Ops) != 3 || !reflect.DeepEqual(res.Reply, Reply(want)) {
			t.Fatalf("ZPOPMIN: %d ops, %v, %v", len(res.Ops), res.Reply, err)
		}
	})
	if n > 13 {
		t.Errorf("ZPOPMIN of one member: %v allocations, want at most 13", n)
	}
}
