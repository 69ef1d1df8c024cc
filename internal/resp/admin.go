package resp

import (
	"bytes"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// serverCmd is a command the resp package answers itself: connection
// state, introspection and replication control.
type serverCmd struct {
	name  string
	arity int // Redis convention, as commands.Spec.Arity
	fn    func(s *Server, c redcon.Conn, sess *Session, args [][]byte)
}

func (sc *serverCmd) arityOK(n int) bool {
	return (sc.arity > 0 && n == sc.arity) || (sc.arity < 0 && n >= -sc.arity)
}

// serverCmds is filled once by init and only read afterwards.
var serverCmds map[string]*serverCmd

func init() {
	list := []*serverCmd{
		{"ping", -1, cmdPing},
		{"echo", 2, cmdEcho},
		{"hello", -1, cmdHello},
		{"auth", -2, cmdAuth},
		{"select", 2, cmdSelect},
		{"client", -2, cmdClient},
		{"quit", -1, cmdQuit},
		{"reset", 1, cmdReset},
		{"command", -1, cmdCommand},
		{"config", -2, cmdConfig},
		{"info", -1, cmdInfo},
		{"role", 1, cmdRole},
		{"wait", 3, cmdWait},
		{"replicaof", 3, cmdReplicaOf},
		{"slaveof", 3, cmdReplicaOf},
		{"time", 1, cmdTime},
		{"tandem.durability", -1, cmdDurability},
	}
	serverCmds = make(map[string]*serverCmd, len(list))
	for _, sc := range list {
		serverCmds[sc.name] = sc
	}
}

func lookupServerCmd(name []byte) (*serverCmd, bool) {
	var buf [24]byte
	if len(name) > len(buf) {
		return nil, false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	sc, ok := serverCmds[string(buf[:len(name)])]
	return sc, ok
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

func cmdReset(_ *Server, c redcon.Conn, sess *Session, _ [][]byte) {
	sess.proto.Store(2)
	sess.durability = durabilityFloor{}
	sess.mu.Lock()
	sess.name = ""
	sess.mu.Unlock()
	c.WriteString("RESET")
}

func cmdTime(_ *Server, c redcon.Conn, _ *Session, _ [][]byte) {
	now := time.Now()
	c.WriteArray(2)
	c.WriteBulkString(strconv.FormatInt(now.Unix(), 10))
	c.WriteBulkString(strconv.Itoa(now.Nanosecond() / 1000))
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
		if v < 2 || v > 3 {
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
	if r, ok := s.b.Role().(commands.Array); ok && len(r) > 0 {
		if b, ok := r[0].(commands.Bulk); ok && string(b) != "master" {
			role = "replica"
		}
	}
	writeReply(c, commands.Map{
		commands.Bulk("server"), commands.Bulk("redis"),
		commands.Bulk("version"), commands.Bulk(s.cfg.Version),
		commands.Bulk("proto"), commands.Int(sess.Proto()),
		commands.Bulk("id"), commands.Int(sess.id),
		commands.Bulk("mode"), commands.Bulk("standalone"),
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
			commands.SimpleString("ID, GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, INFO, LIST, NO-EVICT, NO-TOUCH, HELP"),
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

// commandEntry is one COMMAND INFO entry in Redis 7's ten-field layout:
// name, arity, flags, first key, last key, step, ACL categories, tips,
// key specs, subcommands. go-redis reads the "readonly" flag from it.
func commandEntry(name string, arity int, flags []string, first, last, step int) commands.Reply {
	fl := make(commands.Array, len(flags))
	for i, f := range flags {
		fl[i] = commands.SimpleString(f)
	}
	return commands.Array{
		commands.Bulk(name), commands.Int(arity), fl,
		commands.Int(first), commands.Int(last), commands.Int(step),
		commands.Array{}, commands.Array{}, commands.Array{}, commands.Array{},
	}
}

func specEntry(sp *commands.Spec) commands.Reply {
	var flags []string
	if sp.Flags&commands.FlagWrite != 0 {
		flags = []string{"write"}
	} else {
		flags = []string{"readonly"}
	}
	return commandEntry(sp.Name, sp.Arity, flags, sp.FirstKey, sp.LastKey, sp.KeyStep)
}

// commandInfo returns the entry for a command name, or nil.
func commandInfo(name []byte) commands.Reply {
	if sp, ok := commands.Lookup(name); ok {
		return specEntry(sp)
	}
	if sc, ok := lookupServerCmd(name); ok {
		return commandEntry(sc.name, sc.arity, []string{"fast"}, 0, 0, 0)
	}
	return nil
}

func allCommandNames() []string {
	var names []string
	for _, sp := range commands.All() {
		names = append(names, sp.Name)
	}
	for name := range serverCmds {
		names = append(names, name)
	}
	return names
}

func cmdCommand(_ *Server, c redcon.Conn, sess *Session, args [][]byte) {
	p3 := sess.proto3()
	if len(args) == 1 {
		var out commands.Array
		for _, name := range allCommandNames() {
			out = append(out, commandInfo([]byte(name)))
		}
		writeReply(c, out, p3)
		return
	}
	switch sub := strings.ToLower(string(args[1])); sub {
	case "count":
		c.WriteInt(len(allCommandNames()))
	case "list":
		out := commands.Array{}
		for _, name := range allCommandNames() {
			out = append(out, commands.Bulk(name))
		}
		writeReply(c, out, p3)
	case "info":
		out := commands.Array{}
		if len(args) == 2 {
			for _, name := range allCommandNames() {
				out = append(out, commandInfo([]byte(name)))
			}
		}
		for _, name := range args[2:] {
			if e := commandInfo(name); e != nil {
				out = append(out, e)
			} else {
				out = append(out, commands.Array(nil))
			}
		}
		writeReply(c, out, p3)
	case "docs":
		// No documentation: an empty map lets redis-cli fall back to its
		// built-in help.
		writeReply(c, commands.Map{}, p3)
	default:
		c.WriteError(errUnknownSubcommand(args[1], "COMMAND"))
	}
}

// configParam is a read-only configuration value CONFIG GET reports, for
// tools that ask (redis-benchmark reads save and appendonly).
type configParam struct{ name, value string }

func (s *Server) configParams() []configParam {
	entries, value := commands.HashEncodingLimits()
	return []configParam{
		{"hash-max-listpack-entries", strconv.FormatInt(entries, 10)},
		{"hash-max-listpack-value", strconv.FormatInt(value, 10)},
		{"hash-max-ziplist-entries", strconv.FormatInt(entries, 10)},
		{"hash-max-ziplist-value", strconv.FormatInt(value, 10)},
		{"save", ""},
		{"appendonly", "no"},
		{"databases", "1"},
		{"maxmemory", "0"},
		{"timeout", "0"},
		{"proto-max-bulk-len", strconv.FormatInt(s.cfg.MaxBulkLen, 10)},
		{"client-query-buffer-limit", strconv.FormatInt(s.cfg.MaxCommandLen, 10)},
	}
}

func cmdConfig(s *Server, c redcon.Conn, sess *Session, args [][]byte) {
	switch sub := strings.ToLower(string(args[1])); sub {
	case "get":
		if len(args) < 3 {
			c.WriteError(errArity("config|get"))
			return
		}
		out := commands.Map{}
		for _, p := range s.configParams() {
			for _, pat := range args[2:] {
				if commands.Match(bytes.ToLower(pat), []byte(p.name)) {
					out = append(out, commands.Bulk(p.name), commands.Bulk(p.value))
					break
				}
			}
		}
		writeReply(c, out, sess.proto3())
	case "set":
		if len(args) < 4 || len(args)%2 != 0 {
			c.WriteError(errArity("config|set"))
			return
		}
		// The hash encoding thresholds are the only settable parameters:
		// they change what OBJECT ENCODING reports (commands.SetHashEncodingLimits).
		entries, value := commands.HashEncodingLimits()
		for i := 2; i < len(args); i += 2 {
			n, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			switch name := strings.ToLower(string(args[i])); {
			case name != "hash-max-listpack-entries" && name != "hash-max-ziplist-entries" &&
				name != "hash-max-listpack-value" && name != "hash-max-ziplist-value":
				c.WriteError(errConfigSet(args[i]))
				return
			case err != nil || n < 0:
				c.WriteError("ERR CONFIG SET failed (possibly related to argument '" + name + "') - argument couldn't be parsed into an integer")
				return
			case strings.HasSuffix(name, "entries"):
				entries = n
			default:
				value = n
			}
		}
		commands.SetHashEncodingLimits(entries, value)
		c.WriteString("OK")
	case "resetstat":
		c.WriteString("OK")
	case "rewrite":
		c.WriteError(errNoConfigFile)
	default:
		c.WriteError(errUnknownSubcommand(args[1], "CONFIG"))
	}
}

func cmdInfo(s *Server, c redcon.Conn, _ *Session, args [][]byte) {
	sections := make([]string, 0, len(args)-1)
	for _, a := range args[1:] {
		sections = append(sections, strings.ToLower(string(a)))
	}
	c.WriteBulkString(s.b.Info(sections))
}

func cmdRole(s *Server, c redcon.Conn, sess *Session, _ [][]byte) {
	writeReply(c, s.b.Role(), sess.proto3())
}

// cmdWait is WAIT numreplicas timeout: it waits for the connection's own
// last write, so a connection that never wrote gets the number of
// followers at once (the Backend's answer for LSN 0).
func cmdWait(s *Server, c redcon.Conn, sess *Session, args [][]byte) {
	n, err := strconv.ParseInt(string(args[1]), 10, 64)
	if err != nil {
		c.WriteError(errNotInteger)
		return
	}
	ms, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		c.WriteError(errTimeoutNotInteger)
		return
	}
	if ms < 0 {
		c.WriteError(errTimeoutNegative)
		return
	}
	n = min(max(n, 0), math.MaxInt32)
	timeout := time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	// WAIT 0 blocks until enough replicas catch up, maybe forever; a
	// client that leaves ends it (see watch.go).
	ctx := sess.enter()
	count := s.b.Wait(ctx, sess.lastWriteLSN, int(n), timeout)
	sess.leave()
	c.WriteInt(count)
}

func cmdReplicaOf(s *Server, c redcon.Conn, sess *Session, args [][]byte) {
	if eqFold(args[1], "no") && eqFold(args[2], "one") {
		ctx := sess.enter()
		err := s.b.ReplicaOfNoOne(ctx)
		sess.leave()
		if err != nil {
			c.WriteError(s.adminErrorText(err, sess, "replicaof"))
			return
		}
		c.WriteString("OK")
		return
	}
	port, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil || port < 0 || port > 65535 {
		c.WriteError(errBadMasterPort)
		return
	}
	ctx := sess.enter()
	err = s.b.ReplicaOf(ctx, string(args[1]), strconv.FormatInt(port, 10))
	sess.leave()
	if err != nil {
		c.WriteError(s.adminErrorText(err, sess, "replicaof"))
		return
	}
	c.WriteString("OK")
}
