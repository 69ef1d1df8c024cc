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
// come and gone), sized for filterGrowth times the keys then. A scan's filter is
// installed as next before its Pebble iterator is opened, and Apply and
// IngestRows load cur and next only after their commit, so every key is
// either in the iterator's view (committed before it was opened) or added
// to next (loaded after it was installed).
//
// Point reads use it too: dbRows.Get of a metadata row the row cache
// misses answers "none" without Pebble when the filter does not hold the
// key (INCR of a new counter, GET of a missing key). That needs the
// promise to hold for readers as well: Apply adds a key after its commit
// and before the row cache can show its row, while it holds readMu (which
// every read command holds shared), and on the leader the overlay keeps
// an entry's rows until its Apply has returned; IngestRows adds before it
// invalidates the cached rows.

// The sub-key filter: which sub-key rows may be stored
//
// A write to a collection reads the sub-key row it changes first: SADD
// and HSET to know whether the member or field is new (their reply and
// the size), ZADD for the old score. For a new one the row cache has
// nothing (a read that finds no sub-key row caches nothing), so the read
// went to Pebble: a seek in every memtable and a look into every level,
// about a tenth of the leader's CPU under SADD and HSET. A second filter
// of the same kind (DB.subFilters) holds the full row key of every
// sub-key row stored, with the same promise (every sub-key row stored was
// added: Apply adds each it writes, chunks included, and IngestRows each
// it ingests, after their commit and before Apply releases readMu, so a
// read command (which holds it) never finds a committed row missing, and
// the leader's overlay holds an entry's rows until its Apply returned),
// and point reads of sub-key rows (dbRows.Get) answer "none" without
// Pebble for a row it does not hold. It is scanned at Open, always in the
// background (the rows' number is not kept: first for filterMinKeys,
// again for filterGrowth times the rows found when there were more), and again when
// the adds pass its capacity. Its cost: 10 to 40 bits per sub-key row (filterGrowth), and a
// hash per sub-key row written and per point read the row cache misses.

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

// keyFilters are a DB's filters of one kind of row (the metadata rows,
// or the sub-key rows): cur (nil until the first scan is done) answers;
// next, while a scan fills it, also gets every key committed.
type keyFilters struct {
	cur, next atomic.Pointer[keyFilter]
	scanning  atomic.Bool
	stop      chan struct{} // closed by Close (once)
	stopOnce  sync.Once
	wg        sync.WaitGroup
	// lo and hi bound the rows a scan reads; strip is how many leading
	// bytes of a row key are not the filter's key (the metadata rows'
	// 'd'; a sub-key row is held under its full row key).
	lo, hi []byte
	strip  int
	// reads counts Apply's reads of an old row for the counts (metadata
	// filters), spared the point reads of sub-key rows the filter
	// answered without Pebble (sub-key filters), scans the scans done and
	// scanned the rows they read (tests).
	reads, spared, scans, scanned atomic.Int64
}

// init readies fs to filter the rows in [lo, hi), each under its key less
// strip leading bytes.
func (fs *keyFilters) init(lo, hi []byte, strip int) {
	fs.lo, fs.hi, fs.strip = lo, hi, strip
	fs.stop = make(chan struct{})
}

// filtersOf returns the filters of the row key k's kind, nil if none.
func (d *DB) filtersOf(k []byte) *keyFilters {
	switch {
	case len(k) == 0:
		return nil
	case k[0] == keyspace.PrefixMeta:
		return &d.filters
	case k[0] == keyspace.PrefixSub:
		return &d.subFilters
	}
	return nil
}

// mayHave reports whether the row key k may be stored: false only when
// a filter is ready and does not hold it.
func (fs *keyFilters) mayHave(k []byte) bool {
	f := fs.cur.Load()
	return f == nil || f.mayHave(k[fs.strip:])
}

// Filter sizing: at least filterMinKeys, else filterGrowth times the keys
// at the scan. A data dir of at most filterSyncKeys keys is scanned before
// Open returns.
var (
	filterMinKeys  int64 = 1 << 16
	filterSyncKeys int64 = 1 << 17
)

// filterGrowth: a scan sizes its filter for this many times the keys
// there are, so a keyspace that grows from nothing to N keys is scanned
// about N/(filterGrowth-1) to N·filterGrowth/(filterGrowth-1) rows in
// all, depending on where N falls (TestKeyFilterGrowthScansFew, 20k keys:
// 37,850 rows at 2, 9,850 at 4). At 2 the scans of a bulk load of 1M new
// keys were a fifth of a follower's CPU during the load's first 10 s;
// the filter costs 10 to 40 bits per key where it was 10 to 20 (at most
// 5 MB at 1M keys).
var filterGrowth int64 = 4 // tests of the rebuild set 2: more rescans

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

// startScan begins a scan of fs's rows into a new filter sized for keys
// (filterGrowth times), unless one runs; wait makes it run before
// startScan returns. A scan that finds more rows than the filter was
// sized for (the sub-key rows, whose number is not kept, are first
// scanned for filterMinKeys) scans again into one sized for filterGrowth
// times the rows it found.
func (d *DB) startScan(fs *keyFilters, keys int64, wait bool) {
	if !fs.scanning.CompareAndSwap(false, true) {
		return
	}
	scan := func() {
		defer fs.scanning.Store(false)
		for f := newKeyFilter(max(filterGrowth*keys, filterMinKeys)); ; f = newKeyFilter(filterGrowth * f.added.Load()) {
			fs.next.Store(f) // before the iterator: see the comment at the top
			if err := d.scanKeys(fs, f); err != nil {
				fs.next.Store(nil)
				d.log.Warn("storage: a key filter's scan failed; reads and the key counts go to Pebble until the next", "err", err)
				return
			}
			fs.cur.Store(f)
			fs.next.Store(nil)
			fs.scans.Add(1)
			if !f.full() {
				return
			}
		}
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

// scanKeys adds the key of every row of fs's kind to f.
func (d *DB) scanKeys(fs *keyFilters, f *keyFilter) error {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: fs.lo, UpperBound: fs.hi})
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	defer func() { fs.scanned.Add(int64(n)) }()
	for ok := it.First(); ok; ok = it.Next() {
		f.add(it.Key()[fs.strip:])
		if n++; n%4096 == 0 {
			select {
			case <-fs.stop:
				return errScanStopped{}
			default:
			}
		}
	}
	return it.Error()
}

// closeFilters stops the scans that run and waits for them.
func (d *DB) closeFilters() {
	for _, fs := range []*keyFilters{&d.filters, &d.subFilters} {
		if fs.stop == nil {
			continue
		}
		fs.stopOnce.Do(func() { close(fs.stop) })
		fs.wg.Wait()
	}
}

// maybeRescan starts a scan into a fresh filter when the current one is
// full: it was sized for fewer keys than were added since. keys is how
// many rows fs's kind has now, about (the metadata rows' count; for the
// sub-key rows, the adds to the full filter).
func (d *DB) maybeRescan(fs *keyFilters, keys int64) {
	if f := fs.cur.Load(); f != nil && f.full() {
		d.startScan(fs, keys, false)
	}
}
