package replication

import (
	"sync/atomic"
	"time"
)

// Handoffs counts the leader's goroutine hand-offs on the write path:
// each is one goroutine giving work or an answer to another through a
// channel, which on a busy machine costs a wake-up (a futex, a trip
// through the scheduler, a cold cache) that Redis, doing a write in one
// thread, never pays. A hand-off is counted where it is made, and only
// when it wakes a goroutine that was blocked waiting for it (parked): a
// writer whose answer is there before it asks (the later writes of a
// pipeline), a signal into a mailbox that already holds one, or a
// committer still busy with the last group is not woken. (A goroutine
// about to park may be missed: the counts are a close lower bound.)
//
// The write path's hand-offs, and who gives them to whom:
//
//   - Append: a proposer (or the timer of a held group, or whoever made
//     the last group durable) to the committer goroutine, to write a group
//     to the log that no waiting writer could take.
//   - Apply: whoever committed a group to the applier goroutine, for a
//     group none of whose writers waits.
//   - Writer: whoever answered a write to the writer's goroutine, to
//     answer it, or to run its group's Append or Apply (run to
//     completion: it was to be woken anyway). A write answered through
//     Pending.Then wakes no one: its reply is written for it.
//   - Stream: the core's driver to a follower stream's sender, to send
//     what became durable or committed.
//   - StreamSend: a stream's sender to the goroutine that does its gRPC
//     sends, and back with the result (two per message).
//   - Progress: a follower's report, received by its stream's receiver
//     and handed to the core (one per report).
//   - Answer: the goroutine that applied a group to a goroutine that
//     writes half of its replies (a group of LeaderConfig.AnswerSplit
//     replies or more; one per such group).
//   - Timer: a held group commit handed out by its timer.
//   - Wait: a WAIT, read barrier or writer waiting for room woken.
//
// Leader.Handoffs returns them; BenchmarkWriteHandoffs (package node)
// prints them per write.
type Handoffs struct {
	Append, Apply, Writer, Answer, Stream, StreamSend, Progress, Timer, Wait uint64
}

// Total is the sum of every kind.
func (h Handoffs) Total() uint64 {
	return h.Append + h.Apply + h.Writer + h.Answer + h.Stream + h.StreamSend + h.Progress + h.Timer + h.Wait
}

// Sub is h minus an earlier count.
func (h Handoffs) Sub(o Handoffs) Handoffs {
	return Handoffs{
		Append: h.Append - o.Append, Apply: h.Apply - o.Apply, Writer: h.Writer - o.Writer, Answer: h.Answer - o.Answer,
		Stream: h.Stream - o.Stream, StreamSend: h.StreamSend - o.StreamSend,
		Progress: h.Progress - o.Progress, Timer: h.Timer - o.Timer, Wait: h.Wait - o.Wait,
	}
}

// handoffCounts is the leader's live Handoffs.
type handoffCounts struct {
	append, apply, writer, answer, stream, streamSend, progress, timer, wait atomic.Uint64
}

// Handoffs returns the hand-offs this leadership has made so far.
func (l *Leader) Handoffs() Handoffs {
	h := &l.handoffs
	return Handoffs{
		Append: h.append.Load(), Apply: h.apply.Load(), Writer: h.writer.Load(), Answer: h.answer.Load(),
		Stream: h.stream.Load(), StreamSend: h.streamSend.Load(),
		Progress: h.progress.Load(), Timer: h.timer.Load(), Wait: h.wait.Load(),
	}
}

// ReadAnswers counts how the leader answered the questions of reads
// waiting on a follower for a round trip (Progress.read_waits,
// Follower.WaitRoundTrip):
//
//   - AtOnce: by a heartbeat of their own, at once (answerReadLocked).
//   - Held: of those, the ones whose stream had not been sent the core's
//     commit because a group-commit hold kept it for the next batch; the
//     answer carries it (leaderCore.CommitForRead).
//   - BySend: by a send the report itself made due (new entries or a
//     commit), which pairs the stamp.
//   - Lease: the lease was not valid: answered after a confirmation.
//   - NotReadable: this leadership's commit had not reached its start:
//     answered by the send that brings it there.
//
// And where the leader's part of a round trip goes: LockWait sums, over
// the questions, the wait for the leader's lock once the stream's
// receiver took the question; SendTime, over the Sent answers of their
// own, the time from the question taken to the answer's Send returned
// (the lock, the core, the sender goroutine's wake-up and gRPC's Send),
// and Picked the part of it until the sender goroutine took the answer
// (woken, or done with the send it was in).
type ReadAnswers struct {
	AtOnce, Held, BySend, Lease, NotReadable uint64
	Sent                                     uint64
	LockWait, SendTime, Picked               time.Duration
}

type readAnswerCounts struct {
	atOnce, held, bySend, lease, notReadable, sent atomic.Uint64
	lockNs, sendNs, pickNs                         atomic.Int64
}

// ReadAnswers returns how this leadership answered waiting reads so far.
func (l *Leader) ReadAnswers() ReadAnswers {
	r := &l.readAnswers
	return ReadAnswers{AtOnce: r.atOnce.Load(), Held: r.held.Load(), BySend: r.bySend.Load(), Lease: r.lease.Load(), NotReadable: r.notReadable.Load(),
		Sent: r.sent.Load(), LockWait: time.Duration(r.lockNs.Load()), SendTime: time.Duration(r.sendNs.Load()), Picked: time.Duration(r.pickNs.Load())}
}
