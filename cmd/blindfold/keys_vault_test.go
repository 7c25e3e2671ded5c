package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
)

func TestKeysVaultCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vaultdev")
	}
	p := vaultdevproc.Start(t, vaultdevproc.Options{TLSDir: t.TempDir()})
	if !strings.HasPrefix(p.Addr(), "https://") {
		t.Fatalf("vaultdev with TLSDir serves %s, want https", p.Addr())
	}
	// Address and token from the environment, as the Vault CLI takes them; the CA from a flag.
	t.Setenv("VAULT_ADDR", p.Addr())
	t.Setenv("VAULT_TOKEN", p.Token())
	t.Setenv("VAULT_CACERT", "")
	kd := "--key-dir=" + filepath.Join(t.TempDir(), "keys")
	v := []string{"--kek", "vault", "--vault-mount", p.TransitMount(), "--vault-key-prefix", "cli-", "--vault-cacert", p.CACert()}
	steps := []cliStep{
		{"bad kek", "", []string{"list", kd, "--kek", "hsm"}, nil, `--kek "hsm"`},
		{"rewrap local", "", []string{"rewrap", kd}, nil, "kek does not support rewrap"},
		{"init", "", append([]string{"init", kd}, v...), []string{"kek: vault transit, key cli-default at mount transit", "scope default: created"}, ""},
		{"init payments", "", append([]string{"init", "--scope", "payments", kd}, v...), []string{"scope payments: created"}, ""},
		{"rotate dek", "", append([]string{"rotate", "payments", kd}, v...), []string{"new primary key payments/"}, ""},
		{"rotate-kek", "", append([]string{"rotate-kek", "payments", kd}, v...), []string{"transit key cli-payments now at version 2", "keyset rewrapped to version 2"}, ""},
		{"rewrap all", "", append([]string{"rewrap", kd}, v...), []string{"every keyset is already wrapped under its newest key version"}, ""},
		{"rotate-kek no rewrap", "", append([]string{"rotate-kek", "default", "--no-rewrap", kd}, v...), []string{"now at version 2"}, ""},
		{"rewrap one", "", append([]string{"rewrap", "default", "payments", kd}, v...), []string{"scope default: rewrapped", "scope payments: already under the newest key version"}, ""},
		{"list", "", append([]string{"list", kd}, v...), []string{"payments", "active", "default"}, ""},
		{"shred", "", append([]string{"shred", "payments", "--yes", kd}, v...), []string{"scope payments: shredded"}, ""},
		{"list after shred", "", append([]string{"list", kd}, v...), []string{"payments", "shredded"}, ""},
		{"untrusted certificate", "", []string{"list", kd, "--kek", "vault", "--vault-mount", p.TransitMount(), "--vault-key-prefix", "cli-"}, []string{"unreadable", "x509: certificate signed by unknown authority"}, ""},
		{"wrong token", "", append([]string{"list", kd, "--vault-token", "nope"}, v...), nil, "vault auth token"},
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
	}
	// The shred deleted the Transit key in Vault.
	out, _, err := runKeys(t, "", append([]string{"rotate-kek", "payments", kd}, v...)...)
	if err == nil || !strings.Contains(err.Error(), "key not found") {
		t.Fatalf("rotate-kek after shred: %v (out %q), want the Transit key to be gone", err, out)
	}
}
