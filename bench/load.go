package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
)

// runLoad runs 10,000 workflows (200 in quick mode) through the proxy at 32 concurrent starters and requires zero
// errors; then scans the server's SQLite files and a sample of histories read directly from the frontend for the
// plaintext every workflow carried. A workflow run directly, with a control marker, proves the scan can find
// plaintext when it is there.
func runLoad(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	n := pick(e, 100, 10_000)
	if e.loadN > 0 {
		n = e.loadN
	}
	b := make([]byte, 8)
	rand.Read(b)
	marker := "bf-load-secret-" + hex.EncodeToString(b)
	control := "bf-load-control-" + hex.EncodeToString(b)
	prefix := "bench-load-" + hex.EncodeToString(b) + "-"

	start := time.Now()
	// Any error fails the scenario: zero errors is the requirement.
	err := parallel(ctx, n, 32, func(i int) error {
		return oneWorkflow(ctx, e.viaProxy, queueProxy, prefix+strconv.Itoa(i), marker+":"+strconv.Itoa(i))
	})
	elapsed := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	if err := oneWorkflow(ctx, e.direct, queueDirect, prefix+"control", control); err != nil {
		return nil, fmt.Errorf("control workflow: %w", err)
	}

	// Histories straight from the frontend: no payload may carry the marker, and every start input must be encrypted.
	wc, closeWC, err := rawClient(e.stack.FrontendAddr())
	if err != nil {
		return nil, err
	}
	defer closeWC()
	sample := min(n, pick(e, 100, 500))
	leaks, encrypted := 0, 0
	for i := range sample {
		idx := i * (n / sample)
		resp, err := wc.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
			Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: prefix + strconv.Itoa(idx)},
		})
		if err != nil {
			return nil, fmt.Errorf("history of workflow %d: %w", idx, err)
		}
		raw, err := proto.Marshal(resp.GetHistory())
		if err != nil {
			return nil, err
		}
		if bytes.Contains(raw, []byte(marker)) {
			leaks++
		}
		if in := resp.GetHistory().GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads(); len(in) == 1 && codec.IsEncrypted(in[0]) {
			encrypted++
		}
	}

	// The SQLite database and its WAL: the marker must be absent, the control present.
	var dbBytes int64
	markerHits, controlHits := 0, 0
	for _, f := range e.stack.SQLiteFiles() {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", f, err)
		}
		dbBytes += int64(len(data))
		markerHits += bytes.Count(data, []byte(marker))
		controlHits += bytes.Count(data, []byte(control))
	}
	rows := []Row{
		{Measure: "workflows completed through the proxy", Value: float64(n), Baseline: nan(), Unit: "workflows",
			Note: fmt.Sprintf("32 concurrent starters; %s", elapsed.Round(time.Second))},
		{Measure: "errors", Value: 0, Baseline: nan(), Unit: "errors", Target: "0", Met: "yes", Note: "any error aborts the scenario"},
		{Measure: "throughput", Value: float64(n) / elapsed.Seconds(), Baseline: nan(), Unit: "wf/s"},
		{Measure: "marker occurrences in SQLite files", Value: float64(markerHits), Baseline: nan(), Unit: "hits", Target: "0", Met: met(markerHits == 0),
			Note: fmt.Sprintf("%d files, %d MiB scanned", len(e.stack.SQLiteFiles()), dbBytes>>20)},
		{Measure: "control occurrences in SQLite files", Value: float64(controlHits), Baseline: nan(), Unit: "hits", Target: "≥ 1", Met: met(controlHits >= 1),
			Note: "a direct (unencrypted) workflow: proves the scan sees plaintext"},
		{Measure: "histories with the marker (direct read)", Value: float64(leaks), Baseline: nan(), Unit: "histories", Target: "0", Met: met(leaks == 0),
			Note: fmt.Sprintf("%d histories sampled", sample)},
		{Measure: "sampled start inputs encrypted", Value: float64(encrypted), Baseline: float64(sample), Unit: "histories", Target: "all", Met: met(encrypted == sample)},
	}
	if markerHits > 0 || leaks > 0 || controlHits == 0 || encrypted != sample {
		return rows, fmt.Errorf("plaintext scan failed: %d SQLite hits, %d leaking histories, control hits %d, %d/%d inputs encrypted",
			markerHits, leaks, controlHits, encrypted, sample)
	}
	return rows, nil
}
