package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkLinearizableDirect: clients connected straight to a follower
// (no proxy, so no probe batches), each reading under linearizable one
// GET at a time, idle leader. Each read wants a round trip on the stream
// begun after it (replication.Follower.WaitRoundTrip); a question covers
// every read that began before it left, so the questions per read
// (asks/read) fall as clients are added. Reports per read are the
// follower's messages to the leader (its questions and any progress
// report), msgs-in the leader's to it, wakes the follower's stepping
// goroutine's; cpu-ns/read is the process's (both nodes and the clients).
//
//	go test ./internal/node -run '^$' -bench LinearizableDirect -benchtime 4000x -count 3
func BenchmarkLinearizableDirect(b *testing.B) {
	for _, clients := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ctx := context.Background()
			fn, _ := followerWithKey(b)
			f := fn.current().(*following).f
			var wg sync.WaitGroup
			next := make(chan struct{}, b.N)
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			rs := make([]func() error, clients)
			for i := range rs {
				r := newClient(b, fn)
				if err := r.Do(ctx, "tandem.readpolicy", "linearizable").Err(); err != nil {
					b.Fatal(err)
				}
				// followerWithKey waited for the follower to catch up:
				// the first read is served.
				if err := r.Get(ctx, "k").Err(); err != nil {
					b.Fatal(err)
				}
				rs[i] = func() error { return r.Get(ctx, "k").Err() }
			}
			c0, rt0, cpu0 := f.Counts(), f.RoundTripTimes(), processCPU()
			t0 := time.Now()
			b.ResetTimer()
			for _, read := range rs {
				wg.Go(func() {
					for range next {
						if err := read(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			c, rt, cpu := f.Counts().Sub(c0), f.RoundTripTimes().Sub(rt0), processCPU()-cpu0
			n := float64(b.N)
			b.ReportMetric(float64(rt.Asks)/n, "asks/read")
			b.ReportMetric(float64(cpu)/n, "cpu-ns/read")
			b.ReportMetric(float64(c.Reports)/n, "reports/read")
			b.ReportMetric(float64(c.Messages)/n, "msgs-in/read")
			b.ReportMetric(float64(c.Wakes)/n, "wakes/read")
			b.ReportMetric(n/time.Since(t0).Seconds(), "reads/s")
		})
	}
}
