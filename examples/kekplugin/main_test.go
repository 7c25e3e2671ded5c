package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.key")
	if err := run([]string{"-new-key", path}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-new-key", path}, &bytes.Buffer{}); err == nil {
		t.Fatal("-new-key overwrote an existing key")
	}
	if _, err := loadKey(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key file: %v, want a refusal", err)
	}
	t.Setenv(keyEnv, "c2hvcnQ=")
	if _, err := loadKey(""); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
}

func TestBackendBindsScope(t *testing.T) {
	ctx := context.Background()
	b := &backend{key: make([]byte, 32)}
	adA, adB := keys.KeysetAD("a", nil), keys.KeysetAD("b", nil)
	ct, err := b.Wrap(ctx, "a", []byte("keyset"), adA)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := b.Unwrap(ctx, "a", ct, adA); err != nil || string(pt) != "keyset" {
		t.Fatalf("unwrap = %q, %v", pt, err)
	}
	for name, f := range map[string]func() error{
		"other scope": func() error { _, err := b.Unwrap(ctx, "b", ct, adB); return err },
		"other ad":    func() error { _, err := b.Unwrap(ctx, "a", ct, adB); return err },
		"truncated":   func() error { _, err := b.Unwrap(ctx, "a", ct[:10], adA); return err },
	} {
		if err := f(); !errors.Is(err, kekplugin.ErrRejected) {
			t.Errorf("%s: %v, want ErrRejected", name, err)
		}
	}
}
