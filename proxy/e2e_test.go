//go:build !nodevstack

package proxy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/devstack"
	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
	"github.com/blindfold-dev/blindfold/keys"
)

func TestMain(m *testing.M) { devstacktest.Main(m) }

// stackProbeName is the name of a function that panics in an activity: it shows up in the failure's stack trace, so
// finding it in storage means the stack trace was stored in plaintext.
const stackProbeName = "bfStackProbe"

// e2eInput carries the marker prefix every value of the scenario is built from, so one workflow serves both the
// proxied run and the control run.
type e2eInput struct {
	Prefix string
}

type headerKey struct{}

// headerPropagator carries a value from the client's context into workflow and activity headers.
type headerPropagator struct{}

const headerField = "bf-propagated"

// injectHeader writes v (a context's headerKey value, if it is a string) into the header.
func injectHeader(v any, w workflow.HeaderWriter) error {
	if v, ok := v.(string); ok {
		p, err := converterPayload(v)
		if err != nil {
			return err
		}
		w.Set(headerField, p)
	}
	return nil
}

// extractHeader returns ctx with the header's value set by with, or ctx itself when there is none.
func extractHeader[C any](ctx C, r workflow.HeaderReader, with func(C, string) C) (C, error) {
	p, ok := r.Get(headerField)
	if !ok {
		return ctx, nil
	}
	var v string
	if err := fromPayload(p, &v); err != nil {
		var none C
		return none, err
	}
	return with(ctx, v), nil
}

func (headerPropagator) Inject(ctx context.Context, w workflow.HeaderWriter) error {
	return injectHeader(ctx.Value(headerKey{}), w)
}

func (headerPropagator) Extract(ctx context.Context, r workflow.HeaderReader) (context.Context, error) {
	return extractHeader(ctx, r, func(ctx context.Context, v string) context.Context { return context.WithValue(ctx, headerKey{}, v) })
}

func (headerPropagator) InjectFromWorkflow(ctx workflow.Context, w workflow.HeaderWriter) error {
	return injectHeader(ctx.Value(headerKey{}), w)
}

func (headerPropagator) ExtractToWorkflow(ctx workflow.Context, r workflow.HeaderReader) (workflow.Context, error) {
	return extractHeader(ctx, r, func(ctx workflow.Context, v string) workflow.Context { return workflow.WithValue(ctx, headerKey{}, v) })
}

func e2eWorkflow(ctx workflow.Context, in e2eInput) ([]string, error) {
	var out []string
	add := func(s string) { out = append(out, s) }
	header, _ := ctx.Value(headerKey{}).(string)
	add("header:" + header)

	if err := workflow.SetQueryHandler(ctx, "state", func() (string, error) { return in.Prefix + "-query-result", nil }); err != nil {
		return nil, err
	}
	if err := workflow.SetUpdateHandler(ctx, "upd", func(ctx workflow.Context, arg string) (string, error) {
		return arg + "-update-result", nil
	}); err != nil {
		return nil, err
	}
	var sig string
	workflow.GetSignalChannel(ctx, "sig").Receive(ctx, &sig)
	add("signal:" + sig)

	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 50 * time.Millisecond, MaximumAttempts: 2},
	})
	var res string
	if err := workflow.ExecuteActivity(actx, flakyActivity, in.Prefix+"-activity-input").Get(ctx, &res); err != nil {
		return nil, err
	}
	add("activity:" + res)

	once := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	err := workflow.ExecuteActivity(once, failingActivity, in.Prefix).Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return nil, errors.New("failing activity did not fail with an application error")
	}
	var details string
	if err := appErr.Details(&details); err != nil {
		return nil, err
	}
	add("failure:" + appErr.Message() + "|" + details)

	err = workflow.ExecuteActivity(once, panickingActivity, in.Prefix).Get(ctx, nil)
	var panicErr *temporal.PanicError
	if !errors.As(err, &panicErr) {
		return nil, errors.New("panicking activity did not fail with a panic error")
	}
	add("panic:" + panicErr.Error() + "|stack-has-probe=" + boolString(strings.Contains(panicErr.StackTrace(), stackProbeName)))

	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-child"})
	var child string
	if err := workflow.ExecuteChildWorkflow(cctx, e2eChildWorkflow, in.Prefix+"-child-input", 0).Get(ctx, &child); err != nil {
		return nil, err
	}
	add("child:" + child)
	return out, nil
}

func e2eChildWorkflow(ctx workflow.Context, in string, iteration int) (string, error) {
	if iteration == 0 {
		return "", workflow.NewContinueAsNewError(ctx, e2eChildWorkflow, in+"-continued", 1)
	}
	return in + "-child-result", nil
}

