package proxy

import (
	"strings"
	"testing"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	querypb "go.temporal.io/api/query/v1"
	schedulepb "go.temporal.io/api/schedule/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	tokenspb "go.temporal.io/server/api/token/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
)

func TestSiteAccepts(t *testing.T) {
	t.Parallel()
	wf := func(id string) codec.Binding { return codec.Workflow(id) }
	batch := codec.Binding{Kind: codec.BindBatch, ID: "job"}
	sched := codec.Binding{Kind: codec.BindScheduledWorkflow, ID: "nightly"}
	query := codec.Binding{Kind: codec.BindQuery}
	nexusResult := codec.Binding{Kind: codec.BindNexus}
	nexusInput := codec.Binding{Kind: codec.BindNexus, ID: "svc/op"}
	ns := codec.Binding{}
	tests := []struct {
		name string
		site site
		b    codec.Binding
		ok   bool
	}{
		{"own workflow", site{bind: wf("A")}, wf("A"), true},
		{"moved from another workflow", site{bind: wf("B")}, wf("A"), false},
		{"namespace-only (v1) anywhere", site{bind: wf("B")}, ns, true},
		{"batch signal in a signal", site{bind: wf("B"), batch: true}, batch, true},
		{"batch signal elsewhere", site{bind: wf("B")}, batch, false},
		{"scheduled start", site{bind: wf("nightly-2026-12-02T03:00:00Z"), scheduled: true}, sched, true},
		// The SDK plugin re-seals a schedule's action for its scheduled workflows: a workflow's own value never opens there.
		{"a workflow's value in its namesake's scheduled start", site{bind: wf("nightly-2026-12-02T03:00:00Z"), scheduled: true}, wf("nightly"), false},
		{"scheduled value in a workflow not started by it", site{bind: wf("nightly-other"), scheduled: true}, sched, false},
		{"scheduled value outside a started event", site{bind: wf("nightly-2026-12-02T03:00:00Z")}, sched, false},
		{"schedule description", site{bind: sched}, sched, true},
		{"a workflow's value in a schedule description", site{bind: sched}, wf("nightly"), false},
		{"another schedule's action", site{bind: sched}, codec.Binding{Kind: codec.BindScheduledWorkflow, ID: "hourly"}, false},
		{"legacy query answer", site{bind: wf("A"), query: true}, query, true},
		{"query answer in a history", site{bind: wf("A")}, query, false},
		{"Nexus result", site{bind: wf("A"), nexus: true}, nexusResult, true},
		{"Nexus workflow result", site{bind: wf("A"), nexus: true}, wf("handler"), true},
		{"Nexus result an SDK sealed for its operation", site{bind: wf("A"), nexus: true}, nexusInput, true},
		{"Nexus result elsewhere", site{bind: wf("A")}, nexusResult, false},
		{"SDK-sealed legacy query answer", site{bind: query, anyWorkflow: true}, wf("A"), true},
		{"batch value as a query answer", site{bind: query, anyWorkflow: true}, batch, false},
		{"Nexus input", site{bind: nexusInput}, nexusInput, true},
		{"Nexus input of another operation", site{bind: nexusInput}, codec.Binding{Kind: codec.BindNexus, ID: "svc/other"}, false},
		{"no rule known", site{}, wf("A"), false},
		{"unchecked", site{unchecked: true}, wf("A"), true},
	}
	for _, tt := range tests {
		err := tt.site.accepts(tt.b)
		if (err == nil) != tt.ok {
			t.Errorf("%s: accepts(%v) = %v, want ok %v", tt.name, tt.b, err, tt.ok)
		}
		if err != nil && tt.site.bind.Kind == codec.BindWorkflow && tt.b.Kind == codec.BindWorkflow {
			// The refusal names both workflows.
			if !strings.Contains(err.Error(), tt.site.bind.ID) || !strings.Contains(err.Error(), tt.b.ID) {
				t.Errorf("%s: error %q does not name both workflows", tt.name, err)
			}
		}
	}
}

