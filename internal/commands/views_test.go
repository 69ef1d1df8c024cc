package commands

import (
	"bytes"
	"slices"
)

// Views for tests of big collections, shared by the type tests.

// countingView counts what a command reads: point reads (subs), scans and the
// rows the scans delivered.
type countingView struct {
	*memView
	subs, scans, rows int
}

func (c *countingView) Sub(key []byte, ver uint64, sub []byte) ([]byte, bool, error) {
	c.subs++
	return c.memView.Sub(key, ver, sub)
}

func (c *countingView) SubScan(key []byte, ver uint64, start []byte, fn func(sub, val []byte) bool) error {
	c.scans++
	return c.memView.SubScan(key, ver, start, func(sub, val []byte) bool {
		c.rows++
		return fn(sub, val)
	})
}

func (c *countingView) SubScanReverse(key []byte, ver uint64, end []byte, fn func(sub, val []byte) bool) error {
	c.scans++
	return c.memView.SubScanReverse(key, ver, end, func(sub, val []byte) bool {
		c.rows++
		return fn(sub, val)
	})
}

// sortedRows is rows in a sorted slice: a fast Rows for tests that seek
// many times (a Layer sorts its keys on every Iter).
type sortedRows struct{ keys, vals [][]byte }

func (r *sortedRows) Get(k []byte) ([]byte, bool, error) {
	i, ok := slices.BinarySearchFunc(r.keys, k, bytes.Compare)
	if !ok {
		return nil, false, nil
	}
	return r.vals[i], true, nil
}

func (r *sortedRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	i, _ := slices.BinarySearchFunc(r.keys, lo, bytes.Compare)
	for ; i < len(r.keys) && bytes.Compare(r.keys[i], hi) < 0; i++ {
		if !fn(r.keys[i], r.vals[i]) {
			break
		}
	}
	return nil
}

func (r *sortedRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	i, _ := slices.BinarySearchFunc(r.keys, hi, bytes.Compare)
	for i--; i >= 0 && bytes.Compare(r.keys[i], lo) >= 0; i-- {
		if !fn(r.keys[i], r.vals[i]) {
			break
		}
	}
	return nil
}
