package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/testutil"
)

// Tests of the Leader driver: what the core decides is tested in
// leader_core_test.go; these check that the driver carries it out with
// real storage and streams.

// TestLeaderCloseStopsStreams: once Close returns nothing of the leader
// touches storage, however late a follower's progress report comes. The
// test closes the database right after Close and then delivers a progress
// report on the stream whose handler has returned: a leader that handled
// it with storage would panic on the closed Pebble (checked by planting
// exactly that). A follower that stops reading must not hold Close up
// either (TestCloseDoesNotWaitForAStuckFollower).
func TestLeaderCloseStopsStreams(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	if err := db.StartEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	l, err := NewLeader(LeaderConfig{DB: db, NodeID: "leader", Mode: commit.Mode{Kind: commit.Quorum, K: 1}, Logger: testLogger(t, "leader")}, 1)
	if err != nil {
		t.Fatal(err)
	}
	st := &lateStream{in: make(chan *peerpb.FollowerMessage), recvs: make(chan struct{}, 16), started: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- l.Serve(context.Background(), st) }()
	st.in <- &peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{NodeId: "f", Durable: &peerpb.Position{}}}}
	<-st.started
	<-st.recvs // the Recv of the hello
	<-st.recvs // the receiver waits for progress reports
	pending := proposeAsync(context.Background(), &testLeader{Leader: l}, putExec("k", "v"))
	l.Close()
	if err := <-served; !errors.Is(err, ErrNotLeader) {
		t.Errorf("Serve: %v, want ErrNotLeader", err)
	}
	if r := <-pending; !errors.Is(r.err, ErrNotLeader) {
		t.Errorf("write pending at Close: %v, want ErrNotLeader", r.err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The handler has returned, but this stream still delivers: a late
	// report, read by the stream's receiver.
	st.in <- &peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{DurableLsn: 1, AppliedLsn: 1}}}
	<-st.recvs // the receiver handled it and asks for the next message
	close(st.in)
	if err := l.Serve(context.Background(), nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Serve after Close: %v, want ErrNotLeader", err)
	}
	if err := l.ServeSnapshot(&peerpb.SnapshotRequest{NodeId: "x"}, nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ServeSnapshot after Close: %v, want ErrNotLeader", err)
	}
}

// lateStream is a follower stream that outlives its handler, as a stream
// whose messages are still in flight does: Recv delivers what the test
// puts in in (and says so on recvs), until in is closed.
type lateStream struct {
	in      chan *peerpb.FollowerMessage
	recvs   chan struct{}
	started chan struct{} // closed when the leader sent Start
	once    sync.Once
}

func (s *lateStream) Send(m *peerpb.LeaderMessage) error {
	if m.GetStart() != nil {
		s.once.Do(func() { close(s.started) })
	}
	return nil
}

func (s *lateStream) Recv() (*peerpb.FollowerMessage, error) {
	select {
	case s.recvs <- struct{}{}:
	default:
	}
	m, ok := <-s.in
	if !ok {
		return nil, errors.New("late: closed")
	}
	return m, nil
}

// TestLateJoinClosesTheOtherStream: a follower's two streams join in the
// other order than it opened them. That happens when a handshake stalls
// between its answer and its join while the follower's end of that stream
// breaks and it reconnects: the stale stream joins last, as the newest
// session. The leader sends only to the newest session, so it must close
// the other one, the live one here, rather than leave it open with nothing
// sent on it, where the follower would wait for ever (under load
// TestFollowerRestartResumes stalled so, about 1 run in 10 of the package
// under -race). The streams are opened by hand: the second joins last.
func TestLateJoinClosesTheOtherStream(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	d := l.dialer.from("f")
	open := func() FollowerStream {
		t.Helper()
		s, err := d.Replicate(context.Background())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { s.CloseSend() })
		if err := s.Send(&peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{
			NodeId: "f", Durable: &peerpb.Position{}, LogFormat: uint32(logrec.MaxFormat)}}}); err != nil {
			t.Fatalf("hello: %v", err)
		}
		if m, err := s.Recv(); err != nil || m.GetStart() == nil {
			t.Fatalf("handshake: %v, %v; want a Start", m, err)
		}
		return s
	}
	first := open()
	waitConnected(t, l, 1) // first has joined
	second := open()

	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := first.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		t.Logf("the other stream ended: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("the stream that is no longer the follower's session is still open")
	}

	// The newest stream is the follower's: it is sent the next write.
	propose(t, l, putExec("k", "v"))
	for {
		m, err := second.Recv()
		if err != nil {
			t.Fatalf("the newest stream: %v", err)
		}
		if es := m.GetAppend().GetEntries(); len(es) > 0 {
			if _, lsn, err := logrec.PeekLSNVerified(es[0]); err != nil || lsn != 1 {
				t.Fatalf("the newest stream got lsn %d (%v), want 1", lsn, err)
			}
			break
		}
	}
}

