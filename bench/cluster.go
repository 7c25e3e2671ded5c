package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/blindfold-dev/blindfold/internal/cluster"
)

// runCluster runs the production path (internal/cluster): the Temporal server on PostgreSQL, three blindfold proxy
// replicas with Vault Transit behind blindfold xds, every part its own process. It compares the same load through
// the replicas and straight to the frontend, then runs 2,000 workflows (200 quick) through the replicas while one
// replica is SIGKILLed and restarted, the server is restarted and Vault is stopped for 20 s (10 s quick); every
// workflow must complete once with the right result and pg_dump must hold none of their plaintext. It needs the
// Debian postgresql package; it is not part of the default set (run it with --scenario cluster).
func runCluster(ctx context.Context, e *env) ([]Row, error) {
	opts := cluster.LoadOptions{
		Workflows:        pick(e, 200, 2000),
		MeasureWorkflows: pick(e, 100, 500),
		Concurrency:      pick(e, 20, 32),
		Timer:            pick(e, time.Second, 2*time.Second),
		VaultOutage:      pick(e, 10*time.Second, 20*time.Second),
		Progress:         os.Stderr,
	}
	c, err := cluster.Start(ctx, cluster.Options{Progress: os.Stderr})
	if err != nil {
		return nil, err
	}
	rep, runErr := cluster.Run(ctx, c, opts)
	stopErr := c.Stop()
	if left := c.Leftovers(); len(left) > 0 && stopErr == nil {
		stopErr = fmt.Errorf("left behind: %v", left)
	}
	if rep == nil {
		return nil, runErr
	}
	fmt.Fprintln(os.Stderr, rep)
	v, d := rep.ViaReplicas, rep.Direct
	note := fmt.Sprintf("baseline: straight to the frontend; %d workflows per arm, %d in flight, no timer", v.Workflows, opts.Concurrency)
	rows := []Row{
		{Measure: "throughput via 3 replicas (xds)", Value: v.Throughput, Baseline: d.Throughput, Unit: "wf/s", Note: note},
		{Measure: "round trip p50 via 3 replicas", Value: ms(v.P50), Baseline: ms(d.P50), Unit: "ms", Note: "start, activity, signal, result"},
		{Measure: "round trip p99 via 3 replicas", Value: ms(v.P99), Baseline: ms(d.P99), Unit: "ms"},
	}
	for i, s := range rep.Shares() {
		rows = append(rows, Row{Measure: fmt.Sprintf("proxy-%d share of calls", i), Value: 100 * s, Baseline: math.NaN(),
			Unit: "%", Target: "≈ 33", Met: met(s > 0.25 && s < 0.42), Note: fmt.Sprintf("%d WorkflowService calls", rep.ReplicaCalls[i])})
	}
	rows = append(rows,
		Row{Measure: "fault run: workflows completed once", Value: float64(rep.VisibleRuns), Baseline: float64(rep.Workflows), Unit: "wf",
			Target: "all", Met: met(runErr == nil && rep.VisibleRuns == rep.Workflows),
			Note: fmt.Sprintf("in %s, %d activity executions", rep.Elapsed.Round(time.Millisecond), rep.ActivityRuns)},
	)
	for _, f := range rep.Faults {
		rows = append(rows, Row{Measure: "fault: " + f.Name, Value: f.Took.Seconds(), Baseline: math.NaN(), Unit: "s",
			Note: fmt.Sprintf("at %d started; %d workflows completed meanwhile", f.AtStarted, f.CompletedDuring)})
	}
	rows = append(rows,
		Row{Measure: "pg_dump hits of the workflows' marker", Value: float64(rep.SecretHits), Baseline: float64(rep.ControlHits), Unit: "hits",
			Target: "0", Met: met(rep.SecretHits == 0 && rep.ControlHits > 0),
			Note: fmt.Sprintf("baseline: the control marker sent straight to the frontend; %d bytes dumped", rep.DumpBytes)},
	)
	if runErr != nil {
		return rows, runErr
	}
	return rows, stopErr
}
