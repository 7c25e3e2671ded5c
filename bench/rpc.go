package main

import (
	"context"
	"fmt"
	"net"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tokenspb "go.temporal.io/server/api/token/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// pollWorkflowID is the workflow of the fake frontend's workflow task.
const pollWorkflowID = "bench-poll"

// fakeFrontend answers at once, so proxy-vs-direct against it isolates the proxy's own cost from the server's (SQLite
// writes dominate a real signal and vary from call to call): signals with an empty response, workflow-task polls with
// a prepared task whose history is sealed as the proxy would have sealed it.
type fakeFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	poll *workflowservice.PollWorkflowTaskQueueResponse
}

func (fakeFrontend) SignalWorkflowExecution(context.Context, *workflowservice.SignalWorkflowExecutionRequest) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

func (f fakeFrontend) PollWorkflowTaskQueue(context.Context, *workflowservice.PollWorkflowTaskQueueRequest) (*workflowservice.PollWorkflowTaskQueueResponse, error) {
	return f.poll, nil
}

// sealedTask is a workflow task of pollWorkflowID with a history of n activity-scheduled events, each with a 1 KiB
// input sealed by c for that workflow, and the server's task token for it.
func sealedTask(ctx context.Context, c *codec.Codec, n int) (*workflowservice.PollWorkflowTaskQueueResponse, error) {
	tok, err := proto.Marshal(&tokenspb.Task{NamespaceId: "bench", WorkflowId: pollWorkflowID, RunId: "run"})
	if err != nil {
		return nil, err
	}
	resp := &workflowservice.PollWorkflowTaskQueueResponse{
		TaskToken: tok, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: pollWorkflowID, RunId: "run"},
		WorkflowType: &commonpb.WorkflowType{Name: "Bench"}, History: &historypb.History{},
	}
	for i := range n {
		in, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: codec.Workflow(pollWorkflowID)}, []*commonpb.Payload{randomPayload(1 << 10)})
		if err != nil {
			return nil, fmt.Errorf("seal history: %w", err)
		}
		resp.History.Events = append(resp.History.Events, &historypb.HistoryEvent{
			EventId: int64(i + 1), EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			Attributes: &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{
				ActivityId: fmt.Sprint(i), ActivityType: &commonpb.ActivityType{Name: "A"}, Input: &commonpb.Payloads{Payloads: in},
			}},
		})
	}
	return resp, nil
}

func rawClient(addr string) (workflowservice.WorkflowServiceClient, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return workflowservice.NewWorkflowServiceClient(conn), func() { conn.Close() }, nil
}

// arm is one way to reach a frontend: through the proxy, through a pass-through hop, or direct.
type arm struct {
	name string
	wf   workflowservice.WorkflowServiceClient
	// id is the workflow this arm signals (against the embedded server, one per arm).
	id string
}

// dialArms connects one client per address, in the order proxy, hop, direct (and a proxy in its own process).
func dialArms(addrs, ids []string) ([]arm, func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	arms := make([]arm, len(addrs))
	for i, a := range addrs {
		wf, c, err := rawClient(a)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, c)
		arms[i] = arm{name: []string{"proxy", "hop", "direct", "proxy process"}[i], wf: wf, id: ids[i]}
	}
	return arms, closeAll, nil
}

// runRPC measures single calls through the proxy, through a pass-through gRPC hop that forwards raw frames (the floor
// of any extra hop) and directly, alternating the arms call by call: a 1 KiB signal against the embedded server
// (end-to-end), and against a fake frontend that answers at once (the proxy's own added latency, without the server's
// noise) a 1 KiB signal, a workflow-task poll answered with a 100-event history, and a 2 MiB signal.
func runRPC(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	c, err := e.ensureCodec()
	if err != nil {
		return nil, err
	}
	n := pick(e, 150, 1500)
	var rows []Row

	// Against the embedded server: one open workflow per arm that no worker runs, so a signal is one history append.
	// The SDK workers of the other scenarios keep long polls open through the same proxy meanwhile.
	ids := make([]string, 3)
	for i, a := range []string{"proxy", "hop", "direct"} {
		id := fmt.Sprintf("bench-rpc-%s-%d", a, time.Now().UnixNano())
		if _, err := e.direct.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "bench-nobody"}, "Idle"); err != nil {
			return nil, fmt.Errorf("start signal target: %w", err)
		}
		ids[i] = id
	}
	realHop, err := testenv.StartForwarder(e.stack.FrontendAddr(), nil)
	if err != nil {
		return rows, err
	}
	defer realHop.Stop()
	// A fourth arm: the same proxy in a process of its own (bench/proxyproc), as it is deployed. In this process it
	// shares the Go scheduler's two Ps with the embedded server, whose work around each signal delays every goroutine
	// hand-off the proxy's path adds.
	bin, err := buildProxyProc(ctx, e.tmp)
	if err != nil {
		return rows, err
	}
	pp, err := startProxyProc(ctx, bin, e.stack.FrontendAddr(), e.tmp+"/rpckeys")
	if err != nil {
		return rows, err
	}
	defer pp.stop()
	id := fmt.Sprintf("bench-rpc-proc-%d", time.Now().UnixNano())
	if _, err := e.direct.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "bench-nobody"}, "Idle"); err != nil {
		return nil, fmt.Errorf("start signal target: %w", err)
	}
	ids = append(ids, id)
	arms, closeArms, err := dialArms([]string{e.proxyAddr, realHop.Addr, e.stack.FrontendAddr(), pp.addr}, ids)
	if err != nil {
		return rows, err
	}
	small := signalCall(ctx, randomPayload(1<<10))
	emb, err := measureArms(arms, small, n)
	closeArms()
	if err != nil {
		return nil, err
	}
	rows = append(rows, latencyRows("signal 1KiB, embedded server", armLatencies{emb[0], emb[2]}, n)...)
	rows = append(rows, hopRows(emb)...)
	p50, h50, d50 := percentile(emb[0], 50), percentile(emb[1], 50), percentile(emb[2], 50)
	ratio := float64(p50) / float64(d50)
	rows = append(rows,
		Row{Measure: "  embedded server, proxy ÷ direct p50", Value: ratio, Baseline: nan(), Unit: "×", Target: "≤ 1.02", Met: met(ratio <= 1.02),
			Note: "issue 18 goal 5"},
		Row{Measure: "  embedded server, hop ÷ direct p50", Value: float64(h50) / float64(d50), Baseline: nan(), Unit: "×",
			Note: "what any extra gRPC hop costs here"},
		Row{Measure: "  embedded server, paired proxy ÷ direct", Value: pairedRatio(emb[0], emb[2]), Baseline: nan(), Unit: "×",
			Note: "median over rounds of proxy call ÷ the direct call of the same round: less exposed to load drift"},
		Row{Measure: "  embedded server, paired hop ÷ direct", Value: pairedRatio(emb[1], emb[2]), Baseline: nan(), Unit: "×"},
		Row{Measure: "  proxy in its own process p50", Value: us(percentile(emb[3], 50)), Baseline: us(d50), Unit: "µs",
			Note: "bench/proxyproc, as deployed: not sharing the embedded server's Go scheduler"},
	)

	// Against the fake frontend, through a second proxy with the same codec.
	task, err := sealedTask(ctx, c, 100)
	if err != nil {
		return rows, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rows, err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(8 << 20))
	workflowservice.RegisterWorkflowServiceServer(gs, fakeFrontend{poll: task})
	go gs.Serve(lis)
	defer gs.Stop()
	g, err := e.startGateway(ctx, lis.Addr().String(), nil)
	if err != nil {
		return rows, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Stop(sctx)
	}()
	hop, err := testenv.StartForwarder(lis.Addr().String(), nil)
	if err != nil {
		return rows, err
	}
	defer hop.Stop()
	arms, closeArms, err = dialArms([]string{g.Addr(), hop.Addr, lis.Addr().String()}, []string{"fake-p", "fake-h", "fake-d"})
	if err != nil {
		return rows, err
	}
	defer closeArms()

	fake, err := measureArms(arms, small, n*3)
	if err != nil {
		return rows, err
	}
	rows = append(rows, latencyRows("signal 1KiB, instant fake frontend", armLatencies{fake[0], fake[2]}, n*3)...)
	rows = append(rows, hopRows(fake)...)
	own := us(percentile(fake[0], 50) - percentile(fake[1], 50))
	rows = append(rows, Row{Measure: "  blindfold's own share at 1 KiB", Value: own, Baseline: nan(), Unit: "µs", Target: "≤ 30", Met: met(own <= 30),
		Note: "issue 18 goal 1: proxy p50 − pass-through hop p50"})

	poll := func(a arm) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := a.wf.PollWorkflowTaskQueue(cctx, &workflowservice.PollWorkflowTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: "bench-poll"}, Identity: "bench"})
		return err
	}
	np := pick(e, 150, 1000)
	polls, err := measureArms(arms, poll, np)
	if err != nil {
		return rows, err
	}
	rows = append(rows, latencyRows("poll, 100-event history, instant fake frontend", armLatencies{polls[0], polls[2]}, np)...)
	rows = append(rows, hopRows(polls)...)

	// 2 MiB: the proxy's added time against the raw AES-GCM seal of the same bytes plus what the hop adds.
	big := randomPayload(2 << 20)
	raw, err := newRawGCM()
	if err != nil {
		return rows, err
	}
	nb := pick(e, 30, 200)
	bigs, err := measureArms(arms, signalCall(ctx, big), nb)
	if err != nil {
		return rows, err
	}
	// Right after, the same number of raw seals of the same bytes (fresh nonce each).
	aead := make([]time.Duration, 0, nb)
	for range nb {
		t0 := time.Now()
		_ = raw.seal(big.Data)
		aead = append(aead, time.Since(t0))
	}
	bigAdded := percentile(bigs[0], 50) - percentile(bigs[2], 50)
	hopAdded := percentile(bigs[1], 50) - percentile(bigs[2], 50)
	a50 := percentile(aead, 50)
	goal4 := float64(bigAdded) / float64(a50+hopAdded)
	rows = append(rows,
		Row{Measure: "signal 2MiB, instant fake frontend added p50", Value: us(bigAdded), Baseline: us(a50 + hopAdded), Unit: "µs",
			Note: fmt.Sprintf("baseline raw AES-256-GCM seal of the 2 MiB (%.0f µs) + pass-through hop added (%.0f µs); %d calls each", us(a50), us(hopAdded), nb)},
		Row{Measure: "  2MiB added ÷ (raw AEAD + hop)", Value: goal4, Baseline: nan(), Unit: "×", Target: "≤ 1.1", Met: met(goal4 <= 1.1), Note: "issue 18 goal 4"},
	)
	return rows, nil
}

