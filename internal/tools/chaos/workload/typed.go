package workload

// The typed part of the workload: collections, transfers and a queue,
// beside the registers and counters (Config.Typed turns it on).
//
//   - Hashes "h:N": HSET of values unique in the run, HGET. Each field is
//     a register and is recorded as one: Write and Read of the key
//     "h:N/fM", so every register check models it unchanged.
//   - Sets "s:N": SADD of members unique in the run, SMEMBERS (a grow-only
//     set; checker.Sets).
//   - Lists "l:N": RPUSH of values unique in the run, LRANGE 0 -1 (an
//     append-only sequence; checker.Lists).
//   - Transfers between the accounts "a:N", opened with Balance each by
//     one MSETNX before the clients start: MULTI, DECRBY from n, INCRBY to
//     n, EXEC; and MULTI of a GET of every account, EXEC, on the leader or
//     a follower, and on every node every 250 ms (the auditor). The sum
//     is invariant (checker.Transfers).
//   - A queue "q": producers LPUSH unique jobs, consumers BRPOP them with
//     a timeout of a quarter of the operation's (blockTimeout), as many
//     pops as pushes, so the queue is often empty and consumers block
//     and are woken by pushes. Each job is popped at most once and none
//     is lost (checker.Queue). A BRPOP's outcome is what its reply says:
//     nil (the timeout) took nothing, "UNBLOCKED" (its leader stepped
//     down while it waited between pops) took nothing and is Failed;
//     a lost reply or any other error may have taken a job and is
//     Unknown, which the loss check allows for.
//
// Nothing is ever deleted (the queue shrinks only by BRPOP), which the
// checks rely on as they do for the registers.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Balance is each account's opening balance.
const Balance = 100

// QueueKey is the queue's key.
const QueueKey = "q"

// AccountsKey names the accounts as a group in the history (the key of
// Transfer, Balances and Accounts operations).
const AccountsKey = "accounts"

// TypedConfig sizes the typed workload; the zero value runs none of it.
type TypedConfig struct {
	// Hashes of Fields fields each, Sets and Lists are how many keys of
	// each type exist.
	Hashes, Fields, Sets, Lists int
	// Accounts is how many accounts the transfers move money between
	// (fewer than 2: no transfers).
	Accounts int
	// Queue runs the producers and consumers of the queue.
	Queue bool
}

// on reports whether any typed operation runs.
func (t TypedConfig) on() bool {
	return t.Hashes > 0 && t.Fields > 0 || t.Sets > 0 || t.Lists > 0 || t.Accounts >= 2 || t.Queue
}

// DefaultTyped sizes the typed workload for a run of d at rate operations
// a second whose registers number regs: a hash of 4 fields per 8
// registers, 8 accounts, the queue, and as many sets and lists as keep
// each under about 250 elements by the end (at least one per 16
// registers), since every read returns the whole collection: a 16-minute
// run's history stays tens of megabytes and its check linear in it.
func DefaultTyped(regs int, rate float64, d time.Duration) TypedConfig {
	const perKey = 250
	adds := rate * d.Seconds() * 4 / 100 // SADD (and RPUSH) are 4% of operations
	colls := max(1, regs/16, int(adds/perKey)+1)
	return TypedConfig{Hashes: max(1, regs/8), Fields: 4, Sets: colls, Lists: colls, Accounts: 8, Queue: true}
}

// hashKey splits "h:N/fM" into the hash and the field; ok is false for
// any other key.
func hashKey(key string) (hash, field string, ok bool) {
	if !strings.HasPrefix(key, "h:") {
		return "", "", false
	}
	return strings.Cut(key, "/")
}

func account(i int) string { return "a:" + strconv.Itoa(i) }

