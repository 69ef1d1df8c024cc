package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/storage"
)

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	DB     *storage.DB
	NodeID string
	Mode   commit.Mode
	Logger *slog.Logger
	// Now is the leader's wall clock (entry times, expiry decisions).
	Now func() time.Time
	// Heartbeat is how often an idle stream carries an empty append.
	Heartbeat time.Duration
	// MaxBatchBytes bounds one Append message.
	MaxBatchBytes int
	// RetainBytes caps the retained log; followers behind it are re-seeded.
	RetainBytes int64
	// ChunkBytes bounds one snapshot chunk.
	ChunkBytes int
	// WriteTimeout bounds how long a write waits to be committed; after it
	// the write fails with ErrWriteTimeout. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxInFlight and MaxInFlightBytes bound the writes that are sequenced
	// but not yet committed (count and encoded bytes). A write past either
	// bound waits for room, up to WriteTimeout, then fails with
	// ErrOverloaded. 0 means DefaultMaxInFlight / DefaultMaxInFlightBytes.
	MaxInFlight      int
	MaxInFlightBytes int64
	// FollowerTimeout is how long a follower may stay unheard of before
	// the leader forgets it: it stops pinning log retention and stops
	// counting for WAIT, status and metrics. 0 means
	// DefaultFollowerTimeout.
	FollowerTimeout time.Duration
	// Fatal is called when the process must stop because going on could
	// break a promise (persisting a higher epoch failed); a supervisor
	// restarts it. nil means log the error and exit with status 2.
	Fatal func(error)
	// Buggify enables deliberate faults for harness tests; never in production.
	Buggify Buggify
}

// Defaults for LeaderConfig's zero values.
const (
	DefaultWriteTimeout     = 5 * time.Second
	DefaultMaxInFlight      = 10000
	DefaultMaxInFlightBytes = 64 << 20
	DefaultFollowerTimeout  = time.Minute
)

// Buggify names deliberate faults that tests switch on to prove that the
// chaos harness catches them.
type Buggify struct {
	// AckBeforeDurable acknowledges writes before their entry is in the log
	// and delays the log write: a kill -9 loses acknowledged writes.
	AckBeforeDurable bool
	// FollowerSkipEntry makes a follower drop the operations of every 50th
	// entry it applies, and from then on every operation on the keys those
	// touched: replicas diverge, and a later write cannot heal it.
	FollowerSkipEntry bool
}

// FollowerProgress is what the leader knows about one follower.
type FollowerProgress struct {
	NodeID     string
	RESPAddr   string
	HTTPAddr   string
	Connected  bool
	DurableLSN uint64
	AppliedLSN uint64
	LastSeen   time.Time
	// LagSeconds is the age, on the leader's clock, of the oldest entry the
	// follower has not applied (0 when it has applied everything durable).
	LagSeconds float64
}

// Leader is the write side of a leader node. See the package comment.
type Leader struct {
	cfg   LeaderConfig
	log   *slog.Logger
	epoch uint64

	// startLSN is the last durable LSN when this leadership began. Entries
	// up to it may have been acknowledged by an earlier leadership (this
	// node before a crash, under a commit rule that needed followers), so
	// reads wait until they are applied; readable records that they are.
	startLSN uint64
	readable atomic.Bool

	// seqMu serialises proposals: the overlay, LSN assignment and queue.
	seqMu   sync.Mutex
	nextLSN uint64
	overlay map[string]overlayValue
	queue   []*proposal
	stopped bool

	wake      chan struct{} // committer wake-up, capacity 1
	applyWake chan struct{} // applier wake-up, capacity 1

	// applyMu serialises advance: commit evaluation and apply.
	applyMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	durable   uint64
	commitLSN uint64
	applied   uint64
	unapplied []*proposal // durable, not yet applied, in LSN order
	followers map[string]*FollowerProgress
	changed   chan struct{} // closed when durable, commit or applied change
	// progressed is closed when a follower's progress or connection
	// changes. It is apart from changed so that the two progress reports
	// per group commit do not wake every follower stream for nothing.
	progressed chan struct{}
	err        error     // set when the leader stops
	tail       tailCache // recent durable entries, for follower streams and lag

	done chan struct{}
	wg   sync.WaitGroup
}

