package proxy

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	querypb "go.temporal.io/api/query/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

func signaled(id int64, at time.Time, p *commonpb.Payload) *historypb.HistoryEvent {
	return &historypb.HistoryEvent{
		EventId: id, EventTime: timestamppb.New(at), EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
		Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: "sig", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{p}},
		}},
	}
}

func signalInput(e *historypb.HistoryEvent) *commonpb.Payload {
	return e.GetWorkflowExecutionSignaledEventAttributes().GetInput().GetPayloads()[0]
}

// TestStrictDecodeHistory: in one poll response, a genuine signal opens while plaintext, a forged envelope and one
// sealed for another namespace become refusals naming the field; the response itself succeeds.
func TestStrictDecodeHistory(t *testing.T) {
	t.Parallel()
	t.Run("no policy", func(t *testing.T) { t.Parallel(); testStrictDecodeHistory(t, Config{}) })
	t.Run("policy", func(t *testing.T) {
		t.Parallel()
		store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: {}\n")
		testStrictDecodeHistory(t, Config{Policy: store})
	})
}

func testStrictDecodeHistory(t *testing.T, cfg Config) {
	up := startFakeUpstream(t)
	obs := &countingObserver{}
	cfg.Observer = obs
	p := startProxy(t, up.addr, cfg)
	ctx := context.Background()
	seal := func(ns, s string) *commonpb.Payload {
		out, err := p.codec.Encode(ctx, ns, []*commonpb.Payload{jsonPayload(s)})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	forged := &commonpb.Payload{Metadata: map[string][]byte{
		"encoding": []byte(codec.EncodingEncrypted), codec.MetadataFormat: []byte("2"),
	}, Data: []byte(markerPrefix + "-forged")}
	now := time.Now()
	events := []*historypb.HistoryEvent{
		signaled(1, now, seal("default", "genuine")),
		signaled(2, now, jsonPayload(markerPrefix+"-plaintext")),
		signaled(3, now, forged),
		signaled(4, now, seal("other", markerPrefix+"-foreign")),
		// Search attributes are the payloads the server writes (and indexes) in plaintext: they pass.
		{EventId: 5, EventType: enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, Attributes: &historypb.HistoryEvent_UpsertWorkflowSearchAttributesEventAttributes{
			UpsertWorkflowSearchAttributesEventAttributes: &historypb.UpsertWorkflowSearchAttributesEventAttributes{
				SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"TemporalChangeVersion": jsonPayload("v1")}},
			}}},
	}
	up.on("PollWorkflowTaskQueue", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.PollWorkflowTaskQueueResponse{TaskToken: testToken(t, "wf"), WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "wf"}, History: &historypb.History{Events: events}}, nil
	})
	resp, err := p.wf.PollWorkflowTaskQueue(ctx, &workflowservice.PollWorkflowTaskQueueRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetHistory().GetEvents()
	if !proto.Equal(signalInput(got[0]), jsonPayload("genuine")) {
		t.Errorf("genuine signal: %v", signalInput(got[0]))
	}
	for i, want := range []string{"not sealed", `format version "2"`, "another namespace"} {
		pl := signalInput(got[i+1])
		field, reason, ok := codec.IsRefusal(pl)
		if !ok {
			t.Errorf("event %d: not a refusal: %v", i+2, pl)
			continue
		}
		if field != "WorkflowExecutionSignaledEventAttributes.input[0]" || !strings.Contains(reason, want) {
			t.Errorf("event %d: refusal %q: %q, want the field and %q", i+2, field, reason, want)
		}
		if containsMarker(pl) {
			t.Errorf("event %d: refusal carries bytes of the refused payload", i+2)
		}
		if enc := string(pl.GetMetadata()["encoding"]); !strings.Contains(enc, field) || !strings.Contains(enc, want) {
			t.Errorf("event %d: the encoding, which SDKs print, does not say why: %q", i+2, enc)
		}
	}
	if sa := got[4].GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()["TemporalChangeVersion"]; !proto.Equal(sa, jsonPayload("v1")) {
		t.Errorf("plaintext search attribute: %v", sa)
	}
	if n := obs.errorCount(KindRefused); n != 3 {
		t.Errorf("refused payloads counted %d, want 3", n)
	}
}

