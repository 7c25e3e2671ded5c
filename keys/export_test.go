package keys

import "time"

// WithClock replaces the Manager's clock in tests.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }
