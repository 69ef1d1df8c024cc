package proc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePortsBelowEphemeralRange(t *testing.T) {
	from, to := portRange()
	if from >= to {
		t.Fatalf("ephemeral range starts at %d: no room below it", to)
	}
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < from || p >= to {
			t.Errorf("port %d outside [%d, %d): an ephemeral port can be taken by any outgoing connection", p, from, to)
		}
		if seen[p] {
			t.Errorf("port %d given twice", p)
		}
		seen[p] = true
		// Released: the caller's child can bind it.
		l, err := net.Listen("tcp", Addr(p))
		if err != nil {
			t.Errorf("port %d not released: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 3 || !strings.HasPrefix(addrs[0], "127.0.0.1:") {
		t.Fatalf("FreeAddrs(3) = %v", addrs)
	}
}

func TestStopPolitely(t *testing.T) {
	p, err := Start(exec.Command("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	if ee, ok := p.Err().(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("exit = %v, want death by SIGTERM", p.Err())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// A process that ignores SIGTERM is killed after the grace period, and
// Stop says so.
func TestStopKillsAfterGrace(t *testing.T) {
	cmd := exec.Command("sh", "-c", `trap "" TERM; echo ready; read x`)
	in, err := cmd.StdinPipe() // held open: read never returns
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil { // the trap is set
		t.Fatal(err)
	}
	if err := p.Stop(50 * time.Millisecond); err == nil {
		t.Fatal("Stop of a process that ignores SIGTERM reported no error")
	}
	if ee, ok := p.Err().(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit = %v, want death by SIGKILL", p.Err())
	}
}

// Stop resumes a paused process, which could not act on SIGTERM.
func TestStopPaused(t *testing.T) {
	p, err := Start(exec.Command("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop of a paused process: %v", err)
	}
}

func TestKill(t *testing.T) {
	p, err := Start(exec.Command("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("Kill returned before the exit")
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill of an exited process: %v", err)
	}
}

// TestListenNeverHandsOutAPortTwice: a port released by a stopped child
// stays its own until it restarts, however many ports are picked meanwhile.
func TestListenNeverHandsOutAPortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		l, err := Listen()
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

// TestClaimAcrossProcesses: a port Listen handed out stays claimed after
// its listener closed (a child that had it is down), so another process
// cannot claim it; and a port another process claimed is not claimed
// here until that process dies. The other process is this test binary
// running TestClaimHelper.
func TestClaimAcrossProcesses(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if _, ok := handedOut.Load(p); !ok {
		t.Fatalf("port %d not recorded as handed out", p)
	}
	if got := otherClaims(t, p); got != "taken" {
		t.Fatalf("another process claiming port %d, which this one handed out: %q, want taken", p, got)
	}

	from, to := portRange()
	q := from + (p-from+1)%(to-from)
	for _, taken := handedOut.Load(q); taken; _, taken = handedOut.Load(q) {
		q = from + (q-from+1)%(to-from)
	}
	other := exec.Command(os.Args[0], "-test.run", "^TestClaimHelper$")
	other.Env = append(os.Environ(), "PROC_CLAIM_PORT="+strconv.Itoa(q))
	stdin, err := other.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "claimed" {
		t.Fatalf("the other process: %q, %v", line, err)
	}
	if lock, ok := claim(q); ok {
		lock.Close()
		t.Fatalf("claimed port %d, which another process holds", q)
	}
	stdin.Close() // the other process exits
	if err := other.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	lock, ok := claim(q)
	if !ok || lock == nil {
		t.Fatalf("port %d not claimed after the other process exited (ok %v)", q, ok)
	}
	lock.Close()
}

// otherClaims runs TestClaimHelper in another process to claim port p
// and returns what it says.
func otherClaims(t *testing.T, p int) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestClaimHelper$")
	cmd.Env = append(os.Environ(), "PROC_CLAIM_PORT="+strconv.Itoa(p))
	cmd.Stdin = strings.NewReader("")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("the other process: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first)
}

// TestClaimHelper is the other process of TestClaimAcrossProcesses: with
// PROC_CLAIM_PORT set it claims that port, prints "claimed" or "taken",
// and holds the claim until its stdin closes.
func TestClaimHelper(t *testing.T) {
	port := os.Getenv("PROC_CLAIM_PORT")
	if port == "" {
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	lock, ok := claim(p)
	if !ok {
		fmt.Println("taken")
		return
	}
	fmt.Println("claimed")
	io.Copy(io.Discard, os.Stdin)
	if lock != nil {
		lock.Close()
	}
}
