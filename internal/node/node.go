// Package node is one tandem server process: a Pebble database, a role,
// the RESP front end for clients, the gRPC peer service for replication,
// and HTTP for status, metrics and pprof.
//
// # Roles
//
// A node is always in exactly one of three roles:
//
//   - leading: a replication.Leader takes writes and serves follower
//     streams;
//   - following: a replication.Follower applies a leader's log and serves
//     reads;
//   - fenced: no role. Writes get READONLY (resp.ErrNotLeader), reads get
//     MASTERDOWN (resp.ErrFenced), and ROLE, INFO, HELLO, /status and
//     /metrics say "fenced" and why.
//
// The role is one value, swapped under the node's mutex, so no caller sees
// no role or two. A node serves clients only once it has the role it
// starts in (Start): until then it is fenced ("starting"), and a client
// that connected as the port opened would see a one-node leader refuse
// its writes. A node changes role only through Lead, Follow and Fence,
// one change at a time: a change fences the node, stops the old role (stop
// returns only once nothing the role started can write to storage) and
// only then starts the new one, so a node never runs two writers on its
// database. A change that fails after the old role stopped leaves the node
// fenced with the error as the reason. A leader that stops by itself (it saw
// a higher epoch, or its storage failed) fences the node too.
//
// # The leader's lease under the control plane
//
// A leader answers (acknowledges a write, serves a read) only while its
// replication.Lease is valid. Rule: the lease is extended only by a
// confirmation — a linearizable etcd read that still names this node at
// its epoch — to the moment that read was asked plus the fence delay
// (FenceAfter, 100 ms), or, while etcd does not answer, by every other
// member's echo of a stream message, to its send time plus the fence delay;
// a new leader's lease begins a fence delay after it saw its promotion.
// So an old leader answers nothing later than a fence delay after the
// epoch changed in etcd, and the new one nothing earlier: their answers
// never overlap, in any commit mode, and a deposed leader never serves a
// stale read or acknowledges a write it may lose.
//
// The agent confirms on demand (agent.go, leaseRenewer): every 20 ms while
// answers use the lease, every 500 ms while the leader is idle, and at
// once when an answer finds the lease lapsed. The cadence changes nothing
// in the argument above, which never assumed the lease valid: an answer
// after an idle spell waits until a confirmation asked less than a fence
// delay before it makes the lease valid again, and is refused if the
// epoch moved on meanwhile (TestLeaseAfterIdleConfirmsBeforeAnswering).
// What the cadence costs is one etcd round trip on the first answer after
// an idle spell.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/pubsub"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/script"
	"github.com/tandemdb/tandem/internal/storage"
)

