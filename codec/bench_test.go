package codec_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/codec/codectest"
)

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// rawGCM is the baseline: what a minimal hand-written AES-256-GCM codec does per payload (fresh nonce, Seal, Open), with no envelope, key lookup or protobuf.
type rawGCM struct{ aead cipher.AEAD }

func newRawGCM(b *testing.B) *rawGCM {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	return &rawGCM{g}
}

func (r *rawGCM) roundTrip(b *testing.B, data []byte) {
	nonce := make([]byte, r.aead.NonceSize(), r.aead.NonceSize()+len(data)+r.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		b.Fatal(err)
	}
	ct := r.aead.Seal(nonce, nonce, data, nil)
	pt, err := r.aead.Open(nil, ct[:r.aead.NonceSize()], ct[r.aead.NonceSize():], nil)
	if err != nil || len(pt) != len(data) {
		b.Fatal("raw open failed", err)
	}
}

func benchPayload(b *testing.B, n int) []*commonpb.Payload {
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}}
}

func roundTrip(b *testing.B, c *codec.Codec, in []*commonpb.Payload) {
	ctx := context.Background()
	enc, err := c.Encode(ctx, "default", in)
	if err != nil {
		b.Fatal(err)
	}
	dec, err := c.Decode(ctx, "default", enc)
	if err != nil || len(dec[0].Data) != len(in[0].Data) {
		b.Fatal("decode failed", err)
	}
}

// BenchmarkEncodeDecode measures one Encode plus one Decode of a single payload, next to the raw AES-GCM baseline on the same data.
func BenchmarkEncodeDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name+"/blindfold", func(b *testing.B) {
			c := newCodec(b, codectest.NewKeyring())
			in := benchPayload(b, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, c, in)
			}
		})
		b.Run(size.name+"/raw-aes-gcm", func(b *testing.B) {
			r := newRawGCM(b)
			data := benchPayload(b, size.n)[0].Data
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				r.roundTrip(b, data)
			}
		})
	}
}

// BenchmarkVsRaw runs the codec and the raw baseline alternately in one loop, so both see the same CPU conditions (this machine is shared),
// and reports each one's time per operation and throughput, and their ratios: x-raw-throughput = codec MB/s ÷ raw MB/s (1.0 = as fast as raw),
// x-raw-time = codec time ÷ raw time (1.0 = no overhead). The framework's own ns/op covers both halves; ignore it here.
func BenchmarkVsRaw(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			c := newCodec(b, codectest.NewKeyring())
			r := newRawGCM(b)
			in := benchPayload(b, size.n)
			var codecTime, rawTime time.Duration
			n := 0
			for b.Loop() {
				n++
				t0 := time.Now()
				roundTrip(b, c, in)
				t1 := time.Now()
				r.roundTrip(b, in[0].Data)
				rawTime += time.Since(t1)
				codecTime += t1.Sub(t0)
			}
			codecNs := float64(codecTime.Nanoseconds()) / float64(n)
			rawNs := float64(rawTime.Nanoseconds()) / float64(n)
			b.ReportMetric(codecNs, "codec-ns/op")
			b.ReportMetric(rawNs, "raw-ns/op")
			b.ReportMetric(float64(size.n)*1e3/codecNs, "codec-MB/s")
			b.ReportMetric(float64(size.n)*1e3/rawNs, "raw-MB/s")
			b.ReportMetric(rawNs/codecNs, "x-raw-throughput")
			b.ReportMetric(codecNs/rawNs, "x-raw-time")
		})
	}
}

// BenchmarkDecodeBatch decodes 10,000 payloads of 1 KiB in one call, the codec endpoint's target case (< 100 ms).
func BenchmarkDecodeBatch(b *testing.B) {
	c := newCodec(b, codectest.NewKeyring())
	in := make([]*commonpb.Payload, 10_000)
	for i := range in {
		in[i] = benchPayload(b, 1<<10)[0]
	}
	enc, err := c.Encode(context.Background(), "default", in)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)) << 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(context.Background(), "default", enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompression round-trips compressible JSON with zstd on, against the same codec with compression off.
func BenchmarkCompression(b *testing.B) {
	for _, n := range []int{64 << 10, 1 << 20} {
		unit := []byte(`{"id":12345,"name":"blindfold","tags":["a","b"]},`)
		data := bytes.Repeat(unit, n/len(unit)+1)[:n]
		in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: data}}
		for _, tc := range []struct {
			name string
			opts []codec.Option
		}{{"zstd", []codec.Option{codec.WithCompression(1024)}}, {"off", nil}} {
			b.Run(fmt.Sprintf("%dKiB/%s", n>>10, tc.name), func(b *testing.B) {
				c := newCodec(b, codectest.NewKeyring(), tc.opts...)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					roundTrip(b, c, in)
				}
			})
		}
	}
}

