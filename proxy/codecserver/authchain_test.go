package codecserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/blindfold-dev/blindfold/policy"
)

// countingIssuer is an OIDC issuer on loopback that counts the fetches of its key set.
type countingIssuer struct {
	*issuer
	keyFetches atomic.Int64
}

func newCountingIssuer(t *testing.T) *countingIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: "RS256"}}}
	ci := &countingIssuer{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			ci.keyFetches.Add(1)
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	srv.SetIssuer(hs.URL)
	ci.issuer = &issuer{url: hs.URL, key: key}
	return ci
}

// forged signs claims for iss with a key the issuer never published, under a key ID it does not know.
func forged(t *testing.T, iss string, claims map[string]any) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]any{"iss": iss, "sub": "mallory", "aud": "blindfold-codec", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	b, _ := json.Marshal(base)
	return oidctest.SignIDToken(key, "unknown-kid", "RS256", string(b))
}

// TestChainCombinesOIDCAndStatic: with OIDC and static tokens configured together either may succeed, in either
// order; a refusal says why only for a token an authenticator recognised as its own, and is the same message for
// every unrecognised token.
func TestChainCombinesOIDCAndStatic(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStaticTokens(map[string]policy.Identity{"svc-token": {Subject: "svc", Groups: []string{"auditors"}}})
	if err != nil {
		t.Fatal(err)
	}
	valid := iss.token(t, nil)
	expired := iss.token(t, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})
	foreign := forged(t, "https://other-issuer.example", nil)
	tests := []struct {
		name     string
		auth     string
		method   string // of the identity; "" for a refusal
		wantErr  error
		contains string
	}{
		{"oidc token", "Bearer " + valid, "oidc", nil, ""},
		{"static token", "Bearer svc-token", "static", nil, ""},
		{"unknown opaque token", "Bearer guess", "", ErrTokenNotRecognized, "not accepted by any configured authenticator"},
		{"jwt of another issuer", "Bearer " + foreign, "", ErrTokenNotRecognized, "not accepted by any configured authenticator"},
		{"expired oidc token says so", "Bearer " + expired, "", ErrInvalidToken, "token expired"},
		{"forged oidc token", "Bearer " + forged(t, iss.url, nil), "", ErrInvalidToken, "signature"},
		{"not a bearer token", "Basic c3ZjOnB3", "", ErrInvalidToken, "not a bearer token"},
		{"no credentials", "", "", ErrNoCredentials, "no credentials"},
	}
	for _, order := range []struct {
		name  string
		chain Chain
	}{{"oidc first", Chain{o, st}}, {"static first", Chain{st, o}}} {
		for _, tt := range tests {
			t.Run(order.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				r := httptest.NewRequest(http.MethodPost, "/decode", nil)
				if tt.auth != "" {
					r.Header.Set("Authorization", tt.auth)
				}
				check := func(via string, id policy.Identity, err error) {
					t.Helper()
					if tt.method != "" {
						if err != nil || id.Method != tt.method {
							t.Fatalf("%s: %+v %v, want a %s identity", via, id, err, tt.method)
						}
						return
					}
					if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.contains) {
						t.Fatalf("%s: %v, want %v mentioning %q", via, err, tt.wantErr, tt.contains)
					}
					if tt.wantErr != ErrNoCredentials && !errors.Is(err, ErrInvalidToken) {
						t.Fatalf("%s: %v does not wrap ErrInvalidToken (the handler's 401 invalid_token)", via, err)
					}
				}
				id, err := order.chain.Authenticate(r)
				check("Authenticate", id, err)
				if tt.auth == "" || strings.HasPrefix(tt.auth, "Bearer ") {
					id, err := order.chain.VerifyToken(context.Background(), strings.TrimPrefix(tt.auth, "Bearer "))
					check("VerifyToken", id, err)
				}
			})
		}
	}
	// A bad token never falls through to an authenticator that needs none.
	r := httptest.NewRequest(http.MethodPost, "/decode", nil)
	r.Header.Set("Authorization", "Bearer guess")
	if id, err := (Chain{o, st, Anonymous{Identity: policy.Identity{Subject: "anon"}}}).Authenticate(r); err == nil {
		t.Fatalf("a bad token fell through to Anonymous: %+v", id)
	}
}

// TestVerifyToken: the verifiers the gRPC proxy reuses, called without a request.
func TestVerifyToken(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStaticTokens(map[string]policy.Identity{"svc-token": {Subject: "svc", Groups: []string{"g"}}})
	if err != nil {
		t.Fatal(err)
	}
	var verifiers = map[string]TokenVerifier{"oidc": o, "static": st, "chain": Chain{o, st}}
	tests := []struct {
		verifier, token, sub string
		wantErr              error
	}{
		{"oidc", iss.token(t, nil), "alice", nil},
		{"oidc", "", "", ErrNoCredentials},
		{"oidc", "svc-token", "", ErrTokenNotRecognized},
		{"oidc", iss.token(t, map[string]any{"aud": "other"}), "", ErrInvalidToken},
		{"static", "svc-token", "svc", nil},
		{"static", "", "", ErrNoCredentials},
		{"static", "svc-token ", "", ErrTokenNotRecognized},
		{"chain", "svc-token", "svc", nil},
		{"chain", iss.token(t, map[string]any{"sub": "bob"}), "bob", nil},
		{"chain", "", "", ErrNoCredentials},
	}
	for _, tt := range tests {
		id, err := verifiers[tt.verifier].VerifyToken(context.Background(), tt.token)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s %.20q: %v, want %v", tt.verifier, tt.token, err, tt.wantErr)
			}
			continue
		}
		if err != nil || id.Subject != tt.sub {
			t.Errorf("%s %.20q: %+v %v, want subject %q", tt.verifier, tt.token, id, err, tt.sub)
		}
	}
	// A static identity's groups are the caller's to change.
	id, _ := st.VerifyToken(context.Background(), "svc-token")
	id.Groups[0] = "changed"
	if again, _ := st.VerifyToken(context.Background(), "svc-token"); again.Groups[0] != "g" {
		t.Fatalf("groups shared between calls: %v", again.Groups)
	}
}

