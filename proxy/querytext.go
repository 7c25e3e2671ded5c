package proxy

import (
	"bytes"
	"encoding/json"

	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A failed query's text travels twice: in the failure, which the proxy seals, and as a plain error_message string,
// which the server hands to the query's caller as the QueryFailed status message. The string copy is replaced by the
// placeholder, the text lives only in the sealed failure (built from the string when the SDK sent none, as on the
// workflow-panic path), and the caller's QueryFailed message is restored from the opened failure.

// sealQueryErrors moves the error_message of failed query answers in msg into their failures and leaves the
// placeholder in its place. It runs before the failure pass, which then seals the text.
func sealQueryErrors(msg proto.Message) {
	switch r := msg.(type) {
	case *workflowservice.RespondQueryTaskCompletedRequest:
		r.ErrorMessage, r.Failure = withheldQueryError(r.GetErrorMessage(), r.GetFailure())
	case *workflowservice.RespondWorkflowTaskCompletedRequest:
		for _, qr := range r.GetQueryResults() {
			if qr != nil {
				qr.ErrorMessage, qr.Failure = withheldQueryError(qr.GetErrorMessage(), qr.GetFailure())
			}
		}
	}
}

// withheldQueryError returns the error_message and failure to send for a query answer.
func withheldQueryError(message string, f *failurepb.Failure) (string, *failurepb.Failure) {
	if message == "" || message == encodedFailureMessage {
		return message, f
	}
	if f == nil {
		f = &failurepb.Failure{
			Message:     message,
			FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{}},
		}
	} else if f.GetEncodedAttributes() == nil && f.GetMessage() != message {
		// Both texts are the caller's to read; keep the string's as the outer message, the failure as its cause.
		f = &failurepb.Failure{
			Message:     message,
			Cause:       f,
			FailureInfo: &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{}},
		}
	}
	return encodedFailureMessage, f
}

// restoreQueryFailed gives an opened QueryFailed error whose message is the placeholder the message of its failure
// (restored by the failure pass, or in encoded attributes an SDK made), as the caller would get it without the proxy.
func restoreQueryFailed(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Message() != encodedFailureMessage {
		return err
	}
	qf, ok := serviceerror.FromStatus(st).(*serviceerror.QueryFailed)
	if !ok || qf.Failure == nil {
		return err
	}
	text := qf.Failure.GetMessage()
	if text == encodedFailureMessage {
		text = sdkEncodedMessage(qf.Failure)
	}
	if text == "" || text == encodedFailureMessage {
		return err
	}
	return serviceerror.ToStatus(serviceerror.NewQueryFailedWithFailure(text, qf.Failure)).Err()
}

// sdkEncodedMessage reads the message out of opened encoded attributes an SDK made, without changing the failure.
func sdkEncodedMessage(f *failurepb.Failure) string {
	p := f.GetEncodedAttributes()
	if p == nil || string(p.GetMetadata()[converter.MetadataEncoding]) != converter.MetadataEncodingJSON {
		return ""
	}
	var ef encodedFailure
	if json.NewDecoder(bytes.NewReader(p.GetData())).Decode(&ef) != nil {
		return ""
	}
	return ef.Message
}

// rejectPlaintextQueryErrors refuses failed query answers whose error_message is plaintext, for namespaces whose SDKs
// must seal (the Blindfold SDK plugin sends the placeholder).
func rejectPlaintextQueryErrors(msg proto.Message) error {
	check := func(m string) error {
		if m == "" || m == encodedFailureMessage {
			return nil
		}
		return errRejectPlaintext("a query error message")
	}
	switch r := msg.(type) {
	case *workflowservice.RespondQueryTaskCompletedRequest:
		return check(r.GetErrorMessage())
	case *workflowservice.RespondWorkflowTaskCompletedRequest:
		for _, qr := range r.GetQueryResults() {
			if err := check(qr.GetErrorMessage()); err != nil {
				return err
			}
		}
	}
	return nil
}
