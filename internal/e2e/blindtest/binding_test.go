package blindtest

// Format v2's bindings end to end (issue 14, docs/binding.md): every value the proxy seals is bound to the workflow
// (or schedule, batch job, Nexus operation) it belongs to, so a value the backend moves from one workflow into
// another is refused there, while every flow that legitimately crosses workflows still reads its values.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchpb "go.temporal.io/api/batch/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	"go.temporal.io/api/operatorservice/v1"
	apiproxy "go.temporal.io/api/proxy"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// peerNamespace is the second namespace of the shared server (registered in TestMain): the handler side of the
// cross-namespace Nexus test.
const peerNamespace = "blindtest-peer"

// TestMovedInputIsRefused: the hostile backend (a raw client straight to the frontend) copies workflow A's sealed
// input into a signal to workflow B, both worked behind the proxy. The envelope is genuine, sealed for this
// namespace with this namespace's key, but bound to A: B's code never sees it (the SDK drops the refused signal,
// logging the refusal, which names the field and A), B's genuine signal still arrives, and B completes with it.
func TestMovedInputIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("moved")
	c, workerLog := startWorker(t, e, tq)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	a, b := tq+"-a", tq+"-b"
	// A only has to exist with its input: nobody works its task queue.
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: a, TaskQueue: tq + "-idle"}, waitWF, m.of("moved.input")); err != nil {
		t.Fatal(err)
	}
	startWaiting(t, ctx, c, e, tq, b)
	events, err := history(ctx, e.frontend, a, "")
	if err != nil {
		t.Fatal(err)
	}
	moved := events[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
	if bd, ok := codec.BindingOf(moved); !ok || bd != codec.Workflow(a) {
		t.Errorf("A's stored input claims %v (an envelope: %v), want %v", bd, ok, codec.Workflow(a))
	}
	signalFromBackend(t, ctx, e, b, moved)
	// The refusal names the field, and the workflow the value belongs to.
	waitTaskRefused(t, e, b, []string{a}, workerLog)

	if err := c.SignalWorkflow(ctx, b, "", "sig", m.of("genuine.signal")); err != nil {
		t.Fatal(err)
	}
	var out string
	if err := c.GetWorkflow(ctx, b, "").Get(ctx, &out); err != nil || out != m.of("genuine.signal") {
		t.Errorf("B: %q, %v; want it completed with its genuine signal", out, err)
	}
	if f := m.find([]byte(e.proxyLog.String() + workerLog.String())); len(f) > 0 {
		t.Errorf("the proxy's or the worker's log shows the markers of %v", f)
	}
}

// TestScenarioIsBound runs the blindness scenario (children, signal-external, continue-as-new, updates, queries,
// activities, local activities, memo upserts, a workflow task panic, signal-with-start, reset, terminate, cancel, a
// schedule) through the proxy: every value reads back (checkReadBack), and every payload the backend stores is
// bound to the workflow it belongs to, or to the child's or the signal target's where the event is about them. (The
// scenario deletes its schedule: TestTriggeredScheduleReadsItsInput checks a schedule's bindings.)
func TestScenarioIsBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("bound")
	got := runScenario(t, dialSDK(t, e.gw.Addr(), nil), tq, m)
	checkReadBack(t, m, got)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	main := tq + "-main"
	for _, id := range []string{main, main + "-failing", main + "-continuing", main + "-echo", tq + "-panicky", tq + "-sws",
		tq + "-terminate", tq + "-cancel"} {
		requireBound(t, ctx, e, id)
	}
}

