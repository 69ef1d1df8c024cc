package commands

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSort: SORT's and SORT_RO's replies, each checked against Redis
// 7.0.15 by hand (redis-cli against both servers, the same commands).
func TestSort(t *testing.T) {
	v := newMem(now)
	b := func(ss ...string) Array {
		out := Array{}
		for _, s := range ss {
			if s == "<nil>" {
				out = append(out, Null)
			} else {
				out = append(out, Bulk(s))
			}
		}
		return out
	}
	for _, s := range []struct {
		args string
		want Reply
	}{
		{"RPUSH n 3 1 2 10 -5 1.5", Int(6)},
		{"SORT n", b("-5", "1", "1.5", "2", "3", "10")},
		{"SORT n DESC", b("10", "3", "2", "1.5", "1", "-5")},
		{"SORT n ALPHA", b("-5", "1", "1.5", "10", "2", "3")},
		{"SORT n LIMIT 0 0", b()},
		{"SORT n LIMIT -1 2", b("-5", "1")},
		{"SORT n LIMIT 4 10", b("3", "10")},
		{"SORT n LIMIT 10 1", b()},
		{"SORT n LIMIT 2 -1", b("1.5", "2", "3", "10")},
		{"SORT n BY nosort", b("3", "1", "2", "10", "-5", "1.5")},
		{"SORT n BY nosort DESC LIMIT 1 2", b("-5", "10")},
		{"SET w_3 30", OK},
		{"SET w_1 10", OK},
		{"SET w_2 x", OK},
		{"HSET h_3 f 3", Int(1)},
		{"HSET h_10 f 100", Int(1)},
		{"SORT n BY w_*", ErrorReply("ERR One or more scores can't be converted into double")},
		{"SORT n BY w_* ALPHA", b("10", "-5", "1.5", "1", "3", "2")},
		{"SORT n BY h_*->f", b("-5", "1", "1.5", "2", "3", "10")},
		{"SORT n BY h_*->f GET # GET w_* GET h_*->f LIMIT 4 2", b("3", "30", "3", "10", "<nil>", "100")},
		{"SORT n GET #w LIMIT 0 1", b("<nil>")},
		{"SADD s c a b", Int(3)},
		{"SORT s ALPHA DESC", b("c", "b", "a")},
		{"SORT s", ErrorReply("ERR One or more scores can't be converted into double")},
		{"SORT s BY nosort STORE dst", Int(3)},
		{"LRANGE dst 0 -1", b("a", "b", "c")},
		{"ZADD z 3 a 1 b 2 c", Int(3)},
		{"SORT z BY nosort", b("b", "c", "a")},
		{"SORT z BY nosort DESC LIMIT 1 1", b("c")},
		{"SORT z ALPHA DESC", b("c", "b", "a")},
		{"SORT n STORE dst GET w_* LIMIT 0 3", Int(3)},
		{"LRANGE dst 0 -1", b("", "10", "")},
		{"SORT missing STORE dst", Int(0)},
		{"EXISTS dst", Int(0)},
		{"SET str x", OK},
		{"SORT str", WrongType},
		{"SORT n LIMIT", ErrorReply("ERR syntax error")},
		{"SORT n LIMIT a b", ErrorReply("ERR value is not an integer or out of range")},
		{"SORT n foo", ErrorReply("ERR syntax error")},
		{"SORT_RO n STORE x", ErrorReply("ERR syntax error")},
		{"SORT_RO n DESC LIMIT 0 2", b("10", "3")},
		{"SORT n STORE n LIMIT 0 2", Int(2)},
		{"LRANGE n 0 -1", b("-5", "1")},
	} {
		if got := do(t, v, strings.Fields(s.args)...); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("%s = %v, want %v", s.args, got, s.want)
		}
	}
}

// TestSortModel: SORT of random lists of numbers, against a model that
// sorts them with the same rules (by value, then bytes), both directions
// and random windows.
func TestSortModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 200 {
		v := newMem(now)
		n := rng.IntN(30)
		elems := make([]string, n)
		for i := range elems {
			elems[i] = strconv.Itoa(rng.IntN(20) - 10)
			if rng.IntN(4) == 0 {
				elems[i] += ".5"
			}
		}
		if n > 0 {
			res, err := run(&Ctx{NowMs: now}, v, append([]string{"RPUSH", "l"}, elems...)...)
			if err != nil {
				t.Fatal(err)
			}
			v.apply(res.Ops)
		}
		model := slices.Clone(elems)
		slices.SortStableFunc(model, func(a, b string) int {
			x, _ := strconv.ParseFloat(a, 64)
			y, _ := strconv.ParseFloat(b, 64)
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
		args := []string{"SORT", "l"}
		if rng.IntN(2) == 0 {
			args = append(args, "DESC")
			slices.Reverse(model)
		}
		if rng.IntN(2) == 0 {
			off, cnt := rng.IntN(n+3)-1, rng.IntN(n+3)-1
			args = append(args, "LIMIT", strconv.Itoa(off), strconv.Itoa(cnt))
			lo := min(max(off, 0), len(model))
			hi := len(model)
			if cnt >= 0 {
				hi = min(lo+cnt, len(model))
			}
			model = model[lo:hi]
		}
		res, err := run(&Ctx{NowMs: now}, v, args...)
		if err != nil {
			t.Fatalf("round %d: %v: %v", round, args, err)
		}
		want := Array{}
		for _, m := range model {
			want = append(want, Bulk(m))
		}
		if fmt.Sprint(res.Reply) != fmt.Sprint(want) {
			t.Fatalf("round %d: %v of %v = %v, want %v", round, args, elems, res.Reply, want)
		}
	}
}
