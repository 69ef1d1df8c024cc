package node

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkFollowerRead: one client's GET on a follower under each policy,
// no lag (the cost of the policy itself): ryw with a token compares
// positions; linearizable and a session with a user add a ReadIndex round
// trip to the leader (batched with concurrent reads).
func BenchmarkFollowerRead(b *testing.B) {
	ctx := context.Background()
	f, tok := followerWithKey(b)
	for _, tc := range []struct {
		name  string
		setup [][]any
	}{
		{"any", [][]any{{"tandem.readpolicy", "any"}}},
		{"ryw-token", [][]any{{"tandem.token", tok}}},
		{"bounded-10ms", [][]any{{"tandem.readpolicy", "bounded", "10"}}},
		{"linearizable", [][]any{{"tandem.readpolicy", "linearizable"}}},
		{"ryw-user", [][]any{{"tandem.user", "u"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newClient(b, f)
			for _, s := range tc.setup {
				if err := r.Do(ctx, s...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			// The first read waits for the follower to catch up.
			if err := r.Get(ctx, "k").Err(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := r.Get(ctx, "k").Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProxyReadForms: what the node and a client spend per read in
// each form the proxy sends a read in, one pipeline per read on a
// follower (the proxy's shared connection): bare (policies any and
// leader), a positional read with the session's state (READPOLICY,
// TOKEN t, the read, TOKEN, RESET) and a read of a floor the follower is
// known to have applied (TOKEN RESET, the read, TOKEN), and a
// linearizable read alone and in batches of 4 and 16 as the proxy sends
// them (readindex.go: probe, bare reads, proof; "-known": each read in the
// known form, as before; the leader, in the same process, answers one
// ReadIndex per pipeline). CPU per read
// (cpu-ns/op: the process's, both nodes' and the client's) is what a
// CPU-bound machine's throughput follows, and moves far less with the
// machine's load than ns/op.
func BenchmarkProxyReadForms(b *testing.B) {
	ctx := context.Background()
	f, tok := followerWithKey(b)
	r := newClient(b, f)
	// The first read waits for the follower to catch up.
	if err := r.Do(ctx, "tandem.token", tok).Err(); err != nil {
		b.Fatal(err)
	}
	if err := r.Get(ctx, "k").Err(); err != nil {
		b.Fatal(err)
	}
	if err := r.Do(ctx, "reset").Err(); err != nil {
		b.Fatal(err)
	}
	known := [][]any{{"tandem.token", "reset"}, {"get", "k"}, {"tandem.token"}}
	// A linearizable batch of the proxy (proxy/readindex.go): the probe,
	// then n reads, bare, then the proof; as the proxy sent them before
	// TANDEM.APPLIED ("-session": the probe and proof in session
	// commands, 8 in all), and before that ("-known": each read in the
	// known form and no proof); kept to compare.
	probe := [][]any{{"tandem.readpolicy", "any"}, {"tandem.applied", "linearizable"}}
	proof := [][]any{{"tandem.applied"}}
	sessProbe := [][]any{{"tandem.readpolicy", "linearizable"}, {"tandem.token", "reset"}, {"dbsize"}, {"tandem.token"}, {"tandem.readpolicy", "any"}}
	sessProof := [][]any{{"tandem.token", "reset"}, {"dbsize"}, {"tandem.token"}}
	batchOf := func(begin [][]any, n int, each [][]any, end ...[]any) [][]any {
		cmds := append([][]any(nil), begin...)
		for range n {
			cmds = append(cmds, each...)
		}
		return append(cmds, end...)
	}
	batch := func(n int, each [][]any, end ...[]any) [][]any { return batchOf(sessProbe, n, each, end...) }
	bare := [][]any{{"get", "k"}}
	for _, tc := range []struct {
		name  string
		cmds  [][]any
		reads int // reads per pipeline: cpu-ns/op is per read
	}{
		{"bare", [][]any{{"get", "k"}}, 1},
		{"state", [][]any{{"tandem.readpolicy", "ryw"}, {"tandem.token", tok}, {"get", "k"}, {"tandem.token"}, {"reset"}}, 1},
		{"known", known, 1},
		// The known form with its proof from TANDEM.APPLIED after the
		// read instead of the session's token around it.
		{"known-applied", [][]any{{"get", "k"}, {"tandem.applied"}}, 1},
		// Linearizable: one read with its state (the proxy's form before
		// batches; a ReadIndex of the leader per read), and a batch.
		{"linearizable", [][]any{{"tandem.readpolicy", "linearizable"}, {"get", "k"}, {"tandem.token"}, {"reset"}}, 1},
		{"linearizable-batch4", batchOf(probe, 4, bare, proof...), 4},
		{"linearizable-batch4-session", batch(4, bare, sessProof...), 4},
		{"linearizable-batch4-known", batch(4, known), 4},
		{"linearizable-batch6", batchOf(probe, 6, bare, proof...), 6},
		{"linearizable-batch6-session", batch(6, bare, sessProof...), 6},
		{"linearizable-batch16", batchOf(probe, 16, bare, proof...), 16},
		{"linearizable-batch16-session", batch(16, bare, sessProof...), 16},
		{"linearizable-batch16-known", batch(16, known), 16},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cpu0 := processCPU()
			for range b.N {
				cmds, err := r.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, c := range tc.cmds {
						p.Do(ctx, c...)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if len(cmds) != len(tc.cmds) {
					b.Fatalf("%d replies", len(cmds))
				}
			}
			// CPU, not wall time: on a shared machine the wall time is
			// mostly waiting to be scheduled.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*tc.reads), "cpu-ns/op")
		})
	}
}

// followerWithKey starts a leader and a follower of it, writes k on the
// leader, and returns the follower, caught up (it serves reads), and the
// write's position token.
//
// The follower waits up to 10 s for a read's position, not
// DefaultReadWait's 100 ms: a benchmark measures the follower serving
// every read, and has no other node to send one elsewhere to. Under a
// load of 15-25 on 2 cores a linearizable read's round trip to the
// leader in this process (WaitRoundTrip) took over 100 ms now and then,
// and the read answered "read elsewhere", as the product must (a proxy
// then reads it on another node), which failed the benchmark.
func followerWithKey(b *testing.B) (f *Node, tok any) {
	leader := testNode(b, "l", nil)
	f = testNode(b, "f", func(c *Config) { c.ReadWait = 10 * time.Second })
	respAddr, peer, _ := leader.Addrs()
	if err := f.Follow(respAddr, peer); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w := newClient(b, leader)
	if err := w.Set(ctx, "k", "v", 0).Err(); err != nil {
		b.Fatal(err)
	}
	// A follower that just started answers LOADING until it has caught up
	// with its leader (Follower.CaughtUp), which it may not have when a
	// read waiting for the write's position is woken: the position can be
	// applied (from a snapshot, or a message the stream has not yet
	// counted as caught up) first. A loaded machine widens that gap
	// enough for the benchmark's first read to fall in it.
	testutil.Eventually(b, "the follower to catch up", 30*time.Second, func() (bool, string) {
		r, ok := f.current().(*following)
		return ok && r.f.CaughtUp(), "not caught up"
	})
	return f, w.Do(ctx, "tandem.token").Val()
}

// BenchmarkLeaderReadForms: what the leader and a client spend per ryw
// read the proxy sends it while the followers lag behind the session's
// write (fallback floor-not-applied): with the session's state (bare is
// policy leader's form, for scale) or in the known form, the leader being
// known to have applied the write it acknowledged.
func BenchmarkLeaderReadForms(b *testing.B) {
	ctx := context.Background()
	leader := testNode(b, "l", nil)
	w := newClient(b, leader)
	if err := w.Set(ctx, "k", "v", 0).Err(); err != nil {
		b.Fatal(err)
	}
	tok := w.Do(ctx, "tandem.token").Val()
	r := newClient(b, leader)
	for _, tc := range []struct {
		name string
		cmds [][]any
	}{
		{"bare", [][]any{{"get", "k"}}},
		{"state", [][]any{{"tandem.readpolicy", "ryw"}, {"tandem.token", tok}, {"get", "k"}, {"tandem.token"}, {"reset"}}},
		{"known", [][]any{{"tandem.token", "reset"}, {"get", "k"}, {"tandem.token"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cpu0 := processCPU()
			for range b.N {
				if _, err := r.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, c := range tc.cmds {
						p.Do(ctx, c...)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
