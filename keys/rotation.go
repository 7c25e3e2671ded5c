package keys

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RotateIfOlder adds a new primary to scope's keyset if its primary key is at least maxAge old, and returns the primary's id and
// whether it rotated. The age is checked under the store's lock: of several processes sharing a store, only the first rotates.
func (m *Manager) RotateIfOlder(ctx context.Context, scope string, maxAge time.Duration) (string, bool, error) {
	if maxAge <= 0 {
		return "", false, errors.New("keys: rotation age must be positive")
	}
	return m.rotate(ctx, scope, maxAge)
}

// StartRotation rotates the data keys of every active scope in the store whose primary key is `every` old, checking about every
// every/10 (at most hourly, at least every second) with jitter, in a goroutine off the payload path, until ctx ends or stop is called.
// stop waits for a running round to finish.
//
// Several replicas sharing one store may all run it: each round re-checks the primary's age under the store's lock, so a scope is
// rotated once per period, by whichever replica gets there first; the others pick up the new primary at their next cache refresh
// (sealing) or at once (opening: an unknown key id triggers a reload). Replicas with separate stores would each mint their own
// keys; the store must be shared. Rotation needs the KEK (one unwrap and one wrap per rotated scope); when it is down the round
// logs the failure and the old primary keeps sealing.
func (m *Manager) StartRotation(ctx context.Context, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	check := min(max(every/10, time.Second), time.Hour)
	go func() {
		defer close(done)
		for {
			m.rotateRound(ctx, every)
			jitter := time.Duration(rand.Int64N(int64(check)/5 + 1))
			select {
			case <-ctx.Done():
				return
			case <-time.After(check - check/10 + jitter):
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (m *Manager) rotateRound(ctx context.Context, every time.Duration) {
	scopes, err := m.store.Scopes(ctx)
	if err != nil {
		m.log.WarnContext(ctx, "key rotation: list scopes failed", "error", err)
		return
	}
	for _, s := range scopes {
		if ctx.Err() != nil {
			return
		}
		stored, err := m.store.Load(ctx, s)
		if err != nil || stored.Keyset == nil {
			continue // shredded, or unreadable (List reports that)
		}
		if _, _, err := m.rotate(ctx, s, every); err != nil && ctx.Err() == nil {
			m.log.WarnContext(ctx, "key rotation failed; the current primary keeps sealing", "scope", s, "error", err)
		}
	}
}
