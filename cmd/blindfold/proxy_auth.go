package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// proxyAuthFlags configure who may call the gRPC proxy: identities from client certificates and bearer tokens,
// authorized by the access section of --policy. The token flags mirror the codec endpoint's (--codec-oidc-* become
// --auth-oidc-*), since both doors verify tokens the same way.
type proxyAuthFlags struct {
	clientCerts   bool
	staticTokens  string
	oidcIssuer    string
	oidcAudiences []string
	oidcJWKSURL   string
	oidcSubject   string
	oidcGroups    string
	oidcAlgs      []string
	oidcSkew      time.Duration
	auditLog      string
}

func (f *proxyAuthFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.clientCerts, "auth-client-certs", false, "authorize callers by their client certificate (needs --client-ca): "+
		"the identity is its SPIFFE ID, else its subject DN (e.g. CN=payments-worker), and its DNS/URI SANs match `sans:` rules of --policy")
	fs.StringVar(&f.staticTokens, "auth-static-tokens", "", "YAML file of bearer tokens callers may send, a list of {token, subject, groups} (as --codec-static-tokens)")
	fs.StringVar(&f.oidcIssuer, "auth-oidc-issuer", "", "OIDC issuer whose JWTs (authorization: Bearer ...) authenticate callers")
	fs.StringSliceVar(&f.oidcAudiences, "auth-oidc-audience", nil, "accepted JWT audience (repeatable; required with --auth-oidc-issuer)")
	fs.StringVar(&f.oidcJWKSURL, "auth-oidc-jwks-url", "", "fetch signing keys from this URL instead of OIDC discovery")
	fs.StringVar(&f.oidcSubject, "auth-oidc-subject-claim", "sub", "JWT claim naming the caller")
	fs.StringVar(&f.oidcGroups, "auth-oidc-groups-claim", "groups", "JWT claim holding groups or roles (dotted paths reach nested claims)")
	fs.StringSliceVar(&f.oidcAlgs, "auth-oidc-algorithm", nil, "accepted JWT signing algorithm (repeatable; default: what discovery advertises, else RS256)")
	fs.DurationVar(&f.oidcSkew, "auth-oidc-clock-skew", 0, "accept JWTs this long after their exp, for a clock behind the issuer's (at most 5m)")
	fs.StringVar(&f.auditLog, "auth-audit-log", "", "hash-chained audit log of refused calls (default: --codec-audit-log when the codec endpoint runs; the two share one file)")
}

// config is the proxy authentication the flags describe, nil when none is asked for.
func (f *proxyAuthFlags) config() *gateway.ProxyAuthConfig {
	if !f.clientCerts && f.staticTokens == "" && f.oidcIssuer == "" {
		return nil
	}
	c := &gateway.ProxyAuthConfig{ClientCerts: f.clientCerts, StaticTokensFile: f.staticTokens, AuditLog: f.auditLog}
	if f.oidcIssuer != "" {
		c.OIDC = &codecserver.OIDCConfig{
			Issuer: f.oidcIssuer, Audiences: f.oidcAudiences, JWKSURL: f.oidcJWKSURL,
			SubjectClaim: f.oidcSubject, GroupsClaim: f.oidcGroups, Algorithms: f.oidcAlgs, ClockSkew: f.oidcSkew,
		}
	}
	return c
}
