package coord

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
)

// TestDecodeTopologyRules: the rules are parsed once, when the topology is
// decoded; a value that does not parse fails the decoding and names it.
func TestDecodeTopologyRules(t *testing.T) {
	tests := []struct {
		json    string
		mode    commit.Mode
		set     bool
		after   time.Duration
		syncMin int
		err     string
	}{
		{json: `{"epoch":1,"leader":"n1"}`},
		{json: `{"epoch":1,"mode":"quorum 2","sync_fallback":"after 10s","sync_min":1}`, mode: commit.Mode{Kind: commit.Quorum, K: 2}, set: true, after: 10 * time.Second, syncMin: 1},
		{json: `{"epoch":1,"mode":"semisync","sync_fallback":"never"}`, mode: commit.Mode{Kind: commit.SemiSync}, set: true},
		{json: `{"epoch":1,"mode":"SYNC"}`, mode: commit.Mode{Kind: commit.Sync}, set: true},
		{json: `{"epoch":1,"mode":"quorum x"}`, err: `"x"`},
		{json: `{"epoch":1,"mode":"quorum 0"}`, err: `quorum needs a positive follower count`},
		{json: `{"epoch":1,"mode":"fast"}`, err: `unknown mode "fast"`},
		{json: `{"epoch":1,"sync_fallback":"after soon"}`, err: `sync-fallback "after soon"`},
		{json: `{"epoch":1,"sync_fallback":"10s"}`, err: `sync-fallback "10s"`},
		{json: `{"epoch":1,"sync_fallback":"after -1s"}`, err: `sync-fallback`},
		{json: `{"epoch":1,"sync_min":-1}`, err: `sync_min -1`},
	}
	for _, tc := range tests {
		top, err := DecodeTopology([]byte(tc.json))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one with %q", tc.json, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if top.Mode.Set != tc.set || (tc.set && top.Mode.Mode != tc.mode) || top.SyncFallback.After != tc.after || top.SyncMin != tc.syncMin {
			t.Errorf("%s: decoded %+v", tc.json, top)
		}
	}
}

