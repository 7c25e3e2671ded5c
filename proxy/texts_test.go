package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	batchpb "go.temporal.io/api/batch/v1"
	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	schedulepb "go.temporal.io/api/schedule/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

// newTextCodec returns the real codec over local keys of the test's own (keysets are created on first use).
func newTextCodec(t testing.TB) *codec.Codec {
	t.Helper()
	_, c := testenv.LocalCodec(t, t.TempDir())
	return c
}

// countingCodec counts codec calls, and can fail them.
type countingCodec struct {
	PayloadCodec
	encodes, decodes atomic.Int32
	encodeErr        error
	decodeErr        error
	decodeErrAfter   int32 // fail decode calls after this many (0: every one, when decodeErr is set)
	identity         bool  // EncodeFor returns its input
}

func (c *countingCodec) EncodeFor(ctx context.Context, t codec.Target, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	c.encodes.Add(1)
	if c.encodeErr != nil {
		return nil, c.encodeErr
	}
	if c.identity {
		return ps, nil
	}
	return c.PayloadCodec.EncodeFor(ctx, t, ps)
}

func (c *countingCodec) Decode(ctx context.Context, ns string, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	n := c.decodes.Add(1)
	if c.decodeErr != nil && n > c.decodeErrAfter {
		return nil, c.decodeErr
	}
	return c.PayloadCodec.Decode(ctx, ns, ps)
}

// sealFor returns text sealed for namespace, as sealTexts writes it.
func sealFor(t testing.TB, c PayloadCodec, ns, text string) string {
	t.Helper()
	m := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns, Reason: text}
	if err := sealTexts(context.Background(), c, codec.Target{Namespace: ns}, m); err != nil {
		t.Fatal(err)
	}
	return m.Reason
}

// wantSealed checks that s is in the sealed form and shows nothing of text.
func wantSealed(t *testing.T, s, text string) {
	t.Helper()
	if !strings.HasPrefix(s, sealedTextPrefix) {
		t.Errorf("%q is not sealed", s)
	}
	if text != "" && strings.Contains(s, text) {
		t.Errorf("sealed form %q shows the text", s)
	}
}

