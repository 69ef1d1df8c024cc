// Package logrec is the codec for replication log entries.
//
// An entry is what the leader appends for one write: the epoch it was written
// in, its log sequence number (LSN), the leader's wall-clock time, and the
// operations in row form (the resulting state of each key or element, never
// the command that produced it: INCR is logged as the new value, HSET of one
// field on a big hash as that field and the hash's new size). The same
// encoded bytes are stored in the leader's log, shipped to followers, and
// stored in theirs, so the checksum written by the leader is verified by
// every reader.
//
// # Wire format (each version frozen once written: changing one breaks
// existing logs and peers)
//
//	crc32c  uint32  little endian, Castagnoli, over every byte after it
//	version uint8   1 to 4 (the lowest version that can carry the ops)
//	epoch   uvarint
//	lsn     uvarint
//	timeNs  varint  leader wall clock, Unix nanoseconds
//	nops    uvarint
//	op*     kind uint8, then by kind:
//	  1 put      (v1, v2) key, expireAtMs varint (0 = none), value: the key becomes this string
//	  2 delete   (v1, v2) key: the key's metadata row goes (strings; see 6 for collections)
//	  3 meta     (v2)     key, type uint8, expireAtMs varint, version uvarint, size uvarint:
//	                      the key's metadata row (a collection's type, expiry, version, size)
//	  4 subput   (v2)     key, version uvarint, sub, value: one field/member/element row
//	  5 subdel   (v2)     key, version uvarint, sub: that row goes
//	  6 drop     (v2)     key, version uvarint: the metadata row and every sub-key row
//	                      of that version go (DEL of a collection: O(1) rows)
//	  7 flushall (v2)     nothing: every key goes
//	  8 put+prior (v3)    key, prior uint8 (1-3), expireAtMs varint, value: a put (1)
//	                      that says what the key's metadata row was before it (Prior);
//	                      decoded as an OpPut with Prior set
//
// key, sub and value are a uvarint length and the bytes. An entry is a frame
// (package frame): the checksum, then a body that is everything from
// version on. Decode verifies the checksum before it parses anything, and
// rejects trailing bytes, so a flipped bit is always an error, never a
// wrong entry.
//
// # A put's prior row (format 3)
//
// Every node keeps the key counts (DBSIZE, INFO keyspace) and drops a
// chunked string's chunks when its key is written again, so applying a put
// needs the state of the metadata row it replaces. A put may carry it
// (Op.Prior): the leader sets it when it knows it from memory when it
// sequences the write (its overlay of unapplied writes, its row cache, its
// key filter), so that no node reads the row to apply the put. Prior is a
// hint with one meaning, the row as of the entry before this one, with the
// entry's earlier ops applied: an applier that knows better (its own
// batch wrote the key) uses what it knows; one that has no Prior reads.
// A chunked string's row is never described (its chunks' version is not
// carried): the applier reads it.
//
// # The version gate (the base of rolling upgrades)
//
// Append writes the lowest version that can carry an entry's ops (MinFormat):
// an entry of puts and deletes is still a v1 entry, readable by every node.
// Format 3 is optional to its writer: a put without Prior is a v1 op, so a
// leader that cannot write format 3 (a member reads only 2) leaves Prior
// unset and loses nothing but the saved reads.
// A node reads every version up to MaxFormat and refuses a higher version, or
// an op kind its version does not define, with an *UnsupportedError
// (errors.Is ErrUnsupported, not ErrCorrupt: the bytes are intact, this build
// is too old to read them). It never guesses. So:
//
//   - every node advertises the highest format it reads (MaxFormat), in the
//     replication handshake's Hello and in its member record in etcd;
//   - a leader writes an entry of format F only if every member it knows
//     (registered in etcd, or connected) reads F; otherwise the command that needs F is refused with a clear
//     error and nothing is logged;
//   - a follower that still receives an entry it cannot read (an unknown
//     member, a downgrade) logs it at Error, reports it in its status, and
//     stops following: it never applies a prefix of what it cannot read.
package logrec

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/frame"
)

