package keys_test

import (
	"errors"
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// FuzzParseKeyID: key ids come from untrusted envelopes. Parsing must never panic, must reject with ErrUnknownKey, and must round-trip what it accepts.
func FuzzParseKeyID(f *testing.F) {
	for _, s := range []string{"default/1a2b3c4d", "a/00000000", "/", "", "x/ffffffff", "../a/12345678", ".a/12345678", "a/1A2B3C4D", "a//12345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		scope, n, err := keys.ParseKeyID(id)
		if err != nil {
			if !errors.Is(err, codec.ErrUnknownKey) {
				t.Fatalf("ParseKeyID(%q): %v does not wrap ErrUnknownKey", id, err)
			}
			return
		}
		if keys.ValidateScope(scope) != nil || keys.KeyID(scope, n) != id {
			t.Fatalf("ParseKeyID(%q) accepted %q %x", id, scope, n)
		}
	})
}

// FuzzOpeningKeyID feeds arbitrary ids to a live Manager: the answer is a key or an ErrUnknownKey/ErrKeyDestroyed error, never a panic.
func FuzzOpeningKeyID(f *testing.F) {
	m, err := keys.OpenLocal(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(k.ID)
	f.Add("default/00000000")
	f.Add("other/12345678")
	f.Fuzz(func(t *testing.T, id string) {
		_, err := m.OpeningKey(ctx, "default", id)
		if err != nil && !errors.Is(err, codec.ErrUnknownKey) && !errors.Is(err, codec.ErrKeyDestroyed) {
			t.Fatalf("OpeningKey(%q): %v", id, err)
		}
	})
}
