package keys_test

import (
	"errors"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

func TestRotateIfOlder(t *testing.T) {
	t.Parallel()
	m, dir, clk, _ := newManager(t)
	first, err := m.Create(ctx, "default", keys.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A second process sharing the store, with the same clock.
	other, err := keys.NewManager(keys.NewDirStore(dir), mustLocalKEK(t, dir), keys.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		advance     time.Duration
		who         *keys.Manager
		wantRotated bool
	}{
		{time.Hour, m, false},         // primary 1h old, period 24h
		{24 * time.Hour, m, true},     // 25h old: rotate
		{time.Minute, other, false},   // the other replica sees the fresh primary under the lock
		{24 * time.Hour, other, true}, // next period, whoever comes first
		{time.Second, m, false},
	}
	prev := first
	for i, tc := range tests {
		clk.Advance(tc.advance)
		id, rotated, err := tc.who.RotateIfOlder(ctx, "default", 24*time.Hour)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if rotated != tc.wantRotated || (rotated == (id == prev)) {
			t.Fatalf("step %d: RotateIfOlder = %s, %v; want rotated %v (previous primary %s)", i, id, rotated, tc.wantRotated, prev)
		}
		prev = id
	}
	if _, _, err := m.RotateIfOlder(ctx, "default", 0); err == nil {
		t.Fatal("RotateIfOlder with a zero period succeeded")
	}
}

func mustLocalKEK(t *testing.T, dir string) keys.KEK {
	t.Helper()
	k, err := keys.LoadMasterKey(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStartRotation(t *testing.T) {
	t.Parallel()
	m, _, clk, _ := newManager(t)
	first, err := m.Create(ctx, "default", keys.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "gone", keys.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Shred(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	stop := m.StartRotation(ctx, 2*time.Second) // checks about every second of real time
	defer stop()
	clk.Advance(3 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		if k.ID != first {
			break // rotated in the background; the local change was evicted, so sealing uses it at once
		}
		if time.Now().After(deadline) {
			t.Fatal("StartRotation did not rotate a primary older than its period within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	infos, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Scope == "gone" && in.State != "shredded" {
			t.Fatalf("rotation touched shredded scope: %+v", in)
		}
	}
}

// A replica that has just refreshed its cache by age still opens a key another replica minted right after: the unknown id
// reloads at once. (Only reloads for unknown ids rate-limit each other; an age refresh must not, or every rotation by a
// replica sharing the store would fail payloads on the others for up to MinRefreshInterval.)
func TestUnknownIDAfterAgeRefresh(t *testing.T) {
	t.Parallel()
	m, dir, clk, _ := newManager(t, keys.WithCacheTTL(time.Minute), keys.WithRefreshAfter(10*time.Second))
	mustSeal(t, m, "default")
	other, err := keys.NewManager(keys.NewDirStore(dir), mustLocalKEK(t, dir), keys.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Second)
	mustSeal(t, m, "default") // an age refresh: the rate limiter's clock starts now
	newID, err := other.Rotate(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	_, ct := mustSeal(t, other, "default")
	mustOpen(t, m, "default", newID, ct)
	// Reloads for unknown ids stay limited among themselves.
	s0 := m.Stats()
	for range 20 {
		if _, err := m.OpeningKey(ctx, "default", "default/00000001"); !errors.Is(err, codec.ErrUnknownKey) {
			t.Fatalf("forged id: %v", err)
		}
	}
	if n := m.Stats().KeyFileReads - s0.KeyFileReads; n > 1 {
		t.Fatalf("20 forged ids caused %d reloads, want at most 1", n)
	}
}
