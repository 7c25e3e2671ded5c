package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/policy"
)

func localKeys(t *testing.T) KeysConfig {
	t.Helper()
	return KeysConfig{Dir: filepath.Join(t.TempDir(), "keys"), CreateMasterKey: true, AutoCreate: true}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return testenv.HTTPGet(t, url)
}

// TestGatewayServes starts every part (the upstream is never dialled: no workflow call is made) and checks each door
// answers: gRPC health on the proxy port, /healthz and /metrics, the codec endpoint; then Stop releases the ports.
func TestGatewayServes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g, err := Start(context.Background(), Config{
		Keys:          localKeys(t),
		Proxy:         ProxyConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", Dev: true, AuditLog: filepath.Join(dir, "audit.jsonl")},
		MetricsListen: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := testenv.DialInsecure(t, g.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health: %v %v", hr, err)
	}
	if code, body := get(t, "http://"+g.MetricsAddr()+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, g.MetricsURL()); code != 200 || !strings.Contains(body, "blindfold_") {
		t.Fatalf("/metrics: %d, no blindfold_ series", code)
	}
	resp, err := http.Post(g.CodecURL()+"/default/decode", "application/json", strings.NewReader(`{"payloads":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("codec endpoint decode: %d", resp.StatusCode)
	}
	addrs := []string{g.Addr(), g.MetricsAddr(), strings.TrimPrefix(g.CodecURL(), "http://")}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if err := relisten(a); err != nil {
			t.Errorf("%s still taken after Stop: %v", a, err)
		}
	}
	// The audit log is closed: its lock is free for another writer.
	if err := reopenAudit(filepath.Join(dir, "audit.jsonl")); err != nil {
		t.Fatalf("audit log still held after Stop: %v", err)
	}
}

// released is how long a closed socket or file may stay open elsewhere: a parallel test that starts a process (the
// KEK plugin, softhsm2-util) forks, and until the child's exec closes its close-on-exec copies, it holds every
// descriptor this process had, sockets and locked files included.
const released = 5 * time.Second

// relisten listens on addr again (and closes it), once the address is free, within released.
func relisten(addr string) error {
	var err error
	testenv.Poll(released, func() bool {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
		}
		return err == nil
	})
	return err
}

// reopenAudit opens the audit log at path as another writer (and closes it), once its lock is free, within released.
func reopenAudit(path string) error {
	var err error
	testenv.Poll(released, func() bool {
		var al *policy.AuditLog
		if al, err = policy.OpenAudit(path); err == nil {
			al.Close()
		}
		return err == nil
	})
	return err
}

// TestStartRollsBack makes the last part to start (the metrics listener) fail and checks that what had started before
// it is stopped again: the proxy's and the codec endpoint's listeners are closed and the audit log is released.
func TestStartRollsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	taken := listen(t)
	defer taken.Close()
	proxyLis, codecLis := listen(t), listen(t)
	_, err := Start(context.Background(), Config{
		Keys:          localKeys(t),
		Proxy:         ProxyConfig{Listener: proxyLis, Upstream: "127.0.0.1:1"},
		CodecEndpoint: &CodecEndpointConfig{Listener: codecLis, Dev: true, AuditLog: filepath.Join(dir, "audit.jsonl")},
		MetricsListen: taken.Addr().String(),
	})
	if err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Fatalf("Start with a taken metrics port: %v", err)
	}
	for _, l := range []net.Listener{proxyLis, codecLis} {
		if err := relisten(l.Addr().String()); err != nil {
			t.Errorf("%s not released by the rollback: %v", l.Addr(), err)
		}
	}
	if err := reopenAudit(filepath.Join(dir, "audit.jsonl")); err != nil {
		t.Fatalf("audit log not released by the rollback: %v", err)
	}
}

// TestStartRefuses checks misconfigurations that fail before anything serves.
func TestStartRefuses(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no upstream": {Config{Keys: localKeys(t)}, "upstream address is required"},
		"xds and tls": {Config{Keys: localKeys(t), Proxy: ProxyConfig{Upstream: "x:1", XDSServer: true, TLS: &tls.Config{}}}, "xDS"},
		"no key dir":  {Config{Proxy: ProxyConfig{Listen: "127.0.0.1:0", Upstream: "x:1"}}, "key directory is empty"},
		"bad kek":     {Config{Keys: KeysConfig{Dir: t.TempDir(), KEK: "hsm"}, Proxy: ProxyConfig{Listen: "127.0.0.1:0", Upstream: "x:1"}}, "--kek"},
		"endpoint, no policy": {Config{Keys: localKeys(t), CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", AuditLog: "a"}},
			"needs --codec-policy"},
		"negative compression": {Config{Keys: localKeys(t), CompressThreshold: -1, Proxy: ProxyConfig{Upstream: "x:1"}}, "compression"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, err := Start(context.Background(), tc.cfg)
			if err == nil {
				g.Stop(context.Background())
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestKeyPlan checks the one rule every command gets its key manager behaviour from.
func TestKeyPlan(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  KeysConfig
		want KeyPlan
	}{
		"local":         {KeysConfig{Dir: "d"}, KeyPlan{CacheTTL: keys.DefaultCacheTTL}},
		"local, create": {KeysConfig{Dir: "d", KEK: KEKLocal, AutoCreate: true, RotateEvery: time.Hour}, KeyPlan{AutoCreate: true, CacheTTL: keys.DefaultCacheTTL, RotateEvery: time.Hour}},
		// A remote KEK must never delay a payload: aged keysets reload in the background.
		"vault": {KeysConfig{Dir: "d", KEK: KEKVault, CacheTTL: time.Minute}, KeyPlan{BackgroundRefresh: DefaultBackgroundRefresh, CacheTTL: time.Minute}},
		// So must a remote key store, whatever the KEK.
		"local kek, vault kv store": {KeysConfig{Dir: "d", Store: StoreVaultKV}, KeyPlan{BackgroundRefresh: DefaultBackgroundRefresh, CacheTTL: keys.DefaultCacheTTL}},
	} {
		if got := tc.cfg.Plan(); got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}

// TestOpenKeysNeverCreatesMasterKey checks that a serving command with a wrong key directory fails clearly instead of
// minting a fresh, useless master key.
func TestOpenKeysNeverCreatesMasterKey(t *testing.T) {
	t.Setenv(keys.MasterKeyEnv, "") // not parallel: the environment; an empty value is unset for LoadMasterKey below
	os.Unsetenv(keys.MasterKeyEnv)
	dir := t.TempDir()
	_, err := OpenKeys(context.Background(), KeysConfig{Dir: dir}, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "no master key") {
		t.Fatalf("OpenKeys on an empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, keys.MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key was created: %v", err)
	}
	k, err := OpenKeys(context.Background(), KeysConfig{Dir: dir, CreateMasterKey: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	if _, err := os.Stat(filepath.Join(dir, keys.MasterKeyFile)); err != nil {
		t.Fatalf("CreateMasterKey: %v", err)
	}
}
