package xds_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/blindfold-dev/blindfold/proxy/xds"
)

// A control plane for a fleet of three replicas, denying the operator service to workers.
func ExampleNew() {
	rules, err := xds.ParseRBAC([]byte(`
rules:
  - name: workers-no-operator
    action: deny
    principals: ["spiffe://example.org/ns/prod/sa/worker"]
    methods: ["/temporal.api.operatorservice.v1.OperatorService/"]
`))
	if err != nil {
		log.Fatal(err)
	}
	s, err := xds.New(xds.Config{Resources: xds.ResourceConfig{ServiceName: "blindfold-proxy", RBAC: rules}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Stop()
	if err := s.SetReplicas(xds.SourceStatic, []string{"10.0.0.11:7233", "10.0.0.12:7233", "10.0.0.13:7233"}); err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }() // health checks
	go func() { _ = s.Serve(lis) }()
	for _, r := range s.Replicas() {
		fmt.Println(r.Addr, "healthy:", r.Healthy) // not yet probed
	}
	// Output:
	// 10.0.0.11:7233 healthy: false
	// 10.0.0.12:7233 healthy: false
	// 10.0.0.13:7233 healthy: false
}

// The bootstrap a Go worker puts in GRPC_XDS_BOOTSTRAP before dialing "xds:///blindfold-proxy".
func ExampleBootstrap() {
	b, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: "blindfold-xds.blindfold.svc:18000", NodeID: "worker-0"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Contains(string(b), `"server_uri": "blindfold-xds.blindfold.svc:18000"`))
	// Output: true
}

// The Envoy sidecar configuration for the proxy's one outbound connection, to a cloud namespace.
func ExampleEnvoyEgressBootstrap() {
	b, err := xds.EnvoyEgressBootstrap(xds.EgressConfig{Backend: "my-ns.a1b2c.tmprl.cloud:7233"})
	if err != nil {
		log.Fatal(err)
	}
	y, err := xds.MarshalYAML(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Contains(string(y), "sni: my-ns.a1b2c.tmprl.cloud"))
	// Output: true
}

// Resources for a fleet, as served to a client that subscribed to the fleet's listener.
func ExampleBuildResources() {
	res, err := xds.BuildResources(xds.ResourceConfig{LBPolicy: xds.RingHash},
		[]xds.Replica{{Addr: "10.0.0.11:7233", Healthy: true}, {Addr: "10.0.0.12:7233", Healthy: false}}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Listeners[0].GetName(), res.Clusters[0].GetLbPolicy(), len(res.Endpoints[0].GetEndpoints()[0].GetLbEndpoints()))
	// Output: blindfold-proxy RING_HASH 1
}