// ErrCorrupt marks an entry whose bytes do not match their checksum or do not
// parse. It is never a torn tail: the log on disk (package wal) finds and
// truncates a torn tail itself, so an entry that reaches a decoder damaged
// was damaged by the storage or the network.
// It is a frame.ErrCorrupt: errors.Is(err, frame.ErrCorrupt) holds too.
var ErrCorrupt = frame.NewCorruption("logrec: corrupt entry")

// ErrUnsupported marks an intact entry this build cannot read: a format
// version above MaxFormat, or an op kind its version does not define. The
// error is an *UnsupportedError.
var ErrUnsupported = errors.New("logrec: entry format not supported by this build")

// UnsupportedError says what made an entry unreadable.
type UnsupportedError struct {
	Version uint8  // the entry's format version
	Kind    OpKind // the op kind, when the version is known but the kind is not
}

func (e *UnsupportedError) Error() string {
	if e.Kind != 0 {
		return fmt.Sprintf("logrec: op kind %d in a format %d entry is not supported by this build (it reads formats up to %d)", uint8(e.Kind), e.Version, MaxFormat)
	}
	return fmt.Sprintf("logrec: entry format %d is not supported by this build (it reads formats up to %d)", e.Version, MaxFormat)
}

// Is makes errors.Is(err, ErrUnsupported) hold.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// Format versions are part of the wire format and must not change.
const (
	// FormatV1: puts and deletes of string rows.
	FormatV1 uint8 = 1
	// FormatV2: v1 plus typed values in row form per element (meta,
	// subput, subdel, drop, flushall).
	FormatV2 uint8 = 2
	// FormatV3: v2 plus a put's prior row (Op.Prior).
	FormatV3 uint8 = 3
	// FormatV4: v3 plus the function libraries (OpFunctions).
	FormatV4 uint8 = 4
	// MaxFormat is the highest format this build reads and writes.
	MaxFormat = FormatV4
)

// OpKind says what an operation does to its key.
type OpKind uint8

// Op kinds are part of the wire format and must not change.
const (
	OpPut      OpKind = 1 // v1: the key becomes the string Value
	OpDelete   OpKind = 2 // v1: the key's metadata row goes
	OpMeta     OpKind = 3 // v2: a collection's metadata row
	OpSubPut   OpKind = 4 // v2: one sub-key row of (Key, Version)
	OpSubDel   OpKind = 5 // v2: one sub-key row of (Key, Version) goes
	OpDrop     OpKind = 6 // v2: the metadata row and every sub-key row of (Key, Version) go
	OpFlushAll OpKind = 7 // v2: every key goes
	// OpFunctions (v4): the function libraries become Value (the whole
	// set; empty: none). Key is empty.
	OpFunctions OpKind = 9
	// kindPutPrior (v3) is the wire kind of an OpPut with Prior set: it
	// is never an Op's Kind in memory.
	kindPutPrior OpKind = 8
)

// Prior is the state of a key's metadata row before a put (see the
// package comment). Its values are part of the wire format.
type Prior uint8

const (
	PriorUnknown  Prior = 0 // not said: the applier reads the row
	PriorNone     Prior = 1 // no metadata row
	PriorPlain    Prior = 2 // a metadata row without an expiry, not a chunked string's
	PriorExpiring Prior = 3 // a metadata row with an expiry, not a chunked string's
	priorMax            = PriorExpiring
)

// kindFormat is the format that defines each kind.
func kindFormat(k OpKind) uint8 {
	switch k {
	case OpPut, OpDelete:
		return FormatV1
	case OpMeta, OpSubPut, OpSubDel, OpDrop, OpFlushAll:
		return FormatV2
	case kindPutPrior:
		return FormatV3
	case OpFunctions:
		return FormatV4
	}
	return 0
}

