package resp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"
)

// bigGuarded is guarded with the stand-ins of bigarg.go on.
func bigGuarded(data []byte, chunk int, lim limits) (*chunkConn, *guardConn) {
	cc, g := guarded(data, chunk, lim)
	g.bigTag = newBigTag()
	return cc, g
}

// readAll reads every command through redcon over g, swapping stand-ins
// as serveCommand does, until EOF or an error; largest is the largest
// buffer redcon read into.
func readAll(g *guardConn) (cmds [][][]byte, largest int, err error) {
	rd := redcon.NewReader(readerFunc(func(p []byte) (int, error) {
		largest = max(largest, len(p))
		return g.Read(p)
	}))
	for {
		got, err := rd.ReadCommands()
		for _, c := range got {
			cmds = append(cmds, g.takeBig(c.Args))
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return cmds, largest, err
		}
	}
}

func argsOf(cmds ...[]string) [][][]byte {
	var out [][][]byte
	for _, c := range cmds {
		var a [][]byte
		for _, s := range c {
			a = append(a, []byte(s))
		}
		out = append(out, a)
	}
	return out
}

// TestBigArgumentsReadExactly streams a pipeline with large arguments
// (first, middle, last, two in one command, one past the bound's start)
// in random segments: redcon parses the same commands in the same order,
// its buffer stays small, and each large argument is a buffer of exactly
// its size.
func TestBigArgumentsReadExactly(t *testing.T) {
	big1, big2, big3 := strings.Repeat("a", bigArgLen), strings.Repeat("b", 3*bigArgLen+17), strings.Repeat("c", bigArgLen+1)
	want := [][]string{
		{"PING"},
		{"SET", "k", big1, "EX", "100"},
		{"GET", "k"},
		{big2},
		{"MSET", "x", big3, "y", "", "z", big1},
		{"SET", "tail", big3},
	}
	var raw []byte
	for _, c := range want {
		raw = append(raw, encode(c...)...)
	}
	for _, chunk := range []int{1 << 10, 64 << 10, 4 << 20} {
		cc, g := bigGuarded(raw, chunk, testLimits)
		cc.rnd = rand.New(rand.NewPCG(uint64(chunk), 9))
		got, largest, err := readAll(g)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d commands, want %d", chunk, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(bytes.Join(got[i], []byte{0}), bytes.Join(argsOf(want[i])[0], []byte{0})) {
				t.Fatalf("chunk %d: command %d differs (%d args)", chunk, i, len(got[i]))
			}
			for j, a := range got[i] {
				if len(a) >= bigArgLen && cap(a) != len(a) {
					t.Errorf("chunk %d: command %d arg %d: %d bytes in a buffer of %d", chunk, i, j, len(a), cap(a))
				}
			}
		}
		if largest > 8192 {
			t.Errorf("chunk %d: redcon read into a %d-byte buffer", chunk, largest)
		}
		if len(g.big) != 0 {
			t.Errorf("chunk %d: %d large commands never taken", chunk, len(g.big))
		}
	}
}

