package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// fakeNode is a node for the proxy's tests: a front end on the same RESP
// layer, with a map for data, a role, and optionally the read-policy
// commands (a session's policy and floor; a GET on a follower that has not
// applied the floor answers "read elsewhere").
type fakeNode struct {
	t    *testing.T
	id   string
	srv  *resp.Server
	addr string

	mu        sync.Mutex
	leader    bool
	positions bool
	epoch     uint64
	lsn       uint64 // the last write's (leader) or what it has applied (follower)
	data      map[string]string
	got       []string // every command received, joined by spaces
	drop      string   // a command name whose connection is closed on receipt
	perCmd    map[string]int
	resets    int
	// waitReads: a follower's GET behind the session's floor waits (up to
	// 5 s) for catchUp instead of refusing at once, as a node waits its
	// --read-wait; changed is closed and replaced by catchUp.
	waitReads bool
	readWait  time.Duration // with waitReads, how long (0: 5 s)
	changed   chan struct{}
	waiting   int // GETs waiting now
	// hold, if set, holds a SET of key "slow" until it is closed (a
	// write waiting for its commit), holding up its connection.
	hold chan struct{}

	// Linearizable reads: a follower asks leaderOf its position (a
	// ReadIndex round trip, counted on the leader in indexAsks, held
	// while indexHold is open) and waits until it has applied it.
	leaderOf  *fakeNode
	indexAsks int
	indexHold chan struct{}
	// indexWrites: the leader logs a write (key "w") just before each
	// ReadIndex answer, as if a writer always had one in flight, so that
	// a lagging follower is behind every answer by its whole lag however
	// a test's goroutines are scheduled.
	indexWrites bool
	log         []fakeEntry // the leader's writes, for replicate
	// regress, if set, is a key whose next GET on a follower finds it
	// gone back to LSN 0 with k "old" first (a failover's truncation
	// under the read), once.
	regress string
}

// fakeEntry is one write on the leader.
type fakeEntry struct {
	lsn  uint64
	k, v string
	at   time.Time
}

// readIndex is the leader's answer to a follower's ReadIndex: its
// position (every write it acknowledged is at or before it).
func (f *fakeNode) readIndex() position {
	f.mu.Lock()
	f.indexAsks++
	hold := f.indexHold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.indexWrites {
		f.lsn++
		f.data["w"] = strconv.FormatUint(f.lsn, 10)
		f.log = append(f.log, fakeEntry{lsn: f.lsn, k: "w", v: f.data["w"], at: time.Now()})
	}
	return position{Epoch: f.epoch, LSN: f.lsn}
}

// asks is how many ReadIndex round trips the leader answered.
func (f *fakeNode) asks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.indexAsks
}

