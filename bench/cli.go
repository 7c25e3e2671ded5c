package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/gateway"
)

// cliSignals is the history of the failing case: a workflow with 2,000 signals of 1 KiB.
const cliSignals = 2000

// runCLI measures what `temporal workflow show --codec-endpoint` does (temporalio/cli#1193) against what it does
// without: fetch a workflow's history from the raw frontend, then decode it through the codec endpoint one payload per
// POST, serially, over a keep-alive connection, with the endpoint's default limits and a real audit log. The baseline
// is the raw fetch alone; the goal is at most 2×. The endpoint runs as `blindfold dev` serves it (5 ms audit
// sync window) and with the strict audit log (an fsync per serial record).
func runCLI(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	id := fmt.Sprintf("bench-cli-%d", time.Now().UnixNano())
	if _, err := e.direct.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "bench-nobody"}, "Idle"); err != nil {
		return nil, fmt.Errorf("start workflow: %w", err)
	}
	plain, err := signalHistory(ctx, e.viaProxy, id)
	if err != nil {
		return nil, err
	}
	raw, closeRaw, err := rawClient(e.stack.FrontendAddr())
	if err != nil {
		return nil, err
	}
	defer closeRaw()
	fetch := func() (*workflowservice.GetWorkflowExecutionHistoryResponse, error) {
		return fetchHistory(ctx, raw, id)
	}
	h, err := fetch()
	if err != nil {
		return nil, err
	}
	if n := countPayloads(ctx, h); n < cliSignals {
		return nil, fmt.Errorf("history has %d payloads, want at least %d", n, cliSignals)
	}

	var rows []Row
	// The floor of any codec endpoint under this pattern: the SDK's own codec server with no codec, which answers
	// each POST with its payloads unchanged (no keys, no audit, no authentication).
	floorURL, stopFloor, err := noopCodecServer()
	if err != nil {
		return nil, err
	}
	fr, err := cliArm(ctx, fetch, floorURL, nil, pick(e, 3, 7))
	var realFloor *cliResult
	if err == nil && e.temporalCLI != "" {
		realFloor, err = realCLIArm(ctx, e.temporalCLI, e.stack.FrontendAddr(), id, floorURL, false, pick(e, 2, 5))
	}
	stopFloor()
	if err != nil {
		return nil, fmt.Errorf("no-op codec server: %w", err)
	}
	if realFloor != nil {
		rows = append(rows, Row{Measure: "real temporal CLI show -o json, 2k signals, no-op codec server", Value: realFloor.cli, Baseline: realFloor.raw, Unit: "ms",
			Note: "the floor: the SDK's codec server with no codec (converter.NewPayloadCodecHTTPHandler); baseline without --codec-endpoint"})
	}
	rows = append(rows,
		Row{Measure: "CLI show, 2k signals × 1 KiB, no-op codec server", Value: fr.cli, Baseline: fr.raw, Unit: "ms",
			Note: "the floor: the SDK's codec server with no codec (no crypto, audit, authentication); baseline raw GetWorkflowExecutionHistory"},
		Row{Measure: "  per one-payload request, no-op codec server", Value: fr.perRequest, Baseline: nan(), Unit: "µs", Note: "client + server round trip on loopback"},
	)
	for _, arm := range []struct {
		name   string
		window time.Duration
	}{{"dev (5 ms audit sync window)", 0}, {"strict audit (fsync per record)", -1}} {
		g, err := e.startGateway(ctx, "", &gateway.CodecEndpointConfig{
			Listen: "127.0.0.1:0", Dev: true, AuditLog: fmt.Sprintf("%s/audit-cli-%d.jsonl", e.tmp, len(rows)), AuditSyncWindow: arm.window,
		})
		if err != nil {
			return rows, err
		}
		r, err := cliArm(ctx, fetch, g.CodecURL(), plain, pick(e, 3, 7))
		var real *cliResult
		if err == nil && arm.window == 0 && e.temporalCLI != "" {
			real, err = realCLIArm(ctx, e.temporalCLI, e.stack.FrontendAddr(), id, g.CodecURL(), true, pick(e, 2, 5))
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g.Stop(sctx)
		cancel()
		if err != nil {
			return rows, fmt.Errorf("%s: %w", arm.name, err)
		}
		if real != nil {
			rows = append(rows, Row{Measure: "real temporal CLI show -o json, 2k signals, " + arm.name, Value: real.cli, Baseline: real.raw, Unit: "ms",
				Target: "≤ 2× raw", Met: met(real.cli <= 2*real.raw),
				Note: fmt.Sprintf("%s; baseline the same command without --codec-endpoint; no --namespace; median of %d, alternating; no-op codec server %.0f ms", e.temporalCLI, real.reps, realFloor.cli)})
		}
		rows = append(rows,
			Row{Measure: "CLI show, 2k signals × 1 KiB, " + arm.name, Value: r.cli, Baseline: r.raw, Unit: "ms", Target: "≤ 2× raw",
				Met: met(r.cli <= 2*r.raw), Note: fmt.Sprintf("baseline raw GetWorkflowExecutionHistory; %d one-payload POSTs; median of %d", r.requests, r.reps)},
			Row{Measure: "  per one-payload request, " + arm.name, Value: r.perRequest, Baseline: nan(), Unit: "µs", Target: "≤ 300",
				Met: met(r.perRequest <= 300), Note: "client + server round trip on loopback"},
		)
	}
	return rows, nil
}

