package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/proxy"
	"github.com/tandemdb/tandem/internal/resp"
)

func proxyCmd() *cobra.Command {
	var (
		cfg      proxy.Config
		etcd     string
		cluster  string
		port     int
		addr     string
		httpAddr string
		policy   string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run a RESP proxy: writes to the leader, reads where the session's read policy allows",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			eps := coord.ParseEndpoints(etcd)
			if len(eps) == 0 {
				return fmt.Errorf("--etcd is required")
			}
			if cfg.Policy, err = resp.ParsePolicy(strings.Fields(policy)); err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if addr == "" {
				addr = fmt.Sprintf("127.0.0.1:%d", port)
			}
			cfg.Logger = log
			cli, err := coord.Dial(eps)
			if err != nil {
				return err
			}
			defer cli.Close()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("proxy: listen %s: %w", addr, err)
			}
			if cfg.SlowRead == 0 {
				cfg.SlowRead = -1 // --slow-read 0: never (Config's 0 is the default)
			}
			if cfg.LeaderShare == 0 {
				cfg.LeaderShare = -1 // --leader-share 0: none (Config's 0 is the default)
			}
			p := proxy.New(cfg)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go p.FollowEtcd(ctx, coord.New(cli, cluster))
			var hs *http.Server
			if httpAddr != "" {
				hl, err := net.Listen("tcp", httpAddr)
				if err != nil {
					ln.Close()
					return fmt.Errorf("proxy: listen %s: %w", httpAddr, err)
				}
				hs = &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
				go func() {
					if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("proxy: http", "err", err)
					}
				}()
			}
			served := make(chan error, 1)
			go func() { served <- p.Serve(ln) }()
			log.Info("proxy running", "addr", ln.Addr().String(), "http", httpAddr, "policy", cfg.Policy.String(), "zone", cfg.Zone, "pid", os.Getpid())
			select {
			case <-ctx.Done():
			case err := <-served:
				return err
			}
			if hs != nil {
				hs.Close()
			}
			return p.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&etcd, "etcd", "", "etcd endpoints, comma-separated")
	f.StringVar(&cluster, "cluster", "tandem", "the cluster's name (etcd key prefix /tandem/NAME/)")
	f.IntVar(&port, "port", 6380, "RESP port for clients (on 127.0.0.1; --addr to choose the interface)")
	f.StringVar(&addr, "addr", "", "RESP address for clients (overrides --port)")
	f.StringVar(&httpAddr, "http-addr", "", "address for /metrics and /info (empty: none)")
	f.StringVar(&policy, "policy", proxy.DefaultPolicy.String(), `a new connection's read policy: leader, any, ryw, monotonic, linearizable or "bounded MS"`)
	f.StringVar(&cfg.Zone, "zone", "", "the proxy's zone: reads go to followers in it first")
	f.DurationVar(&cfg.WriteWait, "write-wait", 5*time.Second, "how long a write waits for a leader during a failover")
	f.DurationVar(&cfg.UpstreamTimeout, "upstream-timeout", 10*time.Second, "how long a request waits for its node (keep above the nodes' --write-timeout)")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", 2*time.Second, "how long a read waits for one node before trying another")
	f.IntVar(&cfg.ConnsPerNode, "conns-per-node", 4, "shared connections to each node")
	f.IntVar(&cfg.WaitConnsPerNode, "wait-conns-per-node", 64, "connections to each node for reads that may wait there (one read at a time each)")
	f.Float64Var(&cfg.LeaderShare, "leader-share", proxy.DefaultLeaderShare, "ryw reads the leader may serve instead of a follower that would first wait for the session's write, as a share of the reads followers serve (0: none, they wait)")
	f.DurationVar(&cfg.SlowRead, "slow-read", proxy.DefaultSlowRead, "a follower whose bounded and linearizable reads all take longer than this for a while gets none for a second: the leader serves them (fallback followers-slow; 0: never, they wait on the followers)")
	f.IntVar(&cfg.IndexBatches, "index-batches", 2, "linearizable read batches in flight per follower (each a round trip to the leader shared by the reads in it)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
