package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/errordetails/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	"go.temporal.io/api/operatorservice/v1"
	protocolpb "go.temporal.io/api/protocol/v1"
	querypb "go.temporal.io/api/query/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/testenv"
)

func jsonPayload(s string) *commonpb.Payload {
	return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"` + s + `"`)}
}

func payloads(ss ...string) *commonpb.Payloads {
	out := &commonpb.Payloads{}
	for _, s := range ss {
		out.Payloads = append(out.Payloads, jsonPayload(s))
	}
	return out
}

// TestQueryRoundTrip: a query's arguments leave the proxy encrypted (upstream sees no marker, only envelopes), and
// the result, which the fake upstream echoes from the ciphertext it received, comes back decrypted.
func TestQueryRoundTrip(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("QueryWorkflow", func(_ context.Context, req proto.Message) (proto.Message, error) {
		return &workflowservice.QueryWorkflowResponse{QueryResult: req.(*workflowservice.QueryWorkflowRequest).GetQuery().GetQueryArgs()}, nil
	})
	p := startProxy(t, up.addr, Config{})
	req := &workflowservice.QueryWorkflowRequest{
		Namespace: "default",
		Query: &querypb.WorkflowQuery{
			QueryType: "state",
			QueryArgs: payloads(markerPrefix+"-arg1", markerPrefix+"-arg2"),
			Header:    &commonpb.Header{Fields: map[string]*commonpb.Payload{"h": jsonPayload(markerPrefix + "-header")}},
		},
	}
	resp, err := p.wf.QueryWorkflow(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := up.last(t, "QueryWorkflow").req.(*workflowservice.QueryWorkflowRequest)
	if containsMarker(got) {
		t.Fatal("upstream received a marker in plaintext")
	}
	for _, pl := range got.GetQuery().GetQueryArgs().GetPayloads() {
		if !codec.IsEncrypted(pl) {
			t.Fatalf("upstream received a payload that is not a Blindfold envelope: %v", pl.GetMetadata())
		}
	}
	if !proto.Equal(resp.GetQueryResult(), req.GetQuery().GetQueryArgs()) {
		t.Fatalf("query result not decrypted: %v", resp.GetQueryResult())
	}
}

// TestFailureTextEncrypted: a failure's message and stack trace leave the proxy inside encrypted encoded attributes
// (visible message "Encoded failure"), and come back restored with the attributes cleared.
func TestFailureTextEncrypted(t *testing.T) {
	up := startFakeUpstream(t)
	var stored *failurepb.Failure
	up.on("RespondActivityTaskFailed", func(_ context.Context, req proto.Message) (proto.Message, error) {
		stored = req.(*workflowservice.RespondActivityTaskFailedRequest).GetFailure()
		return &workflowservice.RespondActivityTaskFailedResponse{}, nil
	})
	up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetWorkflowExecutionHistoryResponse{History: &historypb.History{Events: []*historypb.HistoryEvent{{
			EventId:   7,
			EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED,
			Attributes: &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{
				Failure: stored,
			}},
		}}}}, nil
	})
	p := startProxy(t, up.addr, Config{})
	orig := &failurepb.Failure{
		Message:    markerPrefix + "-message",
		StackTrace: markerPrefix + "-stack",
		FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
			Type: "MyError", Details: payloads(markerPrefix + "-details"),
		}},
		Cause: &failurepb.Failure{Message: markerPrefix + "-cause"},
	}
	ctx := context.Background()
	if _, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{
		Namespace: "default", TaskToken: testToken(t, "wf"), Failure: orig,
	}); err != nil {
		t.Fatal(err)
	}
	if containsMarker(stored) {
		t.Fatal("upstream received failure text in plaintext")
	}
	if stored.GetMessage() != "Encoded failure" || stored.GetStackTrace() != "" || !codec.IsEncrypted(stored.GetEncodedAttributes()) {
		t.Fatalf("upstream failure not in the encoded-attributes convention: message %q, attributes %v", stored.GetMessage(), stored.GetEncodedAttributes().GetMetadata())
	}
	if stored.GetCause().GetMessage() != "Encoded failure" {
		t.Fatalf("cause not encoded: %q", stored.GetCause().GetMessage())
	}
	if stored.GetApplicationFailureInfo().GetType() != "MyError" {
		t.Fatal("failure type should stay visible")
	}

	resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: "wf"}})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetHistory().GetEvents()[0].GetActivityTaskFailedEventAttributes().GetFailure()
	if !proto.Equal(got, orig) {
		t.Fatalf("failure not restored exactly:\n got %v\nwant %v", got, orig)
	}
}

// TestSDKEncodedFailure: a failure an SDK already encoded (message "Encoded failure", attributes set) is not encoded
// again, but its attributes are encrypted; a failure with both text and attributes is refused.
func TestSDKEncodedFailure(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("RespondActivityTaskFailed", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.RespondActivityTaskFailedResponse{}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	attrs := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data: []byte(`{"message":"` + markerPrefix + `-m","stack_trace":""}`)}
	if _, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{
		Namespace: "default", Failure: &failurepb.Failure{Message: "Encoded failure", EncodedAttributes: attrs},
	}); err != nil {
		t.Fatal(err)
	}
	got := up.last(t, "RespondActivityTaskFailed").req.(*workflowservice.RespondActivityTaskFailedRequest).GetFailure()
	if containsMarker(got) || !codec.IsEncrypted(got.GetEncodedAttributes()) || got.GetMessage() != "Encoded failure" {
		t.Fatalf("SDK-encoded failure not handled: %v", got)
	}

	before := len(up.received())
	_, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{
		Namespace: "default", Failure: &failurepb.Failure{Message: markerPrefix + "-both", EncodedAttributes: attrs},
	})
	st := wantCode(t, err, codes.InvalidArgument)
	if strings.Contains(st.Message(), markerPrefix) {
		t.Fatalf("error message contains payload text: %q", st.Message())
	}
	if len(up.received()) != before {
		t.Fatal("a refused request was forwarded")
	}
}

// TestErrorDetailsDecoded: failures and payloads inside gRPC error details (QueryFailedFailure,
// MultiOperationExecutionFailure) are decrypted on the way back.
func TestErrorDetailsDecoded(t *testing.T) {
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()

	// Let the proxy encrypt a failure, then have the upstream return it inside error details.
	var sealed *failurepb.Failure
	up.on("RespondQueryTaskCompleted", func(_ context.Context, req proto.Message) (proto.Message, error) {
		sealed = req.(*workflowservice.RespondQueryTaskCompletedRequest).GetFailure()
		return &workflowservice.RespondQueryTaskCompletedResponse{}, nil
	})
	orig := &failurepb.Failure{Message: markerPrefix + "-query-failed", StackTrace: markerPrefix + "-stack",
		FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{Details: payloads(markerPrefix + "-d")}}}
	if _, err := p.wf.RespondQueryTaskCompleted(ctx, &workflowservice.RespondQueryTaskCompletedRequest{
		Namespace: "default", CompletedType: enumspb.QUERY_RESULT_TYPE_FAILED, Failure: proto.Clone(orig).(*failurepb.Failure),
	}); err != nil {
		t.Fatal(err)
	}
	if containsMarker(sealed) {
		t.Fatal("query failure forwarded in plaintext")
	}

	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		st, err := status.New(codes.InvalidArgument, "query failed").WithDetails(&errordetails.QueryFailedFailure{Failure: sealed})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	})
	_, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default", Query: &querypb.WorkflowQuery{QueryType: "q"}})
	st := wantCode(t, err, codes.InvalidArgument)
	if len(st.Details()) != 1 {
		t.Fatalf("details: %v", st.Details())
	}
	qf, ok := st.Details()[0].(*errordetails.QueryFailedFailure)
	if !ok || !proto.Equal(qf.GetFailure(), orig) {
		t.Fatalf("query failure not restored: %v", st.Details()[0])
	}

	// MultiOperationExecutionFailure nests statuses whose details are Anys. Its failure is one sealed for the
	// operations' workflow.
	up.on("RespondActivityTaskFailed", func(_ context.Context, req proto.Message) (proto.Message, error) {
		sealed = req.(*workflowservice.RespondActivityTaskFailedRequest).GetFailure()
		return &workflowservice.RespondActivityTaskFailedResponse{}, nil
	})
	if _, err := p.wf.RespondActivityTaskFailed(ctx, &workflowservice.RespondActivityTaskFailedRequest{
		Namespace: "default", TaskToken: testToken(t, "wf"), Failure: proto.Clone(orig).(*failurepb.Failure),
	}); err != nil {
		t.Fatal(err)
	}
	inner, err := anypb.New(&errordetails.QueryFailedFailure{Failure: sealed})
	if err != nil {
		t.Fatal(err)
	}
	up.on("ExecuteMultiOperation", func(context.Context, proto.Message) (proto.Message, error) {
		st, err := status.New(codes.Aborted, "multi failed").WithDetails(&errordetails.MultiOperationExecutionFailure{
			Statuses: []*errordetails.MultiOperationExecutionFailure_OperationStatus{{Code: int32(codes.Aborted), Details: []*anypb.Any{inner}}},
		})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	})
	_, err = p.wf.ExecuteMultiOperation(ctx, &workflowservice.ExecuteMultiOperationRequest{Namespace: "default", Operations: []*workflowservice.ExecuteMultiOperationRequest_Operation{
		{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_StartWorkflow{StartWorkflow: &workflowservice.StartWorkflowExecutionRequest{Namespace: "default", WorkflowId: "wf", RequestId: "r"}}},
	}})
	st = wantCode(t, err, codes.Aborted)
	mf, ok := st.Details()[0].(*errordetails.MultiOperationExecutionFailure)
	if !ok {
		t.Fatalf("details: %v", st.Details())
	}
	var got errordetails.QueryFailedFailure
	if err := mf.GetStatuses()[0].GetDetails()[0].UnmarshalTo(&got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetFailure(), orig) {
		t.Fatalf("nested failure not restored: %v", got.GetFailure())
	}
}

// TestUpstreamDown: with nothing listening upstream, calls fail with UNAVAILABLE well before their deadline.
func TestUpstreamDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	p := startProxy(t, dead, Config{})
	for i := 0; i < 2; i++ { // first call connects, second finds the channel in transient failure
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", Input: payloads("x")})
		cancel()
		wantCode(t, err, codes.Unavailable)
	}
}

// TestUndecryptablePayloads: a payload sealed under a shredded key, a key the proxy never had, or tampered with, fails
// the call with a clear status naming the key; the proxy keeps serving.
func TestUndecryptablePayloads(t *testing.T) {
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()

	sealWith := func(c *codec.Codec, ns string) *commonpb.Payload {
		out, err := c.Encode(ctx, ns, []*commonpb.Payload{jsonPayload(markerPrefix + "-secret")})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	var answer *commonpb.Payload
	up.on("QueryWorkflow", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.QueryWorkflowResponse{QueryResult: &commonpb.Payloads{Payloads: []*commonpb.Payload{answer}}}, nil
	})
	// Strict decode: the call succeeds, and the value the caller gets is a refusal that names the field and why.
	refusal := func() string {
		t.Helper()
		resp, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default", Query: &querypb.WorkflowQuery{QueryType: "q"}})
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		got := resp.GetQueryResult().GetPayloads()[0]
		field, reason, ok := codec.IsRefusal(got)
		if !ok {
			t.Fatalf("query result is not a refusal: %v", got)
		}
		if field != "QueryWorkflowResponse.query_result[0]" {
			t.Errorf("refusal names field %q", field)
		}
		if b, _ := proto.Marshal(got); bytes.Contains(b, []byte(markerPrefix)) || bytes.Contains(b, answer.GetData()) {
			t.Fatal("refusal carries bytes of the refused payload")
		}
		return reason
	}

	otherCodec, _ := newTestCodec(t)
	answer = sealWith(otherCodec, "default")
	unknownID, _ := codec.KeyID(answer)
	if r := refusal(); !strings.Contains(r, unknownID) || !strings.Contains(r, "unknown key") {
		t.Fatalf("reason should name the unknown key %q: %q", unknownID, r)
	}

	answer = sealWith(p.codec, "default")
	tampered := proto.Clone(answer).(*commonpb.Payload)
	tampered.Data[len(tampered.Data)-1] ^= 1
	answer = tampered
	if r := refusal(); !strings.Contains(r, "authentication failed") {
		t.Fatalf("reason for a tampered payload: %q", r)
	}

	answer = jsonPayload(markerPrefix + "-injected")
	if r := refusal(); !strings.Contains(r, "not sealed") {
		t.Fatalf("reason for plaintext: %q", r)
	}

	// A payload sealed for another namespace does not open here (format v2 does not say which one: the namespace
	// is in the associated data only).
	answer = sealWith(p.codec, "other")
	if r := refusal(); !strings.Contains(r, "another namespace") {
		t.Fatalf("reason for a foreign payload: %q", r)
	}

	answer = sealWith(p.codec, "default")
	shreddedID, _ := codec.KeyIDIn(answer, "default")
	p.keys.Destroy("default")
	if r := refusal(); !strings.Contains(r, shreddedID) || !strings.Contains(r, "destroyed") {
		t.Fatalf("reason should name the shredded key %q: %q", shreddedID, r)
	}

	// Encoding for a shredded namespace fails closed: nothing is forwarded.
	before := len(up.received())
	_, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default", Input: payloads(markerPrefix)})
	wantCode(t, err, codes.FailedPrecondition)
	if len(up.received()) != before {
		t.Fatal("a request that could not be encrypted was forwarded")
	}

}

// rawCodec sends bytes as they are, to put malformed messages on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// TestMalformedRequests: bytes that are not a request, an embedded message of unknown type, and payloads without a
// namespace are refused with a clear status, and nothing reaches the upstream.
func TestMalformedRequests(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("RespondWorkflowTaskCompleted", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.RespondWorkflowTaskCompletedResponse{}, nil
	})
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()

	garbage := []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}
	var out []byte
	err := p.conn.Invoke(ctx, workflowServicePath+"SignalWorkflowExecution", &garbage, &out, grpc.ForceCodec(rawCodec{}))
	if code := status.Code(err); code != codes.Internal && code != codes.InvalidArgument {
		t.Fatalf("garbage request: got %v", err)
	}

	_, err = p.wf.RespondWorkflowTaskCompleted(ctx, &workflowservice.RespondWorkflowTaskCompletedRequest{
		Namespace: "default",
		Messages:  []*protocolpb.Message{{Id: "m", Body: &anypb.Any{TypeUrl: "type.googleapis.com/not.a.Known", Value: []byte(markerPrefix)}}},
	})
	st := wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(st.Message(), "not.a.Known") {
		t.Fatalf("message should name the type: %q", st.Message())
	}

	_, err = p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Input: payloads(markerPrefix)})
	wantCode(t, err, codes.InvalidArgument)

	_, err = p.wf.ExecuteMultiOperation(ctx, &workflowservice.ExecuteMultiOperationRequest{Namespace: "default",
		Operations: []*workflowservice.ExecuteMultiOperationRequest_Operation{{Operation: &workflowservice.ExecuteMultiOperationRequest_Operation_StartWorkflow{
			StartWorkflow: &workflowservice.StartWorkflowExecutionRequest{Namespace: "other", Input: payloads(markerPrefix)}}}}})
	wantCode(t, err, codes.InvalidArgument)

	if n := len(up.received()); n != 0 {
		t.Fatalf("upstream received %d malformed requests", n)
	}

	// The proxy still serves.
	if _, err := p.wf.RespondWorkflowTaskCompleted(ctx, &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: "default"}); err != nil {
		t.Fatal(err)
	}
}

// TestNamespaceAllowlist: calls for other namespaces are denied before forwarding; namespace-less calls pass; the
// namespace list is filtered.
func TestNamespaceAllowlist(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("GetSystemInfo", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetSystemInfoResponse{ServerVersion: "x"}, nil
	})
	up.on("ListNamespaces", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.ListNamespacesResponse{Namespaces: []*workflowservice.DescribeNamespaceResponse{
			{NamespaceInfo: &namespacepb.NamespaceInfo{Name: "allowed"}}, {NamespaceInfo: &namespacepb.NamespaceInfo{Name: "secret"}},
		}}, nil
	})
	up.on("SignalWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	})
	obs := &countingObserver{}
	p := startProxy(t, up.addr, Config{AllowedNamespaces: []string{"allowed"}, Observer: obs})
	ctx := context.Background()

	for _, ns := range []string{"secret", ""} {
		_, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: ns, Input: payloads("x")})
		wantCode(t, err, codes.PermissionDenied)
	}
	_, err := p.op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "secret"})
	wantCode(t, err, codes.PermissionDenied)
	if n := len(up.received()); n != 0 {
		t.Fatalf("upstream received %d denied requests", n)
	}
	if obs.errorCount(KindNamespaceDenied) != 3 {
		t.Fatalf("observer saw %v", obs.errors)
	}
	if _, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "allowed", Input: payloads("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.wf.GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	ls, err := p.wf.ListNamespaces(ctx, &workflowservice.ListNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.GetNamespaces()) != 1 || ls.GetNamespaces()[0].GetNamespaceInfo().GetName() != "allowed" {
		t.Fatalf("namespace list not filtered: %v", ls.GetNamespaces())
	}
}

// TestHeaders: the proxy's API key replaces the caller's authorization; the namespace header comes from the request;
// other caller headers are forwarded.
func TestHeaders(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("SignalWorkflowExecution", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	})
	p := startProxy(t, "127.0.0.1:"+strings.Split(up.addr, ":")[1], Config{APIKey: "proxy-key", AllowAPIKeyWithoutTLS: true})
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer caller-key", "temporal-namespace", "spoofed", "client-name", "temporal-go")
	if _, err := p.wf.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{Namespace: "default"}); err != nil {
		t.Fatal(err)
	}
	md := up.last(t, "SignalWorkflowExecution").md
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer proxy-key" {
		t.Fatalf("authorization upstream: %q", got)
	}
	if got := md.Get("temporal-namespace"); len(got) != 1 || got[0] != "default" {
		t.Fatalf("temporal-namespace upstream: %q", got)
	}
	if got := md.Get("client-name"); len(got) != 1 || got[0] != "temporal-go" {
		t.Fatalf("client-name upstream: %q", got)
	}
}

func TestConfigValidation(t *testing.T) {
	c, _ := newTestCodec(t)
	for name, cfg := range map[string]Config{
		"no upstream":               {Codec: c},
		"no codec":                  {Upstream: "127.0.0.1:7233"},
		"api key without tls":       {Upstream: "127.0.0.1:7233", Codec: c, APIKey: "k"},
		"api key plaintext remote":  {Upstream: "temporal.example.com:7233", Codec: c, APIKey: "k", AllowAPIKeyWithoutTLS: true},
		"empty allowlist entry":     {Upstream: "127.0.0.1:7233", Codec: c, AllowedNamespaces: []string{""}},
		"negative message size cap": {Upstream: "127.0.0.1:7233", Codec: c, MaxRecvMsgSize: -1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	s, err := New(Config{Upstream: "temporal.example.com:7233", Codec: c, APIKey: "k", UpstreamTLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Shutdown(context.Background())
}

// TestOperatorServicePassthrough: OperatorService calls are forwarded unchanged (a Nexus endpoint description stays as
// sent), with the namespace header set and the allowlist applied.
func TestOperatorServicePassthrough(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("operator/CreateNexusEndpoint", func(_ context.Context, req proto.Message) (proto.Message, error) {
		return &operatorservice.CreateNexusEndpointResponse{Endpoint: &nexuspb.Endpoint{Spec: req.(*operatorservice.CreateNexusEndpointRequest).GetSpec()}}, nil
	})
	p := startProxy(t, up.addr, Config{})
	spec := &nexuspb.EndpointSpec{Name: "ep", Description: jsonPayload("docs")}
	resp, err := p.op.CreateNexusEndpoint(context.Background(), &operatorservice.CreateNexusEndpointRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.GetEndpoint().GetSpec(), spec) {
		t.Fatalf("spec changed: %v", resp.GetEndpoint().GetSpec())
	}
	if got := up.last(t, "operator/CreateNexusEndpoint").req.(*operatorservice.CreateNexusEndpointRequest); !proto.Equal(got.GetSpec(), spec) {
		t.Fatalf("upstream got %v", got.GetSpec())
	}
	_, err = p.op.ListSearchAttributes(context.Background(), &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	wantCode(t, err, codes.Unimplemented) // the fake upstream's answer, forwarded
}

// TestHealthAndUnknownServices: health is answered by the proxy itself; unknown services are Unimplemented.
func TestHealthAndUnknownServices(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	p := startProxy(t, dead, Config{})
	hc := healthpb.NewHealthClient(p.conn)
	for _, svc := range []string{"", workflowServiceName} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%q: %v", svc, resp.GetStatus())
		}
	}
	var out healthpb.HealthCheckResponse
	err = p.conn.Invoke(context.Background(), "/not.a.Service/Method", &healthpb.HealthCheckRequest{}, &out)
	wantCode(t, err, codes.Unimplemented)
}

// TestMessageSizeLimit: requests above MaxRecvMsgSize are refused.
func TestMessageSizeLimit(t *testing.T) {
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{MaxRecvMsgSize: 64 << 10})
	_, err := p.wf.SignalWorkflowExecution(context.Background(), &workflowservice.SignalWorkflowExecutionRequest{
		Namespace: "default", Input: payloads(strings.Repeat("x", 100<<10)),
	})
	wantCode(t, err, codes.ResourceExhausted)
}

// TestGracefulShutdown: Shutdown waits for an in-flight long poll to finish; with a deadline that passes first, it
// cuts the call and says so.
func TestGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release bool // the upstream answers the poll while Shutdown waits
	}{{"drains", true}, {"deadline", false}} {
		t.Run(tc.name, func(t *testing.T) {
			up := startFakeUpstream(t)
			entered := make(chan struct{})
			release := make(chan struct{})
			up.on("PollActivityTaskQueue", func(ctx context.Context, _ proto.Message) (proto.Message, error) {
				close(entered)
				select {
				case <-release:
					return &workflowservice.PollActivityTaskQueueResponse{ActivityId: "a1", Input: nil}, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			})
			p := startProxy(t, up.addr, Config{})
			pollDone := make(chan error, 1)
			go func() {
				resp, err := p.wf.PollActivityTaskQueue(context.Background(), &workflowservice.PollActivityTaskQueueRequest{Namespace: "default"})
				if err == nil && resp.GetActivityId() != "a1" {
					err = errors.New("wrong response")
				}
				pollDone <- err
			}()
			<-entered
			timeout := 10 * time.Second
			if !tc.release {
				timeout = 200 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			shutdownDone := make(chan error, 1)
			go func() { shutdownDone <- p.srv.Shutdown(ctx) }()

			if tc.release {
				// New connections are refused while draining.
				waitRefused(t, p)
				close(release)
				if err := <-pollDone; err != nil {
					t.Fatalf("in-flight poll: %v", err)
				}
				if err := <-shutdownDone; err != nil {
					t.Fatalf("shutdown: %v", err)
				}
			} else {
				if err := <-shutdownDone; !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("shutdown: got %v, want deadline exceeded", err)
				}
				if err := <-pollDone; err == nil {
					t.Fatal("cut poll succeeded")
				}
				close(release)
			}
			if err := <-p.served; err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

// waitRefused waits until a new connection to the proxy can no longer make calls.
func waitRefused(t *testing.T, p *testProxy) {
	t.Helper()
	target := p.conn.Target()
	for i := 0; i < 100; i++ {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		_ = c.Close()
		if status.Code(err) == codes.Unavailable {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("proxy still accepts new calls while shutting down")
}

// TestLogsCarryNoPayloads: the per-RPC log records (at debug level, the most verbose) and codec error records contain
// method, namespace and code but no payload text.
func TestLogsCarryNoPayloads(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("QueryWorkflow", func(_ context.Context, req proto.Message) (proto.Message, error) {
		return &workflowservice.QueryWorkflowResponse{QueryResult: req.(*workflowservice.QueryWorkflowRequest).GetQuery().GetQueryArgs()}, nil
	})
	var buf testenv.SyncBuffer
	p := startProxy(t, up.addr, Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	if _, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default",
		Query: &querypb.WorkflowQuery{QueryArgs: payloads(markerPrefix + "-q")}}); err != nil {
		t.Fatal(err)
	}
	p.keys.Destroy("default")
	_, err := p.wf.QueryWorkflow(ctx, &workflowservice.QueryWorkflowRequest{Namespace: "default",
		Query: &querypb.WorkflowQuery{QueryArgs: payloads(markerPrefix + "-q")}})
	wantCode(t, err, codes.FailedPrecondition)
	logs := buf.String()
	if strings.Contains(logs, markerPrefix) {
		t.Fatalf("logs contain payload text:\n%s", logs)
	}
	for _, want := range []string{"method=/temporal.api.workflowservice.v1.WorkflowService/QueryWorkflow", "namespace=default", "code=OK", "code=FailedPrecondition", "kind=key_destroyed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestObserver: payload counts and plaintext sizes are reported per direction.
func TestObserver(t *testing.T) {
	up := startFakeUpstream(t)
	up.on("QueryWorkflow", func(_ context.Context, req proto.Message) (proto.Message, error) {
		return &workflowservice.QueryWorkflowResponse{QueryResult: req.(*workflowservice.QueryWorkflowRequest).GetQuery().GetQueryArgs()}, nil
	})
	obs := &countingObserver{}
	p := startProxy(t, up.addr, Config{Observer: obs})
	args := payloads("a", "b", "c")
	size := 0
	for _, pl := range args.GetPayloads() {
		size += proto.Size(pl)
	}
	if _, err := p.wf.QueryWorkflow(context.Background(), &workflowservice.QueryWorkflowRequest{Namespace: "default", Query: &querypb.WorkflowQuery{QueryArgs: args}}); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.encoded != 3 || obs.decoded != 3 || obs.encodedBytes != size || obs.decodedBytes != size {
		t.Fatalf("observer: %+v, want 3 payloads of %d bytes each way", obs, size)
	}
}

type countingObserver struct {
	mu                         sync.Mutex
	encoded, decoded           int
	encodedBytes, decodedBytes int
	errors                     map[ErrorKind]int
}

func (o *countingObserver) Encoded(_ string, n, b int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.encoded += n
	o.encodedBytes += b
}

func (o *countingObserver) Decoded(_ string, n, b int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decoded += n
	o.decodedBytes += b
}

func (o *countingObserver) Error(_ string, k ErrorKind) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.errors == nil {
		o.errors = map[ErrorKind]int{}
	}
	o.errors[k]++
}

func (o *countingObserver) errorCount(k ErrorKind) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errors[k]
}

// TestRawHistoryDecoded: history sent as raw blobs (frontend.sendRawWorkflowHistory) is decrypted too: the proxy
// turns it into ordinary events.
func TestRawHistoryDecoded(t *testing.T) {
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{})
	ctx := context.Background()
	plain := &historypb.History{Events: []*historypb.HistoryEvent{{
		EventId: 1, EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
		Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
			SignalName: "s", Input: payloads(markerPrefix + "-raw"),
		}},
	}}}
	sealed := proto.Clone(plain).(*historypb.History)
	if err := p.srv.t.encodeRequest(ctx, "default", sealed); err != nil {
		t.Fatal(err)
	}
	blob, err := proto.Marshal(sealed)
	if err != nil {
		t.Fatal(err)
	}
	up.on("GetWorkflowExecutionHistory", func(context.Context, proto.Message) (proto.Message, error) {
		return &workflowservice.GetWorkflowExecutionHistoryResponse{RawHistory: []*commonpb.DataBlob{{EncodingType: enumspb.ENCODING_TYPE_PROTO3, Data: blob}}}, nil
	})
	resp, err := p.wf.GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRawHistory()) != 0 || !proto.Equal(resp.GetHistory(), plain) {
		t.Fatalf("raw history not decoded: %v", resp)
	}
}

// TestReflection: with Reflection on, both Temporal services are listed.
func TestReflection(t *testing.T) {
	up := startFakeUpstream(t)
	p := startProxy(t, up.addr, Config{Reflection: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(p.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{workflowServiceName, operatorServiceName, "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}
