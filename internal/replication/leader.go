package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
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
	// Heartbeat is how often an idle stream carries an empty append while
	// the leader wants lease echoes (WantEchoes), and always when
	// IdleHeartbeat is 0.
	Heartbeat time.Duration
	// IdleHeartbeat, if longer than Heartbeat, is how often an idle
	// stream carries an empty append while no echoes are wanted: each
	// heartbeat wakes the leader's ticker, the stream's sender and gRPC's
	// writer, and the follower's reader and stream (bench/idle.sh).
	IdleHeartbeat time.Duration
	// MaxBatchBytes bounds one Append message.
	MaxBatchBytes int
	// PartBytes: a longer entry goes to a follower that takes parts as
	// parts of at most this many bytes (parts.go). 0 means
	// DefaultPartBytes.
	PartBytes int
	// RetainBytes caps the retained log; followers behind it are re-seeded.
	RetainBytes int64
	// RetainMinBytes is the log kept beyond what the known followers
	// need: for a follower this leader has not heard from yet (after its
	// own restart, or a new member) and the rollback of a diverged one.
	// 0 means DefaultRetainMinBytes; at most half of RetainBytes.
	RetainMinBytes int64
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
	// MaxEntryBytes bounds one log entry's encoding: a write whose entry
	// would be larger is refused before it is sequenced
	// (ErrEntryTooLarge). 0 means DefaultMaxEntryBytes.
	MaxEntryBytes int64
	// FollowerTimeout is how long a follower may stay unheard of before
	// the leader forgets it: it stops pinning log retention and stops
	// counting for WAIT, status and metrics. 0 means
	// DefaultFollowerTimeout.
	FollowerTimeout time.Duration
	// MaxCommitDelay caps how long a group commit may wait for more
	// writes while writes arrive faster than appends complete (adaptive
	// group commit; at most half an append's time, counted from the
	// hold's start and again from the last answers given while it runs,
	// since the writers answered come back only after them; never when
	// idle). 0 means DefaultMaxCommitDelay; negative never waits.
	MaxCommitDelay time.Duration
	// AnswerSplit is the fewest replies (writers answered through Then)
	// of one group that are written on two goroutines instead of one
	// (see unlock). 0 or negative: never (the default: on 2 shared cores
	// it measured no gain, there being no idle core to take the half).
	AnswerSplit int
	// TickInterval is the leader's clock resolution: write timeouts, waits
	// for room, WAIT deadlines, heartbeats and follower timeouts are
	// checked when the earliest of them is due (the core's TickAt), but
	// never more often than this. 0 means DefaultTickInterval.
	TickInterval time.Duration
	// RetentionEvery is how often the retention rule trims the log. 0
	// means DefaultRetentionEvery.
	RetentionEvery time.Duration
	// Fatal is called when the process must stop because going on could
	// break a promise (persisting a higher epoch failed); a supervisor
	// restarts it. nil means log the error and exit with status 2.
	Fatal func(error)
	// Lease, if not nil, gates every acknowledgement and read: the leader
	// answers only while it is valid (see Lease). nil: a static topology.
	Lease *Lease
	// DeliverLocal hands a published message to this node's subscribers
	// and returns how many it reached (see Publish, pubsub.go); nil: the
	// node has none.
	DeliverLocal func(channel, message []byte) int
	// DeliverShard is DeliverLocal for a sharded message (SPUBLISH).
	DeliverShard func(channel, message []byte) int
	// Settings are the cluster's settings this leadership starts with
	// (settings.go): sent to every follower, and changed with
	// PublishSettings.
	Settings Settings
	// Sequenced, if set, is called with the ops of each entry as soon as
	// it is sequenced (in the overlay, so the next command sequenced reads
	// it), under the sequencing lock: it must not block or call back into
	// the leader. The node wakes its blocked clients from it.
	Sequenced func(ops []logrec.Op)
	// Buggify enables deliberate faults for harness tests; never in production.
	Buggify Buggify
}

// Defaults for LeaderConfig's zero values.
const (
	DefaultWriteTimeout     = 5 * time.Second
	DefaultMaxInFlight      = 10000
	DefaultMaxInFlightBytes = 64 << 20
	// DefaultMaxEntryBytes: an entry travels to followers in one stream
	// message, alone if need be, and a node's gRPC messages are at most
	// 1 GiB (node's maxMessage); 1 MiB is left for the message's other
	// fields. It is also well below a wal record's limit (wal.MaxRecord,
	// 2 GiB).
	DefaultMaxEntryBytes   = 1<<30 - 1<<20
	DefaultFollowerTimeout = time.Minute
	DefaultMaxCommitDelay  = time.Millisecond
	// DefaultAnswerSplit: a group's replies are answered on the one
	// goroutine that applied it (LeaderConfig.AnswerSplit).
	DefaultAnswerSplit    = 0
	DefaultTickInterval   = 10 * time.Millisecond
	DefaultRetentionEvery = time.Second
	DefaultRetainMinBytes = 16 << 20
)

// ackBeforeDurableDelay is how long Buggify.AckBeforeDurable holds each
// log write: far longer than a loaded test process takes from an
// acknowledgement to its kill -9 (kill-leader-after-ack), so that the
// acknowledged write is always lost.
const ackBeforeDurableDelay = 300 * time.Millisecond

