package proxy

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
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

// instantFrontend answers at once: a signal with an empty response, a workflow-task poll with a prepared (sealed)
// task. Against it, the proxy's added latency is its own, without the server's.
type instantFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	poll *workflowservice.PollWorkflowTaskQueueResponse
}

func (instantFrontend) SignalWorkflowExecution(context.Context, *workflowservice.SignalWorkflowExecutionRequest) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

func (f instantFrontend) PollWorkflowTaskQueue(context.Context, *workflowservice.PollWorkflowTaskQueueRequest) (*workflowservice.PollWorkflowTaskQueueResponse, error) {
	return f.poll, nil
}

// sealedPoll is a workflow task of workflow id whose history has n activity-scheduled events with a payload of size
// bytes each, sealed by c for that workflow, as the server would hand it out.
func sealedPoll(b *testing.B, c *codec.Codec, id string, n, size int) *workflowservice.PollWorkflowTaskQueueResponse {
	resp := historyResponse(n, size)
	resp.TaskToken = testToken(b, id)
	resp.WorkflowExecution = &commonpb.WorkflowExecution{WorkflowId: id, RunId: "run"}
	for _, e := range resp.GetHistory().GetEvents() {
		in := e.GetActivityTaskScheduledEventAttributes().GetInput()
		out, err := c.EncodeFor(context.Background(), codec.Target{Namespace: "default", Binding: codec.Workflow(id)}, in.GetPayloads())
		if err != nil {
			b.Fatal(err)
		}
		in.Payloads = out
	}
	return resp
}

// newRawSeal returns a function sealing its argument with AES-256-GCM under a random key and nonce, into a fresh
// buffer: the raw cost of the AEAD, without envelope, keys or protobuf.
func newRawSeal(b *testing.B) func([]byte) []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	return func(data []byte) []byte {
		nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(data)+g.Overhead())
		_, _ = rand.Read(nonce)
		return g.Seal(nonce, nonce, data, nil)
	}
}

// idleShift carries the time of the call itself out of a case that idles before calling (-1: the case does not).
var idleShift atomic.Int64

// BenchmarkRPC measures what the proxy adds to one RPC against an instant frontend on loopback, in three arms that
// alternate call by call: direct to the frontend, through a pass-through gRPC hop that forwards raw frames (the floor
// of any extra hop), and through the proxy (real codec, in-memory keys). Cases: a signal with a 1 KiB payload, a
// workflow-task poll answered with a 100-event history of 1 KiB inputs, and a signal with a 2 MiB payload. It reports
// each arm's p50 and the proxy's added p50 split into hop and Blindfold. The arm=proxy sub-benchmarks call only the
// proxy, for CPU profiles:
//
//	go test -tags nodevstack -run XXX -bench 'RPC/signal-1KiB/proxy' -cpuprofile cpu.out ./proxy/
func BenchmarkRPC(b *testing.B) {
	c, _ := newTestCodec(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	front := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	workflowservice.RegisterWorkflowServiceServer(front, instantFrontend{poll: sealedPoll(b, c, "W", 100, 1024)})
	go func() { _ = front.Serve(lis) }()
	b.Cleanup(front.Stop)
	hop, err := testenv.StartForwarder(lis.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(hop.Stop)
	srv, err := New(Config{Upstream: lis.Addr().String(), Codec: c, Logger: slog.New(slog.DiscardHandler), MaxRecvMsgSize: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	plis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(plis) }()
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	arms := []string{"proxy", "hop", "direct"}
	clients := make([]workflowservice.WorkflowServiceClient, len(arms))
	for i, addr := range []string{plis.Addr().String(), hop.Addr, lis.Addr().String()} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		clients[i] = workflowservice.NewWorkflowServiceClient(conn)
	}
	ctx := context.Background()
	signalData := map[int][]byte{}
	signal := func(size int) func(workflowservice.WorkflowServiceClient) error {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		signalData[size] = data
		return func(wf workflowservice.WorkflowServiceClient) error {
			// A fresh request each call: the proxy replaces payloads in place.
			_, err := wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
				Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "W"}, SignalName: "s",
				Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}}},
			})
			return err
		}
	}
	poll := func(wf workflowservice.WorkflowServiceClient) error {
		_, err := wf.PollWorkflowTaskQueue(ctx, &workflowservice.PollWorkflowTaskQueueRequest{Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: "q"}})
		return err
	}
	small := signal(1 << 10)
	// A 1 KiB signal after 3 ms idle, as against a real server (a signal there takes 3–20 ms): the same work, but every
	// call starts with parked threads and caches that something else may have used meanwhile.
	gapped := func(wf workflowservice.WorkflowServiceClient) error {
		time.Sleep(3 * time.Millisecond)
		start := time.Now()
		err := small(wf)
		idleShift.Store(int64(time.Since(start)))
		return err
	}
	big := signal(2 << 20)
	// The baseline of goal 4: a raw AES-256-GCM seal of the 2 MiB (fresh output each time, as any seal allocates its
	// ciphertext), measured in the same rounds as the calls.
	gcm := newRawSeal(b)
	for _, tc := range []struct {
		name string
		call func(workflowservice.WorkflowServiceClient) error
		raw  []byte // sealed raw once per round, for the goal-4 ratio
	}{{"signal-1KiB", small, nil}, {"poll-100-events", poll, nil}, {"signal-2MiB", big, signalData[2<<20]}, {"signal-1KiB-after-idle", gapped, nil}} {
		for range 20 { // connections up, caches warm
			for _, wf := range clients {
				if err := tc.call(wf); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(tc.name+"/interleaved", func(b *testing.B) {
			lat := make([][]time.Duration, len(arms))
			var aead []time.Duration
			for i := range b.N {
				if tc.raw != nil {
					start := time.Now()
					gcm(tc.raw)
					aead = append(aead, time.Since(start))
				}
				for k := range arms {
					arm := (i + k) % len(arms)
					idleShift.Store(-1)
					start := time.Now()
					if err := tc.call(clients[arm]); err != nil {
						b.Fatal(err)
					}
					d := time.Since(start)
					if v := idleShift.Load(); v >= 0 {
						d = time.Duration(v) // the call alone, without the idle time before it
					}
					lat[arm] = append(lat[arm], d)
				}
			}
			p50 := make([]float64, len(arms))
			for i, l := range lat {
				slices.Sort(l)
				p50[i] = float64(l[len(l)/2].Nanoseconds()) / 1e3
				b.ReportMetric(p50[i], arms[i]+"-p50-µs")
			}
			b.ReportMetric(p50[0]-p50[2], "added-p50-µs")
			b.ReportMetric(p50[1]-p50[2], "hop-added-p50-µs")
			b.ReportMetric(p50[0]-p50[1], "blindfold-p50-µs")
			if len(aead) > 0 {
				slices.Sort(aead)
				a50 := float64(aead[len(aead)/2].Nanoseconds()) / 1e3
				b.ReportMetric(a50, "raw-aead-p50-µs")
				// Goal 4 (issue 18): the proxy's added latency ÷ (raw AEAD of the same bytes + what the bare hop adds).
				b.ReportMetric((p50[0]-p50[2])/(a50+p50[1]-p50[2]), "goal4-ratio")
			}
		})
		b.Run(tc.name+"/proxy", func(b *testing.B) {
			for range b.N {
				if err := tc.call(clients[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
