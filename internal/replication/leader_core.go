package replication

import (
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
)

// leaderCore is the leader's replication logic without I/O, goroutines or
// clocks, in the manner of etcd-io/raft's RawNode: inputs go in (a
// proposal, a durable append, an apply, a follower's progress, a tick with
// the time), and Ready says what to do next. The driver (Leader) owns
// Pebble, the streams and the goroutines, calls the core under one mutex,
// does what Ready says, and reports completions back.
//
// The positions always satisfy applied <= commit <= durable <= last, and
// commit is what commit.LSN allows: nothing is applied, visible or
// acknowledged before it is committed, nor committed before it is durable
// on the leader. At most one Append and one Apply batch are out at a time,
// so whoever runs them (the driver's committer and applier, or a writer)
// sees them in LSN order.
//
// Send while syncing (etcd-io/raft, the Raft thesis §10.2.1): an entry may
// be sent to followers as soon as it is handed out in an Append, while the
// leader's own fdatasync of it runs, so the follower's append overlaps the
// leader's. Followers may then hold entries durably that the leader loses
// in a crash; that is safe because commit still waits for the leader's
// durability (sends carry commit <= durable, and followers apply only up
// to the commit LSN), and because a leadership never resumes an epoch
// (BeginEpoch), so a restarted leader's new entries at those LSNs have a
// higher epoch and the handshake truncates the lost ones.
type leaderCore struct {
	cfg      coreConfig
	startLSN uint64 // last durable LSN when this leadership began

	last    uint64 // last sequenced LSN
	durable uint64 // last LSN durable in the leader's log
	commit  uint64
	applied uint64

	// inflight holds every sequenced, not yet applied proposal in LSN
	// order: first the durable ones, then the one Append batch being
	// written (appending of them), then the rest (not handed out yet).
	inflight      []*proposal
	inflightBytes int64
	appending     int              // proposals of inflight in the Append batch out
	applying      int              // proposals at the front of inflight in the Apply batch out
	readable      bool             // applied has reached startLSN
	now           int64            // the latest time an input carried
	followers     []*followerState // sorted by id, so that Ready is deterministic
	pins          map[string]pin   // retention pins of snapshots in flight
	waits         []*leaderWait
	nextSession   uint64
	lastRetention int64       // when the retention rule last ran
	ready         leaderReady // effects not handed out yet
	// syncSet: the followers whose acknowledgements count in sync and
	// semisync (SetSyncSet).
	syncSet []string
	// appendCost is a moving average of how long a durable append takes
	// (NoteAppendCost); appendDue, when not 0, is when an Append held for
	// more writes must go out (see holdAppend).
	appendCost, appendDue int64
	// returning counts writers answered (acknowledged) whose next write
	// has not arrived yet: in a closed loop each sends another once
	// answered. A proposal takes one off; a hold that runs out (AppendDue)
	// clears it, so writers that never return stop being waited for.
	returning int
	// tickAt is the latest TickAt handed out: when the driver will tick
	// the core next. An input that makes something due earlier hands out
	// that earlier time (tickBy), so that no deadline waits for a tick
	// armed later than it.
	tickAt int64
}

// coreConfig is what the core needs of LeaderConfig, with defaults filled
// in; durations are in nanoseconds.
type coreConfig struct {
	mode             commit.Mode
	heartbeat        int64
	writeTimeout     int64
	followerTimeout  int64
	retainBytes      int64
	retainMinBytes   int64 // kept beyond what known followers need
	retentionEvery   int64
	maxInFlight      int
	maxInFlightBytes int64
	// maxAppendDelay caps how long an Append may be held for more writes
	// (adaptive group commit); 0 never holds one.
	maxAppendDelay int64
}

// followerState is what the core knows about one follower.
type followerState struct {
	info    FollowerInfo
	session uint64 // the stream it is connected on; 0 when disconnected
	durable uint64
	applied uint64
	// lastSeen is when it was last heard from, on the leader's clock.
	lastSeen int64
	// sentThrough and sentCommit are the last entry and commit LSN handed
	// out for its stream; lastSent is when.
	sentThrough, sentCommit uint64
	lastSent                int64
	// lent: the last message was a heartbeat sent early on a wake-up the
	// driver had anyway (Beat), so the next is due beatSlack later.
	lent bool
	// leaseStamp is the latest lease stamp it echoed back (see
	// ConfirmedBy): the send time, on the lease's clock, of a message of
	// this leadership it received. 0: it has echoed nothing. It survives
	// a reconnection, as what it proves stays true.
	leaseStamp int64
}

// FollowerInfo is how a follower introduced itself.
type FollowerInfo struct {
	NodeID   string
	RESPAddr string
	HTTPAddr string
}

