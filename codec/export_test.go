package codec

// AssociatedData exposes the v1 associated-data encoding to the external tests, which craft envelopes by hand.
var AssociatedData = associatedData

// AssociatedDataV2 is the v2 associated data of an envelope with header hdr sealed with keyID for namespace.
func AssociatedDataV2(namespace, keyID string, hdr []byte) []byte {
	return appendFields(nil, adLabelV2, namespace, keyID, string(hdr))
}

// HeaderV2 is a parsed v2 header, for the external tests.
type HeaderV2 struct {
	Kind       BindingKind
	Compressed bool
	Scope      string
	HasScope   bool
	ID         string
	Len        int // the ciphertext starts at data[Len:]
	TinkID     uint32
}

// ParseHeaderV2 parses the header of v2 envelope data.
func ParseHeaderV2(data []byte) (HeaderV2, error) {
	h, err := parseHeader(data)
	if err != nil {
		return HeaderV2{}, err
	}
	return HeaderV2{Kind: h.kind, Compressed: h.flags&hdrFlagZstd != 0, Scope: string(h.scope), HasScope: h.scope != nil,
		ID: string(h.id), Len: h.n, TinkID: h.tinkID}, nil
}

// IsV2 reports whether p is a v2 envelope (version byte 0x02).
func IsV2(p interface{ GetData() []byte }) bool {
	d := p.GetData()
	return len(d) >= 2 && d[0] == magicV2 && d[1] == versionV2
}