// Buggify names deliberate faults that tests switch on to prove that the
// chaos harness catches them.
type Buggify struct {
	// AckBeforeDurable acknowledges writes before their entry is in the log
	// and delays the log write (ackBeforeDurableDelay); followers are sent
	// only what the leader has logged. So an acknowledged write is
	// durable nowhere for at least that delay, and a kill -9 within it
	// loses it whatever the timing of the followers.
	AckBeforeDurable bool
	// FollowerSkipEntry makes a follower drop the operations of every 50th
	// entry it applies, and from then on every operation on the keys those
	// touched: replicas diverge, and a later write cannot heal it.
	FollowerSkipEntry bool
	// FollowerSkipFunctions makes a follower apply every entry but its
	// function libraries' ops (FUNCTION LOAD, DELETE, FLUSH, RESTORE):
	// promoted, it has lost the libraries its leader acknowledged.
	FollowerSkipFunctions bool
	// SlowDisk makes one leader log append every 2 s take 1 s longer, as a
	// stalled disk would: the leader is alive and its streams' heartbeats
	// go on, so the control plane must not fail it over.
	SlowDisk bool
	// FollowerApplyDelay makes a follower apply each entry no sooner than
	// this long after it arrived: real, controllable replication lag for the
	// read-policy tests (a follower that holds the entries durably but
	// has not applied them yet).
	FollowerApplyDelay time.Duration
	// FollowerIgnoreToken makes a follower ignore the session's floor
	// (its token) when it serves a policy read: ryw and monotonic reads
	// are served at whatever it has applied, stale reads the chaos
	// checker must catch. Linearizable reads still wait for the leader's
	// commit position, and a user's floor is still honoured.
	FollowerIgnoreToken bool
	// LeaderForgetsUserFloor makes a new leader start its per-user
	// positions (package node) from nothing instead of its start position:
	// a user whose last write an earlier leader acknowledged gets no floor,
	// so a lagging follower serves that user's read stale after a
	// failover. The cross-device test must catch it.
	LeaderForgetsUserFloor bool
	// TxSplit makes the node's leader run a transaction (EXEC) of more
	// than one command as two entries, the first command and then the
	// rest, each committed before the next: a crash between them leaves
	// half of it, and a reader can see half of it.
	TxSplit bool
	// FollowerPubReorder makes a follower deliver pub/sub messages in
	// swapped pairs, out of the leader's order (pubsub.go).
	FollowerPubReorder bool
	// LeaderResumesEpoch makes a node that leads again (after a restart,
	// or after its leadership stopped) resume the epoch it started last
	// instead of taking a new one (BeginEpoch): a follower can then keep
	// entries the leader sent but lost in a crash, at the (epoch, LSN) of
	// different entries.
	LeaderResumesEpoch bool
	// BlockedPopLostReply makes the leader answer a blocked client whose
	// pop, once woken, took an element with the timeout's nil instead
	// (package node, blocking.go): the element is popped, committed and
	// acknowledged to no one, a lost job the chaos queue check must see.
	BlockedPopLostReply bool
	// FollowerNoLeaderTimeout makes a follower wait on its stream for
	// ever, as before FollowerConfig.LeaderTimeout: a stream that went
	// silent with its connection open (a one-way black hole) leaves the
	// follower behind, unaware, until TCP gives up.
	FollowerNoLeaderTimeout bool
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

// Leader is the write side of a leader node: the driver of leaderCore. It
// owns the goroutines (committer, applier, ticker, two per follower
// stream), Pebble and the streams, and nothing else: every decision is the
// core's, taken under mu. See the package comment.
type Leader struct {
	cfg   LeaderConfig
	log   *slog.Logger
	epoch uint64

	// start is the position of the last entry durable when this
	// leadership began (StartPosition); set by NewLeader.
	start logrec.Position

	// readable is set once the core says the leadership may serve reads
	// (see ReadBarrier): one atomic load per read from then on.
	readable atomic.Bool

	// seqMu serialises sequencing: running a command against the overlay,
	// assigning its LSN and recording its writes in the overlay.
	seqMu   sync.Mutex
	overlay overlay
	// formats is the log format gate: what each member reads.
	formats formatGate
	// priorKey (under seqMu) is setPriors' metadata row key buffer.
	priorKey []byte
	// writesStopped (under seqMu): StopWrites was called; Start refuses.
	writesStopped bool
	// watches (under seqMu) holds the keys some Watch names (watch.go).
	watches map[string]*watchCount

	mu      sync.Mutex // guards the fields below
	core    *leaderCore
	tail    tailCache // recent durable entries, for follower streams and lag
	streams map[uint64]*streamOut
	appendQ []*proposal // the core's Append batch, for the committer
	applyQ  []*proposal // the core's Apply batch, for the applier
	// appendBy and applyBy are the writers given the core's Append and
	// Apply batches (in appendQ, applyQ) to run themselves (see runJobs);
	// nil when the committer or the applier has it. running is the writer
	// running one now, if any.
	appendBy, applyBy, running *proposal
	// afterAppend is set during the dispatch that follows an Appended.
	afterAppend bool
	// notify holds the answers owed to Then callbacks, run by unlock
	// after mu is released (under mu).
	notify []notice
	// lastStall is when Buggify.SlowDisk last stalled an append (used by
	// whoever runs the one Append out).
	lastStall time.Time
	trimQ     uint64 // the core's TrimBefore, for the ticker
	stopped   bool
	err       error // why it stopped

	appendWake chan struct{} // capacity 1
	applyWake  chan struct{} // capacity 1
	// appendTimer calls the core's AppendDue at a held Append's AppendAt.
	appendTimer *time.Timer
	// tickTimer wakes the ticker at the core's TickAt, never sooner than
	// TickInterval after the last tick (tickFloor, on the core's clock);
	// reset only under mu.
	tickTimer *time.Timer
	// tickDue is when tickTimer fires (mono ns, 0: fired or not armed
	// yet); tickSwap (capacity 1) tells the ticker that tickTimer was
	// replaced by a new one (armTickLocked). Both under mu.
	tickDue   int64
	tickSwap  chan struct{}
	tickFloor int64
	// followersChanged (capacity 1) is signalled when a follower stream
	// opens or ends or a follower is removed (FollowersChanged).
	followersChanged chan struct{}
	ticks            atomic.Uint64 // the ticker's wake-ups (tests)
	// echoUntil (lease clock, mono) is until when heartbeats carry a lease
	// stamp, which followers echo (WantEchoes).
	echoUntil atomic.Int64
	// fastBeat (under mu) is set while the core heartbeats every
	// cfg.Heartbeat because echoes are wanted, instead of every
	// cfg.IdleHeartbeat; the ticker clears it once echoUntil has passed.
	fastBeat bool

	// pubMu makes Publish the cluster's one ordering point for pub/sub
	// messages (pubsub.go); taken before mu.
	pubMu      sync.Mutex
	pubDropped atomic.Uint64
	// settings are the cluster's settings now (under mu; changed under
	// pubMu too, settings.go).
	settings Settings

	// persistEpoch durably records a higher epoch (DB.ObserveEpoch; tests
	// make it fail).
	persistEpoch func(uint64) error

	// handoffs counts the write path's goroutine hand-offs (handoffs.go);
	// committerParked and applierParked say whether those goroutines are
	// blocked waiting for work, so that only a hand-off that wakes one
	// counts.
	handoffs                       handoffCounts
	committerParked, applierParked atomic.Bool
	// readAnswers counts how waiting reads' questions were answered
	// (ReadAnswers).
	readAnswers readAnswerCounts
	// answerSplit is cfg.AnswerSplit resolved (0: never).
	answerSplit int
	// cycle sums the group-commit cycle's phases (cycle.go); appendOut
	// and applyOut (mono ns, set under mu) are when the Append and Apply
	// batches out now were handed out.
	cycle               cycleCounts
	appendOut, applyOut atomic.Int64
	// appendedAt (mono ns, under mu) is when the last Append was reported
	// durable: to the next Append's hand-out is the cycle's gap (a held
	// group, or no writes yet).
	appendedAt int64

	ctx      context.Context // ends when the leader begins to stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine that may touch storage
	finished chan struct{}  // closed when stop has finished
}

type proposal struct {
	lsn   uint64
	entry logrec.Entry
	raw   []byte
	// writer: the proposal has a writer to answer (false for a tail
	// entry, which the leader found in its log).
	writer bool
	// done receives the writer's answer once (doneAnswer: the error is
	// err, written before the send), and before it at most two doneJob
	// (its group's Append and Apply; capacity 3, so none can crowd out
	// another). A channel of a pointer-free type is one allocation; a
	// chan error was two (its buffer holds pointers). It is made only by
	// a writer that waits (Wait, under Leader.mu, before it parks): one
	// answered through Then, a lone write, never needs one, an
	// allocation fewer per write. An answer that comes while there is
	// none is kept in early (finish).
	done chan doneSignal
	// early: answered before done was made; the answer is err. Under
	// Leader.mu.
	early bool
	err   error
	// parked is set by a writer about to block on done: it will take what
	// done receives (Handoffs counts only the answers that wake one, and
	// only a parked writer is given an Apply to run).
	parked atomic.Bool
	gone   bool // the writer stopped waiting (under Leader.mu)
	// then, if set (Pending.Then, under Leader.mu), is called with the
	// answer (thenAnswer) instead of sending it on done.
	then     func(commands.Reply, uint64, error)
	thenMap  func(error) error // maps the error then is given (ThenMap); nil: as it is
	deadline int64             // commit by then (Unix ns), or the writer is answered ErrWriteTimeout
	answered bool              // the writer has been answered (core-owned)
	// pub are the write's messages (keyspace notifications), published
	// by whoever applies it, once applied; nil for most.
	pub []commands.Message
	// pending is what Start returns for it, in the same allocation.
	pending Pending
	// view is what the command was run against (Start), in the same
	// allocation.
	view overlayView
}

// thenAnswer gives a Then callback what Wait would return for err, the
// error mapped by the ThenMap mapping.
func (p *proposal) thenAnswer(then func(commands.Reply, uint64, error), err error) {
	if err != nil {
		if p.thenMap != nil {
			err = p.thenMap(err)
		}
		then(nil, 0, err)
		return
	}
	then(p.pending.reply, p.lsn, nil)
}

// doneSignal is what a writer's done channel carries.
type doneSignal uint8

const (
	doneAnswer doneSignal = iota // the answer is in proposal.err
	doneJob                      // a job to run first (errJob)
)

// finish answers the writer; it reports whether it did (once only). The
// caller holds Leader.mu, as every sender on done does (and as Wait holds
// it to make done), so the room checked is still there at the send. A
// writer without done yet finds the answer in early.
func (p *proposal) finish(err error) bool {
	if p.done == nil {
		if p.early {
			return false
		}
		p.err, p.early = err, true
		return true
	}
	if len(p.done) == cap(p.done) {
		return false
	}
	p.err = err
	p.done <- doneAnswer
	return true
}

// waitChan returns p's done channel, made now if the writer has none, or
// false with the answer when it came before (early, consumed: a second
// Wait or Then finds neither). The caller holds Leader.mu.
func (p *proposal) waitChan() (done chan doneSignal, answered bool, err error) {
	if p.done == nil {
		if p.early {
			p.early = false
			return nil, true, p.err
		}
		p.done = make(chan doneSignal, 3)
	}
	return p.done, false, nil
}

// take is what the writer received on done: errJob for a job, else its
// answer.
func (p *proposal) take(s doneSignal) error {
	if s == doneJob {
		return errJob
	}
	return p.err
}

// streamOut is one follower stream's mailbox: how far the core said it may
// be sent. The sender goroutine takes it when woken.
type streamOut struct {
	through, commit uint64
	// readStamp is the latest Progress.read_stamp received on the stream;
	// commitStamp is one received before commit was the core's commit
	// (0: none), sent with it as Append.read_stamp. Every write
	// acknowledged before commitStamp (the follower's clock) is at or
	// before commit, so a follower that applied commit is at most
	// now - commitStamp behind (bounded-staleness reads, reads.go).
	// Under Leader.mu.
	readStamp, commitStamp int64
	// readTook (mono) is when the question of the waiting read that the
	// next readWake answers was taken off the stream (ReadAnswers); 0:
	// none. Under Leader.mu.
	readTook int64
	// seq counts the sends the core handed out (under Leader.mu): a
	// sender woken by a token left for a send it already took skips it.
	seq       uint64
	wake      chan struct{} // capacity 1
	parked    atomic.Bool   // the sender waits for wake (Handoffs)
	closed    chan struct{} // closed to end the stream (the core disconnected its session)
	closeOnce sync.Once
	// Pub/sub messages for the stream (pubsub.go), under Leader.mu.
	takesPub   bool
	takesShard bool // and sharded ones (SPUBLISH)
	// takesSettings: the follower takes the leader's settings
	// (settings.go), queued in pub.
	takesSettings bool
	pub           []*peerpb.PubMessage
	pubBytes      int
	pubWake       chan struct{} // capacity 1
	// syncWake (capacity 1) asks the sender for a heartbeat that ends a
	// follower's hold of deferred entries (a WAIT began).
	syncWake chan struct{}
	// readWake (capacity 1) asks the sender for a heartbeat that answers
	// a waiting read (pairReadLocked).
	readWake chan struct{}
	// leaseWait: a goroutine waits for the lease to answer a waiting
	// read (answerReadLocked). Under Leader.mu.
	leaseWait bool
}

// signal leaves a token in a mailbox of capacity 1, and reports whether
// it did (false: one was there already, nothing new is handed off).
func signal(ch chan struct{}) bool {
	select {
	case ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// count adds one to c when a hand-off happened.
func count(c *atomic.Uint64, handed bool) {
	if handed {
		c.Add(1)
	}
}

// NewLeader starts a leader on db at epoch. The caller has already recorded
// the epoch start in db (StartEpoch). Entries that are durable but not
// applied (the tail left by a crash or by following) are committed under the
// mode's rule as followers report them; under async they commit at once.
func NewLeader(cfg LeaderConfig, epoch uint64) (*Leader, error) {
	// The leader's applies cache the rows they write (while the cache has
	// room): its reads, and its puts' priors (storage.PriorFromMemory),
	// want them; a follower on this data had turned that off.
	cfg.DB.SetWritesFill(true)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	cfg.IdleHeartbeat = max(cfg.IdleHeartbeat, cfg.Heartbeat)
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = 1 << 20
	}
	if cfg.PartBytes == 0 {
		cfg.PartBytes = DefaultPartBytes
	}
	if cfg.RetainBytes == 0 {
		cfg.RetainBytes = 1 << 30
	}
	if cfg.RetainMinBytes == 0 {
		cfg.RetainMinBytes = DefaultRetainMinBytes
	}
	cfg.RetainMinBytes = min(cfg.RetainMinBytes, cfg.RetainBytes/2)
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxInFlightBytes == 0 {
		cfg.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if cfg.MaxEntryBytes == 0 {
		cfg.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if cfg.FollowerTimeout == 0 {
		cfg.FollowerTimeout = DefaultFollowerTimeout
	}
	if cfg.MaxCommitDelay == 0 {
		cfg.MaxCommitDelay = DefaultMaxCommitDelay
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	if cfg.RetentionEvery == 0 {
		cfg.RetentionEvery = DefaultRetentionEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("role", "leader", "epoch", epoch)
	if cfg.Fatal == nil {
		cfg.Fatal = func(err error) {
			log.Error("fatal: stopping the process", "err", err)
			os.Exit(2)
		}
	}
	db := cfg.DB
	durable, applied := db.Durable().LSN, db.Applied()
	l := &Leader{
		cfg:         cfg,
		answerSplit: max(cfg.AnswerSplit, 0),
		log:         log,
		epoch:       epoch,
		settings:    cfg.Settings,
		overlay:     overlay{},
		tail:        tailCache{maxBytes: tailBytes},
		streams:     map[uint64]*streamOut{},
		appendWake:  make(chan struct{}, 1),
		applyWake:   make(chan struct{}, 1),
		finished:    make(chan struct{}),

		followersChanged: make(chan struct{}, 1),
		lastStall:        time.Now(),
	}
	l.persistEpoch = db.ObserveEpoch
	l.ctx, l.cancel = context.WithCancel(context.Background())
	// Load the durable, unapplied tail so that it commits like any entry.
	var tail []*proposal
	if applied < durable {
		raws, err := db.ReadLog(applied+1, durable, 1<<62)
		if err != nil {
			return nil, fmt.Errorf("replication: load unapplied tail: %w", err)
		}
		for _, raw := range raws {
			e, err := logrec.DecodeVerified(raw) // ReadLog verified it
			if err != nil {
				return nil, fmt.Errorf("replication: load unapplied tail: %w", err)
			}
			p := &proposal{lsn: e.LSN, entry: e, raw: raw}
			tail = append(tail, p)
			l.overlay.add(&p.entry, db)
			l.tail.add(e.LSN, raw, e.TimeNs)
		}
	}
	l.core = newLeaderCore(coreConfig{
		mode:             cfg.Mode,
		heartbeat:        int64(cfg.IdleHeartbeat), // no echoes wanted yet
		writeTimeout:     int64(cfg.WriteTimeout),
		followerTimeout:  int64(cfg.FollowerTimeout),
		retainBytes:      cfg.RetainBytes,
		retainMinBytes:   cfg.RetainMinBytes,
		retentionEvery:   int64(cfg.RetentionEvery),
		maxInFlight:      cfg.MaxInFlight,
		maxInFlightBytes: cfg.MaxInFlightBytes,
		maxAppendDelay:   max(int64(cfg.MaxCommitDelay), 0),
	}, durable, applied, tail, cfg.Now().UnixNano())
	l.start = logrec.Position{Epoch: EpochAt(cfg.DB.EpochHistory(), durable), LSN: durable}
	l.tickTimer = time.NewTimer(cfg.TickInterval) // rearmed by the first Ready's TickAt
	l.tickSwap = make(chan struct{}, 1)
	l.echoUntil.Store(math.MinInt64) // no echoes wanted (the lease clock may read negative)
	l.wg.Add(3)
	go l.committer()
	go l.applier()
	go l.ticker()
	l.mu.Lock()
	l.dispatchLocked()
	l.mu.Unlock()
	l.log.Info("leading", "durable_lsn", durable, "applied_lsn", applied)
	return l, nil
}

// dispatchLocked hands the core's Ready to the goroutines that carry it
// out, in the order its contract gives. The caller holds mu.
func (l *Leader) dispatchLocked() {
	rd := l.core.Ready()
	l.dispatchReadyLocked(rd, ErrWriteTimeout)
}

func (l *Leader) dispatchReadyLocked(rd leaderReady, expired error) {
	if len(rd.Append) > 0 {
		if l.appendTimer != nil && rd.AppendAt == 0 {
			// A hold, if one ran, ended with this batch: its timer
			// would only wake the process for nothing.
			l.appendTimer.Stop()
		}
		l.appendQ = rd.Append
		now := mono(time.Now())
		l.appendOut.Store(now)
		if l.appendedAt > 0 {
			l.cycle.appendGap.Add(now - l.appendedAt)
			l.appendedAt = 0
		}
		if w := l.parkedWriter(rd.Append); w != nil {
			// Woken with the batch instead of for its answer: the
			// append costs no wake-up of its own.
			l.appendBy = w
			l.giveJob(w)
		} else {
			count(&l.handoffs.append, signal(l.appendWake) && l.committerParked.Load())
		}
	}
	if rd.AppendAt > 0 {
		l.armAppendTimerLocked(time.Duration(rd.AppendAt - l.cfg.Now().UnixNano()))
	}
	if rd.TickAt > 0 {
		l.armTickLocked(time.Duration(max(rd.TickAt, l.tickFloor) - l.cfg.Now().UnixNano()))
	}
	if len(rd.Apply) > 0 {
		l.applyQ = rd.Apply
		l.applyOut.Store(mono(time.Now()))
		if r := l.running; r != nil && (slices.Contains(rd.Apply, r) || r == committerRuns && l.afterAppend && l.appendQ == nil) {
			// It has just made its own group durable: a writer applies
			// it at once, and so does the committer when no next group
			// waits for its fsync (else the applier overlaps the two).
			l.applyBy = r
		} else if w := l.parkedWriter(rd.Apply); w != nil {
			l.applyBy = w
			l.giveJob(w)
		} else {
			count(&l.handoffs.apply, signal(l.applyWake) && l.applierParked.Load())
		}
	}
	for _, s := range rd.Send {
		if out := l.streams[s.Session]; out != nil {
			out.through, out.commit = s.Through, s.Commit
			if l.cfg.Buggify.AckBeforeDurable {
				// The planted bug's writes are acknowledged before any
				// copy is durable: none goes to a follower before the
				// leader's own (delayed) log write.
				out.through = min(out.through, l.core.durable)
			}
			// A stamp pairs with the commit only while it is the core's
			// commit now, after every stamp recorded so far arrived (a
			// send the core made earlier may carry an older commit: it
			// keeps the older stamp, which an older commit proved), and
			// only once this leadership's commit has reached its start:
			// until then writes that earlier leaders acknowledged may be
			// past it (a promoted sync member's durable tail).
			if s.Commit == l.core.commit && s.Commit >= l.core.startLSN {
				out.commitStamp = out.readStamp
			}
			out.seq++
			count(&l.handoffs.stream, signal(out.wake) && out.parked.Load())
		}
	}
	for _, s := range rd.Disconnect {
		if out := l.streams[s.Session]; out != nil {
			out.closeOnce.Do(func() { close(out.closed) })
		}
	}
	for _, p := range rd.Acked {
		l.answerWriter(p, nil)
	}
	for _, p := range rd.Expired {
		l.answerWriter(p, expired)
	}
	for _, w := range rd.Waits {
		close(w.wake)
		l.handoffs.wait.Add(1)
	}
	if rd.TrimBefore > 0 {
		l.trimQ = rd.TrimBefore
	}
	if rd.Readable {
		l.readable.Store(true)
	}
}

// answerWriter answers p's writer: its Then callback (after mu is released,
// see unlock) or its done channel. The caller holds mu.
func (l *Leader) answerWriter(p *proposal, err error) {
	if p.then != nil {
		l.notify = append(l.notify, notice{p, p.then, err})
		p.then = nil
		return
	}
	count(&l.handoffs.writer, p.finish(err) && p.parked.Load())
}

// notice is an answer owed to p's Then callback.
type notice struct {
	p    *proposal
	then func(commands.Reply, uint64, error)
	err  error
}

// unlock releases mu and then runs the Then callbacks whose answers the
// dispatch under it produced, on this goroutine: run to completion, the
// goroutine that commits a group writes its writers' replies, as Redis's
// one thread does, and no writer's goroutine is woken for them. A
// callback whose write committed while the lease is not valid waits for
// it on a goroutine of its own, as Wait would.
func (l *Leader) unlock() {
	owed := l.notify
	l.notify = nil
	l.mu.Unlock()
	if l.answerSplit > 0 && len(owed) >= l.answerSplit {
		// The replies are independent writes to different sockets (one
		// owed reply per connection, resp/owed.go), and in a closed loop
		// the next group forms only as they go out: written one after
		// another they are the longest part of the cycle after the
		// fsync. So the second half goes to a goroutine of its own, which
		// a core with nothing to do takes at once (on a busy machine it
		// runs when this one next yields, at the cost of one goroutine
		// per group).
		half := len(owed) / 2
		rest := owed[half:]
		owed = owed[:half]
		l.handoffs.answer.Add(1)
		go l.answerNotices(rest)
	}
	l.answerNotices(owed)
}

// answerNotices runs the Then callbacks of owed (unlock).
func (l *Leader) answerNotices(owed []notice) {
	for _, n := range owed {
		// Serving, not Valid: an answer marks the lease used, which keeps
		// the confirmer hot (Lease.TakeUse). With Valid, writes answered
		// here never did, so under a SET load the confirmer went idle, the
		// lease lapsed 100 ms after its last confirmation and the answers
		// of the next few ms waited for one (3% of SETs, ~2.6 ms each).
		if n.err == nil && !l.cfg.Lease.Serving() {
			go func() {
				n.p.thenAnswer(n.then, l.cfg.Lease.await(context.Background(), l.ctx.Done(), l.cfg.WriteTimeout))
			}()
			continue
		}
		n.p.thenAnswer(n.then, n.err)
	}
}

// committerRuns stands for the committer goroutine in applyBy and
// running: it applies the group it made durable itself.
var committerRuns = &proposal{}

// errJob is what a writer takes (proposal.take) for a doneJob on its done
// channel: a job to run (runJobs) before its answer.
var errJob = errors.New("replication: a job for the writer")

// parkedWriter picks the writer that runs batch's Append or Apply, run to
// completion in the manner of PostgreSQL's group commit: a writer of the
// batch blocked waiting for its answer, which must be woken to answer
// anyway, does the work, and no committer or applier goroutine is woken.
// nil when none waits (then the committer or the applier does it). The
// caller holds mu.
func (l *Leader) parkedWriter(batch []*proposal) *proposal {
	if l.cfg.Buggify.AckBeforeDurable {
		return nil
	}
	for _, p := range batch {
		if p.done != nil && !p.answered && !p.gone && p.parked.Load() {
			return p
		}
	}
	return nil
}

// giveJob wakes the parked writer w to run a job. The caller holds mu.
func (l *Leader) giveJob(w *proposal) {
	w.parked.Store(false)
	w.done <- doneJob // room: at most two jobs and one answer, ever
	l.handoffs.writer.Add(1)
}

// runJobs is the writer p's part in run to completion: it runs the
// Append and Apply batches the driver gave it, as the committer and the
// applier would, until it has none (the Apply of a group it made durable
// is its own at once), or the leader stops (Fail answers everyone).
func (l *Leader) runJobs(p *proposal) {
	for {
		l.mu.Lock()
		var batch []*proposal
		var appending bool
		switch {
		case l.stopped:
		case l.appendBy == p:
			batch, appending = l.appendQ, true
			l.appendQ, l.appendBy = nil, nil
		case l.applyBy == p:
			batch = l.applyQ
			l.applyQ, l.applyBy = nil, nil
		}
		if batch == nil {
			l.running = nil
			l.mu.Unlock()
			return
		}
		l.running = p
		l.wg.Add(1) // it touches storage: stop waits for it
		l.mu.Unlock()
		var ok bool
		if appending {
			ok = l.appendBatch(batch)
		} else {
			ok = l.apply(batch)
		}
		l.wg.Done()
		if !ok {
			l.mu.Lock()
			l.running = nil
			l.mu.Unlock()
			return
		}
	}
}

// giveUp records that p's writer stopped waiting; a batch it was given
// and has not taken goes to the committer or the applier.
func (l *Leader) giveUp(p *proposal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p.gone = true
	if l.appendBy == p {
		l.appendBy = nil
		count(&l.handoffs.append, signal(l.appendWake) && l.committerParked.Load())
	}
	if l.applyBy == p {
		l.applyBy = nil
		count(&l.handoffs.apply, signal(l.applyWake) && l.applierParked.Load())
	}
}

// armAppendTimerLocked makes the core's AppendDue run after d. The
// caller holds mu.
func (l *Leader) armAppendTimerLocked(d time.Duration) {
	if l.appendTimer != nil {
		l.appendTimer.Reset(d)
		return
	}
	l.appendTimer = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.stopped {
			return
		}
		l.handoffs.timer.Add(1)
		l.core.AppendDue(l.cfg.Now().UnixNano())
		l.dispatchLocked()
	})
}

// enter registers a goroutine that may touch storage; false once the
// leader is stopping.
func (l *Leader) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.wg.Add(1)
	return true
}

// Epoch is the leader's epoch.
func (l *Leader) Epoch() uint64 { return l.epoch }

// Done is closed once the leader has begun to stop, by Close or by itself
// (it saw a higher epoch, or its storage failed); Err then says why.
func (l *Leader) Done() <-chan struct{} { return l.ctx.Done() }

// Err is why the leader stopped (ErrNotLeader after Close, ErrStaleEpoch
// after seeing a higher epoch, a storage error), or nil while it leads.
func (l *Leader) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close stops the leader and returns once every goroutine it started that
// can touch storage (committer, applier, ticker, follower streams,
// snapshots) has returned. Writes still pending fail with ErrNotLeader:
// their outcome is unknown to the client, as they may be durable and
// commit under a later leadership.
func (l *Leader) Close() { l.stop(ErrNotLeader) }

func (l *Leader) stop(err error) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		<-l.finished
		return
	}
	l.stopped, l.err = true, err
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	l.dispatchReadyLocked(l.core.Fail(), err)
	if l.appendTimer != nil {
		l.appendTimer.Stop()
	}
	l.unlock()
	close(l.finished)
}

// fail stops the leader from one of its own goroutines, which stop must
// not wait for.
func (l *Leader) fail(err error) { go l.stop(err) }

// observeEpoch persists a higher epoch a follower reported and steps
// down. If the epoch cannot be persisted the process must stop: after a
// restart it would not know the epoch exists and could start a leadership
// under the same number.
func (l *Leader) observeEpoch(e uint64, from string) {
	l.log.Warn("a follower has seen a newer epoch; stepping down", "peer", from, "peer_epoch", e)
	if err := l.persistEpoch(e); err != nil {
		l.cfg.Fatal(fmt.Errorf("replication: persist epoch %d seen by %s: %w", e, from, err))
	}
	l.fail(fmt.Errorf("%w: follower %s is at epoch %d, leader at %d", ErrStaleEpoch, from, e, l.epoch))
}

// Propose runs a write command and waits for it: see Start and Wait.
func (l *Leader) Propose(ctx context.Context, exec ExecFunc) (commands.Reply, uint64, error) {
	p, err := l.Start(ctx, exec)
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
	// err is the command's own error reply (a commands input error),
	// answered as reply is by a command that logged nothing.
	err error
	p   *proposal // nil when the command logged nothing
	// observed is the last LSN the command may have read (no-op writes);
	// seen that it was applied already when the command ran, so Wait need
	// not ask the core (applied only grows).
	observed uint64
	seen     bool
}

// noOpWrites counts the answers of this process's write commands that
// logged nothing (a pop of a drained key, an SADD of a member already
// there), noOpWaits those of them that waited for the leader's core to
// apply what they had read before they could be answered (NoOpWrites).
var noOpWrites, noOpWaits atomic.Uint64

// NoOpWrites returns how many write commands of this process logged
// nothing, and how many of those waited for an entry to be applied.
func NoOpWrites() (n, waited uint64) { return noOpWrites.Load(), noOpWaits.Load() }

// Start sequences a write command without waiting for it. exec computes the
// reply and row operations against the committed data overlaid with every
// uncommitted write, so read-modify-write commands see the writes ordered
// before them, including earlier commands of the same pipeline. The entry is
// queued for the next group commit. Commands of one connection can be
// started back to back and waited for in order, so that a pipeline shares
// one fsync. A command's own error (a commands input error) is its reply:
// Start returns a Pending whose Wait answers it once what the command read
// is applied, as a write that logged nothing is answered; any other error
// of exec is Start's.
//
// When the writes in flight have reached MaxInFlight or MaxInFlightBytes,
// Start waits for room until ctx ends or the core's admission deadline
// (WriteTimeout from the first refusal) passes, and then fails with
// ErrOverloaded; the write was not sequenced.
func (l *Leader) Start(ctx context.Context, exec ExecFunc) (*Pending, error) {
	lsn, applied, err := l.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer l.seqMu.Unlock()
	now := l.cfg.Now()
	// The proposal is allocated first and holds the view, so that the
	// view costs no allocation of its own (a value converted to the
	// interface would be boxed); a write that logs nothing then uses it
	// for its Pending.
	p := &proposal{view: overlayView{o: l.overlay, base: storage.View{DB: l.cfg.DB, NowMs: now.UnixMilli()}, lsn: lsn}}
	res, err := exec(&p.view, now.UnixMilli())
	if err != nil && (!commands.IsInputError(err) || plantErrorReplyEarly) {
		return nil, err
	}
	if err != nil || len(res.Ops) == 0 {
		// It read the data as of lsn-1 (seqMu is held from admit on:
		// nothing was sequenced in between), but only the keys it
		// noted: the rows it read were written by entries at or below
		// the last entry in the overlay that touched one of them
		// (keyLSNs), or are committed. It is answered, as a read is,
		// once those are applied and the leadership's own start is
		// (ReadBarrier's rule), under the lease: when admit found that
		// so already, with no wait for the core (applied only grows),
		// whatever else is in flight — a pop that finds its key
		// drained, an SADD of a member already there, answered as
		// Redis answers them, with no fsync and no group commit. A
		// scan of the keyspace (wide) waits for every entry before it.
		// The command's own error (WRONGTYPE, not an integer) is its
		// reply, answered so too: it may say what an entry in flight
		// wrote (an INCR of a string SET just before), which a failover
		// could still lose.
		observed := max(p.view.observed(res.ShapeOnly && err == nil), l.core.StartLSN())
		if plantNoOpWaitsAll {
			observed = lsn - 1
		}
		if plantNoOpEarly {
			observed = 0
		}
		p.pending = Pending{l: l, reply: res.Reply, err: err, observed: observed, seen: applied >= observed}
		return &p.pending, nil
	}
	if n := entryBound(res.Ops); n > l.cfg.MaxEntryBytes {
		// Refused before it is encoded: a bound, not the exact size, so
		// that a huge entry is never built only to be dropped.
		return nil, &entryTooLargeError{size: n, limit: l.cfg.MaxEntryBytes}
	}
	if err := l.formats.check(logrec.MinFormat(res.Ops)); err != nil {
		return nil, err
	}
	if err := l.touchWatchedLocked(lsn, res.Ops, &p.view); err != nil {
		return nil, err
	}
	if l.formats.reads(logrec.FormatV3) {
		l.priorKey = l.overlay.setPriors(res.Ops, l.cfg.DB, l.priorKey)
	}
	// Encoded once, and the ops (the command's own, rewritten in place)
	// then point into the encoding, as a decode of it would: the entry
	// owns its bytes, for the command's arguments belong to the
	// connection's buffer and the caller may give up waiting. No decode
	// pass, no second ops slice.
	p.entry = logrec.Entry{Epoch: l.epoch, LSN: lsn, TimeNs: now.UnixNano(), Ops: res.Ops}
	raw := logrec.EncodeOwned(&p.entry)
	p.lsn, p.raw, p.writer, p.pub = lsn, raw, true, res.Publish
	p.pending = Pending{l: l, reply: res.Reply, p: p}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil, ErrNotLeader
	}
	l.core.Propose(p, now.UnixNano())
	l.dispatchLocked()
	l.mu.Unlock()
	l.overlay.add(&p.entry, l.cfg.DB)
	if l.cfg.Sequenced != nil {
		l.cfg.Sequenced(p.entry.Ops)
	}
	return &p.pending, nil
}

