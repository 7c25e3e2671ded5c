package codec_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

var sentinels = []error{
	codec.ErrTampered, codec.ErrTruncated, codec.ErrUnknownKey, codec.ErrKeyDestroyed,
	codec.ErrWrongNamespace, codec.ErrUnsupportedVersion, codec.ErrMalformed, codec.ErrDecodedTooLarge,
	codec.ErrWrongBinding,
}

// sentinelsIn returns the sentinel errors err wraps.
func sentinelsIn(err error) []error {
	var got []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, s)
		}
	}
	return got
}

func newCodec(t testing.TB, kr codec.Keyring, opts ...codec.Option) *codec.Codec {
	t.Helper()
	c, err := codec.New(kr, opts...)
	if err != nil {
		t.Fatalf("codec.New: %v", err)
	}
	return c
}

func jsonPayload(s string) *commonpb.Payload {
	return &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("json/plain")},
		Data:     []byte(`"` + s + `"`),
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sealOne encodes p for namespace and returns the envelope.
func sealOne(t testing.TB, c *codec.Codec, namespace string, p *commonpb.Payload) *commonpb.Payload {
	t.Helper()
	out, err := c.Encode(context.Background(), namespace, []*commonpb.Payload{p})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return out[0]
}

// openRaw decrypts an envelope's data with the keyring's key, returning the plaintext as sealed: v1's flags||body, or v2's
// form||content (zstd-compressed when the header says so).
func openRaw(t testing.TB, kr codec.Keyring, namespace string, env *commonpb.Payload) []byte {
	t.Helper()
	id, ok := codec.KeyIDIn(env, namespace)
	if !ok {
		t.Fatalf("no key id in %v", env)
	}
	key, err := kr.OpeningKey(context.Background(), namespace, id)
	if err != nil {
		t.Fatal(err)
	}
	data, ad := env.Data, codec.AssociatedData(id, namespace)
	if codec.IsV2(env) {
		h, err := codec.ParseEnvelopeV2(env)
		if err != nil {
			t.Fatal(err)
		}
		data, ad = env.Data[h.Len:], codec.AssociatedDataV2(namespace, id, h.Header)
	}
	pt, err := key.AEAD.Decrypt(data, ad)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// compressed reports whether envelope env (either format) holds a compressed plaintext.
func compressed(t testing.TB, kr codec.Keyring, namespace string, env *commonpb.Payload) bool {
	t.Helper()
	if codec.IsV2(env) {
		h, err := codec.ParseEnvelopeV2(env)
		if err != nil {
			t.Fatal(err)
		}
		return h.Compressed
	}
	return openRaw(t, kr, namespace, env)[0]&1 != 0
}

// formats are the write formats tests run under.
var formats = []struct {
	name string
	opt  codec.Option
}{{"v1", codec.WithWriteFormat(1)}, {"v2", codec.WithWriteFormat(2)}}

// sealRaw builds an envelope around an arbitrary plaintext (flags||body) with the namespace's sealing key.
func sealRaw(t testing.TB, kr codec.Keyring, namespace string, plaintext []byte) *commonpb.Payload {
	t.Helper()
	key, err := kr.SealingKey(context.Background(), codec.Target{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := key.AEAD.Encrypt(plaintext, codec.AssociatedData(key.ID, namespace))
	if err != nil {
		t.Fatal(err)
	}
	return &commonpb.Payload{
		Metadata: map[string][]byte{
			codec.MetadataEncoding:  []byte(codec.EncodingEncrypted),
			codec.MetadataFormat:    []byte(codec.FormatV1),
			codec.MetadataKeyID:     []byte(key.ID),
			codec.MetadataNamespace: []byte(namespace),
		},
		Data: ct,
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("blindfold "), 10_000)
	payloads := []*commonpb.Payload{
		jsonPayload("marker-roundtrip"),
		{},
		nil,
		{Metadata: map[string][]byte{"encoding": []byte("binary/null")}},
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "a": nil, "b": {}}, Data: randomBytes(t, 3000)},
		{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: big},
		{
			Metadata:         map[string][]byte{"encoding": []byte("json/protobuf")},
			Data:             []byte(`{}`),
			ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 12345}},
		},
		// A foreign "encrypted" payload (e.g. from the Temporal samples' codec) is not ours, so it is sealed like any other.
		{Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("x")}, Data: []byte("sample ciphertext")},
	}
	for _, tc := range []struct {
		name string
		opts []codec.Option
	}{
		{"plain", nil},
		{"zstd-threshold-0", []codec.Option{codec.WithCompression(0)}},
		{"zstd-threshold-1KiB", []codec.Option{codec.WithCompression(1024)}},
	} {
		for _, f := range formats {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				kr := codectest.NewKeyring()
				c := newCodec(t, kr, append(tc.opts, f.opt)...)
				ctx := context.Background()
				enc, err := c.Encode(ctx, "default", payloads)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				if len(enc) != len(payloads) {
					t.Fatalf("Encode returned %d payloads, want %d", len(enc), len(payloads))
				}
				for i, e := range enc {
					if payloads[i] == nil {
						if e != nil {
							t.Errorf("payload %d: nil became %v", i, e)
						}
						continue
					}
					if !codec.IsEncrypted(e) {
						t.Errorf("payload %d not encrypted: %v", i, e)
					}
					if bytes.Contains(e.Data, []byte("marker-roundtrip")) || bytes.Contains(e.Data, []byte("json/plain")) {
						t.Errorf("payload %d: plaintext visible in envelope", i)
					}
					if id, ok := codec.KeyIDIn(e, "default"); !ok || !strings.HasPrefix(id, "default/") {
						t.Errorf("payload %d: KeyIDIn = %q, %v", i, id, ok)
					}
					if codec.IsV2(e) != (f.name == "v2") {
						t.Errorf("payload %d: written in the wrong format: %x", i, e.Data[:2])
					}
					if ns, ok := codec.SealedNamespace(e); f.name == "v1" && (!ok || ns != "default") || f.name == "v2" && ok {
						t.Errorf("payload %d: SealedNamespace = %q, %v", i, ns, ok)
					}
					if len(e.ExternalPayloads) != len(payloads[i].ExternalPayloads) {
						t.Errorf("payload %d: external payloads %v, want sizes of %v", i, e.ExternalPayloads, payloads[i].ExternalPayloads)
					}
				}
				dec, err := c.Decode(ctx, "default", enc)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				for i := range payloads {
					if !proto.Equal(dec[i], payloads[i]) {
						t.Errorf("payload %d: decoded %v, want %v", i, dec[i], payloads[i])
					}
					if payloads[i] != nil && dec[i] == payloads[i] {
						t.Errorf("payload %d: decode returned the input pointer", i)
					}
				}
			})
		}
	}
}

