package xds

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServerListenerTemplate is the server_listener_resource_name_template Blindfold's bootstraps use: an xDS-enabled
// replica listening on host:port asks for the listener named by it with %s replaced by host:port.
const ServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// Names of the HTTP filters in generated listeners.
const (
	routerFilterName    = "envoy.filters.http.router"
	rbacDenyFilterName  = "blindfold.rbac.deny"
	rbacAllowFilterName = "blindfold.rbac.allow"
	hcmFilterName       = "envoy.filters.network.http_connection_manager"
)

// LBPolicy is how clients spread calls over healthy replicas.
type LBPolicy string

// The load-balancing policies grpc-go's xDS client supports that make sense for a stateless proxy.
const (
	// RoundRobin sends each call to the next replica (the default).
	RoundRobin LBPolicy = "round_robin"
	// RingHash pins a client to a replica by consistent hashing, moving only 1/N of clients when a replica leaves.
	RingHash LBPolicy = "ring_hash"
)

// OutlierDetection ejects replicas whose calls fail more than the rest, before health checks notice. grpc-go's xDS
// client implements the failure-percentage algorithm used here (gRFC A50).
type OutlierDetection struct {
	// Interval between ejection sweeps (default 10 s).
	Interval time.Duration
	// BaseEjectionTime is how long a first ejection lasts (default 30 s).
	BaseEjectionTime time.Duration
	// MaxEjectionPercent caps how many replicas may be ejected at once (default 50).
	MaxEjectionPercent uint32
	// FailurePercentageThreshold: a replica failing at least this percentage of its calls is ejected (default 50).
	FailurePercentageThreshold uint32
	// MinimumHosts is how many replicas must exist before any is ejected (default 3).
	MinimumHosts uint32
	// RequestVolume is how many calls a replica must have served in an interval to be judged (default 20).
	RequestVolume uint32
}

// ServerTLS is the transport security pushed to xDS-enabled replicas. The certificates come from certificate provider
// instances named in each replica's bootstrap (e.g. a file watcher on a mounted Kubernetes secret), so no key material
// ever travels over xDS.
type ServerTLS struct {
	// CertProviderInstance names the bootstrap certificate provider holding the replica's certificate and key.
	CertProviderInstance string
	// RootProviderInstance names the provider holding the CA that client certificates must chain to. Required when
	// RequireClientCert is set; defaults to CertProviderInstance.
	RootProviderInstance string
	// RequireClientCert turns on mTLS: callers without a valid client certificate are refused, and RBAC principals
	// of kind "authenticated" match the certificate's SAN (or subject).
	RequireClientCert bool
}

// Replica is one proxy replica as xDS clients see it.
type Replica struct {
	// Addr is host:port, an IP address (xDS endpoints carry no names).
	Addr string
	// Weight is the replica's load-balancing weight (0 means 1).
	Weight uint32
	// Healthy is false for replicas that failed their health check; they are left out of endpoints.
	Healthy bool
}

// ResourceConfig names and shapes the resources the control plane serves.
type ResourceConfig struct {
	// ServiceName is what clients dial, as xds:///ServiceName. It names the client listener (default "blindfold-proxy").
	ServiceName string
	// LBPolicy defaults to RoundRobin.
	LBPolicy LBPolicy
	// OutlierDetection, if set, is put on the cluster.
	OutlierDetection *OutlierDetection
	// RBAC is the server-side authorization pushed to xDS-enabled replicas.
	RBAC RBACConfig
	// ServerTLS, if set, secures the inbound side of xDS-enabled replicas.
	ServerTLS *ServerTLS
}

func (c ResourceConfig) withDefaults() ResourceConfig {
	if c.ServiceName == "" {
		c.ServiceName = "blindfold-proxy"
	}
	if c.LBPolicy == "" {
		c.LBPolicy = RoundRobin
	}
	return c
}

func (c ResourceConfig) routeName() string   { return c.ServiceName + "-route" }
func (c ResourceConfig) clusterName() string { return c.ServiceName + "-cluster" }
func (c ResourceConfig) edsName() string     { return c.ServiceName + "-endpoints" }
func (c ResourceConfig) serverRouteName() string {
	return c.ServiceName + "-server-route"
}

