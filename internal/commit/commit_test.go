package commit

import (
	"testing"
	"testing/quick"
)

func TestLSN(t *testing.T) {
	tests := []struct {
		name      string
		mode      Mode
		leader    uint64
		followers []uint64
		want      uint64
	}{
		{"async ignores followers", Mode{Kind: Async}, 10, []uint64{1, 2}, 10},
		{"async without followers", Mode{Kind: Async}, 7, nil, 7},
		{"quorum 1 takes best follower", Mode{Kind: Quorum, K: 1}, 10, []uint64{3, 8, 5}, 8},
		{"quorum 2 takes second best", Mode{Kind: Quorum, K: 2}, 10, []uint64{3, 8, 5}, 5},
		{"quorum capped by leader", Mode{Kind: Quorum, K: 1}, 4, []uint64{9}, 4},
		{"quorum short of followers", Mode{Kind: Quorum, K: 3}, 10, []uint64{9, 9}, 0},
	}
	for _, tt := range tests {
		if got := LSN(tt.mode, tt.leader, tt.followers); got != tt.want {
			t.Errorf("%s: LSN = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// naiveQuorum counts, for each candidate LSN from high to low, how many
// followers hold it.
func naiveQuorum(k int, leader uint64, followers []uint64) uint64 {
	for lsn := leader; lsn > 0; lsn-- {
		n := 0
		for _, f := range followers {
			if f >= lsn {
				n++
			}
		}
		if n >= k {
			return lsn
		}
	}
	return 0
}

func TestQuorumMatchesNaive(t *testing.T) {
	f := func(k uint8, leader uint16, followers []uint16) bool {
		kk := int(k%4) + 1
		fs := make([]uint64, len(followers))
		for i, v := range followers {
			fs[i] = uint64(v % 512)
		}
		l := uint64(leader % 512)
		return LSN(Mode{Kind: Quorum, K: kk}, l, fs) == naiveQuorum(kk, l, fs)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"async", "quorum 2", "QUORUM 1"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "sync", "quorum", "quorum 0", "quorum x"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) succeeded", s)
		}
	}
}
