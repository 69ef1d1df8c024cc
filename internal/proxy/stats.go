package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// stats are the proxy's counters, shown by INFO and /metrics alike.
type stats struct {
	readsRetried       atomic.Uint64 // a node failed under a read: tried on another
	readsToDown        atomic.Uint64 // reads sent to a node marked down (must stay 0)
	readsElsewhere     atomic.Uint64 // a node said "read elsewhere" (or LOADING, MASTERDOWN)
	readsWaited        atomic.Uint64 // reads that waited for a node (no leader at all)
	readsMayWait       atomic.Uint64 // reads sent on a connection of their own: they may wait on the node
	readsMayWaitSh     atomic.Uint64 // such reads sent on a shared connection: all of the node's own were busy
	readGroups         atomic.Uint64 // calls carrying bounded reads that may wait (waitgroup.go)
	readsWaitedAgain   atomic.Uint64 // monotonic reads sent to wait again on the follower that refused them
	readsFloorKnown    atomic.Uint64 // ryw and monotonic reads sent without the session's state: the node is known to have the floor
	readsFloorUnproven atomic.Uint64 // of those, served at a position that did not prove the floor: sent again with it
	readProofs         atomic.Uint64 // proofs written on read connections, each for the known reads of one write (upstream.go)
	readsIndexed       atomic.Uint64 // linearizable follower reads that waited for an index query (readindex.go)
	indexQueries       atomic.Uint64 // index queries sent: each serves every linearizable read queued for its follower before it
	indexUnproven      atomic.Uint64 // batched linearizable reads whose token did not prove the query's position: sent again in full
	indexRefused       atomic.Uint64 // index batches whose probe a follower refused (not applied within its read wait) or that failed
	indexSlow          atomic.Uint64 // times a follower's index batches were all slow for slowBatchWindow: waiting reads kept off it
	// Where a batched linearizable read's time goes at the proxy: queued
	// (summed over the reads sent in batches) is from its joining a batch
	// to the batch leaving (a slot busy, or the linger); batchNs (summed
	// over the batches answered) from a batch leaving to its replies (the
	// node's probe, reads and proof, and both hops).
	indexQueuedNs   atomic.Int64
	indexSent       atomic.Uint64 // reads sent in batches (indexQueuedNs's count)
	indexBatchNs    atomic.Int64
	indexAnswered   atomic.Uint64 // batches answered (indexBatchNs's count)
	writesWaited    atomic.Uint64 // writes that waited for a leader
	writesNoLeader  atomic.Uint64 // writes that found none within WriteWait
	writesUncertain atomic.Uint64 // writes answered UNCERTAIN
	inflightFailed  atomic.Uint64 // requests in flight on a connection that failed
	markedDown      atomic.Uint64 // times a node was marked down
	pinned          atomic.Uint64 // client connections pinned to a node for pub/sub now
	blocked         atomic.Int64  // clients in a blocking command now (block.go)

	mu        sync.Mutex
	byPolicy  map[string]uint64 // reads served, by policy
	byNode    map[string]uint64 // reads served, by node
	fallbacks map[string]uint64 // reads a follower could have served that the leader served, by reason
	failed    map[string]uint64 // reads no node served, by last reason
	crossZone uint64
}

func newStats() *stats {
	return &stats{byPolicy: map[string]uint64{}, byNode: map[string]uint64{}, fallbacks: map[string]uint64{}, failed: map[string]uint64{}}
}

func (s *stats) readServed(policy, node, fellBack string, crossZone bool) {
	s.mu.Lock()
	s.byPolicy[policy]++
	s.byNode[node]++
	if fellBack != "" {
		s.fallbacks[fellBack]++
	}
	if crossZone {
		s.crossZone++
	}
	s.mu.Unlock()
}

func (s *stats) readFailed(why string) {
	// Keep the label set small: the reason's kind, not its text.
	kind := "no-node"
	if strings.Contains(why, "failed") {
		kind = "node-failed"
	} else if strings.Contains(why, ":") {
		kind = "refused"
	}
	s.mu.Lock()
	s.failed[kind]++
	s.mu.Unlock()
}

type statsSnapshot struct {
	byPolicy, byNode, fallbacks, failed map[string]uint64
	crossZone                           uint64
}

func (s *stats) snapshot() statsSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return statsSnapshot{maps.Clone(s.byPolicy), maps.Clone(s.byNode), maps.Clone(s.fallbacks), maps.Clone(s.failed), s.crossZone}
}

