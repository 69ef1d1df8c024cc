package node

import (
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Processors. A server runs on one P until one P is not enough, and then
// on all of them (AdaptProcs).
//
// Why one P: with two, every goroutine made ready (a connection's request,
// a committed group's wake-up, a stream message, a timer) while the other
// P idles also wakes a thread to run it there, which then spins looking
// for more work and sleeps again. On an idle server that was about 800
// context switches a second against 470 on one P (bench/idle.sh). Under
// load on a machine whose cores the server shares (the benchmark's 2
// cores run the client, the leader and two followers), those wake-ups
// are most of what the second P adds: SET -c 50 on a 3-node cluster cost
// the leader 102–107 µs of CPU per write on two Ps and 67–86 on one, each
// follower 52–54 and 28–37, and it ran 3.7k/s against 4.5–5.0k/s (four
// runs, A/B interleaved, load 17–25). The leader used under half a core
// at either setting: a P it cannot fill buys it nothing but wake-ups. A
// blocking system call (the log's fdatasync) does not hold the one P for
// longer than the runtime's sysmon takes to hand it to another thread.
//
// The rule (procsPolicy, pure): on one P, go to all Ps at the first check
// that finds the process using over procsFullCPU of a core (the one P is
// near its limit; CPU time counts system calls too, so this errs towards
// all Ps); on all Ps, drop back to one after procsOneChecks checks in a
// row each finding under procsOneCPU (a dead band between the two keeps a
// load near the limit from flapping, and each change is a stop-the-world).
// On one P the check runs every procsFastEvery, so a load that outgrows
// one P gets all of them within about that.
//
// A check is a timer, and on an idle server each timer is a wake-up of
// the process (and of the runtime's sysmon with it): ten a second were
// the largest timer of an idle follower. So on one P a check that finds
// the process quiet (under procsQuietCPU: an idle server's heartbeats,
// probes and keepalives) waits procsQuietEvery for the next, and the
// checks also ride on wake-ups the process has anyway: PokeProcs (the
// orchestrator's probes, every 100 ms on the leader) runs a check when
// procsFastEvery has passed since the last, without a timer. A load that
// starts on a quiet leader is still seen within about procsFastEvery (it
// is probed at that rate), on a quiet follower within procsQuietEvery.

const (
	procsSlowEvery  = 500 * time.Millisecond // the check's period on all Ps
	procsFastEvery  = 100 * time.Millisecond // the check's period on one P
	procsQuietEvery = 500 * time.Millisecond // on one P, after a quiet check
	procsFullCPU    = 0.8                    // of a core: one P is near full above this
	procsOneCPU     = 0.5                    // of a core: one P would do below this
	procsQuietCPU   = 0.02                   // of a core: quiet below this
	procsOneChecks  = 4                      // checks in a row under procsOneCPU before one P
)

// procsPolicy is AdaptProcs's rule without the clock or the runtime.
type procsPolicy struct {
	max   int // all Ps
	one   bool
	under int // checks in a row under procsOneCPU, on all Ps
}

// step takes the CPU used since the last check, as a fraction of one
// core, and returns the Ps to run on and the time to the next check.
func (p *procsPolicy) step(cpu float64) (procs int, next time.Duration) {
	switch {
	case p.one && cpu > procsFullCPU:
		p.one, p.under = false, 0
	case !p.one && cpu < procsOneCPU:
		p.under++
		if p.under >= procsOneChecks {
			p.one = true
		}
	case !p.one:
		p.under = 0
	}
	switch {
	case p.one && cpu < procsQuietCPU:
		return 1, procsQuietEvery
	case p.one:
		return 1, procsFastEvery
	}
	return p.max, procsSlowEvery
}

// procsPokes wakes the running AdaptProcs for a check (PokeProcs);
// procsChecked is when it last checked (unix nanoseconds), procsOne
// whether it runs the process on one P. Process-wide, as GOMAXPROCS is.
var (
	procsPokes   = make(chan struct{}, 1)
	procsChecked atomic.Int64
	procsOne     atomic.Bool
)

// PokeProcs asks AdaptProcs for a check now if the process runs on one P
// and the last check is procsFastEvery old: a caller that the process
// wakes for anyway (a probe) lends it that wake-up. Cheap when not due:
// two atomic loads.
func PokeProcs() {
	if !procsOne.Load() || time.Now().UnixNano()-procsChecked.Load() < int64(procsFastEvery) {
		return
	}
	select {
	case procsPokes <- struct{}{}:
	default:
	}
}

// AdaptProcs runs the process on one P while one P is enough and on
// maxProcs otherwise (see above), until stop is closed, then leaves it on
// maxProcs. Call it only for a process that owns its GOMAXPROCS (not when
// the environment sets it, nor from tests that share a process).
func AdaptProcs(stop <-chan struct{}, maxProcs int, log *slog.Logger) {
	if maxProcs < 2 {
		return
	}
	p := procsPolicy{max: maxProcs}
	procs := runtime.GOMAXPROCS(0)
	defer func() {
		procsOne.Store(false)
		runtime.GOMAXPROCS(maxProcs)
	}()
	last, at := processCPU(), time.Now()
	procsChecked.Store(at.UnixNano())
	t := time.NewTimer(procsSlowEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-procsPokes:
			if time.Since(at) < procsFastEvery {
				continue // a poke raced a timer's check
			}
			t.Stop()
		}
		now, used := time.Now(), processCPU()
		frac := float64(used-last) / float64(now.Sub(at))
		last, at = used, now
		procsChecked.Store(now.UnixNano())
		want, next := p.step(frac)
		if want != procs {
			runtime.GOMAXPROCS(want)
			procs = want
			log.Debug("processors", "gomaxprocs", want, "cpu", frac)
		}
		procsOne.Store(procs == 1)
		t.Reset(next)
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
