package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	nexuspb "go.temporal.io/api/nexus/v1"
	apiproxy "go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Legacy Nexus failures (temporal.api.nexus.v1.Failure, in a handler error or an unsuccessful operation error) carry
// user text where the payload and failure visitors can't see it: a message, a stack trace, and details that are raw
// JSON — from the Go SDK, the whole Temporal failure, payloads included. The proxy turns each into the one form the
// server reads back exactly (metadata type "temporal.api.failure.v1.Failure", details the protojson of a Temporal
// failure), converting the other forms as the server itself would (go.temporal.io/server common/nexus
// NexusFailureToTemporalFailure), and seals that failure's text and payloads before writing it back. The caller's
// workflow then gets an ordinary Temporal failure with sealed encoded attributes, which decode restores.

// temporalFailureType is the metadata type of a legacy Nexus failure whose details hold a Temporal failure.
var temporalFailureType = string((&failurepb.Failure{}).ProtoReflect().Descriptor().FullName())

// legacyNexusFailures returns the top-level legacy Nexus failures of a request (causes are inside them).
func legacyNexusFailures(msg proto.Message) []*nexuspb.Failure {
	switch msg.(type) {
	case *workflowservice.RespondNexusTaskCompletedRequest, *workflowservice.RespondNexusTaskFailedRequest:
	default:
		return nil
	}
	var out []*nexuspb.Failure
	walkMessages(msg.ProtoReflect(), func(m protoreflect.Message) bool {
		if f, ok := m.Interface().(*nexuspb.Failure); ok {
			out = append(out, f)
			return false
		}
		return true
	})
	return out
}

// sealLegacyNexusFailures rewrites every legacy Nexus failure of msg in the sealed Temporal-failure form. encode seals
// the payloads of one message (the encrypting payload pass); failureText is the failure pass's per-failure step.
func sealLegacyNexusFailures(ctx context.Context, msg proto.Message, failureText func(*failurepb.Failure) error,
	encode func(context.Context, proto.Message) error) error {
	for _, f := range legacyNexusFailures(msg) {
		tf, err := nexusToTemporalFailure(f, 0)
		if err != nil {
			return &requestError{kind: KindInvalidRequest, code: codes.InvalidArgument, msg: fmt.Sprintf("a Nexus failure cannot be inspected for user text: %v", err)}
		}
		if err := apiproxy.VisitFailures(ctx, tf, apiproxy.VisitFailuresOptions{
			Visitor: func(_ *apiproxy.VisitFailuresContext, f *failurepb.Failure) error { return failureText(f) },
		}); err != nil {
			return err
		}
		if err := encode(ctx, tf); err != nil {
			return err
		}
		message, stack := tf.GetMessage(), tf.GetStackTrace()
		tf.Message, tf.StackTrace = "", ""
		details, err := protojson.Marshal(tf)
		if err != nil {
			return fmt.Errorf("marshal sealed Nexus failure: %w", err)
		}
		f.Message, f.StackTrace = message, stack
		f.Metadata = map[string]string{"type": temporalFailureType}
		f.Details = details
		f.Cause = nil // inside details now
	}
	return nil
}

// maxNexusCauseDepth bounds the cause chain of a legacy Nexus failure (protobuf's own limit is 100 levels).
const maxNexusCauseDepth = 64

// nexusToTemporalFailure converts a legacy Nexus failure as the server does, except that details it would parse
// leniently are parsed strictly: a field the proxy does not know could carry text it would fail to seal.
func nexusToTemporalFailure(f *nexuspb.Failure, depth int) (*failurepb.Failure, error) {
	if depth > maxNexusCauseDepth {
		return nil, fmt.Errorf("cause chain deeper than %d", maxNexusCauseDepth)
	}
	tf := &failurepb.Failure{}
	typ, hasType := f.GetMetadata()["type"]
	switch {
	case hasType && typ == temporalFailureType:
		if err := protojson.Unmarshal(f.GetDetails(), tf); err != nil {
			return nil, fmt.Errorf("details of type %s: %w", typ, err)
		}
	case hasType && typ == "nexus.OperationError":
		var oe struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(f.GetDetails(), &oe); err != nil {
			return nil, fmt.Errorf("details of type %s: %w", typ, err)
		}
		if oe.State == "canceled" {
			tf.FailureInfo = &failurepb.Failure_CanceledFailureInfo{CanceledFailureInfo: &failurepb.CanceledFailureInfo{}}
		} else {
			tf.FailureInfo = &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
				NonRetryable: true, Type: "OperationError"}}
		}
	case hasType && typ == "nexus.HandlerError":
		var he struct {
			Type              string `json:"type,omitempty"`
			RetryableOverride *bool  `json:"retryableOverride,omitempty"`
			EncodedAttributes string `json:"encodedAttributes,omitempty"`
		}
		if err := json.Unmarshal(f.GetDetails(), &he); err != nil {
			return nil, fmt.Errorf("details of type %s: %w", typ, err)
		}
		info := &failurepb.NexusHandlerFailureInfo{Type: he.Type}
		if he.RetryableOverride != nil {
			info.RetryBehavior = enumspb.NEXUS_HANDLER_ERROR_RETRY_BEHAVIOR_NON_RETRYABLE
			if *he.RetryableOverride {
				info.RetryBehavior = enumspb.NEXUS_HANDLER_ERROR_RETRY_BEHAVIOR_RETRYABLE
			}
		}
		tf.FailureInfo = &failurepb.Failure_NexusHandlerFailureInfo{NexusHandlerFailureInfo: info}
		if he.EncodedAttributes != "" {
			b, err := base64.RawURLEncoding.DecodeString(he.EncodedAttributes)
			if err != nil {
				return nil, fmt.Errorf("encoded attributes of a handler error: %w", err)
			}
			tf.EncodedAttributes = &commonpb.Payload{}
			if err := protojson.Unmarshal(b, tf.EncodedAttributes); err != nil {
				return nil, fmt.Errorf("encoded attributes of a handler error: %w", err)
			}
		}
	case len(f.GetMetadata()) > 0 || len(f.GetDetails()) > 0:
		// A type the server does not know: it keeps metadata and details as one JSON payload of an application
		// failure, which the payload pass now seals.
		data, err := json.Marshal(struct {
			Metadata map[string]string `json:"metadata,omitempty"`
			Details  json.RawMessage   `json:"details,omitempty"`
		}{f.GetMetadata(), rawJSON(f.GetDetails())})
		if err != nil {
			return nil, fmt.Errorf("details: %w", err)
		}
		tf.FailureInfo = &failurepb.Failure_ApplicationFailureInfo{ApplicationFailureInfo: &failurepb.ApplicationFailureInfo{
			Type:    "NexusFailure",
			Details: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: data}}},
		}}
	}
	tf.Message, tf.StackTrace = f.GetMessage(), f.GetStackTrace()
	if f.GetCause() != nil {
		cause, err := nexusToTemporalFailure(f.GetCause(), depth+1)
		if err != nil {
			return nil, err
		}
		tf.Cause = cause
	}
	return tf, nil
}

// rawJSON returns b as a JSON value: itself when it is valid JSON, else a JSON string of it.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
