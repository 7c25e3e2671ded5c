package sdkplugin_test

// Interop tests on the embedded stack: the SDK plugin and the proxy seal the same envelope, so they work on the
// same histories, in either order and in one fleet.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/proxy"
)

// TestMain runs the package's one embedded stack (shared by the interop tests, started on first use), with a second
// namespace for Nexus across namespaces.
func TestMain(m *testing.M) {
	devstacktest.SetSharedOptions(devstacktest.WithNamespaces(peerNamespace))
	devstacktest.Main(m)
}

const interopActivityName = "InteropActivity"

// interopInput is the interop workflow's input. ActivityQueue lets a test run the activity on another worker
// than the workflow, so one execution is worked on by both.
type interopInput struct {
	Marker        string
	ActivityQueue string
	FailWorkflow  bool
}

// interopWorkflow touches every kind of payload a typical workflow has: input, activity input and result, an
// activity failure (its first attempt fails, recorded as the next attempt's last failure), heartbeat details
// (sent, though not kept in the history once the activity completes), a query, a signal, and a result or a
// failure with details.
func interopWorkflow(ctx workflow.Context, in interopInput) (string, error) {
	state := "started " + in.Marker
	if err := workflow.SetQueryHandler(ctx, "state", func() (string, error) { return state, nil }); err != nil {
		return "", err
	}
	if err := workflow.SetQueryHandler(ctx, "fail", func() (string, error) {
		return "", errors.New("query refused for " + in.Marker)
	}); err != nil {
		return "", err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           in.ActivityQueue,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 50 * time.Millisecond, BackoffCoefficient: 1, MaximumAttempts: 3},
	})
	var got string
	if err := workflow.ExecuteActivity(ctx, interopActivityName, in.Marker).Get(ctx, &got); err != nil {
		return "", err
	}
	state = "activity returned " + got
	var approval string
	workflow.GetSignalChannel(ctx, "approve").Receive(ctx, &approval)
	if in.FailWorkflow {
		return "", temporal.NewNonRetryableApplicationError("workflow refused: "+approval, "Refused", nil, "details "+in.Marker)
	}
	return got + " | " + approval, nil
}

func interopActivity(ctx context.Context, marker string) (string, error) {
	if activity.GetInfo(ctx).Attempt == 1 {
		return "", errors.New("first attempt failed for " + marker)
	}
	activity.RecordHeartbeat(ctx, "heartbeat "+marker)
	return "activity saw " + marker, nil
}

func newMarker(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "BLINDFOLD-INTEROP-" + strings.ToUpper(hex.EncodeToString(b))
}

func uniqueName(t *testing.T, what string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%x", strings.ReplaceAll(t.Name(), "/", "-"), what, b)
}

var quietSDKLogger = testenv.DiscardSDKLogger()

func stack(t *testing.T) *devstack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("interop test needs the embedded Temporal server")
	}
	return devstacktest.Shared(t)
}

// countingCodec is the proxy's codec with a tally of the plaintext payloads it had to seal: when every caller
// uses the plugin, the proxy must receive none.
type countingCodec struct {
	*codec.Codec
	plaintextIn atomic.Int64
}

func (c *countingCodec) EncodeFor(ctx context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	for _, p := range ps {
		if p != nil && !codec.IsEncrypted(p) {
			c.plaintextIn.Add(1)
		}
	}
	return c.Codec.EncodeFor(ctx, t, ps)
}

func startProxy(t *testing.T, upstream string, kr codec.Keyring) (string, *countingCodec) {
	t.Helper()
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingCodec{Codec: c}
	srv, err := proxy.New(proxy.Config{
		Upstream: upstream,
		Codec:    cc,
		Logger:   testenv.DiscardLogger(),
	})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	return testenv.ServeUntilCleanup(t, srv, t.Errorf), cc
}