// wireKind is the kind byte op is encoded with.
func wireKind(op *Op) OpKind {
	if op.Kind == OpPut && op.Prior != PriorUnknown {
		return kindPutPrior
	}
	return op.Kind
}

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpMeta:
		return "meta"
	case OpSubPut:
		return "subput"
	case OpSubDel:
		return "subdel"
	case OpDrop:
		return "drop"
	case OpFlushAll:
		return "flushall"
	case OpFunctions:
		return "functions"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one row-form change. Which fields count depends on Kind (see the
// package comment): Key and Value/ExpireAtMs, and Prior, for a put; Type,
// ExpireAtMs, Version and Size for meta; Version, Sub and Value for
// sub-key ops. Prior on any other kind is not encoded.
type Op struct {
	Kind       OpKind
	Key        []byte
	Value      []byte
	ExpireAtMs int64 // absolute Unix milliseconds; 0 means no expiry
	Type       uint8 // meta: the value type (package keyspace's Type)
	Version    uint64
	Size       uint64 // meta: the number of sub-keys
	Sub        []byte // sub-key ops: the field, member or element key
	Prior      Prior  `json:",omitempty"` // put: the key's metadata row before it, if known
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

// MinFormat is the lowest format version that can carry ops: FormatV1 when
// they are all puts (without Prior) and deletes. Kinds this build does not
// know count as MaxFormat+1, so that no gate passes them.
func MinFormat(ops []Op) uint8 {
	f := FormatV1
	for i := range ops {
		k := kindFormat(wireKind(&ops[i]))
		if k == 0 {
			return MaxFormat + 1
		}
		f = max(f, k)
	}
	return f
}

// Append encodes e and appends it to dst.
func Append(dst []byte, e *Entry) []byte { return appendEntry(dst, e, false) }

// EncodeOwned is Encode that also makes e own its bytes: each op of e.Ops
// is rewritten in place to what DecodeVerified returns for the encoding
// (its Key, Sub and Value slices of the returned buffer, capped at their
// length; the fields its kind does not encode zeroed; a put that carries
// no Prior without one), so that e no longer aliases the slices it was
// built from (a command's arguments, in a connection's buffer). It is one
// pass over the ops, where Encode and then DecodeVerified are two and a
// new ops slice. Only slice headers change: no byte any slice points at
// is written.
func EncodeOwned(e *Entry) []byte { return appendEntry(make([]byte, 0, Size(e)), e, true) }

// appendEntry is Append; with own it is EncodeOwned's rewrite too, and
// dst must have room for the encoding (Size), so that the slices it
// hands out are of the buffer it returns.
func appendEntry(dst []byte, e *Entry, own bool) []byte {
	// tail is the last n bytes appended, as the owned slice of a field.
	tail := func(n int) []byte { return dst[len(dst)-n : len(dst) : len(dst)] }
	start := len(dst)
	dst = append(frame.Begin(dst), MinFormat(e.Ops))
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = binary.AppendUvarint(dst, e.LSN)
	dst = binary.AppendVarint(dst, e.TimeNs)
	dst = binary.AppendUvarint(dst, uint64(len(e.Ops)))
	for i := range e.Ops {
		op := &e.Ops[i]
		kind := wireKind(op)
		dst = append(dst, byte(kind))
		if op.Kind == OpFlushAll {
			if own {
				*op = Op{Kind: OpFlushAll}
			}
			continue
		}
		// o is what a decoder makes of the op: only what is encoded.
		o := Op{Kind: op.Kind}
		dst = appendBytes(dst, op.Key)
		o.Key = tail(len(op.Key))
		switch kind {
		case kindPutPrior:
			dst = append(dst, byte(op.Prior))
			dst = binary.AppendVarint(dst, op.ExpireAtMs)
			dst = appendBytes(dst, op.Value)
			o.Prior, o.ExpireAtMs, o.Value = op.Prior, op.ExpireAtMs, tail(len(op.Value))
		case OpPut:
			dst = binary.AppendVarint(dst, op.ExpireAtMs)
			dst = appendBytes(dst, op.Value)
			o.ExpireAtMs, o.Value = op.ExpireAtMs, tail(len(op.Value))
		case OpFunctions:
			dst = appendBytes(dst, op.Value)
			o.Value = tail(len(op.Value))
		case OpMeta:
			dst = append(dst, op.Type)
			dst = binary.AppendVarint(dst, op.ExpireAtMs)
			dst = binary.AppendUvarint(dst, op.Version)
			dst = binary.AppendUvarint(dst, op.Size)
			o.Type, o.ExpireAtMs, o.Version, o.Size = op.Type, op.ExpireAtMs, op.Version, op.Size
		case OpSubPut:
			dst = binary.AppendUvarint(dst, op.Version)
			dst = appendBytes(dst, op.Sub)
			o.Sub = tail(len(op.Sub))
			dst = appendBytes(dst, op.Value)
			o.Version, o.Value = op.Version, tail(len(op.Value))
		case OpSubDel:
			dst = binary.AppendUvarint(dst, op.Version)
			dst = appendBytes(dst, op.Sub)
			o.Version, o.Sub = op.Version, tail(len(op.Sub))
		case OpDrop:
			dst = binary.AppendUvarint(dst, op.Version)
			o.Version = op.Version
		}
		if own {
			*op = o
		}
	}
	frame.Seal(dst[start:])
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// Encode returns the encoding of e, in a buffer of its exact size (one
// allocation: appending to nil grew it five times for a SET's entry).
func Encode(e *Entry) []byte { return Append(make([]byte, 0, Size(e)), e) }

// Size is the length of e's encoding, as Append writes it.
func Size(e *Entry) int {
	n := frame.HeaderLen + 1 + uvarintLen(e.Epoch) + uvarintLen(e.LSN) + varintLen(e.TimeNs) + uvarintLen(uint64(len(e.Ops)))
	for i := range e.Ops {
		op := &e.Ops[i]
		n++
		if op.Kind == OpFlushAll {
			continue
		}
		n += bytesLen(op.Key)
		switch wireKind(op) {
		case kindPutPrior:
			n += 1 + varintLen(op.ExpireAtMs) + bytesLen(op.Value)
		case OpPut:
			n += varintLen(op.ExpireAtMs) + bytesLen(op.Value)
		case OpFunctions:
			n += bytesLen(op.Value)
		case OpMeta:
			n += 1 + varintLen(op.ExpireAtMs) + uvarintLen(op.Version) + uvarintLen(op.Size)
		case OpSubPut:
			n += uvarintLen(op.Version) + bytesLen(op.Sub) + bytesLen(op.Value)
		case OpSubDel:
			n += uvarintLen(op.Version) + bytesLen(op.Sub)
		case OpDrop:
			n += uvarintLen(op.Version)
		}
	}
	return n
}

// varintLen and bytesLen are the lengths of what binary.AppendVarint and
// appendBytes append (uvarintLen, below, of binary.AppendUvarint).
func varintLen(x int64) int { return uvarintLen(uint64(x)<<1 ^ uint64(x>>63)) }
func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

// Decode parses one encoded entry. The returned entry's keys and values
// alias b. Any mismatch with the checksum or the format wraps ErrCorrupt;
// an intact entry of a format or op kind this build does not read is an
// *UnsupportedError (ErrUnsupported).
func Decode(b []byte) (Entry, error) {
	body, err := frame.Open(b, ErrCorrupt)
	if err != nil {
		return Entry{}, err
	}
	return decodeBody(body, nil, 0)
}

// OpArena holds the ops of many decoded entries in a few arrays, where
// Decode makes one per entry (a follower decodes every entry the leader
// sends it). An entry's Ops is a slice of the arena, capacity capped at its
// length, and keeps the array it is in alive. The zero value is ready.
type OpArena struct{ buf []Op }

// take returns an empty slice of capacity n from a's array, after a new
// array when a's has no room: one for n ops times the entries still to
// decode (left, counting this one), which are taken to be like this one,
// up to arenaOps (a guess too large for the entries that follow costs at
// most that much).
func (a *OpArena) take(n, left int) []Op {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]Op, 0, max(n, min(n*max(left, 1), arenaOps)))
	}
	at := len(a.buf)
	a.buf = a.buf[:at+n]
	return a.buf[at : at : at+n]
}

