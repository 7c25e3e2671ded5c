package observe_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/proxy"
	"github.com/blindfold-dev/blindfold/proxy/observe"
)

// upstream is a minimal WorkflowService: it keeps the last signal input (as the proxy sent it: ciphertext) and returns
// it as the result of any query, so a signal exercises encoding and a query decoding.
type upstream struct {
	workflowservice.UnimplementedWorkflowServiceServer
	mu   sync.Mutex
	last *commonpb.Payloads
}

func (u *upstream) SignalWorkflowExecution(_ context.Context, r *workflowservice.SignalWorkflowExecutionRequest) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.last = r.GetInput()
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

func (u *upstream) QueryWorkflow(context.Context, *workflowservice.QueryWorkflowRequest) (*workflowservice.QueryWorkflowResponse, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return &workflowservice.QueryWorkflowResponse{QueryResult: u.last}, nil
}

type env struct {
	client  workflowservice.WorkflowServiceClient
	metrics *observe.Metrics
	up      *upstream
}

// start runs upstream and proxy on loopback, with metrics and the given tracing.
func start(t *testing.T, tr *observe.Tracing) *env {
	t.Helper()
	up := &upstream{}
	upSrv := grpc.NewServer()
	workflowservice.RegisterWorkflowServiceServer(upSrv, up)
	upAddr, _ := testenv.Serve(t, upSrv)
	t.Cleanup(upSrv.Stop)

	km, c := testenv.LocalCodec(t, t.TempDir())
	m := observe.NewMetrics()
	if err := m.WatchKeys(km); err != nil {
		t.Fatal(err)
	}
	if tr == nil {
		tr = &observe.Tracing{}
	}
	p, err := proxy.New(proxy.Config{
		Upstream: upAddr, Codec: c, AllowedNamespaces: []string{"default"},
		Observer: m, UnaryInterceptors: []grpc.UnaryServerInterceptor{m.UnaryServerInterceptor()},
		ServerOptions: tr.ServerOptions, DialOptions: tr.DialOptions,
		Logger: testenv.DiscardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := testenv.Serve(t, p)
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })

	conn := testenv.DialInsecure(t, addr)
	return &env{client: workflowservice.NewWorkflowServiceClient(conn), metrics: m, up: up}
}

func (e *env) signalAndQuery(t *testing.T, ctx context.Context) {
	t.Helper()
	in := &commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"secret"`)}}}
	if _, err := e.client.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", SignalName: "s", Input: in}); err != nil {
		t.Fatalf("signal: %v", err)
	}
	resp, err := e.client.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default"})
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if got := string(resp.GetQueryResult().GetPayloads()[0].GetData()); got != `"secret"` {
		t.Fatalf("query result %q", got)
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func TestMetricsAfterRPCs(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	e.signalAndQuery(t, ctx)
	if _, err := e.client.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "elsewhere"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("signal outside the allowlist: %v", err)
	}
	if _, err := e.client.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("describe: %v", err)
	}

	out := scrape(t, e.metrics.Handler())
	for _, want := range []string{
		`blindfold_proxy_rpcs_total{code="OK",method="SignalWorkflowExecution",service="WorkflowService"} 1`,
		`blindfold_proxy_rpcs_total{code="OK",method="QueryWorkflow",service="WorkflowService"} 1`,
		`blindfold_proxy_rpcs_total{code="PermissionDenied",method="SignalWorkflowExecution",service="WorkflowService"} 1`,
		`blindfold_proxy_rpcs_total{code="Unimplemented",method="DescribeNamespace",service="WorkflowService"} 1`,
		`blindfold_proxy_rpc_duration_seconds_count{method="QueryWorkflow",service="WorkflowService"} 1`,
		`blindfold_proxy_payloads_total{namespace="default",op="encode"} 1`,
		`blindfold_proxy_payloads_total{namespace="default",op="decode"} 1`,
		`blindfold_proxy_payload_bytes_total{namespace="default",op="encode"} `,
		`blindfold_proxy_errors_total{kind="namespace_denied"} 1`,
		`blindfold_keys_cache_misses_total `,
		`blindfold_keys_cache_hits_total `,
		`blindfold_keys_kek_calls_total `,
		`blindfold_keys_cached_scopes 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, "secret") {
		t.Error("metrics contain payload text")
	}
	if t.Failed() {
		t.Log(out)
	}

	// Steady state: more payloads, no more KEK calls.
	before := metricValue(t, scrape(t, e.metrics.Handler()), "blindfold_keys_kek_calls_total")
	for range 5 {
		e.signalAndQuery(t, ctx)
	}
	after := metricValue(t, scrape(t, e.metrics.Handler()), "blindfold_keys_kek_calls_total")
	if after != before {
		t.Errorf("KEK calls went from %s to %s in steady state", before, after)
	}
}

func metricValue(t *testing.T, out, name string) string {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

func TestNamespaceLabelsBounded(t *testing.T) {
	m := observe.NewMetrics()
	for i := range observe.MaxNamespaceLabels + 10 {
		m.Encoded("ns-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i), 1, 10)
	}
	out := scrape(t, m.Handler())
	if !strings.Contains(out, `blindfold_proxy_payloads_total{namespace="_other",op="encode"} 10`) {
		t.Errorf("overflow namespaces not folded into _other")
	}
	if n := strings.Count(out, "blindfold_proxy_payloads_total{"); n != observe.MaxNamespaceLabels+1 {
		t.Errorf("%d namespace series, want %d", n, observe.MaxNamespaceLabels+1)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestTracingSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	e := start(t, observe.NewTracing(tp, nil))
	e.signalAndQuery(t, context.Background())

	// A server span ends when gRPC reports the call finished, which can come after the caller has its response:
	// wait for both spans of the signal (and of the query) to end instead of reading once.
	var (
		spans          []sdktrace.ReadOnlySpan
		server, client sdktrace.ReadOnlySpan
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spans = rec.Ended()
		server, client = nil, nil
		for _, s := range spans {
			if s.Name() != "temporal.api.workflowservice.v1.WorkflowService/SignalWorkflowExecution" {
				continue
			}
			switch s.SpanKind().String() {
			case "server":
				server = s
			case "client":
				client = s
			}
		}
		if server != nil && client != nil && len(spans) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	if server == nil || client == nil {
		names := []string{}
		for _, s := range spans {
			names = append(names, s.Name()+"/"+s.SpanKind().String())
		}
		t.Fatalf("want a server and an upstream client span for the signal, got %v", names)
	}
	if client.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Error("the upstream call's span is not a child of the inbound call's span")
	}
	for _, s := range spans {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), "secret") {
				t.Errorf("span %s attribute %s carries payload text", s.Name(), a.Key)
			}
		}
	}
}

func TestTracingOffWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := observe.StartTracing(context.Background(), "blindfold-test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || len(tr.DialOptions) > 0 {
		t.Fatal("tracing on without an exporter")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if observe.TracingEnabledByEnv() {
		t.Fatal("OTEL_TRACES_EXPORTER=none ignored")
	}
}

func TestTracingWithExporter(t *testing.T) {
	// An endpoint nobody listens on: the exporter connects lazily, so start and shutdown must still be prompt.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	tr, err := observe.StartTracing(context.Background(), "blindfold-test")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() || len(tr.DialOptions) != 1 {
		t.Fatal("tracing off with an exporter configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*1e6)
	defer cancel()
	_ = tr.Shutdown(ctx) // nothing buffered: nothing to fail on
}
