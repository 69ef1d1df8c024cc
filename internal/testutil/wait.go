// Package testutil holds the helpers that tests of several packages share.
package testutil

import (
	"testing"
	"time"
)

// pollEvery is how often Until and Eventually look again.
const pollEvery = 2 * time.Millisecond

// Until polls cond until it holds (true) or within passes (false). It is
// for state that offers nothing to wait on — another process's status,
// Pebble's background writer, a goroutine inside a library; where there is
// a channel or a signal, wait on that instead. It is the only poll loop in
// the tests, so that every wait has a deadline.
func Until(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// Eventually is Until that fails t: cond returns whether it holds and, if
// not, the state to report when the wait times out.
func Eventually(t testing.TB, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	var state string
	if !Until(within, func() (ok bool) { ok, state = cond(); return ok }) {
		t.Fatalf("timed out after %v waiting for %s; last state: %s", within, what, state)
	}
}
