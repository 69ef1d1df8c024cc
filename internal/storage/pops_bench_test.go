package storage_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// popDB runs commands against a real DB as the leader does, each write
// command's ops applied as one log entry, and read through the leader's
// keyspace.Hints, which see every op first.
type popDB struct {
	tb  testing.TB
	d   *storage.DB
	lsn uint64
	// exec is the CPU time the benchmark's thread spent running commands
	// (reading), not applying their entries (the log's fsync would drown
	// it): CPU time, so that a loaded machine does not inflate it.
	exec time.Duration
	// hints is the leader's keyspace.Hints (its overlay keeps one); nil
	// reads the rows plainly (POP_HINTS=0, to see the cost without).
	hints *keyspace.Hints
}

func newPopDB(tb testing.TB) *popDB {
	d, err := storage.Open(tb.TempDir(), storage.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	p := &popDB{tb: tb, d: d}
	if os.Getenv("POP_HINTS") != "0" {
		p.hints = keyspace.NewHints(storage.View{DB: d}.Rows())
	}
	return p
}

const popNow = int64(1_700_000_000_000)

// The collection's size and the pops before the second window; variables
// so that a profile can take a smaller run.
var popSize, popLater = envInt("POP_SIZE", 100_000), envInt("POP_LATER", 50_000)

// do runs args and applies the ops it logs.
func (p *popDB) do(args ...[]byte) commands.Reply {
	spec, ok := commands.Lookup(args[0])
	if !ok {
		p.tb.Fatalf("unknown command %q", args[0])
	}
	var v commands.View = keyspace.Reader{R: storage.View{DB: p.d}.Rows(), NowMs: popNow, LSN: p.lsn + 1}
	if p.hints != nil {
		v = hintedView{keyspace.Reader{R: p.hints, NowMs: popNow, LSN: p.lsn + 1}, p.hints}
	}
	start := threadCPU(p.tb)
	res, err := spec.Exec(&commands.Ctx{NowMs: popNow}, v, args)
	p.exec += threadCPU(p.tb) - start
	if err != nil {
		p.tb.Fatalf("%s: %v", args[0], err)
	}
	if len(res.Ops) == 0 {
		return res.Reply
	}
	if p.hints != nil {
		if err := p.hints.ApplyOps(res.Ops); err != nil {
			p.tb.Fatal(err)
		}
	}
	p.lsn++
	e := logrec.Entry{Epoch: 1, LSN: p.lsn, Ops: res.Ops}
	if err := p.d.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
		p.tb.Fatal(err)
	}
	if err := p.d.Apply([]logrec.Entry{e}); err != nil {
		p.tb.Fatal(err)
	}
	return res.Reply
}

// hintedView is the leader's view: rows through its hints, which count
// the tombstones (commands.TombstoneCounter).
type hintedView struct {
	keyspace.Reader
	h *keyspace.Hints
}

func (v hintedView) SubDeleted(key []byte, version uint64) uint64 { return v.h.Deleted(key, version) }

func (v hintedView) SetSample(key []byte) *keyspace.Sample { return v.h.Sample(key) }

func (v hintedView) ListPop(key []byte, version, i uint64, tail bool) ([]byte, bool, error) {
	return v.h.ListPop(key, version, i, tail)
}

func words(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte(s[i])
	}
	return out
}

// fill adds members element:000000000000.. of a collection with cmd
// ("SADD", "ZADD" with score 0, "RPUSH"), a thousand per command.
func (p *popDB) fill(cmd, key string, n int) {
	for i := 0; i < n; {
		args := words(cmd, key)
		for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
			if cmd == "ZADD" {
				args = append(args, []byte("0"))
			}
			args = append(args, fmt.Appendf(nil, "element:%012d", i))
		}
		p.do(args...)
	}
}

// BenchmarkPops pops one element at a time from a collection of 100k
// (ZPOPMIN and ZPOPMAX on a sorted set of equal scores, SPOP on a set,
// LPOP and RPOP on a list, each pop one applied entry), and reports the
// CPU time per pop (running the command: its reads, not the entry's apply)
// over the first 1000 pops and over 1000 pops after 50k:
// every pop leaves a tombstone where the popped rows were, and a pop
// must not step over the earlier ones. SPOP-drain pops the whole set and
// reports the last 1000 pops, where tombstones far outnumber members. Run it with -benchtime=1x:
//
//	go test ./internal/storage -run '^$' -bench Pops -benchtime=1x
//
// POP_SIZE and POP_LATER change the sizes; POP_HINTS=0 reads without the
// leader's hints (quadratic: take POP_SIZE=20000 POP_LATER=5000).
func BenchmarkPops(b *testing.B) {
	size, window, later := popSize, 1000, popLater
	for _, tc := range []struct {
		fill, pop string
		drain     bool // pop the whole collection; the second window is the last pops
	}{
		{"ZADD", "ZPOPMIN", false}, {"ZADD", "ZPOPMAX", false}, {"SADD", "SPOP", false}, {"SADD", "SPOP", true},
		{"RPUSH", "LPOP", false}, {"RPUSH", "RPOP", false},
	} {
		name := tc.pop
		if tc.drain {
			name += "-drain"
		}
		b.Run(name, func(b *testing.B) {
			// threadCPU measures this goroutine's thread.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for range b.N {
				p := newPopDB(b)
				p.fill(tc.fill, "c", size)
				pop := words(tc.pop, "c")
				timed := func() time.Duration {
					start := p.exec
					for range window {
						if r := p.do(pop...); r == nil {
							b.Fatal("no reply")
						}
					}
					return (p.exec - start) / time.Duration(window)
				}
				first := timed()
				skip, label := later-window, "cpu-µs/pop-after"+strconv.Itoa(later/1000)+"k"
				if tc.drain {
					skip, label = size-2*window, "cpu-µs/pop-last"
				}
				for range skip {
					p.do(pop...)
				}
				after := timed()
				b.ReportMetric(float64(first.Microseconds()), "cpu-µs/pop-first")
				b.ReportMetric(float64(after.Microseconds()), label)
			}
		})
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// threadCPU is the CPU time (user and system) of the calling thread
// (Linux's RUSAGE_THREAD): the caller locks its goroutine to the thread.
func threadCPU(tb testing.TB) time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