// TestStrictDecodeAdoption: with adoption.accept_plaintext_before, plaintext in events recorded before the cut-over
// passes and plaintext after it is refused; with warn_only all plaintext passes, counted.
func TestStrictDecodeAdoption(t *testing.T) {
	t.Parallel()
	cut := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, adoption string
		wantAfter      bool // plaintext after the cut-over passes
	}{
		{"cut-over", "{accept_plaintext_before: " + cut.Format(time.RFC3339) + "}\n    allow_plaintext: true", false},
		{"warn only", "{warn_only: true}\n    allow_plaintext: true", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := startFakeUpstream(t)
			store, _ := policyStore(t, "version: 1\nnamespaces:\n  default:\n    adoption: "+tc.adoption+"\n")
			obs := &countingObserver{}
			p := startProxy(t, up.addr, Config{Policy: store, Observer: obs})
			before, after := jsonPayload("old"), jsonPayload("new")
			up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
				return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{
					signaled(1, cut.Add(-time.Hour), before), signaled(2, cut.Add(time.Hour), after),
				}}}, nil
			})
			resp, err := p.wf.GetWorkflowExecutionHistory(context.Background(), &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			ev := resp.GetHistory().GetEvents()
			if !proto.Equal(signalInput(ev[0]), before) {
				t.Errorf("plaintext before the cut-over: %v", signalInput(ev[0]))
			}
			_, _, refused := codec.IsRefusal(signalInput(ev[1]))
			if refused == tc.wantAfter {
				t.Errorf("plaintext after the cut-over: %v", signalInput(ev[1]))
			}
			if obs.errorCount(KindPlaintextAdopted) == 0 {
				t.Error("accepted plaintext not counted")
			}
		})
	}
}

// TestClientEnvelopeVerified: a payload a client labels as an envelope is authenticated before it is forwarded: a
// genuine one passes unchanged, a fake or foreign one is refused with InvalidArgument and nothing is forwarded.
func TestClientEnvelopeVerified(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	up.on("SignalWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	genuine, err := p.codec.Encode(ctx, "default", []*commonpb.Payload{jsonPayload("sealed by an SDK plugin")})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := p.codec.Encode(ctx, "other", []*commonpb.Payload{jsonPayload(markerPrefix)})
	if err != nil {
		t.Fatal(err)
	}
	keyID, _ := codec.KeyID(genuine[0])
	fake := &commonpb.Payload{Metadata: map[string][]byte{
		"encoding": []byte(codec.EncodingEncrypted), codec.MetadataFormat: []byte(codec.FormatV1),
		codec.MetadataKeyID: []byte(keyID), codec.MetadataNamespace: []byte("default"),
	}, Data: []byte(markerPrefix + "-stored-in-plaintext-under-a-label-padding")}
	signal := func(pl *commonpb.Payload) error {
		_, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
			Namespace: "default", SignalName: "s", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{pl}},
		})
		return err
	}
	if err := signal(genuine[0]); err != nil {
		t.Fatal(err)
	}
	if got := up.last(t, "SignalWorkflowExecution").req.(*workflowservice.SignalWorkflowExecutionRequest); !proto.Equal(got.GetInput().GetPayloads()[0], genuine[0]) {
		t.Error("a genuine envelope was changed on the way")
	}
	for name, pl := range map[string]*commonpb.Payload{"fake": fake, "foreign": foreign[0]} {
		before := len(up.received())
		st := wantCode(t, signal(pl), codes.InvalidArgument)
		if !strings.Contains(st.Message(), "SignalWorkflowExecutionRequest.input[0]") || strings.Contains(st.Message(), markerPrefix) {
			t.Errorf("%s: message %q", name, st.Message())
		}
		if len(up.received()) != before {
			t.Errorf("%s: forwarded", name)
		}
	}
}

