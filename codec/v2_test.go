package codec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

// header builds a compact-layout v2 header by hand: kind, flags, an optional scope, the binding id; body form 0.
func header(kind codec.BindingKind, flags byte, scope *string, id string) []byte {
	return headerForm(kind, flags, 0, scope, id)
}

// headerForm is header with a body form.
func headerForm(kind codec.BindingKind, flags, form byte, scope *string, id string) []byte {
	h := []byte{0xBF, 0x02, byte(kind)<<4 | flags, form}
	if scope != nil {
		h = binary.AppendUvarint(h, uint64(len(*scope)))
		h = append(h, *scope...)
	}
	h = binary.AppendUvarint(h, uint64(len(id)))
	return append(h, id...)
}

// sealRawV2 builds a v2 envelope around an arbitrary header and plaintext (compressed when the header says so), authenticated
// for namespace with its sealing key, as a forger holding the key could. A header that does not start with the magic byte goes
// in the blindfold-header metadata (the metadata layout).
func sealRawV2(t testing.TB, kr codec.Keyring, namespace string, hdr, plaintext []byte) *commonpb.Payload {
	t.Helper()
	key, err := kr.SealingKey(context.Background(), codec.Target{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := key.AEAD.Encrypt(plaintext, codec.AssociatedDataV2(namespace, key.ID, hdr))
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr) == 0 || hdr[0] != 0xBF {
		return &commonpb.Payload{
			Metadata: map[string][]byte{codec.MetadataEncoding: []byte(codec.EncodingEncrypted), codec.MetadataHeader: bytes.Clone(hdr)},
			Data:     ct,
		}
	}
	return &commonpb.Payload{
		Metadata: map[string][]byte{codec.MetadataEncoding: []byte(codec.EncodingEncrypted)},
		Data:     append(bytes.Clone(hdr), ct...),
	}
}

func TestDecodeErrorsV2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	const maxDecoded = 1 << 20
	bomb := make([]byte, 8*maxDecoded)
	body, err := proto.Marshal(&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "x": nil}, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	plainHdr := header(codec.BindNamespace, 0, nil, "")
	zstdHdr := header(codec.BindNamespace, 1, nil, "")
	wf := func(env *commonpb.Payload) codec.HeaderV2 {
		h, err := codec.ParseHeaderV2(env.Data)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// splice replaces the header of env's data with hdr, keeping the ciphertext.
	splice := func(env *commonpb.Payload, hdr []byte) *commonpb.Payload {
		env.Data = append(hdr, env.Data[wf(env).Len:]...)
		return env
	}
	scope := func(s string) *string { return &s }

	tests := []struct {
		name     string
		mutate   func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload
		decodeNS string
		keyring  codec.Keyring
		want     error // nil: the error must wrap no sentinel
		noGood   bool
	}{
		{name: "flipped ciphertext byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[len(env.Data)/2] ^= 0x01
			return env
		}},
		{name: "flipped tag byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[len(env.Data)-1] ^= 0x80
			return env
		}},
		{name: "appended byte", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = append(env.Data, 0)
			return env
		}},
		{name: "cut above minimum", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:len(env.Data)-1]
			return env
		}},
		{name: "tink key id in prefix changed", want: codec.ErrUnknownKey, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[wf(env).Len+4] ^= 0x01
			return env
		}},
		{name: "tink key id of another real key", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			id, err := kr.Rotate("default")
			if err != nil {
				t.Fatal(err)
			}
			binary.BigEndian.PutUint32(env.Data[wf(env).Len+1:], tinkID(t, id))
			return env
		}},
		{name: "not a TINK prefix", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[wf(env).Len] = 0x00
			return env
		}},
		{name: "ciphertext below minimum", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:wf(env).Len+codec.MinCiphertextSize-1]
			return env
		}},
		{name: "magic and version only", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:2]
			return env
		}},
		{name: "no body form", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:3]
			return env
		}},
		{name: "no binding id length", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = env.Data[:4]
			return env
		}},
		{name: "binding id cut off", want: codec.ErrTruncated, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data = []byte{0xBF, 0x02, 0x10, 0x01, 0x05, 'a', 'b'}
			return env
		}},
		{name: "later version", want: codec.ErrUnsupportedVersion, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[1] = 0x03
			return env
		}},
		{name: "last version byte", want: codec.ErrUnsupportedVersion, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[1] = 0x0F
			return env
		}},
		{name: "reserved flag bit 2", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[2] |= 0x4
			return env
		}},
		{name: "reserved flag bit 3", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[2] |= 0x8
			return env
		}},
		{name: "unknown binding kind", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[2] = 0x80
			return env
		}},
		{name: "binding id for the namespace kind", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindNamespace, 0, nil, "wf"))
		}},
		{name: "binding id for a query answer", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindQuery, 0, nil, "wf"))
		}},
		{name: "binding id too long", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindWorkflow, 0, nil, strings.Repeat("w", codec.MaxBindingIDLen+1)))
		}},
		{name: "non-minimal varint", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, []byte{0xBF, 0x02, 0x00, 0x00, 0x80, 0x00})
		}},
		{name: "varint overflow", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, append([]byte{0xBF, 0x02, 0x00, 0x00}, bytes.Repeat([]byte{0xff}, 11)...))
		}},
		{name: "invalid explicit scope", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindNamespace, 2, scope("../etc"), ""))
		}},
		{name: "empty explicit scope", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindNamespace, 2, scope(""), ""))
		}},
		{name: "explicit scope added", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			// The same key id as the default scope gives, but the header is authenticated byte for byte.
			return splice(env, header(codec.BindNamespace, 2, scope("default"), ""))
		}},
		{name: "binding kind changed", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindActivity, 0, nil, "order-42"))
		}},
		{name: "binding id changed", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindWorkflow, 0, nil, "order-43"))
		}},
		{name: "binding dropped", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return splice(env, header(codec.BindNamespace, 0, nil, ""))
		}},
		{name: "compression flag set", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[2] |= 0x1
			return env
		}},
		{name: "body form changed", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[3] = 3 // json/plain to binary/plain
			return env
		}},
		{name: "reserved body form", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[3] = 5
			return env
		}},
		{name: "body form 255", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Data[3] = 0xff
			return env
		}},
		{name: "header moved into metadata", want: codec.ErrTampered, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			n := wf(env).Len
			env.Metadata[codec.MetadataHeader] = bytes.Clone(env.Data[1:n]) // the same fields, in the other layout
			env.Data = env.Data[n:]
			return env
		}},
		{name: "header in metadata and in data", want: codec.ErrMalformed, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			env.Metadata[codec.MetadataHeader] = bytes.Clone(env.Data[1:wf(env).Len])
			return env
		}},
		{name: "opened in another namespace sharing the key", decodeNS: "other", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			// "other" has the same keys (as a shared scope would), so only the namespace in the associated data can catch it.
			h, err := kr.Keyset("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := kr.SetKeyset("other", h); err != nil {
				t.Fatal(err)
			}
			return env
		}},
		{name: "opened in another namespace", decodeNS: "other", want: codec.ErrUnknownKey, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return env
		}},
		{name: "destroyed key", want: codec.ErrKeyDestroyed, noGood: true, mutate: func(t *testing.T, kr *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			kr.Destroy("default")
			return env
		}},
		{name: "keyring down", keyring: failingKeyring{}, want: nil, noGood: true, mutate: func(t *testing.T, _ *codectest.Keyring, env *commonpb.Payload) *commonpb.Payload {
			return env
		}},
		{name: "bad protobuf", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRawV2(t, kr, "default", plainHdr, []byte{0xff, 0xff, 0xff})
		}},
		{name: "bad zstd", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRawV2(t, kr, "default", zstdHdr, body)
		}},
		{name: "bad protobuf after zstd", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRawV2(t, kr, "default", zstdHdr, zenc.EncodeAll([]byte{0x12, 0xff}, nil))
		}},
		{name: "zstd bomb", want: codec.ErrDecodedTooLarge, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			return sealRawV2(t, kr, "default", headerForm(codec.BindNamespace, 1, 3, nil, ""), zenc.EncodeAll(bomb, nil))
		}},
		// The metadata layout.
		{name: "metadata layout: flipped ciphertext byte", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Data[len(env.Data)/2] ^= 1
			return env
		}},
		{name: "metadata layout: header edited", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", header(codec.BindWorkflow, 0, nil, "order-42")[1:], body)
			env.Metadata[codec.MetadataHeader] = header(codec.BindWorkflow, 0, nil, "order-43")[1:]
			return env
		}},
		{name: "metadata layout: header moved into data", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Data = append(bytes.Clone(plainHdr), env.Data...)
			delete(env.Metadata, codec.MetadataHeader)
			return env
		}},
		{name: "metadata layout: header also in data", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Data = append(bytes.Clone(plainHdr), env.Data...)
			return env
		}},
		{name: "metadata layout: magic in metadata", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Metadata[codec.MetadataHeader] = plainHdr
			return env
		}},
		{name: "metadata layout: empty header", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Metadata[codec.MetadataHeader] = nil
			return env
		}},
		{name: "metadata layout: header cut off", want: codec.ErrTruncated, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Metadata[codec.MetadataHeader] = plainHdr[1:3]
			return env
		}},
		{name: "metadata layout: bytes after the header", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Metadata[codec.MetadataHeader] = append(bytes.Clone(plainHdr[1:]), 0)
			return env
		}},
		{name: "metadata layout: later version", want: codec.ErrUnsupportedVersion, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Metadata[codec.MetadataHeader][0] = 0x03
			return env
		}},
		{name: "metadata layout: not a TINK prefix", want: codec.ErrMalformed, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Data[0] = 0x00
			return env
		}},
		{name: "metadata layout: ciphertext below minimum", want: codec.ErrTruncated, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			env := sealRawV2(t, kr, "default", plainHdr[1:], body)
			env.Data = env.Data[:codec.MinCiphertextSize-1]
			return env
		}},
		{name: "metadata layout: opened in another namespace sharing the key", decodeNS: "other", want: codec.ErrTampered, mutate: func(t *testing.T, kr *codectest.Keyring, _ *commonpb.Payload) *commonpb.Payload {
			h, err := kr.Keyset("default")
			if err != nil {
				t.Fatal(err)
			}
			if err := kr.SetKeyset("other", h); err != nil {
				t.Fatal(err)
			}
			return sealRawV2(t, kr, "default", plainHdr[1:], body)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kr := codectest.NewKeyring()
			c := newCodec(t, kr, codec.WithMaxDecodedSize(maxDecoded))
			good := sealOne(t, c, "default", jsonPayload("good"))
			sealed, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: codec.Workflow("order-42")}, []*commonpb.Payload{jsonPayload("x")})
			if err != nil {
				t.Fatal(err)
			}
			env := tc.mutate(t, kr, sealed[0])
			ns := "default"
			if tc.decodeNS != "" {
				ns = tc.decodeNS
				good = jsonPayload("passes through")
			}
			if tc.keyring != nil {
				c = newCodec(t, tc.keyring)
			}
			if tc.noGood {
				good = jsonPayload("passes through")
			}
			if !codec.IsEncrypted(env) {
				t.Fatalf("the mutated envelope is not recognised: %x", env.Data)
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
			if id, ok := codec.KeyIDIn(env, ns); ok && !strings.Contains(err.Error(), id) {
				t.Errorf("error %q does not name key %q", err, id)
			}
		})
	}
}

