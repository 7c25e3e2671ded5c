package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
	"github.com/blindfold-dev/blindfold/proxy/observe"
)

// DefaultServiceName names the gateway in traces.
const DefaultServiceName = "blindfold-proxy"

// Config is everything a gateway is built from. Keys are required, and Proxy.Upstream unless the gateway serves only
// the codec endpoint (an auditors' deployment with no proxy).
type Config struct {
	Keys KeysConfig
	// CompressThreshold zstd-compresses payloads of at least this many bytes before encryption (0: off).
	CompressThreshold int
	// MaxDecodedBytesPerResponse caps the bytes the compressed payloads of one response may expand to together when
	// the proxy decrypts it (codec.WithMaxDecodedTotal; 0: codec.DefaultMaxDecodedTotal). A response over it fails
	// with RESOURCE_EXHAUSTED. The codec endpoint's decode requests default to the same cap.
	MaxDecodedBytesPerResponse int
	// PolicyFile, if set, is the policy (docs/policy.md) the proxy consults on every RPC; it is watched and reloaded
	// on change or SIGHUP for as long as the gateway runs.
	PolicyFile string
	// PolicyStore, if set instead of PolicyFile, is a policy store the caller opened and keeps up to date itself
	// (an embedder, or a test that reloads on its own schedule).
	PolicyStore *policy.Store
	Proxy       ProxyConfig
	// CodecEndpoint, if set, serves the auditors' codec endpoint over the same codec.
	CodecEndpoint *CodecEndpointConfig
	// MetricsListen is the address of /metrics and /healthz (empty: off), served alongside the proxy.
	MetricsListen string
	// ServiceName names the gateway in traces (default DefaultServiceName). Traces are exported over OTLP when
	// OTEL_EXPORTER_OTLP_ENDPOINT is set.
	ServiceName string
	// Logger receives the gateway's records (never payload data or key material); nil discards them.
	Logger *slog.Logger
}

// ProxyConfig configures the gRPC proxy's two sides.
type ProxyConfig struct {
	// Listen is the address SDK clients and workers call; Listener, if set, is used instead (already bound).
	Listen   string
	Listener net.Listener
	// Upstream is the Temporal frontend, host:port or a gRPC target.
	Upstream string
	// UpstreamTLS secures the one outbound connection (nil: plaintext, for loopback).
	UpstreamTLS *tls.Config
	// APIKey is sent upstream as a bearer token.
	APIKey string
	// AllowAPIKeyWithoutTLS permits APIKey over a plaintext loopback upstream (tests).
	AllowAPIKeyWithoutTLS bool
	// TLS secures the inbound side (nil: plaintext).
	TLS *tls.Config
	// InsecureListen lets the proxy listen beyond loopback without authenticating its callers (plaintext, or TLS
	// without a client CA), for when something in front does (a mesh enforcing mTLS). Start refuses such a listener
	// otherwise (see listen.go) and logs a warning with it.
	InsecureListen bool
	// AllowedNamespaces, if not empty, is the only namespaces served.
	AllowedNamespaces []string
	// MaxRecvMsgSize is the largest request accepted (0: proxy.DefaultMaxRecvMsgSize).
	MaxRecvMsgSize int
	// Reflection serves gRPC server reflection.
	Reflection bool
	// XDSServer runs the inbound side as an xDS-enabled server: RBAC and mTLS come from the control plane named by the
	// gRPC xDS bootstrap. Without security settings from it the listener falls back to plaintext. Excludes TLS.
	XDSServer bool
	// UnaryInterceptors run on every inbound call after the gateway's metrics interceptor (tests, custom auth).
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// Observer, if set, receives the proxy's payload counts and error kinds too, after the gateway's metrics.
	Observer proxy.Observer
	// Auth, if set, authenticates every caller and authorizes each call by the policy's access section (so a policy,
	// PolicyFile or PolicyStore, is required). Nil: whoever reaches the listener may call everything it serves.
	Auth *ProxyAuthConfig
}

