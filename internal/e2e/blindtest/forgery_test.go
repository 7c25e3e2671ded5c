package blindtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// Words a refusal's message may use for each reason (compared case-insensitively); the exact wording is the
// proxy's, the reason must be recognisable.
var (
	reasonPlaintext     = []string{"not sealed", "unsealed", "plaintext", "not encrypted"}
	reasonNamespace     = []string{"namespace"}
	reasonAuthenticated = []string{"authentic", "tamper"}
	reasonFormat        = []string{"format", "version"}
	reasonUnknownKey    = []string{"unknown key"}
)

// forgery is a payload the hostile backend hands a worker, and the reasons its refusal may name.
type forgery struct {
	name    string
	payload func(t *testing.T, e *env, m markers) *commonpb.Payload
	reasons []string
}

// forgeries are the payloads a worker behind the proxy must never see as values: plaintext, envelopes sealed for
// another namespace (as they are, and relabelled as this one), tampered with, of an unknown format, random bytes in
// an envelope's clothes, and one naming a key that does not exist.
var forgeries = []forgery{
	{"plaintext", func(t *testing.T, _ *env, m markers) *commonpb.Payload {
		return jsonPayload(t, m.of("forged.plaintext"))
	}, reasonPlaintext},
	{"sealed for another namespace", func(t *testing.T, e *env, m markers) *commonpb.Payload {
		return sealFor(t, e, "other", m.of("forged.othernamespace"))
	}, reasonNamespace},
	{"sealed for another namespace, relabelled", func(t *testing.T, e *env, m markers) *commonpb.Payload {
		p := sealFor(t, e, "other", m.of("forged.relabelled"))
		p.Metadata[codec.MetadataNamespace] = []byte(namespace)
		return p
	}, slices.Concat(reasonAuthenticated, reasonNamespace, reasonUnknownKey)},
	{"tampered ciphertext", func(t *testing.T, e *env, m markers) *commonpb.Payload {
		p := sealFor(t, e, namespace, m.of("forged.tampered"))
		p.Data[len(p.Data)-1] ^= 1
		return p
	}, reasonAuthenticated},
	{"unsupported format", func(t *testing.T, e *env, m markers) *commonpb.Payload {
		p := sealFor(t, e, namespace, m.of("forged.format"))
		p.Metadata[codec.MetadataFormat] = []byte("2")
		return p
	}, reasonFormat},
	{"random bytes", func(t *testing.T, e *env, _ markers) *commonpb.Payload {
		data := make([]byte, 64)
		_, _ = rand.Read(data)
		return envelope(sealingKeyID(t, e), data)
	}, reasonAuthenticated},
	{"unknown key", func(t *testing.T, e *env, m markers) *commonpb.Payload {
		// Format v1 names its key in metadata, which the backend can rewrite (v2 takes it from the ciphertext).
		p := sealV1For(t, e, namespace, m.of("forged.unknownkey"))
		p.Metadata[codec.MetadataKeyID] = []byte(namespace + "/deadbeef")
		return p
	}, reasonUnknownKey},
}

// TestForgedSignalIsRefused has the hostile backend signal each forgery into a workflow run by a worker behind the
// proxy. The workflow code never sees a value; its workflow task fails with a failure (read through the proxy) that
// names the signal and the reason; and a workflow started afterwards on the same task queue completes normally.
func TestForgedSignalIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("forged-signal")
	c, workerLog := startWorker(t, e, tq)
	t.Cleanup(func() {
		// A refusal names the field and the reason, never the content: not in the proxy's log either.
		if f := m.find([]byte(e.proxyLog.String())); len(f) > 0 {
			t.Errorf("the proxy's log shows the markers of %v", f)
		}
	})
	for _, f := range forgeries {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			id := uniqueName(tq)
			startWaiting(t, ctx, c, e, tq, id)
			signalFromBackend(t, ctx, e, id, f.payload(t, e, m))
			checkOthersUnaffected(t, ctx, c, tq)
			waitTaskRefused(t, e, id, f.reasons, workerLog)
		})
	}
}

