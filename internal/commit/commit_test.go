package commit

import (
	"fmt"
	"strings"
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
		if got := LSN(tt.mode, tt.leader, followers(tt.followers...), nil); got != tt.want {
			t.Errorf("%s: LSN = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// followers names durable LSNs f1, f2, ...
func followers(durable ...uint64) []Follower {
	out := make([]Follower, len(durable))
	for i, d := range durable {
		out[i] = Follower{ID: fmt.Sprintf("f%d", i+1), Durable: d}
	}
	return out
}

// TestLSNWithSyncSet: sync waits for every member of the sync set,
// semisync for one; followers outside the set never count; an empty set
// commits nothing; a member not connected counts as having nothing.
func TestLSNWithSyncSet(t *testing.T) {
	sync, semi := Mode{Kind: Sync}, Mode{Kind: SemiSync}
	fs := followers(8, 5, 9) // f1 8, f2 5, f3 9
	tests := []struct {
		name    string
		mode    Mode
		leader  uint64
		syncSet []string
		want    uint64
	}{
		{"sync: the slowest member", sync, 10, []string{"f1", "f2"}, 5},
		{"sync: one member", sync, 10, []string{"f3"}, 9},
		{"sync: capped by the leader", sync, 7, []string{"f3"}, 7},
		{"sync: a member not connected holds it at 0", sync, 10, []string{"f1", "f9"}, 0},
		{"sync: empty set commits nothing", sync, 10, nil, 0},
		{"semisync: the best member", semi, 10, []string{"f1", "f2"}, 8},
		{"semisync: a faster follower outside the set does not count", semi, 10, []string{"f2"}, 5},
		{"semisync: one member connected is enough", semi, 10, []string{"f9", "f2"}, 5},
		{"semisync: empty set commits nothing", semi, 10, nil, 0},
		{"quorum ignores the sync set", Mode{Kind: Quorum, K: 1}, 10, []string{"f2"}, 9},
		{"async ignores the sync set", Mode{Kind: Async}, 10, []string{"f2"}, 10},
	}
	for _, tt := range tests {
		if got := LSN(tt.mode, tt.leader, fs, tt.syncSet); got != tt.want {
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
	f := func(k uint8, leader uint16, fols []uint16) bool {
		kk := int(k%4) + 1
		fs := make([]uint64, len(fols))
		for i, v := range fols {
			fs[i] = uint64(v % 512)
		}
		l := uint64(leader % 512)
		return LSN(Mode{Kind: Quorum, K: kk}, l, followers(fs...), nil) == naiveQuorum(kk, l, fs)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

// TestParseMode: every accepted spelling gives its mode, every other input
// an error that names it, and String gives back a spelling that parses to
// the same mode.
func TestParseMode(t *testing.T) {
	valid := []struct {
		in   string
		want Mode
	}{
		{"async", Mode{Kind: Async}},
		{"ASYNC", Mode{Kind: Async}},
		{"Async", Mode{Kind: Async}},
		{"  async\t", Mode{Kind: Async}},
		{"quorum 1", Mode{Kind: Quorum, K: 1}},
		{"quorum 2", Mode{Kind: Quorum, K: 2}},
		{"QUORUM 1", Mode{Kind: Quorum, K: 1}},
		{"Quorum 3", Mode{Kind: Quorum, K: 3}},
		{"  quorum    2  ", Mode{Kind: Quorum, K: 2}},
		{"quorum\t4", Mode{Kind: Quorum, K: 4}},
		{"quorum 10", Mode{Kind: Quorum, K: 10}},
		{"quorum 02", Mode{Kind: Quorum, K: 2}}, // strconv.Atoi's reading
		{"quorum +1", Mode{Kind: Quorum, K: 1}}, // likewise
		{"sync", Mode{Kind: Sync}},
		{"SemiSync", Mode{Kind: SemiSync}},
	}
	for _, tt := range valid {
		got, err := ParseMode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		back, err := ParseMode(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q: String() = %q parses to %+v, %v", tt.in, got.String(), back, err)
		}
	}

	invalid := []struct {
		in, errHas string
	}{
		{"", `unknown mode ""`},
		{"   ", `unknown mode "   "`},
		{"sync 1", `unknown mode "sync 1"`},
		{"semi-sync", `unknown mode "semi-sync"`},
		{"asynchronous", `unknown mode "asynchronous"`},
		{"async 1", `unknown mode "async 1"`},
		{"quorum", `unknown mode "quorum"`},
		{"quorum 1 2", `unknown mode "quorum 1 2"`},
		{"quorum1", `unknown mode "quorum1"`},
		{"quorum 0", `positive follower count, got "0"`},
		{"quorum -1", `positive follower count, got "-1"`},
		{"quorum x", `positive follower count, got "x"`},
		{"quorum 1.5", `positive follower count, got "1.5"`},
		{"quorum 99999999999999999999", `positive follower count`},
	}
	for _, tt := range invalid {
		got, err := ParseMode(tt.in)
		if err == nil {
			t.Errorf("ParseMode(%q) = %+v, want an error", tt.in, got)
			continue
		}
		if got != (Mode{}) || !strings.HasPrefix(err.Error(), "commit: ") || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParseMode(%q) = %+v, %q; want the zero Mode and an error with %q", tt.in, got, err, tt.errHas)
		}
	}

	// String of every mode a caller can build parses back to it.
	for _, m := range []Mode{{Kind: Async}, {Kind: Quorum, K: 1}, {Kind: Quorum, K: 7}} {
		if back, err := ParseMode(m.String()); err != nil || back != m {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v", m.String(), back, err, m)
		}
	}
}
