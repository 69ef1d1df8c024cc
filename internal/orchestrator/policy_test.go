package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/hooks"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// hookFile is a command hook that appends each event's JSON to a file.
func hookFile(t *testing.T) (cmd, path string) {
	path = filepath.Join(t.TempDir(), "events.jsonl")
	return "cat >> " + path, path
}

func readHookFile(t *testing.T, path string) []hooks.Event {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []hooks.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev hooks.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("hook got %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// brief is an event's fields that a test can predict.
func brief(evs []hooks.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s %s %s>%s e%d/%d; ", ev.Kind, ev.Cluster, ev.OldLeader, ev.NewLeader, ev.OldEpoch, ev.Epoch)
	}
	return b.String()
}

// TestGate: the failover policy's gate over a scripted run of the rule's
// decisions. Under manual no failover is carried out however many times
// the rule asks (it is asked every 10 ms while the leader is down, so the
// 1000 asks stand for as long as one likes), the detection is announced
// once, and the leader's return ends the wait; under automatic the
// failover goes ahead with one pre_failover and one post_failover. Each
// hook event runs once with its fields.
func TestGate(t *testing.T) {
	_, cli := embedded.ForTest(t)
	store := coord.New(cli, "c1")
	cmd, path := hookFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &Orchestrator{cfg: Config{Cluster: "c1"}, log: slog.New(slog.DiscardHandler), store: store, noted: map[string]time.Time{},
		ctx: ctx, cancel: cancel, active: true, hooks: hooks.New(hooks.Config{Commands: []string{cmd}, Timeout: 10 * time.Second})}
	setPolicy := func(p coord.FailoverPolicy, err error) {
		o.mu.Lock()
		o.policy, o.policyErr = p, err
		o.mu.Unlock()
	}
	t0 := time.Now().Add(-time.Hour)
	v1 := failover.View{Now: t0, Topo: coord.Topology{Epoch: 4, Leader: "n1"}, HaveTopo: true}
	fail := failover.Decision{Kind: failover.KindFailover, Reason: "leader refused 2 probes in a row (process gone)", Candidate: "n2", From: "n1", LastSign: t0}
	status := func() *statusdoc.LeaderDown {
		var st statusdoc.Orchestrator
		o.mu.Lock()
		o.policyStatus(&st)
		o.mu.Unlock()
		return st.LeaderDown
	}

	setPolicy(coord.FailoverManual, nil)
	for i := range 1000 {
		if o.gate(v1, fail) {
			t.Fatalf("ask %d: a failover was carried out under the manual policy", i)
		}
	}
	if o.held != 1000 {
		t.Fatalf("held %d, want 1000", o.held)
	}
	if d := status(); d == nil || d.Leader != "n1" || !d.WaitingForOperator || d.Epoch != 4 || d.Since != t0.UTC().Format(time.RFC3339Nano) || d.Reason != fail.Reason {
		t.Fatalf("status %+v", d)
	}
	// The rule stops asking while the leader has not answered (no node
	// can be promoted, a follower's veto, a detector between readings):
	// a lull, not a return. The outage and its wait go on, announced once.
	lulls := []failover.Decision{
		{Note: fail.Reason + ": failover: no node can be promoted", NoteKey: "no-candidate"},
		{Note: "leader suspected, but follower n2 heard it 20 ms ago: no failover", NoteKey: "veto n2"},
		{},
	}
	// It answers, but not as the leader of the epoch with its lease (a
	// restart in place, cut from etcd): not back either.
	fenced := v1
	fenced.Now = t0.Add(time.Second)
	fenced.Nodes = []failover.NodeView{{ID: "n1", Reply: &peerpb.HeartbeatReply{Role: "follower"}, Age: 10 * time.Millisecond, Fresh: true}}
	noLease := fenced
	noLease.Nodes = []failover.NodeView{{ID: "n1", Reply: &peerpb.HeartbeatReply{Role: "leader", LeadingEpoch: 4}, Age: 10 * time.Millisecond, Fresh: true}}
	for i, v := range []failover.View{v1, fenced, noLease} {
		for _, d := range lulls {
			if o.gate(v, d) {
				t.Fatalf("view %d, %+v: acted on a lull", i, d)
			}
			if d := status(); d == nil || d.Leader != "n1" || !d.WaitingForOperator {
				t.Fatalf("view %d: a lull ended the outage: status %+v", i, d)
			}
		}
	}
	if o.gate(v1, fail) || o.held != 1001 {
		t.Fatalf("held %d, want 1001", o.held)
	}
	// The leader answers again, leading with its lease: the wait ends.
	back := fenced
	back.Nodes = []failover.NodeView{{ID: "n1", Reply: &peerpb.HeartbeatReply{Role: "leader", LeadingEpoch: 4, Answering: true}, Age: 10 * time.Millisecond, Fresh: true}}
	if o.gate(back, failover.Decision{}) || status() != nil {
		t.Fatalf("after the leader's return: status %+v", status())
	}
	// It fails again, and again under manual: a second detection.
	if o.gate(v1, fail) {
		t.Fatal("failover under manual")
	}
	// The operator switches to automatic while it waits: the failover goes
	// ahead at once, with one pre_failover however many times it is asked.
	setPolicy(coord.FailoverAutomatic, nil)
	for range 3 {
		if !o.gate(v1, fail) {
			t.Fatal("failover held under automatic")
		}
	}
	if d := status(); d == nil || d.WaitingForOperator {
		t.Fatalf("failing over: status %+v", d)
	}
	o.changed(&coord.Event{At: time.Now(), Kind: "failover", Reason: fail.Reason, From: "n1", To: "n2", OldEpoch: 4, NewEpoch: 5})
	if d := status(); d != nil {
		t.Fatalf("after the failover: status %+v", d)
	}
	v2 := failover.View{Now: time.Now(), Topo: coord.Topology{Epoch: 5, Leader: "n2"}, HaveTopo: true}
	if o.gate(v2, failover.Decision{}) {
		t.Fatal("nothing to do, yet gate says act")
	}
	// A policy not read yet, or one that does not parse, holds too; a
	// bootstrap is never held.
	for _, p := range []struct {
		p   coord.FailoverPolicy
		err error
	}{{"", nil}, {"", errors.New("garbled")}} {
		setPolicy(p.p, p.err)
		if o.gate(v2, failover.Decision{Kind: failover.KindFence, Reason: "x", From: "n2"}) {
			t.Fatalf("policy %q (%v): fence carried out", p.p, p.err)
		}
		if !o.gate(failover.View{}, failover.Decision{Kind: failover.KindBootstrap, Candidate: "n1"}) {
			t.Fatalf("policy %q (%v): bootstrap held", p.p, p.err)
		}
	}

	o.hooks.Close()
	o.wg.Wait() // the events recorded in etcd
	want := "detected c1 n1> e0/4; leader_returned c1 n1>n1 e0/4; detected c1 n1> e0/4; pre_failover c1 n1>n2 e0/4; post_failover c1 n1>n2 e4/5; detected c1 n2> e0/5; "
	got := readHookFile(t, path)
	if brief(got) != want {
		t.Fatalf("hook events:\n got %s\nwant %s", brief(got), want)
	}
	if got[0].Reason != fail.Reason || got[0].Time.IsZero() {
		t.Fatalf("detected event %+v", got[0])
	}
	evs, err := store.Events(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind+" "+ev.From)
	}
	// Recorded in etcd only while waiting for an operator (an automatic
	// failover's own event says it all).
	if fmt.Sprint(kinds) != "[detected n1 leader-returned n1 detected n1 detected n2]" {
		t.Fatalf("events in etcd: %v", kinds)
	}
}