// pin keeps the log after lsn for a follower that is being sent a
// snapshot at lsn or later, until it connects or the pin times out.
type pin struct {
	lsn   uint64
	since int64
}

// waitKind is what a leaderWait waits for.
type waitKind int

const (
	// waitApplied: the applied LSN reaches lsn.
	waitApplied waitKind = iota
	// waitDurable: n connected followers have made lsn durable (WAIT).
	waitDurable
	// waitRoom: a write may be admitted (HasRoom). Its deadline, when the
	// caller leaves it 0, is the write timeout from when it is registered:
	// a writer waits that long for room, then is refused (ErrOverloaded).
	waitRoom
)

// leaderWait is a caller blocked until a position is reached or its
// deadline passes. The core sets count and done; the driver wakes the
// caller when Ready.Waits hands the wait back.
type leaderWait struct {
	kind     waitKind
	lsn      uint64
	n        int
	deadline int64 // 0: none
	count    int   // followers that made lsn durable, when done (waitDurable)
	met      bool  // the position was reached (not expired)
	done     bool
	wake     chan struct{} // closed by the driver
}

// leaderSend tells the driver that the follower's stream may now carry
// every entry up to Through, each handed out in an Append (durable on the
// leader or being made durable), and the commit LSN Commit (never past the
// leader's durable LSN). A send with nothing new is a heartbeat.
type leaderSend struct {
	NodeID  string
	Session uint64
	Through uint64
	Commit  uint64
}

// leaderReady is the work the core hands to the driver. Each field is
// handed out once; the driver must respect the order each comment gives.
type leaderReady struct {
	// Append lists entries to write to the log in one durable batch. They
	// must be durable BEFORE Appended is called; nothing in them is
	// committed or acknowledged until then, but they may be sent to
	// followers meanwhile (Send, often in the same Ready).
	Append []*proposal
	// Send lists, per follower stream, how far it may now be sent. Every
	// entry it covers has been handed out in an Append: the sender reads
	// those not durable yet from the proposals in flight (entries).
	Send []leaderSend
	// Apply lists committed entries to apply, in LSN order, in one batch
	// with the applied LSN; Applied is called AFTER that batch is written.
	Apply []*proposal
	// Acked lists writers whose entries are applied: their replies may go
	// out now, and not before.
	Acked []*proposal
	// Expired lists writers whose write timeout passed before their entry
	// committed: they are answered ErrWriteTimeout (the entry stays in the
	// log and may still commit).
	Expired []*proposal
	// Waits lists waits that are done (met or expired). A writer waiting
	// for room (waitRoom) whose wait is met tries again; one whose wait
	// expired is refused.
	Waits []*leaderWait
	// TrimBefore, if not 0, is the LSN before which the log may be
	// trimmed: no known follower, pinned snapshot or unapplied entry needs
	// what lies before it.
	TrimBefore uint64
	// Disconnect lists follower streams to close (removed followers).
	Disconnect []leaderSend
	// Readable is set once, when every entry that was durable when the
	// leadership began is applied (in the first Ready if none was left
	// unapplied): reads may be served from then on.
	Readable bool
	// AppendAt, if not 0, is when the driver must call AppendDue: an
	// Append is being held for more writes until then (or until enough
	// arrive, whichever is first).
	AppendAt int64
	// TickAt, if not 0, is when the driver must next call Tick, replacing
	// the time an earlier Ready gave: nothing Tick does (a write timeout,
	// a wait's deadline, a heartbeat, forgetting a follower, retention)
	// is due before it. Ticking earlier is harmless; later delays those.
	// An idle leader is so woken once per heartbeat, not once per clock
	// tick.
	TickAt int64
}

// newLeaderCore starts a core, at time now, whose log is durable through
// durable and applied through applied; tail holds the durable, unapplied
// entries applied+1..durable (left by a crash or by following), which
// commit under the mode's rule like any other entry but have no writer
// waiting. The first retention run is a retention interval after now.
func newLeaderCore(cfg coreConfig, durable, applied uint64, tail []*proposal, now int64) *leaderCore {
	c := &leaderCore{
		cfg:           cfg,
		startLSN:      durable,
		last:          durable,
		durable:       durable,
		commit:        applied,
		applied:       applied,
		pins:          map[string]pin{},
		now:           now,
		lastRetention: now,
	}
	for _, p := range tail {
		c.inflight = append(c.inflight, p)
		c.inflightBytes += int64(len(p.raw))
	}
	if applied >= durable {
		c.readable = true
		c.ready.Readable = true
	}
	c.advanceCommit()
	c.armTick()
	return c
}

// HasRoom reports whether a new write may be sequenced now: the writes in
// flight are under both bounds. A write may overshoot the byte bound by
// its own size. A writer that finds no room waits for it (waitRoom).
func (c *leaderCore) HasRoom() bool {
	return len(c.inflight) < c.cfg.maxInFlight && c.inflightBytes < c.cfg.maxInFlightBytes
}

