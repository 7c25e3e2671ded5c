package codec

import (
	"bytes"
	"encoding/binary"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
)

// FuzzParseHeader: parsing a v2 header, in either layout, never panics, never reads past the data, and accepts exactly one
// encoding of each header (what the writer produces from the parsed fields), so a header cannot be re-encoded without
// changing its bytes. An envelope with a header in both places, or a metadata header with bytes after it, never parses.
// The accessors built on it (IsEncrypted, IsSealed, BindingOf, KeyID, KeyIDIn) must not panic and must agree with it.
func FuzzParseHeader(f *testing.F) {
	ct := append([]byte{tinkPrefixTink, 1, 2, 3, 4}, make([]byte, MinCiphertextSize)...)
	for _, h := range [][]byte{
		{0xBF, 0x02, 0x00, 0x00, 0x00},
		{0xBF, 0x02, 0x10, 0x01, 0x02, 'w', 'f'},
		{0xBF, 0x02, 0x12, 0x03, 0x07, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0x00},
		{0xBF, 0x02, 0x71, 0x00, 0x06, 's', 'v', 'c', '/', 'o', 'p'},
		{0xBF, 0x02, 0x00, 0x05, 0x00},
		{0xBF, 0x02, 0x00, 0x00, 0x80, 0x00},
		{0xBF, 0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{0xBF, 0x03},
		{0xBF},
	} {
		f.Add(append(bytes.Clone(h), ct...), []byte(nil), false)
		f.Add(h, []byte(nil), false)
		f.Add(ct, bytes.Clone(h[1:]), true)
		f.Add(append(bytes.Clone(h), ct...), bytes.Clone(h[1:]), true) // both layouts
	}
	f.Fuzz(func(t *testing.T, data, core []byte, inMetadata bool) {
		p := &commonpb.Payload{Metadata: map[string][]byte{MetadataEncoding: []byte(EncodingEncrypted)}, Data: data}
		if inMetadata {
			p.Metadata[MetadataHeader] = core
		}
		enc := IsEncrypted(p)
		sealed := IsSealed(p)
		_, okB := BindingOf(p)
		KeyID(p)
		_, okK := KeyIDIn(p, "default")
		f, _ := envelopeFormat(p)
		h, err := parseEnvelopeV2(p)
		if f != formatV2 {
			if sealed || okB || okK {
				t.Fatalf("format %d: IsSealed %v, BindingOf %v, KeyIDIn %v", f, sealed, okB, okK)
			}
			return
		}
		if !enc {
			t.Fatal("a v2 envelope is not IsEncrypted")
		}
		if sealed != (err == nil) || okB != (err == nil) || okK != (err == nil) {
			t.Fatalf("parse error %v, but IsSealed %v, BindingOf %v, KeyIDIn %v", err, sealed, okB, okK)
		}
		if err != nil {
			return
		}
		if h.inMetadata != inMetadata {
			t.Fatalf("parsed as layout inMetadata=%v, built as %v", h.inMetadata, inMetadata)
		}
		if inMetadata && inDataHeader(data) {
			t.Fatal("an envelope with a header in both places parsed")
		}
		var re []byte
		if !inMetadata {
			re = append(re, magicV2)
		}
		re = append(re, versionV2, byte(h.kind)<<4|h.flags, h.form)
		if h.scope != nil {
			re = binary.AppendUvarint(re, uint64(len(h.scope)))
			re = append(re, h.scope...)
		}
		re = binary.AppendUvarint(re, uint64(len(h.id)))
		re = append(re, h.id...)
		var want []byte
		if inMetadata {
			want = core
			if !bytes.Equal(h.ct, data) {
				t.Fatal("metadata layout: the ciphertext is not the whole data")
			}
		} else {
			if len(h.hdr)+len(h.ct) != len(data) || !bytes.Equal(h.hdr, data[:len(h.hdr)]) {
				t.Fatalf("compact layout: header of %d and ciphertext of %d bytes in %d bytes of data", len(h.hdr), len(h.ct), len(data))
			}
			want = data[:len(h.hdr)]
		}
		if !bytes.Equal(re, want) || !bytes.Equal(h.hdr, want) {
			t.Fatalf("header %x parses to fields that encode as %x", want, re)
		}
		if len(h.hdr) < minCoreV2 || len(h.ct) < MinCiphertextSize || h.form > maxForm {
			t.Fatalf("header of %d bytes, ciphertext of %d, form %d", len(h.hdr), len(h.ct), h.form)
		}
		if got := binary.BigEndian.Uint32(h.ct[1:]); got != h.tinkID || h.ct[0] != tinkPrefixTink {
			t.Fatalf("tink id %08x, prefix %x", h.tinkID, h.ct[:5])
		}
		b := Binding{Kind: h.kind, ID: string(h.id)}
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed binding %v does not validate: %v", b, err)
		}
	})
}
