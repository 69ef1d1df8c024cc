package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// store is an in-memory, linearizable fake of a cluster: one map, every
// node reads it (followers are never stale). Hooks break it on purpose.
type store struct {
	mu   sync.Mutex
	data map[string]string
	// staleGet, if set, makes the leader answer GET with the value before
	// the last SET of the key.
	staleGet bool
	prev     map[string]string
	// lists and sets hold the typed workload's collections (a hash
	// field "h|f" is in data); dupPop makes every other BRPOP leave its
	// job in the queue, lostPop makes every other BRPOP that takes a job
	// answer nil (the timeout) all the same.
	lists   map[string][]string
	sets    map[string]map[string]bool
	dupPop  bool
	lostPop bool
	pops    int
}

func newStore() *store {
	return &store{data: map[string]string{}, prev: map[string]string{}, lists: map[string][]string{}, sets: map[string]map[string]bool{}}
}

// conn is one node's connection to the store.
type conn struct {
	s      *store
	leader bool
}

func (c conn) Do(ctx context.Context, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	key := args[1].(string)
	switch args[0] {
	case "SET":
		if !c.leader {
			cmd.SetErr(redisErr("READONLY You can't write against a read only replica."))
			break
		}
		s.prev[key] = s.data[key]
		s.data[key] = args[2].(string)
		cmd.SetVal("OK")
	case "INCR":
		n, _ := strconv.ParseInt(s.data[key], 10, 64)
		s.data[key] = strconv.FormatInt(n+1, 10)
		cmd.SetVal(n + 1)
	case "GET":
		v, ok := s.data[key]
		if c.leader && s.staleGet && s.prev[key] != "" {
			v = s.prev[key]
		}
		if !ok {
			cmd.SetErr(redis.Nil)
			break
		}
		cmd.SetVal(v)
	case "HSET":
		s.data[key+"|"+args[2].(string)] = args[3].(string)
		cmd.SetVal(int64(1))
	case "HGET":
		v, ok := s.data[key+"|"+args[2].(string)]
		if !ok {
			cmd.SetErr(redis.Nil)
			break
		}
		cmd.SetVal(v)
	case "SADD":
		if s.sets[key] == nil {
			s.sets[key] = map[string]bool{}
		}
		s.sets[key][args[2].(string)] = true
		cmd.SetVal(int64(1))
	case "SMEMBERS":
		var ms []any
		for m := range s.sets[key] {
			ms = append(ms, m)
		}
		cmd.SetVal(ms)
	case "RPUSH":
		s.lists[key] = append(s.lists[key], args[2].(string))
		cmd.SetVal(int64(len(s.lists[key])))
	case "LPUSH":
		s.lists[key] = append([]string{args[2].(string)}, s.lists[key]...)
		cmd.SetVal(int64(len(s.lists[key])))
	case "BRPOP":
		// The store never blocks: an empty queue answers the timeout's
		// nil at once.
		if _, err := strconv.ParseFloat(args[2].(string), 64); err != nil || args[2] == "0.000" {
			cmd.SetErr(fmt.Errorf("BRPOP timeout %v: want a positive number of seconds", args[2]))
			break
		}
		l := s.lists[key]
		if len(l) == 0 {
			cmd.SetErr(redis.Nil)
			break
		}
		s.pops++
		cmd.SetVal([]any{key, l[len(l)-1]})
		if s.lostPop && s.pops%2 == 0 {
			cmd = redis.NewCmd(ctx, args...)
			cmd.SetErr(redis.Nil)
		}
		if !s.dupPop || s.pops%2 == 0 {
			s.lists[key] = l[:len(l)-1]
		}
	case "LRANGE":
		var es []any
		for _, e := range s.lists[key] {
			es = append(es, e)
		}
		cmd.SetVal(es)
	default:
		cmd.SetErr(fmt.Errorf("unexpected %v", args))
	}
	return cmd
}

type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

func conns(s *store) map[int]Conn {
	return map[int]Conn{1: conn{s, true}, 2: conn{s, false}, 3: conn{s, false}}
}

func testConfig() Config {
	return Config{Clients: 4, Registers: 5, Counters: 3, MaxOps: 2000, OpTimeout: time.Second, Seed: 7, Leader: 1, Followers: []int{2, 3}}
}

func run(t *testing.T, s *store, cfg Config) history.History {
	t.Helper()
	rec := history.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, cfg, conns(s), rec); err != nil {
		t.Fatal(err)
	}
	if err := FinalReads(ctx, cfg, conns(s), rec); err != nil {
		t.Fatal(err)
	}
	return rec.History(cfg.Seed)
}

