package orchestrator

import (
	"net/http"
	"time"

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
)

// metrics serves /metrics: the failover policy and any outage, read at
// scrape time.
func (o *Orchestrator) metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collector{o})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type collector struct{ o *Orchestrator }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descManual, descDown, descWaiting, descDownFor, descHookErr} {
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
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
