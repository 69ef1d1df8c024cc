package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
	"github.com/tandemdb/tandem/internal/tools/chaos/relay"
)

var topo = Topology{Nodes: []int{1, 2, 3}}

func allKinds(t *testing.T) []Kind {
	var names []string
	for _, k := range Kinds {
		names = append(names, k.Name)
	}
	ks, err := Lookup(names)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func describe(steps []Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.String())
	}
	return out
}

func TestPlanDeterministic(t *testing.T) {
	tm := DefaultTiming(10 * time.Minute)
	ks := allKinds(t)
	a := describe(Plan(42, ks, topo, tm))
	b := describe(Plan(42, ks, topo, tm))
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if len(a) < 50 {
		t.Fatalf("only %d faults in 10 minutes", len(a))
	}
	c := describe(Plan(43, ks, topo, tm))
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 42 and 43 give the same schedule")
	}
	t.Logf("seed 42 begins: %s", strings.Join(a[:5], "; "))
}

func TestPlanShape(t *testing.T) {
	tm := DefaultTiming(2 * time.Minute)
	ks := allKinds(t)
	seen := map[string]bool{}
	for seed := range uint64(50) {
		steps := Plan(seed, ks, topo, tm)
		prevEnd := time.Duration(0)
		for _, s := range steps {
			seen[s.Kind] = true
			if s.At < tm.Warmup || s.At+s.Hold > tm.Duration-tm.Tail {
				t.Fatalf("seed %d: %s outside [%v, %v]", seed, s, tm.Warmup, tm.Duration-tm.Tail)
			}
			if s.At < prevEnd+tm.MinGap && prevEnd != 0 {
				t.Fatalf("seed %d: %s overlaps the previous fault (ended %v)", seed, s, prevEnd)
			}
			if s.Hold < tm.MinHold || s.Hold > tm.MaxHold {
				t.Fatalf("seed %d: hold %v out of bounds", seed, s.Hold)
			}
			prevEnd = s.At + s.Hold
			f, err := resolve(context.Background(), &fakeEnv{leader: 2, active: 1}, s.Fault)
			if err != nil {
				t.Fatalf("seed %d: resolve %s: %v", seed, s, err)
			}
			// The leader is n2 at injection: targets follow it.
			switch f := f.(type) {
			case Kill:
				if s.Kind == "kill-leader" && f.ID != 2 || s.Kind == "kill-follower" && (f.ID == 2 || f.ID == 0) {
					t.Fatalf("seed %d: %s hits the wrong node: %s", seed, s, f.Name())
				}
			case KillAfterAck:
				if s.Kind != "kill-leader-after-ack" || f.ID != 2 {
					t.Fatalf("seed %d: %s hits the wrong node", seed, s)
				}
			case Pause:
				if (s.Kind == "pause") != (f.ID == 2) {
					t.Fatalf("seed %d: %s hits the wrong node: %s", seed, s, f.Name())
				}
			case Link:
				switch s.Kind {
				case "cut-leader-etcd":
					if f.From != "n2" || f.To != Etcd || !reflect.DeepEqual(f.Suspects(), []int{2}) {
						t.Fatalf("seed %d: %s is %s", seed, s, f.Name())
					}
				case "cut-orchestrator-leader":
					if f.From != "o1" || f.To != "n2" || f.Suspects() != nil {
						t.Fatalf("seed %d: %s is %s", seed, s, f.Name())
					}
				default:
					if f.To != "n2" || f.From == "n2" {
						t.Fatalf("seed %d: %s is not a follower->leader link: %s", seed, s, f.Name())
					}
				}
			case Links:
				if s.Kind != "partition" || len(f) != 2 || f[0].To != "n2" || f[1].From != "n2" || f[0].From == "n2" {
					t.Fatalf("seed %d: %s is %s", seed, s, f.Name())
				}
			case KillOrchestrator:
				if f.I != 1 {
					t.Fatalf("seed %d: %s is %s", seed, s, f.Name())
				}
			default:
				t.Fatalf("seed %d: %s resolved to %T", seed, s, f)
			}
		}
	}
	if len(seen) != len(Kinds) {
		t.Errorf("50 seeds use only %v of %d kinds", seen, len(Kinds))
	}
	if steps := Plan(1, nil, topo, tm); steps != nil {
		t.Fatalf("no kinds gave %v", steps)
	}
}

func TestLookup(t *testing.T) {
	ks, err := Lookup(DefaultKinds)
	if err != nil || len(ks) != len(DefaultKinds) {
		t.Fatalf("default kinds: %v, %v", ks, err)
	}
	_, err = Lookup([]string{"pause", "meteor"})
	if err == nil || !strings.Contains(err.Error(), "meteor") || !strings.Contains(err.Error(), "kill-leader") {
		t.Fatalf("unknown kind error = %v", err)
	}
}

