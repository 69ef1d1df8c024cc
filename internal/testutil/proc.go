package testutil

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessCPU is the process's user and system CPU time so far; 0 where
// getrusage fails (benchmarks report it as a figure, never assert on it).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcSyscalls is the process's read and write system calls so far
// (/proc/self/io: syscr, syscw); false where there is no such file.
func ProcSyscalls() (r, w uint64, ok bool) {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		name, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch name {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return r, w, true
}
