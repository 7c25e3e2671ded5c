package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// syncBuffer is a log sink safe for the concurrent writes of a gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCheckListeners covers every unsafe listener combination (each must be refused with an error naming the address
// and the fix) and the safe ones (loopback, mutual TLS, the escape hatches, which must log a warning).
func TestCheckListeners(t *testing.T) {
	t.Parallel()
	mTLS := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	serverTLS := &tls.Config{}
	optionalCert := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: x509.NewCertPool()}
	noCA := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert} // would verify against the system roots
	perConn := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool(),
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return &tls.Config{}, nil }}
	proxyCfg := func(listen string, c *tls.Config, insecure bool) Config {
		return Config{Proxy: ProxyConfig{Listen: listen, Upstream: "x:1", TLS: c, InsecureListen: insecure}}
	}
	oidc := &codecserver.OIDCConfig{Issuer: "https://login.example", Audiences: []string{"a"}}
	endpoint := func(listen, cert string, o *codecserver.OIDCConfig, static string, insecure bool) Config {
		return Config{CodecEndpoint: &CodecEndpointConfig{Listen: listen, TLSCert: cert, TLSKey: cert, OIDC: o,
			StaticTokensFile: static, InsecureListen: insecure}}
	}
	tests := []struct {
		name string
		cfg  Config
		// want are substrings of the refusal ("" accepts); warn is a substring of the logged warning ("" none).
		want []string
		warn string
	}{
		{"plaintext on all IPv4 interfaces", proxyCfg("0.0.0.0:7233", nil, false), []string{"0.0.0.0:7233", "plaintext", "--client-ca", "--insecure-listen"}, ""},
		{"plaintext on empty host", proxyCfg(":7233", nil, false), []string{`:7233`, "plaintext"}, ""},
		{"plaintext, empty address", proxyCfg("", nil, false), []string{"plaintext"}, ""},
		{"plaintext on all IPv6 interfaces", proxyCfg("[::]:7233", nil, false), []string{"[::]:7233", "plaintext"}, ""},
		{"plaintext on a private IP", proxyCfg("10.0.0.5:7233", nil, false), []string{"10.0.0.5:7233", "plaintext"}, ""},
		{"plaintext on a host name", proxyCfg("proxy.internal:7233", nil, false), []string{"proxy.internal:7233", "plaintext"}, ""},
		{"plaintext on an IPv6 address", proxyCfg("[2001:db8::1]:7233", nil, false), []string{"[2001:db8::1]:7233", "plaintext"}, ""},
		{"TLS without client CA on all interfaces", proxyCfg("0.0.0.0:7233", serverTLS, false), []string{"0.0.0.0:7233", "without client authentication", "--client-ca"}, ""},
		{"TLS without client CA on IPv6", proxyCfg("[::]:7233", serverTLS, false), []string{"[::]:7233", "without client authentication"}, ""},
		{"TLS without client CA on a host name", proxyCfg("proxy.internal:7233", serverTLS, false), []string{"proxy.internal:7233", "without client authentication"}, ""},
		{"optional client certificates", proxyCfg("0.0.0.0:7233", optionalCert, false), []string{"without client authentication"}, ""},
		{"optional client certificates, authorized by certificate", func() Config {
			c := proxyCfg("0.0.0.0:7233", optionalCert, false)
			c.Proxy.Auth = &ProxyAuthConfig{ClientCerts: true}
			return c
		}(), nil, ""},
		{"required client certificate, no CA", proxyCfg("0.0.0.0:7233", noCA, false), []string{"without client authentication"}, ""},
		{"per-connection TLS config", proxyCfg("0.0.0.0:7233", perConn, false), []string{"without client authentication"}, ""},
		{"xds server on all interfaces", Config{Proxy: ProxyConfig{Listen: ":7233", Upstream: "x:1", XDSServer: true}}, []string{"plaintext"}, ""},
		{"bad address", proxyCfg("7233", nil, false), []string{"proxy listener", `"7233"`}, ""},
		{"mutual TLS on all interfaces", proxyCfg("0.0.0.0:7233", mTLS, false), nil, ""},
		{"mutual TLS on IPv6", proxyCfg("[::]:7233", mTLS, false), nil, ""},
		{"plaintext on loopback", proxyCfg("127.0.0.1:7233", nil, false), nil, ""},
		{"plaintext on another loopback IP", proxyCfg("127.0.0.2:0", nil, false), nil, ""},
		{"plaintext on IPv6 loopback", proxyCfg("[::1]:7233", nil, false), nil, ""},
		{"plaintext on IPv6 loopback with a zone", proxyCfg("[::1%lo]:7233", nil, false), nil, ""},
		{"plaintext on localhost", proxyCfg("localhost:7233", nil, false), nil, ""},
		{"TLS without client CA on loopback", proxyCfg("127.0.0.1:7233", serverTLS, false), nil, ""},
		{"insecure listen, plaintext", proxyCfg("0.0.0.0:7233", nil, true), nil, "in plaintext, without client authentication"},
		{"insecure listen, TLS without client CA", proxyCfg(":7233", serverTLS, true), nil, "without client authentication (insecure listen)"},
		{"no proxy", Config{Proxy: ProxyConfig{Listen: "0.0.0.0:7233"}}, nil, ""},

		{"endpoint without TLS", endpoint("0.0.0.0:8081", "", oidc, "", false), []string{"0.0.0.0:8081", "without TLS", "--codec-tls-cert"}, ""},
		{"endpoint without TLS on empty host", endpoint(":8081", "", nil, "tokens.yaml", false), []string{":8081", "without TLS"}, ""},
		{"endpoint without TLS on IPv6", endpoint("[::]:8081", "", oidc, "", false), []string{"[::]:8081", "without TLS"}, ""},
		{"endpoint without authenticator", endpoint("0.0.0.0:8081", "c.pem", nil, "", false), []string{"0.0.0.0:8081", "without an authenticator", "--codec-static-tokens"}, ""},
		{"endpoint without either", endpoint("10.1.2.3:8081", "", nil, "", false), []string{"without TLS", "without an authenticator"}, ""},
		{"endpoint insecure listen keeps the authenticator", endpoint("0.0.0.0:8081", "", nil, "", true), []string{"without an authenticator"}, ""},
		{"endpoint TLS and OIDC", endpoint("0.0.0.0:8081", "c.pem", oidc, "", false), nil, ""},
		{"endpoint TLS and static tokens", endpoint("[::]:8081", "c.pem", nil, "tokens.yaml", false), nil, ""},
		{"endpoint on loopback without TLS", endpoint("127.0.0.1:8081", "", nil, "tokens.yaml", false), nil, ""},
		{"endpoint insecure listen behind an ingress", endpoint(":8081", "", oidc, "", true), nil, "without TLS (codec insecure listen)"},
		{"dev endpoint is left to requireLoopback", Config{CodecEndpoint: &CodecEndpointConfig{Listen: "0.0.0.0:8081", Dev: true}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			err := checkListeners(tt.cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			}
			switch out := logs.String(); {
			case tt.warn == "" && out != "":
				t.Errorf("unexpected log: %s", out)
			case tt.warn != "" && (!strings.Contains(out, tt.warn) || !strings.Contains(out, "level=WARN")):
				t.Errorf("log %q, want a warning with %q", out, tt.warn)
			}
		})
	}
}

