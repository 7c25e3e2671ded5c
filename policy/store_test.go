package policy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

const (
	storeV1  = "version: 1\nnamespaces:\n  default: {}\n"
	storeV2  = "version: 1\nnamespaces:\n  default: {encrypt: {search_attributes: [Notes]}}\n"
	storeV3  = "version: 1\nnamespaces:\n  default: {plaintext_from_sdk: reject}\n"
	storeBad = "version: 1\nnamespaces:\n  default: {encrypt: {memo: false}}\n"
)

// writeFile writes and renames, as editors and ConfigMap updates do, so a poll never sees half a file.
func writeFile(t *testing.T, path, content string) { testenv.WriteFileAtomic(t, path, content) }

func TestStoreReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storeV1)
	var changes []*Policy
	s, err := NewStore(path, WithOnChange(func(p *Policy) { changes = append(changes, p) }))
	if err != nil {
		t.Fatal(err)
	}
	first := s.Current()
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("unchanged file: changed=%v err=%v", changed, err)
	}
	writeFile(t, path, storeV2)
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("changed file: changed=%v err=%v", changed, err)
	}
	second := s.Current()
	if r, _ := second.Namespace("default"); !r.EncryptsSearchAttribute("Notes") {
		t.Fatal("new policy not in force")
	}
	// A snapshot taken before the reload is unchanged: in-flight RPCs keep their policy.
	if r, _ := first.Namespace("default"); r.EncryptsSearchAttribute("Notes") {
		t.Fatal("old snapshot changed")
	}
	writeFile(t, path, storeBad)
	if changed, err := s.Reload(); changed || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path+":3:29: namespaces.default.encrypt.memo") {
		t.Fatalf("invalid file: changed=%v err=%v", changed, err)
	}
	if s.Current() != second {
		t.Fatal("invalid file replaced the policy")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil || s.Current() != second {
		t.Fatalf("missing file: %v", err)
	}
	if len(changes) != 1 || changes[0] != second {
		t.Fatalf("onChange calls: %d", len(changes))
	}
	if _, err := NewStore(path); err == nil {
		t.Fatal("NewStore of a missing file succeeded")
	}
	writeFile(t, path, storeBad)
	if _, err := NewStore(path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewStore of an invalid file: %v", err)
	}
}

func TestStoreWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, storeV1)
	var logs testenv.SyncBuffer
	reloaded := make(chan *Policy, 10)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Watch(ctx, path, func(p *Policy) { reloaded <- p },
		WithPollInterval(10*time.Millisecond), WithStoreLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	wait := func(what string) *Policy {
		t.Helper()
		select {
		case p := <-reloaded:
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reload", what)
			return nil
		}
	}
	writeFile(t, path, storeV2)
	if p := wait("file change"); p != s.Current() {
		t.Fatal("reloaded policy is not current")
	}
	// An invalid file is logged and the old policy stays.
	before := s.Current()
	writeFile(t, path, storeBad)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "policy reload rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("invalid file not logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Current() != before {
		t.Fatal("invalid file replaced the policy")
	}
	if !strings.Contains(logs.String(), "namespaces.default.encrypt.memo") {
		t.Errorf("log does not name the field: %s", logs.String())
	}
	// Fixing the file applies it.
	writeFile(t, path, storeV3)
	if r, _ := wait("fixed file").Namespace("default"); r.Plaintext != PlaintextReject {
		t.Fatal("fixed file not applied")
	}
}

func TestStaticStore(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(storeV1))
	if err != nil {
		t.Fatal(err)
	}
	s := StaticStore(p)
	if changed, err := s.Reload(); changed || err != nil || s.Current() != p || s.Path() != "" {
		t.Fatal("static store reloaded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Watch(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}