type overlayValue struct {
	lsn     uint64
	val     commands.Value
	deleted bool
}

type proposal struct {
	lsn   uint64
	entry logrec.Entry
	raw   []byte
	done  chan error // buffered; receives once
}

// NewLeader starts a leader on db at epoch. The caller has already recorded
// the epoch start in db (StartEpoch). Entries that are durable but not
// applied (the tail left by a crash or by following) are committed under the
// mode's rule as followers report them; under async they commit at once.
func NewLeader(cfg LeaderConfig, epoch uint64) (*Leader, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = 1 << 20
	}
	if cfg.RetainBytes == 0 {
		cfg.RetainBytes = 1 << 30
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	db := cfg.DB
	durable := db.Durable()
	l := &Leader{
		cfg:        cfg,
		log:        log.With("role", "leader", "epoch", epoch),
		epoch:      epoch,
		nextLSN:    durable.LSN + 1,
		startLSN:   durable.LSN,
		overlay:    make(map[string]overlayValue),
		wake:       make(chan struct{}, 1),
		applyWake:  make(chan struct{}, 1),
		durable:    durable.LSN,
		applied:    db.Applied(),
		commitLSN:  db.Applied(),
		followers:  make(map[string]*FollowerProgress),
		changed:    make(chan struct{}),
		progressed: make(chan struct{}),
		tail:       tailCache{maxBytes: tailBytes},
		done:       make(chan struct{}),
	}
	// Load the durable, unapplied tail so advance can apply it once committed.
	if l.applied < l.durable {
		raws, err := db.ReadLog(l.applied+1, l.durable, 1<<62)
		if err != nil {
			return nil, fmt.Errorf("replication: load unapplied tail: %w", err)
		}
		for _, raw := range raws {
			e, err := logrec.Decode(raw)
			if err != nil {
				return nil, fmt.Errorf("replication: load unapplied tail: %w", err)
			}
			p := &proposal{lsn: e.LSN, entry: e, raw: raw}
			l.unapplied = append(l.unapplied, p)
			l.addOverlay(p)
			l.tail.add(e.LSN, raw, e.TimeNs)
		}
	}
	if l.applied >= l.startLSN {
		l.readable.Store(true)
	}
	l.wg.Add(3)
	go l.committer()
	go l.applier()
	go l.retention()
	if err := l.advance(); err != nil {
		l.Close()
		return nil, err
	}
	l.log.Info("leading", "durable_lsn", l.durable, "applied_lsn", l.applied)
	return l, nil
}

// Epoch is the leader's epoch.
func (l *Leader) Epoch() uint64 { return l.epoch }

// Done is closed once the leader has begun to stop, by Close or by itself
// (it saw a higher epoch, or its storage failed); Err then says why.
func (l *Leader) Done() <-chan struct{} { return l.done }

