// Package sentinel is a Redis-Sentinel-compatible RESP endpoint for
// tandem's orchestrator, so that Redis tooling written for Sentinel finds
// tandem's leader unchanged: go-redis's NewFailoverClient, redis-py's
// Sentinel, `redis-cli -p 26380 SENTINEL get-master-addr-by-name tandem`.
//
// The package knows nothing of etcd or the orchestrator. The orchestrator
// hands New a function that returns the current topology (State) and calls
// Changed after each change; the server answers every command from one
// State, read once per command, and publishes the events clients listen for.
//
// # What it answers
//
// Replies are RESP2 and shaped as Redis 7's Sentinel shapes them. The
// endpoint is a front end on the resp package's connection layer, so the
// connection commands, the error texts, the input limits and the
// connection lifecycle are the data node's, byte for byte:
//
//   - PING, ECHO, QUIT, RESET, SELECT, AUTH (no password is configured:
//     Redis's errors), HELLO [2] (the endpoint declares RESP2 only, as
//     redcon's pub/sub writes RESP2: HELLO 3 gets the -NOPROTO a node gives
//     HELLO 4, and go-redis and redis-py fall back to RESP2), CLIENT
//     SETNAME/GETNAME/SETINFO/ID/INFO/LIST, answered by the resp layer.
//   - SENTINEL get-master-addr-by-name, master, masters, replicas (and the
//     old alias slaves), sentinels, myid.
//   - SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE. A subscribed
//     connection is redcon.PubSub's, with its texts (PING, QUIT and the
//     four are all it takes, as in Redis).
//   - INFO (# Server, # Clients, # Sentinel) and ROLE.
//   - SENTINEL failover, reset, set, monitor, remove, ckquorum,
//     is-master-down-by-addr and the rest of Sentinel's own machinery are
//     answered with an error that names `tandem switchover`: the
//     orchestrator, not this endpoint, decides and changes the topology.
//
// Unknown commands and wrong arities get Redis 7's error texts, and the
// connection keeps serving. A command longer than maxInput is refused
// from its header with the node's protocol error, and the connection
// closed.
//
// # How a State is reported
//
// There is one master, State.Name. Its address is the leader's; while there
// is no leader (State.Leader nil, a failover in progress) the server keeps
// reporting the last leader it saw, flagged s_down,o_down,master,
// failover_in_progress, as Redis does until the failover ends: clients keep
// their connections and get the fenced old leader's -READONLY (go-redis
// drops that connection and asks again) or -MASTERDOWN (it retries) until
// the +switch-master event moves them. Only when no leader was ever seen
// does get-master-addr-by-name answer a null array.
// A Node with Down set is flagged s_down (and o_down for the master: the
// orchestrators' verdict is the objective one), master-link-status err;
// go-redis's replica routing skips such replicas. A node's runid is its
// tandem id. num-other-sentinels is len(State.Sentinels); quorum is their
// majority including this one.
//
// # Events
//
// Changed(old, new) publishes, in this order, each on the channel of its
// name, those of Redis Sentinel's events that apply:
//
//	+new-epoch      <epoch>                          the epoch grew
//	+sdown, +odown  master <name> <ip> <port>        the leader went down
//	                (+odown adds #quorum <q>/<q>)
//	-sdown, -odown  master <name> <ip> <port>        it came back
//	+sdown, -sdown  slave <ip:port> <ip> <port> @ <name> <master-ip> <master-port>
//	                                                 a replica went down, came back
//	+switch-master  <name> <old-ip> <old-port> <new-ip> <new-port>
//	                                                 the leader moved
//
// +switch-master is what go-redis's failover client acts on (redis-py's
// Sentinel asks SENTINEL masters again for each new connection instead;
// the old leader's -READONLY makes it reconnect). Changed never blocks
// on a subscriber: events go to a queue that one goroutine publishes in
// order, and a subscriber that stops reading is cut off after
// Config.WriteTimeout.
package sentinel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// DefaultAddr is the orchestrator's Sentinel port (Redis Sentinel's is
// 26379; tandem's is one above, so both can run on one host).
const DefaultAddr = ":26380"

// DefaultName is the master name clients ask for.
const DefaultName = "tandem"

// DefaultWriteTimeout bounds one write to a client (Config.WriteTimeout).
const DefaultWriteTimeout = 5 * time.Second