// Resources is one complete set of xDS resources: what a snapshot holds.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// all returns every resource, for validation.
func (r Resources) all() []proto.Message {
	var out []proto.Message
	for _, l := range r.Listeners {
		out = append(out, l)
	}
	for _, x := range r.Routes {
		out = append(out, x)
	}
	for _, c := range r.Clusters {
		out = append(out, c)
	}
	for _, e := range r.Endpoints {
		out = append(out, e)
	}
	return out
}

// BuildResources returns the resources for a fleet: the client listener (an API listener whose HttpConnectionManager
// takes its routes over RDS), its route configuration, the EDS cluster and its endpoints (healthy replicas only), and
// one server-side listener per address in serverAddrs (the addresses xDS-enabled replicas listen on), all sharing one
// RDS route configuration that carries RBAC. Every resource passes ValidateAll.
func BuildResources(cfg ResourceConfig, replicas []Replica, serverAddrs []string) (Resources, error) {
	cfg = cfg.withDefaults()
	var res Resources

	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: cfg.routeName(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return Resources{}, fmt.Errorf("marshal client http connection manager: %w", err)
	}
	res.Listeners = append(res.Listeners, &listenerv3.Listener{
		Name:        cfg.ServiceName,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcmAny},
	})
	res.Routes = append(res.Routes, &routev3.RouteConfiguration{
		Name: cfg.routeName(),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    cfg.ServiceName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cfg.clusterName()},
					HashPolicy:       hashPolicy(cfg.LBPolicy),
				}},
			}},
		}},
	})
	cl, err := buildCluster(cfg)
	if err != nil {
		return Resources{}, err
	}
	res.Clusters = append(res.Clusters, cl)
	cla, err := buildEndpoints(cfg, replicas)
	if err != nil {
		return Resources{}, err
	}
	res.Endpoints = append(res.Endpoints, cla)

	if len(serverAddrs) > 0 {
		rc, err := buildServerRoute(cfg)
		if err != nil {
			return Resources{}, err
		}
		res.Routes = append(res.Routes, rc)
		addrs := append([]string(nil), serverAddrs...)
		sort.Strings(addrs)
		for _, a := range addrs {
			l, err := buildServerListener(cfg, a)
			if err != nil {
				return Resources{}, err
			}
			res.Listeners = append(res.Listeners, l)
		}
	}
	for _, m := range res.all() {
		if err := validate(m); err != nil {
			return Resources{}, err
		}
	}
	return res, nil
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func routerFilter() *hcmv3.HttpFilter {
	a, _ := anypb.New(&routerv3.Router{}) // an empty message always marshals
	return &hcmv3.HttpFilter{Name: routerFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

// hashPolicy makes ring hash useful for gRPC: without a hash policy grpc-go hashes randomly per call. Hashing on the
// channel id keeps each client connection on one replica.
func hashPolicy(p LBPolicy) []*routev3.RouteAction_HashPolicy {
	if p != RingHash {
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{{
		PolicySpecifier: &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: "io.grpc.channel_id"}},
	}}
}

func buildCluster(cfg ResourceConfig) (*clusterv3.Cluster, error) {
	cl := &clusterv3.Cluster{
		Name:                 cfg.clusterName(),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: cfg.edsName()},
	}
	switch cfg.LBPolicy {
	case RoundRobin:
		cl.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case RingHash:
		cl.LbPolicy = clusterv3.Cluster_RING_HASH
		cl.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH,
			MinimumRingSize: wrapperspb.UInt64(1024),
			MaximumRingSize: wrapperspb.UInt64(8 << 20),
		}}
	default:
		return nil, fmt.Errorf("%w: unknown load-balancing policy %q (want %q or %q)", ErrConfig, cfg.LBPolicy, RoundRobin, RingHash)
	}
	if od := cfg.OutlierDetection; od != nil {
		cl.OutlierDetection = &clusterv3.OutlierDetection{
			Interval:                           durationpb.New(orDuration(od.Interval, 10*time.Second)),
			BaseEjectionTime:                   durationpb.New(orDuration(od.BaseEjectionTime, 30*time.Second)),
			MaxEjectionPercent:                 wrapperspb.UInt32(orUint(od.MaxEjectionPercent, 50)),
			FailurePercentageThreshold:         wrapperspb.UInt32(orUint(od.FailurePercentageThreshold, 50)),
			EnforcingFailurePercentage:         wrapperspb.UInt32(100),
			FailurePercentageMinimumHosts:      wrapperspb.UInt32(orUint(od.MinimumHosts, 3)),
			FailurePercentageRequestVolume:     wrapperspb.UInt32(orUint(od.RequestVolume, 20)),
			EnforcingSuccessRate:               wrapperspb.UInt32(0),
			EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(0),
		}
	}
	return cl, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orUint(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

func buildEndpoints(cfg ResourceConfig, replicas []Replica) (*endpointv3.ClusterLoadAssignment, error) {
	var lbs []*endpointv3.LbEndpoint
	rs := append([]Replica(nil), replicas...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Addr < rs[j].Addr })
	for _, r := range rs {
		if !r.Healthy {
			continue
		}
		host, port, err := splitIPPort(r.Addr)
		if err != nil {
			return nil, err
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(host, port),
			}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(orUint(r.Weight, 1)),
		})
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cfg.edsName()}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{Zone: "default"},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		}}
	}
	return cla, nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// splitIPPort parses host:port where host is an IP literal.
