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
		forged     = 100_000
		workers    = 4
	)
	m, _, _, kek := newManager(t)
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

	// With the KEK up, forged ids inside real scopes reload each scope at most once per MinRefreshInterval (the clock
	// stands still here): a bounded number of KEK calls, whatever the storm's size.
	s0 := m.Stats()
	for i := range 10_000 {
		m.OpeningKey(ctx, "x", keys.KeyID(real[i%realScopes].ns, uint32(i)))
	}
	if s := m.Stats(); s.KEKCalls-s0.KEKCalls > realScopes {
		t.Fatalf("10000 forged ids in %d real scopes cost %d KEK calls, want at most one per scope", realScopes, s.KEKCalls-s0.KEKCalls)
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
		forged, workers, realDecodes, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/forged,
		s.KeyFileReads-before.KeyFileReads, s.KEKCalls-before.KEKCalls, s.Refreshes-before.Refreshes, s.RefreshFailures-before.RefreshFailures,
		s.CachedScopes, s.NegativeEntries)
}
