package script

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// function runs FUNCTION args on m as the node would (FunctionWrite for
// its writes, FunctionRead for the rest), applies its ops and returns the
// reply and the ops.
func runFunction(t *testing.T, e *Engine, m *memView, args ...string) (commands.Reply, []logrec.Op) {
	t.Helper()
	a := [][]byte{[]byte("FUNCTION")}
	for _, s := range args {
		a = append(a, []byte(s))
	}
	sc, ok := FunctionSubcommands[strings.ToLower(args[0])]
	if !ok || !commands.ArityOK(sc.Arity, len(a)) {
		t.Fatalf("FUNCTION %v: unknown or wrong arity", args)
	}
	spec := commands.FunctionRead
	if sc.Writes {
		spec = commands.FunctionWrite
	}
	res, err := spec.Exec(&commands.Ctx{NowMs: m.now, Scripts: e}, m, a)
	if err != nil {
		t.Fatal(err)
	}
	m.apply(t, res.Ops)
	return res.Reply, res.Ops
}

func lib(name, body string) string { return "#!lua name=" + name + "\n" + body }

// TestFunctionReplies: replies and errors as redis-server 7.0.15 gives
// them (each taken from it with redis-cli).
func TestFunctionReplies(t *testing.T) {
	e, m := newEngine(t), newMem()
	load := func(code string, replace bool) commands.Reply {
		args := []string{"LOAD", code}
		if replace {
			args = []string{"LOAD", "REPLACE", code}
		}
		r, _ := runFunction(t, e, m, args...)
		return r
	}
	for _, c := range []struct {
		code string
		want commands.Reply
	}{
		{"return 1", commands.ErrorReply("ERR Missing library metadata")},
		{"#!lua\nreturn 1", commands.ErrorReply("ERR Library name was not given")},
		{"#!lua name=a foo=b\nreturn 1", commands.ErrorReply("ERR Invalid metadata value given: foo=b")},
		{"#!lua name=a name=c\nreturn 1", commands.ErrorReply("ERR Invalid metadata value, name argument was given multiple times")},
		{"#!lu name=a\nreturn 1", commands.ErrorReply("ERR Engine 'lu' not found")},
		{"#!lua name=a", commands.ErrorReply("ERR Invalid library metadata")},
		{"#!lua name=b-1\nreturn 1", commands.ErrorReply(msgBadName)},
		{lib("a", "return 1"), commands.ErrorReply("ERR No functions registered")},
		{lib("a", "redis.register_function('f', function(k, a) return 1 end)"), commands.Bulk("a")},
		{lib("a", "redis.register_function('f', function(k, a) return 1 end)"), commands.ErrorReply("ERR Library 'a' already exists")},
		{lib("b", "redis.register_function('f', function(k, a) return 1 end)"), commands.ErrorReply("ERR Function f already exists")},
		{lib("b", "redis.register_function('f@', function() return 1 end)"), commands.ErrorReply("ERR Error registering functions: " + msgBadName)},
		{lib("b", "redis.call('set','x',1)"), commands.ErrorReply("ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'")},
		{lib("b", "local x = KEYS"), commands.ErrorReply("ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'KEYS'")},
		{lib("b", "math.random()"), commands.ErrorReply("ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'math'")},
		{lib("b", "redis.register_function{function_name='g', callback=function() return 1 end, flags={'bad'}}"), commands.ErrorReply("ERR Error registering functions: ERR unknown flag given")},
		{lib("b", "redis.register_function{function_name='g', callback=function() return 1 end, foo=1}"), commands.ErrorReply("ERR Error registering functions: ERR unknown argument given to redis.register_function")},
		{lib("b", "redis.register_function{callback=function() return 1 end}"), commands.ErrorReply("ERR Error registering functions: ERR redis.register_function must get a function name argument")},
		{lib("b", "redis.register_function{function_name='g'}"), commands.ErrorReply("ERR Error registering functions: ERR redis.register_function must get a callback argument")},
		{lib("b", "redis.register_function('g', 5)"), commands.ErrorReply("ERR Error registering functions: ERR second argument to redis.register_function must be a function")},
		{lib("b", "redis.register_function('g')"), commands.ErrorReply("ERR Error registering functions: ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).")},
		{lib("b", "redis.register_function('g', function() end)\nredis.register_function('g', function() end)"), commands.ErrorReply("ERR Error registering functions: ERR Function already exists in the library")},
		{lib("b", "while true do end"), commands.ErrorReply("ERR Error registering functions: " + msgLoadTimeout)},
		{lib("b", "redis.log(redis.LOG_WARNING, 'loading')\nredis.register_function{function_name='g', callback=function(k, a) return redis.call('get', k[1]) end, flags={'no-writes'}, description='desc'}"), commands.Bulk("b")},
		{lib("c", "redis.register_function('h', function(k, a) return redis.call('set', k[1], a[1]) end)"), commands.Bulk("c")},
		{lib("d", "redis.register_function('e', function(k, a) return KEYS end)\nredis.register_function('e2', function(k, a) error('boom') end)\nredis.register_function('e3', function(k, a) return {#k, #a, k[1], a[1]} end)"), commands.Bulk("d")},
	} {
		if got := load(c.code, false); !reflect.DeepEqual(got, c.want) {
			t.Errorf("FUNCTION LOAD %q: %#v, want %#v", c.code, got, c.want)
		}
	}
	if got := load(lib("a", "redis.register_function('f', function(k, a) return 2 end)"), true); !reflect.DeepEqual(got, commands.Bulk("a")) {
		t.Errorf("FUNCTION LOAD REPLACE: %#v", got)
	}
	for _, c := range []struct {
		cmd  []string
		want commands.Reply
	}{
		{[]string{"FCALL", "f", "0"}, commands.Int(2)},
		{[]string{"FCALL", "nosuch", "0"}, commands.ErrorReply("ERR Function not found")},
		{[]string{"FCALL", "g", "x"}, commands.ErrorReply("ERR Bad number of keys provided")},
		{[]string{"FCALL", "g", "-1"}, commands.ErrorReply("ERR Number of keys can't be negative")},
		{[]string{"FCALL", "g", "3", "a"}, commands.ErrorReply("ERR Number of keys can't be greater than number of args")},
		{[]string{"FCALL_RO", "h", "1", "x", "y"}, commands.ErrorReply("ERR Can not execute a script with write flag using *_ro command.")},
		{[]string{"FCALL", "h", "1", "x", "y"}, commands.OK},
		{[]string{"FCALL_RO", "g", "1", "x"}, commands.Bulk("y")},
		{[]string{"FCALL", "e", "0"}, commands.ErrorReply("ERR user_function:2: Script attempted to access nonexistent global variable 'KEYS' script: e, on @user_function:2.")},
		{[]string{"FCALL", "e2", "0"}, commands.ErrorReply("ERR user_function:3: boom script: e2, on @user_function:3.")},
		{[]string{"FCALL", "e3", "2", "k1", "k2", "a1"}, commands.Array{commands.Int(2), commands.Int(1), commands.Bulk("k1"), commands.Bulk("a1")}},
	} {
		if got := do(t, e, m, c.cmd...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: %#v, want %#v", c.cmd, got, c.want)
		}
	}
	// A no-writes function may not write.
	load(lib("w", "redis.register_function{function_name='w', callback=function() return redis.call('set','x','1') end, flags={'no-writes'}}"), false)
	if got := do(t, e, m, "FCALL", "w", "0"); got != commands.ErrorReply("ERR Write commands are not allowed from read-only scripts. script: w, on @user_function:2.") {
		t.Errorf("no-writes function writing: %#v", got)
	}
	for _, c := range []struct {
		args []string
		want commands.Reply
	}{
		{[]string{"DELETE", "nosuch"}, commands.ErrorReply("ERR Library not found")},
		{[]string{"FLUSH", "bad"}, commands.ErrorReply("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")},
		{[]string{"LIST", "withcode", "x"}, commands.ErrorReply("ERR Unknown argument x")},
		{[]string{"LIST", "libraryname"}, commands.ErrorReply("ERR library name argument was not given")},
		{[]string{"RESTORE", "abc"}, commands.ErrorReply("ERR DUMP payload version or checksum are wrong")},
		{[]string{"RESTORE", "abc", "bad"}, commands.ErrorReply("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")},
		{[]string{"LOAD", "foo", "code"}, commands.ErrorReply("ERR Unknown option given: foo")},
		{[]string{"LIST", "LIBRARYNAME", "b"}, commands.Array{commands.Map{
			commands.Bulk("library_name"), commands.Bulk("b"), commands.Bulk("engine"), commands.Bulk("LUA"),
			commands.Bulk("functions"), commands.Array{commands.Map{commands.Bulk("name"), commands.Bulk("g"), commands.Bulk("description"), commands.Bulk("desc"), commands.Bulk("flags"), commands.Set{commands.Bulk("no-writes")}}},
		}}},
		{[]string{"STATS"}, commands.Map{commands.Bulk("running_script"), commands.Null, commands.Bulk("engines"), commands.Map{commands.Bulk("LUA"), commands.Map{
			commands.Bulk("libraries_count"), commands.Int(5), commands.Bulk("functions_count"), commands.Int(7)}}}},
		{[]string{"DELETE", "d"}, commands.OK},
		{[]string{"FLUSH", "async"}, commands.OK},
		{[]string{"LIST"}, commands.Array{}},
	} {
		if got, _ := runFunction(t, e, m, c.args...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("FUNCTION %v: %#v, want %#v", c.args, got, c.want)
		}
	}
}

