package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/resp/replies"
)

// Policy is a read policy (see the README's "Reads from followers"): the
// nodes enforce it, the client only carries the session's positions.
type Policy string

// The read policies. Bounded(d) makes the bounded one.
const (
	// ReadYourWrites (the default): a read reflects every write of the
	// session (and every token it was given).
	ReadYourWrites Policy = "ryw"
	// Monotonic: also never older than anything the session has read.
	Monotonic Policy = "monotonic"
	// Linearizable: a follower learns the leader's commit position under
	// the leader's lease and serves once it has applied it.
	Linearizable Policy = "linearizable"
	// Any: whatever the follower has applied.
	Any Policy = "any"
	// Leader: every read from the leader.
	Leader Policy = "leader"
)

// Bounded is the policy "a follower qualifies if it has applied everything
// the leader committed more than d ago", d rounded up to a millisecond.
func Bounded(d time.Duration) Policy {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return Policy("bounded " + strconv.FormatInt(int64(max(ms, 1)), 10))
}

func (p Policy) args() ([]any, error) {
	f := strings.Fields(string(p))
	switch {
	case len(f) == 1 && (p == ReadYourWrites || p == Monotonic || p == Linearizable || p == Any || p == Leader):
		return []any{f[0]}, nil
	case len(f) == 2 && f[0] == "bounded":
		if ms, err := strconv.Atoi(f[1]); err == nil && ms > 0 {
			return []any{f[0], f[1]}, nil
		}
	}
	return nil, fmt.Errorf("client: unknown read policy %q", string(p))
}

// SessionOptions configure a Session.
type SessionOptions struct {
	// Policy is the session's read policy; "" means ReadYourWrites.
	Policy Policy
	// User names the session's user (TANDEM.USER): reads of any session
	// of that user, through any client or proxy, reflect the user's
	// acknowledged writes (under ryw, monotonic and linearizable).
	User string
	// Token is a token from an earlier session (Session.Token), e.g.
	// kept in a web app's cookie: the session's reads reflect it.
	Token string
	// The textbook's two simpler read-your-writes variants, routing only
	// (the nodes' policies apply as well): LeaderAfterWrite sends every
	// read to the leader for that long after the session's last write,
	// and a read whose first key starts with one of LeaderPrefixes (data
	// the user owns) always goes to the leader.
	LeaderAfterWrite time.Duration
	LeaderPrefixes   []string
}

// Session is one sequence of operations (a user's request, a device)
// whose reads may go to followers under its policy. It keeps the session's
// positions: the token of its last writes, and of what it has read.
// Safe for concurrent use; concurrent calls share the positions.
//
// How the token is obtained cheaply: a write is sent to the leader as the
// pipeline TANDEM.TOKEN RESET, the command, TANDEM.TOKEN — one round trip,
// the two extra commands answered by the node's connection layer without
// touching data — and the last reply is exactly the write's position. A
// read is sent the same way to a follower with the session's token, policy
// and user in front; a follower that cannot serve it under the policy
// answers "TRYAGAIN tandem: read elsewhere", and the session sends it to
// the leader instead (Session.Stats counts both).
type Session struct {
	c      *Client
	policy Policy
	pargs  []any
	user   string
	id     uint64 // picks the monotonic session's follower when it has no user

	leaderAfter    time.Duration
	leaderPrefixes []string
	lastWrite      atomic.Int64 // Unix ns of the last acknowledged Do

	mu    sync.Mutex
	write position // the highest of the session's writes and given tokens
	read  position // the highest position it has read at

	followerReads, leaderReads, elsewhere atomic.Int64
}

