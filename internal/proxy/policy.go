package proxy

import (
	"strconv"
	"time"

	"github.com/tandemdb/tandem/internal/resp"
)

// Policy is a session's read policy (DESIGN.md §7), parsed and printed
// as the node does (resp.ParsePolicy, so the names, rules and error texts
// are the node's). The proxy routes leader and any itself; the others it
// passes to the nodes, which enforce them with positions (see readCmds).
type Policy = resp.Policy

// DefaultPolicy is read-your-writes, as on a node.
var DefaultPolicy = Policy{Kind: resp.PolicyRYW}

// positional: the nodes enforce the policy with the session's positions.
func positional(p Policy) bool { return p.Kind != resp.PolicyLeader && p.Kind != resp.PolicyAny }

// policyName is the policy's name without bounded's argument, the key of
// the per-policy counters.
func policyName(p Policy) string {
	if p.Kind == resp.PolicyBounded {
		return "bounded"
	}
	return p.String()
}

// position names a log entry by epoch and LSN; its text is the node's
// token (resp.FormatToken, "t1:<epoch>:<lsn>"), so a token taken from the
// proxy works on a node and the other way round.
type position = resp.Position

func less(p, q position) bool {
	return p.Epoch < q.Epoch || (p.Epoch == q.Epoch && p.LSN < q.LSN)
}

func maxPos(p, q position) position {
	if less(p, q) {
		return q
	}
	return p
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
	// burst are writes of the pipeline not queued yet, to be sent as one
	// run (joinBurst); queued before anything else the session sends.
	burst *burst
	// unsent are the connections holding owed requests' bytes not
	// written yet (the flush writes them).
	unsent []*upConn
	// timer bounds a wait for a node's reply (await), reused.
	timer *time.Timer
	// pin is the session's own connection to the leader while it holds a
	// transaction or watches (tx.go); nil otherwise.
	pin *pinned
	// blk is the session's own connection to the leader for blocking
	// commands (block.go), kept between them; nil before the first.
	blk *pinned
}

// burst is a run of a pipeline's writes for one leader.
type burst struct {
	node *node
	ops  []*op
}

func (s *session) token() position { return maxPos(s.write, s.read) }

// floor is the position a read of the session is sent with (the node's
// floor for it): under ryw its writes and given tokens, as a node's own
// ryw session has (what it read is in its token, not its floor: a read
// served by the leader would otherwise hold every later read to a
// position the followers reach only a lag later, and keep the session on
// the leader); under the other policies its token.
func (s *session) floor() position {
	if s.policy.Kind == resp.PolicyRYW {
		return s.write
	}
	return s.token()
}

var (
	cmdReset     = []byte("RESET")
	cmdReadPol   = []byte("TANDEM.READPOLICY")
	cmdToken     = []byte("TANDEM.TOKEN")
	cmdApplied   = []byte("TANDEM.APPLIED")
	cmdUser      = []byte("TANDEM.USER")
	argBoundedMs = []byte("bounded")
	argReset     = []byte("RESET")
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
	if !withPositions || !positional(s.policy) {
		return [][][]byte{args}, 0, -1
	}
	if s.policy.Kind == resp.PolicyBounded {
		cmds = append(cmds, [][]byte{cmdReadPol, argBoundedMs, []byte(strconv.FormatInt(s.policy.Bound.Milliseconds(), 10))})
	} else {
		cmds = append(cmds, [][]byte{cmdReadPol, []byte(s.policy.String())})
	}
	if s.user != "" {
		cmds = append(cmds, [][]byte{cmdUser, []byte(s.user)})
	}
	if t := s.floor(); t != (position{}) {
		cmds = append(cmds, [][]byte{cmdToken, []byte(resp.FormatToken(t))})
	}
	cmds = append(cmds, args, [][]byte{cmdToken}, [][]byte{cmdReset})
	return cmds, len(cmds) - 3, len(cmds) - 2
}

// knownReadCmds is the policy step for a ryw or monotonic read (of a
// session without a user) on a node known to have applied its floor in
// the floor's epoch (node.knownAppliedIn): the floor needs no wait there,
// so the read goes without the session's state, as TANDEM.TOKEN RESET,
// the read, TANDEM.TOKEN: 3 commands for the node instead of 5. The
// token then is the position this read was served at, read after its
// data, and the caller checks it (floorProven) before answering: in the
// floor's epoch and at or past it, it proves the node had the floor
// applied when the read ran (a node's applied position only grows within
// an epoch's history; a node that fails is forgotten). Otherwise the read
// is sent again with the session's state, for the node to enforce.
// TANDEM.TOKEN RESET comes first so that the token is this read's alone,
// not raised by what other sessions' bare commands left on the shared
// connection. The node serves it under its connection's default policy
// (ryw without a floor, what every positional step leaves it at).
// The commands are written into dst (the op's own storage), around the
// two fixed ones, so that the form costs no allocation per read.
func knownReadCmds(dst *[3][][]byte, args [][]byte) (cmds [][][]byte, at, tok int) {
	*dst = [3][][]byte{knownReset, args, knownToken}
	return dst[:], 1, knownTok
}

// knownTok is the token's index in the known form.
const knownTok = 2

// The fixed commands of the known form, shared by every read (never
// written to: a call only reads its commands).
var (
	knownReset = [][]byte{cmdToken, argReset}
	knownToken = [][]byte{cmdToken}
)

// floorProven: a read sent by knownReadCmds and served at served (its
// token) reflects floor.
func floorProven(floor, served position) bool {
	return floor == (position{}) || (served.Epoch == floor.Epoch && served.LSN >= floor.LSN)
}

// writeCmds is the policy step for writes, one or a burst of a
// pipeline's (all for the leader): under a positional policy or with a
// user, on nodes that enforce positions, they are sent after the
// session's user (so the leader records them for the user) and followed
// by TANDEM.TOKEN, which answers the last one's position (or a later
// acknowledged one, see readCmds). Then what they set on the node's
// session is undone, as RESET would, but with TANDEM.USER "" and
// TANDEM.TOKEN RESET: a node starts those in a pipeline without waiting
// for the writes before them to commit (RESET would make it wait, and
// with it every other session's commands on the shared connection). at
// gives each write's reply index, tok the token's (-1: none).
func (s *session) writeCmds(writes [][][]byte, withPositions bool) (cmds [][][]byte, at []int, tok int) {
	at = make([]int, len(writes))
	if !withPositions || (!positional(s.policy) && s.user == "") {
		for i := range at {
			at[i] = i
		}
		return writes, at, -1
	}
	cmds = make([][][]byte, 0, len(writes)+3)
	if s.user != "" {
		cmds = append(cmds, [][]byte{cmdUser, []byte(s.user)})
	}
	for i, w := range writes {
		at[i] = len(cmds)
		cmds = append(cmds, w)
	}
	tok = len(cmds)
	cmds = append(cmds, [][]byte{cmdToken})
	if s.user != "" {
		cmds = append(cmds, [][]byte{cmdUser, nil})
	}
	cmds = append(cmds, [][]byte{cmdToken, argReset})
	return cmds, at, tok
}