// StartLSN is the last LSN durable when this leadership began: reads are
// served once it is applied (Ready.Readable). It never changes.
func (c *leaderCore) StartLSN() uint64 { return c.startLSN }

// Mode is the commit rule in force and the sync set (a copy).
func (c *leaderCore) Mode() (commit.Mode, []string) {
	return c.cfg.mode, slices.Clone(c.syncSet)
}

// NextLSN is the LSN the next proposal gets.
func (c *leaderCore) NextLSN() uint64 { return c.last + 1 }

// Propose sequences p, whose lsn must be NextLSN(), at time now: it joins
// the next Append batch and must commit by now + the write timeout.
func (c *leaderCore) Propose(p *proposal, now int64) {
	if p.lsn != c.last+1 {
		panic("replication: proposal out of sequence") // the driver's bug
	}
	c.last = p.lsn
	c.now = max(c.now, now)
	p.deadline = now + c.cfg.writeTimeout
	c.tickBy(p.deadline)
	c.inflight = append(c.inflight, p)
	c.inflightBytes += int64(len(p.raw))
	if c.returning > 0 {
		c.returning--
	}
	c.maybeAppend()
}

// maybeAppend hands out the next Append batch when none is out: every
// sequenced entry that is not durable yet, unless holdAppend keeps it a
// little longer.
func (c *leaderCore) maybeAppend() {
	if c.appending > 0 {
		return
	}
	start := len(c.inflight) - int(c.last-c.durable)
	if c.holdAppend(start) || start == len(c.inflight) {
		return
	}
	c.handOutAppend(start)
}

// handOutAppend hands out inflight[start:] as the next Append batch, and
// sends it to the followers at once: their appends overlap the leader's.
func (c *leaderCore) handOutAppend(start int) {
	c.appendDue = 0
	c.ready.Append = slices.Clip(c.inflight[start:])
	c.appending = len(c.inflight) - start
	c.queueSends(false)
}

// sendable is the last LSN a follower may be sent: every entry handed out
// in an Append, durable or being made durable.
func (c *leaderCore) sendable() uint64 { return c.durable + uint64(c.appending) }

// entries returns the encoded entries lo..hi from the proposals in flight
// (sequenced and not applied: those not yet durable are only here), at
// most maxBytes of them but at least one, for a follower stream; false
// when lo is not in flight. The bytes are immutable.
func (c *leaderCore) entries(lo, hi uint64, maxBytes int) ([][]byte, bool) {
	if len(c.inflight) == 0 || lo < c.inflight[0].lsn || lo > hi || lo > c.last {
		return nil, false
	}
	var out [][]byte
	size := 0
	for _, p := range c.inflight[lo-c.inflight[0].lsn:] {
		if p.lsn > hi || (len(out) > 0 && size+len(p.raw) > maxBytes) {
			break
		}
		out = append(out, p.raw)
		size += len(p.raw)
	}
	return out, true
}

// holdAppend is adaptive group commit: it reports whether the Append of
// the entries waiting, if any, should wait for more writes. It waits while
// writers are expected back — those answered that have not written again
// (returning) and those whose entries are durable but not yet answered
// (unanswered): in a closed loop each sends its next write once answered —
// and for at most half an append's cost, capped by maxAppendDelay; so an
// idle system, a lone client or a batch that every expected writer has
// joined never waits. A hold that runs out (AppendDue) forgets the writers
// that did not come back. The hold is counted from when it began, and
// again from when writers are answered while it runs (extendHold). A batch held is handed out by the Propose of the
// last writer expected or by AppendDue.
//
// Counting the answered writers matters: counting only the unanswered
// ones, the first writer back after a group was applied went out alone
// and the rest formed the next group, so a closed loop of C writers made
// groups of about C/2 (TestGroupCommitClosedLoop).
//
// It is called with nothing waiting too (from Appended): then the hold
// keeps a commit LSN that is the streams' only news for the next batch
// (queueSends), one message per follower per group instead of two.
func (c *leaderCore) holdAppend(unanswered int) bool {
	if c.cfg.maxAppendDelay <= 0 || c.appendCost == 0 || c.returning+unanswered == 0 {
		return false
	}
	if c.appendDue == 0 {
		c.appendDue = c.now + min(c.appendCost/2, c.cfg.maxAppendDelay)
		c.ready.AppendAt = c.appendDue
	}
	return c.now < c.appendDue
}

