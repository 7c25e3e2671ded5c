package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
)

// runWorkflows measures workflow round trips (start, one activity, result) at 1, 8 and 32 concurrent starters, with the
// starter and worker going through the proxy in one arm and straight to the frontend in the other. Arms alternate in
// short windows, several rounds, so both see the same machine load.
func runWorkflows(ctx context.Context, e *env) ([]Row, error) {
	if err := e.ensureStack(ctx); err != nil {
		return nil, err
	}
	rounds := pick(e, 1, 3)
	window := pick(e, 1500*time.Millisecond, 8*time.Second)
	input := strings.Repeat("x", 256)
	var rows []Row
	for _, conc := range []int{1, 8, 32} {
		var p, d armRun
		for r := range rounds {
			arms := []bool{true, false}
			if r%2 == 1 {
				arms = []bool{false, true}
			}
			for _, viaProxy := range arms {
				c, queue, acc := e.direct, queueDirect, &d
				if viaProxy {
					c, queue, acc = e.viaProxy, queueProxy, &p
				}
				got, err := roundTrips(ctx, c, queue, conc, window, input)
				acc.add(got)
				if err != nil {
					return rows, fmt.Errorf("%d concurrent, proxy=%v: %w", conc, viaProxy, err)
				}
			}
		}
		tp, td := p.rate(), d.rate()
		name := fmt.Sprintf("%d concurrent", conc)
		row := Row{Measure: name + " throughput", Value: tp, Baseline: td, Unit: "wf/s",
			Note: fmt.Sprintf("baseline direct; %d+%d workflows in %d×%s windows per arm", len(p.lat), len(d.lat), rounds, window)}
		if conc == 32 {
			row.Target, row.Met = "≥ 0.98× direct", met(tp >= 0.98*td)
		}
		rows = append(rows, row,
			Row{Measure: name + " round trip p50", Value: ms(percentile(p.lat, 50)), Baseline: ms(percentile(d.lat, 50)), Unit: "ms"},
			Row{Measure: name + " round trip p99", Value: ms(percentile(p.lat, 99)), Baseline: ms(percentile(d.lat, 99)), Unit: "ms"},
		)
	}
	return rows, nil
}

type armRun struct {
	lat     []time.Duration
	elapsed time.Duration
}

func (a *armRun) add(b armRun) { a.lat = append(a.lat, b.lat...); a.elapsed += b.elapsed }
func (a *armRun) rate() float64 {
	if a.elapsed <= 0 {
		return 0
	}
	return float64(len(a.lat)) / a.elapsed.Seconds()
}

var wfSeq atomic.Int64

// roundTrips runs conc starters, each starting benchWorkflow and waiting for its result, again and again until window
// has passed; workflows in flight at the end are waited for, and the elapsed time covers them.
func roundTrips(ctx context.Context, c client.Client, queue string, conc int, window time.Duration, input string) (armRun, error) {
	var (
		mu   sync.Mutex
		res  armRun
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	stopAt := start.Add(window)
	for range conc {
		wg.Go(func() {
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				t0 := time.Now()
				err := oneWorkflow(ctx, c, queue, fmt.Sprintf("bench-wf-%d-%d", time.Now().UnixNano(), wfSeq.Add(1)), input)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					res.lat = append(res.lat, d)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, errors.Join(errs...)
}

func oneWorkflow(ctx context.Context, c client.Client, queue, id, input string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, "BenchWorkflow", input)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		return fmt.Errorf("result of %s: %w", id, err)
	}
	if out != "done:"+input {
		return fmt.Errorf("result of %s: unexpected %q", id, out)
	}
	return nil
}
