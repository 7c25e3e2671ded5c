package codec_test

import (
	"context"
	"encoding/hex"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
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
		checkDecodeResult(t, c, p, out, err)
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
		checkDecodeResult(t, c, p, out, err)
	})
}

func checkDecodeResult(t *testing.T, c *codec.Codec, in *commonpb.Payload, out []*commonpb.Payload, err error) {
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
	ns, _ := codec.SealedNamespace(in)
	enc, err := c.Encode(context.Background(), ns, out)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	dec, err := c.Decode(context.Background(), ns, enc)
	if err != nil || !proto.Equal(dec[0], out[0]) {
		t.Fatalf("re-decode: %v", err)
	}
}