// Node is one data node as Sentinel reports it.
type Node struct {
	ID   string // tandem node id, e.g. "n1"; reported as runid
	Addr string // RESP host:port clients use
	// Down is the orchestrator's verdict that the node failed: flags s_down
	// (and o_down for the master), master-link-status err.
	Down bool
	// LagLSN is the replica's replication lag in entries: its
	// slave-repl-offset is State.LeaderLSN - LagLSN.
	LagLSN uint64
	// LastHeardMs is the time since the orchestrator last heard from the
	// node, in milliseconds: last-ok-ping-reply and last-ping-reply.
	LastHeardMs int64
}

// Peer is another orchestrator, as SENTINEL sentinels lists it.
type Peer struct {
	ID   string // reported as name and runid
	Addr string // its Sentinel host:port
}

// State is the topology the orchestrator publishes.
type State struct {
	Name      string // the master name clients ask for; "" means DefaultName
	Epoch     uint64 // tandem's epoch: config-epoch
	LeaderLSN uint64 // the leader's durable LSN, from which replicas' slave-repl-offset is counted
	Leader    *Node  // nil while there is no leader (during a failover)
	Replicas  []Node
	Sentinels []Peer // the other orchestrators
}

func (st State) name() string {
	if st.Name == "" {
		return DefaultName
	}
	return st.Name
}

// Config configures a Server. The zero value is usable.
type Config struct {
	// Addr is ListenAndServe's address; "" means DefaultAddr.
	Addr string
	// ID is this orchestrator's id: SENTINEL myid and INFO's run_id.
	ID string
	// Version is the Redis version HELLO and INFO report; "" means "7.2.0".
	Version string
	// WriteTimeout bounds each write to a client, so that a subscriber that
	// stops reading cannot hold up events for the others; 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// DownAfter is the orchestrator's failure-detection timeout, reported
	// as down-after-milliseconds; 0 reports Redis's default, 30 s.
	DownAfter time.Duration
	// Logger gets connection errors at Debug and published events at Info;
	// nil means slog.Default().
	Logger *slog.Logger
}

// ErrClosed is Serve's error after Close.
var ErrClosed = errors.New("sentinel: server closed")

// maxInput bounds one command (and so one argument) a client may send.
// Every Sentinel command is short: Redis's inline limit is far above any.
const maxInput = 64 << 10

// Server is the Sentinel endpoint. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	state func() State
	log   *slog.Logger
	ps    redcon.PubSub
	// rs is the connection layer, serving the commands of commands.go.
	// Its Close closes the connections redcon detached for pub/sub too,
	// and waits for every command, so that no command reads the state
	// after Close returns.
	rs *resp.Server

	mu     sync.Mutex
	closed bool
	// last is the last leader seen, in a State or by Changed: reported
	// while there is none. told is the last leader Changed saw, the one
	// clients were last told of; Changed names it as the old leader when
	// the old State has none. They differ because a
	// command may read the orchestrator's new State before Changed runs.
	last, told *Node
	queue      []event       // events Changed queued, not yet published
	wake       chan struct{} // a token when queue grew; closed by Close
	pubDone    chan struct{} // closed when the publisher returns
}

// event is one message to publish.
type event struct{ channel, msg string }

// New returns a Server that answers from state. state is called once per
// command, from many goroutines at once, so it must be safe for concurrent
// use, and cheap; it must not call back into the Server.
func New(cfg Config, state func() State) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Version == "" {
		cfg.Version = "7.2.0"
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:     cfg,
		state:   state,
		log:     cfg.Logger,
		wake:    make(chan struct{}, 1),
		pubDone: make(chan struct{}),
	}
	s.rs = resp.NewEndpoint(resp.Config{
		Addr:          cfg.Addr,
		MaxBulkLen:    maxInput,
		MaxCommandLen: maxInput,
		ReplyTimeout:  cfg.WriteTimeout,
		Version:       cfg.Version,
		Logger:        cfg.Logger,
	}, resp.FrontEnd{
		Mode:     "sentinel",
		MaxProto: 2,
		Serve:    s.commands().Serve,
	})
	go s.publisher()
	return s
}

// ListenAndServe listens on Config.Addr and serves until Close.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sentinel: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(l)
}

// Serve answers connections on l until Close, which makes it return nil.
// It closes l when it returns. A Server serves one listener, once.
func (s *Server) Serve(l net.Listener) error {
	if s.isClosed() {
		l.Close()
		return ErrClosed
	}
	err := s.rs.Serve(l)
	switch {
	case errors.Is(err, net.ErrClosed):
		return ErrClosed // Close came before the layer began serving
	case err == nil || s.isClosed():
		return nil
	}
	return fmt.Errorf("sentinel: serve: %w", err)
}

