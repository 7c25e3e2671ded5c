package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
)

// rawGCM is the baseline: what a minimal hand-written AES-256-GCM codec does per payload (fresh random nonce, Seal,
// Open), with no envelope, key lookup, associated data or protobuf.
type rawGCM struct{ aead cipher.AEAD }

func newRawGCM() (*rawGCM, error) {
	key := make([]byte, 32)
	rand.Read(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &rawGCM{g}, nil
}

func (r *rawGCM) seal(data []byte) []byte {
	nonce := make([]byte, r.aead.NonceSize(), r.aead.NonceSize()+len(data)+r.aead.Overhead())
	rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, data, nil)
}

func (r *rawGCM) open(ct []byte) ([]byte, error) {
	n := r.aead.NonceSize()
	return r.aead.Open(nil, ct[:n], ct[n:], nil)
}

func randomPayload(n int) *commonpb.Payload {
	data := make([]byte, n)
	rand.Read(data)
	return &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: data}
}

// runCodec measures one Encode plus one Decode of a single payload through the codec (local key directory, cached
// DEK) against raw AES-256-GCM seal+open of the same bytes, alternating the two on every iteration.
func runCodec(ctx context.Context, e *env) ([]Row, error) {
	c, err := e.ensureCodec()
	if err != nil {
		return nil, err
	}
	raw, err := newRawGCM()
	if err != nil {
		return nil, err
	}
	budget := pick(e, 300*time.Millisecond, 3*time.Second)
	var rows []Row
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}} {
		in := []*commonpb.Payload{randomPayload(size.n)}
		// Warm up: the first Encode creates and caches the namespace's DEK.
		if _, err := c.Encode(ctx, "default", in); err != nil {
			return rows, fmt.Errorf("encode: %w", err)
		}
		// Per-iteration times, summarised by their median: on a shared machine a sum is dominated by preemptions.
		var codecT, rawT []time.Duration
		iters := 0
		for deadline := time.Now().Add(budget); time.Now().Before(deadline) || iters < 5; iters++ {
			t0 := time.Now()
			enc, err := c.Encode(ctx, "default", in)
			if err != nil {
				return rows, fmt.Errorf("encode %s: %w", size.name, err)
			}
			dec, err := c.Decode(ctx, "default", enc)
			if err != nil || len(dec[0].Data) != size.n {
				return rows, fmt.Errorf("decode %s: %v", size.name, err)
			}
			t1 := time.Now()
			pt, err := raw.open(raw.seal(in[0].Data))
			if err != nil || len(pt) != size.n {
				return rows, fmt.Errorf("raw open %s: %v", size.name, err)
			}
			rawT = append(rawT, time.Since(t1))
			codecT = append(codecT, t1.Sub(t0))
		}
		cm, rm := percentile(codecT, 50), percentile(rawT, 50)
		mbps := func(d time.Duration) float64 { return float64(size.n) / d.Seconds() / 1e6 }
		rows = append(rows,
			Row{Measure: size.name + " encode+decode", Value: mbps(cm), Baseline: mbps(rm), Unit: "MB/s",
				Note: fmt.Sprintf("baseline raw AES-256-GCM seal+open; median of %d interleaved iterations", iters)},
			Row{Measure: size.name + " encode+decode", Value: us(cm), Baseline: us(rm), Unit: "µs/op"},
		)
	}
	st := e.km.Stats()
	rows = append(rows, Row{Measure: "KEK calls since start", Value: float64(st.KEKCalls), Baseline: nan(), Unit: "calls",
		Note: "creating and loading the scope keyset; none per payload"})
	return rows, nil
}