// extendHold restarts a running hold (holdAppend) from now when writers
// were just answered: they can only come back from now on, and a hold
// counted from the Appended that made their entries durable had spent
// the apply and the replies before they could (under load, most of it:
// the hold ran out as they came, and the writers of one group formed
// the next group but one, two groups per round of writers where one
// would do, each with its fsync and a message per follower:
// TestGroupCommitSlowAnswers). It never holds longer than holdAppend
// would from now.
func (c *leaderCore) extendHold() {
	if c.returning == 0 || c.appendDue == 0 || c.appending > 0 {
		return
	}
	if due := c.now + min(c.appendCost/2, c.cfg.maxAppendDelay); due > c.appendDue {
		c.appendDue = due
		c.ready.AppendAt = due
	}
}

// NoteAppendCost records, at time now, that a durable append took took
// nanoseconds. Call it before Appended.
func (c *leaderCore) NoteAppendCost(now, took int64) {
	c.now = max(c.now, now)
	if c.appendCost == 0 {
		c.appendCost = took
	} else {
		c.appendCost += (took - c.appendCost) / 8
	}
}

// AppendDue advances the clock to now and hands out an Append that was
// held: the driver calls it when AppendAt has come, by its own timer, so
// it does not hold again even if now lags AppendAt.
func (c *leaderCore) AppendDue(now int64) {
	c.now = max(c.now, now)
	if c.appending > 0 || c.appendDue == 0 {
		return
	}
	c.returning = 0
	if start := len(c.inflight) - int(c.last-c.durable); start < len(c.inflight) {
		c.handOutAppend(start)
	} else {
		c.appendDue = 0
		c.queueSends(false)
	}
}

// Appended records that the Append batch through lsn is durable.
func (c *leaderCore) Appended(lsn uint64) {
	if c.appending == 0 || lsn != c.durable+uint64(c.appending) {
		panic("replication: Appended without a matching Append")
	}
	c.durable = lsn
	c.appending = 0
	// The next batch is handed out (and sent) with the new commit LSN, so
	// its entries and the commit that lets followers apply the last batch
	// travel in one message per follower.
	c.raiseCommit()
	c.maybeAppend()
	c.advanceCommit()
}

// Applied records that the Apply batch through lsn is applied, at time
// now.
func (c *leaderCore) Applied(lsn uint64, now int64) {
	if c.applying == 0 || c.inflight[c.applying-1].lsn != lsn {
		panic("replication: Applied without a matching Apply")
	}
	c.now = max(c.now, now)
	batch := c.inflight[:c.applying]
	for _, p := range batch {
		c.inflightBytes -= int64(len(p.raw))
		if p.writer && !p.answered {
			p.answered = true
			c.ready.Acked = append(c.ready.Acked, p)
			c.returning++
		}
	}
	c.inflight = c.inflight[c.applying:]
	c.applying = 0
	c.applied = lsn
	c.extendHold()
	if !c.readable && c.applied >= c.startLSN {
		c.readable = true
		c.ready.Readable = true
	}
	c.checkWaits(0)
	c.maybeApply()
}

// advanceCommit moves the commit point by the mode's rule, then hands out
// what it allows to apply and to send.
func (c *leaderCore) advanceCommit() {
	c.raiseCommit()
	c.maybeApply()
	c.queueSends(false)
}

// raiseCommit moves the commit point by the mode's rule; it never passes
// the leader's durable LSN (commit.LSN).
func (c *leaderCore) raiseCommit() {
	if cl := commit.LSN(c.cfg.mode, c.durable, c.followerDurables(), c.syncSet); cl > c.commit {
		c.commit = cl
	}
}

// followerDurables is every known follower's durable LSN, for commit.LSN.
func (c *leaderCore) followerDurables() []commit.Follower {
	out := make([]commit.Follower, 0, len(c.followers))
	for _, f := range c.followers {
		out = append(out, commit.Follower{ID: f.info.NodeID, Durable: f.durable})
	}
	return out
}

// SetSyncSet replaces the sync set: the followers whose acknowledgements
// count in sync and semisync. The control plane publishes a set in etcd
// before the leader is given it, so every acknowledged write is durable on
// a member of the set etcd holds. A smaller set can only commit more, so
// the commit point is recomputed at once.
func (c *leaderCore) SetSyncSet(ids []string) {
	c.syncSet = slices.Clone(ids)
	c.advanceCommit()
}

// SetMode changes the commit rule (a mode change at run time). Entries
// already committed stay committed: a stricter mode never takes back an
// acknowledgement, it only holds later writes to more.
func (c *leaderCore) SetMode(m commit.Mode) {
	c.cfg.mode = m
	c.advanceCommit()
}

// maybeApply hands out the committed, unapplied entries when no Apply
// batch is out.
func (c *leaderCore) maybeApply() {
	if c.applying > 0 {
		return
	}
	n := 0
	for n < len(c.inflight) && c.inflight[n].lsn <= c.commit {
		n++
	}
	if n > 0 {
		c.ready.Apply = slices.Clip(c.inflight[:n])
		c.applying = n
	}
}

