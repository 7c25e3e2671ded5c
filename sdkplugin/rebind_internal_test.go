package sdkplugin

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	schedulepb "go.temporal.io/api/schedule/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/blindfold-dev/blindfold/codec"
)

// TestInterceptorRebinds: the values the SDK seals in a context that names something else than where the backend
// delivers them leave the client re-sealed for the right binding, and open there.
func TestInterceptorRebinds(t *testing.T) {
	t.Parallel()
	p := testPlugin(t, nil)
	root := p.DataConverter("default")
	seal := func(sc converter.SerializationContext, v string) *commonpb.Payload {
		t.Helper()
		pl, err := converter.WithDataConverterSerializationContext(root, sc).ToPayload(v)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	open := func(sc converter.SerializationContext, pl *commonpb.Payload) (string, error) {
		var s string
		err := converter.WithDataConverterSerializationContext(root, sc).FromPayload(pl, &s)
		return s, err
	}

	t.Run("schedule action", func(t *testing.T) {
		action := converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: "nightly"}
		in, memo, other := seal(action, "input"), seal(action, "memo"), seal(converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: "x"}, "x")
		scheduleMemo := seal(nil, "schedule memo")
		req := &workflowservice.CreateScheduleRequest{Namespace: "default", ScheduleId: "s",
			Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": scheduleMemo}},
			Schedule: &schedulepb.Schedule{Action: &schedulepb.ScheduleAction{Action: &schedulepb.ScheduleAction_StartWorkflow{
				StartWorkflow: &workflowpb.NewWorkflowExecutionInfo{WorkflowId: "nightly",
					Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{in, other}},
					Memo:  &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": memo}}}}}}}
		if err := send(p, req, nil); err != nil {
			t.Fatal(err)
		}
		sw := req.GetSchedule().GetAction().GetStartWorkflow()
		want := codec.Binding{Kind: codec.BindScheduledWorkflow, ID: "nightly"}
		for _, pl := range []*commonpb.Payload{sw.GetInput().GetPayloads()[0], sw.GetMemo().GetFields()["m"]} {
			if b, _ := codec.BindingOf(pl); b != want {
				t.Errorf("re-sealed for %v, want %v", b, want)
			}
		}
		if b, _ := codec.BindingOf(sw.GetInput().GetPayloads()[1]); b != codec.Workflow("x") {
			t.Errorf("a value bound to another workflow was re-sealed: %v", b)
		}
		if b, _ := codec.BindingOf(req.GetMemo().GetFields()["m"]); b.Kind != codec.BindNamespace {
			t.Errorf("the schedule's own memo was re-sealed: %v", b)
		}
		scheduled := converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: "nightly-2026-12-02T03:00:00Z"}
		if s, err := open(scheduled, sw.GetInput().GetPayloads()[0]); err != nil || s != "input" {
			t.Errorf("the scheduled workflow reads %q, %v", s, err)
		}
		if _, err := open(action, sw.GetInput().GetPayloads()[0]); err == nil {
			t.Errorf("the action's value opens in the workflow named like the action itself")
		}
	})

	t.Run("Nexus answers", func(t *testing.T) {
		op := converter.NexusSerializationContext{Endpoint: "e", Service: "svc", Operation: "op"}
		result := seal(op, "result")
		completed := &workflowservice.RespondNexusTaskCompletedRequest{Namespace: "default", Response: &nexuspb.Response{
			Variant: &nexuspb.Response_StartOperation{StartOperation: &nexuspb.StartOperationResponse{
				Variant: &nexuspb.StartOperationResponse_SyncSuccess{SyncSuccess: &nexuspb.StartOperationResponse_Sync{Payload: result}}}}}}
		details := seal(op, "details")
		failed := &workflowservice.RespondNexusTaskFailedRequest{Namespace: "default", Failure: &failurepb.Failure{
			Message: "Encoded failure", EncodedAttributes: seal(op, "attrs"),
			FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
				Details: &commonpb.Payloads{Payloads: []*commonpb.Payload{details}}}}}}
		for _, req := range []any{completed, failed} {
			if err := send(p, req, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, pl := range []*commonpb.Payload{
			completed.GetResponse().GetStartOperation().GetSyncSuccess().GetPayload(),
			failed.GetFailure().GetEncodedAttributes(), failed.GetFailure().GetApplicationFailureInfo().GetDetails().GetPayloads()[0],
		} {
			if b, _ := codec.BindingOf(pl); b != (codec.Binding{Kind: codec.BindNexus}) {
				t.Errorf("a handler's answer is bound to %v, want a Nexus result", b)
			}
			if _, err := open(op, pl); err != nil {
				t.Errorf("the caller cannot open the handler's answer: %v", err)
			}
		}
	})
}
