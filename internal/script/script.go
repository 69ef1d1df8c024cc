// Package script runs Redis 7's Lua scripts (EVAL, EVALSHA, EVAL_RO,
// EVALSHA_RO and SCRIPT LOAD/EXISTS/FLUSH/KILL) and functions (FUNCTION
// and FCALL, FCALL_RO: functions.go) on github.com/yuin/gopher-lua, a
// pure-Go Lua 5.1 (the Lua Redis embeds). It is pure of nodes and
// replication: a script reads and writes through a commands.View with a
// commands.Batch, and hands back its reply and the row-form ops of its
// writes. The caller (the node) runs a write script or function inside
// the leader's sequencer, so its ops become one log entry (Redis 7's
// effects replication): followers apply rows and never run Lua to
// replicate (they run it only for their own reads, EVAL_RO and FCALL_RO).
// A function library, unlike the script cache, is data: its FUNCTION
// LOAD is a log op (logrec.OpFunctions), and the engine reads the
// libraries from the view like any row.
//
// # What it promises
//
//   - Redis's Lua API: redis.call, redis.pcall, redis.error_reply,
//     redis.status_reply, redis.sha1hex, redis.log (to slog) and its
//     LOG_* levels, redis.setresp (2 and 3), KEYS and ARGV, and Redis's
//     conversion rules both ways (convert.go), with Redis 7's error texts.
//   - Redis's sandbox (sandbox.go): the base, table, string, math and
//     coroutine libraries and cjson and bit, without dofile, loadfile,
//     print, require, module, os or io; reading an undeclared global is an
//     error, and writing any global or changing a library table is
//     refused ("Attempt to modify a readonly table"), rawset,
//     setmetatable and table.insert included, so that no script can
//     change what the next script of its state sees. A state whose
//     loadstring environment a script replaced (setfenv(0, t)) is
//     discarded, never reused.
//   - math.random is Redis's: one generator (redisLrand48) for the
//     engine, not reseeded per script, math.randomseed sets it.
//   - A script's writes stand when it fails later, as in Redis: the
//     result carries the ops made before the error with the error reply.
//   - The script cache is per engine (per node), unbounded as Redis 7.0's,
//     and not replicated: after a failover EVALSHA answers NOSCRIPT until
//     the script is loaded again (clients fall back to EVAL).
//
// # Time limit
//
// A script is never stopped for running long. Once a script run in the
// sequencer has run longer than Config.BusyAfter (Redis's
// busy-reply-threshold, 5 s), Busy reports true, and the node answers
// BUSY to writes instead of queueing them behind it. Kill (SCRIPT KILL)
// stops running scripts that have not written (UNKILLABLE otherwise);
// they fail with "Script killed by user with SCRIPT KILL...". Abort
// stops the sequencer's script even after writes, with ErrAborted and no
// ops: nothing of it was logged yet.
package script

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tandemdb/tandem/internal/commands"
)

// Replies the engine gives, Redis 7's texts.
const (
	ReplyNoScript   = commands.ErrorReply("NOSCRIPT No matching script. Please use EVAL.")
	ReplyNotBusy    = commands.ErrorReply("NOTBUSY No scripts in execution right now.")
	ReplyUnkillable = commands.ErrorReply("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")

	errKeysNegative = "ERR Number of keys can't be negative"
	errKeysTooMany  = "ERR Number of keys can't be greater than number of args"
	msgKilled       = "ERR Script killed by user with SCRIPT KILL..."
)

// Config configures an Engine.
type Config struct {
	// BusyAfter is how long a sequenced script runs before Busy reports
	// true (Redis's busy-reply-threshold, formerly lua-time-limit).
	// Zero means 5 s.
	BusyAfter time.Duration
	// Log receives redis.log lines (LOG_DEBUG and LOG_VERBOSE at Debug,
	// LOG_NOTICE at Info, LOG_WARNING at Warn). Nil means slog.Default().
	Log *slog.Logger
}

// Engine is one node's script runner: its cache of scripts, its pool of
// sandboxed Lua states and the scripts running now. Safe for concurrent
// use; each running script has a state of its own.
type Engine struct {
	cfg Config
	rng lrand48

	mu    sync.Mutex
	cache map[string]*compiled // by lower-case SHA1
	// libs is the function libraries' set last read (functions.go).
	libs atomic.Pointer[libSet]
	free []*vm // idle states, reused
	// runs are the runs of scripts running now, in no order; a run's
	// slot is its index here (a slice: a map cost a hash per Eval).
	runs []*run
	gen  uint64 // bumped by Flush: older states are not pooled
	// closed: Close was called; every script is aborted, new ones too.
	closed bool

	// seq is the script running in the sequencer, if any (at most one:
	// the sequencer runs one command at a time).
	seq atomic.Pointer[run]
	// busyAfter is Config.BusyAfter, changed by SetBusyAfter (CONFIG SET
	// busy-reply-threshold) while scripts run.
	busyAfter atomic.Int64
}

