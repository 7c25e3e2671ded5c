package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// AdvertiseMetadataKey is the node metadata field (in a replica's xDS bootstrap) naming the address other clients
// reach the replica at. A replica whose ADS stream carries it registers itself for as long as the stream lasts.
const AdvertiseMetadataKey = "blindfold.advertise_address"

// DefaultHealthService is the gRPC health service name probed on replicas: the proxy reports it SERVING until it
// starts shutting down.
const DefaultHealthService = "temporal.api.workflowservice.v1.WorkflowService"

// Errors callers branch on.
var (
	// ErrConfig is wrapped by every error about invalid configuration (addresses, rules, policies).
	ErrConfig = errors.New("invalid xds config")
	// ErrInconsistent is wrapped when a snapshot refers to resources it does not contain; such a snapshot is never
	// served.
	ErrInconsistent = errors.New("inconsistent xds snapshot")
)

// Sources of replicas. A replica is in the fleet if any source names it.
const (
	SourceStatic     = "static"
	SourceRegistered = "registered"
)

// Config configures a Server.
type Config struct {
	// Resources names and shapes what is served (service name, load balancing, outlier detection, RBAC, TLS).
	Resources ResourceConfig
	// HealthInterval is how often each replica is probed (default 5 s).
	HealthInterval time.Duration
	// HealthTimeout bounds one probe (default 2 s, at most HealthInterval).
	HealthTimeout time.Duration
	// HealthService is the gRPC health service name probed (default DefaultHealthService).
	HealthService string
	// UnhealthyThreshold is how many failed probes in a row remove a replica from endpoints (default 2). One
	// successful probe brings it back.
	UnhealthyThreshold int
	// HealthDialOptions are used to dial replicas for probes (default: plaintext). Set TLS credentials here when
	// replicas require mTLS.
	HealthDialOptions []grpc.DialOption
	// ServerOptions are added to the xDS gRPC server's options, e.g. grpc.Creds for TLS: whoever can reach the xDS
	// server learns the fleet's addresses and, if it can impersonate a node, receives its configuration.
	ServerOptions []grpc.ServerOption
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server is the xDS management server for a proxy fleet: state-of-the-world ADS over a snapshot cache, one snapshot
// per node, rebuilt whenever the healthy replica set, the RBAC rules or the set of server listeners asked for changes.
type Server struct {
	cfg   Config
	log   *slog.Logger
	cache cachev3.SnapshotCache
	grpc  *grpc.Server
	kick  chan struct{}

	mu       sync.Mutex
	resCfg   ResourceConfig
	sources  map[string]map[string]bool // source -> addresses
	replicas map[string]*replicaState   // by address
	nodes    map[string]*nodeState      // by node id
	streams  map[int64]*streamState     // open ADS streams
	version  int64
	pinned   map[string]bool // nodes whose snapshot was set by SetResources, not rebuilt

	stopOnce sync.Once
}

// nodeState is what a node subscribed to: in ADS mode the snapshot cache answers a request only when the node's
// snapshot holds no listener it did not ask for, so each node gets exactly its own listeners (its client listener,
// the server listener of the address it listens on) and what they refer to.
type nodeState struct {
	listeners map[string]bool
	streams   int
}

type streamState struct {
	node   string
	source string // replica source for a self-registered replica, or ""
}

type replicaState struct {
	conn    *grpc.ClientConn
	healthy bool
	fails   int
}

// New validates cfg and returns a Server with an empty fleet.
func New(cfg Config) (*Server, error) {
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 2 * time.Second
	}
	cfg.HealthTimeout = min(cfg.HealthTimeout, cfg.HealthInterval)
	if cfg.HealthService == "" {
		cfg.HealthService = DefaultHealthService
	}
	if cfg.UnhealthyThreshold <= 0 {
		cfg.UnhealthyThreshold = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Resources = cfg.Resources.withDefaults()
	// Fail at start, not at the first rebuild.
	if _, err := BuildResources(cfg.Resources, nil, []string{"127.0.0.1:1"}); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
		resCfg:   cfg.Resources,
		sources:  map[string]map[string]bool{},
		replicas: map[string]*replicaState{},
		nodes:    map[string]*nodeState{},
		streams:  map[int64]*streamState{},
		pinned:   map[string]bool{},
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, slogAdapter{s.log})
	callbacks := serverv3.CallbackFuncs{
		StreamRequestFunc: s.onStreamRequest,
		StreamClosedFunc:  s.onStreamClosed,
	}
	xdsServer := serverv3.NewServer(context.Background(), s.cache, callbacks)
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		// xDS streams are long-lived and mostly idle; clients keep them open with pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, cfg.ServerOptions...)...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, xdsServer)
	return s, nil
}

