package orchestrator

import (
	"net/http"
	"time"

	"github.com/tandemdb/tandem/internal/peerpb"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemdb/tandem/internal/coord"
)

var (
	descActive  = prometheus.NewDesc("tandem_orchestrator_active", "1 if this orchestrator is the active one.", nil, nil)
	descManual  = prometheus.NewDesc("tandem_orchestrator_failover_manual", "1 if this orchestrator fails nothing over by itself: the failover policy is manual, unreadable or not read yet.", nil, nil)
	descDown    = prometheus.NewDesc("tandem_orchestrator_leader_down", "1 while the active orchestrator has a failed leader that is not replaced yet.", nil, nil)
	descWaiting = prometheus.NewDesc("tandem_orchestrator_waiting_for_operator", "1 while a failed leader waits for an operator (failover policy manual): tandem promote NODE.", nil, nil)
	descDownFor = prometheus.NewDesc("tandem_orchestrator_leader_down_seconds", "Seconds since the failed leader's last sign of life (0 when none is down).", nil, nil)
	descHookErr = prometheus.NewDesc("tandem_orchestrator_hook_failures_total", "Hook runs that failed, timed out or were dropped.", nil, nil)
	descQuiet   = prometheus.NewDesc("tandem_orchestrator_quiet", "1 while the active orchestrator probes followers at the quiet cadence (the cluster quiet for 2 s).", nil, nil)
	descStirs   = prometheus.NewDesc("tandem_orchestrator_stirs_total", "Times the quiet cadence ended: something amiss, a write, a topology change or an operation.", nil, nil)
)

// metrics serves /metrics: the failover policy and any outage, read at
// scrape time.
func (o *Orchestrator) metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collector{o})
	if o.stats != nil {
		reg.MustRegister(o.stats.probe, o.stats.silence, o.stats.lapse)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type collector struct{ o *Orchestrator }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descManual, descDown, descWaiting, descDownFor, descHookErr, descQuiet, descStirs} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	o := c.o
	o.mu.Lock()
	active, manual := o.active, o.policy != coord.FailoverAutomatic || o.policyErr != nil
	down, waiting, downFor := false, false, 0.0
	if out := o.outage; out != nil && o.active {
		down, waiting, downFor = true, out.waiting, time.Since(out.since).Seconds()
	}
	quiet, stirs := o.active && o.quiet(time.Now()), o.stirs
	o.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descActive, b2f(active))
	gauge(descManual, b2f(manual))
	gauge(descDown, b2f(down))
	gauge(descWaiting, b2f(waiting))
	gauge(descDownFor, downFor)
	ch <- prometheus.MustNewConstMetric(descHookErr, prometheus.CounterValue, float64(o.hooks.Failures()))
	gauge(descQuiet, b2f(quiet))
	ch <- prometheus.MustNewConstMetric(descStirs, prometheus.CounterValue, float64(stirs))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// detectBuckets (seconds) resolve the failover rule's thresholds: probe
// interval, FollowerSilence, MinSilence, NotAnsweringAfter.
var detectBuckets = []float64{.005, .01, .025, .05, .075, .1, .125, .15, .175, .2, .25, .3, .4, .5, .75, 1, 1.5, 2, 3, 5}

// detectStats are what the failover rule's thresholds must clear on a live
// cluster, measured by the active orchestrator (/metrics; `tandem bench
// failover` reads them around its saturation phase): a live leader's
// silences must stay below MinSilence as the probes see them and below
// FollowerSilence as any channel does, its lease lapses below
// NotAnsweringAfter. The fields below the histograms are under
// Orchestrator.mu.
type detectStats struct {
	probe   *prometheus.HistogramVec // answered probes' round trips, by target (leader, other)
	silence *prometheus.HistogramVec // the leader's silences, when they end, by seen_by (probes, any)
	lapse   prometheus.Histogram     // the leader's spells without an answerable lease, when they end

	beatOf, signOf string    // the leader the two marks below are of
	beat           time.Time // its last answer to a probe
	sign           time.Time // its last sign of life on any channel (its answers, its followers' reports)
}

func newDetectStats() *detectStats {
	return &detectStats{
		probe: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_orchestrator_probe_seconds",
			Help: "Round trip of the active orchestrator's answered Heartbeat probes, by target (leader, other).", Buckets: detectBuckets}, []string{"target"}),
		silence: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_orchestrator_leader_silence_seconds",
			Help:    "The leader's silences as the active orchestrator saw them end: seen_by=probes between two answers to its probes, seen_by=any between two signs of life on any channel (its answers, a follower's report of hearing its stream).",
			Buckets: detectBuckets}, []string{"seen_by"}),
		lapse: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_orchestrator_leader_lease_lapse_seconds",
			Help: "How long the leader answered probes without an answerable lease, per spell, when it ended.", Buckets: detectBuckets}),
	}
}

// observeAnswer records an answered probe of ns (received at now, after
// rtt) in o.stats, while this orchestrator is active. leader: ns is the
// topology's leader; lapsed: its NotAnswering mark before this answer.
// Called with o.mu held.
func (o *Orchestrator) observeAnswer(ns *nodeState, now time.Time, rtt time.Duration, leader bool, lapsed time.Time) {
	st := o.stats
	if st == nil || !o.active || !o.haveTopo || o.topo.Leader == "" {
		return
	}
	id := o.topo.Leader
	var sign time.Time
	if leader {
		st.probe.WithLabelValues("leader").Observe(rtt.Seconds())
		if st.beatOf == id && !st.beat.IsZero() {
			st.silence.WithLabelValues("probes").Observe(now.Sub(st.beat).Seconds())
		}
		st.beatOf, st.beat = id, now
		if !lapsed.IsZero() && ns.probe.NotAnswering.IsZero() {
			st.lapse.Observe(now.Sub(lapsed).Seconds())
		}
		sign = now
	} else {
		st.probe.WithLabelValues("other").Observe(rtt.Seconds())
		if heard, ok := heardLeaderAt(ns.probe.Reply, now, id, o.nodes[id]); ok {
			sign = heard
		}
	}
	if sign.IsZero() {
		return
	}
	if st.signOf != id {
		st.signOf, st.sign = id, sign
		return
	}
	if sign.After(st.sign) {
		st.silence.WithLabelValues("any").Observe(now.Sub(st.sign).Seconds())
		st.sign = sign
	}
}

// heardLeaderAt is when (by this clock, answered at now) a follower's
// reply says it last heard leader id's stream.
func heardLeaderAt(rep *peerpb.HeartbeatReply, now time.Time, id string, leader *nodeState) (time.Time, bool) {
	if rep == nil || rep.LeaderHeardAgoMs < 0 || (rep.Following != id && (leader == nil || rep.Following != leader.member.PeerAddr)) {
		return time.Time{}, false
	}
	return now.Add(-time.Duration(rep.LeaderHeardAgoMs) * time.Millisecond), true
}