// countingAuth counts the requests whose credentials it is asked to verify.
type countingAuth struct {
	Authenticator
	calls atomic.Int64
}

func (c *countingAuth) Authenticate(r *http.Request) (policy.Identity, error) {
	c.calls.Add(1)
	return c.Authenticator.Authenticate(r)
}

// TestSourceLimitBeforeVerification: once a remote IP's request budget is spent, a forged token is answered 429
// without the verifier being called and without an audit record; the limit counts every request, valid or not.
func TestSourceLimitBeforeVerification(t *testing.T) {
	t.Parallel()
	var ca *countingAuth
	f := newFixture(t, func(c *Config) {
		ca = &countingAuth{Authenticator: c.Authenticator}
		c.Authenticator = ca
		c.IPRateLimit, c.IPRateBurst = 0.001, 3
	})
	good := body(t, f.seal("default", "x")...)
	if resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")}); resp.StatusCode != 200 {
		t.Fatalf("valid token: %d %s", resp.StatusCode, b)
	}
	for i := range 2 {
		if resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("forged")}); resp.StatusCode != 401 {
			t.Fatalf("forged token %d within the budget: %d %s", i, resp.StatusCode, b)
		}
	}
	records := len(readAudit(t, f.auditLog))
	for i := range 5 {
		resp, b := f.do(req{path: "/default/decode", body: good, headers: auth("forged")})
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("forged token %d past the budget: %d %s", i, resp.StatusCode, b)
		}
	}
	if resp, _ := f.do(req{path: "/default/decode", body: good, headers: auth("auditor-token")}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("valid token past the IP's budget: %d", resp.StatusCode)
	}
	if n := ca.calls.Load(); n != 3 {
		t.Fatalf("verifier called %d times, want 3 (only within the budget)", n)
	}
	if n := len(readAudit(t, f.auditLog)); n != records {
		t.Fatalf("refusals past the budget were audited: %d records, want %d", n, records)
	}
}

// TestJWKSRefetchBounded: go-oidc refetches the key set for every token whose signature its keys do not verify; a
// flood of forged tokens naming the issuer costs at most one fetch per JWKSRefetchInterval, a rotated-in key is
// picked up once the interval has passed, and valid tokens keep verifying throughout.
func TestJWKSRefetchBounded(t *testing.T) {
	t.Parallel()
	iss := newCountingIssuer(t)
	clk := &clock{t: time.Now()}
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"},
		JWKSRefetchInterval: 30 * time.Second, TokenCacheSize: -1, now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := o.VerifyToken(ctx, iss.token(t, nil)); err != nil {
		t.Fatal(err)
	}
	if n := iss.keyFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches for the first token, want 1", n)
	}
	bad := forged(t, iss.url, nil)
	for range 50 {
		if _, err := o.VerifyToken(ctx, bad); !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenNotRecognized) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n := iss.keyFetches.Load(); n != 1 {
		t.Fatalf("50 forged tokens within the interval caused %d key fetches in all, want 1", n)
	}
	if _, err := o.VerifyToken(ctx, iss.token(t, nil)); err != nil {
		t.Fatalf("valid token during the flood: %v", err)
	}
	clk.advance(31 * time.Second)
	for range 10 {
		o.VerifyToken(ctx, bad)
	}
	if n := iss.keyFetches.Load(); n != 2 {
		t.Fatalf("after the interval: %d key fetches in all, want 2", n)
	}
}

// TestEndpointOIDCAndStatic: through the handler, with OIDC configured a static token still succeeds (the chain no
// longer stops at OIDC's refusal), and an unknown token is a 401 invalid_token.
func TestEndpointOIDCAndStatic(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: iss.url, Audiences: []string{"blindfold-codec"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.Authenticator = Chain{o, c.Authenticator} })
	good := body(t, f.seal("prod-eu", "MARKER")...)
	for _, tt := range []struct {
		name, token string
		status      int
	}{
		{"oidc auditor", iss.token(t, nil), 200},
		{"static auditor", "auditor-token", 200},
		{"static without access", "nobody-token", 403},
		{"unknown", "guess", 401},
	} {
		resp, b := f.do(req{path: "/prod-eu/decode", body: good, headers: auth(tt.token)})
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, b, tt.status)
		}
		if tt.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
}
