package resp

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"
)

// chunkConn is a net.Conn over a byte slice whose reads return at most
// chunk bytes (or random sizes up to chunk when rnd is set), the way a
// slow or hostile client trickles data.
type chunkConn struct {
	net.Conn // nil: only Read, Write and SetWriteDeadline are used
	data     []byte
	chunk    int
	rnd      *rand.Rand
	reads    int
	written  bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	c.reads++
	n := c.chunk
	if c.rnd != nil {
		n = 1 + c.rnd.IntN(c.chunk)
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { return c.written.Write(p) }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

var testLimits = limits{maxBulk: DefaultMaxBulkLen, maxArgs: DefaultMaxArgs, maxCommand: DefaultMaxCommandLen}

func guarded(data []byte, chunk int, lim limits) (*chunkConn, *guardConn) {
	cc := &chunkConn{data: data, chunk: chunk}
	return cc, &guardConn{Conn: cc, f: framer{lim: lim}, log: slog.New(slog.DiscardHandler)}
}

// TestTrickledCommandNeedsFewReads sends a 4 MB SET one byte per read: the
// guard keeps reading until redcon's buffer is full, so redcon re-enters
// its parser O(log n) times, not once per byte.
func TestTrickledCommandNeedsFewReads(t *testing.T) {
	val := strings.Repeat("v", 4<<20)
	raw := encode("SET", "k", val)
	cc, g := guarded(raw, 1, testLimits)
	calls := 0
	counting := readerFunc(func(p []byte) (int, error) { calls++; return g.Read(p) })
	rd := redcon.NewReader(counting)
	cmds, err := rd.ReadCommands()
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || len(cmds[0].Args[2]) != len(val) {
		t.Fatalf("got %d commands", len(cmds))
	}
	if calls > 64 {
		t.Errorf("redcon read %d times for one command; want O(log n)", calls)
	}
	if cc.reads != len(raw) {
		t.Errorf("socket reads %d, want %d", cc.reads, len(raw))
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestFramerAgreesWithRedcon feeds valid pipelines in random chunks and
// checks redcon parses every command the guard lets through.
func TestFramerAgreesWithRedcon(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for iter := range 200 {
		var raw []byte
		var want int
		for range 1 + rnd.IntN(20) {
			switch rnd.IntN(3) {
			case 0:
				raw = append(raw, "PING\r\n"...)
			case 1:
				raw = append(raw, "\r\n  \r\n"...) // no command
				continue
			default:
				args := []string{"SET", "k", strings.Repeat("x", rnd.IntN(10000))}
				raw = append(raw, encode(args...)...)
			}
			want++
		}
		cc, g := guarded(raw, 1+rnd.IntN(5000), testLimits)
		cc.rnd = rnd
		got, err := countCommands(redcon.NewReader(g))
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		if got != want {
			t.Fatalf("iter %d: parsed %d commands, want %d", iter, got, want)
		}
		if len(raw) <= 2000 {
			checkLiveness(t, raw, testLimits)
		}
	}
}

// FuzzRESP feeds arbitrary bytes to the parsing path: first through the
// guard and redcon's reader in memory (checking the limits hold for every
// command that comes out), then to a live server over TCP, after which the
// server must still serve a fresh connection.
func FuzzRESP(f *testing.F) {
	for _, seed := range []string{
		"PING\r\n",
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nQUIT\r\n",
		"*1\r\n$-1\r\n",
		"*-5\r\n",
		"$5\r\nhello\r\n",
		"SET \"a\\x\" 'b'\r\n",
		"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n",
		"HELLO 3\r\nCLIENT SETNAME x\r\nMGET a b\r\n",
		"*1\r\n$4\r\nPING",
	} {
		f.Add([]byte(seed))
	}
	lim := limits{maxBulk: 1 << 10, maxArgs: 16, maxCommand: 4 << 10}
	b := newFake()
	_, addr := startServer(f, b, Config{MaxBulkLen: lim.maxBulk, MaxArgs: lim.maxArgs, MaxCommandLen: lim.maxCommand})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, g := guarded(bytes.Clone(data), 7, lim)
		rd := redcon.NewReader(g)
		for {
			cmds, err := rd.ReadCommands()
			for _, cmd := range cmds {
				if len(cmd.Args) == 0 || int64(len(cmd.Args)) > lim.maxArgs {
					t.Fatalf("command with %d args passed the guard", len(cmd.Args))
				}
				for _, a := range cmd.Args {
					if int64(len(a)) > max(lim.maxBulk, maxInlineLen) {
						t.Fatalf("argument of %d bytes passed the guard", len(a))
					}
				}
			}
			if err != nil {
				break
			}
		}

		if len(data) <= 256 {
			checkLiveness(t, data, lim)
		}

		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		c.Close()

		rc := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
		defer rc.Close()
		if err := rc.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("server unusable after input: %v", err)
		}
	})
}

// checkLiveness checks that the guard never waits for more data when redcon
// already has a command: on every prefix of data the framer accepts, it has
// seen at least as many complete commands as redcon parses from it.
func checkLiveness(t *testing.T, data []byte, lim limits) {
	t.Helper()
	for n := 0; n <= len(data); n++ {
		f := framer{lim: lim}
		if _, err := f.feed(data[:n]); err != nil {
			return // the guard refuses here, so it cannot hang later
		}
		rd := redcon.NewReader(bytes.NewReader(data[:n]))
		parsed := 0
		for {
			cmds, err := rd.ReadCommands()
			parsed += len(cmds)
			if err != nil {
				break
			}
		}
		if int64(parsed) > f.done {
			t.Fatalf("prefix %q: redcon parsed %d commands, the guard saw %d complete", data[:n], parsed, f.done)
		}
	}
}

// TestStreamedPipelineKeepsRedconBufferSmall streams 20,000 small commands
// in random segments: redcon's buffer (the p it reads into) must stay near
// its 4 KiB start, because the guard hands it whole commands only.
func TestStreamedPipelineKeepsRedconBufferSmall(t *testing.T) {
	var raw []byte
	const n = 20000
	for i := range n {
		raw = append(raw, encode("SET", "key:"+strings.Repeat("k", i%50), strings.Repeat("v", 100))...)
	}
	cc, g := guarded(raw, 3000, testLimits)
	cc.rnd = rand.New(rand.NewPCG(3, 4))
	largest := 0
	got, err := countCommands(redcon.NewReader(readerFunc(func(p []byte) (int, error) {
		largest = max(largest, len(p))
		return g.Read(p)
	})))
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("parsed %d commands, want %d", got, n)
	}
	if largest > 8192 {
		t.Errorf("redcon read into a %d-byte buffer; it grew while streaming", largest)
	}
}

// countCommands reads commands until EOF and counts them.
func countCommands(rd *redcon.Reader) (int, error) {
	got := 0
	for {
		cmds, err := rd.ReadCommands()
		got += len(cmds)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}
