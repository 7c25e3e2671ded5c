package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestNewGRPCServerHook: the proxy registers and serves on the server Config.NewGRPCServer returns (how replicas run
// as xDS-enabled servers), with its own server options, and a factory error fails New.
func TestNewGRPCServerHook(t *testing.T) {
	var gotOpts int
	tp := startProxy(t, "127.0.0.1:1", Config{
		NewGRPCServer: func(opts ...grpc.ServerOption) (GRPCServer, error) {
			gotOpts = len(opts)
			return grpc.NewServer(opts...), nil
		},
	})
	if gotOpts == 0 {
		t.Fatal("factory got no server options; the proxy's interceptors and limits would be lost")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(tp.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v, want SERVING", res.GetStatus())
	}

	c, _ := newTestCodec(t)
	boom := errors.New("no bootstrap")
	_, err = New(Config{Upstream: "127.0.0.1:1", Codec: c, NewGRPCServer: func(...grpc.ServerOption) (GRPCServer, error) {
		return nil, boom
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("New with a failing factory: %v, want it to wrap %v", err, boom)
	}
}