func TestTokenBinding(t *testing.T) {
	t.Parallel()
	if b, err := tokenBinding(testToken(t, "wf-1")); err != nil || b != codec.Workflow("wf-1") {
		t.Errorf("workflow token: %v, %v", b, err)
	}
	if b, err := tokenBinding(nil); err != nil || b != (codec.Binding{}) {
		t.Errorf("empty token: %v, %v", b, err)
	}
	for _, tok := range [][]byte{[]byte("\xff\xff not a token"), mustMarshal(t, &tokenspb.Task{NamespaceId: "ns-id"})} {
		if _, err := tokenBinding(tok); err == nil {
			t.Errorf("token %q: no error", tok)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payload(s string) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(s)}
}

func TestOutboundSites(t *testing.T) {
	t.Parallel()
	activityIn, childIn, signalIn, nexusIn, result := payload("a"), payload("c"), payload("s"), payload("n"), payload("r")
	req := &workflowservice.RespondWorkflowTaskCompletedRequest{
		TaskToken: testToken(t, "parent"),
		Commands: []*commandpb.Command{
			{Attributes: &commandpb.Command_ScheduleActivityTaskCommandAttributes{ScheduleActivityTaskCommandAttributes: &commandpb.ScheduleActivityTaskCommandAttributes{
				Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{activityIn}}}}},
			{Attributes: &commandpb.Command_StartChildWorkflowExecutionCommandAttributes{StartChildWorkflowExecutionCommandAttributes: &commandpb.StartChildWorkflowExecutionCommandAttributes{
				Namespace: "other", WorkflowId: "child", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{childIn}}}}},
			{Attributes: &commandpb.Command_SignalExternalWorkflowExecutionCommandAttributes{SignalExternalWorkflowExecutionCommandAttributes: &commandpb.SignalExternalWorkflowExecutionCommandAttributes{
				Execution: &commonpb.WorkflowExecution{WorkflowId: "target"}, Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{signalIn}}}}},
			{Attributes: &commandpb.Command_ScheduleNexusOperationCommandAttributes{ScheduleNexusOperationCommandAttributes: &commandpb.ScheduleNexusOperationCommandAttributes{
				Service: "svc", Operation: "op", Input: nexusIn}}},
			{Attributes: &commandpb.Command_CompleteWorkflowExecutionCommandAttributes{CompleteWorkflowExecutionCommandAttributes: &commandpb.CompleteWorkflowExecutionCommandAttributes{
				Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{result}}}}},
		},
	}
	s, err := outboundSites(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		p    *commonpb.Payload
		want site
	}{
		{activityIn, site{bind: codec.Workflow("parent")}},
		{childIn, site{ns: "other", bind: codec.Workflow("child")}},
		{signalIn, site{bind: codec.Workflow("target")}},
		{nexusIn, site{bind: codec.Binding{Kind: codec.BindNexus, ID: "svc/op"}}},
		{result, site{bind: codec.Workflow("parent")}},
	} {
		if got := s.of(tt.p); got != tt.want {
			t.Errorf("payload %q: site %+v, want %+v", tt.p.Data, got, tt.want)
		}
	}

	// A token that is not the server's is refused rather than sealed for nothing.
	req.TaskToken = []byte("forged")
	if _, err := outboundSites(req); err == nil {
		t.Error("a task token that does not parse was accepted")
	}

	// Requests that name their workflow, schedules, batch jobs, legacy query answers.
	schedIn, schedMemo := payload("si"), payload("sm")
	for _, tt := range []struct {
		req  proto.Message
		p    *commonpb.Payload
		want codec.Binding
	}{
		{&workflowservice.SignalWorkflowExecutionRequest{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "W"}, Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{payload("x")}}}, nil, codec.Workflow("W")},
		{&workflowservice.StartWorkflowExecutionRequest{WorkflowId: "S"}, nil, codec.Workflow("S")},
		{&workflowservice.StartBatchOperationRequest{JobId: "job"}, nil, codec.Binding{Kind: codec.BindBatch, ID: "job"}},
		{&workflowservice.RespondQueryTaskCompletedRequest{TaskToken: []byte("query task")}, nil, codec.Binding{Kind: codec.BindQuery}},
		{&workflowservice.RespondNexusTaskCompletedRequest{TaskToken: []byte("nexus task")}, nil, codec.Binding{Kind: codec.BindNexus}},
		{&workflowservice.CreateScheduleRequest{ScheduleId: "sch", Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": schedMemo}},
			Schedule: &schedulepb.Schedule{Action: &schedulepb.ScheduleAction{Action: &schedulepb.ScheduleAction_StartWorkflow{StartWorkflow: &workflowpb.NewWorkflowExecutionInfo{
				WorkflowId: "nightly", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{schedIn}}}}}}}, schedIn, codec.Binding{Kind: codec.BindScheduledWorkflow, ID: "nightly"}},
	} {
		s, err := outboundSites(tt.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.of(tt.p).bind; got != tt.want {
			t.Errorf("%T: sealed for %v, want %v", tt.req, got, tt.want)
		}
		if r, ok := tt.req.(*workflowservice.CreateScheduleRequest); ok {
			if got := s.of(schedMemo).bind; got != (codec.Binding{Kind: codec.BindSchedule, ID: r.GetScheduleId()}) {
				t.Errorf("schedule memo sealed for %v", got)
			}
		}
	}
}

