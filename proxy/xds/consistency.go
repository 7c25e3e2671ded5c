package xds

import (
	"fmt"
	"log/slog"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// CheckConsistent reports whether every resource snap refers to is in it (and nothing referable is orphaned),
// wrapping ErrInconsistent if not. It runs go-control-plane's Snapshot.Consistent, which checks listeners → routes and
// clusters → endpoints but does not look inside API listeners (the listeners of proxyless gRPC clients), on a shadow
// copy in which each API listener's connection manager is also listed as a filter chain; and it checks routes →
// clusters, which Consistent leaves out.
func CheckConsistent(snap *cachev3.Snapshot) error {
	if snap == nil {
		return fmt.Errorf("%w: nil snapshot", ErrInconsistent)
	}
	shadow := map[resourcev3.Type][]types.Resource{}
	for _, typ := range []resourcev3.Type{resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, r := range snap.GetResources(typ) {
			shadow[typ] = append(shadow[typ], r)
		}
	}
	for _, r := range snap.GetResources(resourcev3.ListenerType) {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			return fmt.Errorf("%w: listener resource of type %T", ErrInconsistent, r)
		}
		if api := l.GetApiListener().GetApiListener(); api != nil {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.ApiListener = nil
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: api},
			}}})
		}
		shadow[resourcev3.ListenerType] = append(shadow[resourcev3.ListenerType], l)
	}
	check, err := cachev3.NewSnapshot(snap.GetVersion(resourcev3.ListenerType), shadow)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}
	if err := check.Consistent(); err != nil {
		return fmt.Errorf("%w: %v", ErrInconsistent, err)
	}

	clusters := snap.GetResources(resourcev3.ClusterType)
	for name, r := range snap.GetResources(resourcev3.RouteType) {
		rc, ok := r.(*routev3.RouteConfiguration)
		if !ok {
			return fmt.Errorf("%w: route resource of type %T", ErrInconsistent, r)
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if c := rt.GetRoute().GetCluster(); c != "" {
					if _, ok := clusters[c]; !ok {
						return fmt.Errorf("%w: route configuration %q names cluster %q, which is not in the snapshot", ErrInconsistent, name, c)
					}
				}
			}
		}
	}
	for name, r := range clusters {
		if _, ok := r.(*clusterv3.Cluster); !ok {
			return fmt.Errorf("%w: cluster resource %q of type %T", ErrInconsistent, name, r)
		}
	}
	return nil
}

// slogAdapter routes go-control-plane's logging to slog, one level down: its info lines are per-request chatter.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(format string, args ...any) {}
func (a slogAdapter) Infof(format string, args ...any)  { a.l.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Warnf(format string, args ...any)  { a.l.Warn(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Errorf(format string, args ...any) { a.l.Error(fmt.Sprintf(format, args...)) }