func dial(t *testing.T, addr string, plugins ...client.Plugin) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Logger: quietSDKLogger, Plugins: plugins})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func startWorker(t *testing.T, c client.Client, queue, identity string) {
	t.Helper()
	w := worker.New(c, queue, worker.Options{Identity: identity})
	w.RegisterWorkflow(interopWorkflow)
	w.RegisterActivityWithOptions(interopActivity, activity.RegisterOptions{Name: interopActivityName})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker %s: %v", identity, err)
	}
	t.Cleanup(w.Stop)
}

// runInterop starts the workflow with starter, queries it and signals it with signaler, and returns its result
// (or error) as starter's SDK decodes it.
func runInterop(t *testing.T, starter, signaler client.Client, queue string, in interopInput) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := uniqueName(t, "wf")
	run, err := starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, interopWorkflow, in)
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	// Query until the activity has returned, so the answer carries a payload the activity made.
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := signaler.QueryWorkflow(ctx, id, "", "state")
		if err == nil {
			var state string
			if err := v.Get(&state); err != nil {
				t.Fatalf("decode query result: %v", err)
			}
			if !strings.Contains(state, in.Marker) {
				t.Fatalf("query answered %q, want the marker", state)
			}
			if strings.HasPrefix(state, "activity returned") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow never reported its activity result (last query error: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := signaler.SignalWorkflow(ctx, id, "", "approve", "approved by "+in.Marker); err != nil {
		t.Fatalf("signal: %v", err)
	}
	var out string
	err = run.Get(ctx, &out)
	return out, err
}

func checkResult(t *testing.T, in interopInput, out string, err error) {
	t.Helper()
	if in.FailWorkflow {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "workflow refused: approved by "+in.Marker) {
			t.Fatalf("workflow error = %v, want the refusal with its text", err)
		}
		var details string
		if derr := appErr.Details(&details); derr != nil || details != "details "+in.Marker {
			t.Fatalf("failure details = %q, %v", details, derr)
		}
		return
	}
	if err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	if want := "activity saw " + in.Marker + " | approved by " + in.Marker; out != want {
		t.Fatalf("result = %q, want %q", out, want)
	}
}

// rawHistory fetches a workflow's history with c, which must be a client without any codec so the events come
// back exactly as the server stores them.
func rawHistory(t *testing.T, c client.Client, workflowID string) *historypb.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("fetch history: %v", err)
		}
		h.Events = append(h.Events, ev)
	}
	return h
}

