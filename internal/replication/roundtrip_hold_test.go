package replication

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// TestRoundTripReadDoesNotWaitForTheHold: while group commit holds the
// next Append (a writer just answered is expected back), a commit LSN
// that is a follower's only news waits for that batch (queueSends); a
// follower's question for a waiting read (Progress.read_waits) is
// answered at once all the same, the answer carrying the core's commit
// (CommitForRead), which covers the write acknowledged before the
// question. Under a steady write load a hold runs most of the time, and
// a linearizable read waited it out. plantAnswerAfterHold leaves the
// answer to the held batch: it comes when the hold runs out.
func TestRoundTripReadDoesNotWaitForTheHold(t *testing.T) {
	const (
		fsync = 200 * time.Millisecond // the leader's, of fake time
		hold  = 100 * time.Millisecond // MaxCommitDelay, half an append
	)
	synctest.Test(t, func(t *testing.T) {
		mem := vfs.NewMem()
		db := openDB(t, errorfs.Wrap(mem, slowLog{fsync}))
		l := startLeader(t, mem, db, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
			c.MaxCommitDelay = hold
			// No heartbeat within the test: one would carry the commit.
			c.Heartbeat, c.IdleHeartbeat = time.Second, time.Second
		})
		s := rawFollower(t, l, "f")
		type arrival struct {
			m  *peerpb.LeaderMessage
			at time.Time
		}
		msgs := make(chan arrival, 100)
		go func() {
			for {
				m, err := s.Recv()
				if err != nil {
					close(msgs)
					return
				}
				msgs <- arrival{m, time.Now()}
			}
		}()
		// The first write teaches the core an append's cost; once the
		// second is acknowledged its writer is expected back, the next
		// Append is held, and with it the second write's commit LSN.
		propose(t, l, putExec("k", "v1"))
		lsn := propose(t, l, putExec("k", "v2"))
		synctest.Wait()
		var sent uint64
		for len(msgs) > 0 {
			a := <-msgs
			sent = max(sent, a.m.GetAppend().GetCommitLsn())
		}
		if sent >= lsn {
			t.Fatalf("commit LSN %d sent already, want it held for the next batch (lsn %d): the test tests nothing", sent, lsn)
		}
		const stamp = 42
		asked := time.Now()
		q := &peerpb.FollowerMessage{Epoch: l.Epoch(), Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{
			DurableLsn: lsn, ReadStamp: stamp, ReadWaits: true,
		}}}
		if err := s.Send(q); err != nil {
			t.Fatal(err)
		}
		for a := range msgs {
			ap := a.m.GetAppend()
			if ap.GetReadStamp() != stamp {
				continue
			}
			if ap.GetCommitLsn() < lsn {
				t.Fatalf("the answer pairs the read's stamp with commit %d; the write at %d was acknowledged before the question", ap.GetCommitLsn(), lsn)
			}
			if took := a.at.Sub(asked); took != 0 {
				t.Fatalf("the answer came %v after the question, with a hold of %v running: want it at once", took, hold)
			}
			if ra := l.ReadAnswers(); ra.Held != 1 || ra.AtOnce != 1 {
				t.Errorf("answers %+v: want one, at once, with a held commit", ra)
			}
			return
		}
		t.Fatal("the stream ended without an answer")
	})
}
