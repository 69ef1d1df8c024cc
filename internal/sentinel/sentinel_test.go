package sentinel

import (
	"strconv"
	"strings"
	"testing"
)

// testState is a leader, a healthy replica three entries behind, a down
// replica, and one other orchestrator.
func testState() State {
	return State{
		Name:      "tandem",
		Epoch:     7,
		LeaderLSN: 100,
		Leader:    &Node{ID: "n1", Addr: "10.0.0.1:6379", LastHeardMs: 12},
		Replicas: []Node{
			{ID: "n2", Addr: "10.0.0.2:6379", LagLSN: 3, LastHeardMs: 5},
			{ID: "n3", Addr: "10.0.0.3:6379", Down: true, LastHeardMs: 9000},
		},
		Sentinels: []Peer{{ID: "o2", Addr: "10.0.1.2:26380"}},
	}
}

var (
	wantMaster = bulks(
		"name", "tandem", "ip", "10.0.0.1", "port", "6379", "runid", "n1", "flags", "master",
		"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
		"last-ok-ping-reply", "12", "last-ping-reply", "12", "down-after-milliseconds", "30000",
		"info-refresh", "12", "role-reported", "master", "role-reported-time", "0",
		"config-epoch", "7", "num-slaves", "2", "num-other-sentinels", "1", "quorum", "2",
		"failover-timeout", "180000", "parallel-syncs", "1")
	wantReplicas = arr(
		bulks("name", "10.0.0.2:6379", "ip", "10.0.0.2", "port", "6379", "runid", "n2", "flags", "slave",
			"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
			"last-ok-ping-reply", "5", "last-ping-reply", "5", "down-after-milliseconds", "30000",
			"info-refresh", "5", "role-reported", "slave", "role-reported-time", "0",
			"master-link-down-time", "0", "master-link-status", "ok",
			"master-host", "10.0.0.1", "master-port", "6379", "slave-priority", "100",
			"slave-repl-offset", "97", "replica-announced", "1"),
		bulks("name", "10.0.0.3:6379", "ip", "10.0.0.3", "port", "6379", "runid", "n3", "flags", "s_down,slave",
			"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
			"last-ok-ping-reply", "9000", "last-ping-reply", "9000", "s-down-time", "9000",
			"down-after-milliseconds", "30000",
			"info-refresh", "9000", "role-reported", "slave", "role-reported-time", "0",
			"master-link-down-time", "9000", "master-link-status", "err",
			"master-host", "10.0.0.1", "master-port", "6379", "slave-priority", "100",
			"slave-repl-offset", "100", "replica-announced", "1"))
	wantSentinels = arr(bulks(
		"name", "o2", "ip", "10.0.1.2", "port", "26380", "runid", "o2", "flags", "sentinel",
		"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
		"last-ok-ping-reply", "0", "last-ping-reply", "0", "down-after-milliseconds", "30000",
		"last-hello-message", "0", "voted-leader", "?", "voted-leader-epoch", "0"))
)

func managed(sub string) string { return "-" + errManaged(sub) }

// Redis 7's texts, which the resp layer answers on every endpoint.
const (
	errNoPassword    = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errWrongPass     = "WRONGPASS invalid username-password pair or user is disabled."
	errBadClientName = "ERR Client names cannot contain spaces, newlines or special characters."
)

