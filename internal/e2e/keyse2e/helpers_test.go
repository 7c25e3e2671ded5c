package keyse2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	tproxy "go.temporal.io/api/proxy"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/softhsmtest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/proxy"
)

// The package's SoftHSM2 tokens, set up by TestMain for the pkcs11 provider: hsmToken for every test, and hsmOutage,
// whose storage TestOutage takes away.
var (
	hsm       softhsmtest.Env
	hsmOutage *softhsmtest.Token
)

const (
	hsmToken       = softhsmtest.TokenLabel
	hsmOutageToken = "blindfold-outage"
	hsmPIN         = softhsmtest.PIN
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "blindfold-keyse2e-softhsm-")
	if err == nil {
		hsm, err = softhsmtest.Setup(dir)
		defer os.RemoveAll(dir)
	}
	if err == nil {
		hsmOutage, err = hsm.AddToken(hsmOutageToken) // before any test initializes the module
	}
	if err != nil {
		if softhsmtest.Required() {
			fmt.Fprintln(os.Stderr, "keyse2e: softhsm:", err)
			os.Exit(1)
		}
		hsmSkip = err.Error()
	}
	devstacktest.Main(m)
}

// marker starts every workflow input and signal value. Ids, task queues and type names are stored in plaintext by design,
// so they never contain it; finding it in what the frontend stores means a payload went out unencrypted.
const marker = "BFVLTMARK"

// Names the workflows and the activity are registered under (raw gRPC starts need the type name).
const (
	signalWF = "keyse2e-signal"
	streamWF = "keyse2e-stream"
	echoAct  = "keyse2e-echo"
)

// namespace is the only namespace of the shared stack; its scope is "default" (keys.ScopeForNamespace). Tests keep
// apart by using their own key directory, Transit key prefix, task queues and workflow ids.
const (
	namespace = "default"
	scope     = "default"
)

// signalWorkflow waits for the "go" signal, then echoes its input and the signal through an activity.
func signalWorkflow(ctx workflow.Context, in string) (string, error) {
	var sig string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &sig)
	var out string
	err := workflow.ExecuteActivity(activityCtx(ctx), echoAct, in+"|"+sig).Get(ctx, &out)
	return out, err
}

// streamWorkflow echoes its input through an activity: a start, a workflow task, an activity and a result per run.
func streamWorkflow(ctx workflow.Context, in string) (string, error) {
	var out string
	err := workflow.ExecuteActivity(activityCtx(ctx), echoAct, in).Get(ctx, &out)
	return out, err
}

func activityCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumAttempts: 5},
	})
}

func echoActivity(_ context.Context, in string) (string, error) { return in + "|echo", nil }

// wantStream is what streamWorkflow returns for in.
func wantStream(in string) string { return in + "|echo" }

// wantSignal is what signalWorkflow returns for in and signal sig.
func wantSignal(in, sig string) string { return in + "|" + sig + "|echo" }

var quietLogger = testenv.DiscardLogger()

// env is one test's KEK and the package's shared Temporal stack.
type env struct {
	stack *devstack.Stack
	kek   *kekRig
}

// setup skips under -short, and starts the shared stack and the test's own KEK of provider p.
func setup(t *testing.T, p provider) env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the KEK services and the embedded Temporal server; skipped with -short")
	}
	stack := devstacktest.Shared(t)
	return env{stack: stack, kek: p.setup(t)}
}

// unique returns a name no other test or run uses, without the marker.
func unique(kind string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "keyse2e-" + kind + "-" + hex.EncodeToString(b)
}

// keysetFile is where a DirStore keeps scope's wrapped keyset.
func keysetFile(dir, scope string) string { return filepath.Join(dir, "scopes", scope+".keyset") }

