package codec

import (
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// A keyContext is everything the codec derives from a (key id, namespace) pair: the associated data (v1's whole, v2's constant prefix),
// the envelope metadata and the parts of the key id.
// Building them costs several allocations, which at 1 KiB is a noticeable share of a payload's cost, so they are built once per pair and
// cached. A keyContext is immutable once published, except for the ciphertext overhead it learns.
type keyContext struct {
	id        string
	namespace string
	// ad is the associated data of format v1 (docs/format.md §6). The AEAD only reads it.
	ad []byte
	// metadata is the envelope metadata of §2. Every envelope gets its own copy of the map (maps.Clone copies the one small group,
	// much cheaper than four hashed inserts), but the values are shared by all envelopes of the pair: see Codec.Encode.
	metadata map[string][]byte

	// adV2 is the constant start of v2's associated data (docs/format.md, v2 §4): the label, the namespace and the key id, each
	// length-prefixed; the header follows per envelope.
	adV2 []byte
	// scope and tinkID are the parts of a key id of the form SCOPE/8-HEX-DIGITS; scope is "" for any other id (v2 cannot
	// seal with such a key, and v1 does not check its Tink prefix). explicitScope says whether a v2 header must name the
	// scope: it is not the namespace's default (ScopeForNamespace).
	scope         string
	tinkID        uint32
	explicitScope bool

	// overhead is how many bytes the key's last ciphertext added to its plaintext (0 until the first v2 seal), so that a v2
	// writer can allocate the envelope data, which holds a copy of the ciphertext, before the AEAD runs.
	overhead atomic.Int32
}

// defaultOverhead is the room for the ciphertext expansion a key has not shown yet: a TINK prefix, a 24-byte nonce (XAES-256-GCM's
// salt and nonce, XChaCha20-Poly1305's) and a 16-byte tag.
const defaultOverhead = tinkPrefixSize + 24 + 16

func (k *keyContext) ciphertextOverhead() int {
	if n := k.overhead.Load(); n > 0 {
		return int(n)
	}
	return defaultOverhead
}

func (k *keyContext) setCiphertextOverhead(n int) {
	if n > 0 && n <= 1<<10 && int32(n) != k.overhead.Load() {
		k.overhead.Store(int32(n))
	}
}

func newKeyContext(id, namespace string) *keyContext {
	scope, tinkID, ok := splitKeyID(id)
	if !ok {
		scope = ""
	}
	return &keyContext{
		id:            id,
		namespace:     namespace,
		scope:         scope,
		tinkID:        tinkID,
		explicitScope: ok && scope != ScopeForNamespace(namespace),
		adV2:          appendFields(nil, adLabelV2, namespace, id),
		ad:            associatedData(id, namespace),
		metadata: map[string][]byte{
			MetadataEncoding:  encodingEncryptedBytes,
			MetadataFormat:    formatV1Bytes,
			MetadataKeyID:     capped([]byte(id)),
			MetadataNamespace: capped([]byte(namespace)),
		},
	}
}

// isV2Key reports whether k is the context, for namespace, of the key a v2 envelope names: one whose header has scope (nil for
// the namespace's default) and whose ciphertext has the Tink key id tinkID. k may be nil.
func (k *keyContext) isV2Key(namespace string, scope []byte, tinkID uint32) bool {
	if k == nil || k.scope == "" || k.tinkID != tinkID || k.namespace != namespace {
		return false
	}
	if scope == nil {
		return !k.explicitScope
	}
	return k.explicitScope && k.scope == string(scope)
}

// envelopeMetadata returns a new metadata map for one envelope.
func (k *keyContext) envelopeMetadata() map[string][]byte {
	return maps.Clone(k.metadata)
}

// The constant metadata values shared by every envelope. Their capacity equals their length, so an append makes a copy instead of writing
// into shared memory.
var (
	encodingEncryptedBytes = capped([]byte(EncodingEncrypted))
	formatV1Bytes          = capped([]byte(FormatV1))
)

func capped(b []byte) []byte { return b[:len(b):len(b)] }

// maxKeyContexts bounds the cache. A process sees few (key, namespace) pairs — one per namespace plus one per rotated key still in use —
// so the bound is only a guard; when it is reached the cache starts over and refills with the pairs in use.
const maxKeyContexts = 1024

// keyContexts caches keyContext values by (namespace, key id). Lookups are lock-free reads of an immutable map (one atomic load, and no
// allocation even when the key id is a []byte from envelope metadata); additions copy the map under a mutex, which happens once per pair.
// Only pairs whose key the keyring actually returned are added, so ids read from untrusted envelopes cannot fill it.
//
// One context is remembered besides: a process that serves one namespace with one key then finds it with two string
// comparisons instead of hashing both strings, and a v2 decode finds it without building the key id. A lookup that finds
// another pair replaces it only one time in lastReplaceOdds, so that payloads of several namespaces in turn, on several
// cores, do not make every lookup write to the one cache line all cores read (which would cost more than the hashing).
type keyContexts struct {
	m    atomic.Pointer[map[keyContextKey]*keyContext]
	last atomic.Pointer[keyContext]
	mu   sync.Mutex // serialises additions
}

type keyContextKey struct{ namespace, id string }

// lookup returns the cached context of (namespace, id), or nil.
func (c *keyContexts) lookup(namespace, id string) *keyContext {
	if kc := c.last.Load(); kc != nil && kc.id == id && kc.namespace == namespace {
		return kc
	}
	if m := c.m.Load(); m != nil {
		if kc := (*m)[keyContextKey{namespace, id}]; kc != nil {
			c.remember(kc)
			return kc
		}
	}
	return nil
}

// lookupBytes is lookup for an id still in its metadata bytes; neither the comparison nor the conversion in the map index allocates.
func (c *keyContexts) lookupBytes(namespace string, id []byte) *keyContext {
	if kc := c.last.Load(); kc != nil && kc.id == string(id) && kc.namespace == namespace {
		return kc
	}
	if m := c.m.Load(); m != nil {
		if kc := (*m)[keyContextKey{namespace, string(id)}]; kc != nil {
			c.remember(kc)
			return kc
		}
	}
	return nil
}

// lastReplaceOdds: a lookup that finds another context than the remembered one replaces it with probability 1/lastReplaceOdds.
const lastReplaceOdds = 16

func (c *keyContexts) remember(kc *keyContext) {
	if rand.Uint32()%lastReplaceOdds == 0 {
		c.last.Store(kc)
	}
}

// get returns the context of (namespace, id), building and caching it when it is not cached yet.
func (c *keyContexts) get(namespace, id string) *keyContext {
	if kc := c.lookup(namespace, id); kc != nil {
		return kc
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var next map[keyContextKey]*keyContext
	if old := c.m.Load(); old != nil {
		if kc := (*old)[keyContextKey{namespace, id}]; kc != nil {
			return kc // added by another goroutine meanwhile
		}
		if len(*old) < maxKeyContexts {
			next = make(map[keyContextKey]*keyContext, len(*old)+1)
			maps.Copy(next, *old)
		}
	}
	if next == nil {
		next = make(map[keyContextKey]*keyContext, 1)
	}
	kc := newKeyContext(id, namespace)
	next[keyContextKey{namespace, id}] = kc
	c.m.Store(&next)
	if c.last.Load() == nil {
		c.last.Store(kc)
	}
	return kc
}
