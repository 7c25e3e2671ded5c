package codec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

// FuzzDecode feeds arbitrary envelope data and metadata to Decode: it must never panic, and every error must wrap exactly one sentinel.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f).Vectors {
		env := unmarshalPayload(f, v.Envelope)
		md := env.Metadata
		f.Add(env.Data, string(md[codec.MetadataEncoding]), string(md[codec.MetadataFormat]), string(md[codec.MetadataKeyID]), string(md[codec.MetadataNamespace]), v.DecodeNamespace)
	}
	kr := loadVectorKeyring(f)
	c := newCodec(f, kr, codec.WithMaxDecodedSize(1<<20))
	f.Fuzz(func(t *testing.T, data []byte, encoding, version, keyID, sealedNS, decodeNS string) {
		p := &commonpb.Payload{
			Metadata: map[string][]byte{
				codec.MetadataEncoding:  []byte(encoding),
				codec.MetadataFormat:    []byte(version),
				codec.MetadataKeyID:     []byte(keyID),
				codec.MetadataNamespace: []byte(sealedNS),
			},
			Data: data,
		}
		out, err := c.Decode(context.Background(), decodeNS, []*commonpb.Payload{p})
		checkDecodeResult(t, c, decodeNS, p, out, err)
	})
}

// FuzzDecodePlaintext seals arbitrary plaintext (flags byte || body) with a real key, so the fuzzer reaches the flags, zstd and protobuf parsing behind the AEAD.
func FuzzDecodePlaintext(f *testing.F) {
	for _, v := range loadVectors(f).Vectors {
		if pt, err := hex.DecodeString(v.PlaintextHex); err == nil && len(pt) > 0 {
			f.Add(pt)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add([]byte{0x01, 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x00, 0x00})
	f.Add([]byte{0x80})
	kr := loadVectorKeyring(f)
	c := newCodec(f, kr, codec.WithMaxDecodedSize(1<<20))
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		p := sealRaw(t, kr, "default", plaintext)
		out, err := c.Decode(context.Background(), "default", []*commonpb.Payload{p})
		if name := errorName(err); err != nil && name != "ErrMalformed" && name != "ErrDecodedTooLarge" {
			t.Fatalf("authentic envelope failed with %v, want ErrMalformed or ErrDecodedTooLarge", err)
		}
		checkDecodeResult(t, c, "default", p, out, err)
	})
}

func checkDecodeResult(t *testing.T, c *codec.Codec, ns string, in *commonpb.Payload, out []*commonpb.Payload, err error) {
	t.Helper()
	if err != nil {
		if got := sentinelsIn(err); len(got) != 1 {
			t.Fatalf("error %q wraps %d sentinels, want 1", err, len(got))
		}
		if out != nil {
			t.Fatalf("payloads returned with error %v", err)
		}
		return
	}
	if len(out) != 1 {
		t.Fatalf("Decode returned %d payloads", len(out))
	}
	if !codec.IsEncrypted(in) {
		if out[0] != in {
			t.Fatalf("foreign payload not passed through")
		}
		return
	}
	// A decoded payload must survive another round trip unchanged.
	enc, err := c.Encode(context.Background(), ns, out)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	dec, err := c.Decode(context.Background(), ns, enc)
	if err != nil || !proto.Equal(dec[0], out[0]) {
		t.Fatalf("re-decode: %v", err)
	}
}

// Bits of FuzzDecodeForged's drop argument: metadata entries the forger removes.
const (
	dropEncoding = 1 << iota
	dropFormat
	dropKeyID
	dropNamespace
)

