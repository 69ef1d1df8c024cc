// Package snapshot is the codec for snapshot chunks: batches of stored
// key/value rows streamed from a leader to a follower that is being seeded.
//
// # Wire format (frozen)
//
//	crc32c uint32  little endian, Castagnoli, over every byte after it
//	count  uvarint
//	row*   keyLen uvarint, key, valueLen uvarint, value
//
// A chunk is a frame (package frame): the checksum, then a body that is
// everything from count on. Decode verifies the checksum first and rejects
// trailing bytes, so a damaged chunk is always an error, never a wrong row.
package snapshot

import (
	"encoding/binary"
	"fmt"

	"github.com/tandemdb/tandem/internal/frame"
)

// ErrCorrupt marks a chunk that does not match its checksum or does not
// parse, or a row that cannot be a stored value. It is a frame.ErrCorrupt:
// errors.Is(err, frame.ErrCorrupt) holds too. A follower that meets it
// refuses the snapshot; it is not a transient failure to retry through.
var ErrCorrupt = frame.NewCorruption("snapshot: corrupt chunk")

// Row is one stored key and its stored value.
type Row struct {
	Key, Value []byte
}

// Encoder builds one chunk at a time.
type Encoder struct {
	buf   []byte
	count uint64
	body  []byte
}

// Add appends a row to the chunk being built.
func (e *Encoder) Add(key, value []byte) {
	e.body = binary.AppendUvarint(e.body, uint64(len(key)))
	e.body = append(e.body, key...)
	e.body = binary.AppendUvarint(e.body, uint64(len(value)))
	e.body = append(e.body, value...)
	e.count++
}

// Len is the encoded size of the rows added so far.
func (e *Encoder) Len() int { return len(e.body) }

// Count is the number of rows added so far.
func (e *Encoder) Count() uint64 { return e.count }

// Finish returns the encoded chunk and resets the encoder. The returned
// slice is valid until the next call to Finish.
func (e *Encoder) Finish() []byte {
	e.buf = frame.Begin(e.buf[:0])
	e.buf = binary.AppendUvarint(e.buf, e.count)
	e.buf = append(e.buf, e.body...)
	frame.Seal(e.buf)
	e.body = e.body[:0]
	e.count = 0
	return e.buf
}

// Decode parses a chunk. Rows alias b.
func Decode(b []byte) ([]Row, error) {
	b, err := frame.Open(b, ErrCorrupt)
	if err != nil {
		return nil, err
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(count) {
		return nil, fmt.Errorf("%w: bad row count", ErrCorrupt)
	}
	b = b[n:]
	if count > uint64(len(b))/2 { // a row takes at least two bytes
		return nil, fmt.Errorf("%w: %d rows in %d bytes", ErrCorrupt, count, len(b))
	}
	rows := make([]Row, 0, count)
	field := func() ([]byte, error) {
		l, n := binary.Uvarint(b)
		if n <= 0 || n != uvarintLen(l) || l > uint64(len(b)-n) {
			return nil, fmt.Errorf("%w: bad field length", ErrCorrupt)
		}
		f := b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
		return f, nil
	}
	for i := uint64(0); i < count; i++ {
		k, err := field()
		if err != nil {
			return nil, err
		}
		v, err := field()
		if err != nil {
			return nil, err
		}
		rows = append(rows, Row{Key: k, Value: v})
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b))
	}
	return rows, nil
}

// uvarintLen is the length of the minimal uvarint encoding of v. Decode
// accepts only minimal lengths (binary.Uvarint also takes padded ones), so
// that a chunk has exactly one encoding.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