// TestEpochPersistFailureIsFatal: a leader that hears of a higher epoch and
// cannot persist it stops the process (Fatal) rather than go on not
// knowing the epoch exists.
func TestEpochPersistFailureIsFatal(t *testing.T) {
	var fatal atomic.Value
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Fatal = func(err error) { fatal.Store(err) }
	})
	l.persistEpoch = func(uint64) error { return errors.New("disk full") }
	st := &scriptLeaderStream{done: make(chan struct{}), in: []*peerpb.FollowerMessage{{Epoch: 7, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{NodeId: "f"}}}}}
	defer close(st.done)
	if err := l.Serve(context.Background(), st); !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("Serve: %v, want ErrStaleEpoch", err)
	}
	if err, _ := fatal.Load().(error); err == nil {
		t.Fatal("Fatal was not called")
	}
	select {
	case <-l.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the leader did not step down")
	}
}

// TestRemoveFollower: a removed follower's stream is closed and it stops
// counting; it may connect again.
func TestRemoveFollower(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	if !l.RemoveFollower("f") {
		t.Fatal("RemoveFollower of a connected follower: not known")
	}
	if l.RemoveFollower("nobody") {
		t.Error("RemoveFollower of an unknown follower: known")
	}
	waitFor(t, "the follower to reconnect on a new stream", func() (bool, string) {
		n := l.dialer.replicates.Load()
		c := 0
		for _, f := range l.Status().Followers {
			if f.Connected {
				c++
			}
		}
		return n >= 2 && c == 1, fmt.Sprintf("%d streams opened, %d connected", n, c)
	})
}

// scriptLeaderStream is a follower that sends its script and then blocks
// until done is closed.
type scriptLeaderStream struct {
	in   []*peerpb.FollowerMessage
	out  []*peerpb.LeaderMessage
	done chan struct{}
}

func (s *scriptLeaderStream) Send(m *peerpb.LeaderMessage) error {
	s.out = append(s.out, m)
	return nil
}

func (s *scriptLeaderStream) Recv() (*peerpb.FollowerMessage, error) {
	if len(s.in) == 0 {
		<-s.done
		return nil, errors.New("script: stream closed")
	}
	m := s.in[0]
	s.in = s.in[1:]
	return m, nil
}

// TestCloseDoesNotWaitForAStuckFollower: a follower that stops reading
// fills its stream's flow-control window and a send blocks; Close, and a
// snapshot send, must not wait for it.
func TestCloseDoesNotWaitForAStuckFollower(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, putExec("k", "v"))
	st := &stuckStream{hello: &peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{
		NodeId: "f", Durable: &peerpb.Position{Epoch: 1, Lsn: 1}}}}, blocked: make(chan struct{}), release: make(chan struct{})}
	defer close(st.release)
	served := make(chan error, 1)
	go func() { served <- l.Serve(context.Background(), st) }()
	propose(t, l, putExec("k2", "v")) // its append is the send that blocks
	select {
	case <-st.blocked:
	case <-time.After(waitTimeout):
		t.Fatal("no send blocked")
	}
	snapshot := make(chan error, 1)
	go func() { snapshot <- l.ServeSnapshot(&peerpb.SnapshotRequest{NodeId: "g", Epoch: 1}, stuckSender{st}) }()
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close waited for a follower that does not read")
	}
	if err := <-served; !errors.Is(err, ErrNotLeader) {
		t.Errorf("Serve: %v, want ErrNotLeader", err)
	}
	if err := <-snapshot; !errors.Is(err, ErrNotLeader) {
		t.Errorf("ServeSnapshot: %v, want ErrNotLeader", err)
	}
}

// stuckStream answers the handshake, accepts the Start message, then
// blocks every later send until release, as a follower that stopped
// reading would.
type stuckStream struct {
	hello   *peerpb.FollowerMessage
	sent    atomic.Int32
	blocked chan struct{} // closed when the first send blocks
	once    sync.Once
	release chan struct{}
}

func (s *stuckStream) Send(*peerpb.LeaderMessage) error {
	if s.sent.Add(1) == 1 {
		return nil
	}
	s.once.Do(func() { close(s.blocked) })
	<-s.release
	return errors.New("stuck: released")
}