// TestTriggeredScheduleReadsItsInput: a schedule created through the proxy is triggered; the workflow the server
// starts ("<action id>-<time>") reads the input, and DescribeSchedule through the proxy shows the action's input and
// memo and the schedule's memo decoded.
func TestTriggeredScheduleReadsItsInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("sched")
	c, _ := startWorker(t, e, tq)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	action := tq + "-wf"
	sh, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: tq, Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
		Memo: map[string]any{"note": m.of("sched.memo")},
		Action: &client.ScheduleWorkflowAction{ID: action, Workflow: quickWF, Args: []any{m.of("sched.input")}, TaskQueue: tq,
			Memo: map[string]any{"note": m.of("sched.actionmemo")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Delete(context.WithoutCancel(ctx)) }()
	if err := sh.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}); err != nil {
		t.Fatal(err)
	}
	var started string
	testenv.WaitFor(t, 30*time.Second, "the schedule's triggered action", throttle(100*time.Millisecond, func() bool {
		d, err := sh.Describe(ctx)
		if err != nil || len(d.Info.RecentActions) == 0 {
			return false
		}
		started = d.Info.RecentActions[0].StartWorkflowResult.WorkflowID
		return true
	}))
	if !strings.HasPrefix(started, action+"-") {
		t.Errorf("the schedule started %q, want %q + a time", started, action+"-")
	}
	var out string
	if err := c.GetWorkflow(ctx, started, "").Get(ctx, &out); err != nil || out != m.of("sched.input") {
		t.Errorf("the scheduled workflow read %q, %v; want its input %q", out, err, m.of("sched.input"))
	}
	d, err := sh.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeString(d.Memo.GetFields()["note"]); got != m.of("sched.memo") {
		t.Errorf("the schedule's memo reads %q", got)
	}
	a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || len(a.Args) != 1 {
		t.Fatalf("the schedule's action: %#v", d.Schedule.Action)
	}
	if p, _ := a.Args[0].(*commonpb.Payload); decodeString(p) != m.of("sched.input") {
		t.Errorf("the action's input reads %q", decodeString(p))
	}
	if p, _ := a.Memo["note"].(*commonpb.Payload); decodeString(p) != m.of("sched.actionmemo") {
		t.Errorf("the action's memo reads %q", decodeString(p))
	}
	events, err := history(ctx, e.frontend, started, "")
	if err != nil {
		t.Fatal(err)
	}
	requirePayloadsBound(t, "the scheduled workflow's start", events[0], codec.Binding{Kind: codec.BindScheduledWorkflow, ID: action})
	raw, err := e.frontend.DescribeSchedule(ctx, &workflowservice.DescribeScheduleRequest{Namespace: namespace, ScheduleId: tq})
	if err != nil {
		t.Fatal(err)
	}
	requirePayloadsBound(t, "the schedule's memo", raw.GetMemo(), codec.Binding{Kind: codec.BindSchedule, ID: tq})
	requirePayloadsBound(t, "the schedule's action", raw.GetSchedule().GetAction(), codec.Binding{Kind: codec.BindScheduledWorkflow, ID: action})
}

// TestBatchSignalReachesEveryTarget: a batch signal (StartBatchOperation through the proxy) is one value the server
// delivers to many workflows; each of them receives it.
func TestBatchSignalReachesEveryTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("batch")
	c, _ := startWorker(t, e, tq)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var targets []*commonpb.WorkflowExecution
	for i := range 3 {
		id := fmt.Sprintf("%s-%d", tq, i)
		startWaiting(t, ctx, c, e, tq, id)
		targets = append(targets, &commonpb.WorkflowExecution{WorkflowId: id})
	}
	job := uniqueName("batch-job")
	if _, err := e.viaProxy.StartBatchOperation(ctx, &workflowservice.StartBatchOperationRequest{
		Namespace: namespace, JobId: job, Reason: "blindtest batch signal", Executions: targets,
		Operation: &workflowservice.StartBatchOperationRequest_SignalOperation{SignalOperation: &batchpb.BatchOperationSignal{
			Signal: "sig", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, m.of("batch.signal"))}},
			Identity: "blindtest",
		}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range targets {
		var out string
		if err := c.GetWorkflow(ctx, x.GetWorkflowId(), "").Get(ctx, &out); err != nil || out != m.of("batch.signal") {
			t.Errorf("%s: %q, %v; want it completed with the batch signal", x.GetWorkflowId(), out, err)
			continue
		}
		events, err := history(ctx, e.frontend, x.GetWorkflowId(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
				requirePayloadsBound(t, x.GetWorkflowId()+"'s batch signal", ev, codec.Binding{Kind: codec.BindBatch, ID: job})
			}
		}
	}
	if e.relay.contains(m.of("batch.signal")) {
		t.Errorf("the batch signal reached the backend in plaintext")
	}
}

