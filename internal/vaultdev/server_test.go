package vaultdev

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
)

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func client(t *testing.T, s *Server, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr()
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("api.NewClient: %v", err)
	}
	c.SetToken(token)
	return c
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func encrypt(t *testing.T, c *api.Client, key string, data map[string]interface{}) string {
	t.Helper()
	sec, err := c.Logical().Write("transit/encrypt/"+key, data)
	if err != nil {
		t.Fatalf("encrypt with %s: %v", key, err)
	}
	return sec.Data["ciphertext"].(string)
}

func decrypt(c *api.Client, key string, data map[string]interface{}) (string, error) {
	sec, err := c.Logical().Write("transit/decrypt/"+key, data)
	if err != nil {
		return "", err
	}
	pt, err := base64.StdEncoding.DecodeString(sec.Data["plaintext"].(string))
	return string(pt), err
}

func TestTransitLifecycle(t *testing.T) {
	s := startServer(t, Config{})
	if !strings.HasPrefix(s.Addr(), "http://127.0.0.1:") || s.Token() == "" || s.TransitMount() != "transit" {
		t.Fatalf("unexpected server info %+v", s.Info())
	}
	c := client(t, s, s.Token())

	health, err := c.Sys().Health()
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	if !health.Initialized || health.Sealed || health.Version != "1.14.1" {
		t.Fatalf("unexpected health %+v", health)
	}

	// A plain key binds a scope through associated_data, a derived key
	// through its context: both must reject the wrong scope.
	if _, err := c.Logical().Write("transit/keys/plain", nil); err != nil {
		t.Fatalf("create plain key: %v", err)
	}
	if _, err := c.Logical().Write("transit/keys/derived", map[string]interface{}{"derived": true}); err != nil {
		t.Fatalf("create derived key: %v", err)
	}
	cases := []struct {
		name, key, field string
	}{
		{"associated data", "plain", "associated_data"},
		{"derived context", "derived", "context"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := encrypt(t, c, tc.key, map[string]interface{}{"plaintext": b64("dek bytes"), tc.field: b64("scope-a")})
			if !strings.HasPrefix(ct, "vault:v1:") {
				t.Fatalf("ciphertext %q is not version 1", ct)
			}
			pt, err := decrypt(c, tc.key, map[string]interface{}{"ciphertext": ct, tc.field: b64("scope-a")})
			if err != nil || pt != "dek bytes" {
				t.Fatalf("decrypt with the right scope = %q, %v", pt, err)
			}
			if _, err := decrypt(c, tc.key, map[string]interface{}{"ciphertext": ct, tc.field: b64("scope-b")}); err == nil {
				t.Fatal("decrypt with the wrong scope succeeded")
			}
		})
	}

	// Rotation: old ciphertext stays readable until min_decryption_version
	// moves past it.
	old := encrypt(t, c, "plain", map[string]interface{}{"plaintext": b64("v1"), "associated_data": b64("s")})
	if _, err := c.Logical().Write("transit/keys/plain/rotate", nil); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	cur := encrypt(t, c, "plain", map[string]interface{}{"plaintext": b64("v2"), "associated_data": b64("s")})
	if !strings.HasPrefix(cur, "vault:v2:") {
		t.Fatalf("ciphertext after rotation %q is not version 2", cur)
	}
	if pt, err := decrypt(c, "plain", map[string]interface{}{"ciphertext": old, "associated_data": b64("s")}); err != nil || pt != "v1" {
		t.Fatalf("decrypt v1 after rotation = %q, %v", pt, err)
	}
	// Vault 1.14's rewrap takes a derived key's context but no
	// associated_data, so only derived keys can be rewrapped inside Vault.
	if _, err := c.Logical().Write("transit/rewrap/plain", map[string]interface{}{"ciphertext": old, "associated_data": b64("s")}); err == nil {
		t.Fatal("rewrap of associated-data ciphertext succeeded; Vault may support it now")
	}
	dold := encrypt(t, c, "derived", map[string]interface{}{"plaintext": b64("d1"), "context": b64("s")})
	if _, err := c.Logical().Write("transit/keys/derived/rotate", nil); err != nil {
		t.Fatalf("rotate derived: %v", err)
	}
	rewrapped, err := c.Logical().Write("transit/rewrap/derived", map[string]interface{}{"ciphertext": dold, "context": b64("s")})
	if err != nil {
		t.Fatalf("rewrap derived: %v", err)
	}
	dnew := rewrapped.Data["ciphertext"].(string)
	if _, ok := rewrapped.Data["plaintext"]; ok || !strings.HasPrefix(dnew, "vault:v2:") {
		t.Fatalf("rewrap derived returned %v", rewrapped.Data)
	}
	if pt, err := decrypt(c, "derived", map[string]interface{}{"ciphertext": dnew, "context": b64("s")}); err != nil || pt != "d1" {
		t.Fatalf("decrypt rewrapped = %q, %v", pt, err)
	}
	if _, err := c.Logical().Write("transit/keys/plain/config", map[string]interface{}{"min_decryption_version": 2}); err != nil {
		t.Fatalf("raise min_decryption_version: %v", err)
	}
	if _, err := decrypt(c, "plain", map[string]interface{}{"ciphertext": old, "associated_data": b64("s")}); err == nil {
		t.Fatal("decrypt below min_decryption_version succeeded")
	}

	// Shredding: deletion must be allowed first, then the key is gone.
	if _, err := c.Logical().Delete("transit/keys/derived"); err == nil {
		t.Fatal("deleting a key without deletion_allowed succeeded")
	}
	if _, err := c.Logical().Write("transit/keys/derived/config", map[string]interface{}{"deletion_allowed": true}); err != nil {
		t.Fatalf("allow deletion: %v", err)
	}
	if _, err := c.Logical().Delete("transit/keys/derived"); err != nil {
		t.Fatalf("delete key: %v", err)
	}
	if sec, err := c.Logical().Read("transit/keys/derived"); err != nil || sec != nil {
		t.Fatalf("read deleted key = %v, %v; want nothing", sec, err)
	}
	if _, err := c.Logical().Write("transit/decrypt/derived", map[string]interface{}{"ciphertext": old, "context": b64("s")}); err == nil {
		t.Fatal("decrypt with a deleted key succeeded")
	}
}

