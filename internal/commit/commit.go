// Package commit decides the commit point: the highest LSN whose entry is
// durable on enough nodes for the configured durability mode. It is a pure
// function of the mode and the durable LSNs, so every caller (the leader's
// write path, its follower streams, tests) uses the same rule.
package commit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Kind is a durability mode.
type Kind int

const (
	// Async: committed once durable on the leader.
	Async Kind = iota
	// Quorum: committed once durable on the leader and on any K followers.
	Quorum
)

// Mode is a durability rule.
type Mode struct {
	Kind Kind
	K    int // followers required, for Quorum
}

func (m Mode) String() string {
	if m.Kind == Quorum {
		return "quorum " + strconv.Itoa(m.K)
	}
	return "async"
}

// ParseMode parses "async" or "quorum K".
func ParseMode(s string) (Mode, error) {
	f := strings.Fields(strings.ToLower(s))
	switch {
	case len(f) == 1 && f[0] == "async":
		return Mode{Kind: Async}, nil
	case len(f) == 2 && f[0] == "quorum":
		k, err := strconv.Atoi(f[1])
		if err != nil || k < 1 {
			return Mode{}, fmt.Errorf("commit: quorum needs a positive follower count, got %q", f[1])
		}
		return Mode{Kind: Quorum, K: k}, nil
	}
	return Mode{}, fmt.Errorf("commit: unknown mode %q (want async or quorum K)", s)
}

// LSN returns the commit LSN under mode m, given the leader's durable LSN
// and the durable LSNs its followers have reported. It never exceeds
// leaderDurable: nothing commits before it is durable on the leader.
func LSN(m Mode, leaderDurable uint64, followerDurable []uint64) uint64 {
	switch m.Kind {
	case Quorum:
		if len(followerDurable) < m.K {
			return 0
		}
		d := slices.Clone(followerDurable)
		slices.Sort(d)
		// The K-th highest follower durable LSN is held by at least K followers.
		return min(leaderDurable, d[len(d)-m.K])
	default:
		return leaderDurable
	}
}