// TestReplies runs every command on one connection, in order, so it also
// shows that errors leave the connection serving.
func TestReplies(t *testing.T) {
	f := start(t, testState(), Config{ID: "o1"})
	c := dialRaw(t, f.addr)
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "+PONG"},
		{[]string{"ping", "hi"}, `"hi"`},
		{[]string{"PING", "a", "b"}, "-ERR wrong number of arguments for 'ping' command"},

		{[]string{"SENTINEL", "get-master-addr-by-name", "tandem"}, bulks("10.0.0.1", "6379")},
		{[]string{"sentinel", "GET-MASTER-ADDR-BY-NAME", "tandem"}, bulks("10.0.0.1", "6379")},
		{[]string{"SENTINEL", "get-master-addr-by-name", "other"}, "(nil array)"},
		{[]string{"SENTINEL", "get-master-addr-by-name"}, "-ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command"},
		{[]string{"SENTINEL", "master", "tandem"}, wantMaster},
		{[]string{"SENTINEL", "master", "other"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "masters"}, arr(wantMaster)},
		{[]string{"SENTINEL", "masters", "x"}, "-ERR wrong number of arguments for 'sentinel|masters' command"},
		{[]string{"SENTINEL", "replicas", "tandem"}, wantReplicas},
		{[]string{"SENTINEL", "slaves", "tandem"}, wantReplicas},
		{[]string{"SENTINEL", "replicas", "other"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "sentinels", "tandem"}, wantSentinels},
		{[]string{"SENTINEL", "sentinels", "other"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "myid"}, `"o1"`},

		{[]string{"SENTINEL", "failover", "tandem"}, managed("failover")},
		{[]string{"SENTINEL", "failover", "other"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "ckquorum", "tandem"}, managed("ckquorum")},
		{[]string{"SENTINEL", "reset", "*"}, managed("reset")},
		{[]string{"SENTINEL", "set", "tandem", "quorum", "1"}, managed("set")},
		{[]string{"SENTINEL", "monitor", "m", "10.0.0.9", "6379", "2"}, managed("monitor")},
		{[]string{"SENTINEL", "remove", "tandem"}, managed("remove")},
		{[]string{"SENTINEL", "is-master-down-by-addr", "10.0.0.1", "6379", "7", "*"}, managed("is-master-down-by-addr")},
		{[]string{"SENTINEL", "flushconfig"}, managed("flushconfig")},
		{[]string{"SENTINEL", "HELP"}, "[+" + strings.Join(sentinelHelp, " +") + "]"},
		{[]string{"SENTINEL", "nosuch"}, "-ERR unknown subcommand 'nosuch'. Try SENTINEL HELP."},
		{[]string{"SENTINEL"}, "-ERR wrong number of arguments for 'sentinel' command"},

		{[]string{"ROLE"}, arr(`"sentinel"`, bulks("tandem"))},
		{[]string{"ROLE", "x"}, "-ERR wrong number of arguments for 'role' command"},
		{[]string{"INFO", "sentinel"}, strconv.Quote("# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n" +
			"sentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\n" +
			"sentinel_simulate_failure_flags:0\r\n" +
			"master0:name=tandem,status=ok,address=10.0.0.1:6379,slaves=2,sentinels=2\r\n")},
		{[]string{"INFO", "nosuch"}, `""`},

		{[]string{"HELLO", "3"}, "-NOPROTO unsupported protocol version"},
		{[]string{"HELLO", "x"}, "-ERR Protocol version is not an integer or out of range"},
		{[]string{"HELLO", "2", "AUTH", "u", "p"}, "-" + errWrongPass},
		{[]string{"HELLO", "2", "FOO"}, "-ERR Syntax error in HELLO option 'FOO'"},
		{[]string{"HELLO", "2", "SETNAME", "app"}, arr(`"server"`, `"redis"`, `"version"`, `"7.2.0"`,
			`"proto"`, ":2", `"id"`, ":1", `"mode"`, `"sentinel"`, `"role"`, `"master"`, `"modules"`, "[]")},
		{[]string{"CLIENT", "GETNAME"}, `"app"`},
		{[]string{"CLIENT", "SETNAME", "other"}, "+OK"},
		{[]string{"CLIENT", "GETNAME"}, `"other"`},
		{[]string{"CLIENT", "SETNAME", "a b"}, "-" + errBadClientName},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis(,go1.26)"}, "+OK"},
		{[]string{"CLIENT", "SETINFO", "lib-ver", "9.23.0"}, "+OK"},
		{[]string{"CLIENT", "SETINFO", "foo", "x"}, "-ERR Unrecognized option 'foo'"},
		{[]string{"CLIENT", "ID"}, ":1"},
		{[]string{"CLIENT", "nosuch"}, "-ERR unknown subcommand 'nosuch'. Try CLIENT HELP."},
		{[]string{"CLIENT"}, "-ERR wrong number of arguments for 'client' command"},
		{[]string{"AUTH", "secret"}, "-" + errNoPassword},
		{[]string{"AUTH", "u", "p"}, "-" + errWrongPass},
		{[]string{"AUTH", "default", "p"}, "+OK"},
		{[]string{"ECHO", "hi"}, `"hi"`},
		{[]string{"SELECT", "0"}, "+OK"},
		{[]string{"AUTH"}, "-ERR wrong number of arguments for 'auth' command"},

		{[]string{"UNSUBSCRIBE"}, arr(`"unsubscribe"`, "(nil)", ":0")},
		{[]string{"PUNSUBSCRIBE"}, arr(`"punsubscribe"`, "(nil)", ":0")},

		{[]string{"NOSUCH", "x", "y"}, "-ERR unknown command 'NOSUCH', with args beginning with: 'x' 'y' "},
		{[]string{"GET", "k"}, "-ERR unknown command 'GET', with args beginning with: 'k' "},
		{[]string{"PING"}, "+PONG"},
	} {
		if got := c.do(tc.cmd...); got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.cmd, got, tc.want)
		}
	}
}

