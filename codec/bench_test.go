package codec_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

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
