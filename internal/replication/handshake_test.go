package replication

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// fakeLog is a log given as the epoch of each LSN after base.
type fakeLog struct {
	base   logrec.Position
	epochs []uint64 // epochs[i] is the epoch of LSN base.LSN+1+i
}

func (f fakeLog) LogBase() logrec.Position { return f.base }
func (f fakeLog) Durable() logrec.Position {
	if len(f.epochs) == 0 {
		return f.base
	}
	return logrec.Position{Epoch: f.epochs[len(f.epochs)-1], LSN: f.base.LSN + uint64(len(f.epochs))}
}
func (f fakeLog) EpochAt(lsn uint64) (uint64, error) {
	if lsn < f.base.LSN {
		return 0, storage.ErrCompacted
	}
	if lsn == f.base.LSN {
		return f.base.Epoch, nil
	}
	if lsn > f.base.LSN+uint64(len(f.epochs)) {
		return 0, fmt.Errorf("lsn %d beyond durable", lsn)
	}
	return f.epochs[lsn-f.base.LSN-1], nil
}

// runs returns the epochs of a log from (epoch, count) pairs.
func runs(pairs ...uint64) []uint64 {
	var out []uint64
	for i := 0; i+1 < len(pairs); i += 2 {
		for range pairs[i+1] {
			out = append(out, pairs[i])
		}
	}
	return out
}

// compact returns log with its entries up to lsn trimmed (lsn the new base).
func compact(log fakeLog, lsn uint64) fakeLog {
	e, _ := log.EpochAt(lsn)
	return fakeLog{base: logrec.Position{Epoch: e, LSN: lsn}, epochs: log.epochs[lsn-log.base.LSN:]}
}

func pos(epoch, lsn uint64) logrec.Position { return logrec.Position{Epoch: epoch, LSN: lsn} }

func TestDecide(t *testing.T) {
	// Leader: LSN 1-5 in epoch 1, 6-8 in epoch 3.
	leader := fakeLog{epochs: runs(1, 5, 3, 3)}
	compacted := compact(leader, 4)
	// The counter-example of the old rule: LSN 1-10 in epoch 1, 11-12 in
	// epoch 3; the follower led epoch 2 from LSN 6 and the leader never
	// heard of it.
	skipped := fakeLog{epochs: runs(1, 10, 3, 2)}
	// Epochs 1, 3, 5; followers below hold epochs 2 and 4 it never had.
	several := fakeLog{epochs: runs(1, 3, 3, 7, 5, 2)}
	// Trimmed to LSN 5 (epoch 3).
	severalCompacted := compact(several, 5)
	// Leading epoch 4 and wrote nothing yet: its log ends in epoch 1.
	idle := fakeLog{epochs: runs(1, 10)}
	// Its first entry is of epoch 2.
	fromTwo := fakeLog{epochs: runs(2, 4)}
	empty := fakeLog{}

	tests := []struct {
		name     string
		log      fakeLog
		follower logrec.Position
		want     Decision
	}{
		{"empty follower of empty leader streams", empty, pos(0, 0), Decision{ActStream, 1, 0}},
		{"empty follower is seeded", leader, pos(0, 0), Decision{Action: ActSnapshot}},
		{"follower of empty leader drops everything", empty, pos(1, 3), Decision{ActTruncate, 0, 0}},
		{"caught up", leader, pos(3, 8), Decision{ActStream, 9, 0}},
		{"behind in same epoch", leader, pos(1, 3), Decision{ActStream, 4, 0}},
		{"behind in an earlier epoch", several, pos(1, 2), Decision{ActStream, 3, 0}},
		{"old epoch suffix truncated at epoch change", leader, pos(1, 7), Decision{ActTruncate, 5, 1}},
		{"unknown epoch 2 past the leader's end truncated at epoch 3 start", leader, pos(2, 9), Decision{ActTruncate, 5, 1}},
		{"ahead in leader's current epoch truncated to leader end", leader, pos(3, 12), Decision{ActTruncate, 8, 3}},
		{"ahead in leader's earlier epoch truncated at its end", several, pos(3, 12), Decision{ActTruncate, 10, 3}},

		{"unknown epoch inside a leader epoch: truncate at the follower's LSN, with the leader's epoch there", skipped, pos(2, 8), Decision{ActTruncate, 8, 1}},
		{"unknown epoch up to the leader's next epoch", skipped, pos(2, 10), Decision{ActTruncate, 10, 1}},
		{"unknown epoch past the leader's next epoch start", skipped, pos(2, 12), Decision{ActTruncate, 10, 1}},
		{"unknown epoch, leader idle in a later epoch", idle, pos(2, 8), Decision{ActTruncate, 8, 1}},
		{"unknown epoch, longer than the idle leader's log", idle, pos(2, 12), Decision{ActTruncate, 10, 1}},

		{"unknown epoch 4 over leader epoch 3", several, pos(4, 7), Decision{ActTruncate, 7, 3}},
		{"then unknown epoch 2 over leader epoch 3", several, pos(2, 5), Decision{ActTruncate, 3, 1}},
		{"then consistent", several, pos(1, 3), Decision{ActStream, 4, 0}},
		{"unknown epoch 4 past leader epoch 5 start", several, pos(4, 12), Decision{ActTruncate, 10, 3}},
		{"unknown epoch 2 below leader epoch 3 start", several, pos(2, 3), Decision{ActTruncate, 3, 1}},

		{"behind retained log is seeded", compacted, pos(1, 2), Decision{Action: ActSnapshot}},
		{"at log base streams", compacted, pos(1, 4), Decision{ActStream, 5, 0}},
		{"diverged after the log base truncates at the epoch change", compacted, pos(1, 7), Decision{ActTruncate, 5, 1}},
		{"at log base in another epoch is seeded", severalCompacted, pos(2, 5), Decision{Action: ActSnapshot}},
		{"shared entries end before the log base: seeded", severalCompacted, pos(2, 6), Decision{Action: ActSnapshot}},
		{"unknown epoch over retained leader epoch truncated", severalCompacted, pos(4, 7), Decision{ActTruncate, 7, 3}},
		{"diverged from the first entry is seeded", fromTwo, pos(1, 3), Decision{Action: ActSnapshot}},
	}
	for _, tt := range tests {
		got, err := Decide(tt.log, tt.log.Durable().LSN, tt.follower)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Decide(%v) = %v %d epoch %d, want %v %d epoch %d", tt.name, tt.follower,
				got.Action, got.LSN, got.Epoch, tt.want.Action, tt.want.LSN, tt.want.Epoch)
		}
	}
}

