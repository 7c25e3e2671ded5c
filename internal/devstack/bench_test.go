package devstack_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

// BenchmarkStart measures time to ready: Start returns only once the
// frontend answers DescribeNamespace. "fresh" builds the schema in a new
// data dir; "existing" restarts on one; "fresh+ui" also starts the Web UI. Stop (about a second: the frontend
// drains for at least 1 s) is outside the timer. Run with -benchtime=3x;
// each iteration starts a whole server.
func BenchmarkStart(b *testing.B) {
	for _, mode := range []string{"fresh", "existing", "fresh+ui"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			if mode == "existing" {
				startStop(b, dir, false)
			}
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode != "existing" {
					dir = b.TempDir()
				}
				total += startStop(b, dir, mode == "fresh+ui")
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ready")
		})
	}
}

// startStop starts a stack on dir and stops it, returning the time to ready
// and pausing the benchmark timer for the stop.
func startStop(b *testing.B, dir string, ui bool) time.Duration {
	began := time.Now()
	s, err := devstack.Start(context.Background(), devstack.Config{DataDir: dir, LogOutput: io.Discard, UI: ui})
	if err != nil {
		b.Fatal(err)
	}
	ready := time.Since(began)
	b.StopTimer()
	if err := s.Stop(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return ready
}
