package gateway

import (
	"context"
	"fmt"
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
		a.Tokens = chain // codecserver.Chain.VerifyToken: the codec endpoint's verifiers, caches included
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
