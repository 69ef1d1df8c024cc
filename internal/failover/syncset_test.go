package failover

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
)

// The sync-set policy's tests are scripts in testdata/syncset, in the style
// of replication's leader core: each block is commands, then "----", then
// the trace they produced (every action the policy returned, as the script
// carried it out, and the state after). Time is what the script says. Run
// with -rewrite to regenerate the traces after a deliberate change, then
// read the diff.
//
// Beside the traces, the script checks the policy's two promises after
// every action, so a trace rewritten over a bug still fails:
//
//   - every member the leader counts is in the published set (a member is
//     published before it counts);
//   - a member dropped from the published set had stopped counting, and
//     every remaining member holds the commit LSN of the moment it
//     stopped (no acknowledged write is left on dropped members only).

var rewrite = flag.Bool("rewrite", false, "rewrite the sync-set policy's golden traces")

func TestSyncSetScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/syncset/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runSyncScript(t, file) })
	}
}

// syncScript is a leader, its followers and etcd as one script sees them.
type syncScript struct {
	t         *testing.T
	s         *SyncSet
	now       time.Time
	mode      commit.Mode // the topology's
	fallback  coord.Fallback
	syncMin   int
	published []string
	commit    uint64
	followers map[string]*SyncFollower
	paused    map[string]bool
	etcdDown  bool
	// until is the last step's SyncStep.Until; woken is set by what
	// makes the agent step at once (a stream opens or closes, the
	// topology changes): a tick before until, not woken, must find
	// nothing to do.
	until time.Time
	woken bool
	// The leader: what it applies.
	localMode commit.Mode
	localSet  []string
	// uncountedAt: the commit LSN when each member stopped counting.
	uncountedAt map[string]uint64
	degraded    bool
	short       bool
}

func runSyncScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := &syncScript{t: t, s: NewSyncSet("n1"), now: time.Unix(1000, 0), followers: map[string]*SyncFollower{},
		paused: map[string]bool{}, uncountedAt: map[string]uint64{}}
	var out strings.Builder
	for _, block := range strings.Split(string(data), "\n\n") {
		block = strings.TrimSpace(block)
		if block == "" {
			continue
		}
		cmd, want, _ := strings.Cut(block, "\n----")
		cmd = strings.TrimSpace(cmd)
		got := s.run(cmd)
		if !*rewrite && strings.TrimSpace(want) != strings.TrimSpace(got) {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, cmd, got, strings.TrimSpace(want))
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", cmd, strings.TrimSpace(got))
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimSpace(out.String())+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *syncScript) run(block string) string {
	t := s.t
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		args := map[string]string{}
		var pos []string
		for _, a := range f[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				args[k] = v
			} else {
				pos = append(pos, a)
			}
		}
		set := func(v string) []string {
			if v == "" || v == "-" {
				return nil
			}
			return strings.Split(v, ",")
		}
		switch f[0] {
		case "topo":
			s.woken = true
			// topo mode=semisync set=n1,n2 fallback=after-1s syncmin=1
			if v, ok := args["mode"]; ok {
				m, err := commit.ParseMode(strings.ReplaceAll(v, "-", " "))
				if err != nil {
					t.Fatal(err)
				}
				if s.mode == (commit.Mode{}) && s.localMode == (commit.Mode{}) {
					s.localMode = m // the leader started in the cluster's mode
				}
				s.mode = m
			}
			if v, ok := args["set"]; ok {
				s.published = set(v)
			}
			if v, ok := args["fallback"]; ok {
				fb, err := coord.ParseFallback(strings.ReplaceAll(v, "-", " "))
				if err != nil {
					t.Fatal(err)
				}
				s.fallback = fb
			}
			if v, ok := args["syncmin"]; ok {
				s.syncMin, _ = strconv.Atoi(v)
			}
		case "follower":
			// follower n2 durable=10 [connected=false]
			fl := s.followers[pos[0]]
			if fl == nil {
				fl = &SyncFollower{ID: pos[0], Connected: true, LastSeen: s.now}
				s.followers[pos[0]] = fl
				s.woken = true
			}
			if v, ok := args["durable"]; ok {
				fl.Durable, _ = strconv.ParseUint(v, 10, 64)
			}
			if v, ok := args["connected"]; ok {
				s.woken = s.woken || fl.Connected != (v == "true")
				fl.Connected = v == "true"
			}
		case "pause", "resume":
			// A paused follower keeps its connection and stops reporting.
			s.paused[pos[0]] = f[0] == "pause"
		case "commit":
			s.commit, _ = strconv.ParseUint(pos[0], 10, 64)
		case "etcd":
			s.etcdDown = pos[0] == "down"
		case "tick":
			d := 50 * time.Millisecond
			if len(pos) > 0 {
				var err error
				if d, err = time.ParseDuration(strings.TrimPrefix(pos[0], "+")); err != nil {
					t.Fatal(err)
				}
			}
			s.now = s.now.Add(d)
			for id, fl := range s.followers {
				if !s.paused[id] && fl.Connected {
					fl.LastSeen = s.now
				}
			}
			s.step(&out)
		default:
			t.Fatalf("unknown command %q", line)
		}
	}
	return out.String()
}