// replicate applies, in order, the leader's writes made at least lag
// before now that the follower f has not applied yet.
func (f *fakeNode) replicate(l *fakeNode, lag time.Duration, now time.Time) {
	l.mu.Lock()
	var todo []fakeEntry
	f.mu.Lock()
	applied := f.lsn
	f.mu.Unlock()
	for _, e := range l.log {
		if e.lsn > applied && now.Sub(e.at) >= lag {
			todo = append(todo, e)
		}
	}
	l.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	f.mu.Lock()
	for _, e := range todo {
		f.data[e.k] = e.v
		f.lsn = e.lsn
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// catchUp sets what a follower has applied, and k's value, and wakes
// the reads waiting for it.
func (f *fakeNode) catchUp(lsn uint64, k, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lsn, f.data[k] = lsn, v
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitingReads is how many GETs wait for catchUp now.
func (f *fakeNode) waitingReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

type fakeSess struct {
	policy string
	floor  position
	at     position // written or read at
	user   string
}

func startFake(t *testing.T, id string, leader, positions bool) *fakeNode {
	t.Helper()
	f := &fakeNode{t: t, id: id, leader: leader, positions: positions, epoch: 1, data: map[string]string{}, perCmd: map[string]int{}, changed: make(chan struct{})}
	fe := resp.FrontEnd{
		Role: func() string { return "master" },
		Open: func(s *resp.Session) { s.Local = &fakeSess{policy: "ryw"} },
		Reset: func(s *resp.Session) {
			s.Local = &fakeSess{policy: "ryw"}
			f.mu.Lock()
			f.resets++
			f.mu.Unlock()
		},
		Serve: f.serve,
	}
	f.srv = resp.NewEndpoint(resp.Config{Logger: slog.New(slog.DiscardHandler)}, fe)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeNode) member() Member { return Member{ID: f.id, Addr: f.addr} }

func (f *fakeNode) count(cmd string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.perCmd[cmd]
}

func (f *fakeNode) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func (f *fakeNode) serve(c redcon.Conn, sess *resp.Session, args [][]byte) bool {
	s := sess.Local.(*fakeSess)
	name := strings.ToLower(string(args[0]))
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = string(a)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, strings.Join(parts, " "))
	f.perCmd[name]++
	if name == f.drop {
		c.Close()
		return true
	}
	if strings.HasPrefix(name, "tandem.") && !f.positions {
		return false
	}
	switch name {
	case "subscribe": // the confirmation only: the proxy's pinning is under test
		for i, ch := range args[1:] {
			c.WriteArray(3)
			c.WriteBulkString("subscribe")
			c.WriteBulk(ch)
			c.WriteInt(i + 1)
		}
	case "tandem.readpolicy":
		if len(args) == 1 {
			c.WriteBulkString(s.policy)
		} else {
			s.policy = strings.Join(parts[1:], " ")
			c.WriteString("OK")
		}
	case "tandem.user":
		s.user = parts[1]
		c.WriteString("OK")
	case "tandem.token":
		if len(args) == 1 {
			c.WriteBulkString(resp.FormatToken(maxPos(s.floor, s.at)))
			return true
		}
		if strings.EqualFold(parts[1], "reset") {
			s.floor, s.at = position{}, position{}
			c.WriteString("OK")
			return true
		}
		p, err := resp.ParseToken(parts[1])
		if err != nil {
			c.WriteError("ERR tandem: malformed token")
			return true
		}
		s.floor = maxPos(s.floor, p)
		c.WriteString("OK")
	case "set", "incr":
		if !f.leader {
			c.WriteError("READONLY You can't write against a read only replica.")
			return true
		}
		if hold := f.hold; hold != nil && parts[1] == "slow" {
			f.waiting++
			f.mu.Unlock()
			<-hold
			f.mu.Lock()
			f.waiting--
		}
		f.lsn++
		if name == "incr" {
			n, _ := strconv.Atoi(f.data[parts[1]])
			f.data[parts[1]] = strconv.Itoa(n + 1)
			c.WriteInt(n + 1)
		} else {
			f.data[parts[1]] = parts[2]
			c.WriteString("OK")
		}
		f.log = append(f.log, fakeEntry{lsn: f.lsn, k: parts[1], v: f.data[parts[1]], at: time.Now()})
		s.at = maxPos(s.at, position{Epoch: f.epoch, LSN: f.lsn})
	case "get", "dbsize", "tandem.applied":
		if name == "tandem.applied" {
			// The position a read under the policy named would be
			// served at; the session as it was (a node's cmdApplied).
			pol := "any"
			if len(args) == 2 {
				pol = "linearizable"
			}
			s = &fakeSess{policy: pol}
		}
		if name == "get" && !f.leader && f.regress != "" && parts[1] == f.regress {
			f.regress, f.lsn, f.data[parts[1]] = "", 0, "old"
		}
		floor := s.floor
		lin := f.positions && !f.leader && s.policy == "linearizable" && f.leaderOf != nil
		if lin {
			// The leader's position, asked after the read began (f.mu
			// is not held across the round trip).
			f.mu.Unlock()
			floor = maxPos(floor, f.leaderOf.readIndex())
			f.mu.Lock()
		}
		// A leader is behind a floor only when a test set its position
		// back under it (a history replaced): it refuses at once.
		behind := func() bool {
			return f.positions && s.policy != "any" && less(position{Epoch: f.epoch, LSN: f.lsn}, floor)
		}
		if (f.waitReads || lin) && behind() {
			wait := f.readWait
			if wait == 0 {
				wait = 5 * time.Second
			}
			timeout := time.NewTimer(wait)
			defer timeout.Stop()
			f.waiting++
			for behind() {
				ch := f.changed
				f.mu.Unlock()
				select {
				case <-ch:
				case <-timeout.C:
				}
				f.mu.Lock()
				if ch == f.changed {
					break // timed out
				}
			}
			f.waiting--
		}
		if behind() {
			// The node's words (replication's verdictErr).
			c.WriteError(fmt.Sprintf("TRYAGAIN tandem: read elsewhere: this node has not applied the position %d:%d within the read wait (applied %d:%d)",
				floor.Epoch, floor.LSN, f.epoch, f.lsn))
			return true
		}
		if name == "tandem.applied" {
			c.WriteBulkString(resp.FormatToken(position{Epoch: f.epoch, LSN: f.lsn}))
			return true
		}
		if name == "dbsize" {
			c.WriteInt(len(f.data))
		} else if v, ok := f.data[parts[1]]; ok {
			c.WriteBulkString(v)
		} else {
			c.WriteNull()
		}
		s.at = maxPos(s.at, position{Epoch: f.epoch, LSN: f.lsn})
	default:
		return false
	}
	return true
}