// queueSends hands out a send to every connected follower that has not
// been sent everything handed out in an Append (sendable) and the commit
// LSN, and, when heartbeat is set, a heartbeat to those sent nothing for
// the heartbeat interval. While a hold runs (holdAppend: an Append held
// for more writes, or none yet while writers are expected back), a commit
// LSN that is the only news waits for the next batch, which goes out
// within the hold and carries it, one message per follower instead of
// two; AppendDue sends it alone if no batch came.
func (c *leaderCore) queueSends(heartbeat bool) {
	through := c.sendable()
	held := c.appendDue != 0 && c.appending == 0
	for _, f := range c.followers {
		if f.session == 0 {
			continue
		}
		// A heartbeat on the timer clears a lent one's slack (Beat); news
		// keeps it, so that no send moves a stream's due heartbeat
		// earlier than the tick armed for it.
		beat := heartbeat && c.now >= c.beatDue(f)
		if f.sentThrough < through || (f.sentCommit < c.commit && !held) || beat {
			f.sentThrough, f.sentCommit, f.lastSent = through, c.commit, c.now
			f.lent = f.lent && !beat
			c.ready.Send = append(c.ready.Send, leaderSend{NodeID: f.info.NodeID, Session: f.session, Through: through, Commit: c.commit})
		}
	}
}

// CommitForRead is the commit LSN to answer a read waiting on the
// follower's stream session with (Progress.read_waits, answered by
// Leader.pairReadLocked on a message of its own), and records it as
// sent: the core's commit now, after the read's question arrived. While
// a hold runs, queueSends keeps a commit LSN that is a stream's only
// news for the next batch; a read's answer goes out at once anyway, so
// it carries the commit rather than wait out the hold for that batch (at
// lag 0 under a steady write load the read's round trip otherwise
// waited for the next group's hand-out). False: no such stream. The
// caller checks that the commit has reached this leadership's start.
func (c *leaderCore) CommitForRead(session uint64) (uint64, bool) {
	for _, f := range c.followers {
		if f.session == session {
			f.sentCommit = max(f.sentCommit, c.commit)
			return c.commit, true
		}
	}
	return 0, false
}

// FollowerJoined records a follower that opened a stream from durable (its
// handshake found its log consistent with ours through durable) at time
// now, and returns the stream's session. A follower may come back lower
// than it was (truncated, re-seeded): what it says now is the truth.
func (c *leaderCore) FollowerJoined(info FollowerInfo, durable uint64, now int64) uint64 {
	c.now = max(c.now, now)
	c.nextSession++
	f := c.follower(info.NodeID)
	if f == nil {
		f = &followerState{}
		i, _ := slices.BinarySearchFunc(c.followers, info.NodeID, func(f *followerState, id string) int { return strings.Compare(f.info.NodeID, id) })
		c.followers = slices.Insert(c.followers, i, f)
	} else if f.session != 0 {
		// Its other stream is still open here: the follower gave it up,
		// or that stream's handler joined late. Only the newest session
		// is sent to, so the other is closed: left open it would get
		// nothing, not even heartbeats, and a follower reading it would
		// wait for ever. (The late join is a handshake that stalled
		// between its answer and its join while the follower's end of
		// it broke and the follower reconnected: a session newer than
		// the live one, on a dead stream.)
		c.ready.Disconnect = append(c.ready.Disconnect, leaderSend{NodeID: info.NodeID, Session: f.session})
	}
	*f = followerState{info: info, session: c.nextSession, durable: durable, applied: min(f.applied, durable), lastSeen: now,
		sentThrough: durable, lastSent: now, leaseStamp: f.leaseStamp}
	c.tickBy(now + min(c.cfg.heartbeat, c.cfg.followerTimeout))
	delete(c.pins, info.NodeID)
	c.advanceCommit()
	c.checkWaits(0)
	return f.session
}

// FollowerProgress records a progress report on the stream session, with
// the lease stamp it echoes (0: none). Within a stream a follower's log
// only grows, so a report lower than one before it (delivered out of
// order) lowers nothing. A report from a stream that is no longer the
// follower's (it reconnected) counts only for its echo: the stamp came
// from this leadership all the same. A removed follower's is ignored.
func (c *leaderCore) FollowerProgress(id string, session, durable, applied uint64, leaseStamp, now int64) {
	f := c.follower(id)
	if f == nil {
		return
	}
	f.leaseStamp = max(f.leaseStamp, leaseStamp)
	if f.session != session {
		return
	}
	f.durable = max(f.durable, durable)
	f.applied = min(max(f.applied, applied), f.durable)
	f.lastSeen = now
	c.now = max(c.now, now)
	c.advanceCommit()
	c.checkWaits(0)
}