func flakyActivity(ctx context.Context, in string) (string, error) {
	info := activity.GetInfo(ctx)
	if info.Attempt == 1 {
		activity.RecordHeartbeat(ctx, in+"-heartbeat")
		return "", temporal.NewApplicationError("first attempt fails", "Retry")
	}
	var hb string
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &hb); err != nil {
			return "", err
		}
	}
	header, _ := ctx.Value(headerKey{}).(string)
	return in + "|hb=" + hb + "|header=" + header, nil
}

func failingActivity(_ context.Context, prefix string) error {
	return temporal.NewApplicationError(prefix+"-activity-error", "BlindfoldTestError", prefix+"-error-details")
}

func panickingActivity(_ context.Context, prefix string) error {
	bfStackProbe(prefix)
	return nil
}

// bfStackProbe is not the activity itself, whose name is stored in plaintext as the activity type.
//
//go:noinline
func bfStackProbe(prefix string) {
	panic(prefix + "-panic")
}

func boolString(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// e2eRun runs the scenario against hostPort and checks everything the SDK sees. It returns the workflow id.
func e2eRun(t *testing.T, hostPort, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(client.Options{
		HostPort:           hostPort,
		Namespace:          "default",
		ContextPropagators: []workflow.ContextPropagator{headerPropagator{}},
		Logger:             testenv.DiscardSDKLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Ids and task queues are stored in plaintext by design, so they must not contain the marker.
	taskQueue := "e2e-" + time.Now().Format("150405.000000000")
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(e2eWorkflow)
	w.RegisterWorkflow(e2eChildWorkflow)
	w.RegisterActivity(flakyActivity)
	w.RegisterActivity(failingActivity)
	w.RegisterActivity(panickingActivity)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	id := taskQueue + "-wf"
	run, err := c.ExecuteWorkflow(context.WithValue(ctx, headerKey{}, prefix+"-header"), client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue, Memo: map[string]any{"note": prefix + "-memo"},
	}, e2eWorkflow, e2eInput{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}

	// Query and update wait until the first workflow task ran and registered the handlers.
	var state string
	for {
		v, err := c.QueryWorkflow(ctx, id, "", "state")
		if err == nil {
			if err := v.Get(&state); err != nil {
				t.Fatal(err)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("query: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if state != prefix+"-query-result" {
		t.Fatalf("query result %q", state)
	}
	uh, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: "upd", Args: []any{prefix + "-update-arg"}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatal(err)
	}
	var upd string
	if err := uh.Get(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if upd != prefix+"-update-arg-update-result" {
		t.Fatalf("update result %q", upd)
	}
	if err := c.SignalWorkflow(ctx, id, "", "sig", prefix+"-signal"); err != nil {
		t.Fatal(err)
	}
	var result []string
	if err := run.Get(ctx, &result); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"header:" + prefix + "-header",
		"signal:" + prefix + "-signal",
		"activity:" + prefix + "-activity-input|hb=" + prefix + "-activity-input-heartbeat|header=" + prefix + "-header",
		"failure:" + prefix + "-activity-error|" + prefix + "-error-details",
		"panic:" + prefix + "-panic|stack-has-probe=yes",
		"child:" + prefix + "-child-input-continued-child-result",
	}
	if strings.Join(result, "\n") != strings.Join(want, "\n") {
		t.Fatalf("workflow result:\n%s\nwant:\n%s", strings.Join(result, "\n"), strings.Join(want, "\n"))
	}

	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	var memo string
	if err := fromPayload(desc.GetWorkflowExecutionInfo().GetMemo().GetFields()["note"], &memo); err != nil || memo != prefix+"-memo" {
		t.Fatalf("memo %q (%v)", memo, err)
	}

	sh, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:     id + "-schedule",
		Spec:   client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
		Paused: true,
		Action: &client.ScheduleWorkflowAction{ID: id + "-scheduled", Workflow: e2eChildWorkflow, Args: []any{prefix + "-schedule-arg", 1}, TaskQueue: taskQueue},
	})
	if err != nil {
		t.Fatal(err)
	}
	sd, err := sh.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := sd.Schedule.Action.(*client.ScheduleWorkflowAction).Args
	if len(args) != 2 {
		t.Fatalf("schedule args %v", args)
	}
	var arg string
	if p, ok := args[0].(*commonpb.Payload); !ok || fromPayload(p, &arg) != nil || arg != prefix+"-schedule-arg" {
		t.Fatalf("schedule arg %v", args[0])
	}
	return id
}

// historyOf fetches a workflow's whole history and description directly from addr (no proxy), as raw protos.
func storedViews(t *testing.T, addr, id string) []proto.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: "default",
		Logger: testenv.DiscardSDKLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svc := c.WorkflowService()
	var out []proto.Message
	for _, wid := range []string{id, id + "-child"} {
		var token []byte
		for {
			resp, err := svc.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
				Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: wid}, NextPageToken: token,
			})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp)
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
	}
	desc, err := svc.DescribeWorkflowExecution(ctx, &workflowservice.DescribeWorkflowExecutionRequest{
		Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: id}})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := svc.DescribeSchedule(ctx, &workflowservice.DescribeScheduleRequest{Namespace: "default", ScheduleId: id + "-schedule"})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, desc, sched)
}