// Planted bugs for tests. plantNoOpEarly answers a write that logs
// nothing at once, before the entries it read are applied
// (TestProposeNoOpsWaitsForApplied, TestNoOpWaitsForWhatItRead must catch
// it); plantNoOpWaitsAll makes it wait for every entry before it, what
// it read or not (TestNoOpOfCommittedKeysDoesNotWait must catch it).
var plantNoOpEarly, plantNoOpWaitsAll = false, false

// plantErrorReplyEarly answers a command's own error at once, from data an
// entry in flight wrote (TestErrorReplyWaitsForWhatItRead must catch it).
var plantErrorReplyEarly = false

// entryBound is at least the size of an entry holding ops, as
// logrec.Append encodes it: its fixed fields, and per op its kind, every
// byte string with its length and every number as the longest varint.
func entryBound(ops []logrec.Op) int64 {
	const fixed = 64 // frame, format, epoch, LSN, time, op count
	const perOp = 1 + 5*binary.MaxVarintLen64
	n := int64(fixed)
	for i := range ops {
		op := &ops[i]
		n += perOp + int64(len(op.Key)+len(op.Sub)+len(op.Value))
	}
	return n
}

// entryTooLargeError is ErrEntryTooLarge and a commands input error: the
// client is told why its write was refused.
type entryTooLargeError struct{ size, limit int64 }