// TestDecideNothingApplied: a leader that has applied nothing never sends
// a follower for a snapshot (it would be empty, at LSN 0, and the follower
// would come back for another forever); its log is whole, so it replays it.
func TestDecideNothingApplied(t *testing.T) {
	leader := fakeLog{epochs: runs(1, 5, 3, 3)}
	fromTwo := fakeLog{epochs: runs(2, 4)}
	tests := []struct {
		name     string
		log      fakeLog
		applied  uint64
		follower logrec.Position
		want     Decision
	}{
		{"empty follower streams from 1", leader, 0, pos(0, 0), Decision{ActStream, 1, 0}},
		{"empty follower of a leader that applied is seeded", leader, 1, pos(0, 0), Decision{Action: ActSnapshot}},
		{"diverged from the first entry drops everything", fromTwo, 0, pos(1, 3), Decision{ActTruncate, 0, 0}},
		{"diverged from the first entry of a leader that applied is seeded", fromTwo, 2, pos(1, 3), Decision{Action: ActSnapshot}},
		{"consistent follower still streams", leader, 0, pos(1, 3), Decision{ActStream, 4, 0}},
		{"diverged follower still truncates at the epoch change", leader, 0, pos(1, 7), Decision{ActTruncate, 5, 1}},
		{"empty follower of an empty leader streams", fakeLog{}, 0, pos(0, 0), Decision{ActStream, 1, 0}},
	}
	for _, tt := range tests {
		got, err := Decide(tt.log, tt.applied, tt.follower)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Decide(applied %d, %v) = %v %d epoch %d, want %v %d epoch %d", tt.name, tt.applied, tt.follower,
				got.Action, got.LSN, got.Epoch, tt.want.Action, tt.want.LSN, tt.want.Epoch)
		}
	}
}

func TestTruncatePoint(t *testing.T) {
	// The counter-example's follower: epoch 1 at 1-5, its own epoch 2 at 6-8.
	own := fakeLog{epochs: runs(1, 5, 2, 3)}
	// Epoch 1 at 1-3, epoch 2 at 4-5, epoch 4 at 6-7.
	several := fakeLog{epochs: runs(1, 3, 2, 2, 4, 2)}
	// Seeded at LSN 5 (epoch 3), then epoch 4 at 6-7.
	seeded := fakeLog{base: pos(3, 5), epochs: runs(4, 2)}

	tests := []struct {
		name       string
		log        fakeLog
		lsn, epoch uint64
		want       uint64
	}{
		{"own epoch dropped to the last entry of the leader's epoch", own, 8, 1, 5},
		{"leader's point past the follower's own epoch", own, 10, 1, 5},
		{"leader's point before the own epoch", own, 3, 1, 3},
		{"leader's point in a shared epoch", own, 7, 2, 7},
		{"leader before the field: as before", own, 8, 0, 8},
		{"to empty", own, 0, 0, 0},
		{"two own epochs over leader epoch 3", several, 7, 3, 5},
		{"over leader epoch 1", several, 7, 1, 3},
		{"leader's point before both", several, 3, 1, 3},
		{"over leader epoch 2", several, 7, 2, 5},
		{"down to the log base", seeded, 7, 3, 5},
		{"below the log base's epoch", seeded, 7, 2, 4},
		{"leader's point below the log base", seeded, 3, 2, 3},
		{"leader's point just below the log base", seeded, 4, 3, 4},
	}
	for _, tt := range tests {
		got, err := TruncatePoint(tt.log, tt.lsn, tt.epoch)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: TruncatePoint(%d, %d) = %d, want %d", tt.name, tt.lsn, tt.epoch, got, tt.want)
		}
	}
}

