package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/orchestrator"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
)

func orchestratorCmd() *cobra.Command {
	var (
		cfg      orchestrator.Config
		etcd     string
		routes   []string
		logLevel string
		sentinel string
		mode     string
		fallback string
	)
	cmd := &cobra.Command{
		Use:   "orchestrator",
		Short: "Run an orchestrator: failure detection, failover, promote and switchover (one is active at a time)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if os.Getenv("GOMAXPROCS") == "" {
				// One P: the orchestrator's work is a few small RPCs at a
				// time, and with two every network event also woke a
				// second thread to look for work (717 wake-ups a second
				// idle, 446 with one: bench/idle.sh).
				runtime.GOMAXPROCS(1)
			}
			if cfg.Etcd = coord.ParseEndpoints(etcd); len(cfg.Etcd) == 0 {
				return fmt.Errorf("--etcd is required")
			}
			if cfg.Mode, err = coord.ParseMode(mode); err != nil {
				return fmt.Errorf("--mode: %w", err)
			}
			if cfg.SyncFallback, err = coord.ParseFallback(fallback); err != nil {
				return fmt.Errorf("--sync-fallback: %w", err)
			}
			if cfg.Detector != "phi" && cfg.Detector != "timeout" {
				return fmt.Errorf("--detector %q: want phi or timeout", cfg.Detector)
			}
			if cfg.PeerRoutes, err = parseRoutes(routes); err != nil {
				return err
			}
			cfg.Logger = log
			cfg.SentinelAddr = sentinel
			o, err := orchestrator.Start(cfg)
			if err != nil {
				return err
			}
			log.Info("orchestrator running", "id", cfg.ID, "http", o.HTTPAddr(), "sentinel", o.SentinelAddr(), "pid", os.Getpid())
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			<-sig
			o.Close()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "o1", "orchestrator id")
	f.StringVar(&etcd, "etcd", "", "etcd endpoints, comma-separated")
	f.StringVar(&cfg.Cluster, "cluster", "tandem", "the cluster's name (etcd key prefix /tandem/NAME/)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8390", "address for /status, /metrics, /promote and /switchover")
	f.StringVar(&sentinel, "sentinel-addr", "127.0.0.1:26380", "Sentinel-compatible RESP address (empty: none)")
	f.StringVar(&mode, "mode", commit.Default, "the cluster's commit mode, written at bootstrap (async, sync, semisync, quorum K; empty: each node's --mode)")
	f.StringVar(&fallback, "sync-fallback", "never", `the cluster's sync-fallback, written at bootstrap: "never" or "after DURATION"`)
	f.DurationVar(&cfg.Interval, "heartbeat", 100*time.Millisecond, "heartbeat interval")
	f.StringVar(&cfg.Detector, "detector", "phi", "failure detector: phi (accrual) or timeout")
	f.Float64Var(&cfg.PhiThreshold, "phi-threshold", 8, "phi at which a node is suspected")
	f.DurationVar(&cfg.PhiMinStdDev, "phi-min-stddev", 25*time.Millisecond, "floor of the heartbeat interval's standard deviation")
	f.DurationVar(&cfg.Timeout, "timeout", 500*time.Millisecond, "the timeout detector's limit")
	f.DurationVar(&cfg.MinSilence, "min-silence", 250*time.Millisecond, "a leader the detector suspects is failed over only once its probes went unanswered this long (a saturated leader answers late: under 200 ms seen; a gone process is failed over at once on refused probes)")
	f.DurationVar(&cfg.NotAnsweringAfter, "not-answering-after", 2*time.Second, "a leader whose lease stays unconfirmed this long (it answers nothing) is failed over")
	f.DurationVar(&cfg.FollowerSilence, "follower-silence", 200*time.Millisecond, "a follower that heard the leader's stream more recently (its report plus the report's age) vetoes a failover on suspicion")
	f.StringVar(&cfg.PreferredZone, "preferred-zone", "", "among equally advanced failover candidates of equal --priority, choose one in this zone (a node's --zone); never outranks durability or priority")
	f.DurationVar(&cfg.Grace, "grace", time.Second, "a new leader is not suspected for this long, or until it answers as leader")
	f.StringArrayVar(&cfg.Hooks.Commands, "hook-command", nil, "run this shell command on each control-plane event (detected, pre_/post_failover, pre_/post_promote, pre_/post_switchover, leader_returned), the event as JSON on stdin and in TANDEM_* variables; repeatable")
	f.StringArrayVar(&cfg.Hooks.URLs, "hook-url", nil, "POST each control-plane event as JSON to this URL; repeatable")
	f.DurationVar(&cfg.Hooks.Timeout, "hook-timeout", 5*time.Second, "a hook run still going after this is killed (hooks never delay a failover)")
	f.StringSliceVar(&routes, "peer-route", nil, "ID=HOST:PORT: probe member ID there instead of its registered address")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// activeOrchestrator finds the active orchestrator through etcd (from
