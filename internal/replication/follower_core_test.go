package replication

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
)

func coreEntry(epoch, lsn uint64) logrec.Entry {
	return logrec.Entry{Epoch: epoch, LSN: lsn, TimeNs: int64(lsn) * 1e9, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: []byte{byte(lsn)}}}}
}

func raw(epoch, lsn uint64) []byte {
	e := coreEntry(epoch, lsn)
	return logrec.Encode(&e)
}

func lsns(es []logrec.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.LSN)
	}
	return out
}

// newCore is a follower at epoch 2 with LSNs 1-3 durable (3 in epoch 2) and
// 1 applied: 2 and 3 are pending.
func newCore() *followerCore {
	return &followerCore{
		epoch:   2,
		durable: logrec.Position{Epoch: 2, LSN: 3},
		applied: 1,
		commit:  1,
		pending: []logrec.Entry{coreEntry(1, 2), coreEntry(2, 3)},
	}
}

func TestFollowerCoreStep(t *testing.T) {
	corrupt := raw(2, 4)
	corrupt[5] ^= 0x40
	tests := []struct {
		name        string
		epoch       uint64
		append      *peerpb.Append
		wantErr     error
		wantApply   []uint64
		wantDurable logrec.Position
		wantApplied uint64
		wantPending []uint64
	}{
		{
			name: "heartbeat without commit progress", epoch: 2,
			append:      &peerpb.Append{CommitLsn: 1},
			wantDurable: logrec.Position{Epoch: 2, LSN: 3}, wantApplied: 1, wantPending: []uint64{2, 3},
		},
		{
			name: "heartbeat commits the pending tail", epoch: 2,
			append:    &peerpb.Append{CommitLsn: 3},
			wantApply: []uint64{2, 3}, wantDurable: logrec.Position{Epoch: 2, LSN: 3}, wantApplied: 3,
		},
		{
			name: "commit beyond durable applies only what is durable", epoch: 2,
			append:    &peerpb.Append{CommitLsn: 100},
			wantApply: []uint64{2, 3}, wantDurable: logrec.Position{Epoch: 2, LSN: 3}, wantApplied: 3,
		},
		{
			name: "commit inside the pending tail", epoch: 2,
			append:    &peerpb.Append{CommitLsn: 2, Entries: [][]byte{raw(2, 4)}},
			wantApply: []uint64{2}, wantDurable: logrec.Position{Epoch: 2, LSN: 4}, wantApplied: 2, wantPending: []uint64{3, 4},
		},
		{
			name: "commit inside the new entries", epoch: 2,
			append:    &peerpb.Append{CommitLsn: 5, Entries: [][]byte{raw(2, 4), raw(2, 5), raw(2, 6)}},
			wantApply: []uint64{2, 3, 4, 5}, wantDurable: logrec.Position{Epoch: 2, LSN: 6}, wantApplied: 5, wantPending: []uint64{6},
		},
		{
			name: "commit beyond the new entries", epoch: 3,
			append:    &peerpb.Append{CommitLsn: 9, Entries: [][]byte{raw(2, 4), raw(3, 5)}},
			wantApply: []uint64{2, 3, 4, 5}, wantDurable: logrec.Position{Epoch: 3, LSN: 5}, wantApplied: 5,
		},
		{
			name: "a lower commit never moves commit back", epoch: 2,
			append:      &peerpb.Append{CommitLsn: 0, Entries: [][]byte{raw(2, 4)}},
			wantDurable: logrec.Position{Epoch: 2, LSN: 4}, wantApplied: 1, wantPending: []uint64{2, 3, 4},
		},
		{name: "gap", epoch: 2, append: &peerpb.Append{Entries: [][]byte{raw(2, 5)}}, wantErr: ErrOutOfOrder},
		{name: "repeat", epoch: 2, append: &peerpb.Append{Entries: [][]byte{raw(2, 3)}}, wantErr: ErrOutOfOrder},
		{name: "gap inside the batch", epoch: 2, append: &peerpb.Append{Entries: [][]byte{raw(2, 4), raw(2, 6)}}, wantErr: ErrOutOfOrder},
		{name: "entry epoch below the log's", epoch: 2, append: &peerpb.Append{Entries: [][]byte{raw(1, 4)}}, wantErr: ErrOutOfOrder},
		{name: "entry epoch above the message's", epoch: 2, append: &peerpb.Append{Entries: [][]byte{raw(3, 4)}}, wantErr: ErrOutOfOrder},
		{name: "corrupt entry", epoch: 2, append: &peerpb.Append{Entries: [][]byte{corrupt}}, wantErr: logrec.ErrCorrupt},
		{name: "corrupt entry after a good one", epoch: 2, append: &peerpb.Append{CommitLsn: 4, Entries: [][]byte{raw(2, 4), corrupt}}, wantErr: logrec.ErrCorrupt},
		{name: "lower epoch", epoch: 1, append: &peerpb.Append{CommitLsn: 3}, wantErr: ErrStaleEpoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCore()
			before := *c
			rd, err := c.Step(tt.epoch, tt.append)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Step error %v, want %v", err, tt.wantErr)
				}
				if len(rd.Append) != 0 || len(rd.Apply) != 0 {
					t.Errorf("failed Step returned work: %d to append, %d to apply", len(rd.Append), len(rd.Apply))
				}
				if c.durable != before.durable || c.applied != before.applied || c.commit != before.commit || len(c.pending) != len(before.pending) {
					t.Errorf("failed Step changed the core: %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Step: %v", err)
			}
			if !reflect.DeepEqual(rd.Append, tt.append.Entries) {
				t.Errorf("Append has %d entries, want %d", len(rd.Append), len(tt.append.Entries))
			}
			if got := lsns(rd.Apply); !reflect.DeepEqual(got, tt.wantApply) {
				t.Errorf("Apply = %v, want %v", got, tt.wantApply)
			}
			// Step alone persists nothing.
			if c.durable != before.durable || c.applied != before.applied {
				t.Errorf("Step moved durable/applied to %v/%d", c.durable, c.applied)
			}
			c.Persisted(rd)
			c.Applied(rd)
			if c.durable != tt.wantDurable || c.applied != tt.wantApplied {
				t.Errorf("durable %v applied %d, want %v %d", c.durable, c.applied, tt.wantDurable, tt.wantApplied)
			}
			if got := lsns(c.pending); !reflect.DeepEqual(got, tt.wantPending) {
				t.Errorf("pending %v, want %v", got, tt.wantPending)
			}
			p := c.Progress()
			if p.Epoch != tt.epoch || p.GetProgress().DurableLsn != tt.wantDurable.LSN || p.GetProgress().AppliedLsn != tt.wantApplied {
				t.Errorf("Progress = %v", p)
			}
			// Applied never passes durable or commit.
			if c.applied > c.durable.LSN || c.applied > max(c.commit, 1) {
				t.Errorf("applied %d beyond durable %d or commit %d", c.applied, c.durable.LSN, c.commit)
			}
		})
	}
}

