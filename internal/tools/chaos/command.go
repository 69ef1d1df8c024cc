package chaos

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/tools/chaos/nemesis"
)

// NewCommand returns `tandem chaos`. It exits non-zero (returns an error
// wrapping ErrViolations) when the run finds a violation.
func NewCommand() *cobra.Command {
	var (
		opts     Options
		faults   string
		buggify  []string
		logLevel string
		seed     int64
		policies string
	)
	var known []string
	for _, k := range nemesis.Kinds {
		known = append(known, k.Name)
	}
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run a local cluster under faults and check what it promises",
		Long: `chaos starts a local cluster, runs concurrent clients against it, injects
faults on a schedule drawn from --seed, heals, waits for the replicas to
converge and checks the history: linearizability (porcupine), acknowledged
writes lost (in async mode: every lost one must be in a rollback file),
replicas identical, follower reads monotonic and never showing a value never
written, recovery time after each fault, at most one leader per epoch (node
logs), and every failover caused by a fault that could make the leader look
dead (no false failovers), with the unavailability around each.

Beside the clients, sessions run under read policies (--read-policies),
carrying their position tokens, reading from followers while one follower
lags (--follower-lag); the checker counts per policy the reads older than
the session's own acknowledged write (ryw, monotonic, linearizable), older
than it had read (monotonic, linearizable) and beyond the bound (bounded
<ms>), and checks linearizable reads with porcupine. Under "any" the same
counts are shown and expected above 0.

The cluster runs under the control plane (embedded etcd, two
orchestrators) unless --static; faults that target "the leader" or "the
active orchestrator" find it when they are injected.

Fault kinds: ` + strings.Join(known, ", ") + ` ("none" for no faults).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			opts.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			opts.Out = cmd.OutOrStdout()
			opts.Faults = []string{}
			if faults != "none" {
				for _, f := range strings.Split(faults, ",") {
					if f = strings.TrimSpace(f); f != "" {
						opts.Faults = append(opts.Faults, f)
					}
				}
			}
			if seed < 0 {
				return fmt.Errorf("--seed must not be negative")
			}
			opts.Seed = uint64(seed)
			if opts.FollowerLag == 0 {
				opts.FollowerLag = -1 // Options' zero is the default
			}
			opts.Policies = []string{}
			switch policies {
			case "all":
				opts.Policies = DefaultPolicies
			case "none":
			default:
				for _, p := range strings.Split(policies, ",") {
					if p = strings.Join(strings.Fields(p), " "); p != "" {
						opts.Policies = append(opts.Policies, p)
					}
				}
			}
			for _, b := range buggify {
				opts.ServerArgs = append(opts.ServerArgs, "--buggify", b)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := Run(ctx, opts)
			if err != nil {
				return err
			}
			if r.Violated() {
				return fmt.Errorf("%w: %d (seed %d, artefacts in %s)", ErrViolations, len(r.Violations), r.Seed, r.Dir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&opts.Duration, "duration", 60*time.Second, "how long the workload runs")
	f.DurationVar(&opts.Duration, "time", 60*time.Second, "how long the workload runs")
	_ = f.MarkDeprecated("time", "use --duration")
	f.BoolVar(&opts.Static, "static", false, "run the static topology (node 1 leads, no control plane, no failover)")
	f.StringVar(&faults, "faults", strings.Join(nemesis.DefaultKinds, ","), "comma-separated fault kinds, or none")
	f.IntVar(&opts.Clients, "clients", 8, "concurrent clients")
	f.Float64Var(&opts.Rate, "rate", 200, "operations per second, all clients together")
	f.IntVar(&opts.Nodes, "nodes", 3, "nodes in the cluster")
	f.Int64Var(&seed, "seed", 0, "seed for the fault schedule and the workload (0: random, printed)")
	f.StringVar(&opts.Mode, "mode", "", "commit mode (default: "+commit.Default+" under the control plane, async with --static)")
	f.StringVar(&opts.Dir, "dir", "", "directory for data and artefacts (default: a temporary one, removed if the run passes)")
	f.StringSliceVar(&buggify, "buggify", nil, "deliberate node faults, to prove the harness catches them (ack-before-durable, follower-skip-entry, follower-ignore-token, follower-no-leader-timeout, ...)")
	f.StringVar(&policies, "read-policies", "all", `read policies of the sessions that run beside the clients, comma-separated ("ryw,monotonic,bounded 50,linearizable,any"), "all" (all but any, bounded 50) or "none"`)
	f.IntVar(&opts.SessionsPerPolicy, "sessions", 2, "sessions per read policy")
	f.BoolVar(&opts.NoTyped, "no-typed", false, "run registers and counters only: no hashes, sets, lists, transfers or queue")
	f.BoolVar(&opts.NoProxy, "no-proxy", false, "run every session on the nodes (default: every other one through a tandem proxy)")
	f.DurationVar(&opts.FollowerLag, "follower-lag", 20*time.Millisecond, "lag injector: the last node applies each batch this late while it follows (0: none)")
	f.DurationVar(&opts.OpTimeout, "op-timeout", time.Second, "timeout of one client operation (then its outcome is unknown)")
	f.DurationVar(&opts.CheckTimeout, "check-timeout", 30*time.Second, "porcupine time limit per key")
	f.DurationVar(&opts.CatchUpWithin, "catch-up-within", DefaultCatchUpWithin, "after each healed fault, every follower must apply what the leader had applied at the heal within this long (else a follower-behind violation)")
	f.IntVar(&opts.BasePort, "base-port", 0, "first port of the cluster (RESP from it, peers from +100, HTTP from +200); 0: free ports")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