func TestFixedRootTokenAndMount(t *testing.T) {
	s := startServer(t, Config{RootToken: "blindfold-root", TransitMount: "kek/"})
	if s.Token() != "blindfold-root" || s.TransitMount() != "kek" {
		t.Fatalf("unexpected server info %+v", s.Info())
	}
	c := client(t, s, "blindfold-root")
	if _, err := c.Logical().Write("kek/keys/k", nil); err != nil {
		t.Fatalf("create key under custom mount: %v", err)
	}
	sec, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("lookup-self: %v", err)
	}
	if pols, _ := sec.TokenPolicies(); len(pols) != 1 || pols[0] != "root" {
		t.Fatalf("token policies = %v, want [root]", pols)
	}
	if _, err := client(t, s, "wrong").Logical().Read("kek/keys/k"); err == nil {
		t.Fatal("read with a wrong token succeeded")
	}
}

func TestAppRoleAvailable(t *testing.T) {
	s := startServer(t, Config{})
	c := client(t, s, s.Token())
	if err := c.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable approle: %v", err)
	}
	if _, err := c.Logical().Write("auth/approle/role/blindfold", map[string]interface{}{"token_policies": "default"}); err != nil {
		t.Fatalf("create role: %v", err)
	}
	rid, err := c.Logical().Read("auth/approle/role/blindfold/role-id")
	if err != nil {
		t.Fatalf("read role-id: %v", err)
	}
	sid, err := c.Logical().Write("auth/approle/role/blindfold/secret-id", nil)
	if err != nil {
		t.Fatalf("create secret-id: %v", err)
	}
	login, err := client(t, s, "").Logical().Write("auth/approle/login", map[string]interface{}{
		"role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"],
	})
	if err != nil || login.Auth == nil || login.Auth.ClientToken == "" {
		t.Fatalf("approle login = %v, %v", login, err)
	}
}

func TestStorageDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{StorageDir: dir, RootToken: "tok-1", Logger: hclog.NewNullLogger()}
	s1, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("first Start: %v", err)
	}
	c := client(t, s1, "tok-1")
	if _, err := c.Logical().Write("transit/keys/k", nil); err != nil {
		t.Fatalf("create key: %v", err)
	}
	ct := encrypt(t, c, "k", map[string]interface{}{"plaintext": b64("kept"), "associated_data": b64("s")})
	if err := s1.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close of the same server: %v", err)
	}

	// Same directory, a second chosen token: both tokens work, the key and
	// its ciphertext survive.
	cfg.RootToken = "tok-2"
	s2 := startServer(t, cfg)
	for _, tok := range []string{"tok-1", "tok-2"} {
		pt, err := decrypt(client(t, s2, tok), "k", map[string]interface{}{"ciphertext": ct, "associated_data": b64("s")})
		if err != nil || pt != "kept" {
			t.Fatalf("decrypt after restart with %s = %q, %v", tok, pt, err)
		}
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8200", ":8200", "10.1.2.3:8200", "[::]:8200", "example.com:8200", "nonsense"} {
		t.Run(addr, func(t *testing.T) {
			if _, err := Start(context.Background(), Config{Addr: addr}); err == nil {
				t.Fatal("Start succeeded")
			} else if addr != "nonsense" && !errors.Is(err, ErrNotLoopback) {
				t.Fatalf("err = %v, want ErrNotLoopback", err)
			}
		})
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			got, err := loopbackAddr(addr)
			if err != nil {
				t.Fatalf("loopbackAddr(%q): %v", addr, err)
			}
			if strings.HasPrefix(got, "localhost") {
				t.Fatalf("loopbackAddr(%q) = %q, want an IP", addr, got)
			}
		})
	}
}

func TestCloseStopsServing(t *testing.T) {
	s, err := Start(context.Background(), Config{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if resp, err := http.Get(s.Addr() + "/v1/sys/health"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after Close")
	}
}

func TestRejectsDottedRootToken(t *testing.T) {
	if _, err := Start(context.Background(), Config{RootToken: "a.b"}); err == nil || !strings.Contains(err.Error(), "'.'") {
		t.Fatalf("Start with a dotted root token = %v, want a clear error", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, Config{TLSDir: dir})
	if !strings.HasPrefix(s.Addr(), "https://127.0.0.1:") || s.CACert() == "" || s.Info().CACert != s.CACert() {
		t.Fatalf("unexpected server info %+v", s.Info())
	}
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr()
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: s.CACert()}); err != nil {
		t.Fatalf("ConfigureTLS: %v", err)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("api.NewClient: %v", err)
	}
	c.SetToken(s.Token())
	if _, err := c.Logical().Write("transit/keys/k", nil); err != nil {
		t.Fatalf("create key over TLS: %v", err)
	}
	if _, err := client(t, s, s.Token()).Sys().Health(); err == nil {
		t.Fatal("a client without the CA trusted the server")
	}

	before, err := os.ReadFile(s.CACert())
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, Config{TLSDir: dir})
	after, err := os.ReadFile(s2.CACert())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("a second server over the same TLS directory made a new certificate")
	}
}

func TestKVv2CheckAndSet(t *testing.T) {
	s := startServer(t, Config{KVMount: "blindfold-kv/"})
	if s.KVMount() != "blindfold-kv" || s.Info().KVMount != "blindfold-kv" {
		t.Fatalf("kv mount = %q, info %+v", s.KVMount(), s.Info())
	}
	kv := client(t, s, s.Token()).KVv2(s.KVMount())
	ctx := context.Background()
	v1, err := kv.Put(ctx, "a", map[string]interface{}{"x": "1"}, api.WithCheckAndSet(0))
	if err != nil {
		t.Fatalf("first put with cas=0: %v", err)
	}
	if _, err := kv.Put(ctx, "a", map[string]interface{}{"x": "2"}, api.WithCheckAndSet(0)); err == nil {
		t.Fatal("second put with cas=0 succeeded; want a check-and-set conflict")
	}
	if _, err := kv.Put(ctx, "a", map[string]interface{}{"x": "2"}, api.WithCheckAndSet(v1.VersionMetadata.Version)); err != nil {
		t.Fatalf("put with the current version: %v", err)
	}
	got, err := kv.Get(ctx, "a")
	if err != nil || got.Data["x"] != "2" || got.VersionMetadata.Version != 2 {
		t.Fatalf("get = %+v, %v", got, err)
	}
}

func TestMountsMustDiffer(t *testing.T) {
	if _, err := Start(context.Background(), Config{TransitMount: "x", KVMount: "x", Logger: hclog.NewNullLogger()}); err == nil {
		t.Fatal("Start with equal transit and kv mounts succeeded")
	}
}
