package blindtest

import (
	"context"
	"strings"
	"testing"
	"time"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// unknownField is the field number the tests attach: no Temporal message has it.
const unknownField = 9999

// TestUnknownFieldsAreRefused sends requests through the proxy with a raw client, each with an unknown field (number
// 9999, holding a marker) at the top level or in a nested message. The proxy cannot know whether an unknown field
// carries user data, so it must refuse the request with InvalidArgument, naming the message and the field number,
// and forward nothing: the marker never reaches the backend, and no workflow is started.
func TestUnknownFieldsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	tq := uniqueName("unknown")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	start := func(id string) *workflowservice.StartWorkflowExecutionRequest {
		return &workflowservice.StartWorkflowExecutionRequest{
			Namespace: namespace, WorkflowId: id, RequestId: uniqueName("start"),
			WorkflowType: &commonpb.WorkflowType{Name: waitWF}, TaskQueue: &taskqueuepb.TaskQueue{Name: tq},
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, "input")}},
		}
	}
	target := tq + "-target"
	if _, err := e.viaProxy.StartWorkflowExecution(ctx, start(target)); err != nil {
		t.Fatal(err)
	}
	signal := func() *workflowservice.SignalWorkflowExecutionRequest {
		return &workflowservice.SignalWorkflowExecutionRequest{
			Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: target}, SignalName: "sig",
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, "signal")}}, RequestId: uniqueName("signal"),
		}
	}
	// A task token the backend would reject: the proxy must refuse the request before it gets there.
	completed := func() *workflowservice.RespondWorkflowTaskCompletedRequest {
		return &workflowservice.RespondWorkflowTaskCompletedRequest{
			Namespace: namespace, TaskToken: []byte("not-a-task-token"),
			Commands: []*commandpb.Command{{
				CommandType: enumspb.COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION,
				Attributes: &commandpb.Command_CompleteWorkflowExecutionCommandAttributes{CompleteWorkflowExecutionCommandAttributes: &commandpb.CompleteWorkflowExecutionCommandAttributes{
					Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, "result")}},
				}},
			}},
		}
	}
	multi := func(id string) *workflowservice.ExecuteMultiOperationRequest {
		return &workflowservice.ExecuteMultiOperationRequest{Namespace: namespace, Operations: []*workflowservice.ExecuteMultiOperationRequest_Operation{
			{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_StartWorkflow{StartWorkflow: start(id)}},
			{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_UpdateWorkflow{UpdateWorkflow: &workflowservice.UpdateWorkflowExecutionRequest{
				Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
				WaitPolicy: &updatepb.WaitPolicy{LifecycleStage: enumspb.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED},
				Request: &updatepb.Request{Meta: &updatepb.Meta{UpdateId: uniqueName("update")}, Input: &updatepb.Input{
					Name: "upd", Args: &commonpb.Payloads{Payloads: []*commonpb.Payload{jsonPayload(t, "update")}},
				}},
			}}},
		}}
	}

	cases := []struct {
		name string
		// build returns the request for workflow id (if it starts one) and the message the unknown field goes into.
		build func(id string) (req, carrier proto.Message)
		// carrier is the (short) name of the message that carries the unknown field.
		carrier string
		starts  bool
	}{
		{"start/top", func(id string) (proto.Message, proto.Message) { r := start(id); return r, r }, "StartWorkflowExecutionRequest", true},
		{"start/input payload", func(id string) (proto.Message, proto.Message) {
			r := start(id)
			return r, r.Input.Payloads[0]
		}, "Payload", true},
		{"signal/top", func(string) (proto.Message, proto.Message) { r := signal(); return r, r }, "SignalWorkflowExecutionRequest", false},
		{"signal/input payload", func(string) (proto.Message, proto.Message) {
			r := signal()
			return r, r.Input.Payloads[0]
		}, "Payload", false},
		{"workflow task completed/top", func(string) (proto.Message, proto.Message) {
			r := completed()
			return r, r
		}, "RespondWorkflowTaskCompletedRequest", false},
		{"workflow task completed/command", func(string) (proto.Message, proto.Message) {
			r := completed()
			return r, r.Commands[0]
		}, "Command", false},
		{"workflow task completed/result payload", func(string) (proto.Message, proto.Message) {
			r := completed()
			return r, r.Commands[0].GetCompleteWorkflowExecutionCommandAttributes().Result.Payloads[0]
		}, "Payload", false},
		{"multi-operation/top", func(id string) (proto.Message, proto.Message) { r := multi(id); return r, r }, "ExecuteMultiOperationRequest", true},
		{"multi-operation/operation", func(id string) (proto.Message, proto.Message) {
			r := multi(id)
			return r, r.Operations[0]
		}, "Operation", true},
		{"multi-operation/start input payload", func(id string) (proto.Message, proto.Message) {
			r := multi(id)
			return r, r.Operations[0].GetStartWorkflow().Input.Payloads[0]
		}, "Payload", true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			field := "unknown.case" + string(rune('a'+i))
			id := uniqueName(tq)
			req, carrier := tc.build(id)
			raw := protowire.AppendTag(nil, unknownField, protowire.BytesType)
			raw = protowire.AppendString(raw, m.of(field))
			carrier.ProtoReflect().SetUnknown(raw)

			// An update with no worker would wait for acceptance: the bound keeps a forwarded call short.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := invoke(ctx, e.viaProxy, req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.carrier) || !strings.Contains(st.Message(), "9999") {
				t.Errorf("request with unknown field %d in %s: %v; want InvalidArgument naming %s and %d",
					unknownField, tc.carrier, err, tc.carrier, unknownField)
			}
			if e.relay.contains(m.of(field)) {
				t.Errorf("the unknown field's content reached the backend")
			}
			if tc.starts {
				dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer dcancel()
				_, err := e.frontend.DescribeWorkflowExecution(dctx, &workflowservice.DescribeWorkflowExecutionRequest{
					Namespace: namespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}})
				if status.Code(err) != codes.NotFound {
					t.Errorf("the backend has the workflow of the refused request (describe: %v)", err)
				}
			}
		})
	}
}

// invoke sends req with the method of its type.
func invoke(ctx context.Context, svc workflowservice.WorkflowServiceClient, req proto.Message) error {
	var err error
	switch r := req.(type) {
	case *workflowservice.StartWorkflowExecutionRequest:
		_, err = svc.StartWorkflowExecution(ctx, r)
	case *workflowservice.SignalWorkflowExecutionRequest:
		_, err = svc.SignalWorkflowExecution(ctx, r)
	case *workflowservice.RespondWorkflowTaskCompletedRequest:
		_, err = svc.RespondWorkflowTaskCompleted(ctx, r)
	case *workflowservice.ExecuteMultiOperationRequest:
		_, err = svc.ExecuteMultiOperation(ctx, r)
	default:
		panic("invoke: no method for " + string(proto.MessageName(req)))
	}
	return err
}
