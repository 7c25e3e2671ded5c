package blindtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
)

// serverLog receives the shared embedded server's log (at debug level, the most it says), so the blindness tests
// can scan it for markers.
var serverLog testenv.SyncBuffer

func TestMain(m *testing.M) {
	devstacktest.SetSharedOptions(devstacktest.WithConfig(func(c *devstack.Config) {
		c.LogOutput = &serverLog
		c.LogLevel = "debug"
	}), devstacktest.WithNamespaces(peerNamespace))
	devstacktest.Main(m)
}

const namespace = devstack.DefaultNamespace

// Every test is bounded by testTimeout; waits for events inside a test by shorter ones.
const (
	testTimeout = 60 * time.Second
	// taskWait bounds the wait for a refused workflow task. A refusal fails the task at once; a task lost to a failed
	// poll times out after forgedTaskTimeout, and two such timeouts end the wait early.
	taskWait = 20 * time.Second
	// forgedTaskTimeout is the workflow task timeout of the workflows the hostile backend signals.
	forgedTaskTimeout = 3 * time.Second
)

// --- markers ---------------------------------------------------------------------------------------------------

// markerPrefix starts every marker. Ids, task queues and type names are plaintext by design and never contain it.
const markerPrefix = "BFMK-"

// markers builds the markers of one run: "BFMK-<field>-<run>", where field names the user-data field the value is
// sent in (letters, digits and dots) and run is random, so concurrent runs and earlier tests never match.
type markers struct{ run string }

func newMarkers() markers {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return markers{run: hex.EncodeToString(b)}
}

func (m markers) of(field string) string { return mk(m.run, field) }

func mk(run, field string) string { return markerPrefix + field + "-" + run }

// parseMarker splits a marker into its field and run; ok is false for anything else.
func parseMarker(s string) (field, run string, ok bool) {
	rest, ok := strings.CutPrefix(s, markerPrefix)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// derive turns the marker of "<base>.<x>" into the marker of "<base>.<suffix>" of the same run. Workflows and
// activities compute what they return or raise from what they received, so each payload carries exactly one marker
// and a leak names exactly one field.
func derive(s, suffix string) string {
	field, run, ok := parseMarker(s)
	if !ok {
		return "not-a-marker:" + s
	}
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		field = field[:i]
	}
	return mk(run, field+"."+suffix)
}

// answer is derive(s, "result").
func answer(s string) string { return derive(s, "result") }

func runOf(s string) string {
	_, run, _ := parseMarker(s)
	return run
}

// find returns the fields of run whose markers occur in b, sorted.
func (m markers) find(b []byte) []string {
	re := regexp.MustCompile(regexp.QuoteMeta(markerPrefix) + `([A-Za-z0-9.]+)-` + m.run)
	set := map[string]bool{}
	for _, g := range re.FindAllSubmatch(b, -1) {
		set[string(g[1])] = true
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// --- what workers saw --------------------------------------------------------------------------------------------

// seen is what workflow and activity code received, by run and field: the workers run in the test process, so they
// report here and the test compares with the markers it sent. A forged value a worker must never see shows up here
// too.
var seen sync.Map // "<run>/<field>" -> string

func see(run, field, v string) { seen.Store(run+"/"+field, v) }

func seenValue(run, field string) (string, bool) {
	v, ok := seen.Load(run + "/" + field)
	if !ok {
		return "", false
	}
	return v.(string), true
}

type historyEvent = historypb.HistoryEvent

// --- recording relay ---------------------------------------------------------------------------------------------

// frame is one message that crossed the relay.
type frame struct {
	method string
	b      []byte
}

// relay is the backend's front door as the tests see it: a byte-level gRPC hop (testenv.Forward) between whoever
// calls it and the Temporal frontend, keeping a copy of every request frame the frontend receives and every response
// frame it sends. The request frames are exactly what the backend learns.
type relay struct {
	addr     string
	upstream string
	mu       sync.Mutex
	reqs     []frame
	resps    []frame
}

// FrontendAddr makes a relay a gatewayenv.Frontend: the gateway's upstream is the relay.
func (r *relay) FrontendAddr() string { return r.addr }

// startRelay serves a relay to upstream until the test ends.
func startRelay(t testing.TB, upstream string) *relay {
	t.Helper()
	conn, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: lis.Addr().String(), upstream: upstream}
	fwd := testenv.Forward(conn, nil)
	// The enforcement policy is the frontend's: the gateway pings its upstream every 30 s, which grpc-go's default
	// policy (5 min) answers with a GOAWAY.
	srv := grpc.NewServer(grpc.ForceServerCodec(testenv.RawCodec{}), grpc.MaxRecvMsgSize(64<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.UnknownServiceHandler(func(srv any, ss grpc.ServerStream) error {
			method, _ := grpc.MethodFromServerStream(ss)
			return fwd(srv, &recordingStream{ServerStream: ss, r: r, method: method})
		}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); _ = conn.Close() })
	return r
}

// recordingStream copies the frames of one forwarded call into its relay.
type recordingStream struct {
	grpc.ServerStream
	r      *relay
	method string
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if f, ok := m.(*testenv.RawFrame); ok && err == nil {
		s.r.mu.Lock()
		s.r.reqs = append(s.r.reqs, frame{s.method, f.B})
		s.r.mu.Unlock()
	}
	return err
}

func (s *recordingStream) SendMsg(m any) error {
	if f, ok := m.(*testenv.RawFrame); ok {
		s.r.mu.Lock()
		s.r.resps = append(s.r.resps, frame{s.method, f.B})
		s.r.mu.Unlock()
	}
	return s.ServerStream.SendMsg(m)
}

// requests returns the request frames recorded so far.
func (r *relay) requests() []frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// leaks maps every field of m found in the recorded request frames to the methods that carried it.
func (r *relay) leaks(m markers) map[string][]string {
	out := map[string][]string{}
	for _, f := range r.requests() {
		for _, field := range m.find(f.b) {
			if !slices.Contains(out[field], f.method) {
				out[field] = append(out[field], f.method)
			}
		}
	}
	return out
}

// contains reports whether any recorded request frame contains s.
func (r *relay) contains(s string) bool {
	for _, f := range r.requests() {
		if strings.Contains(string(f.b), s) {
			return true
		}
	}
	return false
}

// --- the environment ---------------------------------------------------------------------------------------------

// env is one proxy under test: a gateway whose upstream is a recording relay to the shared frontend, its log, and
// the raw clients the tests play the hostile backend and a hostile caller with.
type env struct {
	stack    *devstack.Stack
	relay    *relay
	gw       *gateway.Gateway
	proxyLog *testenv.SyncBuffer
	// frontend is a raw client straight to the frontend: the hostile backend.
	frontend workflowservice.WorkflowServiceClient
	// viaProxy is a raw client through the gateway: a caller that bypasses the SDK.
	viaProxy workflowservice.WorkflowServiceClient
}

// newEnv starts a gateway with local keys in front of a new relay to the shared stack. Its log is captured at debug
// level, the level that logs every call.
func newEnv(t testing.TB, opts ...func(*gateway.Config)) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	stack := devstacktest.Shared(t)
	e := &env{stack: stack, relay: startRelay(t, stack.FrontendAddr()), proxyLog: &testenv.SyncBuffer{}}
	e.gw = gatewayenv.InFront(t, e.relay, func(c *gateway.Config) {
		c.Logger = slog.New(slog.NewTextHandler(e.proxyLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, o := range opts {
			o(c)
		}
	})
	e.frontend = workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, stack.FrontendAddr()))
	e.viaProxy = workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, e.gw.Addr()))
	return e
}

