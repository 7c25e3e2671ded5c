package sdkplugin_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// samplesCodec is the baseline: the encryption codec of Temporal's Go samples (samples-go/encryption), AES-256-GCM
// with a fresh cipher per payload over the marshalled payload, a random 12-byte nonce prepended, and the key id
// in the metadata. It has no associated data, no key scopes and no compression.
type samplesCodec struct {
	keyID string
	key   []byte
}

func (c *samplesCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		raw, err := proto.Marshal(p)
		if err != nil {
			return payloads, err
		}
		block, err := aes.NewCipher(c.key)
		if err != nil {
			return payloads, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return payloads, err
		}
		nonce := make([]byte, gcm.NonceSize())
		if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
			return payloads, err
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte("binary/encrypted"),
				"encryption-key-id":        []byte(c.keyID),
			},
			Data: gcm.Seal(nonce, nonce, raw, nil),
		}
	}
	return out, nil
}

func (c *samplesCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != "binary/encrypted" {
			out[i] = p
			continue
		}
		if _, ok := p.GetMetadata()["encryption-key-id"]; !ok {
			return payloads, errors.New("no encryption key id")
		}
		block, err := aes.NewCipher(c.key)
		if err != nil {
			return payloads, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return payloads, err
		}
		if len(p.GetData()) < gcm.NonceSize() {
			return payloads, errors.New("ciphertext too short")
		}
		nonce, sealed := p.GetData()[:gcm.NonceSize()], p.GetData()[gcm.NonceSize():]
		raw, err := gcm.Open(nil, nonce, sealed, nil)
		if err != nil {
			return payloads, err
		}
		out[i] = &commonpb.Payload{}
		if err := proto.Unmarshal(raw, out[i]); err != nil {
			return payloads, err
		}
	}
	return out, nil
}

func newSamplesCodec(tb testing.TB) *samplesCodec {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		tb.Fatal(err)
	}
	return &samplesCodec{keyID: "test", key: key}
}

func TestSamplesBaselineRoundTrip(t *testing.T) {
	c := newSamplesCodec(t)
	p, _ := converter.GetDefaultDataConverter().ToPayload(marker)
	enc, err := c.Encode([]*commonpb.Payload{p})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decode(enc)
	if err != nil || !proto.Equal(dec[0], p) {
		t.Fatalf("baseline round trip = %v, %v", dec, err)
	}
}

var benchSizes = []int{1 << 10, 64 << 10, 1 << 20}

// benchPayload is a json/plain payload of n bytes of non-repeating data, as the default converter makes them;
// random bytes keep the optional compression from flattering either side.
func benchPayload(b *testing.B, n int) *commonpb.Payload {
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: data}
}

func benchCodec(b *testing.B, pc converter.PayloadCodec, n int) {
	in := []*commonpb.Payload{benchPayload(b, n)}
	// Warm the key caches so the figures are steady state.
	if _, err := pc.Encode(in); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc, err := pc.Encode(in)
		if err != nil {
			b.Fatal(err)
		}
		dec, err := pc.Decode(enc)
		if err != nil {
			b.Fatal(err)
		}
		if len(dec[0].GetData()) != n {
			b.Fatalf("decoded %d bytes, want %d", len(dec[0].GetData()), n)
		}
	}
}

// BenchmarkCodec compares a full encode+decode of one payload through the plugin's codec and through the Go
// samples' AES-GCM codec, in the same run, per payload size. Divide the ns/op figures for the ratio.
func BenchmarkCodec(b *testing.B) {
	p := newPlugin(b, mustKeyring(b))
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%dKiB/codec=samples-aesgcm", n>>10), func(b *testing.B) {
			benchCodec(b, newSamplesCodec(b), n)
		})
		b.Run(fmt.Sprintf("size=%dKiB/codec=blindfold", n>>10), func(b *testing.B) {
			benchCodec(b, p.PayloadCodec("default"), n)
		})
	}
}

// BenchmarkDataConverter measures what an SDK call pays per value: serialization plus encryption and back, with
// the samples' codec and with the plugin's converter (which also follows the serialization context).
func BenchmarkDataConverter(b *testing.B) {
	p := newPlugin(b, mustKeyring(b))
	value := order{ID: marker, Items: []string{"a", "b", "c"}, Total: 42}
	for _, tc := range []struct {
		name string
		dc   converter.DataConverter
	}{
		{"samples-aesgcm", converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), newSamplesCodec(b))},
		{"blindfold", converter.WithDataConverterSerializationContext(p.DataConverter("default"),
			converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: "w"})},
	} {
		b.Run("converter="+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				pl, err := tc.dc.ToPayload(value)
				if err != nil {
					b.Fatal(err)
				}
				var out order
				if err := tc.dc.FromPayload(pl, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCodecPaired interleaves the two codecs operation by operation, so that load from other processes on a
// shared machine hits both alike, and reports each one's time per encode+decode and their ratio
// (blindfold/samples: below 1 means the plugin is faster).
func BenchmarkCodecPaired(b *testing.B) {
	p := newPlugin(b, mustKeyring(b))
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%dKiB", n>>10), func(b *testing.B) {
			in := []*commonpb.Payload{benchPayload(b, n)}
			codecs := [2]converter.PayloadCodec{newSamplesCodec(b), p.PayloadCodec("default")}
			var spent [2]time.Duration
			roundTrip := func(pc converter.PayloadCodec) {
				enc, err := pc.Encode(in)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pc.Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
			for _, pc := range codecs {
				roundTrip(pc) // warm caches
			}
			b.SetBytes(int64(2 * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j, pc := range codecs {
					start := time.Now()
					roundTrip(pc)
					spent[j] += time.Since(start)
				}
			}
			b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "samples-ns/op")
			b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "blindfold-ns/op")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "blindfold/samples")
		})
	}
}
