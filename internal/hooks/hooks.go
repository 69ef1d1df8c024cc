// Package hooks runs an operator's commands and HTTP POSTs on control-plane
// events (Patroni's callbacks, MySQL orchestrator's
// OnFailureDetectionProcesses and PostFailoverProcesses): a failed leader
// detected, a failover or manual promotion about to happen, one done.
//
// What it promises:
//
//   - Fire never blocks and never waits for a hook: the caller is the
//     orchestrator's failover path, which a slow pager or a hung script
//     must not delay. Each hook (command or URL) has its own goroutine and
//     a bounded queue; an event that finds a hook's queue full is dropped
//     for that hook and logged, never waited for.
//   - Each hook sees every event once, in the order Fire was called, one at
//     a time: a hook's "detected" runs to its end before its
//     "post_failover" starts. Hooks do not wait for each other, so at most
//     one run per hook is in flight.
//   - A run that takes longer than Config.Timeout is stopped: a command's
//     whole process group is killed, an HTTP request cancelled. A failure
//     (non-zero exit, an HTTP status other than 2xx, a timeout) is logged
//     with the command's output and counted (Failures); nothing is retried.
//   - A command runs as `sh -c COMMAND` with the event as one line of JSON
//     on its standard input and in TANDEM_EVENT_JSON, and its fields in
//     TANDEM_EVENT, TANDEM_CLUSTER, TANDEM_OLD_LEADER, TANDEM_NEW_LEADER,
//     TANDEM_EPOCH, TANDEM_OLD_EPOCH, TANDEM_TIME and TANDEM_REASON; a URL
//     gets the JSON as the body of a POST (Content-Type application/json).
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Event kinds.
const (
	// Detected: the active orchestrator found the leader failed (under the
	// manual policy it then waits for an operator).
	Detected = "detected"
	// PreFailover and PostFailover surround an automatic failover (in
	// quorum K, Pre comes before its first step, Post after its second).
	PreFailover  = "pre_failover"
	PostFailover = "post_failover"
	// PrePromote and PostPromote surround `tandem promote`.
	PrePromote  = "pre_promote"
	PostPromote = "post_promote"
	// PreSwitchover and PostSwitchover surround `tandem switchover`.
	PreSwitchover  = "pre_switchover"
	PostSwitchover = "post_switchover"
	// LeaderReturned: a leader detected as failed answers again before
	// any failover (under the manual policy: the wait is over).
	LeaderReturned = "leader_returned"
)

// Event is what a hook is told: the JSON on a command's standard input and
// in a POST's body.
type Event struct {
	Kind    string `json:"event"` // one of the kinds above
	Cluster string `json:"cluster"`
	// OldLeader is the leader that failed or is replaced; NewLeader the
	// one chosen (empty on detection).
	OldLeader string `json:"old_leader,omitempty"`
	NewLeader string `json:"new_leader,omitempty"`
	// Epoch is the epoch in force: the failed leader's before a change,
	// the new leader's after one (OldEpoch is then the one before).
	Epoch    uint64    `json:"epoch"`
	OldEpoch uint64    `json:"old_epoch,omitempty"`
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason"`
}

// env is the event as environment variables for a command.
func (e Event) env(js []byte) []string {
	return []string{
		"TANDEM_EVENT=" + e.Kind,
		"TANDEM_CLUSTER=" + e.Cluster,
		"TANDEM_OLD_LEADER=" + e.OldLeader,
		"TANDEM_NEW_LEADER=" + e.NewLeader,
		"TANDEM_EPOCH=" + strconv.FormatUint(e.Epoch, 10),
		"TANDEM_OLD_EPOCH=" + strconv.FormatUint(e.OldEpoch, 10),
		"TANDEM_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
		"TANDEM_REASON=" + e.Reason,
		"TANDEM_EVENT_JSON=" + string(js),
	}
}

// Config says which hooks to run.
type Config struct {
	// Commands are shell commands (sh -c), URLs HTTP endpoints to POST to.
	Commands []string
	URLs     []string
	// Timeout bounds one run of one hook (default 5 s).
	Timeout time.Duration
	// Queue is how many events may wait per hook (default 64).
	Queue  int
	Logger *slog.Logger
}

// Runner runs the configured hooks. The zero of *Runner (nil) runs none.
type Runner struct {
	cfg      Config
	log      *slog.Logger
	hooks    []*hook
	failures atomic.Uint64
	// mu orders Fire's sends before Close's closing of the queues.
	mu     sync.RWMutex
	closed bool
	// stop ends every run once Close has waited Timeout for them.
	stop     context.Context
	stopRuns context.CancelFunc
	wg       sync.WaitGroup
}