// TestPoisonPillStaysInItsWorkflow poisons one workflow's signal (an envelope of an unknown format) and another's
// memo (random bytes in an envelope) from the backend. A third workflow on the same task queue still completes
// promptly; the one with the poisoned memo completes too, since its code never reads the memo; a list of the task
// queue's workflows through the proxy returns the full page; and only the poisoned signal's workflow task fails,
// naming the field.
func TestPoisonPillStaysInItsWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("poison")
	c, workerLog := startWorker(t, e, tq)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	p := tq + "-signal"
	startWaiting(t, ctx, c, e, tq, p)
	format2 := sealFor(t, e, namespace, m.of("poison.signal"))
	format2.Metadata[codec.MetadataFormat] = []byte("2")
	signalFromBackend(t, ctx, e, p, format2)

	// The backend starts a workflow whose input is genuine but whose memo is random bytes dressed as an envelope.
	memo := make([]byte, 64)
	_, _ = rand.Read(memo)
	mid := tq + "-memo"
	if _, err := e.frontend.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace: namespace, WorkflowId: mid, RequestId: uniqueName("start"),
		WorkflowType: &commonpb.WorkflowType{Name: quickWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq},
		Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{sealFor(t, e, namespace, "memo-workflow")}},
		Memo:  &commonpb.Memo{Fields: map[string]*commonpb.Payload{"note": envelope(sealingKeyID(t, e), memo)}},
	}); err != nil {
		t.Fatal(err)
	}

	q := checkOthersUnaffected(t, ctx, c, tq)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	var out string
	if err := c.GetWorkflow(wctx, mid, "").Get(wctx, &out); err != nil || out != "memo-workflow" {
		t.Errorf("the workflow with a poisoned memo (its code never reads it): %q, %v; want it completed", out, err)
	}

	var lastErr error
	var listed []string
	if !testenv.Poll(15*time.Second, throttle(250*time.Millisecond, func() bool {
		resp, err := e.viaProxy.ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, PageSize: 100, Query: fmt.Sprintf("TaskQueue = '%s'", tq),
		})
		if lastErr = err; err != nil {
			return true // a page failure, not visibility lag: no point in asking again
		}
		listed = listed[:0]
		for _, x := range resp.GetExecutions() {
			listed = append(listed, x.GetExecution().GetWorkflowId())
		}
		return slices.Contains(listed, p) && slices.Contains(listed, q) && slices.Contains(listed, mid)
	})) || lastErr != nil {
		t.Errorf("list through the proxy: %v (listed %v); want a full page with %s, %s and %s", lastErr, listed, p, q, mid)
	}
	waitTaskRefused(t, e, p, reasonFormat, workerLog)
}

