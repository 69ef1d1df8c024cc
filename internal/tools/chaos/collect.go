package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Facts are what the harness collects from the cluster after a run,
// besides the history and the digests: the commit mode, every leadership
// the node logs show, the control plane's topology changes and the writes
// in rollback files. Kept as facts.json beside history.json, so that Check
// can be run again on a kept run.
type Facts struct {
	Mode         string               `json:"mode"`
	ControlPlane bool                 `json:"control_plane"`
	Leaderships  []checker.Leadership `json:"leaderships"`
	Changes      []checker.Change     `json:"changes"`
	RolledBack   []checker.RolledBack `json:"rolled_back"`
	// Errors are facts that could not be collected: a check that relies
	// on them cannot pass (they are reported as violations).
	Errors []string `json:"errors,omitempty"`
}

// Async reports whether the nodes ran in async mode (the server's default).
func (f Facts) Async() bool { return f.Mode == "" || f.Mode == "async" }

// collectChanges reads the control plane's events from etcd.
func collectChanges(ctx context.Context, c *cluster.Cluster, h history.History, f *Facts) {
	store := c.Store()
	if store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	evs, err := store.Events(ctx, 100000)
	if err != nil {
		f.Errors = append(f.Errors, "events: "+err.Error())
		return
	}
	for _, e := range evs {
		f.Changes = append(f.Changes, checker.Change{At: h.At(e.At), Kind: e.Kind, Reason: e.Reason,
			From: nodeID(e.From), To: nodeID(e.To), OldEpoch: e.OldEpoch, NewEpoch: e.NewEpoch,
			Detect: e.DetectionMs, Promote: e.PromotionMs})
	}
}

// nodeID is 2 for "n2", 0 for anything else.
func nodeID(name string) int {
	if !strings.HasPrefix(name, "n") {
		return 0
	}
	id, err := strconv.Atoi(name[1:])
	if err != nil {
		return 0
	}
	return id
}

// collectFiles reads the leaderships from every node's log and the writes
// from every node's rollback files (after the cluster stopped).
func collectFiles(nodes []cluster.NodeInfo, logPath func(int) string, h history.History, f *Facts) {
	for _, n := range nodes {
		b, err := os.ReadFile(logPath(n.ID))
		if err != nil {
			f.Errors = append(f.Errors, "node log: "+err.Error())
		} else {
			ls, err := parseLeaderships(n.ID, b, h)
			f.Leaderships = append(f.Leaderships, ls...)
			if err != nil {
				f.Errors = append(f.Errors, fmt.Sprintf("%s: %v", logPath(n.ID), err))
			}
		}
		files, _ := filepath.Glob(filepath.Join(n.DataDir, "rollback-*.jsonl"))
		for _, path := range files {
			file, err := os.Open(path)
			if err != nil {
				f.Errors = append(f.Errors, "rollback file: "+err.Error())
				continue
			}
			rb, err := parseRollback(n.ID, path, file)
			file.Close()
			f.RolledBack = append(f.RolledBack, rb...)
			if err != nil {
				f.Errors = append(f.Errors, fmt.Sprintf("%s: %v", path, err))
			}
		}
	}
}

// parseLeaderships finds the `role: leader` lines of a node's log (slog's
// text format: time=... level=INFO msg="role: leader" ... epoch=N).
func parseLeaderships(node int, log []byte, h history.History) ([]checker.Leadership, error) {
	var out []checker.Leadership
	var bad int
	for _, line := range bytes.Split(log, []byte("\n")) {
		if !bytes.Contains(line, []byte(`msg="role: leader"`)) {
			continue
		}
		at, ok1 := field(string(line), "time")
		ep, ok2 := field(string(line), "epoch")
		t, err1 := time.Parse(time.RFC3339Nano, at)
		e, err2 := strconv.ParseUint(ep, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			bad++
			continue
		}
		out = append(out, checker.Leadership{Node: node, Epoch: e, At: h.At(t)})
	}
	if bad > 0 {
		return out, fmt.Errorf("%d `role: leader` lines without a time or an epoch", bad)
	}
	return out, nil
}

// field returns the value of key=value in a slog text line (unquoted
// values only, which time and epoch are).
func field(line, key string) (string, bool) {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// parseRollback reads a rollback file: JSON lines of logrec.Entry (see
// replication's writeRollback); each put is one rolled-back write.
func parseRollback(node int, path string, r io.Reader) ([]checker.RolledBack, error) {
	var out []checker.RolledBack
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e logrec.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("rollback entry: %w", err)
		}
		for _, op := range e.Ops {
			if op.Kind == logrec.OpPut {
				out = append(out, checker.RolledBack{Node: node, File: filepath.Base(path), Epoch: e.Epoch, LSN: e.LSN,
					Key: string(op.Key), Value: string(op.Value)})
			}
		}
	}
	return out, sc.Err()
}

// WriteFile stores f as JSON at path.
func (f Facts) WriteFile(path string) error {
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("chaos: encode facts: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadFacts loads facts that WriteFile stored.
func ReadFacts(path string) (Facts, error) {
	var f Facts
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("chaos: decode %s: %w", path, err)
	}
	return f, nil
}
