package sentinel

import (
	"github.com/tandemdb/tandem/internal/commands"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// Values Redis Sentinel reports that tandem has no counterpart for: its
// defaults, so that tools that parse them as integers keep working.
const (
	failoverTimeoutMs = 180000
	parallelSyncs     = 1
	replicaPriority   = 100
)

// sentinelArity is each SENTINEL subcommand's arity, the "sentinel" and
// the subcommand included (negative: at least).
var sentinelArity = map[string]int{
	"get-master-addr-by-name": 3,
	"master":                  3,
	"masters":                 2,
	"replicas":                3,
	"slaves":                  3,
	"sentinels":               3,
	"myid":                    2,
	"ckquorum":                3,
	"failover":                3,
	"reset":                   3,
	"set":                     -3,
	"monitor":                 6,
	"remove":                  3,
	"flushconfig":             2,
	"is-master-down-by-addr":  6,
	"config":                  -3,
	"simulate-failure":        -3,
	"debug":                   -2,
	"info-cache":              -3,
	"pending-scripts":         2,
	"help":                    2,
}

// sentinelHelp is SENTINEL HELP's text: the subcommands tandem answers.
var sentinelHelp = []string{
	"SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"GET-MASTER-ADDR-BY-NAME <master-name>",
	"    Return the ip and port number of the master with that name.",
	"MASTER <master-name>",
	"    Show the state and info of the specified master.",
	"MASTERS",
	"    Show a list of monitored masters and their state.",
	"MYID",
	"    Return the ID of the Sentinel instance.",
	"REPLICAS <master-name>",
	"    Show a list of replicas for this master and their state.",
	"SENTINELS <master-name>",
	"    Show a list of Sentinel instances for this master and their state.",
	"(tandem: the orchestrator changes the topology; use tandem switchover)",
	"HELP",
	"    Print this help.",
}

func (s *Server) cmdSentinel(c redcon.Conn, _ *resp.Session, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	arity, ok := sentinelArity[sub]
	if !ok {
		c.WriteError(resp.UnknownSubcommandError(args[1], "SENTINEL"))
		return
	}
	if !commands.ArityOK(arity, len(args)) {
		c.WriteError(resp.ArityError("sentinel|" + sub))
		return
	}
	st, last := s.current()
	known := len(args) > 2 && string(args[2]) == st.name()
	switch sub {
	case "get-master-addr-by-name":
		if !known || last == nil {
			c.WriteRaw([]byte("*-1\r\n")) // Redis's RESP2 null array
			return
		}
		ip, port := splitAddr(last.Addr)
		c.WriteArray(2)
		c.WriteBulkString(ip)
		c.WriteBulkString(port)
	case "masters":
		c.WriteArray(1)
		writeFields(c, s.masterFields(st, last))
	case "master":
		if !known {
			c.WriteError(errNoSuchMaster)
			return
		}
		writeFields(c, s.masterFields(st, last))
	case "replicas", "slaves":
		if !known {
			c.WriteError(errNoSuchMaster)
			return
		}
		c.WriteArray(len(st.Replicas))
		for _, r := range st.Replicas {
			writeFields(c, s.replicaFields(st, last, r))
		}
	case "sentinels":
		if !known {
			c.WriteError(errNoSuchMaster)
			return
		}
		c.WriteArray(len(st.Sentinels))
		for _, p := range st.Sentinels {
			writeFields(c, s.sentinelFields(p))
		}
	case "myid":
		c.WriteBulkString(s.cfg.ID)
	case "help":
		c.WriteArray(len(sentinelHelp))
		for _, line := range sentinelHelp {
			c.WriteString(line)
		}
	case "ckquorum", "failover", "reset", "remove", "set":
		if sub != "reset" && !known {
			c.WriteError(errNoSuchMaster)
			return
		}
		c.WriteError(errManaged(sub))
	default:
		c.WriteError(errManaged(sub))
	}
}

// writeFields writes a flat field/value list, Redis's RESP2 form of a map.
func writeFields(c redcon.Conn, kv []string) {
	c.WriteArray(len(kv))
	for _, v := range kv {
		c.WriteBulkString(v)
	}
}

// downAfterMs is down-after-milliseconds.
func (s *Server) downAfterMs() string {
	return strconv.FormatInt(s.cfg.DownAfter.Milliseconds(), 10)
}

// masterFields is SENTINEL master's reply, in Redis's order. last is the
// leader to report: State's, else the last one seen (nil if none ever).
func (s *Server) masterFields(st State, last *Node) []string {
	leader := Node{}
	if last != nil {
		leader = *last
	}
	down := st.Leader == nil || st.Leader.Down
	flags := "master"
	if down {
		flags = "s_down,o_down,master"
	}
	if st.Leader == nil {
		flags += ",failover_in_progress"
	}
	ip, port := splitAddr(leader.Addr)
	if last == nil {
		ip, port = "", "0"
	}
	heard := strconv.FormatInt(leader.LastHeardMs, 10)
	kv := []string{
		"name", st.name(),
		"ip", ip,
		"port", port,
		"runid", leader.ID,
		"flags", flags,
		"link-pending-commands", "0",
		"link-refcount", "1",
	}
	if st.Leader == nil {
		// The orchestrator is choosing the node to promote.
		kv = append(kv, "failover-state", "select_slave")
	}
	kv = append(kv,
		"last-ping-sent", "0",
		"last-ok-ping-reply", heard,
		"last-ping-reply", heard,
	)
	if down {
		kv = append(kv, "s-down-time", heard, "o-down-time", heard)
	}
	kv = append(kv,
		"down-after-milliseconds", s.downAfterMs(),
		"info-refresh", heard,
		"role-reported", "master",
		"role-reported-time", "0",
		"config-epoch", strconv.FormatUint(st.Epoch, 10),
		"num-slaves", strconv.Itoa(len(st.Replicas)),
		"num-other-sentinels", strconv.Itoa(len(st.Sentinels)),
		"quorum", strconv.Itoa(quorum(st)),
		"failover-timeout", strconv.Itoa(failoverTimeoutMs),
		"parallel-syncs", strconv.Itoa(parallelSyncs),
	)
	return kv
}

// replicaFields is one replica's entry of SENTINEL replicas, in Redis's
// order.
func (s *Server) replicaFields(st State, last *Node, r Node) []string {
	ip, port := splitAddr(r.Addr)
	mip, mport := "?", "0" // Redis's values for a master it does not know
	if last != nil {
		mip, mport = splitAddr(last.Addr)
	}
	flags, link, linkDown := "slave", "ok", "0"
	heard := strconv.FormatInt(r.LastHeardMs, 10)
	if r.Down {
		flags, link, linkDown = "s_down,slave", "err", heard
	}
	offset := uint64(0)
	if r.LagLSN <= st.LeaderLSN {
		offset = st.LeaderLSN - r.LagLSN
	}
	kv := []string{
		"name", r.Addr,
		"ip", ip,
		"port", port,
		"runid", r.ID,
		"flags", flags,
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", heard,
		"last-ping-reply", heard,
	}
	if r.Down {
		kv = append(kv, "s-down-time", heard)
	}
	return append(kv,
		"down-after-milliseconds", s.downAfterMs(),
		"info-refresh", heard,
		"role-reported", "slave",
		"role-reported-time", "0",
		"master-link-down-time", linkDown,
		"master-link-status", link,
		"master-host", mip,
		"master-port", mport,
		"slave-priority", strconv.Itoa(replicaPriority),
		"slave-repl-offset", strconv.FormatUint(offset, 10),
		"replica-announced", "1",
	)
}

// sentinelFields is one peer's entry of SENTINEL sentinels, in Redis's
// order.
func (s *Server) sentinelFields(p Peer) []string {
	ip, port := splitAddr(p.Addr)
	return []string{
		"name", p.ID,
		"ip", ip,
		"port", port,
		"runid", p.ID,
		"flags", "sentinel",
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", "0",
		"last-ping-reply", "0",
		"down-after-milliseconds", s.downAfterMs(),
		"last-hello-message", "0",
		"voted-leader", "?",
		"voted-leader-epoch", "0",
	}
}
