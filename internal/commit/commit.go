// Package commit decides the commit point: the highest LSN whose entry is
// durable on enough nodes for the configured durability mode. It is a pure
// function of the mode, the durable LSNs and the sync set, so every caller
// (the leader's write path, its follower streams, tests) uses the same
// rule:
//
//	async       durable on the leader
//	sync        and on every member of the sync set
//	semisync    and on at least one member of the sync set
//	quorum K    and on any K followers (PostgreSQL's ANY K)
//
// In sync and semisync an empty sync set commits nothing: whether to fall
// back to async instead is the caller's decision (sync-fallback), made
// loudly, never here.
package commit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Default is the mode a cluster under the control plane starts in when
// none is given: no acknowledged write is lost when the leader dies, and
// one slow or dead follower is replaced rather than waited for. A static
// cluster (no control plane, no sync set to keep) or a single node runs
// async.
const Default = "semisync"

// Kind is a durability mode.
type Kind int

const (
	// Async: committed once durable on the leader.
	Async Kind = iota
	// Quorum: committed once durable on the leader and on any K followers.
	Quorum
	// Sync: committed once durable on the leader and on every member of
	// the sync set.
	Sync
	// SemiSync: committed once durable on the leader and on at least one
	// member of the sync set.
	SemiSync
)

// Mode is a durability rule.
type Mode struct {
	Kind Kind
	K    int // followers required, for Quorum
}

func (m Mode) String() string {
	switch m.Kind {
	case Quorum:
		return "quorum " + strconv.Itoa(m.K)
	case Sync:
		return "sync"
	case SemiSync:
		return "semisync"
	}
	return "async"
}

// NeedsSyncSet reports whether the mode counts only sync-set members.
func (m Mode) NeedsSyncSet() bool { return m.Kind == Sync || m.Kind == SemiSync }

// ParseMode parses "async", "sync", "semisync" or "quorum K".
func ParseMode(s string) (Mode, error) {
	f := strings.Fields(strings.ToLower(s))
	switch {
	case len(f) == 1 && f[0] == "async":
		return Mode{Kind: Async}, nil
	case len(f) == 1 && f[0] == "sync":
		return Mode{Kind: Sync}, nil
	case len(f) == 1 && f[0] == "semisync":
		return Mode{Kind: SemiSync}, nil
	case len(f) == 2 && f[0] == "quorum":
		k, err := strconv.Atoi(f[1])
		if err != nil || k < 1 {
			return Mode{}, fmt.Errorf("commit: quorum needs a positive follower count, got %q", f[1])
		}
		return Mode{Kind: Quorum, K: k}, nil
	}
	return Mode{}, fmt.Errorf("commit: unknown mode %q (want async, sync, semisync or quorum K)", s)
}

// Follower is one follower's durable LSN as the leader knows it.
type Follower struct {
	ID      string
	Durable uint64
}

// LSN returns the commit LSN under mode m, given the leader's durable LSN,
// its followers' durable LSNs and the sync set (the follower ids whose
// acknowledgements count in sync and semisync). It never exceeds
// leaderDurable: nothing commits before it is durable on the leader.
func LSN(m Mode, leaderDurable uint64, followers []Follower, syncSet []string) uint64 {
	switch m.Kind {
	case Quorum:
		if len(followers) < m.K {
			return 0
		}
		d := make([]uint64, len(followers))
		for i, f := range followers {
			d[i] = f.Durable
		}
		slices.Sort(d)
		// The K-th highest follower durable LSN is held by at least K followers.
		return min(leaderDurable, d[len(d)-m.K])
	case Sync, SemiSync:
		if len(syncSet) == 0 {
			return 0
		}
		// sync: the lowest member's position (a member not connected has
		// 0); semisync: the highest.
		var lo, hi uint64
		for i, id := range syncSet {
			var d uint64
			for _, f := range followers {
				if f.ID == id {
					d = max(d, f.Durable)
				}
			}
			if i == 0 || d < lo {
				lo = d
			}
			hi = max(hi, d)
		}
		if m.Kind == Sync {
			return min(leaderDurable, lo)
		}
		return min(leaderDurable, hi)
	default:
		return leaderDurable
	}
}
