package gateway

import (
	"context"
	"strings"
	"testing"
)

func TestParseStoreKind(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]StoreKind{"": StoreDir, "dir": StoreDir, "vault-kv": StoreVaultKV} {
		if got, err := ParseStoreKind(in); err != nil || got != want {
			t.Errorf("ParseStoreKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseStoreKind("consul"); err == nil || !strings.Contains(err.Error(), "want dir or vault-kv") {
		t.Errorf("ParseStoreKind(consul) = %v", err)
	}
	if _, err := OpenKeys(context.Background(), KeysConfig{Dir: t.TempDir(), Store: "consul"}, nil); err == nil {
		t.Error("OpenKeys with an unknown store succeeded")
	}
	if w := (KeysConfig{Store: StoreVaultKV}).Where(); w != "vault-kv secret/blindfold/scopes" {
		t.Errorf("Where = %q", w)
	}
}