// ProxyAuthConfig configures who may call the gRPC proxy (proxy.AuthConfig): identities from client certificates
// and bearer tokens, the latter verified exactly as the codec endpoint verifies them (same OIDC and static-token
// verifiers, same file format), so one access section governs both doors.
type ProxyAuthConfig struct {
	// ClientCerts takes the identity from the verified client certificate (needs TLS with a client CA).
	ClientCerts bool
	// StaticTokensFile is a YAML list of {token, subject, groups} (LoadStaticTokens).
	StaticTokensFile string
	// OIDC, if set, verifies bearer JWTs against an issuer (codecserver.NewOIDC; its token cache applies).
	OIDC *codecserver.OIDCConfig
	// AuditLog is the hash-chained log every refused call is recorded in (door "grpc"). Empty: the codec endpoint's
	// log when the gateway serves one (one writer per file: the two doors share it), else refusals are only logged
	// and counted. The same path as the endpoint's also shares it.
	AuditLog string
	// AuditSyncWindow is as CodecEndpointConfig.AuditSyncWindow, for a log of the proxy's own (0: strict).
	AuditSyncWindow time.Duration
}

// tokensConfigured reports whether bearer tokens are accepted.
func (a *ProxyAuthConfig) tokensConfigured() bool {
	return a != nil && (a.StaticTokensFile != "" || a.OIDC != nil)
}

// observers hands every count to each of its observers in turn.
type observers []proxy.Observer

func (o observers) Encoded(namespace string, payloads, bytes int) {
	for _, x := range o {
		x.Encoded(namespace, payloads, bytes)
	}
}

func (o observers) Decoded(namespace string, payloads, bytes int) {
	for _, x := range o {
		x.Decoded(namespace, payloads, bytes)
	}
}

func (o observers) Error(namespace string, kind proxy.ErrorKind) {
	for _, x := range o {
		x.Error(namespace, kind)
	}
}

// Gateway is a running gateway. Stop it with Stop.
type Gateway struct {
	log      *slog.Logger
	keys     *Keys
	codec    *codec.Codec
	policy   *policy.Store
	proxy    *proxy.Server
	addr     string
	metrics  *http.Server
	maddr    string
	endpoint *codecEndpoint
	tracing  *observe.Tracing
	draining atomic.Bool
	errc     chan error
	// undo holds what Start started, in order; Stop and a failed Start run it backwards.
	undo []func(context.Context) error
}