// Status is the proxy's /status document (`tandem status` shows it).
func (p *Proxy) Status() statusdoc.Proxy {
	snap := p.stats.snapshot()
	p.mu.Lock()
	leader := p.view.Leader
	p.mu.Unlock()
	st := statusdoc.Proxy{Zone: p.cfg.Zone, Policy: p.cfg.Policy.String(), Leader: leader, ReadsCrossZone: snap.crossZone, ReadsByNode: snap.byNode}
	for _, n := range snap.byNode {
		st.Reads += n
	}
	return st
}

// infoProxy is INFO's "# Proxy" section.
func (p *Proxy) infoProxy() string {
	var b strings.Builder
	p.mu.Lock()
	v := p.view
	nodes := slices.Collect(maps.Values(p.nodes))
	etcdErr, etcdAt := p.etcdErr, p.etcdAt
	p.mu.Unlock()
	slices.SortFunc(nodes, func(a, b *node) int { return strings.Compare(a.id, b.id) })
	snap := p.stats.snapshot()
	b.WriteString("# Proxy\r\n")
	fmt.Fprintf(&b, "policy_default:%s\r\nzone:%s\r\nepoch:%d\r\nleader:%s\r\n", p.cfg.Policy, p.cfg.Zone, v.Epoch, v.Leader)
	if etcdErr != nil {
		fmt.Fprintf(&b, "etcd:unreachable for %.1fs, serving the last topology known (%s)\r\n", time.Since(etcdAt).Seconds(), oneLine(etcdErr.Error()))
	} else {
		b.WriteString("etcd:ok\r\n")
	}
	for _, n := range nodes {
		role := "follower"
		if n.id == v.Leader {
			role = "leader"
		}
		state := "up"
		if !n.healthy() {
			state = "down"
		}
		pos := [...]string{"unknown", "yes", "no"}[n.positions.Load()]
		fmt.Fprintf(&b, "node_%s:addr=%s,role=%s,state=%s,zone=%s,in_flight=%d,reads=%d,read_policies=%s\r\n",
			n.id, n.addr, role, state, n.zone, n.inflight.Load(), n.reads.Load(), pos)
	}
	writeMap(&b, "reads_policy_", snap.byPolicy)
	writeMap(&b, "reads_node_", snap.byNode)
	writeMap(&b, "reads_fallback_leader_", snap.fallbacks)
	writeMap(&b, "reads_failed_", snap.failed)
	fmt.Fprintf(&b, "reads_cross_zone:%d\r\nreads_sent_elsewhere:%d\r\nreads_retried_after_node_failure:%d\r\nreads_waited_for_leader:%d\r\n",
		snap.crossZone, p.stats.readsElsewhere.Load(), p.stats.readsRetried.Load(), p.stats.readsWaited.Load())
	fmt.Fprintf(&b, "reads_may_wait:%d\r\nreads_may_wait_on_shared:%d\r\nreads_may_wait_groups:%d\r\nreads_waited_again:%d\r\n", p.stats.readsMayWait.Load(), p.stats.readsMayWaitSh.Load(), p.stats.readGroups.Load(), p.stats.readsWaitedAgain.Load())
	fmt.Fprintf(&b, "reads_floor_known:%d\r\nreads_floor_unproven:%d\r\nread_proofs:%d\r\n", p.stats.readsFloorKnown.Load(), p.stats.readsFloorUnproven.Load(), p.stats.readProofs.Load())
	fmt.Fprintf(&b, "reads_linearizable_batched:%d\r\nreads_linearizable_unproven:%d\r\nread_index_queries:%d\r\nread_index_failed:%d\r\nread_index_slow:%d\r\n",
		p.stats.readsIndexed.Load(), p.stats.indexUnproven.Load(), p.stats.indexQueries.Load(), p.stats.indexRefused.Load(), p.stats.indexSlow.Load())
	fmt.Fprintf(&b, "read_index_reads_sent:%d\r\nread_index_queued_usec:%d\r\nread_index_batches_answered:%d\r\nread_index_batch_usec:%d\r\n",
		p.stats.indexSent.Load(), p.stats.indexQueuedNs.Load()/1000, p.stats.indexAnswered.Load(), p.stats.indexBatchNs.Load()/1000)
	fmt.Fprintf(&b, "reads_sent_to_down_node:%d\r\n", p.stats.readsToDown.Load())
	fmt.Fprintf(&b, "writes_waited_for_leader:%d\r\nwrites_no_leader:%d\r\nwrites_uncertain:%d\r\nrequests_failed_in_flight:%d\r\nnodes_marked_down:%d\r\n",
		p.stats.writesWaited.Load(), p.stats.writesNoLeader.Load(), p.stats.writesUncertain.Load(), p.stats.inflightFailed.Load(), p.stats.markedDown.Load())
	fmt.Fprintf(&b, "pubsub_pinned_connections:%d\r\nblocked_clients:%d\r\n", p.stats.pinned.Load(), p.stats.blocked.Load())
	return b.String()
}