// shared is the number of leading entries two logs (epochs by LSN) have in
// common: the last LSN where they agree.
func shared(a, b []uint64) int {
	n := 0
	for n < min(len(a), len(b)) && a[n] == b[n] {
		n++
	}
	return n
}

// TestHandshakeRounds runs random cluster histories (each epoch a random
// node leads and writes, the others catch up with it by some amount) and
// then the rounds of Decide and TruncatePoint between the last leader,
// sometimes trimmed, sometimes with nothing applied, and every other node:
// a follower never drops an entry it shares with the leader, every round
// drops at least one, and it ends streaming right after its last shared
// entry, or seeded when that entry precedes the leader's retained log (or
// there is none), never by a leader that applied nothing.
func TestHandshakeRounds(t *testing.T) {
	for seed := range uint64(5000) {
		r := rand.New(rand.NewPCG(seed, 1))
		nodes := make([][]uint64, 2+r.IntN(3))
		epochs := uint64(1 + r.IntN(9))
		for e := uint64(1); e <= epochs+1; e++ {
			x := r.IntN(len(nodes))
			for range r.IntN(5) {
				nodes[x] = append(nodes[x], e)
			}
			if e == epochs+1 {
				// The last leadership: everyone else follows it.
				lead := fakeLog{epochs: nodes[x]}
				applied := lead.Durable().LSN
				switch r.IntN(3) {
				case 0:
					lead = compact(lead, uint64(r.IntN(len(nodes[x])+1)))
					applied = max(lead.base.LSN, applied)
				case 1:
					// Nothing applied yet (a quorum leader whose followers
					// have not streamed): never seeded, the log replayed.
					applied = 0
				}
				for y := range nodes {
					if y != x {
						handshakeRounds(t, seed, lead, applied, nodes[x], nodes[y])
					}
				}
				break
			}
			for y := range nodes {
				if y == x || r.IntN(2) == 0 {
					continue
				}
				// y catches up with x: it truncates to what it shares with
				// x and takes some more of x's entries.
				p := shared(nodes[x], nodes[y])
				nodes[y] = slices.Clone(nodes[x][:p+r.IntN(len(nodes[x])-p+1)])
			}
		}
	}
}

func handshakeRounds(t *testing.T, seed uint64, lead fakeLog, applied uint64, leader, follower []uint64) {
	t.Helper()
	p := shared(leader, follower)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: leader %v (base %d), follower %v, shared %d: %s", seed, leader, lead.base.LSN, follower, p, fmt.Sprintf(format, args...))
	}
	f := slices.Clone(follower)
	for round := 0; ; round++ {
		if round > len(follower) {
			fail("no end after %d rounds", round)
		}
		at := pos(0, uint64(len(f)))
		if len(f) > 0 {
			at.Epoch = f[len(f)-1]
		}
		d, err := Decide(lead, applied, at)
		if err != nil {
			fail("Decide(%v): %v", at, err)
		}
		switch d.Action {
		case ActStream:
			if len(f) != p || d.LSN != uint64(p)+1 {
				fail("streams from %d with follower log %v", d.LSN, f)
			}
			return
		case ActSnapshot:
			if applied == 0 {
				fail("seeded from %v by a leader that applied nothing", at)
			}
			if uint64(p) >= lead.base.LSN && (p > 0 || len(leader) == 0) {
				fail("seeded from %v", at)
			}
			return
		}
		to, err := TruncatePoint(fakeLog{epochs: f}, d.LSN, d.Epoch)
		if err != nil {
			fail("TruncatePoint: %v", err)
		}
		if to < uint64(p) || to >= uint64(len(f)) {
			fail("at %v told to truncate after %d (%d, epoch %d)", at, to, d.LSN, d.Epoch)
		}
		f = f[:to]
	}
}