// Start opens the keys, builds the codec, the proxy, the codec endpoint and the metrics listener, and serves them in
// goroutines. If any part fails, what was already started is stopped again before Start returns the error.
func Start(ctx context.Context, cfg Config) (_ *Gateway, err error) {
	if cfg.Proxy.Upstream == "" && cfg.CodecEndpoint == nil {
		return nil, errors.New("gateway: upstream address is required")
	}
	if cfg.Proxy.XDSServer && cfg.Proxy.TLS != nil {
		return nil, errors.New("gateway: an xDS server takes inbound TLS from the control plane; TLS must be nil")
	}
	if cfg.PolicyFile != "" && cfg.PolicyStore != nil {
		return nil, errors.New("gateway: give a policy file or a policy store, not both")
	}
	if a := cfg.Proxy.Auth; a != nil && cfg.Proxy.Upstream != "" {
		if cfg.PolicyFile == "" && cfg.PolicyStore == nil {
			return nil, errors.New("gateway: proxy authentication needs a policy (--policy): its access section says who may do what")
		}
		if !a.ClientCerts && !a.tokensConfigured() {
			return nil, errors.New("gateway: proxy authentication needs client certificates (--auth-client-certs) or tokens (--auth-static-tokens, --auth-oidc-issuer)")
		}
	}
	if cfg.CompressThreshold < 0 {
		return nil, errors.New("gateway: compression threshold must not be negative")
	}
	if cfg.MaxDecodedBytesPerResponse < 0 || cfg.CodecEndpoint != nil && cfg.CodecEndpoint.MaxDecodedBytesPerRequest < 0 {
		return nil, errors.New("gateway: decoded-size limits must not be negative")
	}
	g := &Gateway{log: cfg.Logger, errc: make(chan error, 3)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if err := checkListeners(cfg, g.log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = g.rollback(context.WithoutCancel(ctx))
		}
	}()

	// The policy, if any: the proxy takes a snapshot per RPC, and the scope it picks travels with every seal
	// (codec.Target), so no keyring option has to be remembered.
	if cfg.PolicyFile != "" {
		if g.policy, err = policy.NewStore(cfg.PolicyFile, policy.WithStoreLogger(g.log.With("component", "policy"))); err != nil {
			return nil, err
		}
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		watched := make(chan struct{})
		go func() { defer close(watched); _ = g.policy.Watch(wctx) }()
		g.onStop(func(context.Context) error { cancel(); <-watched; return nil })
		g.log.Info("policy loaded; watching for changes and SIGHUP", "file", cfg.PolicyFile)
	} else if cfg.PolicyStore != nil {
		g.policy = cfg.PolicyStore
	}
	if g.keys, err = OpenKeys(ctx, cfg.Keys, g.log.With("component", "keys")); err != nil {
		return nil, err
	}
	g.onStop(func(context.Context) error { g.keys.Close(); return nil })
	var copts []codec.Option
	if cfg.CompressThreshold > 0 {
		copts = append(copts, codec.WithCompression(cfg.CompressThreshold))
	}
	if cfg.MaxDecodedBytesPerResponse > 0 {
		copts = append(copts, codec.WithMaxDecodedTotal(cfg.MaxDecodedBytesPerResponse))
	}
	if g.codec, err = codec.New(g.keys.Manager, copts...); err != nil {
		return nil, err
	}
	if every := cfg.Keys.Plan().RotateEvery; every > 0 {
		stop := g.keys.Manager.StartRotation(context.WithoutCancel(ctx), every)
		g.onStop(func(context.Context) error { stop(); return nil })
	}

	m := observe.NewMetrics()
	if ec := cfg.CodecEndpoint; ec != nil {
		ec := *ec
		ec.onRefused = m.CodecRefused
		var scopes codecserver.ScopeSource
		if g.policy != nil {
			scopes = g.policy // the codec endpoint's encode seals under the scope the proxy's policy picks
		}
		var shared *policy.Store
		if g.policy != nil && cfg.PolicyFile != "" && samePath(ec.PolicyFile, cfg.PolicyFile) {
			// One file, one store: a reload reaches both doors in the same instant, so an auditor the operator
			// revokes is never refused by the proxy while the endpoint still decodes for them.
			shared = g.policy
		}
		if g.endpoint, err = startCodecEndpoint(ctx, ec, g.codec, scopes, shared, g.log.With("component", "codec-endpoint")); err != nil {
			return nil, err
		}
		g.onStop(func(ctx context.Context) error {
			// Its own deadline: the drain before it may have used up ctx's.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return g.endpoint.stop(sctx)
		})
		go func() {
			if err := <-g.endpoint.done; err != nil {
				g.errc <- fmt.Errorf("codec endpoint: %w", err)
			}
		}()
		g.log.Info("codec endpoint serving", "url", g.endpoint.url)
	}

	if g.tracing, err = observe.StartTracing(ctx, cmp.Or(cfg.ServiceName, DefaultServiceName)); err != nil {
		return nil, err
	}
	g.onStop(func(ctx context.Context) error {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := g.tracing.Shutdown(tctx); err != nil {
			g.log.Warn("tracing shutdown", "error", err)
		}
		return nil
	})
	if err := m.WatchKeys(g.keys.Manager); err != nil {
		return nil, err
	}

	if cfg.Proxy.Upstream == "" {
		return g, nil // the codec endpoint alone, for auditors
	}
	pc := cfg.Proxy
	pcfg := proxy.Config{
		Upstream: pc.Upstream, UpstreamTLS: pc.UpstreamTLS, APIKey: pc.APIKey, AllowAPIKeyWithoutTLS: pc.AllowAPIKeyWithoutTLS,
		TLS: pc.TLS, Codec: g.codec, AllowedNamespaces: pc.AllowedNamespaces, MaxRecvMsgSize: pc.MaxRecvMsgSize,
		Reflection: pc.Reflection, Logger: g.log.With("component", "proxy"), Observer: m,
		UnaryInterceptors: append([]grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()}, pc.UnaryInterceptors...),
		ServerOptions:     append([]grpc.ServerOption(nil), g.tracing.ServerOptions...),
		DialOptions:       append([]grpc.DialOption(nil), g.tracing.DialOptions...),
	}
	if pc.Observer != nil {
		pcfg.Observer = observers{m, pc.Observer}
	}
	if g.policy != nil {
		pcfg.Policy = g.policy // only when set: a nil *policy.Store in the interface would not read as "no policy"
	}
	if pc.Auth != nil {
		if pcfg.Auth, err = g.proxyAuth(ctx, *pc.Auth, cfg.CodecEndpoint); err != nil {
			return nil, err
		}
	}
	if pc.XDSServer {
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			return nil, fmt.Errorf("xds server credentials: %w", err)
		}
		pcfg.ServerOptions = append(pcfg.ServerOptions, grpc.Creds(creds))
		pcfg.NewGRPCServer = func(opts ...grpc.ServerOption) (proxy.GRPCServer, error) { return grpcxds.NewGRPCServer(opts...) }
	}
	if g.proxy, err = proxy.New(pcfg); err != nil {
		return nil, err
	}
	// The metrics listener (and its /healthz saying "draining") must outlive the drain, so it is stopped after the
	// proxy: its stop goes before this one in the undo list.
	proxyStop := len(g.undo)
	g.onStop(func(ctx context.Context) error {
		if err := g.proxy.Shutdown(ctx); err != nil {
			// Cut long polls are expected at a deadline: workers retry them elsewhere.
			g.log.Info("proxy drain ended at the deadline", "error", err)
		}
		return nil
	})
	lis := pc.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", pc.Listen); err != nil {
			return nil, fmt.Errorf("proxy listen: %w", err)
		}
	}
	g.addr = lis.Addr().String()

	if cfg.MetricsListen != "" {
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			_ = lis.Close()
			return nil, fmt.Errorf("metrics listen: %w", err)
		}
		g.maddr = mlis.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if g.draining.Load() {
				http.Error(w, "draining", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
		g.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := g.metrics.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		g.undo = slices.Insert(g.undo, proxyStop, func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := g.metrics.Shutdown(sctx); err != nil {
				return fmt.Errorf("metrics listener shutdown: %w", err)
			}
			return nil
		})
	}
	go func() {
		if err := g.proxy.Serve(lis); err != nil {
			g.errc <- err
		}
	}()
	return g, nil
}

