package proxy

import (
	"context"
	"strings"
	"testing"

	batchpb "go.temporal.io/api/batch/v1"
	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	schedulepb "go.temporal.io/api/schedule/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/policy"
)

// TestTextBinding: a sealed text (a reason, schedule notes) is bound like a payload, to the place its request names,
// and a copy the backend moves into another workflow's history is refused there; the flows the server makes itself
// (a batch job's reason in every workflow it touches, a cancel-external reason in the target) open.
func TestTextBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := &transformer{codec: newTextCodec(t)}
	const ns = "default"
	seal := func(t *testing.T, req proto.Message, get func() string) string {
		t.Helper()
		if err := tr.encodeRequest(ctx, ns, req); err != nil {
			t.Fatal(err)
		}
		s := get()
		if !strings.HasPrefix(s, sealedTextPrefix) {
			t.Fatalf("text not sealed: %q", s)
		}
		return s
	}
	history := func(id string) *workflowservice.GetWorkflowExecutionHistoryRequest {
		return &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: ns, Execution: &commonpb.WorkflowExecution{WorkflowId: id}}
	}
	terminated := func(reason string) *workflowservice.GetWorkflowExecutionHistoryResponse {
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
			EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{
				WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{Reason: reason}},
		}}}}
	}
	reasonOf := func(r *workflowservice.GetWorkflowExecutionHistoryResponse) string {
		return r.GetHistory().GetEvents()[0].GetWorkflowExecutionTerminatedEventAttributes().GetReason()
	}
	// open decodes resp as the answer to req and returns what get reads then.
	open := func(t *testing.T, req, resp proto.Message, get func() string) string {
		t.Helper()
		if err := tr.decodeResponseFor(ctx, ns, req, resp, nil); err != nil {
			t.Fatal(err)
		}
		return get()
	}
	const refusedMoved = "blindfold: sealed text could not be opened (sealed for another workflow, schedule or job)"

	t.Run("terminate reason", func(t *testing.T) {
		t.Parallel()
		req := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "A"}, Reason: "the A reason"}
		sealed := seal(t, req, req.GetReason)
		own := terminated(sealed)
		if got := open(t, history("A"), own, func() string { return reasonOf(own) }); got != "the A reason" {
			t.Errorf("in A's history: %q", got)
		}
		moved := terminated(sealed)
		if got := open(t, history("B"), moved, func() string { return reasonOf(moved) }); got != refusedMoved {
			t.Errorf("moved into B's history: %q, want %q", got, refusedMoved)
		}
	})

	t.Run("batch reason", func(t *testing.T) {
		t.Parallel()
		req := &workflowservice.StartBatchOperationRequest{Namespace: ns, JobId: "job-1", Reason: "the batch reason",
			VisibilityQuery: "WorkflowType='w'",
			Operation:       &workflowservice.StartBatchOperationRequest_TerminationOperation{TerminationOperation: &batchpb.BatchOperationTermination{}}}
		sealed := seal(t, req, req.GetReason)
		for _, id := range []string{"A", "B"} {
			r := terminated(sealed)
			if got := open(t, history(id), r, func() string { return reasonOf(r) }); got != "the batch reason" {
				t.Errorf("in %s's history: %q", id, got)
			}
		}
		d := &workflowservice.DescribeBatchOperationResponse{JobId: "job-1", Reason: sealed}
		if got := open(t, &workflowservice.DescribeBatchOperationRequest{Namespace: ns, JobId: "job-1"}, d, d.GetReason); got != "the batch reason" {
			t.Errorf("in the job's description: %q", got)
		}
		other := &workflowservice.DescribeBatchOperationResponse{JobId: "job-2", Reason: sealed}
		if got := open(t, &workflowservice.DescribeBatchOperationRequest{Namespace: ns, JobId: "job-2"}, other, other.GetReason); got != refusedMoved {
			t.Errorf("in another job's description: %q, want %q", got, refusedMoved)
		}
		st := &schedulepb.ScheduleState{Notes: sealed}
		sd := &workflowservice.DescribeScheduleResponse{Schedule: &schedulepb.Schedule{State: st}}
		if got := open(t, &workflowservice.DescribeScheduleRequest{Namespace: ns, ScheduleId: "nightly"}, sd, st.GetNotes); got != refusedMoved {
			t.Errorf("as a schedule's notes: %q, want %q", got, refusedMoved)
		}
	})

	t.Run("cancel-external reason", func(t *testing.T) {
		t.Parallel()
		cmd := &commandpb.RequestCancelExternalWorkflowExecutionCommandAttributes{WorkflowId: "C", Reason: "the cancel reason"}
		req := &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: ns, TaskToken: testToken(t, "P"), Commands: []*commandpb.Command{{
			CommandType: enumspb.COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION,
			Attributes:  &commandpb.Command_RequestCancelExternalWorkflowExecutionCommandAttributes{RequestCancelExternalWorkflowExecutionCommandAttributes: cmd},
		}}}
		sealed := seal(t, req, cmd.GetReason)
		requested := func() (*workflowservice.GetWorkflowExecutionHistoryResponse, func() string) {
			a := &historypb.WorkflowExecutionCancelRequestedEventAttributes{Cause: sealed}
			return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
				EventType:  enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
				Attributes: &historypb.HistoryEvent_WorkflowExecutionCancelRequestedEventAttributes{WorkflowExecutionCancelRequestedEventAttributes: a},
			}}}}, a.GetCause
		}
		r, get := requested()
		if got := open(t, history("C"), r, get); got != "the cancel reason" {
			t.Errorf("in the target's history: %q", got)
		}
		r, get = requested()
		if got := open(t, history("P"), r, get); got != refusedMoved {
			t.Errorf("as a cancel request of the sender: %q, want %q", got, refusedMoved)
		}
		a := &historypb.RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "C"}, Reason: sealed}
		init := &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
			EventType:  enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
			Attributes: &historypb.HistoryEvent_RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{RequestCancelExternalWorkflowExecutionInitiatedEventAttributes: a},
		}}}}
		if got := open(t, history("P"), init, a.GetReason); got != "the cancel reason" {
			t.Errorf("in the sender's initiated event: %q", got)
		}
	})

	t.Run("schedule notes", func(t *testing.T) {
		t.Parallel()
		patch := &schedulepb.SchedulePatch{Pause: "paused for the audit"}
		req := &workflowservice.PatchScheduleRequest{Namespace: ns, ScheduleId: "nightly", Patch: patch}
		sealed := seal(t, req, patch.GetPause)
		for _, tc := range []struct{ id, want string }{{"nightly", "paused for the audit"}, {"hourly", refusedMoved}} {
			st := &schedulepb.ScheduleState{Notes: sealed}
			d := &workflowservice.DescribeScheduleResponse{Schedule: &schedulepb.Schedule{State: st}}
			if got := open(t, &workflowservice.DescribeScheduleRequest{Namespace: ns, ScheduleId: tc.id}, d, st.GetNotes); got != tc.want {
				t.Errorf("in schedule %s's description: %q, want %q", tc.id, got, tc.want)
			}
		}
		l := &schedulepb.ScheduleListInfo{Notes: sealed}
		list := &workflowservice.ListSchedulesResponse{Schedules: []*schedulepb.ScheduleListEntry{{ScheduleId: "hourly", Info: l}}}
		if got := open(t, &workflowservice.ListSchedulesRequest{Namespace: ns}, list, l.GetNotes); got != refusedMoved {
			t.Errorf("as another schedule's list entry: %q, want %q", got, refusedMoved)
		}
	})
}

