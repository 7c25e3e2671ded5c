package codecserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/blindfold-dev/blindfold/policy"
)

// Authenticator establishes who sent a request. It returns an error wrapping ErrNoCredentials when the request carries
// none it understands, and any other error when credentials are present but not valid; both become 401.
type Authenticator interface {
	Authenticate(r *http.Request) (policy.Identity, error)
}

// ErrNoCredentials means the request carried no credentials the authenticator recognizes.
var ErrNoCredentials = errors.New("no credentials")

// ErrInvalidToken is wrapped by every error for credentials that were present but not accepted.
var ErrInvalidToken = errors.New("invalid token")

// TokenVerifier verifies a bare bearer token, without an HTTP request around it, so the gRPC proxy can authenticate
// its callers with the same verifiers (and token cache) as the codec endpoint. *OIDC, *StaticTokens and Chain
// implement it. Errors are typed as for Authenticator: ErrNoCredentials for an empty token, ErrInvalidToken for one
// that is not accepted, with ErrTokenNotRecognized too when the token is not of the verifier's kind.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (policy.Identity, error)
}

// ErrTokenNotRecognized is wrapped, next to ErrInvalidToken, by the error for a token an authenticator does not
// recognise as its own: not a JWT of its issuer, not one of its static tokens. A Chain then tries the next one.
var ErrTokenNotRecognized = errors.New("token not recognized")

// unrecognized is a refusal that also wraps ErrTokenNotRecognized, keeping the underlying message as it is.
type unrecognized struct{ err error }

func (e *unrecognized) Error() string   { return e.err.Error() }
func (e *unrecognized) Unwrap() []error { return []error{e.err, ErrTokenNotRecognized} }

func notRecognized(err error) error { return &unrecognized{err: err} }

// errNotAccepted is a Chain's refusal of a token none of its authenticators recognised. It is the same whatever was
// sent, so a caller learns nothing about which tokens or issuers exist.
var errNotAccepted = notRecognized(fmt.Errorf("%w: not accepted by any configured authenticator", ErrInvalidToken))

// bearer returns the token of an "Authorization: Bearer …" header (scheme case-insensitive), or "" if there is none.
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// bearerToken is the token of an Authorization header: ErrNoCredentials without one, an invalid-token error for a
// header that is not a bearer token.
func bearerToken(h string) (string, error) {
	if h == "" {
		return "", ErrNoCredentials
	}
	tok := bearer(h)
	if tok == "" {
		return "", fmt.Errorf("%w: Authorization header is not a bearer token", ErrInvalidToken)
	}
	return tok, nil
}

// Chain combines authenticators, so OIDC and static tokens can be configured together: each is tried in turn and
// the first that verifies the request's credentials decides. If none does, the request is refused with the reason
// of the first authenticator that recognised the token as its own (an expired JWT of the issuer says so), else with
// one message for every unrecognised token. Credentials that are present never fall through to an authenticator
// that needs none: Anonymous declines any request with an Authorization header.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (policy.Identity, error) {
	var errs []error
	for _, a := range c {
		id, err := a.Authenticate(r)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrNoCredentials) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return policy.Identity{}, ErrNoCredentials
	}
	return policy.Identity{}, chainError(errs)
}

