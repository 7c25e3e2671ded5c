// Package policytest runs the proxy under a policy file against the embedded Temporal server: hot reload, reject
// mode, per-tenant keys and shredding, encrypted search attributes.
package policytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
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
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/internal/testenv/gatewayenv"
	"github.com/blindfold-dev/blindfold/keys"
	"github.com/blindfold-dev/blindfold/policy"
	"github.com/blindfold-dev/blindfold/sdkplugin"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

// marker prefixes every plaintext value the tests send, so a byte search finds leaks.
const marker = "BFPOLICYMARK"

func echoWorkflow(ctx workflow.Context, in string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, echoActivity, in).Get(ctx, &out)
	return out, err
}

func echoActivity(_ context.Context, in string) (string, error) { return in + "-done", nil }

// env is one proxy in front of the shared stack, under a policy store, with its keys.
type env struct {
	stack    string // the raw frontend
	proxy    string
	keys     *keys.Manager
	store    *policy.Store
	policyAt string
	storeLog *rejectCounter
}

// rejectCounter is the store's slog.Handler in these tests: it counts the reloads the store refused (logged at error
// level, as Store.Watch documents), which is how a test knows the watcher has seen a bad file.
type rejectCounter struct{ n atomic.Int64 }

func (c *rejectCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (c *rejectCounter) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c *rejectCounter) WithGroup(string) slog.Handler                { return c }

func (c *rejectCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "policy reload rejected") {
		c.n.Add(1)
	}
	return nil
}

func writePolicy(t *testing.T, path, content string) { testenv.WriteFileAtomic(t, path, content) }

// start runs a gateway whose policy is the file written from content, watched with a short poll interval.
func start(t *testing.T, content string, onChange func(*policy.Policy)) *env {
	t.Helper()
	stack := devstacktest.Shared(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writePolicy(t, path, content)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	storeLog := &rejectCounter{}
	store, err := policy.Watch(ctx, path, onChange, policy.WithPollInterval(20*time.Millisecond),
		policy.WithStoreLogger(slog.New(storeLog)))
	if err != nil {
		t.Fatal(err)
	}
	// The gateway as the binary builds it, over the store this test watches with its own poll interval.
	g := gatewayenv.Start(t, gateway.Config{
		Keys:        gatewayenv.LocalKeys(filepath.Join(dir, "keys")),
		PolicyStore: store,
		Proxy:       gateway.ProxyConfig{Upstream: stack.FrontendAddr()},
	})
	return &env{stack: stack.FrontendAddr(), proxy: g.Addr(), keys: g.Keys().Manager, store: store, policyAt: path, storeLog: storeLog}
}

type tenantHeader string

func (h tenantHeader) GetHeaders(context.Context) (map[string]string, error) {
	if h == "" {
		return nil, nil
	}
	return map[string]string{"x-tenant": string(h)}, nil
}

func dial(t *testing.T, addr string, opts client.Options) client.Client {
	t.Helper()
	opts.HostPort = addr
	opts.Logger = quietLogger{}
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// quietLogger drops the SDK's logs (workers log expected failures at error level).
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

func runWorker(t *testing.T, c client.Client, queue string) {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(echoWorkflow)
	w.RegisterActivity(echoActivity)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

func rawConn(t *testing.T, addr string) *grpc.ClientConn { return testenv.DialInsecure(t, addr) }

func describe(t *testing.T, addr, id string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return workflowservice.NewWorkflowServiceClient(rawConn(t, addr)).DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
		Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: id},
	})
}

func history(t *testing.T, addr, id string) (*workflowservice.GetWorkflowExecutionHistoryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return workflowservice.NewWorkflowServiceClient(rawConn(t, addr)).GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
		Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: id},
	})
}

func contains(m proto.Message, s string) bool {
	b, _ := proto.Marshal(m)
	return bytes.Contains(b, []byte(s))
}

