package resp

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// Command and error statistics, as Redis 7 keeps them: INFO commandstats
// (per command: calls, usec, rejected_calls, failed_calls), INFO
// errorstats (per error code), total_commands_processed and
// total_error_replies in INFO stats; CONFIG RESETSTAT zeroes them.
//
// What counts:
//   - A call is a command the endpoint knows, served or started, counted
//     once; a container command (CONFIG, CLIENT, SCRIPT, ...) counts as
//     "name|sub" for the subcommands Redis names, and an unknown
//     subcommand or command counts nowhere but in the error counts, as in
//     Redis. A command queued in MULTI is counted when it is queued, not
//     when EXEC runs it, and an error in EXEC's reply is EXEC's failure
//     (Redis counts it as the queued command's).
//   - rejected_calls: answered an error before running (wrong number of
//     arguments); failed_calls: ran and answered an error (a write's error
//     found at commit is the write's).
//   - An error reply (also one inside an array: EXEC's, a script's) counts
//     once in total_error_replies and once under its code, the first word
//     of its text when a space follows it within 32 bytes, else ERR
//     (Redis's rule); at most maxErrorCodes codes are tracked.
//   - usec is the time the connection's goroutine spent on the call: for
//     a write handed to the write path (answered by the goroutine that
//     commits it) or started in a pipeline, its sequencing, not its
//     commit; for one the connection waits for, until it is answered.
//
// The table of commands is made once (NewServer) and only read after, so
// counting costs a map lookup and a few atomic adds per command.
type stats struct {
	cmds map[string]*cmdStat // read-only after setup

	commands atomic.Int64 // total_commands_processed
	errors   atomic.Int64 // total_error_replies

	mu    sync.Mutex
	codes map[string]*atomic.Int64
}

// cmdStat is one command's counters.
type cmdStat struct {
	arity            int  // the command's, to tell a rejection
	container        bool // counted by subcommand, never itself
	calls, usec      atomic.Int64
	rejected, failed atomic.Int64
}

// maxErrorCodes bounds errorstats, as Redis's 128: a client that makes up
// error codes (a script's redis.error_reply) cannot grow it for ever.
const maxErrorCodes = 128

// containerSubs are the subcommands Redis counts apart, for the container
// commands tandem serves.
var containerSubs = map[string][]string{
	"config":   {"get", "set", "resetstat", "rewrite", "help"},
	"client":   {"caching", "getname", "getredir", "id", "info", "kill", "list", "no-evict", "pause", "reply", "setname", "tracking", "trackinginfo", "unblock", "unpause", "help", "no-touch", "setinfo"},
	"script":   {"debug", "exists", "flush", "kill", "load", "help"},
	"function": {"delete", "dump", "flush", "kill", "list", "load", "restore", "stats", "help"},
	"command":  {"count", "docs", "getkeys", "getkeysandflags", "info", "list", "help"},
	"object":   {"encoding", "freq", "idletime", "refcount", "help"},
	"pubsub":   {"channels", "numpat", "numsub", "shardchannels", "shardnumsub", "help"},
	"memory":   {"doctor", "malloc-stats", "purge", "stats", "usage", "help"},
	"cluster":  {"info", "nodes", "slots", "shards", "myid", "help"},
	"slowlog":  {"get", "len", "reset", "help"},
}

// newStats makes the counters for the named commands, each with its
// arity (commands.Spec's convention).
func newStats(arity map[string]int) *stats {
	st := &stats{cmds: make(map[string]*cmdStat, len(arity)), codes: map[string]*atomic.Int64{}}
	for name, a := range arity {
		subs, container := containerSubs[name]
		st.cmds[name] = &cmdStat{arity: a, container: container}
		for _, sub := range subs {
			full := name + "|" + sub
			st.cmds[full] = &cmdStat{arity: a}
		}
	}
	return st
}

// lookup returns the counters of the command args names, or nil.
func (st *stats) lookup(args [][]byte) *cmdStat {
	if st == nil || len(st.cmds) == 0 || len(args) == 0 {
		return nil
	}
	var buf [48]byte
	name, ok := lowerInto(buf[:0], args[0])
	if !ok {
		return nil
	}
	cs := st.cmds[string(name)]
	if cs == nil || !cs.container {
		return cs
	}
	if len(args) < 2 {
		return nil
	}
	full, ok := lowerInto(append(name, '|'), args[1])
	if !ok {
		return nil
	}
	return st.cmds[string(full)]
}

