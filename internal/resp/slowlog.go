package resp

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// SLOWLOG GET [count] | LEN | RESET | HELP, as Redis 7's: the commands
// that took at least slowlog-log-slower-than microseconds (default 10000;
// negative logs none, 0 every command), the newest first, at most
// slowlog-max-len of them (default 128). A command's time is the one
// INFO commandstats counts (stats.go): for a write handed to the write
// path or started in a pipeline, its sequencing, not its commit. An entry
// keeps at most slowlogMaxArgs arguments of at most slowlogMaxString
// bytes each, as Redis's does; AUTH and HELLO, which may carry a
// password, are never logged.

const (
	slowlogMaxArgs   = 32
	slowlogMaxString = 128
)

// slowLog is a server's slow log. Its thresholds are read without the
// lock on every command; entries are added under it.
type slowLog struct {
	slowerThan atomic.Int64 // microseconds
	maxLen     atomic.Int64

	mu      sync.Mutex
	nextID  int64
	entries []slowEntry // newest last
}

type slowEntry struct {
	id         int64
	at         int64 // unix seconds
	usec       int64
	args       []string
	addr, name string
}

func newSlowLog() *slowLog {
	l := &slowLog{}
	l.slowerThan.Store(10000)
	l.maxLen.Store(128)
	return l
}

// observe logs a command that took d, if it was slow enough.
func (l *slowLog) observe(d time.Duration, args [][]byte, sess *Session) {
	t := l.slowerThan.Load()
	usec := d.Microseconds()
	if t < 0 || usec < t || len(args) == 0 || eqFold(args[0], "auth") || eqFold(args[0], "hello") {
		return
	}
	n := min(len(args), slowlogMaxArgs)
	kept := make([]string, n)
	for i := range n {
		if i == slowlogMaxArgs-1 && len(args) > slowlogMaxArgs {
			kept[i] = "... (" + strconv.Itoa(len(args)-slowlogMaxArgs+1) + " more arguments)"
			break
		}
		a := args[i]
		if len(a) > slowlogMaxString {
			kept[i] = string(a[:slowlogMaxString]) + "... (" + strconv.Itoa(len(a)-slowlogMaxString) + " more bytes)"
			continue
		}
		kept[i] = string(a)
	}
	e := slowEntry{at: time.Now().Unix(), usec: usec, args: kept, addr: sess.addr, name: sess.Name()}
	l.mu.Lock()
	e.id = l.nextID
	l.nextID++
	l.entries = append(l.entries, e)
	l.trimLocked()
	l.mu.Unlock()
}

// trimLocked drops the oldest entries past maxLen.
func (l *slowLog) trimLocked() {
	if over := len(l.entries) - int(l.maxLen.Load()); over > 0 {
		l.entries = append(l.entries[:0], l.entries[over:]...)
	}
}

// setMaxLen is CONFIG SET slowlog-max-len's: the log is cut at once.
func (l *slowLog) setMaxLen(n int64) {
	l.maxLen.Store(n)
	l.mu.Lock()
	l.trimLocked()
	l.mu.Unlock()
}

var slowlogHelp = commands.Array{
	commands.SimpleString("SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
	commands.SimpleString("GET [<count>]"),
	commands.SimpleString("    Return top <count> entries from the slowlog (default: 10, -1 mean all)."),
	commands.SimpleString("    Entries are made of:"),
	commands.SimpleString("    id, timestamp, time in microseconds, arguments array, client IP and port,"),
	commands.SimpleString("    client name"),
	commands.SimpleString("LEN"),
	commands.SimpleString("    Return the length of the slowlog."),
	commands.SimpleString("RESET"),
	commands.SimpleString("    Reset the slowlog."),
	commands.SimpleString("HELP"),
	commands.SimpleString("    Print this help."),
}

func cmdSlowlog(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	l := n.srv.slow
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "help" && len(args) == 2:
		writeReply(c, slowlogHelp, sess.proto3())
	case sub == "reset" && len(args) == 2:
		l.mu.Lock()
		l.entries = l.entries[:0]
		l.mu.Unlock()
		c.WriteString("OK")
	case sub == "len" && len(args) == 2:
		l.mu.Lock()
		size := len(l.entries)
		l.mu.Unlock()
		c.WriteInt(size)
	case sub == "get" && (len(args) == 2 || len(args) == 3):
		count := int64(10)
		if len(args) == 3 {
			v, err := strconv.ParseInt(string(args[2]), 10, 64)
			if err != nil || v < -1 {
				c.WriteError("ERR count should be greater than or equal to -1")
				return
			}
			count = v
		}
		l.mu.Lock()
		if count == -1 || count > int64(len(l.entries)) {
			count = int64(len(l.entries))
		}
		out := make(commands.Array, 0, count)
		for i := len(l.entries) - 1; i >= 0 && int64(len(out)) < count; i-- {
			e := l.entries[i]
			argv := make(commands.Bulks, len(e.args))
			for j, a := range e.args {
				argv[j] = []byte(a)
			}
			out = append(out, commands.Array{commands.Int(e.id), commands.Int(e.at), commands.Int(e.usec), argv,
				commands.Bulk(e.addr), commands.Bulk(e.name)})
		}
		l.mu.Unlock()
		writeReply(c, out, sess.proto3())
	case sub == "help" || sub == "reset" || sub == "len" || sub == "get":
		c.WriteError(errArity("slowlog|" + sub))
	default:
		c.WriteError(errUnknownSubcommand(args[1], "SLOWLOG"))
	}
}
