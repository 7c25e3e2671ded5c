package vault_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
)

var ctx = context.Background()

// newClock is a manual clock for cache tests.
func newClock() *testenv.Clock { return testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

func waitFor(t *testing.T, cond func() bool, what string) {
	testenv.WaitFor(t, 10*time.Second, what, cond)
}

func TestMain(m *testing.M) {
	// The developer's own key settings must not leak into the tests.
	os.Unsetenv(keys.MasterKeyEnv)
	os.Unsetenv(keys.KeyDirEnv)
	code := m.Run()
	stopTestVault() // the one vaultdev of this package, if a Vault test started it
	os.Exit(code)
}
