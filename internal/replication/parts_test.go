package replication

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// partLog records, from a hook on the leader's link to a follower, the
// parts that travel on it.
type partLog struct {
	mu    sync.Mutex
	parts []*peerpb.EntryPart
	// cutAt, if above 0, cuts the connection the cutAt-th part travels on
	// (once).
	cutAt int
}

func (p *partLog) hook(m inmem.Message, _ *rand.Rand) inmem.Action {
	lm, _ := m.Msg.(*peerpb.LeaderMessage) // snapshot chunks travel too
	part := lm.GetAppend().GetPart()
	if part == nil {
		return inmem.Action{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.parts = append(p.parts, &peerpb.EntryPart{Lsn: part.Lsn, Size: part.Size, Offset: part.Offset, Data: bytes.Clone(part.Data)})
	if len(p.parts) == p.cutAt {
		return inmem.Action{Cut: true}
	}
	return inmem.Action{}
}

func (p *partLog) list() []*peerpb.EntryPart {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parts
}

// TestLargeEntrySentInParts: an entry larger than PartBytes reaches a
// follower as parts of at most PartBytes, in order, covering it exactly,
// and the follower applies it whole; smaller entries travel whole.
func TestLargeEntrySentInParts(t *testing.T) {
	const partBytes = 1000
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.PartBytes = partBytes })
	var log partLog
	l.dialer.SetHook(leaderName, "f", log.hook)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	propose(t, l, putExec("small", "v"))
	big := strings.Repeat("0123456789", 1000)
	lsn := propose(t, l, putExec("big", big))
	propose(t, l, putExec("after", "w"))
	waitConverged(t, l, f)
	if v, _ := get(t, f.db, "big"); v != big {
		t.Fatalf("follower has a %d-byte value, want %d bytes", len(v), len(big))
	}
	raws, err := l.db.ReadLog(lsn, lsn, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	raw := raws[0]
	parts := log.list()
	if want := (len(raw) + partBytes - 1) / partBytes; len(parts) != want {
		t.Fatalf("%d parts for a %d-byte entry, want %d", len(parts), len(raw), want)
	}
	var got []byte
	for i, p := range parts {
		if p.Lsn != lsn || p.Size != uint64(len(raw)) || p.Offset != uint64(len(got)) || len(p.Data) > partBytes {
			t.Fatalf("part %d: lsn %d size %d offset %d, %d bytes; want lsn %d size %d offset %d, at most %d bytes",
				i, p.Lsn, p.Size, p.Offset, len(p.Data), lsn, len(raw), len(got), partBytes)
		}
		got = append(got, p.Data...)
	}
	if !bytes.Equal(got, raw) {
		t.Fatal("the parts are not the entry")
	}
}

// TestPartsCutMidEntry: a connection cut between an entry's parts loses
// the partial entry; the follower reconnects, is sent the entry again
// from its durable position, and ends with it whole.
func TestPartsCutMidEntry(t *testing.T) {
	const partBytes = 1000
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.PartBytes = partBytes })
	log := partLog{cutAt: 4}
	l.dialer.SetHook(leaderName, "f", log.hook)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	propose(t, l, putExec("a", "1")) // a follower with no entry would be seeded instead
	waitConverged(t, l, f)
	big := strings.Repeat("abcdefghij", 1000)
	lsn := propose(t, l, putExec("big", big))
	waitConverged(t, l, f)
	if v, _ := get(t, f.db, "big"); v != big {
		t.Fatalf("follower has a %d-byte value, want %d bytes", len(v), len(big))
	}
	if c := l.dialer.Stats(leaderName, "f").Cuts; c != 1 {
		t.Fatalf("%d cuts, want 1", c)
	}
	// The entry was sent again from its first part after the cut.
	parts := log.list()
	var starts int
	for _, p := range parts {
		if p.Lsn != lsn {
			t.Fatalf("a part of entry %d, only %d was sent in parts", p.Lsn, lsn)
		}
		if p.Offset == 0 {
			starts++
		}
	}
	if starts != 2 {
		t.Fatalf("the entry was begun %d times, want 2 (before and after the cut)", starts)
	}
}

// handFollower opens a replication stream to l by hand, as a follower
// whose Hello says takesParts, at the leader's durable position.
func handFollower(t *testing.T, l *testLeader, id string, takesParts bool) FollowerStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := l.dialer.from(id).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := l.db.Durable()
	if err := stream.Send(&peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{
		NodeId: id, Durable: &peerpb.Position{Epoch: d.Epoch, Lsn: d.LSN}, LogFormat: uint32(logrec.MaxFormat), TakesParts: takesParts,
	}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetStart() == nil {
		t.Fatalf("handshake: %v, %v", m, err)
	}
	return stream
}

// nextEntry reads appends from stream until one carries an entry or a
// part, and returns it.
func nextEntry(t *testing.T, stream FollowerStream) *peerpb.Append {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if a := m.GetAppend(); a != nil && (len(a.Entries) > 0 || a.Part != nil) {
			return a
		}
	}
}

// TestPartsNegotiated: a follower from before parts (Hello.takes_parts
// false) is sent a large entry whole; one that takes them, in parts.
func TestPartsNegotiated(t *testing.T) {
	const partBytes = 1000
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.PartBytes = partBytes })
	propose(t, l, putExec("a", "1"))
	old := handFollower(t, l, "old", false)
	current := handFollower(t, l, "new", true)
	lsn := propose(t, l, putExec("big", strings.Repeat("x", 5*partBytes)))

	a := nextEntry(t, old)
	if a.Part != nil || len(a.Entries) != 1 || len(a.Entries[0]) <= partBytes {
		t.Fatalf("old follower got %d entries and part %v, want the whole entry", len(a.Entries), a.Part != nil)
	}
	if e, err := logrec.Decode(a.Entries[0]); err != nil || e.LSN != lsn {
		t.Fatalf("old follower's entry: lsn %d, %v; want %d", e.LSN, err, lsn)
	}
	a = nextEntry(t, current)
	if p := a.Part; p == nil || len(a.Entries) != 0 || p.Lsn != lsn || p.Offset != 0 || len(p.Data) != partBytes {
		t.Fatalf("new follower got %d entries and part %v, want the first %d bytes of entry %d", len(a.Entries), a.Part, partBytes, lsn)
	}
}