type hook struct {
	name  string // for logs
	run   func(ctx context.Context, ev Event, js []byte) error
	queue chan Event
}

// New starts a goroutine per configured hook; Close stops them.
func New(cfg Config) *Runner {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runner{cfg: cfg, log: cfg.Logger}
	r.stop, r.stopRuns = context.WithCancel(context.Background())
	for _, c := range cfg.Commands {
		r.hooks = append(r.hooks, &hook{name: "command " + strconv.Quote(c), run: commandHook(c), queue: make(chan Event, cfg.Queue)})
	}
	client := &http.Client{}
	for _, u := range cfg.URLs {
		r.hooks = append(r.hooks, &hook{name: "url " + u, run: urlHook(client, u), queue: make(chan Event, cfg.Queue)})
	}
	for _, h := range r.hooks {
		r.wg.Add(1)
		go r.serve(h)
	}
	return r
}

// Fire hands ev to every hook and returns at once.
func (r *Runner) Fire(ev Event) {
	if r == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	for _, h := range r.hooks {
		select {
		case h.queue <- ev:
		default:
			r.failures.Add(1)
			r.log.Error("hook: queue full, event dropped for this hook (is it hanging?)", "hook", h.name, "event", ev.Kind)
		}
	}
}

// Failures counts hook runs that failed, timed out or were dropped.
func (r *Runner) Failures() uint64 {
	if r == nil {
		return 0
	}
	return r.failures.Load()
}

// Close stops taking events and lets the hooks run what is queued for at
// most Timeout more: then the runs still going are stopped and the events
// not started are dropped (and logged). It returns when every hook's
// goroutine has ended.
func (r *Runner) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		for _, h := range r.hooks {
			close(h.queue)
		}
	}
	r.mu.Unlock()
	t := time.AfterFunc(r.cfg.Timeout, r.stopRuns)
	r.wg.Wait()
	t.Stop()
	r.stopRuns()
}

// serve runs h's events one at a time, in order.
func (r *Runner) serve(h *hook) {
	defer r.wg.Done()
	for ev := range h.queue {
		if r.stop.Err() != nil {
			r.log.Warn("hook: shut down before this event ran", "hook", h.name, "event", ev.Kind)
			continue
		}
		js, err := json.Marshal(ev)
		if err != nil { // cannot happen: Event has only plain fields
			r.log.Error("hook: encode event", "err", err)
			continue
		}
		ctx, cancel := context.WithTimeout(r.stop, r.cfg.Timeout)
		start := time.Now()
		err = h.run(ctx, ev, js)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("stopped after %v (timeout %v, or shutting down): %w", time.Since(start).Round(time.Millisecond), r.cfg.Timeout, err)
		}
		cancel()
		if err != nil {
			r.failures.Add(1)
			r.log.Error("hook failed", "hook", h.name, "event", ev.Kind, "took", time.Since(start).Round(time.Millisecond), "err", err)
			continue
		}
		r.log.Info("hook ran", "hook", h.name, "event", ev.Kind, "took", time.Since(start).Round(time.Millisecond))
	}
}

// commandHook runs command in sh with the event on stdin and in env. On
// timeout the whole process group is killed (a shell's children too), and
// Wait gives up on the output pipes a second later in case a grandchild
// that left the group still holds them.
func commandHook(command string) func(ctx context.Context, ev Event, js []byte) error {
	return func(ctx context.Context, ev Event, js []byte) error {
		cmd := exec.CommandContext(ctx, "sh", "-c", command)
		cmd.Stdin = bytes.NewReader(append(js, '\n'))
		cmd.Env = append(os.Environ(), ev.env(js)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w; output: %q", err, tail(out.Bytes()))
		}
		return nil
	}
}

// urlHook POSTs the event to u; any status but 2xx is a failure.
func urlHook(client *http.Client, u string) func(ctx context.Context, ev Event, js []byte) error {
	return func(ctx context.Context, _ Event, js []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(js))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode/100 != 2 {
			return errors.New(resp.Status + ": " + string(tail(body)))
		}
		return nil
	}
}

// tail is the last 512 bytes of b, for a log line.
func tail(b []byte) []byte {
	if len(b) > 512 {
		return b[len(b)-512:]
	}
	return b
}