func TestSealTextsRoundTrip(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	const ns = "orders"
	tests := []struct {
		name string
		msg  func() proto.Message
		// sealed returns the strings that must be sealed (by pointer into msg); the others must not change.
		sealed func(m proto.Message) []*string
	}{
		{
			name: "terminate",
			msg: func() proto.Message {
				return &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns, Reason: "customer 4711 asked", Identity: "ops@host",
					WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "order-1"}}
			},
			sealed: func(m proto.Message) []*string {
				return []*string{&m.(*workflowservice.TerminateWorkflowExecutionRequest).Reason}
			},
		},
		{
			name: "request cancel external command among others",
			msg: func() proto.Message {
				m := workflowTaskCompletion(3, 8)
				m.Namespace = ns
				m.Commands = append(m.Commands, &commandpb.Command{
					CommandType: enumspb.COMMAND_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION,
					Attributes: &commandpb.Command_RequestCancelExternalWorkflowExecutionCommandAttributes{RequestCancelExternalWorkflowExecutionCommandAttributes: &commandpb.RequestCancelExternalWorkflowExecutionCommandAttributes{
						Namespace: ns, WorkflowId: "child", Reason: "parent no longer needs the refund",
					}},
				})
				return m
			},
			sealed: func(m proto.Message) []*string {
				cmds := m.(*workflowservice.RespondWorkflowTaskCompletedRequest).Commands
				return []*string{&cmds[3].GetRequestCancelExternalWorkflowExecutionCommandAttributes().Reason}
			},
		},
		{
			name: "schedule notes",
			msg: func() proto.Message {
				return &workflowservice.CreateScheduleRequest{Namespace: ns, ScheduleId: "nightly", Schedule: &schedulepb.Schedule{
					Spec:  &schedulepb.ScheduleSpec{Calendar: []*schedulepb.CalendarSpec{{Hour: "3", Comment: "nightly"}}},
					State: &schedulepb.ScheduleState{Notes: "paused until the migration of tenant acme", Paused: true},
				}}
			},
			sealed: func(m proto.Message) []*string {
				return []*string{&m.(*workflowservice.CreateScheduleRequest).Schedule.State.Notes}
			},
		},
		{
			name: "schedule patch",
			msg: func() proto.Message {
				return &workflowservice.PatchScheduleRequest{Namespace: ns, ScheduleId: "nightly", Patch: &schedulepb.SchedulePatch{Pause: "incident 12"}}
			},
			sealed: func(m proto.Message) []*string {
				return []*string{&m.(*workflowservice.PatchScheduleRequest).Patch.Pause}
			},
		},
		{
			name: "batch with two reasons",
			msg: func() proto.Message {
				return &workflowservice.StartBatchOperationRequest{Namespace: ns, JobId: "j", Reason: "cleanup for acme",
					Operation: &workflowservice.StartBatchOperationRequest_TerminateActivitiesOperation{TerminateActivitiesOperation: &batchpb.BatchOperationTerminateActivities{Reason: "acme offboarded"}}}
			},
			sealed: func(m proto.Message) []*string {
				r := m.(*workflowservice.StartBatchOperationRequest)
				return []*string{&r.Reason, &r.GetTerminateActivitiesOperation().Reason}
			},
		},
		{
			name: "nexus callback headers stay: the server reads its callback token from them",
			msg: func() proto.Message {
				return &workflowservice.StartWorkflowExecutionRequest{Namespace: ns, WorkflowId: "w", CompletionCallbacks: []*commonpb.Callback{{
					Variant: &commonpb.Callback_Nexus_{Nexus: &commonpb.Callback_Nexus{Url: "temporal://system", Header: map[string]string{"Nexus-Callback-Token": "tok"}}},
				}}}
			},
			sealed: func(proto.Message) []*string { return nil },
		},
		{
			name:   "empty reason stays empty",
			msg:    func() proto.Message { return &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns} },
			sealed: func(proto.Message) []*string { return nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := tt.msg()
			m := proto.Clone(orig)
			c := &countingCodec{PayloadCodec: tc}
			if err := sealTexts(context.Background(), c, codec.Target{Namespace: ns}, m); err != nil {
				t.Fatal(err)
			}
			want := tt.sealed(orig)
			got := tt.sealed(m)
			for i := range got {
				wantSealed(t, *got[i], *want[i])
			}
			if n := c.encodes.Load(); (len(want) > 0) != (n == 1) || n > 1 {
				t.Errorf("%d EncodeFor calls for %d texts, want one batch", n, len(want))
			}
			// Everything else is as it was.
			rest := proto.Clone(m)
			for _, p := range tt.sealed(rest) {
				*p = ""
			}
			restOrig := proto.Clone(orig)
			for _, p := range tt.sealed(restOrig) {
				*p = ""
			}
			if !proto.Equal(rest, restOrig) {
				t.Errorf("sealTexts changed more than the sealed fields:\n%v\n%v", rest, restOrig)
			}
			// Sealing again verifies and keeps the sealed form.
			again := proto.Clone(m)
			if err := sealTexts(context.Background(), tc, codec.Target{Namespace: ns}, again); err != nil {
				t.Fatalf("sealing a sealed message: %v", err)
			}
			if !proto.Equal(again, m) {
				t.Error("sealing a sealed message changed it")
			}
			// openTexts restores the original.
			if refused, err := openTexts(context.Background(), tc, ns, m); err != nil || refused != 0 {
				t.Fatalf("openTexts: refused %d, %v", refused, err)
			}
			if !proto.Equal(m, orig) {
				t.Errorf("round trip:\n got %v\nwant %v", m, orig)
			}
		})
	}
}

// TestSealTextsMapValues: a map whose string values are sealed (no API field is so classified today, so the test
// picks the Nexus callback headers with plans of its own) is sealed and opened value by value, keys untouched.
func TestSealTextsMapValues(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	plans := &textPlans{want: func(r textRule) bool { return r == visServerUsed }}
	m := &workflowservice.StartWorkflowExecutionRequest{Namespace: "ns", CompletionCallbacks: []*commonpb.Callback{{
		Variant: &commonpb.Callback_Nexus_{Nexus: &commonpb.Callback_Nexus{Url: "https://hooks.example/cb", Header: map[string]string{"a": "secret-a", "b": "secret-b", "empty": ""}}},
	}}}
	orig := proto.Clone(m)
	if err := sealTextsWith(context.Background(), tc, codec.Target{Namespace: "ns"}, m, plans, nil); err != nil {
		t.Fatal(err)
	}
	nx := m.CompletionCallbacks[0].GetNexus()
	wantSealed(t, nx.Header["a"], "secret-a")
	wantSealed(t, nx.Header["b"], "secret-b")
	wantSealed(t, nx.Url, "hooks.example")
	if nx.Header["empty"] != "" {
		t.Errorf("empty value became %q", nx.Header["empty"])
	}
	if refused, err := openTextsWith(context.Background(), tc, "ns", m, plans, nil); err != nil || refused != 0 {
		t.Fatalf("open: refused %d, %v", refused, err)
	}
	if !proto.Equal(m, orig) {
		t.Errorf("round trip:\n got %v\nwant %v", m, orig)
	}
}

