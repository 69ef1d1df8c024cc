package resp

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// The connection commands: what every endpoint answers the same way,
// before its front end sees the command. They touch only the session and
// the layer's own state; where Redis's answer depends on the endpoint
// (HELLO's mode and role, the protocols it speaks) the FrontEnd says so.
// The front ends' command tables must not name any of these (a test
// checks the node's).

// connCmd is a connection command.
type connCmd struct {
	name  string
	arity int // Redis convention, as commands.Spec.Arity
	fn    func(s *Server, c redcon.Conn, sess *Session, args [][]byte)
}

func (cc *connCmd) arityOK(n int) bool {
	return commands.ArityOK(cc.arity, n)
}

// connCmds is filled once by init and only read afterwards.
var connCmds map[string]*connCmd

func init() {
	list := []*connCmd{
		{"ping", -1, cmdPing},
		{"echo", 2, cmdEcho},
		{"hello", -1, cmdHello},
		{"auth", -2, cmdAuth},
		{"select", 2, cmdSelect},
		{"client", -2, cmdClient},
		{"quit", -1, cmdQuit},
		{"reset", 1, cmdReset},
	}
	connCmds = make(map[string]*connCmd, len(list))
	for _, cc := range list {
		connCmds[cc.name] = cc
	}
}

// lookupConnCmd finds a connection command by name, in any case, without
// allocating.
func lookupConnCmd(name []byte) (*connCmd, bool) {
	var buf [8]byte // the longest name is 6 bytes
	if len(name) > len(buf) {
		return nil, false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	cc, ok := connCmds[string(buf[:len(name)])]
	return cc, ok
}

func eqFold(b []byte, s string) bool { return strings.EqualFold(string(b), s) }

func cmdPing(_ *Server, c redcon.Conn, _ *Session, args [][]byte) {
	switch len(args) {
	case 1:
		c.WriteString("PONG")
	case 2:
		c.WriteBulk(args[1])
	default:
		c.WriteError(errArity("ping"))
	}
}

func cmdEcho(_ *Server, c redcon.Conn, _ *Session, args [][]byte) { c.WriteBulk(args[1]) }

func cmdQuit(_ *Server, c redcon.Conn, sess *Session, _ [][]byte) {
	sess.quit = true
	c.WriteString("OK")
	c.Close() // redcon flushes the pending replies first
}

func cmdReset(s *Server, c redcon.Conn, sess *Session, _ [][]byte) {
	sess.proto.Store(2)
	sess.mu.Lock()
	sess.name = ""
	sess.mu.Unlock()
	if s.fe.Reset != nil {
		s.fe.Reset(sess)
	}
	// RESET turns replies back on, its own included (as Redis).
	sess.reply = replyOn
	replyConn(c).WriteString("RESET")
}

func cmdSelect(_ *Server, c redcon.Conn, _ *Session, args [][]byte) {
	db, err := strconv.ParseInt(string(args[1]), 10, 32)
	switch {
	case err != nil:
		c.WriteError(errNotInteger)
	case db != 0:
		c.WriteError(errDBIndex)
	default:
		c.WriteString("OK")
	}
}

// checkAuth accepts what Redis accepts with no password configured: the
// default user, with any password.
func checkAuth(user []byte) string {
	if string(user) != "default" {
		return errWrongPass
	}
	return ""
}

func cmdAuth(_ *Server, c redcon.Conn, _ *Session, args [][]byte) {
	switch len(args) {
	case 2:
		c.WriteError(errAuthNoPassword)
	case 3:
		if e := checkAuth(args[1]); e != "" {
			c.WriteError(e)
			return
		}
		c.WriteString("OK")
	default:
		c.WriteError(errSyntax)
	}
}

// cmdHello is Redis 7's HELLO [protover [AUTH user pass] [SETNAME name]]:
// every check happens before any state changes.
func cmdHello(s *Server, c redcon.Conn, sess *Session, args [][]byte) {
	proto := int64(0)
	next := 1
	if len(args) >= 2 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			c.WriteError(errProtoNotInteger)
			return
		}
		if v < 2 || v > int64(s.fe.MaxProto) {
			c.WriteError(errNoProto)
			return
		}
		proto = v
		next = 2
	}
	var user, name []byte
	setName := false
	for j := next; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case eqFold(args[j], "auth") && more >= 2:
			user = args[j+1]
			j += 2
		case eqFold(args[j], "setname") && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			c.WriteError(errHelloOption(args[j]))
			return
		}
	}
	if user != nil {
		if e := checkAuth(user); e != "" {
			c.WriteError(e)
			return
		}
	}
	if setName {
		if !validClientName(name) {
			c.WriteError(errBadClientName)
			return
		}
		sess.mu.Lock()
		sess.name = string(name)
		sess.mu.Unlock()
	}
	if proto != 0 {
		sess.proto.Store(int32(proto))
	}
	role := "master"
	if s.fe.Role != nil {
		role = s.fe.Role()
	}
	writeReply(c, commands.Map{
		commands.Bulk("server"), commands.Bulk("redis"),
		commands.Bulk("version"), commands.Bulk(s.cfg.Version),
		commands.Bulk("proto"), commands.Int(sess.Proto()),
		commands.Bulk("id"), commands.Int(sess.id),
		commands.Bulk("mode"), commands.Bulk(s.fe.Mode),
		commands.Bulk("role"), commands.Bulk(role),
		commands.Bulk("modules"), commands.Array{},
	}, sess.proto3())
}

