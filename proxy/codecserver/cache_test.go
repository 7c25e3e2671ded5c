package codecserver

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/blindfold-dev/blindfold/policy"
)

// clock is a settable time source shared by the OIDC verifier and its cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func bearerRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/decode", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// TestOIDCTokenCache checks that a cached token is trusted only until the earlier of its expiry and the TTL, that
// refused tokens are never cached, and that a token whose key was revoked stops working once its entry lapses.
func TestOIDCTokenCache(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	clk := &clock{t: time.Now()}
	o, err := NewOIDC(context.Background(), OIDCConfig{
		Issuer: iss.url, Audiences: []string{"blindfold-codec"}, TokenCacheTTL: 10 * time.Minute, now: clk.now,
	})
	if err != nil {
		t.Fatal(err)
	}

	// Expiry: the token's exp (2 min) is sooner than the TTL (10 min) and bounds the entry.
	short := iss.token(t, map[string]any{"exp": clk.now().Add(2 * time.Minute).Unix()})
	if _, err := o.Authenticate(bearerRequest(short)); err != nil {
		t.Fatal(err)
	}
	if n := o.cache.len(); n != 1 {
		t.Fatalf("cache holds %d tokens after one success, want 1", n)
	}
	if id, err := o.Authenticate(bearerRequest(short)); err != nil || id.Subject != "alice" || id.Issuer != iss.url {
		t.Fatalf("cached token: %+v %v", id, err)
	}
	clk.advance(3 * time.Minute)
	if _, err := o.Authenticate(bearerRequest(short)); err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("expired token accepted (from cache?): %v", err)
	}

	// Refused tokens are not cached, so they are refused every time.
	before := o.cache.len()
	for range 2 {
		if _, err := o.Authenticate(bearerRequest(iss.token(t, map[string]any{"aud": "someone-else"}))); err == nil {
			t.Fatal("wrong audience accepted")
		}
	}
	if o.cache.len() != before {
		t.Fatal("a refused token was cached")
	}

	// Revocation: once the signing key is gone from the verifier's key set, a cached token is accepted at most until
	// its entry's TTL ends, then refused.
	long := iss.token(t, nil)
	if _, err := o.Authenticate(bearerRequest(long)); err != nil {
		t.Fatal(err)
	}
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The issuer's key set after rotation: same issuer, the token's key removed.
	o.verifier = oidc.NewVerifier(iss.url, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{newKey.Public()}},
		&oidc.Config{SkipClientIDCheck: true, Now: clk.now})
	clk.advance(10*time.Minute + time.Second)
	if _, err := o.Authenticate(bearerRequest(long)); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("token accepted from the cache after its TTL, with its key revoked: %v", err)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newTokenCache(100, time.Minute)
	for i := range 1000 {
		c.put(sha256.Sum256(fmt.Append(nil, i)), policy.Identity{Subject: "s"}, now.Add(time.Hour), now)
		if c.len() > 100 {
			t.Fatalf("cache grew to %d entries, bound 100", c.len())
		}
	}
	// The newest entry survives eviction, and an entry past its expiry is never returned.
	if _, ok := c.get(sha256.Sum256(fmt.Append(nil, 999)), now); !ok {
		t.Fatal("newest entry evicted")
	}
	c.put(sha256.Sum256([]byte("soon")), policy.Identity{Subject: "s"}, now.Add(time.Second), now)
	if _, ok := c.get(sha256.Sum256([]byte("soon")), now.Add(time.Second)); ok {
		t.Fatal("entry returned at its expiry")
	}
	c.put(sha256.Sum256([]byte("expired")), policy.Identity{Subject: "s"}, now.Add(-time.Second), now)
	if _, ok := c.get(sha256.Sum256([]byte("expired")), now); ok {
		t.Fatal("an already expired token was cached")
	}
}

// TestDecisionCache checks that cached decisions equal the policy's, for identities that differ only subtly.
func TestDecisionCache(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	c := newDecisionCache(pol.Access)
	ids := []policy.Identity{
		{Subject: "alice", Groups: []string{"auditors"}, Method: "static"},
		{Subject: "alice", Method: "static"},
		{Subject: "alice", Groups: []string{"auditor", "s"}, Method: "static"},
		{Subject: "writer", Method: "oidc", Issuer: "https://idp"},
		{Subject: "alice:auditors", Method: "static"},
	}
	for range 2 { // the second round is answered from the cache
		for _, id := range ids {
			for _, ns := range []string{"default", "prod-eu", "payroll"} {
				for _, op := range []policy.Operation{policy.OpDecode, policy.OpEncode} {
					if got, want := c.Authorize(context.Background(), id, ns, op), pol.Access.Authorize(context.Background(), id, ns, op); got != want {
						t.Fatalf("%+v %s %s: cached %+v, policy %+v", id, ns, op, got, want)
					}
				}
			}
		}
	}
}

