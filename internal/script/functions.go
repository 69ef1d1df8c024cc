package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
)

// # Functions (Redis 7's FUNCTION LOAD and FCALL)
//
// A library is data, not a cache entry: the set of libraries is one row
// beside the keyspace (keyspace.FunctionsKey), written through the log by
// FUNCTION LOAD, DELETE, FLUSH and RESTORE (one OpFunctions op, the whole
// new set), so every node holds what it applied, a snapshot carries it and
// FLUSHALL leaves it. The engine reads that row through the command's
// view, like any row (on the leader, its overlay: an FCALL sequenced after
// a FUNCTION LOAD sees the library before it commits), and keeps the last
// set it parsed, keyed by the row's bytes (libSet), so an FCALL costs one
// row read and a comparison while the set is unchanged.
//
// What a library registers is found by running its code in load mode:
// the globals are then only redis.register_function, redis.log, the
// LOG_* levels and REDIS_VERSION* (Redis 7.0's library API), and the run
// must end within loadTimeout. The functions it registers are Lua closures
// of the state that ran it: each pooled state runs a library once, the
// first time it serves one of its functions (vm.libFns), and keeps its
// closures; a library's local state is therefore per state, as Redis does
// not promise it either (it is lost on restart). At run time the
// closures' environment is the scripts' sandbox (env), without KEYS and
// ARGV, which a function gets as its two arguments.

// loadTimeout bounds a library's load run (Redis 7.0: 500 ms).
const loadTimeout = 500 * time.Millisecond

// functionChunk is the chunk name of a library's code: errors read
// "user_function:LINE: ...".
const functionChunk = "user_function"

// Replies of the FUNCTION commands, Redis 7's texts.
const (
	ReplyFunctionNotFound = commands.ErrorReply("ERR Function not found")
	replyROWrite          = commands.ErrorReply("ERR Can not execute a script with write flag using *_ro command.")
	replyBadKeys          = commands.ErrorReply("ERR Bad number of keys provided")
	replyMissingMeta      = commands.ErrorReply("ERR Missing library metadata")
	replyNoName           = commands.ErrorReply("ERR Library name was not given")
	replyNameTwice        = commands.ErrorReply("ERR Invalid metadata value, name argument was given multiple times")
	replyBadMeta          = commands.ErrorReply("ERR Invalid library metadata")
	replyNoFunctions      = commands.ErrorReply("ERR No functions registered")
	replyLibNotFound      = commands.ErrorReply("ERR Library not found")
	msgBadName            = "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"
	msgLoadTimeout        = "ERR FUNCTION LOAD timeout"
)

// library is a compiled library and what its load run registered.
type library struct {
	name, code string
	proto      *lua.FunctionProto
	fns        []*function // in registration order
}

// function is one registered function.
type function struct {
	lib      *library
	name     string
	desc     string // "" when none was given
	flags    []string
	noWrites bool
}

// libSet is a parsed libraries row.
type libSet struct {
	row  []byte
	libs []*library // by name, ascending
	fns  map[string]*function
}

// emptySet is no library.
var emptySet = &libSet{fns: map[string]*function{}}

// Libraries is what the libraries row holds, for FUNCTION LIST, DUMP and
// STATS: each library's name, code and functions, by name.
func (s *libSet) lib(name string) *library {
	for _, l := range s.libs {
		if l.name == name {
			return l
		}
	}
	return nil
}

// functionsOf reads the libraries row through v and returns it parsed:
// the engine's last set when the row is the same bytes.
func (e *Engine) functionsOf(ctx *commands.Ctx, v commands.View) (*libSet, error) {
	row, ok, err := v.Rows().Get(keyspace.FunctionsKey)
	if err != nil {
		return nil, fmt.Errorf("script: read the function libraries: %w", err)
	}
	if !ok || len(row) == 0 {
		return emptySet, nil
	}
	if s := e.libs.Load(); s != nil && bytes.Equal(s.row, row) {
		return s, nil
	}
	libs, err := keyspace.DecodeLibraries(row)
	if err != nil {
		return nil, err
	}
	s := &libSet{row: append([]byte(nil), row...), fns: map[string]*function{}}
	old := e.libs.Load()
	for _, kl := range libs {
		var l *library
		// A library unchanged from the last set is not compiled again.
		if old != nil {
			if ol := old.lib(kl.Name); ol != nil && ol.code == kl.Code {
				l = ol
			}
		}
		if l == nil {
			var r commands.Reply
			if l, r = e.compileLibrary(kl.Name, kl.Code); r != nil {
				// Stored code that no longer loads (it loaded on the
				// leader that wrote it): its functions are missing here.
				e.cfg.Log.Error("script: a stored function library does not load", "library", kl.Name, "err", r)
				continue
			}
		}
		s.libs = append(s.libs, l)
		for _, f := range l.fns {
			s.fns[f.name] = f
		}
	}
	e.libs.Store(s)
	return s, nil
}

