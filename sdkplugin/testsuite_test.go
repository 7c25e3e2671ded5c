package sdkplugin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
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
	// The first seal creates the namespace's keyset; done inside the workflow, on a busy machine it can exceed the
	// test environment's 1 s deadlock detection.
	if _, err := p.DataConverter("").ToPayload("warm up"); err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite

	env := s.NewTestWorkflowEnvironment()
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
	env.SetDataConverter(p.DataConverter(""))
	env.RegisterActivity(chargeActivity)
	env.ExecuteWorkflow(orderWorkflow, order{ID: marker, Total: -1})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "card declined for "+marker) {
		t.Fatalf("workflow error = %v, want the activity's declined error", err)
	}
}