func TestWorkloadOnCorrectStorePasses(t *testing.T) {
	cfg := testConfig()
	h := run(t, newStore(), cfg)
	if n := len(h.Ops); n != int(cfg.MaxOps)+len(cfg.Keys()) {
		t.Fatalf("%d ops, want %d + %d final reads", n, cfg.MaxOps, len(cfg.Keys()))
	}
	count := map[string]int{}
	for _, o := range h.Ops {
		count[fmt.Sprintf("%s follower=%v", o.Kind, o.Follower)]++
		if o.Outcome != history.OK {
			t.Fatalf("op failed: %s", o)
		}
	}
	t.Logf("mix: %v", count)
	for _, k := range []string{"write follower=false", "read follower=false", "incr follower=false", "read follower=true"} {
		if count[k] == 0 {
			t.Fatalf("no %s operations", k)
		}
	}
	vs := checker.Linearizable(h.Ops, 10*time.Second, "")
	vs = append(vs, checker.FollowerReads(h.Ops)...)
	dv, lost := checker.Durability(h.Ops)
	vs = append(vs, dv...)
	if len(vs) > 0 || lost > 0 {
		t.Fatalf("violations on a correct store: %v (lost %d)", vs, lost)
	}
}

// typedConfig runs the typed workload without transfers (the fake has no
// transactions; the end-to-end runs have them).
func typedConfig() Config {
	cfg := testConfig()
	cfg.Typed = TypedConfig{Hashes: 2, Fields: 2, Sets: 2, Lists: 2, Queue: true}
	return cfg
}

func TestTypedWorkloadOnCorrectStorePasses(t *testing.T) {
	cfg := typedConfig()
	h := run(t, newStore(), cfg)
	count := map[history.Kind]int{}
	hashOps := 0
	for _, o := range h.Ops {
		count[o.Kind]++
		if _, _, ok := hashKey(o.Key); ok {
			hashOps++
		}
		if o.Outcome != history.OK {
			t.Fatalf("op failed: %s", o)
		}
	}
	t.Logf("mix: %v, %d on hash fields", count, hashOps)
	for _, k := range []history.Kind{history.SAdd, history.SRead, history.RPush, history.LRead, history.Enqueue, history.Dequeue, history.QueueRead} {
		if count[k] == 0 {
			t.Fatalf("no %s operations", k)
		}
	}
	// LPUSH and RPUSH are 3% and 4%: a part that is off (the transfers)
	// must give its share to the registers, not to the next part.
	if count[history.Enqueue] > 2*count[history.RPush] {
		t.Fatalf("%d LPUSH for %d RPUSH: the transfers' share went to the queue", count[history.Enqueue], count[history.RPush])
	}
	if hashOps == 0 || count[history.Transfer] != 0 {
		t.Fatalf("%d hash field operations, %d transfers (no accounts)", hashOps, count[history.Transfer])
	}
	vs := checker.Linearizable(h.Ops, 10*time.Second, "")
	dv, lost := checker.Durability(h.Ops)
	vs = append(vs, dv...)
	vs = append(vs, checker.Typed(h.Ops, true)...)
	if len(vs) > 0 || lost > 0 {
		t.Fatalf("violations on a correct store: %v (lost %d)", vs, lost)
	}
}

func TestTypedWorkloadDuplicatePopIsCaught(t *testing.T) {
	s := newStore()
	s.dupPop = true
	h := run(t, s, typedConfig())
	vs := checker.Queue(h.Ops, true)
	if len(vs) == 0 || vs[0].Kind != checker.DuplicatePop {
		t.Fatalf("a queue that pops jobs twice passed: %v", vs)
	}
}

// TestTypedWorkloadLostBlockedPopIsCaught: a BRPOP that takes a job but
// answers the timeout's nil loses the job, and the check must see it (a
// nil reply is a definite "took nothing", not an unknown outcome).
func TestTypedWorkloadLostBlockedPopIsCaught(t *testing.T) {
	s := newStore()
	s.lostPop = true
	h := run(t, s, typedConfig())
	vs := checker.Queue(h.Ops, true)
	if len(vs) == 0 || vs[0].Kind != checker.LostJob {
		t.Fatalf("a queue whose blocked pops lose jobs passed: %v", vs)
	}
}

func TestBlockTimeout(t *testing.T) {
	for _, tc := range []struct {
		op   time.Duration
		want string
	}{{time.Second, "0.250"}, {0, "0.250"}, {2 * time.Millisecond, "0.001"}, {10 * time.Second, "2.500"}} {
		if got := blockTimeout(Config{OpTimeout: tc.op}); got != tc.want {
			t.Errorf("blockTimeout(%v) = %s, want %s", tc.op, got, tc.want)
		}
	}
}

func TestDefaultTypedBoundsCollections(t *testing.T) {
	for _, d := range []time.Duration{15 * time.Second, time.Minute, 16 * time.Minute} {
		tc := DefaultTyped(30, 200, d)
		perKey := 200 * d.Seconds() * 4 / 100 / float64(tc.Sets)
		if perKey > 250 || tc.Sets != tc.Lists || tc.Accounts < 2 || !tc.Queue || tc.Hashes < 1 {
			t.Fatalf("%v: %+v, %.0f elements per set", d, tc, perKey)
		}
	}
	cfg := typedConfig()
	keys := cfg.Keys()
	if len(keys) != cfg.Registers+cfg.Counters+4 || keys[len(keys)-1] != "h:1/f1" {
		t.Fatalf("keys %v", keys)
	}
}