// FuzzDecodeForged starts from real envelopes, sealed once with real keys for namespace "ns" (two keys: one rotated
// out, one primary; some bodies compressed), and lets the fuzzer forge them: any metadata value (encoding, format
// version, key id, namespace), any data bytes, the encrypted flags byte (flagsXor, at its offset in a TINK-prefixed
// AES-GCM ciphertext: the only access to it a forger has), and removed entries. Decode must never panic nor modify its
// input; an error wraps exactly one sentinel and returns no payloads; a payload that is no envelope comes back as it
// was; and an envelope that opens gives the original plaintext of one of the seeds, never other plaintext.
func FuzzDecodeForged(f *testing.F) {
	const ns = "ns"
	kr := codectest.NewKeyring()
	c := newCodec(f, kr, codec.WithCompression(256), codec.WithMaxDecodedSize(1<<20), codec.WithMaxDecodedTotal(2<<20))
	originals := []*commonpb.Payload{
		jsonPayload("forged? never"),
		{},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "a": nil}, Data: []byte{0, 1, 2, 0xff}},
		{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte(`{"k":"v"},`), 400)}, // compressed
		{Metadata: map[string][]byte{"encoding": []byte("json/protobuf")}, Data: []byte(`{}`),
			ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 7}}},
	}
	var envelopes []*commonpb.Payload
	for round := range 2 { // the first round's key is rotated out before the second seals
		enc, err := c.Encode(context.Background(), ns, originals)
		if err != nil {
			f.Fatal(err)
		}
		envelopes = append(envelopes, enc...)
		if round == 0 {
			if _, err := kr.Rotate(ns); err != nil {
				f.Fatal(err)
			}
		}
	}
	otherKey, _ := codec.KeyID(envelopes[len(originals)])
	add := func(env *commonpb.Payload, data []byte, edit func(md map[string]string), flagsXor, drop byte) {
		md := map[string]string{}
		for k, v := range env.Metadata {
			md[k] = string(v)
		}
		if edit != nil {
			edit(md)
		}
		f.Add(data, md[codec.MetadataEncoding], md[codec.MetadataFormat], md[codec.MetadataKeyID], md[codec.MetadataNamespace], flagsXor, drop)
	}
	for i, env := range envelopes {
		add(env, env.Data, nil, 0, 0)
		if i%len(originals) != 0 {
			continue
		}
		add(env, env.Data, nil, 0x01, 0) // flags: claim zstd
		add(env, env.Data, nil, 0x80, 0) // flags: a reserved bit
		add(env, env.Data, func(md map[string]string) { md[codec.MetadataFormat] = "2" }, 0, 0)
		add(env, env.Data, func(md map[string]string) { md[codec.MetadataKeyID] = otherKey }, 0, 0)
		add(env, env.Data, func(md map[string]string) { md[codec.MetadataNamespace] = "other" }, 0, 0)
		add(env, env.Data, func(md map[string]string) { md[codec.MetadataEncoding] = "json/plain" }, 0, 0)
		add(env, env.Data[:codec.MinCiphertextSize], nil, 0, 0)
		add(env, envelopes[3].Data, nil, 0, 0) // another envelope's data under this one's metadata
		add(env, env.Data, nil, 0, dropKeyID|dropNamespace)
	}

	f.Fuzz(func(t *testing.T, data []byte, encoding, version, keyID, sealedNS string, flagsXor, drop byte) {
		p := &commonpb.Payload{
			Metadata: map[string][]byte{
				codec.MetadataEncoding:  []byte(encoding),
				codec.MetadataFormat:    []byte(version),
				codec.MetadataKeyID:     []byte(keyID),
				codec.MetadataNamespace: []byte(sealedNS),
			},
			Data: bytes.Clone(data),
		}
		for bit, k := range map[byte]string{dropEncoding: codec.MetadataEncoding, dropFormat: codec.MetadataFormat, dropKeyID: codec.MetadataKeyID, dropNamespace: codec.MetadataNamespace} {
			if drop&bit != 0 {
				delete(p.Metadata, k)
			}
		}
		const flagsAt = 5 + 12 // Tink prefix, nonce
		if len(p.Data) > flagsAt {
			p.Data[flagsAt] ^= flagsXor
		}
		in := proto.Clone(p).(*commonpb.Payload)

		out, err := c.Decode(context.Background(), ns, []*commonpb.Payload{p})
		if !proto.Equal(in, p) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if got := sentinelsIn(err); len(got) != 1 {
				t.Fatalf("error %q wraps %d sentinels, want 1", err, len(got))
			}
			if out != nil {
				t.Fatalf("payloads returned with error %v", err)
			}
			return
		}
		if len(out) != 1 {
			t.Fatalf("Decode returned %d payloads", len(out))
		}
		if !codec.IsEncrypted(p) {
			if out[0] != p {
				t.Fatal("a payload that is no envelope was not passed through")
			}
			return
		}
		for _, o := range originals {
			if proto.Equal(out[0], o) {
				return
			}
		}
		t.Fatalf("forged envelope opened to plaintext that no seed had (%d bytes of data)", len(out[0].GetData()))
	})
}

