package script

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tandemdb/tandem/internal/commands"
)

// vm is a sandboxed Lua state (Redis's sandbox) and what is needed to see
// whether a script broke out of it.
type vm struct {
	e   *Engine
	gen uint64
	L   *lua.LState
	// base is the state's real globals table (libraries, redis); scripts
	// run in env, an empty table whose metatable reads base and refuses
	// writes; KEYS and ARGV are set raw in base for each run. No script can
	// reach base: _G is env, and getfenv answers env where gopher-lua's
	// would give base (a Go function's environment, level 0).
	base, env *lua.LTable
	// protected are tables a script may read and never change: env, the
	// read-only proxies of the libraries and the metatable scripts see.
	protected []*lua.LTable
	run       *run // the current run; nil between runs
	// runMem is the run of every script this state runs (newRun), one at
	// a time: a run and its done channel were two allocations a call.
	// Nothing holds a run past Eval: Eval takes its reply and ops before
	// the state goes back to the pool, and Engine.runs and seq drop it.
	runMem run
	// fns are the functions of the scripts this state ran, reused (at
	// most maxFns; Flush discards the state, and so them).
	fns map[*compiled]*lua.LFunction
	// keys and argv are the KEYS and ARGV tables of the last run, filled
	// again for the next (fill).
	keys, argv *lua.LTable
	// status are {ok=...} tables, redis.call's replies to commands that
	// answer a status (SET's OK): status[:statusUsed] were handed out in
	// this run, each once; after the run those still exactly {ok=<a
	// string>} are handed out again (keepStatus). A fresh one costs a
	// table, two Go maps, a key slice and a boxed key (six allocations).
	// No script sees another's table: a table that outlives its run is
	// reachable only from the read-only tables (see rawset), so a script has
	// nowhere to keep one (the argument that lets KEYS and ARGV be
	// reused).
	status     []*lua.LTable
	statusUsed int
	// args is redis.call's argument slice, reused from call to call: a
	// command keeps its arguments' bytes (in its ops), never the slice,
	// and its reply is converted to Lua before the next call.
	args [][]byte
	// scratch holds the arguments of redis.call's commands that only
	// read (see call), reused from call to call.
	scratch []byte
	// libFns are the closures each function library registered when it
	// ran in this state (functions.go), by library and name; loadEnv is
	// the globals of a library's load run, registering what one run
	// registers so far.
	libFns      map[*library]map[string]*lua.LFunction
	loadEnv     *lua.LTable
	registering *registration
}

// maxStatus bounds the status tables a state keeps.
const maxStatus = 64

// statusTable is {ok=s}: a kept table if one is left, else a new one.
func (m *vm) statusTable(s commands.SimpleString) *lua.LTable {
	var v lua.LValue = luaOK
	if s != "OK" {
		v = lua.LString(s)
	}
	if m.statusUsed < len(m.status) {
		t := m.status[m.statusUsed]
		m.statusUsed++
		t.RawSetString("ok", v) // its one key: no allocation
		return t
	}
	t := m.L.CreateTable(0, 1) // not NewTable's 32-slot map
	t.RawSetString("ok", v)
	if len(m.status) < maxStatus {
		m.status = append(m.status, t)
		m.statusUsed++
	}
	return t
}

// keepStatus, after a run, keeps the status tables the script left as
// they were made: no metatable and exactly one entry, ok, a string.
func (m *vm) keepStatus() {
	kept := m.status[:0]
	for _, t := range m.status[:m.statusUsed] {
		if plainStatus(t) {
			kept = append(kept, t)
		}
	}
	kept = append(kept, m.status[m.statusUsed:]...) // not handed out
	clear(m.status[len(kept):])
	m.status, m.statusUsed = kept, 0
}