func (e *entryTooLargeError) Error() string {
	return fmt.Sprintf("this write's log entry would be about %d bytes, more than a log entry may hold (%d bytes); write less at a time", e.size, e.limit)
}

func (e *entryTooLargeError) Unwrap() []error {
	return []error{ErrEntryTooLarge, commands.InputError(e.Error())}
}

// admit returns, holding seqMu, the LSN the next write gets once the core
// has room for it, and the core's applied LSN then. Without room it waits
// (waitRoom) and tries again when the core says there is room, until the
// wait's deadline, which the core set at the first refusal and which
// carries over to the next tries.
func (l *Leader) admit(ctx context.Context) (next, applied uint64, err error) {
	var deadline int64
	for {
		l.seqMu.Lock()
		l.mu.Lock()
		stopped, ok := l.stopped, l.core.HasRoom()
		next, applied = l.core.NextLSN(), l.core.applied
		l.mu.Unlock()
		if stopped || l.writesStopped {
			l.seqMu.Unlock()
			return 0, 0, ErrNotLeader
		}
		if ok {
			return next, applied, nil // only proposers move next, and they hold seqMu
		}
		l.seqMu.Unlock()
		w := &leaderWait{kind: waitRoom, deadline: deadline}
		if err := l.wait(ctx, w); err != nil {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			return 0, 0, ErrNotLeader // it stopped
		}
		if !w.met {
			if l.Err() != nil {
				return 0, 0, ErrNotLeader // Fail handed the wait back
			}
			return 0, 0, ErrOverloaded
		}
		deadline = w.deadline
	}
}

