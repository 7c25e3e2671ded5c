package testenv

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Server is anything that serves on a listener until stopped (a proxy.Server, a grpc.Server).
type Server interface {
	Serve(net.Listener) error
}

// Listen returns a listener on a free loopback port, closed when the test ends (if still open).
func Listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	return lis
}

// Serve runs s on a free loopback port in a goroutine. It returns the address and a channel that receives what Serve
// returned; stopping s is the caller's job.
func Serve(t testing.TB, s Server) (addr string, served <-chan error) {
	t.Helper()
	lis := Listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	return lis.Addr().String(), done
}

// DialInsecure returns a plaintext gRPC client connection to addr, closed when the test ends.
func DialInsecure(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// DrainingServer is a Server that drains on Shutdown (a proxy.Server).
type DrainingServer interface {
	Server
	Shutdown(context.Context) error
}

// ShutdownTimeout bounds the drain of a server ServeUntilCleanup started.
const ShutdownTimeout = 10 * time.Second

// ServeUntilCleanup serves s on a free loopback port until the test ends, then shuts it down (the drain bounded by
// ShutdownTimeout), passes a shutdown error to report (t.Errorf to fail the test, t.Logf to note it) and waits for
// Serve to return. It returns the address.
func ServeUntilCleanup(t testing.TB, s DrainingServer, report func(format string, args ...any)) string {
	t.Helper()
	addr, served := Serve(t, s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			report("shutdown: %v", err)
		}
		<-served
	})
	return addr
}
