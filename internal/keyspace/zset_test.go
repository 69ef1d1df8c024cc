package keyspace

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestScoreOrder: encoded scores order exactly as Redis orders scores,
// -inf < negatives < -0 = 0 < positives < +inf, and decode to themselves.
func TestScoreOrder(t *testing.T) {
	scores := []float64{math.Inf(-1), -math.MaxFloat64, -1e300, -2, -1.5, -1, -math.SmallestNonzeroFloat64,
		0, math.SmallestNonzeroFloat64, 1e-300, 1, 1.5, 2, 1e300, math.MaxFloat64, math.Inf(1)}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		scores = append(scores, math.Float64frombits(r.Uint64()))
	}
	scores = slices.DeleteFunc(scores, math.IsNaN)
	for _, a := range scores {
		ea := AppendScore(nil, a)
		if got, err := DecodeScore(ea); err != nil || got != a {
			t.Fatalf("DecodeScore(AppendScore(%g)) = %g, %v", a, got, err)
		}
		for _, b := range scores[:20] {
			eb := AppendScore(nil, b)
			want := 0
			if a < b {
				want = -1
			} else if a > b {
				want = 1
			}
			if got := bytes.Compare(ea, eb); got != want {
				t.Fatalf("compare(enc %g, enc %g) = %d, want %d", a, b, got, want)
			}
		}
	}
	if !bytes.Equal(AppendScore(nil, math.Copysign(0, -1)), AppendScore(nil, 0)) {
		t.Fatal("-0 and 0 encode differently: members of score -0 and 0 would not order by member")
	}
}

// TestIndexSubOrder: index sub-keys order by score, then member; the
// bounds ZSetIndexFrom and ZSetIndexAfter fall just before and just after
// every row of their score.
func TestIndexSubOrder(t *testing.T) {
	type zi struct {
		s float64
		m string
	}
	items := []zi{{math.Inf(-1), "z"}, {-1, ""}, {-1, "a"}, {-1, "a\x00"}, {-1, "b"}, {0, "\xff"}, {0.5, "a"}, {math.Inf(1), ""}}
	for i := range items {
		ki := ZSetIndexSub(items[i].s, []byte(items[i].m))
		s, m, err := ParseZSetIndexSub(ki)
		if err != nil || s != items[i].s || string(m) != items[i].m {
			t.Fatalf("ParseZSetIndexSub(%q) = %g %q %v", ki, s, m, err)
		}
		if i > 0 && bytes.Compare(ZSetIndexSub(items[i-1].s, []byte(items[i-1].m)), ki) >= 0 {
			t.Fatalf("%v does not sort before %v", items[i-1], items[i])
		}
		from, after := ZSetIndexFrom(items[i].s), ZSetIndexAfter(items[i].s)
		if bytes.Compare(from, ki) > 0 || bytes.Compare(after, ki) <= 0 {
			t.Fatalf("%v: not in [From, After) of its score", items[i])
		}
		for _, o := range items {
			ko := ZSetIndexSub(o.s, []byte(o.m))
			if o.s > items[i].s && bytes.Compare(ko, after) < 0 {
				t.Fatalf("%v (a higher score) sorts before After(%g)", o, items[i].s)
			}
		}
	}
	if bytes.Compare(ZSetIndexSub(math.Inf(1), []byte("\xff\xff")), ZSetMemberSub(nil)) >= 0 {
		t.Fatal("index rows do not all sort before member rows")
	}
}

func TestBadScores(t *testing.T) {
	nan := make([]byte, 8)
	copy(nan, AppendScore(nil, math.Inf(1)))
	nan[7] = 1 // +inf's next encoding is a NaN
	for _, b := range [][]byte{nil, {1, 2, 3}, nan} {
		if _, err := DecodeScore(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeScore(%x) = %v, want ErrCorrupt", b, err)
		}
	}
	if _, _, err := ParseZSetIndexSub([]byte("m123")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ParseZSetIndexSub of a member row: %v", err)
	}
}

// FuzzScore: any 8 bytes decode to a score that re-encodes to them, or are
// refused as corrupt; never a panic.
func FuzzScore(f *testing.F) {
	f.Add(AppendScore(nil, 1.5))
	f.Add(AppendScore(nil, math.Inf(-1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeScore(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got := AppendScore(nil, s); !bytes.Equal(got, b) && !(s == 0 && bytes.Equal(b, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})) {
			t.Fatalf("%x decodes to %g, which encodes to %x", b, s, got)
		}
	})
}