func (s *stuckStream) Recv() (*peerpb.FollowerMessage, error) {
	if h := s.hello; h != nil {
		s.hello = nil
		return h, nil
	}
	<-s.release
	return nil, errors.New("stuck: released")
}

type stuckSender struct{ s *stuckStream }

func (x stuckSender) Send(*peerpb.SnapshotChunk) error {
	<-x.s.release
	return errors.New("stuck: released")
}

// TestConfirmedByFollowers: a follower echoes the lease stamp of the
// leader messages it receives, and the leader's ConfirmedByFollowers
// answers from those echoes (kept in the core's follower table): a recent
// time for a follower that streams, nothing while one asked for has not
// echoed, or has been removed.
func TestConfirmedByFollowers(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	if _, ok := l.ConfirmedByFollowers([]string{"f"}); ok {
		t.Error("confirmed by a follower that never connected")
	}
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	asked := time.Now()
	propose(t, l, putExec("k", "v")) // sent after asked, and echoed
	waitFor(t, "the follower to echo a message sent after the write", func() (bool, string) {
		at, ok := l.ConfirmedByFollowers([]string{"f"})
		return ok && !at.Before(asked), fmt.Sprintf("confirmed %v at %v, asked at %v", ok, at, asked)
	})
	if _, ok := l.ConfirmedByFollowers([]string{"f", "g"}); ok {
		t.Error("confirmed by f and g, though g never connected")
	}
	f.stop(t) // so that it does not connect and echo again
	if _, ok := l.ConfirmedByFollowers([]string{"f"}); !ok {
		t.Error("a follower that disconnected no longer confirms: its echo stands until it is forgotten")
	}
	l.RemoveFollower("f")
	if _, ok := l.ConfirmedByFollowers([]string{"f"}); ok {
		t.Error("confirmed by a follower just removed")
	}
}

// TestStartOwnsTheCommandsBytes: a write's ops point at the command's
// arguments, which belong to the connection's buffer and are written over
// by its next command as soon as Start returns. The sequenced entry must
// not: the overlay (what the next command reads before the write is
// committed) and the entry applied later keep the values as they were
// when the command ran. In quorum 1 without a follower nothing commits,
// so the overlay is what the read sees, whatever the timing.
func TestStartOwnsTheCommandsBytes(t *testing.T) {
	fs := vfs.NewMem()
	var sequenced []logrec.Op
	l := startLeader(t, fs, openDB(t, fs), 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) {
		c.Sequenced = func(ops []logrec.Op) { sequenced = ops }
	})
	args := []byte("keyvalue")
	if _, err := l.Start(context.Background(), func(commands.View, int64) (commands.Result, error) {
		return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: args[:3], Value: args[3:]}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	copy(args, "KEYVALUE") // the connection reads its next command
	var got string
	var found bool
	if _, err := l.Start(context.Background(), func(v commands.View, _ int64) (commands.Result, error) {
		val, ok, err := v.Get([]byte("key"))
		got, found = string(val.Data), ok
		return commands.Result{Reply: commands.OK}, err
	}); err != nil {
		t.Fatal(err)
	}
	if !found || got != "value" {
		t.Errorf("the next command reads key = %q (found %v), want %q", got, found, "value")
	}
	if len(sequenced) != 1 || string(sequenced[0].Key) != "key" || string(sequenced[0].Value) != "value" {
		t.Errorf("the sequenced ops are %+v, want key = value", sequenced)
	}
}