// Wait returns once the write is committed and applied (visible to every
// reader), with its LSN (0 when it logged nothing). A command that logged
// nothing still waits until every write it may have observed is applied,
// so its reply never reflects a write that could be lost. If ctx ends first
// the outcome is unknown: the write may still commit. After WriteTimeout it
// returns ErrWriteTimeout, and the outcome is unknown too.
func (pd *Pending) Wait(ctx context.Context) (commands.Reply, uint64, error) {
	if pd.p == nil {
		noOpWrites.Add(1)
		if !pd.seen {
			noOpWaits.Add(1)
			if err := pd.l.waitApplied(ctx, pd.observed); err != nil {
				return nil, 0, err
			}
		}
		if err := pd.l.cfg.Lease.await(ctx, pd.l.ctx.Done(), pd.l.cfg.WriteTimeout); err != nil {
			return nil, 0, err
		}
		if pd.err != nil {
			return nil, 0, pd.err
		}
		return pd.reply, 0, nil
	}
	if pd.l.cfg.Buggify.AckBeforeDurable {
		return pd.reply, pd.p.lsn, nil
	}
	pd.l.mu.Lock()
	done, answered, err := pd.p.waitChan()
	pd.l.mu.Unlock()
	for !answered {
		select {
		case s := <-done: // answered already (a pipeline's later writes)
			err = pd.p.take(s)
		default:
			pd.p.parked.Store(true)
			select {
			case s := <-done:
				err = pd.p.take(s)
			case <-ctx.Done():
				pd.l.giveUp(pd.p)
				return nil, 0, ctx.Err()
			}
		}
		if err != errJob {
			break
		}
		pd.l.runJobs(pd.p) // its own answer is normally there after it
	}
	if err != nil {
		return nil, 0, err
	}
	// Committed and applied; answer only under a valid lease. A leader
	// that lost it may have been replaced: its writer's outcome is unknown.
	if err := pd.l.cfg.Lease.await(ctx, pd.l.ctx.Done(), pd.l.cfg.WriteTimeout); err != nil {
		return nil, 0, err
	}
	return pd.reply, pd.p.lsn, nil
}