// TestFailureTransparency: what a client reads back is what it wrote — a failure it encoded itself stays encoded (the
// proxy restores only what it sealed), and one the proxy encoded comes back as text, nested causes included.
func TestFailureTransparency(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	var stored []*failurepb.Failure
	up.on("RespondActivityTaskFailed", func(_ context.Context, req proto.Message) (proto.Message, error) {
		stored = append(stored, req.(*workflowservice.RespondActivityTaskFailedRequest).GetFailure())
		return &workflowservice.RespondActivityTaskFailedResponse{}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	sdkEncoded := &failurepb.Failure{Message: "Encoded failure", EncodedAttributes: &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`{"message":"` + markerPrefix + `-sdk","stack_trace":"` + markerPrefix + `-sdk-stack"}`),
	}, Cause: &failurepb.Failure{Message: markerPrefix + "-proxy-cause", StackTrace: "s"}}
	proxyEncoded := &failurepb.Failure{Message: markerPrefix + "-outer", Cause: proto.Clone(sdkEncoded).(*failurepb.Failure)}
	for _, f := range []*failurepb.Failure{sdkEncoded, proxyEncoded} {
		if _, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{
			Namespace: "default", Failure: proto.Clone(f).(*failurepb.Failure),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range stored {
		if containsMarker(f) {
			t.Fatal("failure text reached the upstream")
		}
	}
	up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
		var events []*historypb.HistoryEvent
		for i, f := range stored {
			events = append(events, &historypb.HistoryEvent{EventId: int64(i + 1), Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{
				ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{Failure: f}}})
		}
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: events}}, nil
	})
	resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*failurepb.Failure{sdkEncoded, proxyEncoded} {
		got := resp.GetHistory().GetEvents()[i].GetActivityTaskFailedEventAttributes().GetFailure()
		if !proto.Equal(got, want) {
			t.Errorf("failure %d read back:\n got %v\nwant %v", i, got, want)
		}
	}
}

// TestQueryErrorText: a failed query's text leaves only inside the sealed failure (one is built when the SDK sent just
// the string), and the query's caller gets the original message back.
func TestQueryErrorText(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	var answered *workflowservice.RespondQueryTaskCompletedRequest
	up.on("RespondQueryTaskCompleted", func(_ context.Context, req proto.Message) (proto.Message, error) {
		answered = req.(*workflowservice.RespondQueryTaskCompletedRequest)
		return &workflowservice.RespondQueryTaskCompletedResponse{}, nil
	})
	up.on("RespondWorkflowTaskCompleted", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.RespondWorkflowTaskCompletedResponse{}, nil
	})
	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		return nil, serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure(answered.GetErrorMessage(), answered.GetFailure())).Err()
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	const text = markerPrefix + "-query-error"
	for name, f := range map[string]*failurepb.Failure{
		"string only (workflow panic)": nil,
		"with the SDK's failure":       {Message: text, StackTrace: markerPrefix + "-stack"},
	} {
		if _, err := p.wf.RespondQueryTaskCompleted(ctx, &workflowservice.RespondQueryTaskCompletedRequest{
			Namespace: "default", CompletedType: enumspb.QUERY_RESULT_TYPE_FAILED, ErrorMessage: text, Failure: f,
		}); err != nil {
			t.Fatal(err)
		}
		if containsMarker(answered) || answered.GetErrorMessage() != encodedFailureMessage || !codec.IsEncrypted(answered.GetFailure().GetEncodedAttributes()) {
			t.Fatalf("%s: upstream got %v", name, answered)
		}
		_, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default", Query: &querypb.WorkflowQuery{QueryType: "q"}})
		st := wantCode(t, err, codes.InvalidArgument) // QueryFailed
		if st.Message() != text {
			t.Errorf("%s: caller got message %q, want the handler's text", name, st.Message())
		}
	}
	req := &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: "default", QueryResults: map[string]*querypb.WorkflowQueryResult{
		"q1": {ResultType: enumspb.QUERY_RESULT_TYPE_FAILED, ErrorMessage: text},
	}}
	if _, err := p.wf.RespondWorkflowTaskCompleted(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := up.last(t, "RespondWorkflowTaskCompleted").req; containsMarker(got) {
		t.Fatal("query result error text reached the upstream in a workflow task completion")
	}
}

