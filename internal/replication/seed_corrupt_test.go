package replication

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
)

// corruptSeedScript plays a leader that asks for a seed and then sends a
// good chunk, a chunk with one flipped bit, and Done.
func corruptSeedScript() *scriptDialer {
	var enc snapshot.Encoder
	enc.Add([]byte("a"), make([]byte, 9))
	good := append([]byte(nil), enc.Finish()...)
	enc.Add([]byte("b"), make([]byte, 9))
	bad := append([]byte(nil), enc.Finish()...)
	bad[len(bad)-1] ^= 1
	return &scriptDialer{
		msgs: []*peerpb.LeaderMessage{{Epoch: 5, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}}},
		chunks: []*peerpb.SnapshotChunk{
			{Epoch: 5, Body: &peerpb.SnapshotChunk_Header{Header: &peerpb.SnapshotHeader{Position: &peerpb.Position{Epoch: 5, Lsn: 9}}}},
			{Epoch: 5, Body: &peerpb.SnapshotChunk_Data{Data: good}},
			{Epoch: 5, Body: &peerpb.SnapshotChunk_Data{Data: bad}},
			{Epoch: 5, Body: &peerpb.SnapshotChunk_Done{Done: &peerpb.SnapshotDone{Keys: 2}}},
		},
	}
}

// TestSeedRefusesCorruptChunk: a chunk that does not verify ends the seed
// with a corruption error, and nothing is ingested as finished: the node
// stays seeding at position zero, so it never serves the partial data.
func TestSeedRefusesCorruptChunk(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: corruptSeedScript(), Logger: testLogger(t, "f"), DataDir: t.TempDir()})
	err := f.session(context.Background())
	if !errors.Is(err, snapshot.ErrCorrupt) || !frame.IsCorruption(err) {
		t.Fatalf("session error %v, want snapshot.ErrCorrupt (a frame.ErrCorrupt)", err)
	}
	if !db.Seeding() || db.Applied() != 0 || db.Durable() != (logrec.Position{}) {
		t.Errorf("after a corrupt chunk: seeding %v, applied %d, durable %v; want still seeding at 0", db.Seeding(), db.Applied(), db.Durable())
	}
	if st := f.Status(); st.State != StateSeeding || st.Applied != 0 || st.Durable != 0 || !f.Loading() {
		t.Errorf("status %+v, loading %v; want seeding at 0", st, f.Loading())
	}
}

// TestRunReportsCorruptChunkAsCorruption: Run classifies the corrupt chunk
// as refused data (an Error record), not as a broken stream it retries
// quietly (a Warn record).
func TestRunReportsCorruptChunkAsCorruption(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	levels := make(chan slog.Level, 16)
	log := slog.New(levelHandler{slog.NewTextHandler(t.Output(), nil), levels})
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: corruptSeedScript(), Logger: log, DataDir: t.TempDir(), Retry: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// The session ends in the scripted seed; Run then logs its verdict and
	// waits Retry (an hour), so the first Warn or Error is that verdict.
	deadline := time.After(waitTimeout)
	for verdict := false; !verdict; {
		select {
		case l := <-levels:
			switch {
			case l >= slog.LevelError:
				verdict = true
			case l == slog.LevelWarn:
				t.Fatalf("Run logged the corrupt chunk at %v, want Error (refused, not retried)", l)
			}
		case <-deadline:
			t.Fatal("Run logged no verdict on the corrupt chunk")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if !db.Seeding() || db.Applied() != 0 {
		t.Errorf("after Run: seeding %v, applied %d; want still seeding at 0", db.Seeding(), db.Applied())
	}
}

// levelHandler passes records on and reports each record's level.
type levelHandler struct {
	slog.Handler
	levels chan<- slog.Level
}

func (h levelHandler) Handle(ctx context.Context, r slog.Record) error {
	select {
	case h.levels <- r.Level:
	default:
	}
	return h.Handler.Handle(ctx, r)
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.levels}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(name), h.levels}
}