// TestBindings: every binding kind seals, is reported by BindingOf, is offered to Accept before anything is decrypted, and
// opens only as what it claims.
func TestBindings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	bindings := []codec.Binding{
		{}, codec.Workflow("order-42"), {Kind: codec.BindActivity, ID: "act-1"}, {Kind: codec.BindSchedule, ID: "sched"},
		{Kind: codec.BindScheduledWorkflow, ID: "sched-wf"}, {Kind: codec.BindBatch, ID: "batch-7"}, {Kind: codec.BindQuery},
		{Kind: codec.BindNexus, ID: "svc/op"}, {Kind: codec.BindNexus}, codec.Workflow(strings.Repeat("é", codec.MaxBindingIDLen/2)),
		codec.Workflow("\x00binary\xff id"),
	}
	for _, b := range bindings {
		in := []*commonpb.Payload{jsonPayload("a"), nil, {Data: []byte("b")}}
		enc, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: b}, in)
		if err != nil {
			t.Fatalf("%s: EncodeFor: %v", b, err)
		}
		for i, e := range enc {
			if e == nil {
				continue
			}
			if got, ok := codec.BindingOf(e); !ok || got != b {
				t.Errorf("%s: BindingOf(payload %d) = %v, %v", b, i, got, ok)
			}
			if h, err := codec.ParseHeaderV2(e.Data); err != nil || h.Len != 4+uvarintLen(len(b.ID))+len(b.ID) {
				t.Errorf("%s: header %+v, %v", b, h, err)
			}
		}
		var offered []int
		out, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default", Accept: func(i int, got codec.Binding) error {
			offered = append(offered, i)
			if got != b {
				return fmt.Errorf("offered %s", got)
			}
			return nil
		}}, enc)
		if err != nil {
			t.Fatalf("%s: DecodeFor: %v", b, err)
		}
		if fmt.Sprint(offered) != "[0 2]" {
			t.Errorf("%s: Accept called for %v, want [0 2]", b, offered)
		}
		for i := range in {
			if !proto.Equal(out[i], in[i]) {
				t.Errorf("%s: payload %d = %v", b, i, out[i])
			}
		}
		// A nil Accept opens every binding.
		if _, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default"}, enc); err != nil {
			t.Errorf("%s: DecodeFor with nil Accept: %v", b, err)
		}
	}

	// A refusal wraps ErrWrongBinding and Accept's error, and comes before any key lookup.
	enc, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: codec.Workflow("order-42")}, []*commonpb.Payload{jsonPayload("x")})
	if err != nil {
		t.Fatal(err)
	}
	errAccept := errors.New("bound to workflow \"order-42\", opened in workflow \"order-43\"")
	down := newCodec(t, failingKeyring{})
	_, err = down.DecodeFor(ctx, codec.Expect{Namespace: "default", Accept: func(int, codec.Binding) error { return errAccept }}, enc)
	if !errors.Is(err, codec.ErrWrongBinding) || !errors.Is(err, errAccept) || errors.Is(err, errStoreDown) || len(sentinelsIn(err)) != 1 {
		t.Errorf("refused binding: %v", err)
	}
	b := codec.NewDecodeBudget(1 << 20)
	if _, err := c.DecodeForWithin(ctx, codec.Expect{Namespace: "default", Accept: func(int, codec.Binding) error { return errAccept }}, enc, b); !errors.Is(err, codec.ErrWrongBinding) {
		t.Errorf("DecodeForWithin refused binding: %v", err)
	}

	// v1 envelopes claim the namespace binding.
	v1 := newCodec(t, kr, codec.WithWriteFormat(1))
	old, err := v1.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: codec.Workflow("ignored by v1")}, []*commonpb.Payload{jsonPayload("v1")})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := codec.BindingOf(old[0]); !ok || got != (codec.Binding{}) {
		t.Errorf("BindingOf(v1) = %v, %v", got, ok)
	}
	var claimed []codec.Binding
	if _, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default", Accept: func(_ int, got codec.Binding) error {
		claimed = append(claimed, got)
		return nil
	}}, old); err != nil || len(claimed) != 1 || claimed[0] != (codec.Binding{}) {
		t.Errorf("v1 envelope: %v, claimed %v", err, claimed)
	}
	if _, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default", Accept: func(int, codec.Binding) error { return errAccept }}, old); !errors.Is(err, codec.ErrWrongBinding) {
		t.Errorf("refused v1 envelope: %v", err)
	}

	// Bindings that cannot be sealed.
	for _, bad := range []codec.Binding{{Kind: 8}, {Kind: 15, ID: "x"}, codec.Workflow(strings.Repeat("w", codec.MaxBindingIDLen+1)),
		{Kind: codec.BindNamespace, ID: "x"}, {Kind: codec.BindQuery, ID: "x"}} {
		if _, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: bad}, []*commonpb.Payload{jsonPayload("x")}); !errors.Is(err, codec.ErrMalformed) {
			t.Errorf("EncodeFor with binding %v: %v, want ErrMalformed", bad, err)
		}
	}
	if got, ok := codec.BindingOf(jsonPayload("x")); ok {
		t.Errorf("BindingOf(foreign) = %v, true", got)
	}
}

