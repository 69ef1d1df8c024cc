package replication

import (
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

func TestLineage(t *testing.T) {
	// Epoch 1 from lsn 1, epoch 2 wrote nothing, epoch 3 from lsn 11,
	// epoch 5 from lsn 21.
	h := []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 11}, {Epoch: 3, LSN: 11}, {Epoch: 5, LSN: 21}}
	pos := func(e, n uint64) logrec.Position { return logrec.Position{Epoch: e, LSN: n} }
	for _, tc := range []struct {
		applied, want logrec.Position
		v             Verdict
	}{
		{pos(5, 25), pos(0, 0), Reached},
		{pos(5, 25), pos(1, 10), Reached},
		{pos(5, 25), pos(3, 11), Reached},
		{pos(5, 25), pos(5, 25), Reached},
		{pos(5, 25), pos(5, 26), Behind},
		{pos(5, 25), pos(7, 26), Behind},   // a later leader's: may come
		{pos(3, 15), pos(5, 21), Behind},   // not there yet
		{pos(5, 25), pos(2, 11), Replaced}, // epoch 2 has no entry at 11
		{pos(5, 25), pos(1, 12), Replaced}, // lost to epoch 3
		{pos(5, 25), pos(3, 40), Replaced}, // epoch 3 ended at 20
		{pos(5, 25), pos(4, 22), Replaced},
		{pos(5, 25), pos(6, 22), Older}, // this node is behind a failover
		{pos(3, 15), pos(4, 14), Older},
		{pos(0, 0), pos(1, 1), Behind},
	} {
		if got := Lineage(h, tc.applied, tc.want); got != tc.v {
			t.Errorf("Lineage(applied %v, want %v) = %v, want %v", tc.applied, tc.want, got, tc.v)
		}
	}
	if e := EpochAt(h, 11); e != 3 {
		t.Errorf("EpochAt(11) = %d, want 3 (epoch 2 wrote nothing)", e)
	}
	if Compare(pos(4, 10), pos(3, 100)) != 1 || Compare(pos(3, 9), pos(3, 10)) != -1 || Compare(pos(3, 9), pos(3, 9)) != 0 {
		t.Error("Compare: want epoch first, then lsn")
	}
}