// VerifyToken implements TokenVerifier over the authenticators that implement it; the others are skipped.
func (c Chain) VerifyToken(ctx context.Context, token string) (policy.Identity, error) {
	if token == "" {
		return policy.Identity{}, ErrNoCredentials
	}
	var errs []error
	for _, a := range c {
		v, ok := a.(TokenVerifier)
		if !ok {
			continue
		}
		id, err := v.VerifyToken(ctx, token)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	return policy.Identity{}, chainError(errs)
}

// chainError picks a Chain's refusal: the first authenticator's own refusal, else the one for unrecognised tokens.
func chainError(errs []error) error {
	for _, err := range errs {
		if !errors.Is(err, ErrTokenNotRecognized) && !errors.Is(err, ErrNoCredentials) {
			return err
		}
	}
	return errNotAccepted
}

// Anonymous gives every request without an Authorization header a fixed identity. It is for `blindfold dev` on loopback,
// where the Web UI cannot pass a token (it only does so to https endpoints); never use it on a reachable address.
type Anonymous struct {
	Identity policy.Identity
}

// Authenticate implements Authenticator.
func (a Anonymous) Authenticate(r *http.Request) (policy.Identity, error) {
	if r.Header.Get("Authorization") != "" {
		return policy.Identity{}, ErrNoCredentials
	}
	id := a.Identity
	id.Method = "anonymous"
	return id, nil
}

// StaticTokens accepts a fixed set of bearer tokens, each naming an identity. Meant for development and for service accounts
// where no OIDC issuer exists; tokens are compared in constant time.
type StaticTokens struct {
	entries []staticEntry
}

type staticEntry struct {
	sum [sha256.Size]byte
	id  policy.Identity
}

// NewStaticTokens builds a StaticTokens from token → identity. Empty tokens and identities without a subject are refused.
func NewStaticTokens(tokens map[string]policy.Identity) (*StaticTokens, error) {
	s := &StaticTokens{}
	for tok, id := range tokens {
		if tok == "" {
			return nil, errors.New("static token must not be empty")
		}
		if id.Subject == "" {
			return nil, errors.New("static token identity needs a subject")
		}
		id.Method = "static"
		s.entries = append(s.entries, staticEntry{sum: sha256.Sum256([]byte(tok)), id: id})
	}
	return s, nil
}

// Authenticate implements Authenticator.
func (s *StaticTokens) Authenticate(r *http.Request) (policy.Identity, error) {
	tok, err := bearerToken(r.Header.Get("Authorization"))
	if err != nil {
		return policy.Identity{}, err
	}
	return s.VerifyToken(r.Context(), tok)
}

// VerifyToken implements TokenVerifier. A token not in the set is not recognised (another authenticator of a Chain
// may know it).
func (s *StaticTokens) VerifyToken(_ context.Context, tok string) (policy.Identity, error) {
	if tok == "" {
		return policy.Identity{}, ErrNoCredentials
	}
	// Hashing first gives equal-length inputs to the constant-time compare; every entry is checked so timing does not reveal which matched.
	sum := sha256.Sum256([]byte(tok))
	match := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(sum[:], s.entries[i].sum[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return policy.Identity{}, notRecognized(fmt.Errorf("%w: unknown static token", ErrInvalidToken))
	}
	id := s.entries[match].id
	id.Groups = slices.Clone(id.Groups) // the set's own: a caller may not change what the next match returns
	return id, nil
}

// OIDCConfig configures OIDC JWT authentication.
type OIDCConfig struct {
	// Issuer is the issuer URL; tokens must carry exactly this "iss". Its /.well-known/openid-configuration is fetched at start unless JWKSURL is set.
	Issuer string
	// Audiences lists accepted "aud" values; a token must name at least one. Required.
	Audiences []string
	// JWKSURL, when set, skips discovery and fetches signing keys from here.
	JWKSURL string
	// SubjectClaim names the claim used as the identity's subject (default "sub"). Dotted paths reach nested claims.
	SubjectClaim string
	// GroupsClaim names the claim holding groups or roles (default "groups"); a list of strings or one space-separated string. Dotted paths reach nested claims, e.g. "realm_access.roles".
	GroupsClaim string
	// Algorithms restricts signing algorithms (default: what discovery advertises, else RS256).
	Algorithms []string
	// AcceptIDTokenFromExtras also accepts the ID token the Web UI sends in Authorization-Extras when the bearer access token
	// is not a JWT this issuer signed for one of the audiences (common when the UI's access token is for another API).
	AcceptIDTokenFromExtras bool
	// HTTPClient fetches discovery and keys (default http.DefaultClient).
	HTTPClient *http.Client
	// TokenCacheSize bounds how many verified tokens are remembered (default 10,000; negative: no cache), and
	// TokenCacheTTL how long one is trusted without verifying it again (default 1 minute; never past its "exp").
	// The CLI sends the same token with every payload; verifying its signature each time is most of a request's cost.
	TokenCacheSize int
	TokenCacheTTL  time.Duration
	// JWKSRefetchInterval is the least time between two fetches of the issuer's signing keys (default 30 s;
	// negative: no limit). go-oidc fetches them again whenever a token's signature does not verify against the keys
	// it holds (an unknown "kid", or simply a forged signature), so without a limit every forged token naming the
	// issuer would cost a request to it. Within the interval a fetch is answered from the last response (or its
	// failure): a token signed with a key the issuer published after the last fetch is refused until the interval
	// has passed, and so is every token needing a fetch after one that failed.
	JWKSRefetchInterval time.Duration
	// ClockSkew is how far this host's clock may be behind the issuer's: a token is still accepted that long after its
	// "exp" (default 0, at most MaxClockSkew). Keep it small: it extends every token's life by as much.
	ClockSkew time.Duration

	// now replaces time.Now for the verifier and the cache, so tests can move the clock.
	now func() time.Time
}

// Defaults of the OIDC token cache and key fetches.
const (
	DefaultTokenCacheSize      = 10000
	DefaultTokenCacheTTL       = time.Minute
	DefaultJWKSRefetchInterval = 30 * time.Second
	// MaxClockSkew bounds OIDCConfig.ClockSkew.
	MaxClockSkew = 5 * time.Minute
)

// OIDC verifies bearer JWTs against an OIDC issuer's JWKS: signature, issuer, audience, expiry and not-before.
type OIDC struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
	cache    *tokenCache // nil when disabled
}

// NewOIDC builds an OIDC authenticator. Without JWKSURL it performs discovery now, so the issuer must be reachable; ctx bounds that request
// and, through go-oidc, later key fetches use cfg.HTTPClient.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("oidc: issuer is required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("oidc: at least one audience is required")
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.TokenCacheSize == 0 {
		cfg.TokenCacheSize = DefaultTokenCacheSize
	}
	if cfg.TokenCacheTTL <= 0 {
		cfg.TokenCacheTTL = DefaultTokenCacheTTL
	}
	if cfg.JWKSRefetchInterval == 0 {
		cfg.JWKSRefetchInterval = DefaultJWKSRefetchInterval
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	// go-oidc keeps this context for later key-set refreshes, so it must outlive the constructor call. Its client
	// goes through the refetch limit.
	keyCtx := oidc.ClientContext(context.WithoutCancel(ctx), newJWKSClient(cfg.HTTPClient, cfg.JWKSRefetchInterval, cfg.now))
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	// The audience is checked here against a list rather than by go-oidc's single ClientID.
	if cfg.ClockSkew < 0 || cfg.ClockSkew > MaxClockSkew {
		return nil, fmt.Errorf("oidc: clock skew %s is outside 0 to %s", cfg.ClockSkew, MaxClockSkew)
	}
	verifierNow := cfg.now
	if skew := cfg.ClockSkew; skew > 0 {
		// go-oidc checks "exp" against Now (and allows its own fixed leeway on "nbf"): a clock set back by the skew
		// accepts a token that long after it expired.
		now := cfg.now
		verifierNow = func() time.Time { return now().Add(-skew) }
	}
	vc := &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: cfg.Algorithms, Now: verifierNow}
	var v *oidc.IDTokenVerifier
	if cfg.JWKSURL != "" {
		v = oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(keyCtx, cfg.JWKSURL), vc)
	} else {
		p, err := oidc.NewProvider(ctx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("oidc discovery for %s: %w", cfg.Issuer, err)
		}
		v = p.VerifierContext(keyCtx, vc)
	}
	o := &OIDC{cfg: cfg, verifier: v}
	if cfg.TokenCacheSize > 0 {
		o.cache = newTokenCache(cfg.TokenCacheSize, cfg.TokenCacheTTL)
	}
	return o, nil
}

