package resp

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commands"
)

// pipeThen is a fakeBackend whose writes commit at once through both
// PipelineBackend and ThenBackend: a lone write's reply is owed (written
// by the write path's goroutine), a pipelined one's drained.
type pipeThen struct{ *fakeBackend }

func (p *pipeThen) Submit(ctx context.Context, spec *commands.Spec, args [][]byte) func() (commands.Reply, uint64, error) {
	reply, lsn, err := p.fakeBackend.Write(ctx, spec, args)
	return func() (commands.Reply, uint64, error) { return reply, lsn, err }
}

func (p *pipeThen) SubmitThen(ctx context.Context, spec *commands.Spec, args [][]byte, done func(commands.Reply, uint64, error)) {
	done(p.fakeBackend.Write(ctx, spec, args))
}

// info sends INFO with args and returns its text.
func (c *rawClient) info(t *testing.T, args ...string) string {
	t.Helper()
	c.send(t, append([]string{"INFO"}, args...)...)
	head := c.line(t)
	n, err := strconv.Atoi(strings.TrimPrefix(head, "$"))
	if err != nil || !strings.HasPrefix(head, "$") {
		t.Fatalf("INFO answered %q", head)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	return string(body[:n])
}

// infoField returns the value of name in an INFO text, "" if absent.
func infoField(text, name string) string {
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// Each way a command is served counts it once and its error once: run to
// completion on the connection's goroutine, started in a pipeline and
// answered when drained, and handed to the write path with its reply
// owed. A wrong number of arguments is a rejection (no call), an error
// from running a failure; every error reply counts under its code.
func TestCommandAndErrorStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Backend
	}{
		{"to completion", newFake()},
		{"pipelined", &instantPipe{newFake()}},
		{"owed", &pipeThen{newFake()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startServer(t, tc.b, Config{})
			c := rawConn(t, addr)
			c.send(t, "SET", "k", "abc")
			c.expect(t, "+OK")
			c.send(t, "INCR", "k")
			c.expect(t, "-ERR value is not an integer or out of range")
			c.send(t, "get")
			c.expect(t, "-ERR wrong number of arguments for 'get' command")
			c.write(t, string(encode("SET", "k2", "x"))+string(encode("INCR", "k2")))
			c.expect(t, "+OK", "-ERR value is not an integer or out of range")
			c.send(t, "NOSUCHCOMMAND")
			if got := c.line(t); !strings.HasPrefix(got, "-ERR unknown command") {
				t.Fatalf("unknown command answered %q", got)
			}

			stats := c.info(t, "commandstats")
			for name, want := range map[string]string{
				"cmdstat_set":  "calls=2,*,rejected_calls=0,failed_calls=0",
				"cmdstat_incr": "calls=2,*,rejected_calls=0,failed_calls=2",
				"cmdstat_get":  "calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0",
			} {
				got := infoField(stats, name)
				pre, post, _ := strings.Cut(want, "*")
				if !strings.HasPrefix(got, pre) || !strings.HasSuffix(got, post) {
					t.Errorf("%s:%s, want %s", name, got, want)
				}
			}
			if strings.Contains(stats, "nosuchcommand") {
				t.Errorf("an unknown command has stats:\n%s", stats)
			}
			if got := infoField(c.info(t, "errorstats"), "errorstat_ERR"); got != "count=4" {
				t.Errorf("errorstat_ERR:%s, want count=4 (two INCRs, the GET, the unknown command)", got)
			}
			st := c.info(t, "stats")
			if got := infoField(st, "total_error_replies"); got != "4" {
				t.Errorf("total_error_replies:%s, want 4", got)
			}
			if got := infoField(st, "total_connections_received"); got != "1" {
				t.Errorf("total_connections_received:%s, want 1", got)
			}
			// SET, INCR, SET, INCR and the two INFOs before this one.
			if got := infoField(st, "total_commands_processed"); got != "6" {
				t.Errorf("total_commands_processed:%s, want 6", got)
			}

			c.send(t, "CONFIG", "RESETSTAT")
			c.expect(t, "+OK")
			stats = c.info(t, "commandstats")
			if infoField(stats, "cmdstat_set") != "" || !strings.HasPrefix(infoField(stats, "cmdstat_config|resetstat"), "calls=1,") {
				t.Errorf("after CONFIG RESETSTAT:\n%s", stats)
			}
			if got := c.info(t, "errorstats"); got != "# Errorstats\r\n\r\n" {
				t.Errorf("errorstats after CONFIG RESETSTAT: %q", got)
			}
		})
	}
}

// INFO's sections: the default set has no commandstats, all has it, a
// named section alone is alone, and each section comes once.
func TestInfoSections(t *testing.T) {
	_, addr := startServer(t, newFake(), Config{})
	c := rawConn(t, addr)
	headers := func(text string) []string {
		var hs []string
		for _, line := range strings.Split(text, "\r\n") {
			if strings.HasPrefix(line, "# ") {
				hs = append(hs, line[2:])
			}
		}
		return hs
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Server Stats CPU Errorstats"},
		{[]string{"default"}, "Server Stats CPU Errorstats"},
		{[]string{"all"}, "Server Stats CPU Commandstats Errorstats"},
		{[]string{"everything"}, "Server Stats CPU Commandstats Errorstats"},
		{[]string{"cpu"}, "CPU"},
		{[]string{"CPU", "all"}, "Server Stats CPU Commandstats Errorstats"},
		{[]string{"commandSTATS"}, "Commandstats"},
		{[]string{"errorstats", "cpu"}, "CPU Errorstats"},
	} {
		if got := strings.Join(headers(c.info(t, tc.args...)), " "); got != tc.want {
			t.Errorf("INFO %v: sections %q, want %q", tc.args, got, tc.want)
		}
	}
	if text := c.info(t, "cpu"); infoField(text, "used_cpu_user") == "" || infoField(text, "used_cpu_sys_children") == "" {
		t.Errorf("INFO cpu lacks Redis's fields:\n%s", text)
	}
}