func TestSealTextsRefuses(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	ctx := context.Background()
	envelopeOf := func(t *testing.T, s string) *commonpb.Payload {
		env, err := parseSealedText(s)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	encodeEnv := func(t *testing.T, env *commonpb.Payload) string {
		b, err := proto.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return sealedTextPrefix + base64.RawStdEncoding.EncodeToString(b)
	}
	tests := []struct {
		name     string
		reason   func(t *testing.T) string
		ns       string
		codec    PayloadCodec
		want     string // in the requestError's message
		wantErr  error  // errors.Is, instead of a requestError
		wantText string // in the message of an error that is not a requestError
	}{
		{name: "no namespace", reason: func(*testing.T) string { return "r" }, ns: "", want: "no namespace"},
		{name: "sealed for another namespace", reason: func(t *testing.T) string { return sealFor(t, tc, "other", "r") }, ns: "orders",
			want: "field temporal.api.workflowservice.v1.TerminateWorkflowExecutionRequest.reason is in the sealed text form but does not open for this namespace (unknown key)"},
		{name: "not base64", reason: func(*testing.T) string { return sealedTextPrefix + "!!not base64!!" }, ns: "orders", want: "(malformed)"},
		{name: "not an envelope", reason: func(t *testing.T) string { return encodeEnv(t, textPayload("planted")) }, ns: "orders", want: "(malformed)"},
		{name: "tampered", reason: func(t *testing.T) string {
			env := envelopeOf(t, sealFor(t, tc, "orders", "r"))
			env.Data[len(env.Data)-1] ^= 1
			return encodeEnv(t, env)
		}, ns: "orders", want: "(tampered with)"},
		{name: "an envelope of a payload, not a text", reason: func(t *testing.T) string {
			out, err := tc.EncodeFor(context.Background(), codec.Target{Namespace: "orders"}, []*commonpb.Payload{jsonPayload("x")})
			if err != nil {
				t.Fatal(err)
			}
			return encodeEnv(t, out[0])
		}, ns: "orders", want: "(malformed)"},
		{name: "key service down while verifying", reason: func(t *testing.T) string { return sealFor(t, tc, "orders", "r") }, ns: "orders",
			codec: &countingCodec{PayloadCodec: tc, decodeErr: fmt.Errorf("vault: %w", codec.ErrKeyUnavailable)}, wantErr: codec.ErrKeyUnavailable},
		{name: "encode fails", reason: func(*testing.T) string { return "r" }, ns: "orders",
			codec: &countingCodec{PayloadCodec: tc, encodeErr: fmt.Errorf("vault: %w", codec.ErrKeyUnavailable)}, wantErr: codec.ErrKeyUnavailable},
		{name: "codec returns the plaintext", reason: func(*testing.T) string { return "r" }, ns: "orders",
			codec: &countingCodec{PayloadCodec: tc, identity: true}, wantText: "codec returned a payload that is not an envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.codec
			if c == nil {
				c = tc
			}
			reason := tt.reason(t)
			m := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: tt.ns, Reason: reason}
			err := sealTexts(ctx, c, codec.Target{Namespace: tt.ns}, m)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil || tt.wantText != "" {
				var re *requestError
				if errors.As(err, &re) {
					t.Fatalf("retryable or codec failure turned into a request error: %v", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v does not wrap %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("error %v does not say %q", err, tt.wantText)
				}
				return
			}
			var re *requestError
			if !errors.As(err, &re) || re.kind != KindInvalidRequest || re.code != codes.InvalidArgument {
				t.Fatalf("error %v is not an invalid-request *requestError", err)
			}
			if !strings.Contains(re.msg, tt.want) {
				t.Errorf("error %q does not contain %q", re.msg, tt.want)
			}
			if body := strings.TrimPrefix(reason, sealedTextPrefix); len(body) > 8 && strings.Contains(re.msg, body[:8]) {
				t.Errorf("error %q quotes the sealed text", re.msg)
			}
		})
	}
}

// refusalRE is the only form a text that does not open may take.
var refusalRE = regexp.MustCompile(`^blindfold: sealed text could not be opened \([a-z ,]+\)$`)

