package script

import (
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tandemdb/tandem/internal/commands"
)

// Errors redis.call raises (redis.pcall returns them as {err=...}),
// Redis 7's texts.
const (
	msgNoArgs      = "ERR Please specify at least one argument for this redis lib call"
	msgBadArg      = "ERR Lua redis lib command arguments must be strings or integers"
	msgUnknown     = "ERR Unknown Redis command called from script"
	msgArity       = "ERR Wrong number of args calling Redis command from script"
	msgNotAllowed  = "ERR This Redis command is not allowed from script"
	msgWriteInRO   = "ERR Write commands are not allowed from read-only scripts."
	msgWrongArgs   = "ERR wrong number of arguments"
	msgWrongArgsTy = "ERR wrong number or type of arguments"
)

// notAllowed are commands Redis flags noscript that a script might try.
var notAllowed = map[string]bool{
	"eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true, "fcall": true, "fcall_ro": true,
	"multi": true, "exec": true, "discard": true, "watch": true, "unwatch": true,
	"subscribe": true, "psubscribe": true, "unsubscribe": true, "punsubscribe": true,
	"script": true, "function": true, "cluster": true, "client": true, "hello": true, "auth": true,
	"quit": true, "reset": true, "wait": true, "replicaof": true, "slaveof": true, "shutdown": true,
	// Blocking commands: a script cannot wait.
	"blpop": true, "brpop": true, "brpoplpush": true, "blmove": true, "blmpop": true,
	"bzpopmin": true, "bzpopmax": true, "bzmpop": true,
}

// noScript are the specs of the data commands among notAllowed: a found
// command is looked up by its spec, a pointer, not by its name.
var noScript = func() map[*commands.Spec]bool {
	out := map[*commands.Spec]bool{}
	for name := range notAllowed {
		if spec, ok := commands.Lookup([]byte(name)); ok {
			out[spec] = true
		}
	}
	return out
}()

// maxScratch bounds the arguments of a read command that go into the
// state's scratch buffer (vm.scratch), which the pooled state keeps.
const maxScratch = 4096

// newRedis builds the redis table.
func (m *vm) newRedis() *lua.LTable {
	L := m.L
	t := L.NewTable()
	fns := map[string]lua.LGFunction{
		"call":               func(L *lua.LState) int { return m.call(L, true) },
		"pcall":              func(L *lua.LState) int { return m.call(L, false) },
		"sha1hex":            sha1hex,
		"error_reply":        errorReply,
		"status_reply":       statusReply,
		"log":                m.log,
		"setresp":            m.setresp,
		"set_repl":           setRepl,
		"replicate_commands": func(L *lua.LState) int { L.Push(lua.LTrue); return 1 },
	}
	for name, fn := range fns {
		t.RawSetString(name, L.NewFunction(fn))
	}
	for name, n := range map[string]int{
		"LOG_DEBUG": 0, "LOG_VERBOSE": 1, "LOG_NOTICE": 2, "LOG_WARNING": 3,
		"REPL_NONE": 0, "REPL_AOF": 1, "REPL_SLAVE": 2, "REPL_REPLICA": 2, "REPL_ALL": 3,
		"REDIS_VERSION_NUM": 0x070000,
	} {
		t.RawSetString(name, lua.LNumber(n))
	}
	t.RawSetString("REDIS_VERSION", lua.LString("7.0.0"))
	return t
}

// call is redis.call (raise) and redis.pcall: it runs one command in the
// script's batch and converts its reply to Lua; a failure is raised (call)
// or returned (pcall) as {err=...}.
func (m *vm) call(L *lua.LState, raiseErr bool) int {
	r := m.run
	fail := func(msg string) int {
		if raiseErr {
			raise(L, msg)
			return 0
		}
		L.Push(errTable(L, msg))
		return 1
	}
	n := L.GetTop()
	if n == 0 {
		return fail(msgNoArgs)
	}
	// The arguments are copied into one buffer, the state's scratch
	// buffer (m.scratch) when they fit; a command that writes gets a copy
	// of its own (one allocation a call rather than one per argument),
	// since it may keep them in its ops. One that only reads keeps none
	// past its reply, which is converted to Lua (copied) before the next
	// call. The slice of them is the state's (m.args).
	if cap(m.args) < n {
		m.args = make([][]byte, n)
	}
	args := m.args[:n]
	defer clear(args) // drop the buffer: the ops hold it, not the state
	size := 0
	for i := 1; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case lua.LNumber:
			size += 24 // %.17g of a float64 is at most 24 bytes
		case lua.LString:
			size += len(v)
		default:
			return fail(msgBadArg)
		}
	}
	var buf []byte
	if size <= maxScratch {
		if m.scratch == nil {
			m.scratch = make([]byte, 0, maxScratch)
		}
		buf = m.scratch[:0]
	} else {
		buf = make([]byte, 0, size)
	}
	for i := 1; i <= n; i++ {
		start := len(buf)
		switch v := L.Get(i).(type) {
		case lua.LNumber:
			// Not Lua's %.14g, which loses precision: Redis's %.17g.
			buf = strconv.AppendFloat(buf, float64(v), 'g', 17, 64)
		case lua.LString:
			buf = append(buf, v...)
		}
		args[i-1] = buf[start:len(buf):len(buf)]
	}
	spec, found := commands.Lookup(args[0])
	if found && spec.Flags&commands.FlagWrite != 0 && size <= maxScratch {
		own := make([]byte, len(buf))
		copy(own, buf)
		off := 0
		for i, a := range args {
			args[i] = own[off : off+len(a) : off+len(a)]
			off += len(a)
		}
	}
	// The arguments stay on the stack: gopher-lua takes a Go function's
	// results from the top.
	reply, msg := m.dispatch(r, spec, found, args)
	if msg != "" {
		return fail(msg)
	}
	if e, ok := reply.(commands.ErrorReply); ok && raiseErr {
		raise(L, string(e))
		return 0
	}
	if st, ok := reply.(commands.SimpleString); ok {
		L.Push(m.statusTable(st))
	} else {
		L.Push(toLua(L, reply, r.resp))
	}
	return 1
}