// Err is why the leader stopped (ErrNotLeader after Close, ErrStaleEpoch
// after seeing a higher epoch, a storage error), or nil while it leads.
func (l *Leader) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close stops the leader: pending writes fail with ErrNotLeader (their
// outcome is unknown to the client: they may be durable and later commit).
func (l *Leader) Close() { l.stop(ErrNotLeader) }

func (l *Leader) stop(err error) {
	l.seqMu.Lock()
	if l.stopped {
		l.seqMu.Unlock()
		return
	}
	l.stopped = true
	queued := l.queue
	l.queue = nil
	l.seqMu.Unlock()
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	l.err = err
	waiting := l.unapplied
	l.broadcastLocked()
	l.mu.Unlock()
	for _, p := range append(queued, waiting...) {
		p.finish(err)
	}
}

func (p *proposal) finish(err error) {
	select {
	case p.done <- err:
	default:
	}
}

// Propose runs a write command and waits for it: see Start and Wait.
func (l *Leader) Propose(ctx context.Context, exec ExecFunc) (commands.Reply, uint64, error) {
	p, err := l.Start(exec)
	if err != nil {
		return nil, 0, err
	}
	return p.Wait(ctx)
}

// ExecFunc computes a write command's reply and row operations against a
// view and the leader's clock.
type ExecFunc func(v commands.View, nowMs int64) (commands.Result, error)

// Pending is a write that has been sequenced but may not be committed yet.
type Pending struct {
	l     *Leader
	reply commands.Reply
	p     *proposal // nil when the command logged nothing
	// observed is the last LSN the command may have read (no-op writes).
	observed uint64
}

// Start sequences a write command without waiting for it. exec computes the
// reply and row operations against the committed data overlaid with every
// uncommitted write, so read-modify-write commands see the writes ordered
// before them, including earlier commands of the same pipeline. The entry is
// queued for the next group commit. Commands of one connection can be
// started back to back and waited for in order, so that a pipeline shares
// one fsync.
func (l *Leader) Start(exec ExecFunc) (*Pending, error) {
	now := l.cfg.Now()
	l.seqMu.Lock()
	if l.stopped {
		l.seqMu.Unlock()
		return nil, ErrNotLeader
	}
	res, err := exec(overlayView{l: l, base: storage.View{DB: l.cfg.DB, NowMs: now.UnixMilli()}}, now.UnixMilli())
	if err != nil {
		l.seqMu.Unlock()
		return nil, err
	}
	if len(res.Ops) == 0 {
		observed := l.nextLSN - 1
		l.seqMu.Unlock()
		return &Pending{l: l, reply: res.Reply, observed: observed}, nil
	}
	e := logrec.Entry{Epoch: l.epoch, LSN: l.nextLSN, TimeNs: now.UnixNano(), Ops: res.Ops}
	raw := logrec.Encode(&e)
	// Decode so that the entry owns its bytes: the command's arguments
	// belong to the connection's buffer and the caller may give up waiting.
	owned, err := logrec.Decode(raw)
	if err != nil {
		l.seqMu.Unlock()
		return nil, fmt.Errorf("replication: re-decode lsn %d: %w", e.LSN, err)
	}
	p := &proposal{lsn: e.LSN, entry: owned, raw: raw, done: make(chan error, 1)}
	l.nextLSN++
	l.addOverlay(p)
	l.queue = append(l.queue, p)
	l.seqMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return &Pending{l: l, reply: res.Reply, p: p}, nil
}

// Wait returns once the write is committed and applied (visible to every
// reader), with its LSN (0 when it logged nothing). A command that logged
// nothing still waits until every write it may have observed is applied,
// so its reply never reflects a write that could be lost. If ctx ends first
// the outcome is unknown: the write may still commit.
func (pd *Pending) Wait(ctx context.Context) (commands.Reply, uint64, error) {
	if pd.p == nil {
		if err := pd.l.waitApplied(ctx, pd.observed); err != nil {
			return nil, 0, err
		}
		return pd.reply, 0, nil
	}
	if pd.l.cfg.Buggify.AckBeforeDurable {
		return pd.reply, pd.p.lsn, nil
	}
	select {
	case err := <-pd.p.done:
		if err != nil {
			return nil, 0, err
		}
		return pd.reply, pd.p.lsn, nil
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// addOverlay records p's operations as the latest uncommitted values. The
// caller holds seqMu (or is the constructor).
func (l *Leader) addOverlay(p *proposal) {
	for _, op := range p.entry.Ops {
		l.overlay[string(op.Key)] = overlayValue{
			lsn:     p.lsn,
			val:     commands.Value{Data: op.Value, ExpireAtMs: op.ExpireAtMs},
			deleted: op.Kind == logrec.OpDelete,
		}
	}
}

// readBarrierWait bounds how long a read waits for the entries a leader
// found in its log at the start of its leadership to be applied.
const readBarrierWait = time.Second

// ReadBarrier returns nil once reads of the committed data are
// linearizable: when every entry that was durable when this leadership
// began is applied. Until then such an entry may have been acknowledged
// (before a crash, under a rule that needed followers) yet not be visible,
// and a read would go back in time. It waits up to ctx or readBarrierWait,
// then returns ErrNotReady; after the first success it costs one atomic load.
func (l *Leader) ReadBarrier(ctx context.Context) error {
	if l.readable.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readBarrierWait)
	defer cancel()
	if err := l.waitApplied(ctx, l.startLSN); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: entries up to lsn %d from before this leadership are not committed yet", ErrNotReady, l.startLSN)
		}
		return err
	}
	return nil
}

