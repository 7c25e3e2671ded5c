package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/vaultdevproc"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/keys/vault"
)

// The package's one vaultdev, started on first use, with file storage so that the outage test's Restart keeps the Transit keys.
// Vault tests do not run in parallel: the outage test stops it. Each test uses its own Transit key prefix.
var testVaultState struct {
	mu   sync.Mutex
	proc *vaultdevproc.Proc
	dir  string
}

func testVault(t testing.TB) *vaultdevproc.Proc {
	t.Helper()
	if testing.Short() {
		t.Skip("vault tests build and start vaultdev; skipped with -short")
	}
	s := &testVaultState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		bin := vaultdevproc.Build(t)
		dir, err := os.MkdirTemp("", "keys-vaultdev-")
		if err != nil {
			t.Fatal(err)
		}
		p, err := vaultdevproc.Launch(ctx, bin, vaultdevproc.Options{StorageDir: dir})
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("start vaultdev: %v", err)
		}
		s.proc, s.dir = p, dir
	}
	if !s.proc.Running() {
		t.Fatal("the shared vaultdev is not running (an earlier test stopped it and did not restart it)")
	}
	return s.proc
}

func stopTestVault() {
	s := &testVaultState
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Stop()
		os.RemoveAll(s.dir)
		s.proc = nil
	}
}

// uniquePrefix keeps each test's Transit keys apart in the shared Vault.
func uniquePrefix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t" + hex.EncodeToString(b) + "-"
}

func vaultCfg(p *vaultdevproc.Proc, prefix string) vault.Config {
	return vault.Config{
		Address:    p.Addr(),
		Mount:      p.TransitMount(),
		KeyPrefix:  prefix,
		Auth:       vault.Auth{Method: vault.AuthToken, Token: p.Token()},
		CreateKeys: true,
	}
}