// Then is Wait without waiting: done is called once with what Wait would
// return, by the goroutine that answers the write, so that the writer's
// own goroutine need not block nor be woken for it (a connection goes
// back to reading and its reply is written for it). done runs without
// the leader's locks but on a goroutine of the write path: it must be
// quick and must not block (encode and write a reply). A write that
// logged nothing is waited for here, as Wait does.
func (pd *Pending) Then(ctx context.Context, done func(commands.Reply, uint64, error)) {
	pd.ThenMap(ctx, done, nil)
}

// ThenMap is Then with each error mapped by mapErr before done gets it
// (nil: as it is), for a caller that translates the errors of this
// package into its own: with a mapping function that is not a closure,
// it needs no closure around done for each write (an allocation each).
func (pd *Pending) ThenMap(ctx context.Context, done func(commands.Reply, uint64, error), mapErr func(error) error) {
	if pd.p == nil || pd.l.cfg.Buggify.AckBeforeDurable {
		reply, lsn, err := pd.Wait(ctx)
		if err != nil && mapErr != nil {
			err = mapErr(err)
		}
		done(reply, lsn, err)
		return
	}
	l := pd.l
	l.mu.Lock()
	pd.p.thenMap = mapErr
	if pd.p.answered {
		// Answered before it got here (early holds the answer) or given
		// to Then already.
		if pd.p.done != nil || !pd.p.early {
			l.mu.Unlock()
			panic("replication: Pending.Then after Then or Wait") // the caller's bug
		}
		pd.p.early = false
		err := pd.p.err
		l.mu.Unlock()
		if err == nil && !l.cfg.Lease.Serving() { // Serving: as unlock
			err = l.cfg.Lease.await(ctx, l.ctx.Done(), l.cfg.WriteTimeout)
		}
		pd.p.thenAnswer(done, err)
		return
	}
	pd.p.then = done
	l.mu.Unlock()
}