// Serve answers ADS streams on lis until Stop.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("blindfold xds serving", "addr", lis.Addr().String(), "service", s.cfg.Resources.ServiceName)
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xds: %w", err)
	}
	return nil
}

// Stop ends every stream, stops serving and closes the probe connections.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.grpc.Stop()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.replicas {
			_ = r.conn.Close()
		}
		s.replicas = map[string]*replicaState{}
	})
}

// Run probes every replica's health each HealthInterval (and right away when replicas are added), rebuilding
// snapshots when a replica turns healthy or unhealthy. It returns when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		s.probeAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// SetReplicas replaces the addresses (host:port, IP hosts) one source names. Replicas start unhealthy: they are
// served to clients after their first successful probe.
func (s *Server) SetReplicas(source string, addrs []string) error {
	set := map[string]bool{}
	for _, a := range addrs {
		if _, _, err := splitIPPort(a); err != nil {
			return err
		}
		set[a] = true
	}
	s.mu.Lock()
	if len(set) == 0 {
		delete(s.sources, source)
	} else {
		s.sources[source] = set
	}
	changed := s.syncReplicasLocked()
	s.mu.Unlock()
	if changed {
		s.rebuild()
		s.poke()
	}
	return nil
}

// Register adds a replica that announced itself (e.g. from a start-up hook) to the fleet.
func (s *Server) Register(addr string) error {
	if _, _, err := splitIPPort(addr); err != nil {
		return err
	}
	s.mu.Lock()
	set := s.sources[SourceRegistered]
	if set == nil {
		set = map[string]bool{}
		s.sources[SourceRegistered] = set
	}
	set[addr] = true
	changed := s.syncReplicasLocked()
	s.mu.Unlock()
	if changed {
		s.rebuild()
		s.poke()
	}
	return nil
}

// Deregister removes a replica added with Register (e.g. from a pre-stop hook), before its health check would.
func (s *Server) Deregister(addr string) {
	s.mu.Lock()
	delete(s.sources[SourceRegistered], addr)
	changed := s.syncReplicasLocked()
	s.mu.Unlock()
	if changed {
		s.rebuild()
	}
}

// SetRBAC replaces the RBAC rules pushed to xDS-enabled replicas. Invalid rules are refused and the old ones stay.
func (s *Server) SetRBAC(c RBACConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.resCfg.RBAC = c
	s.mu.Unlock()
	return s.rebuild()
}

// Replicas returns the fleet, sorted by address, with each replica's last health.
func (s *Server) Replicas() []Replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicaListLocked()
}

