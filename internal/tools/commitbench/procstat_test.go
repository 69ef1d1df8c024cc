package commitbench

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	pid, ppid, cpu, ok := parseStat([]byte("4242 (redis (x) y) S 17 4242 4242 0 -1 4194560 313 0 0 0 250 75 20 5 20 0 4 0 1234 1 2 3\n"))
	if !ok || pid != 4242 || ppid != 17 || cpu != 3500*time.Millisecond {
		t.Fatalf("parseStat = %d %d %v %v, want 4242 17 3.5s true", pid, ppid, cpu, ok)
	}
	if _, _, _, ok := parseStat([]byte("garbage")); ok {
		t.Fatal("parseStat accepted garbage")
	}
	// This process is in a live snapshot, under its parent.
	s := snapshotProcs()
	if _, ok := s.cpu[os.Getpid()]; !ok || s.parent[os.Getpid()] != os.Getppid() {
		t.Fatalf("snapshot lacks this process or its parent: %v %d", ok, s.parent[os.Getpid()])
	}
	found := false
	for _, p := range s.descendants(os.Getppid()) {
		found = found || p == os.Getpid()
	}
	if !found {
		t.Fatal("this process is not among its parent's descendants")
	}
}
