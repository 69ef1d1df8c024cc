package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Orchestrator is what the active orchestrator publishes as its election
// value, so that nodes, the CLI and `tandem status` can reach it.
type Orchestrator struct {
	ID           string `json:"id"`
	HTTPAddr     string `json:"http_addr"`
	SentinelAddr string `json:"sentinel_addr,omitempty"`
}

// Session is an etcd lease kept alive by this process; keys bound to it
// vanish when the process dies or is cut off for ttl seconds.
func (s *Store) Session(ttl int) (*concurrency.Session, error) {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttl))
	if err != nil {
		return nil, fmt.Errorf("coord: etcd session: %w", err)
	}
	return sess, nil
}

// Election is the orchestrators' election on sess.
func (s *Store) Election(sess *concurrency.Session) *concurrency.Election {
	return concurrency.NewElection(sess, s.Key("orchestrator"))
}

// Campaign blocks until this orchestrator is the active one (or ctx ends).
func Campaign(ctx context.Context, e *concurrency.Election, me Orchestrator) error {
	b, _ := json.Marshal(me)
	if err := e.Campaign(ctx, string(b)); err != nil {
		return fmt.Errorf("coord: campaign: %w", err)
	}
	return nil
}

// ErrNoOrchestrator: no orchestrator is active.
var ErrNoOrchestrator = errors.New("coord: no active orchestrator")

// ActiveOrchestrator returns the active orchestrator.
func (s *Store) ActiveOrchestrator(ctx context.Context) (Orchestrator, error) {
	resp, err := s.cli.Get(ctx, s.Key("orchestrator")+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Orchestrator{}, fmt.Errorf("coord: read orchestrator: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Orchestrator{}, ErrNoOrchestrator
	}
	var o Orchestrator
	if err := json.Unmarshal(resp.Kvs[0].Value, &o); err != nil {
		return Orchestrator{}, fmt.Errorf("coord: orchestrator value: %w", err)
	}
	return o, nil
}

// RegisterOrchestrator records me under orchestrators/<id>, bound to
// sess's lease (gone when the process is), so that every orchestrator can
// list the others (Sentinel's SENTINEL sentinels).
func (s *Store) RegisterOrchestrator(ctx context.Context, sess *concurrency.Session, me Orchestrator) error {
	b, _ := json.Marshal(me)
	if _, err := s.cli.Put(ctx, s.Key("orchestrators/"+me.ID), string(b), clientv3.WithLease(sess.Lease())); err != nil {
		return fmt.Errorf("coord: register orchestrator %s: %w", me.ID, err)
	}
	return nil
}

// Orchestrators lists the registered orchestrators.
func (s *Store) Orchestrators(ctx context.Context) ([]Orchestrator, error) {
	resp, err := s.cli.Get(ctx, s.Key("orchestrators/"), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("coord: read orchestrators: %w", err)
	}
	var out []Orchestrator
	for _, kv := range resp.Kvs {
		var o Orchestrator
		if json.Unmarshal(kv.Value, &o) == nil {
			out = append(out, o)
		}
	}
	return out, nil
}
