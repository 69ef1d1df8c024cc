package commands

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestMaxReplyBytes: under a small max-reply-bytes every command that
// returns many elements is refused with ErrReplyTooLarge, having read
// little more than the bound allows (the reply is never built whole), and
// answers as before under a bound its reply fits.
func TestMaxReplyBytes(t *testing.T) {
	v := newMem(1000)
	const n = 1000
	val := strings.Repeat("v", 20)
	for i := range n {
		m := fmt.Sprintf("m%04d", i)
		do(t, v, "RPUSH", "l", val)
		do(t, v, "HSET", "h", m, val)
		do(t, v, "SADD", "s", m)
		do(t, v, "SADD", "s2", m)
		do(t, v, "ZADD", "z", fmt.Sprint(i), m)
		do(t, v, "SET", "k"+m, val)
	}
	const bound = 1000 // about 30 elements
	// A command that counts as it reads stops within this many rows.
	const maxRows = bound/ElementOverhead + 2
	for _, tc := range []struct {
		args string
		// counted: the command counts as it reads, so it stops early;
		// the others are refused once built (boundReply).
		counted bool
	}{
		{"LRANGE l 0 -1", true},
		{"HGETALL h", true},
		{"HKEYS h", true},
		{"HVALS h", true},
		{"SMEMBERS s", true},
		{"SUNION s s2", true},
		{"SINTER s s2", true},
		{"SDIFF s nokey", true},
		{"SRANDMEMBER s 2000", true},
		{"ZRANGE z 0 -1", true},
		{"ZRANGE z 0 -1 WITHSCORES", true},
		{"ZRANGE z -inf +inf BYSCORE", true},
		{"ZRANGE z - + BYLEX", true},
		{"ZRANGEBYSCORE z -inf +inf", true},
		{"ZREVRANGE z 0 -1", true},
		{"KEYS *", false},
		{"HMGET h " + strings.Repeat("m0001 ", 100), false},
		{"MGET " + strings.Repeat("km0001 ", 100), false},
		{"HRANDFIELD h -100000 WITHVALUES", false},
		{"ZUNION 2 z s", false},
		{"LPOP l 900", false},
		{"SRANDMEMBER s -100000", false},
	} {
		t.Run(tc.args, func(t *testing.T) {
			args := strings.Fields(tc.args)
			c := &countingView{memView: v}
			res, err := run(&Ctx{NowMs: v.now, Cursors: NewCursorTable(16), MaxReplyBytes: bound}, c, args...)
			if !errors.Is(err, ErrReplyTooLarge) {
				t.Fatalf("reply under max-reply-bytes %d: %v, %v; want ErrReplyTooLarge", bound, res.Reply, err)
			}
			if !IsInputError(err) || !strings.Contains(err.Error(), "max-reply-bytes (1000 bytes)") {
				t.Errorf("error %q: want an input error naming the bound", err)
			}
			if len(res.Ops) != 0 {
				t.Errorf("a refused command has ops %v", res.Ops)
			}
			if tc.counted && c.rows > maxRows {
				t.Errorf("read %d rows before refusing; a reply of %d bytes holds at most %d", c.rows, bound, maxRows)
			}
			res, err = run(&Ctx{NowMs: v.now, Cursors: NewCursorTable(16), MaxReplyBytes: 1 << 30}, v, args...)
			if err != nil {
				t.Fatalf("under 1 GiB: %v", err)
			}
			if sz := ReplySize(res.Reply); sz <= bound {
				t.Fatalf("reply of %d bytes fits the bound: not a test", sz)
			}
		})
	}
	// A reply that fits is answered: the bound is on its size, not on
	// the collection's.
	res, err := run(&Ctx{NowMs: v.now, MaxReplyBytes: bound}, v, "LRANGE", "l", "0", "9")
	if err != nil || len(asArray(res.Reply).(Array)) != 10 {
		t.Fatalf("LRANGE l 0 9 under %d bytes: %v, %v", bound, res.Reply, err)
	}
	if sz := ReplySize(res.Reply); sz > bound {
		t.Fatalf("10 elements measure %d bytes", sz)
	}
}