// Config configures a node.
type Config struct {
	ID      string
	DataDir string
	// Listen addresses; port 0 picks a free port.
	RESPAddr, PeerAddr, HTTPAddr string
	// FollowRESP and FollowPeer name the leader to follow at start; both
	// empty means the node starts as the leader.
	FollowRESP, FollowPeer string
	Mode                   commit.Mode
	RetainBytes            int64
	// RetainMinBytes is the log a node keeps beyond what followers need
	// (replication.LeaderConfig.RetainMinBytes); a node that does not
	// lead keeps this much of its applied log. 0 means the default.
	RetainMinBytes int64
	// MaxMemory is the node's memory budget, split by PlanMemory among
	// its caches; 0 means DefaultMaxMemory. The process's Go memory limit
	// (PlanMemory's GoLimit) is the caller's to set: it is process-wide.
	MaxMemory      int64
	MaxCommitDelay time.Duration
	// AnswerSplit goes to the leader (replication.LeaderConfig): the
	// fewest replies of a group written on two goroutines; 0 means its
	// default, negative never.
	AnswerSplit int
	MaxBulkLen  int64
	// WriteTimeout, MaxInFlight, MaxInFlightBytes and FollowerTimeout go
	// to the leader (replication.LeaderConfig); 0 means its default.
	WriteTimeout     time.Duration
	MaxInFlight      int
	MaxInFlightBytes int64
	FollowerTimeout  time.Duration
	// LeaderTimeout goes to the follower (replication.FollowerConfig):
	// how long it hears nothing on its stream before it reconnects; 0
	// means 20 of the leaders' idleStreamHeartbeat intervals (2 s, as
	// replication.DefaultLeaderTimeout); negative never.
	LeaderTimeout time.Duration
	// MaxEntryBytes bounds one log entry (replication.LeaderConfig); 0
	// means replication.DefaultMaxEntryBytes, what a stream message
	// (maxMessage) carries.
	MaxEntryBytes int64
	// Fatal is called when the process must stop because going on could
	// break a promise (the leader failed to persist a higher epoch). nil
	// means log at Error and exit with status 2, for a supervisor to
	// restart the process; tests set it so that they do not exit.
	Fatal   func(error)
	Buggify replication.Buggify
	Logger  *slog.Logger
	// ReadWait is how long a follower waits for a session's position (its
	// read policy's floor) before it answers "read elsewhere"; 0 means
	// DefaultReadWait.
	ReadWait time.Duration
	// ScriptBusyAfter is how long a script runs in the leader's sequencer
	// before writes are answered BUSY instead of queued behind it (Redis's
	// busy-reply-threshold); 0 means 5 s.
	ScriptBusyAfter time.Duration
	// MaxReplyBytes bounds a command's reply (a transaction's replies
	// together): a command that would answer more is refused with an
	// error (commands.ErrReplyTooLarge) before it holds the reply. It is
	// the process's (commands.SetMaxReplyBytes, CONFIG SET
	// max-reply-bytes); 0 means commands.DefaultMaxReplyBytes.
	MaxReplyBytes int64

	// Control plane. With Etcd set the node takes its role from the
	// cluster's topology in etcd (see agent.go) instead of FollowRESP and
	// FollowPeer: it registers itself as a member, leads when the topology
	// names it, follows the named leader otherwise, and answers only
	// under a lease it renews against etcd.
	Etcd    []string
	Cluster string // etcd key prefix name; "" means "tandem"
	// Priority (0-100, 0 = never promote) and Zone go to the member record.
	Priority int
	Zone     string
	// FenceAfter is how long a leader keeps answering after its last
	// confirmation that the topology still names it; a new leader waits
	// as long after its promotion before it answers. 0 means
	// DefaultFenceAfter.
	FenceAfter time.Duration
	// PeerRoutes maps a member id to the peer address to dial it at
	// instead of the one it registered (the chaos harness's relays).
	PeerRoutes map[string]string

	// leadHook, set only by tests, runs in Lead after the old role has
	// stopped and before the new epoch starts; an error fails Lead there.
	leadHook func() error
}

// ErrClosed: the node is closed and changes role no more.
var ErrClosed = errors.New("node: closed")

// Node is a running tandem server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	db      *storage.DB
	started time.Time
	cursors *commands.CursorTable
	// pubsub is the node's subscriptions (pubsub.go).
	pubsub *pubsub.Registry
	// blocked holds the clients blocked in BLPOP and its kin (blocking.go).
	blocked *blockRegistry
	// scripts runs EVAL and its kin and keeps this node's script cache
	// (not replicated: after a failover EVALSHA answers NOSCRIPT until
	// the script is loaded again).
	scripts *script.Engine

	respSrv *resp.Server
	// respLis is bound by listen and served (serveRESP) only once the
	// node has its first role: see Start.
	respLis  net.Listener
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	peerLis  net.Listener
	httpLis  net.Listener
	respAddr string

	// changeMu serialises role changes and Close; it is held while the old
	// role stops and the new one starts. Nothing that a role's stop waits
	// for takes it.
	changeMu sync.Mutex
	// role is the role in force, never nil: read by every command
	// (current), so an atomic load rather than a mutex every connection's
	// goroutine takes; set under changeMu.
	role atomic.Pointer[roleRef]

	agent *agent // the control plane's side in this node; nil when static

	reads readCounts // reads by policy and outcome (reads.go)
	// readsResumed: since this process started, the node has caught up
	// with a leader as a follower, or passed a leader's read barrier, so
	// its applied data is at least what it served before a crash; until
	// then follower reads answer LOADING (ReadAt).
	readsResumed atomic.Bool

	bg     sync.WaitGroup // expiry loop and role watchers
	closed chan struct{}
	// roleSet (capacity 1) is signalled by every setRole: the expiry
	// loop sleeps on it while a follower.
	roleSet chan struct{}
	// agentRoleSet (capacity 1) is signalled by every setRole too: the
	// agent's retry sleeps while the role matches the topology.
	agentRoleSet chan struct{}
	closeOnce    sync.Once
}

