package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
)

// The topology's rules (commit mode, sync-fallback, sync-min) are typed
// values, parsed once when the topology is decoded: a topology whose rules
// do not parse does not decode, and its reader says so (no silent default
// in place of a garbled value). In etcd they stay the strings an operator
// reads and writes ("quorum 2", "after 10s").

// Mode is a topology's commit mode. The zero Mode is unset: each node then
// keeps the mode of its own --mode flag.
type Mode struct {
	commit.Mode
	// Set is false for the zero Mode ("" in etcd).
	Set bool
}

// ModeOf is m as a topology's (set) mode.
func ModeOf(m commit.Mode) Mode { return Mode{Mode: m, Set: true} }

// ParseMode parses a topology's mode: "" (unset) or what commit.ParseMode
// accepts.
func ParseMode(s string) (Mode, error) {
	if strings.TrimSpace(s) == "" {
		return Mode{}, nil
	}
	m, err := commit.ParseMode(s)
	if err != nil {
		return Mode{}, fmt.Errorf("coord: topology mode: %w", err)
	}
	return ModeOf(m), nil
}

// String is the mode as stored ("" when unset).
func (m Mode) String() string {
	if !m.Set {
		return ""
	}
	return m.Mode.String()
}

// Or is the mode in force: m if set, else def (the node's own).
func (m Mode) Or(def commit.Mode) commit.Mode {
	if m.Set {
		return m.Mode
	}
	return def
}

// IsZero reports whether the mode is unset (for json's omitzero).
func (m Mode) IsZero() bool { return !m.Set }

// MarshalText writes the mode as stored.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses a stored mode; a mode that does not parse is an
// error, so the topology holding it does not decode.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Fallback is the sync-fallback rule: the zero Fallback is never (sync and
// semisync writes wait, then answer NOREPLICAS, while no sync-set member is
// there); After > 0 degrades the leader to async, loudly, after that long
// with no member, until a follower has caught up again.
type Fallback struct {
	After time.Duration
}

// Never is the sync-fallback that never degrades.
var Never = Fallback{}

// ParseFallback parses "never" (or "") or "after DURATION" with a positive
// duration.
func ParseFallback(s string) (Fallback, error) {
	v := strings.TrimSpace(s)
	if v == "" || v == "never" {
		return Never, nil
	}
	rest, ok := strings.CutPrefix(v, "after")
	d, err := time.ParseDuration(strings.TrimSpace(rest))
	if !ok || err != nil || d <= 0 {
		return Never, fmt.Errorf(`coord: sync-fallback %q: want "never" or "after DURATION" (e.g. "after 10s")`, s)
	}
	return Fallback{After: d}, nil
}

// String is the rule as stored: "never" or "after D".
func (f Fallback) String() string {
	if f.After <= 0 {
		return "never"
	}
	return "after " + f.After.String()
}

// IsZero reports whether the rule is never (for json's omitzero).
func (f Fallback) IsZero() bool { return f.After <= 0 }