// plainStatus reports whether t is {ok=<a string>} and nothing else.
func plainStatus(t *lua.LTable) bool {
	if t.Metatable != lua.LNil {
		return false
	}
	k, v := t.Next(lua.LNil)
	if k != lua.LString("ok") || v.Type() != lua.LTString {
		return false
	}
	k, _ = t.Next(k)
	return k == lua.LNil
}

// maxFns bounds a state's reused script functions.
const maxFns = 256

const (
	msgReadonly     = "Attempt to modify a readonly table"
	msgNoSuchGlobal = "Script attempted to access nonexistent global variable '%s'"
)

// newVM builds a state: Redis's libraries, without what reaches files,
// the process or other modules, every global and library read-only.
func newVM(e *Engine, gen uint64) *vm {
	L := lua.NewState(lua.Options{SkipOpenLibs: true, RegistryMaxSize: 1 << 20, CallStackSize: 256})
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.CoroutineLibName, lua.OpenCoroutine},
	} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	m := &vm{e: e, gen: gen, L: L, base: L.G.Global, fns: map[*compiled]*lua.LFunction{}}
	for _, name := range []string{"dofile", "loadfile", "print", "_printregs", "module", "require", "_GOPHER_LUA_VERSION", "package"} {
		m.base.RawSetString(name, lua.LNil)
	}
	m.base.RawSetString("cjson", newCJSON(L))
	m.base.RawSetString("cmsgpack", newCMsgpack(L))
	m.base.RawSetString("bit", newBit(L))
	m.base.RawSetString("redis", m.newRedis())
	m.base.RawSetString("pcall", L.NewFunction(m.pcall))
	m.base.RawSetString("rawset", L.NewFunction(m.rawset))
	m.base.RawSetString("setmetatable", L.NewFunction(m.setmetatable))
	getfenv := m.base.RawGetString("getfenv").(*lua.LFunction)
	m.base.RawSetString("getfenv", L.NewFunction(func(L *lua.LState) int {
		arg := L.Get(1)
		switch f := arg.(type) {
		case *lua.LFunction:
			if f.IsG {
				L.Push(m.env)
				return 1
			}
		case lua.LNumber:
			if f <= 0 {
				L.Push(m.env)
				return 1
			}
			arg = f + 1 // this wrapper is one more frame
		case *lua.LNilType:
			arg = lua.LNumber(2)
		}
		L.Push(getfenv)
		L.Push(arg)
		L.Call(1, 1)
		if L.Get(-1) == m.base {
			L.Pop(1)
			L.Push(m.env)
		}
		return 1
	}))
	// string.dump would hand out bytecode, which Redis refuses to load.
	m.base.RawGetString("string").(*lua.LTable).RawSetString("dump", lua.LNil)
	m.base.RawGetString("table").(*lua.LTable).RawSetString("insert", L.NewFunction(m.tableInsert))
	math := m.base.RawGetString("math").(*lua.LTable)
	math.RawSetString("random", L.NewFunction(m.random))
	math.RawSetString("randomseed", L.NewFunction(m.randomseed))

	// The metatable scripts see (getmetatable) of every protected table.
	shown := L.NewTable()
	shownMeta := L.NewTable()
	shownMeta.RawSetString("__newindex", L.NewFunction(refuseWrite))
	shownMeta.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(shown, shownMeta)
	m.protected = append(m.protected, shown)
	// The string metatable is the string library itself.
	if mt, ok := L.GetMetatable(lua.LString("")).(*lua.LTable); ok {
		mt.RawSetString("__metatable", shown)
	}
	for _, name := range []string{"string", "table", "math", "coroutine", "cjson", "cmsgpack", "bit", "redis"} {
		m.base.RawSetString(name, m.readonly(m.base.RawGetString(name).(*lua.LTable), shown))
	}

	// A global is looked up in env (KEYS, ARGV), then in base through
	// env's __index, a table, so that reading one (redis, twice in most
	// scripts) calls no Go function and boxes no key; only a miss in base
	// calls its __index, which raises. Go code reads base raw.
	baseMeta := L.NewTable()
	baseMeta.RawSetString("__index", L.NewFunction(noSuchGlobal))
	L.SetMetatable(m.base, baseMeta)
	m.env = L.NewTable()
	envMeta := L.NewTable()
	envMeta.RawSetString("__index", m.base)
	envMeta.RawSetString("__newindex", L.NewFunction(refuseWrite))
	envMeta.RawSetString("__metatable", shown)
	L.SetMetatable(m.env, envMeta)
	m.protected = append(m.protected, m.env)
	m.base.RawSetString("_G", m.env)
	L.Env = m.env

	return m
}

