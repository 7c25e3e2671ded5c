// Package sdkpluginexample is a small order-charging workflow whose worker and starter encrypt every payload in
// the SDK with Blindfold's plugin, talking straight to a Temporal frontend with no proxy in between.
package sdkpluginexample

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is the task queue the example worker polls and the starter starts workflows on.
const TaskQueue = "blindfold-sdkplugin-example"

// Order is the workflow input. Its card number is the kind of value that must never reach the Temporal backend
// in plaintext.
type Order struct {
	ID         string
	Customer   string
	CardNumber string
	Amount     float64
}

// Receipt is the workflow result.
type Receipt struct {
	OrderID string
	Charged float64
	Note    string
}

// ChargeWorkflow charges an order through the Charge activity and returns the receipt.
func ChargeWorkflow(ctx workflow.Context, o Order) (Receipt, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, MaximumAttempts: 3},
	})
	var r Receipt
	if err := workflow.ExecuteActivity(ctx, Charge, o).Get(ctx, &r); err != nil {
		return Receipt{}, fmt.Errorf("charge order %s: %w", o.ID, err)
	}
	return r, nil
}

// Charge pretends to charge the card. Its first attempt fails with an error that quotes the card number, to
// show that failure messages are encrypted too: the server only ever stores "Encoded failure".
func Charge(ctx context.Context, o Order) (Receipt, error) {
	if activity.GetInfo(ctx).Attempt == 1 {
		return Receipt{}, fmt.Errorf("issuer timed out charging card %s of %s", o.CardNumber, o.Customer)
	}
	return Receipt{OrderID: o.ID, Charged: o.Amount, Note: "charged card " + o.CardNumber}, nil
}
