package script

import (
	"bytes"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/tandemdb/tandem/internal/commands"
)

func newEngine(t *testing.T) *Engine {
	return New(Config{Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
}

// TestLuaToReply: a script's return value, by Redis's rules.
func TestLuaToReply(t *testing.T) {
	e, m := newEngine(t), newMem()
	for _, c := range []struct {
		body string
		want commands.Reply
	}{
		{"return 'hello'", commands.Bulk("hello")},
		{"return 100.5", commands.Int(100)},
		{"return -100.9", commands.Int(-100)},
		{"return true", commands.Int(1)},
		{"return false", commands.Null},
		{"return nil", commands.Null},
		{"return {ok='fine'}", commands.SimpleString("fine")},
		{"return {err='ERR this is an error'}", commands.ErrorReply("ERR this is an error")},
		{"return {err='My Error'}", commands.ErrorReply("My Error")},
		{"return {1,2,3,'ciao',{1,2}}", commands.Array{commands.Int(1), commands.Int(2), commands.Int(3), commands.Bulk("ciao"), commands.Array{commands.Int(1), commands.Int(2)}}},
		// An array stops at its first nil.
		{"return {1,2,nil,4}", commands.Array{commands.Int(1), commands.Int(2)}},
		{"return {1,false,3}", commands.Array{commands.Int(1), commands.Null, commands.Int(3)}},
		{"return _G", commands.Array{}},
		{"return redis.status_reply('PONG')", commands.SimpleString("PONG")},
		{"return redis.error_reply('MY_ERR_CODE custom msg')", commands.ErrorReply("MY_ERR_CODE custom msg")},
		{"return redis.error_reply('oops')", commands.ErrorReply("ERR oops")},
		{"return redis.error_reply('')", commands.ErrorReply("ERR")},
		{"return redis.sha1hex('Pizza & Mandolino')", commands.Bulk("74822d82031af7493c20eefa13bd07ec4fada82f")},
		{"return redis.sha1hex('')", commands.Bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709")},
		{"return {'x', function() end, 'y'}", commands.Array{commands.Bulk("x"), commands.Null, commands.Bulk("y")}},
		{"return 'hello' --trailing comment", commands.Bulk("hello")},
		{"#!lua\nreturn 1", commands.Int(1)},
	} {
		if got := eval(t, e, m, c.body, "0"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %#v, want %#v", c.body, got, c.want)
		}
	}
}

// TestRedisToLua: a command's reply, as the script sees it.
func TestRedisToLua(t *testing.T) {
	e, m := newEngine(t), newMem()
	do(t, e, m, "SET", "s", "myval")
	do(t, e, m, "SET", "n", "0")
	do(t, e, m, "HSET", "h", "f", "v")
	do(t, e, m, "RPUSH", "l", "a", "", "c")
	for _, c := range []struct {
		body string
		want commands.Reply
	}{
		{"local r = redis.pcall('incr', 'n'); return {type(r), r}", commands.Array{commands.Bulk("number"), commands.Int(1)}},
		{"local r = redis.pcall('get', 's'); return {type(r), r}", commands.Array{commands.Bulk("string"), commands.Bulk("myval")}},
		{"local r = redis.pcall('get', 'nokey'); return {type(r), r == false}", commands.Array{commands.Bulk("boolean"), commands.Int(1)}},
		{"local r = redis.pcall('set', 'k', 'v'); return {type(r), r['ok']}", commands.Array{commands.Bulk("table"), commands.Bulk("OK")}},
		{"local r = redis.pcall('incr', 's'); return {type(r), r['err']}", commands.Array{commands.Bulk("table"), commands.Bulk("ERR value is not an integer or out of range")}},
		{"local r = redis.pcall('mget', 's', 'nokey', 'n'); return {type(r), #r, r[1], r[2], r[3]}", commands.Array{commands.Bulk("table"), commands.Int(3), commands.Bulk("myval"), commands.Null, commands.Bulk("1")}},
		{"local r = redis.pcall('hset', 's', 'f', 'v'); return r['err']", commands.Bulk("WRONGTYPE Operation against a key holding the wrong kind of value")},
		// A map is a flat array under RESP2 and {map=...} under RESP3.
		{"return redis.call('hgetall', 'h')", commands.Array{commands.Bulk("f"), commands.Bulk("v")}},
		// LRANGE answers commands.Bulks: a table of strings.
		{"local r = redis.call('lrange', 'l', 0, -1); return {type(r), #r, r[1], r[2], r[3]}", commands.Array{commands.Bulk("table"), commands.Int(3), commands.Bulk("a"), commands.Bulk(""), commands.Bulk("c")}},
		{"redis.setresp(3); return redis.call('hgetall', 'h')", commands.Map{commands.Bulk("f"), commands.Bulk("v")}},
		{"redis.setresp(3); return redis.call('get', 'nokey') == nil", commands.Int(1)},
		// Numbers go to commands as %.17g, not Lua's %.14g.
		{"redis.call('set', 'p', 9007199254740991); return redis.call('get', 'p')", commands.Bulk("9007199254740991")},
		{"return redis.call('ping')", commands.SimpleString("PONG")},
		{"return redis.call('ping', 'asdf')", commands.Bulk("asdf")},
		{"return redis.call('time')", commands.Array{commands.Bulk("1700000000"), commands.Bulk("0")}},
	} {
		if got := eval(t, e, m, c.body, "0"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %#v, want %#v", c.body, got, c.want)
		}
	}
}

// TestKeysArgv: KEYS and ARGV, and numkeys' errors.
func TestKeysArgv(t *testing.T) {
	e, m := newEngine(t), newMem()
	got := eval(t, e, m, "return {KEYS[1],KEYS[2],ARGV[1],ARGV[2],#KEYS,#ARGV}", "2", "a", "b", "c", "d")
	want := commands.Array{commands.Bulk("a"), commands.Bulk("b"), commands.Bulk("c"), commands.Bulk("d"), commands.Int(2), commands.Int(2)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, c := range []struct {
		numkeys string
		want    string
	}{
		{"-12", "ERR Number of keys can't be negative"},
		{"3", "ERR Number of keys can't be greater than number of args"},
		{"x", "ERR value is not an integer or out of range"},
	} {
		if got := errText(eval(t, e, m, "return 1", c.numkeys, "a", "b")); got != c.want {
			t.Errorf("numkeys %s: %q, want %q", c.numkeys, got, c.want)
		}
	}
	// KEYS of one run are not the next run's.
	eval(t, e, m, "return 1", "1", "k")
	if got := eval(t, e, m, "return #KEYS", "0"); !reflect.DeepEqual(got, commands.Int(0)) {
		t.Errorf("#KEYS after a run with keys: %v", got)
	}
}

// TestKeysArgvReused: a state fills the KEYS and ARGV tables of its last
// run again; whatever a script did to them is gone in the next run, which
// sees exactly its own keys and arguments.
func TestKeysArgvReused(t *testing.T) {
	e, m := newEngine(t), newMem()
	check := "return {#KEYS, #ARGV, KEYS[1], ARGV[1], tostring(KEYS[2]), tostring(ARGV[2]), tostring(KEYS[9]), tostring(ARGV.x), tostring(getmetatable(ARGV)), tostring(rawget(KEYS, 'y'))}"
	want := commands.Array{commands.Int(1), commands.Int(1), commands.Bulk("k"), commands.Bulk("a"),
		commands.Bulk("nil"), commands.Bulk("nil"), commands.Bulk("nil"), commands.Bulk("nil"), commands.Bulk("nil"), commands.Bulk("nil")}
	for _, dirty := range []string{
		"return 1", // three keys and arguments, untouched
		"KEYS[9] = 'z'; ARGV[2] = nil; return 1",
		"ARGV.x = 'leak'; return 1",
		"KEYS.y = 1; KEYS.y = nil; KEYS[2] = nil; return 1",
		"setmetatable(ARGV, {__index = function() return 'leak' end}); return 1",
		"KEYS[1] = nil; ARGV[3] = nil; return 1",
		"local k = KEYS; for i = 1, 100 do k[i] = i end; return 1",
	} {
		eval(t, e, m, dirty, "3", "k1", "k2", "k3", "a1", "a2", "a3")
		if got := eval(t, e, m, check, "1", "k", "a"); !reflect.DeepEqual(got, want) {
			t.Errorf("after %q: got %v, want %v", dirty, got, want)
		}
	}
}

// TestStatusTablesReused: a state hands out the {ok=...} tables of its
// last run again; whatever a script did to one is never seen by the next
// run, and one run never gets one table twice.
func TestStatusTablesReused(t *testing.T) {
	e, m := newEngine(t), newMem()
	// Two status replies in one run are two tables, each as made.
	check := "local a = redis.call('SET', 'x', '1'); local b = redis.call('SET', 'y', '2'); local c = redis.call('PING')\n" +
		"local n = 0; for k, v in pairs(a) do n = n + 1 end; for k, v in pairs(b) do n = n + 1 end\n" +
		"return {tostring(rawequal(a, b)), a.ok, b.ok, c.ok, n, tostring(getmetatable(a)), tostring(rawget(b, 1)), tostring(a.x)}"
	want := commands.Array{commands.Bulk("false"), commands.Bulk("OK"), commands.Bulk("OK"), commands.Bulk("PONG"), commands.Int(2),
		commands.Bulk("nil"), commands.Bulk("nil"), commands.Bulk("nil")}
	for _, dirty := range []string{
		"redis.call('SET', 'x', '1'); return 1", // untouched
		"local t = redis.call('SET', 'x', '1'); t.ok = 'changed'; return 1",
		"local t = redis.call('SET', 'x', '1'); t.x = 'leak'; return 1",
		"local t = redis.call('SET', 'x', '1'); t[1] = 'leak'; return 1",
		"local t = redis.call('SET', 'x', '1'); t.ok = nil; return 1",
		"local t = redis.call('SET', 'x', '1'); setmetatable(t, {__index = function() return 'leak' end}); return 1",
		"local t = redis.call('PING'); local u = redis.call('SET', 'x', '1'); u.x = 1; u.x = nil; t.ok = {}; return 1",
		"for i = 1, 100 do redis.call('SET', 'x', i).x = i end; return 1",
	} {
		eval(t, e, m, dirty, "0")
		for range 2 {
			if got := eval(t, e, m, check, "0"); !reflect.DeepEqual(got, want) {
				t.Errorf("after %q: got %v, want %v", dirty, got, want)
			}
		}
	}
	// A state does reuse them: a run of one SET allocates no table.
	vm := e.getLocked()
	defer e.putLocked(vm)
	r := &run{ctx: &commands.Ctx{NowMs: m.now}, batch: commands.NewBatch(m), resp: 2, done: make(chan struct{})}
	sc, reply := compile("return redis.call('SET', 'x', '1')")
	if reply != nil {
		t.Fatal(reply)
	}
	vm.exec(r, sc, nil, nil, r)
	first := slices.Clone(vm.status)
	vm.exec(r, sc, nil, nil, r)
	if len(first) == 0 || !slices.Equal(vm.status, first) {
		t.Errorf("the second run made another status table: kept %p, then %p", first, vm.status)
	}
}

// TestErrors: what a failing script answers, Redis 7's texts.
func TestErrors(t *testing.T) {
	e, m := newEngine(t), newMem()
	do(t, e, m, "SET", "foo", "bar")
	sha := SHA1([]byte("return a"))
	for _, c := range []struct {
		body string
		want string // the whole reply, or a prefix ending in *
	}{
		{"return a", "ERR user_script:1: Script attempted to access nonexistent global variable 'a' script: " + sha + ", on @user_script:1."},
		{"a=10", "ERR user_script:1: Attempt to modify a readonly table script: *"},
		{"\n\nredis.call('nosuchcommand')", "ERR Unknown Redis command called from script script: *, on @user_script:3."},
		{"redis.call('get','a','b','c')", "ERR Wrong number of args calling Redis command from script script: *"},
		{"redis.call('incr')", "ERR Wrong number of args calling Redis command from script*"},
		{"redis.call('hset', 'foo', 'f', 'v')", "WRONGTYPE Operation against a key holding the wrong kind of value script: *"},
		{"return redis.call()", "ERR Please specify at least one argument for this redis lib call*"},
		{"return redis.call('ping', {})", "ERR Lua redis lib command arguments must be strings or integers*"},
		{"redis.sha1hex()", "ERR wrong number of arguments script: *"},
		{"redis.call('eval', 'return 1', '0')", "ERR This Redis command is not allowed from script*"},
		{"error('boom')", "ERR user_script:1: boom script: *"},
		{"error({err='MY_CODE with table'})", "MY_CODE with table script: *"},
		{"return +", "ERR Error compiling script (new function): *"},
		{"#!not-lua\nreturn 1", "ERR Unexpected engine in script shebang: not-lua"},
		{"#!lua badger=data\nreturn 1", "ERR Unknown lua shebang option: badger=data"},
		{"#!lua flags=allow-oom,what?\nreturn 1", "ERR Unexpected flag in script shebang: what?"},
		{"#!lua flags=no-writes\nredis.call('set','x',1)", "ERR Write commands are not allowed from read-only scripts. script: *"},
	} {
		if got := errText(eval(t, e, m, c.body, "0")); !glob(c.want, got) {
			t.Errorf("%q: %q, want %q", c.body, got, c.want)
		}
	}
	// pcall gives the error's text, not a table.
	got := eval(t, e, m, "local ok, err = pcall(function() return redis.call('incr', 'foo') end); return {tostring(ok), err}", "0")
	want := commands.Array{commands.Bulk("false"), commands.Bulk("ERR value is not an integer or out of range")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pcall of redis.call: %v, want %v", got, want)
	}
	got = eval(t, e, m, "local ok, err = pcall(function() return foo end); return err", "0")
	if s, _ := got.(commands.Bulk); !strings.HasSuffix(string(s), "Script attempted to access nonexistent global variable 'foo'") {
		t.Errorf("pcall of a global read: %q", got)
	}
}

// TestReadOnly: EVAL_RO refuses writes, reads as EVAL does.
func TestReadOnly(t *testing.T) {
	e, m := newEngine(t), newMem()
	do(t, e, m, "SET", "foo", "bar")
	if got := do(t, e, m, "EVAL_RO", "return redis.call('get', KEYS[1])", "1", "foo"); !reflect.DeepEqual(got, commands.Bulk("bar")) {
		t.Fatalf("EVAL_RO get: %v", got)
	}
	if got := errText(do(t, e, m, "EVAL_RO", "redis.call('del', KEYS[1])", "1", "foo")); !strings.HasPrefix(got, "ERR Write commands are not allowed from read-only scripts.") {
		t.Fatalf("EVAL_RO del: %q", got)
	}
	got := do(t, e, m, "EVAL_RO", "local t = redis.pcall('set','x','y'); return t['err']", "1", "x")
	if !reflect.DeepEqual(got, commands.Bulk("ERR Write commands are not allowed from read-only scripts.")) {
		t.Fatalf("EVAL_RO pcall set: %v", got)
	}
	if got := do(t, e, m, "GET", "foo"); !reflect.DeepEqual(got, commands.Bulk("bar")) {
		t.Fatalf("foo after EVAL_RO: %v", got)
	}
}

// TestSandbox: Redis's sandbox. Each case is a way out that must fail.
func TestSandbox(t *testing.T) {
	e, m := newEngine(t), newMem()
	for _, c := range []struct{ body, want string }{
		{"x = 1", "Attempt to modify a readonly table"},
		{"KEYS = 5", "Attempt to modify a readonly table"}, // Redis 7's globals, KEYS and ARGV among them, are read-only
		{"ARGV = {}", "Attempt to modify a readonly table"},
		{"rawset(_G, 'KEYS', 1)", "Attempt to modify a readonly table"},
		{"_G.x = 1", "Attempt to modify a readonly table"},
		{"_G = {}", "Attempt to modify a readonly table"},
		{"redis = function() return 1 end", "Attempt to modify a readonly table"},
		{"redis.call = function() return 1 end", "Attempt to modify a readonly table"},
		{"cjson.encode = function() return 1 end", "Attempt to modify a readonly table"},
		{"cmsgpack.pack = function() return 1 end", "Attempt to modify a readonly table"},
		{"bit.lshift = function() return 1 end", "Attempt to modify a readonly table"},
		{"string.upper = nil", "Attempt to modify a readonly table"},
		{"setmetatable(_G, {})", "Attempt to modify a readonly table"},
		{"local g = getmetatable(_G); g.__index = {}", "Attempt to modify a readonly table"},
		{"rawset(_G, 'x', 1)", "Attempt to modify a readonly table"},
		{"getmetatable('').__index.upper = nil", "attempt to index"},
		{"getmetatable('').upper = nil", "Attempt to modify a readonly table"},
		{"loadfile('some file')", "Script attempted to access nonexistent global variable 'loadfile'"},
		{"dofile('some file')", "Script attempted to access nonexistent global variable 'dofile'"},
		{"print('x')", "Script attempted to access nonexistent global variable 'print'"},
		{"return os.time()", "Script attempted to access nonexistent global variable 'os'"},
		{"return io.open('/etc/passwd')", "Script attempted to access nonexistent global variable 'io'"},
		{"return require('os')", "Script attempted to access nonexistent global variable 'require'"},
		{"return package.loaded", "Script attempted to access nonexistent global variable 'package'"},
		{"loadstring('y = 1')()", "Attempt to modify a readonly table"},
		{"return loadstring(string.dump(function() return 1 end))()", "attempt to call"},
		// The raw writers of the libraries (see vm.rawset).
		{"table.insert(string, 'x')", "Attempt to modify a readonly table"},
		{"table.insert(_G, 1, 'x')", "Attempt to modify a readonly table"},
		{"table.insert(redis, redis.call)", "Attempt to modify a readonly table"},
		{"table.insert(getmetatable(_G), 'x')", "Attempt to modify a readonly table"},
		{"table.insert(getfenv(0), 'x')", "Attempt to modify a readonly table"},
		{"rawset(redis, 'call', 1)", "Attempt to modify a readonly table"},
		{"setmetatable(cjson, {})", "Attempt to modify a readonly table"},
	} {
		if got := errText(eval(t, e, m, c.body, "0")); !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want it to say %q", c.body, got, c.want)
		}
		// Nothing a script can do changes the state it ran on, which is
		// pooled for the next script without a check.
		for _, s := range e.free {
			if !s.intact() {
				t.Fatalf("%q changed a protected table of its state", c.body)
			}
		}
	}
	// table.remove and table.sort find no array element to move in a
	// protected table.
	if got := eval(t, e, m, "table.remove(_G); table.sort(_G); table.remove(string, 1); table.sort(redis); return #_G + #string + #redis", "0"); !reflect.DeepEqual(got, commands.Int(0)) {
		t.Errorf("table.remove and table.sort of protected tables: %v", got)
	}
	for _, s := range e.free {
		if !s.intact() {
			t.Fatal("table.remove or table.sort changed a protected table")
		}
	}
	// table.insert still inserts into the script's own tables.
	if got := eval(t, e, m, "local t = {1, 3}; table.insert(t, 2, 2); table.insert(t, 4); return t", "0"); !reflect.DeepEqual(got, commands.Array{commands.Int(1), commands.Int(2), commands.Int(3), commands.Int(4)}) {
		t.Errorf("table.insert: %v", got)
	}
	// The real globals are out of reach: getfenv gives the read-only
	// environment where gopher-lua's would give them.
	for _, body := range []string{"getfenv(tostring).leak = 1", "getfenv(0).leak = 1", "getfenv(1).leak = 1", "getfenv().leak = 1"} {
		if got := errText(eval(t, e, m, body, "0")); !strings.Contains(got, "Attempt to modify a readonly table") {
			t.Errorf("%q: %q", body, got)
		}
	}
	if got := eval(t, e, m, "return getfenv(function() end) == _G", "0"); !reflect.DeepEqual(got, commands.Int(1)) {
		t.Errorf("getfenv of a Lua function: %v", got)
	}
	// A script that replaces the environment of loadstring's chunks
	// (setfenv(0, t)) leaves a state that is not reused: the next script's
	// chunks would read and write t.
	eval(t, e, m, "setfenv(0, {x = 1})", "0")
	if got := errText(eval(t, e, m, "return loadstring('return x')()", "0")); !strings.Contains(got, "nonexistent global variable 'x'") {
		t.Errorf("setfenv(0) reached the next script: %q", got)
	}
	// The libraries work through their read-only tables.
	got := eval(t, e, m, "return {string.upper('a'), ('b'):upper(), table.concat({1,2}, ','), math.floor(2.5), bit.band(7, 3), bit.tohex(255, 2), cjson.encode({1,2,3}), cjson.decode('{\"a\":[1,2]}').a[2]}", "0")
	want := commands.Array{commands.Bulk("A"), commands.Bulk("B"), commands.Bulk("1,2"), commands.Int(2), commands.Int(3), commands.Bulk("ff"), commands.Bulk("[1,2,3]"), commands.Int(2)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("libraries: %v, want %v", got, want)
	}
	if got := eval(t, e, m, "return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')", "0"); !reflect.DeepEqual(got, commands.Bulk("0 -5000 -1 0.0003 1023.2 0")) {
		t.Errorf("cjson numbers: %v", got)
	}
}

// glob matches s against a pattern whose only special character is *.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return s == ""
}

// TestRandom: math.random is Redis's generator, seeded by randomseed,
// not reset per script.
func TestRandom(t *testing.T) {
	e, m := newEngine(t), newMem()
	seeded := "math.randomseed(ARGV[1]); return tostring(math.random())"
	a, b, c := eval(t, e, m, seeded, "0", "10"), eval(t, e, m, seeded, "0", "10"), eval(t, e, m, seeded, "0", "20")
	if !reflect.DeepEqual(a, b) || reflect.DeepEqual(b, c) {
		t.Fatalf("seed 10 twice: %v %v; seed 20: %v", a, b, c)
	}
	r1, r2 := eval(t, e, m, "return tostring(math.random())", "0"), eval(t, e, m, "return tostring(math.random())", "0")
	if reflect.DeepEqual(r1, r2) {
		t.Fatalf("math.random gave %v twice: reseeded per script", r1)
	}
	var rng lrand48
	rng.seed(0)
	// redisLrand48 after redisSrand48(0) is C's lrand48 after srand48(0).
	if got := []uint64{rng.next(), rng.next()}; got[0] != 366850414 || got[1] != 1610402240 {
		t.Fatalf("lrand48 from seed 0: %v", got)
	}
}

// TestWritesAreOneEntry: a script's writes are one list of ops, each
// command seeing the ones before it; a script that only reads has none;
// writes made before an error stand.
func TestWritesAreOneEntry(t *testing.T) {
	e, m := newEngine(t), newMem()
	a := [][]byte{[]byte("EVAL"), []byte("redis.call('set', KEYS[1], '1'); redis.call('incr', KEYS[1]); redis.call('hset', 'h', 'f', redis.call('get', KEYS[1])); return redis.call('get', KEYS[1])"), []byte("1"), []byte("k")}
	spec, _ := commands.Lookup(a[0])
	res, err := spec.Exec(&commands.Ctx{NowMs: m.now, Scripts: e}, m, a)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Reply, commands.Bulk("2")) || len(res.Ops) < 3 {
		t.Fatalf("reply %v, ops %v", res.Reply, res.Ops)
	}
	m.apply(t, res.Ops)
	if got := do(t, e, m, "HGET", "h", "f"); !reflect.DeepEqual(got, commands.Bulk("2")) {
		t.Fatalf("HGET h f = %v", got)
	}
	a[1] = []byte("return redis.call('get', KEYS[1])")
	if res, _ := spec.Exec(&commands.Ctx{NowMs: m.now, Scripts: e}, m, a); len(res.Ops) != 0 {
		t.Fatalf("a read-only script logged %v", res.Ops)
	}
	if r := eval(t, e, m, "redis.call('set', 'x', 'y'); error('late')", "0"); !hasPrefix(r, "ERR user_script:1: late") {
		t.Fatalf("reply %v", r)
	}
	if got := do(t, e, m, "GET", "x"); !reflect.DeepEqual(got, commands.Bulk("y")) {
		t.Fatalf("a write before the error was dropped: GET x = %v", got)
	}
}

// TestCache: EVALSHA, SCRIPT LOAD/EXISTS/FLUSH.
func TestCache(t *testing.T) {
	e, m := newEngine(t), newMem()
	do(t, e, m, "SET", "mykey", "myval")
	eval(t, e, m, "return redis.call('get',KEYS[1])", "1", "mykey")
	sha := "fd758d1589d044dd850a6f05d52f2eefd27f033f"
	for _, s := range []string{sha, strings.ToUpper(sha)} {
		if got := do(t, e, m, "EVALSHA", s, "1", "mykey"); !reflect.DeepEqual(got, commands.Bulk("myval")) {
			t.Fatalf("EVALSHA %s: %v", s, got)
		}
	}
	if got := do(t, e, m, "EVALSHA", "NotValidShaSUM", "0"); !reflect.DeepEqual(got, ReplyNoScript) {
		t.Fatalf("EVALSHA of a bad SHA: %v", got)
	}
	loaded, r := e.Load([]byte("return 'loaded'"))
	if r != nil || loaded != "b534286061d4b9e4026607613b95c06c06015ae8" {
		t.Fatalf("Load: %s %v", loaded, r)
	}
	if got := do(t, e, m, "EVALSHA_RO", loaded, "0"); !reflect.DeepEqual(got, commands.Bulk("loaded")) {
		t.Fatalf("EVALSHA_RO: %v", got)
	}
	if got := e.Exists([][]byte{[]byte(loaded), []byte("a27e7e8a43702b7046d4f6a7ccf5b60cef6b9bda")}); !reflect.DeepEqual(got, []bool{true, false}) {
		t.Fatalf("Exists: %v", got)
	}
	if _, r := e.Load([]byte("return +")); !hasPrefix(r, "ERR Error compiling script") {
		t.Fatalf("Load of a bad script: %v", r)
	}
	e.Flush()
	if got := do(t, e, m, "EVALSHA", sha, "1", "mykey"); !reflect.DeepEqual(got, ReplyNoScript) {
		t.Fatalf("EVALSHA after FLUSH: %v", got)
	}
}

// TestLog: redis.log goes to slog at the level's slog level.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	e, m := New(Config{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}), newMem()
	eval(t, e, m, "redis.log(redis.LOG_WARNING, 'disk', 'full', 3); redis.log(redis.LOG_DEBUG, 'dbg')", "0")
	if s := buf.String(); !strings.Contains(s, `level=WARN msg="disk full 3"`) || !strings.Contains(s, "level=DEBUG msg=dbg") {
		t.Fatalf("log: %s", s)
	}
	for body, want := range map[string]string{
		"redis.log(1)":        "ERR redis.log() requires two arguments or more.",
		"redis.log('x', 'y')": "ERR First argument must be a number (log level).",
		"redis.log(9, 'y')":   "ERR Invalid debug level.",
		"redis.setresp(4)":    "ERR RESP version must be 2 or 3.",
	} {
		if got := errText(eval(t, e, m, body, "0")); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q", body, got)
		}
	}
}