// TestFollowerCoreSequence feeds a run of appends and checks the invariant
// applied <= min(commit, durable) after each, and that every entry is
// applied once, in order.
func TestFollowerCoreSequence(t *testing.T) {
	c := &followerCore{epoch: 1}
	var appliedLSNs []uint64
	next := uint64(1)
	steps := []struct {
		n      int    // new entries
		commit uint64 // commit LSN carried
	}{{3, 0}, {0, 2}, {2, 1}, {0, 5}, {4, 7}, {0, 7}, {1, 100}, {0, 100}}
	for i, s := range steps {
		a := &peerpb.Append{CommitLsn: s.commit, LeaderLastLsn: next + uint64(s.n) - 1, LeaderTimeUnixNano: int64(next+uint64(s.n)) * 1e9}
		for j := 0; j < s.n; j++ {
			a.Entries = append(a.Entries, raw(1, next))
			next++
		}
		rd, err := c.Step(1, a)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		c.Persisted(rd)
		appliedLSNs = append(appliedLSNs, lsns(rd.Apply)...) // read before Applied, which may clear them
		c.Applied(rd)
		if want := min(c.commit, c.durable.LSN); c.applied != want {
			t.Errorf("step %d: applied %d, want min(commit %d, durable %d)", i, c.applied, c.commit, c.durable.LSN)
		}
	}
	var want []uint64
	for lsn := uint64(1); lsn < next; lsn++ {
		want = append(want, lsn)
	}
	if !reflect.DeepEqual(appliedLSNs, want) {
		t.Errorf("applied %v, want %v", appliedLSNs, want)
	}
	if lsnLag, _ := c.lag(); lsnLag != 0 {
		t.Errorf("lag %d when caught up", lsnLag)
	}
}

func TestFollowerCoreLag(t *testing.T) {
	c := &followerCore{epoch: 1}
	rd, err := c.Step(1, &peerpb.Append{
		Entries: [][]byte{raw(1, 1), raw(1, 2)}, CommitLsn: 1, LeaderLastLsn: 10, LeaderTimeUnixNano: 11e9,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Persisted(rd)
	c.Applied(rd)
	// LSN 2, written at leader time 2s, is the oldest not applied; the
	// leader is at LSN 10, time 11s.
	if lsnLag, sec := c.lag(); lsnLag != 9 || sec != 9 {
		t.Errorf("lag = %d LSNs, %v s; want 9, 9", lsnLag, sec)
	}
	// Caught up, then idle until 100s: a new entry written at 100s that is
	// not yet committed is 0s old, not 98s.
	rd, _ = c.Step(1, &peerpb.Append{Entries: nil, CommitLsn: 2, LeaderLastLsn: 2, LeaderTimeUnixNano: 12e9})
	c.Persisted(rd)
	c.Applied(rd)
	e := coreEntry(1, 3)
	e.TimeNs = 100e9
	rd, err = c.Step(1, &peerpb.Append{Entries: [][]byte{logrec.Encode(&e)}, CommitLsn: 2, LeaderLastLsn: 3, LeaderTimeUnixNano: 100e9})
	if err != nil {
		t.Fatal(err)
	}
	c.Persisted(rd)
	c.Applied(rd)
	if lsnLag, sec := c.lag(); lsnLag != 1 || sec != 0 {
		t.Errorf("after idle: lag = %d LSNs, %v s; want 1, 0", lsnLag, sec)
	}
}

// BenchmarkFollowerCoreStep is the follower core's work per message of
// 10 entries that commits the message before it (as an async leader
// sends them): Step (verify, decode), Persisted, Applied. Per entry: ns
// and allocations.
//
//	go test ./internal/replication -run '^$' -bench FollowerCoreStep -benchmem
func BenchmarkFollowerCoreStep(b *testing.B) {
	const per = 10
	msgs := make([]*peerpb.Append, 1000)
	for i := range msgs {
		a := &peerpb.Append{CommitLsn: uint64(i * per), LeaderLastLsn: uint64((i + 1) * per)}
		for j := 1; j <= per; j++ {
			a.Entries = append(a.Entries, raw(1, uint64(i*per+j)))
		}
		msgs[i] = a
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		c := &followerCore{epoch: 1}
		for _, a := range msgs {
			if n == b.N {
				break
			}
			rd, err := c.Step(1, a)
			if err != nil {
				b.Fatal(err)
			}
			c.Persisted(rd)
			c.Applied(rd)
			n++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/entry")
}