func uvarintLen(n int) int { return len(binary.AppendUvarint(nil, uint64(n))) }

// TestBodyForms: the short forms are used exactly for payloads that are one well-known encoding and data.
func TestBodyForms(t *testing.T) {
	t.Parallel()
	withUnknown := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte("1")}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	enc := func(s string) map[string][]byte { return map[string][]byte{"encoding": []byte(s)} }
	for _, tc := range []struct {
		name string
		p    *commonpb.Payload
		form byte
	}{
		{"json/plain", &commonpb.Payload{Metadata: enc("json/plain"), Data: []byte(`{"a":1}`)}, 1},
		{"json/plain, no data", &commonpb.Payload{Metadata: enc("json/plain")}, 1},
		{"binary/null", &commonpb.Payload{Metadata: enc("binary/null")}, 2},
		{"binary/plain", &commonpb.Payload{Metadata: enc("binary/plain"), Data: []byte{0, 1, 2}}, 3},
		{"json/protobuf alone", &commonpb.Payload{Metadata: enc("json/protobuf"), Data: []byte(`{}`)}, 4},
		{"json/protobuf with messageType", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("a.B")}, Data: []byte(`{}`)}, 0},
		{"json/plain with another key", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain"), "x": nil}}, 0},
		{"json/plain with external payloads", &commonpb.Payload{Metadata: enc("json/plain"), ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 1}}}, 0},
		{"json/plain with unknown fields", withUnknown, 0},
		{"other encoding", &commonpb.Payload{Metadata: enc("binary/protobuf"), Data: []byte{1}}, 0},
		{"encoding differs in case", &commonpb.Payload{Metadata: enc("JSON/plain"), Data: []byte{1}}, 0},
		{"one other key", &commonpb.Payload{Metadata: map[string][]byte{"messageType": []byte("json/plain")}}, 0},
		{"empty", &commonpb.Payload{}, 0},
		{"data only", &commonpb.Payload{Data: []byte("x")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr := codectest.NewKeyring()
			c := newCodec(t, kr)
			env := sealOne(t, c, "default", tc.p)
			pt := openRaw(t, kr, "default", env)
			h, err := codec.ParseEnvelopeV2(env)
			if err != nil {
				t.Fatal(err)
			}
			if h.Form != tc.form {
				t.Errorf("form %d, want %d", h.Form, tc.form)
			}
			if tc.form != 0 && !bytes.Equal(pt, tc.p.Data) {
				t.Errorf("plaintext %x, want the data %x", pt, tc.p.Data)
			}
			out, err := c.Decode(context.Background(), "default", []*commonpb.Payload{env})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(out[0], tc.p) {
				t.Errorf("decoded %v, want %v", out[0], tc.p)
			}
		})
	}
	// Decoded payloads of a short form own their metadata values.
	c := newCodec(t, codectest.NewKeyring())
	enc2, err := c.Encode(context.Background(), "default", []*commonpb.Payload{jsonPayload("a"), jsonPayload("b")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decode(context.Background(), "default", enc2)
	if err != nil {
		t.Fatal(err)
	}
	dec[0].Metadata["encoding"][0] = 'X'
	if string(dec[1].Metadata["encoding"]) != "json/plain" {
		t.Errorf("decoded payloads share metadata values: %q", dec[1].Metadata["encoding"])
	}
}

// TestExplicitScope: a key whose scope is not the namespace's default names its scope in the header.
func TestExplicitScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// codectest's scope is the namespace itself; ScopeForNamespace hashes a namespace that starts with "_".
	const ns = "_tenant"
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	env := sealOne(t, c, ns, jsonPayload("scoped"))
	h, err := codec.ParseHeaderV2(env.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !h.HasScope || h.Scope != ns || h.Len != 4+1+len(ns)+1 {
		t.Errorf("header %+v, want the explicit scope %q", h, ns)
	}
	key, err := kr.SealingKey(ctx, codec.Target{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := codec.KeyID(env); !ok || id != key.ID {
		t.Errorf("KeyID = %q, %v; want %q", id, ok, key.ID)
	}
	if id, ok := codec.KeyIDIn(env, "anything"); !ok || id != key.ID {
		t.Errorf("KeyIDIn = %q, %v; want %q (the explicit scope wins)", id, ok, key.ID)
	}
	out, err := c.Decode(ctx, ns, []*commonpb.Payload{env})
	if err != nil || !proto.Equal(out[0], jsonPayload("scoped")) {
		t.Errorf("Decode = %v, %v", out, err)
	}
	// A default-scope envelope names no scope, so KeyID cannot tell it; KeyIDIn can.
	def := sealOne(t, c, "default", jsonPayload("d"))
	if id, ok := codec.KeyID(def); ok {
		t.Errorf("KeyID(default-scope v2) = %q, true", id)
	}
	if id, ok := codec.KeyIDIn(def, "default"); !ok || !strings.HasPrefix(id, "default/") {
		t.Errorf("KeyIDIn = %q, %v", id, ok)
	}
	if h, err := codec.ParseHeaderV2(def.Data); err != nil || h.HasScope {
		t.Errorf("default-scope header %+v, %v", h, err)
	}
}

// aliasKeyring finds a key under a second id too, like a broken keyring would: the v1 reader must still refuse a
// ciphertext whose Tink prefix does not match the metadata key id.
type aliasKeyring struct {
	*codectest.Keyring
	alias, id string
}

func (a aliasKeyring) OpeningKey(ctx context.Context, namespace, id string) (codec.Key, error) {
	if id == a.alias {
		k, err := a.Keyring.OpeningKey(ctx, namespace, a.id)
		k.ID = a.alias
		return k, err
	}
	return a.Keyring.OpeningKey(ctx, namespace, id)
}

func TestV1KeyIDMustMatchTinkPrefix(t *testing.T) {
	t.Parallel()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr, codec.WithWriteFormat(1))
	env := sealOne(t, c, "default", jsonPayload("x"))
	id, _ := codec.KeyID(env)
	alias := id[:len(id)-8] + "00c0ffee"
	env.Metadata[codec.MetadataKeyID] = []byte(alias)
	// The associated data is rebuilt for the alias too, so only the prefix check can refuse it: re-seal with that AD.
	key, err := kr.OpeningKey(context.Background(), "default", id)
	if err != nil {
		t.Fatal(err)
	}
	pt := openRaw(t, kr, "default", sealOne(t, c, "default", jsonPayload("x")))
	env.Data, err = key.AEAD.Encrypt(pt, codec.AssociatedData(alias, "default"))
	if err != nil {
		t.Fatal(err)
	}
	d := newCodec(t, aliasKeyring{kr, alias, id})
	_, err = d.Decode(context.Background(), "default", []*commonpb.Payload{env})
	if got := sentinelsIn(err); len(got) != 1 || got[0] != codec.ErrTampered || !strings.Contains(err.Error(), "Tink key prefix") {
		t.Errorf("mismatched prefix: %v, want ErrTampered naming the prefix", err)
	}
	// The same envelope with a matching id opens (the check is not what makes ordinary envelopes fail).
	good := sealOne(t, c, "default", jsonPayload("y"))
	if _, err := d.Decode(context.Background(), "default", []*commonpb.Payload{good}); err != nil {
		t.Errorf("matching prefix: %v", err)
	}
}

// TestEncodeWrapsLookalikes: a payload of another codec that says binary/encrypted and starts with the v2 magic is not
// taken as sealed by Encode (it would reach the backend without a Blindfold seal); a real v2 envelope is.
func TestEncodeWrapsLookalikes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	encrypted := func(data []byte) *commonpb.Payload {
		return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/encrypted")}, Data: data}
	}
	real := sealOne(t, c, "default", jsonPayload("real"))
	lookalikes := []*commonpb.Payload{
		encrypted([]byte{0xBF, 0x02, 0x00, 0x00, 0x00, 0x99}),              // header, then no TINK ciphertext
		encrypted(append([]byte{0xBF, 0x02, 0x40}, randomBytes(t, 64)...)), // bad varint or prefix, most likely
		encrypted(append([]byte{0xBF, 0x03}, randomBytes(t, 64)...)),       // a later version
		encrypted([]byte{0xBF, 0x02}),
	}
	for i, p := range lookalikes {
		if !codec.IsEncrypted(p) {
			t.Errorf("lookalike %d: IsEncrypted false; the detection rule says true", i)
		}
		if codec.IsSealed(p) {
			t.Errorf("lookalike %d: IsSealed", i)
		}
		out, err := c.Encode(ctx, "default", []*commonpb.Payload{p})
		if err != nil {
			t.Fatal(err)
		}
		if out[0] == p || !codec.IsV2(out[0]) {
			t.Errorf("lookalike %d was not sealed", i)
		}
		back, err := c.Decode(ctx, "default", out)
		if err != nil || !proto.Equal(back[0], p) {
			t.Errorf("lookalike %d: round trip %v, %v", i, back, err)
		}
	}
	if !codec.IsSealed(real) {
		t.Error("a real v2 envelope is not IsSealed")
	}
	if out, err := c.Encode(ctx, "default", []*commonpb.Payload{real}); err != nil || out[0] != real {
		t.Errorf("a real v2 envelope was sealed again: %v", err)
	}
	// Payloads that are no v2 envelope at all pass Decode untouched.
	for i, p := range []*commonpb.Payload{encrypted([]byte{0xBF}), encrypted([]byte{0xBF, 0x01, 0x00}), encrypted([]byte{0xBF, 0x10}), encrypted(nil),
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: real.Data}} {
		if codec.IsEncrypted(p) {
			t.Errorf("foreign %d: IsEncrypted", i)
		}
		out, err := c.Decode(ctx, "default", []*commonpb.Payload{p})
		if err != nil || out[0] != p {
			t.Errorf("foreign %d: Decode = %v, %v", i, out, err)
		}
	}
}