func newVaultKEK(t testing.TB, cfg vault.Config) *vault.KEK {
	t.Helper()
	k, err := vault.NewKEK(ctx, cfg)
	if err != nil {
		t.Fatalf("NewKEK: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func vaultManager(t testing.TB, dir string, kek keys.KEK, opts ...keys.Option) *keys.Manager {
	t.Helper()
	m, err := keys.NewManager(keys.NewDirStore(dir), kek, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rootClient(t testing.TB, p *vaultdevproc.Proc) *vaultapi.Client {
	t.Helper()
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: p.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(p.Token())
	return c
}

func payloads(marker string, n int) []*commonpb.Payload {
	out := make([]*commonpb.Payload, n)
	for i := range out {
		out[i] = &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"` + marker + `"`)}
	}
	return out
}

func encode(t testing.TB, m *keys.Manager, ns, marker string) []*commonpb.Payload {
	t.Helper()
	c, err := codec.New(m)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode(ctx, ns, payloads(marker, 3))
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return enc
}

func decodeErr(m *keys.Manager, ns string, enc []*commonpb.Payload) ([]*commonpb.Payload, error) {
	c, err := codec.New(m)
	if err != nil {
		return nil, err
	}
	return c.Decode(ctx, ns, enc)
}

func mustDecode(t testing.TB, m *keys.Manager, ns, marker string, enc []*commonpb.Payload) {
	t.Helper()
	dec, err := decodeErr(m, ns, enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	for i, p := range dec {
		if string(p.Data) != `"`+marker+`"` {
			t.Fatalf("payload %d decoded to %q, want marker %q", i, p.Data, marker)
		}
	}
}

func keysetPath(dir, scope string) string { return filepath.Join(dir, "scopes", scope+".keyset") }

func TestVaultWrapUnwrap(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	dir := t.TempDir()
	m := vaultManager(t, dir, kek)

	enc := encode(t, m, "default", "marker-wrap")
	mustDecode(t, m, "default", "marker-wrap", enc)

	file, err := os.ReadFile(keysetPath(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, []byte(`"keyset"`)) {
		t.Fatalf("keyset file has no keyset: %s", file)
	}
	info, err := kek.TransitKey(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != prefix+"default" || info.Type != "aes256-gcm96" || !info.Derived || info.LatestVersion != 1 {
		t.Fatalf("transit key = %+v, want %sdefault, aes256-gcm96, derived, version 1", info, prefix)
	}

	// Another process (new Manager and KEK, same store) unwraps through Vault and decodes.
	other := vaultManager(t, dir, newVaultKEK(t, vaultCfg(p, prefix)))
	mustDecode(t, other, "default", "marker-wrap", enc)
	if got := other.Stats().KEKCalls; got != 1 {
		t.Fatalf("second process made %d KEK calls for one scope, want 1", got)
	}

	// Steady state: many payloads, no further Vault calls.
	before := m.Stats().KEKCalls
	for range 100 {
		mustDecode(t, m, "default", "marker-wrap", encode(t, m, "default", "marker-wrap"))
	}
	if after := m.Stats().KEKCalls; after != before {
		t.Fatalf("steady state made %d KEK calls for 100 encode+decode batches, want 0", after-before)
	}
}

func TestVaultNoCreateKeys(t *testing.T) {
	p := testVault(t)
	cfg := vaultCfg(p, uniquePrefix())
	cfg.CreateKeys = false
	m := vaultManager(t, t.TempDir(), newVaultKEK(t, cfg))
	_, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
	if !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("SealingKey without a Transit key and CreateKeys off = %v, want ErrKEKKeyMissing", err)
	}
	if s, err := rootClient(t, p).Logical().Read(p.TransitMount() + "/keys/" + cfg.KeyPrefix + "default"); err != nil || s != nil {
		t.Fatalf("Transit key after a refused create: %v, %v; want none", s, err)
	}
}

func TestVaultScopeBinding(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	created := map[string]string{"00000001": "2026-01-01T00:00:00Z"}
	adA := keys.KeysetAD("scope-a", created)
	ct, err := kek.EncryptWithContext(ctx, []byte("dek keyset"), adA)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ct), "vault:v1:") {
		t.Fatalf("ciphertext %q is not a Transit v1 ciphertext", ct)
	}
	if pt, err := kek.DecryptWithContext(ctx, ct, adA); err != nil || string(pt) != "dek keyset" {
		t.Fatalf("decrypt under its own scope = %q, %v", pt, err)
	}
	// Make scope B's Transit key exist too, so the cross-scope case is a real rejection, not a missing key.
	if _, err := kek.EncryptWithContext(ctx, []byte("x"), keys.KeysetAD("scope-b", created)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ad   []byte
		want error
	}{
		{"other scope", keys.KeysetAD("scope-b", created), keys.ErrUnwrap},
		{"same key, other creation times", keys.KeysetAD("scope-a", map[string]string{"00000001": "2026-01-02T00:00:00Z"}), keys.ErrUnwrap},
		{"scope never created", keys.KeysetAD("scope-c", created), keys.ErrKEKKeyMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kek.DecryptWithContext(ctx, ct, tc.ad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decrypt = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "vault") {
				t.Fatalf("error %q does not name vault", err)
			}
		})
	}
	if _, err := kek.EncryptWithContext(ctx, []byte("x"), []byte("not a keyset AD")); err == nil {
		t.Fatal("encrypt with associated data that names no scope succeeded")
	}

	// The same through the Manager: scope A's keyset file moved to scope B's place (scope field edited to pass the file check).
	dir := t.TempDir()
	m := vaultManager(t, dir, kek)
	encode(t, m, "scope-a", "a")
	encode(t, m, "scope-b", "b")
	a, err := os.ReadFile(keysetPath(dir, "scope-a"))
	if err != nil {
		t.Fatal(err)
	}
	moved := bytes.Replace(a, []byte(`"scope": "scope-a"`), []byte(`"scope": "scope-b"`), 1)
	if err := os.WriteFile(keysetPath(dir, "scope-b"), moved, 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := vaultManager(t, dir, kek)
	if _, err := fresh.SealingKey(ctx, codec.Target{Namespace: "scope-b"}); !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("scope-a's keyset under scope-b = %v, want ErrUnwrap", err)
	}
}

func TestVaultKEKRotation(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	dir := t.TempDir()
	m := vaultManager(t, dir, kek)
	before := encode(t, m, "default", "before")
	v1File, err := os.ReadFile(keysetPath(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}

	v, err := kek.RotateScopeKey(ctx, "default")
	if err != nil || v != 2 {
		t.Fatalf("RotateScopeKey = %d, %v; want 2", v, err)
	}
	if _, err := m.Rotate(ctx, "default"); err != nil { // the new DEK keyset is wrapped under KEK v2
		t.Fatal(err)
	}
	after := encode(t, m, "default", "after")
	v2File, err := os.ReadFile(keysetPath(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}

	// A keyset wrapped under v1 (e.g. in a backup, or a store another replica has not rewrapped) and one under v2 both unwrap.
	oldDir := t.TempDir()
	writeKeyset(t, oldDir, "default", v1File)
	mustDecode(t, vaultManager(t, oldDir, kek), "default", "before", before)
	fresh := vaultManager(t, dir, kek)
	mustDecode(t, fresh, "default", "before", before)
	mustDecode(t, fresh, "default", "after", after)
	if bytes.Equal(v1File, v2File) {
		t.Fatal("keyset file did not change on rotation")
	}

	// An operator raises min_decryption_version: keysets still wrapped under v1 fail closed; v2 ones keep working.
	if err := kek.SetMinDecryptionVersion(ctx, "default", 2); err != nil {
		t.Fatal(err)
	}
	_, err = decodeErr(vaultManager(t, oldDir, kek), "default", before)
	if !errors.Is(err, keys.ErrUnwrap) {
		t.Fatalf("decode with a keyset wrapped under KEK v1 after min_decryption_version=2: %v, want ErrUnwrap", err)
	}
	t.Logf("v1-wrapped keyset after min_decryption_version=2: %v", err)
	fresh = vaultManager(t, dir, kek)
	mustDecode(t, fresh, "default", "before", before)
	mustDecode(t, fresh, "default", "after", after)
}

func writeKeyset(t testing.TB, dir, scope string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "scopes"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysetPath(dir, scope), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVaultRewrap(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	dir := t.TempDir()
	m := vaultManager(t, dir, kek)
	enc := encode(t, m, "default", "rewrap-me")
	encode(t, m, "other", "other")
	if _, err := kek.RotateScopeKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	calls := m.Stats().KEKCalls
	changed, err := m.RewrapAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0] != "default" {
		t.Fatalf("RewrapAll changed %v, want [default] (scope other's key was not rotated)", changed)
	}
	if got := m.Stats().KEKCalls - calls; got != 2 {
		t.Fatalf("rewrap of two scopes made %d KEK calls, want 2 (one Transit rewrap each, no decrypt)", got)
	}
	if again, err := m.Rewrap(ctx, "default"); err != nil || again {
		t.Fatalf("second Rewrap = %v, %v; want unchanged", again, err)
	}
	// With every stored keyset on v2, raising the floor breaks nothing.
	if err := kek.SetMinDecryptionVersion(ctx, "default", 2); err != nil {
		t.Fatal(err)
	}
	mustDecode(t, vaultManager(t, dir, kek), "default", "rewrap-me", enc)

	// The local master key has no versions: rewrap is not applicable.
	lm, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.Rewrap(ctx, "default"); !errors.Is(err, keys.ErrRewrapUnsupported) {
		t.Fatalf("local Rewrap = %v, want ErrRewrapUnsupported", err)
	}
}

func TestVaultShred(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	dir := t.TempDir()
	m := vaultManager(t, dir, kek)
	enc := encode(t, m, "default", "secret")
	keep := encode(t, m, "keep", "keep")
	backup, err := os.ReadFile(keysetPath(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Shred(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := kek.TransitKey(ctx, "default"); !errors.Is(err, keys.ErrKEKKeyMissing) {
		t.Fatalf("Transit key after shred: %v, want ErrKEKKeyMissing (deleted)", err)
	}
	if _, err := decodeErr(m, "default", enc); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("decode after shred = %v, want ErrKeyDestroyed", err)
	}
	if _, err := m.SealingKey(ctx, codec.Target{Namespace: "default"}); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("SealingKey after shred = %v, want ErrKeyDestroyed", err)
	}
	mustDecode(t, m, "keep", "keep", keep) // other scopes are untouched
	if err := m.Shred(ctx, "default"); err != nil {
		t.Fatalf("second shred (Transit key already gone) = %v, want nil", err)
	}

	// Someone restores the keyset file from a backup taken before the shred; the tombstone is still there.
	writeKeyset(t, dir, "default", backup)
	_, err = decodeErr(vaultManager(t, dir, kek), "default", enc)
	if !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("decode with the keyset restored from backup = %v, want ErrKeyDestroyed", err)
	}
	t.Logf("keyset file restored, tombstone kept: %v", err)

	// The whole scope restored from backup (keyset file, no tombstone): only Vault stands between the backup and the data.
	fullRestore := t.TempDir()
	writeKeyset(t, fullRestore, "default", backup)
	rm := vaultManager(t, fullRestore, kek)
	_, err = decodeErr(rm, "default", enc)
	if !errors.Is(err, codec.ErrKeyDestroyed) || !strings.Contains(err.Error(), "vault transit") {
		t.Fatalf("decode with the key directory restored from backup = %v, want ErrKeyDestroyed naming the Vault Transit key", err)
	}
	t.Logf("key directory restored without tombstone: %v", err)
	if _, err := rm.SealingKey(ctx, codec.Target{Namespace: "default"}); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("SealingKey with restored keyset = %v, want ErrKeyDestroyed", err)
	}
	calls := rm.Stats().KEKCalls
	for range 10 {
		decodeErr(rm, "default", enc)
	}
	if got := rm.Stats().KEKCalls - calls; got != 0 {
		t.Fatalf("a destroyed scope cost %d Vault calls for 10 decodes, want 0 (cached)", got)
	}
}

func TestVaultShredWhileVaultDown(t *testing.T) {
	// A shred that cannot reach Vault must change nothing locally, so running it again completes it.
	p := testVault(t)
	cfg := vaultCfg(p, uniquePrefix())
	dir := t.TempDir()
	m := vaultManager(t, dir, newVaultKEK(t, cfg))
	enc := encode(t, m, "default", "x")

	down := cfg
	down.Address, down.MaxRetries = "http://127.0.0.1:1", -1 // nothing listens there
	dm := vaultManager(t, dir, newVaultKEK(t, down))
	err := dm.Shred(ctx, "default")
	if err == nil || !strings.Contains(err.Error(), "vault") || !strings.Contains(err.Error(), "nothing was shredded") {
		t.Fatalf("shred with Vault unreachable = %v, want an error naming vault", err)
	}
	mustDecode(t, vaultManager(t, dir, newVaultKEK(t, cfg)), "default", "x", enc)
	if err := m.Shred(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeErr(m, "default", enc); !errors.Is(err, codec.ErrKeyDestroyed) {
		t.Fatalf("decode after shred = %v, want ErrKeyDestroyed", err)
	}
}

func TestVaultAppRole(t *testing.T) {
	p := testVault(t)
	root := rootClient(t, p)
	prefix := uniquePrefix()
	mount := "approle-" + strings.TrimSuffix(prefix, "-")
	if err := root.Sys().EnableAuthWithOptions(mount, &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	policy := `path "` + p.TransitMount() + `/*" { capabilities = ["create", "read", "update", "delete"] }`
	if err := root.Sys().PutPolicy(prefix+"kek", policy); err != nil {
		t.Fatal(err)
	}
	// Short token lifetimes, so the test sees the KEK log in again after the max TTL.
	if _, err := root.Logical().Write("auth/"+mount+"/role/blindfold", map[string]any{
		"token_policies": prefix + "kek", "token_ttl": "2s", "token_max_ttl": "3s",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/" + mount + "/role/blindfold/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/"+mount+"/role/blindfold/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := vaultCfg(p, prefix)
	cfg.Auth = vault.Auth{Method: vault.AuthAppRole, RoleID: rid.Data["role_id"].(string), SecretIDFile: secretFile, MountPath: mount}
	kek := newVaultKEK(t, cfg)
	m := vaultManager(t, t.TempDir(), kek)
	enc := encode(t, m, "default", "approle")
	time.Sleep(4 * time.Second) // past token_max_ttl: the first token is dead, the KEK must have logged in again
	fresh := vaultManager(t, t.TempDir(), kek)
	if _, err := fresh.SealingKey(ctx, codec.Target{Namespace: "default"}); err != nil {
		t.Fatalf("KEK after the first token's max TTL: %v", err)
	}
	mustDecode(t, m, "default", "approle", enc)

	bad := cfg
	bad.Auth.SecretIDFile, bad.Auth.SecretID = "", "wrong"
	if _, err := vault.NewKEK(ctx, bad); err == nil || !strings.Contains(err.Error(), "approle") {
		t.Fatalf("AppRole login with a wrong secret_id = %v, want an error naming approle", err)
	}
}

// TestVaultOutage stops the package's vaultdev: it must not run in parallel with other Vault tests.
func TestVaultOutage(t *testing.T) {
	p := testVault(t)
	prefix := uniquePrefix()
	cfg := vaultCfg(p, prefix)
	cfg.MaxRetries = -1
	kek := newVaultKEK(t, cfg)
	clk := newClock()
	const ttl = 10 * time.Minute
	m := vaultManager(t, t.TempDir(), kek, keys.WithClock(clk.Now), keys.WithCacheTTL(ttl))
	c, err := codec.New(m)
	if err != nil {
		t.Fatal(err)
	}
	stream := func(n int) (failures int, last error) {
		for i := range n {
			enc, err := c.Encode(ctx, "default", payloads("outage", 1))
			if err == nil {
				_, err = c.Decode(ctx, "default", enc)
			}
			if err != nil {
				failures, last = failures+1, err
			}
			if i%10 == 0 {
				clk.Advance(time.Second)
			}
		}
		return failures, last
	}
	if f, err := stream(20); f != 0 {
		t.Fatalf("%d failures with Vault up: %v", f, err)
	}
	calls := m.Stats().KEKCalls

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			p.Restart()
		}
	})
	// Vault is down; the cache is past its refresh point (TTL/2) but within the TTL: every payload still works.
	clk.Advance(ttl/2 + time.Second)
	if f, err := stream(200); f != 0 {
		t.Fatalf("%d of 200 payloads failed during a Vault outage within the TTL: %v", f, err)
	}
	s := m.Stats()
	if s.RefreshFailures == 0 {
		t.Fatal("no refresh was attempted during the outage; the test did not exercise the refresh window")
	}
	t.Logf("within TTL: 0 failures, %d refresh attempts failed, %d KEK calls", s.RefreshFailures, s.KEKCalls-calls)

	// Past the TTL: fail closed, with an error that says Vault.
	clk.Advance(ttl)
	f, err := stream(5)
	if f != 5 || !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "vault transit decrypt") || !strings.Contains(err.Error(), p.Addr()) {
		t.Fatalf("after the TTL: %d/5 failed, last %v; want all failing with ErrUnavailable naming vault and its address", f, err)
	}
	t.Logf("after TTL: %v", err)

	// Vault returns (file storage: same keys): recovery without intervention.
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	clk.Advance(2 * time.Second) // past the failure rate limit (MinRefreshInterval)
	if f, err := stream(50); f != 0 {
		t.Fatalf("%d failures after Vault came back: %v", f, err)
	}
}

// blackhole is a loopback TCP relay to Vault that can be switched to swallow traffic: connections are accepted and never answered,
// as with a network partition (where connection refused, as in TestVaultOutage, fails fast).
type blackhole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	on     bool
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); b.set(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			on := b.on
			b.mu.Unlock()
			if !on {
				go b.relay(c)
			}
		}
	}()
	return b
}

func (b *blackhole) relay(c net.Conn) {
	u, err := net.Dial("tcp", b.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

// set switches swallowing on or off; either way existing connections are cut, so pooled client connections cannot bypass it.
func (b *blackhole) set(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = on
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

func TestVaultPartitionWithBackgroundRefresh(t *testing.T) {
	p := testVault(t)
	host := strings.TrimPrefix(p.Addr(), "http://")
	bh := newBlackhole(t, host)
	cfg := vaultCfg(p, uniquePrefix())
	cfg.Address, cfg.MaxRetries, cfg.Timeout = "http://"+bh.ln.Addr().String(), -1, 5*time.Second
	kek := newVaultKEK(t, cfg)
	clk := newClock()
	const ttl = 10 * time.Minute
	m := vaultManager(t, t.TempDir(), kek, keys.WithClock(clk.Now), keys.WithCacheTTL(ttl), keys.WithBackgroundRefresh(500*time.Millisecond))
	c, err := codec.New(m)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(rctx context.Context) error {
		enc, err := c.Encode(rctx, "default", payloads("partition", 1))
		if err == nil {
			_, err = c.Decode(rctx, "default", enc)
		}
		return err
	}
	if err := roundTrip(ctx); err != nil {
		t.Fatal(err)
	}

	bh.set(true)
	clk.Advance(ttl/2 + time.Second)
	// Within the TTL, with Vault silent: every payload works at once. These requests carry no deadline, so a synchronous
	// refresh would hang them for the KEK's 5s timeout; the background refresh gives up after its own 500ms.
	for i := range 100 {
		if err := roundTrip(ctx); err != nil {
			t.Fatalf("payload %d during the partition within the TTL: %v", i, err)
		}
		if i%20 == 0 {
			clk.Advance(time.Second)
		}
	}
	waitFor(t, func() bool { return m.Stats().RefreshFailures > 0 }, "a background refresh to time out")

	// Past the TTL: fail closed within the request's deadline, naming Vault.
	clk.Advance(ttl)
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = roundTrip(rctx)
	cancel()
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "vault transit") {
		t.Fatalf("after the TTL during a partition: %v, want ErrUnavailable naming vault", err)
	}
	t.Logf("partition, after TTL: %v", err)

	bh.set(false)
	clk.Advance(2 * time.Second)
	if err := roundTrip(ctx); err != nil {
		t.Fatalf("after the partition healed: %v", err)
	}
}

// A Transit key whose material can leave Vault (exportable, or plaintext backup allowed) is refused for wrapping and for
// unwrapping: deleting it would not shred, since copies may exist.
func TestVaultRefusesKeysThatLeaveVault(t *testing.T) {
	p := testVault(t)
	root := rootClient(t, p)

	// Exportable from the start: nothing is ever wrapped with it.
	prefix := uniquePrefix()
	if _, err := root.Logical().Write(p.TransitMount()+"/keys/"+prefix+"default", map[string]any{"type": "aes256-gcm96", "derived": true, "exportable": true}); err != nil {
		t.Fatal(err)
	}
	m := vaultManager(t, t.TempDir(), newVaultKEK(t, vaultCfg(p, prefix)))
	_, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
	if !errors.Is(err, vault.ErrKeyLeavesVault) || !strings.Contains(err.Error(), prefix+"default") || !strings.Contains(err.Error(), "exportable=true") {
		t.Fatalf("SealingKey with an exportable transit key = %v; want ErrKeyLeavesVault naming the key and the setting", err)
	}

	// Plaintext backup allowed after keysets were wrapped: another process refuses to unwrap with it.
	prefix = uniquePrefix()
	dir := t.TempDir()
	m = vaultManager(t, dir, newVaultKEK(t, vaultCfg(p, prefix)))
	enc := encode(t, m, "default", "marker-backup")
	if _, err := root.Logical().Write(p.TransitMount()+"/keys/"+prefix+"default/config", map[string]any{"allow_plaintext_backup": true}); err != nil {
		t.Fatal(err)
	}
	kek := newVaultKEK(t, vaultCfg(p, prefix))
	info, err := kek.TransitKey(ctx, "default")
	if err != nil || !info.AllowPlaintextBackup || info.Exportable {
		t.Fatalf("TransitKey = %+v, %v", info, err)
	}
	other := vaultManager(t, dir, kek)
	_, err = decodeErr(other, "default", enc)
	if !errors.Is(err, codec.ErrKeyUnavailable) || !strings.Contains(err.Error(), "allow_plaintext_backup=true") {
		t.Fatalf("decode with a backup-able transit key = %v; want a refusal naming allow_plaintext_backup", err)
	}
}
