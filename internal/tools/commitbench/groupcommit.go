package commitbench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Noter is a target that has something to add to its report line after
// its run (tandem: the group-commit size on each node).
type Noter interface {
	Notes(ctx context.Context) []string
}

// Notes implements Noter: entries per fsync on each node since it started
// (warmup included), from its /metrics.
func (t *Tandem) Notes(ctx context.Context) []string {
	var parts []string
	for _, n := range t.c.Nodes() {
		m, err := scrape(ctx, n.HTTPAddr, "tandem_log_appends_total", "tandem_log_entries_appended_total")
		if err != nil || m[0] == 0 {
			continue
		}
		role := "follower"
		if n.RESPAddr == t.addr {
			role = "leader"
		}
		parts = append(parts, fmt.Sprintf("%s %s %.1f", n.Name, role, m[1]/m[0]))
	}
	if len(parts) == 0 {
		return nil
	}
	return []string{"entries per fsync: " + strings.Join(parts, ", ")}
}

// scrape reads the named unlabelled counters from a Prometheus text page.
func scrape(ctx context.Context, httpAddr string, names ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("commitbench: metrics: %w", err)
	}
	defer resp.Body.Close()
	out := make([]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		for i, name := range names {
			if f[0] == name {
				out[i], _ = strconv.ParseFloat(f[1], 64)
			}
		}
	}
	return out, sc.Err()
}
