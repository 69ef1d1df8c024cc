package storage

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// The key filter: which keys may have a metadata row
//
// The key counts need, for every metadata row Apply writes or deletes,
// whether the key had one before. Reading the old row costs a row cache
// lookup and, for a key the cache does not hold, a Pebble Get (a memtable
// seek and a look into every level): about as much as the write itself,
// and most of it for a key that is new, where the read finds nothing.
//
// keyFilter is a Bloom filter (split-block: one 32-byte block per key, one
// bit in each of its eight words) of every key that may have a metadata
// row: a key it does not hold has none, so Apply counts it as new without a
// read; a key it may hold is read as before. Its promise, the one
// invariant: every key with a stored metadata row was added. Rows are made
// only by Apply and IngestRows, which add their keys after their commit;
// a key deleted stays (the filter only answers "maybe" more often than
// needed, never "no" wrongly).
//
// The filter a DB uses (keyFilters.cur) was filled from a scan of the
// metadata rows, and every key committed since. A scan runs at Open (before
// Open returns when the data is small, else in the background, Apply
// reading every old row until it is done), and again whenever the keys
// added to the current filter pass its capacity (many new keys, or keys
// come and gone), sized for twice the keys then. A scan's filter is
// installed as next before its Pebble iterator is opened, and Apply and
// IngestRows load cur and next only after their commit, so every key is
// either in the iterator's view (committed before it was opened) or added
// to next (loaded after it was installed).

// keyFilter is a split-block Bloom filter safe for concurrent adds and
// lookups (atomic words).
type keyFilter struct {
	seed   maphash.Seed
	blocks []filterBlock
	// capacity is the keys it was sized for; added counts the adds that
	// set a bit (about the distinct keys added).
	capacity int64
	added    atomic.Int64
}

type filterBlock [8]atomic.Uint32

// filterBitsPerKey: about 1% false positives.
const filterBitsPerKey = 10

// filterSalt are the split-block filter's salts (Parquet's).
var filterSalt = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

func newKeyFilter(capacity int64) *keyFilter {
	n := max(capacity*filterBitsPerKey/256, 1)
	return &keyFilter{seed: maphash.MakeSeed(), blocks: make([]filterBlock, n), capacity: capacity}
}

func (f *keyFilter) locate(key []byte) (*filterBlock, uint32) {
	h := maphash.Bytes(f.seed, key)
	b := &f.blocks[(h>>32)*uint64(len(f.blocks))>>32]
	return b, uint32(h)
}

// add records that key may have a metadata row.
func (f *keyFilter) add(key []byte) {
	b, x := f.locate(key)
	set := false
	for i := range b {
		bit := uint32(1) << ((x * filterSalt[i]) >> 27)
		if b[i].Load()&bit == 0 {
			b[i].Or(bit)
			set = true
		}
	}
	if set {
		f.added.Add(1)
	}
}

// mayHave reports whether key may have a metadata row; false: it has none.
func (f *keyFilter) mayHave(key []byte) bool {
	b, x := f.locate(key)
	for i := range b {
		if b[i].Load()&(uint32(1)<<((x*filterSalt[i])>>27)) == 0 {
			return false
		}
	}
	return true
}

// full reports whether the filter holds as many keys as it was sized for.
func (f *keyFilter) full() bool { return f.added.Load() > f.capacity }

// keyFilters are a DB's key filters: cur (nil until the first scan is
// done) answers; next, while a scan fills it, also gets every key
// committed.
type keyFilters struct {
	cur, next atomic.Pointer[keyFilter]
	scanning  atomic.Bool
	stop      chan struct{} // closed by Close (once)
	stopOnce  sync.Once
	wg        sync.WaitGroup
	// reads counts Apply's reads of an old row for the counts, scans the
	// scans done (tests).
	reads, scans atomic.Int64
}

// Filter sizing: at least filterMinKeys, else twice the keys at the scan.
// A data dir of at most filterSyncKeys keys is scanned before Open returns.
var (
	filterMinKeys  int64 = 1 << 16
	filterSyncKeys int64 = 1 << 17
)

// added records keys just committed as metadata rows. Call it only after
// their commit.
func (fs *keyFilters) added(keys [][]byte) {
	for _, f := range [2]*keyFilter{fs.cur.Load(), fs.next.Load()} {
		if f == nil {
			continue
		}
		for _, k := range keys {
			f.add(k)
		}
	}
}

// startScan begins a scan into a new filter sized for keys, unless one
// runs; wait makes it run before startScan returns.
func (d *DB) startScan(keys int64, wait bool) {
	fs := &d.filters
	if !fs.scanning.CompareAndSwap(false, true) {
		return
	}
	f := newKeyFilter(max(2*keys, filterMinKeys))
	fs.next.Store(f) // before the iterator: see the comment at the top
	scan := func() {
		defer fs.scanning.Store(false)
		if err := d.scanKeys(f); err != nil {
			fs.next.Store(nil)
			d.log.Warn("storage: the key filter's scan failed; the key counts read each old row until the next", "err", err)
			return
		}
		fs.cur.Store(f)
		fs.next.Store(nil)
		fs.scans.Add(1)
	}
	if wait {
		scan()
		return
	}
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		scan()
	}()
}

// errScanStopped: Close came during a scan.
type errScanStopped struct{}

func (errScanStopped) Error() string { return "storage: closing" }

// scanKeys adds every key with a metadata row to f.
func (d *DB) scanKeys(f *keyFilter) error {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: keyspace.MetaLower, UpperBound: keyspace.MetaUpper})
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		f.add(it.Key()[1:])
		if n++; n%4096 == 0 {
			select {
			case <-d.filters.stop:
				return errScanStopped{}
			default:
			}
		}
	}
	return it.Error()
}

// closeFilters stops a scan that runs and waits for it.
func (d *DB) closeFilters() {
	d.filters.stopOnce.Do(func() { close(d.filters.stop) })
	d.filters.wg.Wait()
}

// maybeRescan starts a scan into a fresh filter when the current one is
// full: it was sized for fewer keys than were added since.
func (d *DB) maybeRescan(keys int64) {
	if f := d.filters.cur.Load(); f != nil && f.full() {
		d.startScan(keys, false)
	}
}
