package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkLinearizableUnderWrites: the proxy's batches of linearizable
// reads (proxy/readindex.go: the probe TANDEM.APPLIED LINEARIZABLE, the
// reads, the proof TANDEM.APPLIED) on a follower while the leader takes
// a steady write load, as in `tandem bench reads` (where a linearizable
// read's cost over any's is what the round trip to the leader costs on
// a stream that is busy anyway), against the same batches without the
// probe ("any": READPOLICY any, the reads, TANDEM.APPLIED). Two
// connections send batches back to back, as the proxy's two batches in
// flight per follower do. Besides CPU per read (the process's: both
// nodes, the clients and the write load, whose share per read grows as
// reads slow down: compare runs, not absolutes) it reports per batch the
// messages each way on the replication stream (the follower's reports,
// the leader's sends as the follower counts the messages it took) and
// the follower's steps: counts the machine's load does not move. And
// where a linearizable batch's probe waited (replication.RoundTripTimes),
// in µs per batch: for the question to go (ask-µs), for the leader's
// answer to it (answer-µs), from its arrival
// to the apply of its commit LSN (apply-µs), from that apply to the read's
// return (wake-µs); the share of answers whose commit LSN was past the
// follower's durable log as they arrived (needlog/batch: the apply waited
// for the follower's own log append; apply-durable-µs is the apply wait
// of the others) or that arrived while the follower
// was in a log append (inappend/batch); and the follower's log append
// time (fsync-µs, per append). held/batch: the leader's answers that
// carried a commit LSN a group-commit hold had kept back
// (replication.ReadAnswers.Held: before, such a probe waited for the
// held batch).
//
//	go test ./internal/node -run '^$' -bench LinearizableUnderWrites -benchtime 4000x -count 3
func BenchmarkLinearizableUnderWrites(b *testing.B) {
	const reads, conns = 8, 2
	for _, tc := range []struct {
		form      string
		writeRate int
	}{{"any", 2000}, {"linearizable", 2000}, {"any", 0}, {"linearizable", 0}} {
		form, writeRate := tc.form, tc.writeRate
		b.Run(fmt.Sprintf("%s/writes=%d", form, writeRate), func(b *testing.B) {
			ctx := context.Background()
			leader := testNode(b, "l", nil)
			fn := testNode(b, "f", nil)
			respAddr, peer, _ := leader.Addrs()
			if err := fn.Follow(respAddr, peer); err != nil {
				b.Fatal(err)
			}
			l := leader.current().(*leading).l
			waitStreams(b, l, 1)
			w := newClient(b, leader)
			for i := range 100 {
				if err := w.Set(ctx, "k"+strconv.Itoa(i), "v", 0).Err(); err != nil {
					b.Fatal(err)
				}
			}
			f := fn.current().(*following).f
			probe := []any{"tandem.applied", "linearizable"}
			if form == "any" {
				probe = []any{"tandem.applied"}
			}
			batch := func(r *redis.Client, i int) error {
				cmds, err := r.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Do(ctx, "tandem.readpolicy", "any")
					p.Do(ctx, probe...)
					for j := range reads {
						p.Do(ctx, "get", "k"+strconv.Itoa((i*reads+j)%100))
					}
					p.Do(ctx, "tandem.applied")
					return nil
				})
				if err == nil && len(cmds) != reads+3 {
					err = fmt.Errorf("%d replies", len(cmds))
				}
				return err
			}
			rs := make([]*redis.Client, conns)
			for i := range rs {
				rs[i] = newClient(b, fn)
				if err := batch(rs[i], 0); err != nil { // caught up, connected
					b.Fatal(err)
				}
			}
			// The write load: writeRate SET/s from 10 connections.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var writes atomic.Int64
			for c := range min(10, writeRate) {
				wc := newClient(b, leader)
				wg.Go(func() {
					t := time.NewTicker(10 * time.Second / time.Duration(writeRate))
					defer t.Stop()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						case <-t.C:
						}
						if err := wc.Set(ctx, "w"+strconv.Itoa(c*1000+i%1000), "v", 0).Err(); err != nil {
							b.Error(err)
							return
						}
						writes.Add(1)
					}
				})
			}
			defer func() { close(stop); wg.Wait() }()
			time.Sleep(200 * time.Millisecond) // the write load settles
			batches := int64(max(b.N/reads, 1))
			var next, refused atomic.Int64
			c0, h0, cpu0, w0, rt0, ra0 := f.Counts(), l.Handoffs(), processCPU(), writes.Load(), f.RoundTripTimes(), l.ReadAnswers()
			t0 := time.Now()
			b.ResetTimer()
			var rwg sync.WaitGroup
			for _, r := range rs {
				rwg.Go(func() {
					for i := next.Add(1); i <= batches; i = next.Add(1) {
						if err := batch(r, int(i)); err != nil {
							if strings.HasPrefix(err.Error(), "TRYAGAIN") {
								refused.Add(1) // the read wait passed: a busy machine
								continue
							}
							b.Error(err)
							return
						}
					}
				})
			}
			rwg.Wait()
			b.StopTimer()
			secs := time.Since(t0).Seconds()
			c, h, cpu, rt := f.Counts().Sub(c0), l.Handoffs().Sub(h0), processCPU()-cpu0, f.RoundTripTimes().Sub(rt0)
			n := float64(batches)
			if ra := l.ReadAnswers(); form == "linearizable" {
				// Answers that carried a commit a group-commit hold kept
				// back (replication.ReadAnswers.Held), per batch.
				b.ReportMetric(float64(ra.Held-ra0.Held)/n, "held/batch")
			}
			if rt.Reads > 0 {
				perRead := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(rt.Reads) }
				b.ReportMetric(perRead(rt.Ask), "ask-µs")
				b.ReportMetric(perRead(rt.Answer), "answer-µs")
				b.ReportMetric(perRead(rt.Apply), "apply-µs")
				b.ReportMetric(perRead(rt.Wake), "wake-µs")
				b.ReportMetric(float64(rt.NeedLog)/float64(rt.Reads), "needlog/batch")
				if rest := rt.Reads - rt.NeedLog; rest > 0 {
					b.ReportMetric((rt.Apply-rt.ApplyNeedLog).Seconds()*1e6/float64(rest), "apply-durable-µs")
				}
				b.ReportMetric(float64(rt.InAppend)/float64(rt.Reads), "inappend/batch")
				b.ReportMetric(float64(rt.Asks)/n, "asks/batch")
			}
			if rt.Appends > 0 {
				b.ReportMetric(rt.AppendTime.Seconds()*1e6/float64(rt.Appends), "fsync-µs")
			}
			b.ReportMetric(float64(cpu)/(n*reads), "cpu-ns/read")
			b.ReportMetric(float64(c.Reports)/n, "reports/batch")
			b.ReportMetric(float64(c.Messages)/n, "msgs-in/batch")
			b.ReportMetric(float64(c.Steps)/n, "steps/batch")
			b.ReportMetric(float64(c.Appends)/n, "fsyncs/batch")
			b.ReportMetric(float64(c.Wakes)/n, "wakes/batch")
			b.ReportMetric(float64(h.Progress)/n, "progress/batch")
			if w := float64(writes.Load() - w0); w > 0 {
				b.ReportMetric(float64(c.Reports)/w, "reports/write")
				b.ReportMetric(float64(c.Appends)/w, "fsyncs/write")
			}
			b.ReportMetric(float64(writes.Load()-w0)/secs, "writes/s")
			b.ReportMetric(float64(refused.Load())/n, "refused/batch")
		})
	}
}
