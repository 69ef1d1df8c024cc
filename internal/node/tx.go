package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
)

// Transactions (MULTI/EXEC, WATCH; see package resp, multi.go).
//
// On the leader a transaction is one log entry: EXEC runs its commands
// in a commands.Batch inside the leader's Start (under the sequencing
// lock, against the overlay of uncommitted entries, as a single write
// does), so followers apply all of it or none, in one storage batch, and
// a crash leaves all or none. Its reply waits for the entry's commit
// under the node's commit mode, as a single write's does. A transaction
// that writes nothing makes no entry; its reply waits, as a read-only
// command sequenced on the leader does, until what it read is applied.
//
// On a follower a transaction may only read (a write is refused when
// queued, READONLY, and EXEC then answers EXECABORT, as on a Redis
// replica); its reads run on one storage snapshot, so they see every
// applied entry whole or not at all, under the session's read policy as
// a single read is.
//
// WATCH on the leader is the leadership's record (replication.Watch). A
// follower has no sequencer: its WATCH remembers the applied LSN, and
// EXEC answers nil if the follower has applied any entry since
// (conservative: a follower's transaction cannot write anyway). A WATCH
// made under one role (one leadership, one following) fails any EXEC
// under another: after a failover a client's EXEC answers nil and it
// retries, never a transaction that missed a change.

var _ resp.TxBackend = backend{}

// nodeWatch is a WATCH on this node.
type nodeWatch struct {
	role    role
	lw      *replication.Watch // on a leader
	applied uint64             // on a follower: the LSN applied at the watch
}

func (w *nodeWatch) Release() { w.lw.Release() }

// WriteRefused implements resp.TxBackend, with startExec's reasons a
// write is refused before it is sequenced that hold while it is queued.
func (b backend) WriteRefused() error {
	if _, ok := b.n.current().(*leading); !ok {
		return resp.ErrReadOnly
	}
	return b.n.busy()
}

// busy is resp.ErrBusy (resp.ErrBusyFunction for a function) while a
// script or function holds the leader's sequencer past the busy
// threshold, else nil.
func (n *Node) busy() error {
	switch busy, function := n.scripts.BusyKind(); {
	case !busy:
		return nil
	case function:
		return resp.ErrBusyFunction
	}
	return resp.ErrBusy
}

// BusyAfter implements resp.ScriptsBackend.
func (b backend) BusyAfter() time.Duration { return b.n.scripts.BusyAfter() }

// SetBusyAfter implements resp.ScriptsBackend.
func (b backend) SetBusyAfter(d time.Duration) { b.n.scripts.SetBusyAfter(d) }

// Watch implements resp.TxBackend.
func (b backend) Watch(ctx context.Context, keys [][]byte) (resp.Watch, error) {
	switch r := b.n.current().(type) {
	case *fenced:
		return nil, r.readErr()
	case *following:
		return &nodeWatch{role: r, applied: b.n.db.Applied()}, nil
	case *leading:
		lw, err := r.l.Watch(ctx, keys)
		if err != nil {
			return nil, leaderError(err)
		}
		return &nodeWatch{role: r, lw: lw}, nil
	}
	panic("node: unknown role")
}

// Exec implements resp.TxBackend.
func (b backend) Exec(ctx context.Context, tx resp.Tx) (resp.TxResult, error) {
	switch r := b.n.current().(type) {
	case *fenced:
		if tx.Writes {
			return resp.TxResult{}, resp.ErrNotLeader
		}
		return resp.TxResult{}, r.readErr()
	case *following:
		if tx.Writes {
			return resp.TxResult{}, resp.ErrReadOnly
		}
		return b.execFollower(ctx, r, tx)
	case *leading:
		lws, err := b.leaderWatches(r, tx)
		if err != nil {
			return resp.TxResult{}, err
		}
		if b.n.cfg.Buggify.TxSplit && tx.Writes && len(tx.Cmds) > 1 {
			return b.execSplit(ctx, r, lws, tx.Cmds)
		}
		return b.execLeader(ctx, r, lws, tx.Cmds)
	}
	panic("node: unknown role")
}

var _ resp.TxThenBackend = backend{}

