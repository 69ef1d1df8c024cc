package rowcache

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestFillGetInvalidate(t *testing.T) {
	c := New(1 << 20)
	if _, ok, _ := c.Get([]byte("k")); ok {
		t.Fatal("empty cache hit")
	}
	_, _, tok := c.Get([]byte("k"))
	row := []byte("v1")
	c.Fill([]byte("k"), row, tok)
	row[0] = 'X' // the cache keeps its own copy
	if got, ok, _ := c.Get([]byte("k")); !ok || string(got) != "v1" {
		t.Fatalf("Get = %q, %v; want v1", got, ok)
	}
	c.Invalidate([]byte("k"))
	if _, ok, _ := c.Get([]byte("k")); ok {
		t.Fatal("hit after Invalidate")
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 3 || st.Rows != 0 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPut(t *testing.T) {
	c := New(1 << 20)
	_, _, tok := c.Get([]byte("k"))
	c.Put([]byte("k"), []byte("new")) // a write committed after the token
	c.Fill([]byte("k"), []byte("old"), tok)
	if got, ok, _ := c.Get([]byte("k")); !ok || string(got) != "new" {
		t.Fatalf("Get = %q, %v; want the put row", got, ok)
	}
	c.Put([]byte("k"), nil) // a delete: cached as no row
	if got, ok, _ := c.Get([]byte("k")); !ok || len(got) != 0 {
		t.Fatalf("Get after an empty Put = %q, %v", got, ok)
	}
	c.Put([]byte("k"), make([]byte, 1<<20)) // too big: the old row goes
	if _, ok, _ := c.Get([]byte("k")); ok {
		t.Fatal("oversize Put left a row")
	}
	if c.Cacheable(1, 1<<20) || !c.Cacheable(1, 100) {
		t.Fatal("Cacheable disagrees with the shard bound")
	}
	if st := c.Stats(); st.Rows != 0 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A reader whose store read may predate an invalidation must not fill.
func TestFillAfterInvalidateIsDropped(t *testing.T) {
	c := New(1 << 20)
	_, _, tok := c.Get([]byte("k"))
	c.Invalidate([]byte("k")) // a writer replaced the row after the token
	c.Fill([]byte("k"), []byte("old"), tok)
	if got, ok, _ := c.Get([]byte("k")); ok {
		t.Fatalf("stale fill kept: %q", got)
	}
	_, _, tok = c.Get([]byte("k"))
	c.Clear()
	c.Fill([]byte("k"), []byte("old"), tok)
	if _, ok, _ := c.Get([]byte("k")); ok {
		t.Fatal("fill across Clear kept")
	}
}

func TestBoundedBytes(t *testing.T) {
	const budget = 1 << 20
	c := New(budget)
	row := make([]byte, 100)
	for i := range 20000 {
		k := []byte("key:" + strconv.Itoa(i))
		_, _, tok := c.Get(k)
		c.Fill(k, row, tok)
	}
	st := c.Stats()
	if st.Bytes > budget {
		t.Fatalf("holds %d bytes, budget %d", st.Bytes, budget)
	}
	if st.Rows == 0 || st.Rows*(100+entryOverhead) > budget {
		t.Fatalf("rows %d for budget %d", st.Rows, budget)
	}
	// Refilling a cached key replaces it without growing.
	k := []byte("again")
	for range 3 {
		_, _, tok := c.Get(k)
		c.Fill(k, row, tok)
	}
	if got := c.Stats().Bytes; got > budget {
		t.Fatalf("holds %d bytes after refills", got)
	}
	// A row bigger than an eighth of a shard is not cached.
	big := make([]byte, budget/shardCount)
	_, _, tok := c.Get([]byte("big"))
	c.Fill([]byte("big"), big, tok)
	if _, ok, _ := c.Get([]byte("big")); ok {
		t.Fatal("oversize row cached")
	}
	if _, ok, _ := New(0).Get(k); ok {
		t.Fatal("zero cache hit")
	}
}

// TestNoStaleReadUnderRace runs writers that commit a new version to a
// model store and then invalidate, beside readers that follow the
// reader protocol. A reader that starts after a writer's Invalidate must
// never see an older version than the writer committed.
func TestNoStaleReadUnderRace(t *testing.T) {
	const keys = 8
	c := New(1 << 20)
	var store [keys]atomic.Uint64     // the committed version per key
	var published [keys]atomic.Uint64 // versions whose Invalidate returned
	var writers, readers sync.WaitGroup
	var stale atomic.Value
	stop := make(chan struct{})
	for w := range keys {
		writers.Go(func() {
			for v := uint64(1); v <= 3000; v++ {
				store[w].Store(v)
				if v%2 == 0 {
					c.Put(key(w), []byte(strconv.FormatUint(v, 10)))
				} else {
					c.Invalidate(key(w))
				}
				published[w].Store(v)
			}
		})
	}
	for r := range 4 {
		readers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := rng.IntN(keys)
				floor := published[k].Load()
				row, ok, tok := c.Get(key(k))
				var v uint64
				if ok {
					v, _ = strconv.ParseUint(string(row), 10, 64)
				} else {
					v = store[k].Load()
					c.Fill(key(k), []byte(strconv.FormatUint(v, 10)), tok)
				}
				if v < floor {
					stale.Store(fmt.Sprintf("key %d: read version %d after version %d was published", k, v, floor))
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if s := stale.Load(); s != nil {
		t.Fatal(s)
	}
}

func key(i int) []byte { return []byte("key:" + strconv.Itoa(i)) }

func BenchmarkGetHit(b *testing.B) {
	c := New(64 << 20)
	row := make([]byte, 108)
	ks := make([][]byte, 100000)
	for i := range ks {
		ks[i] = []byte("key:" + strconv.Itoa(i))
		_, _, tok := c.Get(ks[i])
		c.Fill(ks[i], row, tok)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, ok, _ := c.Get(ks[i%len(ks)]); !ok {
			b.Fatal("miss")
		}
	}
}
