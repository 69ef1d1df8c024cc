package replication

import (
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// followerCore is the follower's replication logic without I/O: it checks
// what the leader sends and says what to persist and what to apply. The
// driver persists Ready.Append, calls Persisted, applies Ready.Apply, calls
// Applied, then reports Progress.
type followerCore struct {
	epoch   uint64 // highest epoch seen
	durable logrec.Position
	applied uint64
	commit  uint64
	pending []logrec.Entry // durable but not applied, in LSN order

	leaderLast uint64 // the leader's last LSN, from its last message
	leaderTime int64  // the leader's clock in its last message, Unix ns
	leaseStamp int64  // the latest Append.lease_stamp, echoed in Progress
}

// Ready is the work one leader message creates.
type Ready struct {
	// Append must be durable BEFORE Persisted is called and before any
	// progress that includes it is reported.
	Append [][]byte
	// appendPos is the position of the last entry in Append.
	appendPos logrec.Position
	decoded   []logrec.Entry
	// Apply lists entries to apply, in order, AFTER Append is durable.
	Apply []logrec.Entry
}

// Step checks one Append from the leader. Entries must continue the log;
// their checksums are verified here, before anything is persisted.
func (c *followerCore) Step(epoch uint64, a *peerpb.Append) (Ready, error) {
	var rd Ready
	if epoch < c.epoch {
		return rd, fmt.Errorf("%w: append from epoch %d, seen %d", ErrStaleEpoch, epoch, c.epoch)
	}
	c.epoch = epoch
	next := c.durable
	if len(a.Entries) > 0 {
		rd.decoded = make([]logrec.Entry, 0, len(a.Entries))
	}
	// The entries' ops share a few arrays (logrec.OpArena), not one each;
	// their keys and values alias the raw entries, which alias the
	// message (peerpb.Codec): decoding a message allocates about three
	// times, whatever its entries.
	var ops logrec.OpArena
	for i, raw := range a.Entries {
		e, err := logrec.DecodeIn(raw, &ops, len(a.Entries)-i)
		if err != nil {
			return Ready{}, fmt.Errorf("replication: entry after lsn %d: %w", next.LSN, err)
		}
		if e.LSN != next.LSN+1 || e.Epoch < next.Epoch || e.Epoch > epoch {
			return Ready{}, fmt.Errorf("%w: entry (%d,%d) after (%d,%d) from epoch %d", ErrOutOfOrder, e.Epoch, e.LSN, next.Epoch, next.LSN, epoch)
		}
		rd.decoded = append(rd.decoded, e)
		next = logrec.Position{Epoch: e.Epoch, LSN: e.LSN}
	}
	rd.Append = a.Entries
	rd.appendPos = next
	c.commit = max(c.commit, a.CommitLsn)
	c.leaderLast = a.LeaderLastLsn
	c.leaderTime = a.LeaderTimeUnixNano
	if a.LeaseStamp != 0 { // 0: a heartbeat that wants no echo
		c.leaseStamp = a.LeaseStamp // this stream's leader's clock: never carried over
	}
	// Apply up to min(commit, durable after this append): the pending tail
	// plus the new entries.
	limit := min(c.commit, next.LSN)
	n := 0 // of the new entries, those to apply
	for n < len(rd.decoded) && rd.decoded[n].LSN <= limit {
		n++
	}
	if len(c.pending) == 0 {
		// The common case, a follower that keeps up: what it applies is
		// a prefix of what it just decoded, without a copy.
		rd.Apply = rd.decoded[:n:n]
		return rd, nil
	}
	for _, e := range c.pending {
		if e.LSN > limit {
			break
		}
		rd.Apply = append(rd.Apply, e)
	}
	if len(rd.Apply) == len(c.pending) {
		rd.Apply = append(rd.Apply, rd.decoded[:n]...)
	}
	return rd, nil
}

// Persisted records that rd.Append is durable.
func (c *followerCore) Persisted(rd Ready) {
	if len(rd.Append) == 0 {
		return
	}
	c.durable = rd.appendPos
	if len(c.pending) == 0 {
		// Taken over, not copied: rd.Apply may share its array (Applied
		// clears what is applied only after it was applied).
		c.pending = rd.decoded
		return
	}
	c.pending = append(c.pending, rd.decoded...)
}

// Applied records that rd.Apply is applied. rd.Apply may share its array
// with the pending entries (Step), so it must not be read after this: its
// entries may be cleared.
func (c *followerCore) Applied(rd Ready) {
	n := len(rd.Apply)
	if n == 0 {
		return
	}
	c.applied = rd.Apply[n-1].LSN
	if n == len(c.pending) {
		c.pending = nil // the array goes, with the applied entries
		return
	}
	// Cleared before they are sliced off: the array would otherwise keep
	// applied entries (a 64 MB value's bytes) alive until it is reused.
	clear(c.pending[:n])
	c.pending = c.pending[n:]
}

// Progress is the report to send after a step.
func (c *followerCore) Progress() *peerpb.FollowerMessage {
	return &peerpb.FollowerMessage{Epoch: c.epoch, Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{
		DurableLsn: c.durable.LSN, AppliedLsn: c.applied, LeaseStamp: c.leaseStamp,
	}}}
}

// lag returns how far behind the leader this follower's applied state is:
// in LSNs, and in seconds as the age, on the leader's clock, of the oldest
// entry it holds but has not applied. Measuring from the oldest unapplied
// entry rather than from the last applied one keeps an idle period out of
// the figure: a follower that was caught up is not "26 s behind" the moment
// a write arrives after 26 quiet seconds. Entries not received yet have no
// known time and add nothing.
func (c *followerCore) lag() (lsns uint64, seconds float64) {
	if c.leaderLast <= c.applied {
		return 0, 0
	}
	lsns = c.leaderLast - c.applied
	if len(c.pending) > 0 && c.leaderTime > c.pending[0].TimeNs {
		seconds = float64(c.leaderTime-c.pending[0].TimeNs) / 1e9
	}
	return lsns, seconds
}
