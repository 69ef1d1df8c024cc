package chaos

import (
	"context"
	"log/slog"
	"time"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// DefaultCatchUpWithin is Options.CatchUpWithin's default: how long after
// a fault is healed every follower may take to apply what the leader had
// applied at the heal. A follower whose stream went silent reconnects
// within its --leader-timeout (2 s) of the last thing it heard, once more
// if its first new connection was made before the heal; a restarted one
// replays its log and reconnects in well under a second on an idle
// machine. 10 s leaves room for the shared, loaded machines the harness
// runs on, and still catches a follower left behind for good.
const DefaultCatchUpWithin = 10 * time.Second

// catchUpPoll is how often the watch reads the nodes' status.
const catchUpPoll = 100 * time.Millisecond

// statusOf reads a node's /status (cluster.Cluster.Status).
type statusOf func(ctx context.Context, id int) (statusdoc.Node, error)

// catchUpWatch measures, after each healed fault, how long each follower
// takes to apply what the leader had applied at the heal (up to within),
// and records it in the history (history.CatchUp; checker.CatchUps judges
// it). It runs beside the nemesis and needs nothing from it but the
// history: a fault's heal time starts a wait, the next fault's injection
// cuts it short.
type catchUpWatch struct {
	rec    *history.Recorder
	nodes  []int
	leader func(ctx context.Context) (int, error)
	status statusOf
	within time.Duration
	log    *slog.Logger
}

func newCatchUpWatch(c *cluster.Cluster, rec *history.Recorder, within time.Duration, log *slog.Logger) *catchUpWatch {
	w := &catchUpWatch{rec: rec, status: c.Status, within: within, log: log,
		leader: func(ctx context.Context) (int, error) {
			id, _, err := c.Leader(ctx)
			return id, err
		}}
	for _, n := range c.Nodes() {
		w.nodes = append(w.nodes, n.ID)
	}
	return w
}

// run watches until done is closed (the nemesis healed its last fault)
// and every heal seen is measured, or ctx ends.
func (w *catchUpWatch) run(ctx context.Context, done <-chan struct{}) {
	next := 0
	for {
		faults := w.rec.Faults()
		switch {
		case next < len(faults) && faults[next].InjectErr != "":
			next++ // never injected: nothing healed
			continue
		case next < len(faults) && faults[next].Heal != 0:
			w.rec.AddCatchUp(w.measure(ctx, next, faults[next]))
			next++
			continue
		}
		select {
		case <-done:
			if next >= len(w.rec.Faults()) {
				return
			}
		case <-ctx.Done():
			return
		case <-time.After(catchUpPoll):
		}
	}
}

// measure waits for the followers after fault i, healed at f.Heal.
func (w *catchUpWatch) measure(ctx context.Context, i int, f history.FaultEvent) history.CatchUp {
	c := history.CatchUp{Fault: i, Within: int64(w.within)}
	deadline := f.Heal + int64(w.within)
	cut := func() bool { return ctx.Err() != nil || len(w.rec.Faults()) > i+1 }
	ask := func(id int) (statusdoc.Node, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return w.status(ctx, id)
	}
	pause := func() { time.Sleep(min(catchUpPoll, time.Duration(max(0, deadline-w.rec.Now())))) }
	// The target: what the node that leads now had applied. A node the
	// topology names that does not lead yet (a failover under way) is
	// asked again.
	for c.Leader == 0 {
		if w.rec.Now() >= deadline || cut() {
			w.log.Warn("catch-up not measured: no leader known", "fault", f.Name)
			c.Cut = cut()
			return c
		}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		id, err := w.leader(lctx)
		cancel()
		if err == nil {
			if st, err := ask(id); err == nil && st.Role == statusdoc.RoleLeader {
				c.Leader, c.Target = id, st.AppliedLSN
				break
			}
		}
		pause()
	}
	c.Took, c.Behind = map[int]int64{}, map[int]uint64{}
	for _, id := range w.nodes {
		if id != c.Leader {
			c.Behind[id] = 0
		}
	}
	for {
		for id := range c.Behind {
			st, err := ask(id)
			if err != nil {
				continue
			}
			if st.AppliedLSN >= c.Target {
				c.Took[id] = max(0, w.rec.Now()-f.Heal)
				delete(c.Behind, id)
			} else {
				c.Behind[id] = st.AppliedLSN
			}
		}
		if len(c.Behind) == 0 {
			return c
		}
		if w.rec.Now() >= deadline {
			w.log.Warn("followers behind after a heal", "fault", f.Name, "within", w.within, "leader", c.Leader, "target", c.Target, "behind", c.Behind)
			return c
		}
		if cut() {
			c.Cut = true
			return c
		}
		pause()
	}
}
