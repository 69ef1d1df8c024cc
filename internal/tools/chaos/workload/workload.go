// Package workload drives the chaos harness's clients: N concurrent clients,
// each issuing one operation at a time against the cluster, every operation
// recorded in a history.Recorder with its outcome.
//
// Sessions under read policies run beside the plain clients (see
// sessions.go).
//
// Keys are registers ("r:N", SET with values unique in the whole run, GET)
// and counters ("c:N", INCR, GET); a key is never both, and nothing is ever
// deleted, which the checkers rely on. Config.Typed adds hashes, sets,
// lists, transfers and a queue (typed.go). Writes and linearizable reads go to
// the leader; follower reads go to a follower and are marked as such. The
// rate is bounded so that each key's history stays small enough for
// porcupine. Each client's sequence of choices (operation, key, follower)
// comes from a source seeded with (seed, client), so a run is reproducible
// up to timing.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Conn is the part of a go-redis client the workload uses. Clients must be
// made with MaxRetries -1: a retried write would be two writes in the
// history's eyes but one in the record.
type Conn interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// Config describes a workload.
type Config struct {
	// Clients is how many concurrent clients run (each one operation at a
	// time).
	Clients int
	// Registers and Counters are how many keys of each type exist.
	Registers, Counters int
	// Rate bounds the operations per second of all clients together; 0 is
	// unbounded.
	Rate float64
	// MaxOps stops the workload after this many operations; 0 is no limit.
	MaxOps int64
	// OpTimeout bounds one operation; a timed-out operation is Unknown.
	OpTimeout time.Duration
	Seed      uint64
	// Leader takes writes and linearizable reads; Followers serve follower
	// reads (none: no follower reads).
	Leader    int
	Followers []int
	// LeaderOf, if set, says who leads at the moment (the control plane
	// moves the leader): each operation goes to the node it names, and
	// follower reads to one of the other Nodes. Leader and Followers are
	// then unused.
	LeaderOf func() int
	Nodes    []int
	// Policies are the read policies of the sessions, in
	// TANDEM.READPOLICY's syntax ("ryw", "bounded 50", ...); none runs no
	// sessions. SessionsPerPolicy sessions (default 1) run under each,
	// through SessionConns (a client per node; see sessions.go).
	Policies          []string
	SessionsPerPolicy int
	SessionConns      map[int]SessionConn
	// ProxyConn, if set, is a client of tandem proxy: every other session
	// of each policy runs through it instead of on the nodes.
	ProxyConn SessionConn
	// Typed sizes the hashes, sets, lists, transfers and queue (typed.go);
	// the zero value runs registers and counters only.
	Typed TypedConfig
	// Functions makes half of the counters' increments FCALLs of
	// FunctionName (FunctionLibrary, loaded on every node before the run:
	// LoadFunctions), so that a library lost in a failover shows.
	Functions bool
}

// FunctionLibrary is the library the workload's FCALLs call: FunctionName
// increments its one key, as INCR does.
const (
	FunctionLibrary = "#!lua name=chaoslib\nredis.register_function('chaos_incr', function(keys, args) return redis.call('INCR', keys[1]) end)"
	FunctionName    = "chaos_incr"
)

// leader is the node that takes writes now.
func (c Config) leader() int {
	if c.LeaderOf != nil {
		return c.LeaderOf()
	}
	return c.Leader
}

// followers are the nodes that serve follower reads now.
func (c Config) followers() []int {
	if c.LeaderOf == nil {
		return c.Followers
	}
	l := c.LeaderOf()
	var fs []int
	for _, n := range c.Nodes {
		if n != l {
			fs = append(fs, n)
		}
	}
	return fs
}

// Keys returns every register-like key of the workload: registers, then
// counters, then the hashes' fields ("h:N/fM").
func (c Config) Keys() []string {
	var ks []string
	for i := range c.Registers {
		ks = append(ks, "r:"+strconv.Itoa(i))
	}
	for i := range c.Counters {
		ks = append(ks, "c:"+strconv.Itoa(i))
	}
	if c.Typed.Fields > 0 {
		for i := range c.Typed.Hashes {
			for f := range c.Typed.Fields {
				ks = append(ks, fmt.Sprintf("h:%d/f%d", i, f))
			}
		}
	}
	return ks
}

