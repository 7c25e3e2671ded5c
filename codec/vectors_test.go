package codec_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

var update = flag.Bool("update", false, "regenerate codec/testdata/keyset.json and vectors.json")

const (
	keysetFile  = "testdata/keyset.json"
	vectorsFile = "testdata/vectors.json"
)

// vectorFile is the layout of testdata/vectors.json (documented in docs/format.md).
type vectorFile struct {
	Comment string   `json:"comment"`
	Keyset  string   `json:"keyset"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	Name string `json:"name"`
	// Namespace the envelope was sealed for; DecodeNamespace the one it is decoded under.
	Namespace       string `json:"namespace"`
	DecodeNamespace string `json:"decode_namespace"`
	KeyID           string `json:"key_id"`
	// TinkKeyID is the id of KeyID's key inside the keyset.
	TinkKeyID uint32 `json:"tink_key_id"`
	// Payload is the original payload and Envelope the encoded one, both in Temporal's protobuf JSON (bytes as base64).
	Payload  json.RawMessage `json:"payload,omitempty"`
	Envelope json.RawMessage `json:"envelope"`
	// AssociatedDataHex and PlaintextHex are the AEAD inputs (flags byte || body) of a good vector.
	AssociatedDataHex string `json:"associated_data_hex,omitempty"`
	PlaintextHex      string `json:"plaintext_hex,omitempty"`
	// Error names the sentinel decoding must fail with ("" for success).
	Error string `json:"error,omitempty"`
}

var sentinelNames = map[string]error{
	"ErrTampered":           codec.ErrTampered,
	"ErrTruncated":          codec.ErrTruncated,
	"ErrUnknownKey":         codec.ErrUnknownKey,
	"ErrKeyDestroyed":       codec.ErrKeyDestroyed,
	"ErrWrongNamespace":     codec.ErrWrongNamespace,
	"ErrUnsupportedVersion": codec.ErrUnsupportedVersion,
	"ErrMalformed":          codec.ErrMalformed,
	"ErrDecodedTooLarge":    codec.ErrDecodedTooLarge,
}

// vectorNamespaces all share the vectors' one keyset, so each has key ids "<namespace>/<tink id>".
var vectorNamespaces = []string{"default", "orders-prod"}

// loadVectorKeyring returns a keyring over testdata/keyset.json for every vector namespace.
func loadVectorKeyring(t testing.TB) *codectest.Keyring {
	t.Helper()
	js, err := os.ReadFile(keysetFile)
	if err != nil {
		t.Fatal(err)
	}
	h, err := codectest.ReadCleartextKeyset(js)
	if err != nil {
		t.Fatal(err)
	}
	kr := codectest.NewKeyring()
	for _, ns := range vectorNamespaces {
		if err := kr.SetKeyset(ns, h); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	js, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(js, &vf); err != nil {
		t.Fatalf("parse %s: %v", vectorsFile, err)
	}
	return vf
}

func unmarshalPayload(t testing.TB, js json.RawMessage) *commonpb.Payload {
	t.Helper()
	p := &commonpb.Payload{}
	if err := protojson.Unmarshal(js, p); err != nil {
		t.Fatalf("parse payload %s: %v", js, err)
	}
	return p
}

func TestVectors(t *testing.T) {
	if *update {
		generateVectors(t)
	}
	vf := loadVectors(t)
	kr := loadVectorKeyring(t)
	c := newCodec(t, kr)
	ctx := context.Background()
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			env := unmarshalPayload(t, v.Envelope)
			if want := codectest.KeyID(v.Namespace, v.TinkKeyID); v.KeyID != want {
				t.Errorf("key_id %q, want %q from tink_key_id", v.KeyID, want)
			}
			out, err := c.Decode(ctx, v.DecodeNamespace, []*commonpb.Payload{env})
			if v.Error != "" {
				want, ok := sentinelNames[v.Error]
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
			if id, _ := codec.KeyID(env); id != v.KeyID {
				t.Errorf("envelope key id %q, want %q", id, v.KeyID)
			}
			ad := codec.AssociatedData(v.KeyID, v.Namespace)
			if got := hex.EncodeToString(ad); got != v.AssociatedDataHex {
				t.Errorf("associated data %s, want %s", got, v.AssociatedDataHex)
			}
			pt := openRaw(t, kr, v.Namespace, env)
			if got := hex.EncodeToString(pt); got != v.PlaintextHex {
				t.Errorf("plaintext %s, want %s", got, v.PlaintextHex)
			}
			// The documented body is the payload's protobuf encoding (after zstd when flag bit 0 is set).
			if pt[0] == 0 {
				var p commonpb.Payload
				if err := proto.Unmarshal(pt[1:], &p); err != nil || !proto.Equal(&p, want) {
					t.Errorf("plaintext body does not parse as the payload: %v", err)
				}
			}
		})
	}
}

// generateVectors writes a fresh keyset and vectors (go test ./codec -run TestVectors -update).
func generateVectors(t *testing.T) {
	kr := codectest.NewKeyring()
	// Two keys: vectors are sealed first with the older one, then with the newer primary, so readers must pick the key by id.
	h, err := kr.Keyset("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.SetKeyset("orders-prod", h); err != nil {
		t.Fatal(err)
	}
	plain := newCodec(t, kr, codec.WithWriteFormat(1))
	zstdCodec := newCodec(t, kr, codec.WithCompression(256), codec.WithWriteFormat(1))

	type spec struct {
		name      string
		namespace string
		c         *codec.Codec
		p         *commonpb.Payload
	}
	first := []spec{
		{"json payload, old key", "default", plain, jsonPayload("blindfold test vector")},
		{"empty payload", "default", plain, &commonpb.Payload{}},
	}
	second := []spec{
		{"json payload", "default", plain, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"order":42,"customer":"Ada"}`)}},
		{"binary payload with extra metadata", "orders-prod", plain, &commonpb.Payload{
			Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "messageType": []byte("x.y.Z"), "empty": {}},
			Data:     []byte{0x00, 0x01, 0x02, 0xfe, 0xff},
		}},
		{"zstd compressed", "default", zstdCodec, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte(`{"k":"v"},`), 100)}},
		{"external payload reference", "default", plain, &commonpb.Payload{
			Metadata:         map[string][]byte{"encoding": []byte("json/protobuf"), "messageType": []byte("temporal.api.sdk.v1.ExternalStorageReference")},
			Data:             []byte(`{"key":"abc"}`),
			ExternalPayloads: []*commonpb.Payload_ExternalPayloadDetails{{SizeBytes: 1 << 20}},
		}},
	}

	var vectors []vector
	seal := func(specs []spec) {
		for _, s := range specs {
			env := sealOne(t, s.c, s.namespace, s.p)
			id, _ := codec.KeyID(env)
			pt := openRaw(t, kr, s.namespace, env)
			vectors = append(vectors, vector{
				Name: s.name, Namespace: s.namespace, DecodeNamespace: s.namespace, KeyID: id, TinkKeyID: tinkID(t, id),
				Payload: marshalJSON(t, s.p), Envelope: marshalJSON(t, env),
				AssociatedDataHex: hex.EncodeToString(codec.AssociatedData(id, s.namespace)),
				PlaintextHex:      hex.EncodeToString(pt),
			})
		}
	}
	seal(first)
	if _, err := kr.Rotate("default"); err != nil {
		t.Fatal(err)
	}
	h, err = kr.Keyset("default")
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.SetKeyset("orders-prod", h); err != nil {
		t.Fatal(err)
	}
	seal(second)

	// Negative vectors, derived from a good envelope.
	base := sealOne(t, plain, "default", jsonPayload("negative"))
	baseID, _ := codec.KeyID(base)
	bad := func(name, decodeNS, errName string, mutate func(env *commonpb.Payload) *commonpb.Payload) {
		env := mutate(proto.Clone(base).(*commonpb.Payload))
		id, _ := codec.KeyID(env)
		ns, _ := codec.SealedNamespace(env)
		vectors = append(vectors, vector{
			Name: name, Namespace: ns, DecodeNamespace: decodeNS, KeyID: id, TinkKeyID: tinkID(t, id),
			Envelope: marshalJSON(t, env), Error: errName,
		})
	}
	bad("flipped ciphertext byte", "default", "ErrTampered", func(env *commonpb.Payload) *commonpb.Payload {
		env.Data[len(env.Data)/2] ^= 1
		return env
	})
	bad("namespace metadata edited", "orders-prod", "ErrTampered", func(env *commonpb.Payload) *commonpb.Payload {
		env.Metadata[codec.MetadataNamespace] = []byte("orders-prod")
		env.Metadata[codec.MetadataKeyID] = []byte(codectest.KeyID("orders-prod", tinkID(t, baseID)))
		return env
	})
	bad("decoded under another namespace", "orders-prod", "ErrWrongNamespace", func(env *commonpb.Payload) *commonpb.Payload { return env })
	bad("truncated", "default", "ErrTruncated", func(env *commonpb.Payload) *commonpb.Payload {
		env.Data = env.Data[:codec.MinCiphertextSize-1]
		return env
	})
	bad("unknown key", "default", "ErrUnknownKey", func(env *commonpb.Payload) *commonpb.Payload {
		env.Metadata[codec.MetadataKeyID] = []byte("default/00000000")
		return env
	})
	bad("unsupported version", "default", "ErrUnsupportedVersion", func(env *commonpb.Payload) *commonpb.Payload {
		env.Metadata[codec.MetadataFormat] = []byte("2")
		return env
	})
	bad("unknown flag bit", "default", "ErrMalformed", func(*commonpb.Payload) *commonpb.Payload {
		body, _ := proto.Marshal(jsonPayload("flags"))
		return sealRaw(t, kr, "default", append([]byte{0x02}, body...))
	})

	ks, err := codectest.WriteCleartextKeyset(h)
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, keysetFile, json.RawMessage(ks))
	writeJSON(t, vectorsFile, vectorFile{
		Comment: "Blindfold envelope format v1 test vectors; see docs/format.md. Regenerate with: go test ./codec -run TestVectors -update",
		Keyset:  filepath.Base(keysetFile),
		Vectors: vectors,
	})
}

func tinkID(t testing.TB, keyID string) uint32 {
	t.Helper()
	i := bytes.LastIndexByte([]byte(keyID), '/')
	b, err := hex.DecodeString(keyID[i+1:])
	if err != nil || len(b) != 4 {
		t.Fatalf("key id %q has no tink id", keyID)
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func marshalJSON(t testing.TB, p *commonpb.Payload) json.RawMessage {
	t.Helper()
	js, err := protojson.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	// protojson's whitespace is deliberately unstable; compact it so regenerated files diff cleanly.
	var buf bytes.Buffer
	if err := json.Compact(&buf, js); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// errorName is the sentinel name of err, for fuzz failure messages.
func errorName(err error) string {
	for name, s := range sentinelNames {
		if errors.Is(err, s) {
			return name
		}
	}
	return ""
}