// TestToLuaStopsAtNil is the conversion's own check: a Lua array built
// from a reply with a hole keeps its later elements where they were.
func TestToLuaStopsAtNil(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	tbl := toLua(L, commands.Array{commands.Bulk("a"), commands.Null, commands.Bulk("c")}, 3).(*lua.LTable)
	if tbl.RawGetInt(3) != lua.LString("c") || tbl.RawGetInt(2) != lua.LNil {
		t.Fatalf("RESP3 array with a null: %v %v %v", tbl.RawGetInt(1), tbl.RawGetInt(2), tbl.RawGetInt(3))
	}
	// And back: the reply stops at the first nil.
	if got := toReply(L, tbl, 2, 0); !reflect.DeepEqual(got, commands.Array{commands.Bulk("a")}) {
		t.Fatalf("back to a reply: %v", got)
	}
}

// TestCJSON: round trips and lua-cjson's settings, as Redis's own smoke
// test uses them.
func TestCJSON(t *testing.T) {
	e, m := newEngine(t), newMem()
	body := `
local some_map = {s1="Some string", n1=100, a1={"Some","String","Array"}, b1=true, b2=false}
local decoded = cjson.decode(cjson.encode(some_map))
assert(decoded.s1 == "Some string" and decoded.n1 == 100 and decoded.a1[3] == "Array" and decoded.b2 == false)
local t1 = cjson.decode(cjson.encode({one="one", [1]="one"}))
assert(t1["one"] == "one" and t1["1"] == "one")
assert(cjson.encode({[1]="one", [2]="two"}) == '["one","two"]')
assert(cjson.encode({}) == '{}')
assert(cjson.decode('[1,null]')[2] == cjson.null)
local bad = {}
bad[false] = "false"
assert(pcall(cjson.encode, bad) == false)
cjson.encode_max_depth(1)
assert(pcall(cjson.encode, some_map) == false)
cjson.decode_max_depth(1)
assert(pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}') == false)
assert(pcall(cjson.encode, {num1=0/0}) == false)
cjson.encode_invalid_numbers(true)
assert(pcall(cjson.encode, {num1=0/0}) == true)
cjson.decode_max_depth(1000)
cjson.encode_max_depth(1000)
cjson.encode_invalid_numbers(false)
return 1`
	if got := eval(t, e, m, body, "0"); !reflect.DeepEqual(got, commands.Int(1)) {
		t.Fatalf("cjson: %v", got)
	}
}