// waitApplied blocks until the applied LSN reaches lsn.
func (l *Leader) waitApplied(ctx context.Context, lsn uint64) error {
	for {
		l.mu.Lock()
		applied, ch, err := l.applied, l.changed, l.err
		l.mu.Unlock()
		if applied >= lsn {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// committer is the group-commit loop: it appends everything queued in one
// durable batch, records the new durable LSN, and wakes the applier.
func (l *Leader) committer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		if l.cfg.Buggify.AckBeforeDurable {
			time.Sleep(100 * time.Millisecond)
		}
		l.seqMu.Lock()
		batch := l.queue
		l.queue = nil
		l.seqMu.Unlock()
		if len(batch) == 0 {
			continue
		}
		raws := make([][]byte, len(batch))
		for i, p := range batch {
			raws[i] = p.raw
		}
		if err := l.cfg.DB.AppendLog(raws); err != nil {
			// The log is the source of truth; without it nothing can be
			// acknowledged safely. Stop leading rather than guess.
			l.log.Error("log append failed; stepping down", "err", err)
			for _, p := range batch {
				p.finish(err)
			}
			go l.stop(fmt.Errorf("replication: log append: %w", err))
			return
		}
		l.mu.Lock()
		l.durable = batch[len(batch)-1].lsn
		l.unapplied = append(l.unapplied, batch...)
		for _, p := range batch {
			l.tail.add(p.lsn, p.raw, p.entry.TimeNs)
		}
		l.broadcastLocked()
		l.mu.Unlock()
		select {
		case l.applyWake <- struct{}{}:
		default:
		}
	}
}

// applier applies what the commit rule allows after each durable batch. It
// runs beside the committer so that applying one batch to the data overlaps
// the fsync of the next: a write's latency is one fsync plus one apply, and
// the group-commit cycle is the longer of the two, not their sum.
func (l *Leader) applier() {
	defer l.wg.Done()
	for {
		select {
		case <-l.applyWake:
		case <-l.done:
			return
		}
		if err := l.advance(); err != nil {
			l.log.Error("apply failed; stepping down", "err", err)
			go l.stop(err)
			return
		}
	}
}

// advance moves the commit point by the mode's rule and applies what it
// committed, then wakes the writers. It is the only place entries become
// visible.
func (l *Leader) advance() error {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	l.mu.Lock()
	durables := make([]uint64, 0, len(l.followers))
	for _, f := range l.followers {
		durables = append(durables, f.DurableLSN)
	}
	if c := commit.LSN(l.cfg.Mode, l.durable, durables); c > l.commitLSN {
		l.commitLSN = c
	}
	n := 0
	for n < len(l.unapplied) && l.unapplied[n].lsn <= l.commitLSN {
		n++
	}
	toApply := l.unapplied[:n:n]
	l.mu.Unlock()
	if n == 0 {
		return nil
	}
	entries := make([]logrec.Entry, n)
	for i, p := range toApply {
		entries[i] = p.entry
	}
	if err := l.cfg.DB.Apply(entries); err != nil {
		return fmt.Errorf("replication: apply: %w", err)
	}
	last := toApply[n-1].lsn
	l.seqMu.Lock()
	for _, p := range toApply {
		for _, op := range p.entry.Ops {
			if ov, ok := l.overlay[string(op.Key)]; ok && ov.lsn <= last {
				delete(l.overlay, string(op.Key))
			}
		}
	}
	l.seqMu.Unlock()
	if last >= l.startLSN {
		l.readable.Store(true)
	}
	l.mu.Lock()
	l.applied = last
	l.unapplied = l.unapplied[n:]
	l.broadcastLocked()
	l.mu.Unlock()
	for _, p := range toApply {
		if p.done != nil {
			p.finish(nil)
		}
	}
	return nil
}

func (l *Leader) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Leader) progressLocked() {
	close(l.progressed)
	l.progressed = make(chan struct{})
}

