package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
)

// The keys commands work on the Vault KV store: nothing is written to the key directory, with the Transit KEK or the local one.
func TestKeysVaultKVStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vaultdev")
	}
	p := vaultdevproc.Start(t, vaultdevproc.Options{})
	t.Setenv("VAULT_ADDR", p.Addr())
	t.Setenv("VAULT_TOKEN", p.Token())
	dir := filepath.Join(t.TempDir(), "keys")
	kd := "--key-dir=" + dir
	kv := []string{"--key-store", "vault-kv", "--vault-kv-mount", p.KVMount(), "--vault-kv-path", "cli/scopes", "--kek", "vault", "--vault-mount", p.TransitMount()}
	steps := []cliStep{
		{"bad store", "", []string{"list", kd, "--key-store", "etcd"}, nil, `--key-store "etcd"`},
		{"bad attempts", "", []string{"list", kd, "--vault-kv-max-attempts", "0"}, nil, "--vault-kv-max-attempts must be positive"},
		{"not kv v2", "", []string{"list", kd, "--key-store", "vault-kv", "--vault-kv-mount", p.TransitMount(), "--kek", "vault"}, nil, "not a kv version 2 mount"},
		{"init", "", append([]string{"init", "--scope", "payments", kd}, kv...), []string{"scope payments: created"}, ""},
		{"rotate", "", append([]string{"rotate", "payments", kd}, kv...), []string{"new primary key payments/"}, ""},
		{"list", "", append([]string{"list", kd}, kv...), []string{"payments", "active"}, ""},
		{"shred", "", append([]string{"shred", "payments", "--yes", kd}, kv...), []string{"scope payments: shredded"}, ""},
		{"list after shred", "", append([]string{"list", kd}, kv...), []string{"payments", "shredded"}, ""},
		{"dir store sees nothing", "", []string{"list", kd, "--kek", "vault", "--vault-mount", p.TransitMount()}, nil, ""},
	}
	for _, st := range steps {
		out, _, err := runKeys(t, st.stdin, st.args...)
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Fatalf("%s: err = %v, want %q (out %q)", st.name, err, st.wantErr, out)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v (out %q)", st.name, err, out)
		}
		for _, w := range st.wantOut {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: output %q lacks %q", st.name, out, w)
			}
		}
		if st.name == "dir store sees nothing" && strings.Contains(out, "payments") {
			t.Fatalf("the directory store lists %q; the keysets went to Vault KV", out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "scopes")); !os.IsNotExist(err) {
		t.Fatalf("key directory has scopes/ (%v); the vault-kv store must not write there", err)
	}

	// Local KEK, Vault KV store: the store logs in with the --vault-* settings alone.
	local := []string{"--key-store", "vault-kv", "--vault-kv-mount", p.KVMount(), "--vault-kv-path", "cli/local"}
	if out, _, err := runKeys(t, "", append([]string{"init", "--scope", "tenant", kd}, local...)...); err != nil || !strings.Contains(out, "scope tenant: created") {
		t.Fatalf("init with a local KEK over vault-kv: %v (out %q)", err, out)
	}
	if out, _, err := runKeys(t, "", append([]string{"list", kd}, local...)...); err != nil || !strings.Contains(out, "tenant") {
		t.Fatalf("list: %v (out %q)", err, out)
	}

	// Moving a key directory into the shared store: the wrapped keysets are copied as they are and still unwrap.
	old := filepath.Join(t.TempDir(), "old")
	for _, s := range []string{"a", "b"} {
		if _, _, err := runKeys(t, "", "init", "--scope", s, "--key-dir", old); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := runKeys(t, "", "shred", "b", "--yes", "--key-dir", old); err != nil {
		t.Fatal(err)
	}
	moved := []string{"--key-dir", old, "--key-store", "vault-kv", "--vault-kv-mount", p.KVMount(), "--vault-kv-path", "cli/moved"}
	out, _, err := runKeys(t, "", append([]string{"import-dir", old}, moved...)...)
	if err != nil || !strings.Contains(out, "scope a: copied to vault-kv secret/cli/moved") || !strings.Contains(out, "scope b: copied") {
		t.Fatalf("import-dir: %v (out %q)", err, out)
	}
	out, _, err = runKeys(t, "", append([]string{"list"}, moved...)...)
	if err != nil || !strings.Contains(out, "active") || !strings.Contains(out, "shredded") || strings.Contains(out, "unreadable") {
		t.Fatalf("list after import-dir: %v (out %q)", err, out)
	}
	if out, _, err = runKeys(t, "", append([]string{"import-dir", old}, moved...)...); err != nil || !strings.Contains(out, "scope a: already in") {
		t.Fatalf("import-dir again: %v (out %q)", err, out)
	}
	if _, _, err := runKeys(t, "", append([]string{"rotate", "a"}, moved...)...); err != nil {
		t.Fatal(err)
	}
	if _, _, err = runKeys(t, "", append([]string{"import-dir", old}, moved...)...); err == nil || !strings.Contains(err.Error(), "already holds a different keyset") {
		t.Fatalf("import-dir over a changed scope = %v", err)
	}
	if _, _, err = runKeys(t, "", "import-dir", old, "--key-dir", old); err == nil || !strings.Contains(err.Error(), "--key-store vault-kv") {
		t.Fatalf("import-dir into a directory store = %v", err)
	}
}
