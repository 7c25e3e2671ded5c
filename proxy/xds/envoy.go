package xds

import (
	"fmt"
	"net"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"
)

// EgressConfig describes the single outbound path from the proxy to the Temporal frontend through an Envoy sidecar:
// the proxy dials Envoy in plaintext on loopback, and Envoy alone holds the connection to the backend (TLS or mTLS).
type EgressConfig struct {
	// ListenAddr is where Envoy accepts the proxy's connection (default 127.0.0.1:7234). Keep it on loopback.
	ListenAddr string
	// Backend is the Temporal frontend, host:port (e.g. "my-ns.a1b2c.tmprl.cloud:7233"). Required.
	Backend string
	// SNI is the server name sent to and verified against the backend (default: Backend's host).
	SNI string
	// CAFile is the CA bundle the backend's certificate must chain to (default: the system bundle at
	// /etc/ssl/certs/ca-certificates.crt).
	CAFile string
	// ClientCertFile and ClientKeyFile, if set, make Envoy present a client certificate (mTLS to the backend).
	ClientCertFile, ClientKeyFile string
	// Plaintext turns upstream TLS off; only for a backend reached over a private link that terminates TLS itself.
	Plaintext bool
	// AdminAddr is Envoy's admin listener (default 127.0.0.1:9901). Keep it on loopback.
	AdminAddr string
	// ConnectTimeout bounds connecting to the backend (default 5 s).
	ConnectTimeout time.Duration
}

const egressClusterName = "temporal-frontend"

// EnvoyEgressBootstrap returns an Envoy bootstrap with one listener and one cluster: the proxy's only way out. Long
// polls last up to ~70 s, so the route has no timeout of its own; the proxy's and the SDK's deadlines govern. The
// bootstrap and every embedded config pass ValidateAll.
func EnvoyEgressBootstrap(cfg EgressConfig) (*bootstrapv3.Bootstrap, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:7234"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "127.0.0.1:9901"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.CAFile == "" {
		cfg.CAFile = "/etc/ssl/certs/ca-certificates.crt"
	}
	if cfg.Backend == "" {
		return nil, fmt.Errorf("%w: egress backend address is required", ErrConfig)
	}
	if (cfg.ClientCertFile == "") != (cfg.ClientKeyFile == "") {
		return nil, fmt.Errorf("%w: egress client certificate and key must be given together", ErrConfig)
	}
	backendHost, backendPort, err := splitHostPort(cfg.Backend)
	if err != nil {
		return nil, err
	}
	listenHost, listenPort, err := splitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	adminHost, adminPort, err := splitHostPort(cfg.AdminAddr)
	if err != nil {
		return nil, err
	}
	if cfg.SNI == "" {
		cfg.SNI = backendHost
	}

	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "egress",
		CodecType:  hcmv3.HttpConnectionManager_HTTP2,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "egress",
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "temporal",
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
						Grpc:          &routev3.RouteMatch_GrpcRouteMatchOptions{},
					},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: egressClusterName},
						Timeout:          durationpb.New(0),
					}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return nil, fmt.Errorf("marshal egress connection manager: %w", err)
	}
	protoOpts, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal egress protocol options: %w", err)
	}
	cluster := &clusterv3.Cluster{
		Name: egressClusterName,
		// Cloud frontends sit behind load balancers whose addresses rotate; LOGICAL_DNS keeps one connection target
		// and re-resolves only on new connections.
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		ConnectTimeout:       durationpb.New(cfg.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: egressClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(backendHost, backendPort)}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protoOpts},
	}
	if !cfg.Plaintext {
		tlsCtx := &tlsv3.UpstreamTlsContext{
			Sni: cfg.SNI,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols: []string{"h2"},
				TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: fileSource(cfg.CAFile),
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_DNS,
						Matcher: exactString(cfg.SNI),
					}},
				}},
			},
		}
		if cfg.ClientCertFile != "" {
			tlsCtx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(cfg.ClientCertFile),
				PrivateKey:       fileSource(cfg.ClientKeyFile),
			}}
		}
		a, err := anypb.New(tlsCtx)
		if err != nil {
			return nil, fmt.Errorf("marshal egress tls context: %w", err)
		}
		cluster.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
	}

	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: "blindfold-egress", Cluster: "blindfold"},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(adminHost, adminPort),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{{
				Name:    "temporal-egress",
				Address: socketAddress(listenHost, listenPort),
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
					Name:       hcmFilterName,
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
				}}}},
			}},
			Clusters: []*clusterv3.Cluster{cluster},
		},
	}
	if err := validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func splitHostPort(addr string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("%w: address %q is not host:port", ErrConfig, addr)
	}
	var port uint32
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil || port == 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: address %q has a bad port", ErrConfig, addr)
	}
	return host, port, nil
}

// MarshalYAML renders an Envoy proto as YAML with proto field names and sorted keys, so output is stable (protojson
// alone varies its whitespace on purpose) and diffs of generated configs are meaningful.
func MarshalYAML(m proto.Message) ([]byte, error) {
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T to json: %w", m, err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("convert %T to yaml: %w", m, err)
	}
	return y, nil
}

func exactString(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
