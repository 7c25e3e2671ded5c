// Package hello is the smallest Blindfold example: a workflow that waits for a signal, calls an activity and returns
// a greeting. Its worker and starter use the Temporal Go SDK with default settings and know nothing about
// encryption: pointed at the Blindfold proxy (127.0.0.1:7233 under `blindfold dev`), every payload they send is
// encrypted before it reaches the Temporal server.
package hello

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is the task queue the worker polls and the starter starts workflows on.
const TaskQueue = "hello-blindfold"

// WorkflowID is the id the starter gives its workflow, so it is easy to find in the Web UI and the CLI.
const WorkflowID = "hello-blindfold"

// SignalName is the signal that tells the workflow who approves the greeting.
const SignalName = "approve"

// Request is the workflow input: the kind of personal data that must never reach the Temporal backend in plaintext.
type Request struct {
	Name  string
	Email string
}

// Approval is the signal's payload.
type Approval struct {
	By string
}

// Greeting is the workflow result.
type Greeting struct {
	Text       string
	ApprovedBy string
}

// Workflow waits (up to a minute) for the approve signal, then has the Greet activity write the greeting.
func Workflow(ctx workflow.Context, req Request) (Greeting, error) {
	var a Approval
	ch := workflow.GetSignalChannel(ctx, SignalName)
	ok, _ := ch.ReceiveWithTimeout(ctx, time.Minute, &a)
	if !ok {
		return Greeting{}, fmt.Errorf("no approval for %s within a minute", req.Name)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var text string
	if err := workflow.ExecuteActivity(ctx, Greet, req).Get(ctx, &text); err != nil {
		return Greeting{}, err
	}
	return Greeting{Text: text, ApprovedBy: a.By}, nil
}

// Greet writes the greeting. It runs in the worker, which sees plaintext: encryption happens between the worker and
// the server, not inside the worker.
func Greet(_ context.Context, req Request) (string, error) {
	return fmt.Sprintf("Hello %s <%s>, your data never left your network in plaintext.", req.Name, req.Email), nil
}

// ClientOptions are the SDK's defaults (127.0.0.1:7233, namespace "default"), with the address overridable by
// TEMPORAL_ADDRESS and the namespace by TEMPORAL_NAMESPACE.
func ClientOptions() client.Options {
	return client.Options{
		HostPort:  cmp.Or(os.Getenv("TEMPORAL_ADDRESS"), client.DefaultHostPort),
		Namespace: cmp.Or(os.Getenv("TEMPORAL_NAMESPACE"), client.DefaultNamespace),
	}
}

// Run starts the workflow as workflowID (or joins the run already going under that id), sends the approval signal and
// waits for the greeting. It returns the greeting and the run id.
func Run(ctx context.Context, c client.Client, workflowID string, req Request, a Approval) (Greeting, string, error) {
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflowID, TaskQueue: TaskQueue}, Workflow, req)
	if err != nil {
		return Greeting{}, "", fmt.Errorf("start workflow: %w", err)
	}
	if err := c.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), SignalName, a); err != nil {
		return Greeting{}, "", fmt.Errorf("signal workflow: %w", err)
	}
	var g Greeting
	if err := run.Get(ctx, &g); err != nil {
		return Greeting{}, "", fmt.Errorf("workflow result: %w", err)
	}
	return g, run.GetRunID(), nil
}