// TestFunctionWritesOneOp: every FUNCTION write is one OpFunctions op
// carrying the libraries' whole new set; FLUSHALL leaves them.
func TestFunctionWritesOneOp(t *testing.T) {
	e, m := newEngine(t), newMem()
	code := lib("a", "redis.register_function('f', function(k, a) return redis.call('incr', k[1]) end)")
	_, ops := runFunction(t, e, m, "LOAD", code)
	want := []logrec.Op{{Kind: logrec.OpFunctions, Key: []byte{}, Value: keyspace.EncodeLibraries([]keyspace.Library{{Name: "a", Code: code}})}}
	if !reflect.DeepEqual(ops, want) {
		t.Fatalf("FUNCTION LOAD ops %+v, want %+v", ops, want)
	}
	do(t, e, m, "FLUSHALL")
	if got := do(t, e, m, "FCALL", "f", "1", "n"); got != commands.Int(1) {
		t.Fatalf("FCALL after FLUSHALL: %#v", got)
	}
	_, ops = runFunction(t, e, m, "DELETE", "a")
	if len(ops) != 1 || ops[0].Kind != logrec.OpFunctions || len(ops[0].Value) != 0 {
		t.Fatalf("FUNCTION DELETE of the last library: ops %+v, want one with an empty set", ops)
	}
	if got := do(t, e, m, "FCALL", "f", "1", "n"); got != ReplyFunctionNotFound {
		t.Fatalf("FCALL after DELETE: %#v", got)
	}
}