// compileLibrary compiles a stored library's code and runs it in load
// mode for what it registers.
func (e *Engine) compileLibrary(name, code string) (*library, commands.Reply) {
	meta, r := parseLibraryMeta(code)
	if r != nil {
		return nil, r
	}
	if meta != name {
		return nil, commands.ErrorReply("ERR library code names " + meta + ", stored as " + name)
	}
	return e.prepare(name, code)
}

// prepare compiles code (whose shebang named the library name) and runs it
// once in a state of the pool to learn its functions.
func (e *Engine) prepare(name, code string) (*library, commands.Reply) {
	_, rest, _ := strings.Cut(code, "\n")
	chunk, err := parse.Parse(strings.NewReader("\n"+rest), functionChunk)
	if err != nil {
		return nil, commands.ErrorReply("ERR Error compiling function: " + oneLine(err.Error()))
	}
	proto, err := lua.Compile(chunk, functionChunk)
	if err != nil {
		return nil, commands.ErrorReply("ERR Error compiling function: " + oneLine(err.Error()))
	}
	proto.IsVarArg &^= lua.VarArgNeedsArg
	l := &library{name: name, code: code, proto: proto}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, commands.ErrorReply("ERR server is shutting down")
	}
	m := e.getLocked()
	e.mu.Unlock()
	fns, regs, r := m.loadLibrary(l)
	if r == nil {
		l.fns = regs
		m.keepLibrary(l, fns)
	}
	e.mu.Lock()
	if r != nil {
		m.L.Close() // a run stopped midway (a timeout) leaves it unknown
	} else {
		e.putLocked(m)
	}
	e.mu.Unlock()
	if r != nil {
		return nil, r
	}
	if len(l.fns) == 0 {
		return nil, replyNoFunctions
	}
	return l, nil
}

// parseLibraryMeta reads a library's shebang, "#!lua name=<name>", and
// returns the name.
func parseLibraryMeta(code string) (string, commands.Reply) {
	if !strings.HasPrefix(code, "#!") {
		return "", replyMissingMeta
	}
	line, _, ok := strings.Cut(code, "\n")
	if !ok {
		return "", replyBadMeta
	}
	parts := strings.Fields(line[2:])
	engine := ""
	if len(parts) > 0 {
		engine = parts[0]
	}
	if !strings.EqualFold(engine, "lua") {
		return "", commands.ErrorReply("ERR Engine '" + engine + "' not found")
	}
	name, named := "", false
	for _, p := range parts[1:] {
		v, ok := strings.CutPrefix(p, "name=")
		if !ok {
			return "", commands.ErrorReply("ERR Invalid metadata value given: " + p)
		}
		if named {
			return "", replyNameTwice
		}
		name, named = v, true
	}
	if !named {
		return "", replyNoName
	}
	if !validName(name) {
		return "", commands.ErrorReply(msgBadName)
	}
	return name, nil
}

// validName: letters, digits and underscores, at least one.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// loadLibrary runs l's code in load mode in m and returns the closures it
// registered, by name, and what it registered, or the error reply.
func (m *vm) loadLibrary(l *library) (map[string]*lua.LFunction, []*function, commands.Reply) {
	L := m.L
	if m.loadEnv == nil {
		m.loadEnv = m.newLoadEnv()
	}
	m.registering = &registration{lib: l, closures: map[string]*lua.LFunction{}}
	envMeta := m.env.Metatable.(*lua.LTable) // raw: GetMetatable answers __metatable
	envMeta.RawSetString("__index", m.loadEnv)
	defer func() {
		envMeta.RawSetString("__index", m.base)
		m.registering = nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	fn := L.NewFunctionFromProto(l.proto)
	fn.Env = m.env
	L.SetContext(ctx)
	defer L.RemoveContext()
	L.Push(fn)
	err := L.PCall(0, 0, nil)
	L.SetTop(0)
	reg := m.registering
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, commands.ErrorReply("ERR Error registering functions: " + msgLoadTimeout)
		}
		return nil, nil, commands.ErrorReply("ERR Error registering functions: " + oneLine(loadErrorText(err)))
	}
	return reg.closures, reg.fns, nil
}

// loadErrorText is a load run's error as Redis words it: an error table's
// err text, else "ERR " and the Lua message.
func loadErrorText(err error) string {
	var obj lua.LValue = lua.LString(err.Error())
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) {
		obj = apiErr.Object
	}
	if t, ok := obj.(*lua.LTable); ok {
		return lua.LVAsString(t.RawGetString("err"))
	}
	return "ERR " + lua.LVAsString(obj)
}