// copyKeyset copies scope's wrapped keyset file (as a backup would hold it) into a new key directory and returns it.
func copyKeyset(t *testing.T, dir, scope string) string {
	t.Helper()
	b, err := os.ReadFile(keysetFile(dir, scope))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := os.MkdirAll(filepath.Join(out, "scopes"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysetFile(out, scope), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// observer counts what the proxy reports: payloads encoded and decoded, and the RPCs it failed itself, by kind.
type observer struct {
	encoded, decoded atomic.Int64
	mu               sync.Mutex
	errs             map[proxy.ErrorKind]int
}

func (o *observer) Encoded(_ string, n, _ int) { o.encoded.Add(int64(n)) }
func (o *observer) Decoded(_ string, n, _ int) { o.decoded.Add(int64(n)) }
func (o *observer) Error(_ string, k proxy.ErrorKind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.errs == nil {
		o.errs = map[proxy.ErrorKind]int{}
	}
	o.errs[k]++
}

// errors returns the number of RPCs the proxy failed itself, and a summary by kind.
func (o *observer) errors() (int, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	var parts []string
	for k, v := range o.errs {
		n += v
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return n, strings.Join(parts, " ")
}

// rpcCounter counts every inbound call of the proxy by status code.
type rpcCounter struct {
	mu    sync.Mutex
	codes map[codes.Code]int
}

func (r *rpcCounter) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	c := status.Code(err)
	r.mu.Lock()
	if r.codes == nil {
		r.codes = map[codes.Code]int{}
	}
	r.codes[c]++
	r.mu.Unlock()
	return resp, err
}

// snapshot returns the counts so far.
func (r *rpcCounter) snapshot() map[codes.Code]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[codes.Code]int, len(r.codes))
	for k, v := range r.codes {
		out[k] = v
	}
	return out
}

// keyFailures counts calls that failed the way a key problem fails them (and no other upstream failure does here).
func keyFailures(byCode map[codes.Code]int) int {
	return byCode[codes.Unavailable] + byCode[codes.FailedPrecondition] + byCode[codes.Internal] + byCode[codes.DataLoss]
}

func total(byCode map[codes.Code]int) int {
	n := 0
	for _, v := range byCode {
		n += v
	}
	return n
}

// run is one test's set-up (env) and its proxy in front of the shared stack, its keys in a directory of their own wrapped by the
// test's KEK, with an SDK client and a worker on queue tq through it.
type run struct {
	env
	dir, tq    string
	km         *keys.Manager
	px         *testProxy
	c          client.Client
	stopWorker func()
}

// startRun runs setup for provider p and starts a run whose task queue is unique and starts with kind.
func startRun(t *testing.T, p provider, kind string) run {
	t.Helper()
	r := run{env: setup(t, p), dir: t.TempDir(), tq: unique(kind)}
	r.px = startProxy(t, r.stack.FrontendAddr(), r.kek.keys(r.dir, nil))
	r.km = r.px.km
	r.c = dial(t, r.px.addr)
	r.stopWorker = startWorker(t, r.c, r.tq)
	return r
}

// testProxy is a gateway in front of the shared stack, started by the production assembly, with its key manager and
// KEK at hand.
type testProxy struct {
	addr string
	obs  *observer
	rpcs *rpcCounter
	km   *keys.Manager
	gk   *gateway.Keys
}

// startProxy runs a gateway with the keys kc describes in front of upstream until the test ends.
func startProxy(t *testing.T, upstream string, kc gateway.KeysConfig) *testProxy {
	t.Helper()
	tp := &testProxy{obs: &observer{}, rpcs: &rpcCounter{}}
	g := gatewayenv.Start(t, gateway.Config{
		Keys: kc,
		Proxy: gateway.ProxyConfig{
			Upstream:          upstream,
			Observer:          tp.obs,
			UnaryInterceptors: []grpc.UnaryServerInterceptor{tp.rpcs.intercept},
		},
	})
	tp.addr, tp.km, tp.gk = g.Addr(), g.Keys().Manager, g.Keys()
	return tp
}

// dial returns an SDK client for addr, closed when the test ends (after workers started later have stopped).
func dial(t *testing.T, addr string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: namespace, Logger: testenv.DiscardSDKLogger()})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// startWorker runs a worker for the package's workflows on taskQueue until stop is called or the test ends.
func startWorker(t *testing.T, c client.Client, taskQueue string) (stop func()) {
	t.Helper()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(signalWorkflow, workflow.RegisterOptions{Name: signalWF})
	w.RegisterWorkflowWithOptions(streamWorkflow, workflow.RegisterOptions{Name: streamWF})
	w.RegisterActivityWithOptions(echoActivity, activity.RegisterOptions{Name: echoAct})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(w.Stop) }
	t.Cleanup(stop)
	return stop
}

// rawClient is a plain gRPC WorkflowService client for addr: no SDK retries, so a test sees each call's own status.
func rawClient(t *testing.T, addr string) workflowservice.WorkflowServiceClient {
	t.Helper()
	return workflowservice.NewWorkflowServiceClient(testenv.DialInsecure(t, addr))
}