// TestFunctionsFollowTheRow: an engine serves the libraries its view
// holds, so a second node's engine that applied the same ops (a
// follower) runs the same functions, and one that did not has none; a
// change of the row (DELETE, RESTORE) is seen at once.
func TestFunctionsFollowTheRow(t *testing.T) {
	leader, lm := newEngine(t), newMem()
	follower, fm := newEngine(t), newMem()
	ship := func(ops []logrec.Op) { fm.apply(t, ops) }
	_, ops := runFunction(t, leader, lm, "LOAD", lib("a", "redis.register_function{function_name='f', callback=function() return 'a1' end, flags={'no-writes'}}"))
	ship(ops)
	if got := do(t, follower, fm, "FCALL_RO", "f", "0"); !reflect.DeepEqual(got, commands.Bulk("a1")) {
		t.Fatalf("follower FCALL_RO: %#v", got)
	}
	_, ops = runFunction(t, leader, lm, "LOAD", "REPLACE", lib("a", "redis.register_function{function_name='f', callback=function() return 'a2' end, flags={'no-writes'}}"))
	ship(ops)
	if got := do(t, follower, fm, "FCALL_RO", "f", "0"); !reflect.DeepEqual(got, commands.Bulk("a2")) {
		t.Fatalf("follower FCALL_RO after REPLACE: %#v", got)
	}
	dump, _ := runFunction(t, leader, lm, "DUMP")
	_, ops = runFunction(t, leader, lm, "FLUSH")
	ship(ops)
	if got := do(t, follower, fm, "FCALL_RO", "f", "0"); got != ReplyFunctionNotFound {
		t.Fatalf("follower FCALL_RO after FLUSH: %#v", got)
	}
	// RESTORE of the dump brings it back, on both.
	p := dump.(commands.Bulk)
	_, ops = runFunction(t, leader, lm, "RESTORE", string(p))
	ship(ops)
	if got := do(t, follower, fm, "FCALL_RO", "f", "0"); !reflect.DeepEqual(got, commands.Bulk("a2")) {
		t.Fatalf("follower FCALL_RO after RESTORE: %#v", got)
	}
	if got, _ := runFunction(t, leader, lm, "RESTORE", string(p)); got != commands.ErrorReply("ERR Library a already exists") {
		t.Fatalf("RESTORE APPEND of an existing library: %#v", got)
	}
	if got, _ := runFunction(t, leader, lm, "RESTORE", string(p), "REPLACE"); got != commands.OK {
		t.Fatalf("RESTORE REPLACE: %#v", got)
	}
	bad := []byte(p)
	bad[3] ^= 1
	if got, _ := runFunction(t, leader, lm, "RESTORE", string(bad), "FLUSH"); got != replyPayload {
		t.Fatalf("RESTORE of a flipped bit: %#v", got)
	}
	// A node that applied nothing has no functions.
	if got := do(t, newEngine(t), newMem(), "FCALL_RO", "f", "0"); got != ReplyFunctionNotFound {
		t.Fatalf("fresh node FCALL_RO: %#v", got)
	}
}