// overlayView reads uncommitted writes first, then the committed data.
type overlayView struct {
	l    *Leader
	base storage.View
}

func (v overlayView) Get(key []byte) (commands.Value, bool, error) {
	if ov, ok := v.l.overlay[string(key)]; ok {
		if ov.deleted || (ov.val.ExpireAtMs != 0 && ov.val.ExpireAtMs <= v.base.NowMs) {
			return commands.Value{}, false, nil
		}
		return ov.val, true, nil
	}
	return v.base.Get(key)
}

// Scan merges the overlay into the committed keys. Write commands do not
// scan, so this serves correctness, not speed.
func (v overlayView) Scan(start []byte, fn func(key []byte, val commands.Value) bool) error {
	var keys []string
	for k := range v.l.overlay {
		if k >= string(start) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	stop := false
	err := v.base.Scan(start, func(key []byte, val commands.Value) bool {
		for len(keys) > 0 && keys[0] < string(key) {
			if !v.emit(keys[0], fn) {
				stop = true
				return false
			}
			keys = keys[1:]
		}
		if len(keys) > 0 && keys[0] == string(key) {
			keys = keys[1:]
			if !v.emit(string(key), fn) {
				stop = true
				return false
			}
			return true
		}
		if !fn(key, val) {
			stop = true
			return false
		}
		return true
	})
	for !stop && err == nil && len(keys) > 0 {
		stop = !v.emit(keys[0], fn)
		keys = keys[1:]
	}
	return err
}

func (v overlayView) emit(k string, fn func([]byte, commands.Value) bool) bool {
	val, ok, _ := v.Get([]byte(k))
	if !ok {
		return true
	}
	return fn([]byte(k), val)
}

// Status is a snapshot of the leader's positions and followers.
type Status struct {
	Epoch     uint64
	Durable   uint64
	Commit    uint64
	Applied   uint64
	Followers []FollowerProgress
}

// Status reports the leader's positions and per-follower progress.
func (l *Leader) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Status{Epoch: l.epoch, Durable: l.durable, Commit: l.commitLSN, Applied: l.applied}
	now := l.cfg.Now().UnixNano()
	for _, f := range l.followers {
		fp := *f
		if t, ok := l.oldestUnapplied(f.AppliedLSN); ok && now > t {
			fp.LagSeconds = float64(now-t) / 1e9
		}
		s.Followers = append(s.Followers, fp)
	}
	slices.SortFunc(s.Followers, func(a, b FollowerProgress) int {
		if a.NodeID < b.NodeID {
			return -1
		}
		if a.NodeID > b.NodeID {
			return 1
		}
		return 0
	})
	return s
}

// WaitDurable blocks until n followers have durably stored lsn, or until
// timeout (0 = no limit) or ctx ends, and returns how many have.
func (l *Leader) WaitDurable(ctx context.Context, lsn uint64, n int, timeout time.Duration) int {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		l.mu.Lock()
		count := 0
		for _, f := range l.followers {
			if f.Connected && f.DurableLSN >= lsn {
				count++
			}
		}
		ch := l.progressed
		l.mu.Unlock()
		if count >= n {
			return count
		}
		select {
		case <-ch:
		case <-expired:
			return count
		case <-ctx.Done():
			return count
		case <-l.done:
			return count
		}
	}
}