// role is what the node does now: *leading, *following or *fenced.
type role interface {
	// stop ends the role. It returns once nothing the role started can
	// write to storage. It may be called more than once.
	stop()
}

// leading is the leader role.
type leading struct {
	l *replication.Leader
	// lease gates its answers under the control plane (nil: static).
	lease *replication.Lease
	// sync is the sync-set policy of this leadership (the agent's
	// goroutine only).
	sync *failover.SyncSet
	// ctx ends when the node stops the role (not when the leader stops
	// by itself): the expiry loop's proposals end with it.
	ctx    context.Context
	cancel context.CancelFunc
	// users is this leadership's last-write position per user (reads.go).
	users *userPositions
	// scripts is the node's engine: a script running in the sequencer is
	// aborted when the role stops, since the leader's shutdown waits for
	// the sequencer (its applier takes the sequencing lock).
	scripts *script.Engine
}

// stop ends the role. Leader.Close waits for the peer handlers running on
// the leader (Serve, ServeSnapshot), which end with it.
func (r *leading) stop() {
	r.scripts.Abort()
	r.cancel()
	r.l.Close()
}

// following is the follower role.
type following struct {
	f          *replication.Follower
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{} // closed when f.Run has returned
	conn       *peerConn
	leaderRESP string // the leader's RESP address, for INFO, ROLE and status
	leaderPeer string
	leaderID   string // the leader's member id under the control plane
	index      *readIndex
}

func (r *following) stop() {
	r.cancel()
	<-r.done
	r.conn.Close()
}

// fenced is no role: the node serves neither writes nor reads.
type fenced struct {
	reason string
	since  time.Time
}

func (*fenced) stop() {}

// readErr is the error for a read on a fenced node.
func (r *fenced) readErr() error { return fmt.Errorf("%s: %w", r.reason, resp.ErrFenced) }

func newFenced(reason string) *fenced {
	// The reason goes into Redis error replies and INFO lines.
	reason = strings.Join(strings.Fields(reason), " ")
	return &fenced{reason: reason, since: time.Now()}
}

