package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// FailoverPolicy says who fails a failed leader over: the orchestrator by
// itself (FailoverAutomatic, the default) or an operator (FailoverManual:
// the orchestrator detects the failure, records and reports it, runs the
// hooks, and waits for `tandem promote` or the leader's return).
type FailoverPolicy string

// The failover policies.
const (
	FailoverAutomatic FailoverPolicy = "automatic"
	FailoverManual    FailoverPolicy = "manual"
)

// ParseFailoverPolicy parses a policy's name; anything else is an error.
func ParseFailoverPolicy(s string) (FailoverPolicy, error) {
	switch p := FailoverPolicy(s); p {
	case FailoverAutomatic, FailoverManual:
		return p, nil
	}
	return "", fmt.Errorf("coord: failover policy %q: want automatic or manual", s)
}

// policyRecord is the JSON at the failover_policy key.
type policyRecord struct {
	Failover string    `json:"failover"`
	Changed  time.Time `json:"changed"`
}

// decodePolicy reads a stored policy: no key is FailoverAutomatic; a value
// that does not parse is an error, never a silent default.
func decodePolicy(v []byte, present bool) (FailoverPolicy, error) {
	if !present {
		return FailoverAutomatic, nil
	}
	var r policyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return "", fmt.Errorf("coord: failover policy %q: %w", v, err)
	}
	return ParseFailoverPolicy(r.Failover)
}

// FailoverPolicy reads the cluster's failover policy (FailoverAutomatic if
// none was set).
func (s *Store) FailoverPolicy(ctx context.Context) (FailoverPolicy, error) {
	resp, err := s.cli.Get(ctx, s.Key("failover_policy"))
	if err != nil {
		return "", fmt.Errorf("coord: read failover policy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return decodePolicy(nil, false)
	}
	return decodePolicy(resp.Kvs[0].Value, true)
}

// SetFailoverPolicy sets the cluster's failover policy and records the
// change as an event, in one transaction. It returns the policy it
// replaced. The policy is apart from the topology: changing it needs no
// epoch compare, and a failover's topology change cannot undo it.
func (s *Store) SetFailoverPolicy(ctx context.Context, p FailoverPolicy, reason string) (FailoverPolicy, error) {
	if _, err := ParseFailoverPolicy(string(p)); err != nil {
		return "", err
	}
	now := time.Now()
	b, _ := json.Marshal(policyRecord{Failover: string(p), Changed: now})
	evb, _ := json.Marshal(Event{At: now, Kind: "policy", Reason: reason})
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.Key("failover_policy")),
		clientv3.OpPut(s.Key("failover_policy"), string(b)),
		clientv3.OpPut(s.Key(fmt.Sprintf("events/%020d", now.UnixNano())), string(evb)),
	).Commit()
	if err != nil {
		return "", fmt.Errorf("coord: set failover policy %s: %w", p, err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return FailoverAutomatic, nil
	}
	old, err := decodePolicy(kvs[0].Value, true)
	if err != nil {
		// The bad value is replaced now; say what it was.
		return FailoverPolicy(kvs[0].Value), nil
	}
	return old, nil
}

// PolicyUpdate is the failover policy as WatchFailoverPolicy delivers it:
// Err is set when the stored value does not parse (Policy is then empty).
type PolicyUpdate struct {
	Policy FailoverPolicy
	Err    error
}

// WatchFailoverPolicy sends the current policy and then every change until
// ctx ends; the channel is closed when ctx ends, a broken watch resumed.
// An undelivered update is replaced by a newer one.
func (s *Store) WatchFailoverPolicy(ctx context.Context) <-chan PolicyUpdate {
	out := make(chan PolicyUpdate, 1)
	key := s.Key("failover_policy")
	deliver := func(v []byte, present bool) bool {
		p, err := decodePolicy(v, present)
		return send(ctx, out, PolicyUpdate{Policy: p, Err: err})
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			resp, err := s.cli.Get(ctx, key)
			if err != nil {
				if !Sleep(ctx, 100*time.Millisecond) {
					return
				}
				continue
			}
			var v []byte
			if len(resp.Kvs) > 0 {
				v = resp.Kvs[0].Value
			}
			if !deliver(v, len(resp.Kvs) > 0) {
				return
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range s.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if !deliver(ev.Kv.Value, ev.Type == clientv3.EventTypePut) {
						cancel()
						return
					}
				}
			}
			cancel()
			if !Sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
	}()
	return out
}