// BenchmarkDecode1KiB decodes uncompressed 1 KiB envelopes, alone and 100 to a call: the common case, which the decoded-size
// budget (only compressed bodies draw on it) must not slow down.
func BenchmarkDecode1KiB(b *testing.B) {
	c := newCodec(b, codectest.NewKeyring())
	for _, n := range []int{1, 100} {
		in := make([]*commonpb.Payload, n)
		for i := range in {
			in[i] = benchPayload(b, 1<<10)[0]
		}
		enc, err := c.Encode(context.Background(), "default", in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			b.SetBytes(int64(n) << 10)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Decode(context.Background(), "default", enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The codec endpoint's way: one budget shared by every call of a request.
		b.Run(fmt.Sprintf("batch%d/within", n), func(b *testing.B) {
			budget := codec.NewDecodeBudget(codec.DefaultMaxDecodedTotal)
			b.SetBytes(int64(n) << 10)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.DecodeWithin(context.Background(), "default", enc, budget); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// rawXAES is the baseline of format v2: Tink's XAES-256-GCM (160-bit nonce) primitive, the keys package's default key type,
// sealing and opening the bare data with no prefix, envelope, associated data, key lookup or protobuf.
type rawXAES struct{ aead tink.AEAD }

func newRawXAES(b *testing.B) *rawXAES {
	h, err := keyset.NewHandle(aead.XAES256GCM160BitNonceNoPrefixKeyTemplate())
	if err != nil {
		b.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		b.Fatal(err)
	}
	return &rawXAES{a}
}

func (r *rawXAES) roundTrip(b *testing.B, data []byte) {
	ct, err := r.aead.Encrypt(data, nil)
	if err != nil {
		b.Fatal(err)
	}
	pt, err := r.aead.Decrypt(ct, nil)
	if err != nil || len(pt) != len(data) {
		b.Fatal("raw open failed", err)
	}
}

// BenchmarkV2VsRawXAES runs one EncodeFor plus one DecodeFor (format v2, bound to a workflow, checked by an Accept func, as
// the proxy does) and the raw XAES-256-GCM baseline alternately in one loop, on json/plain payloads, with the same key type,
// and reports their ratios as BenchmarkVsRaw does: x-raw-time (goal at 1 KiB: at most 1.5; issue 18 at 2 MiB: at most 1.1)
// and x-raw-throughput (goal at 1 MiB: at least 0.9), from the mean times, and the same from the median times of the
// iterations (-med), which a shared machine's preemptions disturb much less. "v1" is the same codec writing format v1;
// "v2-compact" and "v2-metadata" force one header layout at every size, to show where the writer's threshold
// (HeaderInMetadataAt) pays.
//
//	go test ./codec -run '^$' -bench 'V2VsRawXAES/v2/' -benchtime 2s -count 5
func BenchmarkV2VsRawXAES(b *testing.B) {
	ctx := context.Background()
	target := codec.Target{Namespace: "default", Binding: codec.Workflow("order-000042")}
	expect := codec.Expect{Namespace: "default", Accept: func(_ int, got codec.Binding) error {
		if got != target.Binding && got != (codec.Binding{}) { // v1 envelopes claim the namespace
			return errors.New("bound elsewhere")
		}
		return nil
	}}
	sizes := []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"2MiB", 2 << 20}}
	for _, f := range []struct {
		name string
		opts []codec.Option
	}{
		{"v2", []codec.Option{codec.WithWriteFormat(2)}},
		{"v1", []codec.Option{codec.WithWriteFormat(1)}},
		{"v2-compact", []codec.Option{codec.WithHeaderInMetadataAt(math.MaxInt)}},
		{"v2-metadata", []codec.Option{codec.WithHeaderInMetadataAt(0)}},
	} {
		for _, size := range sizes {
			b.Run(f.name+"/"+size.name, func(b *testing.B) {
				c := newCodec(b, codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate()), f.opts...)
				r := newRawXAES(b)
				data := make([]byte, size.n)
				if _, err := rand.Read(data); err != nil {
					b.Fatal(err)
				}
				in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: data}}
				var codecTime, rawTime time.Duration
				var codecTimes, rawTimes []time.Duration
				codecRound := func() time.Duration {
					t0 := time.Now()
					enc, err := c.EncodeFor(ctx, target, in)
					if err != nil {
						b.Fatal(err)
					}
					dec, err := c.DecodeFor(ctx, expect, enc)
					if err != nil || len(dec[0].Data) != size.n {
						b.Fatal("decode failed", err)
					}
					return time.Since(t0)
				}
				rawRound := func() time.Duration {
					t0 := time.Now()
					r.roundTrip(b, data)
					return time.Since(t0)
				}
				for i := 0; b.Loop(); i++ {
					// Which half goes first alternates: with payloads of a MiB the garbage collector runs about once per
					// iteration, and always in the same half if the order were fixed.
					var ct, rt time.Duration
					if i%2 == 0 {
						ct, rt = codecRound(), rawRound()
					} else {
						rt, ct = rawRound(), codecRound()
					}
					codecTimes, rawTimes = append(codecTimes, ct), append(rawTimes, rt)
					codecTime += ct
					rawTime += rt
				}
				n := float64(len(codecTimes))
				codecNs, rawNs := float64(codecTime.Nanoseconds())/n, float64(rawTime.Nanoseconds())/n
				codecMed, rawMed := median(codecTimes), median(rawTimes)
				b.ReportMetric(codecNs, "codec-ns/op")
				b.ReportMetric(rawNs, "raw-ns/op")
				b.ReportMetric(float64(size.n)*1e3/codecNs, "codec-MB/s")
				b.ReportMetric(float64(size.n)*1e3/rawNs, "raw-MB/s")
				b.ReportMetric(rawNs/codecNs, "x-raw-throughput")
				b.ReportMetric(codecNs/rawNs, "x-raw-time")
				b.ReportMetric(rawMed/codecMed, "x-raw-throughput-med")
				b.ReportMetric(codecMed/rawMed, "x-raw-time-med")
			})
		}
	}
}

// median returns the median of ds in nanoseconds (ds is reordered).
func median(ds []time.Duration) float64 {
	slices.Sort(ds)
	m := len(ds) / 2
	if len(ds)%2 == 0 {
		return float64(ds[m-1]+ds[m]) / 2
	}
	return float64(ds[m])
}

// BenchmarkOverhead reports the bytes an envelope adds to a 1 KiB json/plain payload (protobuf size of the envelope minus
// that of the original), for each format and binding, with XAES-256-GCM keys. (It measures sizes, not time.)
func BenchmarkOverhead(b *testing.B) {
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte("j"), 1024)}
	for _, tc := range []struct {
		name    string
		format  int
		binding codec.Binding
	}{
		{"v1", 1, codec.Binding{}},
		{"v2/namespace", 2, codec.Binding{}},
		{"v2/workflow-id-12B", 2, codec.Workflow("order-000042")},
		{"v2/workflow-id-36B-uuid", 2, codec.Workflow("3f2a9c1e-8d4b-4f6a-9e2d-7c1b5a0f3e8d")},
		{"v2-metadata-layout/workflow-id-12B", 3, codec.Workflow("order-000042")}, // the large payloads' layout, forced
	} {
		b.Run(tc.name, func(b *testing.B) {
			opts := []codec.Option{codec.WithWriteFormat(min(tc.format, 2))}
			if tc.format == 3 {
				opts = append(opts, codec.WithHeaderInMetadataAt(0))
			}
			c := newCodec(b, codectest.NewKeyringWithTemplate(aead.XAES256GCM160BitNonceKeyTemplate()), opts...)
			var added int
			for b.Loop() {
				enc, err := c.EncodeFor(context.Background(), codec.Target{Namespace: "default", Binding: tc.binding}, []*commonpb.Payload{p})
				if err != nil {
					b.Fatal(err)
				}
				added = proto.Size(enc[0]) - proto.Size(p)
			}
			b.ReportMetric(float64(added), "bytes-added")
		})
	}
}
