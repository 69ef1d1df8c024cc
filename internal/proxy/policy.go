package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Policy is a session's read policy (DESIGN.md §7). The proxy routes
// leader and any itself; the others it passes to the nodes, which enforce
// them with positions (see readCmds).
type Policy struct {
	Kind  string // leader, any, ryw, monotonic, bounded, linearizable
	Bound time.Duration
}

// DefaultPolicy is read-your-writes, as on a node.
var DefaultPolicy = Policy{Kind: "ryw"}

func (p Policy) String() string {
	if p.Kind == "bounded" {
		return "bounded " + strconv.FormatInt(p.Bound.Milliseconds(), 10)
	}
	return p.Kind
}

// positional: the nodes enforce the policy with the session's positions.
func (p Policy) positional() bool { return p.Kind != "leader" && p.Kind != "any" }

// ParsePolicy parses TANDEM.READPOLICY's arguments (and --policy split on
// spaces), with the node's names and rules.
func ParsePolicy(args []string) (Policy, error) {
	if len(args) == 0 {
		return Policy{}, fmt.Errorf("no policy")
	}
	name := strings.ToLower(args[0])
	if name == "read-your-writes" {
		name = "ryw"
	}
	switch name {
	case "leader", "any", "ryw", "monotonic", "linearizable":
		if len(args) != 1 {
			return Policy{}, fmt.Errorf("%s takes no argument", name)
		}
		return Policy{Kind: name}, nil
	case "bounded":
		if len(args) != 2 {
			return Policy{}, fmt.Errorf("bounded takes the staleness in milliseconds")
		}
		ms, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || ms <= 0 || ms > 1<<40 {
			return Policy{}, fmt.Errorf("bounded: the staleness must be a positive number of milliseconds")
		}
		return Policy{Kind: name, Bound: time.Duration(ms) * time.Millisecond}, nil
	}
	return Policy{}, fmt.Errorf("unknown policy %q; want leader, any, bounded <ms>, ryw, monotonic or linearizable", args[0])
}

// position names a log entry by epoch and LSN, as the node's tokens do.
type position struct{ epoch, lsn uint64 }

func (p position) less(q position) bool {
	return p.epoch < q.epoch || (p.epoch == q.epoch && p.lsn < q.lsn)
}

func maxPos(p, q position) position {
	if p.less(q) {
		return q
	}
	return p
}

func (p position) zero() bool { return p == position{} }

// The token's text is the node's ("t1:<epoch>:<lsn>", TANDEM.TOKEN), so a
// token taken from the proxy works on a node and the other way round.
const tokenPrefix = "t1:"

func formatToken(p position) string {
	return tokenPrefix + strconv.FormatUint(p.epoch, 10) + ":" + strconv.FormatUint(p.lsn, 10)
}

func parseToken(s string) (position, error) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return position{}, fmt.Errorf("not a version-1 token")
	}
	es, ls, ok := strings.Cut(rest, ":")
	if !ok {
		return position{}, fmt.Errorf("no lsn")
	}
	e, err1 := strconv.ParseUint(es, 10, 64)
	l, err2 := strconv.ParseUint(ls, 10, 64)
	if err1 != nil || err2 != nil || (e == 0) != (l == 0) {
		return position{}, fmt.Errorf("epoch and lsn must be decimal, both 0 or neither")
	}
	return position{epoch: e, lsn: l}, nil
}

// session is a client connection's state at the proxy (resp.Session.Local).
type session struct {
	policy Policy
	// write is the highest position of the session's acknowledged writes
	// and of the tokens it was given; read the highest position a read
	// was served at. The token is the higher of the two.
	write, read position
	user        string
	owed        []*op // started ahead in a pipeline, replies owed in order
	// unsent are the connections holding owed requests' bytes not
	// written yet (the flush writes them).
	unsent []*upConn
}

func (s *session) token() position { return maxPos(s.write, s.read) }

var (
	cmdReset     = []byte("RESET")
	cmdReadPol   = []byte("TANDEM.READPOLICY")
	cmdToken     = []byte("TANDEM.TOKEN")
	cmdUser      = []byte("TANDEM.USER")
	argBoundedMs = []byte("bounded")
)

// readCmds is the policy step for a read: the commands to send one node
// so that it serves args under the session's policy, the index of args'
// reply among them, and of the reply carrying the position the read was
// served at (-1: none). withPositions says the node enforces policies.
//
// The upstream connection is shared, so a positional read carries the
// whole session state with it: the policy, the user and the floor are
// set, then the read, then TANDEM.TOKEN reads back the position it was
// served at, then RESET leaves the connection with the node's defaults
// (policy ryw with no floor, no user), which is what a bare command of
// the next session on it expects. The commands are written back to back
// on one connection, so no other session's commands come between them.
// Bare commands (leader and any sessions) leave positions on the node's
// session, never a policy or user: those only raise what TANDEM.TOKEN
// answers and the floor a later read is given, to positions the node has
// acknowledged, which can cost a read a wait or a trip elsewhere, never
// a guarantee.
func (s *session) readCmds(args [][]byte, withPositions bool) (cmds [][][]byte, at, tok int) {
	if !withPositions || !s.policy.positional() {
		return [][][]byte{args}, 0, -1
	}
	if s.policy.Kind == "bounded" {
		cmds = append(cmds, [][]byte{cmdReadPol, argBoundedMs, []byte(strconv.FormatInt(s.policy.Bound.Milliseconds(), 10))})
	} else {
		cmds = append(cmds, [][]byte{cmdReadPol, []byte(s.policy.Kind)})
	}
	if s.user != "" {
		cmds = append(cmds, [][]byte{cmdUser, []byte(s.user)})
	}
	if t := s.token(); !t.zero() {
		cmds = append(cmds, [][]byte{cmdToken, []byte(formatToken(t))})
	}
	cmds = append(cmds, args, [][]byte{cmdToken}, [][]byte{cmdReset})
	return cmds, len(cmds) - 3, len(cmds) - 2
}

// writeCmds is the policy step for a write: under a positional policy on
// nodes that enforce it, the write is sent after the session's user (so
// the leader records the write for the user) and followed by TANDEM.TOKEN,
// which answers the write's own position (or a later acknowledged one, see
// readCmds), and RESET.
func (s *session) writeCmds(args [][]byte, withPositions bool) (cmds [][][]byte, at, tok int) {
	if !withPositions || (!s.policy.positional() && s.user == "") {
		return [][][]byte{args}, 0, -1
	}
	if s.user != "" {
		cmds = append(cmds, [][]byte{cmdUser, []byte(s.user)})
	}
	cmds = append(cmds, args, [][]byte{cmdToken}, [][]byte{cmdReset})
	return cmds, len(cmds) - 3, len(cmds) - 2
}
