package orchestrator

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// dial opens a peer connection that reconnects quickly (a node restarted
// by its supervisor is back within a second).
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: 200 * time.Millisecond,
		}))
}

// probe heartbeats one node every interval until ctx ends. Each probe has
// the interval as its deadline, so a stopped node costs one interval per
// missed heartbeat, never a pile of probes.
func (o *Orchestrator) probe(ctx context.Context, ns *nodeState) {
	defer o.wg.Done()
	conn, err := dial(o.peerAddr(ns.member))
	if err != nil {
		o.log.Warn("probe: cannot dial", "node", ns.member.ID, "err", err)
		return
	}
	defer conn.Close()
	pc := peerpb.NewPeerClient(conn)
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	for {
		o.mu.Lock()
		epoch := o.topo.Epoch
		o.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, o.cfg.Interval)
		rep, err := pc.Heartbeat(pctx, &peerpb.HeartbeatRequest{OrchestratorId: o.cfg.ID, Epoch: epoch})
		cancel()
		now := time.Now()
		o.mu.Lock()
		if err == nil {
			ns.det.Heartbeat(now)
			ns.reply, ns.replied, ns.refused, ns.lastErr = rep, now, 0, ""
			shouldLead := o.haveTopo && o.topo.Leader == ns.member.ID
			leads := rep.Role == "leader" && rep.LeadingEpoch == o.topo.Epoch
			if shouldLead && leads && rep.Answering && ns.graceEnds.After(now) {
				// Taking over is done: the grace ends early, so a new
				// leader that dies at once is failed over at once.
				ns.det.Grace(now)
				ns.graceEnds = time.Time{}
			}
			if shouldLead && leads && !rep.Answering {
				if ns.notAnswering.IsZero() {
					ns.notAnswering = now
				}
			} else {
				ns.notAnswering = time.Time{}
			}
			if shouldLead && !leads {
				if ns.notLead.IsZero() {
					ns.notLead = now
				}
			} else {
				ns.notLead = time.Time{}
			}
		} else {
			ns.lastErr = err.Error()
			// Refused at once (nothing listens: the process is gone), as
			// opposed to a probe that timed out (slow, paused, cut off).
			if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
				ns.refused++
			} else {
				ns.refused = 0
			}
		}
		o.mu.Unlock()
		if err != nil {
			// Look again soon: two refusals in a row mean the process is
			// gone, and that should take a fraction of the interval.
			if !coord.Sleep(ctx, o.cfg.Interval/4) {
				return
			}
			continue
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