func TestWorkloadStaleLeaderIsCaught(t *testing.T) {
	s := newStore()
	s.staleGet = true
	h := run(t, s, testConfig())
	vs := checker.Linearizable(h.Ops, 10*time.Second, t.TempDir())
	if len(vs) == 0 {
		t.Fatal("stale leader reads not reported")
	}
	t.Logf("%d keys reported, first: %s", len(vs), vs[0])
}

func TestWorkloadDeterministicChoices(t *testing.T) {
	cfg := testConfig()
	cfg.Clients, cfg.MaxOps = 1, 300
	ops := func() []string {
		var out []string
		for _, o := range run(t, newStore(), cfg).Ops {
			out = append(out, fmt.Sprintf("%s %s %s n%d", o.Kind, o.Key, o.Value, o.Node))
		}
		return out
	}
	a, b := ops(), ops()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("same seed, different operations")
	}
	cfg.Seed++
	if c := ops(); fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds, same operations")
	}
}

// TestWorkloadRateAndStop runs on synctest's fake clock (the store is in
// memory), so the rate and the stop are exact, not a matter of machine
// speed.
func TestWorkloadRateAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxOps, cfg.Rate = 0, 200
		rec := history.NewRecorder()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := Run(ctx, cfg, conns(newStore()), rec); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != 500*time.Millisecond {
			t.Fatalf("Run returned %v after it started, want exactly its 500ms context", el)
		}
		// 4 clients at 50/s each tick at 20ms, 40ms, ..., 500ms: 25 ticks
		// each, the last racing the context's end.
		if n := len(rec.History(0).Ops); n < 4*24 || n > 4*25 {
			t.Fatalf("%d ops at 200/s in 0.5s, want 96..100", n)
		}
	})
}

func TestRunValidates(t *testing.T) {
	cfg := testConfig()
	cfg.Followers = []int{9}
	if err := Run(context.Background(), cfg, conns(newStore()), history.NewRecorder()); err == nil {
		t.Fatal("missing follower connection accepted")
	}
}

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		err  error
		want history.Outcome
	}{
		{nil, history.OK},
		{redis.Nil, history.OK},
		{redisErr("READONLY You can't write against a read only replica."), history.Failed},
		{redisErr("LOADING tandem is seeding"), history.Failed},
		{redisErr("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"), history.Failed},
		{redisErr("ERR wrong number of arguments for 'set' command"), history.Failed},
		{redisErr("ERR commit timed out"), history.Unknown},
		{refused, history.Failed},
		{fmt.Errorf("wrapped: %w", refused), history.Failed},
		{reset, history.Unknown},
		{io.EOF, history.Unknown},
		{context.DeadlineExceeded, history.Unknown},
		{errors.New("i/o timeout"), history.Unknown},
	}
	for _, tt := range tests {
		if got, _ := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestClassifyRealSockets checks the classification against go-redis's own
// errors: a refused dial is Failed, a server that drops the connection
// mid-command is Unknown.
func TestClassifyRealSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the command, then drop the connection without answering.
			go func() { buf := make([]byte, 1024); c.Read(buf); c.Close() }()
		}
	}()
	ctx := context.Background()
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	defer cl.Close()
	if got, msg := Classify(cl.Do(ctx, "SET", "k", "v").Err()); got != history.Unknown {
		t.Fatalf("dropped connection: %s (%s), want unknown", got, msg)
	}
	ln.Close()
	cl2 := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	defer cl2.Close()
	if got, msg := Classify(cl2.Do(ctx, "SET", "k", "v").Err()); got != history.Failed {
		t.Fatalf("refused connection: %s (%s), want failed", got, msg)
	}
}

// Under the control plane the leader moves: every operation goes to the
// node LeaderOf names at its start, follower reads to the others.
func TestWorkloadFollowsTheLeader(t *testing.T) {
	s := newStore()
	var mu sync.Mutex
	leader := 2
	cs := map[int]Conn{1: conn{s, false}, 2: conn{s, true}, 3: conn{s, false}}
	cfg := testConfig()
	cfg.Leader, cfg.Followers = 0, nil
	cfg.Nodes = []int{1, 2, 3}
	cfg.MaxOps = 400
	calls := 0
	cfg.LeaderOf = func() int {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 400 { // a failover to n3 half-way
			leader = 3
			cs[2], cs[3] = conn{s, false}, conn{s, true}
		}
		return leader
	}
	rec := history.NewRecorder()
	cfg.Clients = 1 // one client: the map of conns is read by one goroutine
	if err := Run(context.Background(), cfg, cs, rec); err != nil {
		t.Fatal(err)
	}
	h := rec.History(0)
	seen := map[string]int{}
	for _, o := range h.Ops {
		if o.Outcome != history.OK {
			t.Fatalf("op sent to a node that does not lead: %s", o)
		}
		seen[fmt.Sprintf("n%d follower=%v", o.Node, o.Follower)]++
	}
	if seen["n2 follower=false"] == 0 || seen["n3 follower=false"] == 0 || seen["n2 follower=true"] == 0 || seen["n1 follower=true"] == 0 {
		t.Fatalf("operations per node: %v", seen)
	}
	t.Logf("operations per node: %v", seen)
}
