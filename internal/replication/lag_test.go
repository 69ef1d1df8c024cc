package replication

import "testing"

func TestOldestUnapplied(t *testing.T) {
	l := &Leader{durable: 5000}
	for lsn := uint64(1); lsn <= 5000; lsn++ {
		l.times.add(lsn, int64(lsn)*1000)
	}
	if _, ok := l.oldestUnapplied(5000); ok {
		t.Error("a follower that applied everything has an unapplied entry")
	}
	if got, _ := l.oldestUnapplied(4000); got != 4001*1000 {
		t.Errorf("oldest unapplied after 4000 = %d, want entry 4001's time", got)
	}
	// Entry 11 left the ring (it holds the last 4096): the oldest time the
	// ring has for the gap is a lower bound of the lag.
	if got, ok := l.oldestUnapplied(10); !ok || got != (5000-4095)*1000 {
		t.Errorf("oldest unapplied after 10 = %d, %v; want entry 905's time", got, ok)
	}
}
