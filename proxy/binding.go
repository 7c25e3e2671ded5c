package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	apiproxy "go.temporal.io/api/proxy"
	schedulepb "go.temporal.io/api/schedule/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	tokenspb "go.temporal.io/server/api/token/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/blindfold-dev/blindfold/codec"
)

// Format v2 binds every envelope to what it belongs to inside its namespace (codec.Binding), so a value the backend
// copies into another workflow fails to open there. The proxy is stateless (a poll and its answer may go through
// different replicas), so it derives both sides from the message alone: a request names its workflow in a field or in
// the server's task token, a response through its request or its own fields, and a history event through its type
// (a child's result is bound to the child). docs/binding.md lists the rules; the tests in binding_test.go check them.

// site is what the payloads at one place of a message are sealed for (outbound) or may be opened as (inbound).
type site struct {
	// ns is the namespace they are sealed in or opened in; "" is the RPC's.
	ns string
	// bind is the binding sealed with, and on the way in the one expected.
	bind codec.Binding
	// Extra bindings accepted on the way in, each a narrow rule of its own (docs/binding.md).
	batch     bool // a batch job's signal (WorkflowExecutionSignaled)
	scheduled bool // a schedule action's values in the scheduled workflow's started event
	query     bool // a legacy query answer (QueryWorkflowResponse)
	nexus     bool // a Nexus result: a handler's synchronous result or any workflow's (the handler's) result
	// anyWorkflow accepts any workflow's binding: a legacy query answer an SDK plugin sealed for its workflow, which
	// the proxy cannot read from the query task's token.
	anyWorkflow bool
	peers       bool // also open in the namespaces the policy lists as Nexus peers
	// unchecked opens any binding: only when the proxy has no request to derive from (direct transformer use in tests).
	unchecked bool
}

// accepts reports whether an envelope claiming binding b may be opened at s; the error names both sides.
func (s site) accepts(b codec.Binding) error {
	switch {
	case s.unchecked, b.Kind == codec.BindNamespace, b == s.bind:
		// Namespace-only envelopes (format v1, the codec endpoint's /encode) carry no binding to check.
		return nil
	case s.batch && b.Kind == codec.BindBatch,
		s.query && b.Kind == codec.BindQuery,
		// An SDK plugin seals a handler's result for its operation, the proxy for none: both are Nexus results.
		s.nexus && (b.Kind == codec.BindNexus || b.Kind == codec.BindWorkflow),
		s.anyWorkflow && b.Kind == codec.BindWorkflow,
		s.scheduled && b.Kind == codec.BindScheduledWorkflow && s.bind.Kind == codec.BindWorkflow && scheduledAs(s.bind.ID, b.ID):
		return nil
	}
	if s.bind.Kind == codec.BindNamespace {
		return fmt.Errorf("sealed for %s, opened where no binding is known", b)
	}
	return fmt.Errorf("sealed for %s, opened for %s", b, s.bind)
}

// scheduledAs reports whether workflow id is one the server starts for a schedule action with workflow id action:
// "<action>-<RFC 3339 time>" (go.temporal.io/server service/worker/scheduler).
func scheduledAs(id, action string) bool {
	rest, ok := strings.CutPrefix(id, action+"-")
	if !ok {
		return false
	}
	_, err := time.Parse(time.RFC3339, rest)
	return err == nil
}

// sites maps a message's payloads to their sites: def, unless the payload is in over.
type sites struct {
	def  site
	over map[*commonpb.Payload]site
	// parts are the sub-messages given a site of their own, in the order set: a later part inside an earlier one
	// overrides it, as in over. Sealed texts are placed through them (textSites).
	parts []sitePart
}

type sitePart struct {
	m  proto.Message
	st site
}

func (s *sites) of(p *commonpb.Payload) site {
	if s == nil {
		return site{unchecked: true}
	}
	if o, ok := s.over[p]; ok {
		return o
	}
	return s.def
}

// set gives every payload of m (a part of the message) site st.
func (s *sites) set(m proto.Message, st site) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return
	}
	s.parts = append(s.parts, sitePart{m: m, st: st})
	_ = apiproxy.VisitPayloads(context.Background(), m, apiproxy.VisitPayloadsOptions{
		Visitor: func(_ *apiproxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				if p != nil {
					if s.over == nil {
						s.over = make(map[*commonpb.Payload]site)
					}
					s.over[p] = st
				}
			}
			return ps, nil
		},
	})
}