// NewSession starts a session on the client.
func (c *Client) NewSession(opt SessionOptions) (*Session, error) {
	if opt.Policy == "" {
		opt.Policy = ReadYourWrites
	}
	pargs, err := opt.Policy.args()
	if err != nil {
		return nil, err
	}
	s := &Session{c: c, policy: opt.Policy, pargs: pargs, user: opt.User, id: rand.Uint64(),
		leaderAfter: opt.LeaderAfterWrite, leaderPrefixes: opt.LeaderPrefixes}
	if opt.Token != "" {
		if s.write, err = parsePosition(opt.Token); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Token returns the session's token, for SessionOptions.Token of a later
// session (on any client or connection: TANDEM.TOKEN accepts it too).
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write.max(s.read).String()
}

// Stats returns how many reads followers served, the leader served, and
// how many of those a follower first answered "read elsewhere".
func (s *Session) Stats() (followers, leader, elsewhere int64) {
	return s.followerReads.Load(), s.leaderReads.Load(), s.elsewhere.Load()
}

// Do runs a command that is not a plain read (a write, or anything that
// must see the leader) on the leader and records its position.
func (s *Session) Do(ctx context.Context, args ...any) *redis.Cmd {
	var cmd, tok *redis.Cmd
	_, _ = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "tandem.token", "reset")
		p.Do(ctx, "tandem.user", s.user) // "" clears a pooled connection's user
		cmd = p.Do(ctx, args...)
		tok = p.Do(ctx, "tandem.token")
		return nil
	})
	if cmd.Err() == nil {
		s.note(tok, true)
		s.lastWrite.Store(time.Now().UnixNano())
	}
	return cmd
}

// Get is Read of GET key.
func (s *Session) Get(ctx context.Context, key string) *redis.Cmd {
	return s.Read(ctx, "get", key)
}

// Read runs a read command under the session's policy: on a follower when
// the policy allows one, else (or when the follower answers "read
// elsewhere", or cannot be reached) on the leader.
func (s *Session) Read(ctx context.Context, args ...any) *redis.Cmd {
	return s.ReadAs(ctx, s.policy, args...)
}

// ReadAs is Read under another policy for this one call.
func (s *Session) ReadAs(ctx context.Context, p Policy, args ...any) *redis.Cmd {
	pargs := s.pargs
	if p != s.policy {
		var err error
		if pargs, err = p.args(); err != nil {
			cmd := redis.NewCmd(ctx, args...)
			cmd.SetErr(err)
			return cmd
		}
	}
	if p != Leader && !s.leaderOnly(args) {
		if f := s.c.replica(s.pick(p)); f != nil {
			cmd, tok := s.readOn(ctx, f, p, pargs, args)
			switch err := cmd.Err(); {
			case err == nil || errors.Is(err, redis.Nil):
				s.followerReads.Add(1)
				s.note(tok, false)
				return cmd
			case isReadElsewhere(err):
				s.elsewhere.Add(1)
			default:
				var re redis.Error
				if errors.As(err, &re) && !isNodeRefusal(err) {
					return cmd // the command's own answer (WRONGTYPE...)
				}
				// The follower is unreachable, fenced or loading: the
				// leader serves.
			}
		}
	}
	cmd, tok := s.readOn(ctx, s.c.Client, p, pargs, args)
	if err := cmd.Err(); err == nil || errors.Is(err, redis.Nil) {
		s.leaderReads.Add(1)
		s.note(tok, false)
	}
	return cmd
}

// leaderOnly reports whether the session's routing options send this read
// to the leader: soon after a write, or a key under a leader prefix.
func (s *Session) leaderOnly(args []any) bool {
	if s.leaderAfter > 0 && time.Since(time.Unix(0, s.lastWrite.Load())) < s.leaderAfter {
		return true
	}
	if len(args) > 1 && len(s.leaderPrefixes) > 0 {
		key := fmt.Sprint(args[1])
		for _, p := range s.leaderPrefixes {
			if strings.HasPrefix(key, p) {
				return true
			}
		}
	}
	return false
}

