package replication

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
)

// The leader core's tests are scripts in testdata/leadercore: each command
// steps the core and the expected output is the Ready it produced and the
// positions after it, as etcd-io/raft's interaction tests do. No Pebble,
// goroutines or clocks: time is what the script says. Run with -rewrite to
// regenerate the expected output after a deliberate change, then read the
// diff.

var rewrite = flag.Bool("rewrite", false, "rewrite the leader core's golden traces")

func TestLeaderCoreScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/leadercore/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runCoreScript(t, file) })
	}
}

// coreScript is the state of one script run.
type coreScript struct {
	c       *leaderCore
	now     int64
	waits   map[string]*leaderWait
	answers map[uint64]string // lsn -> how its writer was answered
}

func runCoreScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	s := &coreScript{waits: map[string]*leaderWait{}, answers: map[uint64]string{}}
	blocks := strings.Split(string(data), "\n\n")
	for _, block := range blocks {
		block = strings.TrimSpace(block)
		if block == "" {
			continue
		}
		cmd, want, _ := strings.Cut(block, "\n----")
		cmd = strings.TrimSpace(cmd)
		got := s.run(t, cmd)
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

// run executes the lines of one command block (comment lines start with
// #) and returns the trace.
func (s *coreScript) run(t *testing.T, block string) string {
	t.Helper()
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
		num := func(k string) uint64 {
			v, err := strconv.ParseUint(args[k], 10, 64)
			if err != nil {
				t.Fatalf("%s: %s=%q: %v", line, k, args[k], err)
			}
			return v
		}
		switch f[0] {
		case "start":
			mode, err := commit.ParseMode(strings.ReplaceAll(args["mode"], "-", " "))
			if err != nil {
				t.Fatal(err)
			}
			cfg := coreConfig{mode: mode, heartbeat: int64(100 * time.Millisecond), writeTimeout: int64(time.Second),
				followerTimeout: int64(time.Minute), retainBytes: 1000, retentionEvery: int64(time.Second),
				maxInFlight: 100, maxInFlightBytes: 1 << 20}
			if v, ok := args["maxinflight"]; ok {
				cfg.maxInFlight, _ = strconv.Atoi(v)
			}
			if v, ok := args["retain"]; ok {
				cfg.retainBytes, _ = strconv.ParseInt(v, 10, 64)
			}
			cfg.retainMinBytes = cfg.retainBytes / 2
			if v, ok := args["retainmin"]; ok {
				cfg.retainMinBytes, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := args["delay"]; ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatal(err)
				}
				cfg.maxAppendDelay = int64(d)
			}
			durable, applied := num("durable"), num("applied")
			var tail []*proposal
			for lsn := applied + 1; lsn <= durable; lsn++ {
				tail = append(tail, testProposal(lsn, false))
			}
			s.c = newLeaderCore(cfg, durable, applied, tail, s.now)
			clear(s.answers) // a new core: its LSNs start over
		case "propose":
			n := uint64(1)
			if len(pos) > 0 {
				n, _ = strconv.ParseUint(pos[0], 10, 64)
			}
			for range n {
				if !s.c.HasRoom() {
					fmt.Fprintf(&out, "no room for lsn %d\n", s.c.NextLSN())
					break
				}
				s.c.Propose(testProposal(s.c.NextLSN(), true), s.now)
			}
		case "appended":
			if v, ok := args["took"]; ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatal(err)
				}
				s.c.NoteAppendCost(s.now, int64(d))
			}
			s.c.Appended(num("lsn"))
		case "appenddue":
			s.c.AppendDue(s.now)
		case "applied":
			s.c.Applied(num("lsn"), s.now)
		case "join":
			sess := s.c.FollowerJoined(FollowerInfo{NodeID: pos[0]}, num("durable"), s.now)
			fmt.Fprintf(&out, "session %s#%d\n", pos[0], sess)
		case "progress":
			var stamp int64
			if _, ok := args["stamp"]; ok {
				stamp = int64(num("stamp"))
			}
			s.c.FollowerProgress(pos[0], num("session"), num("durable"), num("applied"), stamp, s.now)
		case "leave":
			s.c.FollowerLeft(pos[0], num("session"), s.now)
		case "remove":
			fmt.Fprintf(&out, "removed %v\n", s.c.RemoveFollower(pos[0]))
		case "pin":
			fmt.Fprintf(&out, "pinned %s at %d\n", pos[0], s.c.PinSnapshot(pos[0], s.now))
		case "wait":
			var w *leaderWait
			switch args["kind"] {
			case "applied":
				w = &leaderWait{kind: waitApplied, lsn: num("lsn")}
			case "room":
				// Its deadline is the core's: the write timeout from now.
				w = &leaderWait{kind: waitRoom}
			default:
				w = &leaderWait{kind: waitDurable, lsn: num("lsn"), n: int(num("n"))}
			}
			if d, ok := args["timeout"]; ok {
				dur, _ := time.ParseDuration(d)
				w.deadline = s.now + int64(dur)
			}
			s.waits[pos[0]] = w
			s.c.Wait(w, s.now)
		case "confirmed":
			stamp, ok := s.c.ConfirmedBy(pos)
			fmt.Fprintf(&out, "confirmed %v at %d\n", ok, stamp)
		case "cancel":
			s.c.CancelWait(s.waits[pos[0]])
		case "advance":
			d, err := time.ParseDuration(pos[0])
			if err != nil {
				t.Fatal(err)
			}
			s.now += int64(d)
			continue
		case "tick":
			d, err := time.ParseDuration(pos[0])
			if err != nil {
				t.Fatal(err)
			}
			s.now += int64(d)
			ext := logExtent{base: int64(num("base")), count: int64(num("count")), bytes: int64(num("bytes"))}
			s.c.Tick(s.now, ext)
		case "answerread":
			// A waiting read's question on the stream (Leader.pairReadLocked).
			if commit, ok := s.c.CommitForRead(num("session")); ok {
				fmt.Fprintf(&out, "answer read commit=%d\n", commit)
			} else {
				fmt.Fprintf(&out, "no answer\n")
			}
		case "syncset":
			s.c.SetSyncSet(pos)
		case "mode":
			m, err := commit.ParseMode(strings.Join(pos, " "))
			if err != nil {
				t.Fatal(err)
			}
			s.c.SetMode(m)
		case "fail":
			s.print(&out, s.c.Fail())
			continue
		default:
			t.Fatalf("unknown command %q", line)
		}
		s.print(&out, s.c.Ready())
	}
	c := s.c
	fmt.Fprintf(&out, "last=%d durable=%d commit=%d applied=%d inflight=%d", c.last, c.durable, c.commit, c.applied, len(c.inflight))
	for _, f := range c.followerList() {
		fmt.Fprintf(&out, "\n  %s connected=%v durable=%d applied=%d", f.NodeID, f.Connected, f.DurableLSN, f.AppliedLSN)
	}
	return out.String()
}

