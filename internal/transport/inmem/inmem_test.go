package inmem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport"
)

// Every test runs in a synctest bubble: delays cost no real time, and
// synctest.Wait says "everything that can happen has happened" without a
// sleep. Each test closes its network, so no goroutine outlives the bubble.

// fakeServer is a leader in miniature: serve and snap are its handlers.
type fakeServer struct {
	serve func(ctx context.Context, s transport.LeaderStream) error
	snap  func(req *peerpb.SnapshotRequest, out transport.SnapshotSender) error
}

func (f *fakeServer) Serve(ctx context.Context, s transport.LeaderStream) error {
	return f.serve(ctx, s)
}

func (f *fakeServer) ServeSnapshot(req *peerpb.SnapshotRequest, out transport.SnapshotSender) error {
	return f.snap(req, out)
}

// echo answers every Progress with an Append whose commit LSN is the
// progress's durable LSN, until the stream ends.
func echo() *fakeServer {
	return &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
		for {
			m, err := s.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := s.Send(appendMsg(m.GetProgress().GetDurableLsn())); err != nil {
				return err
			}
		}
	}}
}

// sends returns a server that sends n appends (commit 1..n) and returns
// end.
func sends(n int, end error) *fakeServer {
	return &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
		for i := 1; i <= n; i++ {
			if err := s.Send(appendMsg(uint64(i))); err != nil {
				return err
			}
		}
		return end
	}}
}

func appendMsg(commit uint64) *peerpb.LeaderMessage {
	return &peerpb.LeaderMessage{Epoch: 1, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{CommitLsn: commit}}}
}

func progress(lsn uint64) *peerpb.FollowerMessage {
	return &peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{DurableLsn: lsn}}}
}

// recvAll receives until the stream ends and returns the commit LSNs and
// the end.
func recvAll(s transport.FollowerStream) ([]uint64, error) {
	var got []uint64
	for {
		m, err := s.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, m.GetAppend().GetCommitLsn())
	}
}

func seq(n int) []uint64 {
	var out []uint64
	for i := 1; i <= n; i++ {
		out = append(out, uint64(i))
	}
	return out
}

func dial(t *testing.T, d transport.Dialer) transport.FollowerStream {
	t.Helper()
	s, err := d.Replicate(context.Background())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return s
}

func TestStreamRoundTripClones(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		var seen []*peerpb.FollowerMessage
		n.Listen("l", &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
			for {
				m, err := s.Recv()
				if err != nil {
					return nil
				}
				seen = append(seen, m)
				if err := s.Send(appendMsg(m.GetProgress().GetDurableLsn())); err != nil {
					return err
				}
			}
		}})
		s := dial(t, n.Dialer("f", "l"))
		for i := uint64(1); i <= 10; i++ {
			m := progress(i)
			if err := s.Send(m); err != nil {
				t.Fatal(err)
			}
			m.GetProgress().DurableLsn = 999 // the wire has its own copy
			got, err := s.Recv()
			if err != nil || got.GetAppend().GetCommitLsn() != i {
				t.Fatalf("reply %d = %v, %v", i, got, err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend and a clean handler end: %v, want io.EOF", err)
		}
		for i, m := range seen {
			if m.GetProgress().GetDurableLsn() != uint64(i+1) {
				t.Fatalf("server saw %v: the sender's later change leaked through", m)
			}
		}
		if st := n.Stats("f", "l"); st.Replicates != 1 || st.Sent != 10 || st.Delivered != 10 || st.Dropped != 0 {
			t.Fatalf("f->l stats %+v", st)
		}
		if st := n.Stats("l", "f"); st.Sent != 10 || st.Delivered != 10 {
			t.Fatalf("l->f stats %+v", st)
		}
	})
}

func TestHandlerEndDrainsThenEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		n.SetHook("l", "f", Delay(time.Millisecond, 5*time.Millisecond))
		n.Listen("clean", sends(5, nil))
		got, err := recvAll(dial(t, n.Dialer("f", "clean")))
		if !reflect.DeepEqual(got, seq(5)) || err != io.EOF {
			t.Fatalf("clean end: %v, %v; want 1..5 then io.EOF", got, err)
		}
		sentinel := errors.New("leader: stepped down")
		n.Listen("l", sends(3, sentinel))
		got, err = recvAll(dial(t, n.Dialer("f", "l")))
		if !reflect.DeepEqual(got, seq(3)) {
			t.Fatalf("got %v before the error end", got)
		}
		if err == nil || errors.Is(err, sentinel) || !strings.Contains(err.Error(), sentinel.Error()) {
			t.Fatalf("end = %v: want the handler's text without its identity", err)
		}
		s := dial(t, n.Dialer("f", "l"))
		synctest.Wait() // the handler has returned
		if err := s.Send(progress(1)); err == nil || !strings.Contains(err.Error(), sentinel.Error()) {
			t.Fatalf("Send after the handler returned = %v", err)
		}
	})
}

func TestDialFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		d := n.Dialer("f", "l")
		if _, err := d.Replicate(context.Background()); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("nothing listening: %v", err)
		}
		n.Listen("l", echo())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := d.Replicate(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v", err)
		}
		dial(t, d).CloseSend()
		n.Listen("l", nil)
		if _, err := d.Snapshot(context.Background(), &peerpb.SnapshotRequest{}); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("after Listen(nil): %v", err)
		}
		if st := n.Stats("f", "l"); st.Replicates != 3 || st.Snapshots != 1 {
			t.Fatalf("dial counts %+v", st)
		}
	})
}

// held opens a stream to a server that blocks in Recv and reports how its
// handler ended.
func held(t *testing.T, n *Network, from, to string) (transport.FollowerStream, <-chan error) {
	t.Helper()
	ended := make(chan error, 1)
	n.Listen(to, &fakeServer{serve: func(ctx context.Context, s transport.LeaderStream) error {
		_, err := s.Recv()
		if errors.Is(err, ErrCut) {
			<-ctx.Done() // a cut also ends the handler's context
		}
		ended <- err
		return err
	}})
	return dial(t, n.Dialer(from, to)), ended
}

func TestPartitionCutsAndRefusesUntilHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		s, ended := held(t, n, "f", "l")
		other, otherEnded := held(t, n, "g", "m")
		n.Partition("l", "f") // either order names the pair
		if err := <-ended; !errors.Is(err, ErrCut) {
			t.Fatalf("handler's Recv after partition: %v", err)
		}
		if _, err := s.Recv(); !errors.Is(err, ErrCut) {
			t.Fatalf("client Recv after partition: %v", err)
		}
		if err := s.Send(progress(1)); !errors.Is(err, ErrCut) {
			t.Fatalf("client Send after partition: %v", err)
		}
		n.Listen("f", echo())
		for _, d := range []*Dialer{n.Dialer("f", "l"), n.Dialer("l", "f")} {
			if _, err := d.Replicate(context.Background()); !errors.Is(err, ErrPartitioned) {
				t.Fatalf("dial %s->%s across the partition: %v", d.from, d.to, err)
			}
		}
		synctest.Wait()
		select {
		case err := <-otherEnded:
			t.Fatalf("a connection between other endpoints ended: %v", err)
		default:
		}
		n.Heal()
		n.Listen("l", echo())
		s = dial(t, n.Dialer("f", "l"))
		if err := s.Send(progress(7)); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); err != nil || m.GetAppend().GetCommitLsn() != 7 {
			t.Fatalf("after heal: %v, %v", m, err)
		}
		other.CloseSend()
		if err := <-otherEnded; err != io.EOF {
			t.Fatalf("other handler: %v", err)
		}
	})
}

func TestCutAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		s, ended := held(t, n, "f", "l")
		n.Cut("f", "l")
		if _, err := s.Recv(); !errors.Is(err, ErrCut) {
			t.Fatalf("after Cut: %v", err)
		}
		<-ended
		s, ended = held(t, n, "f", "l") // a cut link may be redialed
		n.Stop("f")                     // a crash of the client cuts it too
		if _, err := s.Recv(); !errors.Is(err, ErrCut) {
			t.Fatalf("after Stop of the client: %v", err)
		}
		<-ended
		n.Stop("l")
		if _, err := n.Dialer("f", "l").Replicate(context.Background()); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("dial after Stop: %v", err)
		}
	})
}

func TestClientContextCutsTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		var handlerErr error
		n.Listen("l", &fakeServer{serve: func(ctx context.Context, s transport.LeaderStream) error {
			_, handlerErr = s.Recv()
			return handlerErr
		}})
		ctx, cancel := context.WithCancel(context.Background())
		s, err := n.Dialer("f", "l").Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := s.Recv(); !errors.Is(err, ErrCut) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv after the client's context ended: %v", err)
		}
		n.Wait()
		if !errors.Is(handlerErr, ErrCut) {
			t.Fatalf("handler's Recv: %v", handlerErr)
		}
	})
}

// dropRun sends 200 messages f->l through DropRandom(0.3) and returns the
// commit LSNs that arrived.
func dropRun(t *testing.T, seed uint64) []uint64 {
	var got []uint64
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{Seed: seed})
		defer n.Close()
		var mu sync.Mutex
		n.Listen("l", &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
			for {
				m, err := s.Recv()
				if err != nil {
					return nil
				}
				mu.Lock()
				got = append(got, m.GetProgress().GetDurableLsn())
				mu.Unlock()
			}
		}})
		n.SetHook("f", "l", DropRandom(0.3))
		s := dial(t, n.Dialer("f", "l"))
		for i := uint64(1); i <= 200; i++ {
			if err := s.Send(progress(i)); err != nil {
				t.Fatal(err)
			}
		}
		s.CloseSend()
		n.Wait()
		if st := n.Stats("f", "l"); st.Sent != 200 || st.Dropped+st.Delivered != 200 || st.Delivered != len(got) {
			t.Fatalf("stats %+v with %d received", st, len(got))
		}
	})
	return got
}

func TestDropIsDeterministicGivenTheSeed(t *testing.T) {
	a, b, c := dropRun(t, 1), dropRun(t, 1), dropRun(t, 2)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 1 twice gave different drops:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 1 and 2 dropped the same messages")
	}
	if len(a) < 110 || len(a) > 170 {
		t.Fatalf("%d of 200 arrived with p=0.3", len(a))
	}
	for i := 1; i < len(a); i++ {
		if a[i] <= a[i-1] {
			t.Fatalf("drops reordered the rest: %v", a)
		}
	}
}

func TestDropIf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		n.Listen("l", sends(6, nil))
		var hooked []string
		n.SetHook("l", "f", DropIf(func(m Message) bool {
			hooked = append(hooked, fmt.Sprintf("%s->%s %s #%d", m.From, m.To, m.Kind, m.Seq))
			return m.Msg.(*peerpb.LeaderMessage).GetAppend().GetCommitLsn()%2 == 0
		}))
		got, err := recvAll(dial(t, n.Dialer("f", "l")))
		if !reflect.DeepEqual(got, []uint64{1, 3, 5}) || err != io.EOF {
			t.Fatalf("got %v, %v; want the odd ones", got, err)
		}
		if len(hooked) != 6 || hooked[5] != "l->f replicate #6" {
			t.Fatalf("hook saw %v", hooked)
		}
	})
}

func TestDelayKeepsOrderAndTakesFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{Seed: 3})
		defer n.Close()
		n.SetHook("l", "f", Delay(10*time.Millisecond, 100*time.Millisecond))
		n.Listen("l", sends(50, nil))
		start := time.Now()
		got, err := recvAll(dial(t, n.Dialer("f", "l")))
		if !reflect.DeepEqual(got, seq(50)) || err != io.EOF {
			t.Fatalf("got %v, %v", got, err)
		}
		// All 50 were sent at once; the last leaves no earlier than its
		// own delay and the longest delay before it.
		if d := time.Since(start); d < 10*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("delivery took %v of fake time", d)
		}
	})
}

func TestReorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		n.SetHook("l", "f", func(m Message, _ *rand.Rand) Action {
			if m.Seq == 2 {
				return Action{Delay: 10 * time.Millisecond, Reorder: true}
			}
			return Action{}
		})
		n.Listen("l", sends(4, nil))
		got, _ := recvAll(dial(t, n.Dialer("f", "l")))
		if want := []uint64{1, 3, 4, 2}; !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		// Without Reorder a delayed message holds back those behind it.
		n.SetHook("l", "f", func(m Message, _ *rand.Rand) Action {
			if m.Seq == 6 {
				return Action{Delay: 10 * time.Millisecond}
			}
			return Action{}
		})
		got, _ = recvAll(dial(t, n.Dialer("f", "l")))
		if !reflect.DeepEqual(got, seq(4)) {
			t.Fatalf("delay without reorder gave %v", got)
		}
		n.SetHook("l", "f", Reorder(0.5, 20*time.Millisecond))
		n.Listen("l", sends(40, nil))
		got, _ = recvAll(dial(t, n.Dialer("f", "l")))
		if len(got) != 40 || reflect.DeepEqual(got, seq(40)) {
			t.Fatalf("Reorder(0.5) gave %v", got)
		}
		n.Heal() // hooks too
		got, _ = recvAll(dial(t, n.Dialer("f", "l")))
		if !reflect.DeepEqual(got, seq(40)) {
			t.Fatalf("after Heal: %v", got)
		}
	})
}

func TestWindowBlocksTheSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{Window: 3})
		defer n.Close()
		sent := 0
		n.Listen("l", &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
			for i := 1; i <= 10; i++ {
				if err := s.Send(appendMsg(uint64(i))); err != nil {
					return err
				}
				sent = i
			}
			return nil
		}})
		s := dial(t, n.Dialer("f", "l"))
		synctest.Wait()
		if sent != 3 {
			t.Fatalf("sender got %d messages out with a window of 3 and no reader", sent)
		}
		got, err := recvAll(s)
		if !reflect.DeepEqual(got, seq(10)) || err != io.EOF {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}

func TestSnapshotStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ends []string
		n := New(Config{ServeDone: func(server, client string, kind Kind, err error) {
			ends = append(ends, fmt.Sprintf("%s<-%s %s %v", server, client, kind, err))
		}})
		defer n.Close()
		var gotReq *peerpb.SnapshotRequest
		n.Listen("l", &fakeServer{snap: func(req *peerpb.SnapshotRequest, out transport.SnapshotSender) error {
			gotReq = req
			for i := range 5 {
				if err := out.Send(&peerpb.SnapshotChunk{Epoch: 1, Body: &peerpb.SnapshotChunk_Data{Data: []byte{byte(i)}}}); err != nil {
					return err
				}
			}
			return out.Send(&peerpb.SnapshotChunk{Epoch: 1, Body: &peerpb.SnapshotChunk_Done{Done: &peerpb.SnapshotDone{Keys: 5}}})
		}})
		n.SetHook("l", "f", DropIf(func(m Message) bool {
			return m.Kind == Snapshot && string(m.Msg.(*peerpb.SnapshotChunk).GetData()) == "\x02"
		}))
		req := &peerpb.SnapshotRequest{NodeId: "f", Epoch: 1}
		r, err := n.Dialer("f", "l").Snapshot(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		req.NodeId = "changed"
		var data []byte
		for {
			c, err := r.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, c.GetData()...)
			if c.GetDone() != nil && c.GetDone().Keys != 5 {
				t.Fatalf("done chunk %v", c)
			}
		}
		if string(data) != "\x00\x01\x03\x04" {
			t.Fatalf("chunks %q, want chunk 2 dropped", data)
		}
		if gotReq.GetNodeId() != "f" {
			t.Fatalf("server saw request %v", gotReq)
		}
		n.Wait()
		if want := []string{"l<-f snapshot <nil>"}; !reflect.DeepEqual(ends, want) {
			t.Fatalf("ServeDone calls %v, want %v", ends, want)
		}
	})
}

// A hook may act on the network: here the leader's third append
// partitions the link, and nothing after it arrives.
func TestHookMayPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		n.SetHook("l", "f", func(m Message, _ *rand.Rand) Action {
			if m.Seq == 3 {
				n.Partition("l", "f")
				return Action{Drop: true}
			}
			return Action{}
		})
		n.Listen("l", sends(10, nil))
		got, err := recvAll(dial(t, n.Dialer("f", "l")))
		if !errors.Is(err, ErrCut) || len(got) > 2 {
			t.Fatalf("got %v, %v; want at most 1..2, then a cut", got, err)
		}
	})
}

func TestCloseWaitsForHandlers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		returned := 0
		var mu sync.Mutex
		n.Listen("l", &fakeServer{serve: func(ctx context.Context, s transport.LeaderStream) error {
			<-ctx.Done()
			mu.Lock()
			returned++
			mu.Unlock()
			return ctx.Err()
		}})
		for _, f := range []string{"a", "b", "c"} {
			dial(t, n.Dialer(f, "l"))
		}
		n.Close()
		if returned != 3 {
			t.Fatalf("Close returned with %d of 3 handlers done", returned)
		}
	})
}

