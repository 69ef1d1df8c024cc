package storage

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// walGate holds the log's writes, once armed, until the flush fence
// begins to hold a flush or a flush has ended (open), and then lets the
// crasher take its clone: a crash right after a flush that did not wait
// for the log is then among the clones, whatever the scheduler does.
type walGate struct {
	c    *testutil.Crasher
	mu   sync.Mutex
	gate chan struct{} // nil: not armed
}

func (g *walGate) String() string { return "walgate" }

func (g *walGate) arm() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *walGate) open(string) {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *walGate) MaybeError(op errorfs.Op) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "/"+logDir+"/") {
		<-gate
	}
	return g.c.MaybeError(op)
}

// TestApplyAheadCrash: entries applied ahead of their log append
// (AppendLogWhile's during) while a Pebble flush runs: a crash at every
// write (none, half or all of the unsynced blocks kept) reopens at the
// state before or after the step, never with applied past durable. The
// flush waits for the log (flushFence); with it planted away
// (plantNoFlushFence) the flush makes the applies durable before the
// log's fdatasync, and the crashes in between leave applied past
// durable, which Open refuses.
func TestApplyAheadCrash(t *testing.T) {
	const segSize = 1 << 10
	c := testutil.NewCrasher(0, 50, 100)
	g := &walGate{c: c}
	hook := g.open
	d, err := Open(dir, Options{FS: errorfs.Wrap(c.Mem, g), CacheBytes: 1 << 20, LogSegmentSize: segSize, Logger: testLogger(t), fenceHook: &hook})
	if err != nil {
		t.Fatal(err)
	}
	steps := []crashStep{
		appendStep(1, 10, 1),
		applyStep(10),
		{"append 11..20 applying them ahead, a flush meanwhile", func(t *testing.T, d *DB, m *crashModel) {
			es := crashEntries(11, 20, 1)
			g.arm()
			err := d.AppendLogWhile(encodeAll(es...), func(<-chan struct{}) error {
				if err := d.Apply(es); err != nil {
					return err
				}
				flushed, err := d.pdb.AsyncFlush()
				if err != nil {
					return err
				}
				<-flushed
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				m.entries[e.LSN] = e
			}
			m.durable, m.applied = logrec.Position{Epoch: 1, LSN: 20}, 20
		}},
		appendStep(21, 25, 1),
	}
	m := crashModel{entries: map[uint64]logrec.Entry{}}
	models := []crashModel{m.clone()}
	for i, s := range steps {
		c.Step(i)
		s.run(t, d, &m)
		models = append(models, m.clone())
	}
	c.Step(len(steps))
	c.Take()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d crash clones", len(c.Clones))
	for _, cl := range c.Clones {
		name := fmt.Sprintf("step %d", cl.Step)
		if cl.Step < len(steps) {
			name += " (" + steps[cl.Step].name + ")"
		}
		name += fmt.Sprintf(", %d%% unsynced kept", cl.Pct)
		pre, post := models[cl.Step], models[cl.Step]
		if cl.Step < len(steps) {
			post = models[cl.Step+1]
		}
		checkCrash(t, name, cl.FS, segSize, pre, post, false)
	}
}

// TestApplyAheadOnlyWhileAppending: Apply takes entries past the durable
// log only from an AppendLogWhile that appends them.
func TestApplyAheadOnlyWhileAppending(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := crashEntries(1, 6, 1)
	if err := d.Apply(es[:1]); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Apply before any append: %v, want ErrNotDurable", err)
	}
	err := d.AppendLogWhile(encodeAll(es[:3]...), func(<-chan struct{}) error { return d.Apply(es[:4]) })
	if !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Apply past the append in progress: %v, want ErrNotDurable", err)
	}
	if err := d.AppendLogWhile(encodeAll(es[3:]...), func(<-chan struct{}) error { return d.Apply(es) }); err != nil {
		t.Fatal(err)
	}
	if d.Applied() != 6 || d.Durable().LSN != 6 {
		t.Fatalf("applied %d, durable %v", d.Applied(), d.Durable())
	}
}

// failLog fails every write to the log's files while armed, once gate
// (if set) is closed: a test holds the failure until its apply ahead ran.
type failLog struct {
	armed atomic.Bool
	gate  chan struct{}
}

func (f *failLog) String() string { return "faillog" }

func (f *failLog) MaybeError(op errorfs.Op) error {
	if f.armed.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "/"+logDir+"/") {
		if f.gate != nil {
			<-f.gate
		}
		return errors.New("injected log write error")
	}
	return nil
}

// TestApplyAheadFailedAppendReopens: a log append that fails after its
// entries were applied ahead leaves them in the memtable past the log;
// Close must not flush them (the log is the data's write-ahead log, so
// what Close leaves unflushed is replayed), or Open finds applied past
// durable and refuses the dir (ErrCorrupt), and the node must be
// re-seeded for a disk error it has recovered from.
func TestApplyAheadFailedAppendReopens(t *testing.T) {
	mem := vfs.NewMem()
	f := &failLog{}
	d, err := Open(dir, Options{FS: errorfs.Wrap(mem, f), CacheBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	es := crashEntries(1, 10, 1)
	if err := d.AppendLog(encodeAll(es[:5]...)); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(es[:5]); err != nil {
		t.Fatal(err)
	}
	// The append fails only once the apply ahead ran: a failure first
	// (appendingTo cleared) rightly leaves nothing to apply ahead, and
	// the test, racing the two, failed now and then under -race.
	f.gate = make(chan struct{})
	f.armed.Store(true)
	err = d.AppendLogWhile(encodeAll(es[5:]...), func(<-chan struct{}) error {
		defer close(f.gate)
		return d.Apply(es[5:])
	})
	if err == nil {
		t.Fatal("append with the log's writes failing: no error")
	}
	if d.Applied() != 10 {
		t.Fatalf("applied %d after the apply ahead, want 10", d.Applied())
	}
	f.armed.Store(false)
	_ = d.Close() // the log's Close may report the failed append again
	d, err = Open(dir, Options{FS: mem, CacheBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("reopen after a failed append ahead: %v", err)
	}
	defer d.Close()
	if d.Durable().LSN != 5 || d.Applied() > 5 {
		t.Fatalf("reopened with durable %v, applied %d: want durable 5, applied <= 5", d.Durable(), d.Applied())
	}
}
