package replication

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// The log format gate (see package logrec): every node advertises the
// highest log format it reads, in its Hello and in its member record in
// etcd, and the leader writes an entry of format F only if every member it
// knows reads F. Known members are those that have sent this leader a
// Hello since it began leading and those registered in etcd (the node's
// agent passes them on, MemberFormat), so a member that is down when the
// first entry of a new format would be written still holds it back. A
// member known to neither (one registering after the entry was written)
// that is then sent an entry it cannot read refuses it loudly and stops
// following (Follower.Run).

// rowFormatKeyspace is the snapshot row format of package keyspace's rows
// under their full keys (SnapshotRequest.row_format). Format 1 (or 0, a
// node from before the field) is (user key, string row).
const rowFormatKeyspace = 2

// rowFormatFunctions is rowFormatKeyspace plus the function libraries'
// row (keyspace.FunctionsKey), which a follower that asks for format 2
// (an older build) cannot ingest: the leader refuses to seed it while
// there are libraries (functionsRow), rather than send a row it would
// take for damage.
const rowFormatFunctions = 3

// functionsRow refuses the function libraries' row to a follower that
// asked for snapshot rows of format (below rowFormatFunctions).
func functionsRow(key []byte, format uint32) error {
	if format < rowFormatFunctions && len(key) > 0 && key[0] == keyspace.PrefixFunctions {
		return fmt.Errorf("replication: the follower reads no function libraries in a snapshot (an older build) and the data holds some: upgrade it")
	}
	return nil
}

// helloFormat is the log format a Hello advertises: 0 is a node from
// before the field, which reads format 1.
func helloFormat(h *peerpb.Hello) uint8 {
	f := h.GetLogFormat()
	if f == 0 {
		return logrec.FormatV1
	}
	return uint8(min(f, 255))
}

// MemberFormat tells the leader's format gate that member id reads log
// formats up to format (0: a build from before formats were advertised,
// which reads format 1).
func (l *Leader) MemberFormat(id string, format uint8) {
	if format == 0 {
		format = logrec.FormatV1
	}
	l.formats.saw(id, format)
}

// formatGate remembers the log format each member reads.
type formatGate struct {
	mu      sync.Mutex
	members map[string]uint8
	// below is the lowest format a known member reads, less than
	// MaxFormat (0: every known member reads MaxFormat, or none is
	// known): one atomic load for every write that may use an optional
	// format (reads).
	below atomic.Uint32
}

// saw records the format node reads.
func (g *formatGate) saw(node string, format uint8) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.members == nil {
		g.members = map[string]uint8{}
	}
	g.members[node] = format
	low := uint32(0)
	for _, f := range g.members {
		if f < logrec.MaxFormat && (low == 0 || uint32(f) < low) {
			low = uint32(f)
		}
	}
	g.below.Store(low)
}

// reads reports whether every known member reads format f (at most
// MaxFormat), as check would pass it, without a lock: for what a write may
// leave out (a put's Prior) rather than refuse.
func (g *formatGate) reads(f uint8) bool {
	low := g.below.Load()
	return low == 0 || uint32(f) <= low
}

// check refuses an entry of format f unless every known member reads it,
// with an error that names the members that do not. The error is the
// client's to read (an input error): the command needs a newer format.
func (g *formatGate) check(f uint8) error {
	if f <= logrec.FormatV1 {
		return nil
	}
	if f > logrec.MaxFormat {
		return fmt.Errorf("replication: ops of log format %d, beyond this build's %d", f, logrec.MaxFormat)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var old []string
	for id, has := range g.members {
		if has < f {
			old = append(old, fmt.Sprintf("%s (format %d)", id, has))
		}
	}
	if len(old) == 0 {
		return nil
	}
	sort.Strings(old)
	return commands.InputError(fmt.Sprintf("this command needs log format %d, which members %s cannot read: upgrade them first", f, strings.Join(old, ", ")))
}

// legacyRow turns a snapshot row (package keyspace's row under its full
// key) into a format-1 row (user key, string row) for a follower that
// reads only those. A typed value cannot be sent to it.
func legacyRow(key, stored []byte) ([]byte, error) {
	if key[0] == keyspace.PrefixMeta {
		if v, err := keyspace.DecodeMetaRow(stored); err == nil && v.IsString() && !keyspace.IsChunkedRow(stored) {
			return key[1:], nil
		}
	}
	return nil, fmt.Errorf("replication: the follower reads only string snapshot rows (an older build) and the data holds typed values: upgrade it")
}
