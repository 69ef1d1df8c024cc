package replication

import "testing"

func TestOldestUnapplied(t *testing.T) {
	// 5000 entries of 10 bytes in a cache of 40000 bytes: 1001..5000 stay.
	l := &Leader{tail: tailCache{maxBytes: 40000}}
	for lsn := uint64(1); lsn <= 5000; lsn++ {
		l.tail.add(lsn, make([]byte, 10), int64(lsn)*1000)
	}
	if _, ok := l.oldestUnapplied(5000, 5000); ok {
		t.Error("a follower that applied everything has an unapplied entry")
	}
	if got, _ := l.oldestUnapplied(4000, 5000); got != 4001*1000 {
		t.Errorf("oldest unapplied after 4000 = %d, want entry 4001's time", got)
	}
	// Entry 11 left the cache: the oldest cached time is a lower bound of
	// the lag.
	if got, ok := l.oldestUnapplied(10, 5000); !ok || got != 1001*1000 {
		t.Errorf("oldest unapplied after 10 = %d, %v; want entry 1001's time", got, ok)
	}
}
