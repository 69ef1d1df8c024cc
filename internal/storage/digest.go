package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Digest hashes the whole keyspace (package keyspace's live rows: every
// key's metadata row, with its value and expiry, and the sub-key rows of
// the versions they name; not the garbage Sweep removes) as of one
// consistent point, with the applied LSN at that point. Two nodes at
// the same applied LSN must have equal digests.
func (d *DB) Digest() (applied uint64, sum [32]byte, err error) {
	defer d.trim.kick() // a read of everything churns the block cache
	snap := d.consistentSnapshot()
	defer snap.Close()
	applied, err = getUint(snap, metaApplied)
	if err != nil {
		return 0, sum, err
	}
	h := sha256.New()
	var n [8]byte
	err = eachLiveRow(snap, func(k, v []byte) error {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write(k)
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
		return nil
	})
	if err != nil {
		return 0, sum, fmt.Errorf("storage: digest: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	return applied, sum, nil
}

// consistentSnapshot is a Pebble snapshot of whole Applies: taken under
// readMu, so never between the parts of one (apply.go).
func (d *DB) consistentSnapshot() *pebble.Snapshot {
	d.readMu.RLock()
	defer d.readMu.RUnlock()
	return d.pdb.NewSnapshot()
}
