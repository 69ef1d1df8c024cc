package node

import (
	"context"
	"testing"
)

// BenchmarkFollowerRead: one client's GET on a follower under each policy,
// no lag (the cost of the policy itself): ryw with a token compares
// positions; linearizable and a session with a user add a ReadIndex round
// trip to the leader (batched with concurrent reads).
func BenchmarkFollowerRead(b *testing.B) {
	leader := testNode(b, "l", nil)
	f := testNode(b, "f", nil)
	respAddr, peer, _ := leader.Addrs()
	if err := f.Follow(respAddr, peer); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w := newClient(b, leader)
	if err := w.Set(ctx, "k", "v", 0).Err(); err != nil {
		b.Fatal(err)
	}
	tok := w.Do(ctx, "tandem.token").Val()
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
