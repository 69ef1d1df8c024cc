package node

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/storage"
)

// Read policies, enforced here (see package resp, reads.go, for the
// commands and the floors each policy asks for).
//
// The leader serves every read at once (after its ReadBarrier): it applies
// a write before acknowledging it, and followers apply only what it
// committed, so every legitimate position is applied on it. It checks the
// floor against its history all the same: a floor its history replaced is
// ErrPositionLost, one from a later epoch means a newer leader exists.
//
// A follower serves a read once it has applied the floor (ryw, monotonic),
// the leader's commit position learned under the leader's lease after the
// read began (linearizable: by a round trip on the replication stream,
// replication.Follower.WaitRoundTrip, when the leader answers those, else
// the ReadIndex RPC), the user's last write as the leader knows it (a
// session with TANDEM.USER: the ReadIndex RPC), or once its staleness is
// within the bound (bounded; see followerBounded). It waits at most
// ReadWait, then answers ErrReadElsewhere, as it does at once for the
// leader policy.
//
// Cross-device read-your-writes: the last-write position of each user
// lives in the leader's memory (userPositions), recorded as the leader
// acknowledges a write of a session that named its user. A follower asks
// the leader for it with the ReadIndex RPC, batched (readIndex); see
// ARCHITECTURE.md for the cost per read.

// DefaultReadWait is how long a follower waits for the session's position
// before it answers "read elsewhere".
const DefaultReadWait = 100 * time.Millisecond

// maxUsers bounds the leader's per-user positions (about 100 bytes each).
const maxUsers = 100_000

func (n *Node) readWait() time.Duration {
	if n.cfg.ReadWait > 0 {
		return n.cfg.ReadWait
	}
	return DefaultReadWait
}

var _ resp.PositionBackend = backend{}

// Read outcomes, counted per policy (readCounts, /metrics, INFO).
const (
	readServed = iota
	readElsewhere
	readLost
	readOutcomes
)

var readOutcomeNames = [readOutcomes]string{"served", "elsewhere", "lost"}

// readCounts counts reads by policy and outcome.
type readCounts [resp.PolicyLinearizable + 1][readOutcomes]atomic.Uint64

func (c *readCounts) count(p resp.PolicyKind, err error) {
	switch {
	case err == nil:
		c[p][readServed].Add(1)
	case errors.Is(err, resp.ErrReadElsewhere):
		c[p][readElsewhere].Add(1)
	case errors.Is(err, resp.ErrPositionLost):
		c[p][readLost].Add(1)
	}
}

// ReadAt serves a read under the session's policy (see above).
func (b backend) ReadAt(ctx context.Context, spec *commands.Spec, args [][]byte, req resp.ReadRequest) (reply commands.Reply, at resp.Position, err error) {
	defer func() { b.n.reads.count(req.Policy.Kind, err) }()
	switch r := b.n.current().(type) {
	case *fenced:
		return nil, at, r.readErr()
	case *following:
		check, err := b.followerRead(ctx, r, req)
		if err != nil {
			return nil, at, err
		}
		defer func() {
			if err == nil {
				if err = check(); err != nil {
					reply = nil
				}
			}
		}()
	case *leading:
		switch err := r.l.ReadBarrier(ctx); {
		case errors.Is(err, replication.ErrNotReady):
			return nil, at, resp.ErrLoading // clients retry LOADING, as after a restart
		case errors.Is(err, replication.ErrNotLeader), errors.Is(err, replication.ErrStaleEpoch):
			// The leader stopped under the read; the node is being fenced.
			return nil, at, fmt.Errorf("%w: leader stopped", resp.ErrFenced)
		case err != nil:
			return nil, at, leaderError(err)
		}
		b.n.readsResumed.Store(true) // the barrier: everything durable at its start is applied
		if req.Floor != (resp.Position{}) && req.Policy.Kind != resp.PolicyAny && req.Policy.Kind != resp.PolicyBounded &&
			!r.l.HoldsApplied(logrec.Position(req.Floor)) {
			// (A floor this leadership applied, the common case, needs
			// no wait: no context, timer or history copy per read.)
			wctx, cancel := context.WithTimeout(ctx, b.n.readWait())
			err := r.l.WaitApplied(wctx, logrec.Position(req.Floor))
			cancel()
			if err != nil {
				return nil, at, readError(err)
			}
		}
	}
	now := time.Now().UnixMilli()
	// The command's Ctx and view in one allocation, not one each (both
	// escape through Exec; a *storage.View is a keyspace.View).
	run := &readRun{ctx: commands.Ctx{NowMs: now, Cursors: b.n.cursors, Scripts: b.n.scripts}, view: storage.View{DB: b.n.db, NowMs: now}}
	// Every batch applied whole or not at all, for the command's several
	// row reads (storage.DB.ReadLock).
	unlock := b.n.db.ReadLock()
	res, err := spec.Exec(&run.ctx, &run.view, args)
	unlock()
	if err != nil {
		return nil, at, err
	}
	// Read after the data: the position is at or after all the read saw.
	return res.Reply, b.n.appliedPosition(), nil
}