// Run runs the clients until ctx ends or MaxOps operations were issued.
// conns maps a node id to a client for that node.
func Run(ctx context.Context, cfg Config, conns map[int]Conn, rec *history.Recorder) error {
	if cfg.Clients < 1 || cfg.Registers < 1 || cfg.Counters < 1 {
		return fmt.Errorf("workload: need clients, registers and counters, got %+v", cfg)
	}
	if conns[cfg.leader()] == nil {
		return fmt.Errorf("workload: no connection to leader n%d", cfg.leader())
	}
	for _, f := range append(cfg.followers(), cfg.Nodes...) {
		if conns[f] == nil {
			return fmt.Errorf("workload: no connection to follower n%d", f)
		}
	}
	if err := CheckPolicies(cfg.Policies); err != nil {
		return err
	}
	for _, n := range append(append(cfg.followers(), cfg.Nodes...), cfg.leader()) {
		if len(cfg.Policies) > 0 && cfg.SessionConns[n] == nil {
			return fmt.Errorf("workload: no session connection to n%d", n)
		}
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = time.Second
	}
	if err := OpenAccounts(ctx, cfg, conns, rec); err != nil {
		return err
	}
	var issued atomic.Int64
	var wg sync.WaitGroup
	for id := range cfg.Clients {
		c := &client{id: id, cfg: cfg, conns: conns, rec: rec, r: rand.New(rand.NewPCG(cfg.Seed, uint64(id)))}
		wg.Go(func() { c.run(ctx, &issued) })
	}
	if cfg.Typed.Accounts >= 2 {
		wg.Go(func() { audit(ctx, cfg, conns, rec) })
	}
	for i, p := range cfg.sessionPolicies() {
		id := cfg.SessionClient(i)
		s := &session{id: id, policy: p, cfg: cfg, rec: rec, r: rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
			proxy: cfg.ProxyConn != nil && i%max(1, cfg.SessionsPerPolicy) == 1}
		wg.Go(func() { s.run(ctx, &issued) })
	}
	wg.Wait()
	return nil
}

type client struct {
	id    int
	cfg   Config
	conns map[int]Conn
	rec   *history.Recorder
	r     *rand.Rand
	seq   int
}

func (c *client) run(ctx context.Context, issued *atomic.Int64) {
	paced(ctx, c.cfg, issued, func() { c.rec.Add(c.next(ctx)) })
}

// paced calls op at the client's share of cfg.Rate (as fast as it returns
// when Rate is 0) until ctx ends or cfg.MaxOps operations were issued by
// all clients together. Every client, plain or session, gets an equal
// share of the rate; a late tick is dropped by the ticker rather than
// bunched.
func paced(ctx context.Context, cfg Config, issued interface{ Add(int64) int64 }, op func()) {
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(cfg.Clients) / cfg.Rate * float64(time.Second)))
		defer t.Stop()
		tick = t.C
	}
	for {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if cfg.MaxOps > 0 && issued.Add(1) > cfg.MaxOps {
			return
		}
		op()
	}
}

// next chooses and performs one operation. The mix: 30% SET, 20% GET of a
// register from the leader, 15% INCR, 10% GET of a counter from the leader,
// 25% GET from a follower (registers and counters alike); with the typed
// workload on, those take 62% and the typed operations the rest (see
// client.typed).
func (c *client) next(ctx context.Context) history.Op {
	reg := "r:" + strconv.Itoa(c.r.IntN(c.cfg.Registers))
	ctr := "c:" + strconv.Itoa(c.r.IntN(c.cfg.Counters))
	roll := c.r.IntN(100)
	leader, fs := c.cfg.leader(), c.cfg.followers()
	follower := 0
	if len(fs) > 0 {
		follower = fs[c.r.IntN(len(fs))]
	}
	if c.cfg.Typed.on() {
		// The rolls typed leaves go to the mix below, spread over 100.
		if roll < typedShare {
			if op, ok := c.typed(ctx, roll, leader, follower); ok {
				return op
			}
			roll = roll * 100 / typedShare
		} else {
			roll = (roll - typedShare) * 100 / (100 - typedShare)
		}
	}
	switch {
	case roll < 30:
		c.seq++
		return c.write(ctx, leader, reg, fmt.Sprintf("%d.%d", c.id, c.seq))
	case roll < 50:
		return Read(ctx, c.conns, leader, c.id, reg, false, c.cfg.OpTimeout, c.rec)
	case roll < 65:
		if c.cfg.Functions && roll%2 == 0 {
			return FcallIncr(ctx, c.conns, leader, c.id, ctr, c.cfg.OpTimeout, c.rec)
		}
		return Incr(ctx, c.conns, leader, c.id, ctr, c.cfg.OpTimeout, c.rec)
	case roll < 75:
		return Read(ctx, c.conns, leader, c.id, ctr, false, c.cfg.OpTimeout, c.rec)
	}
	key := reg
	if roll >= 90 {
		key = ctr
	}
	if follower == 0 {
		return Read(ctx, c.conns, leader, c.id, key, false, c.cfg.OpTimeout, c.rec)
	}
	return Read(ctx, c.conns, follower, c.id, key, true, c.cfg.OpTimeout, c.rec)
}

