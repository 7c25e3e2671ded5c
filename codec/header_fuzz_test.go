package codec

import (
	"bytes"
	"encoding/binary"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
)

// FuzzParseHeader: parsing a v2 header never panics, never reads past the data, and accepts exactly one encoding of each
// header (what the writer produces from the parsed fields), so a header cannot be re-encoded without changing its bytes.
// The accessors built on it (IsEncrypted, BindingOf, KeyID, KeyIDIn, alreadySealed) must not panic either.
func FuzzParseHeader(f *testing.F) {
	ct := append([]byte{tinkPrefixTink, 1, 2, 3, 4}, make([]byte, MinCiphertextSize)...)
	for _, h := range [][]byte{
		{0xBF, 0x02, 0x00, 0x00},
		{0xBF, 0x02, 0x10, 0x02, 'w', 'f'},
		{0xBF, 0x02, 0x12, 0x07, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0x00},
		{0xBF, 0x02, 0x71, 0x06, 's', 'v', 'c', '/', 'o', 'p'},
		{0xBF, 0x02, 0x00, 0x80, 0x00},
		{0xBF, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0xBF, 0x03},
		{0xBF},
	} {
		f.Add(append(bytes.Clone(h), ct...))
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &commonpb.Payload{Metadata: map[string][]byte{MetadataEncoding: []byte(EncodingEncrypted)}, Data: data}
		IsEncrypted(p)
		BindingOf(p)
		KeyID(p)
		KeyIDIn(p, "default")
		alreadySealed(p)
		h, err := parseHeader(data)
		if err != nil {
			return
		}
		if h.n < minHeaderV2 || h.n+MinCiphertextSize > len(data) {
			t.Fatalf("header of %d bytes in %d bytes of data", h.n, len(data))
		}
		re := []byte{magicV2, versionV2, byte(h.kind)<<4 | h.flags}
		if h.scope != nil {
			re = binary.AppendUvarint(re, uint64(len(h.scope)))
			re = append(re, h.scope...)
		}
		re = binary.AppendUvarint(re, uint64(len(h.id)))
		re = append(re, h.id...)
		if !bytes.Equal(re, data[:h.n]) {
			t.Fatalf("header %x parses to fields that encode as %x", data[:h.n], re)
		}
		if got := binary.BigEndian.Uint32(data[h.n+1:]); got != h.tinkID || data[h.n] != tinkPrefixTink {
			t.Fatalf("tink id %08x, prefix %x", h.tinkID, data[h.n:h.n+5])
		}
		b := Binding{Kind: h.kind, ID: string(h.id)}
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed binding %v does not validate: %v", b, err)
		}
		if !alreadySealed(p) {
			t.Fatal("a well-formed v2 envelope would be sealed again")
		}
	})
}