// FollowerLeft records that the stream session ended. The follower is
// still known (its durable log still counts, and retention keeps what it
// needs) until FollowerTimeout passes without news of it.
func (c *leaderCore) FollowerLeft(id string, session uint64, now int64) {
	f := c.follower(id)
	if f == nil || f.session != session {
		return
	}
	f.session = 0
	f.lastSeen = now
	c.tickBy(now + c.cfg.followerTimeout)
	c.checkWaits(0)
}

// RemoveFollower forgets a follower at once (an operator removed it): it
// stops counting for commit, WAIT and retention, and its stream, if any,
// is closed. It reports whether the follower was known.
func (c *leaderCore) RemoveFollower(id string) bool {
	f := c.follower(id)
	ok := f != nil
	_, pinned := c.pins[id]
	if f != nil && f.session != 0 {
		c.ready.Disconnect = append(c.ready.Disconnect, leaderSend{NodeID: id, Session: f.session})
	}
	c.followers = slices.DeleteFunc(c.followers, func(f *followerState) bool { return f.info.NodeID == id })
	delete(c.pins, id)
	c.checkWaits(0)
	return ok || pinned
}

// ConfirmedBy returns the earliest, over the followers ids, of the latest
// lease stamp each has echoed, and false if one of them is not known or
// has echoed nothing to this leadership (or ids is empty). Every one of
// them heard this leader at or after that stamp.
func (c *leaderCore) ConfirmedBy(ids []string) (int64, bool) {
	if len(ids) == 0 {
		return 0, false
	}
	var oldest int64 = 1<<63 - 1
	for _, id := range ids {
		f := c.follower(id)
		if f == nil || f.leaseStamp == 0 {
			return 0, false
		}
		oldest = min(oldest, f.leaseStamp)
	}
	return oldest, true
}

// PinSnapshot keeps the log after the applied LSN for follower id, which
// is about to be sent a snapshot (taken after this call, so at the applied
// LSN or later), and returns the pinned LSN.
func (c *leaderCore) PinSnapshot(id string, now int64) uint64 {
	c.pins[id] = pin{lsn: c.applied, since: now}
	c.tickBy(now + c.cfg.followerTimeout)
	return c.applied
}

// Wait registers w at time now. A wait for room with no deadline gets
// the write timeout from now. A wait already met is handed back in the
// next Ready; one whose deadline passes is handed back, not met, by the
// Tick that finds it passed.
func (c *leaderCore) Wait(w *leaderWait, now int64) {
	c.now = max(c.now, now)
	if w.kind == waitRoom && w.deadline == 0 {
		w.deadline = now + c.cfg.writeTimeout
	}
	if w.deadline != 0 {
		c.tickBy(w.deadline)
	}
	c.waits = append(c.waits, w)
	c.checkWaits(0)
}

// DeferSync reports whether no one waits for a follower's durable report:
// commit needs only the leader's durability (async) and no WAIT waits.
// The sends made while it holds say so (Append.defer_sync), and a follower
// may hold what they carry a moment to persist it with what follows in
// one fsync (FollowerConfig.SyncHold).
func (c *leaderCore) DeferSync() bool {
	if c.cfg.mode.Kind != commit.Async {
		return false
	}
	for _, w := range c.waits {
		if w.kind == waitDurable {
			return false
		}
	}
	return true
}

// CancelWait drops w (its caller gave up); a WAIT's count is how many
// followers had made its LSN durable by then.
func (c *leaderCore) CancelWait(w *leaderWait) {
	if i := slices.Index(c.waits, w); i >= 0 {
		c.waits = slices.Delete(c.waits, i, i+1)
	}
	if w.kind == waitDurable {
		w.count = c.durableCount(w.lsn)
	}
}

// durableCount is how many connected followers have made lsn durable.
func (c *leaderCore) durableCount(lsn uint64) int {
	n := 0
	for _, f := range c.followers {
		if f.session != 0 && f.durable >= lsn {
			n++
		}
	}
	return n
}

// checkWaits hands back the waits that are met or, when now is not 0,
// whose deadline passed.
func (c *leaderCore) checkWaits(now int64) {
	kept := c.waits[:0]
	for _, w := range c.waits {
		switch w.kind {
		case waitApplied:
			w.met = c.applied >= w.lsn
		case waitDurable:
			w.count = c.durableCount(w.lsn)
			w.met = w.count >= w.n
		case waitRoom:
			w.met = c.HasRoom()
		}
		if w.met || (now != 0 && w.deadline != 0 && now >= w.deadline) {
			w.done = true
			c.ready.Waits = append(c.ready.Waits, w)
			continue
		}
		kept = append(kept, w)
	}
	clear(c.waits[len(kept):])
	c.waits = kept
}

