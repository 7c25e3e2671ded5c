package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	commandpb "go.temporal.io/api/command/v1"
	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	protocolpb "go.temporal.io/api/protocol/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
)

// unknownSecret is what the unknown fields of the tests carry: it must never show up in an error.
const unknownSecret = "plaintext-in-an-unknown-field"

// unknownField returns the wire bytes of a length-delimited field num carrying unknownSecret.
func unknownField(nums ...protowire.Number) []byte {
	var b []byte
	for _, n := range nums {
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte(unknownSecret))
	}
	return b
}

// withUnknown sets unknown field 9999 on m and returns it.
func withUnknown[M proto.Message](m M) M {
	m.ProtoReflect().SetUnknown(unknownField(9999))
	return m
}

// mustAny packs m, unknown fields included.
func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// wantUnknownError checks that err is the refusal of checkUnknownFields and that its message contains every part of
// want and none of the unknown bytes.
func wantUnknownError(t *testing.T, err error, want ...string) {
	t.Helper()
	var re *requestError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *requestError", err)
	}
	if re.kind != KindInvalidRequest || re.code != codes.InvalidArgument {
		t.Errorf("kind %q code %v, want %q %v", re.kind, re.code, KindInvalidRequest, codes.InvalidArgument)
	}
	for _, w := range want {
		if !strings.Contains(re.msg, w) {
			t.Errorf("error %q does not contain %q", re.msg, w)
		}
	}
	if strings.Contains(re.msg, unknownSecret) {
		t.Errorf("error %q quotes the unknown bytes", re.msg)
	}
}