// startedInput returns the input payload of a workflow's first event, as stored.
func startedInput(t *testing.T, addr, id string) *commonpb.Payload {
	t.Helper()
	h, err := history(t, addr, id)
	if err != nil {
		t.Fatal(err)
	}
	ev := h.GetHistory().GetEvents()
	if len(ev) == 0 || ev[0].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED {
		t.Fatalf("history of %s has no start event", id)
	}
	return ev[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
}

// TestReloadChangesNewWorkflowsOnly starts a workflow under a policy that keeps memo in plaintext, rewrites the file to
// encrypt memo, waits for the watcher, and starts another: the first workflow's stored memo stays as it was, the
// second's is encrypted, and both read back through the proxy.
func TestReloadChangesNewWorkflowsOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	reloaded := make(chan *policy.Policy, 4)
	e := start(t, `version: 1
namespaces:
  default:
    encrypt: {memo: false}
    allow_plaintext: true
`, func(p *policy.Policy) { reloaded <- p })
	c := dial(t, e.proxy, client.Options{})
	run := func(id, note string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// No worker: the workflow only needs to be started for its memo and input to be stored.
		if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "policy-reload-none",
			Memo: map[string]any{"note": note}}, echoWorkflow, marker+"-input-"+id); err != nil {
			t.Fatal(err)
		}
	}
	suffix := fmt.Sprint(time.Now().UnixNano())
	first, second := "reload-1-"+suffix, "reload-2-"+suffix
	run(first, marker+"-memo-1")

	writePolicy(t, e.policyAt, "version: 1\nnamespaces:\n  default: {}\n")
	select {
	case p := <-reloaded:
		if r, _ := p.Namespace("default"); !r.Encrypt.Memo {
			t.Fatal("reloaded policy does not encrypt memo")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("policy file change not picked up")
	}
	run(second, marker+"-memo-2")

	d1, err := describe(t, e.stack, first)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := describe(t, e.stack, second)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(d1, marker+"-memo-1") {
		t.Error("first workflow: memo not stored in plaintext under the first policy")
	}
	if contains(d2, marker) {
		t.Error("second workflow: memo stored in plaintext after the reload")
	}
	if p := d2.GetWorkflowExtendedInfo(); p != nil && contains(p, marker) {
		t.Error("second workflow: plaintext in extended info")
	}
	memo2 := d2.GetWorkflowExecutionInfo().GetMemo().GetFields()["note"]
	if !codec.IsEncrypted(memo2) {
		t.Errorf("second workflow: stored memo is not an envelope: %v", memo2.GetMetadata())
	}
	// Payloads were encrypted under both policies.
	for _, id := range []string{first, second} {
		if in := startedInput(t, e.stack, id); !codec.IsEncrypted(in) {
			t.Errorf("%s: input stored in plaintext", id)
		}
	}
	// Through the proxy the second reads back in plaintext. The first's memo, stored in plaintext when the policy let
	// memo out, is refused now that the policy seals memo (strict decode: the backend could have written it); its
	// input, sealed under both policies, still reads back.
	d, err := describe(t, e.proxy, second)
	if err != nil {
		t.Fatal(err)
	}
	var note string
	if err := converter.GetDefaultDataConverter().FromPayload(d.GetWorkflowExecutionInfo().GetMemo().GetFields()["note"], &note); err != nil || note != marker+"-memo-2" {
		t.Errorf("second workflow: memo through the proxy %q %v", note, err)
	}
	d, err = describe(t, e.proxy, first)
	if err != nil {
		t.Fatal(err)
	}
	if field, reason, ok := codec.IsRefusal(d.GetWorkflowExecutionInfo().GetMemo().GetFields()["note"]); !ok || field != "Memo.fields[note]" || !strings.Contains(reason, "not sealed") {
		t.Errorf("first workflow: plaintext memo through the proxy after the reload: %v %q %q", ok, field, reason)
	}

	// An invalid file is rejected and the policy in force stays.
	before := e.store.Current()
	rejected := e.storeLog.n.Load()
	writePolicy(t, e.policyAt, "version: 1\nnamespaces:\n  default: {encrypt: {memo: false}}\n")
	for deadline := time.Now().Add(20 * time.Second); e.storeLog.n.Load() == rejected; {
		if time.Now().After(deadline) {
			t.Fatal("invalid policy file not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.store.Current() != before {
		t.Fatal("an invalid policy file replaced the policy")
	}
	third := "reload-3-" + suffix
	run(third, marker+"-memo-3")
	if d, err := describe(t, e.stack, third); err != nil || contains(d, marker) {
		t.Errorf("third workflow after an invalid reload: err=%v plaintext=%v", err, err == nil && contains(d, marker))
	}
}

// TestRejectMode: a namespace whose SDKs must encrypt refuses a plain SDK with a clear error and serves one with the
// Blindfold SDK plugin, end to end through a worker, passing its ciphertext through unchanged.
func TestRejectMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	e := start(t, "version: 1\nnamespaces:\n  default: {plaintext_from_sdk: reject}\n", nil)
	suffix := fmt.Sprint(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	plain := dial(t, e.proxy, client.Options{})
	_, err := plain.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "reject-plain-" + suffix, TaskQueue: "reject-" + suffix},
		echoWorkflow, marker+"-plain")
	if err == nil || !strings.Contains(err.Error(), "plaintext_from_sdk: reject") {
		t.Fatalf("plain SDK start: %v", err)
	}
	var invalid *serviceerror.InvalidArgument
	if !errors.As(err, &invalid) {
		t.Errorf("plain SDK start: not InvalidArgument: %v", err)
	}
	if _, err := describe(t, e.stack, "reject-plain-"+suffix); status.Code(err) != codes.NotFound {
		t.Errorf("refused workflow exists upstream: %v", err)
	}

	// The SDK plugin and the proxy share keys: the proxy authenticates every envelope a client sends.
	plugin, err := sdkplugin.New(e.keys)
	if err != nil {
		t.Fatal(err)
	}
	enc := dial(t, e.proxy, client.Options{Plugins: []client.Plugin{plugin}})
	queue := "reject-plugin-" + suffix
	runWorker(t, enc, queue)
	id := "reject-plugin-" + suffix
	run, err := enc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, echoWorkflow, marker+"-sdk")
	if err != nil {
		t.Fatalf("SDK with the plugin refused: %v", err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil || out != marker+"-sdk-done" {
		t.Fatalf("workflow through reject mode: %q %v", out, err)
	}
	h, err := history(t, e.stack, id)
	if err != nil {
		t.Fatal(err)
	}
	if contains(h, marker) {
		t.Error("history stored plaintext")
	}
	// The proxy opens nothing in reject mode: the raw read through it is ciphertext, which the SDK opens.
	if in := startedInput(t, e.proxy, id); !codec.IsEncrypted(in) {
		t.Error("proxy decoded a response in reject mode")
	}
}

// TestPerTenantShred: two tenants of one namespace get their own key scopes; shredding one leaves the other readable;
// a client that names no tenant cannot start a workflow.
func TestPerTenantShred(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	e := start(t, `version: 1
namespaces:
  default:
    tenant: {header: x-tenant, allowed: [acme, globex]}
`, nil)
	suffix := fmt.Sprint(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids := map[string]string{}
	for _, tenant := range []string{"acme", "globex"} {
		c := dial(t, e.proxy, client.Options{HeadersProvider: tenantHeader(tenant)})
		queue := "tenant-" + tenant + "-" + suffix
		runWorker(t, c, queue)
		id := "tenant-" + tenant + "-" + suffix
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, echoWorkflow, marker+"-"+tenant)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		if err := run.Get(ctx, &out); err != nil || out != marker+"-"+tenant+"-done" {
			t.Fatalf("%s: %q %v", tenant, out, err)
		}
		ids[tenant] = id
		// Every payload of the history, including the worker's activity result, is under the tenant's scope.
		h, err := history(t, e.stack, id)
		if err != nil {
			t.Fatal(err)
		}
		if contains(h, marker) {
			t.Errorf("%s: plaintext stored", tenant)
		}
		n := 0
		for _, ev := range h.GetHistory().GetEvents() {
			var ps []*commonpb.Payload
			ps = append(ps, ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()...)
			ps = append(ps, ev.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads()...)
			ps = append(ps, ev.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads()...)
			ps = append(ps, ev.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()...)
			for _, p := range ps {
				n++
				if kid, _ := codec.KeyIDIn(p, "default"); !strings.HasPrefix(kid, "default."+tenant+"/") {
					t.Errorf("%s: payload sealed with key %q", tenant, kid)
				}
			}
		}
		if n != 4 {
			t.Errorf("%s: %d payloads checked, want 4", tenant, n)
		}
	}

	// No tenant, or one not allowed: refused before anything is stored.
	for name, h := range map[string]tenantHeader{"none": "", "unknown": "initech"} {
		c := dial(t, e.proxy, client.Options{HeadersProvider: h})
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "tenant-" + name + "-" + suffix, TaskQueue: "tenant-none"}, echoWorkflow, marker)
		if err == nil || !strings.Contains(err.Error(), "tenant") {
			t.Errorf("tenant %s: start not refused: %v", name, err)
		}
	}

	if err := e.keys.Shred(ctx, "default.acme"); err != nil {
		t.Fatal(err)
	}
	// After shredding, acme's history still lists, but every payload in it is a refusal naming the destroyed key.
	if h, err := history(t, e.proxy, ids["acme"]); err != nil {
		t.Errorf("acme after shredding its scope: %v", err)
	} else if _, reason, ok := codec.IsRefusal(h.GetHistory().GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]); !ok || !strings.Contains(reason, "destroyed") {
		t.Errorf("acme after shredding its scope: input is not refused as destroyed: %v %q", ok, reason)
	}
	h, err := history(t, e.proxy, ids["globex"])
	if err != nil {
		t.Fatalf("globex after shredding acme: %v", err)
	}
	if !contains(h, marker+"-globex-done") {
		t.Error("globex history not decrypted")
	}
}