// fakeEnv records the calls faults make.
type fakeEnv struct {
	mu     sync.Mutex
	calls  []string
	relays map[[2]string]*relay.Relay
	fail   string // a call that fails
	leader int    // 0: n1
	active int    // the active orchestrator, 0: o1
}

func (e *fakeEnv) do(call string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, call)
	if call == e.fail {
		return errors.New("injected failure")
	}
	return nil
}

func (e *fakeEnv) Kill(id int) error   { return e.do(fmt.Sprintf("kill %d", id)) }
func (e *fakeEnv) Start(id int) error  { return e.do(fmt.Sprintf("start %d", id)) }
func (e *fakeEnv) Pause(id int) error  { return e.do(fmt.Sprintf("pause %d", id)) }
func (e *fakeEnv) Resume(id int) error { return e.do(fmt.Sprintf("resume %d", id)) }
func (e *fakeEnv) WaitReady(_ context.Context, id int) error {
	return e.do(fmt.Sprintf("ready %d", id))
}
func (e *fakeEnv) Write(_ context.Context, id int) error {
	return e.do(fmt.Sprintf("write %d", id))
}
func (e *fakeEnv) Link(from, to string) *relay.Relay { return e.relays[[2]string{from, to}] }
func (e *fakeEnv) Leader(context.Context) (int, error) {
	if e.leader == 0 {
		return 1, nil
	}
	return e.leader, nil
}
func (e *fakeEnv) Nodes() []int { return []int{1, 2, 3} }
func (e *fakeEnv) ActiveOrchestrator(context.Context) (int, error) {
	if e.active == 0 {
		return 1, nil
	}
	return e.active, nil
}
func (e *fakeEnv) KillOrchestrator(i int) error  { return e.do(fmt.Sprintf("kill o%d", i)) }
func (e *fakeEnv) StartOrchestrator(i int) error { return e.do(fmt.Sprintf("start o%d", i)) }

// The runner's tests run in a synctest bubble: the schedule's waits take
// no real time, and the recorded times are exact. The relay (real sockets,
// which never block durably) is made outside the bubble.

func TestRunRecordsAndHeals(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rl, err := relay.Listen(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	synctest.Test(t, func(t *testing.T) {
		env := &fakeEnv{relays: map[[2]string]*relay.Relay{{"n2", "n1"}: rl}, fail: "pause 3"}
		ms := time.Millisecond
		steps := []Step{
			{At: 0, Hold: 10 * ms, Kind: "kill-leader", Fault: Kill{ID: 1}},
			{At: 20 * ms, Hold: 10 * ms, Kind: "pause", Fault: Pause{ID: 3}},
			{At: 40 * ms, Hold: 10 * ms, Kind: "partition", Fault: Link{From: "n2", To: "n1", Mode: relay.Mode{Cut: true}}},
			{At: 60 * ms, Hold: 10 * ms, Kind: "partition", Fault: Link{From: "n3", To: "n1", Mode: relay.Mode{Cut: true}}},
			{At: 80 * ms, Hold: 5 * ms, Kind: "kill-leader-after-ack", Fault: KillAfterAck{ID: 1}},
		}
		rec := history.NewRecorder()
		Run(context.Background(), env, steps, time.Now(), rec, slog.New(slog.NewTextHandler(t.Output(), nil)))
		want := []string{"kill 1", "start 1", "ready 1", "pause 3", "write 1", "kill 1", "start 1", "ready 1"}
		if !reflect.DeepEqual(env.calls, want) {
			t.Fatalf("calls = %v, want %v", env.calls, want)
		}
		if m := rl.Mode(); m != (relay.Mode{}) {
			t.Fatalf("relay left in mode %v", m)
		}
		fs := rec.History(0).Faults
		if len(fs) != 5 {
			t.Fatalf("faults = %+v", fs)
		}
		// On the fake clock every fault starts at its step's time and
		// heals exactly its hold later.
		if fs[0].Inject != 0 || fs[0].Heal != int64(10*ms) || fs[0].Name != "kill n1" {
			t.Fatalf("kill event %+v", fs[0])
		}
		if fs[1].InjectErr == "" || fs[1].Heal != 0 || fs[1].Inject != int64(20*ms) {
			t.Fatalf("failed pause event %+v", fs[1])
		}
		if fs[2].Heal != int64(50*ms) || fs[2].InjectErr != "" {
			t.Fatalf("partition event %+v", fs[2])
		}
		if !strings.Contains(fs[3].InjectErr, "no relay") {
			t.Fatalf("partition without relay: %+v", fs[3])
		}
		if fs[4].Name != "kill n1 after an ack" || fs[4].Inject != int64(80*ms) || fs[4].Heal != int64(85*ms) {
			t.Fatalf("kill after ack event %+v", fs[4])
		}
	})
}

// A failed write does not stop the kill, and the kill is healed.
func TestKillAfterAckKillsWhenTheWriteFails(t *testing.T) {
	env := &fakeEnv{fail: "write 2"}
	f := KillAfterAck{ID: 2}
	if err := f.Inject(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if err := f.Heal(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if want := []string{"write 2", "kill 2", "start 2", "ready 2"}; !reflect.DeepEqual(env.calls, want) {
		t.Fatalf("calls = %v, want %v", env.calls, want)
	}
	if err := (KillAfterAck{}).Inject(context.Background(), env); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("no node: %v", err)
	}
}

func TestRunHealsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := &fakeEnv{}
		ctx, cancel := context.WithCancel(context.Background())
		steps := []Step{
			{At: 0, Hold: time.Hour, Kind: "pause", Fault: Pause{ID: 2}},
			{At: 2 * time.Hour, Hold: time.Hour, Kind: "pause", Fault: Pause{ID: 3}},
		}
		done := make(chan struct{})
		go func() {
			Run(ctx, env, steps, time.Now(), history.NewRecorder(), slog.New(slog.DiscardHandler))
			close(done)
		}()
		synctest.Wait() // Run holds the first fault
		if want := []string{"pause 2"}; !reflect.DeepEqual(env.calls, want) {
			t.Fatalf("before cancel: calls = %v, want %v", env.calls, want)
		}
		start := time.Now()
		cancel()
		<-done
		if d := time.Since(start); d != 0 {
			t.Fatalf("Run took %v of fake time to return after cancel", d)
		}
		if want := []string{"pause 2", "resume 2"}; !reflect.DeepEqual(env.calls, want) {
			t.Fatalf("calls = %v, want %v", env.calls, want)
		}
	})
}