// signalHistory sends cliSignals signals of 1 KiB random bytes through the proxy (so they are sealed) and returns the
// plaintexts by their data, to check what the endpoint decodes.
func signalHistory(ctx context.Context, c client.Client, id string) (map[string]bool, error) {
	plain := make(map[string]bool, cliSignals)
	payloads := make([][]byte, cliSignals)
	for i := range payloads {
		payloads[i] = randomPayload(1024).Data
		plain[string(payloads[i])] = true
	}
	const senders = 16
	next := make(chan []byte)
	errs := make(chan error, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for p := range next {
				if err := c.SignalWorkflow(ctx, id, "", "data", p); err != nil {
					errs <- fmt.Errorf("signal: %w", err)
					return
				}
			}
		})
	}
	for _, p := range payloads {
		select {
		case next <- p:
		case err := <-errs:
			close(next)
			wg.Wait()
			return nil, err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return plain, nil
}

func fetchHistory(ctx context.Context, raw workflowservice.WorkflowServiceClient, id string) (*workflowservice.GetWorkflowExecutionHistoryResponse, error) {
	all := &workflowservice.GetWorkflowExecutionHistoryResponse{}
	var token []byte
	for {
		resp, err := raw.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
			Namespace: devstack.DefaultNamespace, Execution: &commonpb.WorkflowExecution{WorkflowId: id}, NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("get history: %w", err)
		}
		if all.History == nil {
			all.History = resp.History
		} else {
			all.History.Events = append(all.History.Events, resp.History.GetEvents()...)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return all, nil
		}
	}
}

func countPayloads(ctx context.Context, h *workflowservice.GetWorkflowExecutionHistoryResponse) int {
	n := 0
	_ = proxy.VisitPayloads(ctx, h, proxy.VisitPayloadsOptions{Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		n += len(ps)
		return ps, nil
	}})
	return n
}

type cliResult struct {
	cli, raw, perRequest float64
	requests, reps       int
}

// cliArm alternates raw fetches and CLI-pattern reads (fetch, then one POST per payload field as the CLI's codec
// visitor sends them) and returns their medians. With plain nil (a server that does not decode) the answers are not
// checked.
func cliArm(ctx context.Context, fetch func() (*workflowservice.GetWorkflowExecutionHistoryResponse, error), url string, plain map[string]bool, reps int) (cliResult, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	post := func(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
		b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/"+devstack.DefaultNamespace+"/decode", bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("post decode: %w", err)
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("decode: status %d: %.200s", resp.StatusCode, rb)
		}
		var out commonpb.Payloads
		if err := protojson.Unmarshal(rb, &out); err != nil {
			return nil, fmt.Errorf("decode response: %w", err)
		}
		return out.Payloads, nil
	}
	var tCLI, tRaw []time.Duration
	var requests int
	for range reps {
		t0 := time.Now()
		if _, err := fetch(); err != nil {
			return cliResult{}, err
		}
		tRaw = append(tRaw, time.Since(t0))

		t0 = time.Now()
		h, err := fetch()
		if err != nil {
			return cliResult{}, err
		}
		requests = 0
		decoded := 0
		err = proxy.VisitPayloads(ctx, h, proxy.VisitPayloadsOptions{Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			requests++
			out, err := post(ps)
			if err != nil {
				return nil, err
			}
			for _, p := range out {
				if plain[string(p.GetData())] {
					decoded++
				}
			}
			return out, nil
		}})
		tCLI = append(tCLI, time.Since(t0))
		if err != nil {
			return cliResult{}, err
		}
		if plain != nil && decoded != len(plain) {
			return cliResult{}, fmt.Errorf("%d of %d signals decoded", decoded, len(plain))
		}
	}
	c, r := ms(percentile(tCLI, 50)), ms(percentile(tRaw, 50))
	return cliResult{cli: c, raw: r, perRequest: (c - r) * 1000 / float64(requests), requests: requests, reps: reps}, nil
}

// realCLIArm runs the real `temporal workflow show -o json` against the raw frontend, alternately without and with
// --codec-endpoint, as a newcomer types it (no --namespace), and returns the medians of the wall times (process start
// included on both sides). Every run must exit 0; with check, a run with the endpoint must show every signal decoded
// (binary/plain, the bench's encoding).
func realCLIArm(ctx context.Context, bin, frontend, id, codecURL string, check bool, reps int) (*cliResult, error) {
	run := func(extra ...string) (time.Duration, []byte, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		args := append([]string{"workflow", "show", "--address", frontend, "--workflow-id", id, "-o", "json"}, extra...)
		cmd := exec.CommandContext(cctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 := time.Now()
		out, err := cmd.Output()
		d := time.Since(t0)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %v: %w: %.300s", bin, args, err, stderr.String())
		}
		return d, out, nil
	}
	// "binary/plain" as the CLI's JSON shows a payload's metadata: what a decoded signal carries and a sealed one not.
	const plainEncoding = `"YmluYXJ5L3BsYWlu"`
	var tCLI, tRaw []time.Duration
	for range reps {
		d, _, err := run()
		if err != nil {
			return nil, err
		}
		tRaw = append(tRaw, d)
		d, out, err := run("--codec-endpoint", codecURL)
		if err != nil {
			return nil, err
		}
		if n := bytes.Count(out, []byte(plainEncoding)); check && n < cliSignals {
			return nil, fmt.Errorf("temporal CLI with --codec-endpoint showed %d decoded signals, want %d", n, cliSignals)
		}
		tCLI = append(tCLI, d)
	}
	return &cliResult{cli: ms(percentile(tCLI, 50)), raw: ms(percentile(tRaw, 50)), reps: reps}, nil
}

// noopCodecServer serves the SDK's codec HTTP handler with no codec on loopback: it answers each decode with the
// payloads it was sent, which is the least any codec endpoint can cost a client.
func noopCodecServer() (url string, stop func(), _ error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: converter.NewPayloadCodecHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