// FuzzDecodeV2 feeds arbitrary v2-style envelopes, in either layout (data, and a blindfold-header metadata value when hasHdr),
// to DecodeFor with the vectors' keys: it must never panic, every error must wrap exactly one sentinel, the accessors must
// agree with each other and with IsSealed, and whatever opens must survive another round trip.
func FuzzDecodeV2(f *testing.F) {
	for _, v := range loadVectorsV2(f).Vectors {
		env := unmarshalPayload(f, v.Envelope)
		hdr, hasHdr := env.Metadata[codec.MetadataHeader]
		f.Add(env.Data, hdr, hasHdr, string(env.Metadata[codec.MetadataEncoding]), v.DecodeNamespace, v.ExpectBinding != nil)
	}
	f.Add([]byte{0xBF, 0x02}, []byte(nil), false, codec.EncodingEncrypted, "default", false)
	f.Add([]byte{0xBF, 0x02, 0x12, 0x00, 0x07, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0x00}, []byte(nil), false, codec.EncodingEncrypted, "default", true)
	f.Add([]byte{0x01}, []byte{0x02, 0x12, 0x00, 0x07, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0x00}, true, codec.EncodingEncrypted, "default", true)
	kr := loadVectorV2Keyring(f, nil)
	c := newCodec(f, kr, codec.WithMaxDecodedSize(1<<20))
	f.Fuzz(func(t *testing.T, data, hdr []byte, hasHdr bool, encoding, decodeNS string, strict bool) {
		p := &commonpb.Payload{Metadata: map[string][]byte{codec.MetadataEncoding: []byte(encoding)}, Data: data}
		if hasHdr {
			p.Metadata[codec.MetadataHeader] = hdr
		}
		e := codec.Expect{Namespace: decodeNS}
		if strict {
			e.Accept = func(_ int, b codec.Binding) error {
				if b.Kind != codec.BindWorkflow {
					return fmt.Errorf("bound to %s", b)
				}
				return nil
			}
		}
		// The header accessors must not panic either, and agree with each other.
		b, okB := codec.BindingOf(p)
		_, okK := codec.KeyIDIn(p, decodeNS)
		sealed := codec.IsSealed(p)
		if okB != okK || okB != sealed {
			t.Fatalf("BindingOf ok %v, KeyIDIn ok %v, IsSealed %v", okB, okK, sealed)
		}
		if sealed && !codec.IsEncrypted(p) {
			t.Fatal("IsSealed but not IsEncrypted")
		}
		out, err := c.DecodeFor(context.Background(), e, []*commonpb.Payload{p})
		if err == nil && codec.IsEncrypted(p) && (!okB || strict && b.Kind != codec.BindWorkflow) {
			t.Fatalf("opened an envelope whose binding %v (ok %v) was not accepted", b, okB)
		}
		checkDecodeResult(t, c, decodeNS, p, out, err)
	})
}

