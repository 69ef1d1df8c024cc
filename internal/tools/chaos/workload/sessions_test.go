package workload

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// posCluster is a fake of a cluster with positions: the leader applies
// each write at once at the next LSN; the follower has applied only up to
// frozen (it lags forever), and under a positional policy refuses a read
// whose floor it has not applied with TRYAGAIN read elsewhere, as a node
// does once its read wait ran out, unless ignoreToken (the planted bug).
type posCluster struct {
	mu          sync.Mutex
	log         []map[string]string // log[i]: the keyspace at LSN i
	frozen      int
	ignoreToken bool
}

type posConn struct {
	policy string
	floor  uint64
	at     uint64
}

func (c *posCluster) serve(t *testing.T, leader bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := redcon.NewServer(ln.Addr().String(), func(rc redcon.Conn, cmd redcon.Command) {
		c.handle(rc, cmd, leader)
	}, func(rc redcon.Conn) bool { rc.SetContext(&posConn{}); return true }, nil)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func (c *posCluster) handle(rc redcon.Conn, cmd redcon.Command, leader bool) {
	s := rc.Context().(*posConn)
	c.mu.Lock()
	defer c.mu.Unlock()
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	applied := len(c.log) - 1
	if !leader {
		applied = c.frozen
	}
	switch strings.ToUpper(args[0]) {
	case "TANDEM.TOKEN":
		switch {
		case len(args) == 1:
			rc.WriteBulkString(resp.FormatToken(resp.Position{Epoch: 1, LSN: max(s.floor, s.at)}))
		case strings.EqualFold(args[1], "reset"):
			s.floor, s.at = 0, 0
			rc.WriteString("OK")
		default:
			p, err := resp.ParseToken(args[1])
			if err != nil {
				rc.WriteError("ERR bad token")
				return
			}
			s.floor = max(s.floor, p.LSN)
			rc.WriteString("OK")
		}
	case "TANDEM.READPOLICY":
		s.policy = strings.Join(args[1:], " ")
		rc.WriteString("OK")
	case "SET", "INCR":
		if !leader {
			rc.WriteError("READONLY")
			return
		}
		next := map[string]string{}
		for k, v := range c.log[len(c.log)-1] {
			next[k] = v
		}
		if args[0] == "SET" {
			next[args[1]] = args[2]
		} else {
			n, _ := strconv.Atoi(next[args[1]])
			next[args[1]] = strconv.Itoa(n + 1)
		}
		c.log = append(c.log, next)
		s.floor = uint64(len(c.log) - 1)
		if args[0] == "SET" {
			rc.WriteString("OK")
		} else {
			n, _ := strconv.Atoi(next[args[1]])
			rc.WriteInt(n)
		}
	case "GET":
		if !leader && s.policy != "any" && !c.ignoreToken && s.floor > uint64(applied) {
			rc.WriteError("TRYAGAIN tandem: read elsewhere: behind the session")
			return
		}
		s.at = max(s.at, uint64(applied))
		if v, ok := c.log[applied][args[1]]; ok {
			rc.WriteBulkString(v)
		} else {
			rc.WriteNull()
		}
	default:
		rc.WriteError("ERR unknown command")
	}
}

// runSessions runs sessions under policies against the fake: node 1
// leads, node 2 follows frozen at LSN 0, and returns the history.
func runSessions(t *testing.T, c *posCluster, policies ...string) history.History {
	t.Helper()
	sconns := map[int]SessionConn{}
	for id, leader := range map[int]bool{1: true, 2: false} {
		cl := redis.NewClient(&redis.Options{Addr: c.serve(t, leader), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = cl.Close() })
		sconns[id] = cl
	}
	s := newStore()
	cfg := Config{Clients: 1, Registers: 3, Counters: 2, Seed: 7, Leader: 1, Followers: []int{2},
		Policies: policies, SessionsPerPolicy: 2, SessionConns: sconns, MaxOps: 1400, Rate: 2000, OpTimeout: 2 * time.Second}
	rec := history.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The plain client works on its own fake store: only the sessions
	// are looked at here.
	if err := Run(ctx, cfg, conns(s), rec); err != nil {
		t.Fatal(err)
	}
	return rec.History(cfg.Seed)
}

func newPosCluster() *posCluster {
	return &posCluster{log: []map[string]string{{}}}
}

// Sessions carry their token: a follower behind it refuses, the read goes
// to the leader, and the session reads its writes; a follower that ignores
// the token is caught by the checker.
func TestSessionsCarryTheirToken(t *testing.T) {
	h := runSessions(t, newPosCluster(), "ryw", "monotonic", "any")
	var sessionOps, fellBack int
	for _, o := range h.Ops {
		if o.Policy == "" {
			continue
		}
		sessionOps++
		if o.Kind == history.Read && o.Outcome == history.OK && !o.Follower && o.Policy != "any" {
			fellBack++
		}
		if o.Outcome != history.OK {
			t.Errorf("session operation failed: %s", o)
		}
	}
	stats, vs := checker.Sessions(h.Ops)
	if len(vs) != 0 {
		t.Fatalf("sessions on a correct fake: %v", vs)
	}
	if sessionOps < 100 || fellBack == 0 {
		t.Fatalf("%d session operations, %d reads fell back to the leader; want many and some", sessionOps, fellBack)
	}
	for _, st := range stats {
		if st.Policy == "any" && st.RYW == 0 {
			t.Errorf("any on a frozen follower read no stale value: %+v", st)
		}
	}

	bug := newPosCluster()
	bug.ignoreToken = true
	_, vs = checker.Sessions(runSessions(t, bug, "ryw").Ops)
	if len(vs) == 0 || vs[0].Kind != checker.ReadYourWrites {
		t.Fatalf("a follower ignoring the token: %v, want read-your-writes", vs)
	}
}
