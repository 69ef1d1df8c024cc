package commitbench

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/commit"
)

// targetNames are the targets in the order a run takes them by default.
var targetNames = []string{
	"tandem-async", "tandem-semisync", "tandem-sync", "tandem-quorum2", "tandem-quorum2-4n",
	"redis-wait", "etcd", "postgres",
}

// newTarget builds the named target.
func newTarget(name string, log *slog.Logger) (Target, error) {
	tandem := func(m commit.Mode, nodes int) Target { return NewTandem(name, m, nodes, log) }
	switch name {
	case "tandem-async":
		return tandem(commit.Mode{Kind: commit.Async}, 3), nil
	case "tandem-semisync":
		return tandem(commit.Mode{Kind: commit.SemiSync}, 3), nil
	case "tandem-sync":
		return tandem(commit.Mode{Kind: commit.Sync}, 3), nil
	case "tandem-quorum2":
		return tandem(commit.Mode{Kind: commit.Quorum, K: 2}, 3), nil
	case "tandem-quorum2-4n":
		return tandem(commit.Mode{Kind: commit.Quorum, K: 2}, 4), nil
	case "redis-wait":
		return NewRedis(log), nil
	case "etcd":
		return NewEtcd(log), nil
	case "postgres":
		return NewPostgres(log), nil
	}
	return nil, fmt.Errorf("unknown target %q (want %s)", name, strings.Join(targetNames, ", "))
}

// NewCommand returns `tandem bench commit`.
func NewCommand() *cobra.Command {
	var (
		o        Options
		targets  string
		dir      string
		keep     bool
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "commit",
		Short: "durable replicated writes per second and latency, per commit mode, against peer systems",
		Long: `commit measures durable, replicated writes: --clients clients, each writing
one key at a time (a random key of --keyspace, --value-size bytes), on each
target in turn, started fresh: --warmup unmeasured, then --duration measured.
It prints writes/s, p50, p99 and p99.9 latency, errors, the servers' CPU time
per write by role, and every tandem target's ratios to every peer.

Targets: ` + strings.Join(targetNames, ", ") + `.
tandem-quorum2-4n is quorum 2 with 3 followers. The peers need their servers
installed (bench/commit.sh installs them with apt-get).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			o.Out = cmd.OutOrStdout()
			if o.Load.Clients < 1 || o.Load.ValueSize < 1 || o.Load.Keyspace < 1 || o.Load.Duration <= 0 || o.Load.Warmup < 0 {
				return fmt.Errorf("--clients, --value-size, --keyspace and --duration must be positive")
			}
			for _, name := range strings.Split(targets, ",") {
				if name = strings.TrimSpace(name); name == "" {
					continue
				}
				t, err := newTarget(name, o.Log)
				if err != nil {
					return err
				}
				o.Targets = append(o.Targets, t)
			}
			if o.Profile != "" && !slices.Contains(strings.Split(targets, ","), o.Profile) {
				return fmt.Errorf("--profile %s: not among --targets", o.Profile)
			}
			o.Dir = dir
			if o.Dir == "" {
				if o.Dir, err = os.MkdirTemp("", "tandem-commitbench-"); err != nil {
					return err
				}
				defer func() {
					if keep || err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "data and logs kept in %s\n", o.Dir)
						return
					}
					os.RemoveAll(o.Dir)
				}()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = Run(ctx, o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&targets, "targets", strings.Join(targetNames, ","), "comma-separated targets, run in this order")
	f.IntVar(&o.Load.Clients, "clients", 50, "concurrent clients")
	f.IntVar(&o.Load.ValueSize, "value-size", 100, "bytes per value")
	f.IntVar(&o.Load.Keyspace, "keyspace", 100000, "keys written at random")
	f.DurationVar(&o.Load.Warmup, "warmup", 3*time.Second, "unmeasured load before each target's measurement")
	f.DurationVar(&o.Load.Duration, "duration", 15*time.Second, "measured load per target")
	f.StringVar(&o.Profile, "profile", "", "a tandem target whose leader gets a CPU profile over the measured window (printed with go tool pprof -top)")
	f.StringVar(&dir, "dir", "", "directory for the targets' data and logs (default: a temporary one, removed unless --keep or a failure)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&logLevel, "log-level", "warn", "log level (debug, info, warn, error), to stderr")
	return cmd
}