// Authenticate implements Authenticator: the bearer token of Authorization, and with AcceptIDTokenFromExtras the
// token in Authorization-Extras if that one does not verify.
func (o *OIDC) Authenticate(r *http.Request) (policy.Identity, error) {
	h := r.Header.Get("Authorization")
	extras := strings.TrimSpace(r.Header.Get("Authorization-Extras"))
	if b := bearer(extras); b != "" {
		extras = b
	}
	if h == "" && (extras == "" || !o.cfg.AcceptIDTokenFromExtras) {
		return policy.Identity{}, ErrNoCredentials
	}
	var errs []error
	if h != "" {
		tok, err := bearerToken(h)
		if err == nil {
			var id policy.Identity
			if id, err = o.VerifyToken(r.Context(), tok); err == nil {
				return id, nil
			}
		}
		errs = append(errs, err)
	}
	if o.cfg.AcceptIDTokenFromExtras && extras != "" {
		id, err := o.VerifyToken(r.Context(), extras)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	// A token this issuer signed explains the refusal best (expired, wrong audience); else the first reason.
	for _, err := range errs {
		if !errors.Is(err, ErrTokenNotRecognized) {
			return policy.Identity{}, err
		}
	}
	return policy.Identity{}, errs[0]
}

// VerifyToken implements TokenVerifier: the JWT's signature, issuer, audience, expiry and not-before. A token that is
// not a JWT naming this issuer is refused as not recognised.
func (o *OIDC) VerifyToken(ctx context.Context, tok string) (policy.Identity, error) {
	if tok == "" {
		return policy.Identity{}, ErrNoCredentials
	}
	id, err := o.verify(ctx, tok)
	if err != nil && !o.claimsIssuer(tok) {
		return policy.Identity{}, notRecognized(err)
	}
	return id, err
}

// claimsIssuer reports whether raw looks like a JWT this issuer signed: three dot-separated parts whose payload names
// the issuer. It reads the unverified claims only to classify a refusal; it never accepts anything.
func (o *OIDC) claimsIssuer(raw string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	// go-oidc accepts Google's scheme-less "iss" for its issuer; classify it the same way.
	return c.Issuer == o.cfg.Issuer || o.cfg.Issuer == "https://accounts.google.com" && c.Issuer == "accounts.google.com"
}

// verify checks raw, or finds it in the cache of tokens verified earlier. Only successes are cached, keyed by the
// token's SHA-256, and only until the earlier of the token's expiry and the cache TTL: an expired token always goes
// back to the verifier, which refuses it.
func (o *OIDC) verify(ctx context.Context, raw string) (policy.Identity, error) {
	if o.cache == nil {
		id, _, err := o.verifyToken(ctx, raw)
		return id, err
	}
	sum := sha256.Sum256([]byte(raw))
	now := o.cfg.now()
	if id, ok := o.cache.get(sum, now); ok {
		return id, nil
	}
	id, exp, err := o.verifyToken(ctx, raw)
	if err != nil {
		return id, err
	}
	o.cache.put(sum, id, exp, now)
	return id, nil
}

// verifyToken is the full verification of a JWT; it also returns the token's expiry, which bounds its cache entry.
func (o *OIDC) verifyToken(ctx context.Context, raw string) (policy.Identity, time.Time, error) {
	tok, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return policy.Identity{}, time.Time{}, fmt.Errorf("%w: token expired at %s", ErrInvalidToken, exp.Expiry.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return policy.Identity{}, time.Time{}, fmt.Errorf("%w: %s", ErrInvalidToken, strings.TrimPrefix(err.Error(), "oidc: "))
	}
	ok := false
	for _, a := range tok.Audience {
		if slices.Contains(o.cfg.Audiences, a) {
			ok = true
			break
		}
	}
	if !ok {
		return policy.Identity{}, time.Time{}, fmt.Errorf("%w: audience %q is not accepted", ErrInvalidToken, tok.Audience)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return policy.Identity{}, time.Time{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	sub, _ := claim(claims, o.cfg.SubjectClaim).(string)
	if sub == "" {
		return policy.Identity{}, time.Time{}, fmt.Errorf("%w: no %q claim", ErrInvalidToken, o.cfg.SubjectClaim)
	}
	id := policy.Identity{Subject: sub, Method: "oidc", Issuer: tok.Issuer}
	switch g := claim(claims, o.cfg.GroupsClaim).(type) {
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && s != "" {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		id.Groups = strings.Fields(g)
	}
	return id, tok.Expiry, nil
}

// tokenCache remembers verified tokens by their SHA-256 (never the token itself), each until the earlier of its
// expiry and the TTL. Its size is bounded: when full it drops expired entries, then arbitrary ones.
type tokenCache struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	id    policy.Identity
	until time.Time
}

func newTokenCache(max int, ttl time.Duration) *tokenCache {
	return &tokenCache{max: max, ttl: ttl, m: map[[sha256.Size]byte]cachedToken{}}
}

// get returns the identity of a token verified earlier and still within its entry's lifetime at now.
func (c *tokenCache) get(sum [sha256.Size]byte, now time.Time) (policy.Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[sum]
	if !ok {
		return policy.Identity{}, false
	}
	if !now.Before(e.until) {
		delete(c.m, sum)
		return policy.Identity{}, false
	}
	e.id.Groups = slices.Clone(e.id.Groups)
	return e.id, true
}

// put remembers a token verified at now that expires at exp.
func (c *tokenCache) put(sum [sha256.Size]byte, id policy.Identity, exp, now time.Time) {
	until := now.Add(c.ttl)
	if !exp.IsZero() && exp.Before(until) {
		until = exp
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[sum]; !ok && len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k)
		}
	}
	// The groups slice is the cache's own: callers may not change what a later hit returns.
	id.Groups = slices.Clone(id.Groups)
	c.m[sum] = cachedToken{id: id, until: until}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// claim follows a dotted path through nested JSON objects; a key that itself contains dots is matched first.
func claim(m map[string]any, path string) any {
	if v, ok := m[path]; ok {
		return v
	}
	head, rest, ok := strings.Cut(path, ".")
	if !ok {
		return nil
	}
	sub, isMap := m[head].(map[string]any)
	if !isMap {
		return nil
	}
	return claim(sub, rest)
}

// compile-time checks
var (
	_ Authenticator = Chain(nil)
	_ Authenticator = Anonymous{}
	_ Authenticator = (*StaticTokens)(nil)
	_ Authenticator = (*OIDC)(nil)
	_ TokenVerifier = Chain(nil)
	_ TokenVerifier = (*StaticTokens)(nil)
	_ TokenVerifier = (*OIDC)(nil)
)