// TestTopologyRulesRoundTrip: what is stored reads back the same, in the
// strings operators know.
func TestTopologyRulesRoundTrip(t *testing.T) {
	top := Topology{Epoch: 2, Mode: ModeOf(commit.Mode{Kind: commit.Quorum, K: 1}), SyncFallback: Fallback{After: 3 * time.Second}, SyncMin: 1}
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"mode":"quorum 1"`) || !strings.Contains(string(b), `"sync_fallback":"after 3s"`) {
		t.Fatalf("stored as %s", b)
	}
	back, err := DecodeTopology(b)
	if err != nil || back.Mode != top.Mode || back.SyncFallback != top.SyncFallback || back.SyncMin != 1 {
		t.Fatalf("read back %+v %v", back, err)
	}
	// Unset values are left out, as before they were typed.
	b, _ = json.Marshal(Topology{Epoch: 1})
	if strings.Contains(string(b), "mode") || strings.Contains(string(b), "sync_fallback") {
		t.Fatalf("unset rules stored: %s", b)
	}
}

// TestWorkable: rules that parse but cannot work with the members are
// refused with a reason.
func TestWorkable(t *testing.T) {
	mode := func(s string) Mode {
		m, err := ParseMode(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		top     Topology
		members int
		err     string
	}{
		{top: Topology{Mode: mode("quorum 2")}, members: 3},
		{top: Topology{Mode: mode("quorum 9")}, members: 3, err: "quorum 9 needs 9 followers, the cluster has 3 members (2 followers)"},
		{top: Topology{Mode: mode("quorum 3")}, members: 3, err: "quorum 3 needs 3 followers"},
		{top: Topology{Mode: mode("semisync"), SyncMin: 2}, members: 3},
		{top: Topology{Mode: mode("semisync"), SyncMin: 3}, members: 3, err: "sync-min 3 needs 3 followers"},
		{top: Topology{Mode: mode("sync"), SyncMin: 1}, members: 1, err: "sync-min 1"},
		{top: Topology{Mode: mode("async"), SyncMin: 5}, members: 3}, // sync-min does nothing in async
		{top: Topology{Mode: mode("async")}, members: 1},
	}
	for _, tc := range tests {
		err := tc.top.Workable(tc.members)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%v sync-min %d on %d members: %v", tc.top.Mode, tc.top.SyncMin, tc.members, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnworkable) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v sync-min %d on %d members: %v, want ErrUnworkable with %q", tc.top.Mode, tc.top.SyncMin, tc.members, err, tc.err)
		}
	}
}

// TestGarbledTopologyIsLoud: a topology stored with a mode that does not
// parse is an error to Topology and to the checked watch, not a default.
func TestGarbledTopologyIsLoud(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client().Put(ctx, s.Key("epoch"), "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, s.Key("topology"), `{"epoch":3,"leader":"n1","mode":"quorum two"}`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Topology(ctx); !errors.Is(err, ErrBadTopology) || !strings.Contains(err.Error(), `"two"`) {
		t.Fatalf("Topology: %v, want the mode's error", err)
	}
	w := <-s.WatchTopologyChecked(ctx)
	if w.Err == nil || !strings.Contains(w.Err.Error(), `"two"`) {
		t.Fatalf("watch delivered %+v, want the mode's error", w)
	}
	if err := s.SetTopology(ctx, 3, Topology{Epoch: 3, Leader: "n1", SyncMin: -2}, nil); err == nil {
		t.Fatal("SetTopology stored a negative sync-min")
	}
	// The repair: a change that gives the rule that does not decode.
	min1 := 1
	if _, _, err := s.ChangeRules(ctx, RulesChange{SyncMin: &min1}, true); err == nil || !strings.Contains(err.Error(), "mode does not decode") {
		t.Fatalf("a change that leaves the garbled mode: %v", err)
	}
	semi := ModeOf(commit.Mode{Kind: commit.SemiSync})
	if _, next, err := s.ChangeRules(ctx, RulesChange{Mode: &semi}, true); err != nil || next.Mode != semi || next.Leader != "n1" || next.Epoch != 3 {
		t.Fatalf("repair: %+v %v", next, err)
	}
	if top, _, err := s.Topology(ctx); err != nil || top.Mode != semi {
		t.Fatalf("after the repair: %+v %v", top, err)
	}
}

// TestChangeRules: tandem mode set's change. Rules that cannot work with
// the registered members are refused unless forced; a forced change says
// so in its event.
func TestChangeRules(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"n1", "n2", "n3"} {
		if err := s.PutMember(ctx, Member{ID: id, Priority: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.ChangeRules(ctx, RulesChange{}, false); err == nil {
		t.Fatal("a change with no topology was accepted")
	}
	if err := s.SetTopology(ctx, 0, Topology{Epoch: 1, Leader: "n1", Mode: ModeOf(commit.Mode{Kind: commit.SemiSync})}, nil); err != nil {
		t.Fatal(err)
	}
	q9 := ModeOf(commit.Mode{Kind: commit.Quorum, K: 9})
	_, _, err := s.ChangeRules(ctx, RulesChange{Mode: &q9}, false)
	if !errors.Is(err, ErrUnworkable) || !strings.Contains(err.Error(), "quorum 9 needs 9 followers, the cluster has 3 members (2 followers)") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("quorum 9 on 3 members: %v", err)
	}
	if top, _, _ := s.Topology(ctx); top.Mode.Kind != commit.SemiSync {
		t.Fatalf("a refused change was stored: %+v", top)
	}
	three := 3
	if _, _, err := s.ChangeRules(ctx, RulesChange{SyncMin: &three}, false); !errors.Is(err, ErrUnworkable) {
		t.Fatalf("sync-min 3 on 3 members: %v", err)
	}
	q2, fb := ModeOf(commit.Mode{Kind: commit.Quorum, K: 2}), Fallback{After: time.Second}
	old, next, err := s.ChangeRules(ctx, RulesChange{Mode: &q2, Fallback: &fb}, false)
	if err != nil || old.Mode.Kind != commit.SemiSync || next.Mode != q2 || next.SyncFallback != fb || next.Epoch != 1 {
		t.Fatalf("quorum 2: %+v -> %+v, %v", old, next, err)
	}
	if _, next, err = s.ChangeRules(ctx, RulesChange{Mode: &q9}, true); err != nil || next.Mode != q9 {
		t.Fatalf("forced quorum 9: %+v %v", next, err)
	}
	evs, err := s.Events(ctx, 1)
	if err != nil || len(evs) != 1 || evs[0].Kind != "mode" || !strings.Contains(evs[0].Reason, "forced") {
		t.Fatalf("events %+v %v, want the forced change recorded", evs, err)
	}
	if top, _, _ := s.Topology(ctx); top.Mode != q9 || top.SyncFallback != fb {
		t.Fatalf("stored %+v", top)
	}
}
