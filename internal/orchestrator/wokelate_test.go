package orchestrator

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestWokeLateSeesTheStall: a goroutine that receives from a timer's
// channel 300 ms after the timer was due must count itself 300 ms late.
// The channel's own value is the due time (Go 1.23's timers), so a loop
// measuring lateness with it saw 0 and never held a decision for a stall.
func TestWokeLateSeesTheStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		due := time.Now().Add(interval)
		timer := time.NewTimer(interval)
		defer timer.Stop()
		time.Sleep(interval + 300*time.Millisecond) // the receiver is busy past due
		sent := <-timer.C
		_, late := wokeLate(due)
		if late < 300*time.Millisecond {
			t.Fatalf("woke %v late, want at least 300ms", late)
		}
		if d := sent.Sub(due); d >= 300*time.Millisecond {
			t.Logf("the timer's channel value is %v past due: Go's timers changed; wokeLate still measures the clock", d)
		}
		if late <= stallAllowance {
			t.Fatalf("a round %v late is not past stallAllowance %v", late, stallAllowance)
		}
	})
}
