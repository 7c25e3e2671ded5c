package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// TestMutualTLS: inbound mTLS refuses a caller without a client certificate and serves one with; the upstream side
// presents the proxy's client certificate and sends the API key over TLS.
func TestMutualTLS(t *testing.T) {
	pki := testenv.NewPKI(t)

	// Upstream requiring the proxy's client certificate.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &fakeUpstream{addr: lis.Addr().String(), hooks: map[string]func(context.Context, proto.Message) (proto.Message, error){}}
	upTLS := &tls.Config{Certificates: []tls.Certificate{pki.Server(t, "upstream").TLS},
		ClientCAs: pki.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	up.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(upTLS)), grpc.UnaryInterceptor(recordingInterceptor(up)))
	workflowservice.RegisterWorkflowServiceServer(up.srv, workflowservice.UnimplementedWorkflowServiceServer{})
	operatorservice.RegisterOperatorServiceServer(up.srv, operatorservice.UnimplementedOperatorServiceServer{})
	go func() { _ = up.srv.Serve(lis) }()
	t.Cleanup(up.srv.Stop)
	up.on("GetSystemInfo", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetSystemInfoResponse{ServerVersion: "tls"}, nil
	})

	p := startProxy(t, up.addr, Config{
		UpstreamTLS: &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{pki.Client(t, "proxy-client", "").TLS}, MinVersion: tls.VersionTLS12},
		APIKey:      "secret-key",
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.Server(t, "proxy").TLS},
			ClientCAs: pki.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	addr := p.conn.Target()
	call := func(clientTLS *tls.Config) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := workflowservice.NewWorkflowServiceClient(conn).GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
		if err == nil && resp.GetServerVersion() != "tls" {
			t.Fatalf("unexpected response %v", resp)
		}
		return err
	}
	if err := call(&tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a caller without a client certificate was served")
	}
	if err := call(&tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{pki.Client(t, "worker", "").TLS}}); err != nil {
		t.Fatal(err)
	}
	if got := up.last(t, "GetSystemInfo").md.Get("authorization"); len(got) != 1 || got[0] != "Bearer secret-key" {
		t.Fatalf("authorization upstream: %q", got)
	}
}