// historyParts collects every payload and every failure of h.
func historyParts(t *testing.T, h *historypb.History) (payloads []*commonpb.Payload, failures []*failurepb.Failure) {
	t.Helper()
	ctx := context.Background()
	err := apiproxy.VisitPayloads(ctx, h, apiproxy.VisitPayloadsOptions{
		Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			payloads = append(payloads, ps...)
			return ps, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = apiproxy.VisitFailures(ctx, h, apiproxy.VisitFailuresOptions{
		Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error {
			failures = append(failures, f)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return payloads, failures
}

// requireNoPlaintext checks the history's JSON has no marker and every payload in it is one Blindfold envelope
// (decoding once gives the plaintext payload, not another envelope), and returns the decoded payloads' text.
func requireSealedOnce(t *testing.T, c *codec.Codec, h *historypb.History, marker string) string {
	t.Helper()
	js, err := protojson.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte(marker)) {
		t.Fatalf("history JSON contains the marker in plaintext")
	}
	payloads, failures := historyParts(t, h)
	if len(payloads) < 6 {
		t.Fatalf("history has only %d payloads", len(payloads))
	}
	for i, p := range payloads {
		if !codec.IsEncrypted(p) {
			t.Fatalf("history payload %d is not encrypted: %v", i, p.GetMetadata())
		}
	}
	for _, f := range failures {
		if f.GetMessage() != "Encoded failure" || f.GetStackTrace() != "" || !codec.IsEncrypted(f.GetEncodedAttributes()) {
			t.Fatalf("failure stored with text: message %q, encoded attributes %v", f.GetMessage(), f.GetEncodedAttributes().GetMetadata())
		}
	}
	opened, err := c.Decode(context.Background(), "default", payloads)
	if err != nil {
		t.Fatalf("codec cannot decode the history's payloads: %v", err)
	}
	var text strings.Builder
	for i, p := range opened {
		if codec.IsEncrypted(p) {
			t.Fatalf("payload %d is encrypted twice", i)
		}
		text.Write(p.GetData())
		text.WriteByte('\n')
	}
	return text.String()
}

func requireNoMarkerInDatabase(t *testing.T, s *devstack.Stack, marker string, want bool) {
	t.Helper()
	found := false
	for _, f := range s.SQLiteFiles() {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(marker)) {
			found = true
		}
	}
	if found != want {
		t.Fatalf("marker found in the SQLite files: %v, want %v", found, want)
	}
}

// (a) SDK-encrypted payloads pass through the proxy without being encrypted a second time, and decode with
// the codec.
func TestInteropSDKEncryptedThroughProxy(t *testing.T) {
	s := stack(t)
	kr, proxyKeys := sharedKeyDir(t)
	proxyAddr, proxyCodec := startProxy(t, s.FrontendAddr(), proxyKeys)
	p := newPlugin(t, kr)
	viaProxy := dial(t, proxyAddr, p)
	queue := uniqueName(t, "tq")
	startWorker(t, viaProxy, queue, "plugin-via-proxy")

	for _, fail := range []bool{false, true} {
		in := interopInput{Marker: newMarker(t), ActivityQueue: queue, FailWorkflow: fail}
		out, err := runInterop(t, viaProxy, viaProxy, queue, in)
		checkResult(t, in, out, err)
	}
	if n := proxyCodec.plaintextIn.Load(); n != 0 {
		t.Fatalf("the proxy received %d plaintext payloads from plugin callers, want 0", n)
	}

	// Read the stored history with no codec at all, straight from the backend.
	direct := dial(t, s.FrontendAddr())
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	in := interopInput{Marker: newMarker(t), ActivityQueue: queue}
	id := uniqueName(t, "wf")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := viaProxy.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, interopWorkflow, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := viaProxy.SignalWorkflow(ctx, id, "", "approve", "approved by "+in.Marker); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	text := requireSealedOnce(t, c, rawHistory(t, direct, id), in.Marker)
	for _, want := range []string{"activity saw " + in.Marker, "approved by " + in.Marker, "first attempt failed for " + in.Marker} {
		if !strings.Contains(text, want) {
			t.Errorf("decoded history lacks %q", want)
		}
	}
	// The codec endpoint decodes the same blobs (see TestRemoteCodecAgainstEndpoint for the HTTP round trip).
	url := startCodecEndpoint(t, c)
	remote, err := newRemotePlugin(url)
	if err != nil {
		t.Fatal(err)
	}
	payloads, _ := historyParts(t, rawHistory(t, direct, id))
	opened, err := remote.PayloadCodec("default").Decode(payloads)
	if err != nil {
		t.Fatalf("codec endpoint cannot decode the SDK-encrypted history: %v", err)
	}
	var sb strings.Builder
	for _, p := range opened {
		sb.Write(p.GetData())
	}
	if !strings.Contains(sb.String(), "activity saw "+in.Marker) {
		t.Fatalf("codec endpoint's decode lacks the activity result")
	}
}

// (b) Histories the proxy encrypted decode with the plugin directly, with no proxy in the path.
func TestInteropProxyEncryptedDecodesWithPlugin(t *testing.T) {
	s := stack(t)
	kr, proxyKeys := sharedKeyDir(t)
	proxyAddr, _ := startProxy(t, s.FrontendAddr(), proxyKeys)
	plain := dial(t, proxyAddr)
	queue := uniqueName(t, "tq")
	startWorker(t, plain, queue, "plain-via-proxy")

	p := newPlugin(t, kr)
	direct := dial(t, s.FrontendAddr(), p)
	raw := dial(t, s.FrontendAddr())

	for _, fail := range []bool{false, true} {
		in := interopInput{Marker: newMarker(t), ActivityQueue: queue, FailWorkflow: fail}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		id := uniqueName(t, "wf")
		if _, err := plain.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, interopWorkflow, in); err != nil {
			t.Fatal(err)
		}
		if err := plain.SignalWorkflow(ctx, id, "", "approve", "approved by "+in.Marker); err != nil {
			t.Fatal(err)
		}
		// The plugin client, talking to the backend directly, decodes the proxy-sealed result or failure.
		var out string
		err := direct.GetWorkflow(ctx, id, "").Get(ctx, &out)
		checkResult(t, in, out, err)
		// And the query answer the plain worker gave through the proxy.
		v, err := direct.QueryWorkflow(ctx, id, "", "state")
		if err != nil {
			t.Fatalf("query through the plugin client: %v", err)
		}
		var state string
		if err := v.Get(&state); err != nil || !strings.Contains(state, in.Marker) {
			t.Fatalf("query answer = %q, %v", state, err)
		}
		cancel()

		// Every event of the stored history decodes with the plugin's converters.
		h := rawHistory(t, raw, id)
		if js, _ := protojson.Marshal(h); bytes.Contains(js, []byte(in.Marker)) {
			t.Fatalf("proxy left the marker in the history")
		}
		dc, fc := p.DataConverter("default"), p.FailureConverter("default")
		var start interopInput
		if err := dc.FromPayloads(h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetInput(), &start); err != nil || start != in {
			t.Fatalf("plugin decoded the input as %+v, %v", start, err)
		}
		payloads, failures := historyParts(t, h)
		opened, err := p.PayloadCodec("default").Decode(payloads)
		if err != nil {
			t.Fatalf("plugin cannot decode the proxy-sealed history: %v", err)
		}
		for i, pl := range opened {
			if codec.IsEncrypted(pl) || !codec.IsEncrypted(payloads[i]) {
				t.Fatalf("payload %d: stored sealed %v, opened sealed %v", i, codec.IsEncrypted(payloads[i]), codec.IsEncrypted(pl))
			}
		}
		sawFailure := false
		for _, f := range failures {
			if strings.Contains(fc.FailureToError(f).Error(), in.Marker) {
				sawFailure = true
			}
		}
		if !sawFailure {
			t.Fatalf("no failure in the history decoded to its text with the plugin")
		}
	}
}

// (c) A mixed fleet: a plugin worker connected straight to the backend and a plain worker behind the proxy
// complete the same workflows, each doing part of every execution; the stored state has no plaintext.
func TestInteropMixedFleet(t *testing.T) {
	s := stack(t)
	kr, proxyKeys := sharedKeyDir(t)
	proxyAddr, _ := startProxy(t, s.FrontendAddr(), proxyKeys)
	p := newPlugin(t, kr)

	pluginClient := dial(t, s.FrontendAddr(), p)
	plainClient := dial(t, proxyAddr)
	raw := dial(t, s.FrontendAddr())
	pluginQueue, plainQueue := uniqueName(t, "plugin-tq"), uniqueName(t, "plain-tq")
	startWorker(t, pluginClient, pluginQueue, "plugin-direct")
	startWorker(t, plainClient, plainQueue, "plain-via-proxy")

	type run struct {
		name              string
		starter, signaler client.Client
		workflowQueue     string
		activityQueue     string
		fail              bool
	}
	runs := []run{
		{"plugin workflow, plain activity, plain starter", plainClient, pluginClient, pluginQueue, plainQueue, false},
		{"plain workflow, plugin activity, plugin starter", pluginClient, plainClient, plainQueue, pluginQueue, false},
		{"plugin workflow fails, plain activity", pluginClient, plainClient, pluginQueue, plainQueue, true},
		{"plain workflow fails, plugin activity", plainClient, pluginClient, plainQueue, pluginQueue, true},
	}
	var markers []string
	c, err := codec.New(kr)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			in := interopInput{Marker: newMarker(t), ActivityQueue: r.activityQueue, FailWorkflow: r.fail}
			markers = append(markers, in.Marker)
			id := uniqueName(t, "wf")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			wr, err := r.starter.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: r.workflowQueue}, interopWorkflow, in)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.signaler.SignalWorkflow(ctx, id, "", "approve", "approved by "+in.Marker); err != nil {
				t.Fatal(err)
			}
			var out string
			checkResult(t, in, out, wr.Get(ctx, &out))

			h := rawHistory(t, raw, id)
			requireSealedOnce(t, c, h, in.Marker)
			// Both workers took part: the workflow tasks were completed by one, the activity by the other.
			identities := map[string]bool{}
			for _, ev := range h.Events {
				if a := ev.GetWorkflowTaskCompletedEventAttributes(); a != nil {
					identities["wf:"+a.GetIdentity()] = true
				}
				if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
					identities["act:"+a.GetIdentity()] = true
				}
			}
			wfWorker, actWorker := "plugin-direct", "plain-via-proxy"
			if r.workflowQueue == plainQueue {
				wfWorker, actWorker = actWorker, wfWorker
			}
			if !identities["wf:"+wfWorker] || !identities["act:"+actWorker] {
				t.Fatalf("history identities %v, want workflow tasks by %s and the activity by %s", identities, wfWorker, actWorker)
			}
		})
	}
	for _, m := range markers {
		requireNoMarkerInDatabase(t, s, m, false)
	}

	// Control: a workflow run with no encryption anywhere leaves its marker in the database, so the scan above
	// would have seen ours.
	control := interopInput{Marker: newMarker(t), ActivityQueue: uniqueName(t, "control-tq")}
	startWorker(t, raw, control.ActivityQueue, "control")
	out, err := runInterop(t, raw, raw, control.ActivityQueue, control)
	checkResult(t, control, out, err)
	requireNoMarkerInDatabase(t, s, control.Marker, true)
}