// Addr returns the address the server listens on, or "" before Serve.
func (s *Server) Addr() string {
	a := s.rs.Addr()
	if a == nil {
		return ""
	}
	return a.String()
}

// Close stops accepting, closes every connection (subscribers too),
// drops the events not yet published, and waits for Serve and every
// command to return: after Close the state function is not called again.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.queue = nil
	close(s.wake) // under mu: Changed sends on it under mu, after checking closed
	s.mu.Unlock()
	err := s.rs.Close()
	<-s.pubDone
	if err != nil {
		return fmt.Errorf("sentinel: close: %w", err)
	}
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// current reads the state once for a command and remembers its leader, so
// that a later State without one still reports where the leader was.
func (s *Server) current() (State, *Node) {
	st := s.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Leader != nil {
		n := *st.Leader
		s.last = &n
	}
	var last *Node
	if s.last != nil {
		n := *s.last
		last = &n
	}
	return st, last
}

// Changed tells the server that the topology went from old to new; the
// orchestrator calls it after each change, in order. It queues the events
// listed in the package comment and returns without waiting for them to
// be published. old is the State the orchestrator published before; where
// it has no leader, +switch-master names the leader of the last Changed.
func (s *Server) Changed(old, new State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := old.Leader
	if prev == nil {
		prev = s.told
	}
	evs := events(old, new, prev)
	if new.Leader != nil {
		n := *new.Leader
		s.last, s.told = &n, &n
	} else if old.Leader != nil {
		n := *old.Leader
		s.told = &n // the leader clients know of while there is none
	}
	if s.closed || len(evs) == 0 {
		return
	}
	s.queue = append(s.queue, evs...)
	select {
	case s.wake <- struct{}{}:
	default: // the publisher has a token already
	}
}

// events lists the messages for a change from old to new, prev being the
// leader clients were last told of (old's, else the last Changed's; nil if
// none).
func events(old, new State, prev *Node) []event {
	var evs []event
	name := new.name()
	if new.Epoch > old.Epoch {
		evs = append(evs, event{"+new-epoch", strconv.FormatUint(new.Epoch, 10)})
	}
	// The leader's own health, when the same node stays leader.
	if old.Leader != nil && new.Leader != nil && old.Leader.Addr == new.Leader.Addr && old.Leader.Down != new.Leader.Down {
		ip, port := splitAddr(new.Leader.Addr)
		inst := "master " + name + " " + ip + " " + port
		if new.Leader.Down {
			q := strconv.Itoa(quorum(new))
			evs = append(evs, event{"+sdown", inst}, event{"+odown", inst + " #quorum " + q + "/" + q})
		} else {
			evs = append(evs, event{"-sdown", inst}, event{"-odown", inst})
		}
	}
	// The replicas' health, matched by id.
	if new.Leader != nil {
		was := map[string]bool{}
		for _, r := range old.Replicas {
			was[r.ID] = r.Down
		}
		mip, mport := splitAddr(new.Leader.Addr)
		for _, r := range new.Replicas {
			down, ok := was[r.ID]
			if !ok || down == r.Down {
				continue
			}
			ip, port := splitAddr(r.Addr)
			inst := "slave " + r.Addr + " " + ip + " " + port + " @ " + name + " " + mip + " " + mport
			if r.Down {
				evs = append(evs, event{"+sdown", inst})
			} else {
				evs = append(evs, event{"-sdown", inst})
			}
		}
	}
	if new.Leader != nil && (prev == nil || prev.Addr != new.Leader.Addr) {
		nip, nport := splitAddr(new.Leader.Addr)
		oip, oport := nip, nport // no leader was ever known: Redis has no "none"
		if prev != nil {
			oip, oport = splitAddr(prev.Addr)
		}
		evs = append(evs, event{"+switch-master", name + " " + oip + " " + oport + " " + nip + " " + nport})
	}
	return evs
}

// publisher publishes queued events in order until Close.
func (s *Server) publisher() {
	defer close(s.pubDone)
	for range s.wake {
		for {
			s.mu.Lock()
			if s.closed || len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			ev := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			n := s.ps.Publish(ev.channel, ev.msg)
			s.log.Info("sentinel: published", "channel", ev.channel, "msg", ev.msg, "receivers", n)
		}
	}
}

// splitAddr splits host:port, keeping a malformed address whole as the
// host (with port "0") rather than failing a reply over it.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "0"
	}
	return h, p
}

// quorum is the orchestrators' majority, this one included.
func quorum(st State) int { return (len(st.Sentinels)+1)/2 + 1 }