func (c *client) write(ctx context.Context, node int, key, value string) history.Op {
	op := history.Op{Client: c.id, Key: key, Kind: history.Write, Value: value, Node: node}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	defer cancel()
	op.Call = c.rec.Now()
	var err error
	if h, f, ok := hashKey(key); ok {
		err = c.conns[node].Do(ctx, "HSET", h, f, value).Err()
	} else {
		err = c.conns[node].Do(ctx, "SET", key, value).Err()
	}
	op.Return = c.rec.Now()
	op.Outcome, op.Err = Classify(err)
	return op
}

// Incr performs one INCR of key on node and returns it as an operation
// (not yet recorded).
func Incr(ctx context.Context, conns map[int]Conn, node, client int, key string, timeout time.Duration, rec *history.Recorder) history.Op {
	op := history.Op{Client: client, Key: key, Kind: history.Incr, Node: node}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op.Call = rec.Now()
	n, err := conns[node].Do(ctx, "INCR", key).Int64()
	op.Return = rec.Now()
	op.Outcome, op.Err = Classify(err)
	if op.Outcome == history.OK {
		op.N = n
	}
	return op
}

// FcallIncr performs one FCALL of FunctionName on key (an INCR) on node
// and returns it as an INCR operation (not yet recorded).
func FcallIncr(ctx context.Context, conns map[int]Conn, node, client int, key string, timeout time.Duration, rec *history.Recorder) history.Op {
	op := history.Op{Client: client, Key: key, Kind: history.Incr, Node: node}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op.Call = rec.Now()
	n, err := conns[node].Do(ctx, "FCALL", FunctionName, "1", key).Int64()
	op.Return = rec.Now()
	op.Outcome, op.Err = Classify(err)
	if op.Outcome == history.OK {
		op.N = n
	}
	return op
}

// Read performs one GET of key on node (HGET of a hash field "h:N/fM")
// and returns it as an operation (not yet recorded).
func Read(ctx context.Context, conns map[int]Conn, node, client int, key string, follower bool, timeout time.Duration, rec *history.Recorder) history.Op {
	op := history.Op{Client: client, Key: key, Kind: history.Read, Node: node, Follower: follower}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op.Call = rec.Now()
	args := []any{"GET", key}
	if h, f, ok := hashKey(key); ok {
		args = []any{"HGET", h, f}
	}
	v, err := conns[node].Do(ctx, args...).Text()
	op.Return = rec.Now()
	if errors.Is(err, redis.Nil) {
		op.Outcome = history.OK
		return op
	}
	op.Outcome, op.Err = Classify(err)
	if op.Outcome == history.OK {
		op.Found, op.Result = true, v
	}
	return op
}

// FinalReads reads every key from the leader, retrying each until it
// succeeds or ctx ends, and records the reads marked Final (client id
// cfg.Clients, after the workload's own clients). It returns an error
// naming the keys it could not read.
func FinalReads(ctx context.Context, cfg Config, conns map[int]Conn, rec *history.Recorder) error {
	timeout := cfg.OpTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	var missing []string
	for _, key := range cfg.Keys() {
		for {
			op := Read(ctx, conns, cfg.leader(), cfg.Clients, key, false, timeout, rec)
			op.Final = true
			rec.Add(op)
			if op.Outcome == history.OK {
				break
			}
			if ctx.Err() != nil {
				missing = append(missing, key)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	missing = append(missing, finalTyped(ctx, cfg, conns, rec)...)
	if len(missing) > 0 {
		return fmt.Errorf("workload: final read of %d keys failed (first %s)", len(missing), missing[0])
	}
	return nil
}

// notExecuted are the Redis error codes that mean the command was refused
// before it could take effect. Any other error reply may follow a write
// that did take effect (a commit wait that failed), so it is Unknown.
// UNBLOCKED answers a blocked pop whose leader stepped down (or CLIENT
// UNBLOCK) while it waited between pops, with no pop of its own under
// way (package node, blocking.go); a pop cut off by the step-down is
// answered with another error.
var notExecuted = []string{"UNBLOCKED", "READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "WRONGTYPE", "NOSCRIPT", "ERR wrong number", "ERR unknown command", "ERR value is not an integer", "ERR syntax", FunctionNotFound}

// FunctionNotFound is the start of FCALL's error for a function no library
// on the node registers.
const FunctionNotFound = "ERR Function not found"

// Classify maps an operation's error to its outcome (see package history):
// nil is OK; a refused connection (the command was never sent) or an error
// reply from notExecuted is Failed; everything else, above all timeouts
// and dropped connections, is Unknown.
func Classify(err error) (history.Outcome, string) {
	if err == nil || errors.Is(err, redis.Nil) {
		return history.OK, ""
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
		msg := rerr.Error()
		for _, p := range notExecuted {
			if strings.HasPrefix(msg, p) {
				return history.Failed, msg
			}
		}
		return history.Unknown, msg
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Op == "dial" {
		return history.Failed, err.Error()
	}
	return history.Unknown, err.Error()
}
