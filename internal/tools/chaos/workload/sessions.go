package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Sessions: besides the plain clients, the workload can run sessions under
// read policies (DESIGN.md §7), each a client id of its own issuing one
// operation at a time and carrying its position token from one operation
// to the next, as an application keeps it in its session store. Each
// operation is one pipeline on one connection of the node it goes to, so
// the node's per-connection state is the session's for that operation
// only (the pool's connections are shared by the sessions):
//
//	write: TANDEM.TOKEN RESET, TANDEM.READPOLICY <policy>, SET|INCR ...,
//	       TANDEM.TOKEN
//	read:  TANDEM.TOKEN RESET, TANDEM.READPOLICY <policy>,
//	       [TANDEM.TOKEN <token>], GET key, TANDEM.TOKEN
//
// The session's token is raised to what the final TANDEM.TOKEN answers.
// Writes go to the leader; reads to a follower (a monotonic session always
// to the same one while the followers stay the same), and a read the
// follower answers TRYAGAIN (read elsewhere) or LOADING is sent once
// more, to the leader, as a proxy would. A session through the proxy
// (Config.ProxyConn) sends the same pipelines to the proxy, which answers
// the TANDEM.* commands from its own per-connection session (the policy
// is set before a write too: the proxy reads the write's position back
// only under a positional policy) and routes the rest. If one of the commands that set
// the session's state is refused, the read is Failed: it ran without the
// session's floor and says nothing about the policy.

// SessionConn is the part of a go-redis client a session uses: a pipeline
// runs on one connection.
type SessionConn interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// SessionClient is the client id of session i: after the plain clients,
// the final reads' (Clients) and the nemesis's (Clients+1).
func (c Config) SessionClient(i int) int { return c.Clients + 2 + i }

// sessionPolicies lists each session's policy, SessionsPerPolicy of each.
func (c Config) sessionPolicies() []string {
	n := max(1, c.SessionsPerPolicy)
	var ps []string
	for _, p := range c.Policies {
		for range n {
			ps = append(ps, p)
		}
	}
	return ps
}

// CheckPolicies validates policies in TANDEM.READPOLICY's syntax.
func CheckPolicies(policies []string) error {
	for _, p := range policies {
		if _, err := resp.ParsePolicy(strings.Fields(p)); err != nil {
			return fmt.Errorf("workload: read policy %q: %w", p, err)
		}
	}
	return nil
}

type session struct {
	id     int
	policy string
	cfg    Config
	rec    *history.Recorder
	r      *rand.Rand
	seq    int
	token  resp.Position
	last   string // the key of the session's last write
	// proxy: the session goes through Config.ProxyConn, which routes
	// and falls back itself and keeps the session's state per
	// connection, so the same pipelines work there.
	proxy bool
}

func (s *session) run(ctx context.Context, issued interface{ Add(int64) int64 }) {
	paced(ctx, s.cfg, issued, func() { s.rec.Add(s.next(ctx)) })
}

// next chooses and performs one operation: 30% SET of a register, 15%
// INCR of a counter, 55% GET, half of them of the key the session wrote
// last (a user who saves and reloads: where read-your-writes bites), the
// others of any key.
func (s *session) next(ctx context.Context) history.Op {
	reg := "r:" + strconv.Itoa(s.r.IntN(s.cfg.Registers))
	ctr := "c:" + strconv.Itoa(s.r.IntN(s.cfg.Counters))
	roll := s.r.IntN(100)
	leader, fs := s.cfg.leader(), s.cfg.followers()
	switch {
	case roll < 30:
		s.seq++
		return s.write(ctx, leader, history.Op{Key: reg, Kind: history.Write, Value: fmt.Sprintf("s%d.%d", s.id, s.seq)})
	case roll < 45:
		return s.write(ctx, leader, history.Op{Key: ctr, Kind: history.Incr})
	}
	key := reg
	switch {
	case roll >= 72 && s.last != "":
		key = s.last
	case roll >= 65:
		key = ctr
	}
	node := leader
	if s.proxy {
		return s.read(ctx, 0, leader, key)
	}
	if len(fs) > 0 {
		if strings.HasPrefix(s.policy, "monotonic") {
			node = fs[s.id%len(fs)] // sticky
		} else {
			node = fs[s.r.IntN(len(fs))]
		}
	}
	op := s.read(ctx, node, leader, key)
	if op.Outcome == history.Failed && node != leader && elsewhere(op.Err) {
		again := s.read(ctx, leader, leader, key)
		again.Call = op.Call // one read, as the application sees it
		op = again
	}
	return op
}