// TestLegacyNexusFailureSealed: a legacy Nexus failure (text, and a whole Temporal failure as JSON details) leaves
// in the form the server reads back, with nothing readable, and reaches the caller's workflow restored.
func TestLegacyNexusFailureSealed(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	up.on("RespondNexusTaskFailed", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.RespondNexusTaskFailedResponse{}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	inner := &failurepb.Failure{StackTrace: markerPrefix + "-stack", FailureInfo: &failurepb.Failure_ApplicationFailureInfo{
		ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{Type: "T", Details: payloads(markerPrefix + "-details")}}}
	details, err := protojson.Marshal(inner)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*nexuspb.Failure{
		"temporal failure": {Message: markerPrefix + "-message", Metadata: map[string]string{"type": temporalFailureType}, Details: details},
		"unknown type":     {Message: markerPrefix + "-m", Metadata: map[string]string{"type": "x"}, Details: []byte(`{"secret":"` + markerPrefix + `"}`)},
		"handler error":    {Message: markerPrefix + "-h", Metadata: map[string]string{"type": "nexus.HandlerError"}, Details: []byte(`{"type":"INTERNAL"}`)},
	} {
		if _, err := p.wf.RespondNexusTaskFailed(ctx, &workflowservice.RespondNexusTaskFailedRequest{
			Namespace: "default", Error: &nexuspb.HandlerError{ErrorType: "INTERNAL", Failure: f},
		}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := up.last(t, "RespondNexusTaskFailed").req.(*workflowservice.RespondNexusTaskFailedRequest).GetError().GetFailure()
		if containsMarker(got) || strings.Contains(string(got.GetDetails()), markerPrefix) {
			t.Fatalf("%s: the upstream can read %v", name, got)
		}
		// As the server reads it: a Temporal failure, which the caller's workflow history then holds.
		var tf failurepb.Failure
		if got.GetMetadata()["type"] != temporalFailureType || protojson.Unmarshal(got.GetDetails(), &tf) != nil {
			t.Fatalf("%s: not in the Temporal-failure form: %v", name, got)
		}
		tf.Message = got.GetMessage()
		up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
			return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
				EventId: 1, Attributes: &historypb.HistoryEvent_NexusOperationFailedEventAttributes{NexusOperationFailedEventAttributes: &historypb.NexusOperationFailedEventAttributes{
					Failure: &failurepb.Failure{Message: "nexus operation completed unsuccessfully", Cause: &tf}}},
			}}}}, nil
		})
		resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		cause := resp.GetHistory().GetEvents()[0].GetNexusOperationFailedEventAttributes().GetFailure().GetCause()
		if cause.GetMessage() != f.GetMessage() {
			t.Errorf("%s: caller reads message %q, want %q", name, cause.GetMessage(), f.GetMessage())
		}
	}
}

// TestTextAndUnknownFieldsWired: through the running proxy, a terminate reason leaves sealed and comes back opened in
// the history, and a request with an unknown field is refused before anything is forwarded.
func TestTextAndUnknownFieldsWired(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	var reason string
	up.on("TerminateWorkflowExecution", func(_ context.Context, req proto.Message) (proto.Message, error) {
		reason = req.(*workflowservice.TerminateWorkflowExecutionRequest).GetReason()
		return &workflowservice.TerminateWorkflowExecutionResponse{}, nil
	})
	up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
			EventId: 1, Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{
				WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{Reason: reason}},
		}}}}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	const text = markerPrefix + "-terminate-reason"
	if _, err := p.wf.TerminateWorkflowExecution(ctx, &workflowservice.TerminateWorkflowExecutionRequest{Namespace: "default", Reason: text}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(reason, markerPrefix) || !strings.HasPrefix(reason, sealedTextPrefix) {
		t.Fatalf("upstream got reason %q", reason)
	}
	resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetHistory().GetEvents()[0].GetWorkflowExecutionTerminatedEventAttributes().GetReason(); got != text {
		t.Fatalf("reason read back %q", got)
	}

	req := &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", SignalName: "s", Input: payloads("x")}
	req.GetInput().GetPayloads()[0].ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 9999, protowire.BytesType), []byte(markerPrefix)))
	before := len(up.received())
	_, err = p.wf.SignalWorkflowExecution(ctx, req)
	st := wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(st.Message(), "9999") || strings.Contains(st.Message(), markerPrefix) {
		t.Errorf("unknown field refusal: %q", st.Message())
	}
	if len(up.received()) != before {
		t.Error("a request with an unknown field was forwarded")
	}
}