// Tick advances the core's clock to now: writes past their timeout are
// answered, waits past their deadline end, idle streams get a heartbeat,
// followers unheard of for FollowerTimeout are forgotten, and about once
// per retention interval the log is trimmed to what is still needed
// (log describes the retained log).
func (c *leaderCore) Tick(now int64, log logExtent) {
	c.now = max(c.now, now)
	// Committed entries are a prefix of inflight; deadlines grow with LSN.
	for _, p := range c.inflight {
		if p.lsn <= c.commit || p.answered || !p.writer {
			continue
		}
		if now < p.deadline {
			break
		}
		p.answered = true
		c.ready.Expired = append(c.ready.Expired, p)
	}
	c.checkWaits(now)
	c.followers = slices.DeleteFunc(c.followers, func(f *followerState) bool {
		if now-f.lastSeen < c.cfg.followerTimeout {
			return false
		}
		if f.session != 0 {
			// Connected but silent that long: its stream is dead even
			// if the connection is not.
			c.ready.Disconnect = append(c.ready.Disconnect, leaderSend{NodeID: f.info.NodeID, Session: f.session})
		}
		return true
	})
	for id, p := range c.pins {
		if now-p.since >= c.cfg.followerTimeout {
			delete(c.pins, id)
		}
	}
	c.advanceCommit()
	c.queueSends(true)
	if now-c.lastRetention >= c.cfg.retentionEvery {
		c.lastRetention = now
		c.ready.TrimBefore = c.retainFrom(log)
	}
	c.armTick()
}

// nextTick is the earliest time at which Tick has something to do: the
// first writer's timeout (deadlines grow with LSN), a wait's deadline, a
// connected follower's heartbeat, a follower's or a pin's timeout, the
// next retention run.
func (c *leaderCore) nextTick() int64 {
	next := c.lastRetention + c.cfg.retentionEvery
	for _, p := range c.inflight {
		if p.lsn <= c.commit || p.answered || !p.writer {
			continue
		}
		next = min(next, p.deadline)
		break
	}
	for _, w := range c.waits {
		if w.deadline != 0 {
			next = min(next, w.deadline)
		}
	}
	for _, f := range c.followers {
		if f.session != 0 {
			next = min(next, c.beatDue(f))
		}
		next = min(next, f.lastSeen+c.cfg.followerTimeout)
	}
	for _, p := range c.pins {
		next = min(next, p.since+c.cfg.followerTimeout)
	}
	return next
}

// beatDue is when f's stream is due a heartbeat: a heartbeat interval
// after its last message, plus beatSlack after one that Beat lent.
func (c *leaderCore) beatDue(f *followerState) int64 {
	if f.lent {
		return f.lastSent + c.cfg.heartbeat + c.cfg.heartbeat/beatSlack
	}
	return f.lastSent + c.cfg.heartbeat
}

// beatEarly and beatSlack shape Beat, as fractions of the heartbeat
// interval: a stream sent nothing for at least 1/beatEarly of it gets its
// heartbeat early, and is next due 1/beatSlack of it later than usual.
const (
	beatEarly = 2
	beatSlack = 4
)

// Beat, at time now, sends the heartbeat of every connected stream that
// has gone at least half a heartbeat interval without a message, early:
// the driver is awake anyway (an orchestrator's probe, every interval on
// the leader), and lends that wake-up, so that an idle leader's heartbeats
// cost no wake-up of their own (bench/idle.sh). A stream so served is due
// its next heartbeat a quarter interval later than usual, so that the
// next probe, about an interval later, comes before its timer. So is a
// stream that had a message less than half an interval ago (its timer
// went just before this probe): without that, timer and probe would keep
// that order for ever, each probe finding a heartbeat just sent; with it,
// the next probe sends it, or the one after. A stream is so never silent
// for more than 1.25 intervals; a heartbeat on the timer (no probe came)
// clears the slack. It hands out the TickAt that the later deadlines make.
func (c *leaderCore) Beat(now int64) {
	c.now = max(c.now, now)
	moved := false
	for _, f := range c.followers {
		if f.session == 0 {
			continue
		}
		if c.now-f.lastSent < c.cfg.heartbeat/beatEarly {
			moved = moved || !f.lent
			f.lent = true
			continue
		}
		f.sentThrough, f.sentCommit = c.sendable(), c.commit
		f.lastSent, f.lent = c.now, true
		c.ready.Send = append(c.ready.Send, leaderSend{NodeID: f.info.NodeID, Session: f.session, Through: f.sentThrough, Commit: f.sentCommit})
		moved = true
	}
	if moved {
		c.armTick()
	}
}

