package blindtest

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/internal/devstack/devstacktest"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// workerFields are the fields whose markers workflow or activity code must receive exactly (reported to seen).
var workerFields = []string{
	"wf.input", "query.arg", "queryfail.arg", "update.arg", "updfail.arg",
	"localactivity.input", "localactivity.result", "activity.input", "activity.heartbeat", "activity.result",
	"activityfail.input", "activityfail.error", "activityfail.details", "activitypanic.input", "activitypanic.panic",
	"childfail.input", "childfail.error", "can.input", "can.continued", "can.result",
	"sideeffect.value", "echochild.input", "childsignal.arg", "echochild.result",
	"signal.arg", "wfpanic.input", "sws.input", "sws.signal", "terminate.input", "cancel.input",
}

// clientFields are the fields whose markers the client must read back exactly (returned by runScenario).
var clientFields = []string{
	"wf.result", "memo", "memo.upserted", "static.summary", "static.details", "child.summary", "child.details", "current.details",
	"query.result", "queryfail.error", "querypanic.panic", "update.result", "updfail.error", "updfail.details",
	"activity.summary", "timer.summary", "wfpanic.result", "wfpanic.panic", "sws.result",
	"terminate.reason", "terminate.details", "cancel.reason", "reset.reason",
	"schedule.arg", "schedule.memo", "schedule.note", "schedule.pausenote",
}

// notSent are fields that stay in the worker: a local activity's input is never recorded, only its result.
var notSent = []string{"localactivity.input"}

// sentFields are all the fields whose markers leave the SDK for the backend: a control run without the proxy must
// find each of them in the recorded request frames.
func sentFields() []string {
	out := append(append([]string{"header"}, workerFields...), clientFields...)
	out = slices.DeleteFunc(out, func(f string) bool { return slices.Contains(notSent, f) })
	sort.Strings(out)
	return slices.Compact(out)
}

// TestBackendSeesNoMarker runs the scenario through the gateway, with the recording relay as its upstream. The
// client and the workers read every marker back exactly; no marker, and not the stack probe's name, occurs in any
// request frame the backend received, in the proxy's log (debug level) or in the server's log.
func TestBackendSeesNoMarker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := newMarkers()
	got := runScenario(t, dialSDK(t, e.gw.Addr(), nil), uniqueName("blind"), m)
	checkReadBack(t, m, got)

	leaks := e.relay.leaks(m)
	for _, field := range sortedKeys(leaks) {
		t.Errorf("the marker of %s reached the backend in plaintext, in %v", field, leaks[field])
	}
	if e.relay.contains(stackProbeName) {
		t.Errorf("a stack trace reached the backend in plaintext (%s in a request frame)", stackProbeName)
	}
	if len(e.relay.requests()) == 0 {
		t.Fatal("the relay recorded no request: the gateway does not go through it")
	}
	if f := m.find([]byte(e.proxyLog.String())); len(f) > 0 {
		t.Errorf("the proxy's log shows the markers of %v", f)
	}
	if f := m.find([]byte(serverLog.String())); len(f) > 0 {
		t.Errorf("the server's log shows the markers of %v", f)
	}
}

// TestControlRunShowsMarkers runs the same scenario straight to the frontend through a recording relay, no proxy: the
// frames must show the marker of every field the scenario sends, and the stack probe, or TestBackendSeesNoMarker
// proves nothing for that field.
func TestControlRunShowsMarkers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the embedded Temporal server")
	}
	r := startRelay(t, devstacktest.Shared(t).FrontendAddr())
	m := newMarkers()
	got := runScenario(t, dialSDK(t, r.FrontendAddr(), nil), uniqueName("control"), m)
	checkReadBack(t, m, got)

	leaks := r.leaks(m)
	for _, field := range sentFields() {
		if _, ok := leaks[field]; !ok {
			t.Errorf("control run: the marker of %s is in no request frame; the scan is blind for it", field)
		}
	}
	if !r.contains(stackProbeName) {
		t.Errorf("control run: no request frame holds the stack probe %s; the scan is blind for stack traces", stackProbeName)
	}
	// Informational: what the server logs of plaintext it was given (at debug level).
	t.Logf("control run: the server's log shows the markers of %v", m.find([]byte(serverLog.String())))
}

