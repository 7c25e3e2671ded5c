package keys_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// TestForgedKeyIDStorm: envelope key ids are chosen by whoever wrote the envelope (a hostile backend). A storm of forged
// ids, naming scopes that do not exist, ids a real scope never had, or nothing parseable, must not push real scopes out
// of the key cache, must cost the KEK nothing, and must not stop real decodes while the KEK is down.
func TestForgedKeyIDStorm(t *testing.T) {
	t.Parallel()
	const (
		realScopes = 50
		workers    = 4
	)
	forged := 100_000
	if raceEnabled {
		forged = 25_000
	}
	m, _, clk, kek := newManager(t)
	type sealed struct {
		ns, id string
		ct     []byte
	}
	var real []sealed
	for i := range realScopes {
		ns := fmt.Sprintf("tenant-%d", i)
		id, ct := mustSeal(t, m, ns)
		real = append(real, sealed{ns, id, ct})
	}

	// With the KEK up, forged ids inside real scopes re-read each scope's stored keyset at most once per
	// MinRefreshInterval, and never call the KEK while the stored keyset is the one cached (a KMS may bill or throttle
	// every call). The clock moves a second every 500 ids, so the rate limit lets reloads through.
	s0 := m.Stats()
	for i := range 10_000 {
		if i%500 == 0 {
			clk.Advance(time.Second)
		}
		if _, err := m.OpeningKey(ctx, "x", keys.KeyID(real[i%realScopes].ns, uint32(i))); !errors.Is(err, codec.ErrUnknownKey) {
			t.Fatalf("forged id in a real scope: %v, want ErrUnknownKey", err)
		}
	}
	if s := m.Stats(); s.KEKCalls != s0.KEKCalls || s.KeyFileReads-s0.KeyFileReads != 20*realScopes {
		t.Fatalf("10000 forged ids in %d real scopes over 20 s: %d KEK calls (want 0), %d store reads (want %d: one per scope per second)",
			realScopes, s.KEKCalls-s0.KEKCalls, s.KeyFileReads-s0.KeyFileReads, 20*realScopes)
	}

	// The KEK goes down; the storm runs beside real decodes, which must all succeed.
	kek.down.Store(true)
	before := m.Stats()
	start := time.Now()
	var (
		mu       sync.Mutex
		failures []error
	)
	fail := func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() }
	var storm sync.WaitGroup
	for w := range workers {
		storm.Add(1)
		go func() {
			defer storm.Done()
			for i := w; i < forged; i += workers {
				var id string
				switch i % 4 {
				case 0, 1:
					id = keys.KeyID(fmt.Sprintf("forged-%d", i), uint32(i)) // a scope that does not exist
				case 2:
					id = keys.KeyID(real[i%realScopes].ns, uint32(i)) // an id the real scope never had
				default:
					id = fmt.Sprintf("garbage-%d", i) // not a key id at all
				}
				if _, err := m.OpeningKey(ctx, "x", id); !errors.Is(err, codec.ErrUnknownKey) {
					fail(fmt.Errorf("forged key id %s: %v, want ErrUnknownKey", id, err))
					return
				}
			}
		}()
	}
	stormDone, decoderDone := make(chan struct{}), make(chan struct{})
	realDecodes := 0
	go func() {
		defer close(decoderDone)
		for {
			for _, r := range real {
				k, err := m.OpeningKey(ctx, r.ns, r.id)
				if err == nil {
					_, err = k.AEAD.Decrypt(r.ct, []byte(r.id))
				}
				if err != nil {
					fail(fmt.Errorf("real key %s during the storm with the KEK down: %w", r.id, err))
					return
				}
				realDecodes++
			}
			select {
			case <-stormDone:
				return
			default:
			}
		}
	}()
	storm.Wait()
	close(stormDone)
	<-decoderDone
	elapsed := time.Since(start)
	if len(failures) > 0 {
		t.Fatal(errors.Join(failures...))
	}
	for _, r := range real {
		mustOpen(t, m, r.ns, r.id, r.ct)
	}
	s := m.Stats()
	if s.KEKCalls != before.KEKCalls {
		t.Errorf("the storm cost %d KEK calls, want 0", s.KEKCalls-before.KEKCalls)
	}
	if s.CachedScopes != realScopes {
		t.Errorf("cached scopes after the storm: %d, want the %d real ones", s.CachedScopes, realScopes)
	}
	if s.NegativeEntries > keys.DefaultNegativeCacheSize {
		t.Errorf("negative entries %d, bound %d", s.NegativeEntries, keys.DefaultNegativeCacheSize)
	}
	t.Logf("storm of %d forged ids (%d workers) beside %d real decodes, KEK down: %v (%.1f µs per forged id); store reads %d, KEK calls %d, refreshes %d (failed %d); cached scopes %d, negative entries %d",
		forged, workers, realDecodes, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/float64(forged),
		s.KeyFileReads-before.KeyFileReads, s.KEKCalls-before.KEKCalls, s.Refreshes-before.Refreshes, s.RefreshFailures-before.RefreshFailures,
		s.CachedScopes, s.NegativeEntries)
}

