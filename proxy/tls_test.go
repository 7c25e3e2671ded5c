package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

// testPKI is a throwaway CA issuing loopback server and client certificates.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool}
}

func (p *testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLS: inbound mTLS refuses a caller without a client certificate and serves one with; the upstream side
// presents the proxy's client certificate and sends the API key over TLS.
func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)

	// Upstream requiring the proxy's client certificate.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &fakeUpstream{addr: lis.Addr().String(), hooks: map[string]func(context.Context, proto.Message) (proto.Message, error){}}
	upTLS := &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "upstream", x509.ExtKeyUsageServerAuth)},
		ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	up.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(upTLS)), grpc.UnaryInterceptor(recordingInterceptor(up)))
	workflowservice.RegisterWorkflowServiceServer(up.srv, workflowservice.UnimplementedWorkflowServiceServer{})
	operatorservice.RegisterOperatorServiceServer(up.srv, operatorservice.UnimplementedOperatorServiceServer{})
	go func() { _ = up.srv.Serve(lis) }()
	t.Cleanup(up.srv.Stop)
	up.on("GetSystemInfo", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetSystemInfoResponse{ServerVersion: "tls"}, nil
	})

	p := startProxy(t, up.addr, Config{
		UpstreamTLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.issue(t, "proxy-client", x509.ExtKeyUsageClientAuth)}, MinVersion: tls.VersionTLS12},
		APIKey:      "secret-key",
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "proxy", x509.ExtKeyUsageServerAuth)},
			ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
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
	if err := call(&tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a caller without a client certificate was served")
	}
	if err := call(&tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{pki.issue(t, "worker", x509.ExtKeyUsageClientAuth)}}); err != nil {
		t.Fatal(err)
	}
	if got := up.last(t, "GetSystemInfo").md.Get("authorization"); len(got) != 1 || got[0] != "Bearer secret-key" {
		t.Fatalf("authorization upstream: %q", got)
	}
}