// TestFunctionStateIsPerLibraryRun: a function's library locals persist
// between calls in a state, and its KEYS and ARGV tables are its own.
func TestFunctionKeepsLocals(t *testing.T) {
	e, m := newEngine(t), newMem()
	runFunction(t, e, m, "LOAD", lib("c", "local n = 0\nlocal kept\nredis.register_function('c', function(k, a) n = n + 1; if kept == nil then kept = a end; return {n, kept[1]} end)"))
	do(t, e, m, "FCALL", "c", "0", "first")
	got := do(t, e, m, "FCALL", "c", "0", "second")
	if want := (commands.Array{commands.Int(2), commands.Bulk("first")}); !reflect.DeepEqual(got, want) {
		t.Fatalf("second call %#v, want %#v (a reused ARGV table would read 'second')", got, want)
	}
	// An EVAL after it still has its KEYS and ARGV.
	if got := eval(t, e, m, "return {KEYS[1], ARGV[1]}", "1", "k", "v"); !reflect.DeepEqual(got, commands.Array{commands.Bulk("k"), commands.Bulk("v")}) {
		t.Fatalf("EVAL after FCALL: %#v", got)
	}
}

func TestLibrariesEncoding(t *testing.T) {
	libs := []keyspace.Library{{Name: "b", Code: "2"}, {Name: "a", Code: "1"}}
	row := keyspace.EncodeLibraries(libs)
	got, err := keyspace.DecodeLibraries(row)
	if err != nil || !reflect.DeepEqual(got, []keyspace.Library{{Name: "a", Code: "1"}, {Name: "b", Code: "2"}}) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := 1; i < len(row); i++ {
		if _, err := keyspace.DecodeLibraries(row[:i]); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
}