// intact reports whether the state is as newVM left it (KEYS and ARGV
// aside): no protected table has anything a script put there.
func (m *vm) intact() bool {
	for _, p := range m.protected {
		for k, _ := p.Next(lua.LNil); k != lua.LNil; k, _ = p.Next(k) {
			if p != m.env || (k != lua.LString("KEYS") && k != lua.LString("ARGV")) {
				return false
			}
		}
	}
	return true
}

// TestLibraryFunctions pins the functions a script can reach: a state is
// pooled unchecked because every library function that writes a table
// without its metamethods (rawset, setmetatable, table.insert; table.remove
// and table.sort move array elements only) refuses the protected tables.
// A gopher-lua with a function not listed here fails this test: see
// whether it writes a table it is given, and refuse the protected ones if
// it does, before adding it.
func TestLibraryFunctions(t *testing.T) {
	m := newVM(New(Config{}), 0)
	var got []string
	var walk func(prefix string, tb *lua.LTable)
	walk = func(prefix string, tb *lua.LTable) {
		tb.ForEach(func(k, v lua.LValue) {
			name := prefix + lua.LVAsString(k)
			switch v := v.(type) {
			case *lua.LFunction:
				got = append(got, name)
			case *lua.LTable:
				if prefix == "" && name != "_G" {
					// A library: scripts see its read-only proxy.
					walk(name+".", v.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable))
				}
			}
		})
	}
	walk("", m.base)
	slices.Sort(got)
	want := []string{
		"assert", "bit.arshift", "bit.band", "bit.bnot", "bit.bor", "bit.bswap", "bit.bxor", "bit.lshift", "bit.rol", "bit.ror", "bit.rshift", "bit.tobit", "bit.tohex",
		"cjson.decode", "cjson.decode_max_depth", "cjson.encode", "cjson.encode_invalid_numbers", "cjson.encode_keep_buffer", "cjson.encode_max_depth",
		"cmsgpack.pack", "cmsgpack.unpack", "cmsgpack.unpack_limit", "cmsgpack.unpack_one",
		"collectgarbage", "coroutine.create", "coroutine.resume", "coroutine.running", "coroutine.status", "coroutine.wrap", "coroutine.yield",
		"error", "getfenv", "getmetatable", "ipairs", "load", "loadstring",
		"math.abs", "math.acos", "math.asin", "math.atan", "math.atan2", "math.ceil", "math.cos", "math.cosh", "math.deg", "math.exp", "math.floor", "math.fmod", "math.frexp", "math.ldexp", "math.log", "math.log10", "math.max", "math.min", "math.mod", "math.modf", "math.pow", "math.rad", "math.random", "math.randomseed", "math.sin", "math.sinh", "math.sqrt", "math.tan", "math.tanh",
		"newproxy", "next", "pairs", "pcall", "rawequal", "rawget", "rawset",
		"redis.call", "redis.error_reply", "redis.log", "redis.pcall", "redis.replicate_commands", "redis.set_repl", "redis.setresp", "redis.sha1hex", "redis.status_reply",
		"select", "setfenv", "setmetatable",
		"string.byte", "string.char", "string.find", "string.format", "string.gfind", "string.gmatch", "string.gsub", "string.len", "string.lower", "string.match", "string.rep", "string.reverse", "string.sub", "string.upper",
		"table.concat", "table.getn", "table.insert", "table.maxn", "table.remove", "table.sort",
		"tonumber", "tostring", "type", "unpack", "xpcall",
	}
	if !slices.Equal(got, want) {
		t.Errorf("library functions:\n got %q\nwant %q", got, want)
	}
}

