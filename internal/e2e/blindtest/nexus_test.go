package blindtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	"go.temporal.io/api/operatorservice/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

const (
	nexusCallerWF = "blindtest-nexus-caller"
	nexusService  = "blindtest"
)

// nexusOps are the operations the caller runs after "echo", each failing its own way: an operation failure (a
// Temporal failure with application info), a handler error as a Temporal failure, and both in the legacy Nexus form
// (a Nexus failure whose message is a plain string), which SDKs send to servers without Temporal failure support.
var nexusOps = []string{"fail", "handlererror", "legacyfail", "legacyhandlererror"}

// nexusCallerWorkflow calls the "echo" operation with the marker of "nexus.input" (and a summary), then each of
// nexusOps with the marker of "nexus<op>.input", and reports the result and every error chain to seen.
func nexusCallerWorkflow(ctx workflow.Context, endpoint, run string) (string, error) {
	nc := workflow.NewNexusClient(endpoint, nexusService)
	opts := workflow.NexusOperationOptions{ScheduleToCloseTimeout: 30 * time.Second, Summary: mk(run, "nexus.summary")}
	var res string
	if err := nc.ExecuteOperation(ctx, "echo", mk(run, "nexus.input"), opts).Get(ctx, &res); err != nil {
		return "", err
	}
	see(run, "nexus.result", res)
	for _, op := range nexusOps {
		err := nc.ExecuteOperation(ctx, op, mk(run, "nexus"+op+".input"), opts).Get(ctx, nil)
		var chain strings.Builder
		for e := err; e != nil; e = errors.Unwrap(e) {
			chain.WriteString(e.Error() + "\n")
		}
		see(run, "nexus"+op+".error", chain.String())
	}
	return "done", nil
}

// TestNexusIsSealed runs a workflow calling Nexus operations of an endpoint (created through the door under test,
// with a description) whose handler is a raw client polling the Nexus task queue through the same door: it answers
// as the Go SDK's handler does (sync result, operation failure, handler error), plus the legacy handler error form.
// Through the gateway, every marker reads back and none reaches the backend; the control run straight to the relay
// shows each of them.
func TestNexusIsSealed(t *testing.T) {
	t.Parallel()
	sent := []string{
		"nexus.description", "nexus.summary", "nexus.input", "nexus.result",
		"nexusfail.input", "nexusfail.error", "nexusfail.details",
		"nexushandlererror.input", "nexushandlererror.error",
		"nexuslegacyfail.input", "nexuslegacyfail.error",
		"nexuslegacyhandlererror.input", "nexuslegacyhandlererror.error",
	}
	for _, proxied := range []bool{true, false} {
		name := map[bool]string{true: "proxied", false: "control"}[proxied]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			door := e.relay.FrontendAddr()
			if proxied {
				door = e.gw.Addr()
			}
			m := newMarkers()
			got := runNexus(t, door, m)
			for _, f := range []string{"nexus.input", "nexusfail.input", "nexushandlererror.input", "nexuslegacyfail.input",
				"nexuslegacyhandlererror.input", "nexus.result"} {
				if v, _ := seenValue(m.run, f); v != m.of(f) {
					t.Errorf("read %s as %q, want %q", f, v, m.of(f))
				}
			}
			for _, op := range nexusOps {
				f := "nexus" + op + ".error"
				if v, _ := seenValue(m.run, f); !strings.Contains(v, m.of(f)) {
					t.Errorf("the caller's error of %s lacks %q: %q", op, m.of(f), v)
				}
			}
			for _, f := range []string{"nexus.description", "nexus.summary"} {
				if got[f] != m.of(f) {
					t.Errorf("read %s as %q, want %q", f, got[f], m.of(f))
				}
			}
			leaks := e.relay.leaks(m)
			if proxied {
				for _, f := range sortedKeys(leaks) {
					if f == "nexus.description" {
						// An endpoint's description is operator configuration sent through OperatorService, which
						// the proxy forwards unchanged by design (docs/threat-model.md lists it as visible).
						continue
					}
					t.Errorf("the marker of %s reached the backend in plaintext, in %v", f, leaks[f])
				}
				if f := m.find([]byte(e.proxyLog.String())); len(f) > 0 {
					t.Errorf("the proxy's log shows the markers of %v", f)
				}
				return
			}
			for _, f := range sent {
				if _, ok := leaks[f]; !ok {
					t.Errorf("control run: the marker of %s is in no request frame; the scan is blind for it", f)
				}
			}
		})
	}
}

