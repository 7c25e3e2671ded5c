package keys_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
)

// newClock is a manual clock for cache tests.
func newClock() *testenv.Clock { return testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

var errKEKDown = errors.New("kek unavailable (test fault)")

// faultyKEK wraps the real local KEK and fails every call while down is set: the one fake, for injecting a fault.
type faultyKEK struct {
	keys.KEK
	down atomic.Bool
}

func (f *faultyKEK) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errKEKDown
	}
	return f.KEK.EncryptWithContext(ctx, pt, ad)
}

func (f *faultyKEK) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errKEKDown
	}
	return f.KEK.DecryptWithContext(ctx, ct, ad)
}

// newManager returns a manager on a fresh key directory, with a manual clock and a KEK that can be taken down.
func newManager(t *testing.T, opts ...keys.Option) (*keys.Manager, string, *testenv.Clock, *faultyKEK) {
	t.Helper()
	dir := t.TempDir()
	return newManagerIn(t, dir, opts...)
}

func newManagerIn(t *testing.T, dir string, opts ...keys.Option) (*keys.Manager, string, *testenv.Clock, *faultyKEK) {
	t.Helper()
	kek, err := keys.LoadMasterKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	c := newClock()
	f := &faultyKEK{KEK: kek}
	m, err := keys.NewManager(keys.NewDirStore(dir), f, append([]keys.Option{keys.WithClock(c.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m, dir, c, f
}

func mustSeal(t *testing.T, m *keys.Manager, ns string) (id string, ct []byte) {
	t.Helper()
	k, err := m.SealingKey(context.Background(), codec.Target{Namespace: ns})
	if err != nil {
		t.Fatalf("SealingKey(%q): %v", ns, err)
	}
	ct, err = k.AEAD.Encrypt([]byte("payload of "+ns), []byte(k.ID))
	if err != nil {
		t.Fatal(err)
	}
	return k.ID, ct
}

func mustOpen(t *testing.T, m *keys.Manager, ns, id string, ct []byte) {
	t.Helper()
	k, err := m.OpeningKey(context.Background(), ns, id)
	if err != nil {
		t.Fatalf("OpeningKey(%q): %v", id, err)
	}
	pt, err := k.AEAD.Decrypt(ct, []byte(id))
	if err != nil || string(pt) != "payload of "+ns {
		t.Fatalf("decrypt with %s: %q, %v", id, pt, err)
	}
}

func TestMain(m *testing.M) {
	// The developer's own key settings must not leak into the tests.
	os.Unsetenv(keys.MasterKeyEnv)
	os.Unsetenv(keys.KeyDirEnv)
	os.Exit(m.Run())
}