// dispatch runs args in the script's batch; msg is a script-level
// refusal (the command did not run).
func (m *vm) dispatch(r *run, spec *commands.Spec, found bool, args [][]byte) (commands.Reply, string) {
	if !found {
		name := strings.ToLower(string(args[0]))
		if notAllowed[name] {
			return nil, msgNotAllowed
		}
		switch {
		case name == "ping" && len(args) <= 2:
			if len(args) == 2 {
				return commands.Bulk(args[1]), ""
			}
			return commands.SimpleString("PONG"), ""
		case name == "echo" && len(args) == 2:
			return commands.Bulk(args[1]), ""
		case name == "time" && len(args) == 1:
			// The script's one clock: time stands still while it runs.
			ms := r.ctx.NowMs
			return commands.Array{commands.Bulk(strconv.FormatInt(ms/1000, 10)), commands.Bulk(strconv.FormatInt(ms%1000*1000, 10))}, ""
		case name == "ping" || name == "echo" || name == "time":
			return nil, msgArity
		}
		return nil, msgUnknown
	}
	if noScript[spec] {
		return nil, msgNotAllowed
	}
	if commands.Check(spec, args) != nil {
		return nil, msgArity
	}
	if spec.Flags&commands.FlagWrite != 0 && r.readOnly {
		return nil, msgWriteInRO
	}
	before := len(r.batch.Ops())
	reply, err := r.batch.Run(r.ctx, spec, args)
	if len(r.batch.Ops()) > before {
		r.wrote.Store(true)
	}
	if err != nil {
		if commands.IsInputError(err) {
			return commands.ErrorReply("ERR " + err.Error()), ""
		}
		// A storage failure: the command fails, not the script's Lua.
		r.internal = err
		m.L.Error(lua.LString(errInternal.Error()), 0)
	}
	return reply, ""
}

func sha1hex(L *lua.LState) int {
	if L.GetTop() != 1 {
		raise(L, msgWrongArgs)
		return 0
	}
	L.Push(lua.LString(SHA1([]byte(L.ToString(1)))))
	return 1
}

// errorReply is redis.error_reply: {err=...} with the code Redis derives
// (the first word, or ERR when there is no space).
func errorReply(L *lua.LState) int {
	s, ok := L.Get(1).(lua.LString)
	if L.GetTop() != 1 || !ok {
		L.Push(errTable(L, msgWrongArgsTy))
		return 1
	}
	msg := strings.TrimPrefix(string(s), "-")
	if !strings.Contains(msg, " ") {
		msg = strings.TrimSuffix("ERR "+msg, " ")
	}
	L.Push(errTable(L, msg))
	return 1
}

func statusReply(L *lua.LState) int {
	s, ok := L.Get(1).(lua.LString)
	if L.GetTop() != 1 || !ok {
		L.Push(errTable(L, msgWrongArgsTy))
		return 1
	}
	t := L.CreateTable(0, 1)
	t.RawSetString("ok", s)
	L.Push(t)
	return 1
}

// log is redis.log(level, ...): the arguments joined by spaces, to slog.
func (m *vm) log(L *lua.LState) int {
	n := L.GetTop()
	if n < 2 {
		raise(L, "ERR redis.log() requires two arguments or more.")
		return 0
	}
	lv, ok := L.Get(1).(lua.LNumber)
	if !ok {
		raise(L, "ERR First argument must be a number (log level).")
		return 0
	}
	if lv < 0 || lv > 3 {
		raise(L, "ERR Invalid debug level.")
		return 0
	}
	var sb strings.Builder
	for i := 2; i <= n; i++ {
		if s, ok := L.Get(i).(lua.LString); ok {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(string(s))
		} else if num, ok := L.Get(i).(lua.LNumber); ok {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(num.String())
		}
	}
	log := m.e.cfg.Log
	switch int(lv) {
	case 0, 1:
		log.Debug(sb.String(), "source", "script")
	case 2:
		log.Info(sb.String(), "source", "script")
	default:
		log.Warn(sb.String(), "source", "script")
	}
	return 0
}

func (m *vm) setresp(L *lua.LState) int {
	if L.GetTop() != 1 {
		raise(L, "ERR redis.setresp() requires one argument.")
		return 0
	}
	n := L.ToInt(1)
	if n != 2 && n != 3 {
		raise(L, "ERR RESP version must be 2 or 3.")
		return 0
	}
	m.run.resp = n
	return 0
}

// setRepl is redis.set_repl: accepted for compatibility; a script's
// writes are always replicated as their effects.
func setRepl(L *lua.LState) int {
	if L.GetTop() != 1 {
		raise(L, "ERR redis.set_repl() requires two arguments.")
		return 0
	}
	if f := L.ToInt(1); f&^3 != 0 {
		raise(L, "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")
		return 0
	}
	return 0
}