// Start opens the database, starts the role and the listeners.
func Start(cfg Config) (*Node, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	if cfg.MaxReplyBytes < 0 {
		return nil, fmt.Errorf("node: max-reply-bytes %d is negative", cfg.MaxReplyBytes)
	}
	sopts := PlanMemory(cfg.MaxMemory).Storage
	sopts.Logger = log
	db, err := storage.Open(cfg.DataDir, sopts)
	if err != nil {
		return nil, err
	}
	db.OnSettled(newHeapRelease().settled) // memory.go
	if cfg.MaxReplyBytes > 0 {
		commands.SetMaxReplyBytes(cfg.MaxReplyBytes)
	}
	n := &Node{
		cfg: cfg, log: log, db: db, started: time.Now(),
		cursors: commands.NewCursorTable(4096),
		pubsub:  pubsub.New(),
		blocked: newBlockRegistry(),
		scripts: script.New(script.Config{BusyAfter: cfg.ScriptBusyAfter, Log: log}),
		closed:  make(chan struct{}),
		roleSet: make(chan struct{}, 1), agentRoleSet: make(chan struct{}, 1),
	}
	n.role.Store(&roleRef{newFenced("starting")})
	if err := n.listen(); err != nil {
		n.Close()
		return nil, err
	}
	// Clients are served only once the node has the role it starts in:
	// while it is "starting" it would refuse writes (READONLY) and reads
	// (MASTERDOWN), and Lead takes a while (a new epoch fsynced, the
	// leader's log opened: 0.26 s on a busy machine), so a client that
	// connected as soon as the port was open (`tandem up`, a supervisor
	// waiting for PING) saw a one-node leader refuse its first write. The
	// port is bound before: a client that connects meanwhile waits in the
	// listen backlog for its first answer, from the role.
	switch {
	case len(cfg.Etcd) > 0:
		// The role comes from the topology; until then the node is
		// fenced, and says so: that may last (etcd down), so it serves.
		n.setRole(newFenced("waiting for the control plane"))
		n.serveRESP()
		if err := n.startAgent(); err != nil {
			n.Close()
			return nil, err
		}
	case cfg.FollowPeer != "":
		err = n.Follow(cfg.FollowRESP, cfg.FollowPeer)
	default:
		err = n.Lead()
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	if len(cfg.Etcd) == 0 {
		n.serveRESP()
	}
	n.bg.Add(2)
	go n.expiryLoop()
	go n.logRetentionLoop()
	return n, nil
}

func (n *Node) listen() error {
	var err error
	if n.peerLis, err = net.Listen("tcp", n.cfg.PeerAddr); err != nil {
		return fmt.Errorf("node: peer listener: %w", err)
	}
	n.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage),
		grpc.StaticStreamWindowSize(PeerWindow), grpc.StaticConnWindowSize(PeerWindow),
		// The leader's sends reference its log entries' bytes, one copy
		// for every follower (peerpb.Codec).
		grpc.ForceServerCodecV2(peerpb.Codec{}),
		// Stop waits for handlers too, so that none runs once storage closes.
		grpc.WaitForHandlers(true))
	peerpb.RegisterPeerServer(n.grpcSrv, &peerService{n: n})
	go n.grpcSrv.Serve(n.peerLis)

	if n.httpLis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("node: http listener: %w", err)
	}
	n.httpSrv = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go n.httpSrv.Serve(n.httpLis)

	if n.respLis, err = net.Listen("tcp", n.cfg.RESPAddr); err != nil {
		return fmt.Errorf("node: resp listener: %w", err)
	}
	n.respAddr = n.respLis.Addr().String()
	n.respSrv = resp.NewServer(resp.Config{MaxBulkLen: n.cfg.MaxBulkLen, WriteTimeout: n.cfg.WriteTimeout, Logger: n.log}, backend{n})
	return nil
}

// serveRESP starts serving clients on the RESP listener listen bound.
// Close closes the listener whether or not it was served.
func (n *Node) serveRESP() {
	go func() {
		if err := n.respSrv.Serve(n.respLis); err != nil && !errors.Is(err, net.ErrClosed) {
			n.log.Error("resp server stopped", "err", err)
		}
	}()
}

// maxMessage bounds one gRPC message: one log entry can hold a value of the
// maximum bulk length. A leader refuses a write whose entry would not fit
// in one (replication.DefaultMaxEntryBytes leaves room for the message's
// other fields; TestEntryFitsMessage).
const maxMessage = 1 << 30

// PeerWindow is the HTTP/2 flow-control window of every peer connection
// (stream and connection), on both ends, fixed. A fixed window turns off
// gRPC's bandwidth-delay estimator, which sent a PING (and got one back)
// for almost every message on a connection that carries few: on an idle
// cluster each stream heartbeat, its echo and each orchestrator probe came
// with a ping and a window update, about half of an idle leader's system
// calls. 16 MiB is the largest window the estimator would have grown to.
const PeerWindow = 16 << 20

// Addrs returns the bound RESP, peer and HTTP addresses.
func (n *Node) Addrs() (respAddr, peer, httpAddr string) {
	return n.respAddr, n.peerLis.Addr().String(), n.httpLis.Addr().String()
}

// current returns the role now; it is never nil.
// roleRef holds a role for Node.role (an atomic.Pointer needs one type).
type roleRef struct{ r role }

func (n *Node) current() role { return n.role.Load().r }

func (n *Node) setRole(r role) {
	n.role.Store(&roleRef{r})
	select {
	case n.roleSet <- struct{}{}:
	default:
	}
	select {
	case n.agentRoleSet <- struct{}{}:
	default:
	}
}