// readonly returns a proxy of t that reads t and refuses writes.
func (m *vm) readonly(t, shown *lua.LTable) *lua.LTable {
	p := m.L.NewTable()
	mt := m.L.NewTable()
	mt.RawSetString("__index", t)
	mt.RawSetString("__newindex", m.L.NewFunction(refuseWrite))
	mt.RawSetString("__metatable", shown)
	m.L.SetMetatable(p, mt)
	m.protected = append(m.protected, p)
	return p
}

func refuseWrite(L *lua.LState) int {
	L.RaiseError(msgReadonly)
	return 0
}

// noSuchGlobal is base's __index: a global that does not exist is an
// error.
func noSuchGlobal(L *lua.LState) int {
	L.RaiseError(msgNoSuchGlobal, lua.LVAsString(L.Get(2)))
	return 0
}

func (m *vm) isProtected(t *lua.LTable) bool {
	if t == m.base {
		return true
	}
	for _, p := range m.protected {
		if p == t {
			return true
		}
	}
	return false
}

// rawset, setmetatable and table.insert refuse the protected tables, as
// Redis's read-only tables do. They are the only functions of the
// libraries that write a table they are given without its metamethods
// (table.remove and table.sort rewrite a table's array elements only,
// and no protected table has any, since table.insert cannot add one):
// TestLibraryFunctions pins the list, so that a gopher-lua with another
// such function fails it. With them refused no script can change a
// protected table, so no run has to be checked for it (sealed).
func (m *vm) rawset(L *lua.LState) int {
	t := L.CheckTable(1)
	if m.isProtected(t) {
		L.RaiseError(msgReadonly)
	}
	t.RawSet(L.CheckAny(2), L.CheckAny(3))
	L.SetTop(1)
	return 1
}

// tableInsert is gopher-lua's table.insert, refusing the protected tables.
func (m *vm) tableInsert(L *lua.LState) int {
	t := L.CheckTable(1)
	if m.isProtected(t) {
		L.RaiseError(msgReadonly)
	}
	switch L.GetTop() {
	case 1:
		L.RaiseError("wrong number of arguments")
	case 2:
		t.Append(L.Get(2))
	default:
		t.Insert(L.CheckInt(2), L.CheckAny(3))
	}
	return 0
}

func (m *vm) setmetatable(L *lua.LState) int {
	t := L.CheckTable(1)
	if m.isProtected(t) {
		L.RaiseError(msgReadonly)
	}
	mt := L.Get(2)
	if _, ok := mt.(*lua.LTable); !ok && mt != lua.LNil {
		L.ArgError(2, "nil or table expected")
	}
	if cur, ok := L.GetMetatable(t).(*lua.LTable); ok && cur.RawGetString("__metatable") != lua.LNil {
		L.RaiseError("cannot change a protected metatable")
	}
	L.SetMetatable(t, mt)
	L.SetTop(1)
	return 1
}

// sealed reports whether the state may run another script: its
// protected tables cannot have changed (see rawset), and a script's
// setfenv(0, t) has not replaced the environment that loadstring's
// chunks get (which the next script of the state would inherit).
func (m *vm) sealed() bool {
	return m.L.Env == m.env
}

