package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/logrec"
)

func (d *DB) getUint(key []byte) (uint64, error) { return getUint(d.pdb, key) }

func (d *DB) getMeta(key []byte) ([]byte, bool, error) {
	v, closer, err := d.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: read %s: %w", key[1:], err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func getUint(g getter, key []byte) (uint64, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: read %s: %w", key[1:], err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("storage: %s is %d bytes: %w", key[1:], len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

func expiryKey(atMs int64, key []byte) []byte {
	k := make([]byte, 9, 9+len(key))
	k[0] = prefixExpiry
	binary.BigEndian.PutUint64(k[1:], uint64(atMs))
	return append(k, key...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func encodePosition(p logrec.Position) []byte {
	return binary.BigEndian.AppendUint64(be64(p.Epoch), p.LSN)
}

func decodePosition(b []byte) (logrec.Position, error) {
	if len(b) != 16 {
		return logrec.Position{}, fmt.Errorf("position of %d bytes: %w", len(b), ErrCorrupt)
	}
	return logrec.Position{Epoch: binary.BigEndian.Uint64(b), LSN: binary.BigEndian.Uint64(b[8:])}, nil
}

func encodePositions(ps []logrec.Position) []byte {
	var out []byte
	for _, p := range ps {
		out = append(out, encodePosition(p)...)
	}
	return out
}

func decodePositions(b []byte) ([]logrec.Position, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("positions of %d bytes: %w", len(b), ErrCorrupt)
	}
	var out []logrec.Position
	for i := 0; i < len(b); i += 16 {
		p, _ := decodePosition(b[i : i+16])
		out = append(out, p)
	}
	return out, nil
}

// pebbleLogger sends Pebble's own messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