func (n *Node) isClosed() bool {
	select {
	case <-n.closed:
		return true
	default:
		return false
	}
}

// changeLocked fences the node (with why as the reason), stops the old
// role, then runs start, if any, and makes its role current. If start fails
// the node stays fenced with start's error as the reason. The caller holds
// changeMu.
func (n *Node) changeLocked(why string, start func() (role, error)) error {
	old := n.current()
	n.setRole(newFenced(why))
	old.stop()
	if start == nil {
		return nil
	}
	r, err := start()
	if err != nil {
		n.setRole(newFenced(err.Error()))
		n.log.Error("role change failed; the node is fenced", "err", err)
		return err
	}
	n.setRole(r)
	return nil
}

// Lead makes the node the leader at a new epoch (or keeps leading). If it
// fails the node is fenced.
func (n *Node) Lead() error {
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	if n.isClosed() {
		return ErrClosed
	}
	if r, ok := n.current().(*leading); ok {
		select {
		case <-r.l.Done():
			// Stopped by itself; its watcher has not fenced the node yet.
		default:
			return nil
		}
	}
	return n.changeLocked("changing role to leader", func() (role, error) { return n.startLeader(0, nil, n.cfg.Mode) })
}

// leadAt makes the node the leader of epoch, which the control plane
// assigned to it, answering under lease and committing by mode (the
// topology's mode in force: agent.modeOf). It keeps a leadership of that
// epoch that still runs; it never starts one at an epoch this node has
// seen (replication.ErrEpochUsed: the agent gets a new epoch first).
func (n *Node) leadAt(epoch uint64, lease *replication.Lease, mode commit.Mode) error {
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	if n.isClosed() {
		return ErrClosed
	}
	if r, ok := n.current().(*leading); ok && r.l.Epoch() == epoch {
		select {
		case <-r.l.Done():
		default:
			return nil
		}
	}
	return n.changeLocked(fmt.Sprintf("changing role to leader of epoch %d", epoch), func() (role, error) {
		return n.startLeader(epoch, lease, mode)
	})
}

