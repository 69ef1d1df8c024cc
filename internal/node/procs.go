package node

import (
	"log/slog"
	"runtime"
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
// stop-the-world to change it), and an idle server pays ten getrusage
// calls a second for the hundreds of wake-ups it saves.

const (
	procsSlowEvery  = 500 * time.Millisecond // the check's period on all Ps
	procsFastEvery  = 100 * time.Millisecond // the check's period on one P
	procsIdleCPU    = 0.05                   // of a core: idle below this
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
	if p.one {
		return 1, procsFastEvery
	}
	return p.max, procsSlowEvery
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
	defer runtime.GOMAXPROCS(maxProcs)
	last, at := processCPU(), time.Now()
	t := time.NewTimer(procsSlowEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now, used := time.Now(), processCPU()
		frac := float64(used-last) / float64(now.Sub(at))
		last, at = used, now
		want, next := p.step(frac)
		if want != procs {
			runtime.GOMAXPROCS(want)
			procs = want
			log.Debug("processors", "gomaxprocs", want, "cpu", frac)
		}
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
