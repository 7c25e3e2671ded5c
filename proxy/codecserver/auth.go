package codecserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

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

// bearer returns the token of an "Authorization: Bearer …" header (scheme case-insensitive), or "" if there is none.
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Chain tries authenticators in order. The first that finds credentials decides: an invalid token is never passed on
// to a later authenticator, so a bad token cannot fall through to, say, Anonymous.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (policy.Identity, error) {
	for _, a := range c {
		id, err := a.Authenticate(r)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return id, err
	}
	return policy.Identity{}, ErrNoCredentials
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
	h := r.Header.Get("Authorization")
	if h == "" {
		return policy.Identity{}, ErrNoCredentials
	}
	tok := bearer(h)
	if tok == "" {
		return policy.Identity{}, fmt.Errorf("%w: Authorization header is not a bearer token", ErrInvalidToken)
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
		return policy.Identity{}, fmt.Errorf("%w: unknown static token", ErrInvalidToken)
	}
	return s.entries[match].id, nil
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
}

// OIDC verifies bearer JWTs against an OIDC issuer's JWKS: signature, issuer, audience, expiry and not-before.
type OIDC struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
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
	// go-oidc keeps this context for later key-set refreshes, so it must outlive the constructor call.
	keyCtx := context.WithoutCancel(ctx)
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
		keyCtx = oidc.ClientContext(keyCtx, cfg.HTTPClient)
	}
	// The audience is checked here against a list rather than by go-oidc's single ClientID.
	vc := &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: cfg.Algorithms}
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
	return &OIDC{cfg: cfg, verifier: v}, nil
}

// Authenticate implements Authenticator.
func (o *OIDC) Authenticate(r *http.Request) (policy.Identity, error) {
	h := r.Header.Get("Authorization")
	extras := strings.TrimSpace(r.Header.Get("Authorization-Extras"))
	if b := bearer(extras); b != "" {
		extras = b
	}
	if h == "" && (extras == "" || !o.cfg.AcceptIDTokenFromExtras) {
		return policy.Identity{}, ErrNoCredentials
	}
	var firstErr error
	if h != "" {
		tok := bearer(h)
		if tok == "" {
			firstErr = fmt.Errorf("%w: Authorization header is not a bearer token", ErrInvalidToken)
		} else {
			id, err := o.verify(r.Context(), tok)
			if err == nil {
				return id, nil
			}
			firstErr = err
		}
	}
	if o.cfg.AcceptIDTokenFromExtras && extras != "" {
		id, err := o.verify(r.Context(), extras)
		if err == nil {
			return id, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return policy.Identity{}, firstErr
}

func (o *OIDC) verify(ctx context.Context, raw string) (policy.Identity, error) {
	tok, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return policy.Identity{}, fmt.Errorf("%w: token expired at %s", ErrInvalidToken, exp.Expiry.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return policy.Identity{}, fmt.Errorf("%w: %s", ErrInvalidToken, strings.TrimPrefix(err.Error(), "oidc: "))
	}
	ok := false
	for _, a := range tok.Audience {
		if slices.Contains(o.cfg.Audiences, a) {
			ok = true
			break
		}
	}
	if !ok {
		return policy.Identity{}, fmt.Errorf("%w: audience %q is not accepted", ErrInvalidToken, tok.Audience)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return policy.Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	sub, _ := claim(claims, o.cfg.SubjectClaim).(string)
	if sub == "" {
		return policy.Identity{}, fmt.Errorf("%w: no %q claim", ErrInvalidToken, o.cfg.SubjectClaim)
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
	return id, nil
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
)