// --etcd, or the cluster file in --dir).
func activeOrchestrator(ctx context.Context, etcd, dir string) (coord.Orchestrator, error) {
	store, closeStore, err := storeFor(etcd, dir)
	if err != nil {
		return coord.Orchestrator{}, err
	}
	defer closeStore()
	return store.ActiveOrchestrator(ctx)
}

// runOp sends a manual operation to the active orchestrator and prints
// its answer.
func runOp(cmd *cobra.Command, etcd, dir string, op func(ctx context.Context, addr string) (orchapi.Result, error)) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	o, err := activeOrchestrator(ctx, etcd, dir)
	if err != nil {
		return err
	}
	res, err := op(ctx, o.HTTPAddr)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "leader %s -> %s, epoch %d -> %d", res.From, res.To, res.OldEpoch, res.NewEpoch)
	if res.PauseMs > 0 {
		fmt.Fprintf(out, ", writes paused %.1f ms", res.PauseMs)
	}
	fmt.Fprintln(out)
	return nil
}

func promoteCmd() *cobra.Command {
	var etcd, dir string
	var accept bool
	cmd := &cobra.Command{
		Use:   "promote NODE",
		Short: "Make NODE the leader now (for when the leader is known dead)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOp(cmd, etcd, dir, func(ctx context.Context, addr string) (orchapi.Result, error) {
				return orchapi.Promote(ctx, addr, args[0], accept)
			})
		},
	}
	cmd.Flags().StringVar(&etcd, "etcd", "", "etcd endpoints (default: from the cluster file in --dir)")
	cmd.Flags().StringVar(&dir, "dir", "./tandem-data", "the cluster's directory (as given to tandem up)")
	cmd.Flags().BoolVar(&accept, "accept-data-loss", false, "promote even a node behind another reachable one, losing what only that one has (recorded as an event)")
	return cmd
}

func switchoverCmd() *cobra.Command {
	var etcd, dir, to string
	cmd := &cobra.Command{
		Use:   "switchover",
		Short: "Hand leadership to another node with no acknowledged write lost (planned)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOp(cmd, etcd, dir, func(ctx context.Context, addr string) (orchapi.Result, error) {
				return orchapi.Switchover(ctx, addr, to)
			})
		},
	}
	cmd.Flags().StringVar(&etcd, "etcd", "", "etcd endpoints (default: from the cluster file in --dir)")
	cmd.Flags().StringVar(&dir, "dir", "./tandem-data", "the cluster's directory (as given to tandem up)")
	cmd.Flags().StringVar(&to, "to", "", "the node to hand over to (default: the best follower)")
	return cmd
}

