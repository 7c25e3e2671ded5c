package proxy

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/proxy/codecserver"
)

// BenchmarkAuthorize measures what caller authorization adds to an RPC: a SignalWorkflowExecution with a 1 KiB
// payload through two proxies over one fake upstream, the same policy (with an access section of several rules), one
// without Config.Auth and one verifying a bearer token (codecserver.StaticTokens: a hash and constant-time compares,
// the cost of a token cache hit) and authorizing the call. Both sides alternate call by call, so machine noise hits
// them alike; it reports the p50 of each, the added ns at p50 and the ratio.
func BenchmarkAuthorize(b *testing.B) {
	up := startFakeUpstream(b)
	up.on("SignalWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	})
	store, _ := policyStore(b, authPolicy+`    - name: bench
      subjects: [bench]
      namespaces: [payments]
      operations: [client-write]
`)
	tokens, err := codecserver.NewStaticTokens(map[string]policy.Identity{"bench-token": {Subject: "bench"}, "other": {Subject: "o"}})
	if err != nil {
		b.Fatal(err)
	}
	plain := startBenchProxy(b, up.addr, Config{Policy: store})
	authed := startBenchProxy(b, up.addr, Config{Policy: store, Auth: &AuthConfig{Tokens: tokens}})

	payload := strings.Repeat("x", 1024)
	req := &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: "payments", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "w"}, SignalName: "s",
	}
	// Both send the token (the proxy without Auth forwards it upstream, as the one with Auth does), so the difference
	// is the proxy's work, not a header on the wire.
	authCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer bench-token")
	plainCtx := authCtx
	call := func(wf workflowservice.WorkflowServiceClient, ctx context.Context) time.Duration {
		req.Input = payloads(payload) // the proxy replaces payloads in place
		start := time.Now()
		if _, err := wf.SignalWorkflowExecution(ctx, req); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for range 200 { // warm both connections and caches
		call(plain, plainCtx)
		call(authed, authCtx)
	}
	without := make([]time.Duration, 0, b.N)
	with := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			without = append(without, call(plain, plainCtx))
			with = append(with, call(authed, authCtx))
		} else {
			with = append(with, call(authed, authCtx))
			without = append(without, call(plain, plainCtx))
		}
	}
	b.StopTimer()
	slices.Sort(without)
	slices.Sort(with)
	p50without, p50with := without[len(without)/2], with[len(with)/2]
	b.ReportMetric(float64(p50without.Nanoseconds()), "p50-noauth-ns")
	b.ReportMetric(float64(p50with.Nanoseconds()), "p50-auth-ns")
	b.ReportMetric(float64((p50with - p50without).Nanoseconds()), "added-p50-ns")
	b.ReportMetric(float64(p50with)/float64(p50without), "ratio")
}

// startBenchProxy starts a proxy for a benchmark and returns a client of it.
func startBenchProxy(b *testing.B, upstream string, cfg Config) workflowservice.WorkflowServiceClient {
	b.Helper()
	cfg.Upstream = upstream
	c, _ := newTestCodec(b)
	cfg.Codec = c
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return workflowservice.NewWorkflowServiceClient(conn)
}

// BenchmarkAuthUnary is the authorization interceptor alone on a cached token: verify, authorize, hand on.
func BenchmarkAuthUnary(b *testing.B) {
	store, _ := policyStore(b, authPolicy+`    - name: bench
      subjects: [bench]
      namespaces: [payments]
      operations: [client-write]
`)
	tokens, err := codecserver.NewStaticTokens(map[string]policy.Identity{"bench-token": {Subject: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{cfg: Config{Policy: store, Auth: &AuthConfig{Tokens: tokens}}, log: slog.New(slog.DiscardHandler)}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer bench-token"))
	req := &workflowservice.SignalWorkflowExecutionRequest{Namespace: "payments"}
	info := &grpc.UnaryServerInfo{FullMethod: workflowServicePath + "SignalWorkflowExecution"}
	next := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.authUnary(ctx, req, info, next); err != nil {
			b.Fatal(err)
		}
	}
}
