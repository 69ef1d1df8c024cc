package commitbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/proc"
)

// Redis is Redis 7 from the redis-server in PATH: a primary and two
// replicas on loopback (three copies, as tandem's three nodes),
// appendonly yes, appendfsync always, no RDB saves. Each write is SET
// followed by WAIT 1 0 in one round trip (a pipeline), acknowledged when
// WAIT answers at least 1: a replica has received the write (Redis's WAIT
// does not wait for the replica's fsync) — tandem's semisync counterpart.
type Redis struct {
	log     *slog.Logger
	version string
	servers []*proc.Process
	addr    string
}

// redisReplicas is the number of replicas beside the primary.
const redisReplicas = 2

// NewRedis returns the Redis target, not started.
func NewRedis(log *slog.Logger) *Redis { return &Redis{log: log} }

// Name implements Target.
func (r *Redis) Name() string { return "redis-wait" }

// Describe implements Target.
func (r *Redis) Describe() string {
	return "Redis " + r.version + ", primary + " + strconv.Itoa(redisReplicas) + " replicas, appendonly yes, appendfsync always, SET + WAIT 1 0 pipelined, go-redis"
}

// Start implements Target.
func (r *Redis) Start(ctx context.Context, dir string) error {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return fmt.Errorf("commitbench: redis-server --version: %w (bench/commit.sh installs it)", err)
	}
	r.version = strings.TrimPrefix(strings.Fields(string(out) + " v=?")[2], "v=")
	ports, err := proc.FreePorts(1 + redisReplicas)
	if err != nil {
		return fmt.Errorf("commitbench: redis: %w", err)
	}
	for i, port := range ports {
		d := filepath.Join(dir, "redis"+strconv.Itoa(i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("commitbench: %w", err)
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--dir", d, "--logfile", filepath.Join(d, "redis.log"),
			"--appendonly", "yes", "--appendfsync", "always", "--save", ""}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
		}
		p, err := startProcess(d, "redis-server", args...)
		if err != nil {
			return err
		}
		r.servers = append(r.servers, p)
	}
	r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	c := newRedisConn(r.addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(ctx, func() (bool, string) {
		n, err := c.Do(ctx, "WAIT", strconv.Itoa(redisReplicas), "100").Int()
		return err == nil && n >= redisReplicas, fmt.Sprintf("WAIT %d: %d %v", redisReplicas, n, err)
	})
}

// Processes implements Target.
func (r *Redis) Processes() []Process {
	out := make([]Process, len(r.servers))
	for i, p := range r.servers {
		role := "replica"
		if i == 0 {
			role = "primary"
		}
		out[i] = Process{Role: role, PID: p.Pid()}
	}
	return out
}

// NewWorker implements WorkerTarget.
func (r *Redis) NewWorker(context.Context) (Worker, error) {
	return redisSetWait{c: newRedisConn(r.addr)}, nil
}

// Stop implements Target.
func (r *Redis) Stop() error {
	var errs []error
	for _, p := range r.servers {
		errs = append(errs, p.Stop(10*time.Second))
	}
	r.servers = nil
	return errors.Join(errs...)
}

// redisSetWait is SET then WAIT 1 0, sent together.
type redisSetWait struct{ c *redis.Client }

var errNotReplicated = errors.New("WAIT 1 0 answered 0 replicas")

func (w redisSetWait) Write(ctx context.Context, key string, value []byte) error {
	pipe := w.c.Pipeline()
	set := pipe.Set(ctx, key, value, 0)
	wait := pipe.Do(ctx, "WAIT", "1", "0")
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if err := set.Err(); err != nil {
		return err
	}
	if n, err := wait.Int(); err != nil || n < 1 {
		return errors.Join(errNotReplicated, err)
	}
	return nil
}

func (w redisSetWait) Close() error { return w.c.Close() }

// startProcess starts name with args, output to dir/stdout.log. The
// process dies with the benchmark.
func startProcess(dir, name string, args ...string) (*proc.Process, error) {
	out, err := os.OpenFile(filepath.Join(dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("commitbench: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := proc.Start(cmd, out)
	if err != nil {
		return nil, fmt.Errorf("commitbench: %w", err)
	}
	return p, nil
}
