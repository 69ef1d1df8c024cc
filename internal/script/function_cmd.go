package script

import (
	"encoding/binary"
	"strings"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// FUNCTION's subcommands that read or write the libraries (LOAD, DELETE,
// FLUSH, RESTORE write; LIST, DUMP, STATS read). KILL and HELP are the
// node's (Kill, FunctionHelp).

// FunctionSubcommands are FUNCTION's subcommands with their arity (the
// subcommand's, Redis's "function|load"), and whether they write.
var FunctionSubcommands = map[string]struct {
	Arity  int
	Writes bool
}{
	"load": {-3, true}, "delete": {3, true}, "flush": {-2, true}, "restore": {-3, true},
	"list": {-2, false}, "dump": {2, false}, "stats": {2, false}, "kill": {2, false}, "help": {2, false},
}

// # FUNCTION DUMP payload (tandem's own; part of what clients store: frozen)
//
//	version  1 byte, functionsDumpVersion (not a key DUMP's version:
//	         neither RESTORE takes the other's payload)
//	row      the libraries row (keyspace.EncodeLibraries), empty for none
//	crc      4 bytes, little endian: CRC32C (frame.Checksum) of every
//	         byte before it
const functionsDumpVersion = 0x81

var (
	replyPayload    = commands.ErrorReply("ERR DUMP payload version or checksum are wrong")
	replyPolicy     = commands.ErrorReply("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")
	replyFlushMode  = commands.ErrorReply("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
	replyNoLibName  = commands.ErrorReply("ERR library name argument was not given")
	replyBadPayload = commands.ErrorReply("ERR Bad data format")
)

// Function runs a FUNCTION subcommand that reads or writes the libraries
// (commands.Scripter): its writes are one OpFunctions op, the new set.
func (e *Engine) Function(ctx *commands.Ctx, v commands.View, args [][]byte) (commands.Result, error) {
	sub := strings.ToLower(string(args[1]))
	set, err := e.functionsOf(ctx, v)
	if err != nil {
		return commands.Result{}, err
	}
	reply := func(r commands.Reply) (commands.Result, error) { return commands.Result{Reply: r}, nil }
	switch sub {
	case "load":
		replace := false
		for _, a := range args[2 : len(args)-1] {
			if !strings.EqualFold(string(a), "replace") {
				return reply(commands.ErrorReply("ERR Unknown option given: " + string(a)))
			}
			replace = true
		}
		code := string(args[len(args)-1])
		name, r := parseLibraryMeta(code)
		if r != nil {
			return reply(r)
		}
		if set.lib(name) != nil && !replace {
			return reply(commands.ErrorReply("ERR Library '" + name + "' already exists"))
		}
		l, r := e.prepare(name, code)
		if r != nil {
			return reply(r)
		}
		libs, r := merge(set, []*library{l}, true)
		if r != nil {
			return reply(r)
		}
		return e.write(libs, commands.Bulk(name))
	case "delete":
		name := string(args[2])
		if set.lib(name) == nil {
			return reply(replyLibNotFound)
		}
		var libs []*library
		for _, l := range set.libs {
			if l.name != name {
				libs = append(libs, l)
			}
		}
		return e.write(libs, commands.OK)
	case "flush":
		if len(args) > 3 {
			return reply(replyFlushMode)
		}
		if len(args) == 3 {
			if m := strings.ToLower(string(args[2])); m != "sync" && m != "async" {
				return reply(replyFlushMode)
			}
		}
		if len(set.libs) == 0 {
			return reply(commands.OK)
		}
		return e.write(nil, commands.OK)
	case "restore":
		policy := "append"
		if len(args) > 4 {
			return reply(replyPolicy)
		}
		if len(args) == 4 {
			policy = strings.ToLower(string(args[3]))
			if policy != "flush" && policy != "append" && policy != "replace" {
				return reply(replyPolicy)
			}
		}
		p := args[2]
		if len(p) < 1+4 || p[0] != functionsDumpVersion || binary.LittleEndian.Uint32(p[len(p)-4:]) != frame.Checksum(p[:len(p)-4]) {
			return reply(replyPayload)
		}
		stored, err := keyspace.DecodeLibraries(p[1 : len(p)-4])
		if err != nil {
			return reply(replyBadPayload)
		}
		var restored []*library
		for _, kl := range stored {
			l, r := e.compileLibrary(kl.Name, kl.Code)
			if r != nil {
				return reply(r)
			}
			restored = append(restored, l)
		}
		base := set
		if policy == "flush" {
			base = emptySet
		}
		if policy == "append" {
			for _, l := range restored {
				if base.lib(l.name) != nil {
					return reply(commands.ErrorReply("ERR Library " + l.name + " already exists"))
				}
			}
		}
		libs, r := merge(base, restored, true)
		if r != nil {
			return reply(r)
		}
		return e.write(libs, commands.OK)
	case "list":
		return reply(listLibraries(set, args[2:]))
	case "dump":
		body := keyspace.EncodeLibraries(libraryRows(set.libs))
		out := append([]byte{functionsDumpVersion}, body...)
		return reply(commands.Bulk(binary.LittleEndian.AppendUint32(out, frame.Checksum(out))))
	case "stats":
		var running commands.Reply = commands.Null
		if name, cmd, d := e.running(); name != "" {
			args := commands.Array{}
			for _, a := range cmd {
				args = append(args, commands.Bulk(a))
			}
			running = commands.Map{commands.Bulk("name"), commands.Bulk(name), commands.Bulk("command"), args,
				commands.Bulk("duration_ms"), commands.Int(d.Milliseconds())}
		}
		return reply(commands.Map{
			commands.Bulk("running_script"), running,
			commands.Bulk("engines"), commands.Map{commands.Bulk("LUA"), commands.Map{
				commands.Bulk("libraries_count"), commands.Int(len(set.libs)),
				commands.Bulk("functions_count"), commands.Int(len(set.fns)),
			}},
		})
	}
	return reply(commands.ErrorReply("ERR unknown subcommand '" + string(args[1]) + "'. Try FUNCTION HELP."))
}

// merge is base with libs added, a library of the same name replaced
// (replace) — or refused — and a function name that another library
// registers refused ("Function f already exists").
func merge(base *libSet, libs []*library, replace bool) ([]*library, commands.Reply) {
	adding := map[string]bool{}
	for _, l := range libs {
		adding[l.name] = true
	}
	var out []*library
	fnOwner := map[string]string{}
	for _, l := range base.libs {
		if adding[l.name] {
			if !replace {
				return nil, commands.ErrorReply("ERR Library '" + l.name + "' already exists")
			}
			continue
		}
		out = append(out, l)
		for _, f := range l.fns {
			fnOwner[f.name] = l.name
		}
	}
	for _, l := range libs {
		for _, f := range l.fns {
			if _, taken := fnOwner[f.name]; taken {
				return nil, commands.ErrorReply("ERR Function " + f.name + " already exists")
			}
			fnOwner[f.name] = l.name
		}
		out = append(out, l)
	}
	return out, nil
}

func libraryRows(libs []*library) []keyspace.Library {
	out := make([]keyspace.Library, len(libs))
	for i, l := range libs {
		out[i] = keyspace.Library{Name: l.name, Code: l.code}
	}
	return out
}

// write is the result of a FUNCTION write: the set becomes libs (one op).
func (e *Engine) write(libs []*library, r commands.Reply) (commands.Result, error) {
	row := keyspace.EncodeLibraries(libraryRows(libs))
	if row == nil {
		row = []byte{}
	}
	return commands.Result{Reply: r, Ops: []logrec.Op{{Kind: logrec.OpFunctions, Key: []byte{}, Value: row}}}, nil
}

// listLibraries is FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
func listLibraries(set *libSet, opts [][]byte) commands.Reply {
	var pattern []byte
	withCode, havePattern := false, false
	for i := 0; i < len(opts); i++ {
		switch strings.ToLower(string(opts[i])) {
		case "withcode":
			withCode = true
		case "libraryname":
			if havePattern || i+1 >= len(opts) {
				return replyNoLibName
			}
			i++
			pattern, havePattern = opts[i], true
		default:
			return commands.ErrorReply("ERR Unknown argument " + string(opts[i]))
		}
	}
	out := commands.Array{}
	for _, l := range set.libs {
		if havePattern && !commands.Match(pattern, []byte(l.name)) {
			continue
		}
		fns := commands.Array{}
		for _, f := range l.fns {
			var desc commands.Reply = commands.Null
			if f.desc != "" {
				desc = commands.Bulk(f.desc)
			}
			flags := commands.Set{}
			for _, fl := range f.flags {
				flags = append(flags, commands.Bulk(fl))
			}
			fns = append(fns, commands.Map{commands.Bulk("name"), commands.Bulk(f.name), commands.Bulk("description"), desc, commands.Bulk("flags"), flags})
		}
		lib := commands.Map{commands.Bulk("library_name"), commands.Bulk(l.name), commands.Bulk("engine"), commands.Bulk("LUA"), commands.Bulk("functions"), fns}
		if withCode {
			lib = append(lib, commands.Bulk("library_code"), commands.Bulk(l.code))
		}
		out = append(out, lib)
	}
	return out
}

// FunctionHelp is FUNCTION HELP's reply, Redis 7.0's text.
func FunctionHelp() commands.Reply {
	var help commands.Array
	for _, l := range []string{
		"FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"LOAD [REPLACE] <FUNCTION CODE>",
		"    Create a new library with the given library name and code.",
		"DELETE <LIBRARY NAME>",
		"    Delete the given library.",
		"LIST [LIBRARYNAME PATTERN] [WITHCODE]",
		"    Return general information on all the libraries:",
		"    * Library name",
		"    * The engine used to run the Library",
		"    * Library description",
		"    * Functions list",
		"    * Library code (if WITHCODE is given)",
		"    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
		"STATS",
		"    Return information about the current function running:",
		"    * Function name",
		"    * Command used to run the function",
		"    * Duration in MS that the function is running",
		"    If no function is running, return nil",
		"    In addition, returns a list of available engines.",
		"KILL",
		"    Kill the current running function.",
		"FLUSH [ASYNC|SYNC]",
		"    Delete all the libraries.",
		"    When called without the optional mode argument, the behavior is determined by the",
		"    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
		"    * ASYNC: Asynchronously flush the libraries.",
		"    * SYNC: Synchronously flush the libraries.",
		"DUMP",
		"    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
		"RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
		"    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
		"    control how to handle existing libraries (default APPEND):",
		"    * FLUSH: delete all existing libraries.",
		"    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
		"    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
		"      libraries with the new libraries (notice that even on this option there is a chance of failure",
		"      in case of functions name collision with another library).",
		"HELP",
		"    Prints this help.",
	} {
		help = append(help, commands.SimpleString(l))
	}
	return help
}
