package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
)

func TestLeaderErrorMapsToRespSentinels(t *testing.T) {
	other := errors.New("something else")
	for _, tc := range []struct {
		in, want error
	}{
		{nil, nil},
		{replication.ErrNotLeader, resp.ErrNotLeader},
		{fmt.Errorf("wrapped: %w", replication.ErrStaleEpoch), resp.ErrNotLeader},
		{replication.ErrWriteTimeout, resp.ErrNoReplicas},
		{fmt.Errorf("wrapped: %w", replication.ErrOverloaded), resp.ErrOverloaded},
		{other, other},
	} {
		if got := leaderError(tc.in); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("leaderError(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestFatalGoesToConfig checks that the leader's Fatal hook reaches
// Config.Fatal instead of exiting the process.
func TestFatalGoesToConfig(t *testing.T) {
	var got error
	n := testNode(t, "n1", func(c *Config) { c.Fatal = func(err error) { got = err } })
	want := errors.New("persist epoch failed")
	n.fatal(want)
	if got != want {
		t.Fatalf("Config.Fatal got %v, want %v", got, want)
	}
}
