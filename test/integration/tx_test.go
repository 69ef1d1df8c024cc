package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/testutil"
)

// Transfers between accounts, each one MULTI/EXEC (DECRBY, INCRBY and a
// marker key), while the leader is killed with SIGKILL: every
// transaction is all or nothing (the sum of the balances holds on every
// node, in every reader's transaction of reads during the run and after
// it) and, under sync commit, every acknowledged EXEC is on every node.

const (
	txAccounts = 8
	txBalance  = 1000
)

func account(i int) string { return fmt.Sprintf("acct:{t}:%d", i) }

// transfers is the transfer load and its readers.
type transfers struct {
	c       *cluster.Cluster
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	acks    []ack // markers of acknowledged EXECs
	reads   atomic.Int64
	badSums atomic.Int64 // reader transactions that saw a sum off
	badSum  atomic.Int64 // the last such sum
}

func startTransfers(t *testing.T, c *cluster.Cluster, writers, readers int) *transfers {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &transfers{c: c, cancel: cancel}
	leaders := watchLeader(ctx, c)
	for w := range writers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			clients := map[int]*redis.Client{}
			defer func() {
				for _, cl := range clients {
					cl.Close()
				}
			}()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil; i++ {
				id, changed := leaders.get()
				if id == 0 {
					leaders.await(ctx, changed)
					continue
				}
				cl := clients[id]
				if cl == nil {
					cl = redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, Protocol: 2, MaxRetries: -1,
						DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: 250 * time.Millisecond, PoolSize: 1})
					clients[id] = cl
				}
				from := rng.IntN(txAccounts)
				to := (from + 1 + rng.IntN(txAccounts-1)) % txAccounts
				amount := 1 + rng.Int64N(50)
				marker := fmt.Sprintf("tx:{t}:%d:%d", w, i)
				_, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.DecrBy(ctx, account(from), amount)
					p.IncrBy(ctx, account(to), amount)
					p.Set(ctx, marker, "1", 0)
					return nil
				})
				if err == nil {
					tr.mu.Lock()
					tr.acks = append(tr.acks, ack{key: marker, at: time.Now(), leader: id})
					tr.mu.Unlock()
				} else {
					leaders.await(ctx, changed)
				}
			}
		}()
	}
	for r := range readers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			nodes := c.Nodes()
			clients := make([]*redis.Client, len(nodes))
			for i, n := range nodes {
				clients[i] = redis.NewClient(&redis.Options{Addr: n.RESPAddr, Protocol: 2, MaxRetries: -1,
					DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, PoolSize: 1})
				defer clients[i].Close()
			}
			for i := r; ctx.Err() == nil; i++ {
				sum, ok := sumOf(ctx, clients[i%len(clients)])
				if !ok {
					// A node down or loading: back off as the writers
					// do, then try the next.
					t := time.NewTimer(5 * time.Millisecond)
					select {
					case <-t.C:
					case <-ctx.Done():
					}
					t.Stop()
					continue
				}
				tr.reads.Add(1)
				if sum != txAccounts*txBalance {
					tr.badSums.Add(1)
					tr.badSum.Store(sum)
				}
			}
		}()
	}
	return tr
}

// sumOf reads every balance in one transaction of reads; ok is false when
// the node did not serve it.
func sumOf(ctx context.Context, cl *redis.Client) (int64, bool) {
	cmds, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range txAccounts {
			p.Get(ctx, account(i))
		}
		return nil
	})
	if err != nil || len(cmds) != txAccounts {
		return 0, false
	}
	var sum int64
	for _, cmd := range cmds {
		v, err := strconv.ParseInt(cmd.(*redis.StringCmd).Val(), 10, 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

func (tr *transfers) acked() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.acks)
}

func (tr *transfers) stop() []ack {
	tr.cancel()
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.acks
}