// TestEncryptedSearchAttribute: a Keyword search attribute named in the policy is stored encrypted (as a string the
// server accepts) and reads back in plaintext through the proxy; other attributes stay plaintext.
func TestEncryptedSearchAttribute(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	e := start(t, `version: 1
namespaces:
  default:
    encrypt: {search_attributes: [BfSecretNote]}
`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	op := operatorservice.NewOperatorServiceClient(rawConn(t, e.stack))
	_, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: "default",
		SearchAttributes: map[string]enumspb.IndexedValueType{
			"BfSecretNote": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			"BfPlainNote":  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		}})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		t.Fatal(err)
	}
	c := dial(t, e.proxy, client.Options{})
	secret, plain := temporal.NewSearchAttributeKeyKeyword("BfSecretNote"), temporal.NewSearchAttributeKeyKeyword("BfPlainNote")
	id := "sa-" + fmt.Sprint(time.Now().UnixNano())
	// The frontend's search attribute cache learns new attributes within seconds: retry until it knows them.
	for {
		_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "sa-none",
			TypedSearchAttributes: temporal.NewSearchAttributes(secret.ValueSet(marker+"-secret"), plain.ValueSet("visible"))},
			echoWorkflow, marker)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "no mapping defined") || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	raw, err := describe(t, e.stack, id)
	if err != nil {
		t.Fatal(err)
	}
	fields := raw.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	if contains(raw, marker) {
		t.Error("secret search attribute stored in plaintext")
	}
	var stored string
	if err := converter.GetDefaultDataConverter().FromPayload(fields["BfSecretNote"], &stored); err != nil || !strings.HasPrefix(stored, "blindfold:v1:") {
		t.Errorf("stored secret attribute %q %v", stored, err)
	}
	if !contains(fields["BfPlainNote"], "visible") {
		t.Error("plain attribute not stored in plaintext")
	}
	d, err := describe(t, e.proxy, id)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := converter.GetDefaultDataConverter().FromPayload(d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["BfSecretNote"], &got); err != nil || got != marker+"-secret" {
		t.Errorf("secret attribute through the proxy: %q %v", got, err)
	}
}