// SetHeartbeat makes d (ns) the longest an idle stream goes without a
// message from now on. A shorter interval may make a heartbeat due before
// the tick armed: it hands out that earlier TickAt. A longer one takes
// effect at the next tick (a tick before it finds nothing due, harmless).
func (c *leaderCore) SetHeartbeat(d int64) {
	if d <= 0 || d == c.cfg.heartbeat {
		return
	}
	c.cfg.heartbeat = d
	c.tickBy(c.nextTick())
}

// armTick hands out the next tick's time (after a Tick, or at the start).
func (c *leaderCore) armTick() {
	c.tickAt = c.nextTick()
	c.ready.TickAt = c.tickAt
}

// tickBy makes sure the driver ticks the core no later than t: an input
// created a deadline, which may come before the tick armed. A deadline
// after it costs nothing here, since that tick arms the next one.
func (c *leaderCore) tickBy(t int64) {
	if t < c.tickAt {
		c.tickAt = t
		c.ready.TickAt = t
	}
}

// logExtent describes the retained log: base is the LSN before its first
// entry, count and bytes its size.
type logExtent struct {
	base, count, bytes int64
}

// retainFrom applies the retention rule and returns the LSN to trim
// before (0: keep everything): keep every entry a known follower or a
// pinned snapshot still needs, and every unapplied one; since followers
// are only known once they connect (a leader that restarted has not heard
// from them yet), keep the newest retainMinBytes regardless. Past the
// cap, drop the oldest entries even if a follower needs them: that
// follower is re-seeded from a snapshot. Sizes are estimated from the
// average entry size. So the log is as long as the slowest follower
// needs, not as long as the cap allows.
func (c *leaderCore) retainFrom(log logExtent) uint64 {
	capBytes := c.cfg.retainBytes
	if log.count == 0 || log.bytes <= c.cfg.retainMinBytes {
		return 0
	}
	needed := c.applied
	for _, f := range c.followers {
		needed = min(needed, f.durable)
	}
	for _, p := range c.pins {
		needed = min(needed, p.lsn)
	}
	// cut(limit) is the LSN to trim through so that about limit bytes remain.
	cut := func(limit int64) uint64 {
		return uint64(log.base + log.count - log.count*limit/log.bytes)
	}
	keep := min(needed, cut(c.cfg.retainMinBytes))
	if log.bytes > capBytes {
		keep = max(keep, min(cut(capBytes), c.applied))
	}
	if keep <= uint64(log.base) {
		return 0
	}
	return keep
}

// Ready returns the work created since the last call and clears it.
func (c *leaderCore) Ready() leaderReady {
	rd := c.ready
	c.ready = leaderReady{}
	return rd
}

// Fail ends the leadership: every writer and wait still pending is handed
// back in the returned Ready to be answered with the leader's error.
func (c *leaderCore) Fail() leaderReady {
	rd := c.Ready()
	rd.Append, rd.Apply, rd.Send, rd.Acked = nil, nil, nil, nil
	for _, p := range c.inflight {
		if p.writer && !p.answered {
			p.answered = true
			rd.Expired = append(rd.Expired, p)
		}
	}
	for _, w := range c.waits {
		if w.kind == waitDurable {
			w.count = c.durableCount(w.lsn)
		}
		w.done = true
	}
	rd.Waits = append(rd.Waits, c.waits...)
	c.inflight, c.waits = nil, nil
	return rd
}

// status is the positions, the writes in flight and every known
// follower, as Leader.Status shows them (without the epoch and the lag,
// which the driver knows).
func (c *leaderCore) status() Status {
	return Status{Durable: c.durable, Commit: c.commit, Applied: c.applied,
		InFlight: len(c.inflight), InFlightBytes: c.inflightBytes, Followers: c.followerList()}
}

// followerList is every known follower, by id, as status shows it.
func (c *leaderCore) followerList() []FollowerProgress {
	out := make([]FollowerProgress, 0, len(c.followers))
	for _, f := range c.followers {
		out = append(out, FollowerProgress{
			NodeID: f.info.NodeID, RESPAddr: f.info.RESPAddr, HTTPAddr: f.info.HTTPAddr,
			Connected: f.session != 0, DurableLSN: f.durable, AppliedLSN: f.applied, LastSeen: time.Unix(0, f.lastSeen),
		})
	}
	return out
}

// follower returns the follower with id, or nil.
func (c *leaderCore) follower(id string) *followerState {
	for _, f := range c.followers {
		if f.info.NodeID == id {
			return f
		}
	}
	return nil
}

// entriesOf returns the proposals' decoded entries, for the driver's Apply.
func entriesOf(ps []*proposal) []logrec.Entry {
	out := make([]logrec.Entry, len(ps))
	for i, p := range ps {
		out[i] = p.entry
	}
	return out
}
