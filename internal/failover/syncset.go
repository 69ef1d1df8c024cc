package failover

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
)

// The leader manages its own sync set (Patroni's synchronous mode keeps
// the same order), so that every acknowledged write is durable on at least
// one member of the set etcd holds for the current epoch:
//
//   - to add a member, publish the larger set in etcd first (a compare and
//     swap on the epoch), then count the member's acknowledgements; a member
//     is added only once it has caught up to the commit LSN;
//   - to remove one, stop counting it first, note the commit LSN c then,
//     and publish the smaller set only once every remaining member has made
//     c durable (every write acknowledged while it still counted is at or
//     below c).
//
// semisync wants one healthy member, sync every connected follower, and
// either at least sync-min. A member the leader has not heard from for
// SyncMemberTimeout is replaced by the most caught-up follower (writes
// resume within about that long); the last member is never dropped without
// a replacement (writes then wait, and answer NOREPLICAS after the write
// timeout: sync-fallback never). With sync-fallback "after D", D with no
// member degrades the leader to async, loudly, until a follower has caught
// up: it is then published as the set, and the mode restored.
//
// SyncSet is that policy as a state machine: the agent steps it every
// 50 ms with what the leader reports (SyncInput) and carries out the
// actions it returns, in order (SyncStep); once it is settled
// (SyncStep.Until), only when a follower stream opens or closes, the
// topology changes, or Until comes.

// SyncMemberTimeout: a follower not heard from for this long is not there
// (a paused process keeps its connection open).
const SyncMemberTimeout = 500 * time.Millisecond

// SyncFollower is one follower as the leader reports it.
type SyncFollower struct {
	ID        string
	Connected bool
	LastSeen  time.Time // the leader's clock
	Durable   uint64
}

// SyncInput is what one step sees: the topology's rules and set, and the
// leader's state.
type SyncInput struct {
	Now time.Time
	// Mode is the mode in force (the topology's, else the node's own);
	// Fallback and SyncMin the topology's; Published its sync set.
	Mode      commit.Mode
	Fallback  coord.Fallback
	SyncMin   int
	Published []string
	// Commit is the leader's commit LSN; Followers its follower table.
	Commit    uint64
	Followers []SyncFollower
	// LocalMode and LocalSet are what the leader applies now.
	LocalMode commit.Mode
	LocalSet  []string
}

// SyncActionKind says what a SyncAction asks of the driver.
type SyncActionKind int

const (
	// Publish: write Set as the sync set of the epoch in etcd (compare on
	// the epoch) and report the outcome with SyncSet.Published. If it
	// fails, the step's later actions are not carried out.
	Publish SyncActionKind = iota
	// Count: the leader counts Set's acknowledgements from now
	// (Leader.SetSyncSet).
	Count
	// SetMode: the leader applies Mode (Leader.SetMode).
	SetMode
	// Record: record an event of kind Event with Text (best effort).
	Record
	// Log: log Text at Level.
	Log
)

// SyncAction is one thing to carry out.
type SyncAction struct {
	Kind  SyncActionKind
	Set   []string
	Mode  commit.Mode
	Event string
	Text  string
	Level slog.Level
}

func (a SyncAction) String() string {
	switch a.Kind {
	case Publish:
		return fmt.Sprintf("publish %v", a.Set)
	case Count:
		return fmt.Sprintf("count %v", a.Set)
	case SetMode:
		return "mode " + a.Mode.String()
	case Record:
		return "event " + a.Event + ": " + a.Text
	}
	return "log " + strings.ToLower(a.Level.String()) + ": " + a.Text
}

// SyncStep is one step's actions, to carry out in order. The order is the
// policy's invariant: a Publish that adds members comes before the Count
// that includes them; a Count that drops members comes before (and in an
// earlier step than) the Publish that drops them.
type SyncStep struct {
	Actions []SyncAction
	// Until, if not zero, says the policy is settled: the step had
	// nothing to do and nothing under way (no member missing, no removal
	// or restoration pending), so no step before Until can have anything
	// to do either unless the followers' streams open or close or the
	// topology changes (the driver steps at once on those). Commit and
	// durable positions matter only while something is under way. Zero:
	// step again at the usual cadence. So an idle leader's agent wakes
	// for the policy about twice a second, not twenty times.
	Until time.Time
}