// arenaOps bounds the array OpArena makes for the entries to come (128
// bytes each: 128 KiB).
const arenaOps = 1024

// DecodeIn is Decode with the entry's ops in arena; left is how many
// entries the caller still has to decode, this one included (a hint for
// the arena's size).
func DecodeIn(b []byte, arena *OpArena, left int) (Entry, error) {
	body, err := frame.Open(b, ErrCorrupt)
	if err != nil {
		return Entry{}, err
	}
	return decodeBody(body, arena, left)
}

// DecodeVerified is Decode without the checksum, for bytes whose checksum
// this process computed (Encode) or verified where they arrived (from a
// peer, from disk): one checksum per entry per node. A format error still
// wraps ErrCorrupt.
func DecodeVerified(b []byte) (Entry, error) {
	if len(b) < frame.HeaderLen+1 {
		return Entry{}, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	return decodeBody(b[frame.HeaderLen:], nil, 0)
}

// PeekLSNVerified is PeekLSN without the checksum (see DecodeVerified).
func PeekLSNVerified(b []byte) (epoch, lsn uint64, err error) {
	if len(b) < frame.HeaderLen+1 {
		return 0, 0, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	return peekBody(b[frame.HeaderLen:])
}

func decodeBody(body []byte, arena *OpArena, left int) (Entry, error) {
	var e Entry
	d := decoder{buf: body}
	version := d.byte()
	if err := checkVersion(version, d.err); err != nil {
		return e, err
	}
	e.Epoch = d.uvarint()
	e.LSN = d.uvarint()
	e.TimeNs = d.varint()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) { // every op takes at least one byte
		d.fail("op count %d exceeds remaining %d bytes", n, len(d.buf))
	}
	if d.err == nil && n > 0 {
		if arena != nil {
			e.Ops = arena.take(int(n), left)
		} else {
			e.Ops = make([]Op, 0, n)
		}
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var op Op
		op.Kind = OpKind(d.byte())
		if d.err != nil {
			break
		}
		if f := kindFormat(op.Kind); f == 0 || f > version {
			if version == FormatV1 || op.Kind == 0 {
				// v1 is frozen and complete: a kind it never had is damage.
				d.fail("unknown op kind %d in a format %d entry", op.Kind, version)
				break
			}
			return Entry{}, &UnsupportedError{Version: version, Kind: op.Kind}
		}
		if op.Kind != OpFlushAll {
			op.Key = d.bytes()
		}
		switch op.Kind {
		case kindPutPrior:
			op.Kind = OpPut
			op.Prior = Prior(d.byte())
			if d.err == nil && (op.Prior == PriorUnknown || op.Prior > priorMax) {
				// v3 defines these three: any other is damage (an
				// unknown prior would have been written as a plain put).
				d.fail("put with prior %d", op.Prior)
			}
			op.ExpireAtMs = d.varint()
			op.Value = d.bytes()
		case OpPut:
			op.ExpireAtMs = d.varint()
			op.Value = d.bytes()
		case OpFunctions:
			op.Value = d.bytes()
			if d.err == nil && len(op.Key) != 0 {
				d.fail("functions op with a key")
			}
		case OpMeta:
			op.Type = d.byte()
			op.ExpireAtMs = d.varint()
			op.Version = d.uvarint()
			op.Size = d.uvarint()
		case OpSubPut:
			op.Version = d.uvarint()
			op.Sub = d.bytes()
			op.Value = d.bytes()
		case OpSubDel:
			op.Version = d.uvarint()
			op.Sub = d.bytes()
		case OpDrop:
			op.Version = d.uvarint()
		}
		e.Ops = append(e.Ops, op)
	}
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
	if d.err == nil && MinFormat(e.Ops) != version {
		// Append writes the lowest version that carries the ops: any
		// other is not an encoding this codec makes (one entry, one
		// encoding).
		d.fail("format %d entry whose ops need format %d", version, MinFormat(e.Ops))
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
	if err := checkVersion(body[0], nil); err != nil {
		return 0, 0, err
	}
	d := decoder{buf: body[1:]}
	epoch, lsn = d.uvarint(), d.uvarint()
	return epoch, lsn, d.err
}

// checkVersion refuses a version byte this build does not read: 0 was
// never written (damage), above MaxFormat is a newer writer's.
func checkVersion(v uint8, err error) error {
	switch {
	case err != nil:
		return err
	case v == 0:
		return fmt.Errorf("%w: format version 0", ErrCorrupt)
	case v > MaxFormat:
		return &UnsupportedError{Version: v}
	}
	return nil
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
