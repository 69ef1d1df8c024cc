package commands

import (
	"strconv"
	"sync/atomic"
)

// Reply size bound (max-reply-bytes). Redis builds any reply a command
// asks for (HGETALL of a hash of ten million fields, LRANGE 0 -1 of a huge
// list) and relies on client-output-buffer-limit to drop the client once
// it has been built; tandem refuses such a command before it holds the
// reply: a command that reads rows into its reply counts the reply's size
// as it reads them (budget) and stops at the bound, answering
// ErrReplyTooLarge. Every command's reply is also measured once built
// (CheckReply, through the table), which bounds what the counting commands
// do not count: a script's reply, GETRANGE of one large value. A
// transaction's replies share one bound (the caller gives each command
// what the ones before it left, Ctx.MaxReplyBytes).
//
// A reply's size is its RESP2 encoding's, rounded up: each element (a
// bulk string, an integer, an array header, ...) counts its payload plus
// ElementOverhead bytes.

// ElementOverhead is what each element of a reply counts beside its
// payload: its RESP framing ("$<len>\r\n...\r\n" is at most 16 bytes for
// a length below 10^10).
const ElementOverhead = 16

// DefaultMaxReplyBytes is max-reply-bytes unless configured: 512 MiB, the
// largest value Redis lets one string hold (proto-max-bulk-len).
const DefaultMaxReplyBytes = 512 << 20

// maxReplyBytes is the process's bound (one node per process), set by
// the server's flag and CONFIG SET max-reply-bytes.
var maxReplyBytes atomic.Int64

func init() { maxReplyBytes.Store(DefaultMaxReplyBytes) }

// MaxReplyBytes returns the process's reply bound (max-reply-bytes).
func MaxReplyBytes() int64 { return maxReplyBytes.Load() }

// SetMaxReplyBytes sets it; n must be positive.
func SetMaxReplyBytes(n int64) {
	if n <= 0 {
		panic("commands: max-reply-bytes must be positive")
	}
	maxReplyBytes.Store(n)
}

// ErrReplyTooLarge is the sentinel behind the refusal of a command whose
// reply would pass max-reply-bytes; the instance names the bound.
var ErrReplyTooLarge = newError("reply would exceed max-reply-bytes")

func replyTooLarge(limit int64) error {
	return &Error{
		msg:  "reply would exceed max-reply-bytes (" + strconv.FormatInt(limit, 10) + " bytes); read it in parts (SCAN, HSCAN, SSCAN, ZSCAN, a range or LIMIT)",
		base: ErrReplyTooLarge,
	}
}

// replyLimit is the bound a command's reply must keep under ctx.
func (ctx *Ctx) replyLimit() int64 {
	if ctx != nil && ctx.MaxReplyBytes > 0 {
		return ctx.MaxReplyBytes
	}
	return MaxReplyBytes()
}

// budget counts a reply's size as a command builds it. add is called
// before an element is added; once it returns false the command stops
// reading and returns err().
type budget struct{ left, limit int64 }

// newBudget is the budget of a reply under ctx, less its own array
// header (ReplySize counts it).
func newBudget(ctx *Ctx) budget {
	l := ctx.replyLimit()
	return budget{left: l - ElementOverhead, limit: l}
}

// scanBudget is newBudget for a SCAN-family reply: less the cursor (up to
// 20 digits) and the array of the page.
func scanBudget(ctx *Ctx) budget {
	b := newBudget(ctx)
	b.left -= 2*ElementOverhead + 20
	return b
}

// add counts one element of n payload bytes and reports whether the reply
// is still within the bound.
func (b *budget) add(n int) bool {
	b.left -= int64(n) + ElementOverhead
	return b.left >= 0
}