// TestForgedEnvelopeFromClientIsRefused has a caller behind the proxy send payloads dressed as envelopes (a real key
// id, the right namespace) whose data is a plaintext marker. The proxy must authenticate them before forwarding:
// each call fails with InvalidArgument, and neither the marker nor the workflow reaches the backend.
func TestForgedEnvelopeFromClientIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("fake-envelope")
	keyID := sealingKeyID(t, e)
	fake := func(field string) *commonpb.Payload { return envelope(keyID, []byte(m.of(field))) }
	payloads := func(p *commonpb.Payload) *commonpb.Payloads {
		return &commonpb.Payloads{Payloads: []*commonpb.Payload{p}}
	}
	start := func(id string) *workflowservice.StartWorkflowExecutionRequest {
		return &workflowservice.StartWorkflowExecutionRequest{
			Namespace: namespace, WorkflowId: id, RequestId: uniqueName("start"),
			WorkflowType: &commonpb.WorkflowType{Name: waitWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq},
		}
	}
	// A genuine workflow to signal (no worker: it only has to exist).
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	target := tq + "-target"
	if _, err := e.viaProxy.StartWorkflowExecution(ctx, start(target)); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		field string
		call  func(ctx context.Context, id string) error
		// created is the workflow that must not exist afterwards ("" for a signal to target).
		created bool
	}{
		{"fake.startinput", func(ctx context.Context, id string) error {
			r := start(id)
			r.Input = payloads(fake("fake.startinput"))
			_, err := e.viaProxy.StartWorkflowExecution(ctx, r)
			return err
		}, true},
		{"fake.memo", func(ctx context.Context, id string) error {
			r := start(id)
			r.Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{"note": fake("fake.memo")}}
			_, err := e.viaProxy.StartWorkflowExecution(ctx, r)
			return err
		}, true},
		{"fake.header", func(ctx context.Context, id string) error {
			r := start(id)
			r.Header = &commonpb.Header{Fields: map[string]*commonpb.Payload{headerField: fake("fake.header")}}
			_, err := e.viaProxy.StartWorkflowExecution(ctx, r)
			return err
		}, true},
		{"fake.signalwithstart", func(ctx context.Context, id string) error {
			_, err := e.viaProxy.SignalWithStartWorkflowExecution(ctx, &workflowservice.SignalWithStartWorkflowExecutionRequest{
				Namespace: namespace, WorkflowId: id, RequestId: uniqueName("sws"),
				WorkflowType: &commonpb.WorkflowType{Name: waitWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq},
				SignalName: "sig", SignalInput: payloads(fake("fake.signalwithstart")),
			})
			return err
		}, true},
		{"fake.signal", func(ctx context.Context, _ string) error {
			_, err := e.viaProxy.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
				Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: target},
				SignalName: "sig", Input: payloads(fake("fake.signal")), RequestId: uniqueName("signal"),
			})
			return err
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			id := uniqueName(tq)
			err := tc.call(ctx, id)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("call with a fake envelope: %v, want InvalidArgument", err)
			}
			if e.relay.contains(m.of(tc.field)) {
				t.Errorf("the fake envelope's plaintext reached the backend")
			}
			if tc.created {
				_, err := e.frontend.DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
					Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}})
				if status.Code(err) != codes.NotFound {
					t.Errorf("the backend has the workflow started with a fake envelope (describe: %v)", err)
				}
			}
		})
	}
	t.Cleanup(func() {
		events, err := history(context.Background(), e.frontend, target, "")
		if err != nil {
			t.Errorf("target history: %v", err)
		}
		for _, ev := range events {
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				t.Errorf("the backend stored the signal with a fake envelope (event %d)", ev.GetEventId())
			}
		}
		if f := m.find([]byte(e.proxyLog.String())); len(f) > 0 {
			t.Errorf("the proxy's log shows the markers of %v", f)
		}
	})
}

