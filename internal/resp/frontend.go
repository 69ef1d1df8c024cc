package resp

import (
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// Command is one of a front end's own commands.
type Command struct {
	// Arity is Redis's: the name counts, negative means at least -Arity.
	Arity int
	// Run answers the command with exactly one reply (or hands the
	// connection to redcon's PubSub). It is called only with an arity
	// that fits.
	Run func(c redcon.Conn, sess *Session, args [][]byte)
}

// Commands is a front end's command table by lower-case name; its Serve
// is a FrontEnd.Serve that checks arity the way the layer and the node
// do, with the same error text. A name that is a connection command
// panics: the layer answers those, and a front end must not shadow them.
type Commands map[string]Command

// Serve runs the command named by args[0], or returns false if the table
// has none.
func (t Commands) Serve(c redcon.Conn, sess *Session, args [][]byte) bool {
	name := lowerName(args[0])
	cmd, ok := t[name]
	if !ok {
		return false
	}
	if !commands.ArityOK(cmd.Arity, len(args)) {
		c.WriteError(errArity(name))
		return true
	}
	cmd.Run(c, sess, args)
	return true
}

// Check panics if the table names a connection command.
func (t Commands) Check() {
	for name := range t {
		if _, ok := connCmds[name]; ok || name != strings.ToLower(name) {
			panic("resp: front-end command " + name + " is a connection command or not lower case")
		}
	}
}

func lowerName(b []byte) string {
	var buf [32]byte
	if len(b) > len(buf) {
		return strings.ToLower(string(b))
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return string(buf[:len(b)])
}

// The error table's texts a front end writes for its own commands, so
// that they read as the node's do.

// ArityError is Redis's reply to a command, or a "command|subcommand",
// with the wrong number of arguments.
func ArityError(cmd string) string { return errArity(cmd) }

// UnknownSubcommandError is Redis's reply to CMD <sub> for an unknown
// sub; cmd is upper case, as Redis prints it.
func UnknownSubcommandError(sub []byte, cmd string) string { return errUnknownSubcommand(sub, cmd) }