// StopWrites is a planned hand-over's first step: from now on Start
// refuses (ErrNotLeader), and once every write already sequenced is
// committed and applied (or ctx ends) it returns the last durable
// position, which a successor must reach to lose nothing. The writers in
// flight are answered as usual; the caller then revokes the lease.
func (l *Leader) StopWrites(ctx context.Context) (logrec.Position, error) {
	l.seqMu.Lock()
	l.writesStopped = true
	l.mu.Lock()
	last := l.core.NextLSN() - 1
	l.mu.Unlock()
	l.seqMu.Unlock()
	if err := l.waitApplied(ctx, last); err != nil {
		return logrec.Position{}, fmt.Errorf("replication: stop writes: wait for lsn %d: %w", last, err)
	}
	return l.cfg.DB.Durable(), nil
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
	if l.readable.Load() && l.cfg.Lease.Serving() {
		return nil
	}
	if !l.cfg.Lease.Serving() {
		ctx, cancel := context.WithTimeout(ctx, readBarrierWait)
		defer cancel()
		if err := l.cfg.Lease.await(ctx, l.ctx.Done(), readBarrierWait); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrWriteTimeout) {
				return fmt.Errorf("%w: the leader's lease is not confirmed (it may have been replaced)", ErrNotReady)
			}
			return err
		}
		if l.readable.Load() {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readBarrierWait)
	defer cancel()
	// StartLSN never changes after NewLeader: no lock needed.
	start := l.core.StartLSN()
	if err := l.waitApplied(ctx, start); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: entries up to lsn %d from before this leadership are not committed yet", ErrNotReady, start)
		}
		return err
	}
	return nil
}

// wait registers w with the core and blocks until it is done or ctx ends.
func (l *Leader) wait(ctx context.Context, w *leaderWait) error {
	w.wake = make(chan struct{})
	l.mu.Lock()
	if l.stopped {
		err := l.err
		l.mu.Unlock()
		return err
	}
	l.core.Wait(w, l.cfg.Now().UnixNano())
	l.dispatchLocked()
	if w.kind == waitDurable && !w.done {
		// Entries sent while no one waited (Append.defer_sync) may be
		// held by a follower: each stream sends a heartbeat that ends the
		// hold. The wait is the core's before that heartbeat is sent, and
		// sends from then on do not defer (leaderCore.DeferSync).
		l.askSync()
	}
	l.mu.Unlock()
	select {
	case <-w.wake:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if !w.done {
			l.core.CancelWait(w)
		}
		return ctx.Err()
	}
}

// waitApplied blocks until the applied LSN reaches lsn.
func (l *Leader) waitApplied(ctx context.Context, lsn uint64) error {
	w := &leaderWait{kind: waitApplied, lsn: lsn}
	if err := l.wait(ctx, w); err != nil {
		return err
	}
	if !w.met {
		return l.Err()
	}
	return nil
}

// WaitDurable blocks until n connected followers have durably stored lsn,
// or until timeout (0 = no limit) or ctx ends, and returns how many have.
func (l *Leader) WaitDurable(ctx context.Context, lsn uint64, n int, timeout time.Duration) int {
	w := &leaderWait{kind: waitDurable, lsn: lsn, n: n}
	if timeout > 0 {
		w.deadline = l.cfg.Now().Add(timeout).UnixNano()
	}
	_ = l.wait(ctx, w)
	l.mu.Lock()
	defer l.mu.Unlock()
	return w.count
}

// askSync asks every stream for a heartbeat that ends a follower's hold
// of deferred entries (under l.mu).
func (l *Leader) askSync() {
	for _, out := range l.streams {
		signal(out.syncWake)
	}
}

// SetSyncSet gives the leader the followers whose acknowledgements count
// in sync and semisync (see leaderCore.SetSyncSet for the order in which
// the control plane publishes and applies it).
func (l *Leader) SetSyncSet(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.core.SetSyncSet(ids)
	l.dispatchLocked()
}

// SetMode changes the commit rule at run time; what is committed stays so.
func (l *Leader) SetMode(m commit.Mode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.core.SetMode(m)
	l.dispatchLocked()
}

// Mode is the commit rule in force and the sync set.
func (l *Leader) Mode() (commit.Mode, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.Mode()
}

// RemoveFollower forgets follower id at once: it stops counting for
// commit, WAIT and log retention, and its stream, if open, is closed (it
// may connect again and be known again). It reports whether it was known.
func (l *Leader) RemoveFollower(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := l.core.RemoveFollower(id)
	l.dispatchLocked()
	signal(l.followersChanged)
	return ok
}

// FollowersChanged receives a value after a follower stream opened or
// ended or a follower was removed: what changes the follower table other
// than reports on open streams and time (the sync-set policy, settled,
// waits for it).
func (l *Leader) FollowersChanged() <-chan struct{} { return l.followersChanged }

// committer is the group-commit loop for the Append batches no writer
// runs (see parkedWriter): one handed out by a Propose (an idle leader, a
// lone client: the proposer is not waiting yet), by the timer of a held
// group, or while none of the batch's writers waits.
func (l *Leader) committer() {
	defer l.wg.Done()
	for {
		l.committerParked.Store(true)
		select {
		case <-l.appendWake:
		case <-l.ctx.Done():
			return
		}
		l.committerParked.Store(false)
		l.mu.Lock()
		batch := l.appendQ
		if l.appendBy != nil {
			batch = nil // a writer runs it
		} else {
			l.appendQ = nil
			l.running = committerRuns
		}
		l.mu.Unlock()
		if len(batch) > 0 && !l.appendBatch(batch) {
			return
		}
		l.mu.Lock()
		l.running = nil
		var apply []*proposal
		if l.applyBy == committerRuns {
			apply = l.applyQ
			l.applyQ, l.applyBy = nil, nil
		}
		l.mu.Unlock()
		if len(apply) > 0 && !l.apply(apply) {
			return
		}
	}
}

