package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

var ctx = context.Background()

func TestNewManagerOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kek, _ := keys.LoadMasterKey(dir, true)
	store := keys.NewDirStore(dir)
	for name, tc := range map[string]struct {
		store keys.Store
		kek   keys.KEK
		opts  []keys.Option
	}{
		"nil store":    {nil, kek, nil},
		"nil kek":      {store, nil, nil},
		"zero ttl":     {store, kek, []keys.Option{keys.WithCacheTTL(0)}},
		"zero size":    {store, kek, []keys.Option{keys.WithCacheSize(0)}},
		"neg interval": {store, kek, []keys.Option{keys.WithMinRefreshInterval(-time.Second)}},
		"nil template": {store, kek, []keys.Option{keys.WithKeyTemplate(nil)}},
	} {
		if _, err := keys.NewManager(tc.store, tc.kek, tc.opts...); err == nil {
			t.Errorf("%s: NewManager succeeded", name)
		}
	}
}

func TestSealOpenAndRotate(t *testing.T) {
	t.Parallel()
	m, dir, _, _ := newManager(t)
	id1, ct1 := mustSeal(t, m, "default")
	if scope, _, err := keys.ParseKeyID(id1); err != nil || scope != "default" {
		t.Fatalf("sealing key id %q: %v", id1, err)
	}
	id2, err := m.Rotate(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	sid, ct2 := mustSeal(t, m, "default")
	if sid != id2 || id2 == id1 {
		t.Fatalf("after rotation sealing key %s, rotated to %s, old %s", sid, id2, id1)
	}
	id3, _ := m.Rotate(ctx, "default")
	_, ct3 := mustSeal(t, m, "default")
	// Every generation stays readable, also by a fresh process.
	other, _, _, _ := newManagerIn(t, dir)
	for _, mm := range []*keys.Manager{m, other} {
		mustOpen(t, mm, "default", id1, ct1)
		mustOpen(t, mm, "default", id2, ct2)
		mustOpen(t, mm, "default", id3, ct3)
	}
	infos, err := m.List(ctx)
	if err != nil || len(infos) != 1 {
		t.Fatalf("List: %+v %v", infos, err)
	}
	in := infos[0]
	if in.Scope != "default" || in.State != "active" || in.Primary != id3 || len(in.Keys) != 3 || in.Keys[0].ID != id1 || !in.Keys[2].Primary || in.Keys[0].Created.IsZero() {
		t.Fatalf("List = %+v", in)
	}
}

func TestScopesAreSeparate(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t)
	idA, ctA := mustSeal(t, m, "a")
	idB, _ := mustSeal(t, m, "b")
	if idA == idB {
		t.Fatal("two scopes share a key id")
	}
	kB, err := m.OpeningKey(ctx, "b", idB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kB.AEAD.Decrypt(ctA, []byte(idA)); err == nil {
		t.Fatal("scope b's keyset opened scope a's ciphertext")
	}
	// A namespace that is no valid file name gets its own hashed scope.
	id, _ := mustSeal(t, m, "weird ns/x")
	if scope, _, _ := keys.ParseKeyID(id); scope != keys.ScopeForNamespace("weird ns/x") {
		t.Fatalf("key id %s not in the hashed scope", id)
	}
}

func TestLookupErrors(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t, keys.WithAutoCreate(false))
	if _, err := m.Create(ctx, "exists", keys.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"seal without keyset, no auto-create", func() error { _, err := m.SealingKey(ctx, codec.Target{Namespace: "missing"}); return err }, keys.ErrScopeNotFound},
		{"seal with invalid scope", func() error {
			_, err := m.SealingKey(ctx, codec.Target{Namespace: "default", Scope: "../x"})
			return err
		}, keys.ErrInvalidScope},
		{"open malformed id", func() error { _, err := m.OpeningKey(ctx, "exists", "exists"); return err }, codec.ErrUnknownKey},
		{"open id of missing scope", func() error { _, err := m.OpeningKey(ctx, "missing", "missing/00000001"); return err }, codec.ErrUnknownKey},
		{"open unknown id of existing scope", func() error { _, err := m.OpeningKey(ctx, "exists", "exists/00000001"); return err }, codec.ErrUnknownKey},
		{"create twice", func() error { _, err := m.Create(ctx, "exists", keys.CreateOptions{}); return err }, keys.ErrScopeExists},
		{"create invalid", func() error { _, err := m.Create(ctx, "a/b", keys.CreateOptions{}); return err }, keys.ErrInvalidScope},
		{"rotate missing", func() error { _, err := m.Rotate(ctx, "missing"); return err }, keys.ErrScopeNotFound},
		{"rotate invalid", func() error { _, err := m.Rotate(ctx, ".x"); return err }, keys.ErrInvalidScope},
		{"shred missing", func() error { return m.Shred(ctx, "missing") }, keys.ErrScopeNotFound},
		{"shred invalid", func() error { return m.Shred(ctx, "") }, keys.ErrInvalidScope},
	} {
		if err := tc.do(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestStoredKeysetErrors damages the stored keyset in every way we know and checks that it fails closed with ErrUnwrap.
func TestStoredKeysetErrors(t *testing.T) {
	t.Parallel()
	edit := func(f func(doc map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			path := filepath.Join(dir, "scopes", "victim.keyset")
			b, _ := os.ReadFile(path)
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			f(doc)
			b, _ = json.Marshal(doc)
			os.WriteFile(path, b, 0o600)
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"wrong master key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, keys.MasterKeyFile))
			keys.LoadMasterKey(dir, true)
		}},
		{"flipped ciphertext byte", edit(func(doc map[string]any) {
			b := []byte(doc["keyset"].(string))
			b[40] ^= 1
			if b[40] == '=' || b[40] == '/' || b[40] == '+' {
				b[40] = 'A'
			}
			doc["keyset"] = string(b)
		})},
		{"created time changed", edit(func(doc map[string]any) {
			for k := range doc["created"].(map[string]any) {
				doc["created"].(map[string]any)[k] = "2000-01-01T00:00:00Z"
			}
		})},
		{"key id added to metadata", edit(func(doc map[string]any) { doc["created"].(map[string]any)["00000001"] = "2000-01-01T00:00:00Z" })},
		{"moved from another scope", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "scopes", "other.keyset"))
			os.WriteFile(filepath.Join(dir, "scopes", "victim.keyset"), b, 0o600)
		}},
		{"moved and relabelled", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "scopes", "other.keyset"))
			b = bytes.Replace(b, []byte(`"scope": "other"`), []byte(`"scope": "victim"`), 1)
			os.WriteFile(filepath.Join(dir, "scopes", "victim.keyset"), b, 0o600)
		}},
		{"unknown format", edit(func(doc map[string]any) { doc["format"] = "blindfold-keyset/v9" })},
		{"not json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "scopes", "victim.keyset"), []byte("\x00garbage"), 0o600)
		}},
		{"truncated", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "scopes", "victim.keyset")
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:len(b)/2], 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir, _, _ := newManager(t)
			id, _ := mustSeal(t, m, "victim")
			mustSeal(t, m, "other")
			tc.damage(t, dir)
			fresh, _, _, _ := newManagerIn(t, dir)
			_, err := fresh.OpeningKey(ctx, "victim", id)
			if !errors.Is(err, keys.ErrUnwrap) || !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("OpeningKey: %v, want ErrUnwrap and ErrUnavailable", err)
			}
			if _, err := fresh.SealingKey(ctx, codec.Target{Namespace: "victim"}); !errors.Is(err, keys.ErrUnwrap) {
				t.Fatalf("SealingKey: %v, want ErrUnwrap", err)
			}
			if _, err := fresh.Rotate(ctx, "victim"); !errors.Is(err, keys.ErrUnwrap) {
				t.Fatalf("Rotate: %v, want ErrUnwrap", err)
			}
			infos, err := fresh.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range infos {
				if in.Scope == "victim" && (in.State != "unreadable" || !errors.Is(in.Err, keys.ErrUnwrap)) {
					t.Fatalf("List: %+v", in)
				}
			}
			// A damaged keyset can still be shredded.
			if err := fresh.Shred(ctx, "victim"); err != nil {
				t.Fatalf("Shred of a damaged keyset: %v", err)
			}
			if _, err := fresh.OpeningKey(ctx, "victim", id); !errors.Is(err, codec.ErrKeyDestroyed) {
				t.Fatalf("after shred: %v", err)
			}
		})
	}
}

