package codec_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

const (
	keysetV2File  = "testdata/keyset_v2.json"
	vectorsV2File = "testdata/vectors_v2.json"
)

// vectorV2File is the layout of testdata/vectors_v2.json (docs/format.md, v2 test vectors).
type vectorV2File struct {
	Comment string     `json:"comment"`
	Keyset  string     `json:"keyset"`
	Vectors []vectorV2 `json:"vectors"`
}

type vectorBinding struct {
	Kind codec.BindingKind `json:"kind"`
	ID   string            `json:"id"`
}

type vectorV2 struct {
	Name string `json:"name"`
	// Format is the envelope's format (2, or 1 for the v1 rules this file also covers).
	Format int `json:"format"`
	// Namespace it was sealed for; DecodeNamespace the one it is decoded under.
	Namespace       string `json:"namespace"`
	DecodeNamespace string `json:"decode_namespace"`
	// KeyID is the key id the reader derives (v2: scope from the header or the decode namespace's default, and the Tink prefix).
	KeyID     string `json:"key_id"`
	TinkKeyID uint32 `json:"tink_key_id"`
	// Binding is what a good envelope is bound to. ExpectBinding, when set, is the only binding the reader accepts
	// (the Accept callback); a vector whose envelope claims another fails with ErrWrongBinding.
	Binding       *vectorBinding  `json:"binding,omitempty"`
	ExpectBinding *vectorBinding  `json:"expect_binding,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	Envelope      json.RawMessage `json:"envelope"`
	// HeaderHex is the v2 header as authenticated (compact layout: the data up to the Tink ciphertext; metadata layout: the
	// blindfold-header value); AssociatedDataHex and PlaintextHex are the AEAD inputs of a good vector (the plaintext as sealed:
	// the payload's data for forms 1-4, its protobuf for form 0, zstd-compressed when the header says so).
	HeaderHex string `json:"header_hex,omitempty"`
	// Layout of a good v2 vector: "compact" (the header starts the data) or "metadata" (the header is the blindfold-header
	// metadata value, data the bare ciphertext).
	Layout            string `json:"layout,omitempty"`
	AssociatedDataHex string `json:"associated_data_hex,omitempty"`
	PlaintextHex      string `json:"plaintext_hex,omitempty"`
	Error             string `json:"error,omitempty"`
}

// scopeKeyring is a Keyring with the keys package's scope model over codectest keysets (one per scope, stored under the
// scope's name): it seals with t.Scope or the namespace's default scope, and opens any key by its id, whatever the namespace.
type scopeKeyring struct{ kr *codectest.Keyring }

func (s scopeKeyring) SealingKey(ctx context.Context, t codec.Target) (codec.Key, error) {
	scope := t.Scope
	if scope == "" {
		scope = codec.ScopeForNamespace(t.Namespace)
	}
	return s.kr.SealingKey(ctx, codec.Target{Namespace: scope})
}

func (s scopeKeyring) OpeningKey(ctx context.Context, _, id string) (codec.Key, error) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return codec.Key{}, fmt.Errorf("key %q: %w", id, codec.ErrUnknownKey)
	}
	return s.kr.OpeningKey(ctx, id[:i], id)
}

// Scopes of the v2 vectors. All share the one keyset of keyset_v2.json, as if copied: what tells them apart is the scope in the key id.
var vectorV2Scopes = []string{"default", "orders-prod", "tenant-acme", codec.ScopeForNamespace("Orders Prod")}

func loadVectorV2Keyring(t testing.TB, h *keyset.Handle) scopeKeyring {
	t.Helper()
	if h == nil {
		js, err := os.ReadFile(keysetV2File)
		if err != nil {
			t.Fatal(err)
		}
		if h, err = codectest.ReadCleartextKeyset(js); err != nil {
			t.Fatal(err)
		}
	}
	kr := codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate())
	for _, s := range vectorV2Scopes {
		if err := kr.SetKeyset(s, h); err != nil {
			t.Fatal(err)
		}
	}
	return scopeKeyring{kr}
}

func loadVectorsV2(t testing.TB) vectorV2File {
	t.Helper()
	js, err := os.ReadFile(vectorsV2File)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorV2File
	if err := json.Unmarshal(js, &vf); err != nil {
		t.Fatalf("parse %s: %v", vectorsV2File, err)
	}
	return vf
}

func (v vectorV2) expect() codec.Expect {
	e := codec.Expect{Namespace: v.DecodeNamespace}
	if v.ExpectBinding != nil {
		want := codec.Binding{Kind: v.ExpectBinding.Kind, ID: v.ExpectBinding.ID}
		e.Accept = func(_ int, got codec.Binding) error {
			if got != want {
				return fmt.Errorf("envelope bound to %s, expected %s", got, want)
			}
			return nil
		}
	}
	return e
}

func TestVectorsV2(t *testing.T) {
	if *update {
		generateVectorsV2(t)
	}
	vf := loadVectorsV2(t)
	kr := loadVectorV2Keyring(t, nil)
	c := newCodec(t, kr)
	ctx := context.Background()
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			env := unmarshalPayload(t, v.Envelope)
			if _, v1 := env.Metadata[codec.MetadataFormat]; v1 != (v.Format == 1) {
				t.Errorf("format %d, but the envelope's metadata is %v", v.Format, env.Metadata)
			}
			out, err := c.DecodeFor(ctx, v.expect(), []*commonpb.Payload{env})
			if v.Error != "" {
				want, ok := sentinelNames[v.Error]
				if v.Error == "ErrWrongBinding" {
					want, ok = codec.ErrWrongBinding, true
				}
				if !ok {
					t.Fatalf("unknown error name %q", v.Error)
				}
				if got := sentinelsIn(err); len(got) != 1 || got[0] != want {
					t.Fatalf("Decode error %v wraps %v, want exactly %s", err, got, v.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := unmarshalPayload(t, v.Payload)
			if !proto.Equal(out[0], want) {
				t.Errorf("decoded %v, want %v", out[0], want)
			}
			if id, _ := codec.KeyIDIn(env, v.DecodeNamespace); id != v.KeyID {
				t.Errorf("envelope key id %q, want %q", id, v.KeyID)
			}
			if v.Format == 1 {
				return
			}
			h, err := codec.ParseEnvelopeV2(env)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h.Header); got != v.HeaderHex {
				t.Errorf("header %s, want %s", got, v.HeaderHex)
			}
			if got := layoutName(h); got != v.Layout {
				t.Errorf("layout %s, want %s", got, v.Layout)
			}
			if b, _ := codec.BindingOf(env); v.Binding == nil || b != (codec.Binding{Kind: v.Binding.Kind, ID: v.Binding.ID}) {
				t.Errorf("binding %v, want %+v", b, v.Binding)
			}
			ad := codec.AssociatedDataV2(v.Namespace, v.KeyID, h.Header)
			if got := hex.EncodeToString(ad); got != v.AssociatedDataHex {
				t.Errorf("associated data %s, want %s", got, v.AssociatedDataHex)
			}
			if got := hex.EncodeToString(openRaw(t, kr, v.Namespace, env)); got != v.PlaintextHex {
				t.Errorf("plaintext %s, want %s", got, v.PlaintextHex)
			}
		})
	}
}

// generateVectorsV2 writes a fresh keyset_v2.json (an AES-256-GCM key from before v2, then an XAES-256-GCM primary) and
// vectors_v2.json: go test ./codec -run 'TestVectors' -update.
func generateVectorsV2(t *testing.T) {
	ctx := context.Background()
	m := keyset.NewManager()
	oldID, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPrimary(oldID); err != nil {
		t.Fatal(err)
	}
	h, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	kr := loadVectorV2Keyring(t, h)
	plain := newCodec(t, kr)
	// Readers accept either layout at any size; the vectors force the metadata layout on small payloads so as to stay small.
	meta := newCodec(t, kr, codec.WithHeaderInMetadataAt(0))
	metaZstd := newCodec(t, kr, codec.WithHeaderInMetadataAt(0), codec.WithCompression(256))
	zstdCodec := newCodec(t, kr, codec.WithCompression(256))
	v1 := newCodec(t, kr, codec.WithWriteFormat(1))

	type spec struct {
		name    string
		ns      string
		scope   string
		binding codec.Binding
		c       *codec.Codec
		p       *commonpb.Payload
	}
	js := func(s string) *commonpb.Payload {
		return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(s)}
	}
	first := []spec{
		{"json payload, AES-GCM key from before v2, namespace binding", "default", "", codec.Binding{}, plain, js(`"blindfold v2 test vector"`)},
	}
	second := []spec{
		{"json payload, XAES key, workflow binding", "default", "", codec.Workflow("order-000042"), plain, js(`{"order":42,"customer":"Ada"}`)},
		{"workflow id of a UUID", "orders-prod", "", codec.Workflow("3f2a9c1e-8d4b-4f6a-9e2d-7c1b5a0f3e8d"), plain, js(`42`)},
		{"binary/null, no data (form 2)", "default", "", codec.Workflow("wf"), plain, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/null")}}},
		{"binary/plain (form 3)", "default", "", codec.Binding{Kind: codec.BindActivity, ID: "standalone-act-1"}, plain,
			&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: []byte{0x00, 0x01, 0xfe, 0xff}}},
		{"json/protobuf alone (form 4)", "default", "", codec.Binding{Kind: codec.BindSchedule, ID: "nightly"}, plain,
			&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/protobuf")}, Data: []byte(`{}`)}},
		{"protobuf body with several metadata entries (form 0)", "default", "", codec.Binding{Kind: codec.BindScheduledWorkflow, ID: "nightly-wf"}, plain,
			&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("x.y.Z"), "empty": {}}, Data: []byte(`{"a":1}`)}},
		{"external payload details (form 0)", "default", "", codec.Binding{Kind: codec.BindBatch, ID: "batch-7"}, plain, &commonpb.Payload{
			Metadata:         map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("temporal.api.sdk.v1.ExternalStorageReference")},
			Data:             []byte(`{"key":"abc"}`),
			ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 1 << 20}},
		}},
		{"empty payload (form 0)", "default", "", codec.Binding{Kind: codec.BindQuery}, plain, &commonpb.Payload{}},
		{"nexus operation input", "default", "", codec.Binding{Kind: codec.BindNexus, ID: "payments/charge"}, plain, js(`{"amount":5}`)},
		{"nexus result", "default", "", codec.Binding{Kind: codec.BindNexus}, plain, js(`"ok"`)},
		{"zstd compressed", "default", "", codec.Workflow("order-000042"), zstdCodec, js(strings.Repeat(`{"k":"v"},`, 100))},
		{"explicit scope (a policy's tenant scope)", "orders-prod", "tenant-acme", codec.Workflow("order-000042"), plain, js(`"tenant"`)},
		{"namespace with a hashed default scope", "Orders Prod", "", codec.Workflow("wf-1"), plain, js(`"hashed"`)},
		{"v1 envelope with an XAES key", "default", "", codec.Binding{}, v1, js(`"v1"`)},
		{"metadata layout (a large payload's), workflow binding", "default", "", codec.Workflow("order-000042"), meta, js(`{"order":42,"lines":["..."]}`)},
		{"metadata layout, protobuf body (form 0), explicit scope", "orders-prod", "tenant-acme", codec.Binding{Kind: codec.BindBatch, ID: "batch-7"}, meta,
			&commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("x.y.Z")}, Data: []byte(`{"a":1}`)}},
		{"metadata layout, zstd compressed", "default", "", codec.Workflow("order-000042"), metaZstd, js(strings.Repeat(`{"k":"v"},`, 100))},
	}
	var vectors []vectorV2
	seal := func(specs []spec) {
		for _, s := range specs {
			out, err := s.c.EncodeFor(ctx, codec.Target{Namespace: s.ns, Scope: s.scope, Binding: s.binding}, []*commonpb.Payload{s.p})
			if err != nil {
				t.Fatal(err)
			}
			env := out[0]
			id, _ := codec.KeyIDIn(env, s.ns)
			v := vectorV2{
				Name: s.name, Format: 2, Namespace: s.ns, DecodeNamespace: s.ns, KeyID: id, TinkKeyID: tinkID(t, id),
				Binding: &vectorBinding{Kind: s.binding.Kind, ID: s.binding.ID}, Payload: marshalJSON(t, s.p), Envelope: marshalJSON(t, env),
			}
			if codec.IsV2(env) {
				hd, err := codec.ParseEnvelopeV2(env)
				if err != nil {
					t.Fatal(err)
				}
				v.HeaderHex, v.Layout = hex.EncodeToString(hd.Header), layoutName(hd)
				v.AssociatedDataHex = hex.EncodeToString(codec.AssociatedDataV2(s.ns, id, hd.Header))
			} else {
				v.Format, v.Binding = 1, nil
				v.AssociatedDataHex = hex.EncodeToString(codec.AssociatedData(id, s.ns))
			}
			v.PlaintextHex = hex.EncodeToString(openRaw(t, kr, s.ns, env))
			vectors = append(vectors, v)
		}
	}
	seal(first)
	newID, err := m.Add(aead.XAES256GCM160BitNonceKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetPrimary(newID); err != nil {
		t.Fatal(err)
	}
	if h, err = m.Handle(); err != nil {
		t.Fatal(err)
	}
	for _, s := range vectorV2Scopes { // the codecs above now seal with the new primary
		if err := kr.kr.SetKeyset(s, h); err != nil {
			t.Fatal(err)
		}
	}
	seal(second)

	// Negative vectors, derived from good envelopes.
	baseWith := func(c *codec.Codec, b codec.Binding, scope string) *commonpb.Payload {
		out, err := c.EncodeFor(ctx, codec.Target{Namespace: "default", Scope: scope, Binding: b}, []*commonpb.Payload{js(`"negative"`)})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	base := func(b codec.Binding, scope string) *commonpb.Payload { return baseWith(plain, b, scope) }
	bad := func(name, decodeNS, errName string, env *commonpb.Payload, expect *vectorBinding) {
		f := 2
		if _, ok := env.Metadata[codec.MetadataFormat]; ok {
			f = 1
		}
		id, _ := codec.KeyIDIn(env, decodeNS)
		var tid uint32
		if id != "" {
			tid = tinkID(t, id)
		}
		vectors = append(vectors, vectorV2{
			Name: name, Format: f, Namespace: "default", DecodeNamespace: decodeNS, KeyID: id, TinkKeyID: tid,
			ExpectBinding: expect, Envelope: marshalJSON(t, env), Error: errName,
		})
	}
	wf := codec.Workflow("order-000042")
	hdrLen := func(env *commonpb.Payload) int {
		h, err := codec.ParseHeaderV2(env.Data)
		if err != nil {
			t.Fatal(err)
		}
		return h.Len
	}
	withHeader := func(env *commonpb.Payload, hdr []byte) *commonpb.Payload {
		env.Data = append(hdr, env.Data[hdrLen(env):]...)
		return env
	}
	e := base(wf, "")
	e.Data[len(e.Data)/2] ^= 1
	bad("flipped ciphertext byte", "default", "ErrTampered", e, nil)
	bad("binding id edited", "default", "ErrTampered", withHeader(base(wf, ""), headerForm(codec.BindWorkflow, 0, 1, nil, "order-000043")), nil)
	bad("binding kind edited", "default", "ErrTampered", withHeader(base(wf, ""), headerForm(codec.BindActivity, 0, 1, nil, wf.ID)), nil)
	bad("binding removed", "default", "ErrTampered", withHeader(base(wf, ""), headerForm(codec.BindNamespace, 0, 1, nil, "")), nil)
	e = base(wf, "")
	e.Data[3] = 3 // json/plain to binary/plain
	bad("body form edited", "default", "ErrTampered", e, nil)
	e = base(wf, "")
	e.Data[3] = 5
	bad("reserved body form", "default", "ErrMalformed", e, nil)
	e = base(wf, "")
	e.Data[2] |= 0x01
	bad("compression flag set", "default", "ErrTampered", e, nil)
	bad("opened for another workflow", "default", "ErrWrongBinding", base(wf, ""), &vectorBinding{Kind: codec.BindWorkflow, ID: "order-000043"})
	bad("explicit scope, opened in another namespace", "orders-prod", "ErrTampered", base(wf, "tenant-acme"), nil)
	bad("default scope, opened in another namespace", "staging", "ErrUnknownKey", base(wf, ""), nil)
	e = base(wf, "")
	e.Data = e.Data[:hdrLen(e)+codec.MinCiphertextSize-1]
	bad("ciphertext truncated", "default", "ErrTruncated", e, nil)
	e = base(wf, "")
	e.Data = e.Data[:2]
	bad("header truncated", "default", "ErrTruncated", e, nil)
	e = base(wf, "")
	e.Data[1] = 0x03
	bad("unsupported version", "default", "ErrUnsupportedVersion", e, nil)
	e = base(wf, "")
	e.Data[2] |= 0x04
	bad("reserved header flag", "default", "ErrMalformed", e, nil)
	e = base(wf, "")
	e.Data[2] = 0x80 | e.Data[2]&0x0F
	bad("unknown binding kind", "default", "ErrMalformed", e, nil)
	bad("binding id for the namespace kind", "default", "ErrMalformed", withHeader(base(wf, ""), header(codec.BindNamespace, 0, nil, "x")), nil)
	e = base(wf, "")
	e.Data[hdrLen(e)] = 0x00
	bad("not a TINK prefix", "default", "ErrMalformed", e, nil)
	e = base(wf, "")
	binaryPutUint32(e.Data[hdrLen(e)+1:], 0)
	bad("unknown key", "default", "ErrUnknownKey", e, nil)
	// The metadata layout.
	e = baseWith(meta, wf, "")
	e.Data[len(e.Data)/2] ^= 1
	bad("metadata layout: flipped ciphertext byte", "default", "ErrTampered", e, nil)
	e = baseWith(meta, wf, "")
	e.Metadata[codec.MetadataHeader] = headerForm(codec.BindWorkflow, 0, 1, nil, "order-000043")[1:]
	bad("metadata layout: binding id edited", "default", "ErrTampered", e, nil)
	e = baseWith(meta, wf, "")
	e.Data = append([]byte{0xBF}, append(e.Metadata[codec.MetadataHeader], e.Data...)...)
	delete(e.Metadata, codec.MetadataHeader)
	bad("metadata layout: header moved into the data", "default", "ErrTampered", e, nil)
	e = base(wf, "")
	e.Metadata[codec.MetadataHeader] = e.Data[1:hdrLen(e)]
	e.Data = e.Data[hdrLen(e):]
	bad("compact layout: header moved into metadata", "default", "ErrTampered", e, nil)
	e = base(wf, "")
	e.Metadata[codec.MetadataHeader] = e.Data[1:hdrLen(e)]
	bad("header in both metadata and data", "default", "ErrMalformed", e, nil)
	e = baseWith(meta, wf, "")
	e.Metadata[codec.MetadataHeader] = append([]byte{0xBF}, e.Metadata[codec.MetadataHeader]...)
	bad("metadata layout: magic in the metadata header", "default", "ErrMalformed", e, nil)
	e = baseWith(meta, wf, "")
	e.Metadata[codec.MetadataHeader] = append(bytes.Clone(e.Metadata[codec.MetadataHeader]), 0x00)
	bad("metadata layout: bytes after the header", "default", "ErrMalformed", e, nil)
	e = baseWith(meta, wf, "")
	e.Metadata[codec.MetadataHeader] = append([]byte{0x03}, e.Metadata[codec.MetadataHeader][1:]...)
	bad("metadata layout: unsupported version", "default", "ErrUnsupportedVersion", e, nil)
	e = baseWith(meta, wf, "")
	e.Data = e.Data[:codec.MinCiphertextSize-1]
	bad("metadata layout: ciphertext truncated", "default", "ErrTruncated", e, nil)
	// v1: the metadata key id must name the key of the ciphertext's Tink prefix (the older key's id, the newer key's ciphertext).
	e = sealOne(t, v1, "default", js(`"v1"`))
	e.Metadata[codec.MetadataKeyID] = []byte(codectest.KeyID("default", oldID))
	bad("v1 key id does not match the Tink prefix", "default", "ErrTampered", e, nil)

	ks, err := codectest.WriteCleartextKeyset(h)
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, keysetV2File, json.RawMessage(ks))
	writeJSON(t, vectorsV2File, vectorV2File{
		Comment: "Blindfold envelope format v2 test vectors (and v1 rules checked with v2's keys); see docs/format.md. Regenerate with: go test ./codec -run TestVectors -update",
		Keyset:  filepath.Base(keysetV2File),
		Vectors: vectors,
	})
}

func binaryPutUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func layoutName(h codec.HeaderV2) string {
	if h.InMetadata {
		return "metadata"
	}
	return "compact"
}
