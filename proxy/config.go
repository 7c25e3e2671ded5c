package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/grpc"

	"github.com/blindfold-dev/blindfold/codec"
)

// Message size defaults, aligned with Temporal v1.32: the frontend keeps gRPC's default 4 MiB receive limit (it sets
// none), and the SDK accepts responses of up to 128 MiB (sdk internal/grpc_dialer.go defaultMaxPayloadSize).
const (
	// DefaultMaxRecvMsgSize is the largest request the proxy accepts from callers, as the Temporal frontend does.
	DefaultMaxRecvMsgSize = 4 << 20
	// DefaultMaxSendMsgSize is the largest response the proxy sends to callers, and the largest message it exchanges
	// with the upstream, as the Temporal SDK does.
	DefaultMaxSendMsgSize = 128 << 20
)

// PayloadCodec encrypts and decrypts payloads for one namespace. *codec.Codec implements it.
//
// Both methods return a slice of the same length as ps, element i being the result for ps[i]. EncodeFor seals for
// t.Namespace with the key scope t.Scope names (the one the policy chose for the RPC; "" for the keyring's default
// scope), and must leave payloads it has already encrypted unchanged; Decode must leave payloads that are not its own
// unchanged. Errors must never contain payload content; they should name the key involved, since the proxy returns
// them to the caller. The proxy maps errors wrapping the codec package's sentinels (codec.ErrKeyUnavailable,
// codec.ErrKeyRejected, codec.ErrUnknownKey, ...) to gRPC codes; any other error is Internal.
type PayloadCodec interface {
	EncodeFor(ctx context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error)
	Decode(ctx context.Context, namespace string, ps []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// Observer receives counts from the proxy's encode and decode paths, so metrics can be collected without this package
// depending on a metrics library. Implementations must be safe for concurrent use and fast: they are called on every RPC
// that carries payloads. A nil Observer in Config disables the calls.
type Observer interface {
	// Encoded reports that payloads (count, with a total plaintext size of bytes, as protobuf-encoded Payload messages)
	// of namespace were passed to the codec's Encode successfully, in one request.
	Encoded(namespace string, payloads, bytes int)
	// Decoded reports that payloads (count, with a total plaintext size of bytes after decoding) of namespace came back
	// from the codec's Decode successfully, in one response.
	Decoded(namespace string, payloads, bytes int)
	// Error reports an RPC the proxy failed itself (not an upstream error), by kind: one of the ErrorKind constants.
	Error(namespace string, kind ErrorKind)
}

// ErrorKind classifies an error the proxy produced itself, for Observer.Error and logs.
type ErrorKind string

// The kinds of errors the proxy reports.
const (
	// KindEncode: the codec failed to encrypt a request's payloads for a reason not listed below (e.g. key provider).
	KindEncode ErrorKind = "encode"
	// KindDecode: the codec failed to decrypt a response's payloads for a reason not listed below.
	KindDecode ErrorKind = "decode"
	// KindKeyUnavailable: the key provider cannot produce the key now (KEK or key store down past the cache TTL, or a
	// keyset that does not unwrap); calls fail with UNAVAILABLE or FAILED_PRECONDITION.
	KindKeyUnavailable ErrorKind = "key_unavailable"
	// KindUnknownKey: a payload names a key the keyring does not have (or the namespace has no keys at all).
	KindUnknownKey ErrorKind = "unknown_key"
	// KindKeyDestroyed: a payload's key was crypto-shredded.
	KindKeyDestroyed ErrorKind = "key_destroyed"
	// KindTampered: a ciphertext failed authentication, or its envelope is truncated or malformed.
	KindTampered ErrorKind = "tampered"
	// KindWrongNamespace: a payload was sealed for another namespace.
	KindWrongNamespace ErrorKind = "wrong_namespace"
	// KindUnsupportedVersion: a payload's envelope has a format version the codec does not read.
	KindUnsupportedVersion ErrorKind = "unsupported_version"
	// KindNamespaceDenied: the request's namespace is not in Config.AllowedNamespaces.
	KindNamespaceDenied ErrorKind = "namespace_denied"
	// KindInvalidRequest: the request cannot be encrypted safely as sent (e.g. an embedded message of unknown type, a
	// failure with both plaintext text and encoded attributes, payloads without a namespace).
	KindInvalidRequest ErrorKind = "invalid_request"
	// KindCanceled: the caller's context ended while the codec was working.
	KindCanceled ErrorKind = "canceled"
	// KindPanic: a bug; the RPC failed with Internal instead of crashing the process.
	KindPanic ErrorKind = "panic"
)

// Config configures a Server. Upstream and Codec are required.
type Config struct {
	// Upstream is the Temporal frontend's address, host:port (any gRPC target, e.g. "dns:///temporal.internal:7233").
	Upstream string
	// UpstreamTLS, if set, secures the one upstream connection; put a client certificate in it for mTLS. Nil means
	// plaintext, which is only sensible on loopback or inside a service mesh.
	UpstreamTLS *tls.Config
	// APIKey, if set, is sent as "authorization: Bearer <APIKey>" on every upstream call, replacing any authorization
	// header a caller sent. It requires UpstreamTLS unless AllowAPIKeyWithoutTLS is set and Upstream is a loopback
	// address.
	APIKey string
	// AllowAPIKeyWithoutTLS permits APIKey over a plaintext upstream connection, for tests against a loopback server.
	AllowAPIKeyWithoutTLS bool

	// TLS, if set, secures the inbound side; set ClientAuth to tls.RequireAndVerifyClientCert for mTLS. Nil means
	// plaintext: anyone who can reach the listener reads decrypted payloads, so only do that on loopback.
	TLS *tls.Config

	// Codec encrypts and decrypts payloads. Required.
	Codec PayloadCodec
	// AllowedNamespaces, if not empty, is the only namespaces the proxy serves: calls for any other namespace (including
	// an empty one) fail with PermissionDenied before anything is forwarded, and ListNamespaces results are filtered.
	// Calls whose request has no namespace field (GetSystemInfo, GetClusterInfo, ListNamespaces, GetSearchAttributes) are
	// always allowed.
	AllowedNamespaces []string
	// Policy, if set, is consulted on every RPC, one snapshot per RPC (a *policy.Store reloads it while running): a
	// namespace without an entry in its namespaces section is refused with PermissionDenied, and the namespace's entry
	// decides what is encrypted (memo, headers, failure text, which search attributes), what happens to plaintext from
	// SDKs (encrypt, reject, pass) and the key scope (fixed, or per tenant: the scope is the codec.Target.Scope the
	// codec's EncodeFor gets). Nil keeps the built-in behaviour: every
	// namespace, everything but search attributes encrypted, the keyring's own scope per namespace. Both this and
	// AllowedNamespaces apply when both are set.
	Policy PolicySource

	// Auth, if set, authenticates every caller (client certificate or bearer token) and authorizes each call against
	// the access section of Policy (required then): the method's action (MethodActions) on the request's namespace.
	// Refusals are PermissionDenied or Unauthenticated, counted through Observer and written to Auth.Audit. Nil: no
	// caller authorization (whoever reaches the listener may call every method of every served namespace).
	Auth *AuthConfig

	// MaxRecvMsgSize is the largest request accepted from callers (default DefaultMaxRecvMsgSize).
	MaxRecvMsgSize int
	// MaxSendMsgSize is the largest response sent to callers and the largest message exchanged with the upstream
	// (default DefaultMaxSendMsgSize).
	MaxSendMsgSize int

	// Logger receives one record per RPC (method, namespace, code, duration; debug level when OK) and the proxy's own
	// errors. It never receives payload data or key material. Nil means slog.Default().
	Logger *slog.Logger
	// Observer, if set, receives payload counts and error kinds (see Observer).
	Observer Observer

	// UnaryInterceptors run outermost on every inbound call, in order, before the proxy's own (e.g. metrics, tracing).
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors run on every inbound streaming call (none of Temporal's services stream today).
	StreamInterceptors []grpc.StreamServerInterceptor
	// Reflection serves gRPC server reflection, so tools such as grpcurl can list and call the services. It reveals
	// only the (public) API schema.
	Reflection bool
	// ServerOptions are appended to the inbound server's options (e.g. a stats handler for tracing).
	ServerOptions []grpc.ServerOption
	// NewGRPCServer, if set, creates the inbound gRPC server from the proxy's server options instead of
	// grpc.NewServer. It lets replicas run as xDS-enabled servers (google.golang.org/grpc/xds.NewGRPCServer satisfies
	// it), so a control plane such as `blindfold xds` pushes them RBAC and mTLS settings; leave TLS nil then and pass
	// xDS server credentials in ServerOptions.
	NewGRPCServer func(opts ...grpc.ServerOption) (GRPCServer, error)
	// DialOptions are appended to the upstream connection's options (e.g. a stats handler for tracing).
	DialOptions []grpc.DialOption
}

// GRPCServer is the inbound server the proxy registers its services on and serves: *grpc.Server, or an xDS-enabled
// *xds.GRPCServer through Config.NewGRPCServer.
type GRPCServer interface {
	grpc.ServiceRegistrar
	// GetServiceInfo lists the registered services, for server reflection.
	GetServiceInfo() map[string]grpc.ServiceInfo
	Serve(lis net.Listener) error
	Stop()
	GracefulStop()
}

// ErrConfig is wrapped by every error New returns for an invalid Config.
var ErrConfig = errors.New("invalid proxy config")

func (c *Config) validate() error {
	if c.Upstream == "" {
		return fmt.Errorf("%w: upstream address is required", ErrConfig)
	}
	if c.Codec == nil {
		return fmt.Errorf("%w: codec is required", ErrConfig)
	}
	if c.MaxRecvMsgSize < 0 || c.MaxSendMsgSize < 0 {
		return fmt.Errorf("%w: message size limits must not be negative", ErrConfig)
	}
	if c.APIKey != "" && c.UpstreamTLS == nil {
		if !c.AllowAPIKeyWithoutTLS {
			return fmt.Errorf("%w: an API key needs upstream TLS (it would travel in plaintext)", ErrConfig)
		}
		if !isLoopbackTarget(c.Upstream) {
			return fmt.Errorf("%w: an API key without upstream TLS is only allowed for a loopback upstream, not %q", ErrConfig, c.Upstream)
		}
	}
	for _, ns := range c.AllowedNamespaces {
		if ns == "" {
			return fmt.Errorf("%w: empty namespace in the allowlist", ErrConfig)
		}
	}
	if c.Auth != nil {
		return c.Auth.validate(c)
	}
	return nil
}

// isLoopbackTarget reports whether a gRPC target names a loopback host (an IP literal or "localhost").
func isLoopbackTarget(target string) bool {
	if i := strings.Index(target, ":///"); i >= 0 {
		target = target[i+4:]
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