// readRun is a read command's Ctx and view.
type readRun struct {
	ctx  commands.Ctx
	view storage.View
}

// followerRead readies a read on a follower under req; check, called
// once the read is done, reports a seed that began under it (LOADING).
func (b backend) followerRead(ctx context.Context, r *following, req resp.ReadRequest) (check func() error, err error) {
	if err := b.n.followerGate(ctx, r, req); err != nil {
		return nil, err
	}
	// A seed that begins while the read runs discards the data under
	// it: such a read answers LOADING, not a partial keyspace.
	gen := b.n.db.SeedGeneration()
	if r.f.Loading() {
		return nil, resp.ErrLoading
	}
	// Reads never go back across a restart: a node that just started
	// serves follower reads only once it has caught up with a leader
	// (or led), since what it applied may be older than what it
	// served before (see replication.Follower.CaughtUp).
	if !b.n.readsResumed.Load() {
		if !r.f.CaughtUp() {
			return nil, resp.ErrLoading
		}
		b.n.readsResumed.Store(true)
	}
	return func() error {
		if b.n.db.Seeding() || b.n.db.SeedGeneration() != gen {
			return resp.ErrLoading
		}
		return nil
	}, nil
}

// followerGate waits until the follower may serve a read under req, at
// most ReadWait.
func (n *Node) followerGate(ctx context.Context, r *following, req resp.ReadRequest) error {
	if req.Policy.Kind == resp.PolicyAny {
		return nil
	}
	if req.Policy.Kind == resp.PolicyLeader {
		return fmt.Errorf("the session's read policy is leader and this node is a follower: %w", resp.ErrReadElsewhere)
	}
	if (req.Policy.Kind == resp.PolicyRYW || req.Policy.Kind == resp.PolicyMonotonic) && req.User == "" && req.Floor == (resp.Position{}) {
		// No floor to wait for (every history holds the empty position,
		// Lineage): what WaitApplied would answer at once, without its
		// context, timer and copy of the epoch history. Every read a
		// proxy sends in its known form (TANDEM.TOKEN RESET, the read,
		// TANDEM.TOKEN) is such a read.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.readWait())
	defer cancel()
	if req.Policy.Kind == resp.PolicyBounded {
		return n.followerBounded(ctx, r, req.Policy.Bound)
	}
	floor := logrec.Position(req.Floor)
	if n.cfg.Buggify.FollowerIgnoreToken {
		floor = logrec.Position{} // planted bug: the session's token is ignored
	}
	if req.Policy.Kind == resp.PolicyLinearizable && req.User == "" && r.f.AnswersReads() {
		// The leader's commit position by a round trip on the stream
		// (replication.Follower.WaitRoundTrip), then the session's own.
		if err := r.f.WaitRoundTrip(ctx); err != nil {
			return readError(err)
		}
		return readError(r.f.WaitApplied(ctx, floor))
	}
	if req.Policy.Kind == resp.PolicyLinearizable || req.User != "" {
		defer r.f.Awaiting()()
		commit, user, err := r.index.ask(ctx, req.User)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err()
			}
			return fmt.Errorf("cannot learn the leader's position: %s: %w", err.Error(), resp.ErrReadElsewhere)
		}
		if req.Policy.Kind == resp.PolicyLinearizable {
			floor = maxPosition(floor, commit)
		}
		floor = maxPosition(floor, user)
	}
	return readError(r.f.WaitApplied(ctx, floor))
}

