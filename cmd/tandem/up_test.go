package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/cluster"
)

// TestApplyZones: tandem up's zone flags reach each node, the proxy and
// the orchestrators; a zone list that does not name every node is refused.
func TestApplyZones(t *testing.T) {
	cfg := cluster.Config{Nodes: 3}
	if err := applyZones(&cfg, []string{"a", "a", "b"}, "b", "a"); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{1: "a", 2: "a", 3: "b"} {
		if got := cfg.NodeArgs[id]; !slices.Equal(got, []string{"--zone", want}) {
			t.Errorf("n%d args %v, want --zone %s", id, got, want)
		}
	}
	if !slices.Equal(cfg.ProxyArgs, []string{"--zone", "b"}) || !slices.Equal(cfg.OrchestratorArgs, []string{"--preferred-zone", "a"}) {
		t.Errorf("proxy args %v, orchestrator args %v", cfg.ProxyArgs, cfg.OrchestratorArgs)
	}
	cfg = cluster.Config{Nodes: 3}
	if err := applyZones(&cfg, []string{"a", "b"}, "", ""); err == nil || !strings.Contains(err.Error(), "2 zones for 3 nodes") {
		t.Errorf("2 zones for 3 nodes: %v", err)
	}
	cfg = cluster.Config{Nodes: 3}
	if err := applyZones(&cfg, nil, "", ""); err != nil || cfg.NodeArgs != nil || cfg.ProxyArgs != nil || cfg.OrchestratorArgs != nil {
		t.Errorf("no zone flags changed the config: %+v, %v", cfg, err)
	}
}