// FuzzDecodePlaintextV2 seals arbitrary v2 plaintext (a payload's data, its protobuf, or zstd of either) under an arbitrary
// header, in either layout, with a real key, so the fuzzer reaches the header, form, zstd and protobuf parsing behind the AEAD.
func FuzzDecodePlaintextV2(f *testing.F) {
	for _, v := range loadVectorsV2(f).Vectors {
		if pt, err := hex.DecodeString(v.PlaintextHex); err == nil && v.Format == 2 && v.Error == "" {
			hdr, _ := hex.DecodeString(v.HeaderHex)
			if v.Layout == "compact" {
				hdr = hdr[1:]
			}
			f.Add(hdr[1], hdr[2], []byte(nil), hdr[3:], pt, v.Layout == "metadata")
		}
	}
	f.Add(byte(0x01), byte(0), []byte(nil), []byte{0x00}, []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x00, 0x00}, false)
	f.Add(byte(0x00), byte(0), []byte(nil), []byte{0x00}, []byte{0x09}, true)
	f.Add(byte(0x02), byte(1), []byte("default"), []byte{0x00}, []byte("1"), false)
	f.Add(byte(0x01), byte(3), []byte(nil), []byte{0x00}, []byte{}, true)
	kr := codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate())
	c := newCodec(f, kr, codec.WithMaxDecodedSize(1<<20))
	f.Fuzz(func(t *testing.T, kindFlags, form byte, scope, rest, plaintext []byte, inMetadata bool) {
		hdr := []byte{0xBF, 0x02, kindFlags, form}
		if kindFlags&0x02 != 0 {
			hdr = binary.AppendUvarint(hdr, uint64(len(scope)))
			hdr = append(hdr, scope...)
		}
		hdr = append(hdr, rest...)
		if inMetadata {
			hdr = hdr[1:]
		}
		p := sealRawV2(t, kr, "default", hdr, plaintext)
		out, err := c.Decode(context.Background(), "default", []*commonpb.Payload{p})
		if h, herr := codec.ParseEnvelopeV2(p); herr == nil && !bytes.Equal(h.Header, hdr) {
			// The bytes meant as the header parse as a shorter header (the rest reads as the ciphertext's start), so the
			// envelope was not authenticated as it is read: any single sentinel is right.
			checkDecodeResult(t, c, "default", p, out, err)
			return
		}
		switch name := errorName(err); {
		case err == nil:
		case name == "ErrMalformed", name == "ErrDecodedTooLarge", name == "ErrTruncated":
		case name == "ErrUnknownKey" && kindFlags&0x02 != 0: // a scope the keyring does not hold
		default:
			t.Fatalf("authentic envelope failed with %v, want ErrMalformed, ErrDecodedTooLarge or ErrTruncated", err)
		}
		checkDecodeResult(t, c, "default", p, out, err)
	})
}