// followerBounded returns nil once the follower's staleness is within
// bound. The stream proves it by a round trip (replication's reads.go: a
// report's read stamp, echoed with a commit LSN the leader read after
// it), a round trip old under load; an idle stream only as of the
// follower's last report, a heartbeat old at best, and only with
// messages sent under the leader's lease (which an idle leader lets
// lapse between confirmations). So when the stream has not proven it the
// follower asks for a round trip at once (WaitRoundTrip: the leader
// answers it under its lease; a leader that does not, with the batched
// ReadIndex RPC) and, once it has applied the answer, qualifies if that
// took at most bound since it asked: everything the leader had committed
// before the question is applied.
func (n *Node) followerBounded(ctx context.Context, r *following, bound time.Duration) error {
	for !r.f.Fresh(bound) {
		asked := time.Now()
		if r.f.AnswersReads() {
			// The leader answers a waiting read's report at once: a
			// round trip on the stream proves it, not the next
			// heartbeat or an RPC.
			if err := r.f.WaitRoundTrip(ctx); err != nil {
				if errors.Is(err, replication.ErrReadElsewhere) {
					return fmt.Errorf("this node is more than %v behind its leader: %w", bound, resp.ErrReadElsewhere)
				}
				return err
			}
			if time.Since(asked) <= bound {
				return nil
			}
			continue
		}
		commit, _, err := r.index.ask(ctx, "")
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err()
			}
			return readError(r.f.WaitFresh(ctx, bound)) // the stream may yet prove it
		}
		if err := r.f.WaitApplied(ctx, commit); err != nil {
			if errors.Is(err, replication.ErrReadElsewhere) {
				return fmt.Errorf("this node is more than %v behind its leader: %w", bound, resp.ErrReadElsewhere)
			}
			return err
		}
		if time.Since(asked) <= bound {
			return nil
		}
	}
	return nil
}

// readError maps replication's read errors to the resp sentinels, keeping
// the reason.
func readError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replication.ErrReadElsewhere):
		return fmt.Errorf("%s: %w", reason(err, replication.ErrReadElsewhere), resp.ErrReadElsewhere)
	case errors.Is(err, replication.ErrPositionLost):
		return fmt.Errorf("%s: %w", reason(err, replication.ErrPositionLost), resp.ErrPositionLost)
	}
	return err
}

// reason is the text a wrapping error put before the sentinel's.
func reason(err, sentinel error) string {
	s := err.Error()
	if p := sentinel.Error() + ": "; len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

func maxPosition(a, b logrec.Position) logrec.Position {
	if replication.Compare(a, b) < 0 {
		return b
	}
	return a
}

// appliedPosition is the position of the node's last applied entry.
func (n *Node) appliedPosition() resp.Position {
	return resp.Position(n.db.AppliedPosition())
}

// Acknowledged returns the position of a write this node acknowledged at
// lsn (its entry was durable here before the acknowledgement), and as the
// leader records it as user's last write.
func (b backend) Acknowledged(user string, lsn uint64) resp.Position {
	r, leads := b.n.current().(*leading)
	var pos logrec.Position
	if leads && lsn > r.l.StartPosition().LSN {
		// This leadership's own entry (the common case): its epoch,
		// without copying the epoch history on every write.
		pos = logrec.Position{Epoch: r.l.Epoch(), LSN: lsn}
	} else {
		pos = logrec.Position{Epoch: replication.EpochAt(b.n.db.EpochHistory(), lsn), LSN: lsn}
	}
	if leads && user != "" {
		r.users.record(user, pos)
	}
	return resp.Position(pos)
}

// userPositions is a leadership's last-write position per user: an LRU of
// at most max users. A user it does not hold gets the floor: the highest
// position it evicted, and at least the leadership's start position, at or
// after every write acknowledged under an earlier leadership that
// survived. So the answer is never below the user's last acknowledged
// write; forgetting a user only makes their reads wait for more.
type userPositions struct {
	mu    sync.Mutex
	max   int
	floor logrec.Position
	order *list.List // of *userPos, most recent first
	byID  map[string]*list.Element
}

type userPos struct {
	id  string
	pos logrec.Position
}

func newUserPositions(floor logrec.Position, max int) *userPositions {
	return &userPositions{max: max, floor: floor, order: list.New(), byID: map[string]*list.Element{}}
}

func (u *userPositions) record(id string, pos logrec.Position) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if el, ok := u.byID[id]; ok {
		up := el.Value.(*userPos)
		up.pos = maxPosition(up.pos, pos)
		u.order.MoveToFront(el)
		return
	}
	u.byID[id] = u.order.PushFront(&userPos{id: id, pos: pos})
	for u.order.Len() > u.max {
		old := u.order.Remove(u.order.Back()).(*userPos)
		delete(u.byID, old.id)
		u.floor = maxPosition(u.floor, old.pos)
	}
}

