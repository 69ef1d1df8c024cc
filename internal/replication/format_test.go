package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/storage"
)

func hsetExec(key, field, value string) ExecFunc {
	return func(v commands.View, now int64) (commands.Result, error) {
		spec, _ := commands.Lookup([]byte("hset"))
		return spec.Exec(&commands.Ctx{NowMs: now}, v, [][]byte{[]byte("hset"), []byte(key), []byte(field), []byte(value)})
	}
}

// TestFormatGate: while a known member reads only log format 1, a command
// that needs format 2 is refused with an input error and nothing is
// logged; format-1 writes go on; once the member reads 2, it is accepted.
func TestFormatGate(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	l.formats.saw("n3", helloFormat(&peerpb.Hello{})) // a node from before the field
	before := l.db.Durable()
	_, err := l.Start(context.Background(), hsetExec("h", "f", "v"))
	if err == nil || !commands.IsInputError(err) {
		t.Fatalf("HSET with a format-1 member: %v, want an input error", err)
	}
	if l.db.Durable() != before {
		t.Fatalf("a refused write was logged: durable %v -> %v", before, l.db.Durable())
	}
	propose(t, l, putExec("s", "1")) // format 1 still goes
	l.formats.saw("n3", 2)
	propose(t, l, hsetExec("h", "f", "v"))
	val, ok, err := storage.View{DB: l.db}.Get([]byte("h"))
	if err != nil || !ok || val.Type != keyspace.TypeHash || val.Size != 1 {
		t.Fatalf("h = %+v, %v, %v; want a hash of one field", val, ok, err)
	}
}

// TestLegacySnapshotRows: a follower that reads only format-1 snapshot
// rows is sent user keys of string rows, and refused a snapshot of typed
// values rather than sent rows it would misread.
func TestLegacySnapshotRows(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, putExec("s", "1"))
	rows := func(req *peerpb.SnapshotRequest) ([]snapshot.Row, error) {
		out := &chunkSink{}
		err := l.ServeSnapshot(req, out)
		return out.rows(t), err
	}
	got, err := rows(&peerpb.SnapshotRequest{NodeId: "old", Epoch: 1})
	if err != nil || len(got) != 1 || string(got[0].Key) != "s" {
		t.Fatalf("legacy snapshot of strings: %v, %v; want the row of user key s", got, err)
	}
	got, err = rows(&peerpb.SnapshotRequest{NodeId: "new", Epoch: 1, RowFormat: rowFormatKeyspace})
	if err != nil || len(got) != 1 || string(got[0].Key) != string(keyspace.MetaKey([]byte("s"))) {
		t.Fatalf("keyspace snapshot: %v, %v; want the row under its full key", got, err)
	}
	propose(t, l, hsetExec("h", "f", "v"))
	if _, err := rows(&peerpb.SnapshotRequest{NodeId: "old", Epoch: 1}); err == nil {
		t.Fatal("a legacy snapshot of a hash was sent")
	}
	got, err = rows(&peerpb.SnapshotRequest{NodeId: "new", Epoch: 1, RowFormat: rowFormatKeyspace})
	if err != nil || len(got) != 3 { // h's metadata, s, h's field
		t.Fatalf("keyspace snapshot with a hash: %d rows, %v; want 3", len(got), err)
	}
}

// chunkSink collects the chunks a snapshot sends.
type chunkSink struct{ chunks []*peerpb.SnapshotChunk }

func (c *chunkSink) Send(m *peerpb.SnapshotChunk) error {
	c.chunks = append(c.chunks, m)
	return nil
}

func (c *chunkSink) rows(t *testing.T) []snapshot.Row {
	var out []snapshot.Row
	for _, ch := range c.chunks {
		if d := ch.GetData(); d != nil {
			rs, err := snapshot.Decode(d)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rs...)
		}
	}
	return out
}

// TestFollowerStopsOnUnsupportedFormat: Run does not retry an entry it
// cannot read: it returns, so that the node reports why it stopped.
func TestFollowerStopsOnUnsupportedFormat(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	e := logrec.Encode(&logrec.Entry{Epoch: 1, LSN: 1})
	e[4] = logrec.MaxFormat + 1
	frame.Seal(e)
	script := scriptDialer{msgs: []*peerpb.LeaderMessage{
		{Epoch: 1, Body: &peerpb.LeaderMessage_Start{Start: &peerpb.Start{FromLsn: 1}}},
		{Epoch: 1, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{Entries: [][]byte{e}, CommitLsn: 1}}},
	}}
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: &script, Logger: testLogger(t, "f"), DataDir: t.TempDir()})
	err := f.Run(context.Background())
	if !errors.Is(err, logrec.ErrUnsupported) {
		t.Fatalf("Run = %v, want it to stop with ErrUnsupported", err)
	}
	if db.Durable().LSN != 0 {
		t.Fatalf("the unreadable entry was appended: durable %v", db.Durable())
	}
}

func cmdExec(args ...string) ExecFunc {
	return func(v commands.View, now int64) (commands.Result, error) {
		spec, ok := commands.Lookup([]byte(args[0]))
		if !ok {
			return commands.Result{}, fmt.Errorf("no command %s", args[0])
		}
		b := make([][]byte, len(args))
		for i, a := range args {
			b[i] = []byte(a)
		}
		return spec.Exec(&commands.Ctx{NowMs: now}, v, b)
	}
}