// TestAdoptionOfPlaintextHistory: a namespace adopts Blindfold while a workflow, started and signalled without it,
// waits with plaintext in its history. With adoption.accept_plaintext_before set to the cut-over, a worker behind the
// proxy completes it with the plaintext signal value, while a plaintext signal the backend records after the cut-over
// is still refused. Without adoption (strict, the default), the same history is refused: the workflow's task fails
// naming the refusal, and its code sees nothing.
func TestAdoptionOfPlaintextHistory(t *testing.T) {
	t.Parallel()
	m := newMarkers()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stack := newEnv(t) // only for the raw frontend; each case gets its own gateway below
	tq := uniqueName("adoption")
	// Recorded before the cut-over: started and signalled straight at the frontend, in plaintext.
	before := func(id, sig string) {
		t.Helper()
		if _, err := stack.frontend.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
			Namespace: namespace, WorkflowId: id, RequestId: uniqueName("start"),
			WorkflowType: &commonpb.WorkflowType{Name: waitWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq + "-" + id[len(id)-1:]},
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, "adopted input")}},
		}); err != nil {
			t.Fatal(err)
		}
		if sig != "" {
			signalFromBackend(t, ctx, stack, id, jsonPayload(t, sig))
		}
	}
	adopted, late, strict := tq+"-a", tq+"-l", tq+"-s"
	before(adopted, m.of("adoption.signal"))
	before(late, "")
	before(strict, m.of("adoption.strict"))
	// The cut-over: just after the last event the backend recorded for these workflows, by the server's own clock.
	var cutover time.Time
	for _, id := range []string{adopted, late, strict} {
		events, err := history(ctx, stack.frontend, id, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if at := ev.GetEventTime().AsTime(); at.After(cutover) {
				cutover = at
			}
		}
	}
	cutover = cutover.Add(time.Microsecond)

	policyAt := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyAt, []byte("version: 1\nnamespaces:\n  default:\n    adoption: {accept_plaintext_before: "+
		cutover.UTC().Format(time.RFC3339Nano)+"}\n    allow_plaintext: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adopting := newEnv(t, func(c *gateway.Config) { c.PolicyFile = policyAt })
	c, workerLog := startWorkerOn(t, adopting, tq+"-a", tq+"-l")

	// The plaintext recorded before the cut-over is accepted: the workflow completes with its signal value.
	var out string
	if err := c.GetWorkflow(ctx, adopted, "").Get(ctx, &out); err != nil || out != m.of("adoption.signal") {
		t.Errorf("adopted workflow: %q, %v; want it completed with the plaintext signal recorded before the cut-over", out, err)
	}
	// Plaintext the backend records after the cut-over is refused, even with adoption on.
	signalFromBackend(t, ctx, adopting, late, jsonPayload(t, m.of("adoption.late")))
	waitTaskRefused(t, adopting, late, reasonPlaintext, workerLog)

	// Strict (no adoption): the input of a plaintext history is refused and the workflow task fails naming it.
	strictEnv := newEnv(t)
	_, strictLog := startWorkerOn(t, strictEnv, tq+"-s")
	if !testenv.Poll(30*time.Second, throttle(250*time.Millisecond, func() bool {
		events, err := history(ctx, strictEnv.viaProxy, strict, "")
		if err != nil {
			return false
		}
		for _, ev := range events {
			// The Go SDK fails the workflow itself when its input does not decode.
			f := ev.GetWorkflowTaskFailedEventAttributes().GetFailure()
			if f == nil {
				f = ev.GetWorkflowExecutionFailedEventAttributes().GetFailure()
			}
			if text := failureText(f); strings.Contains(text, codec.EncodingRefusedPrefix+": WorkflowExecutionStartedEventAttributes.input[0]") && mentionsAny(text, reasonPlaintext) {
				return true
			}
		}
		return false
	})) {
		events, err := history(ctx, strictEnv.viaProxy, strict, "")
		var b strings.Builder
		for _, ev := range events {
			fmt.Fprintf(&b, "%v %s%s\n", ev.GetEventType(), failureText(ev.GetWorkflowTaskFailedEventAttributes().GetFailure()), failureText(ev.GetWorkflowExecutionFailedEventAttributes().GetFailure()))
		}
		t.Errorf("strict: no workflow task of %s failed naming the refusal of its plaintext input (%v):\n%s\nworker log:\n%s", strict, err, b.String(), clipLog(strictLog.String()))
	}
	if v, ok := seenValue(strict, "signal"); ok {
		t.Errorf("strict: the workflow code received %q from a plaintext history", v)
	}
}

