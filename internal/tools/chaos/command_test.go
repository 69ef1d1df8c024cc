package chaos

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommandRejectsUnknownFaultBeforeStarting(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--faults", "kill-leader,meteor", "--dir", t.TempDir(), "--binary-does-not-matter=false"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("accepted an unknown flag")
	}
	cmd = NewCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--faults", "kill-leader,meteor", "--dir", t.TempDir()})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "meteor") {
		t.Fatalf("unknown fault: err = %v", err)
	}
}

func TestCommandHelpListsFaults(t *testing.T) {
	cmd := NewCommand()
	for _, k := range []string{"kill-leader", "partition", "drop-oneway"} {
		if !strings.Contains(cmd.Long, k) {
			t.Errorf("help does not list %s", k)
		}
	}
	for _, f := range []string{"time", "faults", "clients", "seed", "mode", "buggify", "dir", "rate", "nodes", "read-policies", "sessions", "follower-lag", "no-proxy"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("no --%s flag", f)
		}
	}
}

func TestCommandRejectsBadReadPolicyBeforeStarting(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--read-policies", "ryw,bounded soon", "--dir", t.TempDir()})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "bounded soon") {
		t.Fatalf("bad read policy: err = %v", err)
	}
}