// TestHashReplicated: hashes reach a streaming follower and a seeded one
// field by field, the leader's overlay serves a pipeline of hash writes
// before they apply, and every node ends with the same digest.
func TestHashReplicated(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, cmdExec("hset", "h", "a", "1", "b", "2"))
	propose(t, l, cmdExec("set", "s", "x"))
	// A fresh follower is seeded from a snapshot holding the hash.
	f1 := newFollowerNode(t, "f1", vfs.NewMem(), l.dialer)
	waitConverged(t, l, f1)
	// Writes sequenced back to back read each other through the overlay.
	var pend []*Pending
	for _, args := range [][]string{
		{"hincrby", "h", "n", "1"}, {"hincrby", "h", "n", "1"}, {"hdel", "h", "a"},
		{"del", "h2"}, {"hset", "h2", "x", "1"}, {"set", "h2", "over"}, {"del", "h2"}, {"hset", "h2", "y", "2"},
	} {
		p, err := l.Start(context.Background(), cmdExec(args...))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	for _, p := range pend {
		if _, _, err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, l, f1)
	for _, db := range []*storage.DB{l.db, f1.db} {
		v := storage.View{DB: db}
		h, _, _ := v.Get([]byte("h"))
		n, _, _ := v.Sub([]byte("h"), h.Version, []byte("n"))
		h2, _, _ := v.Get([]byte("h2"))
		var fields []string
		_ = v.SubScan([]byte("h2"), h2.Version, nil, func(f, _ []byte) bool { fields = append(fields, string(f)); return true })
		if h.Size != 2 || string(n) != "2" || h2.Size != 1 || len(fields) != 1 || fields[0] != "y" {
			t.Fatalf("h %+v n=%q, h2 %+v fields %v; want h {b, n=2}, h2 {y}", h, n, h2, fields)
		}
	}
}

// TestMemberFormatFromEtcd: a member known only from its etcd record (it
// has sent no Hello: it is down) holds a new format back as one that said
// Hello does; a record from before the field reads as format 1.
func TestMemberFormatFromEtcd(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	l.MemberFormat("n3", 0)
	if _, err := l.Start(context.Background(), hsetExec("h", "f", "v")); err == nil || !commands.IsInputError(err) {
		t.Fatalf("HSET with a member registered without a format: %v, want an input error", err)
	}
	l.MemberFormat("n3", logrec.MaxFormat)
	propose(t, l, hsetExec("h", "f", "v"))
}

// functionsExec is a FUNCTION write's result: the libraries become libs.
func functionsExec(libs ...keyspace.Library) ExecFunc {
	return func(v commands.View, now int64) (commands.Result, error) {
		row := keyspace.EncodeLibraries(libs)
		if row == nil {
			row = []byte{}
		}
		return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpFunctions, Key: []byte{}, Value: row}}}, nil
	}
}

// TestFunctionsFormatGate: the function libraries' op is format 4: while
// a known member reads only format 3 a FUNCTION write is refused with an
// input error and nothing is logged; once it reads 4 the write goes, and
// the leader holds the libraries' row.
func TestFunctionsFormatGate(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	l.formats.saw("n3", logrec.FormatV3)
	before := l.db.Durable()
	lib := keyspace.Library{Name: "a", Code: "#!lua name=a\n"}
	if _, err := l.Start(context.Background(), functionsExec(lib)); err == nil || !commands.IsInputError(err) {
		t.Fatalf("FUNCTION LOAD with a format-3 member: %v, want an input error", err)
	}
	if l.db.Durable() != before {
		t.Fatalf("a refused write was logged: durable %v -> %v", before, l.db.Durable())
	}
	propose(t, l, hsetExec("h", "f", "v")) // format 2 still goes
	l.formats.saw("n3", logrec.FormatV4)
	propose(t, l, functionsExec(lib))
	row, ok, err := storage.View{DB: l.db}.Rows().Get(keyspace.FunctionsKey)
	if libs, derr := keyspace.DecodeLibraries(row); err != nil || !ok || derr != nil || len(libs) != 1 || libs[0] != lib {
		t.Fatalf("the libraries' row: %q, %v, %v, %v", row, ok, err, derr)
	}
}

// TestFunctionsSnapshotRows: a snapshot carries the libraries' row to a
// follower that asks for row format 3, and is refused to one that asks
// for 2 (an older build, which would take the row for damage) while
// there are libraries; with none, it is sent as before.
func TestFunctionsSnapshotRows(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, putExec("s", "1"))
	rows := func(format uint32) ([]snapshot.Row, error) {
		out := &chunkSink{}
		err := l.ServeSnapshot(&peerpb.SnapshotRequest{NodeId: "f", Epoch: 1, RowFormat: format}, out)
		return out.rows(t), err
	}
	if got, err := rows(rowFormatKeyspace); err != nil || len(got) != 1 {
		t.Fatalf("format-2 snapshot without libraries: %d rows, %v", len(got), err)
	}
	propose(t, l, functionsExec(keyspace.Library{Name: "a", Code: "#!lua name=a\n"}))
	if _, err := rows(rowFormatKeyspace); err == nil {
		t.Fatal("a format-2 snapshot with libraries was sent")
	}
	got, err := rows(rowFormatFunctions)
	if err != nil || len(got) != 2 || string(got[1].Key) != string(keyspace.FunctionsKey) {
		t.Fatalf("format-3 snapshot: %v, %v; want s's row and the libraries' row", got, err)
	}
	propose(t, l, functionsExec())
	if got, err := rows(rowFormatKeyspace); err != nil || len(got) != 1 {
		t.Fatalf("format-2 snapshot after FUNCTION FLUSH: %d rows, %v", len(got), err)
	}
}