func workflowSite(id string) site {
	if id == "" {
		return site{}
	}
	return site{bind: codec.Workflow(id)}
}

// errTaskToken refuses a task whose token does not say which workflow it belongs to.
var errTaskToken = errors.New("task token names no workflow or activity")

// tokenBinding reads the workflow (or standalone activity) a task token belongs to. The token is the server's
// temporal.server.api.token.v1.Task: the SDK hands it back unchanged, so any replica can read it.
func tokenBinding(tok []byte) (codec.Binding, error) {
	if len(tok) == 0 {
		// The server refuses a task answer without a token, so nothing sealed here is ever stored.
		return codec.Binding{}, nil
	}
	var t tokenspb.Task
	if err := proto.Unmarshal(tok, &t); err != nil {
		return codec.Binding{}, fmt.Errorf("task token: %w", err)
	}
	switch {
	case t.GetWorkflowId() != "":
		return codec.Workflow(t.GetWorkflowId()), nil
	case t.GetActivityId() != "":
		return codec.Binding{Kind: codec.BindActivity, ID: t.GetActivityId()}, nil
	}
	return codec.Binding{}, errTaskToken
}

// requestWorkflow is the workflow a request is about, read from the fields requests use for it: a task token, a
// workflow_id, or a workflow_execution / execution message. "" when it has none.
func requestWorkflow(m proto.Message) codec.Binding {
	r := m.ProtoReflect()
	f := requestFieldsOf(r.Descriptor())
	if f.token != nil {
		if tok := r.Get(f.token).Bytes(); len(tok) > 0 {
			if b, err := tokenBinding(tok); err == nil {
				return b
			}
		}
	}
	if f.workflowID != nil {
		if id := r.Get(f.workflowID).String(); id != "" {
			return codec.Workflow(id)
		}
	}
	if f.updateRef != nil && r.Has(f.updateRef) {
		if u, ok := r.Get(f.updateRef).Message().Interface().(*updatepb.UpdateRef); ok && u.GetWorkflowExecution().GetWorkflowId() != "" {
			return codec.Workflow(u.GetWorkflowExecution().GetWorkflowId())
		}
	}
	for _, fd := range f.executions {
		if r.Has(fd) {
			if we, ok := r.Get(fd).Message().Interface().(*commonpb.WorkflowExecution); ok && we.GetWorkflowId() != "" {
				return codec.Workflow(we.GetWorkflowId())
			}
		}
	}
	if f.activityID != nil {
		if id := r.Get(f.activityID).String(); id != "" {
			return codec.Binding{Kind: codec.BindActivity, ID: id}
		}
	}
	return codec.Binding{}
}

// requestFields are the fields of one request type that requestWorkflow reads (nil: the type has none of that name
// and kind), looked up once per type: by name on every request, they cost more than the rest of the derivation.
type requestFields struct {
	token, workflowID, updateRef, activityID protoreflect.FieldDescriptor
	executions                               []protoreflect.FieldDescriptor // workflow_execution, then execution
}

var requestFieldCache sync.Map // protoreflect.MessageDescriptor → *requestFields

func requestFieldsOf(md protoreflect.MessageDescriptor) *requestFields {
	if f, ok := requestFieldCache.Load(md); ok {
		return f.(*requestFields)
	}
	fields := md.Fields()
	byKind := func(name protoreflect.Name, k protoreflect.Kind) protoreflect.FieldDescriptor {
		if fd := fields.ByName(name); fd != nil && fd.Kind() == k && !fd.IsList() && !fd.IsMap() {
			return fd
		}
		return nil
	}
	f := &requestFields{
		token:      byKind("task_token", protoreflect.BytesKind),
		workflowID: byKind("workflow_id", protoreflect.StringKind),
		updateRef:  byKind("update_ref", protoreflect.MessageKind),
		activityID: byKind("activity_id", protoreflect.StringKind),
	}
	for _, name := range []protoreflect.Name{"workflow_execution", "execution"} {
		if fd := byKind(name, protoreflect.MessageKind); fd != nil {
			f.executions = append(f.executions, fd)
		}
	}
	got, _ := requestFieldCache.LoadOrStore(md, f)
	return got.(*requestFields)
}