// rawStart starts streamWF with input in through svc and returns the call's error.
func rawStart(ctx context.Context, svc workflowservice.WorkflowServiceClient, id, taskQueue, in string) error {
	input, err := converter.GetDefaultDataConverter().ToPayloads(in)
	if err != nil {
		return err
	}
	_, err = svc.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace:    namespace,
		WorkflowId:   id,
		WorkflowType: &commonpb.WorkflowType{Name: streamWF},
		TaskQueue:    &taskqueuepb.TaskQueue{Name: taskQueue},
		Input:        input,
		Identity:     "keyse2e",
		RequestId:    unique("req"),
	})
	return err
}

// history reads a workflow's whole history through svc, one response per page.
func history(ctx context.Context, svc workflowservice.WorkflowServiceClient, id string) ([]*workflowservice.GetWorkflowExecutionHistoryResponse, error) {
	var out []*workflowservice.GetWorkflowExecutionHistoryResponse
	var token []byte
	for range 100 {
		resp, err := svc.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
			Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}, NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("history of %s: more than 100 pages", id)
}

// inputRefusal reads a workflow's history through svc and returns the reason strict decode refused its input for; an
// input that opened, or a failed read, is an error.
func inputRefusal(ctx context.Context, svc workflowservice.WorkflowServiceClient, id string) (string, error) {
	pages, err := history(ctx, svc, id)
	if err != nil {
		return "", err
	}
	in := pages[0].GetHistory().GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(in) == 0 {
		return "", fmt.Errorf("history of %s: no input", id)
	}
	if _, reason, ok := codec.IsRefusal(in[0]); ok {
		return reason, nil
	}
	return "", fmt.Errorf("history of %s: the input opened (encoding %q), want a refusal", id, in[0].GetMetadata()["encoding"])
}

// payloadsOf returns every payload in m (search attributes aside, which stay plaintext by design).
func payloadsOf(t *testing.T, m proto.Message) []*commonpb.Payload {
	t.Helper()
	var out []*commonpb.Payload
	err := tproxy.VisitPayloads(context.Background(), m, tproxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *tproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			out = append(out, ps...)
			return ps, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storedView is what a direct client (no proxy, no keys) reads of one workflow's history.
type storedView struct {
	payloads  int
	plaintext int            // payloads that are not Blindfold envelopes
	keyIDs    map[string]int // key id → payloads sealed with it
	startKey  string         // key id of the workflow input
	hasMarker bool           // the marker appears anywhere in the stored bytes
}

// readStored reads id's history straight from the frontend and describes what is stored.
func readStored(t *testing.T, ctx context.Context, direct workflowservice.WorkflowServiceClient, id string) storedView {
	t.Helper()
	pages, err := history(ctx, direct, id)
	if err != nil {
		t.Fatalf("direct history of %s: %v", id, err)
	}
	v := storedView{keyIDs: map[string]int{}}
	for _, page := range pages {
		b, err := proto.Marshal(page)
		if err != nil {
			t.Fatal(err)
		}
		v.hasMarker = v.hasMarker || bytes.Contains(b, []byte(marker))
		for _, p := range payloadsOf(t, page) {
			v.payloads++
			id, ok := codec.KeyIDIn(p, namespace)
			if !codec.IsEncrypted(p) || !ok {
				v.plaintext++
				continue
			}
			v.keyIDs[id]++
		}
		for _, e := range page.GetHistory().GetEvents() {
			if a := e.GetWorkflowExecutionStartedEventAttributes(); a != nil {
				for _, p := range a.GetInput().GetPayloads() {
					v.startKey, _ = codec.KeyIDIn(p, namespace)
				}
			}
		}
	}
	return v
}

// checkDecoded reads id's history through the proxy and checks that it decodes to plaintext containing each of want.
func checkDecoded(t *testing.T, ctx context.Context, svc workflowservice.WorkflowServiceClient, id string, want ...string) {
	t.Helper()
	pages, err := history(ctx, svc, id)
	if err != nil {
		t.Errorf("history of %s through the proxy: %v", id, err)
		return
	}
	var all []byte
	for _, page := range pages {
		for _, p := range payloadsOf(t, page) {
			if codec.IsEncrypted(p) {
				t.Errorf("history of %s through the proxy still holds an encrypted payload", id)
				return
			}
		}
		b, err := proto.Marshal(page)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	for _, w := range want {
		if !bytes.Contains(all, []byte(w)) {
			t.Errorf("history of %s through the proxy does not contain %q", id, w)
		}
	}
}