// registration collects what a load run registers.
type registration struct {
	lib      *library
	fns      []*function
	closures map[string]*lua.LFunction
}

// newLoadEnv is the globals of a load run: redis with the library API,
// nothing else; reading anything else raises, writing is refused.
func (m *vm) newLoadEnv() *lua.LTable {
	L := m.L
	api := L.NewTable()
	api.RawSetString("register_function", L.NewFunction(m.registerFunction))
	api.RawSetString("log", L.NewFunction(m.log))
	for name, n := range map[string]int{"LOG_DEBUG": 0, "LOG_VERBOSE": 1, "LOG_NOTICE": 2, "LOG_WARNING": 3, "REDIS_VERSION_NUM": 0x070000} {
		api.RawSetString(name, lua.LNumber(n))
	}
	api.RawSetString("REDIS_VERSION", lua.LString("7.0.0"))
	strict := func(t *lua.LTable) *lua.LTable {
		p := L.NewTable()
		mt := L.NewTable()
		mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
			if v := t.RawGet(L.Get(2)); v != lua.LNil {
				L.Push(v)
				return 1
			}
			return noSuchGlobal(L)
		}))
		mt.RawSetString("__newindex", L.NewFunction(refuseWrite))
		mt.RawSetString("__metatable", lua.LFalse)
		L.SetMetatable(p, mt)
		m.protected = append(m.protected, p)
		return p
	}
	g := L.NewTable()
	g.RawSetString("redis", strict(api))
	return strict(g)
}

// registerFunction is redis.register_function(name, callback) or
// redis.register_function{function_name=, callback=, flags=,
// description=}, in a load run.
func (m *vm) registerFunction(L *lua.LState) int {
	reg := m.registering
	fail := func(msg string) int {
		L.Error(errTable(L, msg), 0)
		return 0
	}
	if reg == nil {
		return fail("ERR redis.register_function can only be called on FUNCTION LOAD command")
	}
	f := &function{lib: reg.lib}
	var cb *lua.LFunction
	switch L.GetTop() {
	case 1:
		t, ok := L.Get(1).(*lua.LTable)
		if !ok {
			return fail("ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).")
		}
		var bad string
		t.ForEach(func(k, v lua.LValue) {
			if bad != "" {
				return
			}
			ks, ok := k.(lua.LString)
			if !ok {
				bad = "ERR named argument key given to redis.register_function is not a string"
				return
			}
			switch string(ks) {
			case "function_name":
				s, ok := v.(lua.LString)
				if !ok {
					bad = "ERR function_name argument given to redis.register_function must be a string"
					return
				}
				f.name = string(s)
			case "description":
				s, ok := v.(lua.LString)
				if !ok {
					bad = "ERR description argument given to redis.register_function must be a string"
					return
				}
				f.desc = string(s)
			case "callback":
				fn, ok := v.(*lua.LFunction)
				if !ok {
					bad = "ERR callback argument given to redis.register_function must be a function"
					return
				}
				cb = fn
			case "flags":
				ft, ok := v.(*lua.LTable)
				if !ok {
					bad = "ERR flags argument to redis.register_function must be a table representing function flags"
					return
				}
				if bad = f.setFlags(ft); bad != "" {
					return
				}
			default:
				bad = "ERR unknown argument given to redis.register_function"
			}
		})
		if bad != "" {
			return fail(bad)
		}
		if f.name == "" && cb == nil {
			return fail("ERR redis.register_function must get a function name argument")
		}
		if f.name == "" {
			return fail("ERR redis.register_function must get a function name argument")
		}
		if cb == nil {
			return fail("ERR redis.register_function must get a callback argument")
		}
	case 2:
		name, ok := L.Get(1).(lua.LString)
		if !ok {
			return fail("ERR first argument to redis.register_function must be a string")
		}
		fn, ok := L.Get(2).(*lua.LFunction)
		if !ok {
			return fail("ERR second argument to redis.register_function must be a function")
		}
		f.name, cb = string(name), fn
	default:
		return fail("ERR wrong number of arguments to redis.register_function")
	}
	if !validName(f.name) {
		return fail(msgBadName)
	}
	if _, dup := reg.closures[f.name]; dup {
		return fail("ERR Function already exists in the library")
	}
	reg.closures[f.name] = cb
	reg.fns = append(reg.fns, f)
	return 0
}

