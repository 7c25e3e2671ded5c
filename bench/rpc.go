package main

import (
	"context"
	"fmt"
	"net"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// fakeFrontend answers SignalWorkflowExecution at once, so proxy-vs-direct against it isolates the proxy's own cost
// from the server's (SQLite writes dominate a real signal and vary from call to call).
type fakeFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
}

func (fakeFrontend) SignalWorkflowExecution(context.Context, *workflowservice.SignalWorkflowExecutionRequest) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

func rawClient(addr string) (workflowservice.WorkflowServiceClient, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return workflowservice.NewWorkflowServiceClient(conn), func() { conn.Close() }, nil
}

// runRPC measures SignalWorkflowExecution with a 1 KiB payload through the proxy and directly, alternating the two call
// by call: once against the embedded server (end-to-end) and once against a fake frontend that answers at once (the
// proxy's own added latency, without the server's noise).
func runRPC(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	n := pick(e, 150, 1500)
	var rows []Row

	// Against the embedded server: one open workflow per arm that no worker runs, so a signal is one history append.
	targets := make([]string, 2)
	for i, arm := range []string{"proxy", "direct"} {
		id := fmt.Sprintf("bench-rpc-%s-%d", arm, time.Now().UnixNano())
		if _, err := e.direct.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "bench-nobody"}, "Idle"); err != nil {
			return nil, fmt.Errorf("start signal target: %w", err)
		}
		targets[i] = id
	}
	emb, err := measureSignals(ctx, []string{e.proxyAddr, e.stack.FrontendAddr()}, targets, n)
	if err != nil {
		return nil, err
	}
	rows = append(rows, latencyRows("signal 1KiB, embedded server", armLatencies{emb[0], emb[1]}, n)...)

	// Against the fake frontend, through a second proxy with the same codec.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rows, err
	}
	gs := grpc.NewServer()
	workflowservice.RegisterWorkflowServiceServer(gs, fakeFrontend{})
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
	// A third arm: a gRPC hop that forwards frames without decoding them, the floor any in-line proxy pays.
	hop, err := testenv.StartForwarder(lis.Addr().String(), nil)
	if err != nil {
		return rows, err
	}
	defer hop.Stop()
	fake, err := measureSignals(ctx, []string{g.Addr(), hop.Addr, lis.Addr().String()}, []string{"fake-p", "fake-h", "fake-d"}, n*3)
	if err != nil {
		return rows, err
	}
	rows = append(rows, latencyRows("signal 1KiB, instant fake frontend", armLatencies{fake[0], fake[2]}, n*3)...)
	hop50, d50 := percentile(fake[1], 50), percentile(fake[2], 50)
	rows = append(rows,
		Row{Measure: "  pass-through gRPC hop p50 (no codec)", Value: us(hop50), Baseline: us(d50), Unit: "µs",
			Note: "same loop: a proxy that forwards raw frames; the floor of any extra hop"},
		Row{Measure: "  pass-through hop added p50", Value: us(hop50 - d50), Baseline: nan(), Unit: "µs"},
		Row{Measure: "  blindfold p50 over the pass-through hop", Value: us(percentile(fake[0], 50) - hop50), Baseline: nan(), Unit: "µs",
			Note: "protobuf decode/re-encode, payload walk, AES-GCM, interceptors"},
	)
	return rows, nil
}

type armLatencies struct{ proxy, direct []time.Duration }

// measureSignals signals through each address in turn, n times plus a tenth as warm-up, rotating which goes first, and
// returns each address's latencies.
func measureSignals(ctx context.Context, addrs, ids []string, n int) ([][]time.Duration, error) {
	clients := make([]workflowservice.WorkflowServiceClient, len(addrs))
	for i, a := range addrs {
		c, closeC, err := rawClient(a)
		if err != nil {
			return nil, err
		}
		defer closeC()
		clients[i] = c
	}
	in := &commonpb.Payloads{Payloads: []*commonpb.Payload{randomPayload(1 << 10)}}
	call := func(c workflowservice.WorkflowServiceClient, id string) (time.Duration, error) {
		req := &workflowservice.SignalWorkflowExecutionRequest{
			Namespace:         "default",
			WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
			SignalName:        "bench",
			Input:             in,
			Identity:          "bench",
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := c.SignalWorkflowExecution(cctx, req)
		return time.Since(t0), err
	}
	res := make([][]time.Duration, len(addrs))
	warm := n / 10
	for i := range n + warm {
		for k := range addrs {
			arm := (i + k) % len(addrs)
			d, err := call(clients[arm], ids[arm])
			if err != nil {
				return nil, fmt.Errorf("signal via %s (call %d): %w", addrs[arm], i, err)
			}
			if i >= warm {
				res[arm] = append(res[arm], d)
			}
		}
	}
	return res, nil
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