func splitIPPort(addr string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: replica address %q: %v", ErrConfig, addr, err)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%w: replica address %q: host must be an IP address", ErrConfig, addr)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%w: replica address %q: bad port", ErrConfig, addr)
	}
	return host, uint32(port), nil
}

// buildServerRoute is the route configuration of xDS-enabled replicas: every call is served locally
// (NonForwardingAction). RBAC lives in the listener's HTTP filters.
func buildServerRoute(cfg ResourceConfig) (*routev3.RouteConfiguration, error) {
	return &routev3.RouteConfiguration{
		Name: cfg.serverRouteName(),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "inbound",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			}},
		}},
	}, nil
}

// ServerListenerName is the listener resource an xDS-enabled replica listening on addr (host:port) asks for.
func ServerListenerName(addr string) string { return fmt.Sprintf(ServerListenerTemplate, addr) }

// ServerListenerAddr returns the listening address named by a server listener resource name, and whether name is one.
func ServerListenerAddr(name string) (string, bool) {
	prefix := strings.TrimSuffix(ServerListenerTemplate, "%s")
	if !strings.HasPrefix(name, prefix) {
		return "", false
	}
	addr := strings.TrimPrefix(name, prefix)
	if _, _, err := splitIPPort(addr); err != nil {
		return "", false
	}
	return addr, true
}

func buildServerListener(cfg ResourceConfig, addr string) (*listenerv3.Listener, error) {
	host, port, err := splitIPPort(addr)
	if err != nil {
		return nil, err
	}
	filters, err := cfg.RBAC.httpFilters()
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: cfg.serverRouteName(),
		}},
		HttpFilters: append(filters, routerFilter()),
	}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return nil, fmt.Errorf("marshal server http connection manager: %w", err)
	}
	var ts *corev3.TransportSocket
	if cfg.ServerTLS != nil {
		if ts, err = cfg.ServerTLS.transportSocket(); err != nil {
			return nil, err
		}
	}
	// One filter chain matching every connection: a default filter chain is what grpc-go falls back to, and unlike
	// per-prefix chains it works for IPv4, IPv6 and loopback alike.
	return &listenerv3.Listener{
		Name:    ServerListenerName(addr),
		Address: socketAddress(host, port),
		DefaultFilterChain: &listenerv3.FilterChain{
			Name: "blindfold-inbound",
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
			TransportSocket: ts,
		},
	}, nil
}

func (t *ServerTLS) transportSocket() (*corev3.TransportSocket, error) {
	if t.CertProviderInstance == "" {
		return nil, fmt.Errorf("%w: server TLS needs a certificate provider instance", ErrConfig)
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: t.CertProviderInstance},
	}}
	if t.RequireClientCert {
		root := t.RootProviderInstance
		if root == "" {
			root = t.CertProviderInstance
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: root},
			},
		}
	}
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("marshal downstream tls context: %w", err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// validator is what every generated Envoy proto implements (protoc-gen-validate).
type validator interface {
	ValidateAll() error
}

// validate runs a message's protoc-gen-validate rules. Embedded Anys are checked too: the rules don't descend into
// them, so they are unpacked and validated one by one.
func validate(m proto.Message) error {
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("%T has no ValidateAll", m)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("validate %T: %w", m, err)
	}
	var anyErr error
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		if anyErr != nil {
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			anyErr = fmt.Errorf("unpack %s in %T: %w", a.GetTypeUrl(), m, err)
			return
		}
		anyErr = validate(inner)
	})
	return anyErr
}