// runNexus creates an endpoint through door, serves its operations with a raw handler through door, and runs the
// caller workflow with an SDK worker through door. It returns the endpoint description and the operation summary as
// read back through door.
func runNexus(t *testing.T, door string, m markers) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn := testenv.DialInsecure(t, door)
	svc := workflowservice.NewWorkflowServiceClient(conn)
	ops := operatorservice.NewOperatorServiceClient(conn)
	callerTQ, handlerTQ := uniqueName("nexus-caller"), uniqueName("nexus-handler")
	endpoint := uniqueName("bt-nexus")

	created, err := ops.CreateNexusEndpoint(ctx, &operatorservice.CreateNexusEndpointRequest{Spec: &nexuspb.EndpointSpec{
		Name: endpoint, Description: jsonPayload(t, m.of("nexus.description")),
		Target: &nexuspb.EndpointTarget{Variant: &nexuspb.EndpointTarget_Worker_{Worker: &nexuspb.EndpointTarget_Worker{
			Namespace: namespace, TaskQueue: handlerTQ,
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
	got := map[string]string{}
	if ep, err := ops.GetNexusEndpoint(ctx, &operatorservice.GetNexusEndpointRequest{Id: created.GetEndpoint().GetId()}); err != nil {
		t.Errorf("get Nexus endpoint: %v", err)
	} else {
		got["nexus.description"] = decodeString(ep.GetEndpoint().GetSpec().GetDescription())
	}

	hctx, hcancel := context.WithCancel(ctx)
	handled := make(chan struct{})
	go func() { defer close(handled); serveNexus(hctx, t, svc, handlerTQ) }()
	defer func() { hcancel(); <-handled }()

	c := dialSDK(t, door, nil)
	w := worker.New(c, callerTQ, worker.Options{})
	w.RegisterWorkflowWithOptions(nexusCallerWorkflow, workflow.RegisterOptions{Name: nexusCallerWF})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: callerTQ, TaskQueue: callerTQ}, nexusCallerWF, endpoint, m.run)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("Nexus caller workflow: %v", err)
	}
	events, err := history(ctx, svc, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.GetEventType() == enumspb.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED {
			got["nexus.summary"] = decodeString(ev.GetUserMetadata().GetSummary())
		}
	}
	return got
}

// serveNexus answers the Nexus tasks of tq until ctx ends, as a handler worker would: "echo" returns answer(input);
// the others fail as nexusOps describes, with messages derived from their input. It reports each input to seen.
func serveNexus(ctx context.Context, t *testing.T, svc workflowservice.WorkflowServiceClient, tq string) {
	for ctx.Err() == nil {
		task, err := svc.PollNexusTaskQueue(ctx, &workflowservice.PollNexusTaskQueueRequest{
			Namespace: namespace, Identity: "blindtest-nexus-handler",
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
		msg := derive(in, "error")
		var rerr error
		switch start.GetOperation() {
		case "echo":
			_, rerr = svc.RespondNexusTaskCompleted(ctx, &workflowservice.RespondNexusTaskCompletedRequest{
				Namespace: namespace, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
				Response: startResponse(&nexuspb.StartOperationResponse{Variant: &nexuspb.StartOperationResponse_SyncSuccess{
					SyncSuccess: &nexuspb.StartOperationResponse_Sync{Payload: jsonPayload(t, answer(in))},
				}}),
			})
		case "fail":
			_, rerr = svc.RespondNexusTaskCompleted(ctx, &workflowservice.RespondNexusTaskCompletedRequest{
				Namespace: namespace, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
				Response: startResponse(&nexuspb.StartOperationResponse{Variant: &nexuspb.StartOperationResponse_Failure{
					Failure: &failurepb.Failure{Message: msg, FailureInfo: &failurepb.Failure_ApplicationFailureInfo{
						ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{Type: "BlindtestNexus", NonRetryable: true,
							Details: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, derive(in, "details"))}}},
					}},
				}}),
			})
		case "legacyfail":
			_, rerr = svc.RespondNexusTaskCompleted(ctx, &workflowservice.RespondNexusTaskCompletedRequest{
				Namespace: namespace, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
				Response: startResponse(&nexuspb.StartOperationResponse{
					//lint:ignore SA1019 the legacy form, which the proxy must handle too
					Variant: &nexuspb.StartOperationResponse_OperationError{OperationError: &nexuspb.UnsuccessfulOperationError{
						OperationState: "failed", Failure: &nexuspb.Failure{Message: msg},
					}},
				}),
			})
		case "handlererror":
			_, rerr = svc.RespondNexusTaskFailed(ctx, &workflowservice.RespondNexusTaskFailedRequest{
				Namespace: namespace, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
				Failure: &failurepb.Failure{Message: msg, FailureInfo: &failurepb.Failure_NexusHandlerFailureInfo{
					NexusHandlerFailureInfo: &failurepb.NexusHandlerFailureInfo{Type: "BAD_REQUEST",
						RetryBehavior: enumspb.NEXUS_HANDLER_ERROR_RETRY_BEHAVIOR_NON_RETRYABLE},
				}},
			})
		case "legacyhandlererror":
			_, rerr = svc.RespondNexusTaskFailed(ctx, &workflowservice.RespondNexusTaskFailedRequest{
				Namespace: namespace, TaskToken: task.GetTaskToken(), Identity: "blindtest-nexus-handler",
				//lint:ignore SA1019 the legacy form older SDKs send, which the proxy must handle too
				Error: &nexuspb.HandlerError{ErrorType: "BAD_REQUEST", Failure: &nexuspb.Failure{Message: msg},
					RetryBehavior: enumspb.NEXUS_HANDLER_ERROR_RETRY_BEHAVIOR_NON_RETRYABLE},
			})
		}
		if rerr != nil && ctx.Err() == nil {
			t.Errorf("respond to Nexus operation %s: %v", start.GetOperation(), rerr)
		}
	}
}

func startResponse(r *nexuspb.StartOperationResponse) *nexuspb.Response {
	return &nexuspb.Response{Variant: &nexuspb.Response_StartOperation{StartOperation: r}}
}
