package sentinel

import (
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/redcon"
)

// session is one client connection's state.
type session struct {
	id   int64
	quit bool // set by QUIT: redcon still hands over the rest of the pipeline
	mu   sync.Mutex
	name string
}

// accept runs in redcon's accept loop for each new connection.
func (s *Server) accept(conn redcon.Conn) bool {
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.mu.Unlock()
	conn.SetContext(&session{id: id})
	s.handlers.Add(1)
	return true
}

// closeConn runs when redcon's goroutine for a connection ends: the
// connection closed, or was detached for pub/sub. redcon calls it holding
// its own lock, so it must not call back into redcon.
func (s *Server) closeConn(redcon.Conn, error) { s.handlers.Done() }

// command is one entry of the command table: arity as Redis counts it
// (the name included; negative means at least -arity).
type command struct {
	arity int
	run   func(s *Server, c redcon.Conn, sess *session, args [][]byte)
}

// commands are the commands of Redis Sentinel's that tandem's answers.
var commands = map[string]command{
	"ping":         {-1, cmdPing},
	"quit":         {-1, cmdQuit},
	"auth":         {-2, cmdAuth},
	"hello":        {-1, cmdHello},
	"client":       {-2, cmdClient},
	"sentinel":     {-2, cmdSentinel},
	"subscribe":    {-2, cmdSubscribe},
	"psubscribe":   {-2, cmdSubscribe},
	"unsubscribe":  {-1, cmdUnsubscribe},
	"punsubscribe": {-1, cmdUnsubscribe},
	"info":         {-1, cmdInfo},
	"role":         {1, cmdRole},
}

// handle is redcon's handler, called from the connection's goroutine for
// each command in order.
func (s *Server) handle(c redcon.Conn, cmd redcon.Command) {
	sess, _ := c.Context().(*session)
	if sess == nil || sess.quit || len(cmd.Args) == 0 {
		return
	}
	name := strings.ToLower(string(cmd.Args[0]))
	k, ok := commands[name]
	if !ok {
		c.WriteError(errUnknownCommand(cmd.Args))
		return
	}
	if (k.arity > 0 && len(cmd.Args) != k.arity) || (k.arity < 0 && len(cmd.Args) < -k.arity) {
		c.WriteError(errArity(name))
		return
	}
	k.run(s, c, sess, cmd.Args)
}

func cmdPing(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	switch len(args) {
	case 1:
		c.WriteString("PONG")
	case 2:
		c.WriteBulk(args[1])
	default:
		c.WriteError(errArity("ping"))
	}
}

func cmdQuit(_ *Server, c redcon.Conn, sess *session, _ [][]byte) {
	sess.quit = true
	c.WriteString("OK")
	c.Close()
}

func cmdAuth(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	if len(args) > 3 {
		c.WriteError(errSyntax)
		return
	}
	c.WriteError(errNoPassword)
}

// cmdHello is HELLO [protover [AUTH user pass] [SETNAME name]] for RESP2
// only: HELLO 3 is refused, so clients fall back to RESP2.
func cmdHello(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	next := 1
	if len(args) >= 2 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			c.WriteError(errProtoNotInteger)
			return
		}
		if v != 2 {
			c.WriteError(errNoProto)
			return
		}
		next = 2
	}
	var name []byte
	setName := false
	for j := next; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case eqFold(args[j], "auth") && more >= 2:
			c.WriteError(errNoPassword)
			return
		case eqFold(args[j], "setname") && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			c.WriteError("ERR Syntax error in HELLO option '" + string(args[j]) + "'")
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
	c.WriteArray(14)
	c.WriteBulkString("server")
	c.WriteBulkString("redis")
	c.WriteBulkString("version")
	c.WriteBulkString(s.cfg.Version)
	c.WriteBulkString("proto")
	c.WriteInt(2)
	c.WriteBulkString("id")
	c.WriteInt64(sess.id)
	c.WriteBulkString("mode")
	c.WriteBulkString("sentinel")
	c.WriteBulkString("role")
	c.WriteBulkString("master")
	c.WriteBulkString("modules")
	c.WriteArray(0)
}

