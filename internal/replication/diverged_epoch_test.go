package replication

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
)

// epochRun is count entries of one epoch written by one leader.
type epochRun struct {
	epoch, count uint64
	writer       string
}

// logOf returns the entries of rs from LSN 1 on. Each puts one of a
// few keys, so that logs that differ anywhere give different data.
func logOf(rs ...epochRun) []logrec.Entry {
	var out []logrec.Entry
	for _, r := range rs {
		for range r.count {
			lsn := uint64(len(out)) + 1
			out = append(out, logrec.Entry{Epoch: r.epoch, LSN: lsn, Ops: []logrec.Op{{
				Kind: logrec.OpPut, Key: fmt.Appendf(nil, "k%d", lsn%4), Value: fmt.Appendf(nil, "%s-%d-%d", r.writer, r.epoch, lsn),
			}}})
		}
	}
	return out
}

// TestFollowerInUnknownEpochConverges: a follower whose last entries are of
// an epoch the leader never had (it led briefly while the leader was
// elsewhere) drops them down to the last entry it shares with the leader,
// however the epochs interleave, and converges to the leader's data. It
// used to be told to truncate after its own last LSN (the leader's entry
// there has a lower epoch, and the leader's next epoch starts later), kept
// its entries, and reconnected to the same answer forever.
func TestFollowerInUnknownEpochConverges(t *testing.T) {
	tests := []struct {
		name string
		// The leader's log before it takes over at leaderEpoch.
		leader      []epochRun
		leaderEpoch uint64
		// The follower's log; the first shared entries equal the leader's.
		follower      []epochRun
		applied       int // follower entries applied before it meets the leader
		wantSnapshots int32
		wantRollback  int // entries in rollback files (every dropped entry is saved)
	}{
		{
			// Leader: epoch 1 at 1-10, then epoch 3. Follower: epoch 1 at
			// 1-5, then its own epoch 2 at 6-8.
			name:         "own epoch inside the leader's, unapplied",
			leader:       []epochRun{{1, 10, "one"}},
			leaderEpoch:  3,
			follower:     []epochRun{{1, 5, "one"}, {2, 3, "two"}},
			applied:      5,
			wantRollback: 3,
		},
		{
			name:          "own epoch inside the leader's, applied: saved and re-seeded",
			leader:        []epochRun{{1, 10, "one"}},
			leaderEpoch:   3,
			follower:      []epochRun{{1, 5, "one"}, {2, 3, "two"}},
			applied:       8,
			wantSnapshots: 1,
			wantRollback:  3,
		},
		{
			// Leader: epochs 1, 3, then 5. Follower: epochs 1, 2, 4 (2 and
			// 4 its own), so it needs two truncations: after 5 (the end of
			// its entries of epoch ≤ 3), then after 3.
			name:         "two own epochs interleaved with the leader's",
			leader:       []epochRun{{1, 3, "one"}, {3, 7, "three"}},
			leaderEpoch:  5,
			follower:     []epochRun{{1, 3, "one"}, {2, 2, "two"}, {4, 2, "four"}},
			applied:      3,
			wantRollback: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lfs := vfs.NewMem()
			ldb := openDB(t, lfs)
			lents := logOf(tt.leader...)
			if err := ldb.AppendLog(encodeAll(lents)); err != nil {
				t.Fatal(err)
			}
			if err := ldb.Apply(lents); err != nil {
				t.Fatal(err)
			}
			l := startLeader(t, lfs, ldb, tt.leaderEpoch, commit.Mode{Kind: commit.Async}, nil)
			for i := range 3 {
				propose(t, l, putExec(fmt.Sprint("new", i), "x"))
			}

			f := newFollowerNode(t, "f", logFS(t, logOf(tt.follower...), tt.applied), l.dialer)
			waitConverged(t, l, f)

			if n := l.dialer.snapshots.Load(); n != tt.wantSnapshots {
				t.Errorf("%d snapshots, want %d", n, tt.wantSnapshots)
			}
			if tt.wantSnapshots == 0 {
				last := l.db.Durable().LSN
				fl, err := f.db.ReadLog(1, last, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				ll, err := l.db.ReadLog(1, last, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(fl, ll) {
					t.Errorf("follower log 1-%d differs from the leader's", last)
				}
			}
			if got, want := f.db.EpochHistory(), l.db.EpochHistory(); !reflect.DeepEqual(got, want) {
				t.Errorf("follower epoch history %v, want %v", got, want)
			}
			if n := rolledBackEntries(t, f.f.cfg.DataDir); n != tt.wantRollback {
				t.Errorf("rollback files hold %d entries, want %d", n, tt.wantRollback)
			}
		})
	}
}

// logFS returns a MemFS whose database holds entries in its log, the first
// applied of them applied, as a node that stopped there would.
func logFS(t *testing.T, entries []logrec.Entry, applied int) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewMem()
	db := openDB(t, fs)
	defer db.Close()
	if err := db.AppendLog(encodeAll(entries)); err != nil {
		t.Fatal(err)
	}
	if err := db.Apply(entries[:applied]); err != nil {
		t.Fatal(err)
	}
	return fs
}

func encodeAll(es []logrec.Entry) [][]byte {
	var out [][]byte
	for i := range es {
		out = append(out, logrec.Encode(&es[i]))
	}
	return out
}
