package keys_test

import (
	"testing"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// BenchmarkSteadyState measures the per-payload cost of a key lookup once the scope is cached (no file or KEK work).
func BenchmarkSteadyState(b *testing.B) {
	m, err := keys.OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	k, err := m.SealingKey(ctx, codec.Target{Namespace: "default"})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("SealingKey", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.SealingKey(ctx, codec.Target{Namespace: "default"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("OpeningKey", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.OpeningKey(ctx, "default", k.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	s := m.Stats()
	b.Logf("KEK calls %d, key file reads %d after all iterations", s.KEKCalls, s.KeyFileReads)
}
