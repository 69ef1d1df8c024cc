package replication

import (
	"testing"

	"github.com/tandemdb/tandem/internal/storage"
)

// fakeLog is a leader log given as the epoch of each LSN after base.
type fakeLog struct {
	base    storage.Position
	epochs  []uint64 // epochs[i] is the epoch of LSN base.LSN+1+i
	history []storage.Position
}

func (f fakeLog) LogBase() storage.Position { return f.base }
func (f fakeLog) Durable() storage.Position {
	if len(f.epochs) == 0 {
		return f.base
	}
	return storage.Position{Epoch: f.epochs[len(f.epochs)-1], LSN: f.base.LSN + uint64(len(f.epochs))}
}
func (f fakeLog) EpochAt(lsn uint64) (uint64, error) {
	if lsn < f.base.LSN {
		return 0, storage.ErrCompacted
	}
	if lsn == f.base.LSN {
		return f.base.Epoch, nil
	}
	return f.epochs[lsn-f.base.LSN-1], nil
}
func (f fakeLog) EpochHistory() []storage.Position { return f.history }

func TestDecide(t *testing.T) {
	// Leader: LSN 1-5 in epoch 1, 6-8 in epoch 3.
	leader := fakeLog{
		epochs:  []uint64{1, 1, 1, 1, 1, 3, 3, 3},
		history: []storage.Position{{Epoch: 1, LSN: 1}, {Epoch: 3, LSN: 6}},
	}
	compacted := leader
	compacted.base = storage.Position{Epoch: 1, LSN: 4}
	compacted.epochs = leader.epochs[4:]
	empty := fakeLog{}

	tests := []struct {
		name     string
		log      fakeLog
		follower storage.Position
		want     Decision
	}{
		{"empty follower of empty leader streams", empty, storage.Position{}, Decision{ActStream, 1}},
		{"empty follower is seeded", leader, storage.Position{}, Decision{Action: ActSnapshot}},
		{"caught up", leader, storage.Position{Epoch: 3, LSN: 8}, Decision{ActStream, 9}},
		{"behind in same epoch", leader, storage.Position{Epoch: 1, LSN: 3}, Decision{ActStream, 4}},
		{"old epoch suffix truncated at epoch change", leader, storage.Position{Epoch: 1, LSN: 7}, Decision{ActTruncate, 5}},
		{"unknown epoch 2 truncated at epoch 3 start", leader, storage.Position{Epoch: 2, LSN: 9}, Decision{ActTruncate, 5}},
		{"ahead in leader epoch truncated to leader end", leader, storage.Position{Epoch: 3, LSN: 12}, Decision{ActTruncate, 8}},
		{"behind retained log is seeded", compacted, storage.Position{Epoch: 1, LSN: 2}, Decision{Action: ActSnapshot}},
		{"at log base streams", compacted, storage.Position{Epoch: 1, LSN: 4}, Decision{ActStream, 5}},
	}
	for _, tt := range tests {
		got, err := Decide(tt.log, tt.follower)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Decide = %v %d, want %v %d", tt.name, got.Action, got.LSN, tt.want.Action, tt.want.LSN)
		}
	}
}
