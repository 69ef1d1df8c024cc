package commands

import (
	"bytes"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Keyspace notifications (notify-keyspace-events)
//
// A write raises Redis's events for the keys it changed: for each event,
// a message "<event>" on __keyspace@0__:<key> (class K) and "<key>" on
// __keyevent@0__:<event> (class E), in that order, when the event's class
// is enabled. The events are derived from what the command did, not from
// its arguments alone: the keys its ops touch (a command that changed
// nothing raises nothing, as SREM of a missing member in Redis), the
// command's own event for each (Redis's name: HMSET raises "hset", INCR
// "incrby", LMOVE "lpop"/"rpush" on its source and destination), "del"
// when a key the command did not delete outright is gone after it (the
// last element popped), "new" (class n) when a key is created, and
// "expire" after SET ... EX and SETEX's "set".
//
// Who publishes them (package node, package replication): the leader,
// which alone runs writes. The events go with the command's Result
// (Result.Publish) into its log entry's proposal and are published by
// the leader once that entry is applied, through the cluster's one
// pub/sub path (replication.Leader.Publish): so every node's subscribers
// get them, in log order, each only after its write is readable on that
// node, never for a write that did not commit. A transaction or script
// raises the events of every command in it, in order, when its one entry
// is applied. Expired keys: the leader's expiry loop deletes them through
// the log and raises "expired" (class x) for each. "evicted" (e), stream
// (t), module (d) and key-miss (m) events never occur: tandem has no
// eviction, streams or modules, and reads raise nothing.
//
// The setting is the process's (CONFIG SET notify-keyspace-events, as the
// encoding thresholds): only the leader's counts, so set it on every node
// for it to survive a failover.

// Notify classes, as Redis's NOTIFY_* flags.
const (
	NotifyKeyspace uint32 = 1 << iota // K
	NotifyKeyevent                    // E
	NotifyGeneric                     // g
	NotifyString                      // $
	NotifyList                        // l
	NotifySet                         // s
	NotifyHash                        // h
	NotifyZSet                        // z
	NotifyExpired                     // x
	NotifyEvicted                     // e
	NotifyStream                      // t
	NotifyKeyMiss                     // m
	NotifyModule                      // d
	NotifyNew                         // n
	// NotifyAll is A: every class but K, E, m and n.
	NotifyAll = NotifyGeneric | NotifyString | NotifyList | NotifySet | NotifyHash | NotifyZSet |
		NotifyExpired | NotifyEvicted | NotifyStream | NotifyModule
)

var notifyFlags atomic.Uint32

// NotifyKeyspaceEvents returns notify-keyspace-events as CONFIG GET shows it.
func NotifyKeyspaceEvents() string { return notifyString(notifyFlags.Load()) }

// ValidNotifyKeyspaceEvents says every character of s names a class.
func ValidNotifyKeyspaceEvents(s string) bool {
	_, ok := parseNotify(s)
	return ok
}

// CanonicalNotifyKeyspaceEvents is s as NotifyKeyspaceEvents would show
// it once set (classes in one order, A for all of them), and whether
// every character of s names a class.
func CanonicalNotifyKeyspaceEvents(s string) (string, bool) {
	f, ok := parseNotify(s)
	if !ok {
		return "", false
	}
	return notifyString(f), true
}

// SetNotifyKeyspaceEvents parses and sets notify-keyspace-events; false
// for a character that names no class (nothing is set).
func SetNotifyKeyspaceEvents(s string) bool {
	f, ok := parseNotify(s)
	if ok {
		notifyFlags.Store(f)
	}
	return ok
}

func parseNotify(s string) (uint32, bool) {
	var f uint32
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 'A':
			f |= NotifyAll
		case 'g':
			f |= NotifyGeneric
		case '$':
			f |= NotifyString
		case 'l':
			f |= NotifyList
		case 's':
			f |= NotifySet
		case 'h':
			f |= NotifyHash
		case 'z':
			f |= NotifyZSet
		case 'x':
			f |= NotifyExpired
		case 'e':
			f |= NotifyEvicted
		case 'K':
			f |= NotifyKeyspace
		case 'E':
			f |= NotifyKeyevent
		case 't':
			f |= NotifyStream
		case 'm':
			f |= NotifyKeyMiss
		case 'd':
			f |= NotifyModule
		case 'n':
			f |= NotifyNew
		default:
			return 0, false
		}
	}
	return f, true
}

