package commands

import (
	"reflect"
	"strings"
	"testing"
)

// TestNotifyConfig: CONFIG SET/GET of notify-keyspace-events reads and
// prints the classes as Redis 7 does (Redis's own cases, then ours).
func TestNotifyConfig(t *testing.T) {
	t.Cleanup(func() { SetNotifyKeyspaceEvents("") })
	for _, c := range []struct{ in, out string }{
		{"gKE", "gKE"}, {"$lshzxeKE", "$lshzxeKE"}, {"KA", "AK"}, {"EA", "AE"},
		{"", ""}, {"nE", "nE"}, {"Kgm", "gKm"}, {"AgK", "AK"}, {"tdK", "tdK"},
	} {
		if !SetNotifyKeyspaceEvents(c.in) {
			t.Fatalf("%q refused", c.in)
		}
		if got := NotifyKeyspaceEvents(); got != c.out {
			t.Errorf("set %q: get %q, want %q", c.in, got, c.out)
		}
	}
	SetNotifyKeyspaceEvents("KA")
	for _, bad := range []string{"Q", "KE ", "k"} {
		if SetNotifyKeyspaceEvents(bad) || ValidNotifyKeyspaceEvents(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := NotifyKeyspaceEvents(); got != "AK" {
		t.Errorf("a refused value changed the setting to %q", got)
	}
}

// notified runs setup with notifications off, then each line as its own
// batch with flags set, and returns the messages as "channel payload".
func notified(t *testing.T, flags string, setup []string, lines ...string) []string {
	t.Helper()
	t.Cleanup(func() { SetNotifyKeyspaceEvents("") })
	SetNotifyKeyspaceEvents("")
	v := newMem(now)
	if len(setup) > 0 {
		runBatch(t, v, setup...)
	}
	SetNotifyKeyspaceEvents(flags)
	var got []string
	for _, line := range lines {
		b := NewBatch(v)
		args := strings.Fields(line)
		spec, ok := Lookup([]byte(args[0]))
		if !ok {
			t.Fatalf("unknown command %q", args[0])
		}
		if _, err := b.Run(&Ctx{NowMs: v.now}, spec, bargs(args...)); err != nil && !IsInputError(err) {
			t.Fatal(err)
		}
		v.apply(b.Ops())
		for _, m := range b.Publish() {
			got = append(got, string(m.Channel)+" "+string(m.Payload))
		}
	}
	return got
}

// ev is the keyspace channel's message for an event on key.
func ev(key, event string) string { return "__keyspace@0__:" + key + " " + event }

// TestNotifications: each command raises Redis's events, only for keys
// it changed, with "del" when it empties a key and "new" when it creates
// one; a script's or transaction's commands raise theirs.
func TestNotifications(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup []string
		lines []string
		want  []string
	}{
		{"set", nil, []string{"SET foo bar"}, []string{ev("foo", "set")}},
		{"set ex", nil, []string{"SET foo bar EX 100"}, []string{ev("foo", "set"), ev("foo", "expire")}},
		{"setex", nil, []string{"SETEX foo 100 bar"}, []string{ev("foo", "set"), ev("foo", "expire")}},
		{"setnx unchanged", []string{"SET foo a"}, []string{"SETNX foo b"}, nil},
		{"mset", nil, []string{"MSET a 1 b 2"}, []string{ev("a", "set"), ev("b", "set")}},
		{"incr", nil, []string{"INCR n", "INCRBYFLOAT n 1.5", "APPEND n x"}, []string{ev("n", "incrby"), ev("n", "incrbyfloat"), ev("n", "append")}},
		{"expire and del", []string{"SET foo bar"}, []string{"EXPIRE foo 1", "PERSIST foo", "DEL foo", "DEL foo"},
			[]string{ev("foo", "expire"), ev("foo", "persist"), ev("foo", "del")}},
		{"expire in the past", []string{"SET foo bar"}, []string{"EXPIRE foo -1"}, []string{ev("foo", "del")}},
		{"rename", []string{"SET a 1"}, []string{"RENAME a b"}, []string{ev("a", "rename_from"), ev("b", "rename_to")}},
		{"list", nil, []string{"LPUSH l a", "RPUSH l b", "RPOP l", "LPOP l"},
			[]string{ev("l", "lpush"), ev("l", "rpush"), ev("l", "rpop"), ev("l", "lpop"), ev("l", "del")}},
		{"lmove", []string{"RPUSH s a b"}, []string{"LMOVE s d RIGHT LEFT"}, []string{ev("s", "rpop"), ev("d", "lpush")}},
		{"lmove rotate", []string{"RPUSH s a b"}, []string{"LMOVE s s LEFT RIGHT"}, []string{ev("s", "lpop"), ev("s", "rpush")}},
		{"lmpop", []string{"RPUSH l a"}, []string{"LMPOP 1 l RIGHT"}, []string{ev("l", "rpop"), ev("l", "del")}},
		{"set events", nil, []string{"SADD s a b", "SREM s x", "SADD s x", "SREM s x", "SMOVE s t a"},
			[]string{ev("s", "sadd"), ev("s", "sadd"), ev("s", "srem"), ev("s", "srem"), ev("t", "sadd")}},
		{"store empties destination", []string{"SADD d x", "SADD a 1"}, []string{"SINTERSTORE d a b"}, []string{ev("d", "del")}},
		{"zset", nil, []string{"ZADD z 1 a", "ZADD z INCR 2 a", "ZINCRBY z 1 a", "ZREM z x", "ZPOPMIN z"},
			[]string{ev("z", "zadd"), ev("z", "zincr"), ev("z", "zincr"), ev("z", "zpopmin"), ev("z", "del")}},
		{"hash", nil, []string{"HMSET h yes 1 no 0", "HINCRBY h yes 10", "HDEL h nope", "HDEL h yes no"},
			[]string{ev("h", "hset"), ev("h", "hincrby"), ev("h", "hdel"), ev("h", "del")}},
		{"flushall raises nothing", []string{"SET a 1"}, []string{"FLUSHALL"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := notified(t, "KA", c.setup, c.lines...); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestNotificationClasses: K and E choose the channels, the classes mask
// events, n adds "new" for a created key only.
func TestNotificationClasses(t *testing.T) {
	got := notified(t, "KEl", nil, "SET foo bar", "LPUSH mylist a")
	want := []string{ev("mylist", "lpush"), "__keyevent@0__:lpush mylist"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("KEl: got %q, want %q", got, want)
	}
	got = notified(t, "En", nil, "SET foo bar", "SET foo baz", "SET bar bar")
	want = []string{"__keyevent@0__:new foo", "__keyevent@0__:new bar"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("En: got %q, want %q", got, want)
	}
	if got := notified(t, "A", nil, "SET foo bar"); got != nil {
		t.Fatalf("neither K nor E: got %q", got)
	}
	if got := ExpiredNotifications(nil); got != nil {
		t.Fatalf("no keys: %v", got)
	}
	SetNotifyKeyspaceEvents("Ex")
	if got := ExpiredNotifications(bargs("k")); len(got) != 1 || string(got[0].Channel) != "__keyevent@0__:expired" || string(got[0].Payload) != "k" {
		t.Fatalf("expired: %v", got)
	}
}
