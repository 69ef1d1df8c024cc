package commitbench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandemdb/tandem/internal/proc"
)

// Postgres is a PostgreSQL primary with one synchronous standby on
// loopback, from the system's PostgreSQL, loaded by pgbench running an
// upsert: a commit returns once the standby has flushed its WAL.
type Postgres struct {
	log *slog.Logger

	bin     string // the version's bin dir, e.g. /usr/lib/postgresql/15/bin
	version string
	// cred runs PostgreSQL's programs as the postgres user when we are
	// root: the server refuses to run as root.
	cred    *syscall.Credential
	base    string // dir/pg, owned by the user the servers run as
	primary pgServer
	standby pgServer
	runs    int
}

type pgServer struct {
	name string // "primary", "standby"
	dir  string
	port int
	pid  int

	p    *proc.Process // the postmaster; nil when stopped
	logf *os.File
}

// NewPostgres returns the PostgreSQL target; Start starts it.
func NewPostgres(log *slog.Logger) *Postgres {
	return &Postgres{log: log}
}

func (p *Postgres) Name() string { return "postgres" }

func (p *Postgres) Describe() string {
	v := p.version
	if v == "" {
		v = "(version unknown)"
	}
	return fmt.Sprintf("PostgreSQL %s, primary + 1 synchronous standby (synchronous_commit on), pgbench upsert", v)
}

// pgBinDir is the bin dir of the newest PostgreSQL under
// /usr/lib/postgresql (Debian's layout, one dir per major version).
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(major(a), major(b)) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("commitbench: postgres: no /usr/lib/postgresql/*/bin/postgres (is the postgresql package installed?)")
}

// pgVersion turns `postgres --version` ("postgres (PostgreSQL) 15.18
// (Debian 15.18-0+deb12u1)") into "15.18 (Debian)".
func pgVersion(out string) string {
	f := strings.Fields(out)
	for i, w := range f {
		if w == "(PostgreSQL)" && i+1 < len(f) {
			v := f[i+1]
			if strings.Contains(out, "(Debian") {
				v += " (Debian)"
			}
			return v
		}
	}
	return strings.TrimSpace(out)
}

// command is a PostgreSQL program, run as the postgres user if we are
// root, from a dir that user can enter, with no PG* variables of ours.
func (p *Postgres) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, prog), args...)
	cmd.Env = peerEnv("PG")
	cmd.Dir = p.base
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
		cmd.Env = append(cmd.Env, "HOME="+p.base)
	}
	// Once ctx ends and the program is killed, Wait gives up on output
	// pipes a leftover child of the program might still hold.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a PostgreSQL program to completion; its output goes into the
// error.
func (p *Postgres) run(ctx context.Context, prog string, args ...string) (string, error) {
	cmd := p.command(ctx, prog, args...)
	p.log.Debug("postgres: run", "cmd", cmd.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("commitbench: postgres: %s: %w: %s", prog, err, pgTail(out, 2000))
	}
	return string(out), nil
}

// pgTail is the last n bytes of out, trimmed.
func pgTail(out []byte, n int) string {
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(bytes.TrimSpace(out))
}