// outboundSites decides what each payload of request req is sealed for. A request whose workflow is unknown seals
// for the namespace only (never refused for that: its values are still sealed, only movable, like format v1's).
func outboundSites(req proto.Message) (*sites, error) {
	s := &sites{}
	switch r := req.(type) {
	case *workflowservice.RespondWorkflowTaskCompletedRequest:
		b, err := tokenBinding(r.GetTaskToken())
		if err != nil {
			return nil, &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: "blindfold: workflow task completion: " + err.Error()}
		}
		s.def = site{bind: b}
		for _, c := range r.GetCommands() {
			switch a := c.GetAttributes().(type) {
			case *commandpb.Command_StartChildWorkflowExecutionCommandAttributes:
				at := a.StartChildWorkflowExecutionCommandAttributes
				s.set(c, site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowId())})
			case *commandpb.Command_SignalExternalWorkflowExecutionCommandAttributes:
				at := a.SignalExternalWorkflowExecutionCommandAttributes
				s.set(c, site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetExecution().GetWorkflowId())})
			case *commandpb.Command_ScheduleNexusOperationCommandAttributes:
				at := a.ScheduleNexusOperationCommandAttributes
				s.set(c, site{bind: nexusOperation(at.GetService(), at.GetOperation())})
			case *commandpb.Command_RequestCancelExternalWorkflowExecutionCommandAttributes:
				// No payloads, but a sealed reason, which the server copies into the target's history.
				at := a.RequestCancelExternalWorkflowExecutionCommandAttributes
				s.set(c, site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowId())})
			}
		}
		return s, nil
	case *workflowservice.RespondWorkflowTaskFailedRequest, *workflowservice.RespondActivityTaskCompletedRequest,
		*workflowservice.RespondActivityTaskFailedRequest, *workflowservice.RespondActivityTaskCanceledRequest,
		*workflowservice.RecordActivityTaskHeartbeatRequest:
		b, err := tokenBinding(req.ProtoReflect().Get(req.ProtoReflect().Descriptor().Fields().ByName("task_token")).Bytes())
		if err != nil {
			return nil, &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: "blindfold: task: " + err.Error()}
		}
		s.def = site{bind: b}
		return s, nil
	case *workflowservice.RespondQueryTaskCompletedRequest:
		// A legacy query task's token names its task queue, not its workflow.
		s.def = site{bind: codec.Binding{Kind: codec.BindQuery}, anyWorkflow: true}
		return s, nil
	case *workflowservice.RespondNexusTaskCompletedRequest, *workflowservice.RespondNexusTaskFailedRequest:
		s.def = site{bind: codec.Binding{Kind: codec.BindNexus}, nexus: true}
		return s, nil
	case *workflowservice.CreateScheduleRequest:
		s.def = site{bind: codec.Binding{Kind: codec.BindSchedule, ID: r.GetScheduleId()}}
		setScheduleAction(s, r.GetSchedule())
		return s, nil
	case *workflowservice.UpdateScheduleRequest:
		s.def = site{bind: codec.Binding{Kind: codec.BindSchedule, ID: r.GetScheduleId()}}
		setScheduleAction(s, r.GetSchedule())
		return s, nil
	case *workflowservice.PatchScheduleRequest:
		// Its pause and unpause notes, which DescribeSchedule and ListSchedules return as the schedule's.
		s.def = site{bind: codec.Binding{Kind: codec.BindSchedule, ID: r.GetScheduleId()}}
		return s, nil
	case *workflowservice.StartBatchOperationRequest:
		s.def = site{bind: codec.Binding{Kind: codec.BindBatch, ID: r.GetJobId()}}
		return s, nil
	case *workflowservice.ExecuteMultiOperationRequest:
		for _, op := range r.GetOperations() {
			if st := op.GetStartWorkflow(); st != nil {
				s.set(st, workflowSite(st.GetWorkflowId()))
			}
			if up := op.GetUpdateWorkflow(); up != nil {
				s.set(up, workflowSite(up.GetWorkflowExecution().GetWorkflowId()))
			}
		}
		return s, nil
	}
	s.def = site{bind: requestWorkflow(req)}
	return s, nil
}

func nexusOperation(service, operation string) codec.Binding {
	return codec.Binding{Kind: codec.BindNexus, ID: service + "/" + operation}
}

