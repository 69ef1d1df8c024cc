package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/testutil"
)

// TestWritesWithoutQuorumStayBounded: under "quorum 2" with both followers
// killed no write can commit. 200 clients each write with a 100 ms
// timeout, give up, reconnect and write again, for 30 s (TANDEM_SOAK
// overrides). The leader's memory and goroutine count must stay flat —
// every blocked write is bounded by the write timeout and the in-flight
// bound, and a client that leaves frees its goroutine — and every write
// acknowledged before the kill is still there once the followers return.
func TestWritesWithoutQuorumStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s soak")
	}
	soak := 30 * time.Second
	if s := os.Getenv("TANDEM_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		soak = d
	}
	c := startCluster(t, 3, "--mode", "quorum 2", "--write-timeout", "1s", "--max-inflight", "2000")
	leader := c.Node(1)
	ctx := context.Background()
	lc := client(t, leader.RESPAddr)
	var acked []string
	for i := range 200 {
		key := fmt.Sprintf("before:%d", i)
		if err := lc.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("write with both followers up: %v", err)
		}
		acked = append(acked, key)
	}
	for _, id := range []int{2, 3} {
		if err := c.Kill(id); err != nil {
			t.Fatal(err)
		}
	}

	soakCtx, stop := context.WithTimeout(ctx, soak)
	defer stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[string]int{}
	for w := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; soakCtx.Err() == nil; i++ {
				// A fresh client per write: it times out, leaves, and
				// comes back, as impatient clients do.
				cl := redis.NewClient(&redis.Options{Addr: leader.RESPAddr, MaxRetries: -1, Protocol: 2,
					ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, PoolSize: 1})
				err := cl.Set(soakCtx, fmt.Sprintf("soak:%d:%d", w, i), strings.Repeat("x", 100), 0).Err()
				cl.Close()
				kind := "ok"
				if err != nil {
					kind = strings.Fields(err.Error() + " x")[0]
				}
				mu.Lock()
				errs[kind]++
				mu.Unlock()
			}
		}()
	}
	type sample struct {
		at         time.Duration
		rssKB      int64
		goroutines int64
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(soak / 10)
	for soakCtx.Err() == nil {
		select {
		case <-tick.C:
		case <-soakCtx.Done():
			continue
		}
		s := sample{at: time.Since(start).Round(time.Second), rssKB: rssKB(t, leader.PID), goroutines: goroutines(t, leader.HTTPAddr)}
		samples = append(samples, s)
		t.Logf("after %v: leader RSS %d MiB, %d goroutines", s.at, s.rssKB/1024, s.goroutines)
	}
	tick.Stop()
	wg.Wait()
	t.Logf("write outcomes over %v: %v", soak, errs)
	if len(samples) < 4 {
		t.Fatalf("only %d samples", len(samples))
	}
	rss, gs := make([]int64, len(samples)), make([]int64, len(samples))
	for i, s := range samples {
		rss[i], gs[i] = s.rssKB, s.goroutines
	}
	if from, to, ok := grew(rss, 64<<10); ok {
		t.Errorf("leader RSS grew from %d MiB to %d MiB with writes that cannot commit", from/1024, to/1024)
	}
	if from, to, ok := grew(gs, 200); ok {
		t.Errorf("leader goroutines grew from %d to %d", from, to)
	}
	// After the soak the leader is idle again: blocked writes are gone.
	var g int64
	if !testutil.Until(10*time.Second, func() bool { g = goroutines(t, leader.HTTPAddr); return g <= 100 }) {
		t.Errorf("%d goroutines on the leader 10 s after every client left", g)
	}

	for _, id := range []int{2, 3} {
		if err := c.Start(id); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c)
	for _, key := range acked {
		if err := lc.Get(ctx, key).Err(); err != nil {
			t.Errorf("acknowledged write %s: %v", key, err)
		}
	}
}

// grew reports whether a soak's samples grew by more than slack: the
// highest after the first third (by then the bounds are reached) against
// the highest up to it. Peaks, not single samples: the leader's goroutines
// swing between ~150 and ~430 as 200 clients' writes time out together
// and come back, and one sample in a dip taken as the base (158, then 431
// at the end) failed the test with no growth at all.
func grew(samples []int64, slack int64) (from, to int64, ok bool) {
	k := len(samples)/3 + 1
	from, to = slices.Max(samples[:k]), slices.Max(samples[k:])
	return from, to, to > from+slack
}

// TestGrew: the soak's check on the goroutine counts of a run that
// failed on a single-sample base (bounded throughout: flat), and on
// series that do grow.
func TestGrew(t *testing.T) {
	for _, tc := range []struct {
		samples []int64
		want    bool
	}{
		{[]int64{431, 431, 431, 158, 431, 257, 310, 335, 305, 431}, false},
		{[]int64{150, 160, 170, 180, 200, 250, 300, 350, 400, 450}, true},
		{[]int64{431, 431, 431, 431, 431, 431, 431, 431, 431, 700}, true},
	} {
		if from, to, got := grew(tc.samples, 200); got != tc.want {
			t.Errorf("grew(%v) = %d → %d, %v; want %v", tc.samples, from, to, got, tc.want)
		}
	}
}

// rssKB reads a process's resident set from /proc.
func rssKB(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// goroutines reads go_goroutines from a node's /metrics.
func goroutines(t *testing.T, httpAddr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int64(n)
		}
	}
	t.Fatal("no go_goroutines metric")
	return 0
}
