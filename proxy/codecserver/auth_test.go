package codecserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/blindfold-dev/blindfold/policy"
)

// issuer is a real OIDC issuer on loopback: discovery document and JWKS served over HTTP, tokens signed with its private key.
type issuer struct {
	url string
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: "RS256"}}}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	srv.SetIssuer(hs.URL)
	return &issuer{url: hs.URL, key: key}
}

func (i *issuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	base := map[string]any{
		"iss": i.url, "sub": "alice", "aud": "blindfold-codec",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"groups": []string{"auditors"},
	}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	b, _ := json.Marshal(base)
	return oidctest.SignIDToken(i.key, "k1", "RS256", string(b))
}

func TestOIDC(t *testing.T) {
	iss := newIssuer(t)
	ctx := context.Background()
	o, err := NewOIDC(ctx, OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec", "other"}, AcceptIDTokenFromExtras: true})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims, _ := json.Marshal(map[string]any{"iss": iss.url, "sub": "alice", "aud": "blindfold-codec", "exp": time.Now().Add(time.Hour).Unix()})

	tests := []struct {
		name    string
		auth    string
		extras  string
		wantSub string
		wantErr string
	}{
		{"valid", "Bearer " + iss.token(t, nil), "", "alice", ""},
		{"lowercase scheme", "bearer " + iss.token(t, nil), "", "alice", ""},
		{"second audience", "Bearer " + iss.token(t, map[string]any{"aud": []string{"x", "other"}}), "", "alice", ""},
		{"expired", "Bearer " + iss.token(t, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), "", "", "token expired"},
		{"wrong audience", "Bearer " + iss.token(t, map[string]any{"aud": "someone-else"}), "", "", "audience"},
		{"wrong issuer", "Bearer " + iss.token(t, map[string]any{"iss": "https://evil.example"}), "", "", "different provider"},
		{"bad signature", "Bearer " + oidctest.SignIDToken(otherKey, "k1", "RS256", string(claims)), "", "", "invalid token"},
		{"unsupported algorithm", "Bearer " + oidctest.SignIDToken(ecKey, "k1", "ES256", string(claims)), "", "", "invalid token"},
		{"not a jwt", "Bearer abc.def", "", "", "invalid token"},
		{"no subject", "Bearer " + iss.token(t, map[string]any{"sub": nil}), "", "", `no "sub" claim`},
		{"not yet valid", "Bearer " + iss.token(t, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}), "", "", "nbf"},
		{"no credentials", "", "", "", "no credentials"},
		{"id token in extras", "Bearer opaque-access-token", iss.token(t, nil), "alice", ""},
		{"bad extras too", "Bearer opaque-access-token", "garbage", "", "invalid token"},
		{"extras only", "", iss.token(t, map[string]any{"sub": "bob"}), "bob", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/decode", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.extras != "" {
				r.Header.Set("Authorization-Extras", tc.extras)
			}
			id, err := o.Authenticate(r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != tc.wantSub || id.Method != "oidc" || id.Issuer != iss.url {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestOIDCClaims(t *testing.T) {
	iss := newIssuer(t)
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"},
		SubjectClaim: "email", GroupsClaim: "realm_access.roles", JWKSURL: iss.url + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/decode", nil)
	r.Header.Set("Authorization", "Bearer "+iss.token(t, map[string]any{
		"email": "alice@example.com", "realm_access": map[string]any{"roles": []string{"auditors", "sre"}},
	}))
	id, err := o.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice@example.com" || strings.Join(id.Groups, ",") != "auditors,sre" {
		t.Fatalf("%+v", id)
	}
	// Extras are ignored unless enabled.
	r = httptest.NewRequest(http.MethodPost, "/decode", nil)
	r.Header.Set("Authorization-Extras", iss.token(t, nil))
	if _, err := o.Authenticate(r); err == nil {
		t.Fatal("extras accepted without AcceptIDTokenFromExtras")
	}
}

func TestNewOIDCErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := NewOIDC(ctx, OIDCConfig{Audiences: []string{"a"}}); err == nil {
		t.Error("no issuer accepted")
	}
	if _, err := NewOIDC(ctx, OIDCConfig{Issuer: "http://127.0.0.1:1"}); err == nil {
		t.Error("no audience accepted")
	}
	if _, err := NewOIDC(ctx, OIDCConfig{Issuer: "http://127.0.0.1:1", Audiences: []string{"a"}}); err == nil {
		t.Error("unreachable issuer accepted")
	}
}

// TestOIDCEndToEnd puts the OIDC authenticator in front of the endpoint, as the UI with "pass access token" uses it.
func TestOIDCEndToEnd(t *testing.T) {
	iss := newIssuer(t)
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.Authenticator = o })
	good := body(t, f.seal("prod-eu", "JWT-MARKER")...)
	hdr := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-Namespace": "prod-eu", "Origin": uiOrigin, "Content-Type": "application/json"}
	}
	tests := []struct {
		name   string
		tok    string
		status int
	}{
		{"valid auditor", iss.token(t, nil), 200},
		{"valid but not an auditor", iss.token(t, map[string]any{"groups": []string{"devs"}}), 403},
		{"expired", iss.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), 401},
		{"wrong audience", iss.token(t, map[string]any{"aud": "ui"}), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := f.do(req{path: "/decode", body: good, headers: hdr(tc.tok)})
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if tc.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	recs := readAudit(t, f.auditLog)
	if recs[0].Identity.Issuer != iss.url || recs[0].Identity.Method != "oidc" || recs[0].Identity.Groups[0] != "auditors" {
		t.Fatalf("%+v", recs[0])
	}
}

