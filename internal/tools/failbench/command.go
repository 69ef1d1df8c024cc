package failbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// NewCommand returns `tandem bench failover`.
func NewCommand() *cobra.Command {
	var (
		o        Options
		targets  string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "kill -9 the leader under write load and measure the failover",
		Long: `failover runs --trials kill -9 trials on each target under a steady write
load (--clients workers, each writing unique keys, one at a time) and prints,
per trial and as median and max: detection and promotion time (when the
target reports them), write unavailability (the last acknowledgement of a
write sent before the kill to the first of a write sent after it), and the
acknowledged writes lost (every acknowledged key read back after the
trial). With two targets it prints the second's figures as ratios of the
first's.

Before its trials, each target's leader is saturated for --saturate (15 s)
with redis-benchmark -c 50 -P 16 SET, then for --saturate-bulk (15 s) with
--bulk-streams (50) bulk-load streams (bench/run.sh's redis-cli --pipe
load: SETs sent without waiting for their replies), and the failovers
meanwhile are counted; so are those during each trial's load before the
fault. Nothing
has failed then: every one is a false failover. For tandem the phase also
prints the active orchestrator's detection histograms over it (probe
round trips, the leader's silences as its probes and as any channel saw
them, its lease lapses): what --min-silence, --follower-silence and
--not-answering-after must clear.

Targets: ` + strings.Join(TargetNames(), ", ") + `. redis-sentinel needs redis-server in PATH
(bench/failover.sh installs it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			// go-redis logs every failed dial; during a failover that is
			// thousands of lines.
			redis.SetLogger(redisLogger{o.Log.With("from", "go-redis")})
			o.Out = cmd.OutOrStdout()
			o.Targets = nil
			for _, t := range strings.Split(targets, ",") {
				if t = strings.TrimSpace(t); t != "" {
					o.Targets = append(o.Targets, t)
				}
			}
			if err := validTargets(o.Targets); err != nil {
				return err
			}
			if o.Trials < 1 || o.Clients < 1 || o.ValueSize < 1 || o.PoolSize < 0 {
				return fmt.Errorf("--trials, --clients and --value-size must be at least 1, --pool-size not negative")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := Run(ctx, o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&targets, "targets", strings.Join(TargetNames(), ","), "comma-separated targets, the first is the base of the ratios")
	f.IntVar(&o.Trials, "trials", 10, "kill -9 trials per target")
	f.IntVar(&o.Clients, "clients", 50, "concurrent writers")
	f.BoolVar(&o.ClientPerWorker, "client-per-worker", false, "give each worker a client of its own instead of one shared client")
	f.IntVar(&o.PoolSize, "pool-size", 0, "pool size of each client (default: --clients for a shared client, 1 per worker); go-redis stops dialing for a second at a time after this many failed dials, 1000000 turns that off")
	f.IntVar(&o.ValueSize, "value-size", 100, "bytes per value")
	f.DurationVar(&o.LoadBefore, "load-between", 3*time.Second, "load before each kill (after the target is healthy again)")
	f.DurationVar(&o.RestartDelay, "restart-delay", time.Second, "wait after the new leader's first acknowledgement before restarting the killed process")
	f.DurationVar(&o.LoadAfter, "load-after", 2*time.Second, "load after the restart, before the trial's load stops")
	f.StringVar(&o.Fault, "fault", "kill", "kill (kill -9 the leader, then restart it) or pause (SIGSTOP it, then SIGCONT)")
	f.DurationVar(&o.Saturate, "saturate", 15*time.Second, "before each target's trials, saturate its leader with redis-benchmark -c 50 -P 16 SET this long and count the failovers meanwhile (all false; 0 skips)")
	f.IntVar(&o.SaturateKeys, "saturate-keys", 1_000_000, "key space of the saturation phases' SETs (redis-benchmark -r; the bulk streams' keys)")
	f.DurationVar(&o.SaturateBulk, "saturate-bulk", 15*time.Second, "then load the leader with --bulk-streams bulk-load streams (redis-cli --pipe's load: SETs sent without waiting for replies) this long and count the failovers meanwhile (0 skips)")
	f.IntVar(&o.BulkStreams, "bulk-streams", 50, "connections of the bulk-load phase")
	f.DurationVar(&o.FailoverTimeout, "failover-timeout", 60*time.Second, "longest wait for a write acknowledged after the kill")
	f.DurationVar(&o.HealthTimeout, "health-timeout", 120*time.Second, "longest wait for the target to be healthy")
	f.StringVar(&o.Dir, "dir", "", "directory for the targets' data and logs (default: a temporary one, removed unless --keep or a failure)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary directory")
	f.StringVar(&logLevel, "log-level", "warn", "log level (debug, info, warn, error), to stderr")
	return cmd
}

// redisLogger sends go-redis's log lines to slog at Debug.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
