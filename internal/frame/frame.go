// Package frame is the checksum framing that tandem's frozen codecs share
// (logrec entries, snapshot chunks), and the project's one corruption
// marker.
//
// # Frame layout (part of the logrec and snapshot wire formats: frozen)
//
//	crc32c uint32  little endian, Castagnoli, over every byte after it
//	body   one byte or more, the codec's own format
//
// A frame is a whole record: the checksum covers the body to its last byte,
// and there is no length field, because every carrier (a wal record, a
// Pebble value, a protobuf bytes field) already knows where the record
// ends. Open verifies
// the checksum before a codec parses anything, so a flipped bit anywhere in
// the record is an error.
//
// # Corruption
//
// ErrCorrupt is the marker for bytes that are damaged: a record that does
// not verify or does not parse, or stored data that cannot be what was
// written. Each layer declares its own sentinel with NewCorruption
// (logrec.ErrCorrupt, snapshot.ErrCorrupt, wal.ErrCorrupt,
// storage.ErrCorrupt), so an error says who found the damage, and
// errors.Is(err, frame.ErrCorrupt) holds for all of them. Corruption is
// never a torn tail or a network failure: a caller must refuse the data,
// not retry or skip it.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderLen is the size of the checksum that starts every frame. Part of the
// wire format.
const HeaderLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC32C (Castagnoli) of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Begin appends a frame header (a checksum placeholder) to dst. Append the
// body after it, then Seal the frame.
func Begin(dst []byte) []byte { return append(dst, 0, 0, 0, 0) }

// Seal writes the checksum of f's body into f's header. f is the whole
// frame, from the header Begin appended to the body's last byte.
func Seal(f []byte) {
	binary.LittleEndian.PutUint32(f, Checksum(f[HeaderLen:]))
}

// Open verifies frame b and returns its body, which aliases b. A frame too
// short to hold a header and a body byte, or whose checksum does not match,
// is an error wrapping corrupt, the caller's corruption sentinel.
func Open(b []byte, corrupt error) ([]byte, error) {
	if len(b) < HeaderLen+1 {
		return nil, fmt.Errorf("%w: %d bytes is too short", corrupt, len(b))
	}
	if want, got := binary.LittleEndian.Uint32(b), Checksum(b[HeaderLen:]); want != got {
		return nil, fmt.Errorf("%w: checksum %08x, computed %08x", corrupt, want, got)
	}
	return b[HeaderLen:], nil
}

// ErrCorrupt marks damaged bytes. Test with errors.Is (or IsCorruption):
// errors carry a layer's own sentinel made by NewCorruption, which is this
// marker too.
var ErrCorrupt error = &corruption{"corrupt data"}

// NewCorruption returns a new sentinel error with text msg that is a
// corruption: errors.Is(err, ErrCorrupt) holds for it and for every error
// that wraps it. Declare it once, in a var block, like errors.New.
func NewCorruption(msg string) error { return &corruption{msg} }

// IsCorruption reports whether err is, or wraps, a corruption.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorrupt) }

type corruption struct{ msg string }

func (c *corruption) Error() string { return c.msg }

func (c *corruption) Is(target error) bool { return target == ErrCorrupt }