// TestScanPagesAtBound: a SCAN-family page ends early at max-reply-bytes,
// with a cursor to go on from (COUNT is a hint), so paging through gets
// every element in pages within the bound; without cursors (no
// continuation) the command is refused.
func TestScanPagesAtBound(t *testing.T) {
	v := newMem(1000)
	const n = 300
	val := strings.Repeat("v", 20)
	for i := range n {
		m := fmt.Sprintf("m%04d", i)
		do(t, v, "HSET", "h", m, val)
		do(t, v, "SADD", "s", m)
		do(t, v, "ZADD", "z", fmt.Sprint(i), m)
		do(t, v, "SET", "k"+m, val)
	}
	const bound = 1000
	for _, tc := range []struct {
		cmd  []string // before the cursor, and after it
		tail []string
		per  int // reply elements per item
		want int
	}{
		{[]string{"SCAN"}, []string{"COUNT", "100000"}, 1, n + 3},
		{[]string{"HSCAN", "h"}, []string{"COUNT", "100000"}, 2, n},
		{[]string{"SSCAN", "s"}, []string{"COUNT", "100000"}, 1, n},
		{[]string{"ZSCAN", "z"}, []string{"COUNT", "100000"}, 2, n},
	} {
		t.Run(tc.cmd[0], func(t *testing.T) {
			ctx := &Ctx{NowMs: v.now, Cursors: NewCursorTable(16), MaxReplyBytes: bound}
			cursor, got, pages := "0", 0, 0
			for {
				args := append(append(append([]string{}, tc.cmd...), cursor), tc.tail...)
				res, err := run(ctx, v, args...)
				if err != nil {
					t.Fatalf("%q: %v", args, err)
				}
				if sz := ReplySize(res.Reply); sz > bound {
					t.Fatalf("a page of %d bytes", sz)
				}
				a := res.Reply.(Array)
				got += len(a[1].(Array)) / tc.per
				pages++
				if cursor = string(a[0].(Bulk)); cursor == "0" {
					break
				}
			}
			if got != tc.want || pages < 2 {
				t.Fatalf("%d items in %d pages, want %d in several", got, pages, tc.want)
			}
			args := append(append(append([]string{}, tc.cmd...), "0"), tc.tail...)
			if _, err := run(&Ctx{NowMs: v.now, MaxReplyBytes: bound}, v, args...); !errors.Is(err, ErrReplyTooLarge) {
				t.Fatalf("without cursors: %v, want ErrReplyTooLarge", err)
			}
		})
	}
}

// TestMaxReplyBytesDefault: a Ctx without a bound uses the process's.
func TestMaxReplyBytesDefault(t *testing.T) {
	if MaxReplyBytes() != DefaultMaxReplyBytes {
		t.Fatalf("default %d", MaxReplyBytes())
	}
	v := newMem(1000)
	do(t, v, "SET", "k", strings.Repeat("x", 100))
	SetMaxReplyBytes(64)
	defer SetMaxReplyBytes(DefaultMaxReplyBytes)
	if _, err := run(&Ctx{NowMs: v.now}, v, "GET", "k"); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("GET of 100 bytes under max-reply-bytes 64: %v", err)
	}
	if _, err := run(&Ctx{NowMs: v.now, MaxReplyBytes: 1000}, v, "GET", "k"); err != nil {
		t.Fatalf("Ctx.MaxReplyBytes does not override: %v", err)
	}
}

// TestEmptyElementsNotNull: an empty element, field, member or key is an
// empty bulk string, never the null reply (a nil Bulk).
func TestEmptyElementsNotNull(t *testing.T) {
	v := newMem(1000)
	do(t, v, "RPUSH", "l", "", "a")
	do(t, v, "HSET", "h", "", "")
	do(t, v, "SADD", "s", "")
	do(t, v, "ZADD", "z", "1", "")
	do(t, v, "SET", "", "x")
	empty := Bulk{}
	for _, tc := range []struct {
		args []string
		want Reply
	}{
		{[]string{"LRANGE", "l", "0", "-1"}, Array{empty, Bulk("a")}},
		{[]string{"LPOS", "l", ""}, Int(0)},
		{[]string{"HGETALL", "h"}, Map{empty, empty}},
		{[]string{"HKEYS", "h"}, Array{empty}},
		{[]string{"HVALS", "h"}, Array{empty}},
		{[]string{"SMEMBERS", "s"}, Set{empty}},
		{[]string{"SUNION", "s"}, Set{empty}},
		{[]string{"ZRANGE", "z", "0", "-1"}, Array{empty}},
		{[]string{"KEYS", "*"}, Array{empty, Bulk("h"), Bulk("l"), Bulk("s"), Bulk("z")}},
	} {
		got := do(t, v, tc.args...)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %#v, want %#v", tc.args, got, tc.want)
		}
	}
}
