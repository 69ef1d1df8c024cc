package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Digest hashes the whole data keyspace (keys, values and expiry times) as
// of one consistent point, with the applied LSN at that point. Two nodes at
// the same applied LSN must have equal digests.
func (d *DB) Digest() (applied uint64, sum [32]byte, err error) {
	snap := d.pdb.NewSnapshot()
	defer snap.Close()
	applied, err = getUint(snap, metaApplied)
	if err != nil {
		return 0, sum, err
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return 0, sum, fmt.Errorf("storage: digest: %w", err)
	}
	defer it.Close()
	h := sha256.New()
	var n [8]byte
	for ok := it.First(); ok; ok = it.Next() {
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Key())))
		h.Write(n[:])
		h.Write(it.Key())
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Value())))
		h.Write(n[:])
		h.Write(it.Value())
	}
	if err := it.Error(); err != nil {
		return 0, sum, fmt.Errorf("storage: digest: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	return applied, sum, nil
}