// notifyString is Redis's keyspaceEventsFlagsToString.
func notifyString(f uint32) string {
	var b strings.Builder
	if f&NotifyAll == NotifyAll {
		b.WriteByte('A')
	} else {
		for _, c := range []struct {
			f uint32
			c byte
		}{{NotifyGeneric, 'g'}, {NotifyString, '$'}, {NotifyList, 'l'}, {NotifySet, 's'}, {NotifyHash, 'h'},
			{NotifyZSet, 'z'}, {NotifyExpired, 'x'}, {NotifyEvicted, 'e'}, {NotifyStream, 't'}, {NotifyModule, 'd'}, {NotifyNew, 'n'}} {
			if f&c.f != 0 {
				b.WriteByte(c.c)
			}
		}
	}
	if f&NotifyKeyspace != 0 {
		b.WriteByte('K')
	}
	if f&NotifyKeyevent != 0 {
		b.WriteByte('E')
	}
	if f&NotifyKeyMiss != 0 {
		b.WriteByte('m')
	}
	return b.String()
}

// Message is a pub/sub message a write publishes once its entry is
// applied: a keyspace notification.
type Message struct {
	Channel, Payload []byte
}

// event is one notification: a class and Redis's event name.
type event struct {
	class uint32
	name  string
}

// eventClass is the class of each event a command here raises.
var eventClass = map[string]uint32{}

func init() {
	for class, names := range map[uint32][]string{
		NotifyGeneric: {"del", "expire", "persist", "rename_from", "rename_to", "copy_to", "restore"},
		NotifyString:  {"set", "setrange", "append", "incrby", "incrbyfloat", "setbit"},
		NotifyList:    {"lpush", "rpush", "lpop", "rpop", "linsert", "lset", "ltrim", "lrem", "sortstore"},
		NotifySet:     {"sadd", "srem", "spop", "sinterstore", "sunionstore", "sdiffstore"},
		NotifyHash:    {"hset", "hdel", "hincrby", "hincrbyfloat"},
		NotifyZSet: {"zadd", "zincr", "zrem", "zremrangebyscore", "zremrangebyrank", "zremrangebylex",
			"zpopmin", "zpopmax", "zunionstore", "zinterstore", "zdiffstore", "zrangestore"},
		NotifyExpired: {"expired"},
	} {
		for _, n := range names {
			eventClass[n] = class
		}
	}
}

// commandEvent is the event a command raises on each key it changes,
// where it is not its own name or depends on no argument.
var commandEvent = map[string]string{
	"unlink": "del", "getdel": "del",
	"pexpire": "expire", "expireat": "expire", "pexpireat": "expire",
	"setnx": "set", "setex": "set", "psetex": "set", "getset": "set", "mset": "set", "msetnx": "set", "bitop": "set",
	"incr": "incrby", "decr": "incrby", "decrby": "incrby", "bitfield": "setbit",
	"lpushx": "lpush", "rpushx": "rpush", "blpop": "lpop", "brpop": "rpop",
	"hmset": "hset", "hsetnx": "hset",
	"zincrby": "zincr", "bzpopmin": "zpopmin", "bzpopmax": "zpopmax",
	"sort": "sortstore",
}

// storeCommands write their result to a destination, replacing it: an
// empty result deletes it ("del" only).
var storeCommands = map[string]bool{
	"sinterstore": true, "sunionstore": true, "sdiffstore": true, "zunionstore": true, "zinterstore": true,
	"zdiffstore": true, "zrangestore": true, "bitop": true, "sort": true,
}

// raisesEvents says command name raises events of its own: not EVAL (the
// commands of its script raise theirs), FLUSHALL (none, as in Redis) or a
// command this file does not know.
func raisesEvents(name string) bool {
	if _, ok := commandEvent[name]; ok {
		return true
	}
	if _, ok := eventClass[name]; ok {
		return true
	}
	switch name {
	case "del", "expire", "rename", "renamenx", "copy", "getex", "lmove", "blmove", "rpoplpush", "brpoplpush",
		"smove", "lmpop", "blmpop", "zmpop", "bzmpop":
		return true
	}
	return false
}

// Notifications returns the keyspace notifications of a command that ran
// on v (the view before it) with args and produced ops; nil when none is
// enabled or it changed nothing. An error is the view's.
func Notifications(spec *Spec, args [][]byte, v View, ops []logrec.Op) ([]Message, error) {
	flags := notifyFlags.Load()
	if flags&(NotifyKeyspace|NotifyKeyevent) == 0 || len(ops) == 0 || !raisesEvents(spec.Name) {
		return nil, nil
	}
	var after *keyspace.Layer
	exists := func(k []byte) (bool, error) {
		if after == nil {
			after = keyspace.NewLayer(v.Rows())
			for i := range ops {
				if err := keyspace.Apply(after, &ops[i]); err != nil {
					return false, err
				}
			}
		}
		_, ok, err := keyspace.Reader{R: after, NowMs: v.Now()}.GetAny(k)
		return ok, err
	}
	// The keys changed, in the order of the arguments (RENAME's
	// rename_from before its rename_to, as Redis raises them), whatever
	// the order of the ops.
	var keys [][]byte
	seen := map[string]bool{}
	for i := range ops {
		if k := ops[i].Key; ops[i].Kind != logrec.OpFlushAll && ops[i].Kind != logrec.OpFunctions && !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, k)
		}
	}
	argAt := func(k []byte) int {
		for i, a := range args[1:] {
			if bytes.Equal(a, k) {
				return i
			}
		}
		return len(args)
	}
	slices.SortStableFunc(keys, func(a, b []byte) int { return argAt(a) - argAt(b) })
	var msgs []Message
	for _, k := range keys {
		_, before, err := v.Get(k)
		if err != nil {
			return nil, err
		}
		now, err := exists(k)
		if err != nil {
			return nil, err
		}
		for _, e := range keyEvents(spec.Name, args, k, before, now) {
			msgs = appendEvent(msgs, flags, e, k)
		}
	}
	return msgs, nil
}

