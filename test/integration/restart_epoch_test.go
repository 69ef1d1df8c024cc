package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestRestartedLeaderLeadsAtNewEpoch: kill -9 the leader of a semisync
// cluster under write load, with the failover policy manual so that no
// other node is promoted; its supervisor restarts it and the topology
// still names it. The leader sends entries to its followers before its
// own fdatasync returns, so the kill can take from its log entries a
// follower holds: it must lead again at a new epoch (its agent moves the
// topology by compare and swap, a new-epoch event), never resume the old
// one. Every acknowledged write survives and the replicas converge.
func TestRestartedLeaderLeadsAtNewEpoch(t *testing.T) {
	if problem := restartLeader(t, nil); problem != "" {
		t.Fatal(problem)
	}
}

// TestRestartedLeaderCatchesResumedEpoch: the same with the planted fault
// leader-resumes-epoch; the test must see the old epoch led again.
func TestRestartedLeaderCatchesResumedEpoch(t *testing.T) {
	problem := restartLeader(t, []string{"--buggify", "leader-resumes-epoch"})
	if problem == "" {
		t.Fatal("a leader that resumed its epoch after a restart went unnoticed")
	}
	t.Logf("caught: %s", problem)
}

// restartLeader runs the scenario with extra server flags and returns what
// is wrong with the epochs ("" if nothing); other failures fail t.
func restartLeader(t *testing.T, serverArgs []string) string {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.ServerArgs = serverArgs })
	if out, err := runTandem(t, "failover-policy", "set", "manual", "--dir", c.Dir()); err != nil {
		t.Fatalf("failover-policy set manual: %v\n%s", err, out)
	}
	ctx := context.Background()
	l := startUniqueLoad(t, c, 8)
	testutil.Eventually(t, "some writes", 20*time.Second, func() (bool, string) { return l.acked() > 300, "" })
	old, epoch, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	defer func() {
		t.Logf("%v from the kill to the end of the checks", time.Since(killed).Round(time.Millisecond))
	}()
	testutil.Eventually(t, "writes acknowledged by the restarted leader", 30*time.Second, func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, a := range l.acks {
			if a.at.After(killed) {
				n++
			}
		}
		return n >= 100, fmt.Sprintf("%d acks since the kill", n)
	})
	t.Logf("100 writes acknowledged %v after the kill", time.Since(killed).Round(time.Millisecond))
	acks := l.stop()
	if lost := checkAcked(t, c, acks); lost > 0 {
		t.Fatalf("semisync: %d acknowledged writes only in rollback files", lost)
	}
	waitConverged(t, c)

	top := topologyOf(t, c)
	name := c.Node(old).Name
	if top.Leader != name {
		t.Fatalf("the topology names %s, want the restarted %s (failover policy manual)", top.Leader, name)
	}
	b, err := os.ReadFile(c.LogPath(old))
	if err != nil {
		t.Fatal(err)
	}
	led := leaderships(string(b))
	t.Logf("%s led epochs %v; the topology is at epoch %d (was %d)", name, led, top.Epoch, epoch)
	seen := map[uint64]bool{}
	for _, e := range led {
		if seen[e] {
			return fmt.Sprintf("%s led epoch %d twice (epochs %v)", name, e, led)
		}
		seen[e] = true
	}
	if top.Epoch <= epoch {
		return fmt.Sprintf("the topology is still at epoch %d after the leader's restart", top.Epoch)
	}
	if len(led) < 2 {
		return fmt.Sprintf("%s's log shows %d leaderships, want one before the kill and one after", name, len(led))
	}
	return ""
}

var leaderLine = regexp.MustCompile(`msg="role: leader".* epoch=(\d+)`)

// leaderships is the epoch of every `role: leader` line of a node's log,
// in order (the log is appended to across restarts).
func leaderships(log string) []uint64 {
	var out []uint64
	for line := range strings.Lines(log) {
		if m := leaderLine.FindStringSubmatch(line); m != nil {
			e, _ := strconv.ParseUint(m[1], 10, 64)
			out = append(out, e)
		}
	}
	return out
}
