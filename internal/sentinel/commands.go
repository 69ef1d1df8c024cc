package sentinel

import (
	"strconv"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// commands are the commands of Redis Sentinel's that tandem's answers
// beside the connection commands (PING, HELLO, AUTH, CLIENT, QUIT...),
// which the resp layer answers as every tandem endpoint does.
func (s *Server) commands() resp.Commands {
	t := resp.Commands{
		"sentinel":     {Arity: -2, Run: s.cmdSentinel},
		"subscribe":    {Arity: -2, Run: s.cmdSubscribe},
		"psubscribe":   {Arity: -2, Run: s.cmdSubscribe},
		"unsubscribe":  {Arity: -1, Run: cmdUnsubscribe},
		"punsubscribe": {Arity: -1, Run: cmdUnsubscribe},
		"info":         {Arity: -1, Run: s.cmdInfo},
		"role":         {Arity: 1, Run: s.cmdRole},
	}
	t.Check()
	return t
}

// cmdSubscribe hands the connection to redcon's PubSub, which detaches it
// and from then on answers its (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING and QUIT.
func (s *Server) cmdSubscribe(c redcon.Conn, _ *resp.Session, args [][]byte) {
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
func cmdUnsubscribe(c redcon.Conn, _ *resp.Session, args [][]byte) {
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

func (s *Server) cmdRole(c redcon.Conn, _ *resp.Session, _ [][]byte) {
	st, _ := s.current()
	c.WriteArray(2)
	c.WriteBulkString("sentinel")
	c.WriteArray(1)
	c.WriteBulkString(st.name())
}

// cmdInfo is INFO [section ...]: server, clients and sentinel; "all",
// "everything" and "default" (and no section) are all three.
func (s *Server) cmdInfo(c redcon.Conn, _ *resp.Session, args [][]byte) {
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
		n := s.rs.Clients()
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

func eqFold(b []byte, s string) bool { return strings.EqualFold(string(b), s) }
