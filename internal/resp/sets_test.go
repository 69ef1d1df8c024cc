package resp

import (
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
)

// TestSetReplies: SMEMBERS, SPOP with a count and the set algebra answer
// a RESP3 set (~), an array in RESP2; SRANDMEMBER with a count always an
// array. (The fake holds strings only: the sets here are missing keys.)
func TestSetReplies(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "SMEMBERS", "s")
	c.expect(t, "*0")
	c.send(t, "HELLO", "3")
	skipReply(t, c)
	c.send(t, "SMEMBERS", "s")
	c.expect(t, "~0")
	c.send(t, "SUNION", "s", "nokey")
	c.expect(t, "~0")
	c.send(t, "SPOP", "nokey", "2")
	c.expect(t, "~0")
	c.send(t, "SRANDMEMBER", "nokey", "5")
	c.expect(t, "*0")
	c.send(t, "SPOP", "nokey")
	c.expect(t, "_")
}

// TestSetEncodingConfig: CONFIG GET and SET know the set thresholds
// (OBJECT ENCODING follows them: package commands' TestSetEncoding).
func TestSetEncodingConfig(t *testing.T) {
	defer commands.SetSetEncodingLimits(commands.SetEncodingLimits())
	b := newFake()
	_, addr := startServer(t, b, Config{})
	c := rawConn(t, addr)
	c.send(t, "CONFIG", "GET", "set-max-*")
	c.expect(t, "*6", "$22", "set-max-intset-entries", "$3", "512", "$24", "set-max-listpack-entries", "$1", "0", "$22", "set-max-listpack-value", "$2", "64")
	c.send(t, "CONFIG", "SET", "set-max-intset-entries", "2", "set-max-listpack-entries", "128")
	c.expect(t, "+OK")
	if i, e, v := commands.SetEncodingLimits(); i != 2 || e != 128 || v != 64 {
		t.Fatalf("limits after CONFIG SET: %d %d %d, want 2 128 64", i, e, v)
	}
	c.send(t, "CONFIG", "SET", "set-max-listpack-entries", "x")
	c.expect(t, "-ERR CONFIG SET failed (possibly related to argument 'set-max-listpack-entries') - argument couldn't be parsed into an integer")
}

// skipReply reads one whole reply of any RESP type.
func skipReply(t *testing.T, c *rawClient) {
	t.Helper()
	line := c.line(t)
	n := 0
	for _, ch := range line[1:] {
		n = n*10 + int(ch-'0')
	}
	switch line[0] {
	case '$':
		c.line(t)
	case '*', '~':
		for range n {
			skipReply(t, c)
		}
	case '%':
		for range 2 * n {
			skipReply(t, c)
		}
	}
}
