package storage_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// suiteDB runs commands as a leader does under redis-benchmark's c=50:
// each write command is run against the committed rows under an overlay
// (keyspace.Layer) of the entries sequenced and not yet applied, through
// the leader's keyspace.Hints, and every inFlight entries are appended
// and applied as one group. It measures the CPU time and allocations of
// running the commands (what the leader does under its sequencing lock),
// and of applying their entries.
type suiteDB struct {
	tb      testing.TB
	d       *storage.DB
	layer   *keyspace.Layer
	hints   *keyspace.Hints
	lsn     uint64
	pending []logrec.Entry
	// exec and apply are this thread's CPU time running commands and
	// applying entries; allocs the heap objects the commands allocated.
	exec, apply time.Duration
	// applyAllocs the heap objects Apply allocated (not the test's
	// encoding of the entries); overlayAllocs those the leader's overlay
	// and hints allocated taking each entry's ops and forgetting them.
	allocs, applyAllocs, overlayAllocs uint64
	sample                             []metrics.Sample
}

// inFlight is about how many entries a leader has sequenced and not yet
// applied with 50 clients.
const inFlight = 32

func newSuiteDB(tb testing.TB) *suiteDB {
	// An in-memory file system: the log's fsync is not what is measured.
	// SUITE_ROWCACHE (bytes, 0: the default) sizes the row cache: a small
	// one is a node's under the whole suite, where the pops' elements,
	// pushed while the cache was full, are read from Pebble.
	d, err := storage.Open("suite", storage.Options{FS: vfs.NewMem(), RowCacheBytes: int64(envInt("SUITE_ROWCACHE", 0))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	s := &suiteDB{tb: tb, d: d, sample: []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}}
	s.layer = keyspace.NewLayer(storage.View{DB: d}.Rows())
	s.hints = keyspace.NewHints(s.layer)
	return s
}

func (s *suiteDB) heapObjects() uint64 {
	metrics.Read(s.sample)
	return s.sample[0].Value.Uint64()
}

// do runs one command as the leader would and returns its reply.
func (s *suiteDB) do(args [][]byte) commands.Reply {
	spec, ok := commands.Lookup(args[0])
	if !ok {
		s.tb.Fatalf("unknown command %q", args[0])
	}
	ctx := &commands.Ctx{NowMs: popNow}
	if spec.Flags&commands.FlagWrite == 0 {
		// A read on the leader: the committed rows, no overlay.
		s.flush()
		a0 := s.heapObjects()
		start := threadCPU(s.tb)
		res, err := spec.Exec(ctx, storage.View{DB: s.d, NowMs: popNow}, args)
		s.exec += threadCPU(s.tb) - start
		s.allocs += s.heapObjects() - a0
		if err != nil {
			s.tb.Fatalf("%s: %v", args[0], err)
		}
		return res.Reply
	}
	v := hintedView{keyspace.Reader{R: s.hints, NowMs: popNow, LSN: s.lsn + 1}, s.hints}
	a0 := s.heapObjects()
	start := threadCPU(s.tb)
	res, err := spec.Exec(ctx, v, args)
	s.exec += threadCPU(s.tb) - start
	s.allocs += s.heapObjects() - a0
	if err != nil {
		s.tb.Fatalf("%s: %v", args[0], err)
	}
	if len(res.Ops) == 0 {
		return res.Reply
	}
	s.lsn++
	a0 = s.heapObjects()
	if err := s.layer.ApplyOps(s.lsn, res.Ops); err != nil {
		s.tb.Fatal(err)
	}
	if err := s.hints.ApplyOps(res.Ops); err != nil {
		s.tb.Fatal(err)
	}
	s.overlayAllocs += s.heapObjects() - a0
	s.pending = append(s.pending, logrec.Entry{Epoch: 1, LSN: s.lsn, Ops: res.Ops})
	if len(s.pending) >= inFlight {
		s.flush()
	}
	return res.Reply
}

// flush appends and applies the pending entries as one group.
func (s *suiteDB) flush() {
	if len(s.pending) == 0 {
		return
	}
	start := threadCPU(s.tb)
	raws := make([][]byte, len(s.pending))
	for i := range s.pending {
		raws[i] = logrec.Encode(&s.pending[i])
	}
	if err := s.d.AppendLog(raws); err != nil {
		s.tb.Fatal(err)
	}
	a0 := s.heapObjects()
	if err := s.d.Apply(s.pending); err != nil {
		s.tb.Fatal(err)
	}
	s.applyAllocs += s.heapObjects() - a0
	a0 = s.heapObjects()
	for i := range s.pending {
		s.layer.Forget(s.pending[i].Ops, s.lsn)
	}
	s.overlayAllocs += s.heapObjects() - a0
	s.apply += threadCPU(s.tb) - start
	s.pending = s.pending[:0]
}

// BenchmarkSuite runs redis-benchmark's issue-17 suite (-t set,get,incr,
// lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,
// lrange_300,mset; -r 100000, -d 100), the same commands in the same
// order on one store, SUITE_N (20000) of each, and reports per command
// the CPU time and heap allocations of running it as the leader does
// (exec-µs/op, exec-allocs/op: the work under the sequencing lock, or a read's)
// and of applying its entries (apply-µs/op, apply-allocs/op: storage's
// Apply alone, groups of 32), and the heap objects the leader's overlay
// and hints allocate taking and forgetting its ops (overlay-allocs/op), and
// the records Apply put in its Pebble batches (records/op: rows written or
// deleted, range deletes, two of its own per group). CPU time, so
// that a loaded machine inflates it less than wall time. Run it with
// -benchtime=1x (each command's state follows from the ones before):
//
//	go test ./internal/storage -run '^$' -bench Suite -benchtime=1x
func BenchmarkSuite(b *testing.B) {
	n := envInt("SUITE_N", 20000)
	s := newSuiteDB(b)
	rnd := rand.New(rand.NewPCG(1, 2))
	data := []byte(strings.Repeat("x", 100))
	randInt := func() []byte { return fmt.Appendf(nil, "%012d", rnd.IntN(100000)) }
	cat := func(prefix string, b []byte) []byte { return append([]byte(prefix), b...) }
	// redis-benchmark's commands (redis-benchmark.c), __rand_int__ being a
	// 12-digit number below -r.
	gen := map[string]func() [][]byte{
		"set":   func() [][]byte { return [][]byte{[]byte("SET"), cat("key:", randInt()), data} },
		"get":   func() [][]byte { return [][]byte{[]byte("GET"), cat("key:", randInt())} },
		"incr":  func() [][]byte { return [][]byte{[]byte("INCR"), cat("counter:", randInt())} },
		"lpush": func() [][]byte { return [][]byte{[]byte("LPUSH"), []byte("mylist"), data} },
		"rpush": func() [][]byte { return [][]byte{[]byte("RPUSH"), []byte("mylist"), data} },
		"lpop":  func() [][]byte { return words("LPOP", "mylist") },
		"rpop":  func() [][]byte { return words("RPOP", "mylist") },
		"sadd":  func() [][]byte { return [][]byte{[]byte("SADD"), []byte("myset"), cat("element:", randInt())} },
		"hset": func() [][]byte {
			return [][]byte{[]byte("HSET"), []byte("myhash"), cat("element:", randInt()), data}
		},
		"spop": func() [][]byte { return words("SPOP", "myset") },
		"zadd": func() [][]byte {
			return [][]byte{[]byte("ZADD"), []byte("myzset"), randInt(), cat("element:", randInt())}
		},
		"zpopmin":    func() [][]byte { return words("ZPOPMIN", "myzset") },
		"lrange_100": func() [][]byte { return words("LRANGE", "mylist", "0", "99") },
		"lrange_300": func() [][]byte { return words("LRANGE", "mylist", "0", "299") },
		"mset": func() [][]byte {
			args := [][]byte{[]byte("MSET")}
			for range 10 {
				args = append(args, cat("key:", randInt()), data)
			}
			return args
		},
	}
	for _, name := range []string{"set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "spop", "zadd", "zpopmin", "lrange_100", "lrange_300", "mset"} {
		b.Run(name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if strings.HasPrefix(name, "lrange") {
				// redis-benchmark pushes N elements first.
				for range n {
					s.do(gen["lpush"]())
				}
				s.flush()
			}
			for range b.N {
				exec, apply, allocs, applyAllocs, overlayAllocs := s.exec, s.apply, s.allocs, s.applyAllocs, s.overlayAllocs
				records := s.d.ApplyRecords()
				for range n {
					s.do(gen[name]())
				}
				s.flush()
				b.ReportMetric(float64((s.exec-exec).Nanoseconds())/1e3/float64(n), "exec-µs/op")
				b.ReportMetric(float64((s.apply-apply).Nanoseconds())/1e3/float64(n), "apply-µs/op")
				b.ReportMetric(float64(s.allocs-allocs)/float64(n), "exec-allocs/op")
				b.ReportMetric(float64(s.applyAllocs-applyAllocs)/float64(n), "apply-allocs/op")
				b.ReportMetric(float64(s.overlayAllocs-overlayAllocs)/float64(n), "overlay-allocs/op")
				b.ReportMetric(float64(s.d.ApplyRecords()-records)/float64(n), "records/op")
			}
		})
	}
}
