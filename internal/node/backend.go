package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/script"
)

// backend is the node as the RESP front end sees it.
type backend struct{ n *Node }

var _ resp.Backend = backend{}

// Read serves a read with no policy: whatever this node has applied.
func (b backend) Read(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, error) {
	reply, _, err := b.ReadAt(ctx, spec, args, resp.ReadRequest{Policy: resp.Policy{Kind: resp.PolicyAny}})
	return reply, err
}

func (b backend) Write(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error) {
	if spec.Block != nil {
		return b.block(ctx, spec, args) // blocking.go
	}
	return b.submit(ctx, spec, args)()
}

var _ resp.PipelineBackend = backend{}

// Submit sequences a write on the leader now and returns the wait for its
// commit, so the writes of one pipeline share a group commit. A blocking
// command is not sequenced ahead: its wait blocks as Write does.
func (b backend) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	if spec.Block != nil {
		return func() (commands.Reply, uint64, error) { return b.block(ctx, spec, args) }
	}
	return b.submit(ctx, spec, args)
}

// submit is Submit for any write, a blocking command's pop included (its
// non-blocking form).
func (b backend) submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	return b.submitPop(ctx, spec, args, false, nil)
}

// submitPop is submit; blocked marks a blocking command's pop run again
// for a client that blocked (commands.Ctx.Blocked), and ran, if not nil,
// is called with what the command produced, under the leader's
// sequencing lock, before any later write is sequenced (blocking.go).
func (b backend) submitPop(ctx context.Context, spec *commands.Spec, args [][]byte, blocked bool, ran func(commands.Result, error)) func() (commands.Reply, uint64, error) {
	pending, err := b.start(ctx, spec, args, blocked, ran)
	if err != nil {
		return func() (commands.Reply, uint64, error) { return nil, 0, err }
	}
	return func() (commands.Reply, uint64, error) { return waitResult(pending.Wait(ctx)) }
}

var _ resp.BatchBackend = backend{}

// SubmitBatch sequences consecutive writes of a pipeline as one entry
// (resp.BatchBackend): the commands run one after another in a
// commands.Batch inside one Start, as a transaction's do, so the
// pipeline costs one proposal, one encoding, one commit wait and one
// wake-up instead of one each, on the leader and on every follower. The
// wait is the one Pending's: its first call waits, the rest find it
// answered. A command's input error (WRONGTYPE) is its own reply; when
// the batch as a whole fails after running (an internal error, an entry
// past its bound, a log format a member cannot read) nothing was
// sequenced and each command is submitted alone, so each gets the answer
// it would have had alone; a refusal before it ran (not the leader,
// overloaded) is every command's answer.
func (b backend) SubmitBatch(ctx context.Context, cmds []resp.TxCommand) func(int) (commands.Reply, uint64, error) {
	replies := make([]resp.TxReply, len(cmds))
	ran := false
	serve := !b.n.blocked.batchServesNoOne
	pending, err := b.startServing(ctx, serve, func(v commands.View, nowMs int64) (commands.Result, error) {
		ran = true
		batch := commands.NewBatch(v)
		// Not txRun.run: the commands of a pipeline are separate replies,
		// each with the whole max-reply-bytes, not an EXEC's one reply.
		// One Ctx, set afresh for each command: one allocation per
		// pipeline rather than per command.
		cctx := new(commands.Ctx)
		for i, c := range cmds {
			*cctx = commands.Ctx{NowMs: nowMs, Cursors: b.n.cursors, Scripts: b.n.scripts}
			reply, err := batch.Run(cctx, c.Spec, c.Args)
			if err != nil && !commands.IsInputError(err) {
				return commands.Result{}, fmt.Errorf("node: %s in a pipeline: %w", c.Spec.Name, err)
			}
			replies[i] = resp.TxReply{Reply: reply, Err: err}
		}
		return commands.Result{Reply: commands.OK, Ops: batch.Ops(), Publish: batch.Publish()}, nil
	})
	if err != nil {
		if !ran {
			return func(int) (commands.Reply, uint64, error) { return nil, 0, err }
		}
		waits := make([]func() (commands.Reply, uint64, error), len(cmds))
		for i, c := range cmds {
			waits[i] = b.Submit(ctx, c.Spec, c.Args)
		}
		return func(i int) (commands.Reply, uint64, error) { return waits[i]() }
	}
	var (
		waited bool
		lsn    uint64
		werr   error
	)
	return func(i int) (commands.Reply, uint64, error) {
		if !waited { // the connection's goroutine calls the wait in order
			waited = true
			_, lsn, werr = waitResult(pending.Wait(ctx))
		}
		if werr != nil {
			return nil, 0, werr
		}
		return replies[i].Reply, lsn, replies[i].Err
	}
}