// TestUpgrade: a v1 writer and a v2 writer over the same keys read each other's envelopes, also mixed in one batch.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring()
	v1, v2 := newCodec(t, kr, codec.WithWriteFormat(1)), newCodec(t, kr)
	a, err := v1.Encode(ctx, "default", []*commonpb.Payload{jsonPayload("one")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate("default"); err != nil {
		t.Fatal(err)
	}
	b, err := v2.Encode(ctx, "default", []*commonpb.Payload{jsonPayload("two")})
	if err != nil {
		t.Fatal(err)
	}
	if codec.IsV2(a[0]) || !codec.IsV2(b[0]) {
		t.Fatal("wrong write formats")
	}
	for _, c := range []*codec.Codec{v1, v2} {
		out, err := c.Decode(ctx, "default", []*commonpb.Payload{a[0], b[0], a[0]})
		if err != nil || !proto.Equal(out[0], jsonPayload("one")) || !proto.Equal(out[1], jsonPayload("two")) || !proto.Equal(out[2], jsonPayload("one")) {
			t.Errorf("mixed batch: %v, %v", out, err)
		}
	}
	if _, err := codec.New(kr, codec.WithWriteFormat(3)); err == nil {
		t.Error("WithWriteFormat(3) accepted")
	}
	if _, err := codec.New(kr, codec.WithWriteFormat(0)); err == nil {
		t.Error("WithWriteFormat(0) accepted")
	}
}

// TestXAESKeys: the keys package's default key type, next to AES-GCM keys of the same scope, and its overhead.
func TestXAESKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring() // an AES-GCM key first, as a scope created before v2 has
	c := newCodec(t, kr)
	old := sealOne(t, c, "default", jsonPayload("aes-gcm"))
	xkr := codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate())
	h, err := kr.Keyset("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := xkr.SetKeyset("default", h); err != nil {
		t.Fatal(err)
	}
	if _, err := xkr.Rotate("default"); err != nil {
		t.Fatal(err)
	}
	x := newCodec(t, xkr)
	fresh := sealOne(t, x, "default", jsonPayload("xaes"))
	out, err := x.Decode(ctx, "default", []*commonpb.Payload{old, fresh})
	if err != nil || !proto.Equal(out[0], jsonPayload("aes-gcm")) || !proto.Equal(out[1], jsonPayload("xaes")) {
		t.Fatalf("Decode = %v, %v", out, err)
	}
	hd, err := codec.ParseHeaderV2(fresh.Data)
	if err != nil {
		t.Fatal(err)
	}
	// XAES-256-GCM (8-byte salt): prefix 5, salt 8, nonce 12, tag 16.
	if n := len(fresh.Data) - hd.Len - len(openRaw(t, xkr, "default", fresh)); n != 41 {
		t.Errorf("XAES ciphertext overhead %d bytes, want 41", n)
	}
}