func cmdClient(_ *Server, c redcon.Conn, sess *session, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	arity := func(n int) bool {
		if len(args) != n {
			c.WriteError(errArity("client|" + sub))
			return false
		}
		return true
	}
	switch sub {
	case "id":
		if arity(2) {
			c.WriteInt64(sess.id)
		}
	case "getname":
		if arity(2) {
			sess.mu.Lock()
			name := sess.name
			sess.mu.Unlock()
			if name == "" {
				c.WriteNull()
			} else {
				c.WriteBulkString(name)
			}
		}
	case "setname":
		if !arity(3) {
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
		if !arity(4) {
			return
		}
		attr := strings.ToLower(string(args[2]))
		if attr != "lib-name" && attr != "lib-ver" {
			c.WriteError("ERR Unrecognized option '" + string(args[2]) + "'")
			return
		}
		if !validClientName(args[3]) {
			c.WriteError("ERR " + attr + " cannot contain spaces, newlines or special characters.")
			return
		}
		c.WriteString("OK")
	default:
		c.WriteError(errUnknownSubcommand(args[1], "CLIENT"))
	}
}

// cmdSubscribe hands the connection to redcon's PubSub, which detaches it
// and from then on answers its (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING and QUIT.
func cmdSubscribe(s *Server, c redcon.Conn, _ *session, args [][]byte) {
	pattern := eqFold(args[0], "psubscribe")
	for _, ch := range args[1:] {
		if pattern {
			s.ps.Psubscribe(c, string(ch))
		} else {
			s.ps.Subscribe(c, string(ch))
		}
	}
}

// cmdUnsubscribe answers (P)UNSUBSCRIBE on a connection that subscribed to
// nothing (a subscribed one is redcon's): Redis's reply per channel, or one
// with a null channel when none is named.
func cmdUnsubscribe(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	kind := strings.ToLower(string(args[0]))
	if len(args) == 1 {
		c.WriteArray(3)
		c.WriteBulkString(kind)
		c.WriteNull()
		c.WriteInt(0)
		return
	}
	for _, ch := range args[1:] {
		c.WriteArray(3)
		c.WriteBulkString(kind)
		c.WriteBulk(ch)
		c.WriteInt(0)
	}
}

func cmdRole(s *Server, c redcon.Conn, _ *session, _ [][]byte) {
	st, _ := s.current()
	c.WriteArray(2)
	c.WriteBulkString("sentinel")
	c.WriteArray(1)
	c.WriteBulkString(st.name())
}

// cmdInfo is INFO [section ...]: server, clients and sentinel; "all",
// "everything" and "default" (and no section) are all three.
func cmdInfo(s *Server, c redcon.Conn, _ *session, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	st, last := s.current()
	var b strings.Builder
	section := func(name string) bool {
		if !all && !want[name] {
			return false
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		return true
	}
	if section("server") {
		b.WriteString("# Server\r\n")
		b.WriteString("redis_version:" + s.cfg.Version + "\r\n")
		b.WriteString("redis_mode:sentinel\r\n")
		b.WriteString("tandem_mode:orchestrator\r\n")
		if s.cfg.ID != "" {
			b.WriteString("run_id:" + s.cfg.ID + "\r\n")
		}
		_, port := splitAddr(s.Addr())
		b.WriteString("tcp_port:" + port + "\r\n")
	}
	if section("clients") {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		b.WriteString("# Clients\r\n")
		b.WriteString("connected_clients:" + strconv.Itoa(n) + "\r\n")
	}
	if section("sentinel") {
		status, addr := "ok", ""
		if last != nil {
			addr = last.Addr
		}
		if st.Leader == nil || st.Leader.Down {
			status = "odown"
		}
		b.WriteString("# Sentinel\r\n")
		b.WriteString("sentinel_masters:1\r\n")
		b.WriteString("sentinel_tilt:0\r\n")
		b.WriteString("sentinel_tilt_since_seconds:-1\r\n")
		b.WriteString("sentinel_running_scripts:0\r\n")
		b.WriteString("sentinel_scripts_queue_length:0\r\n")
		b.WriteString("sentinel_simulate_failure_flags:0\r\n")
		b.WriteString("master0:name=" + st.name() + ",status=" + status + ",address=" + addr +
			",slaves=" + strconv.Itoa(len(st.Replicas)) + ",sentinels=" + strconv.Itoa(len(st.Sentinels)+1) + "\r\n")
	}
	c.WriteBulkString(b.String())
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

func eqFold(b []byte, s string) bool { return strings.EqualFold(string(b), s) }