// FuzzDecodeForgedV2 starts from real v2 envelopes (two keys, one rotated out; bindings of several kinds; some compressed;
// both header layouts) and lets the fuzzer forge the data (header and ciphertext), the blindfold-header metadata (set,
// changed or removed), the encoding, and add v1 metadata: Decode must never panic nor modify its input; an error wraps
// exactly one sentinel; and an envelope that opens gives one of the originals, bound as it was sealed, from byte-identical
// data and header, never other plaintext.
func FuzzDecodeForgedV2(f *testing.F) {
	const ns = "ns"
	kr := codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate())
	compact := newCodec(f, kr, codec.WithCompression(256), codec.WithMaxDecodedSize(1<<20), codec.WithMaxDecodedTotal(2<<20))
	// The metadata layout from 100 bytes of plaintext on, so that small seeds have it.
	c := newCodec(f, kr, codec.WithCompression(256), codec.WithMaxDecodedSize(1<<20), codec.WithMaxDecodedTotal(2<<20), codec.WithHeaderInMetadataAt(100))
	originals := []*commonpb.Payload{
		jsonPayload("forged? never"),
		{},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "a": nil}, Data: []byte{0, 1, 2, 0xff}},
		{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte(`{"k":"v"},`), 400)}, // compressed
		{Metadata: map[string][]byte{"encoding": []byte("binary/null")}},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: bytes.Repeat([]byte{7, 1, 9}, 100)}, // metadata layout
	}
	bindings := []codec.Binding{{}, codec.Workflow("wf-1"), {Kind: codec.BindNexus, ID: "svc/op"}}
	type sealed struct {
		p *commonpb.Payload
		b codec.Binding
	}
	var all []sealed
	add := func(data, hdr []byte, hasHdr bool, encoding string, addV1 bool) {
		f.Add(data, hdr, hasHdr, encoding, addV1)
	}
	for round := range 2 {
		for _, b := range bindings {
			for _, w := range []*codec.Codec{c, compact} {
				enc, err := w.EncodeFor(context.Background(), codec.Target{Namespace: ns, Binding: b}, originals)
				if err != nil {
					f.Fatal(err)
				}
				for _, e := range enc {
					all = append(all, sealed{e, b})
					hdr, hasHdr := e.Metadata[codec.MetadataHeader]
					add(e.Data, hdr, hasHdr, codec.EncodingEncrypted, false)
				}
			}
		}
		if round == 0 {
			if _, err := kr.Rotate(ns); err != nil {
				f.Fatal(err)
			}
		}
	}
	for _, s := range all[:len(originals)*2] {
		hdr, hasHdr := s.p.Metadata[codec.MetadataHeader]
		d := bytes.Clone(s.p.Data)
		if hasHdr {
			h := bytes.Clone(hdr)
			h[1] ^= 0x10 // another binding kind
			add(d, h, true, codec.EncodingEncrypted, false)
			add(append([]byte{0xBF}, append(bytes.Clone(hdr), d...)...), nil, false, codec.EncodingEncrypted, false) // moved into data
			add(append([]byte{0xBF}, append(bytes.Clone(hdr), d...)...), hdr, true, codec.EncodingEncrypted, false)  // in both
		} else {
			d[2] ^= 0x10
			add(d, nil, false, codec.EncodingEncrypted, false)
		}
		add(s.p.Data, hdr, hasHdr, codec.EncodingEncrypted, true) // v1 metadata added: read as v1
		add(s.p.Data[:len(s.p.Data)-1], hdr, hasHdr, codec.EncodingEncrypted, false)
		add(s.p.Data, hdr, hasHdr, "json/plain", false)
	}
	f.Fuzz(func(t *testing.T, data, hdr []byte, hasHdr bool, encoding string, addV1 bool) {
		p := &commonpb.Payload{Metadata: map[string][]byte{codec.MetadataEncoding: []byte(encoding)}, Data: bytes.Clone(data)}
		if hasHdr {
			p.Metadata[codec.MetadataHeader] = bytes.Clone(hdr)
		}
		if addV1 {
			p.Metadata[codec.MetadataFormat] = []byte(codec.FormatV1)
			p.Metadata[codec.MetadataNamespace] = []byte(ns)
			probe := proto.Clone(p).(*commonpb.Payload)
			probe.Metadata = map[string][]byte{codec.MetadataEncoding: []byte(codec.EncodingEncrypted)}
			if hasHdr {
				probe.Metadata[codec.MetadataHeader] = hdr
			}
			if id, ok := codec.KeyIDIn(probe, ns); ok {
				p.Metadata[codec.MetadataKeyID] = []byte(id)
			}
		}
		in := proto.Clone(p).(*commonpb.Payload)
		var claimed codec.Binding
		out, err := c.DecodeFor(context.Background(), codec.Expect{Namespace: ns, Accept: func(_ int, b codec.Binding) error {
			claimed = b
			return nil
		}}, []*commonpb.Payload{p})
		if !proto.Equal(in, p) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if got := sentinelsIn(err); len(got) != 1 {
				t.Fatalf("error %q wraps %d sentinels, want 1", err, len(got))
			}
			if out != nil {
				t.Fatalf("payloads returned with error %v", err)
			}
			return
		}
		if !codec.IsEncrypted(p) {
			if out[0] != p {
				t.Fatal("a payload that is no envelope was not passed through")
			}
			return
		}
		for _, s := range all {
			sHdr, sHas := s.p.Metadata[codec.MetadataHeader]
			if !bytes.Equal(s.p.Data, data) || sHas != (hasHdr && !addV1) || sHas && !bytes.Equal(sHdr, hdr) {
				continue
			}
			for _, o := range originals {
				if proto.Equal(out[0], o) {
					if s.b != claimed {
						t.Fatalf("opened with claimed binding %v, sealed as %v", claimed, s.b)
					}
					return
				}
			}
		}
		t.Fatalf("forged envelope opened (%d bytes of data, header %x, claimed %v): not byte-identical to any sealed one", len(data), hdr, claimed)
	})
}