// TestRawKeysRefused: keys without the TINK output prefix cannot seal either format.
func TestRawKeysRefused(t *testing.T) {
	t.Parallel()
	for _, tmpl := range []struct {
		name string
		f    func() *keyset.Handle
	}{
		{"aes-gcm raw", func() *keyset.Handle { h, _ := keyset.NewHandle(aead.AES256GCMNoPrefixKeyTemplate()); return h }},
		{"xaes raw", func() *keyset.Handle {
			h, _ := keyset.NewHandle(aead.XAES256GCM160BitNonceNoPrefixKeyTemplate())
			return h
		}},
	} {
		for _, f := range formats {
			kr := codectest.NewKeyring()
			if err := kr.SetKeyset("default", tmpl.f()); err != nil {
				t.Fatal(err)
			}
			c := newCodec(t, kr, f.opt)
			if _, err := c.Encode(context.Background(), "default", []*commonpb.Payload{jsonPayload(strings.Repeat("x", 100))}); err == nil || !strings.Contains(err.Error(), "TINK") {
				t.Errorf("%s, %s: Encode = %v, want a refusal naming the TINK prefix", tmpl.name, f.name, err)
			}
		}
	}
}

// TestOverheadV2 checks the bytes an envelope adds to a 1 KiB json/plain payload: 52 + the binding id with XAES-256-GCM keys.
func TestOverheadV2(t *testing.T) {
	t.Parallel()
	c := newCodec(t, codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate()))
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte("j"), 1024)}
	for _, b := range []codec.Binding{{}, codec.Workflow("order-000042"), codec.Workflow("3f2a9c1e-8d4b-4f6a-9e2d-7c1b5a0f3e8d")} {
		enc, err := c.EncodeFor(context.Background(), codec.Target{Namespace: "default", Binding: b}, []*commonpb.Payload{p})
		if err != nil {
			t.Fatal(err)
		}
		added := proto.Size(enc[0]) - proto.Size(p)
		if want := 52 + len(b.ID); added != want {
			t.Errorf("%s: %d bytes added, want %d", b, added, want)
		}
		t.Logf("%s (id %d bytes): %d bytes added to a 1 KiB json/plain payload", b, len(b.ID), added)
	}
}

