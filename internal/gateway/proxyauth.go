package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// proxyAuth builds the proxy's AuthConfig: the same token verifiers as the codec endpoint, and the audit log (the
// endpoint's when they share a file, since an audit log has one writer).
func (g *Gateway) proxyAuth(ctx context.Context, cfg ProxyAuthConfig, ec *CodecEndpointConfig) (*proxy.AuthConfig, error) {
	a := &proxy.AuthConfig{ClientCerts: cfg.ClientCerts}
	var chain codecserver.Chain
	if cfg.OIDC != nil {
		o, err := codecserver.NewOIDC(ctx, *cfg.OIDC)
		if err != nil {
			return nil, fmt.Errorf("proxy authentication: %w", err)
		}
		chain = append(chain, o)
	}
	if cfg.StaticTokensFile != "" {
		st, err := LoadStaticTokens(cfg.StaticTokensFile)
		if err != nil {
			return nil, fmt.Errorf("proxy authentication: %w", err)
		}
		chain = append(chain, st)
	}
	if len(chain) > 0 {
		a.Tokens = authenticatorTokens{chain}
	}
	switch {
	case g.endpoint != nil && (cfg.AuditLog == "" || samePath(cfg.AuditLog, ec.AuditLog)):
		a.Audit = g.endpoint.audit
	case cfg.AuditLog != "":
		opts := policy.AuditOptions{SyncWindow: max(cfg.AuditSyncWindow, 0)}
		al, err := policy.OpenAuditWith(cfg.AuditLog, opts)
		if err != nil {
			return nil, fmt.Errorf("proxy authentication: %w", err)
		}
		g.onStop(func(context.Context) error { return al.Close() })
		a.Audit = al
	default:
		g.log.Warn("proxy authentication without an audit log: refused calls are logged and counted but not recorded (set an audit log)")
	}
	return a, nil
}

// samePath reports whether two paths name the same file as far as their absolute forms tell.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// authenticatorTokens verifies a bearer token with the codec endpoint's authenticators, by presenting it as the
// Authorization header of a request: the same code path, cache included, as an HTTP caller's token.
type authenticatorTokens struct{ a codecserver.Authenticator }

func (t authenticatorTokens) VerifyToken(ctx context.Context, token string) (policy.Identity, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", http.NoBody)
	if err != nil {
		return policy.Identity{}, fmt.Errorf("verify token: %w", err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	id, err := t.a.Authenticate(r)
	if errors.Is(err, codecserver.ErrNoCredentials) {
		return policy.Identity{}, fmt.Errorf("%w: no verifier recognizes the token", codecserver.ErrInvalidToken)
	}
	return id, err
}