func (p *Postgres) psql(ctx context.Context, port int, sql string) (string, error) {
	out, err := p.run(ctx, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres", "-c", sql)
	return strings.TrimSpace(out), err
}

// owned makes path the postgres user's when we run PostgreSQL as it.
func (p *Postgres) owned(path string) error {
	if p.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	return nil
}

// traversable gives others search permission on dir and each dir above
// it that lacks it, so the postgres user reaches its data dirs under a
// 0700 temp dir of root's. Nothing becomes readable or writable.
func (p *Postgres) traversable(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	for {
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("commitbench: postgres: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			p.log.Debug("postgres: chmod o+x so the postgres user can reach its data dirs", "dir", dir)
			if err := os.Chmod(dir, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("commitbench: postgres: %w", err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// pgQuote is a single-quoted postgresql.conf value.
func pgQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func pgAppendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("commitbench: postgres: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("commitbench: postgres: %s: %w", path, err)
	}
	return nil
}

func (p *Postgres) Start(ctx context.Context, dir string) error {
	if err := p.start(ctx, dir); err != nil {
		p.Stop()
		return err
	}
	return nil
}

func (p *Postgres) start(ctx context.Context, dir string) error {
	var err error
	if p.bin, err = pgBinDir(); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(p.bin, "postgres"), "--version").Output()
	if err != nil {
		return fmt.Errorf("commitbench: postgres: postgres --version: %w", err)
	}
	p.version = pgVersion(string(out))

	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("commitbench: postgres: running as root, and PostgreSQL needs a user to run as: %w", err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("commitbench: postgres: user postgres: %w", err)
		}
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := p.traversable(dir); err != nil {
			return err
		}
	}
	p.base = filepath.Join(dir, "pg")
	if err := os.Mkdir(p.base, 0o755); err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	if err := p.owned(p.base); err != nil {
		return err
	}
	ports, err := proc.FreePorts(2)
	if err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	p.primary = pgServer{name: "primary", dir: filepath.Join(p.base, "primary"), port: ports[0]}
	p.standby = pgServer{name: "standby", dir: filepath.Join(p.base, "standby"), port: ports[1]}
	p.log.Info("starting postgres", "version", p.version, "primary_port", p.primary.port, "standby_port", p.standby.port, "dir", p.base)

	if _, err := p.run(ctx, "initdb", "-D", p.primary.dir, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--no-locale", "--no-instructions"); err != nil {
		return err
	}
	// synchronous_standby_names '*' with synchronous_commit on: a commit
	// waits for the standby to flush the commit's WAL to its disk, the
	// durability of a write acknowledged by 2 of 2 nodes.
	conf := fmt.Sprintf(`
# commitbench
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = %s
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
synchronous_standby_names = '*'
wal_level = replica
max_wal_senders = 5
`, p.primary.port, pgQuote(p.primary.dir))
	if err := pgAppendFile(filepath.Join(p.primary.dir, "postgresql.conf"), conf); err != nil {
		return err
	}
	if err := p.pgStart(ctx, &p.primary); err != nil {
		return err
	}

	if _, err := p.run(ctx, "pg_basebackup", "-D", p.standby.dir, "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.primary.port), "-U", "postgres"); err != nil {
		return err
	}
	// The standby's postgresql.conf is the primary's copy; the settings
	// here come after it and after -R's primary_conninfo, so they win.
	// application_name is what pg_stat_replication shows for it.
	standbyConf := fmt.Sprintf(`
# commitbench
port = %d
unix_socket_directories = %s
primary_conninfo = %s
`, p.standby.port, pgQuote(p.standby.dir),
		pgQuote(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", p.primary.port)))
	if err := pgAppendFile(filepath.Join(p.standby.dir, "postgresql.auto.conf"), standbyConf); err != nil {
		return err
	}
	if err := p.pgStart(ctx, &p.standby); err != nil {
		return err
	}
	if err := p.waitSync(ctx, 60*time.Second); err != nil {
		return err
	}
	if _, err := p.psql(ctx, p.primary.port, "CREATE TABLE kv (k integer PRIMARY KEY, v text NOT NULL)"); err != nil {
		return err
	}
	p.log.Info("postgres started", "primary_pid", p.primary.pid, "standby_pid", p.standby.pid)
	return nil
}

// pgStart starts a server's postmaster as our child rather than through
// pg_ctl, which would leave it to be reaped by init: in a container whose
// init does not reap, every run would leave two zombies behind. It
// returns once the server accepts connections.
func (p *Postgres) pgStart(ctx context.Context, s *pgServer) error {
	logPath := filepath.Join(p.base, s.name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("commitbench: postgres: %w", err)
	}
	cmd := p.command(context.Background(), "postgres", "-D", s.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	p.log.Debug("postgres: start", "cmd", cmd.String())
	pr, err := proc.Start(cmd)
	if err != nil {
		logf.Close()
		return fmt.Errorf("commitbench: postgres: %s: %w", s.name, err)
	}
	s.p, s.logf = pr, logf
	s.pid = pr.Pid()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		select {
		case <-s.p.Done():
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("commitbench: postgres: %s exited during start (%v); %s: %s", s.name, s.p.Err(), logPath, pgTail(b, 2000))
		default:
		}
		// pg_isready exits 0 once the server accepts connections (the
		// standby once it is consistent and allows hot standby queries).
		if _, err := p.run(ctx, "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port)); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("commitbench: postgres: %s not accepting connections: %w", s.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.log.Debug("postgres server started", "name", s.name, "pid", s.pid, "port", s.port)
	return nil
}

// waitSync returns once the primary reports the standby as its
// synchronous standby.
func (p *Postgres) waitSync(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var state string
	var err error
	for {
		state, err = p.psql(ctx, p.primary.port, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'")
		if err == nil && state == "sync" {
			return nil
		}
		p.log.Debug("postgres: standby not synchronous yet", "sync_state", state, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("commitbench: postgres: standby not synchronous (sync_state %q, %v): %w", state, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *Postgres) Processes() []Process {
	var ps []Process
	if p.primary.pid != 0 {
		ps = append(ps, Process{Role: "primary", PID: p.primary.pid})
	}
	if p.standby.pid != 0 {
		ps = append(ps, Process{Role: "replica", PID: p.standby.pid})
	}
	return ps
}

// pgSeconds is d rounded up to whole seconds, pgbench's -T unit.
func pgSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (p *Postgres) Run(ctx context.Context, l Load) (Result, error) {
	if l.Clients < 1 || l.Keyspace < 1 || l.ValueSize < 0 {
		return Result{}, fmt.Errorf("commitbench: postgres: bad load %+v", l)
	}
	p.runs++
	dir := filepath.Join(p.base, fmt.Sprintf("run%d", p.runs))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("commitbench: postgres: %w", err)
	}
	if err := p.owned(dir); err != nil {
		return Result{}, err
	}
	// The value is a literal in the script: the same bytes every time,
	// as the workers of the other targets write.
	script := fmt.Sprintf("\\set k random(1, %d)\nINSERT INTO kv (k, v) VALUES (:k, '%s') ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n",
		l.Keyspace, strings.Repeat("x", l.ValueSize))
	scriptPath := filepath.Join(dir, "upsert.sql")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		return Result{}, fmt.Errorf("commitbench: postgres: %w", err)
	}
	args := func(seconds int) []string {
		return []string{"-n", "-c", strconv.Itoa(l.Clients), "-j", strconv.Itoa(min(2, l.Clients)),
			"-T", strconv.Itoa(seconds), "-M", "prepared", "-f", scriptPath,
			"-h", "127.0.0.1", "-p", strconv.Itoa(p.primary.port), "-U", "postgres"}
	}

	if l.Warmup > 0 {
		p.log.Debug("postgres: pgbench warmup", "seconds", pgSeconds(l.Warmup))
		if _, err := p.run(ctx, "pgbench", append(args(pgSeconds(l.Warmup)), "postgres")...); err != nil {
			return Result{}, fmt.Errorf("%w (warmup)", err)
		}
	}

	seconds := max(1, pgSeconds(l.Duration))
	prefix := filepath.Join(dir, "txlog")
	p.log.Info("postgres: pgbench", "clients", l.Clients, "seconds", seconds)
	t0 := time.Now()
	out, err := p.run(ctx, "pgbench", append(args(seconds), "-l", "--log-prefix="+prefix, "postgres")...)
	wall := time.Since(t0)
	if werr := os.WriteFile(filepath.Join(dir, "pgbench-output.txt"), []byte(out), 0o644); werr != nil {
		p.log.Debug("postgres: keeping pgbench's output", "err", werr)
	}
	if err != nil {
		return Result{}, err
	}

	// pgbench writes a log per thread: txlog.PID, txlog.PID.1, ...
	logs, _ := filepath.Glob(prefix + ".*")
	if len(logs) == 0 {
		return Result{}, fmt.Errorf("commitbench: postgres: no pgbench log %s.*", prefix)
	}
	var res Result
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			return Result{}, fmt.Errorf("commitbench: postgres: %w", err)
		}
		lat, errs, err := parsePgbenchLog(f)
		f.Close()
		if err != nil {
			return Result{}, fmt.Errorf("commitbench: postgres: %s: %w", path, err)
		}
		res.Latencies = append(res.Latencies, lat...)
		res.Errors += errs
	}
	// pgbench's clock for -T starts once every client is connected, and
	// the connections are not part of what is measured.
	res.Elapsed = time.Duration(seconds) * time.Second
	p.log.Info("postgres: pgbench done", "transactions", len(res.Latencies), "errors", res.Errors,
		"tps", float64(len(res.Latencies))/res.Elapsed.Seconds(), "wall", wall)
	return res, nil
}

// parsePgbenchLog reads a pgbench per-transaction log (-l): lines of
// "client_id transaction_no time script_no time_epoch time_us [...]",
// time being the latency in microseconds, or "failed" or "skipped" for a
// transaction that did not commit.
func parsePgbenchLog(r io.Reader) (lat []time.Duration, errors int, err error) {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return nil, 0, fmt.Errorf("line %d: %d fields, want at least 6: %q", n, len(f), sc.Text())
		}
		switch f[2] {
		case "failed", "skipped":
			errors++
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 {
			return nil, 0, fmt.Errorf("line %d: latency %q: not a count of microseconds", n, f[2])
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	return lat, errors, nil
}

// Stop stops the primary, then the standby (so the standby gets the
// primary's last WAL), with pg_ctl's fast mode: open transactions are
// rolled back. A server still running 30 s later is stopped in immediate
// mode, then killed. The data dirs stay for the caller.
func (p *Postgres) Stop() error {
	var errs []error
	for _, s := range []*pgServer{&p.primary, &p.standby} {
		if s.p == nil {
			continue
		}
		if err := p.pgStop(s); err != nil {
			errs = append(errs, err)
		}
		s.logf.Close()
		s.p = nil
	}
	if p.primary.pid != 0 {
		p.log.Info("postgres stopped")
	}
	return errors.Join(errs...)
}

func (p *Postgres) pgStop(s *pgServer) error {
	if s.p.Exited() {
		return nil // gone already, e.g. on the terminal's Ctrl-C
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, err := p.run(ctx, "pg_ctl", "-D", s.dir, "-m", "fast", "-w", "-t", "30", "stop")
	if err == nil {
		select {
		case <-s.p.Done():
			return nil
		case <-ctx.Done():
			err = fmt.Errorf("commitbench: postgres: %s: pg_ctl stop returned, the postmaster did not exit", s.name)
		}
	}
	p.log.Info("postgres: fast stop failed, killing the server", "name", s.name, "pid", s.pid, "err", err)
	// SIGQUIT is the postmaster's immediate shutdown: it takes its
	// children with it, which SIGKILL would leave running.
	return errors.Join(err, s.p.StopWith(syscall.SIGQUIT, 10*time.Second))
}
