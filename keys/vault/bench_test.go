package vault_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/blindfold-dev/blindfold/codec"
	"github.com/blindfold-dev/blindfold/keys"
)

// BenchmarkVault compares steady-state codec encode+decode with the Vault Transit KEK against the local master key in one run
// (go test -bench Vault -run '^$' ./keys/). Once a scope is cached neither KEK is called, so the ratio should be ~1; the Vault
// KEK-call counter over the measured loop is reported as vault-calls and must be 0.
func BenchmarkVault(b *testing.B) {
	p := testVault(b)
	local, err := keys.OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	vm := vaultManager(b, b.TempDir(), newVaultKEK(b, vaultCfg(p, uniquePrefix())))
	for _, size := range []int{1 << 10, 64 << 10} {
		elapsed := map[string]time.Duration{}
		for _, kc := range []struct {
			name string
			m    *keys.Manager
		}{{"local", local}, {"vault", vm}} {
			c, err := codec.New(kc.m)
			if err != nil {
				b.Fatal(err)
			}
			in := []*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: bytes.Repeat([]byte("x"), size)}}
			if _, err := c.Encode(ctx, "default", in); err != nil { // warm the cache: the one KEK call per scope
				b.Fatal(err)
			}
			b.Run(kc.name+"/"+sizeName(size), func(b *testing.B) {
				calls := kc.m.Stats().KEKCalls
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					enc, err := c.Encode(ctx, "default", in)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Decode(ctx, "default", enc); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				elapsed[kc.name] = b.Elapsed() / time.Duration(b.N)
				b.ReportMetric(float64(kc.m.Stats().KEKCalls-calls), "kek-calls")
			})
		}
		if elapsed["vault"] > 0 {
			b.Logf("%s: local %v/op, vault %v/op: vault throughput = %.3f× local", sizeName(size), elapsed["local"], elapsed["vault"],
				float64(elapsed["local"])/float64(elapsed["vault"]))
		}
	}
}

func sizeName(n int) string { return fmt.Sprintf("%dKiB", n>>10) }
