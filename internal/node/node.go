// Package node is one tandem server process: a Pebble database, a role
// (leader or follower), the RESP front end for clients, the gRPC peer
// service for replication, and HTTP for status, metrics and pprof.
//
// A node changes role only through Lead and Follow, which stop the old role
// before starting the new one, so a node never runs both.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/storage"
)

// Config configures a node.
type Config struct {
	ID      string
	DataDir string
	// Listen addresses; port 0 picks a free port.
	RESPAddr, PeerAddr, HTTPAddr string
	// FollowRESP and FollowPeer name the leader to follow at start; both
	// empty means the node starts as the leader.
	FollowRESP, FollowPeer string
	Mode                   commit.Mode
	RetainBytes            int64
	MaxBulkLen             int64
	Buggify                replication.Buggify
	Logger                 *slog.Logger
}

// Node is a running tandem server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	db      *storage.DB
	started time.Time
	cursors *commands.CursorTable

	respSrv  *resp.Server
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	peerLis  net.Listener
	httpLis  net.Listener
	respAddr string

	mu       sync.Mutex // guards the role fields
	leader   *replication.Leader
	follower *replication.Follower
	stopFol  context.CancelFunc
	folDone  chan struct{}
	folConn  *grpc.ClientConn
	folRESP  string // the leader's RESP address, for INFO and ROLE

	bg     sync.WaitGroup
	closed chan struct{}
}

// Start opens the database, starts the role and the listeners.
func Start(cfg Config) (*Node, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	db, err := storage.Open(cfg.DataDir, storage.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, db: db, started: time.Now(), cursors: commands.NewCursorTable(4096), closed: make(chan struct{})}
	if err := n.listen(); err != nil {
		n.Close()
		return nil, err
	}
	if cfg.FollowPeer != "" {
		err = n.Follow(cfg.FollowRESP, cfg.FollowPeer)
	} else {
		err = n.Lead()
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	n.bg.Add(1)
	go n.expiryLoop()
	return n, nil
}

func (n *Node) listen() error {
	var err error
	if n.peerLis, err = net.Listen("tcp", n.cfg.PeerAddr); err != nil {
		return fmt.Errorf("node: peer listener: %w", err)
	}
	n.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	peerpb.RegisterPeerServer(n.grpcSrv, &peerService{n: n})
	go n.grpcSrv.Serve(n.peerLis)

	if n.httpLis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("node: http listener: %w", err)
	}
	n.httpSrv = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go n.httpSrv.Serve(n.httpLis)

	respLis, err := net.Listen("tcp", n.cfg.RESPAddr)
	if err != nil {
		return fmt.Errorf("node: resp listener: %w", err)
	}
	n.respAddr = respLis.Addr().String()
	n.respSrv = resp.NewServer(resp.Config{MaxBulkLen: n.cfg.MaxBulkLen, Logger: n.log}, backend{n})
	go func() {
		if err := n.respSrv.Serve(respLis); err != nil && !errors.Is(err, net.ErrClosed) {
			n.log.Error("resp server stopped", "err", err)
		}
	}()
	return nil
}

// maxMessage bounds one gRPC message: one log entry can hold a value of the
// maximum bulk length.
const maxMessage = 1 << 30

// Addrs returns the bound RESP, peer and HTTP addresses.
func (n *Node) Addrs() (respAddr, peer, httpAddr string) {
	return n.respAddr, n.peerLis.Addr().String(), n.httpLis.Addr().String()
}

// Lead makes the node the leader at a new epoch (or keeps leading).
func (n *Node) Lead() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leader != nil {
		return nil
	}
	n.stopFollowerLocked()
	// Every leadership starts a new epoch, so that (epoch, LSN) names one
	// entry cluster-wide: a leader never appends to an epoch it did not start.
	epoch := n.db.Epoch() + 1
	if err := n.db.StartEpoch(epoch, n.db.Durable().LSN+1); err != nil {
		return err
	}
	l, err := replication.NewLeader(replication.LeaderConfig{
		DB:          n.db,
		NodeID:      n.cfg.ID,
		Mode:        n.cfg.Mode,
		Logger:      n.log,
		RetainBytes: n.cfg.RetainBytes,
		Buggify:     n.cfg.Buggify,
	}, epoch)
	if err != nil {
		return err
	}
	n.leader = l
	n.folRESP = ""
	return nil
}

// Follow makes the node follow the leader at peerAddr (RESP at respAddr).
func (n *Node) Follow(respAddr, peerAddr string) error {
	conn, err := dialPeer(peerAddr)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leader != nil {
		n.leader.Close()
		n.leader = nil
	}
	n.stopFollowerLocked()
	httpAddr := ""
	if n.httpLis != nil {
		httpAddr = n.httpLis.Addr().String()
	}
	f := replication.NewFollower(replication.FollowerConfig{
		DB:       n.db,
		NodeID:   n.cfg.ID,
		RESPAddr: n.respAddr,
		HTTPAddr: httpAddr,
		DataDir:  n.cfg.DataDir,
		Dial:     grpcDialer{peerpb.NewPeerClient(conn)},
		Logger:   n.log.With("leader", peerAddr),
		Buggify:  n.cfg.Buggify,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	n.follower, n.stopFol, n.folDone, n.folConn, n.folRESP = f, cancel, done, conn, respAddr
	n.log.Info("following", "leader_resp", respAddr, "leader_peer", peerAddr)
	return nil
}

func (n *Node) stopFollowerLocked() {
	if n.follower == nil {
		return
	}
	n.stopFol()
	<-n.folDone
	n.folConn.Close()
	n.follower = nil
}

// roles returns the current role objects (exactly one is non-nil while the
// node runs).
func (n *Node) roles() (*replication.Leader, *replication.Follower) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader, n.follower
}

// Close stops the node.
func (n *Node) Close() {
	select {
	case <-n.closed:
		return
	default:
	}
	close(n.closed)
	if n.respSrv != nil {
		n.respSrv.Close()
	}
	n.mu.Lock()
	if n.leader != nil {
		n.leader.Close()
		n.leader = nil
	}
	n.stopFollowerLocked()
	n.mu.Unlock()
	if n.grpcSrv != nil {
		n.grpcSrv.Stop()
	}
	if n.httpSrv != nil {
		n.httpSrv.Close()
	}
	n.bg.Wait()
	if err := n.db.Close(); err != nil {
		n.log.Warn("close storage", "err", err)
	}
}

// expiryLoop deletes expired keys on the leader, through the log, so that
// followers delete them at the same LSN.
func (n *Node) expiryLoop() {
	defer n.bg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-n.closed:
			return
		}
		l, _ := n.roles()
		if l == nil {
			continue
		}
		keys, err := n.db.ExpiredKeys(time.Now().UnixMilli(), 256)
		if err != nil {
			n.log.Warn("expiry scan", "err", err)
			continue
		}
		if len(keys) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err = l.Propose(ctx, expireExec(keys))
		cancel()
		if err != nil && !errors.Is(err, replication.ErrNotLeader) {
			n.log.Warn("expiry delete", "err", err, "keys", len(keys))
		}
	}
}