func TestEncodeIsIdempotent(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	ctx := context.Background()
	in := []*commonpb.Payload{jsonPayload("a"), nil, jsonPayload("b")}
	once, err := c.Encode(ctx, "default", in)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := c.Encode(ctx, "default", once)
	if err != nil {
		t.Fatal(err)
	}
	for i := range once {
		if once[i] != twice[i] {
			t.Errorf("payload %d re-encoded: %v -> %v", i, once[i], twice[i])
		}
	}
	// Envelopes of another format version (e.g. from a newer sender) are not re-encrypted either.
	v2 := proto.Clone(once[0]).(*commonpb.Payload)
	v2.Metadata[codec.MetadataFormat] = []byte("2")
	got, err := c.Encode(ctx, "default", []*commonpb.Payload{v2})
	if err != nil || got[0] != v2 {
		t.Errorf("Encode of a v2 envelope = %v, %v; want it unchanged", got, err)
	}
	// Input slice and payloads are not modified.
	if !proto.Equal(in[0], jsonPayload("a")) {
		t.Errorf("input modified: %v", in[0])
	}
}

func TestDecodePassesForeignPayloads(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	foreign := []*commonpb.Payload{
		nil,
		{},
		jsonPayload("x"),
		{Metadata: map[string][]byte{"encoding": []byte("binary/encrypted"), "encryption-key-id": []byte("k")}, Data: []byte("not ours")},
		{Metadata: map[string][]byte{codec.MetadataFormat: []byte("1")}, Data: []byte("format key but no encrypted encoding")},
		{Metadata: map[string][]byte{"encoding": []byte("binary/zlib")}, Data: []byte{1, 2, 3}},
	}
	out, err := c.Decode(context.Background(), "default", foreign)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	for i := range foreign {
		if out[i] != foreign[i] {
			t.Errorf("payload %d: got %v, want the same payload back", i, out[i])
		}
		if codec.IsEncrypted(foreign[i]) {
			t.Errorf("payload %d: IsEncrypted = true", i)
		}
		if _, ok := codec.KeyID(foreign[i]); ok {
			t.Errorf("payload %d: KeyID ok", i)
		}
	}
}