// setFlags reads a flags table; it returns the error text of a bad one.
func (f *function) setFlags(t *lua.LTable) string {
	bad := ""
	t.ForEach(func(_, v lua.LValue) {
		s, ok := v.(lua.LString)
		if !ok {
			bad = "ERR unknown flag given"
			return
		}
		switch string(s) {
		case "no-writes":
			f.noWrites = true
		case "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys":
		default:
			bad = "ERR unknown flag given"
			return
		}
		f.flags = append(f.flags, string(s))
	})
	return bad
}

// keepLibrary keeps l's closures in m, for its FCALLs.
func (m *vm) keepLibrary(l *library, fns map[string]*lua.LFunction) {
	if m.libFns == nil || len(m.libFns) >= maxFns {
		m.libFns = map[*library]map[string]*lua.LFunction{}
	}
	m.libFns[l] = fns
}

// FCall runs a function (commands.Scripter): FCALL, or FCALL_RO
// (readOnly), which refuses a function without the no-writes flag. args
// are the command's: name, function, numkeys, keys, args.
func (e *Engine) FCall(ctx *commands.Ctx, v commands.View, args [][]byte, readOnly bool) (commands.Result, error) {
	set, err := e.functionsOf(ctx, v)
	if err != nil {
		return commands.Result{}, err
	}
	f := set.fns[string(args[1])]
	if f == nil {
		return commands.Result{Reply: ReplyFunctionNotFound}, nil
	}
	nk, err := strconv.ParseInt(string(args[2]), 10, 64)
	switch {
	case err != nil:
		return commands.Result{Reply: replyBadKeys}, nil
	case nk < 0:
		return commands.Result{Reply: commands.ErrorReply(errKeysNegative)}, nil
	case nk > int64(len(args)-3):
		return commands.Result{Reply: commands.ErrorReply(errKeysTooMany)}, nil
	}
	if readOnly && !f.noWrites {
		return commands.Result{Reply: replyROWrite}, nil
	}
	keys, argv := args[3:3+nk], args[3+nk:]
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return commands.Result{}, errClosed
	}
	m, r := e.startLocked(ctx, v, readOnly || f.noWrites, f.name)
	r.chunk, r.cmd = functionChunk, args
	e.mu.Unlock()
	if !readOnly {
		e.seq.Store(r)
	}
	reply := m.execFunction(f, keys, argv, r)
	if !readOnly {
		e.seq.Store(nil)
	}
	return e.finish(m, r, reply)
}

// execFunction runs f's closure in m (loading its library in m first if
// m has not) with keys and argv as its two arguments.
func (m *vm) execFunction(f *function, keys, argv [][]byte, r *run) commands.Reply {
	fn := m.libFns[f.lib][f.name]
	if fn == nil {
		fns, _, reply := m.loadLibrary(f.lib)
		if reply != nil {
			return reply
		}
		m.keepLibrary(f.lib, fns)
		if fn = fns[f.name]; fn == nil {
			return ReplyFunctionNotFound
		}
	}
	L := m.L
	m.run = r
	defer func() {
		m.run = nil
		m.keepStatus()
	}()
	// A function has no KEYS and ARGV globals (an EVAL's last ones are
	// in base: hidden for the run).
	m.base.RawSetString("KEYS", lua.LNil)
	m.base.RawSetString("ARGV", lua.LNil)
	all := joined(keys, argv)
	kt := m.fresh(keys, all)
	at := m.fresh(argv, all[joinedLen(keys):])
	L.SetContext(r)
	defer L.RemoveContext()
	L.Push(fn)
	L.Push(kt)
	L.Push(at)
	if err := L.PCall(2, 1, nil); err != nil {
		L.SetTop(0)
		return m.errorReply(err, r)
	}
	ret := L.Get(-1)
	L.SetTop(0)
	return toReply(L, ret, r.resp, 0)
}

// fresh is a new array of a's strings, taken in order from all: a
// function may keep its arguments' tables (in its library's locals), so
// they are never reused.
func (m *vm) fresh(a [][]byte, all string) *lua.LTable {
	t := m.L.CreateTable(len(a), 0)
	off := 0
	for i, s := range a {
		t.RawSetInt(i+1, lua.LString(all[off:off+len(s)]))
		off += len(s)
	}
	return t
}

// running is a function running now, for FUNCTION STATS: its name, its
// command (a copy) and how long it has run; "" when none runs.
func (e *Engine) running() (string, [][]byte, time.Duration) {
	e.mu.Lock() // runs are not reset for another script meanwhile
	defer e.mu.Unlock()
	for _, r := range e.runs {
		if r.chunk != functionChunk {
			continue
		}
		cmd := make([][]byte, len(r.cmd))
		for i, a := range r.cmd {
			cmd[i] = append([]byte(nil), a...)
		}
		return r.sha, cmd, time.Since(clockBase) - time.Duration(r.started.Load())
	}
	return "", nil, 0
}