// elsewhere: the follower refused the read, which may go to the leader.
func elsewhere(msg string) bool {
	return strings.HasPrefix(msg, "TRYAGAIN") || strings.HasPrefix(msg, "LOADING")
}

func (s *session) write(ctx context.Context, node int, op history.Op) history.Op {
	op.Client, op.Node, op.Policy, op.Proxy = s.id, node, s.policy, s.proxy
	if s.proxy {
		op.Node = 0
	}
	args := []any{"SET", op.Key, op.Value}
	if op.Kind == history.Incr {
		args = []any{"INCR", op.Key}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	var cmd, tok *redis.Cmd
	op.Call = s.rec.Now()
	_, _ = s.conn(node).Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "TANDEM.TOKEN", "RESET")
		p.Do(ctx, s.policyArgs()...)
		cmd = p.Do(ctx, args...)
		tok = p.Do(ctx, "TANDEM.TOKEN")
		return nil
	})
	op.Return = s.rec.Now()
	op.Outcome, op.Err = Classify(cmd.Err())
	s.last = op.Key
	if op.Outcome != history.OK {
		return op
	}
	if op.Kind == history.Incr {
		op.N, _ = cmd.Int64()
	}
	s.raise(tok)
	return op
}

func (s *session) read(ctx context.Context, node, leader int, key string) history.Op {
	op := history.Op{Client: s.id, Key: key, Kind: history.Read, Node: node, Follower: node != leader, Policy: s.policy, Proxy: s.proxy}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	var setup []*redis.Cmd
	var get, tok *redis.Cmd
	op.Call = s.rec.Now()
	_, _ = s.conn(node).Pipelined(ctx, func(p redis.Pipeliner) error {
		setup = append(setup, p.Do(ctx, "TANDEM.TOKEN", "RESET"))
		setup = append(setup, p.Do(ctx, s.policyArgs()...))
		if s.token != (resp.Position{}) {
			setup = append(setup, p.Do(ctx, "TANDEM.TOKEN", resp.FormatToken(s.token)))
		}
		get = p.Do(ctx, "GET", key)
		tok = p.Do(ctx, "TANDEM.TOKEN")
		return nil
	})
	op.Return = s.rec.Now()
	for _, c := range setup {
		if err := c.Err(); err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) {
				op.Outcome, op.Err = history.Failed, "session state refused: "+err.Error()
			} else {
				op.Outcome, op.Err = Classify(err)
			}
			return op
		}
	}
	v, err := get.Text()
	if errors.Is(err, redis.Nil) {
		op.Outcome = history.OK
	} else if op.Outcome, op.Err = Classify(err); op.Outcome == history.OK {
		op.Found, op.Result = true, v
	}
	if op.Outcome == history.OK {
		s.raise(tok)
	}
	return op
}

// raise takes the token a TANDEM.TOKEN answered as the session's, if it
// is higher. An unreadable answer leaves the token as it was: the next
// reads then ask less than they could, which the checker would see.
func (s *session) raise(tok *redis.Cmd) {
	t, err := tok.Text()
	if err != nil {
		return
	}
	p, err := resp.ParseToken(t)
	if err != nil {
		return
	}
	if s.token.Epoch < p.Epoch || (s.token.Epoch == p.Epoch && s.token.LSN < p.LSN) {
		s.token = p
	}
}

func (s *session) policyArgs() []any {
	pol := []any{"TANDEM.READPOLICY"}
	for _, f := range strings.Fields(s.policy) {
		pol = append(pol, f)
	}
	return pol
}

func (s *session) conn(node int) SessionConn {
	if s.proxy {
		return s.cfg.ProxyConn
	}
	return s.cfg.SessionConns[node]
}
