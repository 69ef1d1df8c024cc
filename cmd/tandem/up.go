package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
)

func upCmd() *cobra.Command {
	var (
		cfg      cluster.Config
		mode     string
		logLevel string
		static   bool
		etcd     string
		zones    []string
		pzone    string
		prefer   string
		silence  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a local cluster in the foreground (Ctrl-C stops it)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if os.Getenv("GOMAXPROCS") == "" {
				// One P, as the orchestrator: this process supervises and
				// runs the embedded etcd, whose load is the control plane's
				// few small requests; with two, every timer and network
				// event also woke a second thread (bench/idle.sh: 456
				// wake-ups a second idle, about 260 with one). The
				// processes it starts are not affected.
				runtime.GOMAXPROCS(1)
			}
			if mode == "" {
				// semisync needs a follower and the control plane's sync set.
				mode = commit.Default
				if static || cfg.Nodes < 2 {
					mode = "async"
				}
			}
			cfg.ServerArgs = append(cfg.ServerArgs, "--mode", mode, "--log-level", logLevel)
			cfg.OrchestratorArgs = append(cfg.OrchestratorArgs, "--log-level", logLevel, "--mode", mode, "--follower-silence", silence.String())
			if err := applyZones(&cfg, zones, pzone, prefer); err != nil {
				return err
			}
			cfg.ControlPlane = !static
			cfg.Proxy = !static
			cfg.ProxyArgs = append(cfg.ProxyArgs, "--log-level", logLevel)
			cfg.Etcd = coord.ParseEndpoints(etcd)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			c, err := cluster.Start(ctx, cfg, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			leader, epoch, err := c.Leader(ctx)
			if err != nil {
				c.Stop()
				return err
			}
			if p, ok := c.Proxy(); ok {
				// The one address an application uses, first.
				fmt.Fprintf(out, "tandem proxy at %s: redis-cli -h %s  (writes to the leader, reads by policy; INFO proxy, /metrics on http %s, log %s)\n",
					p.RESPAddr, hostPortFlag(p.RESPAddr), p.HTTPAddr, filepath.Join(cfg.Dir, p.Name+".log"))
			}
			fmt.Fprintf(out, "tandem cluster up in %s (mode %s, epoch %d)\n", cfg.Dir, mode, epoch)
			for _, n := range c.Nodes() {
				role := "follower"
				if n.ID == leader {
					role = "leader"
				}
				fmt.Fprintf(out, "  %s  %-8s  redis-cli -h %s  pid %d  peer %s  http %s  log %s\n",
					n.Name, role, hostPortFlag(n.RESPAddr), n.PID, n.PeerAddr, n.HTTPAddr, c.LogPath(n.ID))
			}
			if eps := c.Endpoints(); len(eps) > 0 {
				fmt.Fprintf(out, "  etcd      %s\n", strings.Join(eps, ","))
			}
			for _, o := range c.Orchestrators() {
				fmt.Fprintf(out, "  %s  orchestrator  pid %d  http %s  sentinel: redis-cli -h %s SENTINEL get-master-addr-by-name tandem  log %s\n",
					o.Name, o.PID, o.HTTPAddr, hostPortFlag(o.SentinelAddr), filepath.Join(cfg.Dir, o.Name+".log"))
			}
			fmt.Fprintf(out, "status: tandem status --dir %s   failover: tandem switchover --dir %s   stop: Ctrl-C\n", cfg.Dir, cfg.Dir)
			<-ctx.Done()
			fmt.Fprintln(out, "stopping...")
			return c.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", "./tandem-data", "directory for the nodes' data and logs")
	f.IntVar(&cfg.Nodes, "nodes", 3, "number of node processes")
	f.IntVar(&cfg.BasePort, "port", 6380, "RESP port of the proxy; the nodes take the next ports (peer ports +100, HTTP +200; with --static, no proxy: node 1 takes it)")
	f.DurationVar(&cfg.RestartDelay, "restart-delay", 0, "restart a node process that died after this long (0 = never)")
	f.StringVar(&mode, "mode", "", `commit mode: async, semisync, sync or "quorum K" (default: `+commit.Default+` under the control plane with 2 or more nodes, else async)`)
	f.StringVar(&logLevel, "log-level", "info", "log level for every process")
	f.BoolVar(&static, "static", false, "no control plane: node 1 leads, nothing fails over (the pre-etcd topology)")
	f.StringVar(&etcd, "etcd", "", "use this etcd cluster (comma-separated endpoints) instead of an embedded one")
	f.StringSliceVar(&zones, "zones", nil, "each node's --zone in order (n1 first), e.g. a,a,b")
	f.StringVar(&pzone, "proxy-zone", "", "the proxy's --zone: it reads from followers in this zone first")
	// The orchestrators' own default (200 ms) is for nodes on machines
	// of their own. A local cluster's processes share one machine and
	// stall together under its load: an idle tandem up at load 14 (other
	// work on 2 cores) was failed over on a 338 ms stall, both followers
	// having last heard the leader over 200 ms before. A killed leader's
	// followers lose their stream and vouch for nothing, so its detection
	// does not wait for this (the e2e chaos tests use 1 s for the same
	// reason).
	f.DurationVar(&silence, "follower-silence", time.Second, "the orchestrators' --follower-silence: a follower that heard the leader more recently vetoes a failover on suspicion (a killed leader is not waited for)")
	f.StringVar(&prefer, "preferred-zone", "", "the orchestrators' --preferred-zone: among equally advanced candidates of equal priority, the leader is chosen in this zone")
	f.IntVar(&cfg.Orchestrators, "orchestrators", 2, "orchestrator processes (one is active, the others stand by)")
	f.IntVar(&cfg.SentinelPort, "sentinel-port", 26380, "Sentinel-compatible port of orchestrator 1 (the others take the next ports; 0 picks free ports)")
	return cmd
}

func hostPortFlag(addr string) string {
	host, port := addr, ""
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			host, port = addr[:i], addr[i+1:]
			break
		}
	}
	return host + " -p " + port
}

func statusCmd() *cobra.Command {
	var (
		dir     string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's epoch, leader and per-node replication state",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := cluster.ReadFile(dir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			r := cluster.Collect(ctx, f)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			cluster.PrintTable(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./tandem-data", "the cluster's directory (as given to tandem up)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (stable field names)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the nodes")
	return cmd
}

// applyZones passes tandem up's zone flags on to the nodes, the proxy and
// the orchestrators.
func applyZones(cfg *cluster.Config, zones []string, proxyZone, preferred string) error {
	if len(zones) > 0 && len(zones) != cfg.Nodes {
		return fmt.Errorf("--zones: %d zones for %d nodes; give one per node", len(zones), cfg.Nodes)
	}
	for i, z := range zones {
		if cfg.NodeArgs == nil {
			cfg.NodeArgs = map[int][]string{}
		}
		cfg.NodeArgs[i+1] = append(cfg.NodeArgs[i+1], "--zone", z)
	}
	if proxyZone != "" {
		cfg.ProxyArgs = append(cfg.ProxyArgs, "--zone", proxyZone)
	}
	if preferred != "" {
		cfg.OrchestratorArgs = append(cfg.OrchestratorArgs, "--preferred-zone", preferred)
	}
	return nil
}