// TestResetRunReadsItsHistory resets a completed workflow to its first workflow task: the new run replays the
// copied input and the reapplied signal and completes with the same result.
func TestResetRunReadsItsHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("reset")
	c, _ := startWorker(t, e, tq)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	id := tq + "-echo"
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, echoWF, m.of("reset.input"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignalWorkflow(ctx, id, "", "sig", m.of("reset.signal")); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	events, err := history(ctx, e.viaProxy, id, run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	var finish int64
	for _, ev := range events {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			finish = ev.GetEventId()
			break
		}
	}
	resp, err := c.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: run.GetRunID()},
		Reason: "blindtest reset", WorkflowTaskFinishEventId: finish, RequestId: uniqueName("reset"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := c.GetWorkflow(ctx, id, resp.GetRunId()).Get(ctx, &out); err != nil || out != m.of("reset.result") {
		t.Errorf("the reset run: %q, %v; want %q", out, err, m.of("reset.result"))
	}
	requireBound(t, ctx, e, id)
}

// TestV1HistoryReadsAfterUpgrade: a workflow whose history a pre-v2 proxy wrote (format 1: input and signal bound to
// the namespace only) is completed by a worker behind a v2 proxy, which accepts v1 envelopes everywhere
// (docs/binding.md: the documented weakness of old histories).
func TestV1HistoryReadsAfterUpgrade(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("v1")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	v1 := v1Codec(t, e)
	seal := func(v string) *commonpb.Payloads {
		out, err := v1.Encode(ctx, namespace, []*commonpb.Payload{jsonPayload(t, v)})
		if err != nil {
			t.Fatal(err)
		}
		if f := string(out[0].GetMetadata()[codec.MetadataFormat]); f != codec.FormatV1 {
			t.Fatalf("the old proxy's codec wrote format %q, want 1", f)
		}
		return &commonpb.Payloads{Payloads: out}
	}
	id := tq + "-old"
	// What the old proxy forwarded, recorded by the backend before the upgrade; no worker runs yet.
	if _, err := e.frontend.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace: namespace, WorkflowId: id, RequestId: uniqueName("start"),
		WorkflowType: &commonpb.WorkflowType{Name: echoWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq},
		Input: seal(m.of("v1.input")),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.frontend.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}, SignalName: "sig",
		Input: seal(m.of("v1.signal")), RequestId: uniqueName("signal"),
	}); err != nil {
		t.Fatal(err)
	}
	// After the upgrade: a worker behind the v2 proxy.
	c, _ := startWorker(t, e, tq)
	var out string
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &out); err != nil || out != m.of("v1.result") {
		t.Errorf("the v1 workflow: %q, %v; want %q", out, err, m.of("v1.result"))
	}
	for _, f := range []string{"v1.input", "v1.signal"} {
		if v, _ := seenValue(m.run, f); v != m.of(f) {
			t.Errorf("the worker read %s as %q", f, v)
		}
	}
}

// v1Codec is the codec of a proxy before the upgrade: the gateway's keys, writing format 1.
func v1Codec(t *testing.T, e *env) *codec.Codec {
	t.Helper()
	c, err := codec.New(e.gw.Keys().Manager, codec.WithWriteFormat(1))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	bindNexusCallerWF = "blindtest-bind-nexus-caller"
	bindNexusService  = "blindtest-bind"
)

// bindNexusCallerWorkflow calls the "echo" operation of endpoint with the marker of "nexus.input" and returns the
// result.
func bindNexusCallerWorkflow(ctx workflow.Context, endpoint, run string) (string, error) {
	var res string
	err := workflow.NewNexusClient(endpoint, bindNexusService).ExecuteOperation(ctx, "echo", mk(run, "nexus.input"),
		workflow.NexusOperationOptions{ScheduleToCloseTimeout: 30 * time.Second}).Get(ctx, &res)
	return res, err
}