// appendBatch writes an Append batch to the log in one durable append
// and reports it durable; false if it failed (the leader is stopping).
func (l *Leader) appendBatch(batch []*proposal) bool {
	if l.cfg.Buggify.AckBeforeDurable {
		time.Sleep(ackBeforeDurableDelay)
	}
	if l.cfg.Buggify.SlowDisk && time.Since(l.lastStall) > 2*time.Second {
		time.Sleep(time.Second)
		l.lastStall = time.Now()
	}
	raws := make([][]byte, len(batch))
	for i, p := range batch {
		raws[i] = p.raw
	}
	began := time.Now()
	l.cycle.appendDelay.Add(mono(began) - l.appendOut.Load())
	var queued int64
	for now, i := l.cfg.Now().UnixNano(), 0; i < len(batch); i++ {
		queued += now - batch[i].entry.TimeNs
	}
	l.cycle.queued.Add(queued)
	l.cycle.appends.Add(1)
	l.cycle.entries.Add(uint64(len(batch)))
	if err := l.cfg.DB.AppendLog(raws); err != nil {
		// The log is the source of truth; without it nothing can be
		// acknowledged safely. Stop leading rather than guess.
		l.log.Error("log append failed; stepping down", "err", err)
		l.fail(fmt.Errorf("replication: log append: %w", err))
		return false
	}
	took := time.Since(began)
	l.cycle.fsync.Add(int64(took))
	l.mu.Lock()
	for _, p := range batch {
		l.tail.add(p.lsn, p.raw, p.entry.TimeNs)
	}
	l.core.NoteAppendCost(l.cfg.Now().UnixNano(), int64(took))
	l.core.Appended(batch[len(batch)-1].lsn)
	l.appendedAt = mono(time.Now())
	l.afterAppend = true
	l.dispatchLocked()
	l.afterAppend = false
	l.mu.Unlock()
	return true
}

// applier applies the core's Apply batches that no writer runs (see
// parkedWriter): the tail a leadership starts with, and batches committed
// while none of their writers waits. Applies run beside the committer, on
// a writer or here, so that applying one batch to the data overlaps the
// fsync of the next: a write's latency is one fsync plus one apply, and
// the group-commit cycle is the longer of the two, not their sum.
func (l *Leader) applier() {
	defer l.wg.Done()
	for {
		l.applierParked.Store(true)
		select {
		case <-l.applyWake:
		case <-l.ctx.Done():
			return
		}
		l.applierParked.Store(false)
		l.mu.Lock()
		batch := l.applyQ
		if l.applyBy != nil {
			batch = nil // a writer runs it
		} else {
			l.applyQ = nil
		}
		l.mu.Unlock()
		if len(batch) > 0 && !l.apply(batch) {
			return
		}
	}
}

// apply writes an Apply batch to the data with its applied LSN, drops it
// from the overlay and reports it to the core; false if it failed (the
// leader is stopping).
func (l *Leader) apply(batch []*proposal) bool {
	began := time.Now()
	l.cycle.applyDelay.Add(mono(began) - l.applyOut.Load())
	if err := l.cfg.DB.Apply(entriesOf(batch)); err != nil {
		l.log.Error("apply failed; stepping down", "err", err)
		l.fail(fmt.Errorf("replication: apply: %w", err))
		return false
	}
	applied := time.Now()
	l.cycle.apply.Add(int64(applied.Sub(began)))
	l.cycle.applies.Add(1)
	l.cycle.applied.Add(uint64(len(batch)))
	last := batch[len(batch)-1].lsn
	// A write's messages go out once it is applied here, in log order
	// (the core hands out one Apply batch at a time, whoever runs it),
	// before its writer is answered: every node's subscribers get them
	// after the write is readable there (Publish's after_lsn is this
	// applied LSN), and never for a write that did not commit.
	for _, p := range batch {
		for _, m := range p.pub {
			l.Publish(m.Channel, m.Payload)
		}
	}
	l.seqMu.Lock()
	l.overlay.drop(batch, last)
	l.seqMu.Unlock()
	l.mu.Lock()
	l.core.Applied(last, l.cfg.Now().UnixNano())
	l.dispatchLocked()
	answering := time.Now()
	l.cycle.applyRest.Add(int64(answering.Sub(applied)))
	l.cycle.answered.Add(uint64(len(l.notify)))
	l.unlock() // the writers' replies, if they left callbacks
	l.cycle.answer.Add(int64(time.Since(answering)))
	return true
}

// armTickLocked makes the ticker wake d from now. Go's runtime keeps a
// timer moved later in its heap at the old deadline until the heap is
// next cleaned (when a timer is added), and wakes the process there for
// nothing: with Beat moving the tick an interval later on every probe, an
// idle leader woke 25 ms after each probe (strace). So a pending deadline
// moved later gets a new timer instead, and the ticker, told through
// tickSwap, waits on its channel, which adds it to the heap and drops the
// stopped one. The caller holds mu.
func (l *Leader) armTickLocked(d time.Duration) {
	now := mono(time.Now())
	due := now + int64(d)
	if l.tickDue > now && due > l.tickDue {
		l.tickTimer.Stop()
		l.tickTimer = time.NewTimer(d)
		signal(l.tickSwap)
	} else {
		l.tickTimer.Reset(d)
	}
	l.tickDue = due
}

// ticker gives the core the time when the core asks for it (TickAt: the
// earliest deadline, typically the next heartbeat of an idle stream), and
// trims the log when it says so. A fixed ticker woke an idle leader every
// TickInterval to find nothing due nine times in ten.
func (l *Leader) ticker() {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		l.tickTimer.Stop()
		l.mu.Unlock()
	}()
	for {
		l.mu.Lock()
		timer := l.tickTimer.C
		l.mu.Unlock()
		select {
		case <-timer:
		case <-l.tickSwap:
			continue // wait on the new timer
		case <-l.ctx.Done():
			return
		}
		count, size := l.cfg.DB.LogSize()
		ext := logExtent{base: int64(l.cfg.DB.LogBase().LSN), count: count, bytes: size}
		l.ticks.Add(1)
		l.mu.Lock()
		now := l.cfg.Now().UnixNano()
		l.tickFloor = now + int64(l.cfg.TickInterval)
		if l.fastBeat && l.echoUntil.Load() <= mono(time.Now()) {
			// No echoes wanted any more: back to the idle cadence
			// (before the Tick, which arms the next tick by it).
			l.fastBeat = false
			l.core.SetHeartbeat(int64(l.cfg.IdleHeartbeat))
		}
		l.core.Tick(now, ext)
		l.dispatchLocked()
		trim := l.trimQ
		l.trimQ = 0
		l.unlock() // writes that timed out, and any answer still owed

		if trim > 0 {
			if err := l.cfg.DB.TruncateLogBefore(trim); err != nil {
				l.log.Warn("log retention failed", "err", err)
			}
		}
	}
}

// Status is a snapshot of the leader's positions and followers.
type Status struct {
	Epoch     uint64
	Durable   uint64
	Commit    uint64
	Applied   uint64
	Followers []FollowerProgress
	// InFlight and InFlightBytes are the writes sequenced and not applied.
	InFlight      int
	InFlightBytes int64
}

// Status reports the leader's positions and per-follower progress.
func (l *Leader) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.core.status()
	s.Epoch = l.epoch
	now := l.cfg.Now().UnixNano()
	for i := range s.Followers {
		if t, ok := l.oldestUnapplied(s.Followers[i].AppliedLSN, s.Durable); ok && now > t {
			s.Followers[i].LagSeconds = float64(now-t) / 1e9
		}
	}
	return s
}

// oldestUnapplied returns the leader time of entry applied+1, the oldest a
// follower at applied has not applied (none if it has applied everything
// durable). If that entry has left the tail cache it returns the time of
// the oldest cached entry, which makes the lag a lower bound. The caller
// holds mu.
func (l *Leader) oldestUnapplied(applied, durable uint64) (int64, bool) {
	if applied >= durable {
		return 0, false
	}
	return l.tail.timeFrom(applied + 1)
}
