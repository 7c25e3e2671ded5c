package vaultkv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vaultkv"
)

var ctx = context.Background()

// The package's one vaultdev (in memory), started on first use; each test uses its own folder under the KV mount.
var testVaultState struct {
	mu   sync.Mutex
	proc *vaultdevproc.Proc
}

func testVault(t testing.TB) *vaultdevproc.Proc {
	t.Helper()
	if testing.Short() {
		t.Skip("vault kv tests build and start vaultdev; skipped with -short")
	}
	s := &testVaultState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		p, err := vaultdevproc.Launch(ctx, vaultdevproc.Build(t), vaultdevproc.Options{})
		if err != nil {
			t.Fatalf("start vaultdev: %v", err)
		}
		s.proc = p
	}
	return s.proc
}

func TestMain(m *testing.M) {
	os.Unsetenv(keys.MasterKeyEnv)
	code := m.Run()
	if p := testVaultState.proc; p != nil {
		p.Stop()
	}
	os.Exit(code)
}

func client(t testing.TB, p *vaultdevproc.Proc) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = p.Addr()
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(p.Token())
	return c
}

func uniquePath() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t" + hex.EncodeToString(b) + "/scopes"
}

func newStore(t testing.TB, p *vaultdevproc.Proc, path string, attempts int) *vaultkv.Store {
	t.Helper()
	s, err := vaultkv.New(client(t, p), vaultkv.Config{Mount: p.KVMount(), Path: path, MaxAttempts: attempts})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadUpdateScopes(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	s := newStore(t, p, uniquePath(), 0)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if st, err := s.Load(ctx, "default"); err != nil || st.Keyset != nil || st.Tombstone != nil {
		t.Fatalf("Load of an unwritten scope = %+v, %v", st, err)
	}
	if sc, err := s.Scopes(ctx); err != nil || len(sc) != 0 {
		t.Fatalf("Scopes of an empty store = %v, %v", sc, err)
	}
	for _, scope := range []string{"b", "a"} {
		if err := s.Update(ctx, scope, func(cur keys.Stored) (keys.Stored, error) {
			return keys.Stored{Keyset: []byte("keyset of " + scope + "\x00\xff")}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Load(ctx, "b")
	if err != nil || string(st.Keyset) != "keyset of b\x00\xff" || st.Tombstone != nil {
		t.Fatalf("Load = %q, %q, %v", st.Keyset, st.Tombstone, err)
	}
	if sc, err := s.Scopes(ctx); err != nil || fmt.Sprint(sc) != "[a b]" {
		t.Fatalf("Scopes = %v, %v", sc, err)
	}
	// An unchanged result writes no new version.
	md := func() int {
		m, err := client(t, p).KVv2(p.KVMount()).GetMetadata(ctx, s.Path()+"/a")
		if err != nil {
			t.Fatal(err)
		}
		return m.CurrentVersion
	}
	before := md()
	if err := s.Update(ctx, "a", func(cur keys.Stored) (keys.Stored, error) { return cur, nil }); err != nil {
		t.Fatal(err)
	}
	if after := md(); after != before {
		t.Fatalf("an unchanged update wrote version %d (was %d)", after, before)
	}
	// fn's error is returned as is and writes nothing.
	boom := errors.New("boom")
	if err := s.Update(ctx, "a", func(keys.Stored) (keys.Stored, error) { return keys.Stored{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Update with failing fn = %v", err)
	}
	if _, err := s.Load(ctx, "../x"); !errors.Is(err, keys.ErrInvalidScope) {
		t.Fatalf("Load of an invalid scope = %v", err)
	}
}

// Several stores (own clients, as separate replicas have) increment one counter at once: check-and-set loses no update.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	path := uniquePath()
	const replicas, each = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, replicas*each)
	for r := range replicas {
		s := newStore(t, p, path, 100)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- s.Update(ctx, "counter", func(cur keys.Stored) (keys.Stored, error) {
					n, _ := strconv.Atoi(string(cur.Keyset))
					return keys.Stored{Keyset: []byte(strconv.Itoa(n + 1)), Tombstone: []byte("replica " + strconv.Itoa(r))}, nil
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := newStore(t, p, path, 0).Load(ctx, "counter")
	if err != nil || string(st.Keyset) != strconv.Itoa(replicas*each) {
		t.Fatalf("counter = %q, %v; want %d", st.Keyset, err, replicas*each)
	}
}

func TestConflictIsBounded(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	path := uniquePath()
	s, other := newStore(t, p, path, 3), newStore(t, p, path, 0)
	calls := 0
	err := s.Update(ctx, "hot", func(cur keys.Stored) (keys.Stored, error) {
		calls++
		// Another replica writes between our read and our write, every time.
		if err := other.Update(ctx, "hot", func(c keys.Stored) (keys.Stored, error) {
			return keys.Stored{Keyset: append(c.Keyset, 'x')}, nil
		}); err != nil {
			return keys.Stored{}, err
		}
		return keys.Stored{Keyset: []byte("mine")}, nil
	})
	if !errors.Is(err, vaultkv.ErrConflict) || !errors.Is(err, keys.ErrUnavailable) || calls != 3 {
		t.Fatalf("Update under constant interference = %v after %d calls; want ErrConflict (and ErrUnavailable) after 3", err, calls)
	}
	if st, _ := other.Load(ctx, "hot"); string(st.Keyset) != "xxx" {
		t.Fatalf("stored %q; the losing writer must not have written", st.Keyset)
	}
}

// Removing the keyset (a shred) destroys every earlier version of the secret, which hold the wrapped keyset.
func TestShredDestroysEarlierVersions(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	s := newStore(t, p, uniquePath(), 0)
	for i := range 3 {
		if err := s.Update(ctx, "gone", func(keys.Stored) (keys.Stored, error) {
			return keys.Stored{Keyset: []byte("keyset " + strconv.Itoa(i))}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Update(ctx, "gone", func(keys.Stored) (keys.Stored, error) {
		return keys.Stored{Tombstone: []byte("tombstone")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	kv := client(t, p).KVv2(p.KVMount())
	md, err := kv.GetMetadata(ctx, s.Path()+"/gone")
	if err != nil {
		t.Fatal(err)
	}
	if md.CurrentVersion != 4 {
		t.Fatalf("current version %d, want 4", md.CurrentVersion)
	}
	for v := 1; v <= 3; v++ {
		if !md.Versions[strconv.Itoa(v)].Destroyed {
			t.Errorf("version %d not destroyed: %+v", v, md.Versions[strconv.Itoa(v)])
		}
		if old, err := kv.GetVersion(ctx, s.Path()+"/gone", v); err == nil && old.Data != nil {
			t.Errorf("version %d still readable: %v", v, old.Data)
		}
	}
	st, err := s.Load(ctx, "gone")
	if err != nil || st.Keyset != nil || string(st.Tombstone) != "tombstone" {
		t.Fatalf("Load after shred = %+v, %v", st, err)
	}
	// A record left with nothing is deleted, metadata and all.
	if err := s.Update(ctx, "gone", func(keys.Stored) (keys.Stored, error) { return keys.Stored{}, nil }); err != nil {
		t.Fatal(err)
	}
	if sc, err := s.Scopes(ctx); err != nil || len(sc) != 0 {
		t.Fatalf("Scopes after emptying = %v, %v", sc, err)
	}
}

func TestForeignAndDeletedSecrets(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	s := newStore(t, p, uniquePath(), 0)
	kv := client(t, p).KVv2(p.KVMount())
	if _, err := kv.Put(ctx, s.Path()+"/foreign", map[string]any{"password": "hunter2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "foreign"); !errors.Is(err, vaultkv.ErrBadRecord) {
		t.Fatalf("Load of a foreign secret = %v, want ErrBadRecord", err)
	}
	if err := s.Update(ctx, "foreign", func(keys.Stored) (keys.Stored, error) { return keys.Stored{Keyset: []byte("k")}, nil }); !errors.Is(err, vaultkv.ErrBadRecord) {
		t.Fatalf("Update of a foreign secret = %v, want ErrBadRecord", err)
	}
	// A soft-deleted current version (vault kv delete) reads as empty, and the next write names the right version.
	if err := s.Update(ctx, "soft", func(keys.Stored) (keys.Stored, error) { return keys.Stored{Keyset: []byte("k1")}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, s.Path()+"/soft"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Load(ctx, "soft"); err != nil || st.Keyset != nil {
		t.Fatalf("Load of a deleted version = %+v, %v", st, err)
	}
	if err := s.Update(ctx, "soft", func(keys.Stored) (keys.Stored, error) { return keys.Stored{Keyset: []byte("k2")}, nil }); err != nil {
		t.Fatalf("Update after delete: %v", err)
	}
}

func TestCheckRefusesKVv1AndBadConfig(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	c := client(t, p)
	mount := "v1-" + hex.EncodeToString([]byte(uniquePath()[:5]))
	if err := c.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	s, err := vaultkv.New(c, vaultkv.Config{Mount: mount})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); !errors.Is(err, vaultkv.ErrNotKVv2) {
		t.Fatalf("Check of a kv v1 mount = %v, want ErrNotKVv2", err)
	}
	if err := s.Update(ctx, "x", func(keys.Stored) (keys.Stored, error) { return keys.Stored{Keyset: []byte("k")}, nil }); !errors.Is(err, vaultkv.ErrNotKVv2) {
		t.Fatalf("Update on a kv v1 mount = %v, want ErrNotKVv2", err)
	}
	if err := newStore(t, p, uniquePath(), 0).Check(ctx); err != nil {
		t.Fatalf("Check of the kv v2 mount: %v", err)
	}
	noMount, _ := vaultkv.New(c, vaultkv.Config{Mount: "nothing-here"})
	if err := noMount.Check(ctx); err == nil || !strings.Contains(err.Error(), `mount "nothing-here" does not exist`) {
		t.Fatalf("Check of a missing mount = %v", err)
	}
	for _, cfg := range []vaultkv.Config{{Path: "a/../b"}, {Mount: "x//y"}, {Path: "a/./b"}, {Path: "a?b"}} {
		if _, err := vaultkv.New(c, cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := vaultkv.New(nil, vaultkv.Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
}

// A Vault that does not answer is an error naming the store, not a hang or a panic.
func TestVaultDown(t *testing.T) {
	t.Parallel()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = "http://127.0.0.1:1"
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("x")
	s, err := vaultkv.New(c, vaultkv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "default"); err == nil {
		t.Fatal("Load from an unreachable Vault succeeded")
	}
	m, err := keys.NewManager(s, mustKEK(t), keys.WithAutoCreate(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.SealingKey(ctx, codec.Target{Namespace: "default"}); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("SealingKey with the store down = %v, want ErrUnavailable", err)
	}
}

func mustKEK(t testing.TB) keys.KEK {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	kek, err := keys.NewLocalKEK(k)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// Managers of three replicas over one store: one keyset, one rotation per period whoever tries, a shred reaches all.
func TestManagersShareTheStore(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	path := uniquePath()
	kek := mustKEK(t)
	clk := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var ms []*keys.Manager
	for range 3 {
		m, err := keys.NewManager(newStore(t, p, path, 0), kek, keys.WithClock(clk.Now), keys.WithCacheTTL(time.Hour), keys.WithMinRefreshInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// All three seal at once for a new scope: one keyset is created, the others adopt it.
	ids := make([]string, 3)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID
		}()
	}
	wg.Wait()
	if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("replicas seal with %v; want one key", ids)
	}
	// All three rotate at once with a period the primary has passed: exactly one rotates.
	clk.Advance(2 * time.Hour) // past the period below; the losers of the race re-check the age on the fresh primary
	rotated := make(chan string, 3)
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, ok, err := m.RotateIfOlder(ctx, "default", time.Hour)
			if err != nil {
				t.Error(err)
			}
			if ok {
				rotated <- id
			}
		}()
	}
	wg.Wait()
	close(rotated)
	var got []string
	for id := range rotated {
		got = append(got, id)
	}
	if len(got) != 1 {
		t.Fatalf("%d replicas rotated (%v); want exactly one", len(got), got)
	}
	infos, err := ms[2].List(ctx)
	if err != nil || len(infos) != 1 || len(infos[0].Keys) != 2 || infos[0].Primary != got[0] {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	// The new key opens on the others at once (an unknown id reloads).
	if _, err := ms[1].OpeningKey(ctx, "default", got[0]); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].Shred(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	for i, m := range ms[1:] {
		// Within the cache TTL another replica still holds the keyset; what it loads now is refused.
		if _, err := m.Create(ctx, "default", keys.CreateOptions{}); !errors.Is(err, codec.ErrKeyDestroyed) {
			t.Fatalf("replica %d re-created a shredded scope: %v", i+1, err)
		}
	}
	infos, err = ms[1].List(ctx)
	if err != nil || infos[0].State != "shredded" || len(infos[0].Destroyed) != 2 {
		t.Fatalf("List after shred = %+v, %v", infos, err)
	}
}

// The Vault policy docs/deploy.md and docs/key-store.md give the proxies is enough for everything the store does,
// shred included.
func TestDocumentedPolicySuffices(t *testing.T) {
	t.Parallel()
	p := testVault(t)
	root := client(t, p)
	path := uniquePath()
	m := p.KVMount()
	policy := fmt.Sprintf(`
path "%[1]s/data/%[2]s/*"     { capabilities = ["create", "read", "update"] }
path "%[1]s/metadata/%[2]s"   { capabilities = ["list"] }
path "%[1]s/metadata/%[2]s/*" { capabilities = ["delete"] }
path "%[1]s/destroy/%[2]s/*"  { capabilities = ["update"] }
`, m, path)
	name := "kv-" + strings.ReplaceAll(path, "/", "-")
	if err := root.Sys().PutPolicy(name, policy); err != nil {
		t.Fatal(err)
	}
	tok, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, p)
	c.SetToken(tok.Auth.ClientToken)
	s, err := vaultkv.New(c, vaultkv.Config{Mount: m, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check with the documented policy: %v", err)
	}
	km, err := keys.NewManager(s, mustKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := km.Create(ctx, "payments", keys.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Rotate(ctx, "payments"); err != nil {
		t.Fatal(err)
	}
	if infos, err := km.List(ctx); err != nil || len(infos) != 1 || infos[0].State != "active" {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	if err := km.Shred(ctx, "payments"); err != nil {
		t.Fatalf("Shred with the documented policy: %v", err)
	}
	if err := s.Update(ctx, "payments", func(keys.Stored) (keys.Stored, error) { return keys.Stored{}, nil }); err != nil {
		t.Fatalf("delete with the documented policy: %v", err)
	}
	// A token without rights on the folder is told so at Check.
	other := client(t, p)
	tok2, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	other.SetToken(tok2.Auth.ClientToken)
	s2, _ := vaultkv.New(other, vaultkv.Config{Mount: m, Path: path})
	if err := s2.Check(ctx); err == nil || !strings.Contains(err.Error(), "may not use it") {
		t.Fatalf("Check without rights = %v", err)
	}
}