// TestStartRefusesUnsafeListeners checks the rule is enforced by Start itself, before anything is opened: no
// listener, no audit log, and the error names the listener.
func TestStartRefusesUnsafeListeners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"proxy plaintext on all interfaces", Config{Keys: localKeys(t), Proxy: ProxyConfig{Listen: "0.0.0.0:0", Upstream: "127.0.0.1:1"}}, "0.0.0.0:0"},
		{"proxy TLS without client CA", Config{Keys: localKeys(t), Proxy: ProxyConfig{Listen: ":0", Upstream: "127.0.0.1:1", TLS: &tls.Config{}}}, "without client authentication"},
		{"codec endpoint without TLS", Config{Keys: localKeys(t), CodecEndpoint: &CodecEndpointConfig{Listen: "0.0.0.0:0",
			PolicyFile: "p.yaml", AuditLog: filepath.Join(dir, "refused.jsonl"), StaticTokensFile: "t.yaml"}}, "without TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := Start(context.Background(), tt.cfg)
			if err == nil {
				g.Stop(context.Background())
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(tt.cfg.Keys.Dir, keys.MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("keys were opened before the refusal: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "refused.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the audit log was opened before the refusal: %v", err)
	}
}

// TestStartInsecureListen: with InsecureListen the proxy serves beyond loopback and says so in the log.
func TestStartInsecureListen(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	g, err := Start(context.Background(), Config{
		Keys:   localKeys(t),
		Proxy:  ProxyConfig{Listen: "0.0.0.0:0", Upstream: "127.0.0.1:1", InsecureListen: true},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "insecure listen") || !strings.Contains(out, "listen=0.0.0.0:0") {
		t.Fatalf("no warning in the log:\n%s", out)
	}
}