// typed chooses and performs one typed operation; roll is uniform in
// [0, typedShare). The mix (of typedShare): 6 HSET, 4 HGET, 4 SADD,
// 3 SMEMBERS, 4 RPUSH, 3 LRANGE, 4 transfers, 4 balance reads (half on a
// follower), 3 LPUSH, 3 BRPOP (as many pops as pushes: consumers often
// find the queue empty and block until a push wakes them); ok is false
// when the part rolled is off, and the roll goes to the registers and
// counters.
func (c *client) typed(ctx context.Context, roll int, leader, follower int) (history.Op, bool) {
	t := c.cfg.Typed
	switch {
	case roll < 10:
		if t.Hashes == 0 || t.Fields == 0 {
			break
		}
		key := fmt.Sprintf("h:%d/f%d", c.r.IntN(t.Hashes), c.r.IntN(t.Fields))
		if roll < 6 {
			c.seq++
			return c.write(ctx, leader, key, fmt.Sprintf("%d.%d", c.id, c.seq)), true
		}
		return Read(ctx, c.conns, leader, c.id, key, false, c.cfg.OpTimeout, c.rec), true
	case roll < 17:
		if t.Sets == 0 {
			break
		}
		key := "s:" + strconv.Itoa(c.r.IntN(t.Sets))
		if roll < 14 {
			c.seq++
			return c.do(ctx, history.Op{Key: key, Kind: history.SAdd, Value: fmt.Sprintf("%d.%d", c.id, c.seq), Node: leader}), true
		}
		return c.do(ctx, history.Op{Key: key, Kind: history.SRead, Node: leader}), true
	case roll < 24:
		if t.Lists == 0 {
			break
		}
		key := "l:" + strconv.Itoa(c.r.IntN(t.Lists))
		if roll < 21 {
			c.seq++
			return c.do(ctx, history.Op{Key: key, Kind: history.RPush, Value: fmt.Sprintf("%d.%d", c.id, c.seq), Node: leader}), true
		}
		return c.do(ctx, history.Op{Key: key, Kind: history.LRead, Node: leader}), true
	case roll < 32:
		if t.Accounts < 2 {
			break
		}
		if roll < 28 {
			from := c.r.IntN(t.Accounts)
			to := (from + 1 + c.r.IntN(t.Accounts-1)) % t.Accounts
			return c.do(ctx, history.Op{Key: AccountsKey, Kind: history.Transfer, Value: account(from) + "->" + account(to), N: 1 + c.r.Int64N(20), Node: leader}), true
		}
		node, fol := leader, false
		if roll >= 30 && follower != 0 {
			node, fol = follower, true
		}
		return Do(ctx, c.conns, c.cfg, history.Op{Client: c.id, Key: AccountsKey, Kind: history.Balances, Node: node, Follower: fol}, c.rec), true
	case roll < 38:
		if !t.Queue {
			break
		}
		if roll < 35 {
			c.seq++
			return c.do(ctx, history.Op{Key: QueueKey, Kind: history.Enqueue, Value: fmt.Sprintf("%d.%d", c.id, c.seq), Node: leader}), true
		}
		return c.do(ctx, history.Op{Key: QueueKey, Kind: history.Dequeue, Node: leader}), true
	}
	return history.Op{}, false
}

// typedShare is the typed operations' share of every 100.
const typedShare = 38

func (c *client) do(ctx context.Context, op history.Op) history.Op {
	op.Client = c.id
	return Do(ctx, c.conns, c.cfg, op, c.rec)
}

// Do performs one typed operation (op's Kind, Key, Value, N and Node say
// which) and returns it with its outcome and output (not yet recorded).
func Do(ctx context.Context, conns map[int]Conn, cfg Config, op history.Op, rec *history.Recorder) history.Op {
	timeout := cfg.OpTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn := conns[op.Node]
	op.Call = rec.Now()
	var err error
	switch op.Kind {
	case history.SAdd:
		err = conn.Do(ctx, "SADD", op.Key, op.Value).Err()
	case history.RPush:
		err = conn.Do(ctx, "RPUSH", op.Key, op.Value).Err()
	case history.Enqueue:
		err = conn.Do(ctx, "LPUSH", op.Key, op.Value).Err()
	case history.SRead:
		op.Items, err = conn.Do(ctx, "SMEMBERS", op.Key).StringSlice()
		slices.Sort(op.Items)
	case history.LRead, history.QueueRead:
		op.Items, err = conn.Do(ctx, "LRANGE", op.Key, 0, -1).StringSlice()
	case history.Dequeue:
		var kv []string
		kv, err = conn.Do(ctx, "BRPOP", op.Key, blockTimeout(cfg)).StringSlice()
		if err == nil && len(kv) != 2 {
			err = fmt.Errorf("workload: BRPOP answered %q, want [key job]", kv)
		}
		if op.Found = err == nil; op.Found {
			op.Result = kv[1]
		}
	case history.Transfer:
		from, to, _ := strings.Cut(op.Value, "->")
		err = exec(ctx, conn, [][]any{{"DECRBY", from, op.N}, {"INCRBY", to, op.N}}, nil)
	case history.Balances:
		cmds := make([][]any, cfg.Typed.Accounts)
		for i := range cmds {
			cmds[i] = []any{"GET", account(i)}
		}
		op.Items = make([]string, len(cmds))
		err = exec(ctx, conn, cmds, op.Items)
		if err != nil {
			op.Items = nil
		}
	case history.Accounts:
		args := []any{"MSETNX"}
		for i := range cfg.Typed.Accounts {
			args = append(args, account(i), Balance)
		}
		op.N = int64(Balance * cfg.Typed.Accounts)
		err = conn.Do(ctx, args...).Err()
	default:
		panic("workload: Do of " + string(op.Kind))
	}
	op.Return = rec.Now()
	op.Outcome, op.Err = Classify(err)
	return op
}

