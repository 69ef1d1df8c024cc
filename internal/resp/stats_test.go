package resp

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

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