// setScheduleAction binds a schedule's action to the workflows the server starts from it.
func setScheduleAction(s *sites, sch *schedulepb.Schedule) {
	if sw := sch.GetAction().GetStartWorkflow(); sw != nil {
		s.set(sw, site{bind: codec.Binding{Kind: codec.BindScheduledWorkflow, ID: sw.GetWorkflowId()}})
	}
}

// inboundSites decides which bindings each payload of response resp (or of an error detail) may be opened with;
// req is the request it answers. Without a request nothing is checked (direct transformer use in tests only: the
// server always passes it).
func inboundSites(req, resp proto.Message) (*sites, error) {
	if req == nil {
		return nil, nil
	}
	s := &sites{def: site{bind: requestWorkflow(req)}}
	if q, ok := req.(*workflowservice.ExecuteMultiOperationRequest); ok {
		// Every operation of one call is about the same workflow (the server requires it).
		for _, op := range q.GetOperations() {
			if id := op.GetStartWorkflow().GetWorkflowId(); id != "" {
				s.def = workflowSite(id)
				break
			}
		}
	}
	if _, ok := req.(*workflowservice.QueryWorkflowRequest); ok {
		// The answer, or the failure in an error's details, of a legacy query task (or of its workflow's task).
		s.def.query = true
	}
	switch r := resp.(type) {
	case *workflowservice.PollWorkflowTaskQueueResponse:
		return s, workflowTaskSites(s, r)
	case *workflowservice.StartWorkflowExecutionResponse:
		if t := r.GetEagerWorkflowTask(); t != nil {
			return s, workflowTaskSites(s, t)
		}
	case *workflowservice.RespondWorkflowTaskCompletedResponse:
		if t := r.GetWorkflowTask(); t != nil {
			if err := workflowTaskSites(s, t); err != nil {
				return nil, err
			}
		}
		for _, a := range r.GetActivityTasks() {
			st, err := activityTaskSite(a)
			if err != nil {
				return nil, err
			}
			s.set(a, st)
		}
	case *workflowservice.PollActivityTaskQueueResponse:
		st, err := activityTaskSite(r)
		if err != nil {
			return nil, err
		}
		s.def = st
	case *workflowservice.PollNexusTaskQueueResponse:
		so := r.GetRequest().GetStartOperation()
		s.def = site{bind: nexusOperation(so.GetService(), so.GetOperation()), peers: true}
	case *workflowservice.GetWorkflowExecutionHistoryResponse:
		historySites(s, s.def, r.GetHistory().GetEvents())
	case *workflowservice.GetWorkflowExecutionHistoryReverseResponse:
		historySites(s, s.def, r.GetHistory().GetEvents())
	case *workflowservice.DescribeWorkflowExecutionResponse:
		if id := r.GetWorkflowExecutionInfo().GetExecution().GetWorkflowId(); id != "" {
			s.set(r.GetWorkflowExecutionInfo(), workflowSite(id))
		}
	case *workflowservice.ListWorkflowExecutionsResponse:
		s.def = site{}
		for _, e := range r.GetExecutions() {
			s.set(e, workflowSite(e.GetExecution().GetWorkflowId()))
		}
	case *workflowservice.ListOpenWorkflowExecutionsResponse:
		s.def = site{}
		for _, e := range r.GetExecutions() {
			s.set(e, workflowSite(e.GetExecution().GetWorkflowId()))
		}
	case *workflowservice.ListClosedWorkflowExecutionsResponse:
		s.def = site{}
		for _, e := range r.GetExecutions() {
			s.set(e, workflowSite(e.GetExecution().GetWorkflowId()))
		}
	case *workflowservice.ListArchivedWorkflowExecutionsResponse:
		s.def = site{}
		for _, e := range r.GetExecutions() {
			s.set(e, workflowSite(e.GetExecution().GetWorkflowId()))
		}
	case *workflowservice.ScanWorkflowExecutionsResponse:
		s.def = site{}
		for _, e := range r.GetExecutions() {
			s.set(e, workflowSite(e.GetExecution().GetWorkflowId()))
		}
	case *workflowservice.DescribeBatchOperationResponse:
		// Its reason, sealed for the job.
		q, _ := req.(*workflowservice.DescribeBatchOperationRequest)
		s.def = site{bind: codec.Binding{Kind: codec.BindBatch, ID: q.GetJobId()}}
	case *workflowservice.DescribeScheduleResponse:
		q, _ := req.(*workflowservice.DescribeScheduleRequest)
		s.def = site{bind: codec.Binding{Kind: codec.BindSchedule, ID: q.GetScheduleId()}}
		setScheduleAction(s, r.GetSchedule())
	case *workflowservice.ListSchedulesResponse:
		s.def = site{}
		for _, e := range r.GetSchedules() {
			s.set(e, site{bind: codec.Binding{Kind: codec.BindSchedule, ID: e.GetScheduleId()}})
		}
	case *workflowservice.ExecuteMultiOperationResponse:
		for _, resp := range r.GetResponses() {
			if t := resp.GetStartWorkflow().GetEagerWorkflowTask(); t != nil {
				if err := workflowTaskSites(s, t); err != nil {
					return nil, err
				}
			}
		}
	}
	return s, nil
}

