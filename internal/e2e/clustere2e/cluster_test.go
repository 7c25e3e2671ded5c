package clustere2e

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/cluster"
)

// The reduced size CI runs (a 2-core machine shared with the rest of the e2e lane). The Vault outage is shorter than
// the 20 s (which `go run ./bench --scenario cluster` keeps): it still spans a stream of completions, and the
// data-key cache TTL (10 min) is what bounds it either way.
const (
	ciWorkflows   = 200
	ciMeasure     = 100
	ciConcurrency = 20
	ciTimer       = time.Second
	ciVaultOutage = 10 * time.Second
)

func TestProductionPath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Vault, the Temporal server and five blindfold processes")
	}
	if _, err := cluster.PostgresBinDir(); errors.Is(err, cluster.ErrNoPostgres) {
		if os.Getenv("BLINDFOLD_REQUIRE_POSTGRES") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	t.Logf("cluster up in %s: postgresql %s, frontend %s, replicas %v, xds %s", time.Since(start).Round(time.Millisecond),
		c.PG.Addr(), c.FrontendAddr(), c.ProxyAddrs(), c.XDSAddr())
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()

	rep, err := cluster.Run(ctx, c, cluster.LoadOptions{
		Workflows: ciWorkflows, MeasureWorkflows: ciMeasure, Concurrency: ciConcurrency, Timer: ciTimer,
		VaultOutage: ciVaultOutage, Progress: testWriter{t},
	})
	if rep != nil {
		t.Logf("report:\n%s", rep)
	}
	if err != nil {
		t.Errorf("run: %v (logs in %s)", err, c.WorkDir())
		keepLogs(t, c)
	}
	if rep != nil {
		if len(rep.Faults) != 3 {
			t.Errorf("%d faults injected, want 3", len(rep.Faults))
		}
		// While Vault is down the replicas serve from cached data keys: work must go on, not just resume after.
		if len(rep.Faults) == 3 && rep.Faults[2].CompletedDuring == 0 {
			t.Errorf("no workflow completed during %q", rep.Faults[2].Name)
		}
		for i, s := range rep.Shares() {
			if s < 0.15 {
				t.Errorf("proxy-%d served %.1f%% of the calls; round robin over three should give each about a third", i, 100*s)
			}
		}
	}

	// Nothing left behind: every process gone, every port closed, the temporary directories removed.
	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("stop the cluster: %v", err)
	}
	if left := c.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Stop: %v", left)
	}
}

// keepLogs copies the part logs into the test's output directory before Stop removes them.
func keepLogs(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	entries, err := os.ReadDir(c.WorkDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(c.WorkDir() + "/" + e.Name())
		if err != nil {
			continue
		}
		if len(b) > 8<<10 {
			b = b[len(b)-8<<10:]
		}
		t.Logf("--- tail of %s:\n%s", e.Name(), b)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