var _ resp.ThenBackend = backend{}

// SubmitThen sequences a write on the leader now, and has the goroutine
// that answers it call done (replication.Pending.Then), so that the
// connection's goroutine is not woken for it. A blocking command is
// handed over only when its first pop takes something; when it must
// wait, it waits on the caller's goroutine (blockThen).
func (b backend) SubmitThen(ctx context.Context, spec *commands.Spec, args [][]byte, done func(commands.Reply, uint64, error)) {
	if spec.Block != nil {
		if reply, lsn, err, owed := b.blockThen(ctx, spec, args, done); !owed {
			done(reply, lsn, err)
		}
		return
	}
	pending, err := b.start(ctx, spec, args, false, nil)
	if err != nil {
		done(nil, 0, err)
		return
	}
	if p, ok := pending.(*replication.Pending); ok {
		p.ThenMap(ctx, done, waitError) // no closure around done: an allocation per write
		return
	}
	pending.Then(ctx, func(reply commands.Reply, lsn uint64, err error) { done(waitResult(reply, lsn, err)) })
}

// waitResult maps what a pending write's wait returned to the resp
// sentinels.
func waitResult(reply commands.Reply, lsn uint64, err error) (commands.Reply, uint64, error) {
	if err != nil {
		return nil, 0, waitError(err)
	}
	return reply, lsn, nil
}

// waitError is waitResult's mapping of a pending write's error.
func waitError(err error) error {
	if errors.Is(err, replication.ErrNotLeader) || errors.Is(err, replication.ErrStaleEpoch) {
		// Sequenced, maybe durable, not committed: it may yet
		// commit, so it must not read as refused.
		return resp.ErrLeadershipLost
	}
	return leaderError(err)
}

// start sequences a write on the leader (see submitPop), or returns why
// it was refused, as a resp sentinel.
func (b backend) start(ctx context.Context, spec *commands.Spec, args [][]byte, blocked bool, ran func(commands.Result, error)) (commitWait, error) {
	exec := func(v commands.View, nowMs int64) (commands.Result, error) {
		cctx := &commands.Ctx{NowMs: nowMs, Cursors: b.n.cursors, Scripts: b.n.scripts, Blocked: blocked}
		res, err := spec.Exec(cctx, v, args)
		if err == nil {
			var msgs []commands.Message
			if msgs, err = commands.Notifications(spec, args, v, res.Ops); err == nil {
				res.Publish = append(res.Publish, msgs...)
			}
		}
		if ran != nil {
			ran(res, err)
		}
		return res, err
	}
	if ran != nil {
		// A blocked client's own pop serves no one: it pushes nothing
		// (BLMOVE's push to its destination is served by turns).
		pending, err := b.startExec(ctx, exec)
		if err != nil {
			return nil, err
		}
		return pending, nil
	}
	return b.startServing(ctx, true, exec)
}

// startServing is startExec for a write whose pushes (if serve) serve
// the clients blocked on their keys in its own entry (blocking.go): a
// single command or a pipeline's batch, as Redis serves them inside the
// push. The wait it returns is the write's share of the entry's commit
// (fanOut) when it served someone.
func (b backend) startServing(ctx context.Context, serve bool, exec replication.ExecFunc) (commitWait, error) {
	var served []*servedPop
	pending, err := b.startExec(ctx, func(v commands.View, nowMs int64) (commands.Result, error) {
		res, err := exec(v, nowMs)
		if err == nil && len(res.Ops) > 0 && serve {
			cctx := commands.Ctx{NowMs: nowMs, Cursors: b.n.cursors, Scripts: b.n.scripts}
			res, served, err = b.n.blocked.serve(v, cctx, res)
		}
		return res, err
	})
	if len(served) > 0 {
		if err != nil {
			b.n.blocked.unserve(served) // nothing was logged: they wait again
		} else {
			return fanOut(pending, served), nil
		}
	}
	if err != nil {
		return nil, err
	}
	return pending, nil
}