// uniqueName returns a task queue or workflow id prefix no other test uses.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// --- SDK ---------------------------------------------------------------------------------------------------------

type headerKey struct{}

// headerField is the header the propagator writes.
const headerField = "bf-propagated"

// headerPropagator carries a value from the client's context into workflow, activity and child headers.
type headerPropagator struct{}

func injectHeader(v any, w workflow.HeaderWriter) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(s)
	if err != nil {
		return err
	}
	w.Set(headerField, p)
	return nil
}

func extractHeader(r workflow.HeaderReader) (string, bool, error) {
	p, ok := r.Get(headerField)
	if !ok {
		return "", false, nil
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return "", false, err
	}
	return s, true, nil
}

func (headerPropagator) Inject(ctx context.Context, w workflow.HeaderWriter) error {
	return injectHeader(ctx.Value(headerKey{}), w)
}

func (headerPropagator) Extract(ctx context.Context, r workflow.HeaderReader) (context.Context, error) {
	s, ok, err := extractHeader(r)
	if err != nil || !ok {
		return ctx, err
	}
	return context.WithValue(ctx, headerKey{}, s), nil
}

func (headerPropagator) InjectFromWorkflow(ctx workflow.Context, w workflow.HeaderWriter) error {
	return injectHeader(ctx.Value(headerKey{}), w)
}

func (headerPropagator) ExtractToWorkflow(ctx workflow.Context, r workflow.HeaderReader) (workflow.Context, error) {
	s, ok, err := extractHeader(r)
	if err != nil || !ok {
		return ctx, err
	}
	return workflow.WithValue(ctx, headerKey{}, s), nil
}

// dialSDK returns an SDK client of addr with the header propagator, closed when the test ends. The SDK's log goes to
// log if not nil.
func dialSDK(t testing.TB, addr string, log *testenv.SyncBuffer) client.Client {
	t.Helper()
	logger := testenv.DiscardSDKLogger()
	if log != nil {
		logger = sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	c, err := client.Dial(client.Options{
		HostPort: addr, Namespace: namespace, Logger: logger,
		ContextPropagators: []workflow.ContextPropagator{headerPropagator{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func jsonPayload(t testing.TB, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decodeString(p *commonpb.Payload) string {
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return fmt.Sprintf("<undecodable %v: %v>", p.GetMetadata(), err)
	}
	return s
}

// history reads a run's whole history through svc.
func history(ctx context.Context, svc workflowservice.WorkflowServiceClient, id, runID string) ([]*historypb.HistoryEvent, error) {
	var events []*historypb.HistoryEvent
	var token []byte
	for {
		resp, err := svc.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
			Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: runID}, NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		events = append(events, resp.GetHistory().GetEvents()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return events, nil
		}
	}
}