// splitParts returns the parts of raw (entry lsn), of at most n bytes each,
// as the messages a leader of epoch 3 sends.
func splitParts(lsn uint64, raw []byte, n int) []*peerpb.LeaderMessage {
	var out []*peerpb.LeaderMessage
	for off := 0; off < len(raw); off += n {
		out = append(out, partMsg(3, lsn, uint64(len(raw)), uint64(off), raw[off:min(off+n, len(raw))]))
	}
	return out
}

func partMsg(epoch, lsn, size, off uint64, data []byte) *peerpb.LeaderMessage {
	return &peerpb.LeaderMessage{Epoch: epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		Part: &peerpb.EntryPart{Lsn: lsn, Size: size, Offset: off, Data: data}, CommitLsn: off, LeaderLastLsn: lsn,
	}}}
}

// TestPartAssembler: parts in order give the entry whole, once, with the
// last part's fields; a part that repeats, skips or reorders, belongs to
// another entry or epoch, or overruns the entry, and any other message
// between an entry's parts, is refused as corrupt data.
func TestPartAssembler(t *testing.T) {
	raw := logrec.Encode(&logrec.Entry{Epoch: 3, LSN: 9, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 2500)}}})
	parts := splitParts(9, raw, 1000)
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	var p partAssembler
	for i, m := range parts {
		got, err := p.take(m)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if i < len(parts)-1 {
			if got != nil {
				t.Fatalf("part %d gave a message before the entry was whole", i)
			}
			continue
		}
		a := got.GetAppend()
		if got.Epoch != 3 || a == nil || len(a.Entries) != 1 || !bytes.Equal(a.Entries[0], raw) || a.Part != nil || a.CommitLsn != 2000 || a.LeaderLastLsn != 9 {
			t.Fatalf("whole entry: %v", got)
		}
	}
	heartbeat := &peerpb.LeaderMessage{Epoch: 3, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{CommitLsn: 9}}}
	if got, err := p.take(heartbeat); err != nil || got != heartbeat {
		t.Fatalf("a heartbeat after the entry: %v, %v", got, err)
	}

	size := uint64(len(raw))
	first, second, third := parts[0], parts[1], parts[2]
	for name, seq := range map[string][]*peerpb.LeaderMessage{
		"duplicate part":       {first, first},
		"part skipped":         {first, third},
		"parts reordered":      {second, first},
		"first part not first": {second},
		"another entry":        {first, partMsg(3, 10, size, 1000, raw[1000:2000])},
		"another size":         {first, partMsg(3, 9, size+1, 1000, raw[1000:2000])},
		"another epoch":        {first, partMsg(4, 9, size, 1000, raw[1000:2000])},
		"overrun":              {first, partMsg(3, 9, size, 1000, append(bytes.Clone(raw[1000:]), 'x'))},
		"empty part":           {first, partMsg(3, 9, size, 1000, nil)},
		"past the end":         {partMsg(3, 9, 10, 0, raw[:11])},
		"heartbeat between":    {first, heartbeat},
		"entries between":      {first, {Epoch: 3, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{Entries: [][]byte{raw}}}}},
		"publish between":      {first, {Epoch: 3, Body: &peerpb.LeaderMessage_Publish{Publish: &peerpb.Publish{}}}},
		"entries with a part":  {{Epoch: 3, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{Entries: [][]byte{raw}, Part: first.GetAppend().Part}}}},
	} {
		var p partAssembler
		var err error
		for _, m := range seq {
			if _, err = p.take(m); err != nil {
				break
			}
		}
		if !errors.Is(err, frame.ErrCorrupt) {
			t.Errorf("%s: %v, want a corruption", name, err)
		}
	}
}

// TestPartedEntryChecksumVerified: an entry put together from parts is
// verified like any other: a damaged byte in a part is refused as corrupt
// before anything is persisted.
func TestPartedEntryChecksumVerified(t *testing.T) {
	raw := logrec.Encode(&logrec.Entry{Epoch: 1, LSN: 1, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 2500)}}})
	damaged := bytes.Clone(raw)
	damaged[1500] ^= 1
	var p partAssembler
	var whole *peerpb.LeaderMessage
	for _, m := range splitParts(1, damaged, 1000) {
		m.Epoch = 1
		var err error
		if whole, err = p.take(m); err != nil {
			t.Fatal(err)
		}
	}
	core := &followerCore{epoch: 1}
	if _, err := core.Step(1, whole.GetAppend()); !errors.Is(err, logrec.ErrCorrupt) {
		t.Fatalf("Step: %v, want logrec.ErrCorrupt", err)
	}
}

// TestPartsBoundReceiveMemory: putting an entry together allocates the
// entry once, whatever the number of parts (no buffer that doubles, no
// copy per part).
func TestPartsBoundReceiveMemory(t *testing.T) {
	raw := make([]byte, 8<<20)
	parts := splitParts(1, raw, 64<<10)
	var p partAssembler
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, m := range parts {
		if _, err := p.take(m); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(raw))+uint64(len(raw))/8 {
		t.Fatalf("putting a %d-byte entry together allocated %d bytes", len(raw), n)
	}
}