// startExec sequences exec on the leader, or returns why it was refused,
// as a resp sentinel.
func (b backend) startExec(ctx context.Context, exec replication.ExecFunc) (*replication.Pending, error) {
	var l *replication.Leader
	switch r := b.n.current().(type) {
	case *fenced:
		return nil, resp.ErrNotLeader
	case *following:
		return nil, resp.ErrReadOnly
	case *leading:
		l = r.l
		if a := b.n.agent; a != nil && a.syncShort.Load() {
			// Below sync-min: refused before it is sequenced.
			return nil, fmt.Errorf("tandem: fewer sync-set members than sync-min are there: %w", resp.ErrNoReplicas)
		}
	}
	if err := b.n.busy(); err != nil {
		// A script holds the sequencer past the threshold: refuse rather
		// than queue behind it, as Redis answers BUSY.
		return nil, err
	}
	pending, err := l.Start(ctx, exec)
	if errors.Is(err, script.ErrAborted) {
		return nil, resp.ErrNotLeader
	}
	if err != nil {
		return nil, leaderError(err)
	}
	return pending, nil
}

// commitWait is a sequenced write's wait for its commit: a
// replication.Pending, or fanOut's share of one.
type commitWait interface {
	Wait(ctx context.Context) (commands.Reply, uint64, error)
	Then(ctx context.Context, done func(commands.Reply, uint64, error))
}

// fanOut shares the commit of a push's entry between the push and the
// blocked pops it served (blocking.go): each served client gets its own
// reply, with the entry's LSN, once the entry is committed and applied
// under a valid lease, or the error the push gets. It returns the push's
// share.
func fanOut(p *replication.Pending, served []*servedPop) commitWait {
	push := &sharedCommit{ch: make(chan struct{})}
	p.Then(context.Background(), func(reply commands.Reply, lsn uint64, err error) {
		for _, s := range served {
			res := popResult{reply: s.reply, lsn: lsn}
			if err != nil {
				res = popResult{}
				res.reply, res.lsn, res.err = waitResult(nil, 0, err)
			}
			s.answer(res)
		}
		push.answer(reply, lsn, err)
	})
	return push
}

// sharedCommit is the push's share of a fanOut: a Pending's Wait and Then
// for a result delivered once by another goroutine.
type sharedCommit struct {
	mu    sync.Mutex
	ch    chan struct{} // closed once res is set
	set   bool
	reply commands.Reply
	lsn   uint64
	err   error
	then  func(commands.Reply, uint64, error)
}

func (c *sharedCommit) answer(reply commands.Reply, lsn uint64, err error) {
	c.mu.Lock()
	c.reply, c.lsn, c.err, c.set = reply, lsn, err, true
	then := c.then
	close(c.ch)
	c.mu.Unlock()
	if then != nil {
		then(reply, lsn, err)
	}
}

// Wait implements commitWait; if ctx ends first the outcome is unknown.
func (c *sharedCommit) Wait(ctx context.Context) (commands.Reply, uint64, error) {
	select {
	case <-c.ch:
		return c.reply, c.lsn, c.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// Then implements commitWait: done is called once with the result, now
// if it is there, else by the goroutine that delivers it.
func (c *sharedCommit) Then(_ context.Context, done func(commands.Reply, uint64, error)) {
	c.mu.Lock()
	if !c.set {
		c.then = done
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	done(c.reply, c.lsn, c.err)
}

// leaderError maps the leader's errors to the resp sentinels.
func leaderError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replication.ErrNotLeader), errors.Is(err, replication.ErrStaleEpoch):
		return resp.ErrNotLeader
	case errors.Is(err, replication.ErrWriteTimeout):
		return resp.ErrNoReplicas
	case errors.Is(err, replication.ErrOverloaded):
		return resp.ErrOverloaded
	}
	return err
}

// expireExec deletes the keys that are still expired when the delete is
// sequenced; a key written again since the scan is left alone. A
// collection's rows go with it (keyspace.DeleteOp).
func expireExec(keys [][]byte) func(v commands.View, nowMs int64) (commands.Result, error) {
	return func(v commands.View, nowMs int64) (commands.Result, error) {
		var res commands.Result
		r := keyspace.Reader{R: v.Rows(), NowMs: nowMs}
		for _, k := range keys {
			if val, ok, err := r.StatAny(k); err != nil { // a long string's chunks unread
				return res, err
			} else if ok && keyspace.Expired(val.ExpireAtMs, nowMs) {
				res.Ops = append(res.Ops, keyspace.DeleteOp(k, val))
				res.Publish = append(res.Publish, commands.ExpiredNotifications([][]byte{k})...)
			}
		}
		res.Reply = commands.Int(len(res.Ops))
		return res, nil
	}
}

