package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// fakeLeader answers ReadIndex RPCs one at a time, each only when the test
// releases it, with the commit LSN equal to the RPC's number (1, 2, ...)
// and user u's position LSN 100*rpc+len(u): an answer says which RPC gave
// it.
type fakeLeader struct {
	peerpb.PeerClient // nil: only ReadIndex is called

	mu      sync.Mutex
	rpcs    int
	users   [][]string // each RPC's users
	release chan error // one value per RPC: nil answers, an error fails it
}

func (f *fakeLeader) ReadIndex(ctx context.Context, req *peerpb.ReadIndexRequest, _ ...grpc.CallOption) (*peerpb.ReadIndexReply, error) {
	f.mu.Lock()
	f.rpcs++
	n := uint64(f.rpcs)
	f.users = append(f.users, req.Users)
	f.mu.Unlock()
	select {
	case err := <-f.release:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rep := &peerpb.ReadIndexReply{Commit: &peerpb.Position{Epoch: 1, Lsn: n}}
	for _, u := range req.Users {
		rep.Users = append(rep.Users, &peerpb.Position{Epoch: 1, Lsn: 100*n + uint64(len(u))})
	}
	return rep, nil
}

func (f *fakeLeader) count() (int, [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rpcs, f.users
}

type askResult struct {
	user          string
	commit, user2 logrec.Position
	err           error
}

// TestReadIndexBatches: the follower's ReadIndex is batched as etcd's is.
// N reads that ask while an RPC is in flight share the next RPC, so N+1
// concurrent linearizable reads cost the leader two round trips, not N+1;
// and none of those N is answered by the RPC that was already in flight
// when it asked (it may have been answered by the leader before the read
// began, and would then miss a write acknowledged before the read: not
// linearizable). Each user is asked once per RPC; an RPC's error goes to
// every read it carried, and the next read starts a new RPC.
func TestReadIndexBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leader := &fakeLeader{release: make(chan error)}
		x := &readIndex{client: leader, epoch: func() uint64 { return 1 }}
		ctx := context.Background()
		results := make(chan askResult, 100)
		ask := func(user string) {
			go func() {
				c, u, err := x.ask(ctx, user)
				results <- askResult{user, c, u, err}
			}()
		}

		ask("") // the first read: its RPC starts at once
		synctest.Wait()
		if n, _ := leader.count(); n != 1 {
			t.Fatalf("after one read: %d RPCs, want 1", n)
		}
		const N = 50
		for i := range N {
			ask([]string{"", "alice", "bob"}[i%3])
		}
		synctest.Wait() // all N are waiting; none started an RPC of its own
		if n, _ := leader.count(); n != 1 {
			t.Fatalf("%d reads asked while an RPC was in flight: %d RPCs, want still 1", N, n)
		}
		leader.release <- nil // RPC 1 answers
		first := <-results
		if first.err != nil || first.commit.LSN != 1 {
			t.Fatalf("first read: commit %v, err %v; want RPC 1's", first.commit, first.err)
		}
		synctest.Wait()
		n, users := leader.count()
		if n != 2 {
			t.Fatalf("after RPC 1: %d RPCs, want 2 (one for all %d waiting reads)", n, N)
		}
		if got := slices.Sorted(slices.Values(users[1])); fmt.Sprint(got) != "[alice bob]" {
			t.Errorf("RPC 2 asked users %v, want each once: alice, bob", users[1])
		}
		leader.release <- nil // RPC 2 answers
		for range N {
			r := <-results
			if r.err != nil || r.commit.LSN != 2 {
				t.Fatalf("read (user %q) asked during RPC 1: commit %v, err %v; want RPC 2's commit (an RPC begun after it asked)", r.user, r.commit, r.err)
			}
			want := logrec.Position{}
			if r.user != "" {
				want = logrec.Position{Epoch: 1, LSN: 200 + uint64(len(r.user))}
			}
			if r.user2 != want {
				t.Errorf("user %q: position %v, want %v", r.user, r.user2, want)
			}
		}
		synctest.Wait()
		if n, _ := leader.count(); n != 2 {
			t.Fatalf("%d concurrent reads: %d RPCs, want 2", N+1, n)
		}
		if x.running {
			t.Error("the RPC loop still runs with no read waiting")
		}

		// A failed RPC fails every read it carried; the next read starts
		// a new one.
		ask("")
		synctest.Wait()
		ask("alice")
		ask("bob")
		synctest.Wait()
		leader.release <- nil // RPC 3: the first
		if r := <-results; r.err != nil || r.commit.LSN != 3 {
			t.Fatalf("read: commit %v, err %v; want RPC 3's", r.commit, r.err)
		}
		synctest.Wait()
		boom := errors.New("leader gone")
		leader.release <- boom // RPC 4: the two others
		for range 2 {
			if r := <-results; !errors.Is(r.err, boom) {
				t.Errorf("read (user %q) on a failed RPC: err %v, want %v", r.user, r.err, boom)
			}
		}
		ask("")
		synctest.Wait()
		leader.release <- nil
		if r := <-results; r.err != nil || r.commit.LSN != 5 {
			t.Errorf("read after a failed RPC: commit %v, err %v; want RPC 5's", r.commit, r.err)
		}
	})
}
