package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/kekplugin"
)

// TestKeysPluginCommands runs the keys commands with --kek plugin against a plugin served in-process (the example
// plugin as a real process is tested in keys/kekplugin).
func TestKeysPluginCommands(t *testing.T) {
	sd, err := os.MkdirTemp("", "clikek")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sd) })
	sock := filepath.Join(sd, "kek.sock")
	lis, err := kekplugin.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := keys.NewLocalKEK(make([]byte, 32))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- kekplugin.Serve(ctx, lis, kekplugin.FromKEK(master)) }()
	t.Cleanup(func() { cancel(); <-served })

	dir := filepath.Join(t.TempDir(), "keys")
	kd := "--key-dir=" + dir
	p := []string{"--kek", "plugin", "--kek-plugin-address", "unix://" + sock}
	steps := []cliStep{
		{"no address", "", []string{"list", kd, "--kek", "plugin"}, nil, "--kek plugin needs --kek-plugin-address"},
		{"init", "", append([]string{"init", kd}, p...), []string{"kek: plugin at unix://" + sock, "scope default: created"}, ""},
		{"rotate", "", append([]string{"rotate", "default", kd}, p...), []string{"new primary key default/"}, ""},
		{"list", "", append([]string{"list", kd}, p...), []string{"default", "active"}, ""},
		{"rewrap is vault-only", "", append([]string{"rewrap", kd}, p...), nil, "rewrap needs --kek vault"},
		{"init payments", "", append([]string{"init", "--scope", "payments", kd}, p...), []string{"scope payments: created"}, ""},
		{"shred", "", append([]string{"shred", "payments", "--yes", kd}, p...), []string{"scope payments: shredded"}, ""},
		{"list after shred", "", append([]string{"list", kd}, p...), []string{"payments", "shredded", "default", "active"}, ""},
		{"plugin not running", "", []string{"list", kd, "--kek", "plugin", "--kek-plugin-address", filepath.Join(sd, "absent.sock"), "--kek-plugin-timeout", "200ms"}, nil, filepath.Join(sd, "absent.sock")},
		{"remote without tls", "", []string{"list", kd, "--kek", "plugin", "--kek-plugin-address", "kek.example:7070"}, nil, "needs TLS"},
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
	if _, err := os.Stat(filepath.Join(dir, keys.MasterKeyFile)); !os.IsNotExist(err) {
		t.Errorf("keys init --kek plugin created a master key: %v", err)
	}
	// The --help text documents the plugin.
	out, _, _ := runKeys(t, "", "--help")
	for _, w := range []string{"--kek-plugin-address", "docs/kek-plugin.md", "local, vault, awskms, pkcs11 or plugin"} {
		if !strings.Contains(out, w) {
			t.Errorf("keys --help lacks %q", w)
		}
	}
}
