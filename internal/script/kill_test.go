package script

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
)

// startSignal is a slog handler that closes started at the first record:
// a script says it is running with redis.log.
type startSignal struct {
	once    sync.Once
	started chan struct{}
}

func (s *startSignal) Enabled(context.Context, slog.Level) bool { return true }
func (s *startSignal) Handle(context.Context, slog.Record) error {
	s.once.Do(func() { close(s.started) })
	return nil
}
func (s *startSignal) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *startSignal) WithGroup(string) slog.Handler      { return s }

// runAsync starts EVAL body (in the sequencer's mode unless readOnly)
// and returns its result channel once the script has logged.
func runAsync(t *testing.T, body string, readOnly bool) (*Engine, <-chan commands.Result) {
	t.Helper()
	sig := &startSignal{started: make(chan struct{})}
	e := New(Config{BusyAfter: time.Nanosecond, Log: slog.New(sig)})
	m := newMem()
	out := make(chan commands.Result, 1)
	go func() {
		res, err := e.Eval(&commands.Ctx{NowMs: m.now}, m, [][]byte{[]byte("EVAL"), []byte(body), []byte("0")}, readOnly, false)
		if err != nil && !errors.Is(err, ErrAborted) {
			t.Error(err)
		}
		out <- res
	}()
	select {
	case <-sig.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the script did not start")
	}
	return e, out
}

func TestKill(t *testing.T) {
	e := New(Config{})
	if got := e.Kill(); got != ReplyNotBusy {
		t.Fatalf("Kill with nothing running: %v", got)
	}
	for _, c := range []struct {
		name, body string
		readOnly   bool
	}{
		{"loop", "redis.log(redis.LOG_NOTICE, 'go'); while true do end", false},
		{"loop in pcall", "redis.log(redis.LOG_NOTICE, 'go'); local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end", false},
		{"read-only", "redis.log(redis.LOG_NOTICE, 'go'); while true do end", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, out := runAsync(t, c.body, c.readOnly)
			if e.Busy() == c.readOnly {
				t.Fatalf("Busy = %v for a script run with readOnly %v", e.Busy(), c.readOnly)
			}
			if got := e.Kill(); got != commands.OK {
				t.Fatalf("Kill: %v", got)
			}
			res := <-out
			if !strings.HasPrefix(errText(res.Reply), "ERR Script killed by user with SCRIPT KILL...") {
				t.Fatalf("killed script answered %v", res.Reply)
			}
			if e.Busy() {
				t.Fatal("still busy after the script ended")
			}
			// The engine runs scripts again.
			m := newMem()
			if got := eval(t, e, m, "return 1", "0"); !reflect.DeepEqual(got, commands.Int(1)) {
				t.Fatalf("after a kill: %v", got)
			}
		})
	}
}

// TestKillAfterWrite: a script that wrote cannot be killed (half its
// effects would stand).
func TestKillAfterWrite(t *testing.T) {
	e, out := runAsync(t, "redis.call('set', 'x', '1'); redis.log(redis.LOG_NOTICE, 'go'); while true do end", false)
	if got := e.Kill(); got != ReplyUnkillable {
		t.Fatalf("Kill after a write: %v", got)
	}
	// Abort (the leadership ends) stops it, with an error and no ops.
	e.Abort()
	res := <-out
	if res.Reply != nil || len(res.Ops) != 0 {
		t.Fatalf("aborted script gave %v with ops %v", res.Reply, res.Ops)
	}
}

// TestClose: Close aborts running scripts, written or not, read-only or
// not, and refuses new ones.
func TestClose(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		body := "redis.log(redis.LOG_NOTICE, 'go'); while true do end"
		if !readOnly {
			body = "redis.call('set', 'x', '1'); " + body
		}
		e, out := runAsync(t, body, readOnly)
		e.Close()
		if res := <-out; res.Reply != nil || len(res.Ops) != 0 {
			t.Fatalf("closed engine's script gave %v, ops %v", res.Reply, res.Ops)
		}
		m := newMem()
		_, err := e.Eval(&commands.Ctx{NowMs: m.now}, m, [][]byte{[]byte("EVAL"), []byte("return 1"), []byte("0")}, false, false)
		if !errors.Is(err, ErrAborted) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Eval after Close: %v", err)
		}
	}
}