func TestCheckUnknownFields(t *testing.T) {
	t.Parallel()
	update := func(p *commonpb.Payloads) *workflowservice.RespondWorkflowTaskCompletedRequest {
		return &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: "ns", Messages: []*protocolpb.Message{
			{Id: "m1"},
			{Id: "m2", Body: mustAny(t, &updatepb.Response{Outcome: &updatepb.Outcome{Value: &updatepb.Outcome_Success{Success: p}}})},
		}}
	}
	tests := []struct {
		name string
		msg  proto.Message
		want []string // nil: passes
	}{
		{name: "nil", msg: nil},
		{name: "nil typed message", msg: (*workflowservice.SignalWorkflowExecutionRequest)(nil)},
		{name: "clean", msg: workflowTaskCompletion(3, 8)},
		{
			name: "top level",
			msg:  withUnknown(&workflowservice.TerminateWorkflowExecutionRequest{Namespace: "ns", Reason: "r"}),
			want: []string{"temporal.api.workflowservice.v1.TerminateWorkflowExecutionRequest at the request itself", "field(s) 9999,"},
		},
		{
			name: "several numbers, each once",
			msg: func() proto.Message {
				m := &workflowservice.SignalWorkflowExecutionRequest{}
				m.ProtoReflect().SetUnknown(unknownField(9999, 10000, 9999, 536870911))
				return m
			}(),
			want: []string{"field(s) 9999, 10000, 536870911,"},
		},
		{
			name: "header of a command",
			msg: func() proto.Message {
				m := workflowTaskCompletion(4, 8)
				withUnknown(m.Commands[2].GetScheduleActivityTaskCommandAttributes().Header)
				return m
			}(),
			want: []string{"message temporal.api.common.v1.Header at commands[2].schedule_activity_task_command_attributes.header carries unknown field(s) 9999"},
		},
		{
			name: "command itself",
			msg: func() proto.Message {
				m := workflowTaskCompletion(2, 8)
				withUnknown(m.Commands[1])
				return m
			}(),
			want: []string{"temporal.api.command.v1.Command at commands[1] "},
		},
		{
			name: "external payload details",
			msg: &workflowservice.SignalWorkflowExecutionRequest{Namespace: "ns", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{
				{Data: []byte("a"), ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 1}, withUnknown(&commonpb.Payload_ExternalPayloadDetails{})}},
			}}},
			want: []string{"temporal.api.common.v1.Payload.ExternalPayloadDetails at input.payloads[0].external_payloads[1] "},
		},
		{
			name: "nil payload in a list and a map",
			msg: &workflowservice.StartWorkflowExecutionRequest{
				Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{nil}},
				Memo:  &commonpb.Memo{Fields: map[string]*commonpb.Payload{"nil": nil}},
			},
		},
		{
			name: "search attribute",
			msg: &workflowservice.StartWorkflowExecutionRequest{SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
				"CustomKeywordField": withUnknown(jsonPayload("v")),
			}}},
			want: []string{`temporal.api.common.v1.Payload at search_attributes.indexed_fields["CustomKeywordField"] `},
		},
		{
			name: "payload in payloads",
			msg: &workflowservice.SignalWorkflowExecutionRequest{Namespace: "ns", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{
				jsonPayload("a"), withUnknown(jsonPayload("b")),
			}}},
			want: []string{"temporal.api.common.v1.Payload at input.payloads[1] "},
		},
		{
			name: "memo map value",
			msg: &workflowservice.StartWorkflowExecutionRequest{Namespace: "ns", Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{
				"a": jsonPayload("a"), "tenant": withUnknown(jsonPayload("b")), "z": jsonPayload("z"),
			}}},
			want: []string{`temporal.api.common.v1.Payload at memo.fields["tenant"] `},
		},
		{
			name: "unknown bytes that do not parse",
			msg: func() proto.Message {
				m := &workflowservice.SignalWorkflowExecutionRequest{}
				m.ProtoReflect().SetUnknown([]byte{0xff})
				return m
			}(),
			want: []string{"at the request itself carries unknown bytes that do not parse as fields"},
		},
		{
			name: "map key that looks like an Any segment",
			msg: &workflowservice.StartWorkflowExecutionRequest{Namespace: "ns", Memo: &commonpb.Memo{Fields: map[string]*commonpb.Payload{
				"a.(b": withUnknown(jsonPayload("b")),
			}}},
			want: []string{`at memo.fields["a.(b"] `},
		},
		{
			name: "long map key clipped",
			msg: &workflowservice.StartWorkflowExecutionRequest{Namespace: "ns", Header: &commonpb.Header{Fields: map[string]*commonpb.Payload{
				strings.Repeat("k", 200): withUnknown(jsonPayload("b")),
			}}},
			want: []string{`header.fields["` + strings.Repeat("k", maxQuoted) + `..."]`},
		},
		{
			name: "payload in a failure cause's details",
			msg: &workflowservice.RespondActivityTaskFailedRequest{Namespace: "ns", Failure: &failurepb.Failure{
				Message: "m", Cause: &failurepb.Failure{FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
					Details: &commonpb.Payloads{Payloads: []*commonpb.Payload{withUnknown(jsonPayload("d"))}},
				}}},
			}},
			want: []string{"temporal.api.common.v1.Payload at failure.cause.application_failure_info.details.payloads[0] "},
		},
		{
			name: "inside an Any of an update response",
			msg:  update(&commonpb.Payloads{Payloads: []*commonpb.Payload{withUnknown(jsonPayload("out"))}}),
			want: []string{"temporal.api.common.v1.Payload at messages[1].body(temporal.api.update.v1.Response).outcome.success.payloads[0] "},
		},
		{
			name: "clean Any",
			msg:  update(payloads("out")),
		},
		{
			name: "the packed message itself",
			msg: &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{
				{Body: mustAny(t, withUnknown(&updatepb.Acceptance{AcceptedRequestMessageId: "x"}))},
			}},
			want: []string{"temporal.api.update.v1.Acceptance at messages[0].body(temporal.api.update.v1.Acceptance) carries unknown field(s) 9999"},
		},
		{
			name: "Any of an unknown type",
			msg: &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{
				{Body: &anypb.Any{TypeUrl: "type.googleapis.com/temporal.api.update.v9.Future", Value: []byte(unknownSecret)}},
			}},
			want: []string{`google.protobuf.Any at messages[0].body: embedded message of type "type.googleapis.com/temporal.api.update.v9.Future" is not a type this proxy knows`},
		},
		{
			name: "Any that does not parse",
			msg: &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{
				{Body: &anypb.Any{TypeUrl: "type.googleapis.com/temporal.api.update.v1.Response", Value: []byte{0xff, 0xff, 0xff}}},
			}},
			want: []string{"google.protobuf.Any at messages[0].body: embedded message", "does not parse"},
		},
		{
			name: "empty Any",
			msg:  &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{{Body: &anypb.Any{}}}},
		},
		{
			name: "Any nested too deep",
			msg: func() proto.Message {
				var a proto.Message = &anypb.Any{}
				for range maxAnyNesting + 1 {
					a = mustAny(t, a)
				}
				return &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{{Body: a.(*anypb.Any)}}}
			}(),
			want: []string{"nest more than 32 levels deep"},
		},
		{
			name: "update input in a multi-operation",
			msg: &workflowservice.ExecuteMultiOperationRequest{Namespace: "ns", Operations: []*workflowservice.ExecuteMultiOperationRequest_Operation{
				{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_StartWorkflow{StartWorkflow: &workflowservice.StartWorkflowExecutionRequest{Input: payloads("in")}}},
				{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_UpdateWorkflow{UpdateWorkflow: &workflowservice.UpdateWorkflowExecutionRequest{
					Request: &updatepb.Request{Input: &updatepb.Input{Args: withUnknown(payloads("arg"))}},
				}}},
			}},
			want: []string{"temporal.api.common.v1.Payloads at operations[1].update_workflow.request.input.args "},
		},
		{
			name: "command attributes of another kind",
			msg: &workflowservice.RespondWorkflowTaskCompletedRequest{Commands: []*commandpb.Command{
				{Attributes: &commandpb.Command_RequestCancelExternalWorkflowExecutionCommandAttributes{
					RequestCancelExternalWorkflowExecutionCommandAttributes: withUnknown(&commandpb.RequestCancelExternalWorkflowExecutionCommandAttributes{Reason: "r"}),
				}},
			}},
			want: []string{"at commands[0].request_cancel_external_workflow_execution_command_attributes "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkUnknownFields(tt.msg)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("clean message refused: %v", err)
				}
				return
			}
			wantUnknownError(t, err, tt.want...)
		})
	}
}

