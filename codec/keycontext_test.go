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

// The remembered context must only ever answer for its own pair, however lookups of several pairs interleave.
func TestKeyContextsRemembered(t *testing.T) {
	t.Parallel()
	var c keyContexts
	a, b := c.get("a", "a/00000001"), c.get("b", "b/00000002")
	for i := range 1000 {
		if c.lookup("a", "a/00000001") != a || c.lookupBytes("b", []byte("b/00000002")) != b {
			t.Fatalf("lookup %d found another context", i)
		}
		if c.lookup("b", "a/00000001") != nil || c.lookupBytes("a", []byte("b/00000002")) != nil {
			t.Fatalf("lookup %d found a context of another namespace", i)
		}
	}
	if kc := c.last.Load(); kc != a && kc != b {
		t.Errorf("remembered %p, want one of the two contexts", kc)
	}
}

func TestIsV2Key(t *testing.T) {
	t.Parallel()
	def := newKeyContext("default/0000abcd", "default")  // the namespace's own scope: headers name none
	expl := newKeyContext("tenant/0000abcd", "default")  // another scope: headers name it
	opaque := newKeyContext("some-custom-id", "default") // not SCOPE/8-HEX-DIGITS: never a v2 key
	for _, tc := range []struct {
		kc        *keyContext
		namespace string
		scope     []byte
		tinkID    uint32
		want      bool
	}{
		{def, "default", nil, 0xabcd, true},
		{def, "default", nil, 0xabce, false},
		{def, "other", nil, 0xabcd, false},
		{def, "default", []byte("default"), 0xabcd, false}, // a header naming the default scope: the slow path decides
		{expl, "default", []byte("tenant"), 0xabcd, true},
		{expl, "default", nil, 0xabcd, false},
		{expl, "default", []byte("tenant2"), 0xabcd, false},
		{opaque, "default", nil, 0, false},
		{nil, "default", nil, 0xabcd, false},
	} {
		if got := tc.kc.isV2Key(tc.namespace, tc.scope, tc.tinkID); got != tc.want {
			id := "<nil>"
			if tc.kc != nil {
				id = tc.kc.id
			}
			t.Errorf("context %q: isV2Key(%q, %q, %08x) = %v, want %v", id, tc.namespace, tc.scope, tc.tinkID, got, tc.want)
		}
	}
}