// TestNegativeCacheBound: scopes with nothing stored are remembered apart from real ones, each list bounded on its own.
func TestNegativeCacheBound(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t, keys.WithCacheSize(2), keys.WithNegativeCacheSize(10))
	a, cta := mustSeal(t, m, "a")
	b, ctb := mustSeal(t, m, "b")
	for i := range 1000 {
		if _, err := m.OpeningKey(ctx, "x", keys.KeyID(fmt.Sprintf("nope-%d", i), 1)); !errors.Is(err, codec.ErrUnknownKey) {
			t.Fatalf("unknown scope: %v, want ErrUnknownKey", err)
		}
	}
	s0 := m.Stats()
	if s0.CachedScopes != 2 || s0.NegativeEntries != 10 {
		t.Fatalf("cached %d, negative %d; want 2 and 10", s0.CachedScopes, s0.NegativeEntries)
	}
	mustOpen(t, m, "a", a, cta)
	mustOpen(t, m, "b", b, ctb)
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads {
		t.Fatalf("real scopes were reloaded after the storm: %d reads", s.KeyFileReads-s0.KeyFileReads)
	}
	// Real scopes still compete among themselves for WithCacheSize.
	mustSeal(t, m, "c")
	if s := m.Stats(); s.CachedScopes != 2 {
		t.Fatalf("cached %d, want 2", s.CachedScopes)
	}
	if _, err := keys.NewManager(keys.NewDirStore(t.TempDir()), localKEKForTest(t), keys.WithNegativeCacheSize(0)); err == nil {
		t.Fatal("NewManager accepted a negative cache size of 0")
	}
}

// TestNegativeEntryBecomesReal: a scope remembered as empty that another process then creates is picked up (after
// MinRefreshInterval) and counted as a real scope from then on.
func TestNegativeEntryBecomesReal(t *testing.T) {
	t.Parallel()
	m, dir, clk, _ := newManager(t, keys.WithAutoCreate(false))
	if _, err := m.SealingKey(ctx, codec.Target{Namespace: "late"}); !errors.Is(err, keys.ErrScopeNotFound) {
		t.Fatalf("SealingKey before creation: %v, want ErrScopeNotFound", err)
	}
	if s := m.Stats(); s.NegativeEntries != 1 || s.CachedScopes != 0 {
		t.Fatalf("stats %+v, want one negative entry", s)
	}
	admin, _, _, _ := newManagerIn(t, dir)
	id, err := admin.Create(ctx, "late", keys.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	k, err := m.OpeningKey(ctx, "late", id)
	if err != nil || k.ID != id {
		t.Fatalf("OpeningKey after creation elsewhere: %v", err)
	}
	if s := m.Stats(); s.NegativeEntries != 0 || s.CachedScopes != 1 {
		t.Fatalf("stats %+v, want the scope moved to the real entries", s)
	}
}

func localKEKForTest(t *testing.T) keys.KEK {
	k, err := keys.NewLocalKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// BenchmarkForgedKeyID compares the cost of a lookup of a forged key id in a scope that does not exist (a store read,
// no KEK call) with a cached lookup, as a ratio measured in the same run.
func BenchmarkForgedKeyID(b *testing.B) {
	dir := b.TempDir()
	m, err := keys.OpenLocal(dir)
	if err != nil {
		b.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
	if err != nil {
		b.Fatal(err)
	}
	measure := func(f func(i int)) time.Duration {
		const n = 20000
		start := time.Now()
		for i := range n {
			f(i)
		}
		return time.Since(start) / n
	}
	b.ResetTimer()
	for range b.N {
		cached := measure(func(int) { m.OpeningKey(ctx, "default", k.ID) })
		forged := measure(func(i int) { m.OpeningKey(ctx, "default", keys.KeyID(fmt.Sprintf("f%d-%d", b.N, i), 1)) })
		b.ReportMetric(float64(cached.Nanoseconds()), "ns/cached")
		b.ReportMetric(float64(forged.Nanoseconds()), "ns/forged")
		b.ReportMetric(float64(forged)/float64(cached), "forged/cached")
	}
	if s := m.Stats(); s.KEKCalls > 2 || s.CachedScopes != 1 {
		b.Fatalf("stats %+v: forged ids reached the KEK or evicted the real scope", s)
	}
}
