package keyspace

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestHintsListRunsModel: list pops through Hints.ListPop (over a Layer
// over base rows, as the leader's overlay) read what the rows hold,
// whatever the mix of pops of one or a few from either end (reads ahead
// up and down), pushes at either end, overwrites (LSET), an element taken
// out of the middle (LREM's rewrite: the elements on the nearer side
// shift by one), deletes from the ends without a pop (LTRIM), elements
// too big for a run and runs filled to their byte bound, drops and new
// versions, while entries move to the base. After every entry, every run
// is checked against the rows: each index it covers holds its value
// exactly, within its bounds (the invariant in listruns.go).
func TestHintsListRunsModel(t *testing.T) {
	k := []byte("list")
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 23))
		m := newHintsModel(t, r)
		truth, h := m.truth, m.h
		lsn := uint64(1)
		write := func(ops []logrec.Op) {
			m.write(lsn, ops)
			lsn++
		}
		value := func() []byte {
			switch r.IntN(30) {
			case 0:
				return fmt.Appendf(nil, "%05000d", lsn) // too big for a run
			case 1, 2, 3:
				return fmt.Appendf(nil, "%03000d", lsn) // a run holds five
			}
			return fmt.Appendf(nil, "v%d", lsn)
		}
		ver := uint64(1)
		head, size := ListStartIndex, uint64(0)
		put := func(i uint64) logrec.Op {
			return logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: ver, Sub: ListIndexSub(i), Value: value()}
		}
		dele := func(i uint64) logrec.Op {
			return logrec.Op{Kind: logrec.OpSubDel, Key: k, Version: ver, Sub: ListIndexSub(i)}
		}
		fill := func() {
			var ops []logrec.Op
			for range 50 + r.IntN(150) {
				ops = append(ops, put(head+size))
				size++
			}
			write(ops)
		}
		fill()
		checkRuns := func() {
			t.Helper()
			for prefix, lr := range h.lists {
				for _, run := range []*listRun{&lr.head, &lr.tail} {
					if run.n > windowRows || run.bytes > windowBytes {
						t.Fatalf("seed %d lsn %d: a run of %d rows, %d bytes", seed, lsn, run.n, run.bytes)
					}
					sum := 0
					for j := range run.n {
						i := run.lo + uint64(j)
						got := run.at(i)
						sum += len(got)
						want, ok := truth[prefix+string(ListIndexSub(i))]
						if !ok || want != string(got) {
							t.Fatalf("seed %d lsn %d: run (tail %v) holds %.20q at index %d, the row is %.20q (%v)", seed, lsn, run.tail, got, i-ListStartIndex, want, ok)
						}
					}
					if sum != run.bytes {
						t.Fatalf("seed %d lsn %d: a run counts %d bytes, holds %d", seed, lsn, run.bytes, sum)
					}
				}
			}
		}
		for range 1500 {
			var ops []logrec.Op
			switch c := r.IntN(60); {
			case size == 0 || c == 0:
				if size > 0 {
					write([]logrec.Op{DeleteOp(k, Value{Type: TypeList, Version: ver, Size: size})})
				}
				ver = lsn
				head, size = ListStartIndex, 0
				fill()
				continue
			case c < 8: // a push of 1..3 at either end
				left := r.IntN(2) == 0
				for range 1 + r.IntN(3) {
					if left {
						head--
						ops = append(ops, put(head))
					} else {
						ops = append(ops, put(head+size))
					}
					size++
				}
			case c < 10: // LSET
				ops = append(ops, put(head+r.Uint64N(size)))
			case c < 12: // LREM of one: the nearer side shifts over it
				p := r.Uint64N(size)
				if p < size/2 {
					for q := p; q > 0; q-- {
						ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: ver, Sub: ListIndexSub(head + q), Value: truthAt(truth, k, ver, head+q-1)})
					}
					ops = append(ops, dele(head))
					head++
				} else {
					for q := p; q+1 < size; q++ {
						ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: ver, Sub: ListIndexSub(head + q), Value: truthAt(truth, k, ver, head+q+1)})
					}
					ops = append(ops, dele(head+size-1))
				}
				size--
			case c < 13: // LTRIM of a few from either end
				for range min(size-1, uint64(1+r.IntN(5))) {
					if r.IntN(2) == 0 {
						ops = append(ops, dele(head))
						head++
					} else {
						ops = append(ops, dele(head+size-1))
					}
					size--
				}
			default: // pops of 1..3 from one end, in one entry
				tail := r.IntN(2) == 0
				for n := 1 + r.IntN(3); n > 0 && size > 1; n-- {
					at := head
					if tail {
						at = head + size - 1
					}
					got, ok, err := h.ListPop(k, ver, at, tail)
					if err != nil {
						t.Fatal(err)
					}
					want, wok := truth[string(SubKey(k, ver, ListIndexSub(at)))]
					if ok != wok || string(got) != want {
						t.Fatalf("seed %d lsn %d: pop (tail %v) of index %d: %.20q %v, want %.20q %v", seed, lsn, tail, at-ListStartIndex, got, ok, want, wok)
					}
					ops = append(ops, dele(at))
					if !tail {
						head++
					}
					size--
				}
			}
			if len(ops) > 0 {
				write(ops)
			}
			checkRuns()
		}
		if h.runPops == 0 || h.readAheads == 0 {
			t.Fatalf("seed %d: %d pops from runs, %d reads ahead", seed, h.runPops, h.readAheads)
		}
	}
}

func truthAt(truth memRows, k []byte, ver, i uint64) []byte {
	return bytes.Clone([]byte(truth[string(SubKey(k, ver, ListIndexSub(i)))]))
}
