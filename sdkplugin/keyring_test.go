package sdkplugin_test

import (
	"context"
	"errors"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// mustKeyring opens a fresh local key directory: a generated master key and one keyset per namespace, created on
// first use, exactly as the plugin's users run it.
func mustKeyring(t testing.TB) *keys.Manager {
	t.Helper()
	return openKeyDir(t, t.TempDir())
}

// openKeyDir opens the key directory dir, as a second process sharing it would.
func openKeyDir(t testing.TB, dir string) *keys.Manager {
	t.Helper()
	m, err := keys.OpenLocal(dir)
	if err != nil {
		t.Fatalf("open key directory: %v", err)
	}
	return m
}

// sharedKeyDir returns two managers over one key directory whose "default" scope already exists, standing in for
// two processes (the proxy and an SDK worker) configured with the same keys.
func sharedKeyDir(t testing.TB) (*keys.Manager, *keys.Manager) {
	t.Helper()
	dir := t.TempDir()
	first := openKeyDir(t, dir)
	if _, err := first.SealingKey(context.Background(), codec.Target{Namespace: "default"}); err != nil {
		t.Fatalf("create the default scope: %v", err)
	}
	return first, openKeyDir(t, dir)
}

var errKeyringDown = errors.New("keyring down")

// downKeyring is a keyring whose key store is unreachable.
type downKeyring struct{}

func (downKeyring) SealingKey(context.Context, codec.Target) (codec.Key, error) {
	return codec.Key{}, errKeyringDown
}

func (downKeyring) OpeningKey(context.Context, string, string) (codec.Key, error) {
	return codec.Key{}, errKeyringDown
}