// startLeader starts a leadership of epoch (0: the next epoch after every
// one this node has seen, for a static topology) that commits by mode from
// its first write. Under the control plane that is the topology's mode, not
// the node's --mode: the agent's sync-set step sets the topology's too, but
// only after apply returns (an etcd write later), and the lease may begin
// before that: a node started with the default --mode async, named leader
// of a semisync or quorum cluster, acknowledged writes on its own fsync
// alone until then, writes a failover could lose. In sync and semisync a
// leadership starts with no sync set, so it commits nothing until the
// step gives it the published one.
func (n *Node) startLeader(epoch uint64, lease *replication.Lease, mode commit.Mode) (role, error) {
	if n.cfg.leadHook != nil {
		if err := n.cfg.leadHook(); err != nil {
			return nil, fmt.Errorf("node: lead: %w", err)
		}
	}
	// Every leadership starts a new epoch, never used before on this node
	// (not even by itself before a restart), so that (epoch, LSN) names
	// one entry cluster-wide although a leader sends entries before its
	// own append of them is durable (replication.BeginEpoch says why).
	// Under the control plane etcd hands out epochs (a compare and swap),
	// so no two nodes start the same one; the agent asks for a new one
	// when the topology names this node at an epoch it has seen.
	epoch, err := replication.BeginEpoch(n.db, epoch, n.cfg.Buggify)
	if err != nil {
		return nil, fmt.Errorf("node: lead: %w", err)
	}
	l, err := replication.NewLeader(replication.LeaderConfig{
		DB:               n.db,
		NodeID:           n.cfg.ID,
		Mode:             mode,
		Logger:           n.log,
		RetainBytes:      n.cfg.RetainBytes,
		RetainMinBytes:   n.cfg.RetainMinBytes,
		MaxCommitDelay:   n.cfg.MaxCommitDelay,
		AnswerSplit:      n.cfg.AnswerSplit,
		WriteTimeout:     n.cfg.WriteTimeout,
		MaxInFlight:      n.cfg.MaxInFlight,
		MaxInFlightBytes: n.cfg.MaxInFlightBytes,
		MaxEntryBytes:    n.cfg.MaxEntryBytes,
		FollowerTimeout:  n.cfg.FollowerTimeout,
		Lease:            lease,
		Heartbeat:        streamHeartbeat,
		IdleHeartbeat:    idleStreamHeartbeat,
		Fatal:            n.fatal,
		Buggify:          n.cfg.Buggify,
		DeliverLocal:     n.pubsub.Publish,
		DeliverShard:     n.pubsub.SPublish,
		Sequenced:        n.blocked.sequenced,
		Settings:         n.settings(),
	}, epoch)
	if err != nil {
		return nil, fmt.Errorf("node: lead at epoch %d: %w", epoch, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Every write an earlier leadership acknowledged that survived is at
	// or before this leadership's start: the floor of every user it has
	// not seen write (userPositions).
	floor := l.StartPosition()
	if n.cfg.Buggify.LeaderForgetsUserFloor {
		floor = logrec.Position{} // planted bug: users' floors forgotten on failover
	}
	r := &leading{l: l, lease: lease, ctx: ctx, cancel: cancel, users: newUserPositions(floor, maxUsers), scripts: n.scripts}
	n.bg.Add(1)
	go n.watchLeader(r)
	n.log.Info("role: leader", "epoch", epoch)
	return r, nil
}

// streamHeartbeat and idleStreamHeartbeat are how often an idle follower
// stream carries a heartbeat: while the failsafe lease wants echoes
// (etcd does not confirm the lease), and otherwise.
//
// The failsafe lease is extended by echoes at most a fence delay (100 ms)
// old, so while it wants them a heartbeat goes well inside 100 ms: 50 ms.
//
// Otherwise the one reader of heartbeats is the orchestrator's followers'
// veto: a follower that heard its leader within --follower-silence
// (200 ms, or twice the longest silence it lately reported that ended),
// counting the age of its answer, vouches for a leader whose probes go
// unanswered. 100 ms keeps a live idle leader's followers vouching (what
// they report is at most 100 ms old plus the answer's age) and a stopped
// leader's silence ends their vouching within 200 ms of its last
// heartbeat, as --min-silence ends the probes' (250 ms less half an
// interval). A busy stream carries entries, not heartbeats. Freshness
// for bounded reads on an idle follower does not come from heartbeats
// (an idle leader's lease lapses between confirmations, and its
// heartbeats prove nothing then): the follower asks the leader
// (followerBounded). Each heartbeat wakes five goroutines on the two
// nodes (the leader's ticker, the stream's sender and gRPC's writer; the
// follower's gRPC reader and stream), so half as many heartbeats are
// about a third of an idle leader's wake-ups (bench/idle.sh).
const (
	streamHeartbeat     = 50 * time.Millisecond
	idleStreamHeartbeat = 100 * time.Millisecond
)

// leaderTimeoutBeats is the default leader timeout of a follower
// (Config.LeaderTimeout) in the leaders' idle heartbeat intervals: an
// idle stream carries a heartbeat at least every 1.25 intervals, so it is
// some 16 missed in a row (replication.DefaultLeaderTimeout).
const leaderTimeoutBeats = 20

// leaderTimeout is the follower's replication.FollowerConfig.LeaderTimeout.
func (n *Node) leaderTimeout() time.Duration {
	if n.cfg.LeaderTimeout != 0 {
		return n.cfg.LeaderTimeout
	}
	return leaderTimeoutBeats * idleStreamHeartbeat
}

// watchLeader fences the node when its leader stops by itself. It returns
// at once when the node stops the role.
func (n *Node) watchLeader(r *leading) {
	defer n.bg.Done()
	select {
	case <-r.l.Done():
	case <-r.ctx.Done():
		return
	}
	n.roleEnded(r, func() string {
		if err := r.l.Err(); err != nil {
			return "leader stopped: " + err.Error()
		}
		return "leader stopped"
	})
}

// roleEnded fences the node if r, which ended by itself, is still its role.
// reason is asked after r has stopped.
func (n *Node) roleEnded(r role, reason func() string) {
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	if n.current() != r {
		return // the node changed role meanwhile
	}
	n.setRole(newFenced("stopping"))
	r.stop()
	why := reason()
	n.setRole(newFenced(why))
	n.log.Warn("role ended by itself; the node is fenced", "reason", why)
}

// fatal is the leader's Fatal hook.
func (n *Node) fatal(err error) {
	if n.cfg.Fatal != nil {
		n.cfg.Fatal(err)
		return
	}
	n.log.Error("fatal: stopping the process so that a supervisor restarts it", "err", err)
	os.Exit(2)
}

// Follow makes the node follow the leader at peerAddr (RESP at respAddr).
// An address that cannot be dialled leaves the role as it was.
func (n *Node) Follow(respAddr, peerAddr string) error { return n.follow("", respAddr, peerAddr) }

// follow is Follow of the member id (empty when not known).
func (n *Node) follow(id, respAddr, peerAddr string) error {
	conn, err := newPeerConn(peerAddr)
	if err != nil {
		return err
	}
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	if n.isClosed() {
		conn.Close()
		return ErrClosed
	}
	return n.changeLocked("changing role to follower of "+respAddr, func() (role, error) {
		r := n.startFollower(conn, respAddr, peerAddr)
		r.leaderID = id
		return r, nil
	})
}

func (n *Node) startFollower(conn *peerConn, respAddr, peerAddr string) *following {
	httpAddr := ""
	if n.httpLis != nil {
		httpAddr = n.httpLis.Addr().String()
	}
	f := replication.NewFollower(replication.FollowerConfig{
		DB:            n.db,
		NodeID:        n.cfg.ID,
		RESPAddr:      n.respAddr,
		HTTPAddr:      httpAddr,
		DataDir:       n.cfg.DataDir,
		Dial:          conn,
		Logger:        n.log.With("leader", peerAddr),
		Buggify:       n.cfg.Buggify,
		LeaderTimeout: n.leaderTimeout(),
		Deliver:       func(ch, msg []byte) { n.pubsub.PublishHeld(ch, msg) },
		// Sharded messages (SPUBLISH) to the sharded subscribers.
		DeliverShard: func(ch, msg []byte) { n.pubsub.SPublishHeld(ch, msg) },
		// A batch of the leader's messages wakes each subscriber once.
		Delivered:   n.pubsub.WakeHeld,
		SetSettings: n.setSettings,
	})
	ctx, cancel := context.WithCancel(context.Background())
	r := &following{f: f, ctx: ctx, cancel: cancel, done: make(chan struct{}), conn: conn, leaderRESP: respAddr, leaderPeer: peerAddr,
		index: &readIndex{client: conn, epoch: n.db.Epoch}}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		err := f.Run(ctx)
		close(r.done)
		if ctx.Err() == nil {
			// Run follows until stopped; if it returns by itself the node
			// has no working role.
			n.roleEnded(r, func() string { return fmt.Sprintf("follower stopped: %v", err) })
		}
	}()
	n.log.Info("role: follower", "leader_resp", respAddr, "leader_peer", peerAddr)
	return r
}

// Fence takes the node out of service: it stops the current role and
// serves neither writes nor reads until Lead or Follow, saying reason in
// ROLE, INFO and status. The control plane fences a node it cannot trust.
func (n *Node) Fence(reason string) {
	n.changeMu.Lock()
	defer n.changeMu.Unlock()
	if n.isClosed() {
		return
	}
	_ = n.changeLocked(reason, nil)
	n.log.Info("role: fenced", "reason", reason)
}

// Close stops the node: clients first, then the role, then the peer and
// HTTP servers (each waits for its handlers, within a bound), then storage.
func (n *Node) Close() {
	n.closeOnce.Do(n.close)
}

// closeWait bounds how long Close waits for gRPC and HTTP handlers to
// finish before cutting them off.
const closeWait = 2 * time.Second

func (n *Node) close() {
	n.changeMu.Lock()
	close(n.closed)
	n.changeMu.Unlock()
	// Scripts run on the connections' goroutines, which the RESP server's
	// Close waits for: a script that never ends must not hold it.
	n.scripts.Close()
	if n.respSrv != nil {
		n.respSrv.Close()
	}
	if n.respLis != nil {
		// Not served yet if Start failed (Serve after Close closes it
		// too): an error for one already closed.
		_ = n.respLis.Close()
	}
	n.changeMu.Lock()
	_ = n.changeLocked("node closed", nil)
	n.changeMu.Unlock()
	if n.grpcSrv != nil {
		stopped := make(chan struct{})
		go func() {
			n.grpcSrv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(closeWait):
			n.log.Warn("peer handlers still running; stopping them")
			n.grpcSrv.Stop() // waits for handlers (WaitForHandlers)
			<-stopped
		}
	}
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			n.httpSrv.Close()
		}
		cancel()
	}
	n.bg.Wait()
	if err := n.db.Close(); err != nil {
		n.log.Warn("close storage", "err", err)
	}
}