func TestSteadyStateDoesNoKeyWork(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t)
	id, ct := mustSeal(t, m, "default")
	mustOpen(t, m, "default", id, ct)
	before := m.Stats()
	for range 1000 {
		if _, err := m.SealingKey(ctx, codec.Target{Namespace: "default"}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.OpeningKey(ctx, "default", id); err != nil {
			t.Fatal(err)
		}
	}
	after := m.Stats()
	if after.KEKCalls != before.KEKCalls || after.KeyFileReads != before.KeyFileReads || after.CacheMisses != before.CacheMisses {
		t.Fatalf("steady state did key work: before %+v after %+v", before, after)
	}
	if after.CacheHits-before.CacheHits != 2000 {
		t.Fatalf("cache hits %d, want 2000", after.CacheHits-before.CacheHits)
	}
}

func TestCacheTTLAndRefresh(t *testing.T) {
	t.Parallel()
	m, _, clk, _ := newManager(t, keys.WithCacheTTL(10*time.Minute))
	mustSeal(t, m, "default")
	s0 := m.Stats()
	clk.Advance(4 * time.Minute) // younger than RefreshAfter (TTL/2): no reload
	mustSeal(t, m, "default")
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads {
		t.Fatalf("reloaded before RefreshAfter: %+v", s)
	}
	clk.Advance(2 * time.Minute) // past RefreshAfter: one reload
	mustSeal(t, m, "default")
	mustSeal(t, m, "default")
	s1 := m.Stats()
	if s1.KeyFileReads != s0.KeyFileReads+1 || s1.Refreshes != s0.Refreshes+1 {
		t.Fatalf("after RefreshAfter: %+v, before %+v", s1, s0)
	}
	clk.Advance(11 * time.Minute) // past TTL: a miss and a reload
	mustSeal(t, m, "default")
	s2 := m.Stats()
	if s2.KeyFileReads != s1.KeyFileReads+1 || s2.CacheMisses != s1.CacheMisses+1 {
		t.Fatalf("after TTL: %+v, before %+v", s2, s1)
	}
}

