// Package coord is tandem's view of etcd: the one place that knows the
// keys, their JSON shapes and the transactions that change them.
//
// Per cluster, under Prefix(cluster) = "/tandem/<cluster>/":
//
//	epoch            the current epoch, decimal: the fencing token
//	topology         Topology: epoch, leader, mode, sync set, why and when
//	members/<id>     Member: a node's addresses, zone and priority
//	epochs/<epoch>   EpochStart: who led the epoch and its first LSN
//	events/<seq>     Event: one failover, switchover or promotion, a
//	                 failure detected under the manual policy, a change of
//	                 mode or policy
//	failover_policy  the FailoverPolicy: automatic (no key) or manual
//	orchestrator/    the orchestrators' election (concurrency.Election)
//	leader           the leading node's claim, bound to its etcd lease
//
// Promises:
//
//   - Every topology change is one transaction that compares the epoch key
//     with the epoch the caller read and writes epoch, topology, the epoch
//     history and the event together (SetTopology). A change of leader
//     must raise the epoch, so two leaders can never hold the same epoch:
//     of two orchestrators racing from the same epoch, one wins.
//   - A topology's rules (mode, sync-fallback, sync-min) are typed values
//     parsed once, when it is decoded (DecodeTopology): one that does not
//     parse is an error to its reader, never a silent default.
//   - Nothing here decides anything: the orchestrator decides (package
//     failover holds the rule), nodes obey the topology they watch.
package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Topology is who leads the cluster, at which epoch, under which rules.
type Topology struct {
	Epoch  uint64 `json:"epoch"`
	Leader string `json:"leader"`
	// Mode is the commit mode ("async", "quorum 1", ...; unset: each
	// node's own --mode).
	Mode Mode `json:"mode,omitzero"`
	// SyncSet names the followers whose acknowledgements count in a
	// synchronous mode (the commit-modes issue fills it).
	SyncSet []string `json:"sync_set,omitempty"`
	// SyncFallback: "never" (sync and semisync writes wait, then answer
	// NOREPLICAS, while no sync-set member is there), or "after D": after
	// that long the leader degrades to async, loudly, until a follower is
	// caught up again.
	SyncFallback Fallback `json:"sync_fallback,omitzero"`
	// SyncMin: in sync and semisync, while fewer sync-set members than
	// this are there, writes are refused at once (NOREPLICAS) instead of
	// waiting out the write timeout; 0 means no floor, below 0 does not
	// decode.
	SyncMin int `json:"sync_min,omitempty"`
	// Fenced, in a topology with no Leader, is the leader whose epoch this
	// one ended while a successor is chosen (a quorum-mode failover's
	// first step).
	Fenced  string    `json:"fenced,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Changed time.Time `json:"changed"`
}

// Member is a node as it registers itself.
type Member struct {
	ID       string `json:"id"`
	RESPAddr string `json:"resp_addr"`
	PeerAddr string `json:"peer_addr"`
	HTTPAddr string `json:"http_addr"`
	Zone     string `json:"zone,omitempty"`
	// Priority is 0-100; 0 means never promote.
	Priority int `json:"priority"`
	PID      int `json:"pid,omitempty"`
	// LogFormat is the highest replication log format the member's build
	// reads (package logrec); 0 is a build from before the field, which
	// reads format 1. A leader writes a format only once every registered
	// member reads it.
	LogFormat uint8 `json:"log_format,omitempty"`
}

// EpochStart records who led an epoch and from which LSN.
type EpochStart struct {
	Epoch  uint64 `json:"epoch"`
	Leader string `json:"leader"`
	// FirstLSN is the LSN of the epoch's first entry, written by the
	// leader once it has started (0 until then).
	FirstLSN uint64    `json:"first_lsn,omitempty"`
	At       time.Time `json:"at"`
}

// Event is one change of leader, kept in etcd and logged. Kinds besides
// the changes of leader (bootstrap, failover, fence, switchover, promote):
// mode and policy (a setting changed), and, under the manual failover
// policy, detected (a failed leader; To is empty) and leader-returned.
type Event struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"` // bootstrap, failover, switchover, promote
	Reason   string    `json:"reason"`
	From     string    `json:"from,omitempty"`
	To       string    `json:"to"`
	OldEpoch uint64    `json:"old_epoch"`
	NewEpoch uint64    `json:"new_epoch"`
	// Detection is from the leader's last sign of life to the decision;
	// Promotion from the decision to the new leader taking writes (filled
	// in afterwards when known); Pause is a switchover's write pause.
	DetectionMs float64 `json:"detection_ms,omitempty"`
	PromotionMs float64 `json:"promotion_ms,omitempty"`
	PauseMs     float64 `json:"pause_ms,omitempty"`
	// LostWrites is the number of entries the old leader had durable
	// beyond the new leader's position at the decision, when known.
	LostWrites uint64 `json:"lost_writes,omitempty"`
	Accepted   bool   `json:"accepted_data_loss,omitempty"`
}

