// Package logrec is the codec for replication log entries.
//
// An entry is what the leader appends for one write: the epoch it was written
// in, its log sequence number (LSN), the leader's wall-clock time, and the
// operations in row form (the resulting value of each key, never the command
// that produced it: INCR is logged as the new value). The same encoded bytes
// are stored in the leader's log, shipped to followers, and stored in theirs,
// so the checksum written by the leader is verified by every reader.
//
// # Wire format (frozen: changing it breaks existing logs and peers)
//
//	crc32c  uint32  little endian, Castagnoli, over every byte after it
//	version uint8   = 1
//	epoch   uvarint
//	lsn     uvarint
//	timeNs  varint  leader wall clock, Unix nanoseconds
//	nops    uvarint
//	op*     kind uint8 (1 put, 2 delete)
//	        keyLen uvarint, key
//	        put only: expireAtMs varint (0 = no expiry), valueLen uvarint, value
//
// An entry is a frame (package frame): the checksum, then a body that is
// everything from version on. Decode verifies the checksum before it parses
// anything, and rejects trailing bytes, so a flipped bit is always an error,
// never a wrong entry.
package logrec

import (
	"encoding/binary"
	"fmt"

	"github.com/tandemdb/tandem/internal/frame"
)

// ErrCorrupt marks an entry whose bytes do not match their checksum or do not
// parse. It is never a torn tail: the log on disk (package wal) finds and
// truncates a torn tail itself, so an entry that reaches a decoder damaged
// was damaged by the storage or the network.
// It is a frame.ErrCorrupt: errors.Is(err, frame.ErrCorrupt) holds too.
var ErrCorrupt = frame.NewCorruption("logrec: corrupt entry")

// formatVersion is part of the wire format and must not change.
const formatVersion = 1

// OpKind says what an operation does to its key.
type OpKind uint8

// Op kinds are part of the wire format and must not change.
const (
	OpPut    OpKind = 1
	OpDelete OpKind = 2
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one row-form change: the key's new value (and absolute expiry), or
// its deletion.
type Op struct {
	Kind       OpKind
	Key        []byte
	Value      []byte
	ExpireAtMs int64 // absolute Unix milliseconds; 0 means no expiry
}

// Position names a log entry: its epoch and LSN. It is defined here, below
// storage, so that the pure decision code (the control plane, replication's
// handshake) can compare positions without linking the storage engine.
type Position struct {
	Epoch uint64
	LSN   uint64
}

// Entry is one log record.
type Entry struct {
	Epoch  uint64
	LSN    uint64
	TimeNs int64
	Ops    []Op
}

// Append encodes e and appends it to dst.
func Append(dst []byte, e *Entry) []byte {
	start := len(dst)
	dst = append(frame.Begin(dst), formatVersion)
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = binary.AppendUvarint(dst, e.LSN)
	dst = binary.AppendVarint(dst, e.TimeNs)
	dst = binary.AppendUvarint(dst, uint64(len(e.Ops)))
	for i := range e.Ops {
		op := &e.Ops[i]
		dst = append(dst, byte(op.Kind))
		dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
		dst = append(dst, op.Key...)
		if op.Kind == OpPut {
			dst = binary.AppendVarint(dst, op.ExpireAtMs)
			dst = binary.AppendUvarint(dst, uint64(len(op.Value)))
			dst = append(dst, op.Value...)
		}
	}
	frame.Seal(dst[start:])
	return dst
}

// Encode returns the encoding of e.
func Encode(e *Entry) []byte { return Append(nil, e) }

// Decode parses one encoded entry. The returned entry's keys and values
// alias b. Any mismatch with the checksum or the format wraps ErrCorrupt.
func Decode(b []byte) (Entry, error) {
	body, err := frame.Open(b, ErrCorrupt)
	if err != nil {
		return Entry{}, err
	}
	return decodeBody(body)
}

// DecodeVerified is Decode without the checksum, for bytes whose checksum
// this process computed (Encode) or verified where they arrived (from a
// peer, from disk): one checksum per entry per node. A format error still
// wraps ErrCorrupt.
func DecodeVerified(b []byte) (Entry, error) {
	if len(b) < frame.HeaderLen+1 {
		return Entry{}, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	return decodeBody(b[frame.HeaderLen:])
}

// PeekLSNVerified is PeekLSN without the checksum (see DecodeVerified).
func PeekLSNVerified(b []byte) (epoch, lsn uint64, err error) {
	if len(b) < frame.HeaderLen+1 {
		return 0, 0, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	return peekBody(b[frame.HeaderLen:])
}

func decodeBody(body []byte) (Entry, error) {
	var e Entry
	d := decoder{buf: body}
	if v := d.byte(); v != formatVersion {
		return e, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, v)
	}
	e.Epoch = d.uvarint()
	e.LSN = d.uvarint()
	e.TimeNs = d.varint()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) { // every op takes at least one byte
		d.fail("op count %d exceeds remaining %d bytes", n, len(d.buf))
	}
	if d.err == nil && n > 0 {
		e.Ops = make([]Op, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var op Op
		op.Kind = OpKind(d.byte())
		op.Key = d.bytes()
		switch op.Kind {
		case OpPut:
			op.ExpireAtMs = d.varint()
			op.Value = d.bytes()
		case OpDelete:
		default:
			d.fail("unknown op kind %d", op.Kind)
		}
		e.Ops = append(e.Ops, op)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return Entry{}, d.err
	}
	return e, nil
}

// PeekLSN returns the epoch and LSN of an encoded entry after verifying its
// checksum, without decoding the operations.
func PeekLSN(b []byte) (epoch, lsn uint64, err error) {
	body, err := frame.Open(b, ErrCorrupt)
	if err != nil {
		return 0, 0, err
	}
	return peekBody(body)
}

func peekBody(body []byte) (epoch, lsn uint64, err error) {
	if body[0] != formatVersion {
		return 0, 0, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, body[0])
	}
	d := decoder{buf: body[1:]}
	epoch, lsn = d.uvarint(), d.uvarint()
	return epoch, lsn, d.err
}

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	// Only the minimal encoding is accepted: binary.Uvarint also takes
	// padded ones (0x80 0x00 is 0), which would give one entry two encodings.
	if n <= 0 || n != uvarintLen(v) {
		d.fail("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 || n != uvarintLen(uint64(v)<<1^uint64(v>>63)) {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("length %d exceeds remaining %d bytes", n, len(d.buf))
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}
