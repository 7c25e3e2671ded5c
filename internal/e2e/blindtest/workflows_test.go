package blindtest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Type names the workflows are registered under: raw starts (the hostile backend's) need them.
const (
	mainWF     = "blindtest-main"
	failingWF  = "blindtest-failing-child"
	continueWF = "blindtest-continue"
	panickyWF  = "blindtest-panicky"
	echoWF     = "blindtest-echo"
	waitWF     = "blindtest-wait"
	quickWF    = "blindtest-quick"
)

// stackProbeName is a function that panics in an activity. It shows up in the failure's stack trace, so finding the
// name in a frame means a stack trace went to the backend in plaintext. It is the one marker without a run: a
// function name cannot be random.
const stackProbeName = "bfStackProbe"

// register adds every workflow and activity of the package to w.
func register(w worker.Worker) {
	for name, fn := range map[string]any{
		mainWF: mainWorkflow, failingWF: failingChild, continueWF: continuingChild, panickyWF: panickyWorkflow,
		echoWF: echoWorkflow, waitWF: waitWorkflow, quickWF: quickWorkflow,
	} {
		w.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: name})
	}
	w.RegisterActivity(heartbeatActivity)
	w.RegisterActivity(failingActivity)
	w.RegisterActivity(panickingActivity)
}

// mainWorkflow is the scenario's workflow. Its input is the marker of "wf.input"; every other marker is derived from
// it, and everything it receives it reports to seen. It registers queries (one answering, one failing, one panicking)
// and updates (one answering, one failing), sets its current details, upserts its memo, runs a local activity, a
// timer with a summary, an activity that heartbeats and fails once, one that fails with details, one that panics, a
// child that fails, one that continues as new, a side effect, and a child with a static summary and details that it
// signals; then it waits for the "sig" signal and returns answer(input).
func mainWorkflow(ctx workflow.Context, in string) (string, error) {
	run := runOf(in)
	see(run, "wf.input", in)
	h, _ := ctx.Value(headerKey{}).(string)
	see(run, "header@workflow", h)
	workflow.SetCurrentDetails(ctx, mk(run, "current.details"))

	if err := workflow.SetQueryHandler(ctx, "state", func(arg string) (string, error) {
		see(run, "query.arg", arg)
		return answer(arg), nil
	}); err != nil {
		return "", err
	}
	if err := workflow.SetQueryHandler(ctx, "fail", func(arg string) (string, error) {
		see(run, "queryfail.arg", arg)
		return "", errors.New(derive(arg, "error"))
	}); err != nil {
		return "", err
	}
	if err := workflow.SetQueryHandler(ctx, "panic", func() (string, error) {
		panic(mk(run, "querypanic.panic"))
	}); err != nil {
		return "", err
	}
	if err := workflow.SetUpdateHandler(ctx, "upd", func(_ workflow.Context, arg string) (string, error) {
		see(run, "update.arg", arg)
		return answer(arg), nil
	}); err != nil {
		return "", err
	}
	if err := workflow.SetUpdateHandler(ctx, "updfail", func(_ workflow.Context, arg string) (string, error) {
		see(run, "updfail.arg", arg)
		return "", temporal.NewApplicationError(derive(arg, "error"), "BlindtestUpdate", derive(arg, "details"))
	}); err != nil {
		return "", err
	}

	if err := workflow.UpsertMemo(ctx, map[string]any{"upserted": mk(run, "memo.upserted")}); err != nil {
		return "", err
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var local string
	if err := workflow.ExecuteLocalActivity(lctx, localActivity, mk(run, "localactivity.input")).Get(ctx, &local); err != nil {
		return "", err
	}
	see(run, "localactivity.result", local)

	if err := workflow.NewTimerWithOptions(ctx, time.Millisecond, workflow.TimerOptions{Summary: mk(run, "timer.summary")}).Get(ctx, nil); err != nil {
		return "", err
	}

	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 50 * time.Millisecond, MaximumAttempts: 2},
		Summary:             mk(run, "activity.summary"),
	})
	var res string
	if err := workflow.ExecuteActivity(actx, heartbeatActivity, mk(run, "activity.input")).Get(ctx, &res); err != nil {
		return "", err
	}
	see(run, "activity.result", res)

	once := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var appErr *temporal.ApplicationError
	if err := workflow.ExecuteActivity(once, failingActivity, mk(run, "activityfail.input")).Get(ctx, nil); errors.As(err, &appErr) {
		see(run, "activityfail.error", appErr.Message())
		var details string
		if err := appErr.Details(&details); err == nil {
			see(run, "activityfail.details", details)
		}
	}
	var panicErr *temporal.PanicError
	if err := workflow.ExecuteActivity(once, panickingActivity, mk(run, "activitypanic.input")).Get(ctx, nil); errors.As(err, &panicErr) {
		see(run, "activitypanic.panic", panicErr.Error())
		if strings.Contains(panicErr.StackTrace(), stackProbeName) {
			see(run, "activitypanic.stack", stackProbeName)
		}
	}

	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	fctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "-failing",
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
	if err := workflow.ExecuteChildWorkflow(fctx, failingWF, mk(run, "childfail.input")).Get(ctx, nil); errors.As(err, &appErr) {
		see(run, "childfail.error", appErr.Message())
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "-continuing"})
	var child string
	if err := workflow.ExecuteChildWorkflow(cctx, continueWF, mk(run, "can.input"), 0).Get(ctx, &child); err != nil {
		return "", err
	}
	see(run, "can.result", child)

	var side string
	if err := workflow.SideEffect(ctx, func(workflow.Context) any { return mk(run, "sideeffect.value") }).Get(&side); err != nil {
		return "", err
	}
	see(run, "sideeffect.value", side)

	// A child with a static summary and details, signalled by this workflow (SignalExternalWorkflowExecution).
	ectx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: id + "-echo",
		StaticSummary: mk(run, "child.summary"), StaticDetails: mk(run, "child.details")})
	echo := workflow.ExecuteChildWorkflow(ectx, echoWF, mk(run, "echochild.input"))
	if err := echo.SignalChildWorkflow(ctx, "sig", mk(run, "childsignal.arg")).Get(ctx, nil); err != nil {
		return "", err
	}
	if err := echo.Get(ctx, &child); err != nil {
		return "", err
	}
	see(run, "echochild.result", child)

	var sig string
	workflow.GetSignalChannel(ctx, "sig").Receive(ctx, &sig)
	see(run, "signal.arg", sig)
	return answer(in), nil
}

