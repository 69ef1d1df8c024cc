package commands

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
// for the read lock a running function's read holds). The node runs
// LOAD, DELETE, FLUSH and RESTORE as FunctionWrite (a write through the
// log: the libraries are replicated data, applied by every node), LIST,
// DUMP and STATS as FunctionRead, on any node, from what it applied.
var (
	FunctionWrite = &Spec{Name: "function", Arity: -2, Flags: FlagWrite, Exec: functionExec}
	FunctionRead  = &Spec{Name: "function", Arity: -2, Flags: FlagRead, Exec: functionExec}
)

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
