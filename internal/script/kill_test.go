package script

import (
	"context"
	"errors"
	"fmt"
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

// TestRunsReusedConcurrently: a state's run is reused by the next script
// the state runs, at once on another goroutine; each Eval still answers
// its own reply and ops (Eval takes them before the state goes back to
// the pool), and a state whose last run was killed runs the next to its
// end (a fresh done channel). Run it with -race too.
func TestRunsReusedConcurrently(t *testing.T) {
	e := New(Config{})
	body := []byte("redis.call('set', KEYS[1], ARGV[1]); if ARGV[2] == 'loop' then while true do end end; return ARGV[1]")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			m := newMem()
			for i := range 300 {
				key, val := fmt.Sprintf("k%d", g), fmt.Sprintf("v%d.%d", g, i)
				res, err := e.Eval(&commands.Ctx{NowMs: m.now}, m, [][]byte{[]byte("EVAL"), body, []byte("1"), []byte(key), []byte(val), []byte("no")}, false, false)
				if err != nil {
					t.Error(err)
					return
				}
				if b, ok := res.Reply.(commands.Bulk); !ok || string(b) != val {
					t.Errorf("call %d of %d answered %v, want %s", i, g, res.Reply, val)
					return
				}
				if len(res.Ops) != 1 || string(res.Ops[0].Key) != key || string(res.Ops[0].Value) != val {
					t.Errorf("call %d of %d: ops %v, want SET %s %s", i, g, res.Ops, key, val)
					return
				}
			}
		})
	}
	wg.Wait()
	// A killed run (read-only: killable) leaves its state to the next.
	ro, out := runAsync(t, "redis.log(redis.LOG_NOTICE, 'go'); while true do end", true)
	if got := ro.Kill(); got != commands.OK {
		t.Fatalf("Kill: %v", got)
	}
	<-out
	m := newMem()
	for range 3 {
		if got := eval(t, ro, m, "local n = 0; for i = 1, 1000 do n = n + i end; return n", "0"); !reflect.DeepEqual(got, commands.Int(500500)) {
			t.Fatalf("after a kill: %v", got)
		}
	}
}

// TestKillFunction: FUNCTION KILL stops a running function and FUNCTION
// STATS shows it while it runs; SCRIPT KILL refuses it (BUSY, naming
// FUNCTION KILL), and FUNCTION KILL refuses a running script, as Redis 7.
func TestKillFunction(t *testing.T) {
	sig := &startSignal{started: make(chan struct{})}
	e := New(Config{Log: slog.New(sig)})
	m := newMem()
	if got := e.KillFunction(); got != ReplyNotBusy {
		t.Fatalf("FUNCTION KILL with nothing running: %v", got)
	}
	runFunction(t, e, m, "LOAD", lib("loop", "redis.register_function{function_name='loop', callback=function() redis.log(redis.LOG_NOTICE, 'go'); while true do end end, flags={'no-writes'}}"))
	out := make(chan commands.Result, 1)
	go func() {
		res, err := e.FCall(&commands.Ctx{NowMs: m.now}, m, [][]byte{[]byte("FCALL_RO"), []byte("loop"), []byte("0")}, true)
		if err != nil {
			t.Error(err)
		}
		out <- res
	}()
	select {
	case <-sig.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the function did not start")
	}
	stats, _ := runFunction(t, e, m, "STATS")
	running := stats.(commands.Map)[1].(commands.Map)
	if !reflect.DeepEqual(running[:4], commands.Map{commands.Bulk("name"), commands.Bulk("loop"), commands.Bulk("command"), commands.Array{commands.Bulk("FCALL_RO"), commands.Bulk("loop"), commands.Bulk("0")}}) {
		t.Fatalf("FUNCTION STATS while it runs: %#v", running)
	}
	if got := e.Kill(); got != replyBusyFunction {
		t.Fatalf("SCRIPT KILL of a function: %v", got)
	}
	if got := e.KillFunction(); got != commands.OK {
		t.Fatalf("FUNCTION KILL: %v", got)
	}
	res := <-out
	if want := commands.ErrorReply("ERR Script killed by user with SCRIPT KILL... script: loop, on @user_function:2."); res.Reply != want {
		t.Fatalf("killed function's reply %#v, want %#v", res.Reply, want)
	}
	e2, out2 := runAsync(t, "redis.log(redis.LOG_NOTICE, 'go'); while true do end", true)
	if got := e2.KillFunction(); got != replyBusyScript {
		t.Fatalf("FUNCTION KILL of a script: %v", got)
	}
	e2.Kill()
	<-out2
}