func modeCmd() *cobra.Command {
	var etcd, dir, fallback string
	var force bool
	syncMin := -1
	cmd := &cobra.Command{Use: "mode", Short: "Show or change the cluster's commit mode"}
	set := &cobra.Command{
		Use:   "set MODE",
		Short: "Change the commit mode (async, sync, semisync, quorum K) at run time; writes already acknowledged keep their guarantee",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := commit.ParseMode(args[0])
			if err != nil {
				return err
			}
			mode := coord.ModeOf(m)
			change := coord.RulesChange{Mode: &mode}
			if fallback != "" {
				f, err := coord.ParseFallback(fallback)
				if err != nil {
					return fmt.Errorf("--sync-fallback: %w", err)
				}
				change.Fallback = &f
			}
			if syncMin >= 0 {
				change.SyncMin = &syncMin
			}
			store, closeStore, err := storeFor(etcd, dir)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			old, _, err := store.ChangeRules(ctx, change, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mode %s (was %q), epoch %d\n", m, old.Mode.String(), old.Epoch)
			return nil
		},
	}
	set.Flags().StringVar(&fallback, "sync-fallback", "", `"never" (writes wait, then answer NOREPLICAS, while no sync-set member is there) or "after DURATION" (then degrade to async, loudly, until a follower caught up); empty keeps the current setting`)
	set.Flags().IntVar(&syncMin, "sync-min", -1, "refuse writes at once (NOREPLICAS) while fewer sync-set members than this are there (0: no floor; -1 keeps the current setting)")
	set.Flags().BoolVar(&force, "force", false, "set rules that cannot work with the registered members (quorum K above the followers, sync-min above them), e.g. before adding members")
	for _, c := range []*cobra.Command{set} {
		c.Flags().StringVar(&etcd, "etcd", "", "etcd endpoints (default: from the cluster file in --dir)")
		c.Flags().StringVar(&dir, "dir", "./tandem-data", "the cluster's directory (as given to tandem up)")
	}
	cmd.AddCommand(set)
	return cmd
}

func failoverPolicyCmd() *cobra.Command {
	var etcd, dir string
	show := func(cmd *cobra.Command, _ []string) error {
		store, closeStore, err := storeFor(etcd, dir)
		if err != nil {
			return err
		}
		defer closeStore()
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		p, err := store.FailoverPolicy(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), p)
		return nil
	}
	cmd := &cobra.Command{
		Use:   "failover-policy",
		Short: "Show or change who fails a failed leader over: the orchestrator (automatic) or an operator (manual)",
		Args:  cobra.NoArgs,
		RunE:  show,
	}
	set := &cobra.Command{
		Use:   "set automatic|manual",
		Short: "Change the failover policy at run time (manual: the orchestrator detects, reports and runs the hooks, then waits for tandem promote)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := coord.ParseFailoverPolicy(args[0])
			if err != nil {
				return err
			}
			store, closeStore, err := storeFor(etcd, dir)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			old, err := store.SetFailoverPolicy(ctx, p, "failover policy set to "+string(p))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "failover policy %s (was %s)\n", p, old)
			return nil
		},
	}
	for _, c := range []*cobra.Command{cmd, set} {
		c.Flags().StringVar(&etcd, "etcd", "", "etcd endpoints (default: from the cluster file in --dir)")
		c.Flags().StringVar(&dir, "dir", "./tandem-data", "the cluster's directory (as given to tandem up)")
	}
	cmd.AddCommand(set)
	return cmd
}

// storeFor opens the cluster's etcd keys from --etcd or the cluster file.
func storeFor(etcd, dir string) (*coord.Store, func(), error) {
	eps := coord.ParseEndpoints(etcd)
	if len(eps) == 0 {
		f, err := cluster.ReadFile(dir)
		if err != nil {
			return nil, nil, err
		}
		if eps = f.Etcd; len(eps) == 0 {
			return nil, nil, fmt.Errorf("the cluster in %s runs without a control plane", dir)
		}
	}
	cli, err := coord.Dial(eps)
	if err != nil {
		return nil, nil, err
	}
	return coord.New(cli, "tandem"), func() { cli.Close() }, nil
}