// exec runs sc with keys and argv under r and returns its reply.
func (m *vm) exec(ctx context.Context, sc *compiled, keys, argv [][]byte, r *run) commands.Reply {
	L := m.L
	m.run = r
	defer func() {
		m.run = nil
		m.keepStatus() // after the reply is read from them
	}()
	// One string holds every key and argument; each element is a
	// substring of it (one allocation, not one per element).
	all := joined(keys, argv)
	m.keys = m.fill(m.keys, "KEYS", keys, all)
	m.argv = m.fill(m.argv, "ARGV", argv, all[joinedLen(keys):])
	fn := m.fns[sc]
	if fn == nil {
		// A chunk has no upvalues: its function is made once per state
		// and reused, its environment set again for each run (setfenv
		// may have changed it).
		fn = L.NewFunctionFromProto(sc.proto)
		if len(m.fns) >= maxFns {
			clear(m.fns)
		}
		m.fns[sc] = fn
	}
	fn.Env = m.env
	L.SetContext(ctx)
	defer L.RemoveContext()
	L.Push(fn)
	err := L.PCall(0, 1, nil)
	if err != nil {
		L.SetTop(0)
		return m.errorReply(err, r)
	}
	ret := L.Get(-1)
	L.SetTop(0)
	return toReply(L, ret, r.resp, 0)
}

// fill makes t the array of a's strings, taken in order from all (a's
// elements concatenated, and maybe more after them), and the global
// name, set in base: read through env like every global, and refused as a
// write like every global (`KEYS = 5` raises, as in Redis 7, where it
// succeeded while they were set in env itself). It reuses t, the table of the last run, when that run left it a
// plain array (plainArray): no script sees a table of another, since a
// script has nowhere to keep one past its run (every table that outlives
// it is read-only), so the reuse is invisible and spares a table, its
// array and base's key per run. Else it makes a new one.
func (m *vm) fill(t *lua.LTable, name string, a [][]byte, all string) *lua.LTable {
	if t == nil || !plainArray(t) {
		t = m.L.CreateTable(len(a), 0)
	}
	old := t.Len()
	off := 0
	for i, s := range a {
		t.RawSetInt(i+1, lua.LString(all[off:off+len(s)]))
		off += len(s)
	}
	for i := len(a) + 1; i <= old; i++ {
		t.RawSetInt(i, lua.LNil)
	}
	if m.base.RawGetString(name) != lua.LValue(t) {
		m.base.RawSetString(name, t)
	}
	return t
}

// plainArray reports whether t has no metatable and no entry after its
// last array element (t.Len()): no hash key, no element past a nil. Such
// a table is emptied by setting its elements 1..Len() to nil.
func plainArray(t *lua.LTable) bool {
	if t.Metatable != lua.LNil {
		return false
	}
	var k lua.LValue = lua.LNil
	if n := t.Len(); n > 0 {
		k = lua.LNumber(n)
	}
	k, _ = t.Next(k)
	return k == lua.LNil
}

// joined is the strings of keys and argv concatenated, in one allocation.
func joined(keys, argv [][]byte) string {
	var sb strings.Builder
	sb.Grow(joinedLen(keys) + joinedLen(argv))
	for _, s := range keys {
		sb.Write(s)
	}
	for _, s := range argv {
		sb.Write(s)
	}
	return sb.String()
}

func joinedLen(a [][]byte) int {
	n := 0
	for _, s := range a {
		n += len(s)
	}
	return n
}

// lineOf finds the line in a Lua error message "user_script:LINE: ...".
var lineOf = regexp.MustCompile(`^(?:` + chunkName + `|` + functionChunk + `):(\d+):`)

