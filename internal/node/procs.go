package node

import (
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle processors. With two Ps, each timer or network event of an idle
// server (a stream heartbeat, a probe, an etcd keepalive) also wakes a
// second thread to look for work that is not there: bench/idle.sh counted
// about 800 context switches a second on an idle leader with two Ps and
// 470 with one. AdaptProcs runs the process on one P while it is idle and
// on all of them as soon as it is not; the orchestrator and tandem up run
// on one P always (their load is small), a server cannot.
//
// The rule (procsPolicy, pure): on all Ps, drop to one after
// procsIdleChecks checks in a row each finding under procsIdleCPU of a
// core used; on one P, check every procsFastEvery and go back to all at
// once when a check finds over procsBusyCPU. So a load that starts on an
// idle server runs on one P for at most about procsFastEvery (plus one
// stop-the-world to change it).
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
	procsIdleCPU    = 0.05                   // of a core: idle below this
	procsQuietCPU   = 0.02                   // of a core: quiet below this
	procsBusyCPU    = 0.15                   // of a core: busy above this
	procsIdleChecks = 4                      // idle checks in a row before one P
)

// procsPolicy is AdaptProcs's rule without the clock or the runtime.
type procsPolicy struct {
	max  int // all Ps
	one  bool
	idle int // idle checks in a row, on all Ps
}

// step takes the CPU used since the last check, as a fraction of one
// core, and returns the Ps to run on and the time to the next check.
func (p *procsPolicy) step(cpu float64) (procs int, next time.Duration) {
	switch {
	case p.one && cpu > procsBusyCPU:
		p.one, p.idle = false, 0
	case !p.one && cpu < procsIdleCPU:
		p.idle++
		if p.idle >= procsIdleChecks {
			p.one = true
		}
	case !p.one:
		p.idle = 0
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

// AdaptProcs runs the process on one P while it is idle and on maxProcs
// otherwise (see above), until stop is closed, then leaves it on
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
