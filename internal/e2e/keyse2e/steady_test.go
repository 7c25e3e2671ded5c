package keyse2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSteadyStateKEKCalls runs workflows through a proxy whose keys are wrapped by each KEK and counts the Manager's KEK
// calls: after a warm-up, a run of M workflows makes none, however many payloads pass.
func TestSteadyStateKEKCalls(t *testing.T) {
	forEachKEK(t, true, steadyState)
}

func steadyState(t *testing.T, p provider) {
	r := startRun(t, p, "steady")
	km, px, c, tq := r.km, r.px, r.c, r.tq
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	for i := range 2 {
		if err := runOne(ctx, c, tq, fmt.Sprintf("%s-warm-%d", tq, i), fmt.Sprintf("%s-warm-%d", marker, i)); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	warm := km.Stats()
	enc0, dec0 := px.obs.encoded.Load(), px.obs.decoded.Load()

	const m, parallel = 20, 4
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, m)
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < m; i += parallel {
				errs <- runOne(ctx, c, tq, fmt.Sprintf("%s-%d", tq, i), fmt.Sprintf("%s-%d", marker, i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	elapsed := time.Since(began)
	s := km.Stats()
	enc, dec := px.obs.encoded.Load()-enc0, px.obs.decoded.Load()-dec0
	t.Logf("warm-up (2 workflows): %d KEK calls; run of %d workflows in %s: %d payloads encoded, %d decoded, %d KEK calls, %d cache hits, %d misses, %d refreshes",
		warm.KEKCalls, m, elapsed.Round(time.Millisecond), enc, dec, s.KEKCalls-warm.KEKCalls,
		s.CacheHits-warm.CacheHits, s.CacheMisses-warm.CacheMisses, s.Refreshes-warm.Refreshes)
	if got := s.KEKCalls - warm.KEKCalls; got != 0 {
		t.Errorf("steady state made %d KEK calls for %d payloads, want 0", got, enc+dec)
	}
	if enc < m || dec < m {
		t.Errorf("only %d payloads encoded and %d decoded for %d workflows: the proxy did not see the traffic", enc, dec, m)
	}
}