// step steps the policy and carries out its actions as the agent does.
func (s *syncScript) step(out *strings.Builder) {
	in := SyncInput{Now: s.now, Mode: s.mode, Fallback: s.fallback, SyncMin: s.syncMin, Published: slices.Clone(s.published),
		Commit: s.commit, LocalMode: s.localMode, LocalSet: slices.Clone(s.localSet)}
	ids := make([]string, 0, len(s.followers))
	for id := range s.followers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		in.Followers = append(in.Followers, *s.followers[id])
	}
	settled := !s.woken && s.now.Before(s.until)
	st := s.s.Step(in)
	if settled && len(st.Actions) > 0 {
		s.t.Errorf("at %v, before the %v the last step said it was settled until, with no stream or topology change: %v", s.now, s.until, st.Actions)
	}
	s.until, s.woken = st.Until, false
	if !st.Until.IsZero() && !st.Until.After(s.now) {
		s.t.Errorf("settled until %v, not after now %v", st.Until, s.now)
	}
actions:
	for _, a := range st.Actions {
		fmt.Fprintln(out, a)
		switch a.Kind {
		case Publish:
			if s.etcdDown {
				fmt.Fprintln(out, "  failed: etcd down")
				s.s.Published(false)
				break actions
			}
			s.publish(a.Set)
			s.s.Published(true)
		case Count:
			for _, id := range s.localSet {
				if !slices.Contains(a.Set, id) {
					s.uncountedAt[id] = s.commit
				}
			}
			s.localSet = slices.Clone(a.Set)
			for _, id := range s.localSet {
				delete(s.uncountedAt, id)
			}
		case SetMode:
			s.localMode = a.Mode
		}
		s.check()
	}
	s.degraded, s.short = s.s.Degraded(), s.s.Short()
	fmt.Fprintf(out, "state: mode %s, counts %v, published %v", s.localMode, s.localSet, s.published)
	if s.short {
		fmt.Fprint(out, ", short")
	}
	if s.degraded {
		fmt.Fprint(out, ", degraded")
	}
	fmt.Fprintln(out)
}

// publish checks the removal promise and makes set the published one.
func (s *syncScript) publish(set []string) {
	for _, gone := range s.published {
		if slices.Contains(set, gone) || gone == "n1" {
			continue
		}
		at, stopped := s.uncountedAt[gone]
		if slices.Contains(s.localSet, gone) {
			s.t.Errorf("%s dropped from the published set while the leader still counts it", gone)
			continue
		}
		if !stopped {
			continue // never counted in this leadership
		}
		if len(set) == 0 && at > 0 {
			s.t.Errorf("%s dropped leaving no member to hold lsn %d", gone, at)
		}
		for _, id := range set {
			if d := s.followers[id]; d == nil || d.Durable < at {
				s.t.Errorf("%s dropped from the published set before %s held lsn %d (the commit when %s stopped counting)", gone, id, at, gone)
			}
		}
	}
	s.published = slices.Clone(set)
}

// check: every member the leader counts is published.
func (s *syncScript) check() {
	for _, id := range s.localSet {
		if !slices.Contains(s.published, id) {
			s.t.Errorf("the leader counts %s, which is not in the published set %v", id, s.published)
		}
	}
}
