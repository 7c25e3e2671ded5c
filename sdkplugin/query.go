package sdkplugin

import (
	"context"
	"strings"

	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// encodedFailureMessage is the SDK's placeholder for a failure whose text is in its encoded attributes.
	encodedFailureMessage = "Encoded failure"
	// withheldQueryMessage replaces a query error text that has no sealed failure next to it (a workflow panic).
	withheldQueryMessage = "Encoded failure (blindfold: the query error text was withheld)"
)

// queryInterceptor re-seals the values the SDK seals for another binding than where the backend delivers them
// (rebindRequest), and closes a gap the converters cannot: a worker answering a failed query sends the error text
// twice, sealed in the failure and in plaintext in error_message (RespondQueryTaskCompleted, and the query
// results of RespondWorkflowTaskCompleted), which the server hands to the query's caller. The interceptor
// replaces that plaintext with the placeholder on the way out, and on the caller's side restores the message of
// a QueryFailed error from its sealed failure.
func (p *Plugin) queryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if err := p.rebindRequest(ctx, req); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	switch r := req.(type) {
	case *workflowservice.RespondQueryTaskCompletedRequest:
		if r.GetErrorMessage() != "" {
			r.ErrorMessage, r.Failure = p.sealQueryError(r.GetNamespace(), r.GetErrorMessage(), r.GetFailure())
		}
	case *workflowservice.RespondWorkflowTaskCompletedRequest:
		for _, qr := range r.GetQueryResults() {
			if qr.GetErrorMessage() != "" {
				qr.ErrorMessage, qr.Failure = p.sealQueryError(r.GetNamespace(), qr.GetErrorMessage(), qr.GetFailure())
			}
		}
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		if q, ok := req.(*workflowservice.QueryWorkflowRequest); ok {
			return p.restoreQueryFailed(q.GetNamespace(), err)
		}
	}
	return err
}

// sealQueryError returns what replaces a failed query's error_message and failure. The SDK attaches a sealed
// failure to some query errors but not others (query results inside a workflow task completion carry only the
// text); where it is missing, one is made from the text and sealed, so the caller can still read it.
func (p *Plugin) sealQueryError(namespace, message string, f *failurepb.Failure) (string, *failurepb.Failure) {
	if f.GetEncodedAttributes() != nil {
		return encodedFailureMessage, f
	}
	if f == nil {
		f = &failurepb.Failure{
			Message:     message,
			Source:      "GoSDK",
			FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{}},
		}
	}
	if err := converter.EncodeCommonFailureAttributes(p.DataConverter(namespace), f); err != nil {
		return withheldQueryMessage, nil
	}
	return encodedFailureMessage, f
}

// restoreQueryFailed gives a QueryFailed error the message of its failure when the status only carries the
// placeholder: the failure is opened here when still sealed, or was already opened by a Blindfold proxy on the way.
func (p *Plugin) restoreQueryFailed(namespace string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	qf, ok := serviceerror.FromStatus(st).(*serviceerror.QueryFailed)
	if !ok || qf.Failure == nil || !strings.HasPrefix(qf.Message, encodedFailureMessage) {
		return err
	}
	opened := qf.Failure
	if opened.GetEncodedAttributes() != nil {
		opened = proto.Clone(qf.Failure).(*failurepb.Failure)
		converter.DecodeCommonFailureAttributes(p.DataConverter(namespace), opened)
	}
	if opened.GetMessage() == "" || opened.GetMessage() == qf.Message || opened.GetMessage() == encodedFailureMessage {
		return err
	}
	return serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure(opened.GetMessage(), qf.Failure)).Err()
}
