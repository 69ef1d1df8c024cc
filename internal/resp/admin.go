package resp

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// serverCmd is a command the node answers itself, beside the commands
// table: introspection and replication control.
type serverCmd struct {
	name  string
	arity int // Redis convention, as commands.Spec.Arity
	fn    func(n *node, c redcon.Conn, sess *Session, args [][]byte)
}

func (sc *serverCmd) arityOK(n int) bool {
	return commands.ArityOK(sc.arity, n)
}

// serverCmds is filled once by init and only read afterwards.
var serverCmds map[string]*serverCmd

func init() {
	list := []*serverCmd{
		{"command", -1, cmdCommand},
		{"config", -2, cmdConfig},
		{"info", -1, cmdInfo},
		{"role", 1, cmdRole},
		{"wait", 3, cmdWait},
		{"replicaof", 3, cmdReplicaOf},
		{"slaveof", 3, cmdReplicaOf},
		{"time", 1, cmdTime},
		{"tandem.durability", -1, cmdDurability},
		{"tandem.readpolicy", -1, cmdReadPolicy},
		{"tandem.token", -1, cmdToken},
		{"tandem.user", -1, cmdUser},
		{"tandem.applied", -1, cmdApplied},
		{"multi", 1, cmdMulti},
		{"exec", 1, cmdExec},
		{"discard", 1, cmdDiscard},
		{"watch", -2, cmdWatch},
		{"unwatch", 1, cmdUnwatch},
		{"subscribe", -2, cmdSubscribe},
		{"psubscribe", -2, cmdSubscribe},
		{"unsubscribe", -1, cmdUnsubscribe},
		{"punsubscribe", -1, cmdUnsubscribe},
		{"publish", 3, cmdPublish},
		{"ssubscribe", -2, cmdSubscribe},
		{"sunsubscribe", -1, cmdUnsubscribe},
		{"spublish", 3, cmdPublish},
		{"pubsub", -2, cmdPubSub},
		{"slowlog", -2, cmdSlowlog},
	}
	serverCmds = make(map[string]*serverCmd, len(list))
	for _, sc := range list {
		if _, ok := connCmds[sc.name]; ok {
			panic("resp: server command " + sc.name + " is a connection command")
		}
		// serve looks data commands up first, and start only looks for a
		// server command when the name is no data command.
		if _, ok := commands.Lookup([]byte(sc.name)); ok {
			panic("resp: server command " + sc.name + " is a data command")
		}
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

func cmdTime(_ *node, c redcon.Conn, _ *Session, _ [][]byte) {
	now := time.Now()
	c.WriteArray(2)
	c.WriteBulkString(strconv.FormatInt(now.Unix(), 10))
	c.WriteBulkString(strconv.Itoa(now.Nanosecond() / 1000))
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
	if cc, ok := lookupConnCmd(name); ok {
		return commandEntry(cc.name, cc.arity, []string{"fast"}, 0, 0, 0)
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
	for name := range connCmds {
		names = append(names, name)
	}
	for name := range serverCmds {
		names = append(names, name)
	}
	return names
}

func cmdCommand(_ *node, c redcon.Conn, sess *Session, args [][]byte) {
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

func (n *node) configParams() []configParam {
	entries, value := commands.HashEncodingLimits()
	listSize, listDepth := commands.ListConfig()
	setInts, setEntries, setValue := commands.SetEncodingLimits()
	zEntries, zValue := commands.ZSetEncodingLimits()
	params := []configParam{
		{"zset-max-listpack-entries", strconv.FormatInt(zEntries, 10)},
		{"zset-max-listpack-value", strconv.FormatInt(zValue, 10)},
		{"zset-max-ziplist-entries", strconv.FormatInt(zEntries, 10)},
		{"zset-max-ziplist-value", strconv.FormatInt(zValue, 10)},
		{"list-max-listpack-size", strconv.FormatInt(listSize, 10)},
		{"list-max-ziplist-size", strconv.FormatInt(listSize, 10)},
		{"list-compress-depth", strconv.FormatInt(listDepth, 10)},
		{"set-max-intset-entries", strconv.FormatInt(setInts, 10)},
		{"set-max-listpack-entries", strconv.FormatInt(setEntries, 10)},
		{"set-max-listpack-value", strconv.FormatInt(setValue, 10)},
		{"hash-max-listpack-entries", strconv.FormatInt(entries, 10)},
		{"hash-max-listpack-value", strconv.FormatInt(value, 10)},
		{"hash-max-ziplist-entries", strconv.FormatInt(entries, 10)},
		{"hash-max-ziplist-value", strconv.FormatInt(value, 10)},
		{"notify-keyspace-events", commands.NotifyKeyspaceEvents()},
		{"save", ""},
		{"appendonly", "no"},
		{"databases", "1"},
		{"maxmemory", "0"},
		{"timeout", "0"},
		{"proto-max-bulk-len", strconv.FormatInt(n.srv.cfg.MaxBulkLen, 10)},
		{"client-query-buffer-limit", strconv.FormatInt(n.srv.cfg.MaxCommandLen, 10)},
		{"max-reply-bytes", strconv.FormatInt(commands.MaxReplyBytes(), 10)},
		{"slowlog-log-slower-than", strconv.FormatInt(n.srv.slow.slowerThan.Load(), 10)},
		{"slowlog-max-len", strconv.FormatInt(n.srv.slow.maxLen.Load(), 10)},
	}
	if sb, ok := n.b.(ScriptsBackend); ok {
		ms := strconv.FormatInt(sb.BusyAfter().Milliseconds(), 10)
		params = append(params, configParam{"busy-reply-threshold", ms}, configParam{"lua-time-limit", ms})
	}
	return params
}

// SettingsBackend is an optional Backend capability for the settings the
// cluster shares (notify-keyspace-events): the leader's are every node's.
type SettingsBackend interface {
	// SettingsChanged is called after CONFIG SET changed a shared
	// setting, so the node can pass it on to the others.
	SettingsChanged()
	// SettingsLeader reports whether this node's shared settings are the
	// cluster's (it leads). Elsewhere CONFIG SET refuses to change one: a
	// follower takes the leader's whenever they arrive, so a change made
	// there would last only until then.
	SettingsLeader() bool
}

// ScriptsBackend is an optional Backend capability: how long a script
// holds the leader's sequencer before writes are answered BUSY, the
// node's own setting (CONFIG GET/SET busy-reply-threshold and its former
// name lua-time-limit, in milliseconds, as Redis's).
type ScriptsBackend interface {
	BusyAfter() time.Duration
	SetBusyAfter(time.Duration)
}

func cmdConfig(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	switch sub := strings.ToLower(string(args[1])); sub {
	case "get":
		if len(args) < 3 {
			c.WriteError(errArity("config|get"))
			return
		}
		out := commands.Map{}
		for _, p := range n.configParams() {
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
		// The encoding thresholds of hashes, sets, sorted sets and lists,
		// max-reply-bytes, notify-keyspace-events and the node's
		// busy-reply-threshold are the only settable parameters: the thresholds change what OBJECT
		// ENCODING reports (commands.SetHashEncodingLimits,
		// SetSetEncodingLimits, SetZSetEncodingLimits) or are
		// kept for CONFIG GET (commands.SetListConfig). All are checked
		// before any is set, as Redis does. `save ""` is accepted: no RDB
		// snapshots is what tandem does anyway (Redis's tests set it).
		entries, value := commands.HashEncodingLimits()
		setInts, setEntries, setValue := commands.SetEncodingLimits()
		zEntries, zValue := commands.ZSetEncodingLimits()
		listSize, listDepth := commands.ListConfig()
		maxReply := commands.MaxReplyBytes()
		notify := commands.NotifyKeyspaceEvents()
		scripts, hasScripts := n.b.(ScriptsBackend)
		busyMs := int64(-1) // unchanged
		slowerThan, slowMax := n.srv.slow.slowerThan.Load(), n.srv.slow.maxLen.Load()
		for i := 2; i < len(args); i += 2 {
			name := strings.ToLower(string(args[i]))
			if name == "save" && len(args[i+1]) == 0 {
				continue
			}
			if name == "notify-keyspace-events" {
				v, ok := commands.CanonicalNotifyKeyspaceEvents(string(args[i+1]))
				if !ok {
					c.WriteError(errConfigSetNotify)
					return
				}
				// The cluster's: a change is the leader's to make. The
				// value it has already is accepted anywhere (clients that
				// set it on every connection).
				if sb, isSB := n.b.(SettingsBackend); isSB && v != commands.NotifyKeyspaceEvents() && !sb.SettingsLeader() {
					c.WriteError(errConfigSetShared(name))
					return
				}
				notify = v
				continue
			}
			v, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			var dst *int64
			lo, hi := int64(0), int64(math.MaxInt64)
			switch name {
			case "hash-max-listpack-entries", "hash-max-ziplist-entries":
				dst = &entries
			case "hash-max-listpack-value", "hash-max-ziplist-value":
				dst = &value
			case "zset-max-listpack-entries", "zset-max-ziplist-entries":
				dst = &zEntries
			case "zset-max-listpack-value", "zset-max-ziplist-value":
				dst = &zValue
			case "set-max-intset-entries":
				dst = &setInts
			case "set-max-listpack-entries":
				dst = &setEntries
			case "set-max-listpack-value":
				dst = &setValue
			case "list-max-listpack-size", "list-max-ziplist-size":
				// Redis's range for it is an int's, negatives included.
				dst, lo, hi = &listSize, math.MinInt32, math.MaxInt32
			case "list-compress-depth":
				dst, hi = &listDepth, math.MaxInt32
			case "max-reply-bytes":
				// tandem's own: the largest reply a command may build
				// (commands.SetMaxReplyBytes).
				dst, lo = &maxReply, 1
			case "slowlog-log-slower-than":
				dst, lo = &slowerThan, math.MinInt64
			case "slowlog-max-len":
				dst = &slowMax
			case "busy-reply-threshold", "lua-time-limit":
				if !hasScripts {
					c.WriteError(errConfigSet(args[i]))
					return
				}
				dst, hi = &busyMs, math.MaxInt64/int64(time.Millisecond)
			default:
				c.WriteError(errConfigSet(args[i]))
				return
			}
			if err != nil || v < lo || v > hi {
				c.WriteError(errConfigSetInteger(name))
				return
			}
			*dst = v
		}
		commands.SetHashEncodingLimits(entries, value)
		commands.SetListConfig(listSize, listDepth)
		commands.SetSetEncodingLimits(setInts, setEntries, setValue)
		commands.SetZSetEncodingLimits(zEntries, zValue)
		commands.SetMaxReplyBytes(maxReply)
		commands.SetNotifyKeyspaceEvents(notify)
		if busyMs >= 0 {
			scripts.SetBusyAfter(time.Duration(busyMs) * time.Millisecond)
		}
		n.srv.slow.slowerThan.Store(slowerThan)
		n.srv.slow.setMaxLen(slowMax)
		if sb, ok := n.b.(SettingsBackend); ok {
			sb.SettingsChanged() // the cluster's: the node passes them on
		}
		c.WriteString("OK")
	case "resetstat":
		n.srv.stats.reset()
		c.WriteString("OK")
	case "rewrite":
		c.WriteError(errNoConfigFile)
	default:
		c.WriteError(errUnknownSubcommand(args[1], "CONFIG"))
	}
}

// infoSections are INFO's sections in Redis's order, and which of them
// INFO (or INFO default) and INFO all give; everything is all.
var infoSections = []struct {
	name             string
	byDefault, inAll bool
}{
	{"server", true, true}, {"clients", true, true}, {"memory", true, true},
	{"persistence", true, true}, {"stats", true, true}, {"replication", true, true},
	{"cpu", true, true}, {"commandstats", false, true}, {"errorstats", true, true},
	{"cluster", true, true}, {"keyspace", true, true},
}

// cmdInfo is INFO [section ...]: the sections named (each once, in
// Redis's order; "default", "all" and "everything" name their sets). The
// Backend writes its own sections; this layer the CPU and the command and
// error counts (stats.go).
func cmdInfo(n *node, c redcon.Conn, _ *Session, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := want["all"] || want["everything"]
	def := len(args) == 1 || want["default"]
	var sb strings.Builder
	for _, sec := range infoSections {
		if !want[sec.name] && !(all && sec.inAll) && !(def && sec.byDefault) {
			continue
		}
		switch sec.name {
		case "cpu":
			writeCPU(&sb)
		case "commandstats":
			n.srv.stats.writeCommandStats(&sb)
		case "errorstats":
			n.srv.stats.writeErrorStats(&sb)
		case "stats":
			// The backend's section with this layer's counts at its end.
			text := n.b.Info([]string{sec.name})
			if body, ok := strings.CutSuffix(text, "\r\n\r\n"); ok {
				text = body + "\r\n" + n.srv.stats.statsLines(n.srv.nextID.Load()) + "\r\n"
			} else {
				text = "# Stats\r\n" + n.srv.stats.statsLines(n.srv.nextID.Load()) + "\r\n"
			}
			sb.WriteString(text)
		default:
			sb.WriteString(n.b.Info([]string{sec.name}))
		}
	}
	c.WriteBulkString(sb.String())
}

func cmdRole(n *node, c redcon.Conn, sess *Session, _ [][]byte) {
	writeReply(c, n.b.Role(), sess.proto3())
}

// cmdWait is WAIT numreplicas timeout: it waits for the connection's own
// last write, so a connection that never wrote gets the number of
// followers at once (the Backend's answer for LSN 0).
func cmdWait(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	want, err := strconv.ParseInt(string(args[1]), 10, 64)
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
	want = min(max(want, 0), math.MaxInt32)
	timeout := time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	// WAIT 0 blocks until enough replicas catch up, maybe forever; a
	// client that leaves ends it (see watch.go).
	ctx := sess.enter()
	count := n.b.Wait(ctx, nodeState(sess).lastWriteLSN, int(want), timeout)
	sess.leave()
	c.WriteInt(count)
}

func cmdReplicaOf(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if eqFold(args[1], "no") && eqFold(args[2], "one") {
		ctx := sess.enter()
		err := n.b.ReplicaOfNoOne(ctx)
		sess.leave()
		if err != nil {
			c.WriteError(n.srv.adminErrorText(err, sess, "replicaof"))
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
	err = n.b.ReplicaOf(ctx, string(args[1]), strconv.FormatInt(port, 10))
	sess.leave()
	if err != nil {
		c.WriteError(n.srv.adminErrorText(err, sess, "replicaof"))
		return
	}
	c.WriteString("OK")
}