// TestDecompressionBudgetPerResponse: a history of small zstd bombs expands to at most the codec's total cap per
// response; the bombs past it are refused, and the response still flows.
func TestDecompressionBudgetPerResponse(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c, err := codec.New(kr, codec.WithCompression(0), codec.WithMaxDecodedTotal(32<<20))
	if err != nil {
		t.Fatal(err)
	}
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{Codec: c})
	ctx := context.Background()
	bomb, err := c.Encode(ctx, "default", []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: make([]byte, 8<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb[0].GetData()) > 64<<10 {
		t.Fatalf("the bomb is %d bytes sealed: not compressed", len(bomb[0].GetData()))
	}
	var events []*historypb.HistoryEvent
	for i := range 8 {
		events = append(events, signaled(int64(i+1), time.Now(), bomb[0]))
	}
	up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: events}}, nil
	})
	resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"},
		grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	opened, refused := 0, 0
	for _, e := range resp.GetHistory().GetEvents() {
		if _, reason, ok := codec.IsRefusal(signalInput(e)); ok {
			refused++
			if !strings.Contains(reason, "too large") {
				t.Errorf("refusal reason %q", reason)
			}
			continue
		}
		opened++
	}
	if refused == 0 || opened*8 > 32 {
		t.Fatalf("opened %d bombs of 8 MiB under a 32 MiB cap, refused %d", opened, refused)
	}
}

// TestRejectModeErrorDetailsStrict: in reject mode the proxy opens nothing, but plaintext the backend puts in an
// error status's details is still refused.
func TestRejectModeErrorDetailsStrict(t *testing.T) {
	t.Parallel()
	up := startFakeUpstream(t)
	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		return nil, serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure("q", &failurepb.Failure{
			Message: "Encoded failure", EncodedAttributes: jsonPayload(`{"message":"forged by the backend"}`),
		})).Err()
	})
	store, _ := policyStore(t, "version: 1\nnamespaces:\n  default: {plaintext_from_sdk: reject}\n")
	p := startProxy(t, up.addr, Config{Policy: store})
	_, err := p.wf.QueryWorkflow(context.Background(), &workflowservice.QueryWorkflowRequest{Namespace: "default", Query: &querypb.WorkflowQuery{QueryType: "q"}})
	qf, ok := serviceerror.FromStatus(status.Convert(err)).(*serviceerror.QueryFailed)
	if !ok || qf.Failure == nil {
		t.Fatalf("query: %v", err)
	}
	if _, _, refused := codec.IsRefusal(qf.Failure.GetEncodedAttributes()); !refused {
		t.Errorf("plaintext in an error detail reached the caller in reject mode: %v", qf.Failure.GetEncodedAttributes())
	}
}

// TestDecompressionBudgetCoversTexts: sealed texts share the response's decompression budget with its payloads: a
// small compressed reason copied into many events expands at most to the cap, the copies past it are refused.
func TestDecompressionBudgetCoversTexts(t *testing.T) {
	t.Parallel()
	c, err := codec.New(codectest.NewKeyring(), codec.WithCompression(0), codec.WithMaxDecodedTotal(32<<20))
	if err != nil {
		t.Fatal(err)
	}
	req := &workflowservice.TerminateWorkflowExecutionRequest{Namespace: "default", Reason: strings.Repeat("a", 8<<20)}
	if err := sealTexts(context.Background(), c, codec.Target{Namespace: "default"}, req); err != nil {
		t.Fatal(err)
	}
	if len(req.GetReason()) > 64<<10 {
		t.Fatalf("the sealed reason is %d bytes: not compressed", len(req.GetReason()))
	}
	var events []*historypb.HistoryEvent
	for i := range 8 {
		events = append(events, &historypb.HistoryEvent{EventId: int64(i + 1), Attributes: &historypb.HistoryEvent_WorkflowExecutionTerminatedEventAttributes{
			WorkflowExecutionTerminatedEventAttributes: &historypb.WorkflowExecutionTerminatedEventAttributes{Reason: req.GetReason()}}})
	}
	resp := &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: events}}
	tr := &transformer{codec: c, log: slog.New(slog.DiscardHandler)}
	if err := tr.decodeResponse(context.Background(), "default", resp); err != nil {
		t.Fatal(err)
	}
	opened := 0
	for _, e := range resp.GetHistory().GetEvents() {
		if len(e.GetWorkflowExecutionTerminatedEventAttributes().GetReason()) == 8<<20 {
			opened++
		}
	}
	if opened == 0 || opened*8 > 32 {
		t.Fatalf("opened %d reasons of 8 MiB under a 32 MiB cap", opened)
	}
}
