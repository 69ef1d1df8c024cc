package node

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// Status is the node's /status document. Its shape is declared once, in
// statusdoc (the stable contract); the names stay here for node's callers.
type Status = statusdoc.Node

// FollowerStatus is the leader's view of one follower.
type FollowerStatus = statusdoc.Follower

// Status reports the node's role and positions.
func (n *Node) Status() Status {
	respAddr, peer, _ := n.Addrs()
	s := Status{ID: n.cfg.ID, RESPAddr: respAddr, PeerAddr: peer, PID: os.Getpid(), Mode: n.cfg.Mode.String()}
	s.LogEntries, s.LogBytes = n.db.LogSize()
	s.DiskBytes = n.db.DiskBytes()
	if files, err := filepath.Glob(filepath.Join(n.cfg.DataDir, "rollback-*.jsonl")); err == nil {
		s.RollbackFiles = len(files)
	}
	if n.agent != nil {
		s.Failsafe = n.agent.failsafe.Load()
		s.Degraded = n.agent.degraded.Load()
	}
	var f *following
	switch r := n.current().(type) {
	case *fenced:
		// No role: positions from storage, and why.
		s.Role, s.State, s.Epoch, s.Reason = statusdoc.RoleFenced, statusdoc.StateFenced, n.db.Epoch(), r.reason
		s.DurableLSN, s.AppliedLSN = n.db.Durable().LSN, n.db.Applied()
		s.CommitLSN = s.AppliedLSN
		return s
	case *following:
		f = r
	case *leading:
		ls := r.l.Status()
		mode, _ := r.l.Mode()
		s.Mode = mode.String()
		s.Role, s.State, s.Epoch = statusdoc.RoleLeader, statusdoc.StateLeading, ls.Epoch
		s.DurableLSN, s.AppliedLSN, s.CommitLSN, s.Connected = ls.Durable, ls.Applied, ls.Commit, true
		for _, fp := range ls.Followers {
			fs := FollowerStatus{ID: fp.NodeID, Addr: fp.RESPAddr, Connected: fp.Connected, DurableLSN: fp.DurableLSN, AppliedLSN: fp.AppliedLSN}
			if ls.Durable > fp.AppliedLSN {
				fs.LagLSN = ls.Durable - fp.AppliedLSN
				fs.LagSeconds = fp.LagSeconds
			}
			s.Followers = append(s.Followers, fs)
		}
		return s
	}
	fs := f.f.Status()
	s.Role, s.State, s.Epoch, s.Connected = statusdoc.RoleFollower, fs.State, fs.Epoch, fs.Connected
	s.DurableLSN, s.AppliedLSN, s.CommitLSN = n.db.Durable().LSN, n.db.Applied(), fs.Commit
	s.LagLSN, s.LagSeconds, s.Leader = fs.LagLSN, fs.LagSeconds, f.leaderRESP
	s.Seeds = fs.Seeds
	if fs.State == replication.StateSeeding {
		s.SeedBytes, s.SeedTotal = fs.SeedBytes, fs.SeedTotal
		if fs.SeedTotal > 0 {
			s.SeedPercent = min(100, 100*float64(fs.SeedBytes)/float64(fs.SeedTotal))
		}
	}
	return s
}

