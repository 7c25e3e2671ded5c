package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
)

// runKeys executes a fresh "keys" command tree in-process.
func runKeys(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newKeysCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestKeysCommands(t *testing.T) {
	// Setenv restores the developer's value afterwards; the key must come from the directory here.
	t.Setenv(keys.MasterKeyEnv, "")
	os.Unsetenv(keys.MasterKeyEnv)
	dir := filepath.Join(t.TempDir(), "keys")
	kd := "--key-dir=" + dir

	steps := []cliStep{
		{"rotate before init", "", []string{"rotate", "default", kd}, nil, "no master key"},
		{"list before init", "", []string{"list", kd}, nil, "no master key"},
		{"init", "", []string{"init", kd}, []string{"master key: created", "scope default: created, primary key default/"}, ""},
		{"init again", "", []string{"init", kd}, []string{"scope default: already initialised"}, ""},
		{"init other scope", "", []string{"init", "--scope", "tenant-42", kd}, []string{"scope tenant-42: created"}, ""},
		{"init bad scope", "", []string{"init", "--scope", "../x", kd}, nil, "invalid scope name"},
		{"rotate", "", []string{"rotate", "default", kd}, []string{"scope default: new primary key default/"}, ""},
		{"rotate missing", "", []string{"rotate", "nope", kd}, nil, "scope has no keyset"},
		{"rotate no arg", "", []string{"rotate", kd}, nil, "accepts 1 arg"},
		{"list", "", []string{"list", kd}, []string{"SCOPE", "STATE", "default", "tenant-42/", "active", "yes"}, ""},
		{"shred without answer", "", []string{"shred", "tenant-42", kd}, nil, "no answer on standard input"},
		{"shred wrong answer", "default\n", []string{"shred", "tenant-42", kd}, nil, `typed "default", want "tenant-42"`},
		{"shred confirmed", "tenant-42\n", []string{"shred", "tenant-42", kd}, []string{"scope tenant-42: shredded"}, ""},
		{"list after shred", "", []string{"list", kd}, []string{"tenant-42", "shredded", "1 keys destroyed"}, ""},
		{"rotate shredded", "", []string{"rotate", "tenant-42", kd}, nil, "key destroyed"},
		{"init shredded", "", []string{"init", "--scope", "tenant-42", kd}, nil, "allow-after-shred"},
		{"init after shred", "", []string{"init", "--scope", "tenant-42", "--allow-after-shred", kd}, []string{"scope tenant-42: created"}, ""},
		{"shred --yes", "", []string{"shred", "tenant-42", "--yes", kd}, []string{"shredded"}, ""},
		{"shred missing", "", []string{"shred", "nope", "--yes", kd}, nil, "scope has no keyset"},
		{"shred bad scope", "", []string{"shred", ".x", "--yes", kd}, nil, "invalid scope name"},
	}
	for _, s := range steps {
		out, _, err := runKeys(t, s.stdin, s.args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: err %v, want %q", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, w := range s.wantOut {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: output %q lacks %q", s.name, out, w)
			}
		}
	}
	st, err := os.Stat(filepath.Join(dir, keys.MasterKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key mode: %v %v", st.Mode(), err)
	}
}

func TestKeysHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"init", "--help"}, {"rotate", "--help"}, {"list", "--help"}, {"shred", "--help"}} {
		out, _, err := runKeys(t, "", args...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--key-dir") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

func TestKeysRegistered(t *testing.T) {
	c, _, err := rootCmd.Find([]string{"keys", "shred"})
	if err != nil || c.Name() != "shred" {
		t.Fatalf("keys shred not registered: %v", err)
	}
}