// expiryEvery is the least time between two rounds of the expiry loop
// (Redis's active expiry runs ten times a second too), and expiryMaxSleep
// the longest it sleeps (a wall clock step is noticed by then).
const (
	expiryEvery    = 100 * time.Millisecond
	expiryMaxSleep = 10 * time.Second
)

// expiryLoop deletes expired keys on the leader, through the log, so that
// followers delete them at the same LSN, and sweeps garbage sub-key rows
// on every node. It runs a round when one has work (expiryDue), at most
// every expiryEvery, and sleeps otherwise: an idle node with no key due
// wakes for its sweep passes only, not ten times a second. An applied key
// due sooner than it slept for (storage's ExpiryWritten) and a change of
// role wake it to sleep anew.
func (n *Node) expiryLoop() {
	defer n.bg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	var last time.Time // the last round
	for {
		now := time.Now()
		t.Reset(max(n.expiryDue(now), last.Add(expiryEvery).Sub(now)))
		select {
		case <-t.C:
		case <-n.db.ExpiryWritten():
			continue
		case <-n.roleSet:
			continue
		case <-n.closed:
			return
		}
		last = time.Now()
		n.expiryRound(last)
	}
}

// expiryDue is how long from now until a round of the expiry loop has
// work: the next sweep pass (or at once while one is under way), and on
// the leader the earliest expiry the index may hold (at once when it is
// not known); at most expiryMaxSleep.
func (n *Node) expiryDue(now time.Time) time.Duration {
	due := n.db.SweepDue()
	if _, ok := n.current().(*leading); ok {
		due = min(due, n.db.NextExpiry())
	}
	ms := due - now.UnixMilli() // due may be math.MaxInt64: no key expires
	return time.Duration(min(max(ms, 0), expiryMaxSleep.Milliseconds())) * time.Millisecond
}

// expiryRound sweeps (bounded) and, on the leader, deletes the keys due
// by now through the log.
func (n *Node) expiryRound(now time.Time) {
	// Garbage sub-key rows are swept on every node (local, bounded:
	// see storage.DB.Sweep).
	if _, err := n.db.Sweep(now.UnixMilli(), 1024); err != nil {
		n.log.Warn("sweep of garbage sub-key rows", "err", err)
	}
	r, ok := n.current().(*leading)
	if !ok {
		return
	}
	keys, err := n.db.ExpiredKeys(now.UnixMilli(), 256)
	if err != nil {
		n.log.Warn("expiry scan", "err", err)
		return
	}
	if len(keys) == 0 {
		return
	}
	// The proposal ends with the role: a role change never waits for it.
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	_, _, err = r.l.Propose(ctx, expireExec(keys))
	cancel()
	switch {
	case err == nil, r.ctx.Err() != nil,
		errors.Is(err, replication.ErrNotLeader), errors.Is(err, replication.ErrStaleEpoch):
		// Done, or the role changed: the next leader scans again.
	default:
		n.log.Warn("expiry delete", "err", err, "keys", len(keys))
	}
}
