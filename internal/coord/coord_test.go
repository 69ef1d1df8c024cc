package coord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord/embedded"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	_, cli := embedded.ForTest(t)
	return New(cli, "test")
}

func TestTopologyCompareAndSwap(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, ok, err := s.Topology(ctx); err != nil || ok {
		t.Fatalf("empty cluster: ok %v err %v", ok, err)
	}
	if err := s.SetTopology(ctx, 0, Topology{Epoch: 1, Leader: "n1"}, &Event{Kind: "bootstrap", To: "n1", NewEpoch: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTopology(ctx, 0, Topology{Epoch: 1, Leader: "n2"}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second bootstrap: %v, want ErrConflict", err)
	}
	if err := s.SetTopology(ctx, 1, Topology{Epoch: 1, Leader: "n2"}, nil); err == nil {
		t.Fatal("a new leader in the same epoch was accepted")
	}
	if err := s.SetTopology(ctx, 1, Topology{Epoch: 1, Leader: "n1", Mode: ModeOf(commit.Mode{Kind: commit.Quorum, K: 1})}, nil); err != nil {
		t.Fatalf("same leader, same epoch, new mode: %v", err)
	}
	// Two orchestrators race from epoch 1: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.SetTopology(ctx, 1, Topology{Epoch: 2, Leader: fmt.Sprintf("n%d", i+2)}, &Event{Kind: "failover", From: "n1", To: fmt.Sprintf("n%d", i+2), OldEpoch: 1, NewEpoch: 2})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing changes from epoch 1 won, want 1", won, len(errs))
	}
	cur, _, err := s.Topology(ctx)
	if err != nil || cur.Epoch != 2 {
		t.Fatalf("topology %+v, %v", cur, err)
	}
	hist, err := s.EpochHistory(ctx)
	if err != nil || len(hist) != 2 || hist[1].Leader != cur.Leader {
		t.Fatalf("history %+v (%v), topology %+v", hist, err, cur)
	}
	if err := s.RecordFirstLSN(ctx, 2, "n1", 10); err == nil {
		t.Fatal("a node that does not lead epoch 2 recorded its first LSN")
	}
	if err := s.RecordFirstLSN(ctx, 2, cur.Leader, 10); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 10)
	if err != nil || len(evs) != 2 || evs[0].Kind != "bootstrap" || evs[1].To != cur.Leader {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

func TestWatchTopologySeesEveryLatest(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := s.WatchTopology(ctx)
	for e := uint64(1); e <= 5; e++ {
		if err := s.SetTopology(ctx, e-1, Topology{Epoch: e, Leader: fmt.Sprintf("n%d", e)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for {
		select {
		case top := <-w:
			if top.Epoch == 5 {
				return
			}
		case <-ctx.Done():
			t.Fatal("watch never delivered epoch 5")
		}
	}
}

func TestElection(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.ActiveOrchestrator(ctx); !errors.Is(err, ErrNoOrchestrator) {
		t.Fatalf("no campaign yet: %v", err)
	}
	sess, err := s.Session(2)
	if err != nil {
		t.Fatal(err)
	}
	// A standby takes over a lost orchestrator's election within this
	// TTL (the orchestrators' sessionTTL): the embedded etcd's tick must
	// keep its floor at 2 s.
	if ttl, err := s.cli.TimeToLive(ctx, sess.Lease()); err != nil || ttl.GrantedTTL != 2 {
		var granted int64
		if ttl != nil {
			granted = ttl.GrantedTTL
		}
		t.Fatalf("a session of TTL 2 s granted %d s (err %v), want 2", granted, err)
	}
	if err := Campaign(ctx, s.Election(sess), Orchestrator{ID: "o1", HTTPAddr: "x"}); err != nil {
		t.Fatal(err)
	}
	o, err := s.ActiveOrchestrator(ctx)
	if err != nil || o.ID != "o1" {
		t.Fatalf("active %+v, %v", o, err)
	}
	sess2, err := s.Session(2)
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan error, 1)
	go func() { won <- Campaign(ctx, s.Election(sess2), Orchestrator{ID: "o2"}) }()
	sess.Close() // o1 resigns by losing its lease
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	if o, err := s.ActiveOrchestrator(ctx); err != nil || o.ID != "o2" {
		t.Fatalf("after o1 left: %+v, %v", o, err)
	}
}

// TestTopologyAndMembers: one read gives what Topology and Members give
// apart; a member record that does not decode fails only the members.
func TestTopologyAndMembers(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rd, err := s.TopologyAndMembers(ctx); err != nil || rd.OK || len(rd.Members) != 0 || rd.MembersErr != nil {
		t.Fatalf("empty cluster: %+v, %v", rd, err)
	}
	for _, id := range []string{"n2", "n1"} {
		if err := s.PutMember(ctx, Member{ID: id, PeerAddr: id + ":7380"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetTopology(ctx, 0, Topology{Epoch: 1, Leader: "n1"}, nil); err != nil {
		t.Fatal(err)
	}
	rd, err := s.TopologyAndMembers(ctx)
	if err != nil || !rd.OK || rd.Topology.Epoch != 1 || rd.Topology.Leader != "n1" || rd.MembersErr != nil {
		t.Fatalf("read: %+v, %v", rd, err)
	}
	ms, err := s.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rd.Members) != fmt.Sprint(ms) || len(ms) != 2 || ms[0].ID != "n1" {
		t.Fatalf("members %v, Members gives %v (want n1, n2)", rd.Members, ms)
	}
	if _, err := s.cli.Put(ctx, s.Key("members/bad"), "{"); err != nil {
		t.Fatal(err)
	}
	if rd, err = s.TopologyAndMembers(ctx); err != nil || !rd.OK || rd.Topology.Leader != "n1" || rd.MembersErr == nil {
		t.Fatalf("with a garbled member: %+v, %v; want the topology and a members error", rd, err)
	}
}

// TestWatchPrefixes: a signal once the watches stand, then one for each
// change under a watched prefix (a new member, an orchestrator's record),
// and a read after each signal sees the change.
func TestWatchPrefixes(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := s.WatchPrefixes(ctx, "members/", "orchestrators/")
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no signal: %s", what)
		}
	}
	wait("the watches established")
	for _, id := range []string{"n1", "n2"} {
		if err := s.PutMember(ctx, Member{ID: id}); err != nil {
			t.Fatal(err)
		}
		// Signals left from the start (one per prefix) may come first:
		// read after each until the change shows, as watchMembers does.
		for {
			wait("member " + id + " registered")
			if ms, err := s.Members(ctx); err != nil {
				t.Fatal(err)
			} else if ms[len(ms)-1].ID == id {
				break
			}
		}
	}
	if _, err := s.cli.Put(ctx, s.Key("orchestrators/o1"), "{}"); err != nil {
		t.Fatal(err)
	}
	for {
		wait("an orchestrator registered")
		if os, err := s.Orchestrators(ctx); err != nil {
			t.Fatal(err)
		} else if len(os) == 1 {
			break
		}
	}
}

// TestNoFlowControlPings: neither the control plane's etcd clients (Dial)
// nor the embedded etcd answer a request or a reply with an HTTP/2 PING of
// gRPC's bandwidth-delay estimator (fixed windows on both sides). Before,
// nearly every request and every reply drew one, and its acknowledgement
// woke the other side. Counted on the wire, through a relay, over 30 reads.
func TestNoFlowControlPings(t *testing.T) {
	e, _ := embedded.ForTest(t)
	target := strings.TrimPrefix(e.Endpoint, "http://")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var toServer, toClient atomic.Int64 // PINGs that are not acknowledgements
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			go relayFrames(s, c, len(http2Preface), &toServer)
			go relayFrames(c, s, 0, &toClient)
		}
	}()
	cli, err := Dial([]string{lis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st := New(cli, "test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 30 {
		if err := st.PutMember(ctx, Member{ID: fmt.Sprintf("n%d", i%3), PeerAddr: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Members(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// At most a keepalive ping or two, on a machine so loaded that the
	// client idled a second between requests.
	if s, c := toServer.Load(), toClient.Load(); s > 2 || c > 2 {
		t.Fatalf("60 requests drew %d PINGs to etcd and %d to the client, want none (fixed flow-control windows)", s, c)
	}
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// relayFrames copies src to dst and counts the HTTP/2 PING frames that
// are not acknowledgements (after skip bytes of connection preface).
func relayFrames(dst, src net.Conn, skip int, pings *atomic.Int64) {
	defer dst.Close()
	defer src.Close()
	pr, pw := io.Pipe()
	go func() {
		defer pr.Close()
		if _, err := io.CopyN(io.Discard, pr, int64(skip)); err != nil {
			return
		}
		var h [9]byte
		for {
			if _, err := io.ReadFull(pr, h[:]); err != nil {
				return
			}
			n := int64(h[0])<<16 | int64(h[1])<<8 | int64(h[2])
			if h[3] == 0x6 && h[4]&0x1 == 0 { // PING, not ACK
				pings.Add(1)
			}
			if _, err := io.CopyN(io.Discard, pr, n); err != nil {
				return
			}
		}
	}()
	_, _ = io.Copy(io.MultiWriter(dst, pw), src)
	pw.Close()
}