// TestNexusBindings calls a Nexus operation through the proxy whose handler (a raw client polling through the proxy,
// answering as the Go SDK does) runs in the caller's namespace, and in another one that the policy names as a Nexus
// peer of it (nexus_peers). The handler reads the input sealed in the caller's namespace for the operation; the
// caller reads the result, sealed in the handler's namespace as a Nexus result.
func TestNexusBindings(t *testing.T) {
	t.Parallel()
	policyAt := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyAt, []byte("version: 1\nnamespaces:\n  default:\n    nexus_peers: ["+peerNamespace+"]\n  "+
		peerNamespace+":\n    nexus_peers: [default]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *gateway.Config) { c.PolicyFile = policyAt })
	for _, handlerNS := range []string{namespace, peerNamespace} {
		t.Run(handlerNS, func(t *testing.T) {
			t.Parallel()
			m := newMarkers()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			conn := testenv.DialInsecure(t, e.gw.Addr())
			svc := workflowservice.NewWorkflowServiceClient(conn)
			ops := operatorservice.NewOperatorServiceClient(conn)
			callerTQ, handlerTQ, endpoint := uniqueName("bind-nexus-caller"), uniqueName("bind-nexus-handler"), uniqueName("bt-bind-nexus")
			created, err := ops.CreateNexusEndpoint(ctx, &operatorservice.CreateNexusEndpointRequest{Spec: &nexuspb.EndpointSpec{
				Name: endpoint, Target: &nexuspb.EndpointTarget{Variant: &nexuspb.EndpointTarget_Worker_{Worker: &nexuspb.EndpointTarget_Worker{
					Namespace: handlerNS, TaskQueue: handlerTQ,
				}}},
			}})
			if err != nil {
				t.Fatalf("create Nexus endpoint: %v", err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = ops.DeleteNexusEndpoint(ctx, &operatorservice.DeleteNexusEndpointRequest{
					Id: created.GetEndpoint().GetId(), Version: created.GetEndpoint().GetVersion()})
			})
			hctx, hcancel := context.WithCancel(ctx)
			handled := make(chan struct{})
			go func() { defer close(handled); serveNexusEcho(hctx, t, svc, handlerNS, handlerTQ) }()
			defer func() { hcancel(); <-handled }()

			c := dialSDK(t, e.gw.Addr(), nil)
			w := worker.New(c, callerTQ, worker.Options{})
			w.RegisterWorkflowWithOptions(bindNexusCallerWorkflow, workflow.RegisterOptions{Name: bindNexusCallerWF})
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: callerTQ, TaskQueue: callerTQ}, bindNexusCallerWF, endpoint, m.run)
			if err != nil {
				t.Fatal(err)
			}
			var out string
			if err := run.Get(ctx, &out); err != nil || out != m.of("nexus.result") {
				t.Fatalf("Nexus caller: %q, %v; want %q", out, err, m.of("nexus.result"))
			}
			if v, _ := seenValue(m.run, "nexus.input"); v != m.of("nexus.input") {
				t.Errorf("the handler read the input as %q", v)
			}
			events, err := history(ctx, e.frontend, run.GetID(), run.GetRunID())
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				switch ev.GetEventType() {
				case enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED:
					requirePayloadsBound(t, "the operation's input", ev.GetNexusOperationScheduledEventAttributes(),
						codec.Binding{Kind: codec.BindNexus, ID: bindNexusService + "/echo"})
					requireSealedIn(t, e, "the operation's input", ev.GetNexusOperationScheduledEventAttributes(), namespace)
				case enumspb.EVENT_TYPE_NEXUS_OPERATION_COMPLETED:
					requirePayloadsBound(t, "the operation's result", ev.GetNexusOperationCompletedEventAttributes(), codec.Binding{Kind: codec.BindNexus})
					requireSealedIn(t, e, "the operation's result", ev.GetNexusOperationCompletedEventAttributes(), handlerNS)
				}
			}
			if leaks := e.relay.leaks(m); len(leaks) > 0 {
				t.Errorf("markers reached the backend in plaintext: %v", leaks)
			}
		})
	}
}