// ExecThen implements resp.TxThenBackend: on the leader the transaction
// is sequenced now and done is called by the goroutine that answers its
// entry (replication.Pending.Then), as SubmitThen does for a lone write;
// anywhere else (a follower's snapshot read, the TxSplit fault) done is
// called with what Exec returns, before ExecThen returns.
func (b backend) ExecThen(ctx context.Context, tx resp.Tx, done func(resp.TxResult, error)) {
	r, ok := b.n.current().(*leading)
	if !ok || b.n.cfg.Buggify.TxSplit && tx.Writes && len(tx.Cmds) > 1 {
		done(b.Exec(ctx, tx))
		return
	}
	lws, err := b.leaderWatches(r, tx)
	if err != nil {
		done(resp.TxResult{}, err)
		return
	}
	pending, replies, err := b.startTx(ctx, r, lws, tx.Cmds)
	if err != nil {
		done(resp.TxResult{}, err)
		return
	}
	pending.Then(ctx, func(_ commands.Reply, lsn uint64, err error) { done(b.txOutcome(replies, lsn, err)) })
}

// leaderWatches returns the leadership's watches of tx, or why tx may not
// run: a watch of another role (ErrWatchChanged), a leader below
// sync-min.
func (b backend) leaderWatches(r *leading, tx resp.Tx) ([]*replication.Watch, error) {
	var lws []*replication.Watch
	for _, w := range tx.Watches {
		nw, ok := w.(*nodeWatch)
		if !ok || nw.role != role(r) || nw.lw == nil {
			return nil, resp.ErrWatchChanged
		}
		lws = append(lws, nw.lw)
	}
	if tx.Writes {
		if a := b.n.agent; a != nil && a.syncShort.Load() {
			return nil, fmt.Errorf("tandem: fewer sync-set members than sync-min are there: %w", resp.ErrNoReplicas)
		}
	}
	return lws, nil
}

// execLeader runs cmds as one entry on the leader.
func (b backend) execLeader(ctx context.Context, r *leading, lws []*replication.Watch, cmds []resp.TxCommand) (resp.TxResult, error) {
	pending, replies, err := b.startTx(ctx, r, lws, cmds)
	if err != nil {
		return resp.TxResult{}, err
	}
	_, lsn, err := pending.Wait(ctx)
	return b.txOutcome(replies, lsn, err)
}

// startTx sequences cmds as one entry on the leader and returns its
// pending commit and the commands' replies, or why it was refused, as a
// resp sentinel.
//
// Its pushes serve the clients blocked on their keys in its entry, after
// all of its commands, as a pipeline's do (startServing): a transaction
// is whole before it wakes anyone.
func (b backend) startTx(ctx context.Context, r *leading, lws []*replication.Watch, cmds []resp.TxCommand) (commitWait, []resp.TxReply, error) {
	var replies []resp.TxReply
	var served []*servedPop
	var run *txRun
	pending, err := r.l.StartTx(ctx, lws, func(v commands.View, nowMs int64) (commands.Result, error) {
		run = b.newTxRun(v, nowMs)
		var err error
		replies, err = run.run(cmds)
		if err != nil {
			return commands.Result{}, err
		}
		res := commands.Result{Reply: commands.OK, Ops: run.batch.Ops(), Publish: run.batch.Publish()}
		if len(res.Ops) > 0 && !b.n.blocked.batchServesNoOne {
			res, served, err = b.n.blocked.serve(v, commands.Ctx{NowMs: nowMs, Cursors: b.n.cursors, Scripts: b.n.scripts}, res)
		}
		return res, err
	})
	if run != nil {
		// The replies keep the run until the transaction is answered; its
		// batch (the ops, now the entry's, and the rows it read) need not.
		run.batch = commands.Batch{}
	}
	if len(served) > 0 && err != nil {
		b.n.blocked.unserve(served) // nothing was logged: they wait again
	}
	if errors.Is(err, replication.ErrWatchChanged) {
		return nil, nil, resp.ErrWatchChanged
	}
	if err != nil {
		return nil, nil, leaderError(err)
	}
	if len(served) > 0 {
		return fanOut(pending, served), replies, nil
	}
	return pending, replies, nil
}

// txOutcome is the result of a transaction whose entry's wait returned
// lsn and err.
func (b backend) txOutcome(replies []resp.TxReply, lsn uint64, err error) (resp.TxResult, error) {
	if errors.Is(err, replication.ErrNotLeader) || errors.Is(err, replication.ErrStaleEpoch) {
		// Sequenced, maybe durable, not committed: it may yet commit.
		return resp.TxResult{}, resp.ErrLeadershipLost
	}
	if err != nil {
		return resp.TxResult{}, leaderError(err)
	}
	res := resp.TxResult{Replies: replies, LSN: lsn}
	if lsn == 0 {
		// Only a transaction that logged nothing is recorded at a read
		// position (resp's recordTx; a write's is its LSN's): the epoch
		// history is not copied for every write.
		res.At = b.n.appliedPosition()
	}
	return res, nil
}