// TestUnsubscribeNamed answers one reply per channel, as Redis does.
func TestUnsubscribeNamed(t *testing.T) {
	f := start(t, testState(), Config{})
	c := dialRaw(t, f.addr)
	c.send("UNSUBSCRIBE", "a", "b")
	for _, want := range []string{bulks("unsubscribe", "a") + "", bulks("unsubscribe", "b")} {
		want = strings.TrimSuffix(want, "]") + " :0]"
		if got := c.read(); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestInfoAll has the three sections, in order.
func TestInfoAll(t *testing.T) {
	f := start(t, testState(), Config{ID: "o1"})
	c := dialRaw(t, f.addr)
	got, err := strconv.Unquote(c.do("INFO"))
	if err != nil {
		t.Fatal(err)
	}
	_, port := splitAddr(f.addr)
	for _, want := range []string{"# Server\r\n", "redis_mode:sentinel\r\n", "run_id:o1\r\n", "tcp_port:" + port + "\r\n",
		"\r\n# Clients\r\nconnected_clients:1\r\n", "\r\n# Sentinel\r\nsentinel_masters:1\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("INFO lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "# Server") > strings.Index(got, "# Clients") || strings.Index(got, "# Clients") > strings.Index(got, "# Sentinel") {
		t.Errorf("INFO sections out of order:\n%s", got)
	}
}

// TestNoLeader: during a failover the last leader is still reported, down
// and with failover_in_progress, as Redis reports its old master; with no
// leader ever seen the master has no address.
func TestNoLeader(t *testing.T) {
	f := start(t, testState(), Config{})
	c := dialRaw(t, f.addr)
	c.do("PING")
	if got, want := c.do("SENTINEL", "get-master-addr-by-name", "tandem"), bulks("10.0.0.1", "6379"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	st := testState()
	st.Leader = nil
	f.change(st)
	if got, want := c.do("SENTINEL", "get-master-addr-by-name", "tandem"), bulks("10.0.0.1", "6379"); got != want {
		t.Errorf("during failover: got %s, want %s", got, want)
	}
	m := c.do("SENTINEL", "master", "tandem")
	if !strings.Contains(m, `"flags" "s_down,o_down,master,failover_in_progress" "link-pending-commands" "0" "link-refcount" "1" "failover-state" "select_slave" "last-ping-sent"`) ||
		!strings.Contains(m, `"last-ping-reply" "12" "s-down-time" "12" "o-down-time" "12" "down-after-milliseconds"`) {
		t.Errorf("during failover: master %s", m)
	}
	if got := c.do("INFO", "sentinel"); !strings.Contains(got, "status=odown,address=10.0.0.1:6379") {
		t.Errorf("during failover: INFO %s", got)
	}

	fresh := start(t, st, Config{})
	c = dialRaw(t, fresh.addr)
	if got := c.do("SENTINEL", "get-master-addr-by-name", "tandem"); got != "(nil array)" {
		t.Errorf("never a leader: got %s", got)
	}
	if m := c.do("SENTINEL", "master", "tandem"); !strings.Contains(m, `"ip" "" "port" "0"`) {
		t.Errorf("never a leader: master %s", m)
	}
	if r := c.do("SENTINEL", "replicas", "tandem"); !strings.Contains(r, `"master-host" "?" "master-port" "0"`) {
		t.Errorf("never a leader: replicas %s", r)
	}
}

// TestDefaultName: an unnamed State is "tandem".
func TestDefaultName(t *testing.T) {
	st := testState()
	st.Name = ""
	f := start(t, st, Config{})
	c := dialRaw(t, f.addr)
	if got, want := c.do("SENTINEL", "get-master-addr-by-name", DefaultName), bulks("10.0.0.1", "6379"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestQuit(t *testing.T) {
	f := start(t, testState(), Config{})
	c := dialRaw(t, f.addr)
	c.send("QUIT")
	c.send("PING")
	if got := c.read(); got != "+OK" {
		t.Fatalf("QUIT: %s", got)
	}
	if _, err := c.rd.ReadByte(); err == nil {
		t.Fatal("connection still open after QUIT")
	}
}
