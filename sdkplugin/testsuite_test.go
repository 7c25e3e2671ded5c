package sdkplugin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func chargeActivity(ctx context.Context, o order) (string, error) {
	if o.Total < 0 {
		return "", temporal.NewNonRetryableApplicationError("card declined for "+o.ID, "Declined", nil)
	}
	return "receipt for " + o.ID, nil
}

func orderWorkflow(ctx workflow.Context, o order) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var receipt string
	if err := workflow.ExecuteActivity(ctx, chargeActivity, o).Get(ctx, &receipt); err != nil {
		return "", err
	}
	return receipt, nil
}

// TestWorkflowTestSuite checks the converter works inside the SDK's test environment, which names its own
// namespace in every serialization context.
func TestWorkflowTestSuite(t *testing.T) {
	p := newPlugin(t, mustKeyring(t))
	// The test environment fails a workflow goroutine that runs 1 s without yielding; on a loaded 2-core machine the
	// first seals (which create the namespace's keyset) can take that long.
	if _, err := p.DataConverter("default-test-namespace").ToPayload("warm up"); err != nil {
		t.Fatal(err)
	}
	relaxed := worker.Options{DeadlockDetectionTimeout: 30 * time.Second}
	var s testsuite.WorkflowTestSuite

	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(relaxed)
	env.SetDataConverter(p.DataConverter(""))
	env.RegisterActivity(chargeActivity)
	env.ExecuteWorkflow(orderWorkflow, order{ID: marker, Total: 3})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var receipt string
	if err := env.GetWorkflowResult(&receipt); err != nil || receipt != "receipt for "+marker {
		t.Fatalf("result = %q, %v", receipt, err)
	}

	env = s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(relaxed)
	env.SetDataConverter(p.DataConverter(""))
	env.RegisterActivity(chargeActivity)
	env.ExecuteWorkflow(orderWorkflow, order{ID: marker, Total: -1})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "card declined for "+marker) {
		t.Fatalf("workflow error = %v, want the activity's declined error", err)
	}
}
