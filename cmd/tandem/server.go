package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/node"
	"github.com/tandemdb/tandem/internal/replication"
)

func serverCmd() *cobra.Command {
	var (
		cfg       node.Config
		mode      string
		buggify   []string
		logLevel  string
		etcd      string
		routes    []string
		maxMemory string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one tandem node",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if cfg.Mode, err = commit.ParseMode(mode); err != nil {
				return err
			}
			if cfg.Mode.NeedsSyncSet() && etcd == "" {
				return fmt.Errorf("--mode %s needs a sync set, which the control plane manages: give --etcd", cfg.Mode)
			}
			for _, b := range buggify {
				switch b {
				case "ack-before-durable":
					cfg.Buggify.AckBeforeDurable = true
				case "follower-skip-entry":
					cfg.Buggify.FollowerSkipEntry = true
				case "follower-skip-functions":
					cfg.Buggify.FollowerSkipFunctions = true
				case "slow-disk":
					cfg.Buggify.SlowDisk = true
				case "follower-pub-reorder":
					cfg.Buggify.FollowerPubReorder = true
				case "follower-ignore-token":
					cfg.Buggify.FollowerIgnoreToken = true
				case "leader-forgets-user-floor":
					cfg.Buggify.LeaderForgetsUserFloor = true
				case "leader-resumes-epoch":
					cfg.Buggify.LeaderResumesEpoch = true
				case "tx-split":
					cfg.Buggify.TxSplit = true
				case "blocked-pop-lost-reply":
					cfg.Buggify.BlockedPopLostReply = true
				case "follower-no-leader-timeout":
					cfg.Buggify.FollowerNoLeaderTimeout = true
				default:
					d, ok := strings.CutPrefix(b, "follower-apply-delay=")
					if !ok {
						return fmt.Errorf("unknown --buggify %q (ack-before-durable, follower-skip-entry, follower-skip-functions, slow-disk, follower-apply-delay=DURATION, follower-ignore-token, leader-forgets-user-floor, tx-split, follower-pub-reorder, leader-resumes-epoch, blocked-pop-lost-reply, follower-no-leader-timeout)", b)
					}
					if cfg.Buggify.FollowerApplyDelay, err = time.ParseDuration(d); err != nil || cfg.Buggify.FollowerApplyDelay <= 0 {
						return fmt.Errorf("--buggify %q: want a positive duration such as 50ms", b)
					}
				}
				log.Warn("BUGGIFY fault enabled: this node deliberately breaks its promises", "fault", b)
			}
			if (cfg.FollowPeer == "") != (cfg.FollowRESP == "") {
				return fmt.Errorf("--follow-peer and --follow-resp go together")
			}
			cfg.Etcd = coord.ParseEndpoints(etcd)
			if len(cfg.Etcd) > 0 && cfg.FollowPeer != "" {
				return fmt.Errorf("--etcd and --follow-peer exclude each other: under the control plane the topology says whom to follow")
			}
			if cfg.Priority < 0 || cfg.Priority > 100 {
				return fmt.Errorf("--priority %d: want 0-100 (0 = never promote)", cfg.Priority)
			}
			if cfg.PeerRoutes, err = parseRoutes(routes); err != nil {
				return err
			}
			if cfg.MaxMemory, err = parseBytes(maxMemory); err != nil {
				return fmt.Errorf("--max-memory: %w", err)
			}
			setMemoryLimit(log, node.PlanMemory(cfg.MaxMemory).GoLimit)
			cfg.Logger = log
			n, err := node.Start(cfg)
			if err != nil {
				return err
			}
			respAddr, peer, httpAddr := n.Addrs()
			log.Info("serving", "node", cfg.ID, "resp", respAddr, "peer", peer, "http", httpAddr, "pid", os.Getpid())
			stopProcs := make(chan struct{})
			if os.Getenv("GOMAXPROCS") == "" {
				// One P while idle, all as soon as there is work.
				go node.AdaptProcs(stopProcs, runtime.GOMAXPROCS(0), log)
			}
			governed := make(chan struct{})
			if os.Getenv("GOMEMLIMIT") == "" {
				// The Go limit follows what Pebble holds (the GC's
				// headroom), and the GC percent the spare memory under
				// it unless the environment sets GOGC; it reads the
				// storage, so it ends before Close.
				go func() {
					defer close(governed)
					node.GovernMemoryLimit(stopProcs, cfg.MaxMemory, n.OffHeapBytes, os.Getenv("GOGC") == "", log)
				}()
			} else {
				close(governed)
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			<-sig
			close(stopProcs)
			<-governed
			log.Info("shutting down", "node", cfg.ID)
			n.Close()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "n1", "node id")
	f.StringVar(&cfg.DataDir, "dir", "./tandem-data/n1", "data directory")
	f.StringVar(&cfg.RESPAddr, "resp-addr", "127.0.0.1:6380", "address for Redis clients")
	f.StringVar(&cfg.PeerAddr, "peer-addr", "127.0.0.1:7380", "address of the gRPC peer service")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8380", "address for /status, /metrics and pprof")
	f.StringVar(&cfg.FollowRESP, "follow-resp", "", "RESP address of the leader to follow (empty: lead)")
	f.StringVar(&cfg.FollowPeer, "follow-peer", "", "peer address of the leader to follow (empty: lead)")
	f.StringVar(&mode, "mode", "async", "durability mode: async or quorum K")
	f.Int64Var(&cfg.RetainBytes, "retain-bytes", 1<<30, "cap on the retained log; followers behind it are re-seeded")
	f.Int64Var(&cfg.RetainMinBytes, "retain-min-bytes", replication.DefaultRetainMinBytes, "log kept beyond what the known followers need (for one the leader has not heard from since it started); a follower keeps this much of its applied log")
	f.StringVar(&maxMemory, "max-memory", "192mb", "memory budget: Pebble's block cache and memtables and the row cache get an eighth each, the Go heap the rest (its GOMEMLIMIT, unless the environment sets one); bytes, or with kb, mb, gb")
	f.Int64Var(&cfg.MaxBulkLen, "max-bulk-len", 512<<20, "largest bulk string a client may send")
	f.DurationVar(&cfg.WriteTimeout, "write-timeout", 5*time.Second, "how long a write may wait to be committed before it fails with NOREPLICAS (it may still commit later)")
	f.IntVar(&cfg.MaxInFlight, "max-inflight", 10000, "writes sequenced but not yet committed, at most; past it writes wait, then fail with TRYAGAIN")
	f.Int64Var(&cfg.MaxInFlightBytes, "max-inflight-bytes", 64<<20, "bytes of writes sequenced but not yet committed, at most")
	f.DurationVar(&cfg.MaxCommitDelay, "max-commit-delay", time.Millisecond, "adaptive group commit: the longest a log append may wait for more writes while they arrive faster than appends complete (at most half an append's time; never when idle); negative: never wait")
	f.IntVar(&cfg.AnswerSplit, "answer-split", replication.DefaultAnswerSplit, "a group commit's replies to lone writes are written on two goroutines when there are at least this many (0, the default: always on the one that applied the group; on 2 shared cores splitting measured no gain)")
	f.DurationVar(&cfg.FollowerTimeout, "follower-timeout", time.Minute, "how long the leader keeps a follower it does not hear from (pinning log retention, counting for WAIT)")
	f.DurationVar(&cfg.LeaderTimeout, "leader-timeout", replication.DefaultLeaderTimeout, "how long a follower waits on its stream hearing nothing from the leader (no entries, no heartbeat: it sends one at least every 125 ms) before it drops the stream and its connection and connects again; negative: never")
	f.StringSliceVar(&buggify, "buggify", nil, "deliberate faults for harness tests: ack-before-durable, follower-skip-entry, follower-skip-functions (a follower applies no FUNCTION LOAD/DELETE/FLUSH/RESTORE), slow-disk (a 1 s log stall every 2 s on the leader), follower-apply-delay=DURATION (a follower waits that long before applying each batch: real replication lag), follower-ignore-token (a follower serves policy reads without waiting for the session's token), leader-forgets-user-floor (a new leader gives users it has not seen write no floor), tx-split (the leader logs a MULTI/EXEC as two entries), follower-pub-reorder (a follower delivers pub/sub messages in swapped pairs), leader-resumes-epoch (a node that leads again resumes its last epoch instead of taking a new one), blocked-pop-lost-reply (a woken blocked pop that took an element answers nil), follower-no-leader-timeout (a follower waits on a silent stream for ever, as if --leader-timeout were off)")
	f.DurationVar(&cfg.ReadWait, "read-wait", node.DefaultReadWait, "how long a follower waits for a session's position (its read policy) before it answers TRYAGAIN read elsewhere")
	f.DurationVar(&cfg.ScriptBusyAfter, "busy-reply-threshold", 5*time.Second, "how long a Lua script may hold the leader's sequencer before writes are answered BUSY instead of queued behind it (SCRIPT KILL stops a script that has not written)")
	f.Int64Var(&cfg.MaxReplyBytes, "max-reply-bytes", commands.DefaultMaxReplyBytes, "largest reply a command (or a MULTI/EXEC's commands together) may build; a bigger one is refused with an error before it is built (CONFIG SET max-reply-bytes changes it)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&etcd, "etcd", "", "etcd endpoints (comma-separated): take the role from the control plane instead of --follow-*")
	f.StringVar(&cfg.Cluster, "cluster", "tandem", "the cluster's name (etcd key prefix /tandem/NAME/)")
	f.IntVar(&cfg.Priority, "priority", 100, "failover priority 0-100; 0 means never promote this node")
	f.StringVar(&cfg.Zone, "zone", "", "the node's zone, recorded in its member record")
	f.DurationVar(&cfg.FenceAfter, "fence-after", node.DefaultFenceAfter, "how long a leader answers after its last confirmation against etcd; a new leader waits as long before answering")
	f.StringSliceVar(&routes, "peer-route", nil, "ID=HOST:PORT: reach member ID's peer service there instead of its registered address (for relays)")
	return cmd
}

// setMemoryLimit sets the Go runtime's soft memory limit, unless the
// environment's GOMEMLIMIT chose one.
func setMemoryLimit(log *slog.Logger, limit int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("GOMEMLIMIT set by the environment; --max-memory sizes the caches only", "gomemlimit", os.Getenv("GOMEMLIMIT"))
		return
	}
	debug.SetMemoryLimit(limit)
}

// parseBytes parses a size as Redis's maxmemory does: a number of bytes,
// or with a unit: k, m, g (powers of 1000) or kb, mb, gb (of 1024), in
// any case.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}}
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a size such as 268435456, 256mb or 1gb", s)
	}
	return n * mult, nil
}

// parseRoutes parses --peer-route values.
func parseRoutes(routes []string) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range routes {
		id, addr, ok := strings.Cut(r, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peer-route %q: want ID=HOST:PORT", r)
		}
		out[id] = addr
	}
	return out, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