// MarshalText writes the rule as stored.
func (f Fallback) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses a stored rule; one that does not parse is an error.
func (f *Fallback) UnmarshalText(b []byte) error {
	v, err := ParseFallback(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// ErrUnworkable: the topology's rules parse but cannot work with the
// cluster's members (a write could never commit, or would always be
// refused). Operators may force such a topology (a member that will be
// added soon); nothing else writes one.
var ErrUnworkable = errors.New("coord: the rules cannot work with this cluster's members")

// Workable checks t's rules against a cluster of members nodes (the
// leader and members-1 followers): quorum K needs K followers, sync-min K
// needs K followers that can be in the sync set. It is an ErrUnworkable
// saying why, or nil.
func (t Topology) Workable(members int) error {
	followers := members - 1
	mode := t.Mode.Or(commit.Mode{Kind: commit.Async})
	if mode.Kind == commit.Quorum && mode.K > followers {
		return fmt.Errorf("%w: quorum %d needs %d followers, the cluster has %d members (%d followers): every write would wait out the write timeout and answer NOREPLICAS",
			ErrUnworkable, mode.K, mode.K, members, followers)
	}
	if t.SyncMin > followers && (!t.Mode.Set || mode.NeedsSyncSet()) {
		return fmt.Errorf("%w: sync-min %d needs %d followers in the sync set, the cluster has %d members (%d followers): every write would be refused with NOREPLICAS",
			ErrUnworkable, t.SyncMin, t.SyncMin, members, followers)
	}
	return nil
}

// check refuses values that no field's type refuses on its own.
func (t Topology) check() error {
	if t.SyncMin < 0 {
		return fmt.Errorf("coord: topology sync_min %d: must not be negative", t.SyncMin)
	}
	return nil
}

// RulesChange is a change of a topology's rules (tandem mode set); a nil
// field keeps the current value.
type RulesChange struct {
	Mode     *Mode
	Fallback *Fallback
	SyncMin  *int
}

// ChangeRules changes the topology's rules at its current epoch (losing,
// with ErrConflict, to a concurrent failover) and records the event. Rules
// that cannot work with the registered members (Workable) are refused
// unless force, which the event records. It returns the topologies before
// and after.
//
// It is also the repair of a topology whose rules do not decode: a change
// that gives every rule that does not decode replaces it.
func (s *Store) ChangeRules(ctx context.Context, c RulesChange, force bool) (old, next Topology, err error) {
	t, bad, ok, err := s.storedTopology(ctx)
	if err != nil {
		return Topology{}, Topology{}, err
	}
	if !ok {
		return Topology{}, Topology{}, errors.New("coord: the cluster has no topology yet")
	}
	for _, b := range bad {
		if (b.field == "mode" && c.Mode == nil) || (b.field == "sync_fallback" && c.Fallback == nil) || (b.field == "sync_min" && c.SyncMin == nil) {
			return Topology{}, Topology{}, fmt.Errorf("coord: the stored topology's %s does not decode (%w): give a new one to repair it", b.field, b.err)
		}
	}
	next = t
	var what []string
	if c.Mode != nil {
		next.Mode = *c.Mode
		what = append(what, "mode set to "+c.Mode.String())
	}
	if c.Fallback != nil {
		next.SyncFallback = *c.Fallback
		what = append(what, "sync-fallback "+c.Fallback.String())
	}
	if c.SyncMin != nil {
		next.SyncMin = *c.SyncMin
		what = append(what, fmt.Sprintf("sync-min %d", *c.SyncMin))
	}
	if len(what) == 0 {
		return t, t, nil
	}
	members, err := s.Members(ctx)
	if err != nil {
		return Topology{}, Topology{}, err
	}
	next.Reason = strings.Join(what, ", ")
	if err := next.Workable(len(members)); err != nil {
		if !force {
			return Topology{}, Topology{}, fmt.Errorf("%w (refused; --force to set it anyway)", err)
		}
		next.Reason += " (forced: " + err.Error() + ")"
	}
	next.Changed = time.Now()
	// The epoch compare makes this lose to a concurrent failover.
	if err := s.SetTopology(ctx, t.Epoch, next, &Event{Kind: "mode", Reason: next.Reason, To: t.Leader, OldEpoch: t.Epoch, NewEpoch: t.Epoch}); err != nil {
		return Topology{}, Topology{}, err
	}
	return t, next, nil
}

// badRule is a rule of the stored topology that does not decode.
type badRule struct {
	field string
	err   error
}

// storedTopology reads the topology leniently: the rules that do not
// decode are left zero and listed in bad, so that a change can repair them
// (ChangeRules) and the epoch's leader can still be compared (SetTopology).
func (s *Store) storedTopology(ctx context.Context) (t Topology, bad []badRule, ok bool, err error) {
	resp, err := s.cli.Get(ctx, s.Key("topology"))
	if err != nil {
		return Topology{}, nil, false, fmt.Errorf("coord: read topology: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Topology{}, nil, false, nil
	}
	// The outer fields hide the typed ones of the embedded Topology.
	var raw struct {
		Topology
		Mode         string `json:"mode"`
		SyncFallback string `json:"sync_fallback"`
		SyncMin      int    `json:"sync_min"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &raw); err != nil {
		return Topology{}, nil, false, fmt.Errorf("coord: topology %s does not decode: %w", resp.Kvs[0].Value, err)
	}
	t = raw.Topology
	if t.Mode, err = ParseMode(raw.Mode); err != nil {
		bad = append(bad, badRule{"mode", err})
	}
	if t.SyncFallback, err = ParseFallback(raw.SyncFallback); err != nil {
		bad = append(bad, badRule{"sync_fallback", err})
	}
	if t.SyncMin = raw.SyncMin; t.SyncMin < 0 {
		t.SyncMin = 0
		bad = append(bad, badRule{"sync_min", fmt.Errorf("sync_min %d: must not be negative", raw.SyncMin)})
	}
	return t, bad, true, nil
}