func writeMap(b *strings.Builder, prefix string, m map[string]uint64) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "%s%s:%d\r\n", prefix, k, m[k])
	}
}

func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

// cmdInfo answers INFO [section...]: the proxy's own sections (server,
// clients, proxy); a node's INFO is asked on the node.
func (p *Proxy) cmdInfo(c redcon.Conn, _ *resp.Session, args [][]byte) {
	want := func(sec string) bool {
		if len(args) == 1 {
			return true
		}
		for _, a := range args[1:] {
			if s := strings.ToLower(string(a)); s == sec || s == "all" || s == "everything" || s == "default" {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	if want("server") {
		fmt.Fprintf(&b, "# Server\r\nredis_version:7.0.0\r\ntandem_process:proxy\r\nredis_mode:standalone\r\nuptime_in_seconds:%d\r\n\r\n", int(time.Since(p.start).Seconds()))
	}
	if want("clients") {
		fmt.Fprintf(&b, "# Clients\r\nconnected_clients:%d\r\n\r\n", p.srv.Clients())
	}
	if want("proxy") {
		b.WriteString(p.infoProxy())
	}
	c.WriteBulkString(b.String())
}

// Collector is the proxy's Prometheus collector (/metrics).
func (p *Proxy) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Proxy }

var (
	descReads     = prometheus.NewDesc("tandem_proxy_reads_total", "Reads served, by read policy.", []string{"policy"}, nil)
	descNodeReads = prometheus.NewDesc("tandem_proxy_node_reads_total", "Reads served, by node.", []string{"node"}, nil)
	descFallback  = prometheus.NewDesc("tandem_proxy_read_fallbacks_total", "Reads the policy allowed on a follower that the leader served, by reason.", []string{"reason"}, nil)
	descReadFail  = prometheus.NewDesc("tandem_proxy_reads_failed_total", "Reads no node served.", []string{"reason"}, nil)
	descElsewhere = prometheus.NewDesc("tandem_proxy_reads_elsewhere_total", "Reads a node refused under the session's policy (sent to another).", nil, nil)
	descRetried   = prometheus.NewDesc("tandem_proxy_reads_retried_total", "Reads sent to another node after theirs failed.", nil, nil)
	descReadWait  = prometheus.NewDesc("tandem_proxy_reads_waited_total", "Reads that waited for a leader (none known).", nil, nil)
	descAgain     = prometheus.NewDesc("tandem_proxy_reads_waited_again_total", "Monotonic reads sent to wait again on the follower that refused them (not applied within its read wait).", nil, nil)
	descMayWait   = prometheus.NewDesc("tandem_proxy_reads_may_wait_total", "Reads that may wait on their node for the session's position (sent on a connection of their own, or on a shared one when all were busy).", []string{"conn"}, nil)
	descKnown     = prometheus.NewDesc("tandem_proxy_reads_floor_known_total", "Ryw and monotonic reads sent without the session's state to a node known to have applied its floor (proven by the read's token), and those whose token did not prove it (sent again with the state).", []string{"proven"}, nil)
	descIndexed   = prometheus.NewDesc("tandem_proxy_reads_linearizable_batched_total", "Linearizable follower reads that waited for an index query of their follower and went in the known-floor form (proven by the read's token), and those whose token did not prove it (sent again in full).", []string{"proven"}, nil)
	descQueries   = prometheus.NewDesc("tandem_proxy_read_index_queries_total", "Index queries sent to followers, each serving every linearizable read queued for its follower before it was sent.", nil, nil)
	descIndexTime = prometheus.NewDesc("tandem_proxy_read_index_seconds_total", "Where batched linearizable reads waited at the proxy, summed: queued (each read, from joining a batch to the batch leaving: a slot busy), batch (each batch, from leaving to its replies: the node's probe, reads and proof).", []string{"phase"}, nil)
	descIndexN    = prometheus.NewDesc("tandem_proxy_read_index_count_total", "The counts of tandem_proxy_read_index_seconds_total: reads sent in batches (queued), batches answered (batch).", []string{"phase"}, nil)
	descCrossZone = prometheus.NewDesc("tandem_proxy_reads_cross_zone_total", "Reads served outside the proxy's zone.", nil, nil)
	descWaited    = prometheus.NewDesc("tandem_proxy_writes_waited_total", "Writes that waited for a leader.", nil, nil)
	descNoLeader  = prometheus.NewDesc("tandem_proxy_writes_no_leader_total", "Writes refused because no leader took writes within --write-wait.", nil, nil)
	descUncertain = prometheus.NewDesc("tandem_proxy_writes_uncertain_total", "Writes answered UNCERTAIN (connection lost after sending).", nil, nil)
	descInflight  = prometheus.NewDesc("tandem_proxy_requests_failed_in_flight_total", "Requests in flight on a node connection that failed.", nil, nil)
	descNodeUp    = prometheus.NewDesc("tandem_proxy_node_up", "1 if the proxy routes to the node.", []string{"node"}, nil)
	descEtcd      = prometheus.NewDesc("tandem_proxy_etcd_ok", "1 if the proxy reaches etcd, 0 while it serves the last topology it knew.", nil, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReads, descNodeReads, descFallback, descReadFail, descElsewhere, descRetried,
		descReadWait, descMayWait, descAgain, descKnown, descIndexed, descQueries, descIndexTime, descIndexN, descCrossZone, descWaited, descNoLeader, descUncertain, descInflight, descNodeUp, descEtcd} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	snap := p.stats.snapshot()
	counterMap := func(d *prometheus.Desc, m map[string]uint64) {
		for k, v := range m {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), k)
		}
	}
	counterMap(descReads, snap.byPolicy)
	counterMap(descNodeReads, snap.byNode)
	counterMap(descFallback, snap.fallbacks)
	counterMap(descReadFail, snap.failed)
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descElsewhere, p.stats.readsElsewhere.Load())
	counter(descRetried, p.stats.readsRetried.Load())
	counter(descReadWait, p.stats.readsWaited.Load())
	ch <- prometheus.MustNewConstMetric(descMayWait, prometheus.CounterValue, float64(p.stats.readsMayWait.Load()), "own")
	ch <- prometheus.MustNewConstMetric(descMayWait, prometheus.CounterValue, float64(p.stats.readsMayWaitSh.Load()), "shared")
	counter(descAgain, p.stats.readsWaitedAgain.Load())
	unproven := p.stats.readsFloorUnproven.Load()
	ch <- prometheus.MustNewConstMetric(descKnown, prometheus.CounterValue, float64(p.stats.readsFloorKnown.Load()-unproven), "yes")
	ch <- prometheus.MustNewConstMetric(descKnown, prometheus.CounterValue, float64(unproven), "no")
	iu := p.stats.indexUnproven.Load()
	ch <- prometheus.MustNewConstMetric(descIndexed, prometheus.CounterValue, float64(p.stats.readsIndexed.Load()-min(iu, p.stats.readsIndexed.Load())), "yes")
	ch <- prometheus.MustNewConstMetric(descIndexed, prometheus.CounterValue, float64(iu), "no")
	counter(descQueries, p.stats.indexQueries.Load())
	ch <- prometheus.MustNewConstMetric(descIndexTime, prometheus.CounterValue, time.Duration(p.stats.indexQueuedNs.Load()).Seconds(), "queued")
	ch <- prometheus.MustNewConstMetric(descIndexTime, prometheus.CounterValue, time.Duration(p.stats.indexBatchNs.Load()).Seconds(), "batch")
	ch <- prometheus.MustNewConstMetric(descIndexN, prometheus.CounterValue, float64(p.stats.indexSent.Load()), "queued")
	ch <- prometheus.MustNewConstMetric(descIndexN, prometheus.CounterValue, float64(p.stats.indexAnswered.Load()), "batch")
	counter(descCrossZone, snap.crossZone)
	counter(descWaited, p.stats.writesWaited.Load())
	counter(descNoLeader, p.stats.writesNoLeader.Load())
	counter(descUncertain, p.stats.writesUncertain.Load())
	counter(descInflight, p.stats.inflightFailed.Load())
	p.mu.Lock()
	nodes := slices.Collect(maps.Values(p.nodes))
	etcdOK := p.etcdErr == nil
	p.mu.Unlock()
	for _, n := range nodes {
		up := 0.0
		if n.healthy() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeUp, prometheus.GaugeValue, up, n.id)
	}
	ok := 0.0
	if etcdOK {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(descEtcd, prometheus.GaugeValue, ok)
}

// Handler serves /metrics (Prometheus), /info (INFO's Proxy section) and
// /debug/pprof.
func (p *Proxy) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Status())
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, strings.ReplaceAll(p.infoProxy(), "\r\n", "\n"))
	})
	return mux
}