// recordingDialOption records every RespondQueryTaskCompleted and RespondWorkflowTaskCompleted request a client
// sent, as marshalled after the call (the plugin's interceptor, inside this one, rewrites requests in place).
func recordingDialOption(sent *[][]byte, mu *sync.Mutex) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch req.(type) {
		case *workflowservice.RespondQueryTaskCompletedRequest, *workflowservice.RespondWorkflowTaskCompletedRequest:
			b, _ := proto.Marshal(req.(proto.Message))
			mu.Lock()
			*sent = append(*sent, b)
			mu.Unlock()
		}
		return err
	})
}

// A failed query's error text reaches the caller, restored from the sealed failure, while the worker sends it
// only sealed: without the plugin's interceptor the SDK would also send it in plaintext in error_message.
func TestInteropQueryErrorText(t *testing.T) {
	s := stack(t)
	kr, proxyKeys := sharedKeyDir(t)
	proxyAddr, _ := startProxy(t, s.FrontendAddr(), proxyKeys)
	p := newPlugin(t, kr)
	for _, tc := range []struct{ name, addr string }{{"direct", s.FrontendAddr()}, {"through the proxy", proxyAddr}} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				sent [][]byte
			)
			wc, err := client.Dial(client.Options{HostPort: tc.addr, Logger: quietSDKLogger, Plugins: []client.Plugin{p},
				ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{recordingDialOption(&sent, &mu)}}})
			if err != nil {
				t.Fatal(err)
			}
			defer wc.Close()
			queue := uniqueName(t, "tq")
			startWorker(t, wc, queue, "plugin-worker")
			caller := dial(t, tc.addr, p)

			in := interopInput{Marker: newMarker(t), ActivityQueue: queue}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			id := uniqueName(t, "wf")
			run, err := caller.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, interopWorkflow, in)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ { // once while the workflow runs, once after it completed
				_, err = caller.QueryWorkflow(ctx, id, "", "fail")
				if err == nil || !strings.Contains(err.Error(), "query refused for "+in.Marker) {
					t.Fatalf("failed query returned %v, want the handler's error text", err)
				}
				if i == 0 {
					if err := caller.SignalWorkflow(ctx, id, "", "approve", "ok"); err != nil {
						t.Fatal(err)
					}
					if err := run.Get(ctx, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(sent) == 0 {
				t.Fatalf("recorded no responses")
			}
			for _, b := range sent {
				if bytes.Contains(b, []byte(in.Marker)) {
					t.Fatalf("the worker sent the query error text in plaintext")
				}
			}
		})
	}
}