func (u *userPositions) get(id string) logrec.Position {
	u.mu.Lock()
	defer u.mu.Unlock()
	if el, ok := u.byID[id]; ok {
		return maxPosition(el.Value.(*userPos).pos, u.floor)
	}
	return u.floor
}

// ReadIndex answers a follower's ReadIndex (see proto/peer.proto).
func (s *peerService) ReadIndex(ctx context.Context, req *peerpb.ReadIndexRequest) (*peerpb.ReadIndexReply, error) {
	r, ok := s.n.current().(*leading)
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "tandem: not the leader")
	}
	if req.Epoch > r.l.Epoch() {
		return nil, status.Errorf(codes.FailedPrecondition, "tandem: leader of epoch %d, asked for %d", r.l.Epoch(), req.Epoch)
	}
	// Users first, commit after: the commit position is then at or after
	// every user position given, so neither can be ahead of what the
	// follower is asked to wait for.
	rep := &peerpb.ReadIndexReply{Users: make([]*peerpb.Position, len(req.Users))}
	for i, id := range req.Users {
		p := r.users.get(id)
		rep.Users[i] = &peerpb.Position{Epoch: p.Epoch, Lsn: p.LSN}
	}
	commit, err := r.l.ReadIndex(ctx)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "tandem: leader cannot confirm its commit position: %v", err)
	}
	rep.Commit = &peerpb.Position{Epoch: commit.Epoch, Lsn: commit.LSN}
	return rep, nil
}

// readIndex is a follower's batched ReadIndex: a call waits for the next
// RPC that starts after it was made (so its answer reflects everything
// acknowledged before the read began), and all calls waiting then share
// that one RPC. One RPC is in flight at a time per follower.
type readIndex struct {
	client indexClient
	epoch  func() uint64

	mu      sync.Mutex
	running bool
	queue   []*indexCall
}

// indexClient is what readIndex calls on its leader (a peerpb.PeerClient;
// the node's peerConn).
type indexClient interface {
	ReadIndex(ctx context.Context, in *peerpb.ReadIndexRequest, opts ...grpc.CallOption) (*peerpb.ReadIndexReply, error)
}

type indexCall struct {
	user        string
	done        chan struct{}
	commit, pos logrec.Position
	err         error
}

// readIndexTimeout bounds one ReadIndex RPC.
const readIndexTimeout = time.Second

// ask returns the leader's commit position and user's last-write position
// (the zero Position for user ""), learned by an RPC begun after the call.
func (x *readIndex) ask(ctx context.Context, user string) (commit, pos logrec.Position, err error) {
	c := &indexCall{user: user, done: make(chan struct{})}
	x.mu.Lock()
	x.queue = append(x.queue, c)
	if !x.running {
		x.running = true
		go x.run()
	}
	x.mu.Unlock()
	select {
	case <-c.done:
		return c.commit, c.pos, c.err
	case <-ctx.Done():
		return commit, pos, ctx.Err()
	}
}

func (x *readIndex) run() {
	for {
		x.mu.Lock()
		calls := x.queue
		x.queue = nil
		if len(calls) == 0 {
			x.running = false
			x.mu.Unlock()
			return
		}
		x.mu.Unlock()
		var users []string
		index := map[string]int{}
		for _, c := range calls {
			if _, ok := index[c.user]; c.user != "" && !ok {
				index[c.user] = len(users)
				users = append(users, c.user)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), readIndexTimeout)
		rep, err := x.client.ReadIndex(ctx, &peerpb.ReadIndexRequest{Epoch: x.epoch(), Users: users})
		cancel()
		if err == nil && len(rep.Users) != len(users) {
			err = fmt.Errorf("leader answered %d users for %d", len(rep.Users), len(users))
		}
		for _, c := range calls {
			c.err = err
			if err == nil {
				c.commit = logrec.Position{Epoch: rep.Commit.GetEpoch(), LSN: rep.Commit.GetLsn()}
				if c.user != "" {
					p := rep.Users[index[c.user]]
					c.pos = logrec.Position{Epoch: p.GetEpoch(), LSN: p.GetLsn()}
				}
			}
			close(c.done)
		}
	}
}

// DBSIZE on the committed data answers from storage's key counts.
var _ commands.KeyCounter = storage.View{}
