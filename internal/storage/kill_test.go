package storage

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/logrec"
)

// killChildEnv names the data dir of TestKill9AfterRetention's child.
const killChildEnv = "TANDEM_STORAGE_KILL9_DIR"

// killEntry is the entry at lsn the child writes: the parent rebuilds the
// model from the LSN alone.
func killEntry(lsn uint64) logrec.Entry {
	ops := []logrec.Op{put(fmt.Sprintf("k%d", lsn%37), strings.Repeat(strconv.FormatUint(lsn, 10), 40))}
	if lsn%11 == 0 {
		ops = append(ops, del(fmt.Sprintf("k%d", lsn%37+1)))
	}
	return entry(1, lsn, ops...)
}

// killSegmentSize is small, so that retention deletes segments long
// before Pebble fills a memtable and flushes on its own.
const killSegmentSize = 64 << 10

// TestKill9AfterRetention runs a node's storage in a child process on a
// real disk, writing through the log, applying and trimming the log (as
// a follower's retention does) until retention has deleted segments, and
// kills it with SIGKILL: Pebble keeps no log, so every apply since the
// last flush is lost, and the log must still hold all of them. The
// reopened store replays to the end of the log and holds exactly the
// model's data. A retention that deleted a segment before a flush made
// its applies (and the new log base) durable fails Open here: the log
// then starts after the log base.
func TestKill9AfterRetention(t *testing.T) {
	if d := os.Getenv(killChildEnv); d != "" {
		killChild(d)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9AfterRetention$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// The child prints each durable LSN once it is applied, and "trimmed"
	// once retention deleted a segment; it is killed a few batches later.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var durable uint64
	after := -1
	deadline := time.After(60 * time.Second)
	for after != 0 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the child exited before the kill (durable %d)", durable)
			}
			if line == "trimmed" {
				after = 5
				continue
			}
			if n, err := strconv.ParseUint(line, 10, 64); err == nil {
				durable = n
				if after > 0 {
					after--
				}
			}
		case <-deadline:
			t.Fatalf("no segment deleted by retention within 60 s (durable %d)", durable)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	for range lines {
	}
	_ = cmd.Wait()

	d, err := Open(dir, Options{LogSegmentSize: killSegmentSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open after kill -9: %v", err)
	}
	defer d.Close()
	end, applied, base := d.Durable().LSN, d.Applied(), d.LogBase().LSN
	t.Logf("after kill -9: log base %d, applied %d, durable %d (last reported %d)", base, applied, end, durable)
	if end < durable {
		t.Fatalf("durable %d after the kill, below the %d reported durable before it", end, durable)
	}
	if base == 0 {
		t.Fatal("the log base is 0: retention never made a base durable, so the test proved nothing")
	}
	// Replay what Pebble lost, as the node does at start.
	raws, err := d.ReadLog(applied+1, end, 1<<30)
	if err != nil {
		t.Fatalf("read the log from applied %d to %d: %v", applied, end, err)
	}
	if uint64(len(raws)) != end-applied {
		t.Fatalf("read %d entries after applied %d, want %d", len(raws), applied, end-applied)
	}
	var es []logrec.Entry
	for _, raw := range raws {
		e, err := logrec.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if err := d.Apply(es); err != nil {
		t.Fatalf("replay %d..%d: %v", applied+1, end, err)
	}
	var model []logrec.Entry
	for lsn := uint64(1); lsn <= end; lsn++ {
		model = append(model, killEntry(lsn))
	}
	got, want := dump(t, d), state(model)
	slices.Sort(got) // dump is in key order, state in string order
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("got %.60s, want %.60s", got[i], want[i])
				break
			}
		}
		t.Fatalf("after replay to %d: %d keys, the model has %d; they differ", end, len(got), len(want))
	}
	checkCounts(t, "replayed", d)
}

// killChild is the child of TestKill9AfterRetention: it writes until it is
// killed, trimming the log to its last 16 KiB after every batch, and says
// "trimmed" once the log's first segment file is gone.
func killChild(dir string) {
	d, err := Open(dir, Options{LogSegmentSize: killSegmentSize})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	trimmed := false
	for lsn := uint64(1); ; {
		var es []logrec.Entry
		for range 20 {
			es = append(es, killEntry(lsn))
			lsn++
		}
		if err := d.AppendLog(encodeAll(es...)); err != nil {
			fmt.Fprintln(os.Stderr, "child: append:", err)
			os.Exit(2)
		}
		if err := d.Apply(es); err != nil {
			fmt.Fprintln(os.Stderr, "child: apply:", err)
			os.Exit(2)
		}
		if err := d.TrimLogTo(16 << 10); err != nil {
			fmt.Fprintln(os.Stderr, "child: retention:", err)
			os.Exit(2)
		}
		fmt.Fprintln(w, lsn-1)
		if _, err := os.Stat(filepath.Join(dir, logDir, fmt.Sprintf("%020d.seg", 1))); !trimmed && errors.Is(err, fs.ErrNotExist) {
			trimmed = true
			fmt.Fprintln(w, "trimmed")
		}
		w.Flush()
	}
}