// serveNexusEcho answers the Nexus tasks of tq in ns until ctx ends, as the Go SDK's handler answers a synchronous
// operation: "echo" returns answer(input). It reports each input to seen.
func serveNexusEcho(ctx context.Context, t *testing.T, svc workflowservice.WorkflowServiceClient, ns, tq string) {
	for ctx.Err() == nil {
		task, err := svc.PollNexusTaskQueue(ctx, &workflowservice.PollNexusTaskQueueRequest{
			Namespace: ns, Identity: "blindtest-nexus-handler",
			TaskQueue: &taskqueuepb.TaskQueue{Name: tq, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		})
		if err != nil {
			if ctx.Err() == nil {
				t.Logf("poll Nexus task queue: %v", err)
				time.Sleep(100 * time.Millisecond) // a retry pause, not a wait for an event
			}
			continue
		}
		start := task.GetRequest().GetStartOperation()
		if len(task.GetTaskToken()) == 0 || start == nil {
			continue
		}
		in := decodeString(start.GetPayload())
		field, run, _ := parseMarker(in)
		see(run, field, in)
		if _, err := svc.RespondNexusTaskCompleted(ctx, &workflowservice.RespondNexusTaskCompletedRequest{
			Namespace: ns, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
			Response: startResponse(&nexuspb.StartOperationResponse{Variant: &nexuspb.StartOperationResponse_SyncSuccess{
				SyncSuccess: &nexuspb.StartOperationResponse_Sync{Payload: jsonPayload(t, answer(in))},
			}}),
		}); err != nil && ctx.Err() == nil {
			t.Errorf("respond to Nexus operation %s: %v", start.GetOperation(), err)
		}
	}
}

// requireBound checks that every payload of workflow id's latest run, as the backend stores it, is an envelope bound
// to id, or, in the events about a child or a signal target, to that workflow.
func requireBound(t *testing.T, ctx context.Context, e *env, id string) {
	t.Helper()
	events, err := history(ctx, e.frontend, id, "")
	if err != nil {
		t.Errorf("history of %s: %v", id, err)
		return
	}
	for _, ev := range events {
		want := id
		if other := eventWorkflow(ev); other != "" {
			want = other
		}
		requirePayloadsBound(t, fmt.Sprintf("%s event %d (%v)", id, ev.GetEventId(), ev.GetEventType()), ev, codec.Workflow(want))
	}
}

// eventWorkflow is the other workflow an event is about (a child, a signal target), or "".
func eventWorkflow(ev *historyEvent) string {
	if a := ev.GetStartChildWorkflowExecutionInitiatedEventAttributes(); a != nil {
		return a.GetWorkflowId()
	}
	if a := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes(); a != nil {
		return a.GetWorkflowExecution().GetWorkflowId()
	}
	for _, x := range []interface {
		GetWorkflowExecution() *commonpb.WorkflowExecution
	}{
		ev.GetChildWorkflowExecutionStartedEventAttributes(), ev.GetChildWorkflowExecutionCompletedEventAttributes(),
		ev.GetChildWorkflowExecutionFailedEventAttributes(), ev.GetChildWorkflowExecutionCanceledEventAttributes(),
		ev.GetChildWorkflowExecutionTimedOutEventAttributes(), ev.GetChildWorkflowExecutionTerminatedEventAttributes(),
	} {
		if id := x.GetWorkflowExecution().GetWorkflowId(); id != "" {
			return id
		}
	}
	return ""
}

// requirePayloadsBound checks every payload of msg (search attributes aside) is an envelope claiming want.
func requirePayloadsBound(t *testing.T, what string, msg proto.Message, want codec.Binding) {
	t.Helper()
	for i, p := range payloadsOf(t, msg) {
		bd, ok := codec.BindingOf(p)
		if !ok {
			t.Errorf("%s: payload %d is not an envelope (%v)", what, i, p.GetMetadata())
			continue
		}
		if bd != want {
			t.Errorf("%s: payload %d claims %v, want %v", what, i, bd, want)
		}
	}
}

// requireSealedIn checks every payload of msg opens in namespace ns with the gateway's codec (a v2 envelope does not
// name its namespace: only its associated data binds it), and in no other of the test's namespaces.
func requireSealedIn(t *testing.T, e *env, what string, msg proto.Message, ns string) {
	t.Helper()
	for i, p := range payloadsOf(t, msg) {
		for _, other := range []string{namespace, peerNamespace} {
			_, err := e.gw.Codec().Decode(context.Background(), other, []*commonpb.Payload{p})
			if other == ns && err != nil {
				t.Errorf("%s: payload %d does not open in namespace %q: %v", what, i, ns, err)
			}
			if other != ns && err == nil {
				t.Errorf("%s: payload %d opens in namespace %q, want it sealed for %q only", what, i, other, ns)
			}
		}
	}
}

func payloadsOf(t *testing.T, msg proto.Message) []*commonpb.Payload {
	t.Helper()
	var out []*commonpb.Payload
	if err := apiproxy.VisitPayloads(context.Background(), msg, apiproxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			out = append(out, ps...)
			return ps, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
