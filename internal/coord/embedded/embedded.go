// Package embedded runs a single-member etcd inside the calling process:
// the default for `tandem up` and tests. It is apart from package coord so
// that programs that only talk to etcd (the public client) do not link
// etcd's server.
package embedded

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/tandemdb/tandem/internal/proc"
)

// window is the fixed HTTP/2 flow-control window of the embedded etcd's
// gRPC server (coord.EtcdWindow, which this package cannot import: coord's
// tests start an embedded etcd).
const window = 1 << 20

// Etcd is a single-member etcd run inside this process: the default for
// `tandem up` and tests. Production points --etcd at a real cluster.
type Etcd struct {
	e *embed.Etcd
	// Endpoint is the client URL.
	Endpoint string
}

// Start runs a single-member etcd with its data under dir, serving
// clients on clientAddr and its (unused) peer port on peerAddr (host:port).
// Its raft tick is 280 ms with a 1.4 s election timeout (etcd's least,
// five ticks): one member has no peer to heartbeat or elect, so the tick
// only paces etcd's own timers (an idle etcd wakes its raft loop once per
// tick: 3.6 times a second, 10 at etcd's default 100 ms). What it bounds
// is the shortest lease etcd grants: 1.5 election timeouts, 1.96 s,
// rounded up to whole seconds, so 2 s — the orchestrators' election
// sessions (orchestrator.sessionTTL, TestElection), and what an external
// etcd with default settings (100 ms, 1 s: 1.5 s, so 2 s) grants as well.
// A longer tick would make it 3 s, and a standby's takeover that much
// later.
func Start(dir, clientAddr, peerAddr string) (*Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "tandem-etcd"
	cu, err := url.Parse("http://" + clientAddr)
	if err != nil {
		return nil, fmt.Errorf("coord: etcd client address: %w", err)
	}
	pu, err := url.Parse("http://" + peerAddr)
	if err != nil {
		return nil, fmt.Errorf("coord: etcd peer address: %w", err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.TickMs, cfg.ElectionMs = 280, 1400
	// The backend (bbolt) commits its batch every second instead of every
	// 100 ms: an idle etcd woke ten times a second for it (bench/idle.sh).
	// Durability is the WAL's, fsynced before etcd answers; a batch lost
	// to a crash is replayed from it, and reads see uncommitted batches.
	cfg.BackendBatchInterval = time.Second
	// etcd logs harmless errors on every fresh start and stop; its real
	// failures reach the caller through Err and its clients' errors.
	cfg.LogLevel = "fatal"
	// Fixed flow-control windows (as coord.Dial's clients have):
	// gRPC's bandwidth-delay estimator sent a PING (and a window update)
	// after nearly every request it received, each acknowledged by the
	// client: a wake-up more per request on both sides for the control
	// plane's few small messages.
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{
		grpc.StaticStreamWindowSize(window), grpc.StaticConnWindowSize(window)}
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "revision", "10000"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("coord: start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("coord: embedded etcd in %s not ready after 30 s", dir)
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("coord: embedded etcd: %w", err)
	}
	return &Etcd{e: e, Endpoint: cu.String()}, nil
}

// Close stops the embedded etcd.
func (m *Etcd) Close() { m.e.Close() }

// Err reports the embedded etcd's fatal errors.
func (m *Etcd) Err() <-chan error { return m.e.Err() }

// ForTest starts an embedded etcd in a temporary directory on free
// loopback ports for the test t, stopped when t ends, and returns a client
// of it (closed when t ends).
func ForTest(t testing.TB) (*Etcd, *clientv3.Client) {
	t.Helper()
	addrs, err := proc.FreeAddrs(2)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Start(t.TempDir(), addrs[0], addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return e, cli
}
