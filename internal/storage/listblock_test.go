package storage

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
)

// TestListBlocksFollowWrites: LRANGE answers from list blocks made from
// cached element rows (listblock.go), and every write that changes an
// element (pushes into a block's free indexes, pops, LSET, LINSERT, LREM,
// LTRIM, LMOVE, DEL and a new list of the key, FLUSHALL) leaves no block
// that answers the old elements: every range answers as a model list
// does, and the blocks are used (a block LRANGE read is cached after it).
// Fails with Apply not dropping the block of an element it writes or
// deletes, or a block made with a span other than the list's.
func TestListBlocksFollowWrites(t *testing.T) {
	d, err := Open(dir, Options{FS: vfs.NewMem(), CacheBytes: 1 << 20, RowCacheBytes: 64 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(5, 17))
	run, lsn := cmdRunner(t, d)
	var model []string
	value := func() string { return fmt.Sprintf("%d-%s", *lsn, make([]byte, rng.IntN(40))) }
	blocksUsed := 0
	check := func(what string) {
		t.Helper()
		n := len(model)
		ranges := [][2]int{{0, -1}, {0, 99}, {-40, -1}, {n / 2, n/2 + 33}}
		for range 6 {
			ranges = append(ranges, [2]int{rng.IntN(n+10) - 5, rng.IntN(n+10) - 5})
		}
		for _, r := range ranges {
			got := run("LRANGE", "l", strconv.Itoa(r[0]), strconv.Itoa(r[1]))
			want := lrangeModel(model, r[0], r[1])
			bs, _ := got.(commands.Bulks)
			if len(bs) != len(want) {
				t.Fatalf("after %s: LRANGE %d %d of %d = %d elements, want %d", what, r[0], r[1], n, len(bs), len(want))
			}
			for i := range want {
				if string(bs[i]) != want[i] {
					t.Fatalf("after %s: LRANGE %d %d of %d: element %d = %.12q, want %.12q", what, r[0], r[1], n, i, bs[i], want[i])
				}
			}
		}
		if n == 0 {
			return
		}
		m, ok, err := storageViewGet(d, "l")
		if err != nil || !ok {
			t.Fatalf("list: %v %v", ok, err)
		}
		headRow, _, _ := dbRows{d}.Get(keyspace.SubKey([]byte("l"), m.Version, keyspace.ListHeadSub))
		head, _ := keyspace.DecodeListHead(headRow)
		if raw, ok, _ := d.rows.Get(keyspace.ListBlockKey(nil, []byte("l"), m.Version, head)); ok && raw != nil {
			blocksUsed++
		}
	}
	for step := range 600 {
		var what string
		switch c := rng.IntN(13); c {
		case 0, 1:
			v := value()
			run("LPUSH", "l", v)
			model = append([]string{v}, model...)
			what = "LPUSH"
		case 2, 3:
			v := value()
			run("RPUSH", "l", v)
			model = append(model, v)
			what = "RPUSH"
		case 4:
			if len(model) == 0 {
				continue
			}
			i := rng.IntN(len(model))
			v := value()
			run("LSET", "l", strconv.Itoa(i), v)
			model[i] = v
			what = "LSET"
		case 5:
			if len(model) == 0 {
				continue
			}
			k := rng.IntN(3) + 1
			if rng.IntN(2) == 0 {
				run("LPOP", "l", strconv.Itoa(k))
				model = model[min(k, len(model)):]
			} else {
				run("RPOP", "l", strconv.Itoa(k))
				model = model[:len(model)-min(k, len(model))]
			}
			what = "pop"
		case 6:
			if len(model) == 0 {
				continue
			}
			pivot := model[rng.IntN(len(model))]
			v := value()
			run("LINSERT", "l", "BEFORE", pivot, v)
			for i := range model {
				if model[i] == pivot {
					model = append(model[:i], append([]string{v}, model[i:]...)...)
					break
				}
			}
			what = "LINSERT"
		case 7:
			if len(model) == 0 {
				continue
			}
			x := model[rng.IntN(len(model))]
			run("LREM", "l", "1", x)
			for i := range model {
				if model[i] == x {
					model = append(model[:i], model[i+1:]...)
					break
				}
			}
			what = "LREM"
		case 8:
			if len(model) < 4 || rng.IntN(3) != 0 {
				continue
			}
			a, b := rng.IntN(len(model)/2), len(model)-1-rng.IntN(len(model)/2)
			run("LTRIM", "l", strconv.Itoa(a), strconv.Itoa(b))
			model = append([]string(nil), model[a:b+1]...)
			what = "LTRIM"
		case 9:
			if len(model) < 2 {
				continue
			}
			run("LMOVE", "l", "l", "LEFT", "RIGHT")
			model = append(model[1:], model[0])
			what = "LMOVE"
		case 10:
			if rng.IntN(8) != 0 {
				continue
			}
			run("DEL", "l")
			model = nil
			what = "DEL"
		case 11:
			if rng.IntN(15) != 0 {
				continue
			}
			run("FLUSHALL")
			model = nil
			what = "FLUSHALL"
		case 12:
			// Elements pushed as one entry: several rows of a block.
			vs := []string{value(), value(), value()}
			run("RPUSH", "l", vs[0], vs[1], vs[2])
			model = append(model, vs...)
			what = "RPUSH of 3"
		}
		if step%97 == 96 {
			if err := d.pdb.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		check(what)
	}
	t.Logf("head block cached after %d of 600 reads", blocksUsed)
	if blocksUsed < 300 {
		t.Fatalf("the list's head block was cached after %d of 600 reads: the blocks were not used", blocksUsed)
	}
}