// signalCall signals the arm's workflow with payload p (a fresh request each time: the proxy replaces payloads in place).
func signalCall(ctx context.Context, p *commonpb.Payload) func(arm) error {
	return func(a arm) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := a.wf.SignalWorkflowExecution(cctx, &workflowservice.SignalWorkflowExecutionRequest{
			Namespace:         "default",
			WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: a.id},
			SignalName:        "bench",
			Input:             &commonpb.Payloads{Payloads: []*commonpb.Payload{p}},
			Identity:          "bench",
		})
		return err
	}
}

// pairedRatio is the median over rounds of a[i] ÷ b[i]: a and b were measured in the same rounds, side by side.
func pairedRatio(a, b []time.Duration) float64 {
	r := make([]time.Duration, min(len(a), len(b)))
	for i := range r {
		// As a duration scaled by 1e6, so that percentile can take the median.
		r[i] = time.Duration(float64(a[i]) / float64(b[i]) * 1e6)
	}
	return float64(percentile(r, 50)) / 1e6
}

type armLatencies struct{ proxy, direct []time.Duration }

// measureArms calls each arm in turn, n times plus a tenth as warm-up, rotating which goes first, and returns each
// arm's latencies.
func measureArms(arms []arm, call func(arm) error, n int) ([][]time.Duration, error) {
	res := make([][]time.Duration, len(arms))
	warm := max(n/10, 3)
	for i := range n + warm {
		for k := range arms {
			a := (i + k) % len(arms)
			t0 := time.Now()
			if err := call(arms[a]); err != nil {
				return nil, fmt.Errorf("call via %s (call %d): %w", arms[a].name, i, err)
			}
			if d := time.Since(t0); i >= warm {
				res[a] = append(res[a], d)
			}
		}
	}
	return res, nil
}

// hopRows splits the proxy's added p50 into the pass-through hop's and Blindfold's own; l is proxy, hop, direct.
func hopRows(l [][]time.Duration) []Row {
	p50, hop50, d50 := percentile(l[0], 50), percentile(l[1], 50), percentile(l[2], 50)
	return []Row{
		{Measure: "  pass-through gRPC hop p50 (no codec)", Value: us(hop50), Baseline: us(d50), Unit: "µs",
			Note: "same loop: a proxy that forwards raw frames; the floor of any extra hop"},
		{Measure: "  pass-through hop added p50", Value: us(hop50 - d50), Baseline: nan(), Unit: "µs"},
		{Measure: "  blindfold p50 over the pass-through hop", Value: us(p50 - hop50), Baseline: nan(), Unit: "µs",
			Note: "protobuf decode/re-encode, payload walk, AES-GCM, interceptors"},
	}
}

func latencyRows(what string, l armLatencies, n int) []Row {
	p50, d50 := percentile(l.proxy, 50), percentile(l.direct, 50)
	p99, d99 := percentile(l.proxy, 99), percentile(l.direct, 99)
	added := us(p50 - d50)
	return []Row{
		{Measure: what + " p50", Value: us(p50), Baseline: us(d50), Unit: "µs", Note: fmt.Sprintf("baseline direct to the frontend; %d calls each, interleaved", n)},
		{Measure: what + " p99", Value: us(p99), Baseline: us(d99), Unit: "µs"},
		{Measure: what + " added p50", Value: added, Baseline: nan(), Unit: "µs", Target: "≤ 100", Met: met(added <= 100), Note: "proxy p50 − direct p50"},
		{Measure: what + " added p99", Value: us(p99 - d99), Baseline: nan(), Unit: "µs"},
	}
}