// TestManualPolicy: under the manual policy a killed leader is detected,
// reported and announced, and not failed over while the rule asks for it
// again and again for over a second (under automatic it takes ~100 ms);
// then `tandem promote`'s call works, with its hooks.
func TestManualPolicy(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	if _, err := c.store.SetFailoverPolicy(ctx, coord.FailoverManual, "test"); err != nil {
		t.Fatal(err)
	}
	cmd, path := hookFile(t)
	o := c.startOrchestratorWith("o1", func(cfg *Config) { cfg.Hooks = hooks.Config{Commands: []string{cmd}} })
	top := c.waitLeader(10 * time.Second) // bootstrap is not held
	old := top.Leader
	// Every follower holds the leader's write before it goes, so that
	// promoting either loses nothing (else promote rightly refuses the one
	// behind).
	for id := range c.nodes {
		if id == old {
			continue
		}
		cl := c.client(id)
		testutil.Eventually(t, id+" caught up", 10*time.Second, func() (bool, string) {
			v, err := cl.Get(ctx, "probe").Result()
			return err == nil && v == "x", fmt.Sprintf("%q %v", v, err)
		})
	}
	c.nodes[old].Close()
	testutil.Eventually(t, "the failed leader reported, waiting for an operator", 10*time.Second, func() (bool, string) {
		st := o.Status(ctx)
		d := st.LeaderDown
		return d != nil && d.Leader == old && d.WaitingForOperator && st.FailoverPolicy == "manual", fmt.Sprintf("%+v", d)
	})
	// 150 asks of the rule are 1.5 s of 10 ms ticks.
	testutil.Eventually(t, "the rule asked for a failover 150 times", 20*time.Second, func() (bool, string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.held >= 150, fmt.Sprint(o.held)
	})
	if now := c.topology(); now.Epoch != top.Epoch || now.Leader != old {
		t.Fatalf("failed over under the manual policy: %+v then %+v", top, now)
	}
	var follower string
	for id := range c.nodes {
		if id != old {
			follower = id
			break
		}
	}
	res, err := orchapi.Promote(ctx, o.HTTPAddr(), follower, false)
	if err != nil || res.To != follower || res.From != old || res.NewEpoch <= top.Epoch {
		t.Fatalf("promote %s: %+v %v", follower, res, err)
	}
	c.waitLeader(10*time.Second, old)
	testutil.Eventually(t, "the outage over", 5*time.Second, func() (bool, string) {
		d := o.Status(ctx).LeaderDown
		return d == nil, fmt.Sprintf("%+v", d)
	})
	o.hooks.Close()
	want := fmt.Sprintf("detected tandem %s> e0/%d; pre_promote tandem %s>%s e0/%d; post_promote tandem %s>%s e%d/%d; ",
		old, top.Epoch, old, follower, top.Epoch, old, follower, top.Epoch, res.NewEpoch)
	if got := brief(readHookFile(t, path)); got != want {
		t.Fatalf("hook events:\n got %s\nwant %s", got, want)
	}
	evs, err := c.store.Events(ctx, 3)
	if err != nil || len(evs) < 2 || evs[len(evs)-2].Kind != "detected" || evs[len(evs)-1].Kind != "promote" {
		t.Fatalf("events %+v %v", evs, err)
	}
}