// failingKeyring fails every call with an error that wraps no sentinel, like an unreachable key store.
type failingKeyring struct{}

var errStoreDown = errors.New("key store unreachable")

func (failingKeyring) SealingKey(context.Context, codec.Target) (codec.Key, error) {
	return codec.Key{}, errStoreDown
}

func (failingKeyring) OpeningKey(context.Context, string, string) (codec.Key, error) {
	return codec.Key{}, errStoreDown
}

// TestDecodeErrors covers format v1 (TestDecodeErrorsV2 covers v2).
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := proto.Marshal(jsonPayload("x"))
	if err != nil {
		t.Fatal(err)
	}
	const maxDecoded = 1 << 20
	bomb := make([]byte, 8*maxDecoded)
	var streamBomb bytes.Buffer // a frame without a content size, so only the running total can stop it
	zw, err := zstd.NewWriter(&streamBomb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(bomb); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var smallWindowBomb bytes.Buffer // its window is within the cap, so only the growing output buffer can stop it
	zw, err = zstd.NewWriter(&smallWindowBomb, zstd.WithWindowSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(bomb); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		// mutate gets a fresh keyring, a good envelope sealed for "default", and returns the envelope to decode under decodeNS.
		mutate   func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload
		decodeNS string
		keyring  codec.Keyring // overrides kr for decoding
		want     error         // nil: the error must wrap no sentinel
		noGood   bool          // a good envelope cannot precede the bad one (the key itself is gone)
	}{
		{name: "flipped ciphertext byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[len(env.Data)/2] ^= 0x01
			return env
		}},
		{name: "flipped tag byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[len(env.Data)-1] ^= 0x80
			return env
		}},
		{name: "flipped tink prefix", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[1] ^= 0x01
			return env
		}},
		{name: "appended byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = append(env.Data, 0)
			return env
		}},
		{name: "truncated below minimum", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:codec.MinCiphertextSize-1]
			return env
		}},
		{name: "empty data", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = nil
			return env
		}},
		{name: "truncated above minimum", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:len(env.Data)-1]
			return env
		}},
		{name: "metadata key id unknown", want: codec.ErrUnknownKey, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Metadata[codec.MetadataKeyID] = []byte("default/ffffffff")
			return env
		}},
		{name: "metadata key id of another real key", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			id, err := kr.Rotate("default")
			if err != nil {
				t.Fatal(err)
			}
			env.Metadata[codec.MetadataKeyID] = []byte(id)
			return env
		}},
		{name: "metadata namespace edited to match", decodeNS: "other", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			// The attacker also gives "other" the same key, so only the associated data can catch it.
			h, err := kr.Keyset("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := kr.SetKeyset("other", h); err != nil {
				t.Fatal(err)
			}
			id, _ := codec.KeyID(env)
			env.Metadata[codec.MetadataKeyID] = []byte(strings.Replace(id, "default/", "other/", 1))
			env.Metadata[codec.MetadataNamespace] = []byte("other")
			return env
		}},
		{name: "wrong namespace", decodeNS: "other", want: codec.ErrWrongNamespace, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return env
		}},
		{name: "destroyed key", want: codec.ErrKeyDestroyed, noGood: true, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			kr.Destroy("default")
			return env
		}},
		{name: "unsupported version", want: codec.ErrUnsupportedVersion, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Metadata[codec.MetadataFormat] = []byte("2")
			return env
		}},
		{name: "empty version", want: codec.ErrUnsupportedVersion, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Metadata[codec.MetadataFormat] = nil
			return env
		}},
		{name: "no key id", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			delete(env.Metadata, codec.MetadataKeyID)
			return env
		}},
		{name: "no namespace", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			delete(env.Metadata, codec.MetadataNamespace)
			return env
		}},
		{name: "unknown flag bit", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", append([]byte{0x02}, body...))
		}},
		{name: "all flag bits", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", append([]byte{0xff}, body...))
		}},
		{name: "no flags byte", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", nil)
		}},
		{name: "bad zstd", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", append([]byte{0x01}, body...))
		}},
		{name: "bad protobuf", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", []byte{0x00, 0xff, 0xff, 0xff})
		}},
		{name: "bad protobuf after zstd", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", zenc.EncodeAll([]byte{0x12, 0xff}, []byte{0x01}))
		}},
		{name: "zstd bomb with content size", want: codec.ErrDecodedTooLarge, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", zenc.EncodeAll(bomb, []byte{0x01}))
		}},
		{name: "zstd bomb without content size", want: codec.ErrDecodedTooLarge, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", append([]byte{0x01}, streamBomb.Bytes()...))
		}},
		{name: "zstd bomb without content size, small window", want: codec.ErrDecodedTooLarge, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRaw(t, kr, "default", append([]byte{0x01}, smallWindowBomb.Bytes()...))
		}},
		{name: "keyring down", keyring: failingKeyring{}, want: nil, noGood: true, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return env
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kr := codectest.NewKeyring()
			c := newCodec(t, kr, codec.WithMaxDecodedSize(maxDecoded), codec.WithWriteFormat(1))
			good := sealOne(t, c, "default", jsonPayload("good"))
			env := tc.mutate(t, kr, sealOne(t, c, "default", jsonPayload("x")))
			ns := "default"
			if tc.decodeNS != "" {
				ns = tc.decodeNS
				good = sealOne(t, c, ns, jsonPayload("good"))
			}
			if tc.keyring != nil {
				c = newCodec(t, tc.keyring)
			}
			if tc.noGood {
				good = jsonPayload("passes through")
			}
			out, err := c.Decode(ctx, ns, []*commonpb.Payload{good, env})
			if err == nil {
				t.Fatalf("Decode succeeded: %v", out)
			}
			if out != nil {
				t.Errorf("Decode returned payloads with an error: %v", out)
			}
			got := sentinelsIn(err)
			switch {
			case tc.want == nil && len(got) != 0:
				t.Errorf("error %q wraps %v, want no sentinel", err, got)
			case tc.want == nil && !errors.Is(err, errStoreDown):
				t.Errorf("error %q does not wrap the keyring's error", err)
			case tc.want != nil && (len(got) != 1 || got[0] != tc.want):
				t.Errorf("error %q wraps %v, want exactly [%v]", err, got, tc.want)
			}
			if !strings.Contains(err.Error(), "payload 1") {
				t.Errorf("error %q does not name the payload index", err)
			}
			if id, ok := codec.KeyID(env); ok && tc.want != codec.ErrUnsupportedVersion && !strings.Contains(err.Error(), id) {
				t.Errorf("error %q does not name key %q", err, id)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring()
	kr.Destroy("shredded")
	c := newCodec(t, kr)
	if _, err := c.Encode(ctx, "shredded", []*commonpb.Payload{nil, jsonPayload("x")}); !errors.Is(err, codec.ErrKeyDestroyed) || !strings.Contains(err.Error(), "payload 1") {
		t.Errorf("Encode under a shredded scope: %v, want ErrKeyDestroyed naming payload 1", err)
	}
	// Nothing to seal: the keyring is not asked, so even a shredded scope passes nil and envelopes.
	if out, err := c.Encode(ctx, "shredded", []*commonpb.Payload{nil}); err != nil || len(out) != 1 || out[0] != nil {
		t.Errorf("Encode of nil payloads = %v, %v", out, err)
	}
	c = newCodec(t, failingKeyring{})
	if _, err := c.Encode(ctx, "default", []*commonpb.Payload{jsonPayload("x")}); !errors.Is(err, errStoreDown) || len(sentinelsIn(err)) != 0 {
		t.Errorf("Encode with a failing keyring: %v", err)
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	for _, tc := range []struct {
		name string
		kr   codec.Keyring
		opts []codec.Option
		ok   bool
	}{
		{"defaults", kr, nil, true},
		{"nil keyring", nil, nil, false},
		{"negative threshold", kr, []codec.Option{codec.WithCompression(-1)}, false},
		{"zero max decoded", kr, []codec.Option{codec.WithMaxDecodedSize(0)}, false},
		{"all", kr, []codec.Option{codec.WithCompression(512), codec.WithMaxDecodedSize(1 << 20)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codec.New(tc.kr, tc.opts...)
			if (err == nil) != tc.ok {
				t.Errorf("New: err = %v, want ok = %v", err, tc.ok)
			}
		})
	}
}

func TestCompression(t *testing.T) {
	t.Parallel()
	compressible := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte(`{"k":"v"},`), 6554)}
	incompressible := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: randomBytes(t, 64<<10)}
	small := jsonPayload("small")
	for _, tc := range []struct {
		name           string
		opts           []codec.Option
		p              *commonpb.Payload
		wantCompressed bool
	}{
		{"off", nil, compressible, false},
		{"compressible", []codec.Option{codec.WithCompression(1024)}, compressible, true},
		{"incompressible", []codec.Option{codec.WithCompression(1024)}, incompressible, false},
		{"below threshold", []codec.Option{codec.WithCompression(1024)}, small, false},
		{"above max decoded size", []codec.Option{codec.WithCompression(0), codec.WithMaxDecodedSize(1024)}, compressible, false},
	} {
		for _, f := range formats {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				kr := codectest.NewKeyring()
				c := newCodec(t, kr, append(tc.opts, f.opt)...)
				env := sealOne(t, c, "default", tc.p)
				if got := compressed(t, kr, "default", env); got != tc.wantCompressed {
					t.Errorf("compressed = %v, want %v", got, tc.wantCompressed)
				}
				if tc.wantCompressed && len(env.Data) >= proto.Size(tc.p) {
					t.Errorf("compressed envelope of %d bytes for a %d-byte payload", len(env.Data), proto.Size(tc.p))
				}
				// Any codec decodes it, whatever its own compression setting.
				for _, d := range []*codec.Codec{c, newCodec(t, kr)} {
					out, err := d.Decode(context.Background(), "default", []*commonpb.Payload{env})
					if err != nil {
						t.Fatalf("Decode: %v", err)
					}
					if !proto.Equal(out[0], tc.p) {
						t.Errorf("round trip changed the payload")
					}
				}
			})
		}
	}
}