// Close and Wait may run while another goroutine dials: the network stays
// usable after Close, and a follower keeps redialing a leader whose test
// network is closing. A sync.WaitGroup forbids that (an Add from zero
// concurrent with a Wait), which the race detector reports here. Not in a
// synctest bubble: the race needs real concurrency.
func TestDialDuringClose(t *testing.T) {
	n := New(Config{})
	n.Listen("l", &fakeServer{serve: func(context.Context, transport.LeaderStream) error { return nil }})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			s, err := n.Dialer("f", "l").Replicate(context.Background())
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			for {
				if _, err := s.Recv(); err != nil {
					break
				}
			}
		}
	}()
	for {
		n.Close()
		select {
		case <-done:
			return
		default:
		}
	}
}

// A hook's Cut loses the message and breaks its connection only: the
// handler's Send of it fails, the client gets ErrCut after what it had
// received, and another connection on the same link carries on.
func TestHookCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{})
		defer n.Close()
		var handlerErr error
		n.Listen("l", &fakeServer{serve: func(_ context.Context, s transport.LeaderStream) error {
			for {
				m, err := s.Recv()
				if err == io.EOF {
					return nil
				}
				if err == nil {
					err = s.Send(appendMsg(m.GetProgress().GetDurableLsn()))
				}
				if err != nil {
					handlerErr = err
					return err
				}
			}
		}})
		n.SetHook("l", "f", func(m Message, _ *rand.Rand) Action { return Action{Cut: m.Seq == 4} })
		s := dial(t, n.Dialer("f", "l"))
		for i := uint64(1); i <= 4; i++ {
			if err := s.Send(progress(i)); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if i < 4 && (err != nil || m.GetAppend().GetCommitLsn() != i) {
				t.Fatalf("reply %d = %v, %v", i, m, err)
			}
			if i == 4 && !errors.Is(err, ErrCut) {
				t.Fatalf("reply 4 = %v, %v; want the hook's cut", m, err)
			}
		}
		n.Wait()
		if !errors.Is(handlerErr, ErrCut) {
			t.Fatalf("handler's Send of the cut message: %v", handlerErr)
		}
		s = dial(t, n.Dialer("f", "l"))
		if err := s.Send(progress(9)); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); err != nil || m.GetAppend().GetCommitLsn() != 9 {
			t.Fatalf("the next connection: %v, %v", m, err)
		}
		s.CloseSend()
		if st := n.Stats("l", "f"); st.Cuts != 1 || st.Dropped != 1 || st.Sent != 5 || st.Delivered != 4 {
			t.Fatalf("l->f stats %+v", st)
		}
	})
}

// CutRandom keeps each connection's messages a prefix of what was sent.
func TestCutRandomDeliversPrefixes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Config{Seed: 5})
		defer n.Close()
		n.Listen("l", sends(20, nil))
		n.SetHook("l", "f", Chain(CutRandom(0.1), Delay(0, time.Millisecond)))
		cuts := 0
		for range 20 {
			got, err := recvAll(dial(t, n.Dialer("f", "l")))
			if !reflect.DeepEqual(got, seq(len(got))) {
				t.Fatalf("got %v: not a prefix", got)
			}
			if errors.Is(err, ErrCut) {
				cuts++
			} else if err != io.EOF || len(got) != 20 {
				t.Fatalf("got %v, %v", got, err)
			}
		}
		if st := n.Stats("l", "f"); cuts == 0 || cuts == 20 || st.Cuts != cuts {
			t.Fatalf("%d of 20 connections cut, stats %+v", cuts, st)
		}
	})
}

// ServeDone runs before the client sees the end, so a client that saw it
// may read what ServeDone recorded without waiting for the network.
func TestServeDoneBeforeTheClientSeesTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ends []error
		n := New(Config{ServeDone: func(_, _ string, _ Kind, err error) { ends = append(ends, err) }})
		defer n.Close()
		sentinel := errors.New("stepped down")
		n.Listen("l", sends(2, sentinel))
		if _, err := recvAll(dial(t, n.Dialer("f", "l"))); err == nil {
			t.Fatal("no end")
		}
		if len(ends) != 1 || ends[0] != sentinel {
			t.Fatalf("ServeDone saw %v when the client saw the end", ends)
		}
	})
}