// execSplit is the TxSplit fault: the first command as one entry, then
// the rest as another.
func (b backend) execSplit(ctx context.Context, r *leading, lws []*replication.Watch, cmds []resp.TxCommand) (resp.TxResult, error) {
	first, err := b.execLeader(ctx, r, lws, cmds[:1])
	if err != nil {
		return first, err
	}
	rest, err := b.execLeader(ctx, r, nil, cmds[1:])
	if err != nil {
		return rest, err
	}
	rest.Replies = append(first.Replies, rest.Replies...)
	rest.LSN = max(rest.LSN, first.LSN)
	return rest, nil
}

// execFollower runs a transaction of reads on one storage snapshot.
func (b backend) execFollower(ctx context.Context, r *following, tx resp.Tx) (resp.TxResult, error) {
	check, err := b.followerRead(ctx, r, tx.Read)
	if err != nil {
		return resp.TxResult{}, err
	}
	snap := b.n.db.SnapshotRows()
	defer snap.Close()
	applied, err := snap.Applied()
	if err != nil {
		return resp.TxResult{}, err
	}
	for _, w := range tx.Watches {
		// The snapshot holds exactly the entries through applied: equal
		// to the watch's, nothing changed since the client's reads.
		if nw, ok := w.(*nodeWatch); !ok || nw.role != role(r) || nw.applied != applied {
			return resp.TxResult{}, resp.ErrWatchChanged
		}
	}
	nowMs := time.Now().UnixMilli()
	replies, err := b.newTxRun(keyspace.Reader{R: snap, NowMs: nowMs}, nowMs).run(tx.Cmds)
	if err != nil {
		return resp.TxResult{}, err
	}
	if err := check(); err != nil {
		return resp.TxResult{}, err
	}
	at := resp.Position{Epoch: replication.EpochAt(b.n.db.EpochHistory(), applied), LSN: applied}
	return resp.TxResult{Replies: replies, At: at}, nil
}

// txRun is one transaction's run: its batch, its commands' Ctx and room
// for the replies of a short one, in one allocation rather than one each
// (the replies are the caller's until the transaction is answered, and
// keep it).
type txRun struct {
	batch   commands.Batch
	cctx    commands.Ctx
	replies [txInlineReplies]resp.TxReply
}

// txInlineReplies is the most commands whose replies a txRun holds itself.
const txInlineReplies = 8

// newTxRun starts a transaction's run on v.
func (b backend) newTxRun(v commands.View, nowMs int64) *txRun {
	t := &txRun{cctx: commands.Ctx{NowMs: nowMs, Cursors: b.n.cursors, Scripts: b.n.scripts}}
	t.batch.Init(v)
	return t
}

// run runs cmds in the run's batch and returns their replies; an input
// error is its command's reply, any other error fails the whole.
//
// The replies share max-reply-bytes: each command may build what the
// ones before it left (Ctx.MaxReplyBytes), so a command that would pass
// the bound is refused (commands.ErrReplyTooLarge, its writes not made)
// and EXEC's reply stays within it, but for those errors.
func (t *txRun) run(cmds []resp.TxCommand) ([]resp.TxReply, error) {
	replies := t.replies[:0]
	if len(cmds) > len(t.replies) {
		replies = make([]resp.TxReply, 0, len(cmds))
	}
	writes := 0
	for _, c := range cmds {
		if c.Spec.Flags&commands.FlagWrite != 0 {
			writes++
		}
	}
	// Room for every command's view and a write's op each (a SET's):
	// more ops (a collection's) grow the slice.
	t.batch.Reserve(len(cmds), writes)
	left := commands.MaxReplyBytes()
	for _, c := range cmds {
		t.cctx.MaxReplyBytes = max(left, 1) // 0 would mean the whole bound
		reply, err := t.batch.Run(&t.cctx, c.Spec, c.Args)
		if err != nil && !commands.IsInputError(err) {
			return nil, fmt.Errorf("node: %s in a transaction: %w", c.Spec.Name, err)
		}
		if err == nil {
			left -= commands.ReplySize(reply)
		}
		replies = append(replies, resp.TxReply{Reply: reply, Err: err})
	}
	return replies, nil
}
