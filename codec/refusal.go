package codec

import (
	"strings"

	commonpb "go.temporal.io/api/common/v1"
)

// A refusal stands in for a payload that a strict decoder would not hand over as a value: one that came back from the
// backend unsealed in a namespace whose payloads are sealed, sealed for another namespace, or failing authentication.
// It carries the field and the reason, never a byte of the refused payload.
//
// Its encoding starts with EncodingRefusedPrefix and goes on with the field and the reason, because SDKs name a
// payload's encoding when they have no converter for it: the Go SDK's error reads "encoding blindfold/refused: ...:
// payload encoding is not supported", so a workflow task, activity or client call that needs the value fails with an
// error that says why, in any SDK, with no Blindfold code on that side.
const (
	// EncodingRefusedPrefix begins the encoding metadata of every refusal.
	EncodingRefusedPrefix = "blindfold/refused"
	// MetadataRefusedField names the field whose payload was refused (e.g. "WorkflowExecutionSignaledEventAttributes.input[0]").
	MetadataRefusedField = "blindfold-refused-field"
	// MetadataRefusedReason says why, in words that quote no payload content.
	MetadataRefusedReason = "blindfold-refused-reason"

	// maxRefusalText bounds the field and reason copied into a refusal: reasons may quote attacker-controlled metadata (clipped already).
	maxRefusalText = 512
)

// Refusal returns the payload that stands in for a refused one at field, for reason.
func Refusal(field, reason string) *commonpb.Payload {
	field, reason = clipText(field), clipText(reason)
	return &commonpb.Payload{
		Metadata: map[string][]byte{
			MetadataEncoding:      []byte(EncodingRefusedPrefix + ": " + field + ": " + reason),
			MetadataRefusedField:  []byte(field),
			MetadataRefusedReason: []byte(reason),
		},
		Data: []byte("blindfold refused this value: " + field + ": " + reason),
	}
}

// IsRefusal reports whether p is a refusal made by Refusal, and returns its field and reason.
func IsRefusal(p *commonpb.Payload) (field, reason string, ok bool) {
	if p == nil || !strings.HasPrefix(string(p.GetMetadata()[MetadataEncoding]), EncodingRefusedPrefix) {
		return "", "", false
	}
	return string(p.Metadata[MetadataRefusedField]), string(p.Metadata[MetadataRefusedReason]), true
}

func clipText(s string) string {
	if len(s) <= maxRefusalText {
		return s
	}
	// Cut on a rune boundary so the metadata stays valid UTF-8 for SDKs that print it.
	cut := maxRefusalText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