func TestInboundSites(t *testing.T) {
	t.Parallel()
	started, signaled, childDone, nexusDone, activityIn := payload("st"), payload("sg"), payload("cd"), payload("nd"), payload("ai")
	events := []*historypb.HistoryEvent{
		{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{started}}}}},
		{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{signaled}}}}},
		{EventType: enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED, Attributes: &historypb.HistoryEvent_ChildWorkflowExecutionCompletedEventAttributes{ChildWorkflowExecutionCompletedEventAttributes: &historypb.ChildWorkflowExecutionCompletedEventAttributes{
			Namespace: "other", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "child"}, Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{childDone}}}}},
		{EventType: enumspb.EVENT_TYPE_NEXUS_OPERATION_COMPLETED, Attributes: &historypb.HistoryEvent_NexusOperationCompletedEventAttributes{NexusOperationCompletedEventAttributes: &historypb.NexusOperationCompletedEventAttributes{
			Result: nexusDone}}},
		{EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, Attributes: &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{
			Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{activityIn}}}}},
	}
	poll := &workflowservice.PollWorkflowTaskQueueResponse{TaskToken: testToken(t, "W"), WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "W"}, History: &historypb.History{Events: events}}
	s, err := inboundSites(&workflowservice.PollWorkflowTaskQueueRequest{}, poll)
	if err != nil {
		t.Fatal(err)
	}
	w := codec.Workflow("W")
	for _, tt := range []struct {
		p    *commonpb.Payload
		want site
	}{
		{started, site{bind: w, scheduled: true}},
		{signaled, site{bind: w, batch: true}},
		{childDone, site{ns: "other", bind: codec.Workflow("child")}},
		{nexusDone, site{bind: w, nexus: true, peers: true}},
		{activityIn, site{bind: w}},
	} {
		if got := s.of(tt.p); got != tt.want {
			t.Errorf("payload %q: site %+v, want %+v", tt.p.Data, got, tt.want)
		}
	}

	// A task whose token names another workflow than the task does is the backend mixing workflows: refused whole.
	poll.TaskToken = testToken(t, "other")
	if _, err := inboundSites(&workflowservice.PollWorkflowTaskQueueRequest{}, poll); err == nil {
		t.Error("a task with another workflow's token was accepted")
	}
	// A legacy query task's token is the server's QueryTask, which names no workflow: bound to the task's workflow.
	queryArgs := payload("qa")
	legacy := &workflowservice.PollWorkflowTaskQueueResponse{
		TaskToken:         mustMarshal(t, &tokenspb.QueryTask{NamespaceId: "ns-id", TaskQueue: "tq", TaskId: "q1"}),
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "W"},
		Query:             &querypb.WorkflowQuery{QueryType: "q", QueryArgs: &commonpb.Payloads{Payloads: []*commonpb.Payload{queryArgs}}},
	}
	if q, err := inboundSites(&workflowservice.PollWorkflowTaskQueueRequest{}, legacy); err != nil || q.of(queryArgs).bind != w {
		t.Errorf("legacy query task: %+v, %v", q.of(queryArgs), err)
	}
	act := &workflowservice.PollActivityTaskQueueResponse{TaskToken: testToken(t, "other"), WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "W"}}
	if _, err := inboundSites(&workflowservice.PollActivityTaskQueueRequest{}, act); err == nil {
		t.Error("an activity task with another workflow's token was accepted")
	}

	// A history fetched by id is bound to the requested workflow; a listing to each entry's.
	h, err := inboundSites(&workflowservice.GetWorkflowExecutionHistoryRequest{Execution: &commonpb.WorkflowExecution{WorkflowId: "H"}},
		&workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: events[4:]}})
	if err != nil || h.of(activityIn).bind != codec.Workflow("H") {
		t.Errorf("history: %+v, %v", h.of(activityIn), err)
	}
	memo := payload("memo")
	l, err := inboundSites(&workflowservice.ListWorkflowExecutionsRequest{}, &workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{
		{Execution: &commonpb.WorkflowExecution{WorkflowId: "L"}, Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{"m": memo}}}}})
	if err != nil || l.of(memo).bind != codec.Workflow("L") {
		t.Errorf("listing: %+v, %v", l.of(memo), err)
	}
	if l.of(payload("elsewhere")).bind.Kind != codec.BindNamespace {
		t.Error("a listing's payload outside an entry has a binding")
	}
}

func TestScheduledAs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id, action string
		ok         bool
	}{
		{"nightly-2026-12-02T03:00:00Z", "nightly", true},
		{"nightly-2026-12-02T03:00:00+01:00", "nightly", true},
		{"nightly-x", "nightly", false},
		{"nightly", "nightly", false},
		{"other-2026-12-02T03:00:00Z", "nightly", false},
	} {
		if got := scheduledAs(tt.id, tt.action); got != tt.ok {
			t.Errorf("scheduledAs(%q, %q) = %v", tt.id, tt.action, got)
		}
	}
}
