package authze2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
)

// TestStartupRefusals starts gateways whose listeners would let anyone in and checks that gateway.Start refuses each
// with an error naming the address, while the same listeners on loopback, or with the operator's explicit
// InsecureListen, or with client authentication, start. Nothing here needs the Temporal server: the proxy dials its
// upstream lazily, and a refusal comes before anything is opened.
func TestStartupRefusals(t *testing.T) {
	t.Parallel()
	pki, iss := testenv.NewPKI(t), newIssuer(t)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	testenv.WriteFileAtomic(t, policyPath, matrixPolicy)
	certPath, keyPath := pki.Server(t, "blindfold-gateway").Write(t, dir, "server.pem", "server-key.pem")
	upstream := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // nobody listens: never dialed before a call

	serverTLS := func() *tls.Config { return pki.ServerTLS(pki.Server(t, "blindfold-gateway"), false) }
	mTLS := func() *tls.Config { return pki.ServerTLS(pki.Server(t, "blindfold-gateway"), true) }
	proxyOnly := func(listen string, tc *tls.Config, insecure bool) func(*gateway.Config) {
		return func(c *gateway.Config) {
			c.Proxy = gateway.ProxyConfig{Upstream: upstream, Listen: listen, TLS: tc, InsecureListen: insecure}
		}
	}
	// withTokens adds bearer-token authentication (and the policy it needs) to a configuration; withoutPolicy drops it.
	withTokens := func(base func(*gateway.Config)) func(*gateway.Config) {
		return func(c *gateway.Config) {
			base(c)
			c.PolicyFile = policyPath
			c.Proxy.Auth = &gateway.ProxyAuthConfig{OIDC: iss.oidcConfig()}
		}
	}
	withoutPolicy := func(base func(*gateway.Config)) func(*gateway.Config) {
		return func(c *gateway.Config) { base(c); c.PolicyFile = "" }
	}
	var audits int
	endpointOnly := func(listen string, withTLS, withAuth, insecure bool) func(*gateway.Config) {
		return func(c *gateway.Config) {
			audits++
			ec := &gateway.CodecEndpointConfig{Listen: listen, PolicyFile: policyPath,
				AuditLog: filepath.Join(dir, fmt.Sprintf("audit-%d.jsonl", audits)), InsecureListen: insecure}
			if withTLS {
				ec.TLSCert, ec.TLSKey = certPath, keyPath
			}
			if withAuth {
				ec.OIDC = iss.oidcConfig()
			}
			c.Proxy, c.CodecEndpoint = gateway.ProxyConfig{}, ec
		}
	}
	tests := []struct {
		name    string
		cfg     func(*gateway.Config)
		refused string // a part of the error; "" if Start must succeed
	}{
		{"proxy: plaintext on 0.0.0.0", proxyOnly("0.0.0.0:0", nil, false), "plaintext on non-loopback address 0.0.0.0:0"},
		{"proxy: plaintext on all interfaces", proxyOnly(":0", nil, false), "non-loopback address :0"},
		{"proxy: TLS without a client CA on 0.0.0.0", proxyOnly("0.0.0.0:0", serverTLS(), false), "without client authentication"},
		{"proxy: plaintext on 0.0.0.0 with InsecureListen", proxyOnly("0.0.0.0:0", nil, true), ""},
		{"proxy: TLS without a client CA on 0.0.0.0 with InsecureListen", proxyOnly("0.0.0.0:0", serverTLS(), true), ""},
		{"proxy: mutual TLS on 0.0.0.0", proxyOnly("0.0.0.0:0", mTLS(), false), ""},
		{"proxy: TLS and bearer tokens on 0.0.0.0", withTokens(proxyOnly("0.0.0.0:0", serverTLS(), false)), ""},
		{"proxy: plaintext with bearer tokens on 0.0.0.0", withTokens(proxyOnly("0.0.0.0:0", nil, false)), "plaintext"},
		{"proxy: authentication without a policy", withoutPolicy(withTokens(proxyOnly("127.0.0.1:0", serverTLS(), false))), "needs a policy"},
		{"proxy: plaintext on loopback", proxyOnly("127.0.0.1:0", nil, false), ""},
		{"proxy: plaintext on localhost", proxyOnly("localhost:0", nil, false), ""},
		{"codec endpoint: no TLS on 0.0.0.0", endpointOnly("0.0.0.0:0", false, true, false), "without TLS"},
		{"codec endpoint: TLS without an authenticator on 0.0.0.0", endpointOnly("0.0.0.0:0", true, false, false), "without an authenticator"},
		{"codec endpoint: InsecureListen does not waive the authenticator", endpointOnly("0.0.0.0:0", false, false, true), "without an authenticator"},
		{"codec endpoint: no TLS on 0.0.0.0 with InsecureListen", endpointOnly("0.0.0.0:0", false, true, true), ""},
		{"codec endpoint: TLS and OIDC on 0.0.0.0", endpointOnly("0.0.0.0:0", true, true, false), ""},
		{"codec endpoint: no TLS on loopback", endpointOnly("127.0.0.1:0", false, true, false), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gateway.Config{Keys: gatewayenv.LocalKeys(filepath.Join(t.TempDir(), "keys")), Logger: testenv.DiscardLogger()}
			tc.cfg(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			g, err := gateway.Start(ctx, cfg)
			if err == nil {
				defer func() {
					if err := g.Stop(ctx); err != nil {
						t.Errorf("stop: %v", err)
					}
				}()
			}
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("gateway.Start refused an authenticated, loopback or explicitly insecure listener: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatalf("gateway.Start served it (proxy %q, codec endpoint %q), want a refusal mentioning %q", g.Addr(), g.CodecURL(), tc.refused)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Fatalf("gateway.Start refused with %q, want it to mention %q", err, tc.refused)
			}
		})
	}
}
