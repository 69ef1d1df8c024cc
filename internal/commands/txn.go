package commands

import "github.com/tandemdb/tandem/internal/logrec"

// txn is the write set of one command: reads see the command's own earlier
// writes, and a key written twice keeps one operation holding its final
// state (in the position of its first write). That is what makes
// "MSET a 1 a 2" or "DEL a a" come out right in row form.
type txn struct {
	v   View
	ops []logrec.Op
	// idx maps a key to its operation once there are enough operations
	// that a linear search would cost more than the map; nil until then.
	idx map[string]int
}

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

// get returns key's value as the command has left it so far.
func (t *txn) get(key []byte) (Value, bool, error) {
	if i := t.find(key); i >= 0 {
		op := &t.ops[i]
		if op.Kind == logrec.OpDelete {
			return Value{}, false, nil
		}
		return Value{Data: op.Value, ExpireAtMs: op.ExpireAtMs}, true, nil
	}
	return t.v.Get(key)
}

func (t *txn) put(key, value []byte, expireAtMs int64) {
	t.record(logrec.Op{Kind: logrec.OpPut, Key: key, Value: value, ExpireAtMs: expireAtMs})
}

func (t *txn) del(key []byte) {
	t.record(logrec.Op{Kind: logrec.OpDelete, Key: key})
}

func (t *txn) record(op logrec.Op) {
	if i := t.find(op.Key); i >= 0 {
		t.ops[i] = op
		return
	}
	t.ops = append(t.ops, op)
	switch {
	case t.idx != nil:
		t.idx[string(op.Key)] = len(t.ops) - 1
	case len(t.ops) > linearMax:
		t.idx = make(map[string]int, 2*len(t.ops))
		for i := range t.ops {
			t.idx[string(t.ops[i].Key)] = i
		}
	}
}

func (t *txn) result(r Reply) (Result, error) { return Result{Reply: r, Ops: t.ops}, nil }