func failingChild(ctx workflow.Context, in string) error {
	see(runOf(in), "childfail.input", in)
	return temporal.NewApplicationError(derive(in, "error"), "BlindtestChild")
}

// continuingChild continues as new once, with an input derived from its first one.
func continuingChild(ctx workflow.Context, in string, iteration int) (string, error) {
	if iteration == 0 {
		see(runOf(in), "can.input", in)
		return "", workflow.NewContinueAsNewError(ctx, continueWF, derive(in, "continued"), 1)
	}
	see(runOf(in), "can.continued", in)
	return answer(in), nil
}

// panicked remembers which panicky workflows already panicked: the first workflow task panics, its retry completes.
var panicked sync.Map

// panickyWorkflow panics in its first workflow task with a marker, so the failure (message and stack trace) goes to
// the backend in RespondWorkflowTaskFailed; the retried task returns answer(in).
func panickyWorkflow(ctx workflow.Context, in string) (string, error) {
	if _, done := panicked.LoadOrStore(workflow.GetInfo(ctx).WorkflowExecution.RunID, true); !done {
		panic(derive(in, "panic"))
	}
	see(runOf(in), "wfpanic.input", in)
	return answer(in), nil
}

// echoWorkflow reports its input and a "sig" signal under their own fields and returns answer(input).
func echoWorkflow(ctx workflow.Context, in string) (string, error) {
	field, run, _ := parseMarker(in)
	see(run, field, in)
	var sig string
	workflow.GetSignalChannel(ctx, "sig").Receive(ctx, &sig)
	sf, _, _ := parseMarker(sig)
	see(run, sf, sig)
	return answer(in), nil
}

// waitWorkflow reports the "sig" signal it receives under its workflow id and returns it. The forgery tests signal
// it from the hostile backend: whatever it reports is a value the workflow code saw.
func waitWorkflow(ctx workflow.Context, _ string) (string, error) {
	var sig string
	workflow.GetSignalChannel(ctx, "sig").Receive(ctx, &sig)
	see(workflow.GetInfo(ctx).WorkflowExecution.ID, "signal", sig)
	return sig, nil
}

// quickWorkflow returns its input at once: the "other workflows are unaffected" probe.
func quickWorkflow(_ workflow.Context, in string) (string, error) { return in, nil }

// heartbeatActivity heartbeats derive(in, "heartbeat") and fails on its first attempt; the second reads the
// heartbeat back and returns answer(in).
func heartbeatActivity(ctx context.Context, in string) (string, error) {
	run := runOf(in)
	h, _ := ctx.Value(headerKey{}).(string)
	see(run, "header@activity", h)
	see(run, "activity.input", in)
	if activity.GetInfo(ctx).Attempt == 1 {
		activity.RecordHeartbeat(ctx, derive(in, "heartbeat"))
		return "", temporal.NewApplicationError("first attempt fails", "Retry")
	}
	if activity.HasHeartbeatDetails(ctx) {
		var hb string
		if err := activity.GetHeartbeatDetails(ctx, &hb); err == nil {
			see(run, "activity.heartbeat", hb)
		}
	}
	return answer(in), nil
}

// localActivity runs as a local activity: its input and result travel in a marker recorded by a command.
func localActivity(_ context.Context, in string) (string, error) {
	see(runOf(in), "localactivity.input", in)
	return answer(in), nil
}

func failingActivity(_ context.Context, in string) error {
	see(runOf(in), "activityfail.input", in)
	return temporal.NewApplicationError(derive(in, "error"), "BlindtestActivity", derive(in, "details"))
}

func panickingActivity(_ context.Context, in string) error {
	see(runOf(in), "activitypanic.input", in)
	bfStackProbe(derive(in, "panic"))
	return nil
}

// bfStackProbe is not the activity itself, whose name is stored in plaintext as the activity type.
//
//go:noinline
func bfStackProbe(msg string) {
	panic(msg)
}
