package keyse2e

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/internal/gateway"
	"github.com/blindfold-dev/blindfold/keys"
)

// BenchmarkSteadyStatePayload compares the steady-state cost of a payload (codec encode + decode, 1 KiB and 64 KiB) with
// each KEK against the local master key, measured in the same loop: every iteration seals and opens one payload with
// the local-KEK codec and one with the KEK's (alternating which goes first), timed apart, so machine load hits both alike;
// x-local is the median over batches of 16 iterations. The "local" row compares local with local: the noise floor. The scope's keyset is unwrapped
// once before the loop and served from the cache after, so the KEK is never called: the ratio (x-local, KEK time over
// local time) should be ~1.0 and must stay under 1.05; kek-calls over the loop must be 0.
//
//	go test -run '^$' -bench SteadyStatePayload ./internal/e2e/keyse2e/
func BenchmarkSteadyStatePayload(b *testing.B) {
	ctx := context.Background()
	open := func(b *testing.B, kc gateway.KeysConfig) (*codec.Codec, *keys.Manager) {
		k, err := gateway.OpenKeys(ctx, kc, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(k.Close)
		c, err := codec.New(k.Manager)
		if err != nil {
			b.Fatal(err)
		}
		return c, k.Manager
	}
	local, _ := open(b, localRig(b).keys(b.TempDir(), nil))
	for _, p := range providers {
		if p.setup == nil {
			continue
		}
		for _, size := range []int{1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", p.name, size>>10), func(b *testing.B) {
				if p.skip != nil {
					if why := p.skip(); why != "" {
						b.Skip(why)
					}
				}
				c, m := open(b, p.setup(b).keys(b.TempDir(), nil))
				in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: bytes.Repeat([]byte("x"), size)}}
				one := func(c *codec.Codec) time.Duration {
					began := time.Now()
					enc, err := c.Encode(ctx, namespace, in)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Decode(ctx, namespace, enc); err != nil {
						b.Fatal(err)
					}
					return time.Since(began)
				}
				one(local) // warm both caches: the one KEK call per scope
				one(c)
				calls := m.Stats().KEKCalls
				// The machine is shared: take the ratio per batch of iterations, alternating which codec goes first, and
				// report the median batch, which load spikes on either side do not move.
				const batch = 16
				var tLocal, tKEK, bLocal, bKEK time.Duration
				var ratios []float64
				i := 0
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					var l, k time.Duration
					if i%2 == 0 {
						l, k = one(local), one(c)
					} else {
						k, l = one(c), one(local)
					}
					tLocal, tKEK, bLocal, bKEK = tLocal+l, tKEK+k, bLocal+l, bKEK+k
					if i++; i%batch == 0 {
						ratios = append(ratios, float64(bKEK)/float64(bLocal))
						bLocal, bKEK = 0, 0
					}
				}
				b.StopTimer()
				ratio := float64(tKEK) / float64(tLocal)
				if len(ratios) > 0 {
					sort.Float64s(ratios)
					ratio = ratios[len(ratios)/2]
				}
				b.ReportMetric(ratio, "x-local")
				b.ReportMetric(float64(m.Stats().KEKCalls-calls), "kek-calls")
				b.ReportMetric(float64(tKEK.Nanoseconds())/float64(b.N), "kek-ns/payload")
				b.ReportMetric(float64(tLocal.Nanoseconds())/float64(b.N), "local-ns/payload")
				if got := m.Stats().KEKCalls - calls; got != 0 {
					b.Errorf("%d KEK calls in steady state, want 0", got)
				}
			})
		}
	}
}
