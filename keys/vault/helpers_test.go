package vault_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/keys"
)

var ctx = context.Background()

// clock is a manual clock for cache tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMain(m *testing.M) {
	// The developer's own key settings must not leak into the tests.
	os.Unsetenv(keys.MasterKeyEnv)
	os.Unsetenv(keys.KeyDirEnv)
	code := m.Run()
	stopTestVault() // the one vaultdev of this package, if a Vault test started it
	os.Exit(code)
}
