package resp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// Reads under replication lag: a node connection's read policy, position
// token and user (DESIGN.md §7). The node enforces them; a client never
// estimates.
//
//	TANDEM.READPOLICY                     the policy in force
//	TANDEM.READPOLICY leader|any|ryw|monotonic|linearizable
//	TANDEM.READPOLICY bounded <ms>
//	TANDEM.TOKEN                          the session's token: "t1:<epoch>:<lsn>"
//	TANDEM.TOKEN <token>                  raise the session's floor to it
//	TANDEM.TOKEN RESET                    drop the session's positions
//	TANDEM.USER                           the session's user (nil if none)
//	TANDEM.USER <id>                      name the session's user ("" for none)
//	TANDEM.APPLIED                        the node's applied position, as a token
//	TANDEM.APPLIED LINEARIZABLE           the same once the node has applied
//	                                      the leader's commit position learned
//	                                      after the command began (as a
//	                                      linearizable read waits)
//
// A position names a log entry by epoch and LSN. The session keeps two:
// the highest of its acknowledged writes and of the tokens it was given
// (its write floor), and the highest position it has read at. Its token
// is the higher of the two, so a token handed to another connection (a
// web app's cookie) carries both. Positions compare by epoch, then LSN
// (replication.Compare). RESET drops both and the user, and sets the
// policy back to ryw.
//
// What each policy makes the Backend (PositionBackend.ReadAt) enforce:
//
//	ryw           floor = write floor; a follower waits (read wait) for it
//	monotonic     floor = the token (writes and reads)
//	linearizable  floor = write floor, and the leader's commit position
//	              asked under its lease
//	bounded <ms>  the node's staleness ≤ ms, on the leader's clock
//	any           nothing: whatever the node has applied
//	leader        a follower refuses (read elsewhere)
//
// With TANDEM.USER set, ryw, monotonic and linearizable reads also wait
// for the user's last write as the leader knows it (cross-device
// read-your-writes), and every acknowledged write is recorded for the user.
// TANDEM.APPLIED reads and changes none of the session's state: it is
// what a proxy's batch of linearizable reads begins and ends with (its
// package proxy, readindex.go), one command each, where the session
// commands took four and three. A read a node cannot serve under the
// policy is answered
// "TRYAGAIN tandem: read elsewhere: <why>", which a proxy or client takes
// as "go to another node, at the latest the leader"; the leader serves
// every legitimate position at once.

// Position names a log entry: the epoch it was written in, and its LSN.
// The zero Position is before every entry.
type Position struct{ Epoch, LSN uint64 }

func (p Position) less(q Position) bool {
	return p.Epoch < q.Epoch || (p.Epoch == q.Epoch && p.LSN < q.LSN)
}

func maxPos(p, q Position) Position {
	if p.less(q) {
		return q
	}
	return p
}

// tokenPrefix versions the token's text, so that it can change.
const tokenPrefix = "t1:"

// FormatToken is the text of a session's token.
func FormatToken(p Position) string {
	return tokenPrefix + strconv.FormatUint(p.Epoch, 10) + ":" + strconv.FormatUint(p.LSN, 10)
}

// ParseToken parses FormatToken's text.
func ParseToken(s string) (Position, error) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Position{}, fmt.Errorf("not a version-1 token")
	}
	es, ls, ok := strings.Cut(rest, ":")
	if !ok {
		return Position{}, fmt.Errorf("no lsn")
	}
	e, err1 := strconv.ParseUint(es, 10, 64)
	l, err2 := strconv.ParseUint(ls, 10, 64)
	if err1 != nil || err2 != nil || (e == 0) != (l == 0) {
		return Position{}, fmt.Errorf("epoch and lsn must be decimal, both 0 or neither")
	}
	return Position{Epoch: e, LSN: l}, nil
}

// PolicyKind is a read policy.
type PolicyKind int

// The read policies; the zero value is the default, ryw.
const (
	PolicyRYW PolicyKind = iota
	PolicyLeader
	PolicyAny
	PolicyBounded
	PolicyMonotonic
	PolicyLinearizable
)

var policyNames = [...]string{"ryw", "leader", "any", "bounded", "monotonic", "linearizable"}

// Policy is a connection's read policy; Bound is bounded's staleness.
type Policy struct {
	Kind  PolicyKind
	Bound time.Duration
}

func (p Policy) String() string {
	if p.Kind == PolicyBounded {
		return "bounded " + strconv.FormatInt(p.Bound.Milliseconds(), 10)
	}
	return policyNames[p.Kind]
}

// ParsePolicy parses TANDEM.READPOLICY's arguments: a name, and for
// bounded a positive number of milliseconds.
func ParsePolicy(args []string) (Policy, error) {
	if len(args) == 0 {
		return Policy{}, fmt.Errorf("no policy")
	}
	name := strings.ToLower(args[0])
	if name == "read-your-writes" {
		name = "ryw"
	}
	for k, n := range policyNames {
		if n != name {
			continue
		}
		if PolicyKind(k) != PolicyBounded {
			if len(args) != 1 {
				return Policy{}, fmt.Errorf("%s takes no argument", n)
			}
			return Policy{Kind: PolicyKind(k)}, nil
		}
		if len(args) != 2 {
			return Policy{}, fmt.Errorf("bounded takes the staleness in milliseconds")
		}
		ms, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || ms <= 0 || ms > 1<<40 {
			return Policy{}, fmt.Errorf("bounded: the staleness must be a positive number of milliseconds")
		}
		return Policy{Kind: PolicyBounded, Bound: time.Duration(ms) * time.Millisecond}, nil
	}
	return Policy{}, fmt.Errorf("unknown policy %q; want leader, any, bounded <ms>, ryw, monotonic or linearizable", args[0])
}