// TestScoresInScripts: a score a command answers (ZSCORE, ZINCRBY,
// ZPOPMIN's) reaches a script as Redis 7 hands it over: the string RESP2
// writes, or under redis.setresp(3) a table {double=n}, which a script
// may return as the score. It reached scripts as false.
func TestScoresInScripts(t *testing.T) {
	e, m := newEngine(t), newMem()
	eval(t, e, m, `redis.call('zadd', KEYS[1], 1.5, 'a'); redis.call('zadd', KEYS[1], 2, 'b')`, "1", "z")
	for _, tc := range []struct {
		body string
		want commands.Reply
	}{
		{`return redis.call('zscore', KEYS[1], 'a')`, commands.Bulk("1.5")},
		{`return type(redis.call('zscore', KEYS[1], 'b'))`, commands.Bulk("string")},
		{`return redis.call('zincrby', KEYS[1], 0, 'b')`, commands.Bulk("2")},
		{`redis.setresp(3); local s = redis.call('zscore', KEYS[1], 'a'); return tostring(s.double)`, commands.Bulk("1.5")},
		{`redis.setresp(3); return redis.call('zscore', KEYS[1], 'a')`, commands.Double(1.5)},
		{`return redis.call('zpopmin', KEYS[1])`, commands.Array{commands.Bulk("a"), commands.Bulk("1.5")}},
	} {
		if got := eval(t, e, m, tc.body, "1", "z"); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %#v, want %#v", tc.body, got, tc.want)
		}
	}
}
