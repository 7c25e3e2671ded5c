package testenv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !testenv.Poll(5*time.Second, func() bool { return n.Add(1) == 3 }) {
		t.Fatal("Poll gave up on a condition that came true")
	}
	start := time.Now()
	if testenv.Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Poll gave up after %v, before its deadline", d)
	}
	testenv.WaitFor(t, time.Second, "true", func() bool { return true })
}

func TestSyncBuffer(t *testing.T) {
	var b testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("record", "i", i) })
	}
	wg.Wait()
	if got := strings.Count(b.String(), "msg=record"); got != 8 {
		t.Fatalf("%d records in the buffer, want 8:\n%s", got, b.String())
	}
	testenv.DiscardLogger().Error("dropped")
	testenv.DiscardSDKLogger().Error("dropped")
}

// TestPKIAndForwarder serves gRPC health over mutual TLS with the PKI's certificates, behind a Forwarder that counts
// the calls and passes metadata on.
func TestPKIAndForwarder(t *testing.T) {
	pki := testenv.NewPKI(t)
	srvCert := pki.Server(t, "server")
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(srvCert, true))))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	addr, served := testenv.Serve(t, srv)
	defer func() { srv.Stop(); <-served }()

	check := func(target string, tc *tls.Config) error {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err == nil {
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		}
		return err
	}
	client := pki.Client(t, "worker", "spiffe://blindfold.test/worker")
	if err := check(addr, pki.ClientTLS(client)); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := check(addr, pki.ClientTLS(nil)); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	leaf, err := x509.ParseCertificate(client.TLS.Certificate[0])
	if err != nil || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://blindfold.test/worker" {
		t.Fatalf("client certificate URIs: %v, %v", leaf.URIs, err)
	}
	dir := t.TempDir()
	certPath, keyPath := srvCert.Write(t, dir, "cert.pem", "key.pem")
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Fatalf("written server pair: %v", err)
	}
	pki.WriteCA(t, dir, "ca.pem")

	// A plaintext forwarder in front of a plaintext server.
	var sawMD atomic.Value
	plain := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		sawMD.Store(strings.Join(md.Get("x-test"), ","))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(plain, health.NewServer())
	paddr, pserved := testenv.Serve(t, plain)
	defer func() { plain.Stop(); <-pserved }()
	var calls atomic.Int32
	fwd, err := testenv.StartForwarder(paddr, func(ctx context.Context, method string, invoke func(context.Context) error) error {
		calls.Add(1)
		if !strings.HasSuffix(method, "/Check") {
			return fmt.Errorf("method %q", method)
		}
		return invoke(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Stop()
	conn := testenv.DialInsecure(t, fwd.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-test", "v")
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("through the forwarder: %v, %v", resp, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("forwarder saw %d calls, want 1", calls.Load())
	}
	if got, _ := sawMD.Load().(string); got != "v" {
		t.Fatalf("metadata upstream: %q, want the caller's", got)
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := testenv.NewClock(start)
	c.Advance(time.Minute)
	if got := c.Now(); !got.Equal(start.Add(time.Minute)) {
		t.Fatalf("clock reads %v after a minute from %v", got, start)
	}
}
