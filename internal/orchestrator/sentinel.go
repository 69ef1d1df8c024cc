package orchestrator

import (
	"fmt"
	"net"
	"sync"

	"github.com/tandemdb/tandem/internal/sentinel"
)

// sentinelState is the topology as the Sentinel endpoint reports it: the
// leader and replicas with their RESP addresses and whether this
// orchestrator considers them down, and the other orchestrators.
func (o *Orchestrator) sentinelState() sentinel.State {
	v := o.snapshot()
	st := sentinel.State{Name: o.cfg.SentinelName, Epoch: v.Topo.Epoch}
	for _, n := range v.Nodes {
		sn := sentinel.Node{ID: n.ID, Addr: n.Member.RESPAddr, Down: !n.Fresh || n.Suspect}
		if !n.LastBeat.IsZero() {
			sn.LastHeardMs = v.Now.Sub(n.LastBeat).Milliseconds()
		}
		if n.Reply != nil && n.Reply.Durable != nil {
			sn.LagLSN = n.Reply.Durable.Lsn // turned into lag below
		}
		if v.HaveTopo && n.ID == v.Topo.Leader {
			leader := sn
			st.Leader = &leader
			continue
		}
		st.Replicas = append(st.Replicas, sn)
	}
	o.mu.Lock()
	for _, p := range o.peers {
		if p.SentinelAddr != "" {
			st.Sentinels = append(st.Sentinels, sentinel.Peer{ID: p.ID, Addr: p.SentinelAddr})
		}
	}
	o.mu.Unlock()
	if st.Leader != nil {
		st.LeaderLSN = st.Leader.LagLSN
		st.Leader.LagLSN = 0
	}
	for i := range st.Replicas {
		r := &st.Replicas[i]
		if r.LagLSN > st.LeaderLSN {
			r.LagLSN = 0
		} else {
			r.LagLSN = st.LeaderLSN - r.LagLSN
		}
	}
	return st
}

// sentinelEndpoint is the running Sentinel-compatible server.
type sentinelEndpoint struct {
	srv  *sentinel.Server
	mu   sync.Mutex
	last sentinel.State
}

func (o *Orchestrator) startSentinel() error {
	if o.cfg.SentinelAddr == "" {
		return nil
	}
	if o.cfg.SentinelName == "" {
		o.cfg.SentinelName = "tandem"
	}
	l, err := net.Listen("tcp", o.cfg.SentinelAddr)
	if err != nil {
		return fmt.Errorf("orchestrator: sentinel listener: %w", err)
	}
	srv := sentinel.New(sentinel.Config{Addr: l.Addr().String(), ID: o.cfg.ID, DownAfter: o.cfg.Interval * 3, Logger: o.log}, o.sentinelState)
	o.sentinel = &sentinelEndpoint{srv: srv, last: o.sentinelState()}
	go func() {
		if err := srv.Serve(l); err != nil {
			o.log.Debug("sentinel endpoint stopped", "err", err)
		}
	}()
	return nil
}

// sentinelChanged publishes a topology change to Sentinel subscribers.
func (o *Orchestrator) sentinelChanged() {
	e := o.sentinel
	if e == nil {
		return
	}
	now := o.sentinelState()
	e.mu.Lock()
	old := e.last
	e.last = now
	e.mu.Unlock()
	e.srv.Changed(old, now)
}

// SentinelAddr is the Sentinel endpoint's address ("" if none).
func (o *Orchestrator) SentinelAddr() string {
	if o.sentinel == nil {
		return ""
	}
	return o.sentinel.srv.Addr()
}