// checkReadBack compares what the workers saw (seen) and what the client read back (got) with the markers sent.
func checkReadBack(t *testing.T, m markers, got map[string]string) {
	t.Helper()
	for _, f := range workerFields {
		if v, _ := seenValue(m.run, f); v != m.of(f) {
			t.Errorf("worker read %s as %q, want %q", f, v, m.of(f))
		}
	}
	for _, where := range []string{"header@workflow", "header@activity"} {
		if v, _ := seenValue(m.run, where); v != m.of("header") {
			t.Errorf("worker read the propagated header (%s) as %q, want %q", where, v, m.of("header"))
		}
	}
	if v, _ := seenValue(m.run, "activitypanic.stack"); v != stackProbeName {
		t.Errorf("the activity panic's stack trace read back lacks %s", stackProbeName)
	}
	for _, f := range clientFields {
		if got[f] != m.of(f) {
			t.Errorf("client read %s as %q, want %q", f, got[f], m.of(f))
		}
	}
}

// runScenario runs, with c and a worker of its own on taskQueue, everything that carries user data: start with
// input, memo, header and static summary and details; queries, updates and signal, answering and failing; the main
// workflow's memo upsert, local activity, timer, activities and children (see mainWorkflow); a workflow task panic;
// signal-with-start; terminate with reason and details; cancel with a reason; reset with a reason; a schedule with
// args, memo and note, paused again with another note. It returns what the client read back, by field; what the
// workers saw is in seen.
func runScenario(t *testing.T, c client.Client, taskQueue string, m markers) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	w := worker.New(c, taskQueue, worker.Options{})
	register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	got := map[string]string{}
	// contains records marker(field) when s holds it: for texts the SDK or the server wraps (panics, query errors).
	contains := func(field, s string) {
		got[field] = s
		if strings.Contains(s, m.of(field)) {
			got[field] = m.of(field)
		}
	}
	hctx := context.WithValue(ctx, headerKey{}, m.of("header"))
	svc := c.WorkflowService()

	// The main workflow, its queries, updates and signal.
	id := taskQueue + "-main"
	run, err := c.ExecuteWorkflow(hctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue, Memo: map[string]any{"note": m.of("memo")},
		StaticSummary: m.of("static.summary"), StaticDetails: m.of("static.details"),
	}, mainWF, m.of("wf.input"))
	if err != nil {
		t.Fatal(err)
	}
	// The handlers exist once the first workflow task ran; until then the query fails.
	var state string
	testenv.WaitFor(t, 20*time.Second, "query state", func() bool {
		v, err := c.QueryWorkflow(ctx, id, "", "state", m.of("query.arg"))
		return err == nil && v.Get(&state) == nil
	})
	got["query.result"] = state
	if _, err := c.QueryWorkflow(ctx, id, "", "fail", m.of("queryfail.arg")); err != nil {
		contains("queryfail.error", err.Error())
	}
	if _, err := c.QueryWorkflow(ctx, id, "", "panic"); err != nil {
		contains("querypanic.panic", err.Error())
	}
	if v, err := c.QueryWorkflow(ctx, id, "", "__temporal_workflow_metadata"); err != nil {
		t.Errorf("metadata query: %v", err)
	} else {
		var md sdkpb.WorkflowMetadata
		if err := v.Get(&md); err != nil {
			t.Errorf("metadata query result: %v", err)
		}
		got["current.details"] = md.GetCurrentDetails()
	}
	if err := update(ctx, c, id, "upd", m.of("update.arg"), &state); err != nil {
		t.Errorf("update: %v", err)
	}
	got["update.result"] = state
	var appErr *temporal.ApplicationError
	if err := update(ctx, c, id, "updfail", m.of("updfail.arg"), nil); errors.As(err, &appErr) {
		got["updfail.error"] = appErr.Message()
		var details string
		_ = appErr.Details(&details)
		got["updfail.details"] = details
	} else {
		t.Errorf("failing update: %v, want an application error", err)
	}
	if err := c.SignalWorkflow(ctx, id, "", "sig", m.of("signal.arg")); err != nil {
		t.Fatal(err)
	}
	var result string
	if err := run.Get(ctx, &result); err != nil {
		t.Fatalf("main workflow: %v", err)
	}
	got["wf.result"] = result

	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	got["memo"] = decodeString(desc.GetWorkflowExecutionInfo().GetMemo().GetFields()["note"])
	got["memo.upserted"] = decodeString(desc.GetWorkflowExecutionInfo().GetMemo().GetFields()["upserted"])
	um := desc.GetExecutionConfig().GetUserMetadata()
	got["static.summary"], got["static.details"] = decodeString(um.GetSummary()), decodeString(um.GetDetails())
	if cd, err := c.DescribeWorkflowExecution(ctx, id+"-echo", ""); err != nil {
		t.Errorf("describe the echo child: %v", err)
	} else {
		um := cd.GetExecutionConfig().GetUserMetadata()
		got["child.summary"], got["child.details"] = decodeString(um.GetSummary()), decodeString(um.GetDetails())
	}
	events, err := history(ctx, svc, id, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if s := ev.GetUserMetadata().GetSummary(); s != nil {
				got["activity.summary"] = decodeString(s)
			}
		case enumspb.EVENT_TYPE_TIMER_STARTED:
			got["timer.summary"] = decodeString(ev.GetUserMetadata().GetSummary())
		}
	}

	// A workflow task that panics: its failure goes to the backend in RespondWorkflowTaskFailed.
	prun, err := c.ExecuteWorkflow(hctx, client.StartWorkflowOptions{ID: taskQueue + "-panicky", TaskQueue: taskQueue},
		panickyWF, m.of("wfpanic.input"))
	if err != nil {
		t.Fatal(err)
	}
	if err := prun.Get(ctx, &result); err != nil {
		t.Errorf("panicky workflow: %v", err)
	}
	got["wfpanic.result"] = result
	if events, err := history(ctx, svc, prun.GetID(), prun.GetRunID()); err != nil {
		t.Errorf("panicky workflow history: %v", err)
	} else {
		for _, ev := range events {
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
				contains("wfpanic.panic", a.GetFailure().GetMessage())
			}
		}
	}

	// Signal-with-start, then a reset of that workflow with a reason.
	srun, err := c.SignalWithStartWorkflow(hctx, taskQueue+"-sws", "sig", m.of("sws.signal"),
		client.StartWorkflowOptions{TaskQueue: taskQueue}, echoWF, m.of("sws.input"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srun.Get(ctx, &result); err != nil {
		t.Errorf("signal-with-start workflow: %v", err)
	}
	got["sws.result"] = result
	got["reset.reason"] = resetWithReason(t, ctx, c, srun.GetID(), srun.GetRunID(), m.of("reset.reason"))

	// Terminate with reason and details; cancel with a reason.
	trun, err := c.ExecuteWorkflow(hctx, client.StartWorkflowOptions{ID: taskQueue + "-terminate", TaskQueue: taskQueue},
		echoWF, m.of("terminate.input"))
	if err != nil {
		t.Fatal(err)
	}
	waitSeen(t, m.run, "terminate.input")
	if err := c.TerminateWorkflow(ctx, trun.GetID(), "", m.of("terminate.reason"), m.of("terminate.details")); err != nil {
		t.Fatal(err)
	}
	crun, err := c.ExecuteWorkflow(hctx, client.StartWorkflowOptions{ID: taskQueue + "-cancel", TaskQueue: taskQueue},
		echoWF, m.of("cancel.input"))
	if err != nil {
		t.Fatal(err)
	}
	waitSeen(t, m.run, "cancel.input")
	if err := c.CancelWorkflowWithOptions(ctx, client.CancelWorkflowOptions{WorkflowID: crun.GetID(), Reason: m.of("cancel.reason")}); err != nil {
		t.Fatal(err)
	}
	if events, err := history(ctx, svc, trun.GetID(), trun.GetRunID()); err != nil {
		t.Errorf("terminated workflow history: %v", err)
	} else {
		for _, ev := range events {
			if a := ev.GetWorkflowExecutionTerminatedEventAttributes(); a != nil {
				got["terminate.reason"] = a.GetReason()
				if ps := a.GetDetails().GetPayloads(); len(ps) == 1 {
					got["terminate.details"] = decodeString(ps[0])
				}
			}
		}
	}
	if events, err := history(ctx, svc, crun.GetID(), crun.GetRunID()); err != nil {
		t.Errorf("cancelled workflow history: %v", err)
	} else {
		for _, ev := range events {
			if a := ev.GetWorkflowExecutionCancelRequestedEventAttributes(); a != nil {
				got["cancel.reason"] = a.GetCause()
			}
		}
	}

	// A schedule with action args, memo and note; it stays paused and is deleted at the end.
	sh, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:     taskQueue + "-schedule",
		Spec:   client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
		Paused: true, Note: m.of("schedule.note"), Memo: map[string]any{"note": m.of("schedule.memo")},
		Action: &client.ScheduleWorkflowAction{ID: taskQueue + "-scheduled", Workflow: echoWF,
			Args: []any{m.of("schedule.arg")}, TaskQueue: taskQueue},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Delete(context.WithoutCancel(ctx)) }()
	sd, err := sh.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sd.Schedule.State != nil {
		got["schedule.note"] = sd.Schedule.State.Note
	}
	got["schedule.memo"] = decodeString(sd.Memo.GetFields()["note"])
	if a, ok := sd.Schedule.Action.(*client.ScheduleWorkflowAction); ok && len(a.Args) == 1 {
		if p, ok := a.Args[0].(*commonpb.Payload); ok {
			got["schedule.arg"] = decodeString(p)
		}
	}
	if err := sh.Pause(ctx, client.SchedulePauseOptions{Note: m.of("schedule.pausenote")}); err != nil {
		t.Fatal(err)
	}
	if sd, err = sh.Describe(ctx); err != nil {
		t.Fatal(err)
	}
	if sd.Schedule.State != nil {
		got["schedule.pausenote"] = sd.Schedule.State.Note
	}
	return got
}