// Store reads and changes one cluster's keys.
type Store struct {
	cli    *clientv3.Client
	prefix string
}

// ErrBadTopology: the stored topology does not decode (a garbled rule, or
// not JSON at all). Its readers must not act on it.
var ErrBadTopology = errors.New("coord: the topology in etcd does not decode")

// ErrConflict: the epoch moved since the caller read it.
var ErrConflict = errors.New("coord: topology changed concurrently (epoch compare failed)")

// Prefix is the key prefix of a cluster.
func Prefix(cluster string) string { return "/tandem/" + cluster + "/" }

// Dial connects to etcd.
func Dial(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		// Keepalives find a dead etcd member quickly, so the client moves
		// to another endpoint.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		// gRPC's default reconnect backoff grows to 120 s: a process cut
		// off from etcd for a while would then take seconds to notice it
		// is back, and a leader's lease (renewed through etcd) with it.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
			// Fixed flow-control windows turn off gRPC's bandwidth-delay
			// estimator, which answered nearly every etcd reply with a
			// PING the server had to acknowledge: a round trip more per
			// request, a wake-up more on both sides (bench/idle.sh). The
			// control plane's messages are small; 1 MiB in flight is more
			// than any of its replies.
			grpc.WithStaticStreamWindowSize(EtcdWindow), grpc.WithStaticConnWindowSize(EtcdWindow)},
		Logger: quietZap(),
	})
	if err != nil {
		return nil, fmt.Errorf("coord: connect to etcd %v: %w", endpoints, err)
	}
	return cli, nil
}

// EtcdWindow is the fixed HTTP/2 flow-control window of the control
// plane's etcd connections, the clients' (Dial) and the embedded server's.
const EtcdWindow = 1 << 20

// New is a Store for cluster over cli.
func New(cli *clientv3.Client, cluster string) *Store {
	return &Store{cli: cli, prefix: Prefix(cluster)}
}

// Client is the etcd client under the store.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key is the full key of name.
func (s *Store) Key(name string) string { return s.prefix + name }

func epochName(e uint64) string { return fmt.Sprintf("epochs/%020d", e) }

// Topology returns the current topology and its epoch key's revision; ok
// is false when the cluster has no topology yet.
func (s *Store) Topology(ctx context.Context) (t Topology, ok bool, err error) {
	resp, err := s.cli.Get(ctx, s.Key("topology"))
	if err != nil {
		return Topology{}, false, fmt.Errorf("coord: read topology: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Topology{}, false, nil
	}
	if t, err = DecodeTopology(resp.Kvs[0].Value); err != nil {
		return Topology{}, false, err
	}
	return t, true, nil
}

// TopologyAndMembers is Topology and Members read in one linearizable
// request (one etcd round trip, one revision): a leader's lease
// confirmation that also refreshes its list of members costs no second
// read. A member record that does not decode fails only the members
// (MembersErr), not the topology.
func (s *Store) TopologyAndMembers(ctx context.Context) (TopologyRead, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.Key("topology")),
		clientv3.OpGet(s.Key("members/"), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return TopologyRead{}, fmt.Errorf("coord: read topology and members: %w", err)
	}
	if len(resp.Responses) != 2 {
		return TopologyRead{}, fmt.Errorf("coord: read topology and members: %d answers to 2 reads", len(resp.Responses))
	}
	var r TopologyRead
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		if r.Topology, err = DecodeTopology(kvs[0].Value); err != nil {
			return TopologyRead{}, err
		}
		r.OK = true
	}
	r.Members, r.MembersErr = decodeMembers(resp.Responses[1].GetResponseRange().GetKvs())
	return r, nil
}

// TopologyRead is what TopologyAndMembers read: OK is false when the
// cluster has no topology yet.
type TopologyRead struct {
	Topology   Topology
	OK         bool
	Members    []Member
	MembersErr error
}

// DecodeTopology decodes a stored topology. Its rules are parsed here,
// once: a mode, sync-fallback or sync-min that does not parse is an error
// naming the value, never a default in its place.
func DecodeTopology(b []byte) (Topology, error) {
	var t Topology
	if err := json.Unmarshal(b, &t); err != nil {
		return Topology{}, fmt.Errorf("%w: %s: %w", ErrBadTopology, b, err)
	}
	if err := t.check(); err != nil {
		return Topology{}, fmt.Errorf("%w: %s: %w", ErrBadTopology, b, err)
	}
	return t, nil
}

