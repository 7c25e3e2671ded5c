package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

// BenchmarkStrictCost measures what strict decode and client-envelope verification cost, against the same transform
// without them (transformer.lenient, the behaviour before), interleaved in one run so both sides see the same machine.
// It reports ns per message of each side and their ratio (strict/lenient):
//   - signal-1KiB-plaintext: a 1 KiB signal from an SDK without a codec (the common case: nothing to verify);
//   - signal-1KiB-sealed: the same signal sealed by an SDK plugin (verified: opened once before forwarding);
//   - poll-1000-events: a poll response carrying a 1,000-event history of 1 KiB inputs (strict decode).
func BenchmarkStrictCost(b *testing.B) {
	c, _ := newTestCodec(b)
	ctx := context.Background()
	signal := func() proto.Message {
		return &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", SignalName: "s", Input: payloads(strings.Repeat("x", 1024))}
	}
	sealedSignal := signal()
	if err := (&transformer{codec: c}).encodeRequest(ctx, "default", sealedSignal); err != nil {
		b.Fatal(err)
	}
	history := historyResponse(1000, 1024)
	if err := (&transformer{codec: c}).encodeRequest(ctx, "default", history); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		msg    func() proto.Message
		decode bool
	}{
		{"signal-1KiB-plaintext", signal, false},
		{"signal-1KiB-sealed", func() proto.Message { return proto.Clone(sealedSignal) }, false},
		{"poll-1000-events", func() proto.Message { return proto.Clone(history) }, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sides := []*transformer{{codec: c, lenient: true}, {codec: c}}
			var spent [2]time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k := range sides {
					j := (i + k) % 2 // alternate which side goes first, so neither always runs on a warmer cache
					tr := sides[j]
					b.StopTimer()
					m := tc.msg()
					b.StartTimer()
					start := time.Now()
					var err error
					if tc.decode {
						err = tr.decodeResponse(ctx, "default", m)
					} else {
						err = tr.encodeRequest(ctx, "default", m)
					}
					spent[j] += time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "lenient-ns/msg")
			b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "strict-ns/msg")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "strict/lenient")
		})
	}
}