// TestHeaderLayouts: payloads of at least HeaderInMetadataAt bytes carry their header in metadata and their data is the bare
// ciphertext; smaller ones carry it in front of the data. Both open, report their binding and key, and stay sealed on Encode.
func TestHeaderLayouts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate())
	c := newCodec(t, kr)
	b := codec.Workflow("order-42")
	for _, tc := range []struct {
		name       string
		p          *commonpb.Payload
		inMetadata bool
	}{
		{"just below", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: randomBytes(t, codec.HeaderInMetadataAt-1)}, false},
		{"at the threshold", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: randomBytes(t, codec.HeaderInMetadataAt)}, true},
		{"1 MiB json", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: randomBytes(t, 1<<20)}, true},
		{"form 0, large", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("a.B")}, Data: randomBytes(t, codec.HeaderInMetadataAt)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: b}, []*commonpb.Payload{tc.p})
			if err != nil {
				t.Fatal(err)
			}
			env := enc[0]
			h, err := codec.ParseEnvelopeV2(env)
			if err != nil {
				t.Fatal(err)
			}
			_, hasHdr := env.Metadata[codec.MetadataHeader]
			if h.InMetadata != tc.inMetadata || hasHdr != tc.inMetadata || len(env.Metadata) != 1+b2i(tc.inMetadata) {
				t.Fatalf("layout: in metadata %v, metadata %v; want in metadata %v", h.InMetadata, env.Metadata, tc.inMetadata)
			}
			if tc.inMetadata && (env.Data[0] != 0x01 || h.Header[0] != 0x02) {
				t.Errorf("metadata layout: data starts %x, header %x", env.Data[:5], h.Header)
			}
			if !codec.IsEncrypted(env) || !codec.IsSealed(env) {
				t.Error("not IsEncrypted / IsSealed")
			}
			if got, ok := codec.BindingOf(env); !ok || got != b {
				t.Errorf("BindingOf = %v, %v", got, ok)
			}
			if id, ok := codec.KeyIDIn(env, "default"); !ok || !strings.HasPrefix(id, "default/") {
				t.Errorf("KeyIDIn = %q, %v", id, ok)
			}
			if again, err := c.Encode(ctx, "default", enc); err != nil || again[0] != env {
				t.Errorf("Encode sealed an envelope again: %v", err)
			}
			out, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default"}, enc)
			if err != nil || !proto.Equal(out[0], tc.p) {
				t.Fatalf("DecodeFor: %v", err)
			}
			if tc.p.Data != nil && len(out[0].Data) > 0 && &out[0].Data[0] == &tc.p.Data[0] {
				t.Error("decoded data aliases the input")
			}
		})
	}
	// Empty plaintexts are well formed in every form, also "compressed" (zero zstd frames expand to nothing).
	for _, form := range []byte{0, 1, 2, 3, 4} {
		for _, flags := range []byte{0, 1} {
			env := sealRawV2(t, kr, "default", headerForm(codec.BindNamespace, flags, form, nil, ""), nil)
			out, err := c.Decode(ctx, "default", []*commonpb.Payload{env})
			if err != nil || len(out[0].Data) != 0 {
				t.Errorf("form %d, flags %d, empty plaintext: %v, %v", form, flags, out, err)
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestV2Buffers: a compact envelope's data is built in one allocation after its associated data, a metadata-layout header
// shares one with it, and a single decoded payload shares one with its result slice. None of that may be reachable through
// what a caller gets: every slice handed out is capped at its length, so appending to one copies it instead of writing into
// a neighbour. Key types whose ciphertexts grow more (AES-CTR-HMAC, 53 bytes) or less (AES-GCM, 33) than the writer's first
// guess seal and open alike, before and after the writer has learnt the real growth.
func TestV2Buffers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	capped := func(t *testing.T, what string, p *commonpb.Payload) {
		t.Helper()
		if cap(p.Data) != len(p.Data) {
			t.Errorf("%s: data of %d bytes has capacity %d", what, len(p.Data), cap(p.Data))
		}
		for k, v := range p.Metadata {
			if cap(v) != len(v) {
				t.Errorf("%s: metadata %q of %d bytes has capacity %d", what, k, len(v), cap(v))
			}
		}
	}
	twoEntries := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain"), "x": []byte("y")}, Data: []byte(`"p"`)}
	for _, kt := range []struct {
		name string
		tmpl *tinkpb.KeyTemplate
	}{
		{"aes-gcm", aead.AES256GCMKeyTemplate()},
		{"xaes-gcm", aead.XAES256GCM160BitNonceKeyTemplate()},
		{"aes-ctr-hmac", aead.AES256CTRHMACSHA256KeyTemplate()},
		{"xchacha20-poly1305", aead.XChaCha20Poly1305KeyTemplate()},
	} {
		for _, layout := range []struct {
			name string
			at   int
		}{{"compact", math.MaxInt}, {"metadata", 0}} {
			t.Run(kt.name+"/"+layout.name, func(t *testing.T) {
				t.Parallel()
				c := newCodec(t, codectest.NewKeyringWithTemplate(kt.tmpl), codec.WithHeaderInMetadataAt(layout.at))
				target := codec.Target{Namespace: "default", Binding: codec.Workflow("order-1")}
				expect := codec.Expect{Namespace: "default"}
				for round := range 2 {
					for _, in := range []*commonpb.Payload{jsonPayload(strings.Repeat("x", 100*round)), twoEntries} {
						one, err := c.EncodeFor(ctx, target, []*commonpb.Payload{in})
						if err != nil {
							t.Fatal(err)
						}
						capped(t, "envelope", one[0])
						two, err := c.EncodeFor(ctx, target, []*commonpb.Payload{in, in})
						if err != nil {
							t.Fatal(err)
						}
						_ = append(two[0].Data, 0xFF)
						for k, v := range two[0].Metadata {
							_ = append(v, 'X')
							two[0].Metadata[k] = append(v, 'X')
						}
						got, err := c.DecodeFor(ctx, expect, one)
						if err != nil || len(got) != 1 || !proto.Equal(got[0], in) {
							t.Fatalf("round %d: DecodeFor(one) = %v, %v", round, got, err)
						}
						capped(t, "decoded payload", got[0])
						_ = append(got[0].Data, 'X')
						got[0].Metadata["encoding"] = append(got[0].Metadata["encoding"], 'X')
						got2, err := c.DecodeFor(ctx, expect, two[1:])
						if err != nil || !proto.Equal(got2[0], in) {
							t.Fatalf("round %d: the second envelope changed with the first: %v, %v", round, got2, err)
						}
						again, err := c.DecodeFor(ctx, expect, one)
						if err != nil || !proto.Equal(again[0], in) {
							t.Fatalf("round %d: changing a decoded payload changed its envelope: %v, %v", round, again, err)
						}
					}
				}
			})
		}
	}
}

// A header may name the namespace's default scope explicitly (this writer never does): the envelope opens with the same key
// as one that names none, before and after the codec has remembered that key's context.
func TestExplicitDefaultScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr := codectest.NewKeyring()
	c := newCodec(t, kr)
	scope := "default"
	explicit := sealRawV2(t, kr, "default", headerForm(codec.BindNamespace, 0x2, 1, &scope, ""), []byte(`"e"`))
	implicit := sealOne(t, c, "default", jsonPayload("i"))
	for round := range 2 {
		for _, tc := range []struct {
			env  *commonpb.Payload
			want string
		}{{explicit, `"e"`}, {implicit, `"i"`}} {
			out, err := c.Decode(ctx, "default", []*commonpb.Payload{tc.env})
			if err != nil || string(out[0].Data) != tc.want {
				t.Fatalf("round %d: Decode = %v, %v; want %s", round, out, err, tc.want)
			}
		}
	}
}

// TestBindingIDsAlternate: the binding a decode hands to Accept is the envelope's own, whether the previous decode's
// was the same (its string is reused) or another, one call at a time and from goroutines decoding different
// workflows' envelopes at once.
func TestBindingIDsAlternate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCodec(t, codectest.NewKeyring())
	ids := []string{"order-1", "order-2", "order-1", "order-1", "x", "order-2"}
	envs := make([]*commonpb.Payload, len(ids))
	for i, id := range ids {
		out, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Binding: codec.Workflow(id)}, []*commonpb.Payload{{Data: []byte(id)}})
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = out[0]
	}
	decodeAs := func(env *commonpb.Payload) (string, error) {
		var got string
		_, err := c.DecodeFor(ctx, codec.Expect{Namespace: "default", Accept: func(_ int, b codec.Binding) error {
			got = b.ID
			return nil
		}}, []*commonpb.Payload{env})
		return got, err
	}
	for i, env := range envs {
		if got, err := decodeAs(env); err != nil || got != ids[i] {
			t.Errorf("decode %d: binding %q, %v; want %q", i, got, err, ids[i])
		}
	}
	errs := make(chan error, len(envs))
	for i, env := range envs {
		go func() {
			for range 200 {
				if got, err := decodeAs(env); err != nil || got != ids[i] {
					errs <- fmt.Errorf("concurrent decode %d: binding %q, %v; want %q", i, got, err, ids[i])
					return
				}
			}
			errs <- nil
		}()
	}
	for range envs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
