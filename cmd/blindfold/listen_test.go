package main

import (
	"strings"
	"testing"
	"time"

	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// TestInsecureListenFlags: --insecure-listen and --codec-insecure-listen reach the gateway config, which holds the
// listener rules (internal/gateway/listen.go); they are off by default. The per-IP limit's flags default to codecserver's.
func TestInsecureListenFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		args                  []string
		proxyInsecure, codecI bool
	}{
		{"default", nil, false, false},
		{"proxy", []string{"--insecure-listen"}, true, false},
		{"codec endpoint", []string{"--codec-insecure-listen"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := proxyFlags{}
			args := append([]string{"--upstream", "127.0.0.1:7234", "--codec-listen", "127.0.0.1:0"}, tt.args...)
			if err := newProxyCmdFor(&p).ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			cfg, err := p.gatewayConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Proxy.InsecureListen != tt.proxyInsecure || cfg.CodecEndpoint.InsecureListen != tt.codecI {
				t.Fatalf("proxy insecure %v, codec insecure %v; want %v, %v", cfg.Proxy.InsecureListen, cfg.CodecEndpoint.InsecureListen, tt.proxyInsecure, tt.codecI)
			}
			if ec := cfg.CodecEndpoint; ec.IPRateLimit != codecserver.DefaultIPRateLimit || ec.IPRateBurst != codecserver.DefaultIPRateBurst {
				t.Fatalf("per-IP limit %v burst %d, want the codecserver defaults", ec.IPRateLimit, ec.IPRateBurst)
			}
		})
	}
}

// TestProxyCommandRefusesTLSWithoutClientCA: inbound TLS without --client-ca beyond loopback is an unauthenticated
// decryption service; the command refuses it before serving, and --insecure-listen is the only way past.
func TestProxyCommandRefusesTLSWithoutClientCA(t *testing.T) {
	t.Parallel()
	_, cert, key, _, _ := writeTestPKI(t, t.TempDir())
	r := execute(newProxyCmd(), []string{"--upstream", "127.0.0.1:1", "--key-dir", newKeyDir(t), "--listen", "0.0.0.0:0",
		"--tls-cert", cert, "--tls-key", key, "--metrics-listen", ""})
	var err error
	select {
	case err = <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running:\n%s", r.out.String())
	}
	if err == nil || !strings.Contains(err.Error(), "0.0.0.0:0") || !strings.Contains(err.Error(), "--client-ca") {
		t.Fatalf("error %v, want a refusal naming the address and --client-ca", err)
	}
}