func TestCacheSizeBound(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t, keys.WithCacheSize(2))
	ids := map[string]string{}
	for _, ns := range []string{"a", "b", "c"} {
		ids[ns], _ = mustSeal(t, m, ns)
	}
	if n := m.Stats().CachedScopes; n != 2 {
		t.Fatalf("cached scopes %d, want 2", n)
	}
	// "a" was least recently used and is gone; "c" is cached.
	s0 := m.Stats()
	m.OpeningKey(ctx, "c", ids["c"])
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads {
		t.Fatal("most recent scope was evicted")
	}
	m.OpeningKey(ctx, "a", ids["a"])
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads+1 || s.CachedScopes != 2 {
		t.Fatalf("evicted scope not reloaded once: %+v", s)
	}
}

// TestCacheLRUWithLockFreeLookups checks that lookups answered without the lock (fresh keysets) still keep a scope in
// use from being evicted: such a lookup moves its entry to the front once lruTouch has passed since the last move.
func TestCacheLRUWithLockFreeLookups(t *testing.T) {
	t.Parallel()
	m, _, clk, _ := newManager(t, keys.WithCacheSize(2))
	ids := map[string]string{}
	for _, ns := range []string{"a", "b"} {
		ids[ns], _ = mustSeal(t, m, ns)
	}
	// Many lookups of "a" within lruTouch of its last move need not move it; one after does.
	for range 100 {
		mustSeal(t, m, "a")
	}
	clk.Advance(2 * time.Second)
	mustSeal(t, m, "a")
	ids["c"], _ = mustSeal(t, m, "c") // evicts the least recently used: "b"
	s0 := m.Stats()
	for _, ns := range []string{"a", "c"} {
		if _, err := m.OpeningKey(ctx, ns, ids[ns]); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads || s.CacheHits != s0.CacheHits+2 {
		t.Fatalf("a scope in use was evicted: %+v, before %+v", s, s0)
	}
	if _, err := m.OpeningKey(ctx, "b", ids["b"]); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.KeyFileReads != s0.KeyFileReads+1 {
		t.Fatalf("the least recently used scope was not the one evicted: %+v", s)
	}
}

func TestRotationByAnotherProcess(t *testing.T) {
	t.Parallel()
	m, dir, clk, _ := newManager(t)
	mustSeal(t, m, "default")
	admin, _, _, _ := newManagerIn(t, dir)
	newID, err := admin.Rotate(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	_, ct := mustSeal(t, admin, "default")
	// An id missing from the cached keyset triggers one refresh.
	mustOpen(t, m, "default", newID, ct)
	// Unknown ids refresh at most once per MinRefreshInterval.
	s0 := m.Stats()
	for range 50 {
		if _, err := m.OpeningKey(ctx, "default", "default/00000001"); !errors.Is(err, codec.ErrUnknownKey) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	s1 := m.Stats()
	if s1.KeyFileReads-s0.KeyFileReads > 1 {
		t.Fatalf("unknown ids caused %d reloads, want at most 1", s1.KeyFileReads-s0.KeyFileReads)
	}
	clk.Advance(time.Second)
	m.OpeningKey(ctx, "default", "default/00000001")
	if s := m.Stats(); s.KeyFileReads != s1.KeyFileReads+1 {
		t.Fatalf("no refresh after the interval: %+v", s)
	}
	// The sealing key follows at the next refresh.
	clk.Advance(6 * time.Minute)
	if id, _ := mustSeal(t, m, "default"); id != newID {
		t.Fatalf("sealing with %s after refresh, want %s", id, newID)
	}
}

func TestKEKOutage(t *testing.T) {
	t.Parallel()
	m, _, clk, kek := newManager(t, keys.WithCacheTTL(10*time.Minute))
	id, ct := mustSeal(t, m, "default")
	kek.down.Store(true)
	// Within the TTL: refreshes fail, payloads do not.
	for _, step := range []time.Duration{6 * time.Minute, time.Minute, 2 * time.Minute} {
		clk.Advance(step)
		mustSeal(t, m, "default")
		mustOpen(t, m, "default", id, ct)
	}
	if s := m.Stats(); s.RefreshFailures == 0 {
		t.Fatalf("no refresh failure counted: %+v", s)
	}
	// New scopes fail closed at once.
	if _, err := m.SealingKey(ctx, codec.Target{Namespace: "new"}); !errors.Is(err, errKEKDown) {
		t.Fatalf("new scope with KEK down: %v", err)
	}
	// After the TTL: fail closed with a clear error, also for repeated calls.
	clk.Advance(2 * time.Minute)
	for range 3 {
		if _, err := m.SealingKey(ctx, codec.Target{Namespace: "default"}); !errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, errKEKDown) {
			t.Fatalf("SealingKey after TTL: %v, want ErrUnavailable wrapping the KEK error", err)
		}
		if _, err := m.OpeningKey(ctx, "default", id); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("OpeningKey after TTL: %v", err)
		}
	}
	// Recovery is automatic once the KEK is back.
	kek.down.Store(false)
	clk.Advance(time.Second)
	mustOpen(t, m, "default", id, ct)
	mustSeal(t, m, "default")
}

func TestShred(t *testing.T) {
	t.Parallel()
	m, dir, clk, _ := newManager(t)
	id1, _ := mustSeal(t, m, "tenant")
	id2, _ := m.Rotate(ctx, "tenant")
	keepID, keepCT := mustSeal(t, m, "keep")
	replica, _, rclk, _ := newManagerIn(t, dir)
	mustOpen(t, replica, "keep", keepID, keepCT)
	if _, err := replica.OpeningKey(ctx, "tenant", id1); err != nil {
		t.Fatal(err)
	}

	if err := m.Shred(ctx, "tenant"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "scopes", "tenant.keyset")); !os.IsNotExist(err) {
		t.Fatalf("keyset file still there: %v", err)
	}
	var ts struct {
		Shreds []struct {
			At     time.Time `json:"at"`
			KeyIDs []string  `json:"key_ids"`
		} `json:"shreds"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "scopes", "tenant.shredded"))
	if err != nil || json.Unmarshal(b, &ts) != nil || len(ts.Shreds) != 1 || len(ts.Shreds[0].KeyIDs) != 2 {
		t.Fatalf("tombstone %s: %v", b, err)
	}

	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"open first key", func() error { _, err := m.OpeningKey(ctx, "tenant", id1); return err }, codec.ErrKeyDestroyed},
		{"open second key", func() error { _, err := m.OpeningKey(ctx, "tenant", id2); return err }, codec.ErrKeyDestroyed},
		{"open never-existing id", func() error { _, err := m.OpeningKey(ctx, "tenant", "tenant/00000002"); return err }, codec.ErrKeyDestroyed},
		{"seal (auto-create on)", func() error { _, err := m.SealingKey(ctx, codec.Target{Namespace: "tenant"}); return err }, codec.ErrKeyDestroyed},
		{"rotate", func() error { _, err := m.Rotate(ctx, "tenant"); return err }, codec.ErrKeyDestroyed},
		{"create without AllowAfterShred", func() error { _, err := m.Create(ctx, "tenant", keys.CreateOptions{}); return err }, codec.ErrKeyDestroyed},
		{"shred again", func() error { return m.Shred(ctx, "tenant") }, nil},
	} {
		if err := tc.do(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	mustOpen(t, m, "keep", keepID, keepCT)

	// The replica still has the keyset cached; it learns of the shred at its next refresh, within the TTL.
	rclk.Advance(keys.DefaultCacheTTL)
	if _, err := replica.OpeningKey(ctx, "tenant", id1); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("replica after TTL: %v", err)
	}

	// Re-creating needs the explicit flag, gets a new id, and the old ids stay destroyed.
	clk.Advance(time.Hour)
	id3, err := m.Create(ctx, "tenant", keys.CreateOptions{AllowAfterShred: true})
	if err != nil || id3 == id1 || id3 == id2 {
		t.Fatalf("re-create: %s %v", id3, err)
	}
	if sid, _ := mustSeal(t, m, "tenant"); sid != id3 {
		t.Fatalf("sealing with %s, want %s", sid, id3)
	}
	if _, err := m.OpeningKey(ctx, "tenant", id1); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("old key after re-create: %v", err)
	}
	if _, err := m.OpeningKey(ctx, "tenant", "tenant/00000002"); !errors.Is(err, codec.ErrUnknownKey) {
		t.Fatalf("unknown id after re-create: %v", err)
	}
	infos, _ := m.List(ctx)
	if len(infos) != 2 || infos[1].Scope != "tenant" || infos[1].State != "active" || len(infos[1].Destroyed) != 2 || infos[1].ShreddedAt.IsZero() {
		t.Fatalf("List after re-create: %+v", infos)
	}
	// A second shred adds to the tombstone.
	if err := m.Shred(ctx, "tenant"); err != nil {
		t.Fatal(err)
	}
	infos, _ = m.List(ctx)
	if infos[1].State != "shredded" || len(infos[1].Destroyed) != 3 {
		t.Fatalf("List after second shred: %+v", infos[1])
	}
}

func TestUnreadableTombstoneFailsClosed(t *testing.T) {
	t.Parallel()
	m, dir, _, _ := newManager(t)
	id, _ := mustSeal(t, m, "s")
	os.WriteFile(filepath.Join(dir, "scopes", "s.shredded"), []byte("{"), 0o600)
	fresh, _, _, _ := newManagerIn(t, dir)
	if _, err := fresh.OpeningKey(ctx, "s", id); err == nil {
		t.Fatal("opened a key next to an unreadable tombstone")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	m, dir, _, _ := newManager(t, keys.WithCacheSize(3), keys.WithMinRefreshInterval(0))
	admin, _, _, _ := newManagerIn(t, dir)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ns := fmt.Sprintf("ns%d", (g+i)%5)
				k, err := m.SealingKey(ctx, codec.Target{Namespace: ns})
				if err != nil {
					t.Error(err)
					return
				}
				ct, _ := k.AEAD.Encrypt([]byte("x"), nil)
				o, err := m.OpeningKey(ctx, ns, k.ID)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := o.AEAD.Decrypt(ct, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 5 {
		if _, err := admin.Rotate(ctx, "ns1"); err != nil && !errors.Is(err, keys.ErrScopeNotFound) {
			t.Error(err)
		}
		m.Stats()
	}
	wg.Wait()
}

// TestSealingKeyTargetScope: an explicit Target.Scope is the scope sealed with, whatever the namespace; an empty one is the
// namespace's default scope.
func TestSealingKeyTargetScope(t *testing.T) {
	t.Parallel()
	m, _, _, _ := newManager(t)
	for _, tc := range []struct {
		target codec.Target
		scope  string
	}{
		{codec.Target{Namespace: "saas", Scope: "saas.acme"}, "saas.acme"},
		{codec.Target{Namespace: "saas"}, "saas"},
		{codec.Target{Namespace: "a/b"}, keys.ScopeForNamespace("a/b")},
	} {
		k, err := m.SealingKey(ctx, tc.target)
		if err != nil {
			t.Fatalf("%+v: %v", tc.target, err)
		}
		if !strings.HasPrefix(k.ID, tc.scope+"/") {
			t.Errorf("%+v: sealed with %q, want scope %q", tc.target, k.ID, tc.scope)
		}
	}
}

// TestSentinelsWrapCodecErrors: callers that know only codec.Keyring's contract classify this package's errors alike, and the
// messages stay this package's.
func TestSentinelsWrapCodecErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err, codecErr error
		msg           string
	}{
		{keys.ErrScopeNotFound, codec.ErrUnknownKey, "scope has no keyset"},
		{keys.ErrUnwrap, codec.ErrKeyRejected, "keyset cannot be unwrapped"},
		{keys.ErrUnavailable, codec.ErrKeyUnavailable, "keys unavailable"},
		{keys.ErrInvalidScope, codec.ErrInvalidScope, "invalid scope name"},
	} {
		wrapped := fmt.Errorf("scope %q: %w", "x", tc.err)
		if !errors.Is(wrapped, tc.err) || !errors.Is(wrapped, tc.codecErr) {
			t.Errorf("%v: errors.Is(%v) or errors.Is(%v) is false", wrapped, tc.err, tc.codecErr)
		}
		if tc.err.Error() != tc.msg {
			t.Errorf("message %q, want %q", tc.err.Error(), tc.msg)
		}
	}
	if errors.Is(keys.ErrUnavailable, codec.ErrKeyRejected) || errors.Is(keys.ErrUnwrap, codec.ErrKeyUnavailable) {
		t.Error("a retryable and a final key error are confused")
	}
}
