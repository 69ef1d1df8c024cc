package testutil

import (
	"math/rand/v2"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Crasher takes crash clones of a crashable MemFS before every operation
// that writes (a write, a sync, a create, a rename, a remove: errorfs asks
// it before the operation runs), so each clone is the disk as a crash at
// that point would leave it: everything synced, and for
// UnsyncedDataPercent > 0 a random part of the rest (unsynced 4 KiB blocks
// and directory entries, each kept or not). Run the code under test on FS(),
// mark the steps of the scenario with Step, and reopen every clone.
type Crasher struct {
	Mem *vfs.MemFS
	// Pcts are the UnsyncedDataPercent of the clones taken at each step.
	Pcts []int
	// Clones are the clones taken, in order; read them once the code
	// under test has stopped.
	Clones []Clone

	mu   sync.Mutex // guards Clones and the fields below
	on   bool
	step int
	rng  *rand.Rand
}

// Clone is one crash: the step it happened in and the disk it left.
type Clone struct {
	Step int
	Pct  int
	FS   *vfs.MemFS
}

// NewCrasher returns a Crasher on a new crashable MemFS that takes a
// clone for each of pcts at every step.
func NewCrasher(pcts ...int) *Crasher {
	return &Crasher{Mem: vfs.NewCrashableMem(), Pcts: pcts, rng: rand.New(rand.NewPCG(11, 12))}
}

// FS is the file system to run the code under test on.
func (c *Crasher) FS() vfs.FS { return errorfs.Wrap(c.Mem, c) }

// Step sets the scenario step that later clones belong to, and starts
// taking them.
func (c *Crasher) Step(i int) {
	c.mu.Lock()
	c.on, c.step = true, i
	c.mu.Unlock()
}

// Take takes clones now (as a crash between two operations would).
func (c *Crasher) Take() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pct := range c.Pcts {
		cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: pct}
		if pct > 0 {
			cfg.RNG = rand.New(rand.NewPCG(c.rng.Uint64(), c.rng.Uint64()))
		}
		c.Clones = append(c.Clones, Clone{Step: c.step, Pct: pct, FS: c.Mem.CrashClone(cfg)})
	}
}

func (c *Crasher) String() string { return "crasher" }

// MaybeError implements errorfs.Injector.
func (c *Crasher) MaybeError(op errorfs.Op) error {
	c.mu.Lock()
	on := c.on
	c.mu.Unlock()
	if on && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
		c.Take()
	}
	return nil
}
