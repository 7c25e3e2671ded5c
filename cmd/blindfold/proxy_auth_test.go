package main

import (
	"slices"
	"strings"
	"testing"
)

// TestProxyAuthFlags: the --auth-* flags reach the gateway config, and the combinations that cannot work are refused.
func TestProxyAuthFlags(t *testing.T) {
	t.Parallel()
	base := []string{"--upstream", "127.0.0.1:7234"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, p *proxyFlags)
	}{
		{"off by default", nil, "", func(t *testing.T, p *proxyFlags) {
			if p.auth.config() != nil {
				t.Error("auth configured without flags")
			}
		}},
		{"tokens and oidc", []string{"--policy", "p.yaml", "--auth-static-tokens", "t.yaml", "--auth-oidc-issuer", "https://idp",
			"--auth-oidc-audience", "blindfold", "--auth-oidc-groups-claim", "roles", "--auth-oidc-algorithm", "ES256",
			"--auth-oidc-jwks-url", "https://idp/keys", "--auth-audit-log", "a.jsonl"}, "", func(t *testing.T, p *proxyFlags) {
			cfg, err := p.gatewayConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			a := cfg.Proxy.Auth
			if a == nil || a.ClientCerts || a.StaticTokensFile != "t.yaml" || a.AuditLog != "a.jsonl" || a.OIDC == nil ||
				a.OIDC.Issuer != "https://idp" || !slices.Equal(a.OIDC.Audiences, []string{"blindfold"}) || a.OIDC.GroupsClaim != "roles" ||
				a.OIDC.SubjectClaim != "sub" || !slices.Equal(a.OIDC.Algorithms, []string{"ES256"}) || a.OIDC.JWKSURL != "https://idp/keys" {
				t.Errorf("auth config = %+v (oidc %+v)", a, a.OIDC)
			}
		}},
		{"client certs need a client ca", []string{"--policy", "p.yaml", "--auth-client-certs"}, "needs --client-ca", nil},
		{"auth needs a policy", []string{"--auth-static-tokens", "t.yaml"}, "need --policy", nil},
		{"issuer needs an audience", []string{"--policy", "p.yaml", "--auth-oidc-issuer", "https://idp"}, "--auth-oidc-audience", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &proxyFlags{}
			if err := newProxyCmdFor(p).ParseFlags(append(slices.Clone(base), tc.args...)); err != nil {
				t.Fatal(err)
			}
			err := p.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}