// txConn is the part of a go-redis client that runs a transaction.
type txConn interface {
	TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// exec runs cmds as MULTI ... EXEC on one connection of conn's pool and,
// if into is not nil, stores each reply's text in it ("" for nil). An
// EXEC that answers nil (it cannot: nothing is watched) is an error.
func exec(ctx context.Context, conn Conn, cmds [][]any, into []string) error {
	cl, ok := conn.(txConn)
	if !ok {
		return fmt.Errorf("workload: transactions need a client with TxPipelined, have %T", conn)
	}
	res, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range cmds {
			p.Do(ctx, c...)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if len(res) != len(cmds) {
		return fmt.Errorf("workload: EXEC answered %d replies to %d commands", len(res), len(cmds))
	}
	for i, r := range res {
		v, err := r.(*redis.Cmd).Result()
		if errors.Is(err, redis.Nil) {
			continue // an absent key reads as ""
		}
		if err != nil {
			return err
		}
		if into != nil {
			into[i] = fmt.Sprint(v)
		}
	}
	return nil
}

// blockTimeout is a BRPOP's timeout argument (in seconds, as Redis takes
// it): a quarter of the operation's timeout, so that the server answers
// nil well before the client gives up and a consumer that found nothing
// is a definite outcome, not an unknown one. Never 0, which blocks
// forever.
func blockTimeout(cfg Config) string {
	t := max(cfg.OpTimeout/4, time.Millisecond)
	if cfg.OpTimeout <= 0 {
		t = time.Second / 4
	}
	return strconv.FormatFloat(t.Seconds(), 'f', 3, 64)
}

// Dequeue performs one BRPOP of the queue on node as client and returns
// it (not yet recorded).
func Dequeue(ctx context.Context, conns map[int]Conn, cfg Config, node, client int, rec *history.Recorder) history.Op {
	return Do(ctx, conns, cfg, history.Op{Client: client, Key: QueueKey, Kind: history.Dequeue, Node: node}, rec)
}

// OpenAccounts opens the accounts on the leader before the clients start
// (MSETNX, so a retry after an unknown outcome changes nothing), retrying
// until it succeeds or ctx ends, and records each attempt. None: a
// workload without transfers.
func OpenAccounts(ctx context.Context, cfg Config, conns map[int]Conn, rec *history.Recorder) error {
	if cfg.Typed.Accounts < 2 {
		return nil
	}
	for {
		op := Do(ctx, conns, cfg, history.Op{Client: cfg.Clients, Key: AccountsKey, Kind: history.Accounts, Node: cfg.leader()}, rec)
		rec.Add(op)
		if op.Outcome == history.OK {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("workload: open the accounts: %s", op.Err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auditEvery is how often the auditor reads the balances on every node.
const auditEvery = 250 * time.Millisecond

// audit reads the balances on every node every auditEvery until ctx ends
// (client id cfg.Clients, the final reader's, which runs only after), so
// that the sum is checked on each replica during and right after every
// fault, not only on the ones the clients' reads happen to reach.
func audit(ctx context.Context, cfg Config, conns map[int]Conn, rec *history.Recorder) {
	nodes := cfg.Nodes
	if len(nodes) == 0 {
		nodes = append([]int{cfg.leader()}, cfg.followers()...)
	}
	t := time.NewTicker(auditEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		leader := cfg.leader()
		for _, n := range nodes {
			if ctx.Err() != nil {
				return
			}
			rec.Add(Do(ctx, conns, cfg, history.Op{Client: cfg.Clients, Key: AccountsKey, Kind: history.Balances, Node: n, Follower: n != leader}, rec))
		}
	}
}

// finalTyped reads every set and list and the queue from the leader, as
// FinalReads does the registers, and returns the keys it could not read.
func finalTyped(ctx context.Context, cfg Config, conns map[int]Conn, rec *history.Recorder) []string {
	var ops []history.Op
	for i := range cfg.Typed.Sets {
		ops = append(ops, history.Op{Key: "s:" + strconv.Itoa(i), Kind: history.SRead})
	}
	for i := range cfg.Typed.Lists {
		ops = append(ops, history.Op{Key: "l:" + strconv.Itoa(i), Kind: history.LRead})
	}
	if cfg.Typed.Queue {
		ops = append(ops, history.Op{Key: QueueKey, Kind: history.QueueRead})
	}
	var missing []string
	for _, op := range ops {
		op.Client, op.Final = cfg.Clients, true
		if !retry(ctx, func() history.Op { op.Node = cfg.leader(); return Do(ctx, conns, cfg, op, rec) }, rec) {
			missing = append(missing, op.Key)
		}
	}
	return missing
}

// FinalBalances reads every account on each node (a transaction of GETs,
// served by the node itself), recorded Final with the node, so that the
// transfer check sees the sum on every replica after the faults. It
// returns an error naming the nodes that never answered.
func FinalBalances(ctx context.Context, cfg Config, conns map[int]Conn, nodes []int, rec *history.Recorder) error {
	if cfg.Typed.Accounts < 2 {
		return nil
	}
	var missing []int
	for _, n := range nodes {
		op := history.Op{Client: cfg.Clients, Key: AccountsKey, Kind: history.Balances, Node: n, Final: true}
		if !retry(ctx, func() history.Op { return Do(ctx, conns, cfg, op, rec) }, rec) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("workload: final balances not read on nodes %v", missing)
	}
	return nil
}

// retry records attempts of do until one is OK (true) or ctx ends.
func retry(ctx context.Context, do func() history.Op, rec *history.Recorder) bool {
	for {
		op := do()
		rec.Add(op)
		if op.Outcome == history.OK {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
