package gateway

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/policy"
)

const authTestPolicy = `version: 1
namespaces:
  payments: {}
  hr: {}
access:
  rules:
    - name: payments-clients
      subjects: [pay]
      namespaces: [payments]
      operations: [client-read, decode]
`

func writeAuthFiles(t *testing.T) (dir, pol, tokens string) {
	t.Helper()
	dir = t.TempDir()
	pol, tokens = filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(pol, []byte(authTestPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokens, []byte("- {token: pay-token, subject: pay}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, pol, tokens
}

// TestProxyAuth: static tokens authenticate gRPC callers, the policy's access section authorizes them, and refusals
// land in the audit log the codec endpoint shares (one writer), marked door "grpc".
func TestProxyAuth(t *testing.T) {
	t.Parallel()
	dir, pol, tokens := writeAuthFiles(t)
	audit := filepath.Join(dir, "audit.jsonl")
	g, err := Start(context.Background(), Config{
		Keys: localKeys(t), PolicyFile: pol,
		Proxy:         ProxyConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Auth: &ProxyAuthConfig{StaticTokensFile: tokens}},
		CodecEndpoint: &CodecEndpointConfig{Listen: "127.0.0.1:0", PolicyFile: pol, StaticTokensFile: tokens, AuditLog: audit},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop(context.Background()) })
	wf := workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, g.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	withTok := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer pay-token")

	_, err = wf.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "payments"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	_, err = wf.DescribeNamespace(withTok, &workflowservice.DescribeNamespaceRequest{Namespace: "hr"})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), `"pay" may not`) {
		t.Fatalf("hr: %v", err)
	}
	// Allowed: the call goes on to the (absent) upstream.
	_, err = wf.DescribeNamespace(withTok, &workflowservice.DescribeNamespaceRequest{Namespace: "payments"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("payments: %v", err)
	}
	// The codec endpoint writes to the same log, through the other door.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.CodecURL()+"/hr/decode", strings.NewReader(`{"payloads":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer pay-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("codec endpoint decode of hr: %d", resp.StatusCode)
	}
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), `"door":"grpc"`); n != 2 {
		t.Errorf("grpc door records = %d, want 2:\n%s", n, raw)
	}
	if n := strings.Count(string(raw), `"door":"http"`); n != 1 {
		t.Errorf("http door records = %d, want 1:\n%s", n, raw)
	}
	if _, err := policy.VerifyAudit(strings.NewReader(string(raw)), policy.VerifyOptions{}); err != nil {
		t.Errorf("shared audit chain: %v", err)
	}
	if strings.Contains(string(raw), "pay-token") {
		t.Error("the audit log holds a token")
	}
}

func TestProxyAuthRefused(t *testing.T) {
	t.Parallel()
	_, pol, tokens := writeAuthFiles(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no policy", Config{Proxy: ProxyConfig{Upstream: "127.0.0.1:1", Auth: &ProxyAuthConfig{StaticTokensFile: tokens}}}, "needs a policy"},
		{"nothing to authenticate with", Config{PolicyFile: pol, Proxy: ProxyConfig{Upstream: "127.0.0.1:1", Auth: &ProxyAuthConfig{}}}, "client certificates"},
		{"client certs without TLS", Config{PolicyFile: pol, Proxy: ProxyConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Auth: &ProxyAuthConfig{ClientCerts: true}}}, "need inbound TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Keys = localKeys(t)
			g, err := Start(context.Background(), tc.cfg)
			if err == nil {
				_ = g.Stop(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestProxyClientAuthConfiguredTokens(t *testing.T) {
	t.Parallel()
	tlsOnly := &tls.Config{}
	tests := []struct {
		name string
		cfg  ProxyConfig
		want bool
	}{
		{"tls without client ca", ProxyConfig{TLS: tlsOnly}, false},
		{"tls and static tokens", ProxyConfig{TLS: tlsOnly, Auth: &ProxyAuthConfig{StaticTokensFile: "t.yaml"}}, true},
		{"tls and client certificates only", ProxyConfig{TLS: tlsOnly, Auth: &ProxyAuthConfig{ClientCerts: true}}, false},
	}
	for _, tc := range tests {
		if got := proxyClientAuthConfigured(tc.cfg); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
