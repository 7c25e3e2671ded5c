package sdkplugin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	querypb "go.temporal.io/api/query/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

const queryMarker = "QUERY-ERROR-MARKER-51c0"

type failingKeyring struct{}

func (failingKeyring) SealingKey(context.Context, codec.Target) (codec.Key, error) {
	return codec.Key{}, errors.New("down")
}
func (failingKeyring) OpeningKey(context.Context, string, string) (codec.Key, error) {
	return codec.Key{}, errors.New("down")
}

func testPlugin(t *testing.T, kr codec.Keyring) *Plugin {
	t.Helper()
	if kr == nil {
		m, err := keys.OpenLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		kr = m
	}
	p, err := New(kr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func send(p *Plugin, req any, reply error) error {
	return p.queryInterceptor(context.Background(), "/m", req, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return reply })
}

func TestQueryErrorSealedOnTheWayOut(t *testing.T) {
	p := testPlugin(t, nil)
	fc := p.FailureConverter("default")
	tests := []struct {
		name    string
		req     proto.Message
		failure func(proto.Message) *querypb.WorkflowQueryResult
	}{
		{
			name: "query results of a workflow task completion (no failure from the SDK)",
			req: &workflowservice.RespondWorkflowTaskCompletedRequest{Namespace: "default", QueryResults: map[string]*querypb.WorkflowQueryResult{
				"q1": {ResultType: enumspb.QUERY_RESULT_TYPE_FAILED, ErrorMessage: "refused " + queryMarker},
			}},
			failure: func(m proto.Message) *querypb.WorkflowQueryResult {
				return m.(*workflowservice.RespondWorkflowTaskCompletedRequest).QueryResults["q1"]
			},
		},
		{
			name: "query task completion with the SDK's sealed failure",
			req: &workflowservice.RespondQueryTaskCompletedRequest{Namespace: "default", CompletedType: enumspb.QUERY_RESULT_TYPE_FAILED,
				ErrorMessage: "refused " + queryMarker, Failure: fc.ErrorToFailure(errors.New("refused " + queryMarker))},
			failure: func(m proto.Message) *querypb.WorkflowQueryResult {
				r := m.(*workflowservice.RespondQueryTaskCompletedRequest)
				return &querypb.WorkflowQueryResult{ErrorMessage: r.ErrorMessage, Failure: r.Failure}
			},
		},
		{
			name: "query task completion of a panic (text only)",
			req: &workflowservice.RespondQueryTaskCompletedRequest{Namespace: "default", CompletedType: enumspb.QUERY_RESULT_TYPE_FAILED,
				ErrorMessage: "Workflow panic: " + queryMarker},
			failure: func(m proto.Message) *querypb.WorkflowQueryResult {
				r := m.(*workflowservice.RespondQueryTaskCompletedRequest)
				return &querypb.WorkflowQueryResult{ErrorMessage: r.ErrorMessage, Failure: r.Failure}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := send(p, tt.req, nil); err != nil {
				t.Fatal(err)
			}
			raw, _ := proto.Marshal(tt.req)
			if bytes.Contains(raw, []byte(queryMarker)) {
				t.Fatalf("request still carries the query error text")
			}
			qr := tt.failure(tt.req)
			if qr.GetErrorMessage() != encodedFailureMessage || !codec.IsEncrypted(qr.GetFailure().GetEncodedAttributes()) {
				t.Fatalf("error_message %q, failure %v", qr.GetErrorMessage(), qr.GetFailure())
			}
			if got := fc.FailureToError(qr.GetFailure()).Error(); !strings.Contains(got, queryMarker) {
				t.Fatalf("sealed failure opens to %q", got)
			}
		})
	}
}

func TestQueryErrorWithheldWhenSealingFails(t *testing.T) {
	p := testPlugin(t, failingKeyring{})
	req := &workflowservice.RespondQueryTaskCompletedRequest{Namespace: "default", ErrorMessage: queryMarker}
	if err := send(p, req, nil); err != nil {
		t.Fatal(err)
	}
	if req.ErrorMessage != withheldQueryMessage || req.Failure != nil {
		t.Fatalf("request = %v, want the text withheld", req)
	}
}

func TestQueryFailedRestoredForTheCaller(t *testing.T) {
	p := testPlugin(t, nil)
	sealed := p.FailureConverter("default").ErrorToFailure(errors.New("refused " + queryMarker))
	opened := proto.Clone(sealed).(*failurepb.Failure)
	opened.Message, opened.EncodedAttributes = "refused "+queryMarker, nil
	query := &workflowservice.QueryWorkflowRequest{Namespace: "default"}
	tests := []struct {
		name  string
		reply error
		want  string
	}{
		{"sealed failure", serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure(encodedFailureMessage, sealed)).Err(), "refused " + queryMarker},
		{"failure opened by the proxy", serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure(encodedFailureMessage, opened)).Err(), "refused " + queryMarker},
		{"plain query failure", serviceerror.ToStatus(serviceerror.NewQueryFailed("plain text")).Err(), "plain text"},
		{"other error", status.Error(codes.Unavailable, "down"), "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(p, query, tt.reply)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if status.Code(err) != status.Code(tt.reply) {
				t.Fatalf("code = %v, want %v", status.Code(err), status.Code(tt.reply))
			}
		})
	}
}