// waitAcksBy waits until a node other than old acknowledged a transfer.
func (tr *transfers) waitAcksBy(t *testing.T, old int, within time.Duration) {
	t.Helper()
	since := time.Now()
	testutil.Eventually(t, "transfers acknowledged by a new leader", within, func() (bool, string) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for i := len(tr.acks) - 1; i >= 0 && !tr.acks[i].at.Before(since); i-- {
			if tr.acks[i].leader != old {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d acks", len(tr.acks))
	})
}

// txOutcome is what runTransfers found.
type txOutcome struct {
	acked, reads, badReads int64
	badFinal               map[string]int64 // node → final sum, where it is off
	missing                int              // acknowledged markers absent on some node
}

// runTransfers runs the transfer load on a sync-mode cluster of 3 nodes
// with serverArgs, killing the leader kills times, and checks.
func runTransfers(t *testing.T, kills int, serverArgs ...string) txOutcome {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = append([]string{"--mode", "sync"}, serverArgs...)
		cfg.OrchestratorArgs = []string{"--mode", "sync"}
	})
	ctx := context.Background()
	id, err := c.WaitLeader(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	init := client(t, c.Node(id).RESPAddr)
	pairs := make([]any, 0, 2*txAccounts)
	for i := range txAccounts {
		pairs = append(pairs, account(i), txBalance)
	}
	if err := init.MSet(ctx, pairs...).Err(); err != nil {
		t.Fatal(err)
	}
	tr := startTransfers(t, c, 6, 2)
	testutil.Eventually(t, "some transfers", 20*time.Second, func() (bool, string) { return tr.acked() > 200, "" })
	for round := 1; round <= kills; round++ {
		old, _, _ := c.Leader(ctx)
		if err := c.Kill(old); err != nil {
			t.Fatal(err)
		}
		tr.waitAcksBy(t, old, 15*time.Second)
		before := tr.acked()
		testutil.Eventually(t, "more transfers", 20*time.Second, func() (bool, string) { return tr.acked() > before+200, "" })
	}
	acks := tr.stop()
	out := txOutcome{acked: int64(len(acks)), reads: tr.reads.Load(), badReads: tr.badSums.Load(), badFinal: map[string]int64{}}
	if out.badReads > 0 {
		t.Logf("%d of %d reader transactions saw a sum off (last %d, want %d)", out.badReads, out.reads, tr.badSum.Load(), txAccounts*txBalance)
	}
	if _, err := c.WaitLeader(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
	for _, n := range c.Nodes() {
		cl := client(t, n.RESPAddr)
		sum, ok := sumOf(ctx, cl)
		if !ok || sum != txAccounts*txBalance {
			out.badFinal[n.Name] = sum
		}
		for _, a := range acks {
			if v, err := cl.Exists(ctx, a.key).Result(); err != nil || v != 1 {
				out.missing++
			}
		}
	}
	return out
}

// TestTransactionsAllOrNothingUnderKill: kill -9 the leader twice during
// a stream of transfers under sync commit.
func TestTransactionsAllOrNothingUnderKill(t *testing.T) {
	out := runTransfers(t, 2)
	if out.badReads > 0 || len(out.badFinal) > 0 || out.missing > 0 {
		t.Fatalf("%d of %d reads saw half a transaction; final sums off: %v; %d acknowledged EXECs missing on some node",
			out.badReads, out.reads, out.badFinal, out.missing)
	}
	if out.reads == 0 {
		t.Fatal("no reader transaction was served")
	}
	t.Logf("%d acknowledged transfers over 2 kills, %d reader transactions: all or nothing everywhere, none lost", out.acked, out.reads)
}

// TestTransactionCheckCatchesSplit: with the planted tx-split fault (a
// transaction logged as two entries) the same checks fail.
func TestTransactionCheckCatchesSplit(t *testing.T) {
	out := runTransfers(t, 1, "--buggify", "tx-split")
	if out.badReads == 0 && len(out.badFinal) == 0 {
		t.Fatalf("a transaction split in two entries went unnoticed (%d reads, %d acknowledged)", out.reads, out.acked)
	}
	t.Logf("caught: %d of %d reads saw half a transaction; final sums off: %v", out.badReads, out.reads, out.badFinal)
}