// TestThenNeedsNoChannel: a writer answered through Then, the common lone
// write, never gets a done channel (an allocation per write): one whose
// answer comes after Then is answered by the callback, one answered
// before (early) gets it from Then at once; a writer that Waits makes its
// channel then, also after an early answer. A second Then panics, as
// before.
func TestThenNeedsNoChannel(t *testing.T) {
	fs := vfs.NewMem()
	l := startLeader(t, fs, openDB(t, fs), 1, commit.Mode{Kind: commit.Async}, nil)
	ctx := context.Background()
	answered := func(p *Pending) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return p.p.answered
	}
	// Then before the answer, and Then after it.
	for _, early := range []bool{false, true} {
		p, err := l.Start(ctx, putExec("k", "v"))
		if err != nil {
			t.Fatal(err)
		}
		if early {
			testutil.Eventually(t, "the write answered", waitTimeout, func() (bool, string) { return answered(p), "not yet" })
		}
		got := make(chan error, 1)
		p.Then(ctx, func(_ commands.Reply, lsn uint64, err error) {
			if err == nil && lsn != p.p.lsn {
				err = fmt.Errorf("answered lsn %d, want %d", lsn, p.p.lsn)
			}
			got <- err
		})
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("early %v: %v", early, err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("early %v: no answer", early)
		}
		l.mu.Lock()
		made := p.p.done != nil
		l.mu.Unlock()
		if made {
			t.Errorf("early %v: a Then writer got a done channel", early)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("early %v: a second Then did not panic", early)
				}
			}()
			p.Then(ctx, func(commands.Reply, uint64, error) {})
		}()
	}
	// Wait after an early answer.
	p, err := l.Start(ctx, putExec("k", "w"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the write answered", waitTimeout, func() (bool, string) { return answered(p), "not yet" })
	if _, lsn, err := p.Wait(ctx); err != nil || lsn != p.p.lsn {
		t.Fatalf("Wait after the answer: lsn %d, %v; want %d", lsn, err, p.p.lsn)
	}
}

// TestThenMapMapsErrors: ThenMap hands done its errors mapped, whether
// the answer comes after it (the callback, here at Close) or came before
// it (early); a success is not mapped.
func TestThenMapMapsErrors(t *testing.T) {
	fs := vfs.NewMem()
	l := startLeader(t, fs, openDB(t, fs), 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	ctx := context.Background()
	var maps atomic.Int32
	mapErr := func(err error) error { maps.Add(1); return fmt.Errorf("mapped: %w", err) }
	after, err := l.Start(ctx, putExec("a", "1")) // answered after ThenMap
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 2)
	after.ThenMap(ctx, func(_ commands.Reply, _ uint64, err error) { got <- err }, mapErr)
	before, err := l.Start(ctx, putExec("b", "2")) // answered before ThenMap
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // nothing committed (no follower): both are answered ErrNotLeader
	before.ThenMap(ctx, func(_ commands.Reply, _ uint64, err error) { got <- err }, mapErr)
	for range 2 {
		select {
		case err := <-got:
			if !errors.Is(err, ErrNotLeader) || !strings.HasPrefix(err.Error(), "mapped: ") {
				t.Errorf("answered %v, want ErrNotLeader mapped", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no answer")
		}
	}
	if n := maps.Load(); n != 2 {
		t.Errorf("%d errors mapped, want 2", n)
	}
}

// TestLargeGroupAnsweredOnTwoGoroutines: the replies of a group of at
// least AnswerSplit writers answered through Then are written on two
// goroutines at once (each callback here waits to see another one running),
// each exactly once with its own LSN; a smaller group is answered before
// unlock returns, on the goroutine that applied it.
func TestLargeGroupAnsweredOnTwoGoroutines(t *testing.T) {
	const split = 8
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.AnswerSplit = split })
	owe := func(n int, then func(lsn uint64)) {
		l.mu.Lock()
		for i := range n {
			p := &proposal{lsn: uint64(1000 + i)}
			l.notify = append(l.notify, notice{p: p, then: func(_ commands.Reply, lsn uint64, err error) {
				if err != nil {
					t.Errorf("answer %d: %v", p.lsn, err)
				}
				then(lsn)
			}})
		}
		l.unlock()
	}

	// A large group: every callback waits until two run at once (or gives
	// up after waitTimeout, once: the rest then do not wait).
	var mu sync.Mutex
	running, seen := 0, map[uint64]int{}
	both := make(chan struct{})
	var bothOnce sync.Once
	var gaveUp atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2 * split)
	owe(2*split, func(lsn uint64) {
		defer wg.Done()
		mu.Lock()
		running++
		seen[lsn]++
		if running >= 2 {
			bothOnce.Do(func() { close(both) })
		}
		mu.Unlock()
		if !gaveUp.Load() {
			select {
			case <-both:
			case <-time.After(waitTimeout):
				gaveUp.Store(true)
			}
		}
		mu.Lock()
		running--
		mu.Unlock()
	})
	wg.Wait()
	if gaveUp.Load() {
		t.Errorf("a group of %d replies was never answered on two goroutines at once", 2*split)
	}
	for i := range uint64(2 * split) {
		if seen[1000+i] != 1 {
			t.Errorf("LSN %d answered %d times, want once", 1000+i, seen[1000+i])
		}
	}

	// A small group: answered by unlock itself.
	answered := 0
	owe(split-1, func(uint64) { answered++ })
	if answered != split-1 {
		t.Errorf("a group of %d replies: %d answered when unlock returned, want all", split-1, answered)
	}
	if h := l.Handoffs(); h.Answer != 1 {
		t.Errorf("Answer hand-offs %d, want 1 (the large group's)", h.Answer)
	}
}