// SetTopology changes the topology from the epoch the caller read (0: the
// cluster has none yet) to next, atomically with the epoch key, the epoch
// history (when next starts an epoch) and ev (if not nil). It fails with
// ErrConflict if the epoch is no longer from. A new leader needs a new
// epoch: next.Epoch must be above from when the leader changes, and never
// below it.
func (s *Store) SetTopology(ctx context.Context, from uint64, next Topology, ev *Event) error {
	if next.Epoch < from {
		return fmt.Errorf("coord: epoch may not go back (%d to %d)", from, next.Epoch)
	}
	if err := next.check(); err != nil {
		return err
	}
	if next.Changed.IsZero() {
		next.Changed = time.Now()
	}
	var cmp clientv3.Cmp
	if from == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(s.Key("epoch")), "=", 0)
	} else {
		cmp = clientv3.Compare(clientv3.Value(s.Key("epoch")), "=", strconv.FormatUint(from, 10))
	}
	if from > 0 && next.Epoch == from {
		// Same epoch: the leader must not change (read leniently: this
		// may be the repair of rules that do not decode).
		cur, _, ok, err := s.storedTopology(ctx)
		if err != nil {
			return err
		}
		if ok && cur.Leader != next.Leader {
			return fmt.Errorf("coord: a new leader (%s) needs a new epoch", next.Leader)
		}
	}
	tb, _ := json.Marshal(next)
	ops := []clientv3.Op{
		clientv3.OpPut(s.Key("epoch"), strconv.FormatUint(next.Epoch, 10)),
		clientv3.OpPut(s.Key("topology"), string(tb)),
	}
	if next.Epoch > from {
		eb, _ := json.Marshal(EpochStart{Epoch: next.Epoch, Leader: next.Leader, At: next.Changed})
		ops = append(ops, clientv3.OpPut(s.Key(epochName(next.Epoch)), string(eb)))
	}
	if ev != nil {
		if ev.At.IsZero() {
			ev.At = next.Changed
		}
		evb, _ := json.Marshal(ev)
		ops = append(ops, clientv3.OpPut(s.Key(fmt.Sprintf("events/%020d", ev.At.UnixNano())), string(evb)))
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("coord: set topology epoch %d: %w", next.Epoch, err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}

// WatchTopology sends the current topology and then every change until ctx
// ends. The channel is closed when ctx ends; a broken watch is resumed. A
// stored topology that does not decode is skipped: readers that act on the
// topology use WatchTopologyChecked, which reports it.
func (s *Store) WatchTopology(ctx context.Context) <-chan Topology {
	out := make(chan Topology, 1)
	go func() {
		defer close(out)
		for w := range s.WatchTopologyChecked(ctx) {
			if w.Err == nil && !send(ctx, out, w.Topology) {
				return
			}
		}
	}()
	return out
}

// Watched is one topology a watch read: Err, if not nil, says why the
// stored topology does not decode (Topology is then zero). A reader must
// not act on such a topology, and should say why it does not.
type Watched struct {
	Topology Topology
	Err      error
}

// WatchTopologyChecked is WatchTopology with the topologies that do not
// decode delivered as errors.
func (s *Store) WatchTopologyChecked(ctx context.Context) <-chan Watched {
	out := make(chan Watched, 1)
	decode := func(b []byte) Watched {
		t, err := DecodeTopology(b)
		return Watched{Topology: t, Err: err}
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			resp, err := s.cli.Get(ctx, s.Key("topology"))
			if err != nil {
				if !Sleep(ctx, 100*time.Millisecond) {
					return
				}
				continue
			}
			rev := resp.Header.Revision
			if len(resp.Kvs) > 0 && !send(ctx, out, decode(resp.Kvs[0].Value)) {
				return
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range s.cli.Watch(wctx, s.Key("topology"), clientv3.WithRev(rev+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Kv != nil && len(ev.Kv.Value) > 0 && !send(ctx, out, decode(ev.Kv.Value)) {
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

// WatchPrefixes signals on the returned channel (capacity 1, a signal not
// yet taken absorbs the next) once every watch of the keys under the given
// names' prefixes is established, and after every change under any of them
// from then on; a broken watch is established again and signals again
// (changes may have been missed meanwhile). A reader that reads the keys
// after each signal never misses a change: one made after its read
// signals again. For what changes rarely (members, orchestrators), where
// a poll cost etcd a read a second for nothing.
func (s *Store) WatchPrefixes(ctx context.Context, names ...string) <-chan struct{} {
	out := make(chan struct{}, 1)
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	for _, name := range names {
		go func() {
			for ctx.Err() == nil {
				wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
				for wr := range s.cli.Watch(wctx, s.Key(name), clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
					if wr.Err() != nil || wr.Canceled {
						break
					}
					signal() // established (Created), or a change
				}
				cancel()
				if !Sleep(ctx, 100*time.Millisecond) {
					return
				}
			}
		}()
	}
	return out
}

// WatchConn signals on the returned channel (capacity 1, as WatchPrefixes)
// whenever the client's connection to etcd changes state — lost,
// connecting, failing, ready again — until ctx ends: a reader that keeps
// etcd's reachability current reads when it signals instead of polling.
// A connection that dies without a word is seen when the client's
// keepalive gives up on it (Dial: about two seconds).
func (s *Store) WatchConn(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	conn := s.cli.ActiveConnection()
	go func() {
		for {
			st := conn.GetState()
			if !conn.WaitForStateChange(ctx, st) {
				return // ctx ended
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

// send delivers t, replacing an undelivered older value: a watcher only
// ever needs the latest (topology, failover policy).
func send[T any](ctx context.Context, out chan T, t T) bool {
	for {
		select {
		case out <- t:
			return true
		case <-ctx.Done():
			return false
		default:
		}
		select {
		case <-out:
		default:
		}
	}
}

// Sleep waits d, or less if ctx ends first; it reports whether d passed.
// The control plane's retry loops (here, in the node's agent and in the
// orchestrator) pace themselves with it.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// PutMember registers or updates a member.
func (s *Store) PutMember(ctx context.Context, m Member) error {
	b, _ := json.Marshal(m)
	if _, err := s.cli.Put(ctx, s.Key("members/"+m.ID), string(b)); err != nil {
		return fmt.Errorf("coord: register member %s: %w", m.ID, err)
	}
	return nil
}

// Members returns every registered member, sorted by id.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	resp, err := s.cli.Get(ctx, s.Key("members/"), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("coord: read members: %w", err)
	}
	return decodeMembers(resp.Kvs)
}

// decodeMembers decodes member records, sorted by id.
func decodeMembers(kvs []*mvccpb.KeyValue) ([]Member, error) {
	out := make([]Member, 0, len(kvs))
	for _, kv := range kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("coord: member %s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RecordFirstLSN fills in the first LSN of an epoch the caller leads.
func (s *Store) RecordFirstLSN(ctx context.Context, epoch uint64, leader string, lsn uint64) error {
	b, _ := json.Marshal(EpochStart{Epoch: epoch, Leader: leader, FirstLSN: lsn, At: time.Now()})
	k := s.Key(epochName(epoch))
	// Only for the epoch's own leader: the record exists and names it.
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpGet(k)).Commit()
	if err != nil {
		return fmt.Errorf("coord: epoch %d record: %w", epoch, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("coord: epoch %d has no record", epoch)
	}
	var cur EpochStart
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &cur) != nil || cur.Leader != leader {
		return fmt.Errorf("coord: epoch %d is not led by %s", epoch, leader)
	}
	if _, err := s.cli.Put(ctx, k, string(b)); err != nil {
		return fmt.Errorf("coord: epoch %d record: %w", epoch, err)
	}
	return nil
}

// EpochHistory returns every epoch's record, oldest first.
func (s *Store) EpochHistory(ctx context.Context) ([]EpochStart, error) {
	resp, err := s.cli.Get(ctx, s.Key("epochs/"), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("coord: read epoch history: %w", err)
	}
	var out []EpochStart
	for _, kv := range resp.Kvs {
		var e EpochStart
		if json.Unmarshal(kv.Value, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// AddEvent records an event on its own (SetTopology records the event of a
// topology change with it); an event with the At of one already recorded
// replaces it (the promotion time, filled in afterwards).
func (s *Store) AddEvent(ctx context.Context, ev Event) error {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	b, _ := json.Marshal(ev)
	if _, err := s.cli.Put(ctx, s.Key(fmt.Sprintf("events/%020d", ev.At.UnixNano())), string(b)); err != nil {
		return fmt.Errorf("coord: record event: %w", err)
	}
	return nil
}

// Events returns the last n events, oldest first.
func (s *Store) Events(ctx context.Context, n int) ([]Event, error) {
	resp, err := s.cli.Get(ctx, s.Key("events/"), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(n)))
	if err != nil {
		return nil, fmt.Errorf("coord: read events: %w", err)
	}
	out := make([]Event, 0, len(resp.Kvs))
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		var e Event
		if json.Unmarshal(resp.Kvs[i].Value, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// ParseEndpoints splits a comma-separated --etcd value.
func ParseEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			if !strings.Contains(e, "://") {
				e = "http://" + e
			}
			out = append(out, e)
		}
	}
	return out
}

func quietZap() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}
