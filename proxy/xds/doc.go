// Package xds is the control plane of a Blindfold proxy fleet: an xDS management server (state-of-the-world ADS over
// a go-control-plane snapshot cache) that load-balances proxyless gRPC clients over healthy proxy replicas and pushes
// RBAC and TLS to xDS-enabled replicas, plus the generator of the Envoy egress configuration.
//
// Replicas come from a static list (SetReplicas), DNS (WatchDNS, e.g. a headless Service), a Kubernetes Endpoints file
// (WatchEndpointsFile) or Register calls, or register themselves by naming their address in their bootstrap's node
// metadata (AdvertiseMetadataKey). Each is probed with the gRPC health protocol; only healthy ones are in the endpoints
// clients get.
//
// Each node gets one snapshot holding exactly the listeners it subscribed to and what they refer to; a snapshot is
// published only after CheckConsistent passes, so a half-built configuration is never served.
//
// Clients dial "xds:///" + ResourceConfig.ServiceName with a bootstrap from Bootstrap in GRPC_XDS_BOOTSTRAP and a
// blank import of google.golang.org/grpc/xds. Replicas run as xds.NewGRPCServer servers with the same bootstrap (with
// AdvertiseAddr set) and get a listener for their listening address carrying the RBAC rules (RBACConfig).
package xds