func (b backend) Wait(ctx context.Context, lsn uint64, n int, timeout time.Duration) int {
	r, ok := b.n.current().(*leading)
	if !ok {
		return 0
	}
	return r.l.WaitDurable(ctx, lsn, n, timeout)
}

func (b backend) ReplicaOf(ctx context.Context, host, port string) error {
	respAddr := net.JoinHostPort(host, port)
	if respAddr == b.n.respAddr {
		return fmt.Errorf("node: cannot replicate from itself")
	}
	if b.n.agent != nil {
		return b.n.agent.checkReplicaOf(respAddr)
	}
	peer, err := peerAddrOf(ctx, respAddr)
	if err != nil {
		return err
	}
	return b.n.Follow(respAddr, peer)
}

func (b backend) ReplicaOfNoOne(ctx context.Context) error {
	if b.n.agent != nil {
		if _, ok := b.n.current().(*leading); ok {
			return nil
		}
		return b.n.agent.switchoverTo(ctx)
	}
	return b.n.Lead()
}

// peerAddrOf asks the node serving RESP at addr for its peer address.
func peerAddrOf(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: 2 * time.Second})
	defer c.Close()
	peer, err := c.Do(ctx, "TANDEM.PEERADDR").Text()
	if err != nil {
		return "", fmt.Errorf("node: ask %s for its peer address: %w", addr, err)
	}
	return peer, nil
}

// Custom serves tandem's own commands (TANDEM.*). Its failures are
// errors, which resp words from its error table.
func (b backend) Custom(ctx context.Context, args [][]byte) (commands.Reply, bool, error) {
	switch strings.ToUpper(string(args[0])) {
	case "TANDEM.DIGEST":
		applied, sum, err := b.n.db.Digest()
		if err != nil {
			return nil, true, fmt.Errorf("node: TANDEM.DIGEST: %w", err)
		}
		return commands.Array{commands.Int(applied), commands.Bulk(hex.EncodeToString(sum[:]))}, true, nil
	case "TANDEM.PEERADDR":
		_, peer, _ := b.n.Addrs()
		return commands.Bulk(peer), true, nil
	case "SCRIPT":
		return b.scriptCmd(args)
	case "FUNCTION":
		return b.functionCmd(ctx, args)
	case "TANDEM.LSN":
		return commands.Int(b.n.db.Applied()), true, nil
	case "TANDEM.FORGET":
		// TANDEM.FORGET node-id: the leader forgets a follower at once (it
		// stops holding back log retention and counting for WAIT); 1 if
		// it was known. A follower that connects again is known again.
		if len(args) != 2 {
			return nil, true, &commands.ArityError{Name: "tandem.forget"}
		}
		r, ok := b.n.current().(*leading)
		if !ok {
			return nil, true, resp.ErrNotLeader
		}
		if r.l.RemoveFollower(string(args[1])) {
			return commands.Int(1), true, nil
		}
		return commands.Int(0), true, nil
	}
	return nil, false, nil
}

func (b backend) Role() commands.Reply {
	switch r := b.n.current().(type) {
	case *fenced:
		// Not a Redis role: a client that checks ROLE for "master" or
		// "slave" sees neither, which is the truth.
		return commands.Array{commands.Bulk("fenced"), commands.Int(b.n.db.Durable().LSN), commands.Bulk(r.reason)}
	case *following:
		st := r.f.Status()
		host, port, _ := net.SplitHostPort(r.leaderRESP)
		p, _ := strconv.Atoi(port)
		return commands.Array{commands.Bulk("slave"), commands.Bulk(host), commands.Int(p), commands.Bulk(linkState(st)), commands.Int(st.Durable)}
	case *leading:
		s := r.l.Status()
		var slaves commands.Array
		for _, fp := range s.Followers {
			if !fp.Connected {
				continue
			}
			host, port, _ := net.SplitHostPort(fp.RESPAddr)
			slaves = append(slaves, commands.Array{commands.Bulk(host), commands.Bulk(port), commands.Bulk(strconv.FormatUint(fp.DurableLSN, 10))})
		}
		if slaves == nil {
			slaves = commands.Array{}
		}
		return commands.Array{commands.Bulk("master"), commands.Int(s.Durable), slaves}
	}
	panic("node: unknown role")
}