// Serve runs one follower's stream until it breaks or the leader stops.
func (l *Leader) Serve(ctx context.Context, stream LeaderStream) error {
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("replication: read hello: %w", err)
	}
	hello := first.GetHello()
	if hello == nil {
		return fmt.Errorf("replication: stream opened without hello")
	}
	if first.Epoch > l.epoch {
		l.log.Warn("follower has a newer epoch; stepping down", "peer", hello.NodeId, "peer_epoch", first.Epoch)
		_ = l.cfg.DB.ObserveEpoch(first.Epoch)
		go l.stop(ErrStaleEpoch)
		return fmt.Errorf("%w: follower %s at epoch %d, leader at %d", ErrStaleEpoch, hello.NodeId, first.Epoch, l.epoch)
	}
	pos := storage.Position{Epoch: hello.GetDurable().GetEpoch(), LSN: hello.GetDurable().GetLsn()}
	d, err := Decide(l.cfg.DB, pos)
	if err != nil {
		return err
	}
	if d.Action == ActSnapshot && l.cfg.DB.Applied() == 0 {
		// A snapshot now would be empty at LSN 0 and the follower would be
		// sent for another one, forever; under quorum nothing commits
		// until a follower streams, so applied would stay 0. The log is
		// whole (retention never passes applied): replay it instead.
		d = Decision{Action: ActStream, LSN: 1}
		if pos.LSN > 0 {
			d = Decision{Action: ActTruncate} // diverged from its first entry
		}
	}
	log := l.log.With("peer", hello.NodeId)
	log.Info("follower connected", "durable_lsn", pos.LSN, "durable_epoch", pos.Epoch, "action", d.Action.String(), "lsn", d.LSN)
	switch d.Action {
	case ActTruncate:
		return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Truncate{Truncate: &peerpb.Truncate{AfterLsn: d.LSN}}})
	case ActSnapshot:
		return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}})
	}
	if err := stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Start{Start: &peerpb.Start{FromLsn: d.LSN}}}); err != nil {
		return err
	}
	l.updateProgress(hello, pos.LSN, 0, true)
	defer l.disconnect(hello.NodeId)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() {
		defer cancel()
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if m.Epoch > l.epoch {
				_ = l.cfg.DB.ObserveEpoch(m.Epoch)
				go l.stop(ErrStaleEpoch)
				recvErr <- ErrStaleEpoch
				return
			}
			if p := m.GetProgress(); p != nil {
				l.updateProgress(hello, p.DurableLsn, p.AppliedLsn, true)
				if l.cfg.Mode.Kind != commit.Async {
					if err := l.advance(); err != nil {
						recvErr <- err
						return
					}
				}
			}
		}
	}()

	next := d.LSN
	var sentCommit uint64
	heartbeat := time.NewTimer(l.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		l.mu.Lock()
		durable, commitLSN, ch, stopErr := l.durable, l.commitLSN, l.changed, l.err
		l.mu.Unlock()
		if stopErr != nil {
			return stopErr
		}
		var raws [][]byte
		if next <= durable {
			raws, err = l.readLog(next, durable)
			if errors.Is(err, storage.ErrCompacted) {
				log.Warn("follower fell behind the retained log; it will be re-seeded", "lsn", next)
				return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}})
			}
			if err != nil {
				return err
			}
		}
		if len(raws) > 0 || commitLSN > sentCommit {
			if err := l.sendAppend(stream, raws, commitLSN, durable); err != nil {
				return err
			}
			next += uint64(len(raws))
			sentCommit = commitLSN
			heartbeat.Reset(l.cfg.Heartbeat)
			continue
		}
		select {
		case <-ch:
		case <-heartbeat.C:
			if err := l.sendAppend(stream, nil, commitLSN, durable); err != nil {
				return err
			}
			heartbeat.Reset(l.cfg.Heartbeat)
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return ErrNotLeader
		}
	}
}

// tailBytes bounds the leader's in-memory cache of recent entries: enough
// for followers that keep up under load, small beside the data.
const tailBytes = 16 << 20

// readLog returns durable entries from lo to hi for a follower stream, from
// the in-memory tail when it holds lo, else from the log in Pebble.
func (l *Leader) readLog(lo, hi uint64) ([][]byte, error) {
	l.mu.Lock()
	raws, ok := l.tail.read(lo, hi, l.cfg.MaxBatchBytes)
	l.mu.Unlock()
	if ok {
		return raws, nil
	}
	return l.cfg.DB.ReadLog(lo, hi, l.cfg.MaxBatchBytes)
}

func (l *Leader) sendAppend(stream LeaderStream, raws [][]byte, commitLSN, last uint64) error {
	return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		Entries:            raws,
		CommitLsn:          commitLSN,
		LeaderLastLsn:      last,
		LeaderTimeUnixNano: l.cfg.Now().UnixNano(),
	}}})
}