func TestAssociatedData(t *testing.T) {
	t.Parallel()
	got := codec.AssociatedData("default/0a1b2c3d", "ns")
	want := []byte("\x00\x00\x00\x0cblindfold/v1\x00\x00\x00\x10default/0a1b2c3d\x00\x00\x00\x02ns")
	if !bytes.Equal(got, want) {
		t.Errorf("AssociatedData = %q, want %q", got, want)
	}
	// Moving bytes between fields changes the encoding.
	if bytes.Equal(codec.AssociatedData("ab", "c"), codec.AssociatedData("a", "bc")) {
		t.Error("associated data is ambiguous")
	}
}

func TestNamespaceCodecIsPayloadCodec(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	var pc converter.PayloadCodec = c.ForNamespace("default")
	dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), pc)
	p, err := dc.ToPayload(map[string]string{"marker": "sdk-chain"})
	if err != nil {
		t.Fatal(err)
	}
	if !codec.IsEncrypted(p) {
		t.Fatalf("SDK chain payload not encrypted: %v", p)
	}
	var back map[string]string
	if err := dc.FromPayload(p, &back); err != nil {
		t.Fatal(err)
	}
	if back["marker"] != "sdk-chain" {
		t.Errorf("round trip through the SDK chain = %v", back)
	}
	// Another namespace's codec refuses it: its default scope has no such key.
	if _, err := c.ForNamespace("other").Decode([]*commonpb.Payload{p}); !errors.Is(err, codec.ErrUnknownKey) || !strings.Contains(err.Error(), "sealed for another namespace?") {
		t.Errorf("other namespace decode: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr, codec.WithCompression(64))
	ctx := context.Background()
	errc := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				ns := fmt.Sprintf("ns%d", (g+i)%3)
				in := []*commonpb.Payload{jsonPayload(strings.Repeat("x", i*10))}
				enc, err := c.Encode(ctx, ns, in)
				if err != nil {
					errc <- err
					return
				}
				dec, err := c.Decode(ctx, ns, enc)
				if err != nil {
					errc <- err
					return
				}
				if !proto.Equal(dec[0], in[0]) {
					errc <- fmt.Errorf("goroutine %d, round %d: payload changed", g, i)
					return
				}
			}
			errc <- nil
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// TestNoGoroutineLeak checks that the lazily built zstd encoder and decoder leave no goroutines behind: the codec has no Close.
func TestNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	kr := codectest.NewKeyring()
	c := newCodec(t, kr, codec.WithCompression(0))
	in := []*commonpb.Payload{{Data: bytes.Repeat([]byte("leak? "), 1000)}}
	enc, err := c.Encode(context.Background(), "default", in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decode(context.Background(), "default", enc); err != nil {
		t.Fatal(err)
	}
}