// lowerInto appends b in lower case to dst, false if it would not fit
// dst's capacity (no command name is that long).
func lowerInto(dst, b []byte) ([]byte, bool) {
	if len(dst)+len(b) > cap(dst) {
		return nil, false
	}
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// byName returns the counters of the command of that (lower-case) name,
// or nil.
func (st *stats) byName(name string) *cmdStat {
	if st == nil {
		return nil
	}
	return st.cmds[name]
}

// called counts one call of cs that took d.
func (st *stats) called(cs *cmdStat, d time.Duration) {
	if cs != nil {
		st.commands.Add(1)
		cs.calls.Add(1)
		cs.usec.Add(d.Microseconds())
	}
}

// served counts a command served to completion on the connection's
// goroutine: a call that took d, or, when it answered an error, a
// rejection if its arguments are of the wrong number (Redis counts a
// rejected command as no call) and else a failed call.
func (st *stats) served(cs *cmdStat, d time.Duration, erred bool, nargs int) {
	if cs == nil {
		return
	}
	if erred && !commands.ArityOK(cs.arity, nargs) {
		cs.rejected.Add(1)
		return
	}
	st.called(cs, d)
	if erred {
		cs.failed.Add(1)
	}
}

// fail counts a failure of cs found after its call was counted (a
// write's error at commit).
func (cs *cmdStat) fail() {
	if cs != nil {
		cs.failed.Add(1)
	}
}

// errorReply counts one error reply with text msg (no leading '-').
func (st *stats) errorReply(msg string) {
	if st == nil {
		return
	}
	st.errors.Add(1)
	code := "ERR"
	if i := strings.IndexByte(msg[:min(len(msg), 32)], ' '); i > 0 {
		code = msg[:i]
	}
	st.mu.Lock()
	c := st.codes[code]
	if c == nil && len(st.codes) < maxErrorCodes {
		c = new(atomic.Int64)
		st.codes[strings.Clone(code)] = c
	}
	st.mu.Unlock()
	if c != nil {
		c.Add(1)
	}
}

// reset is CONFIG RESETSTAT's.
func (st *stats) reset() {
	if st == nil {
		return
	}
	for _, cs := range st.cmds {
		cs.calls.Store(0)
		cs.usec.Store(0)
		cs.rejected.Store(0)
		cs.failed.Store(0)
	}
	st.commands.Store(0)
	st.errors.Store(0)
	st.mu.Lock()
	clear(st.codes)
	st.mu.Unlock()
}

// writeCommandStats writes INFO's "# Commandstats" section: the commands
// called or rejected since the last reset, by name.
func (st *stats) writeCommandStats(sb *strings.Builder) {
	sb.WriteString("# Commandstats\r\n")
	if st != nil {
		names := make([]string, 0, len(st.cmds))
		for name, cs := range st.cmds {
			if cs.calls.Load() != 0 || cs.rejected.Load() != 0 || cs.failed.Load() != 0 {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			cs := st.cmds[name]
			calls, usec := cs.calls.Load(), cs.usec.Load()
			perCall := 0.0
			if calls > 0 {
				perCall = float64(usec) / float64(calls)
			}
			fmt.Fprintf(sb, "cmdstat_%s:calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d\r\n",
				name, calls, usec, perCall, cs.rejected.Load(), cs.failed.Load())
		}
	}
	sb.WriteString("\r\n")
}

// writeErrorStats writes INFO's "# Errorstats" section.
func (st *stats) writeErrorStats(sb *strings.Builder) {
	sb.WriteString("# Errorstats\r\n")
	if st != nil {
		st.mu.Lock()
		codes := make([]string, 0, len(st.codes))
		for code := range st.codes {
			codes = append(codes, code)
		}
		slices.Sort(codes)
		for _, code := range codes {
			fmt.Fprintf(sb, "errorstat_%s:count=%d\r\n", code, st.codes[code].Load())
		}
		st.mu.Unlock()
	}
	sb.WriteString("\r\n")
}

// statsLines are the lines this layer adds to INFO's "# Stats" section;
// connections is the number of connections accepted since start.
func (st *stats) statsLines(connections uint64) string {
	if st == nil {
		return ""
	}
	return fmt.Sprintf("total_connections_received:%d\r\ntotal_commands_processed:%d\r\ntotal_error_replies:%d\r\n",
		connections, st.commands.Load(), st.errors.Load())
}

// writeCPU writes INFO's "# CPU" section: the process's and its waited-for
// children's CPU time, in seconds, as Redis reports it.
func writeCPU(sb *strings.Builder) {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	sec := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	fmt.Fprintf(sb, "# CPU\r\nused_cpu_sys:%.6f\r\nused_cpu_user:%.6f\r\nused_cpu_sys_children:%.6f\r\nused_cpu_user_children:%.6f\r\n\r\n",
		sec(self.Stime), sec(self.Utime), sec(children.Stime), sec(children.Utime))
}

// errCountingConn is a session's connection as its commands see it: it
// counts the error replies written through it, for the server's
// errorstats and for the command being served (Session.errs).
type errCountingConn struct {
	redcon.Conn
	sess *Session
}

func (c *errCountingConn) WriteError(msg string) {
	c.sess.errs++
	c.sess.srv.stats.errorReply(msg)
	c.Conn.WriteError(msg)
}
