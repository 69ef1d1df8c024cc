package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestMain runs this test binary as the child of TestPauseReturnsStopped
// when asked to (pausedChildEnv).
func TestMain(m *testing.M) {
	if os.Getenv(pausedChildEnv) != "" {
		pausedChild()
		return
	}
	os.Exit(m.Run())
}

const pausedChildEnv = "TANDEM_PROC_TEST_PAUSED_CHILD"

// pausedChild is a process of several threads that keep waking up, as a
// node's do: it says "ready" and runs until killed.
func pausedChild() {
	for range 4 {
		go func() {
			for {
				time.Sleep(time.Millisecond)
			}
		}()
	}
	fmt.Println("ready")
	select {}
}

// Scheduling of the calling thread (setpriority(2) and
// sched_setaffinity(2) act on a thread on Linux); a child forked from it
// inherits both.

// pinToFirstCPU pins the calling thread to the first CPU it may run on
// (CPU 0 may be outside a container's cpuset).
func pinToFirstCPU() error {
	var mask [16]uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); e != 0 {
		return fmt.Errorf("sched_getaffinity: %w", e)
	}
	first := -1
	for i := 0; i < len(mask)*64 && first < 0; i++ {
		if mask[i/64]&(1<<(i%64)) != 0 {
			first = i
		}
	}
	if first < 0 {
		return fmt.Errorf("sched_getaffinity: no CPU")
	}
	mask = [16]uint64{}
	mask[first/64] = 1 << (first % 64)
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); e != 0 {
		return fmt.Errorf("sched_setaffinity CPU %d: %w", first, e)
	}
	return nil
}

// TestPauseReturnsStopped: Pause returns only once every thread of the
// process is stopped. kill(2) returns as soon as SIGSTOP is queued; here
// the child runs at nice 19 on one CPU while a thread of this test spins
// there, so it gets to the signal late, as a process on a loaded machine
// does: a Pause that returned once the signal was sent (as it did) finds
// the child's threads still sleeping or runnable, every time.
func TestPauseReturnsStopped(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	pinned := make(chan error)
	go func() {
		// Hold the CPU until the test ends; the thread ends with the
		// goroutine (locked, never unlocked).
		runtime.LockOSThread()
		err := pinToFirstCPU()
		pinned <- err
		for err == nil {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	if err := <-pinned; err != nil {
		t.Fatal(err)
	}
	started := make(chan *Process)
	var out *bufio.Reader
	go func() {
		// Fork the child from a thread at nice 19 on that CPU; the
		// thread ends with the goroutine.
		runtime.LockOSThread()
		if err := pinToFirstCPU(); err != nil {
			t.Error(err)
			started <- nil
			return
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19); err != nil {
			t.Error(err)
			started <- nil
			return
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), pausedChildEnv+"=1")
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Error(err)
			started <- nil
			return
		}
		p, err := Start(cmd)
		if err != nil {
			t.Error(err)
			started <- nil
			return
		}
		out = bufio.NewReader(pipe)
		started <- p
	}()
	p := <-started
	if p == nil {
		t.FailNow()
	}
	defer p.Kill()
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	for i := range 3 {
		if err := p.Pause(30 * time.Second); err != nil {
			t.Fatalf("pause %d: %v", i, err)
		}
		if ok, err := Stopped(p.Pid()); err != nil || !ok {
			t.Fatalf("pause %d returned with a thread of the child not stopped (%v)", i, err)
		}
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
}

// Pause of a process that has exited is an error, not a wait.
func TestPauseExited(t *testing.T) {
	p, err := Start(exec.Command("true"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Pause(time.Second); err == nil {
		t.Fatal("Pause of an exited process reported no error")
	}
}