// update runs an update to completion and decodes its result into out (nil: none).
func update(ctx context.Context, c client.Client, id, name, arg string, out any) error {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, out)
}

// waitSeen waits until a worker reported field of run: the workflow's first task ran.
func waitSeen(t *testing.T, run, field string) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "worker sees "+field, func() bool {
		_, ok := seenValue(run, field)
		return ok
	})
}

// resetWithReason resets a closed run to its first completed workflow task with reason and returns the reason as
// the new run's history (read with c) shows it, or what it shows instead.
func resetWithReason(t *testing.T, ctx context.Context, c client.Client, id, runID, reason string) string {
	t.Helper()
	events, err := history(ctx, c.WorkflowService(), id, runID)
	if err != nil {
		t.Errorf("history before reset: %v", err)
		return ""
	}
	var finish int64
	for _, ev := range events {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			finish = ev.GetEventId()
			break
		}
	}
	resp, err := c.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace: namespace, WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: runID},
		Reason: reason, WorkflowTaskFinishEventId: finish, RequestId: uniqueName("reset"),
	})
	if err != nil {
		t.Errorf("reset: %v", err)
		return ""
	}
	events, err = history(ctx, c.WorkflowService(), id, resp.GetRunId())
	if err != nil {
		t.Errorf("history after reset: %v", err)
		return ""
	}
	for _, ev := range events {
		if b, _ := proto.Marshal(ev); strings.Contains(string(b), reason) {
			return reason
		}
	}
	return "<not in the new run's history>"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
