package script

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/tandemdb/tandem/internal/commands"
)

// chunkName is the name Redis gives a script's chunk: errors read
// "user_script:LINE: ...".
const chunkName = "user_script"

// compile parses a script's shebang (Redis 7: "#!lua flags=no-writes,...")
// and compiles its body.
func compile(body string) (*compiled, commands.Reply) {
	c := &compiled{body: body}
	src := body
	if strings.HasPrefix(body, "#!") {
		line, rest, _ := strings.Cut(body, "\n")
		if r := c.shebang(line[2:]); r != nil {
			return nil, r
		}
		// Keep the line count: errors name the script's own lines.
		src = "\n" + rest
	}
	chunk, err := parse.Parse(strings.NewReader(src), chunkName)
	if err != nil {
		return nil, commands.ErrorReply("ERR Error compiling script (new function): " + oneLine(err.Error()))
	}
	proto, err := lua.Compile(chunk, chunkName)
	if err != nil {
		return nil, commands.ErrorReply("ERR Error compiling script (new function): " + oneLine(err.Error()))
	}
	// The chunk is a vararg function, for which gopher-lua (Lua 5.0's
	// compatibility) builds an "arg" table on every call unless it uses
	// "..."; only a nested function can name it (a chunk has no local
	// "arg"), so the chunk's is never read: a table and a 32-slot map
	// per EVAL for nothing.
	proto.IsVarArg &^= lua.VarArgNeedsArg
	c.proto = proto
	return c, nil
}

// shebang reads "lua flags=a,b": the engine must be lua, the only option
// flags, the flags Redis 7 knows (only no-writes changes anything here).
func (c *compiled) shebang(s string) commands.Reply {
	parts := strings.Fields(s)
	if len(parts) == 0 || parts[0] != "lua" {
		engine := ""
		if len(parts) > 0 {
			engine = parts[0]
		}
		return commands.ErrorReply("ERR Unexpected engine in script shebang: " + engine)
	}
	for _, p := range parts[1:] {
		flags, ok := strings.CutPrefix(p, "flags=")
		if !ok {
			return commands.ErrorReply("ERR Unknown lua shebang option: " + p)
		}
		for f := range strings.SplitSeq(flags, ",") {
			switch f {
			case "no-writes":
				c.noWrites = true
			case "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys", "":
			default:
				return commands.ErrorReply("ERR Unexpected flag in script shebang: " + f)
			}
		}
	}
	return nil
}

// oneLine makes s fit an error reply.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