// validClientName is Redis's rule: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, ch := range name {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func cmdClient(s *Server, c redcon.Conn, sess *Session, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	arity := func(n int, exact bool) bool {
		if (exact && len(args) != n) || (!exact && len(args) < n) {
			c.WriteError(errArity("client|" + sub))
			return false
		}
		return true
	}
	switch sub {
	case "id":
		if arity(2, true) {
			c.WriteInt64(int64(sess.id))
		}
	case "getname":
		if arity(2, true) {
			if name := sess.Name(); name != "" {
				c.WriteBulkString(name)
			} else {
				writeNull(c, sess.proto3(), false)
			}
		}
	case "setname":
		if !arity(3, true) {
			return
		}
		if !validClientName(args[2]) {
			c.WriteError(errBadClientName)
			return
		}
		sess.mu.Lock()
		sess.name = string(args[2])
		sess.mu.Unlock()
		c.WriteString("OK")
	case "setinfo":
		if !arity(4, true) {
			return
		}
		attr := strings.ToLower(string(args[2]))
		if attr != "lib-name" && attr != "lib-ver" {
			c.WriteError(errUnrecognizedOption(args[2]))
			return
		}
		if !validClientName(args[3]) {
			c.WriteError(errBadLibInfo(attr))
			return
		}
		sess.mu.Lock()
		if attr == "lib-name" {
			sess.libName = string(args[3])
		} else {
			sess.libVer = string(args[3])
		}
		sess.mu.Unlock()
		c.WriteString("OK")
	case "info":
		if arity(2, true) {
			c.WriteBulkString(s.clientLine(sess) + "\n")
		}
	case "list":
		var sb strings.Builder
		for _, other := range s.sessionsByID() {
			sb.WriteString(s.clientLine(other))
			sb.WriteByte('\n')
		}
		c.WriteBulkString(sb.String())
	case "unblock":
		cmdClientUnblock(s, c, args)
	case "reply":
		cmdClientReply(c, sess, args)
	case "no-evict", "no-touch":
		if !arity(3, true) {
			return
		}
		if !eqFold(args[2], "on") && !eqFold(args[2], "off") {
			c.WriteError(errSyntax)
			return
		}
		c.WriteString("OK")
	case "help":
		writeReply(c, commands.Array{
			commands.SimpleString("CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
			commands.SimpleString("ID, GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, INFO, LIST, REPLY <ON|OFF|SKIP>, UNBLOCK <id> [TIMEOUT|ERROR], NO-EVICT, NO-TOUCH, HELP"),
		}, sess.proto3())
	default:
		c.WriteError(errUnknownSubcommand(args[1], "CLIENT"))
	}
}

// clientLine is one client's CLIENT LIST line, with the fields tandem
// knows in Redis's order.
func (s *Server) clientLine(sess *Session) string {
	sess.mu.Lock()
	name, lib, ver := sess.name, sess.libName, sess.libVer
	sess.mu.Unlock()
	var b []byte
	b = append(b, "id="...)
	b = strconv.AppendUint(b, sess.id, 10)
	b = append(b, " addr="...)
	b = append(b, sess.addr...)
	b = append(b, " laddr="...)
	b = append(b, sess.laddr...)
	b = append(b, " name="...)
	b = append(b, name...)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, int64(time.Since(sess.created)/time.Second), 10)
	b = append(b, " db=0 user=default resp="...)
	b = strconv.AppendInt(b, int64(sess.Proto()), 10)
	b = append(b, " lib-name="...)
	b = append(b, lib...)
	b = append(b, " lib-ver="...)
	b = append(b, ver...)
	return string(b)
}

func (s *Server) sessionsByID() []*Session {
	s.mu.Lock()
	out := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess)
	}
	s.mu.Unlock()
	// Redis lists clients in connection order.
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