// page counts elems elements of n payload bytes in all for a SCAN-family
// page, and reports whether they fit. When they do not, a page that
// already holds some (had) and can be continued (cursors) ends before
// them: nothing is counted, COUNT being only a hint. Otherwise the bound
// is passed (err).
func (b *budget) page(n, elems int, had, cursors bool) bool {
	c := int64(n) + int64(elems)*ElementOverhead
	if c <= b.left {
		b.left -= c
		return true
	}
	if !had || !cursors {
		b.left = -1
	}
	return false
}

// err is ErrReplyTooLarge once the bound is passed, else nil.
func (b *budget) err() error {
	if b.left < 0 {
		return replyTooLarge(b.limit)
	}
	return nil
}

// result is a command's result: its reply r unless err, or the budget
// was passed (ErrReplyTooLarge).
func (b *budget) result(r Reply, err error) (Result, error) {
	if err == nil {
		err = b.err()
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Reply: r}, nil
}

// ReplySize is r's size as max-reply-bytes counts it.
func ReplySize(r Reply) int64 {
	n := int64(ElementOverhead)
	switch r := r.(type) {
	case Bulk:
		n += int64(len(r))
	case SimpleString:
		n += int64(len(r))
	case ErrorReply:
		n += int64(len(r))
	case Array:
		n += replySizes(r)
	case Map:
		n += replySizes(r)
	case Pairs:
		n += replySizes(r)
	case Set:
		n += replySizes(r)
	case Bulks:
		for _, b := range r {
			n += int64(len(b)) + ElementOverhead
		}
	case BulkPair:
		n += int64(len(r[0])+len(r[1])) + 2*ElementOverhead
	case ScorePair:
		n += int64(len(r.Member)) + 2*ElementOverhead // as Array{Bulk, Double}
	}
	return n
}

func replySizes(rs []Reply) int64 {
	var n int64
	for _, e := range rs {
		n += ReplySize(e)
	}
	return n
}

// CheckReply refuses a built reply larger than ctx's bound
// (ErrReplyTooLarge).
func CheckReply(ctx *Ctx, r Reply) error {
	if l := ctx.replyLimit(); ReplySize(r) > l {
		return replyTooLarge(l)
	}
	return nil
}

// boundReply refuses, with no ops, a reply that passed max-reply-bytes
// once built: the bound on what the commands that count as they read do
// not count (a script's reply, ZUNION's, GETRANGE of a large string).
func boundReply(exec func(*Ctx, View, [][]byte) (Result, error)) func(*Ctx, View, [][]byte) (Result, error) {
	return func(ctx *Ctx, v View, args [][]byte) (Result, error) {
		r, err := exec(ctx, v, args)
		if err == nil {
			if err := CheckReply(ctx, r.Reply); err != nil {
				return Result{}, err
			}
		}
		return r, err
	}
}

// arena copies many small values (the elements of a reply) into a few
// large allocations instead of one each. A returned slice's capacity ends
// at its length, so appending to it never writes over its neighbour.
type arena struct {
	buf []byte
	// left is how many more values the caller expects to copy (0:
	// unknown); a new chunk is sized for that many like the current one.
	left int
}

// arenaChunk is the chunk an arena allocates when it cannot guess;
// arenaMaxChunk the largest it allocates (a value above a quarter of it
// gets an allocation of its own).
const (
	arenaChunk    = 4 << 10
	arenaMaxChunk = 256 << 10
)

func (a *arena) copy(b []byte) []byte {
	left := a.left // counting this one
	if a.left > 0 {
		a.left--
	}
	if len(b) == 0 {
		return []byte{} // not nil: a nil Bulk is the null reply
	}
	if len(b) > cap(a.buf)-len(a.buf) {
		if len(b) > arenaMaxChunk/4 {
			return clone(b)
		}
		size := max(2*cap(a.buf), arenaChunk)
		if left > 0 {
			size = left * len(b)
		}
		a.buf = make([]byte, 0, min(size, arenaMaxChunk))
	}
	s := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[s:len(a.buf):len(a.buf)]
}