// print writes a Ready, one effect a line, and checks the rules every
// Ready must keep.
func (s *coreScript) print(out *strings.Builder, rd leaderReady) {
	span := func(ps []*proposal) string {
		if len(ps) == 0 {
			return ""
		}
		return fmt.Sprintf("%d..%d", ps[0].lsn, ps[len(ps)-1].lsn)
	}
	if len(rd.Append) > 0 {
		fmt.Fprintf(out, "append %s\n", span(rd.Append))
	}
	if rd.AppendAt != 0 {
		fmt.Fprintf(out, "hold append until +%v\n", time.Duration(rd.AppendAt-s.now))
	}
	for _, m := range rd.Send {
		fmt.Fprintf(out, "send %s#%d through=%d commit=%d\n", m.NodeID, m.Session, m.Through, m.Commit)
	}
	if len(rd.Apply) > 0 {
		fmt.Fprintf(out, "apply %s\n", span(rd.Apply))
	}
	lsns := func(ps []*proposal) string {
		var b []string
		for _, p := range ps {
			b = append(b, strconv.FormatUint(p.lsn, 10))
		}
		return strings.Join(b, ",")
	}
	if len(rd.Acked) > 0 {
		fmt.Fprintf(out, "acked %s\n", lsns(rd.Acked))
	}
	if len(rd.Expired) > 0 {
		fmt.Fprintf(out, "expired %s\n", lsns(rd.Expired))
	}
	var names []string
	for name, w := range s.waits {
		if slices.Contains(rd.Waits, w) {
			names = append(names, fmt.Sprintf("%s met=%v count=%d", name, w.met, w.count))
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(out, "wait %s\n", n)
	}
	if rd.TrimBefore > 0 {
		fmt.Fprintf(out, "trim before %d\n", rd.TrimBefore)
	}
	for _, m := range rd.Disconnect {
		fmt.Fprintf(out, "disconnect %s#%d\n", m.NodeID, m.Session)
	}
	if rd.Readable {
		out.WriteString("readable\n")
	}
	for _, p := range append(slices.Clone(rd.Acked), rd.Expired...) {
		if prev, ok := s.answers[p.lsn]; ok {
			fmt.Fprintf(out, "BUG: writer of %d answered twice (%s before)\n", p.lsn, prev)
		}
		s.answers[p.lsn] = "answered"
	}
}

func testProposal(lsn uint64, writer bool) *proposal {
	e := logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: []byte("v")}}}
	p := &proposal{lsn: lsn, entry: e, raw: logrec.Encode(&e)}
	p.writer = writer
	return p
}