// TestFailoverHooksDoNotDelay: under the automatic policy each hook gets
// detected, pre_failover and post_failover once, and a hook that hangs
// does not hold up the failover: the new leader takes writes while that
// hook's first run is still going (it has not timed out yet).
func TestFailoverHooksDoNotDelay(t *testing.T) {
	c := newTestCluster(t, 3)
	cmd, path := hookFile(t)
	o := c.startOrchestratorWith("o1", func(cfg *Config) {
		cfg.Hooks = hooks.Config{Commands: []string{"sleep 60", cmd}, Timeout: 5 * time.Second}
	})
	top := c.waitLeader(10 * time.Second)
	old := top.Leader
	killed := time.Now()
	c.nodes[old].Close()
	top2 := c.waitLeader(10*time.Second, old)
	took := time.Since(killed)
	if f := o.hooks.Failures(); f != 0 || took >= 5*time.Second {
		t.Fatalf("the failover took %v, %d hook runs timed out: it waited for the hanging hook", took, f)
	}
	testutil.Eventually(t, "the file hook's three events", 10*time.Second, func() (bool, string) {
		n := len(readHookFile(t, path))
		return n >= 3, fmt.Sprint(n)
	})
	want := fmt.Sprintf("detected tandem %s> e0/%d; pre_failover tandem %s>%s e0/%d; post_failover tandem %s>%s e%d/%d; ",
		old, top.Epoch, old, top2.Leader, top.Epoch, old, top2.Leader, top.Epoch, top2.Epoch)
	if got := brief(readHookFile(t, path)); got != want {
		t.Fatalf("hook events:\n got %s\nwant %s", got, want)
	}
}

// TestEvidence: the "leader failed" line says what each node showed, so a
// failover on suspicion that no follower vetoed can be explained from the
// log (one of bench/run.sh's, at load 44: every node late, the followers'
// answers old).
func TestEvidence(t *testing.T) {
	now := time.Unix(1000, 0)
	fol := func(id string, age, heard, slow time.Duration, fresh bool) failover.NodeView {
		return failover.NodeView{ID: id, Fresh: fresh, Age: age, LastBeat: now.Add(-age), Slow: slow,
			Reply: &peerpb.HeartbeatReply{Role: "follower", Following: "n1", LeaderHeardAgoMs: heard.Milliseconds()}}
	}
	v := failover.View{Now: now, Nodes: []failover.NodeView{
		{ID: "n1", Age: 1122 * time.Millisecond, LastBeat: now.Add(-1122 * time.Millisecond), Slow: 232 * time.Millisecond,
			Reply: &peerpb.HeartbeatReply{Role: "leader", LeaderHeardAgoMs: -1}},
		fol("n2", 162*time.Millisecond, 646*time.Millisecond, 568*time.Millisecond, true),
		fol("n3", 396*time.Millisecond, 55*time.Millisecond, 627*time.Millisecond, false),
		{ID: "n4"},
	}}
	got := evidence(v)
	for _, want := range []string{
		"orchestrator late 0s",
		"n1: leader, answer 1.122s old, beat 1.122s ago, slow 232ms, not fresh;",
		"n2: follower, answer 162ms old, beat 162ms ago, slow 568ms, heard n1 808ms ago",
		"n3: follower, answer 396ms old, beat 396ms ago, slow 627ms, not fresh, heard n1 451ms ago",
		"n4: never answered",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("evidence lacks %q:\n%s", want, got)
		}
	}
}
