package codec

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestKeyContexts(t *testing.T) {
	t.Parallel()
	var c keyContexts
	kc := c.get("ns", "ns/0a1b2c3d")
	if !bytes.Equal(kc.ad, associatedData("ns/0a1b2c3d", "ns")) {
		t.Errorf("ad = %x", kc.ad)
	}
	if got := c.lookupBytes("ns", []byte("ns/0a1b2c3d")); got != kc {
		t.Errorf("lookupBytes = %p, want the cached %p", got, kc)
	}
	if c.lookup("other", "ns/0a1b2c3d") != nil {
		t.Error("a context is shared across namespaces")
	}
	for i := range maxKeyContexts + 1 {
		c.get("ns", fmt.Sprintf("ns/%08x", i))
	}
	if n := len(*c.m.Load()); n > maxKeyContexts {
		t.Errorf("cache holds %d contexts, bound is %d", n, maxKeyContexts)
	}
}

func TestKeyContextsConcurrent(t *testing.T) {
	t.Parallel()
	var (
		c  keyContexts
		wg sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("ns/%08x", i%10)
				if kc := c.get("ns", id); kc.id != id || kc.namespace != "ns" {
					t.Errorf("goroutine %d: get(%q) = %q", g, id, kc.id)
				}
			}
		})
	}
	wg.Wait()
}

// Envelope metadata values are shared between envelopes; appending to one must not write into the others.
func TestEnvelopeMetadataIsolated(t *testing.T) {
	t.Parallel()
	kc := newKeyContext("ns/0a1b2c3d", "ns")
	a, b := kc.envelopeMetadata(), kc.envelopeMetadata()
	for k := range a {
		_ = append(a[k], 'X')
	}
	a[MetadataKeyID] = []byte("replaced")
	if string(b[MetadataKeyID]) != "ns/0a1b2c3d" || string(b[MetadataEncoding]) != EncodingEncrypted || string(kc.metadata[MetadataKeyID]) != "ns/0a1b2c3d" {
		t.Errorf("changing one envelope's metadata changed another's: %q", b)
	}
	if len(b) != 4 {
		t.Errorf("envelope metadata has %d entries, want 4", len(b))
	}
}