// readOn sends the read with the session's state in front, and
// TANDEM.TOKEN after it, in one round trip.
func (s *Session) readOn(ctx context.Context, c redis.Cmdable, p Policy, pargs, args []any) (cmd, tok *redis.Cmd) {
	s.mu.Lock()
	floor := s.write
	if p == Monotonic {
		floor = floor.max(s.read)
	}
	s.mu.Unlock()
	_, _ = c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.Do(ctx, "tandem.token", "reset")
		if floor != (position{}) {
			pl.Do(ctx, "tandem.token", floor.String())
		}
		pl.Do(ctx, append([]any{"tandem.readpolicy"}, pargs...)...)
		pl.Do(ctx, "tandem.user", s.user) // "" clears a pooled connection's user
		cmd = pl.Do(ctx, args...)
		tok = pl.Do(ctx, "tandem.token")
		return nil
	})
	return cmd, tok
}

// note records the position a command left in the connection's token.
func (s *Session) note(tok *redis.Cmd, write bool) {
	v, err := tok.Text()
	if err != nil {
		return
	}
	pos, err := parsePosition(v)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if write {
		s.write = s.write.max(pos)
	} else {
		s.read = s.read.max(pos)
	}
}

// pick chooses the follower for a read: a monotonic session sticks to one
// (by its user, else itself) so that it needs no wait; others spread.
func (s *Session) pick(p Policy) string {
	rs := s.c.replicaAddrs()
	if len(rs) == 0 {
		return ""
	}
	if p == Monotonic {
		h := fnv.New64a()
		if s.user != "" {
			h.Write([]byte(s.user))
		} else {
			fmt.Fprint(h, s.id)
		}
		return rs[h.Sum64()%uint64(len(rs))]
	}
	return rs[rand.IntN(len(rs))]
}

func isReadElsewhere(err error) bool {
	return strings.HasPrefix(err.Error(), replies.ReadElsewhere)
}

// isNodeRefusal: an error reply that is the node's state, not the
// command's answer.
func isNodeRefusal(err error) bool {
	for _, p := range []string{"LOADING", "MASTERDOWN", "TRYAGAIN", "READONLY"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// position is a token's (epoch, LSN).
type position struct{ epoch, lsn uint64 }

func (p position) String() string {
	return "t1:" + strconv.FormatUint(p.epoch, 10) + ":" + strconv.FormatUint(p.lsn, 10)
}

func (p position) max(q position) position {
	if q.epoch > p.epoch || (q.epoch == p.epoch && q.lsn > p.lsn) {
		return q
	}
	return p
}

func parsePosition(s string) (position, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 || f[0] != "t1" {
		return position{}, fmt.Errorf("client: malformed token %q", s)
	}
	e, err1 := strconv.ParseUint(f[1], 10, 64)
	l, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return position{}, fmt.Errorf("client: malformed token %q", s)
	}
	return position{e, l}, nil
}

// replicas are the client's connections to followers, by RESP address.
type replicas struct {
	mu    sync.Mutex
	addrs []string // the followers of the leader of the moment
	conns map[string]*redis.Client
}

func (c *Client) setReplicas(addrs []string) {
	c.reps.mu.Lock()
	defer c.reps.mu.Unlock()
	c.reps.addrs = addrs
}

func (c *Client) replicaAddrs() []string {
	c.reps.mu.Lock()
	defer c.reps.mu.Unlock()
	return c.reps.addrs
}

// replica returns the client of the follower at addr, nil for "".
func (c *Client) replica(addr string) *redis.Client {
	if addr == "" {
		return nil
	}
	c.reps.mu.Lock()
	defer c.reps.mu.Unlock()
	if rc, ok := c.reps.conns[addr]; ok {
		return rc
	}
	if c.reps.conns == nil {
		c.reps.conns = map[string]*redis.Client{}
	}
	ro := c.ro
	ro.Addr = addr
	ro.MaxRetries = -1 // a failed read goes to the leader instead
	rc := redis.NewClient(&ro)
	c.reps.conns[addr] = rc
	return rc
}

func (c *Client) closeReplicas() {
	c.reps.mu.Lock()
	defer c.reps.mu.Unlock()
	for _, rc := range c.reps.conns {
		rc.Close()
	}
	c.reps.conns = nil
}