// TestLeaderCoreRandom drives the core with random inputs, the driver's
// part played faithfully (appends and applies complete in order, follower
// logs only grow within a session, and only with entries sent to them,
// which may be past the leader's durable LSN: send while syncing), and
// checks that no send covers an entry not handed out in an Append nor a
// commit LSN past the leader's durable one, and its invariants after every
// step against a naive model: applied <= commit <= durable <= last; commit
// is what commit.LSN gives for the durable positions it was told (never
// less, since commit never moves back); nothing is applied before it is
// durable and committed; every writer is answered once, and acknowledged
// only after its entry was applied; a writer waiting for room is let in
// only when there is room, and refused only after its deadline.
func TestLeaderCoreRandom(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		modes := []commit.Mode{{Kind: commit.Async}, {Kind: commit.Quorum, K: 1}, {Kind: commit.Quorum, K: 2}, {Kind: commit.SemiSync}, {Kind: commit.Sync}}
		mode := modes[rng.IntN(len(modes))]
		// Timer lengths vary, so that each kind of deadline is at times
		// the earliest (the TickAt check below).
		cfg := coreConfig{mode: mode, heartbeat: 50 + rng.Int64N(250), writeTimeout: 50 + rng.Int64N(1500),
			followerTimeout: 500 + rng.Int64N(4500), retainBytes: 1 << 30, retentionEvery: 200 + rng.Int64N(1800),
			maxInFlight: 20, maxInFlightBytes: 1 << 20}
		if seed%2 == 0 {
			// Adaptive group commit holds Appends, and with them commit
			// LSNs that are a stream's only news (holdAppend).
			cfg.maxAppendDelay = 1 + rng.Int64N(300)
		}
		c := newLeaderCore(cfg, 0, 0, nil, 0)
		var now int64
		// tickAt is the tick the core last asked for: a Tick before it
		// must have nothing to do (an idle leader sleeps until then).
		tickAt := c.Ready().TickAt
		if tickAt == 0 {
			t.Fatalf("seed %d: a new core asks for no tick", seed)
		}
		var appendOut, applyOut []*proposal
		var appendAt int64 // the driver's timer for AppendDue (0: none)
		applied := map[uint64]bool{}
		answered := map[uint64]int{}
		type fol struct {
			session, durable uint64
			sent             uint64 // the last entry sent on session
		}
		fols := map[string]*fol{}
		maxCommit := uint64(0)
		for step := 0; step < 400; step++ {
			early := false // a Tick before the TickAt asked for
			switch rng.IntN(13) {
			case 12:
				// The group-commit timer fires at the AppendAt asked for.
				now += int64(rng.IntN(400))
				if appendAt != 0 && now >= appendAt {
					appendAt = 0
					c.AppendDue(now)
				}
			case 11:
				// A probe lends its wake-up to the heartbeats (Beat).
				now += int64(rng.IntN(400))
				c.Beat(now)
			case 10:
				// The driver shortens heartbeats while the failsafe lease
				// wants echoes and lengthens them after (SetHeartbeat).
				c.SetHeartbeat(50 + rng.Int64N(250))
			case 9:
				// A new sync set: any subset of the followers there may be.
				var set []string
				for i := range 3 {
					if rng.IntN(2) == 0 {
						set = append(set, fmt.Sprint("f", i))
					}
				}
				c.SetSyncSet(set)
			case 0, 1:
				if c.HasRoom() {
					c.Propose(testProposal(c.NextLSN(), true), now)
				} else {
					c.Wait(&leaderWait{kind: waitRoom}, now)
				}
			case 2:
				if len(appendOut) > 0 {
					c.NoteAppendCost(now, 1+rng.Int64N(800))
					c.Appended(appendOut[len(appendOut)-1].lsn)
					appendOut = nil
				}
			case 3:
				if len(applyOut) > 0 {
					for _, p := range applyOut {
						if p.lsn > c.durable || p.lsn > c.commit {
							t.Fatalf("seed %d: applied %d past durable %d or commit %d", seed, p.lsn, c.durable, c.commit)
						}
						applied[p.lsn] = true
					}
					c.Applied(applyOut[len(applyOut)-1].lsn, now)
					applyOut = nil
				}
			case 4:
				id := fmt.Sprint("f", rng.IntN(3))
				if f := fols[id]; f == nil || f.session == 0 {
					d := uint64(rng.IntN(int(c.durable) + 1))
					fols[id] = &fol{session: c.FollowerJoined(FollowerInfo{NodeID: id}, d, now), durable: d, sent: d}
				}
			case 5, 6:
				for id, f := range fols {
					if f.session != 0 && f.durable < f.sent {
						f.durable += uint64(rng.IntN(int(f.sent-f.durable)) + 1)
						c.FollowerProgress(id, f.session, f.durable, 0, 0, now)
						break
					}
				}
			case 7:
				for id, f := range fols {
					if f.session != 0 && rng.IntN(3) == 0 {
						c.FollowerLeft(id, f.session, now)
						f.session = 0
					}
				}
			case 8:
				now += int64(rng.IntN(400))
				early = now < tickAt
				c.Tick(now, logExtent{count: int64(c.durable), bytes: 100 * int64(c.durable)})
			}
			rd := c.Ready()
			if early && (len(rd.Send) > 0 || len(rd.Expired) > 0 || len(rd.Waits) > 0 || len(rd.Disconnect) > 0 || rd.TrimBefore > 0) {
				t.Fatalf("seed %d step %d: a tick at %d, before the TickAt %d the core asked for, had work: %+v", seed, step, now, tickAt, rd)
			}
			if rd.TickAt != 0 {
				tickAt = rd.TickAt
			}
			if rd.AppendAt != 0 {
				if rd.AppendAt-now > cfg.maxAppendDelay {
					t.Fatalf("seed %d step %d: an Append held until %d, more than the delay %d after %d", seed, step, rd.AppendAt, cfg.maxAppendDelay, now)
				}
				appendAt = rd.AppendAt
			}
			for _, f := range c.followers {
				// Nothing handed out is kept from a stream but the commit
				// LSN, and that only while a hold runs, which its timer
				// ends: no commit is stranded.
				if f.session != 0 && (f.sentThrough != c.sendable() || f.sentCommit != c.commit && (c.appendDue == 0 || appendAt == 0)) {
					t.Fatalf("seed %d step %d: %s was sent through %d with commit %d; handed out %d, commit %d (hold until %d, timer %d)", seed, step, f.info.NodeID, f.sentThrough, f.sentCommit, c.sendable(), c.commit, c.appendDue, appendAt)
				}
			}
			for _, f := range c.followers {
				// No heartbeat is due after the tick the driver sleeps
				// until, whatever changed the interval.
				if f.session != 0 && tickAt > c.beatDue(f) {
					t.Fatalf("seed %d step %d: the tick is armed at %d, after %s's heartbeat due at %d", seed, step, tickAt, f.info.NodeID, c.beatDue(f))
				}
				if f.session != 0 && c.beatDue(f) > f.lastSent+c.cfg.heartbeat*5/4 {
					t.Fatalf("seed %d step %d: %s's heartbeat is due %d after its last message, more than 1.25 intervals (%d)", seed, step, f.info.NodeID, c.beatDue(f)-f.lastSent, c.cfg.heartbeat)
				}
			}
			if len(rd.Append) > 0 {
				if len(appendOut) > 0 {
					t.Fatalf("seed %d: a second Append while one is out", seed)
				}
				appendOut = rd.Append
			}
			handed := c.durable
			if len(appendOut) > 0 {
				handed = appendOut[len(appendOut)-1].lsn
			}
			for _, m := range rd.Send {
				if m.Through > handed {
					t.Fatalf("seed %d: sent through %d, but only %d is handed out in an Append", seed, m.Through, handed)
				}
				if m.Commit > c.durable {
					t.Fatalf("seed %d: sent commit %d past the leader's durable %d", seed, m.Commit, c.durable)
				}
				for id, f := range fols {
					if f.session == m.Session && id == m.NodeID {
						f.sent = max(f.sent, m.Through)
					}
				}
			}
			if len(rd.Apply) > 0 {
				if len(applyOut) > 0 {
					t.Fatalf("seed %d: a second Apply while one is out", seed)
				}
				applyOut = rd.Apply
			}
			for _, p := range rd.Acked {
				if !applied[p.lsn] {
					t.Fatalf("seed %d: writer of %d acknowledged before its entry was applied", seed, p.lsn)
				}
				answered[p.lsn]++
			}
			for _, p := range rd.Expired {
				if applied[p.lsn] {
					t.Fatalf("seed %d: writer of applied entry %d timed out", seed, p.lsn)
				}
				answered[p.lsn]++
			}
			for _, w := range rd.Waits {
				if w.kind != waitRoom {
					continue
				}
				if w.met && !c.HasRoom() {
					t.Fatalf("seed %d: a writer told there is room when there is none", seed)
				}
				if !w.met && now < w.deadline {
					t.Fatalf("seed %d: a writer refused at %d before its admission deadline %d", seed, now, w.deadline)
				}
			}
			for lsn, n := range answered {
				if n > 1 {
					t.Fatalf("seed %d: writer of %d answered %d times", seed, lsn, n)
				}
			}
			if !(c.applied <= c.commit && c.commit <= c.durable && c.durable <= c.last) {
				t.Fatalf("seed %d: positions applied %d commit %d durable %d last %d", seed, c.applied, c.commit, c.durable, c.last)
			}
			model := commit.LSN(mode, c.durable, c.followerDurables(), c.syncSet)
			maxCommit = max(maxCommit, model)
			if c.commit != maxCommit {
				t.Fatalf("seed %d step %d: commit %d, the rule gives %d (highest so far %d)", seed, step, c.commit, model, maxCommit)
			}
		}
	}
}