func (s *Server) replicaListLocked() []Replica {
	out := make([]Replica, 0, len(s.replicas))
	for a, r := range s.replicas {
		out = append(out, Replica{Addr: a, Healthy: r.healthy})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// SetResources publishes res to one node as they are, instead of the fleet's resources, after checking that they are
// consistent; an inconsistent set is refused with ErrInconsistent and the node keeps what it had. It is meant for tests
// and for operators pinning a node by hand; later fleet changes are not published to a pinned node.
func (s *Server) SetResources(ctx context.Context, node string, res Resources) error {
	s.mu.Lock()
	s.version++
	v := s.version
	s.pinned[node] = true
	s.mu.Unlock()
	return s.publish(ctx, node, strconv.FormatInt(v, 10), res)
}

// NodeVersion returns the snapshot version a node is served, or "" if it has none.
func (s *Server) NodeVersion(node string) string {
	snap, err := s.cache.GetSnapshot(node)
	if err != nil {
		return ""
	}
	return snap.GetVersion(resourcev3.ListenerType)
}

// syncReplicasLocked makes s.replicas the union of all sources, dialing new ones and closing removed ones.
func (s *Server) syncReplicasLocked() bool {
	want := map[string]bool{}
	for _, set := range s.sources {
		for a := range set {
			want[a] = true
		}
	}
	changed := false
	for a, r := range s.replicas {
		if !want[a] {
			_ = r.conn.Close()
			delete(s.replicas, a)
			changed = true
			s.log.Info("replica removed", "addr", a)
		}
	}
	for a := range want {
		if _, ok := s.replicas[a]; ok {
			continue
		}
		opts := s.cfg.HealthDialOptions
		if len(opts) == 0 {
			opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		}
		conn, err := grpc.NewClient("passthrough:///"+a, opts...)
		if err != nil {
			s.log.Error("cannot create health probe connection", "addr", a, "err", err)
			continue
		}
		s.replicas[a] = &replicaState{conn: conn}
		changed = true
		s.log.Info("replica added", "addr", a)
	}
	return changed
}

func (s *Server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// probeAll checks every replica once, in parallel, and rebuilds if any health changed.
func (s *Server) probeAll(ctx context.Context) {
	s.mu.Lock()
	type probe struct {
		addr string
		conn *grpc.ClientConn
	}
	probes := make([]probe, 0, len(s.replicas))
	for a, r := range s.replicas {
		probes = append(probes, probe{a, r.conn})
	}
	s.mu.Unlock()

	results := make([]bool, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
			defer cancel()
			resp, err := healthpb.NewHealthClient(p.conn).Check(pctx, &healthpb.HealthCheckRequest{Service: s.cfg.HealthService})
			results[i] = err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	changed := false
	s.mu.Lock()
	for i, p := range probes {
		r, ok := s.replicas[p.addr]
		if !ok || r.conn != p.conn {
			continue // removed meanwhile
		}
		switch {
		case results[i]:
			r.fails = 0
			if !r.healthy {
				r.healthy, changed = true, true
				s.log.Info("replica healthy", "addr", p.addr)
			}
		default:
			r.fails++
			if r.healthy && r.fails >= s.cfg.UnhealthyThreshold {
				r.healthy, changed = false, true
				s.log.Warn("replica unhealthy; removed from endpoints", "addr", p.addr, "failed_probes", r.fails)
			}
		}
	}
	s.mu.Unlock()
	if changed {
		_ = s.rebuild()
	}
}

// rebuild publishes the fleet's current resources to every known node, each getting the listeners it asked for.
func (s *Server) rebuild() error {
	s.mu.Lock()
	cfg := s.resCfg
	replicas := s.replicaListLocked()
	subs := map[string]map[string]bool{}
	for n, st := range s.nodes {
		if !s.pinned[n] {
			subs[n] = maps.Clone(st.listeners)
		}
	}
	s.version++
	version := strconv.FormatInt(s.version, 10)
	s.mu.Unlock()

	nodes := slices.Sorted(maps.Keys(subs))
	var errs []error
	for _, n := range nodes {
		res, err := nodeResources(cfg, replicas, subs[n])
		if err != nil {
			s.log.Error("cannot build xds resources; keeping the previous snapshot", "node", n, "err", err)
			errs = append(errs, err)
			continue
		}
		if err := s.publish(context.Background(), n, version, res); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodeResources builds the fleet's resources restricted to the listeners a node subscribed to, and what they refer
// to: the client route, cluster and endpoints for the client listener; the server route for server listeners.
func nodeResources(cfg ResourceConfig, replicas []Replica, listeners map[string]bool) (Resources, error) {
	var serverAddrs []string
	for name := range listeners {
		if a, ok := ServerListenerAddr(name); ok {
			serverAddrs = append(serverAddrs, a)
		}
	}
	all, err := BuildResources(cfg, replicas, serverAddrs)
	if err != nil {
		return Resources{}, err
	}
	cfg = cfg.withDefaults()
	var res Resources
	for _, l := range all.Listeners {
		if listeners[l.GetName()] {
			res.Listeners = append(res.Listeners, l)
		}
	}
	client := listeners[cfg.ServiceName]
	for _, r := range all.Routes {
		if (client && r.GetName() == cfg.routeName()) || (len(serverAddrs) > 0 && r.GetName() == cfg.serverRouteName()) {
			res.Routes = append(res.Routes, r)
		}
	}
	if client {
		res.Clusters, res.Endpoints = all.Clusters, all.Endpoints
	}
	return res, nil
}

// publish turns res into a snapshot, checks it is consistent and sets it for node. An inconsistent snapshot is
// logged and dropped: the node keeps the last consistent one.
func (s *Server) publish(ctx context.Context, node, version string, res Resources) error {
	snap, err := newSnapshot(version, res)
	if err == nil {
		err = CheckConsistent(snap)
	}
	if err != nil {
		s.log.Error("refusing xds snapshot", "node", node, "version", version, "err", err)
		return err
	}
	if err := s.cache.SetSnapshot(ctx, node, snap); err != nil {
		return fmt.Errorf("set snapshot for node %q: %w", node, err)
	}
	s.log.Debug("xds snapshot published", "node", node, "version", version)
	return nil
}

func newSnapshot(version string, res Resources) (*cachev3.Snapshot, error) {
	m := map[resourcev3.Type][]types.Resource{}
	for _, l := range res.Listeners {
		m[resourcev3.ListenerType] = append(m[resourcev3.ListenerType], l)
	}
	for _, r := range res.Routes {
		m[resourcev3.RouteType] = append(m[resourcev3.RouteType], r)
	}
	for _, c := range res.Clusters {
		m[resourcev3.ClusterType] = append(m[resourcev3.ClusterType], c)
	}
	for _, e := range res.Endpoints {
		m[resourcev3.EndpointType] = append(m[resourcev3.EndpointType], e)
	}
	snap, err := cachev3.NewSnapshot(version, m)
	if err != nil {
		return nil, fmt.Errorf("create snapshot: %w", err)
	}
	return snap, nil
}

// onStreamRequest learns the node behind each stream (named in its first request), registers replicas that advertise
// themselves, and records which listeners the node subscribes to, publishing a snapshot with exactly those before the
// request is answered.
func (s *Server) onStreamRequest(stream int64, req *discoveryv3.DiscoveryRequest) error {
	rebuild := false
	s.mu.Lock()
	st := s.streams[stream]
	if st == nil && req.GetNode().GetId() != "" {
		st = &streamState{node: req.GetNode().GetId()}
		s.streams[stream] = st
		ns := s.nodes[st.node]
		if ns == nil {
			ns = &nodeState{listeners: map[string]bool{}}
			s.nodes[st.node] = ns
			rebuild = true
		}
		ns.streams++
		if addr := advertised(req.GetNode()); addr != "" {
			if _, _, err := splitIPPort(addr); err != nil {
				s.log.Warn("ignoring replica self-registration", "node", st.node, "err", err)
			} else {
				st.source = "stream:" + strconv.FormatInt(stream, 10)
				s.sources[st.source] = map[string]bool{addr: true}
				if s.syncReplicasLocked() {
					rebuild = true
					s.poke()
				}
			}
		}
	}
	if st != nil && req.GetTypeUrl() == resourcev3.ListenerType {
		// A state-of-the-world request lists every listener the stream wants.
		want := map[string]bool{}
		for _, name := range req.GetResourceNames() {
			want[name] = true
		}
		if ns := s.nodes[st.node]; !maps.Equal(ns.listeners, want) {
			ns.listeners = want
			rebuild = true
		}
	}
	s.mu.Unlock()
	if rebuild {
		_ = s.rebuild()
	}
	return nil
}

// onStreamClosed deregisters a self-registered replica and forgets a node when its last stream ends.
func (s *Server) onStreamClosed(stream int64, _ *corev3.Node) {
	s.mu.Lock()
	st, ok := s.streams[stream]
	changed := false
	if ok {
		delete(s.streams, stream)
		if st.source != "" {
			delete(s.sources, st.source)
			changed = s.syncReplicasLocked()
		}
		if ns := s.nodes[st.node]; ns != nil {
			if ns.streams--; ns.streams <= 0 && !s.pinned[st.node] {
				delete(s.nodes, st.node)
				s.cache.ClearSnapshot(st.node)
			}
		}
	}
	s.mu.Unlock()
	if changed {
		_ = s.rebuild()
	}
}

func advertised(n *corev3.Node) string {
	v := n.GetMetadata().GetFields()[AdvertiseMetadataKey]
	return v.GetStringValue()
}