func (g *Gateway) onStop(f func(context.Context) error) { g.undo = append(g.undo, f) }

func (g *Gateway) rollback(ctx context.Context) error {
	var errs []error
	for i := len(g.undo) - 1; i >= 0; i-- {
		errs = append(errs, g.undo[i](ctx))
	}
	g.undo = nil
	return errors.Join(errs...)
}

// Addr is the proxy's address (host:port), or "" for a gateway without a proxy.
func (g *Gateway) Addr() string { return g.addr }

// MetricsAddr is the metrics listener's address, or "" when it is off.
func (g *Gateway) MetricsAddr() string { return g.maddr }

// MetricsURL is the URL of /metrics, or "" when the listener is off.
func (g *Gateway) MetricsURL() string {
	if g.maddr == "" {
		return ""
	}
	return "http://" + g.maddr + "/metrics"
}

// CodecURL is the codec endpoint's base URL (for the Web UI's codec.endpoint or the CLI's --codec-endpoint), or "".
func (g *Gateway) CodecURL() string {
	if g.endpoint == nil {
		return ""
	}
	return g.endpoint.url
}

// Keys is the open key manager.
func (g *Gateway) Keys() *Keys { return g.keys }

// Codec is the codec every door of the gateway seals and opens with.
func (g *Gateway) Codec() *codec.Codec { return g.codec }

// TracingEnabled reports whether traces are exported.
func (g *Gateway) TracingEnabled() bool { return g.tracing.Enabled() }

// Done delivers the first error of a part that stopped serving on its own (proxy, metrics listener, codec endpoint).
func (g *Gateway) Done() <-chan error { return g.errc }

// Stop drains the proxy until ctx ends (long polls included; then they are cut), then stops the metrics listener, the
// codec endpoint (closing its audit log), tracing, rotation and the policy watch, and releases the KEK. /healthz
// answers 503 from the start of the drain, so a load balancer stops sending new calls.
func (g *Gateway) Stop(ctx context.Context) error {
	g.draining.Store(true)
	return g.rollback(ctx)
}