// TestBigArgumentCostsItsSize: reading a 16 MiB SET allocates about the
// value once (redcon alone: its doubled buffer, the one before it and its
// copy of the command, about four times).
func TestBigArgumentCostsItsSize(t *testing.T) {
	const n = 16 << 20
	raw := encode("SET", "k", strings.Repeat("v", n))
	_, g := bigGuarded(raw, 256<<10, testLimits)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, _, err := readAll(g)
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 1 || len(got[0][2]) != n {
		t.Fatalf("read %d commands, %v", len(got), err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > n+n/8 {
		t.Fatalf("reading a %d-byte value allocated %d bytes (%.1fx)", n, alloc, float64(alloc)/n)
	}
}

// TestBigArgumentViolations: a violation after a large argument is
// answered as the framer answers it, after the commands before it.
func TestBigArgumentViolations(t *testing.T) {
	big := strings.Repeat("v", bigArgLen)
	small := limits{maxBulk: 2 * bigArgLen, maxArgs: 10, maxCommand: 3 * bigArgLen}
	cases := []struct {
		name, raw, reply string
	}{
		{"bad header after", "*3\r\n$3\r\nSET\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"no CRLF after", "*2\r\n$3\r\nSET\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "xx", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk too long after", "*3\r\n$3\r\nSET\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "\r\n$99999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"command too long", "*4\r\n$3\r\nSET\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "\r\n$" + fmt.Sprint(len(big)) + "\r\n" + big + "\r\n$" + fmt.Sprint(len(big)) + "\r\n", "-ERR Protocol error: command exceeds the query buffer limit\r\n"},
	}
	for _, c := range cases {
		raw := append(encode("PING"), c.raw...)
		cc, g := bigGuarded(raw, 64<<10, small)
		got, _, err := readAll(g)
		if err == nil {
			t.Errorf("%s: no error", c.name)
		}
		if len(got) != 1 || string(got[0][0]) != "PING" {
			t.Errorf("%s: commands before the violation: %d", c.name, len(got))
		}
		if cc.written.String() != c.reply {
			t.Errorf("%s: wrote %q, want %q", c.name, cc.written.String(), c.reply)
		}
	}
}

// TestForgedStandIn: a client's own one-argument command is never taken
// for a stand-in, even one spelled like a stand-in.
func TestForgedStandIn(t *testing.T) {
	raw := append(encode("tandem-large-command:00"), encode("SET", "k", strings.Repeat("v", bigArgLen))...)
	_, g := bigGuarded(raw, 64<<10, testLimits)
	// The real tag with its last digit changed (to one it is not: the tag
	// is random, and a forgery equal to it 1 time in 16 made this flaky).
	forged := []byte(string(g.bigTag))
	if last := &forged[len(forged)-1]; *last == '0' {
		*last = '1'
	} else {
		*last = '0'
	}
	raw = append(encode(string(forged)), raw...)
	g.Conn.(*chunkConn).data = raw
	got, _, err := readAll(g)
	if err != nil || len(got) != 3 || len(got[0]) != 1 || len(got[1]) != 1 || len(got[2]) != 3 {
		t.Fatalf("got %d commands, %v", len(got), err)
	}
}

// TestBigArgumentThroughServer: a large value through a served
// connection, in a pipeline, reads back whole.
func TestBigArgumentThroughServer(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	big := strings.Repeat("x", 2*bigArgLen+5)
	p := c.Pipeline()
	p.Set(ctx, "a", big, 0)
	p.Set(ctx, "b", "small", 0)
	p.Echo(ctx, big)
	cmds, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := cmds[2].(*redis.StringCmd).Val(); got != big {
		t.Fatalf("ECHO of a large value: %d bytes", len(got))
	}
	if got, err := c.Get(ctx, "a").Result(); err != nil || got != big {
		t.Fatalf("GET a: %d bytes, %v", len(got), err)
	}
}

// TestBigArgumentRawForDetached: a detached connection's command that had
// a stand-in carries its own encoding in Raw (the proxy relays Raw).
func TestBigArgumentRawForDetached(t *testing.T) {
	big := strings.Repeat("r", bigArgLen+3)
	raw := encode("SUBSCRIBE", big)
	_, g := bigGuarded(raw, 64<<10, testLimits)
	rd := redcon.NewReader(readerFunc(g.Read))
	cmds, err := rd.ReadCommands()
	if err != nil || len(cmds) != 1 {
		t.Fatalf("%d commands, %v", len(cmds), err)
	}
	g.takeBigCmd(&cmds[0])
	if !bytes.Equal(cmds[0].Raw, raw) || len(cmds[0].Args) != 2 {
		t.Fatalf("Raw %d bytes, want the command's %d", len(cmds[0].Raw), len(raw))
	}
}