func dbContains(t *testing.T, s *devstack.Stack, needles ...string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	for _, f := range s.SQLiteFiles() {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = true
			}
		}
	}
	return found
}

// TestEndToEnd runs a workflow scenario through the proxy with the real SDK against the embedded server: start with
// memo and a propagated header, query, update, signal, an activity that heartbeats and fails once, an activity that
// fails, one that panics, a child that continues as new, and a schedule. The SDK sees every value; a direct client
// sees no marker in the history, description or schedule, and neither does a byte scan of the SQLite files. A control
// run without the proxy then finds its markers in both, proving the checks can see plaintext.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	stack := devstacktest.Shared(t)
	km, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := startE2EProxy(t, stack.FrontendAddr(), km)

	const prefix = markerPrefix + "e2e"
	id := e2eRun(t, proxyAddr, prefix)
	for _, m := range storedViews(t, stack.FrontendAddr(), id) {
		if containsMarker(m) {
			t.Errorf("direct read of %T shows plaintext", m)
		}
	}
	views := storedViews(t, stack.FrontendAddr(), id)
	sawEncodedFailure := false
	for _, v := range views {
		if r, ok := v.(*workflowservice.GetWorkflowExecutionHistoryResponse); ok {
			for _, e := range r.GetHistory().GetEvents() {
				if e.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED {
					f := e.GetActivityTaskFailedEventAttributes().GetFailure()
					sawEncodedFailure = f.GetMessage() == "Encoded failure" && f.GetStackTrace() == ""
				}
			}
		}
	}
	if !sawEncodedFailure {
		t.Error("stored activity failure is not in the encoded-attributes form")
	}
	if found := dbContains(t, stack, prefix, stackProbeName); len(found) > 0 {
		t.Fatalf("SQLite files contain plaintext: %v", found)
	}

	// A proxy with other keys cannot read this history: the error names the key, and the proxy keeps serving.
	other, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sealedWith, _ := km.SealingKey(context.Background(), codec.Target{Namespace: "default"})
	st := historyStatus(t, startE2EProxy(t, stack.FrontendAddr(), other), id)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), sealedWith.ID) || !strings.Contains(st.Message(), "unknown key") {
		t.Errorf("history through a proxy without the key: %v", st)
	}
	// After crypto-shredding the namespace's scope, the same holds for the original proxy.
	if err := km.Shred(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	st = historyStatus(t, proxyAddr, id)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), sealedWith.ID) || !strings.Contains(st.Message(), "destroyed") {
		t.Errorf("history after shredding: %v", st)
	}
	if strings.Contains(st.Message(), prefix) {
		t.Error("error message leaks payload text")
	}

	// Control: the same scenario straight to the frontend stores its markers in plaintext, and the checks see them.
	const control = "BFCTRLe2e"
	cid := e2eRun(t, stack.FrontendAddr(), control)
	seen := false
	for _, m := range storedViews(t, stack.FrontendAddr(), cid) {
		b, _ := proto.Marshal(m)
		seen = seen || bytes.Contains(b, []byte(control))
	}
	if !seen {
		t.Error("control run: direct read shows no marker; the check is blind")
	}
	if found := dbContains(t, stack, control, stackProbeName); !found[control] || !found[stackProbeName] {
		t.Errorf("control run: SQLite scan found %v; the scan is blind", found)
	}
}

func fromPayload(p *commonpb.Payload, v any) error {
	return converter.GetDefaultDataConverter().FromPayload(p, v)
}

// startE2EProxy runs a proxy with the keys of km in front of upstream until the test ends, and returns its address.
func startE2EProxy(t testing.TB, upstream string, km *keys.Manager) string {
	t.Helper()
	c, err := codec.New(km)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Upstream: upstream, Codec: c, Logger: testenv.DiscardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return testenv.ServeUntilCleanup(t, srv, t.Errorf)
}

// historyStatus reads a workflow's history through the proxy at addr with a raw client and returns the call's status.
func historyStatus(t *testing.T, addr, id string) *status.Status {
	t.Helper()
	conn := testenv.DialInsecure(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := workflowservice.NewWorkflowServiceClient(conn).GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
		Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: id},
	})
	return status.Convert(err)
}