// An error's code is the first word of its text when a space follows it
// within 32 bytes, else ERR (Redis's rule), and no more than
// maxErrorCodes codes are kept.
func TestErrorCodes(t *testing.T) {
	st := newStats(nil)
	for _, msg := range []string{"MY_ERR_CODE custom msg", "", "ERR", "WRONGTYPE Operation against a key", strings.Repeat("X", 40) + " far"} {
		st.errorReply(msg)
	}
	var sb strings.Builder
	st.writeErrorStats(&sb)
	want := "# Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_MY_ERR_CODE:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n"
	if sb.String() != want {
		t.Errorf("errorstats:\n%q, want\n%q", sb.String(), want)
	}
	for i := range 2 * maxErrorCodes {
		st.errorReply(fmt.Sprintf("CODE%d x", i))
	}
	if n := len(st.codes); n != maxErrorCodes {
		t.Errorf("%d codes kept, want %d", n, maxErrorCodes)
	}
	if n := st.errors.Load(); n != 5+2*maxErrorCodes {
		t.Errorf("total_error_replies %d, want %d", n, 5+2*maxErrorCodes)
	}
}

// slowlogEntries reads SLOWLOG GET -1 as (usec, args) pairs, newest first.
func slowlogEntries(t *testing.T, ctx context.Context, c *redis.Client) [][2]any {
	t.Helper()
	raw, err := c.Do(ctx, "SLOWLOG", "GET", "-1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]any
	for _, e := range raw {
		f := e.([]any)
		if len(f) != 6 {
			t.Fatalf("slowlog entry of %d fields: %v", len(f), f)
		}
		var args []string
		for _, a := range f[3].([]any) {
			args = append(args, a.(string))
		}
		out = append(out, [2]any{f[2].(int64), args})
	}
	return out
}

// SLOWLOG: what passes slowlog-log-slower-than, newest first, arguments
// cut as Redis cuts them, AUTH never, the length bound, RESET; a call's
// time leaves out what it spent blocked (BlockedCall), so a blocking
// command that waited is not slow, while a write held as long is.
func TestSlowlog(t *testing.T) {
	ctx := context.Background()
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := newClient(t, addr, 2)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err())
	must(c.Do(ctx, "SLOWLOG", "RESET").Err())
	long := strings.Repeat("v", 200)
	must(c.Set(ctx, "k", long, 0).Err())
	many := []any{"MGET"}
	for i := range 40 {
		many = append(many, fmt.Sprint("k", i))
	}
	must(c.Do(ctx, many...).Err())
	_ = c.Do(ctx, "AUTH", "secret").Err()

	got := slowlogEntries(t, ctx, c)
	if len(got) != 3 {
		t.Fatalf("%d entries, want MGET, SET, SLOWLOG RESET (no AUTH): %v", len(got), got)
	}
	mget, set := got[0][1].([]string), got[1][1].([]string)
	if len(mget) != 32 || mget[0] != "MGET" || mget[31] != "... (10 more arguments)" {
		t.Errorf("MGET of 40 keys logged as %d arguments, last %q", len(mget), mget[len(mget)-1])
	}
	if len(set) != 3 || set[2] != strings.Repeat("v", 128)+"... (72 more bytes)" {
		t.Errorf("SET of a 200-byte value logged as %q", set)
	}
	if n := c.Do(ctx, "SLOWLOG", "LEN").Val(); n != int64(4) { // and the GET before
		t.Errorf("SLOWLOG LEN %v, want 4", n)
	}
	must(c.ConfigSet(ctx, "slowlog-max-len", "2").Err())
	if n := c.Do(ctx, "SLOWLOG", "LEN").Val(); n != int64(2) {
		t.Errorf("SLOWLOG LEN %v after slowlog-max-len 2", n)
	}

	// A write held 50 ms from before it was sent is slow; a WAIT blocked
	// 300 ms is not.
	must(c.ConfigSet(ctx, "slowlog-log-slower-than", "40000").Err())
	must(c.Do(ctx, "SLOWLOG", "RESET").Err())
	hold := make(chan struct{})
	b.set(func(b *fakeBackend) { b.block = hold })
	time.AfterFunc(50*time.Millisecond, func() { close(hold) })
	must(c.Set(ctx, "k", "v", 0).Err())
	b.set(func(b *fakeBackend) {
		b.block = nil
		b.waitBlocks, b.waitIsBlockedCall = true, true
		b.waitStarted, b.waitEnded = make(chan struct{}, 1), make(chan error, 1)
	})
	must(c.Do(ctx, "WAIT", "1", "300").Err())
	got = slowlogEntries(t, ctx, c)
	if len(got) != 1 || got[0][1].([]string)[0] != "set" || got[0][0].(int64) < 40000 {
		t.Errorf("slowlog after a held SET and a blocked WAIT: %v, want the SET alone, >= 40000 usec", got)
	}

	must(c.ConfigSet(ctx, "slowlog-log-slower-than", "-1").Err())
	must(c.Do(ctx, "SLOWLOG", "RESET").Err())
	must(c.Set(ctx, "k", "v", 0).Err())
	if n := c.Do(ctx, "SLOWLOG", "LEN").Val(); n != int64(0) {
		t.Errorf("SLOWLOG LEN %v with the log off", n)
	}
	if err := c.Do(ctx, "SLOWLOG", "LEN", "x").Err(); err == nil || err.Error() != "ERR wrong number of arguments for 'slowlog|len' command" {
		t.Errorf("SLOWLOG LEN x: %v", err)
	}
}
