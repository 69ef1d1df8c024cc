package commands

import "strings"

// Scripter runs Lua scripts: EVAL, EVALSHA, EVAL_RO and EVALSHA_RO are
// commands of this table whose Exec hands the call to Ctx.Scripts
// (package script), so that a script is sequenced, replicated and read
// like any other command: on the leader its Exec runs inside the
// sequencer and returns the row-form ops of every write it made (one log
// entry, Redis 7's effects replication), and a follower never runs Lua.
// This package stays free of Lua: the interface is all it knows.
type Scripter interface {
	// Eval runs the script that args name (args[0] is the command name,
	// args[1] the body or SHA1, args[2] numkeys, then keys and args)
	// against v. readOnly: the caller is EVAL_RO or EVALSHA_RO, so a
	// write command in the script is refused. byDigest: args[1] is a
	// SHA1 (EVALSHA). The result's Ops are the script's writes, in
	// order; its reply may be an ErrorReply (a script error) with ops
	// (the writes made before the error stand, as in Redis).
	Eval(ctx *Ctx, v View, args [][]byte, readOnly, byDigest bool) (Result, error)
	// FCall runs a function of the libraries v holds (args[1] its name,
	// args[2] numkeys, then keys and args) as Eval runs a script;
	// readOnly: FCALL_RO, which refuses a function without the no-writes
	// flag.
	FCall(ctx *Ctx, v View, args [][]byte, readOnly bool) (Result, error)
	// Function runs FUNCTION LOAD, DELETE, FLUSH, RESTORE (their Ops: one
	// logrec.OpFunctions, the libraries' new set), LIST, DUMP or STATS
	// (args[1]) against the libraries v holds.
	Function(ctx *Ctx, v View, args [][]byte) (Result, error)
}

// FUNCTION is not in the table: whether it writes depends on its
// subcommand, and KILL and HELP are the node's own (a kill must not wait
// for the read lock a running function's read holds). Resolve gives
// LOAD, DELETE, FLUSH and RESTORE the spec FunctionWrite (a write through
// the log: the libraries are replicated data, applied by every node),
// LIST, DUMP and STATS (and an unknown subcommand, which its Exec
// answers) FunctionRead, on any node, from what it applied; KILL and HELP
// none.
var (
	FunctionWrite = &Spec{Name: "function", Arity: -2, Flags: FlagWrite, Exec: functionExec}
	FunctionRead  = &Spec{Name: "function", Arity: -2, Flags: FlagRead, Exec: functionExec}
)

// FunctionSubcommands are FUNCTION's subcommands: each one's arity (its
// own, Redis's "function|load") and whether it writes; Node: the node
// serves it without a spec (KILL, HELP).
var FunctionSubcommands = map[string]struct {
	Arity        int
	Writes, Node bool
}{
	"load": {-3, true, false}, "delete": {3, true, false}, "flush": {-2, true, false}, "restore": {-3, true, false},
	"list": {-2, false, false}, "dump": {2, false, false}, "stats": {2, false, false},
	"kill": {2, false, true}, "help": {2, false, true},
}

// CheckFunction is FUNCTION's check before it runs (Check's for
// FunctionWrite and FunctionRead, the node's for KILL and HELP): its
// subcommand in lower case, or the input error that refuses it, Redis
// 7's: the arity of "function" or of its subcommand ("function|load"),
// or an unknown subcommand. MULTI refuses with it at queuing time.
func CheckFunction(args [][]byte) (string, error) {
	if len(args) < 2 {
		return "", &ArityError{Name: "function"}
	}
	sub := strings.ToLower(string(args[1]))
	sc, known := FunctionSubcommands[sub]
	if !known {
		return "", newError("unknown subcommand '" + string(args[1]) + "'. Try FUNCTION HELP.")
	}
	if !ArityOK(sc.Arity, len(args)) {
		return "", &ArityError{Name: "function|" + sub}
	}
	return sub, nil
}

// Resolve is Lookup of the command args name, and for FUNCTION, which no
// Lookup finds, the spec of its subcommand (see FunctionWrite): the
// lookup of the node's paths that run a client's command (serve, a
// pipeline's writes, MULTI's queue, the proxy's routing). ok is false
// for a command of no spec, FUNCTION KILL and HELP included.
func Resolve(args [][]byte) (*Spec, bool) {
	if s, ok := Lookup(args[0]); ok {
		return s, true
	}
	if len(args[0]) != len("function") || !strings.EqualFold(string(args[0]), "function") {
		return nil, false
	}
	if len(args) < 2 {
		return FunctionRead, true // Check answers the arity
	}
	sub, known := FunctionSubcommands[strings.ToLower(string(args[1]))]
	switch {
	case known && sub.Node:
		return nil, false
	case known && sub.Writes:
		return FunctionWrite, true
	}
	return FunctionRead, true
}

func functionExec(ctx *Ctx, v View, args [][]byte) (Result, error) {
	if ctx.Scripts == nil {
		return Result{}, errNoScripts
	}
	return ctx.Scripts.Function(ctx, v, args)
}

func fcallExec(readOnly bool) func(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return func(ctx *Ctx, v View, args [][]byte) (Result, error) {
		if ctx.Scripts == nil {
			return Result{}, errNoScripts
		}
		return ctx.Scripts.FCall(ctx, v, args, readOnly)
	}
}

// errNoScripts answers a script command where no Scripter was given
// (a Ctx made by a test or a tool).
var errNoScripts = newError("scripts are not available here")

func scriptExec(readOnly, byDigest bool) func(ctx *Ctx, v View, args [][]byte) (Result, error) {
	return func(ctx *Ctx, v View, args [][]byte) (Result, error) {
		if ctx.Scripts == nil {
			return Result{}, errNoScripts
		}
		return ctx.Scripts.Eval(ctx, v, args, readOnly, byDigest)
	}
}