// startWorkerOn runs a worker behind e's proxy on each task queue until the test ends and returns its client and log.
func startWorkerOn(t *testing.T, e *env, queues ...string) (client.Client, *testenv.SyncBuffer) {
	t.Helper()
	log := &testenv.SyncBuffer{}
	c := dialSDK(t, e.gw.Addr(), log)
	for _, q := range queues {
		w := worker.New(c, q, worker.Options{})
		register(w)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	return c, log
}

// startWorker runs a worker behind e's proxy on tq until the test ends and returns its client and its log (warnings
// and errors: a refused workflow task shows up there as well).
func startWorker(t *testing.T, e *env, tq string) (client.Client, *testenv.SyncBuffer) {
	t.Helper()
	log := &testenv.SyncBuffer{}
	c := dialSDK(t, e.gw.Addr(), log)
	w := worker.New(c, tq, worker.Options{})
	register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return c, log
}

// startWaiting starts a waitWF workflow through the proxy and waits until its first workflow task completed, so a
// signal that follows reaches the worker in a later task. Its workflow task timeout is forgedTaskTimeout, so a task
// the worker never gets shows up soon.
func startWaiting(t *testing.T, ctx context.Context, c client.Client, e *env, tq, id string) {
	t.Helper()
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: tq, WorkflowTaskTimeout: forgedTaskTimeout}
	if _, err := c.ExecuteWorkflow(ctx, opts, waitWF, ""); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "first workflow task of "+id, throttle(100*time.Millisecond, func() bool {
		events, err := history(ctx, e.frontend, id, "")
		return err == nil && slices.ContainsFunc(events, func(ev *historyEvent) bool {
			return ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
		})
	}))
}

// signalFromBackend is the hostile backend recording a "sig" signal with payload p for workflow id.
func signalFromBackend(t *testing.T, ctx context.Context, e *env, id string, p *commonpb.Payload) {
	t.Helper()
	if _, err := e.frontend.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}, SignalName: "sig",
		Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{p}}, Identity: "hostile-backend", RequestId: uniqueName("signal"),
	}); err != nil {
		t.Fatal(err)
	}
}

// checkOthersUnaffected starts a quickWF workflow on tq and requires it to complete within 20 s. It returns its id.
func checkOthersUnaffected(t *testing.T, ctx context.Context, c client.Client, tq string) string {
	t.Helper()
	id := uniqueName(tq + "-other")
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, quickWF, "unaffected")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil || out != "unaffected" {
		t.Errorf("another workflow on the same task queue: %q, %v; want it to complete unaffected", out, err)
	}
	return id
}

// waitTaskRefused waits for workflow id's task to be refused by strict decode: the workflow code never receives the
// signal, and a WorkflowTaskFailed event after the signal, read through the proxy, carries a failure that names the
// signal and one of reasons. On failure it reports what happened instead: the value the code saw, the error of the
// history read, the failure text, or the events the backend holds. Two workflow task timeouts after the signal end
// the wait early: the worker never got the task (its poll failed), so no refusal is coming.
func waitTaskRefused(t *testing.T, e *env, id string, reasons []string, workerLog *testenv.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), taskWait+5*time.Second)
	defer cancel()
	var problem string
	refused := testenv.Poll(taskWait, throttle(250*time.Millisecond, func() bool {
		if v, ok := seenValue(id, "signal"); ok {
			problem = fmt.Sprintf("the workflow code received the forged signal as the value %q", v)
			return true
		}
		if lost := timeoutsAfterSignal(ctx, e, id); lost >= 2 {
			problem = fmt.Sprintf("the workflow task timed out %d times after the signal: the worker never got it", lost)
			if _, err := history(ctx, e.viaProxy, id, ""); err != nil {
				problem += "; history through the proxy: " + err.Error()
			}
			return true
		}
		events, err := history(ctx, e.viaProxy, id, "")
		if err != nil {
			problem = "history through the proxy: " + err.Error()
			return false
		}
		// The Go SDK drops a signal whose payload it cannot decode ("Corrupted signal received"), logging the error
		// with the workflow id, and completes the task: the refusal's encoding, which the error quotes, names the field
		// and the reason.
		for _, line := range strings.Split(workerLog.String(), "\n") {
			if strings.Contains(line, "WorkflowID="+id+" ") && strings.Contains(line, codec.EncodingRefusedPrefix+": WorkflowExecutionSignaledEventAttributes.input[0]") &&
				mentionsAny(line, reasons) && completedAfterSignal(events) {
				problem = ""
				return true
			}
		}
		signalled := false
		problem = "no workflow task failed after the signal, and the worker logged no refusal naming the field"
		for _, ev := range events {
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				signalled = true
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				if !signalled {
					continue
				}
				text := failureText(ev.GetWorkflowTaskFailedEventAttributes().GetFailure())
				if mentionsAny(text, []string{"signal"}) && mentionsAny(text, reasons) {
					problem = ""
					return true
				}
				problem = fmt.Sprintf("the workflow task failed, but the failure does not name the signal and one of %q: %s", reasons, text)
			}
		}
		return false
	}))
	if refused && problem == "" {
		return
	}
	var types []string
	if events, err := history(ctx, e.frontend, id, ""); err == nil {
		for _, ev := range events {
			types = append(types, strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"))
		}
	}
	t.Errorf("%s: the workflow task is not refused within %v: %s\nevents the backend holds: %v\nworker log:\n%s",
		id, taskWait, problem, types, clipLog(workerLog.String()))
}