// maxIdle bounds the pool of idle states.
const maxIdle = 16

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.BusyAfter <= 0 {
		cfg.BusyAfter = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	e := &Engine{cfg: cfg, cache: map[string]*compiled{}}
	e.busyAfter.Store(int64(cfg.BusyAfter))
	e.rng.x = 0x1234ABCD330E // rand.c's initial state
	return e
}

var _ commands.Scripter = (*Engine)(nil)

// compiled is a cached script: its body and compiled chunk (shareable by
// every state) and its shebang flags.
type compiled struct {
	sha      string // its cache key: the lower-case hex SHA1 of body
	body     string
	proto    *lua.FunctionProto
	noWrites bool
}

// run is one execution of a script.
type run struct {
	ctx      *commands.Ctx
	batch    *commands.Batch // &batchMem, for Eval's runs
	batchMem commands.Batch  // one allocation with the run
	readOnly bool            // write commands refused
	resp     int             // the protocol redis.call replies are converted from
	sha      string          // the script's SHA1, or the function's name (FCALL)
	chunk    string          // the code's chunk name, as errors name it
	// cmd is a function run's command (FCALL's arguments, valid while it
	// runs), for FUNCTION STATS; read and written under Engine.mu.
	cmd [][]byte
	// started is when the run began, in nanoseconds since clockBase:
	// atomic, since Busy reads it while the run's state may be taken for
	// the next script.
	started atomic.Int64
	// done is closed by cancel: the run is the context its Lua state
	// runs under (context.Context below), which gopher-lua asks for Done
	// at every instruction; one channel a run, where
	// context.WithCancel costs three allocations and an atomic load.
	done     chan struct{}
	slot     int // its index in Engine.runs while it runs, under e.mu
	canceled atomic.Bool
	wrote    atomic.Bool
	killed   atomic.Bool
	aborted  atomic.Bool
	// internal is a failure of the view (storage), which fails the
	// whole command: the script's reply is not given.
	internal error
}

// SHA1 is the hex SHA1 of body, as EVALSHA names a script.
func SHA1(body []byte) string {
	sum := sha1.Sum(body)
	return hex.EncodeToString(sum[:])
}

// Load compiles body and caches it (SCRIPT LOAD), returning its SHA1, or
// an error reply when it does not compile.
func (e *Engine) Load(body []byte) (string, commands.Reply) {
	sha := SHA1(body)
	if _, r := e.load(sha, body); r != nil {
		return "", r
	}
	return sha, nil
}

func (e *Engine) load(sha string, body []byte) (*compiled, commands.Reply) {
	e.mu.Lock()
	c := e.cache[sha]
	e.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, r := compile(string(body))
	if r != nil {
		return nil, r
	}
	c.sha = sha
	e.mu.Lock()
	e.cache[sha] = c
	e.mu.Unlock()
	return c, nil
}

// Exists reports, for each SHA1, whether the script is cached (SCRIPT
// EXISTS), in any letter case.
func (e *Engine) Exists(shas [][]byte) []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]bool, len(shas))
	for i, s := range shas {
		_, out[i] = e.cache[strings.ToLower(string(s))]
	}
	return out
}

// Flush empties the cache and drops the idle states (SCRIPT FLUSH, which
// in Redis also resets the Lua VM). Running scripts finish.
func (e *Engine) Flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cache = map[string]*compiled{}
	for _, m := range e.free {
		m.L.Close()
	}
	e.free = nil
	e.gen++
}

// Cached is the number of cached scripts.
func (e *Engine) Cached() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.cache)
}

// Busy reports whether a script has run in the sequencer longer than
// BusyAfter: writes queued behind it would wait, so the node answers
// BUSY instead.
func (e *Engine) Busy() bool {
	busy, _ := e.BusyKind()
	return busy
}

// BusyKind is Busy, and whether what runs past the threshold is a
// function (which FUNCTION KILL stops) rather than a script (SCRIPT
// KILL): Redis's BUSY reply names the one that applies.
func (e *Engine) BusyKind() (busy, function bool) {
	r := e.seq.Load()
	if r == nil || time.Since(clockBase)-time.Duration(r.started.Load()) <= e.BusyAfter() {
		return false, false
	}
	return true, r.chunk == functionChunk
}