// A deferred fault is resolved at injection: it hits the leader of that
// moment, and the history names the node and its suspects.
func TestRunResolvesAtInjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := &fakeEnv{leader: 3, active: 2}
		ks, err := Lookup([]string{"kill-leader", "kill-orchestrator", "pause-follower"})
		if err != nil {
			t.Fatal(err)
		}
		steps := []Step{
			{At: 0, Hold: time.Millisecond, Kind: ks[0].Name, Fault: ks[0].New(nil, topo)},
			{At: 10 * time.Millisecond, Hold: time.Millisecond, Kind: ks[1].Name, Fault: ks[1].New(nil, topo)},
		}
		rec := history.NewRecorder()
		Run(context.Background(), env, steps, time.Now(), rec, slog.New(slog.DiscardHandler))
		if want := []string{"kill 3", "start 3", "ready 3", "kill o2", "start o2"}; !reflect.DeepEqual(env.calls, want) {
			t.Fatalf("calls = %v, want %v", env.calls, want)
		}
		fs := rec.History(0).Faults
		if fs[0].Name != "kill n3" || !reflect.DeepEqual(fs[0].Suspects, []int{3}) {
			t.Fatalf("kill-leader recorded as %+v", fs[0])
		}
		if fs[1].Name != "kill o2" || fs[1].Suspects != nil {
			t.Fatalf("kill-orchestrator recorded as %+v", fs[1])
		}
	})
}

// A partition's leader->follower direction has no relay in the static
// topology: the partition still injects, on the one link there is.
func TestPartitionWithoutReverseRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rl, err := relay.Listen(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	env := &fakeEnv{relays: map[[2]string]*relay.Relay{{"n2", "n1"}: rl}}
	ks, _ := Lookup([]string{"partition"})
	f, err := resolve(context.Background(), env, ks[0].New(rand.New(rand.NewPCG(1, 1)), topo))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Inject(context.Background(), env); err != nil {
		t.Fatalf("%s: %v", f.Name(), err)
	}
	if !rl.Mode().Cut {
		t.Fatalf("%s left n2->n1 in mode %v", f.Name(), rl.Mode())
	}
	if err := f.Heal(context.Background(), env); err != nil || rl.Mode().Cut {
		t.Fatalf("heal: %v, mode %v", err, rl.Mode())
	}
	if err := (Link{From: "n3", To: "n1"}).Inject(context.Background(), env); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a required link without a relay: %v", err)
	}
}