// TestCheckUnknownFieldsDynamic: a message of the same type built by dynamicpb (not the generated Go type) is walked
// the same way, Any included.
func TestCheckUnknownFieldsDynamic(t *testing.T) {
	t.Parallel()
	orig := &workflowservice.RespondWorkflowTaskCompletedRequest{Messages: []*protocolpb.Message{
		{Body: mustAny(t, &updatepb.Response{Outcome: &updatepb.Outcome{Value: &updatepb.Outcome_Success{Success: withUnknown(payloads("x"))}}})},
	}}
	b, err := proto.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicpb.NewMessage(orig.ProtoReflect().Descriptor())
	if err := proto.Unmarshal(b, dyn); err != nil {
		t.Fatal(err)
	}
	wantUnknownError(t, checkUnknownFields(dyn), "temporal.api.common.v1.Payloads at messages[0].body(temporal.api.update.v1.Response).outcome.success carries unknown field(s) 9999")
}

// serviceInputs lists the request types of every method of the named services.
func serviceInputs(t *testing.T, services ...protoreflect.FullName) []protoreflect.MessageType {
	t.Helper()
	var out []protoreflect.MessageType
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(methods.Get(i).Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, mt)
		}
	}
	return out
}

// TestCheckUnknownFieldsEveryRequest: for every WorkflowService and OperatorService request type, an unknown field at
// the top level is refused with the type and number named; a clean message passes, empty and filled (every payload
// and failure reachable set, over every oneof variant); and in the filled message an unknown field planted in any one
// message it reaches (outside Any values, which TestCheckUnknownFields covers) is refused with that message's path.
func TestCheckUnknownFieldsEveryRequest(t *testing.T) {
	t.Parallel()
	for _, mt := range serviceInputs(t, workflowServiceName, operatorServiceName) {
		name := string(mt.Descriptor().FullName())
		t.Run(string(mt.Descriptor().Name()), func(t *testing.T) {
			t.Parallel()
			sens := sensitivity{} // not safe for concurrent use
			empty := mt.New()
			if err := checkUnknownFields(empty.Interface()); err != nil {
				t.Fatalf("empty %s refused: %v", name, err)
			}
			empty.SetUnknown(unknownField(9999))
			wantUnknownError(t, checkUnknownFields(empty.Interface()), "message "+name+" at the request itself carries unknown field(s) 9999")

			if !sens.of(mt.Descriptor()) {
				return
			}
			f := &filler{sens: sens, path: map[protoreflect.FullName]int{}, covered: map[protoreflect.FullName]bool{}}
			planted := 0
			for f.variant = 0; f.variant == 0 || f.newHit; f.variant++ {
				f.newHit = false
				m := mt.New()
				f.fill(m)
				if err := checkUnknownFields(m.Interface()); err != nil {
					t.Fatalf("variant %d: filled clean %s refused: %v", f.variant, name, err)
				}
				planted += plantEverywhere(t, m.Interface(), m, nil)
			}
			if planted <= f.variant {
				t.Fatalf("planted unknown fields in %d messages of %d filled %s; the check is blind", planted, f.variant, name)
			}
		})
	}
}

