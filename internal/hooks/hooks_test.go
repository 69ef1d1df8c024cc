package hooks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/testutil"
)

var (
	at0    = time.Date(2026, 12, 5, 21, 0, 0, 0, time.UTC)
	events = []Event{
		{Kind: Detected, Cluster: "c1", OldLeader: "n1", Epoch: 3, Time: at0, Reason: "leader refused 2 probes in a row"},
		{Kind: PreFailover, Cluster: "c1", OldLeader: "n1", NewLeader: "n2", Epoch: 3, Time: at0.Add(time.Millisecond), Reason: "failover"},
		{Kind: PostFailover, Cluster: "c1", OldLeader: "n1", NewLeader: "n2", Epoch: 4, OldEpoch: 3, Time: at0.Add(2 * time.Millisecond), Reason: "failover"},
	}
)

// same compares events as JSON carries them (times by instant).
func same(a, b Event) bool {
	at, bt := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && at.Equal(bt)
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func decode(t *testing.T, ls []string) []Event {
	t.Helper()
	var out []Event
	for _, l := range ls {
		var ev Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("hook got %q: %v", l, err)
		}
		out = append(out, ev)
	}
	return out
}

// TestCommandHook: a command hook runs once per event, in order, with the
// event as JSON on stdin and its fields in the environment.
func TestCommandHook(t *testing.T) {
	dir := t.TempDir()
	js, env := filepath.Join(dir, "json"), filepath.Join(dir, "env")
	cmd := fmt.Sprintf(`cat >> %s; printf '%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s\n' "$TANDEM_EVENT" "$TANDEM_CLUSTER" "$TANDEM_OLD_LEADER" "$TANDEM_NEW_LEADER" "$TANDEM_EPOCH" "$TANDEM_OLD_EPOCH" "$TANDEM_TIME" "$TANDEM_REASON" >> %s`, js, env)
	r := New(Config{Commands: []string{cmd}, Timeout: 10 * time.Second})
	for _, ev := range events {
		r.Fire(ev)
	}
	r.Close() // runs what is queued
	if got := decode(t, lines(t, js)); !slices.EqualFunc(got, events, same) {
		t.Fatalf("stdin: got %+v\nwant %+v", got, events)
	}
	var want []string
	for _, ev := range events {
		want = append(want, strings.Join([]string{ev.Kind, ev.Cluster, ev.OldLeader, ev.NewLeader, strconv.FormatUint(ev.Epoch, 10),
			strconv.FormatUint(ev.OldEpoch, 10), ev.Time.Format(time.RFC3339Nano), ev.Reason}, "|"))
	}
	if got := lines(t, env); !slices.Equal(got, want) {
		t.Fatalf("environment: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Failures() != 0 {
		t.Fatalf("%d failures", r.Failures())
	}
}

// TestURLHook: a URL hook gets one POST per event, in order, with the
// event as its JSON body; a non-2xx answer counts as a failure.
func TestURLHook(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev Event
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &ev) != nil {
			t.Errorf("%s %s %q", r.Method, r.Header.Get("Content-Type"), b)
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		if ev.Kind == PostFailover {
			http.Error(w, "pager down", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	r := New(Config{URLs: []string{srv.URL}, Timeout: 10 * time.Second})
	for _, ev := range events {
		r.Fire(ev)
	}
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(events) {
		t.Fatalf("got %d POSTs, want %d: %+v", len(got), len(events), got)
	}
	for i := range got {
		if !same(got[i], events[i]) {
			t.Errorf("POST %d: got %+v, want %+v", i, got[i], events[i])
		}
	}
	if r.Failures() != 1 {
		t.Fatalf("failures %d, want 1 (the 502)", r.Failures())
	}
}

// TestHangingHookDoesNotBlock: Fire returns at once while a hook hangs, and
// the other hooks run their events without waiting for it.
func TestHangingHookDoesNotBlock(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fast")
	r := New(Config{Commands: []string{"sleep 60", "cat >> " + out}, Timeout: time.Minute, Queue: 2})
	defer func() {
		// Close gives the hanging run its timeout; stop it sooner.
		r.stopRuns()
		r.Close()
	}()
	start := time.Now()
	for range 100 { // far more than the hanging hook's queue holds
		r.Fire(events[0])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("100 Fire calls took %v with a hanging hook", d)
	}
	// The hanging hook took one event and queued 2; the other 97 were
	// dropped for it (counted). The fast hook got the first 2 at least.
	if f := r.Failures(); f < 97 {
		t.Fatalf("failures %d, want >= 97 dropped events", f)
	}
	testutil.Eventually(t, "the fast hook's runs", 10*time.Second, func() (bool, string) {
		n := len(lines(t, out))
		return n >= 2, fmt.Sprint(n, " lines")
	})
}

// TestHookTimeout: a command that outlives the timeout is killed with its
// whole process group, logged as a failure, and the hook goes on to the
// next event.
func TestHookTimeout(t *testing.T) {
	dir := t.TempDir()
	pidf, after := filepath.Join(dir, "pid"), filepath.Join(dir, "after")
	// The first event starts a background child and waits for it; the
	// second writes a line.
	cmd := fmt.Sprintf(`if [ "$TANDEM_EVENT" = %s ]; then sleep 60 & echo $! > %s; wait; else echo "$TANDEM_EVENT" >> %s; fi`, Detected, pidf, after)
	r := New(Config{Commands: []string{cmd}, Timeout: 300 * time.Millisecond})
	defer r.Close()
	r.Fire(events[0])
	r.Fire(events[1])
	testutil.Eventually(t, "the second event after the first's timeout", 10*time.Second, func() (bool, string) {
		ls := lines(t, after)
		return len(ls) == 1 && ls[0] == PreFailover, fmt.Sprint(ls)
	})
	if r.Failures() != 1 {
		t.Fatalf("failures %d, want 1", r.Failures())
	}
	b, err := os.ReadFile(pidf)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The grandchild (sleep) was in the group and is gone, or a zombie
	// waiting for init to reap it.
	testutil.Eventually(t, "the hook's child killed", 5*time.Second, func() (bool, string) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true, ""
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(st))
		return len(f) > 2 && f[2] == "Z", string(st)
	})
}

// TestURLTimeout: a POST that gets no answer is cancelled after the
// timeout.
func TestURLTimeout(t *testing.T) {
	cancelled := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the client leaving.
		_, _ = io.ReadAll(r.Body)
		<-r.Context().Done()
		close(cancelled)
	}))
	defer srv.Close()
	r := New(Config{URLs: []string{srv.URL}, Timeout: 200 * time.Millisecond})
	defer r.Close()
	r.Fire(events[0])
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the hanging POST was not cancelled")
	}
	testutil.Eventually(t, "the failure counted", 5*time.Second, func() (bool, string) {
		return r.Failures() == 1, fmt.Sprint(r.Failures())
	})
}

// TestNilRunner: an orchestrator without hooks holds a nil *Runner.
func TestNilRunner(t *testing.T) {
	var r *Runner
	r.Fire(events[0])
	r.Close()
	if r.Failures() != 0 {
		t.Fatal("nil runner failed")
	}
}