// TestCrossNamespaceReadNeedsAccess: the namespace a child's result, a signal-external input or a cancel-external
// reason opens in is named by the event, i.e. by the backend. A caller who may read only tenant-a is not shown
// tenant-b's values in a tenant-a history whose events name tenant-b; a caller who may read both is.
func TestCrossNamespaceReadNeedsAccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := &transformer{codec: newTextCodec(t)}
	// Values of workflow X in tenant-b: a signal's input and a terminate reason.
	sig := &workflowservice.SignalWorkflowExecutionRequest{Namespace: "tenant-b", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "X"},
		SignalName: "s", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{textPayload("tenant B value")}}}
	if err := tr.encodeRequest(ctx, "tenant-b", sig); err != nil {
		t.Fatal(err)
	}
	term := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: "tenant-b", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "X"}, Reason: "tenant B reason"}
	if err := tr.encodeRequest(ctx, "tenant-b", term); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("test", []byte(`version: 1
namespaces:
  tenant-a: {}
  tenant-b: {}
access:
  rules:
    - name: a-only
      subjects: [alice]
      namespaces: [tenant-a]
      operations: [client-read, worker]
    - name: both
      subjects: [bob]
      namespaces: [tenant-a, tenant-b]
      operations: [client-read]
`))
	if err != nil {
		t.Fatal(err)
	}
	// A tenant-a history whose events name tenant-b's workflow X: as a signal-external target, and as a cancel-external one.
	history := func() (*workflowservice.GetWorkflowExecutionHistoryResponse, *historypb.SignalExternalWorkflowExecutionInitiatedEventAttributes, *historypb.RequestCancelExternalWorkflowExecutionInitiatedEventAttributes) {
		x := &commonpb.WorkflowExecution{WorkflowId: "X"}
		se := &historypb.SignalExternalWorkflowExecutionInitiatedEventAttributes{Namespace: "tenant-b", WorkflowExecution: x,
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{proto.CloneOf(sig.Input.Payloads[0])}}}
		ce := &historypb.RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{Namespace: "tenant-b", WorkflowExecution: x, Reason: term.Reason}
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{
			{EventType: enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
				Attributes: &historypb.HistoryEvent_SignalExternalWorkflowExecutionInitiatedEventAttributes{SignalExternalWorkflowExecutionInitiatedEventAttributes: se}},
			{EventType: enumspb.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
				Attributes: &historypb.HistoryEvent_RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{RequestCancelExternalWorkflowExecutionInitiatedEventAttributes: ce}},
		}}}, se, ce
	}
	req := &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "tenant-a", Execution: &commonpb.WorkflowExecution{WorkflowId: "W"}}
	for _, tc := range []struct {
		who  string
		want bool // tenant-b's values shown
	}{{"alice", false}, {"bob", true}} {
		actx := context.WithValue(ctx, callAuthKey{}, &callAuth{id: policy.Identity{Subject: tc.who}, snapshot: pol})
		resp, se, ce := history()
		if err := tr.decodeResponseFor(actx, "tenant-a", req, resp, nil); err != nil {
			t.Fatalf("%s: %v", tc.who, err)
		}
		input := string(se.GetInput().GetPayloads()[0].GetData())
		if tc.want {
			if input != "tenant B value" || ce.GetReason() != "tenant B reason" {
				t.Errorf("%s (may read tenant-b): input %q, reason %q", tc.who, input, ce.GetReason())
			}
			continue
		}
		if strings.Contains(input, "tenant B") || strings.Contains(ce.GetReason(), "tenant B") {
			t.Errorf("%s (may not read tenant-b) was shown tenant-b's data: input %q, reason %q", tc.who, input, ce.GetReason())
		}
		if ce.GetReason() != "blindfold: sealed text could not be opened (sealed for another namespace)" {
			t.Errorf("%s: reason %q, want the refusal", tc.who, ce.GetReason())
		}
	}
}
