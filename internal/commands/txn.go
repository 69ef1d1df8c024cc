package commands

import (
	"unsafe"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// txn is the write set of one command: reads see the command's own earlier
// writes, because every op it records is applied (keyspace.Apply) to a
// keyspace.Layer over the command's view and read back through a
// keyspace.Reader: the same lookup and expiry rule as the stored data. A
// string key written twice keeps one operation holding its final state (in
// the position of its first write), which is what makes "MSET a 1 a 2" or
// "DEL a a" come out right in row form with one op per key; sub-key ops are
// recorded in order.
type txn struct {
	v   View
	ops []logrec.Op
	// idx maps a key to its first operation once there are enough
	// operations that a linear search would cost more than the map; nil
	// until then.
	idx map[string]int
	// layer holds the rows of ops[:applied]; nil until a read comes after
	// a write (MSET never builds one).
	layer   *keyspace.Layer
	applied int
}

// collectionOps is the room a transaction makes for its ops when the
// first is a collection's (a string write logs one).
const collectionOps = 4

// linearMax is how many operations txn searches linearly before it builds
// an index; small commands (SET, INCR, a short MSET) never allocate one.
const linearMax = 8

func (t *txn) find(key []byte) int {
	if t.idx != nil {
		if i, ok := t.idx[string(key)]; ok {
			return i
		}
		return -1
	}
	for i := range t.ops {
		if string(t.ops[i].Key) == string(key) {
			return i
		}
	}
	return -1
}

// view is the command's view with its own writes over it.
func (t *txn) view() View {
	if len(t.ops) == 0 {
		return t.v
	}
	if t.layer == nil {
		t.layer = keyspace.NewLayer(t.v.Rows())
	}
	for ; t.applied < len(t.ops); t.applied++ {
		// The op is the command's own: it applies (a failure would be a
		// bug in this package, and storage's Apply of the entry would
		// report it).
		_ = keyspace.Apply(t.layer, &t.ops[t.applied])
	}
	return keyspace.Reader{R: t.layer, NowMs: t.v.Now(), LSN: t.v.NewVersion()}
}

// get returns key's value as the command has left it so far.
func (t *txn) get(key []byte) (Value, bool, error) { return t.view().Get(key) }

func (t *txn) put(key, value []byte, expireAtMs int64) {
	t.record(logrec.Op{Kind: logrec.OpPut, Key: key, Value: value, ExpireAtMs: expireAtMs})
}

// del deletes key, whose value is val: a drop of a collection's version.
func (t *txn) del(key []byte, val Value) {
	t.record(keyspace.DeleteOp(key, val))
}

// wholeKey reports whether op replaces everything a string key holds, so
// that a later one for the same key can take its place.
func wholeKey(k logrec.OpKind) bool { return k == logrec.OpPut || k == logrec.OpDelete }

func (t *txn) record(op logrec.Op) {
	if i := t.find(op.Key); i >= 0 && wholeKey(op.Kind) && wholeKey(t.ops[i].Kind) {
		t.ops[i] = op
		if i < t.applied {
			_ = keyspace.Apply(t.layer, &op) // the latest for its key
		}
		return
	}
	if t.idx != nil && t.find(op.Key) < 0 {
		t.idx[keyString(op.Key)] = len(t.ops)
	}
	if t.ops == nil && !wholeKey(op.Kind) {
		// A collection's write logs a few ops (an element, a head row, a
		// metadata row): one allocation rather than growing 1, 2, 4.
		t.ops = make([]logrec.Op, 0, collectionOps)
	}
	t.ops = append(t.ops, op)
	if t.idx == nil && len(t.ops) > linearMax {
		t.idx = make(map[string]int, 2*len(t.ops))
		for i := len(t.ops) - 1; i >= 0; i-- {
			t.idx[keyString(t.ops[i].Key)] = i
		}
	}
}

// keyString is an op's key as a map key of idx, without a copy: an op's
// key is the command's argument or a slice no one writes again (the entry
// encodes it after the command returns), so it outlives the txn unchanged.
// A copy was an allocation per key of an MSET of more than linearMax.
func keyString(k []byte) string { return unsafe.String(unsafe.SliceData(k), len(k)) }

func (t *txn) result(r Reply) (Result, error) { return Result{Reply: r, Ops: t.ops}, nil }