// BusyAfter is how long a sequenced script runs before Busy reports true.
func (e *Engine) BusyAfter() time.Duration { return time.Duration(e.busyAfter.Load()) }

// SetBusyAfter changes BusyAfter (CONFIG SET busy-reply-threshold); a
// script running now is measured against the new value. Zero makes any
// sequenced script busy at once, as Redis's 0 does.
func (e *Engine) SetBusyAfter(d time.Duration) { e.busyAfter.Store(int64(max(d, 0))) }

// Kill stops the running scripts (SCRIPT KILL): NOTBUSY when none runs,
// UNKILLABLE when the sequencer's script has written (stopping it would
// leave half its effects), else OK, and each running script fails with
// "Script killed by user with SCRIPT KILL...".
func (e *Engine) Kill() commands.Reply { return e.kill(false) }

// KillFunction stops the running functions (FUNCTION KILL) as Kill stops
// scripts. Each refuses the other's runs, as Redis 7 does: SCRIPT KILL
// while only a function runs (or FUNCTION KILL while only a script does)
// is BUSY, naming the command that would stop it.
func (e *Engine) KillFunction() commands.Reply { return e.kill(true) }

const (
	replyBusyFunction = commands.ErrorReply("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
	replyBusyScript   = commands.ErrorReply("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
)

func (e *Engine) kill(functions bool) commands.Reply {
	e.mu.Lock()
	defer e.mu.Unlock()
	mine, others := 0, 0
	for _, r := range e.runs {
		if (r.chunk == functionChunk) == functions {
			mine++
		} else {
			others++
		}
	}
	switch {
	case mine == 0 && others == 0:
		return ReplyNotBusy
	case mine == 0 && functions:
		return replyBusyScript
	case mine == 0:
		return replyBusyFunction
	}
	if r := e.seq.Load(); r != nil && (r.chunk == functionChunk) == functions && r.wrote.Load() {
		return ReplyUnkillable
	}
	for _, r := range e.runs {
		if (r.chunk == functionChunk) == functions && !r.wrote.Load() {
			r.killed.Store(true)
			r.cancel()
		}
	}
	return commands.OK
}

// Eval runs a script (commands.Scripter): readOnly for EVAL_RO and
// EVALSHA_RO, which the node runs as reads; otherwise the caller runs it
// in the sequencer, where it counts for Busy.
func (e *Engine) Eval(ctx *commands.Ctx, v commands.View, args [][]byte, readOnly, byDigest bool) (commands.Result, error) {
	nk, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		return commands.Result{}, commands.ErrNotInteger
	}
	if nk < 0 {
		return commands.Result{Reply: commands.ErrorReply(errKeysNegative)}, nil
	}
	if nk > int64(len(args)-3) {
		return commands.Result{Reply: commands.ErrorReply(errKeysTooMany)}, nil
	}
	keys, argv := args[3:3+nk], args[3+nk:]
	var sc *compiled
	if !byDigest {
		var r commands.Reply
		if sc, r = e.load(SHA1(args[1]), args[1]); r != nil {
			return commands.Result{Reply: r}, nil
		}
	}

	// One critical section finds the script (EVALSHA), takes a state and
	// readies its run: Kill and Abort, which cancel runs, hold e.mu too.
	e.mu.Lock()
	if byDigest {
		// Clients send the SHA1 as SCRIPT LOAD answered it, lower case:
		// looked up as it is, it costs no copy.
		sc = e.cache[string(args[1])]
		if sc == nil {
			sc = e.cache[strings.ToLower(string(args[1]))]
		}
		if sc == nil {
			e.mu.Unlock()
			return commands.Result{Reply: ReplyNoScript}, nil
		}
	}
	if e.closed {
		e.mu.Unlock()
		return commands.Result{}, errClosed
	}
	m, r := e.startLocked(ctx, v, readOnly || sc.noWrites, sc.sha)
	e.mu.Unlock()
	if !readOnly {
		e.seq.Store(r)
	}
	reply := m.exec(r, sc, keys, argv, r)
	if !readOnly {
		e.seq.Store(nil)
	}
	return e.finish(m, r, reply)
}

// startLocked takes a state and readies its run (see vm.runMem) of the
// script or function name. e.mu is held: Kill and Abort, which cancel
// runs, hold it too.
func (e *Engine) startLocked(ctx *commands.Ctx, v commands.View, readOnly bool, name string) (*vm, *run) {
	m := e.getLocked()
	r := m.newRun(ctx, v, readOnly, name)
	r.slot = len(e.runs)
	e.runs = append(e.runs, r)
	return m, r
}

// finish takes what the run made, before the state (and with it the run)
// goes back to the pool, where another Eval may take it at once.
func (e *Engine) finish(m *vm, r *run, reply commands.Reply) (commands.Result, error) {
	var res commands.Result
	var err error
	switch {
	case r.internal != nil:
		err = r.internal
	case r.aborted.Load():
		err = ErrAborted
	default:
		res = commands.Result{Reply: reply, Ops: r.batch.Ops(), Publish: r.batch.Publish()}
	}
	e.mu.Lock()
	last := e.runs[len(e.runs)-1]
	e.runs[r.slot], last.slot = last, r.slot
	e.runs[len(e.runs)-1] = nil
	e.runs = e.runs[:len(e.runs)-1]
	r.ctx, r.internal, r.cmd = nil, nil, nil
	r.batch.Init(nil) // holds no view or ops of this run in the pool
	e.putLocked(m)
	closed := e.closed
	e.mu.Unlock()
	if err == ErrAborted && closed {
		err = errClosed
	}
	return res, err
}

// newRun readies the state's run (runMem) for a script: a run is one
// per state, since a state runs one script at a time, so it costs no
// allocation, nor does its done channel unless the last run was
// canceled (closed it). The caller holds e.mu, as every canceller does
// (Kill, Abort, Close), so none cancels the run it is being reset.
func (m *vm) newRun(ctx *commands.Ctx, v commands.View, readOnly bool, sha string) *run {
	r := &m.runMem
	if r.done == nil || r.canceled.Load() {
		r.done = make(chan struct{})
	}
	r.ctx, r.readOnly, r.resp, r.sha, r.chunk = ctx, readOnly, 2, sha, chunkName
	r.started.Store(int64(time.Since(clockBase)))
	r.canceled.Store(false)
	r.wrote.Store(false)
	r.killed.Store(false)
	r.aborted.Store(false)
	r.internal = nil
	r.batch = &r.batchMem
	r.batch.Init(v)
	return r
}

// clockBase is what run.started counts from (monotonic time).
var clockBase = time.Now()

// cancel stops the run's script (Kill, Abort, Close); it may be called
// more than once, from any goroutine.
func (r *run) cancel() {
	if r.canceled.CompareAndSwap(false, true) {
		close(r.done)
	}
}

// A run is the context.Context of its script's Lua state: never past a
// deadline, done once canceled.
var _ context.Context = (*run)(nil)

func (r *run) Deadline() (time.Time, bool) { return time.Time{}, false }
func (r *run) Done() <-chan struct{}       { return r.done }
func (r *run) Value(any) any               { return nil }

func (r *run) Err() error {
	if r.canceled.Load() {
		return context.Canceled
	}
	return nil
}

// getLocked takes an idle state or makes one. e.mu is held.
func (e *Engine) getLocked() *vm {
	if n := len(e.free); n > 0 {
		m := e.free[n-1]
		e.free = e.free[:n-1]
		return m
	}
	return newVM(e, e.gen)
}

// putLocked pools m again unless a script changed what it must not, the
// cache was flushed since it was made, or the pool is full.
func (e *Engine) putLocked(m *vm) {
	if m.gen != e.gen || len(e.free) >= maxIdle || !m.sealed() {
		m.L.Close()
		return
	}
	e.free = append(e.free, m)
}

// ErrAborted: the script run in the sequencer was stopped by Abort (its
// leadership ended); none of its writes were handed out.
var ErrAborted = errors.New("script: aborted: the leadership ended while the script ran")

// Abort stops the script running in the sequencer whatever it did: its
// writes are in no entry yet (a script's ops are handed out when it
// ends), so stopping it discards them all. The node calls it when it
// stops leading, whose shutdown waits for the sequencer.
func (e *Engine) Abort() {
	// Under e.mu, as newRun resets a run: a run read from seq here is
	// still running (Eval clears seq before it returns the run's state to
	// the pool, and that takes e.mu), never the next script of its state.
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.seq.Load(); r != nil {
		r.aborted.Store(true)
		r.cancel()
	}
}

// errClosed is ErrAborted when the engine is closed: a
// context.Canceled too, which the RESP layer answers as a shutdown.
var errClosed = fmt.Errorf("%w: %w", ErrAborted, context.Canceled)

// Close aborts every running script, whatever it did (nothing of it was
// logged yet), and every later one: the server is stopping and its
// connections' handlers, which run the scripts, must end.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, r := range e.runs {
		r.aborted.Store(true)
		r.cancel()
	}
}

// errInternal marks a Lua error raised to unwind a script after a view
// failure (run.internal holds it).
var errInternal = errors.New("script: internal error")