// workflowTaskSites binds a workflow task to the workflow it names, after checking that its task token names the
// same one: otherwise the worker's answers, sealed for the token's workflow, would carry another workflow's data.
func workflowTaskSites(s *sites, t *workflowservice.PollWorkflowTaskQueueResponse) error {
	id := t.GetWorkflowExecution().GetWorkflowId()
	if len(t.GetTaskToken()) == 0 && id == "" {
		return nil // an empty poll
	}
	if t.GetQuery() != nil {
		// A legacy query task: its token is the server's QueryTask (namespace, task queue, task id), which names no
		// workflow; its answer goes back as RespondQueryTaskCompleted, bound to a query answer (outboundSites).
		st := workflowSite(id)
		s.set(t, st)
		if s.def.bind.Kind == codec.BindNamespace {
			s.def = st
		}
		historySites(s, st, t.GetHistory().GetEvents())
		return nil
	}
	b, err := tokenBinding(t.GetTaskToken())
	if err != nil {
		return &requestError{kind: KindDecode, code: codes.Internal, msg: "blindfold: workflow task from the backend: " + err.Error()}
	}
	if b != codec.Workflow(id) {
		return &requestError{kind: KindForgedEnvelope, code: codes.Internal, msg: fmt.Sprintf("blindfold: the backend sent a task of %s with a token for %s", codec.Workflow(id), b)}
	}
	st := workflowSite(id)
	// Set as a whole and as the default: update requests in the task's messages are packed in Any values, which
	// the transformer unpacks separately. When the default is the task's site (a poll: the task is the whole
	// response), marking each payload would only repeat it, at the cost of one more walk of the whole history.
	if s.def.bind.Kind == codec.BindNamespace {
		s.def = st
	}
	if s.def != st {
		s.set(t, st)
	}
	historySites(s, st, t.GetHistory().GetEvents())
	return nil
}

// activityTaskSite is the site of an activity task's payloads: its workflow's, or for a standalone activity its own.
func activityTaskSite(a *workflowservice.PollActivityTaskQueueResponse) (site, error) {
	if len(a.GetTaskToken()) == 0 {
		return site{}, nil
	}
	b, err := tokenBinding(a.GetTaskToken())
	if err != nil {
		return site{}, &requestError{kind: KindDecode, code: codes.Internal, msg: "blindfold: activity task from the backend: " + err.Error()}
	}
	want := codec.Binding{Kind: codec.BindActivity, ID: a.GetActivityId()}
	if id := a.GetWorkflowExecution().GetWorkflowId(); id != "" {
		want = codec.Workflow(id)
	}
	if b != want {
		return site{}, &requestError{kind: KindForgedEnvelope, code: codes.Internal, msg: fmt.Sprintf("blindfold: the backend sent an activity task of %s with a token for %s", want, b)}
	}
	return site{bind: b}, nil
}

