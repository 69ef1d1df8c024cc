package resp

import (
	"bytes"
	"math"
	"testing"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// bufConn is a redcon.Conn whose replies go to a buffer.
type bufConn struct {
	redcon.Conn
	w *redcon.Writer
}

func (c bufConn) WriteArray(n int)      { c.w.WriteArray(n) }
func (c bufConn) WriteBulk(b []byte)    { c.w.WriteBulk(b) }
func (c bufConn) WriteRaw(b []byte)     { c.w.WriteRaw(b) }
func (c bufConn) WriteString(s string)  { c.w.WriteString(s) }
func (c bufConn) WriteInt64(n int64)    { c.w.WriteInt64(n) }
func (c bufConn) WriteError(msg string) { c.w.WriteError(msg) }
func (c bufConn) WriteNull()            { c.w.WriteNull() }

func encodeReply(r commands.Reply, proto3 bool) []byte {
	var buf bytes.Buffer
	w := redcon.NewWriter(&buf)
	writeReply(bufConn{w: w}, r, proto3)
	_ = w.Flush()
	return buf.Bytes()
}

// TestBulksWireForm: commands.Bulks is written exactly as the Array of
// Bulk it stands for, in RESP2 and RESP3, empty elements and an empty
// array included.
func TestBulksWireForm(t *testing.T) {
	for _, vals := range [][]string{{}, {"a"}, {"", "bc", ""}} {
		bulks, array := commands.Bulks{}, commands.Array{}
		for _, v := range vals {
			bulks = append(bulks, []byte(v))
			array = append(array, commands.Bulk(v))
		}
		for _, p3 := range []bool{false, true} {
			if got, want := encodeReply(bulks, p3), encodeReply(array, p3); !bytes.Equal(got, want) {
				t.Errorf("%q (RESP3 %v): %q, want %q", vals, p3, got, want)
			}
		}
	}
}

// TestBulkPairWireForm: commands.BulkPair (a blocking pop's [key,
// element]) is written exactly as the Array of two Bulk it stands for, in
// RESP2 and RESP3, an empty element included, and counts as that much
// against the reply bound.
func TestBulkPairWireForm(t *testing.T) {
	for _, vals := range [][2]string{{"queue", "job"}, {"k", ""}} {
		pair := commands.BulkPair{[]byte(vals[0]), []byte(vals[1])}
		array := commands.Array{commands.Bulk(vals[0]), commands.Bulk(vals[1])}
		for _, p3 := range []bool{false, true} {
			if got, want := encodeReply(pair, p3), encodeReply(array, p3); !bytes.Equal(got, want) {
				t.Errorf("%q (RESP3 %v): %q, want %q", vals, p3, got, want)
			}
		}
		if got, want := commands.ReplySize(pair), commands.ReplySize(array); got != want {
			t.Errorf("%q: ReplySize %d, want %d", vals, got, want)
		}
	}
}

// TestScorePairWireForm: commands.ScorePair (ZPOPMIN's and ZPOPMAX's
// [member, score] without a count) is written exactly as the Array of a
// Bulk and a Double it stands for, in RESP2 and RESP3, an empty member and
// infinite scores included, and counts as that much against the reply
// bound.
func TestScorePairWireForm(t *testing.T) {
	for _, tc := range []struct {
		member string
		score  float64
	}{{"m", 1.5}, {"", 0}, {"top", math.Inf(1)}, {"bottom", math.Inf(-1)}, {"x", -1e-300}} {
		pair := commands.ScorePair{Member: []byte(tc.member), Score: tc.score}
		array := commands.Array{commands.Bulk(tc.member), commands.Double(tc.score)}
		for _, p3 := range []bool{false, true} {
			if got, want := encodeReply(pair, p3), encodeReply(array, p3); !bytes.Equal(got, want) {
				t.Errorf("%+v (RESP3 %v): %q, want %q", tc, p3, got, want)
			}
		}
		if got, want := commands.ReplySize(pair), commands.ReplySize(array); got != want {
			t.Errorf("%+v: ReplySize %d, want %d", tc, got, want)
		}
	}
}