func linkState(st replication.FollowerStatus) string {
	switch {
	case st.State == replication.StateSeeding:
		return "sync"
	case st.Connected:
		return "connected"
	}
	return "connect"
}

func (b backend) Info(sections []string) string {
	want := map[string]bool{}
	for _, s := range sections {
		want[strings.ToLower(s)] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var sb strings.Builder
	if all || want["server"] {
		b.infoServer(&sb)
	}
	if all || want["replication"] {
		b.infoReplication(&sb)
	}
	if all || want["clients"] {
		reg := b.n.blocked
		fmt.Fprintf(&sb, "# Clients\r\nconnected_clients:%d\r\nblocked_clients:%d\r\ntandem_blocked_pops_in_push:%d\r\ntandem_blocked_pops_own:%d\r\ntandem_blocked_pops_empty:%d\r\ntandem_blocked_pops_woken:%d\r\n\r\n",
			b.n.respSrv.Clients(), reg.blockedClients(), reg.servedInPush.Load(), reg.ownPops.Load(), reg.emptyPops.Load(), reg.wokenPops.Load())
	}
	if all || want["stats"] {
		b.infoStats(&sb) // pubsub.go
	}
	if all || want["memory"] {
		b.infoMemory(&sb)
	}
	if all || want["keyspace"] {
		b.infoKeyspace(&sb)
	}
	return sb.String()
}

func (b backend) infoServer(sb *strings.Builder) {
	_, port, _ := net.SplitHostPort(b.n.respAddr)
	fmt.Fprintf(sb, "# Server\r\nredis_version:7.0.0\r\ntandem_version:%s\r\nredis_mode:standalone\r\nos:linux\r\nprocess_id:%d\r\nrun_id:%s\r\ntcp_port:%s\r\nuptime_in_seconds:%d\r\ntandem_node_id:%s\r\n\r\n",
		Version, os.Getpid(), runID(b.n.cfg.ID), port, int(time.Since(b.n.started).Seconds()), b.n.cfg.ID)
}

func (b backend) infoReplication(sb *strings.Builder) {
	sb.WriteString("# Replication\r\n")
	var f *following
	switch r := b.n.current().(type) {
	case *fenced:
		fmt.Fprintf(sb, "role:fenced\r\nconnected_slaves:0\r\nmaster_repl_offset:%d\r\ntandem_epoch:%d\r\ntandem_applied_lsn:%d\r\ntandem_state:fenced\r\ntandem_fenced_reason:%s\r\ntandem_fenced_seconds:%d\r\ntandem_mode:%s\r\n\r\n",
			b.n.db.Durable().LSN, b.n.db.Epoch(), b.n.db.Applied(), r.reason, int(time.Since(r.since).Seconds()), b.n.cfg.Mode)
		return
	case *following:
		f = r
	case *leading:
		s := r.l.Status()
		connected := 0
		for _, fp := range s.Followers {
			if fp.Connected {
				connected++
			}
		}
		fmt.Fprintf(sb, "role:master\r\nconnected_slaves:%d\r\n", connected)
		i := 0
		for _, fp := range s.Followers {
			if !fp.Connected {
				continue
			}
			host, port, _ := net.SplitHostPort(fp.RESPAddr)
			lag := 0
			if !fp.LastSeen.IsZero() {
				lag = int(time.Since(fp.LastSeen).Seconds())
			}
			fmt.Fprintf(sb, "slave%d:ip=%s,port=%s,state=online,offset=%d,lag=%d\r\n", i, host, port, fp.DurableLSN, lag)
			i++
		}
		mode, set := r.l.Mode()
		degraded := 0
		if b.n.agent != nil && b.n.agent.degraded.Load() {
			degraded = 1
		}
		fmt.Fprintf(sb, "master_failover_state:no-failover\r\nmaster_replid:%s\r\nmaster_repl_offset:%d\r\ntandem_epoch:%d\r\ntandem_commit_lsn:%d\r\ntandem_applied_lsn:%d\r\ntandem_mode:%s\r\ntandem_sync_set:%s\r\ntandem_sync_degraded:%d\r\n\r\n",
			runID(fmt.Sprint("epoch", s.Epoch)), s.Durable, s.Epoch, s.Commit, s.Applied, mode, strings.Join(set, ","), degraded)
		return
	}
	st := f.f.Status()
	host, port, _ := net.SplitHostPort(f.leaderRESP)
	link, syncing, ago := "down", 0, -1
	if st.Connected {
		link = "up"
	}
	if st.State == replication.StateSeeding {
		syncing = 1
	}
	if !st.LastContact.IsZero() {
		ago = int(time.Since(st.LastContact).Seconds())
	}
	fmt.Fprintf(sb, "role:slave\r\nmaster_host:%s\r\nmaster_port:%s\r\nmaster_link_status:%s\r\nmaster_last_io_seconds_ago:%d\r\nmaster_sync_in_progress:%d\r\nslave_read_repl_offset:%d\r\nslave_repl_offset:%d\r\n",
		host, port, link, ago, syncing, st.Durable, st.Applied)
	if syncing == 1 {
		fmt.Fprintf(sb, "master_sync_total_bytes:%d\r\nmaster_sync_read_bytes:%d\r\n", st.SeedTotal, st.SeedBytes)
	}
	stale := -1.0 // unknown: the stream has proven nothing
	if d, ok := f.f.Staleness(); ok {
		stale = float64(d) / float64(time.Millisecond)
	}
	fmt.Fprintf(sb, "slave_priority:100\r\nslave_read_only:1\r\nconnected_slaves:0\r\nmaster_repl_offset:%d\r\ntandem_epoch:%d\r\ntandem_state:%s\r\ntandem_lag_lsn:%d\r\ntandem_lag_seconds:%.3f\r\ntandem_read_staleness_ms:%.1f\r\n\r\n",
		st.Applied, st.Epoch, st.State, st.LagLSN, st.LagSeconds, stale)
}

// infoMemory reports the process's memory in Redis's terms: used_memory
// is what the process allocated (its anonymous resident memory: the Go
// heap, Pebble's caches and memtables), used_memory_rss all it has
// resident. maxmemory is 0: --max-memory is the budget the caches and
// the Go heap are sized to, not a limit at which writes are refused or
// keys evicted (the data lives on disk).
func (b backend) infoMemory(sb *strings.Builder) {
	m := b.n.MemoryReport()
	budget := b.n.cfg.MaxMemory
	if budget <= 0 {
		budget = DefaultMaxMemory
	}
	fmt.Fprintf(sb, "# Memory\r\nused_memory:%d\r\nused_memory_human:%s\r\nused_memory_rss:%d\r\nused_memory_rss_human:%s\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\ntandem_max_memory:%d\r\nnumber_of_cached_scripts:%d\r\n\r\n",
		m.AnonBytes, bytesHuman(m.AnonBytes), m.RSSBytes, bytesHuman(m.RSSBytes), budget, b.n.scripts.Cached())
}

// bytesHuman writes n as Redis's INFO does (1.50M).
func bytesHuman(n int64) string {
	f := float64(n)
	for _, unit := range []string{"B", "K", "M", "G", "T"} {
		if f < 1024 || unit == "T" {
			if unit == "B" {
				return fmt.Sprintf("%dB", n)
			}
			return fmt.Sprintf("%.2f%s", f, unit)
		}
		f /= 1024
	}
	return ""
}

// infoKeyspace reports the key counts storage keeps on apply (O(1)): a
// key whose expiry passed counts until its deletion is applied, as Redis
// counts keys not yet reaped.
func (b backend) infoKeyspace(sb *strings.Builder) {
	sb.WriteString("# Keyspace\r\n")
	if c := b.n.db.KeyCounts(); c.Keys > 0 {
		fmt.Fprintf(sb, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", c.Keys, c.Expires)
	}
	sb.WriteString("\r\n")
}

// runID derives a stable 40-hex-character id, as Redis's run_id looks.
func runID(seed string) string {
	var out [20]byte
	h := uint64(14695981039346656037)
	for i := range out {
		for _, c := range []byte(seed) {
			h ^= uint64(c) + uint64(i)
			h *= 1099511628211
		}
		out[i] = byte(h)
	}
	return hex.EncodeToString(out[:])
}

// Version is tandem's version string.
var Version = "0.1.0"

// functionCmd serves FUNCTION. The libraries are replicated data (see
// package script's functions.go): LOAD, DELETE, FLUSH and RESTORE are
// writes through the log (commands.FunctionWrite: the leader's, refused
// on a follower as any write), LIST, DUMP and STATS reads of what this
// node applied (commands.FunctionRead); KILL and HELP are this node's.
func (b backend) functionCmd(ctx context.Context, args [][]byte) (commands.Reply, bool, error) {
	sub, err := commands.CheckFunction(args)
	if err != nil {
		return nil, true, err
	}
	sc := commands.FunctionSubcommands[sub]
	switch sub {
	case "kill":
		return b.n.scripts.KillFunction(), true, nil
	case "help":
		return script.FunctionHelp(), true, nil
	}
	if sc.Writes {
		reply, _, err := b.Write(ctx, commands.FunctionWrite, args)
		return reply, true, err
	}
	reply, err := b.Read(ctx, commands.FunctionRead, args)
	return reply, true, err
}

// scriptCmd serves SCRIPT LOAD, EXISTS, FLUSH, KILL and HELP on this
// node's engine. The cache is the node's own: SCRIPT LOAD on the leader
// does not reach the followers, nor a leader after a failover (EVALSHA
// answers NOSCRIPT there and clients send EVAL, as all common ones do).
// scriptArity is each SCRIPT subcommand's arity (Redis's "script|load").
var scriptArity = map[string]int{"load": 3, "exists": -3, "flush": -2, "kill": 2, "help": 2}

// checkScript is SCRIPT's check before it runs: its subcommand (lower
// case), or the input error that refuses it (arity, an unknown
// subcommand).
func checkScript(args [][]byte) (string, error) {
	if len(args) < 2 {
		return "", &commands.ArityError{Name: "script"}
	}
	sub := strings.ToLower(string(args[1]))
	a, known := scriptArity[sub]
	if !known {
		return "", commands.InputError("unknown subcommand '" + string(args[1]) + "'. Try SCRIPT HELP.")
	}
	if !commands.ArityOK(a, len(args)) || sub == "flush" && len(args) > 3 {
		return "", &commands.ArityError{Name: "script|" + sub}
	}
	return sub, nil
}

// Queueable implements resp.QueueingBackend: SCRIPT, and FUNCTION KILL
// and HELP (the FUNCTION subcommands with no spec; the others are data
// commands, queued as such), are queued in MULTI, as Redis queues them.
func (b backend) Queueable(args [][]byte) (bool, error) {
	switch {
	case strings.EqualFold(string(args[0]), "script"):
		_, err := checkScript(args)
		return true, err
	case strings.EqualFold(string(args[0]), "function"):
		_, err := commands.CheckFunction(args)
		return true, err
	}
	return false, nil
}

func (b backend) scriptCmd(args [][]byte) (commands.Reply, bool, error) {
	sub, err := checkScript(args)
	if err != nil {
		return nil, true, err
	}
	e := b.n.scripts
	switch sub {
	case "load":
		sha, r := e.Load(args[2])
		if r != nil {
			return r, true, nil
		}
		return commands.Bulk(sha), true, nil
	case "exists":
		var out commands.Array
		for _, ok := range e.Exists(args[2:]) {
			if ok {
				out = append(out, commands.Int(1))
			} else {
				out = append(out, commands.Int(0))
			}
		}
		return out, true, nil
	case "flush":
		if len(args) == 3 {
			if m := strings.ToLower(string(args[2])); m != "sync" && m != "async" {
				return commands.ErrorReply("ERR SCRIPT FLUSH only support SYNC|ASYNC option"), true, nil
			}
		}
		e.Flush()
		return commands.OK, true, nil
	case "kill":
		return e.Kill(), true, nil
	}
	var help commands.Array
	for _, l := range []string{
		"SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"EXISTS <sha1> [<sha1> ...]",
		"    Return information about the existence of the scripts in the script cache.",
		"FLUSH [ASYNC|SYNC]",
		"    Flush the Lua scripts cache. Very dangerous on replicas.",
		"KILL",
		"    Kill the currently executing Lua script.",
		"LOAD <script>",
		"    Load a script into the scripts cache without executing it.",
		"HELP",
		"    Prints this help.",
	} {
		help = append(help, commands.SimpleString(l))
	}
	return help, true, nil
}