// historySites gives the events whose payloads belong to another workflow, or may come from elsewhere, their sites;
// every other event's payloads belong to the history's own workflow (s.def, or the task's).
func historySites(s *sites, own site, events []*historypb.HistoryEvent) {
	for _, e := range events {
		var st site
		switch a := e.GetAttributes().(type) {
		case *historypb.HistoryEvent_StartChildWorkflowExecutionInitiatedEventAttributes:
			at := a.StartChildWorkflowExecutionInitiatedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionStartedEventAttributes:
			at := a.ChildWorkflowExecutionStartedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionCompletedEventAttributes:
			at := a.ChildWorkflowExecutionCompletedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionFailedEventAttributes:
			at := a.ChildWorkflowExecutionFailedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionCanceledEventAttributes:
			at := a.ChildWorkflowExecutionCanceledEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionTimedOutEventAttributes:
			at := a.ChildWorkflowExecutionTimedOutEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_ChildWorkflowExecutionTerminatedEventAttributes:
			at := a.ChildWorkflowExecutionTerminatedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_SignalExternalWorkflowExecutionInitiatedEventAttributes:
			at := a.SignalExternalWorkflowExecutionInitiatedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_RequestCancelExternalWorkflowExecutionInitiatedEventAttributes:
			// Its reason, sealed for the target like the command it records.
			at := a.RequestCancelExternalWorkflowExecutionInitiatedEventAttributes
			st = site{ns: at.GetNamespace(), bind: codec.Workflow(at.GetWorkflowExecution().GetWorkflowId())}
		case *historypb.HistoryEvent_NexusOperationScheduledEventAttributes:
			at := a.NexusOperationScheduledEventAttributes
			st = site{bind: nexusOperation(at.GetService(), at.GetOperation())}
		case *historypb.HistoryEvent_NexusOperationCompletedEventAttributes, *historypb.HistoryEvent_NexusOperationFailedEventAttributes,
			*historypb.HistoryEvent_NexusOperationCanceledEventAttributes, *historypb.HistoryEvent_NexusOperationTimedOutEventAttributes,
			*historypb.HistoryEvent_NexusOperationCancelRequestFailedEventAttributes:
			st = own
			st.nexus, st.peers = true, true
		case *historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes:
			st = own
			st.batch = true
		case *historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes:
			st = own
			st.scheduled = true
		default:
			continue
		}
		s.set(e, st)
	}
}

// boundDecoder is a codec that checks bindings (*codec.Codec is one). A custom PayloadCodec without it has its own
// format, to which Blindfold's bindings do not apply.
type boundDecoder interface {
	DecodeFor(ctx context.Context, e codec.Expect, ps []*commonpb.Payload) ([]*commonpb.Payload, error)
}

// decodeAt opens ps in namespace, each payload i where at(i) accepts its binding.
func decodeAt(ctx context.Context, c PayloadCodec, namespace string, ps []*commonpb.Payload, at func(i int) site) ([]*commonpb.Payload, error) {
	bd, ok := c.(boundDecoder)
	if !ok {
		return c.Decode(ctx, namespace, ps)
	}
	return bd.DecodeFor(ctx, codec.Expect{Namespace: namespace, Accept: func(i int, b codec.Binding) error { return at(i).accepts(b) }}, ps)
}

// sealSited seals payloads (the send list of a request, whose visited originals are in) for their sites, one codec
// call per (namespace, binding): nearly always one.
func (t *transformer) sealSited(ctx context.Context, sealer PayloadCodec, namespace, scope string, s *sites, in, send []*commonpb.Payload) ([]*commonpb.Payload, error) {
	type group struct {
		ns  string
		b   codec.Binding
		idx []int
	}
	var groups []*group
	for i, p := range in {
		st := s.of(p)
		ns := st.ns
		if ns == "" {
			ns = namespace
		}
		var g *group
		for _, h := range groups {
			if h.ns == ns && h.b == st.bind {
				g = h
				break
			}
		}
		if g == nil {
			g = &group{ns: ns, b: st.bind}
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	out := make([]*commonpb.Payload, len(send))
	for _, g := range groups {
		ps := send
		if len(groups) > 1 {
			ps = make([]*commonpb.Payload, len(g.idx))
			for j, i := range g.idx {
				ps[j] = send[i]
			}
		}
		target := codec.Target{Namespace: g.ns, Binding: g.b}
		if g.ns == namespace {
			// Another namespace (a child, a signal) gets its own default scope: the policy's choice is this one's.
			target.Scope = scope
		}
		r, err := sealer.EncodeFor(ctx, target, ps)
		if err != nil {
			return nil, err
		}
		if len(r) != len(ps) {
			return nil, fmt.Errorf("codec returned %d payloads for %d", len(r), len(ps))
		}
		if len(groups) == 1 {
			return r, nil
		}
		for j, i := range g.idx {
			out[i] = r[j]
		}
	}
	return out, nil
}