// ExpiredNotifications returns the "expired" notifications of keys the
// expiry loop deletes.
func ExpiredNotifications(keys [][]byte) []Message {
	flags := notifyFlags.Load()
	var msgs []Message
	for _, k := range keys {
		msgs = appendEvent(msgs, flags, event{NotifyExpired, "expired"}, k)
	}
	return msgs
}

func appendEvent(msgs []Message, flags uint32, e event, key []byte) []Message {
	if flags&e.class == 0 {
		return msgs
	}
	k := bytes.Clone(key)
	if flags&NotifyKeyspace != 0 {
		msgs = append(msgs, Message{Channel: append([]byte("__keyspace@0__:"), k...), Payload: []byte(e.name)})
	}
	if flags&NotifyKeyevent != 0 {
		msgs = append(msgs, Message{Channel: []byte("__keyevent@0__:" + e.name), Payload: k})
	}
	return msgs
}

// keyEvents are the events of command name on key k, which existed
// before it (live) and exists after it as given.
func keyEvents(name string, args [][]byte, k []byte, before, after bool) []event {
	var out []event
	add := func(n string) {
		if c, ok := eventClass[n]; ok {
			out = append(out, event{c, n})
		}
	}
	if after && !before {
		out = append(out, event{NotifyNew, "new"})
	}
	isArg := func(i int) bool { return i < len(args) && bytes.Equal(args[i], k) }
	end := func(i int, left, right string) string {
		if i < len(args) && eqFold(args[i], "left") {
			return left
		}
		return right
	}
	switch name {
	case "del", "unlink", "getdel":
		add("del")
		return out
	case "expire", "pexpire", "expireat", "pexpireat":
		if after {
			add("expire")
		} else {
			add("del")
		}
		return out
	case "rename", "renamenx":
		if isArg(1) {
			add("rename_from")
		}
		if isArg(2) {
			add("rename_to")
		}
		return out
	case "copy":
		add("copy_to")
		return out
	case "set":
		add("set")
		for _, a := range args[3:] {
			if eqFold(a, "ex") || eqFold(a, "px") || eqFold(a, "exat") || eqFold(a, "pxat") {
				add("expire")
			}
		}
	case "setex", "psetex":
		add("set")
		add("expire")
	case "getex":
		for _, a := range args[2:] {
			if eqFold(a, "persist") {
				add("persist")
			} else if eqFold(a, "ex") || eqFold(a, "px") || eqFold(a, "exat") || eqFold(a, "pxat") {
				add("expire")
			}
		}
		if !after {
			add("del") // an expiry in the past
		}
		return out
	case "lmove", "blmove":
		if isArg(1) {
			add(end(3, "lpop", "rpop"))
		}
		if isArg(2) {
			add(end(4, "lpush", "rpush"))
		}
	case "rpoplpush", "brpoplpush":
		if isArg(1) {
			add("rpop")
		}
		if isArg(2) {
			add("lpush")
		}
	case "smove":
		if isArg(1) {
			add("srem")
		}
		if isArg(2) {
			add("sadd")
		}
	case "lmpop", "blmpop", "zmpop", "bzmpop":
		// [timeout] numkeys key... LEFT|RIGHT|MIN|MAX
		at := 1
		if name[0] == 'b' {
			at = 2
		}
		if at < len(args) {
			if n, ok := parseInt(args[at]); ok && n >= 0 && int64(at)+1+n < int64(len(args)) {
				switch d := args[at+1+int(n)]; {
				case eqFold(d, "left"):
					add("lpop")
				case eqFold(d, "right"):
					add("rpop")
				case eqFold(d, "min"):
					add("zpopmin")
				case eqFold(d, "max"):
					add("zpopmax")
				}
			}
		}
	case "zadd":
		incr := false
		for _, a := range args[2:] {
			incr = incr || eqFold(a, "incr")
		}
		if incr {
			add("zincr")
		} else {
			add("zadd")
		}
	default:
		if storeCommands[name] && !after {
			if before {
				add("del")
			}
			return out
		}
		if e, ok := commandEvent[name]; ok {
			add(e)
		} else {
			add(name)
		}
	}
	if before && !after {
		add("del") // emptied: the last element went
	}
	return out
}