func TestOpenTexts(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	ctx := context.Background()
	const ns = "orders"
	terminated := func(reason string) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{Reason: reason, Identity: "ops"}}}
	}
	history := func(reasons ...string) *workflowservice.GetWorkflowExecutionHistoryResponse {
		r := &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{}}
		for _, reason := range reasons {
			r.History.Events = append(r.History.Events, terminated(reason))
		}
		return r
	}
	reasons := func(m proto.Message) []string {
		var out []string
		for _, e := range m.(*workflowservice.GetWorkflowExecutionHistoryResponse).History.Events {
			out = append(out, e.GetWorkflowExecutionTerminatedEventAttributes().GetReason())
		}
		return out
	}
	tampered := func() string {
		env, err := parseSealedText(sealFor(t, tc, ns, "x"))
		if err != nil {
			t.Fatal(err)
		}
		env.Data[len(env.Data)/2] ^= 0x80
		s, err := sealedTextOf(env)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	otherKeys := func() string {
		_, other := testenv.LocalCodec(t, t.TempDir())
		m := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns, Reason: "other keys"}
		if err := sealTexts(ctx, other, codec.Target{Namespace: ns}, m); err != nil {
			t.Fatal(err)
		}
		return m.Reason
	}()
	tests := []struct {
		name        string
		in          []string
		codec       PayloadCodec
		ns          string
		want        []string // "refusal" for any refusal
		wantRefused int
		wantErr     error
	}{
		{name: "opens", in: []string{sealFor(t, tc, ns, "customer asked"), sealFor(t, tc, ns, "second")}, want: []string{"customer asked", "second"}},
		{name: "server text stays", in: []string{"Workflow terminated by reset", ""}, want: []string{"Workflow terminated by reset", ""}},
		{name: "wrong namespace", in: []string{sealFor(t, tc, "other", "x")}, want: []string{"blindfold: sealed text could not be opened (unknown key)"}, wantRefused: 1},
		{name: "tampered", in: []string{tampered}, want: []string{"blindfold: sealed text could not be opened (tampered with)"}, wantRefused: 1},
		{name: "unknown key", in: []string{otherKeys}, want: []string{"blindfold: sealed text could not be opened (unknown key)"}, wantRefused: 1},
		{name: "malformed base64", in: []string{sealedTextPrefix + "@@@"}, want: []string{"blindfold: sealed text could not be opened (malformed)"}, wantRefused: 1},
		{name: "one bad text costs only itself", in: []string{sealFor(t, tc, ns, "good"), sealFor(t, tc, "other", "bad"), sealedTextPrefix, sealFor(t, tc, ns, "also good")},
			want: []string{"good", "refusal", "refusal", "also good"}, wantRefused: 2},
		{name: "key service down", in: []string{sealFor(t, tc, ns, "x")}, codec: &countingCodec{PayloadCodec: tc, decodeErr: fmt.Errorf("kms: %w", codec.ErrKeyUnavailable)}, wantErr: codec.ErrKeyUnavailable},
		{name: "key service down after the batch failed", in: []string{sealFor(t, tc, "other", "x"), sealFor(t, tc, ns, "y")},
			codec: &countingCodec{PayloadCodec: tc, decodeErr: fmt.Errorf("kms: %w", codec.ErrKeyUnavailable), decodeErrAfter: 2}, wantErr: codec.ErrKeyUnavailable},
		{name: "key rejected for good is a refusal", in: []string{sealFor(t, tc, ns, "x")},
			codec: &countingCodec{PayloadCodec: tc, decodeErr: fmt.Errorf("%w: %w", codec.ErrKeyRejected, codec.ErrKeyUnavailable)},
			want:  []string{"blindfold: sealed text could not be opened (key rejected)"}, wantRefused: 1},
		{name: "canceled", in: []string{sealFor(t, tc, ns, "x")}, codec: &countingCodec{PayloadCodec: tc, decodeErr: fmt.Errorf("open: %w", context.Canceled)}, wantErr: context.Canceled},
		{name: "no namespace: left sealed", in: []string{sealFor(t, tc, ns, "x")}, ns: "-", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.codec
			if c == nil {
				c = tc
			}
			namespace := ns
			if tt.ns == "-" {
				namespace = ""
			}
			m := history(tt.in...)
			refused, err := openTexts(ctx, c, namespace, m)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if refused != tt.wantRefused {
				t.Errorf("refused %d, want %d", refused, tt.wantRefused)
			}
			got := reasons(m)
			if tt.want == nil {
				tt.want = tt.in
			}
			for i := range got {
				switch {
				case tt.want[i] == "refusal":
					if !refusalRE.MatchString(got[i]) {
						t.Errorf("text %d: %q is not a refusal", i, got[i])
					}
				case got[i] != tt.want[i]:
					t.Errorf("text %d: %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestOpenTextsResponses: the server's copies of sealed texts open where the server puts them: history events of a
// terminated, canceled and reset workflow (the reset reason lands in a failure's message) and schedule descriptions.
func TestOpenTextsResponses(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	const ns = "orders"
	ctx := context.Background()
	seal := func(s string) string { return sealFor(t, tc, ns, s) }
	tests := []struct {
		name string
		msg  func(seal func(string) string) proto.Message
	}{
		{
			name: "history of a reset and terminated workflow",
			msg: func(seal func(string) string) proto.Message {
				return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{
					{Attributes: &historypb.HistoryEvent_WorkflowExecutionCancelRequestedEventAttributes{WorkflowExecutionCancelRequestedEventAttributes: &historypb.WorkflowExecutionCancelRequestedEventAttributes{Cause: seal("cancel: duplicate order")}}},
					{Attributes: &historypb.HistoryEvent_RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{RequestCancelExternalWorkflowExecutionInitiatedEventAttributes: &historypb.RequestCancelExternalWorkflowExecutionInitiatedEventAttributes{Reason: seal("child not needed")}}},
					{Attributes: &historypb.HistoryEvent_WorkflowTaskFailedEventAttributes{WorkflowTaskFailedEventAttributes: &historypb.WorkflowTaskFailedEventAttributes{
						Cause:   enumspb.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
						Failure: &failurepb.Failure{Message: seal("reset: bad deploy 42"), FailureInfo: &failurepb.Failure_ResetWorkflowFailureInfo{ResetWorkflowFailureInfo: &failurepb.ResetWorkflowFailureInfo{}}},
					}}},
					{Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{Reason: seal("reset: bad deploy 42")}}},
				}}}
			},
		},
		{
			name: "describe schedule",
			msg: func(seal func(string) string) proto.Message {
				return &workflowservice.DescribeScheduleResponse{Schedule: &schedulepb.Schedule{State: &schedulepb.ScheduleState{Notes: seal("paused: tenant acme migrating")}}}
			},
		},
		{
			name: "list schedules",
			msg: func(seal func(string) string) proto.Message {
				return &workflowservice.ListSchedulesResponse{Schedules: []*schedulepb.ScheduleListEntry{
					{ScheduleId: "a", Info: &schedulepb.ScheduleListInfo{Notes: seal("note a")}},
					{ScheduleId: "b", Info: &schedulepb.ScheduleListInfo{Notes: "paused due to workflow timeout: b-1"}},
				}}
			},
		},
		{
			name: "describe batch operation",
			msg: func(seal func(string) string) proto.Message {
				return &workflowservice.DescribeBatchOperationResponse{JobId: "j", Reason: seal("cleanup")}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := tt.msg(func(s string) string { return s })
			got := tt.msg(seal)
			if proto.Equal(got, want) {
				t.Fatal("nothing sealed; the test is blind")
			}
			c := &countingCodec{PayloadCodec: tc}
			if refused, err := openTexts(ctx, c, ns, got); err != nil || refused != 0 {
				t.Fatalf("refused %d, %v", refused, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("opened:\n got %v\nwant %v", got, want)
			}
			if n := c.decodes.Load(); n != 1 {
				t.Errorf("%d Decode calls, want one batch", n)
			}
		})
	}
}

// TestTextPlans: only the types that can hold a sealed text are walked, and no type packed in Any on this API holds
// one (collectTexts does not unpack Any).
func TestTextPlans(t *testing.T) {
	t.Parallel()
	for _, m := range []proto.Message{
		&workflowservice.SignalWorkflowExecutionRequest{},
		&workflowservice.StartWorkflowExecutionRequest{},
		&commonpb.Payloads{},
	} {
		if p := sealPlans.planFor(m.ProtoReflect().Descriptor()); p != nil {
			t.Errorf("%T: plan %+v, want none", m, p)
		}
	}
	p := sealPlans.planFor((&workflowservice.RespondWorkflowTaskCompletedRequest{}).ProtoReflect().Descriptor())
	if p == nil || len(p.children) != 1 || p.children[0].fd.Name() != "commands" {
		t.Fatalf("completion plan %+v, want the commands only", p)
	}
	cmd := p.children[0].plan
	// The attributes are a oneof: one WhichOneof, one member with a plan.
	if len(cmd.children) != 0 || len(cmd.oneofs) != 1 || len(cmd.oneofs[0].members) != 1 ||
		cmd.oneofs[0].members[(&commandpb.Command{}).ProtoReflect().Descriptor().Fields().ByName("request_cancel_external_workflow_execution_command_attributes").Number()] == nil {
		t.Errorf("command plan walks %d children and %d oneofs, want the cancel-external attributes only", len(cmd.children), len(cmd.oneofs))
	}
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		if strings.HasPrefix(name, "temporal.api.errordetails.v1.") || strings.HasPrefix(name, "temporal.api.update.v1.") {
			if sealPlans.planFor(mt.Descriptor()) != nil {
				t.Errorf("%s (packed in Any) can hold a sealed text, which collectTexts would not see", name)
			}
		}
		return true
	})
}

// BenchmarkSealTexts measures the common case: a request with no text to seal, and one with one reason.
func BenchmarkSealTexts(b *testing.B) {
	ctx := context.Background()
	tc := newTextCodec(b)
	b.Run("completion-50-commands-no-text", func(b *testing.B) {
		m := workflowTaskCompletion(50, 64)
		b.ReportAllocs()
		for b.Loop() {
			if err := sealTexts(ctx, tc, codec.Target{Namespace: "default"}, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("terminate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: "default", Reason: "customer asked"}
			if err := sealTexts(ctx, tc, codec.Target{Namespace: "default"}, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzOpenTexts: whatever the server puts in a sealed-text field, openTexts does not fail (the keys are local), and
// the field ends up as it was (not in the sealed form), as the text of a real seal, or as a refusal: never as any
// other bytes of the input.
func FuzzOpenTexts(f *testing.F) {
	const ns = "orders"
	tc := newTextCodec(f)
	known := map[string]bool{}
	for _, text := range []string{"customer asked", "x", "ünïcödé ✓", strings.Repeat("long ", 100)} {
		s := sealFor(f, tc, ns, text)
		known[text] = true
		f.Add(s)
		f.Add(s[:len(s)-3])
		f.Add(s + "A")
	}
	f.Add(sealFor(f, tc, "other", "wrong namespace"))
	bound := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: ns, Reason: "bound to a workflow"}
	if err := sealTexts(context.Background(), tc, codec.Target{Namespace: ns, Binding: codec.Workflow("A")}, bound); err != nil {
		f.Fatal(err)
	}
	f.Add(bound.Reason)
	f.Add(sealedTextPrefix)
	f.Add(sealedTextPrefix + "AAAA")
	f.Add("Workflow terminated by reset")
	f.Fuzz(func(t *testing.T, reason string) {
		if !utf8.ValidString(reason) {
			t.Skip("a string field off the wire is valid UTF-8")
		}
		m := &workflowservice.DescribeBatchOperationResponse{Reason: reason}
		st, err := inboundSites(&workflowservice.DescribeBatchOperationRequest{Namespace: ns, JobId: "job"}, m)
		if err != nil {
			t.Fatal(err)
		}
		refused, err := openTextsAt(context.Background(), tc, ns, m, st)
		if err != nil {
			t.Fatalf("openTexts: %v", err)
		}
		got := m.Reason
		switch {
		case !strings.HasPrefix(reason, sealedTextPrefix):
			if got != reason || refused != 0 {
				t.Fatalf("a text not in the sealed form changed: %q -> %q", reason, got)
			}
		case refusalRE.MatchString(got):
			if refused != 1 {
				t.Fatalf("refusal not counted")
			}
		case !known[got]:
			t.Fatalf("%q opened to %q, which was never sealed", reason, got)
		}
		if _, err := proto.Marshal(m); err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
	})
}

// TestSealedTextSize pins the size of the sealed form, which the docs quote: servers cap reasons and notes at 1000
// bytes by default, calendar comments at 200.
func TestSealedTextSize(t *testing.T) {
	t.Parallel()
	tc := newTextCodec(t)
	for _, n := range []int{1, 100, 500, 540} {
		s := sealFor(t, tc, "default", strings.Repeat("x", n))
		t.Logf("text of %d bytes: sealed form of %d bytes", n, len(s))
		if over := len(s) - (300 + n*4/3); over > 0 {
			t.Errorf("a text of %d bytes seals to %d bytes, %d more than the docs say", n, len(s), over)
		}
	}
}