// TestRateLimitDefaults checks the default budget against the clients it is sized for, on a simulated clock.
func TestRateLimitDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// requests of payloads each, one every interval
		requests, payloads int
		interval           time.Duration
		wantDenied         bool
	}{
		{"CLI: 10,000 one-payload requests at 5,000/s", 10000, 1, 200 * time.Microsecond, false},
		{"CLI: 20,000 one-payload requests as fast as loopback allows", 20000, 1, 50 * time.Microsecond, false},
		{"UI: 100 pages of 100 payloads", 100, 100, time.Millisecond, false},
		{"one request with a 20,000-payload history", 1, 20000, 0, false},
		{"abuse: 100,000 one-payload requests at 10,000/s", 100000, 1, 100 * time.Microsecond, true},
		{"abuse: 20,000-payload requests every second", 5, 20000, time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter[userKey](DefaultRateLimit, DefaultRateBurst)
			now := time.Unix(1e9, 0)
			denied := false
			for range tt.requests {
				if ok, _ := l.allowN(userKey{method: "static", subject: "alice"}, tt.payloads, now); !ok {
					denied = true
					break
				}
				now = now.Add(tt.interval)
			}
			if denied != tt.wantDenied {
				t.Fatalf("denied %v, want %v", denied, tt.wantDenied)
			}
		})
	}
	if ok, wait := newLimiter[string](DefaultRateLimit, DefaultRateBurst).allowN("k", DefaultRateBurst+1, time.Now()); ok || wait != time.Duration(math.MaxInt64) {
		t.Fatalf("more than the burst: %v %s", ok, wait)
	}
}

// TestRateLimitCountsPayloads checks over HTTP that a request costs its payloads, and that one larger than the
// burst is refused as too large rather than told to retry.
func TestRateLimitCountsPayloads(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RateLimit = 0.001; c.RateBurst = 3 })
	three := body(t, f.seal("default", "a", "b", "c")...)
	if resp, b := f.do(req{path: "/default/decode", body: three, headers: auth("auditor-token")}); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if resp, b := f.do(req{path: "/default/decode", body: body(t, f.seal("default", "d")...), headers: auth("auditor-token")}); resp.StatusCode != 429 {
		t.Fatalf("after spending the burst: %d %s", resp.StatusCode, b)
	}
	four := body(t, f.seal("default", "a", "b", "c", "d")...)
	if resp, b := f.do(req{path: "/default/decode", body: four, headers: auth("writer-token")}); resp.StatusCode != 413 || !strings.Contains(b, "burst") {
		t.Fatalf("request over the burst: %d %s", resp.StatusCode, b)
	}
}

type fixedPolicy struct{ p atomic.Pointer[policy.Policy] }

func (f *fixedPolicy) Current() *policy.Policy { return f.p.Load() }

// TestAccessOfFollowsReloads: an authorizer over a policy source answers from the snapshot in force, so a reload
// that revokes an identity refuses its next request, while the cache keeps serving the unchanged snapshot.
func TestAccessOfFollowsReloads(t *testing.T) {
	t.Parallel()
	parse := func(subjects string) *policy.Policy {
		p, err := policy.Parse("p.yaml", []byte("version: 1\naccess:\n  rules:\n    - {name: r, subjects: ["+subjects+"], namespaces: [hr], operations: [decode]}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := &fixedPolicy{}
	src.p.Store(parse("erin, frank"))
	a := AccessOf(src)
	ctx := context.Background()
	erin := policy.Identity{Subject: "erin", Method: "oidc"}
	for range 2 {
		if !a.Authorize(ctx, erin, "hr", policy.OpDecode).Allow {
			t.Fatal("erin refused before the reload")
		}
	}
	src.p.Store(parse("frank"))
	if a.Authorize(ctx, erin, "hr", policy.OpDecode).Allow {
		t.Fatal("erin still allowed after the reload revoked her")
	}
	if !a.Authorize(ctx, policy.Identity{Subject: "frank", Method: "oidc"}, "hr", policy.OpDecode).Allow {
		t.Fatal("frank refused after the reload")
	}
}

// TestDecisionKeySANs: two identities that differ only in their certificate SANs do not share a cached decision.
func TestDecisionKeySANs(t *testing.T) {
	t.Parallel()
	a := policy.Identity{Subject: "x", Method: "mtls", SANs: []string{"spiffe://t/ns/hr/sa/w"}}
	b := policy.Identity{Subject: "x", Method: "mtls", SANs: []string{"spiffe://t/ns/pay/sa/w"}}
	if decisionKey(a, "hr", policy.OpWorker) == decisionKey(b, "hr", policy.OpWorker) {
		t.Fatal("identities differing in SANs share a decision key")
	}
}
