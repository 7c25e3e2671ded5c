package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
)

// hangingKEK wraps the real local KEK and, while hang is open, blocks every call until its context ends or release is closed:
// a KEK behind a black-holed network.
type hangingKEK struct {
	keys.KEK
	hang    chan struct{} // closed: calls hang
	release chan struct{} // closed: hanging calls fail
}

var errHung = errors.New("kek call abandoned (test fault)")

func (h *hangingKEK) wait(ctx context.Context) error {
	select {
	case <-h.hang:
	default:
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-h.release:
		return errHung
	}
}

func (h *hangingKEK) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.KEK.DecryptWithContext(ctx, ct, ad)
}

func TestBackgroundRefresh(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	local, err := keys.LoadMasterKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	kek := &hangingKEK{KEK: local, hang: make(chan struct{}), release: make(chan struct{})}
	clk := newClock()
	m, err := keys.NewManager(keys.NewDirStore(dir), kek, keys.WithClock(clk.Now), keys.WithCacheTTL(10*time.Minute), keys.WithBackgroundRefresh(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	first, ct := mustSeal(t, m, "default")

	// The KEK hangs and the keyset is due for a refresh: requests (with no deadline at all) are answered from the cache at once;
	// with a synchronous refresh this call would never return.
	close(kek.hang)
	clk.Advance(6 * time.Minute)
	for range 20 {
		mustOpen(t, m, "default", first, ct)
		if id, _ := mustSeal(t, m, "default"); id != first {
			t.Fatalf("sealing with %s, want %s", id, first)
		}
	}
	waitFor(t, func() bool { return m.Stats().Refreshes >= 1 }, "the background refresh to start")
	if s := m.Stats(); s.Refreshes != 1 {
		t.Fatalf("%d refreshes started, want 1 (rate-limited, one in flight)", s.Refreshes)
	}
	close(kek.release)
	waitFor(t, func() bool { return m.Stats().RefreshFailures == 1 }, "the hung refresh to fail")

	// The KEK works again; a rotation by another process reaches this one through a background refresh.
	kek.hang = make(chan struct{})
	admin, err := keys.NewManager(keys.NewDirStore(dir), local)
	if err != nil {
		t.Fatal(err)
	}
	next, err := admin.Rotate(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second) // past MinRefreshInterval
	waitFor(t, func() bool { id, _ := mustSeal(t, m, "default"); return id == next }, "the background refresh to pick up the rotation")

	// Past the TTL the load is synchronous again: fail closed rather than serve an expired keyset.
	close(kek.hang)
	clk.Advance(11 * time.Minute)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := m.SealingKey(cctx, codec.Target{Namespace: "default"}); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("SealingKey past the TTL with the KEK hanging = %v, want ErrUnavailable", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	testenv.WaitFor(t, 10*time.Second, what, cond)
}