func (l *Leader) updateProgress(h *peerpb.Hello, durable, applied uint64, connected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.followers[h.NodeId]
	if f == nil {
		f = &FollowerProgress{NodeID: h.NodeId}
		l.followers[h.NodeId] = f
	}
	f.RESPAddr, f.HTTPAddr = h.RespAddr, h.HttpAddr
	f.DurableLSN = durable
	f.AppliedLSN = min(max(applied, f.AppliedLSN), durable)
	f.Connected = connected
	f.LastSeen = l.cfg.Now()
	l.progressLocked()
}

func (l *Leader) disconnect(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.followers[id]; f != nil {
		f.Connected = false
	}
	l.progressLocked()
}

// retention trims the log to what known followers still need, within the
// size cap.
func (l *Leader) retention() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.done:
			return
		}
		if err := l.trimLog(); err != nil {
			l.log.Warn("log retention failed", "err", err)
		}
	}
}

// trimLog applies the retention rule: keep every entry a known follower
// still needs, and, since followers are only known once they connect (a
// leader that restarted has not heard from them yet), keep the newest half
// of the cap regardless. Past the cap, drop the oldest entries even if a
// follower needs them; that follower is re-seeded from a snapshot. Sizes are
// estimated from the average entry size.
func (l *Leader) trimLog() error {
	l.mu.Lock()
	needed := l.applied
	for _, f := range l.followers {
		needed = min(needed, f.DurableLSN)
	}
	l.mu.Unlock()
	db := l.cfg.DB
	count, size := db.LogSize()
	base := db.LogBase().LSN
	if count == 0 || size <= l.cfg.RetainBytes/2 {
		return nil
	}
	// cut(limit) is the LSN to trim through so that about limit bytes remain.
	cut := func(limit int64) uint64 {
		return base + uint64(count-count*limit/size)
	}
	keep := min(needed, cut(l.cfg.RetainBytes/2))
	if size > l.cfg.RetainBytes {
		keep = max(keep, cut(l.cfg.RetainBytes))
	}
	return db.TruncateLogBefore(keep)
}

// ServeSnapshot streams a consistent snapshot of the data to a follower. The
// follower is recorded at the snapshot's LSN first, so retention keeps the
// log it will need to catch up.
func (l *Leader) ServeSnapshot(req *peerpb.SnapshotRequest, out SnapshotSender) error {
	snap, err := l.cfg.DB.NewSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	l.updateProgress(&peerpb.Hello{NodeId: req.NodeId}, snap.Position.LSN, 0, false)
	hdr := &peerpb.SnapshotHeader{
		Position:       &peerpb.Position{Epoch: snap.Position.Epoch, Lsn: snap.Position.LSN},
		EstimatedBytes: snap.EstimatedBytes,
	}
	for _, s := range snap.Epochs {
		hdr.EpochStarts = append(hdr.EpochStarts, &peerpb.Position{Epoch: s.Epoch, Lsn: s.LSN})
	}
	l.log.Info("sending snapshot", "peer", req.NodeId, "lsn", snap.Position.LSN, "estimated_bytes", snap.EstimatedBytes)
	if err := out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Header{Header: hdr}}); err != nil {
		return err
	}
	var enc snapshot.Encoder
	var keys, bytes uint64
	flush := func() error {
		if enc.Count() == 0 {
			return nil
		}
		keys += enc.Count()
		data := enc.Finish()
		bytes += uint64(len(data))
		return out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Data{Data: data}})
	}
	err = snap.Each(func(key, stored []byte) error {
		enc.Add(key, stored)
		if enc.Len() >= l.cfg.ChunkBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("replication: snapshot to %s: %w", req.NodeId, err)
	}
	l.log.Info("snapshot sent", "peer", req.NodeId, "keys", keys, "bytes", bytes)
	return out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Done{Done: &peerpb.SnapshotDone{Keys: keys, Bytes: bytes}}})
}

// oldestUnapplied returns the leader time of entry applied+1, the oldest a
// follower at applied has not applied. If that entry has left the tail
// cache it returns the time of the oldest cached entry, which makes the lag
// a lower bound. The caller holds mu.
func (l *Leader) oldestUnapplied(applied uint64) (int64, bool) {
	if applied >= l.durable {
		return 0, false
	}
	return l.tail.timeFrom(applied + 1)
}