// completedAfterSignal reports whether a workflow task completed after the first signal: the worker went on.
func completedAfterSignal(events []*historypb.HistoryEvent) bool {
	signalled := false
	for _, ev := range events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			signalled = true
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if signalled {
				return true
			}
		}
	}
	return false
}

// timeoutsAfterSignal counts the workflow task timeouts after the first signal in the history the backend holds.
func timeoutsAfterSignal(ctx context.Context, e *env, id string) int {
	events, err := history(ctx, e.frontend, id, "")
	if err != nil {
		return 0
	}
	n, signalled := 0, false
	for _, ev := range events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			signalled = true
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			if signalled {
				n++
			}
		}
	}
	return n
}

// failureText is a failure's messages and stack traces, its causes' included.
func failureText(f *failurepb.Failure) string {
	var b strings.Builder
	for ; f != nil; f = f.GetCause() {
		b.WriteString(f.GetMessage())
		b.WriteString("\n")
		b.WriteString(f.GetStackTrace())
		b.WriteString("\n")
	}
	return b.String()
}

// mentionsAny reports whether s contains one of words, ignoring case.
func mentionsAny(s string, words []string) bool {
	s = strings.ToLower(s)
	return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(s, strings.ToLower(w)) })
}

// throttle makes a Poll condition do its work at most once per every: conditions that call the server must not
// hammer it at Poll's pace from many parallel tests on a small machine.
func throttle(every time.Duration, cond func() bool) func() bool {
	var last time.Time
	return func() bool {
		if time.Since(last) < every {
			return false
		}
		last = time.Now()
		return cond()
	}
}

// clipLog keeps the end of a long log.
func clipLog(s string) string {
	const max = 4000
	if len(s) > max {
		return "..." + s[len(s)-max:]
	}
	return s
}

// sealFor seals a JSON string payload for ns with the gateway's own codec (its keys, scope ns).
func sealFor(t *testing.T, e *env, ns, v string) *commonpb.Payload {
	t.Helper()
	out, err := e.gw.Codec().Encode(context.Background(), ns, []*commonpb.Payload{jsonPayload(t, v)})
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// sealV1For is sealFor in format v1, as a proxy before the upgrade wrote it.
func sealV1For(t *testing.T, e *env, ns, v string) *commonpb.Payload {
	t.Helper()
	c, err := codec.New(e.gw.Keys().Manager, codec.WithWriteFormat(1))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encode(context.Background(), ns, []*commonpb.Payload{jsonPayload(t, v)})
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// sealingKeyID is the id of the key the gateway seals "default" with: a real key id for forged envelopes.
func sealingKeyID(t *testing.T, e *env) string {
	t.Helper()
	k, err := e.gw.Keys().Manager.SealingKey(context.Background(), codec.Target{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// envelope dresses data as a format-1 envelope of keyID for "default".
func envelope(keyID string, data []byte) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{
		codec.MetadataEncoding:  []byte(codec.EncodingEncrypted),
		codec.MetadataFormat:    []byte(codec.FormatV1),
		codec.MetadataKeyID:     []byte(keyID),
		codec.MetadataNamespace: []byte(namespace),
	}, Data: data}
}