// TestLeaderCoreBeat: a wake-up lent by a probe (Beat) sends the heartbeat
// of every stream silent for half an interval, and arms the next tick a
// quarter interval later than usual, so that a timer tick in between finds
// nothing to send; a fresher stream gets no heartbeat but the same slack
// (the next probe sends it); the timer's own heartbeat, once no probe
// came, clears that slack again.
func TestLeaderCoreBeat(t *testing.T) {
	cfg := coreConfig{mode: commit.Mode{Kind: commit.Async}, heartbeat: 100, writeTimeout: 1000, followerTimeout: 100000,
		retainBytes: 1 << 30, retentionEvery: 100000, maxInFlight: 10, maxInFlightBytes: 1 << 20}
	c := newLeaderCore(cfg, 0, 0, nil, 0)
	c.FollowerJoined(FollowerInfo{NodeID: "f1"}, 0, 0)
	c.FollowerJoined(FollowerInfo{NodeID: "f2"}, 0, 0)
	c.Ready()
	ext := logExtent{}
	sends := func(rd leaderReady) int { return len(rd.Send) }

	c.Beat(40)
	if rd := c.Ready(); sends(rd) != 0 || rd.TickAt != 125 {
		t.Fatalf("a beat 40 after the last message (interval 100): %d heartbeats, tick at %d; want none before half an interval, and the next heartbeat a quarter interval later (125) for the next probe to send", sends(rd), rd.TickAt)
	}
	c.Tick(100, ext)
	if rd := c.Ready(); sends(rd) != 0 {
		t.Fatalf("a tick at 100 after that beat: %d heartbeats, want none until 125", sends(rd))
	}
	c.Beat(100)
	rd := c.Ready()
	if sends(rd) != 2 {
		t.Fatalf("a beat 100 after the last message: %d heartbeats, want one per stream", sends(rd))
	}
	c = newLeaderCore(cfg, 0, 0, nil, 0)
	c.FollowerJoined(FollowerInfo{NodeID: "f1"}, 0, 0)
	c.FollowerJoined(FollowerInfo{NodeID: "f2"}, 0, 0)
	c.Ready()
	c.Beat(60)
	rd = c.Ready()
	if sends(rd) != 2 {
		t.Fatalf("a beat 60 after the last message: %d heartbeats, want one per stream", sends(rd))
	}
	if rd.TickAt != 60+125 {
		t.Fatalf("after a lent heartbeat at 60 the tick is armed at %d, want %d (an interval and a quarter later)", rd.TickAt, 60+125)
	}
	c.Tick(170, ext)
	if rd := c.Ready(); sends(rd) != 0 {
		t.Fatalf("a tick at 170, before the lent heartbeats' slack ran out: %d heartbeats, want none", sends(rd))
	}
	c.Beat(180)
	if rd := c.Ready(); sends(rd) != 2 || rd.TickAt != 180+125 {
		t.Fatalf("the next probe's beat at 180: %d heartbeats, tick at %d; want 2 and %d", sends(rd), rd.TickAt, 180+125)
	}
	// No probe comes: the timer sends at 305 and the slack is gone.
	c.Tick(305, ext)
	if rd := c.Ready(); sends(rd) != 2 || rd.TickAt != 405 {
		t.Fatalf("the timer's tick at 305: %d heartbeats, next tick at %d; want 2 and 405", sends(rd), rd.TickAt)
	}
}
