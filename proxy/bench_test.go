package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"
)

// workflowTaskCompletion is a completion scheduling n activities, each with an input and a header: 2n payload fields.
func workflowTaskCompletion(n, size int) *workflowservice.RespondWorkflowTaskCompletedRequest {
	req := &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: "default"}
	for i := 0; i < n; i++ {
		req.Commands = append(req.Commands, &commandpb.Command{
			CommandType: enumspb.COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK,
			Attributes: &commandpb.Command_ScheduleActivityTaskCommandAttributes{ScheduleActivityTaskCommandAttributes: &commandpb.ScheduleActivityTaskCommandAttributes{
				ActivityId: fmt.Sprint(i),
				Input:      payloads(strings.Repeat("x", size)),
				Header:     &commonpb.Header{Fields: map[string]*commonpb.Payload{"trace": jsonPayload("abc")}},
			}},
		})
	}
	return req
}

// historyResponse is a poll response whose history has n activity-scheduled events with an input each.
func historyResponse(n, size int) *workflowservice.PollWorkflowTaskQueueResponse {
	resp := &workflowservice.PollWorkflowTaskQueueResponse{History: &historypb.History{}}
	for i := 0; i < n; i++ {
		resp.History.Events = append(resp.History.Events, &historypb.HistoryEvent{
			EventId:   int64(i + 1),
			EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			Attributes: &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{
				Input: payloads(strings.Repeat("y", size)),
			}},
		})
	}
	return resp
}

// BenchmarkEncode compares one codec call per message (batched) with one call per visited field, on requests with
// 1, 20 and 200 payload fields, with the real codec (AES-256-GCM over an in-memory keyring).
func BenchmarkEncode(b *testing.B) {
	c, _ := newTestCodec(b)
	ctx := context.Background()
	for _, n := range []int{1, 10, 100} {
		orig := workflowTaskCompletion(n, 1024)
		for _, mode := range []struct {
			name     string
			perField bool
		}{{"batched", false}, {"per-field", true}} {
			b.Run(fmt.Sprintf("fields=%d/%s", 2*n, mode.name), func(b *testing.B) {
				tr := &transformer{codec: c, perField: mode.perField}
				msgs := make([]*workflowservice.RespondWorkflowTaskCompletedRequest, b.N)
				for i := range msgs {
					msgs[i] = proto.Clone(orig).(*workflowservice.RespondWorkflowTaskCompletedRequest)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := tr.encodeRequest(ctx, "default", msgs[i]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecode does the same for responses: a poll response with a history of 1, 10 and 100 events.
func BenchmarkDecode(b *testing.B) {
	c, _ := newTestCodec(b)
	ctx := context.Background()
	for _, n := range []int{1, 10, 100} {
		sealed := historyResponse(n, 1024)
		if err := (&transformer{codec: c}).encodeRequest(ctx, "default", sealed); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name     string
			perField bool
		}{{"batched", false}, {"per-field", true}} {
			b.Run(fmt.Sprintf("events=%d/%s", n, mode.name), func(b *testing.B) {
				tr := &transformer{codec: c, perField: mode.perField}
				msgs := make([]*workflowservice.PollWorkflowTaskQueueResponse, b.N)
				for i := range msgs {
					msgs[i] = proto.Clone(sealed).(*workflowservice.PollWorkflowTaskQueueResponse)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := tr.decodeResponse(ctx, "default", msgs[i]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