// SyncSettledMax bounds Until: a settled policy is still stepped this
// often, should an input it did not foresee have changed.
const SyncSettledMax = time.Second

// SyncSet is one leadership's sync-set policy. Its zero value is not
// usable: NewSyncSet.
type SyncSet struct {
	self    string
	started bool
	// removing: members no longer counted locally, still published, and
	// the commit LSN every remaining member must reach before the smaller
	// set is published.
	removing  []string
	removeAt  uint64
	lostSince map[string]time.Time
	// unmetSince: since when no member is there and none can be added;
	// degraded: sync-fallback has switched the leader to async.
	unmetSince time.Time
	degraded   bool
	short      bool
	// onPublished is what a successful Publish of this step completes.
	onPublished func()
}

// NewSyncSet is the policy of a leadership of node self.
func NewSyncSet(self string) *SyncSet {
	return &SyncSet{self: self, lostSince: map[string]time.Time{}}
}

// Degraded reports whether sync-fallback has switched the leader to async.
func (s *SyncSet) Degraded() bool { return s.degraded }

// Short reports whether fewer sync-set members than sync-min are there
// (writes are refused at once).
func (s *SyncSet) Short() bool { return s.short }

// Published reports the outcome of the step's Publish: ok completes what
// it started; a failure (the epoch moved on, etcd unreachable) leaves the
// state as it was, to be tried again on a later step.
func (s *SyncSet) Published(ok bool) {
	if ok && s.onPublished != nil {
		s.onPublished()
	}
	s.onPublished = nil
}

