package commitbench

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux
// whatever the kernel's tick.
const userHZ = 100

// procSnapshot is every process's CPU time and parent, as /proc showed
// them at one moment. A process's CPU time is its own (user + system)
// plus that of its children that ended and were waited for (cutime,
// cstime): PostgreSQL's backends end with pgbench's connections, before
// the window's last snapshot, and their time is then their postmaster's.
type procSnapshot struct {
	cpu    map[int]time.Duration
	parent map[int]int
}

func snapshotProcs() procSnapshot {
	s := procSnapshot{cpu: map[int]time.Duration{}, parent: map[int]int{}}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // it exited
		}
		pid, ppid, cpu, ok := parseStat(b)
		if ok {
			s.cpu[pid], s.parent[pid] = cpu, ppid
		}
	}
	return s
}

// parseStat reads pid, ppid and utime+stime+cutime+cstime from a
// /proc/PID/stat line.
// The command name, in parentheses, may hold spaces: fields are counted
// from the last ')'.
func parseStat(b []byte) (pid, ppid int, cpu time.Duration, ok bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return 0, 0, 0, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return 0, 0, 0, false
	}
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// cutime 16, cstime 17.
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	ut, err2 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err3 := strconv.ParseInt(string(f[12]), 10, 64)
	cut, err4 := strconv.ParseInt(string(f[13]), 10, 64)
	cst, err5 := strconv.ParseInt(string(f[14]), 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return 0, 0, 0, false
	}
	return pid, ppid, time.Duration(ut+st+cut+cst) * time.Second / userHZ, true
}

// descendants is pid and every process below it.
func (s procSnapshot) descendants(pid int) []int {
	children := map[int][]int{}
	for p, pp := range s.parent {
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
