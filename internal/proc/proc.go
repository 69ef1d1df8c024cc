// Package proc is the one way tandem's programs pick loopback ports for
// processes they start and stop those processes: `tandem up`'s supervisor
// (internal/cluster), the benchmarks and the chaos harness
// (internal/tools/...) and the tests all use it.
//
// # Ports
//
// A port picked here is released before the child process binds it, so
// another process can take it in between. Ports are therefore taken below
// the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range):
// a port from that range (what "127.0.0.1:0" gives) can be taken, once
// released, by any outgoing connection on the machine; below it only
// another listener can, and a port handed out is claimed for the
// process's lifetime (a lock file, see claim), so no other process using
// this package picks it while the child that had it is down. Callers that
// bind the port themselves and keep the
// listener (a relay, a test server) may listen on "127.0.0.1:0": nothing
// is released, so nothing can be taken.
//
// # Processes
//
// Start runs a command and waits for it in one goroutine; Done is closed
// when it has exited and Err then says how. Stop ends it the polite way
// first (SIGCONT, so a paused process can act on it, then SIGTERM or the
// signal given), SIGKILL after a grace period, and always waits for the
// exit, so no caller leaves a process behind. Pause returns only once
// the process is stopped: kill(2) returns when SIGSTOP is queued, and a
// loaded machine lets the process run on for a while after that.
package proc

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ephemeralLow is the first port of the kernel's ephemeral range (32768,
// Linux's default, when the range cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	return low
}

// portRange is where Listen looks: the 16384 ports below the ephemeral
// range, never below 10000 (well-known and registered services).
func portRange() (from, to int) {
	low := ephemeralLow()
	return max(low-16384, 10000), low
}

// portBlocks splits the range among processes by pid, so that processes
// seldom try each other's ports (claim is what keeps them apart): each
// draws from its own eighth first.
const portBlocks = 8

// handedOut holds every port this process handed out, with its claim:
// Listen never gives one twice, so a port released by a stopped child is
// still its own when the child restarts.
var handedOut sync.Map // int -> *os.File (the claim's lock; nil if none could be made)

// claimDir holds a lock file per port handed out by any process on the
// machine that uses this package.
var claimDir = filepath.Join(os.TempDir(), "tandem-ports")

// claim takes port p for this process's lifetime across processes: an
// exclusive flock(2) on claimDir/p, which the kernel drops when the
// process dies, however it dies. A port a process handed out and a child
// released (a node killed until it restarts) is free to bind, so only the
// claim keeps another process's Listen off it: test binaries of several
// packages run at once, each starting and killing clusters (CI once saw a
// restarted node's port taken, "address already in use"). ok is false if
// another process holds p. Where no lock file can be made the claim is
// skipped (lock nil, ok true): the pid blocks still keep processes apart
// mostly.
func claim(p int) (lock *os.File, ok bool) {
	if err := os.MkdirAll(claimDir, 0o777); err != nil {
		return nil, true
	}
	f, err := os.OpenFile(filepath.Join(claimDir, strconv.Itoa(p)), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, !errors.Is(err, syscall.EWOULDBLOCK)
	}
	return f, true
}

// Listen listens on a free loopback port below the kernel's ephemeral
// range, never one this process handed out before. The caller releases
// the port by closing the listener, right before a child binds it. It
// tries this process's block of the range first, then the whole range,
// and falls back to "127.0.0.1:0" only when no port below the range is
// free after 64 tries or the range starts too low to leave one.
func Listen() (net.Listener, error) {
	if from, to := portRange(); from < to {
		size := (to - from) / portBlocks
		blockFrom := from + (os.Getpid()%portBlocks)*size
		for i := range 128 {
			p := blockFrom + rand.IntN(max(size, 1))
			if i >= 64 || size == 0 {
				p = from + rand.IntN(to-from)
			}
			if _, taken := handedOut.Load(p); taken {
				continue
			}
			lock, ok := claim(p)
			if !ok {
				continue
			}
			if l, err := net.Listen("tcp", Addr(p)); err == nil {
				handedOut.Store(p, lock)
				return l, nil
			}
			if lock != nil {
				lock.Close()
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proc: free port: %w", err)
	}
	return l, nil
}

// FreePorts returns n distinct free loopback ports picked by Listen. All
// are held until every one is picked, so none repeats, then released for
// the caller's children to bind.
func FreePorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for len(ports) < n {
		l, err := Listen()
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		if p := l.Addr().(*net.TCPAddr).Port; !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// FreeAddrs is FreePorts as "127.0.0.1:PORT" addresses.
func FreeAddrs(n int) ([]string, error) {
	ports, err := FreePorts(n)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i, p := range ports {
		out[i] = Addr(p)
	}
	return out, nil
}

// Addr is the loopback address of port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Process is a started command.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited; set before done is closed
}

// Start starts cmd and waits for it in a goroutine. After it exited, each
// of closers (the files its output went to) is closed and Done is closed.
func Start(cmd *exec.Cmd, closers ...io.Closer) (*Process, error) {
	if err := cmd.Start(); err != nil {
		for _, c := range closers {
			c.Close()
		}
		return nil, fmt.Errorf("proc: start %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		for _, c := range closers {
			c.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (cmd.Wait's error); nil before Done.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig; a process that has exited already is not an error.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("proc: signal %d: %w", p.Pid(), err)
	}
	return nil
}

// Pause stops the process with SIGSTOP and returns once every one of its
// threads is stopped (or gone), or an error after within. kill(2) returns
// when the signal is queued, not when the process has stopped: the
// kernel wakes one of its threads to take the signal, and that thread
// stops the others, so a process runs on until it is scheduled. On a
// loaded machine that took up to 55 ms (load 25 on 2 cores; 1.5 s for a
// process at nice 19), long enough for a follower "paused" by a test to
// receive, fsync and acknowledge a write sent after the kill returned.
func (p *Process) Pause(within time.Duration) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 5*time.Millisecond) {
		if p.Exited() {
			return fmt.Errorf("proc: pause %d: the process exited", p.Pid())
		}
		ok, err := Stopped(p.Pid())
		if err != nil {
			return fmt.Errorf("proc: pause: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proc: pause %d: not stopped within %v of SIGSTOP", p.Pid(), within)
		}
		time.Sleep(wait)
	}
}

// Stopped reports whether no thread of process pid can run: each is
// stopped by a signal or a tracer, or is exiting (/proc/PID/task/*/stat).
func Stopped(pid int) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("threads of %d: %w", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited since the listing
		}
		if err != nil {
			return false, fmt.Errorf("thread %s of %d: %w", t.Name(), pid, err)
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses, the
		// state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("thread %s of %d: unexpected stat %q", t.Name(), pid, b)
		}
		switch b[i+2] {
		case 'T', 't', 'Z', 'X':
		default:
			return false, nil
		}
	}
	return true, nil
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() error {
	err := p.Signal(syscall.SIGKILL)
	<-p.done
	return err
}

// Stop is StopWith(SIGTERM, grace).
func (p *Process) Stop(grace time.Duration) error { return p.StopWith(syscall.SIGTERM, grace) }

// StopWith sends SIGCONT and sig, then SIGKILL if the process has not
// exited within grace, and waits for the exit. It reports whether SIGKILL
// was needed as an error (the process did not stop when asked).
func (p *Process) StopWith(sig os.Signal, grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGCONT)
	if err := p.Signal(sig); err != nil {
		return errors.Join(err, p.Kill())
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("proc: %d did not exit within %v of signal %v: killed", p.Pid(), grace, sig)
}