// Step runs one step of the policy.
func (s *SyncSet) Step(in SyncInput) SyncStep {
	var st SyncStep
	add := func(a SyncAction) { st.Actions = append(st.Actions, a) }
	logf := func(level slog.Level, format string, args ...any) {
		add(SyncAction{Kind: Log, Level: level, Text: fmt.Sprintf(format, args...)})
	}
	s.onPublished = nil
	// A follower counts as there if its stream is up and it reported
	// lately: a paused process keeps its connection open.
	connected := map[string]uint64{}
	for _, f := range in.Followers {
		if f.Connected && in.Now.Sub(f.LastSeen) < SyncMemberTimeout {
			connected[f.ID] = f.Durable
		}
	}
	// best is the most caught-up connected follower outside skip that
	// holds the commit LSN (ties: the lower id).
	best := func(skip []string) string {
		id, lsn := "", uint64(0)
		for _, f := range in.Followers {
			d, ok := connected[f.ID]
			if !ok || slices.Contains(skip, f.ID) || d < in.Commit {
				continue
			}
			if id == "" || d > lsn || (d == lsn && f.ID < id) {
				id, lsn = f.ID, d
			}
		}
		return id
	}

	if s.degraded {
		if !in.Mode.NeedsSyncSet() {
			// The operator left the sync modes: nothing to restore.
			s.degraded, s.unmetSince = false, time.Time{}
		} else {
			// Restore once a follower has caught up: published as the
			// set (before it counts), then the mode.
			b := best(nil)
			if b == "" {
				return st
			}
			set := []string{b}
			add(SyncAction{Kind: Publish, Set: set})
			add(SyncAction{Kind: Count, Set: set})
			add(SyncAction{Kind: SetMode, Mode: in.Mode})
			logf(slog.LevelWarn, "sync restored: %s caught up; mode %s, set %v", b, in.Mode, set)
			add(SyncAction{Kind: Record, Event: "sync-restored", Text: fmt.Sprintf("%s caught up: %s again", b, in.Mode)})
			s.onPublished = func() {
				s.degraded, s.unmetSince = false, time.Time{}
				s.lostSince = map[string]time.Time{}
			}
			return st
		}
	}
	if in.LocalMode != in.Mode {
		add(SyncAction{Kind: SetMode, Mode: in.Mode})
		logf(slog.LevelInfo, "mode %s", in.Mode)
	}
	if !in.Mode.NeedsSyncSet() {
		s.short = false
		if len(st.Actions) == 0 {
			st.Until = in.Now.Add(SyncSettledMax)
		}
		return st
	}
	local := in.LocalSet
	published := without(in.Published, s.self)
	if !s.started {
		// The published set of the epoch, less this node (it leads now).
		s.started = true
		local = published
		add(SyncAction{Kind: Count, Set: local})
	}

	// A removal under way: publish once the remaining members hold it.
	if len(s.removing) > 0 {
		for _, id := range local {
			if connected[id] < s.removeAt {
				return st
			}
		}
		add(SyncAction{Kind: Publish, Set: local})
		logf(slog.LevelInfo, "sync set shrunk: removed %v, set %v", s.removing, local)
		s.onPublished = func() { s.removing = nil }
		return st
	}
	if len(published) != len(in.Published) {
		// This node was a member of the set it now leads: publish
		// without it.
		add(SyncAction{Kind: Publish, Set: published})
		return st
	}

	var healthy, lost []string
	for _, id := range local {
		if _, ok := connected[id]; ok {
			delete(s.lostSince, id)
			healthy = append(healthy, id)
			continue
		}
		if _, ok := s.lostSince[id]; !ok {
			s.lostSince[id] = in.Now
		}
		if in.Now.Sub(s.lostSince[id]) >= SyncMemberTimeout {
			lost = append(lost, id)
		}
	}
	s.short = in.SyncMin > 0 && len(healthy) < in.SyncMin
	want := max(1, in.SyncMin)
	if in.Mode.Kind == commit.Sync {
		want = max(want, len(connected))
	}
	// Add the most caught-up follower outside the set while short of it.
	if len(healthy) < want {
		if b := best(local); b != "" {
			next := append(slices.Clone(local), b)
			slices.Sort(next)
			add(SyncAction{Kind: Publish, Set: next})
			add(SyncAction{Kind: Count, Set: next})
			logf(slog.LevelInfo, "sync set grew: added %s, set %v", b, next)
			s.unmetSince = time.Time{}
			return st
		}
	}
	if len(healthy) == 0 {
		if s.unmetSince.IsZero() {
			s.unmetSince = in.Now
		}
		if d := in.Fallback.After; d > 0 && in.Now.Sub(s.unmetSince) >= d {
			s.degraded = true
			add(SyncAction{Kind: SetMode, Mode: commit.Mode{Kind: commit.Async}})
			logf(slog.LevelError, "SYNC FALLBACK: no sync-set member for the sync-fallback delay (%v, mode %s, set %v); writes are now acknowledged in async mode and may be lost on failover", d, in.Mode, local)
			add(SyncAction{Kind: Record, Event: "sync-fallback", Text: fmt.Sprintf("no member of %v for %v: degraded to async", local, d)})
			return st
		}
	} else {
		s.unmetSince = time.Time{}
	}
	// Drop lost members once others remain to hold the writes: stop
	// counting them now, publish the smaller set on a later step.
	if len(lost) > 0 && len(healthy) > 0 {
		next := slices.DeleteFunc(slices.Clone(local), func(id string) bool { return slices.Contains(lost, id) })
		s.removing, s.removeAt = lost, in.Commit
		add(SyncAction{Kind: Count, Set: next})
		logf(slog.LevelInfo, "sync set shrinking: removing %v until lsn %d", lost, in.Commit)
	}
	if len(st.Actions) == 0 && len(healthy) >= want && len(s.lostSince) == 0 && !staleConnected(in, connected) {
		// Settled: the next thing time can change is a member going
		// unheard of for SyncMemberTimeout.
		until := in.Now.Add(SyncSettledMax)
		for _, f := range in.Followers {
			if slices.Contains(healthy, f.ID) {
				until = minTime(until, f.LastSeen.Add(SyncMemberTimeout))
			}
		}
		st.Until = until
	}
	return st
}

// staleConnected reports whether a follower's stream is open while it
// is not counted as there (a paused process): if it reports again it is
// there without a stream opening, so a policy that wants it (sync) must
// keep stepping.
func staleConnected(in SyncInput, connected map[string]uint64) bool {
	for _, f := range in.Followers {
		if _, ok := connected[f.ID]; f.Connected && !ok {
			return true
		}
	}
	return false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func without(ids []string, id string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
}
