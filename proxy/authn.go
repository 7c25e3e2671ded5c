package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/policy"
)

// Whoever reaches the proxy reads plaintext, so the proxy is the trust boundary: with Config.Auth set it establishes
// who every caller is (this file) and asks the policy's access rules whether that caller may do what the method does
// on the request's namespace (authz.go), before anything is decrypted or forwarded.

// AuthConfig turns on caller authentication and authorization on the gRPC side. It needs Config.Policy: the access
// rules come from the same policy snapshot the RPC is served under, so a reload applies to the next RPC.
type AuthConfig struct {
	// ClientCerts takes the identity from the verified client certificate (inbound mTLS) when no bearer token is
	// sent: the SPIFFE ID if the certificate has one, else its subject DN, with its DNS and URI SANs for rules
	// matching `sans:`. It needs inbound TLS that verifies client certificates (or an xDS server).
	ClientCerts bool
	// Tokens verifies bearer tokens (authorization: Bearer ...); nil: tokens are not accepted, and an authorization
	// header is ignored (it may be meant for the upstream). A token, when sent and accepted, wins over a certificate.
	Tokens TokenVerifier
	// Audit, if set, receives a record of every denial (door "grpc"). Allowed calls are not recorded: a worker's
	// polls would cost an fsync each.
	Audit *policy.AuditLog
}

// TokenVerifier verifies a bearer token and returns the identity it names. The codec endpoint's verifiers
// (codecserver OIDC, StaticTokens, Chain) implement it, so both doors accept the same tokens. Errors must not contain
// the token; the proxy also removes it from any message it returns. Implementations should cache verified tokens
// (codecserver.OIDC does, by the token's hash, until the earlier of its expiry and a TTL): VerifyToken is called on
// every RPC that carries a token.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (policy.Identity, error)
}

// ErrUnauthenticated is wrapped by the errors of authenticate: the call carries no credential the proxy accepts, or
// one that is not valid.
var ErrUnauthenticated = errors.New("unauthenticated")

// validate checks an AuthConfig against the rest of the Config: authorization without a policy, or without any way
// to authenticate, would either allow everyone or no one, so the proxy refuses to start.
func (a *AuthConfig) validate(c *Config) error {
	if c.Policy == nil {
		return fmt.Errorf("%w: caller authorization needs a policy (its access section holds the rules)", ErrConfig)
	}
	if !a.ClientCerts && a.Tokens == nil {
		return fmt.Errorf("%w: caller authorization needs client certificates or a token verifier", ErrConfig)
	}
	if a.ClientCerts && c.NewGRPCServer == nil {
		if c.TLS == nil {
			return fmt.Errorf("%w: identities from client certificates need inbound TLS", ErrConfig)
		}
		if c.TLS.ClientAuth < tls.VerifyClientCertIfGiven {
			return fmt.Errorf("%w: identities from client certificates need inbound TLS that verifies them (ClientAuth %s)", ErrConfig, c.TLS.ClientAuth)
		}
	}
	return nil
}

// accepted says what credentials the proxy takes, for the Unauthenticated message.
func (a *AuthConfig) accepted() string {
	switch {
	case a.ClientCerts && a.Tokens != nil:
		return "a client certificate (mutual TLS) or a bearer token (authorization: Bearer ...)"
	case a.ClientCerts:
		return "a client certificate (mutual TLS)"
	default:
		return "a bearer token (authorization: Bearer ...)"
	}
}

// authenticate establishes the caller's identity: a bearer token if one is sent and tokens are accepted, else the
// verified client certificate. Its errors are gRPC statuses (Unauthenticated) that never contain the token.
func (a *AuthConfig) authenticate(ctx context.Context) (policy.Identity, *authError) {
	if a.Tokens != nil {
		// ValueFromIncomingContext does not copy the caller's whole metadata, as FromIncomingContext would.
		if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
			if len(vals) > 1 {
				return policy.Identity{}, a.unauthenticated("the authorization header is sent %d times", len(vals))
			}
			tok := bearerToken(vals[0])
			if tok == "" {
				return policy.Identity{}, a.unauthenticated("the authorization header is not a bearer token")
			}
			id, err := a.Tokens.VerifyToken(ctx, tok)
			if err != nil {
				return policy.Identity{}, a.unauthenticated("bearer token not accepted: %s", strings.ReplaceAll(err.Error(), tok, "[token]"))
			}
			if id.Subject == "" && len(id.Groups) == 0 {
				return policy.Identity{}, a.unauthenticated("bearer token names no subject")
			}
			return id, nil
		}
	}
	if a.ClientCerts {
		if cert := verifiedClientCert(ctx); cert != nil {
			if n := spiffeIDs(cert); n > 1 {
				// The SPIFFE spec allows one: with two, the certificate would be named as one workload and match the
				// sans: rules of the other.
				return policy.Identity{}, a.unauthenticated("the client certificate has %d SPIFFE IDs; an X.509 SVID has exactly one", n)
			}
			return certIdentity(cert), nil
		}
	}
	return policy.Identity{}, a.unauthenticated("no credentials")
}

func (a *AuthConfig) unauthenticated(format string, args ...any) *authError {
	reason := fmt.Sprintf(format, args...)
	return &authError{
		kind:   KindUnauthenticated,
		reason: reason,
		st:     status.Newf(codes.Unauthenticated, "blindfold: authentication required: %s; send %s", reason, a.accepted()),
	}
}

// authError is a refused call: the status the caller gets, and the kind and reason for metrics and the audit log.
type authError struct {
	kind   ErrorKind
	reason string
	st     *status.Status
}

func (e *authError) Error() string              { return e.st.Message() }
func (e *authError) GRPCStatus() *status.Status { return e.st }
func (e *authError) Unwrap() error {
	if e.kind == KindUnauthenticated {
		return ErrUnauthenticated
	}
	return nil
}

// bearerToken returns the token of an "authorization: Bearer ..." value (scheme case-insensitive), or "".
func bearerToken(h string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// verifiedClientCert returns the caller's leaf certificate if the TLS handshake verified it against the trusted CAs,
// nil otherwise: a certificate that was only presented (ClientAuth RequireAnyClientCert) proves nothing.
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// spiffeIDs counts the URI SANs of scheme "spiffe".
func spiffeIDs(cert *x509.Certificate) int {
	n := 0
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			n++
		}
	}
	return n
}

// certIdentity is the identity a verified client certificate names: Subject is its SPIFFE ID (a URI SAN of scheme
// "spiffe") if it has one, since that is the workload's name in a SPIFFE mesh, else its subject DN; SANs are its DNS
// names and URIs.
func certIdentity(cert *x509.Certificate) policy.Identity {
	id := policy.Identity{Method: "mtls", Subject: cert.Subject.String()}
	spiffe := ""
	id.SANs = append(id.SANs, cert.DNSNames...)
	for _, u := range cert.URIs {
		id.SANs = append(id.SANs, u.String())
		if spiffe == "" && strings.EqualFold(u.Scheme, "spiffe") {
			spiffe = u.String()
		}
	}
	if spiffe != "" {
		id.Subject = spiffe
	}
	return id
}

// remoteAddr is the caller's address, for the audit log.
func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