// plantEverywhere sets an unknown field on m (reached from root by path) and on each message below it in turn, checking
// each time that checkUnknownFields names exactly that message and path, and clears it again. It returns how many
// messages it planted in.
func plantEverywhere(t *testing.T, root proto.Message, m protoreflect.Message, path []string) int {
	t.Helper()
	if m.Descriptor().FullName() == anyName {
		return 0
	}
	n := 1
	m.SetUnknown(unknownField(9999))
	where := "the request itself"
	if len(path) > 0 {
		where = strings.Join(path, ".")
	}
	wantUnknownError(t, checkUnknownFields(root), fmt.Sprintf("message %s at %s carries unknown field(s) 9999,", m.Descriptor().FullName(), where))
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				n += plantEverywhere(t, root, v.Message(), append(path, fmt.Sprintf("%s[%q]", fd.Name(), k.String())))
				return true
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			for i := range v.List().Len() {
				n += plantEverywhere(t, root, v.List().Get(i).Message(), append(path, string(fd.Name())+"["+strconv.Itoa(i)+"]"))
			}
		case fd.Message() != nil:
			n += plantEverywhere(t, root, v.Message(), append(path, string(fd.Name())))
		}
		return true
	})
	return n
}

// TestUnknownHotPathsMatchDescriptors: the hot types' Go walk (walkHot) looks at exactly the message fields the
// descriptors have, so an API update that adds one fails here instead of leaving it unchecked.
func TestUnknownHotPathsMatchDescriptors(t *testing.T) {
	t.Parallel()
	want := map[protoreflect.FullName]string{
		"temporal.api.common.v1.Payload":                        "external_payloads",
		"temporal.api.common.v1.Payload.ExternalPayloadDetails": "",
		"temporal.api.common.v1.Payloads":                       "payloads",
		"temporal.api.common.v1.Header":                         "fields",
		"temporal.api.common.v1.Memo":                           "fields",
		"temporal.api.common.v1.SearchAttributes":               "indexed_fields",
	}
	for name := range hotKinds {
		if _, ok := want[name]; !ok {
			t.Errorf("hot type %s has no expectation here", name)
		}
	}
	for name, fields := range want {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, pf := range planFor(mt.Descriptor()).fields {
			got = append(got, string(pf.fd.Name()))
		}
		if strings.Join(got, ",") != fields || len(planFor(mt.Descriptor()).oneofs) > 0 {
			t.Errorf("%s: message fields %v, the hot path walks %q", name, got, fields)
		}
	}
}

// signalRequest is a signal with a 1 KiB argument and a header.
func signalRequest() *workflowservice.SignalWorkflowExecutionRequest {
	return &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:  "default",
		SignalName: "go",
		Input:      payloads(strings.Repeat("s", 1024)),
		Header:     &commonpb.Header{Fields: map[string]*commonpb.Payload{"trace": jsonPayload("abc")}},
	}
}

// BenchmarkCheckUnknownFields measures the common case, a clean request: a workflow task completion with 50 commands,
// and a signal with a 1 KiB argument.
func BenchmarkCheckUnknownFields(b *testing.B) {
	for _, bc := range []struct {
		name string
		msg  proto.Message
	}{
		{"completion-50-commands", workflowTaskCompletion(50, 64)},
		{"signal-1KiB", signalRequest()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := checkUnknownFields(bc.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