func TestStaticAndChain(t *testing.T) {
	st, err := NewStaticTokens(map[string]policy.Identity{"dev-token": {Subject: "dev"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStaticTokens(map[string]policy.Identity{"": {Subject: "x"}}); err == nil {
		t.Error("empty token accepted")
	}
	if _, err := NewStaticTokens(map[string]policy.Identity{"t": {}}); err == nil {
		t.Error("identity without subject accepted")
	}
	chain := Chain{st, Anonymous{Identity: policy.Identity{Subject: "anonymous-dev"}}}
	for _, tc := range []struct {
		auth, sub, method string
		fails             bool
	}{
		{"Bearer dev-token", "dev", "static", false},
		{"", "anonymous-dev", "anonymous", false},
		{"Bearer wrong", "", "", true}, // a bad token never falls through to Anonymous
	} {
		r := httptest.NewRequest(http.MethodPost, "/decode", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		id, err := chain.Authenticate(r)
		if (err != nil) != tc.fails || id.Subject != tc.sub || id.Method != tc.method {
			t.Errorf("%q: %+v %v", tc.auth, id, err)
		}
	}
}

// TestOIDCClockSkew: a token that expired within the configured skew is still accepted, one past it is not, and a
// skew above MaxClockSkew is refused at construction.
func TestOIDCClockSkew(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	ctx := context.Background()
	expired := iss.token(t, map[string]any{"exp": time.Now().Add(-30 * time.Second).Unix()})
	for _, tc := range []struct {
		skew time.Duration
		ok   bool
	}{{0, false}, {time.Minute, true}, {10 * time.Second, false}} {
		o, err := NewOIDC(ctx, OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"}, ClockSkew: tc.skew})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.VerifyToken(ctx, expired); (err == nil) != tc.ok {
			t.Errorf("skew %s: token expired 30 s ago: %v, want accepted=%v", tc.skew, err, tc.ok)
		}
	}
	if _, err := NewOIDC(ctx, OIDCConfig{Issuer: iss.url, Audiences: []string{"a"}, ClockSkew: time.Hour}); err == nil {
		t.Error("a skew of an hour accepted")
	}
}
