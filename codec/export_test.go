package codec

import (
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
)

// AssociatedData exposes the v1 associated-data encoding to the external tests, which craft envelopes by hand.
var AssociatedData = associatedData

// AssociatedDataV2 is the v2 associated data of an envelope with header hdr sealed with keyID for namespace.
func AssociatedDataV2(namespace, keyID string, hdr []byte) []byte {
	return appendFields(nil, adLabelV2, namespace, keyID, string(hdr))
}

// HeaderInMetadataAt is the plaintext size from which v2 writers use the metadata layout.
const HeaderInMetadataAt = headerInMetadataAt

// WithHeaderInMetadataAt makes the codec put v2 headers in metadata from n bytes of plaintext on (0: always), so that tests
// and vectors cover the metadata layout without megabytes of data.
func WithHeaderInMetadataAt(n int) Option {
	return func(c *Codec) error {
		if n < 0 {
			return fmt.Errorf("negative threshold %d", n)
		}
		c.headerInMetadataAt = n
		return nil
	}
}

// HeaderV2 is a parsed v2 header, for the external tests.
type HeaderV2 struct {
	Kind       BindingKind
	Compressed bool
	Form       byte
	Scope      string
	HasScope   bool
	ID         string
	InMetadata bool
	Header     []byte // as authenticated: 0xBF || core (compact layout), or the blindfold-header value
	Len        int    // the ciphertext starts at data[Len:] (0 in the metadata layout)
	TinkID     uint32
}

// ParseHeaderV2 parses the header of compact-layout v2 envelope data.
func ParseHeaderV2(data []byte) (HeaderV2, error) {
	h, err := parseHeader(data)
	if err != nil {
		return HeaderV2{}, err
	}
	return exportHeader(h), nil
}

// ParseEnvelopeV2 parses the header of a v2 envelope in either layout.
func ParseEnvelopeV2(p *commonpb.Payload) (HeaderV2, error) {
	h, err := parseEnvelopeV2(p)
	if err != nil {
		return HeaderV2{}, err
	}
	return exportHeader(h), nil
}

func exportHeader(h headerV2) HeaderV2 {
	n := len(h.hdr)
	if h.inMetadata {
		n = 0
	}
	return HeaderV2{Kind: h.kind, Compressed: h.flags&hdrFlagZstd != 0, Form: h.form, Scope: string(h.scope), HasScope: h.scope != nil,
		ID: string(h.id), InMetadata: h.inMetadata, Header: h.hdr, Len: n, TinkID: h.tinkID}
}

// IsV2 reports whether p is a v2 envelope (version 2, either layout).
func IsV2(p *commonpb.Payload) bool {
	f, _ := envelopeFormat(p)
	return f == formatV2
}
