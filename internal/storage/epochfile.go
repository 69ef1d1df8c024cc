package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/tandemdb/tandem/internal/dataformat"
	"github.com/tandemdb/tandem/internal/logrec"
)

// The epoch file holds the highest epoch seen and the epoch history, the
// metadata that must be durable before the step after its change (a node
// refuses lower epochs after a restart; no log entry is durable without its
// epoch's start). With Pebble keeping no log, a durable Pebble write costs
// a flush of every memtable (~1 s under load, measured), which an epoch
// change (a failover) must not wait for; the file costs a write, an fsync,
// a rename and a directory fsync.
//
//	<dir>/epochs      seen epoch (8 bytes BE) | history (encodePositions) | CRC-32C of both (4 bytes BE)
//	<dir>/epochs.tmp  the next version, renamed over epochs once synced
//
// A data dir from before the file keeps these in Pebble (metaEpoch,
// metaEpochs): Open reads them from there once and writes the file, which
// wins from then on.
const epochFile = "epochs" // written as epochs.tmp, renamed over it

var epochCRC = crc32.MakeTable(crc32.Castagnoli)

// saveEpochs durably replaces the epoch file with seen and history. The
// caller serialises calls (d.mu, logMu or the single appender).
func (d *DB) saveEpochs(seen uint64, history []logrec.Position) error {
	b := binary.BigEndian.AppendUint64(nil, seen)
	b = append(b, encodePositions(history)...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, epochCRC))
	if err := dataformat.WriteAtomic(d.fs, d.dir, epochFile, b); err != nil {
		return fmt.Errorf("storage: epoch file: %w", err)
	}
	return nil
}

// loadEpochs reads the epoch file; ok is false when there is none.
func (d *DB) loadEpochs() (seen uint64, history []logrec.Position, ok bool, err error) {
	f, err := d.fs.Open(d.fs.PathJoin(d.dir, epochFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("storage: epoch file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, nil, false, fmt.Errorf("storage: epoch file: %w", err)
	}
	if len(b) < 12 || crc32.Checksum(b[:len(b)-4], epochCRC) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return 0, nil, false, fmt.Errorf("storage: epoch file of %d bytes fails its checksum: %w", len(b), ErrCorrupt)
	}
	history, err = decodePositions(b[8 : len(b)-4])
	if err != nil {
		return 0, nil, false, fmt.Errorf("storage: epoch file: %w: %w", ErrCorrupt, err)
	}
	return binary.BigEndian.Uint64(b), history, true, nil
}

// changeEpochs changes the seen epoch and the epoch history: f gets the
// current ones and returns the new ones, and whether they changed. A
// change is saved to the epoch file (durably) and then made visible. The
// epoch file holds both, so every change goes through here, one at a time
// (epochMu): two writers each rewriting the file from its own copy would
// lose the other's change.
func (d *DB) changeEpochs(f func(seen uint64, history []logrec.Position) (uint64, []logrec.Position, bool, error)) error {
	d.epochMu.Lock()
	defer d.epochMu.Unlock()
	d.mu.Lock()
	seen, history := d.epoch, d.epochs
	d.mu.Unlock()
	seen, history, changed, err := f(seen, history)
	if err != nil || !changed {
		return err
	}
	if err := d.saveEpochs(seen, history); err != nil {
		return err
	}
	d.mu.Lock()
	d.epoch, d.epochs = seen, history
	d.mu.Unlock()
	return nil
}
