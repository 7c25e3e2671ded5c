package sdkplugin

import (
	"log/slog"

	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// withheldMessage replaces a failure's text when it could not be encrypted: the failure still travels (so the
// workflow sees it failed) but its text never leaves in plaintext.
const withheldMessage = "Encoded failure (blindfold: the failure text could not be encrypted and was withheld)"

// failureConverter is the SDK's default failure converter plus the "encode common attributes" convention: every
// failure's message and stack trace are moved into an encrypted encoded_attributes payload.
//
// It does the encoding itself rather than setting DefaultFailureConverterOptions.EncodeCommonAttributes, because
// the SDK panics when that encoding fails; here a failure that cannot be sealed has its text withheld instead.
type failureConverter struct {
	dc    converter.DataConverter
	plain *temporal.DefaultFailureConverter
}

var (
	_ converter.FailureConverter                         = (*failureConverter)(nil)
	_ converter.FailureConverterWithSerializationContext = (*failureConverter)(nil)
)

func newFailureConverter(dc converter.DataConverter) *failureConverter {
	return &failureConverter{
		dc:    dc,
		plain: temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc}),
	}
}

// ErrorToFailure converts err to a failure whose message and stack trace, and those of every cause, are sealed.
func (f *failureConverter) ErrorToFailure(err error) *failurepb.Failure {
	failure := f.plain.ErrorToFailure(err)
	if failure == nil {
		return nil
	}
	// An error that came from a failure (an activity error seen by the workflow, say) hands back that failure
	// itself; clone so sealing never rewrites a failure some other error still holds.
	failure = proto.Clone(failure).(*failurepb.Failure)
	for fl := failure; fl != nil; fl = fl.GetCause() {
		// A failure already carrying encoded attributes came back from the server still sealed (or was sealed
		// by a previous call): sealing it again would hide the sealed attributes under the placeholder text.
		if fl.GetEncodedAttributes() != nil {
			continue
		}
		if encErr := converter.EncodeCommonFailureAttributes(f.dc, fl); encErr != nil {
			slog.Warn("blindfold: failure text withheld because it could not be encrypted", "error", encErr)
			fl.EncodedAttributes = nil
			fl.Message = withheldMessage
			fl.StackTrace = ""
		}
	}
	return failure
}

// FailureToError opens the sealed message and stack trace (when this converter can) and converts to an error.
// Unlike the SDK's converter it leaves failure untouched: the SDK writes the opened text back into the failure it
// is given, which may be an event of a cached history.
func (f *failureConverter) FailureToError(failure *failurepb.Failure) error {
	if failure == nil {
		return nil
	}
	return f.plain.FailureToError(proto.Clone(failure).(*failurepb.Failure))
}

// WithSerializationContext returns a failure converter whose data converter follows the SDK's serialization
// context, so failure text is sealed for the namespace of the workflow or activity it belongs to.
func (f *failureConverter) WithSerializationContext(sc converter.SerializationContext) converter.FailureConverter {
	dc := converter.WithDataConverterSerializationContext(f.dc, sc)
	if dc == f.dc {
		return f
	}
	return newFailureConverter(dc)
}