// errorReply is the reply to a script that raised err, as Redis 7 words
// it: the error table's err text (or "ERR " and the Lua message), then
// " script: SHA, on @user_script:LINE.".
func (m *vm) errorReply(err error, r *run) commands.Reply {
	var msg, line string
	apiErr, _ := err.(*lua.ApiError)
	var obj lua.LValue = lua.LString(err.Error())
	if apiErr != nil {
		obj = apiErr.Object
	}
	switch {
	case r.killed.Load():
		msg = msgKilled
		// Where the run was stopped, as Redis names it.
		if sm := lineOf.FindStringSubmatch(lua.LVAsString(obj)); sm != nil {
			line = sm[1]
		}
	case isTable(obj):
		t := obj.(*lua.LTable)
		msg = lua.LVAsString(t.RawGetString("err"))
		if l := t.RawGetString("line"); l != lua.LNil {
			line = lua.LVAsString(l)
		}
	default:
		s := lua.LVAsString(obj)
		if s == "" && apiErr != nil {
			s = apiErr.Error()
		}
		msg = "ERR " + s
		if sm := lineOf.FindStringSubmatch(s); sm != nil {
			line = sm[1]
		}
	}
	out := msg + " script: " + r.sha
	if line != "" {
		out += ", on @" + r.chunk + ":" + line + "."
	}
	return commands.ErrorReply(oneLine(out))
}

func isTable(v lua.LValue) bool {
	_, ok := v.(*lua.LTable)
	return ok
}

// raise raises a Redis error table {err=msg} with the line of the
// script's call, as Redis's error handler fills it in.
func raise(L *lua.LState, msg string) {
	t := errTable(L, msg)
	if sm := lineOf.FindStringSubmatch(L.Where(1)); sm != nil {
		n, _ := strconv.Atoi(sm[1])
		t.RawSetString("line", lua.LNumber(n))
	}
	L.Error(t, 0)
}

// errTable is {err=msg}: "ERR " is added when msg has no code, as
// Redis's luaPushError does.
func errTable(L *lua.LState, msg string) *lua.LTable {
	t := L.CreateTable(0, 1)
	t.RawSetString("err", lua.LString(msg))
	return t
}

// pcall is Redis's: an error table raised by redis.call comes back as its
// err text, so that scripts written for Redis 6 keep working.
func (m *vm) pcall(L *lua.LState) int {
	L.CheckAny(1)
	nargs := L.GetTop() - 1
	if err := L.PCall(nargs, lua.MultRet, nil); err != nil {
		var obj lua.LValue = lua.LString(err.Error())
		if ae, ok := err.(*lua.ApiError); ok {
			obj = ae.Object
		}
		if t, ok := obj.(*lua.LTable); ok {
			if s, ok := t.RawGetString("err").(lua.LString); ok {
				obj = s
			}
		}
		L.SetTop(0)
		L.Push(lua.LFalse)
		L.Push(obj)
		return 2
	}
	L.Insert(lua.LTrue, 1)
	return L.GetTop()
}

func (m *vm) random(L *lua.LState) int {
	r := float64(m.e.rng.next()%lrand48Max) / float64(lrand48Max)
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(r))
	case 1:
		u := checkInt(L, 1)
		if u < 1 {
			L.ArgError(1, "interval is empty")
		}
		L.Push(lua.LNumber(float64(int(r*float64(u))) + 1))
	case 2:
		lo, up := checkInt(L, 1), checkInt(L, 2)
		if lo > up {
			L.ArgError(2, "interval is empty")
		}
		L.Push(lua.LNumber(float64(int(r*float64(up-lo+1))) + float64(lo)))
	default:
		L.RaiseError("wrong number of arguments")
	}
	return 1
}

func (m *vm) randomseed(L *lua.LState) int {
	m.e.rng.seed(int32(checkInt(L, 1)))
	return 0
}

// checkInt is luaL_checkint: a number or a string that is one.
func checkInt(L *lua.LState, n int) int {
	switch v := L.Get(n).(type) {
	case lua.LNumber:
		return int(v)
	case lua.LString:
		if f, err := strconv.ParseFloat(strings.TrimSpace(string(v)), 64); err == nil {
			return int(f)
		}
	}
	L.TypeError(n, lua.LTNumber)
	return 0
}