// ReadRequest is what a read must reflect under the session's policy.
type ReadRequest struct {
	Policy Policy
	// Floor is the position the read must reflect (see the table above);
	// the zero Position asks nothing.
	Floor Position
	// User is the session's user ("" if none).
	User string
}

// PositionBackend is the optional Backend capability behind read
// policies; a Backend without it serves every read as Read does and its
// sessions' tokens stay at zero.
type PositionBackend interface {
	// ReadAt runs a FlagRead command as Read does, once the node may
	// serve it under req, and returns the position the read was served
	// at: at or after everything the reply reflects. A node that cannot
	// serve it under req returns an ErrReadElsewhere error; a floor the
	// leader's history has replaced, ErrPositionLost.
	ReadAt(ctx context.Context, spec *commands.Spec, args [][]byte, req ReadRequest) (commands.Reply, Position, error)
	// Acknowledged is told of each write the node acknowledged to a
	// session, logged at lsn, with the session's user (""): it returns
	// the write's position, and records it as the user's last write.
	Acknowledged(user string, lsn uint64) Position
}

// sessionReads is a node connection's read state.
type sessionReads struct {
	policy Policy
	write  Position // highest acknowledged write or given token
	read   Position // highest position a read was served at
	user   string
}

func (r *sessionReads) token() Position { return maxPos(r.write, r.read) }

// request is the ReadRequest for the session's next read.
func (r *sessionReads) request() ReadRequest {
	req := ReadRequest{Policy: r.policy, User: r.user}
	switch r.policy.Kind {
	case PolicyRYW, PolicyLinearizable:
		req.Floor = r.write
	case PolicyMonotonic:
		req.Floor = r.token()
	}
	return req
}

func cmdReadPolicy(_ *node, c redcon.Conn, sess *Session, args [][]byte) {
	r := &nodeState(sess).reads
	if len(args) == 1 {
		c.WriteBulkString(r.policy.String())
		return
	}
	s := make([]string, len(args)-1)
	for i, a := range args[1:] {
		s[i] = string(a)
	}
	p, err := ParsePolicy(s)
	if err != nil {
		c.WriteError("ERR tandem: " + oneLine(err.Error()))
		return
	}
	r.policy = p
	c.WriteString("OK")
}

func cmdToken(_ *node, c redcon.Conn, sess *Session, args [][]byte) {
	r := &nodeState(sess).reads
	switch {
	case len(args) == 1:
		c.WriteBulkString(FormatToken(r.token()))
		return
	case len(args) > 2:
		c.WriteError(errArity("tandem.token"))
		return
	case strings.EqualFold(string(args[1]), "reset"):
		r.write, r.read = Position{}, Position{}
		c.WriteString("OK")
		return
	}
	p, err := ParseToken(string(args[1]))
	if err != nil {
		c.WriteError(errBadToken(args[1], err))
		return
	}
	r.write = maxPos(r.write, p)
	c.WriteString("OK")
}

// dbsize is the read TANDEM.APPLIED runs for its position: the cheapest
// (a counter).
var dbsize = func() *commands.Spec {
	s, ok := commands.Lookup([]byte("dbsize"))
	if !ok {
		panic("resp: no DBSIZE in the commands table")
	}
	return s
}()

var dbsizeArgs = [][]byte{[]byte("DBSIZE")}

// cmdApplied answers the position a read served now would be served at:
// under policy any (no argument) or linearizable (LINEARIZABLE, with no
// floor and no user), whatever the session's; it changes none of the
// session's state. Without read policies it answers the zero token.
func cmdApplied(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	req := ReadRequest{Policy: Policy{Kind: PolicyAny}}
	switch {
	case len(args) > 2:
		c.WriteError(errArity("tandem.applied"))
		return
	case len(args) == 2 && !strings.EqualFold(string(args[1]), "linearizable"):
		c.WriteError("ERR tandem: TANDEM.APPLIED takes no argument or LINEARIZABLE")
		return
	case len(args) == 2:
		req.Policy.Kind = PolicyLinearizable
	}
	if n.pos == nil {
		c.WriteBulkString(FormatToken(Position{}))
		return
	}
	ctx := sess.enter()
	_, at, err := n.pos.ReadAt(ctx, dbsize, dbsizeArgs, req)
	sess.leave()
	if err != nil {
		c.WriteError(n.srv.errorText(err, sess, "tandem.applied"))
		return
	}
	c.WriteBulkString(FormatToken(at))
}

func cmdUser(_ *node, c redcon.Conn, sess *Session, args [][]byte) {
	r := &nodeState(sess).reads
	switch {
	case len(args) == 1 && r.user == "":
		writeNull(c, sess.proto3(), false)
	case len(args) == 1:
		c.WriteBulkString(r.user)
	case len(args) > 2 || len(args[1]) > 256:
		c.WriteError("ERR tandem: TANDEM.USER takes one id of at most 256 bytes (\"\" for none)")
	default:
		r.user = string(args[1])
		c.WriteString("OK")
	}
}
