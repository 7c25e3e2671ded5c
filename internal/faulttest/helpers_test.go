package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/blindfold-dev/blindfold/internal/devstack"
)

// faultWorkflow sleeps briefly (so many runs are in flight when a fault hits), runs one activity and returns its result.
func faultWorkflow(ctx workflow.Context, in string) (string, error) {
	if err := workflow.Sleep(ctx, 300*time.Millisecond); err != nil {
		return "", err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 20 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, "FaultActivity", in).Get(ctx, &out)
	return out, err
}

func faultActivity(_ context.Context, in string) (string, error) { return "done:" + in, nil }

func dial(t *testing.T, addr string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: devstack.DefaultNamespace, Logger: sdklog.NewStructuredLogger(quietLog)})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// startWorker runs faultWorkflow and faultActivity on queue until the test ends.
func startWorker(t *testing.T, c client.Client, queue string) {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(faultWorkflow, workflow.RegisterOptions{Name: "FaultWorkflow"})
	w.RegisterActivityWithOptions(faultActivity, activity.RegisterOptions{Name: "FaultActivity"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
}

// runThrough dials addr and starts a worker on a queue named for kind; it returns the client, the queue and a prefix
// for workflow ids no other run uses.
func runThrough(t *testing.T, addr, kind string) (c client.Client, queue, prefix string) {
	t.Helper()
	c = dial(t, addr)
	queue, prefix = "faulttest-"+kind, fmt.Sprintf("faulttest-%s-%d-", kind, time.Now().UnixNano())
	startWorker(t, c, queue)
	return c, queue, prefix
}

// campaign starts n workflows named prefix+i on 3 starters, calls fault (once, on its own goroutine) when a third of
// them are started, and waits for every result. With retry, a failed start or result call is retried (bounded by
// ctx): a start that the server already took (the SDK reuses its request id, or the id exists) counts as started.
// It returns the errors that were not retried away, and how many calls failed before a retry succeeded.
func campaign(ctx context.Context, c client.Client, queue, prefix string, n int, retry bool, fault func()) (errs []error, retried int64) {
	var (
		mu      sync.Mutex
		started atomic.Int64
		once    sync.Once
		faultWG sync.WaitGroup
		retries atomic.Int64
		wg      sync.WaitGroup
		next    atomic.Int64
	)
	fail := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	for range 3 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				id := fmt.Sprintf("%s%d", prefix, i)
				opts := client.StartWorkflowOptions{ID: id, TaskQueue: queue,
					WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
					WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL}
				for {
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := c.ExecuteWorkflow(cctx, opts, "FaultWorkflow", id)
					cancel()
					var already *serviceerror.WorkflowExecutionAlreadyStarted
					if err == nil || errors.As(err, &already) {
						break
					}
					if !retry || ctx.Err() != nil {
						fail(fmt.Errorf("start %s: %w", id, err))
						break
					}
					retries.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				if started.Add(1) == int64(n/3) && fault != nil {
					once.Do(func() { faultWG.Go(fault) })
				}
				time.Sleep(20 * time.Millisecond) // spread the starts over the fault
			}
		})
	}
	wg.Wait()
	faultWG.Wait()
	if err := ctx.Err(); err != nil {
		return append(errs, err), retries.Load()
	}
	_ = parallel(n, 8, func(i int) {
		id := fmt.Sprintf("%s%d", prefix, i)
		for {
			var out string
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := c.GetWorkflow(cctx, id, "").Get(cctx, &out)
			cancel()
			if err == nil && out != "done:"+id {
				err = fmt.Errorf("unexpected result %q", out)
			}
			if err == nil {
				return
			}
			if !retry || ctx.Err() != nil {
				fail(fmt.Errorf("result of %s: %w", id, err))
				return
			}
			retries.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
	})
	return errs, retries.Load()
}

func parallel(n, conc int, f func(i int)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
	return nil
}

// checkExactlyOnce lists the namespace's executions directly at the frontend and requires exactly one run per id
// prefix+0 … prefix+(n-1), each completed: none lost, none duplicated. Visibility lags a little, so it polls (bounded).
func checkExactlyOnce(t *testing.T, ctx context.Context, wc workflowservice.WorkflowServiceClient, prefix string, n int) {
	t.Helper()
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		runs := map[string]int{}
		completed := 0
		var token []byte
		var err error
		for {
			var resp *workflowservice.ListWorkflowExecutionsResponse
			resp, err = wc.ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", PageSize: 1000, NextPageToken: token})
			if err != nil {
				break
			}
			for _, ex := range resp.Executions {
				id := ex.GetExecution().GetWorkflowId()
				if !strings.HasPrefix(id, prefix) {
					continue
				}
				runs[id]++
				if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
					completed++
				}
			}
			if token = resp.NextPageToken; len(token) == 0 {
				break
			}
		}
		if err == nil {
			dups := 0
			for _, c := range runs {
				if c > 1 {
					dups++
				}
			}
			missing := 0
			for i := range n {
				if runs[fmt.Sprintf("%s%d", prefix, i)] == 0 {
					missing++
				}
			}
			if dups > 0 || len(runs) > n {
				t.Fatalf("duplicated workflows: %d ids with more than one run, %d ids for %d workflows", dups, len(runs), n)
			}
			if missing == 0 && completed == n {
				t.Logf("visibility: %d workflows, each run exactly once, all completed", n)
				return
			}
			last = fmt.Sprintf("%d missing, %d of %d completed", missing, completed, n)
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("visibility never showed every workflow completed exactly once: %s", last)
}
