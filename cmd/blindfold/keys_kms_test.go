package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/kmsdevproc"
)

// TestKeysAWSKMSCommands runs "blindfold keys" with --kek awskms against local-kms, credentials from the environment
// as the AWS default chain takes them.
func TestKeysAWSKMSCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kmsdev")
	}
	p := kmsdevproc.Start(t, kmsdevproc.Options{})
	key, err := p.CreateKey(context.Background(), "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "kmsdev")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "kmsdev-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	kd := "--key-dir=" + filepath.Join(t.TempDir(), "keys")
	a := []string{"--kek", "awskms", "--aws-kms-key-id", key, "--aws-kms-endpoint", p.Endpoint()}
	steps := []cliStep{
		{"no key id", "", []string{"list", kd, "--kek", "awskms"}, nil, "--kek awskms needs --aws-kms-key-id"},
		{"pkcs11 without module", "", []string{"list", kd, "--kek", "pkcs11"}, nil, "--kek pkcs11 needs --pkcs11-module"},
		{"init", "", append([]string{"init", kd}, a...), []string{"kek: aws kms key " + key, "scope default: created"}, ""},
		{"init payments", "", append([]string{"init", "--scope", "payments", kd}, a...), []string{"scope payments: created"}, ""},
		{"rotate", "", append([]string{"rotate", "payments", kd}, a...), []string{"new primary key payments/"}, ""},
		{"list", "", append([]string{"list", kd}, a...), []string{"payments", "active", "default"}, ""},
		{"rewrap", "", append([]string{"rewrap", kd}, a...), []string{"scope default: rewrapped", "scope payments: rewrapped"}, ""},
		{"list with another key", "", []string{"list", kd, "--kek", "awskms", "--aws-kms-endpoint", p.Endpoint(), "--aws-kms-key-id", strings.Replace(key, key[strings.LastIndex(key, "/")+1:], "00000000-0000-0000-0000-000000000000", 1)}, []string{"unreadable"}, ""},
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
}