func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.Status())
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(goRuntimeMetrics), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), statusCollector{n})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/memory", n.serveMemory)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// goRuntimeMetrics adds to the Go collector's defaults the runtime's
// CPU by class (/cpu/classes: the collector's mark and pauses, the
// scavenger, user code, idle) and the scheduler's latencies (/sched):
// the fixed cost of a write includes the GC's and the scheduler's share,
// which nothing else measures in a running node.
var goRuntimeMetrics = collectors.WithGoCollectorRuntimeMetrics(
	collectors.MetricsGC,
	collectors.MetricsScheduler,
	collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/.*`)},
)

var (
	descLSN    = prometheus.NewDesc("tandem_lsn", "Log positions of this node.", []string{"kind"}, nil)
	descEpoch  = prometheus.NewDesc("tandem_epoch", "Highest epoch this node has seen.", nil, nil)
	descLeader = prometheus.NewDesc("tandem_is_leader", "1 if this node leads.", nil, nil)
	descLag    = prometheus.NewDesc("tandem_follower_lag_lsn", "Follower lag in LSNs, as its leader sees it.", []string{"follower"}, nil)
	descLagSec = prometheus.NewDesc("tandem_follower_lag_seconds", "Follower lag in seconds of leader time.", []string{"follower"}, nil)
	descLog    = prometheus.NewDesc("tandem_log_bytes", "Bytes of retained log.", nil, nil)
	descSyncs  = prometheus.NewDesc("tandem_log_appends_total", "Durable log appends (one fsync each) since start; entries_appended / appends is the group-commit size.", nil, nil)
	descAppend = prometheus.NewDesc("tandem_log_entries_appended_total", "Log entries made durable since start.", nil, nil)
	descLeaseW = prometheus.NewDesc("tandem_lease_waits_total", "Answers (reads, write acknowledgements) that found the leader's lease not valid and waited for a confirmation: after an idle spell, or a confirmation that came late under load.", nil, nil)
	descLeaseS = prometheus.NewDesc("tandem_lease_wait_seconds_total", "Time the answers counted by tandem_lease_waits_total waited, in all.", nil, nil)
	descRowHit = prometheus.NewDesc("tandem_rowcache_hits_total", "Point reads served by the row cache.", nil, nil)
	descRowMis = prometheus.NewDesc("tandem_rowcache_misses_total", "Point reads the row cache did not hold (read from Pebble).", nil, nil)
	descRowB   = prometheus.NewDesc("tandem_rowcache_bytes", "Bytes the row cache holds (keys, rows and per-entry overhead).", nil, nil)
	descDegrad = prometheus.NewDesc("tandem_sync_degraded", "1 while sync-fallback has this sync or semisync leader acknowledging in async mode.", nil, nil)
	descReads  = prometheus.NewDesc("tandem_reads_total", "Reads by read policy and outcome: served, elsewhere (answered TRYAGAIN read elsewhere: not applied within --read-wait, too stale, or the policy wants the leader), lost (the session's position is not in this history).", []string{"policy", "outcome"}, nil)
	descRTAsks = prometheus.NewDesc("tandem_read_round_trip_questions_total", "The questions a follower's round-trip reads sent its leader on the stream (round trips begun): each serves every read that began before it was sent.", nil, nil)
	descRTRead = prometheus.NewDesc("tandem_read_round_trips_total", "A follower's reads that waited for a round trip to its leader on the stream (linearizable, a bounded read the stream had not proven), served: all; need_log: the leader's answer named a commit LSN past this follower's durable log as it arrived; in_append: the answer arrived while the follower was in a log append; queued: its commit LSN was past that append's end too (entries in no log append yet).", []string{"kind"}, nil)
	descRTTime = prometheus.NewDesc("tandem_read_round_trip_seconds_total", "Where a follower's round-trip reads waited, summed: ask (the read's start to the question the leader answered), answer (that question to the arrival of the leader's answer), apply (that arrival to the apply of its commit LSN; apply_need_log: the part of it of the need_log reads), wake (that apply to the read's return).", []string{"phase"}, nil)
	descRAns   = prometheus.NewDesc("tandem_read_answers_total", "How a leader answered the questions of reads waiting on a follower for a round trip: at_once (a heartbeat of their own), held (of those, the ones whose commit LSN a group-commit hold kept for the next batch: sent with the answer instead), by_send (a send the question's report made due), lease (after a lease confirmation), not_readable (the leadership's commit had not reached its start: by the send that brings it there).", []string{"kind"}, nil)
	descRAnsT  = prometheus.NewDesc("tandem_read_answer_seconds_total", "Where a leader's part of waiting reads' round trips went, summed: lock (each question's wait for the leader's lock once taken off the stream), send (each answer of its own, from its question taken to its Send returned), picked (the part of send until the stream's sender goroutine took it: woken, or done with the send it was in).", []string{"phase"}, nil)
	descRAnsN  = prometheus.NewDesc("tandem_read_answers_sent_total", "The answers of their own a leader sent to waiting reads' questions (the count of tandem_read_answer_seconds_total{phase=\"send\"}).", nil, nil)
	descFloorW = prometheus.NewDesc("tandem_read_floor_waits_total", "Reads a follower made wait for a position it had not applied (a ryw or monotonic floor, a linearizable read's commit position): all, and refused at the end of the wait (sent elsewhere).", []string{"kind"}, nil)
	descFloorT = prometheus.NewDesc("tandem_read_floor_wait_seconds_total", "The time the reads of tandem_read_floor_waits_total waited, summed.", nil, nil)
	descFAppT  = prometheus.NewDesc("tandem_follower_log_append_seconds_total", "Time a follower spent in its log appends (each one fsync) since it began following.", nil, nil)
	descCycle  = prometheus.NewDesc("tandem_leader_cycle_seconds_total", "Where this leadership's group-commit cycle spent its time, summed: queued (each entry, from its sequencing to its group's append), append_gap (from each append's end to the next one's hand-out: a held group, or no writes), append_delay (each group's Append, from handed out to begun: a committer busy applying holds the next fsync), fsync (the log appends), apply_delay (each Apply, from handed out to begun), apply (Pebble), apply_rest (messages, overlay, the core's step), answer (the replies written by the goroutine that applied the group).", []string{"phase"}, nil)
	descCycleN = prometheus.NewDesc("tandem_leader_cycle_total", "This leadership's group-commit cycle counts: appends (groups), entries (appended), applies (apply batches), applied (entries), answered (replies written by the applying goroutine).", []string{"kind"}, nil)
	descNoOps  = prometheus.NewDesc("tandem_noop_writes_total", "Write commands that changed nothing and logged nothing (an SADD of a member already there, a pop of a drained key), answered by this node as leader; waited: those that waited for an entry they had read to be applied.", []string{"kind"}, nil)
	descSilent = prometheus.NewDesc("tandem_follower_leader_silences_total", "Replication streams this node closed as a follower because it heard nothing from its leader (no entries, no heartbeat) for --leader-timeout; it then connected again on a new connection.", nil, nil)
	descStale  = prometheus.NewDesc("tandem_read_staleness_seconds", "A follower's staleness as bounded reads measure it: at most this far behind its leader, on the leader's clock (absent when the stream has proven nothing).", nil, nil)
)

// statusCollector exports Status as Prometheus metrics at scrape time.
type statusCollector struct{ n *Node }

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLSN, descEpoch, descLeader, descLag, descLagSec, descLog, descSyncs, descAppend, descRowHit, descRowMis, descRowB, descLeaseW, descLeaseS, descDegrad, descReads, descRTAsks, descRTRead, descRTTime, descRAns, descRAnsT, descRAnsN, descFloorW, descFloorT, descFAppT, descStale, descCycle, descCycleN, descNoOps, descSilent} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descLSN, float64(s.DurableLSN), "durable")
	gauge(descLSN, float64(s.AppliedLSN), "applied")
	gauge(descLSN, float64(s.CommitLSN), "commit")
	gauge(descEpoch, float64(s.Epoch))
	leader := 0.0
	if s.Role == statusdoc.RoleLeader {
		leader = 1
	}
	gauge(descLeader, leader)
	gauge(descLog, float64(s.LogBytes))
	degraded := 0.0
	if s.Degraded {
		degraded = 1
	}
	gauge(descDegrad, degraded)
	appends, entries := c.n.db.AppendStats()
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(appends))
	ch <- prometheus.MustNewConstMetric(descAppend, prometheus.CounterValue, float64(entries))
	rc := c.n.db.RowCacheStats()
	ch <- prometheus.MustNewConstMetric(descRowHit, prometheus.CounterValue, float64(rc.Hits))
	lw, lwTime := replication.LeaseWaits()
	ch <- prometheus.MustNewConstMetric(descLeaseW, prometheus.CounterValue, float64(lw))
	ch <- prometheus.MustNewConstMetric(descLeaseS, prometheus.CounterValue, lwTime.Seconds())
	noOps, noOpWaits := replication.NoOpWrites()
	ch <- prometheus.MustNewConstMetric(descNoOps, prometheus.CounterValue, float64(noOps), "all")
	ch <- prometheus.MustNewConstMetric(descNoOps, prometheus.CounterValue, float64(noOpWaits), "waited")
	ch <- prometheus.MustNewConstMetric(descRowMis, prometheus.CounterValue, float64(rc.Misses))
	ch <- prometheus.MustNewConstMetric(descSilent, prometheus.CounterValue, float64(replication.LeaderSilences()))
	gauge(descRowB, float64(rc.Bytes))
	for _, f := range s.Followers {
		gauge(descLag, float64(f.LagLSN), f.ID)
		gauge(descLagSec, f.LagSeconds, f.ID)
	}
	for p := range c.n.reads {
		for o := range c.n.reads[p] {
			policy := resp.Policy{Kind: resp.PolicyKind(p)}.String()
			if resp.PolicyKind(p) == resp.PolicyBounded {
				policy = "bounded"
			}
			ch <- prometheus.MustNewConstMetric(descReads, prometheus.CounterValue, float64(c.n.reads[p][o].Load()), policy, readOutcomeNames[o])
		}
	}
	if r, ok := c.n.current().(*leading); ok {
		cy := r.l.Cycle()
		for _, ph := range []struct {
			name string
			d    time.Duration
		}{{"queued", cy.Queued}, {"append_gap", cy.AppendGap}, {"append_delay", cy.AppendDelay}, {"fsync", cy.Fsync}, {"apply_delay", cy.ApplyDelay}, {"apply", cy.Apply}, {"apply_rest", cy.ApplyRest}, {"answer", cy.Answer}} {
			ch <- prometheus.MustNewConstMetric(descCycle, prometheus.CounterValue, ph.d.Seconds(), ph.name)
		}
		ra := r.l.ReadAnswers()
		for _, k := range []struct {
			name string
			n    uint64
		}{{"at_once", ra.AtOnce}, {"held", ra.Held}, {"by_send", ra.BySend}, {"lease", ra.Lease}, {"not_readable", ra.NotReadable}} {
			ch <- prometheus.MustNewConstMetric(descRAns, prometheus.CounterValue, float64(k.n), k.name)
		}
		ch <- prometheus.MustNewConstMetric(descRAnsT, prometheus.CounterValue, ra.LockWait.Seconds(), "lock")
		ch <- prometheus.MustNewConstMetric(descRAnsT, prometheus.CounterValue, ra.SendTime.Seconds(), "send")
		ch <- prometheus.MustNewConstMetric(descRAnsT, prometheus.CounterValue, ra.Picked.Seconds(), "picked")
		ch <- prometheus.MustNewConstMetric(descRAnsN, prometheus.CounterValue, float64(ra.Sent))
		for _, k := range []struct {
			name string
			n    uint64
		}{{"appends", cy.Appends}, {"entries", cy.Entries}, {"applies", cy.Applies}, {"applied", cy.Applied}, {"answered", cy.Answered}} {
			ch <- prometheus.MustNewConstMetric(descCycleN, prometheus.CounterValue, float64(k.n), k.name)
		}
	}
	if r, ok := c.n.current().(*following); ok {
		if st, ok := r.f.Staleness(); ok {
			gauge(descStale, st.Seconds())
		}
		rt := r.f.RoundTripTimes()
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
		}
		counter(descRTRead, float64(rt.Reads), "all")
		counter(descRTRead, float64(rt.NeedLog), "need_log")
		counter(descRTRead, float64(rt.InAppend), "in_append")
		counter(descRTRead, float64(rt.Queued), "queued")
		counter(descRTAsks, float64(rt.Asks))
		counter(descRTTime, rt.Ask.Seconds(), "ask")
		counter(descRTTime, rt.Answer.Seconds(), "answer")
		counter(descRTTime, rt.Apply.Seconds(), "apply")
		counter(descRTTime, rt.ApplyNeedLog.Seconds(), "apply_need_log")
		counter(descRTTime, rt.ApplyQueued.Seconds(), "apply_queued")
		counter(descRTTime, rt.Wake.Seconds(), "wake")
		counter(descFAppT, rt.AppendTime.Seconds())
		fw := r.f.FloorWaits()
		counter(descFloorW, float64(fw.Waits), "all")
		counter(descFloorW, float64(fw.Refused), "refused")
		counter(descFloorT, fw.Time.Seconds())
	}
}
