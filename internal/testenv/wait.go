package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Poll and WaitFor look at their condition.
const PollInterval = 20 * time.Millisecond

// Poll reports whether cond holds within d, looking every PollInterval (and once more at the deadline).
func Poll(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(PollInterval)
	}
	return true
}

// WaitFor fails the test (t.Fatalf) with "<what>: not within <d>" unless cond holds within d. Tests that must go on
// after a failed wait (to clean up before a leak check, say) use Poll and t.Errorf instead.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("%s: not within %v", what, d)
	}
}
