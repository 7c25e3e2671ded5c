package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	commonpb "go.temporal.io/api/common/v1"
)

// Envelope metadata keys and values (see docs/format.md). Format v2 envelopes carry only MetadataEncoding; the other keys are v1's.
const (
	// MetadataEncoding is the standard Temporal metadata key naming a payload's encoding.
	MetadataEncoding = "encoding"
	// EncodingEncrypted is the encoding of every envelope; the Temporal Web UI recognises it as encrypted data.
	EncodingEncrypted = "binary/encrypted"
	// MetadataFormat names the envelope format version; its presence marks a payload as a Blindfold envelope.
	MetadataFormat = "blindfold-format"
	// MetadataKeyID names the key (Key.ID) that sealed the envelope.
	MetadataKeyID = "blindfold-key-id"
	// MetadataNamespace names the namespace the envelope was sealed for. It is not secret, and it is authenticated through the associated data.
	MetadataNamespace = "blindfold-namespace"
	// FormatV1 is the value of MetadataFormat in a format v1 envelope.
	FormatV1 = "1"
	// MetadataDecodeError is added to a payload that a Blindfold decoder (the codec endpoint, the CLI's decode) could not open
	// and returned still encrypted; its value says why. It is not part of the envelope, and SDK plugins treat it as an error.
	MetadataDecodeError = "blindfold-decode-error"
)

const (
	// adLabelV1 is the first associated-data field of format v1; a later format (e.g. one that binds the workflow id) gets a new label.
	adLabelV1 = "blindfold/v1"

	// flagZstd marks a zstd-compressed body; flagsKnown is every flag bit v1 defines.
	flagZstd   byte = 0x01
	flagsKnown      = flagZstd

	// MinCiphertextSize is the shortest Tink ciphertext either format accepts (v1: the whole data; v2: what follows the
	// header): a Tink output prefix (5 bytes), a 12-byte nonce and a 16-byte tag.
	MinCiphertextSize = tinkPrefixSize + 12 + 16

	// DefaultMaxDecodedSize caps the size a compressed body may expand to when no WithMaxDecodedSize option is given.
	DefaultMaxDecodedSize = 128 << 20

	// maxPooledBuffer keeps very large scratch buffers out of the pool so one huge payload does not pin its memory.
	maxPooledBuffer = 4 << 20

	// maxIDInError bounds how much of an attacker-controlled metadata value is quoted in an error message.
	maxIDInError = 64
)

// Codec seals payloads into Blindfold envelopes and opens them again. It is safe for concurrent use.
type Codec struct {
	kr Keyring

	compress        bool
	threshold       int
	maxDecodedSize  int
	maxDecodedTotal int // 0 until New settles it
	writeFormat     int // 1 or 2
	// headerInMetadataAt is the plaintext size from which v2 envelopes carry their header in metadata (tests lower it).
	headerInMetadataAt int

	encoder func() (*zstd.Encoder, error)
	decoder func() (*zstd.Decoder, error)

	contexts keyContexts
	// lastBindingID is the binding id of the last v2 envelope decoded (bindingID).
	lastBindingID atomic.Pointer[string]
}

// Option configures a Codec.
type Option func(*Codec) error

// WithCompression turns on zstd compression of payload bodies whose marshalled size is at least threshold bytes.
// A body is stored compressed only when compression makes it smaller. Compression is off by default.
func WithCompression(threshold int) Option {
	return func(c *Codec) error {
		if threshold < 0 {
			return fmt.Errorf("compression threshold %d is negative", threshold)
		}
		c.compress = true
		c.threshold = threshold
		return nil
	}
}

// WithMaxDecodedSize caps the size, in bytes, that a compressed body may expand to on Decode (default DefaultMaxDecodedSize).
// It guards against decompression bombs; Encode never compresses a body larger than the cap, so everything a Codec encodes it can decode.
// A body over the cap fails with an error wrapping ErrDecodedTooLarge.
func WithMaxDecodedSize(n int) Option {
	return func(c *Codec) error {
		if n <= 0 {
			return fmt.Errorf("max decoded size %d is not positive", n)
		}
		c.maxDecodedSize = n
		return nil
	}
}

// WithMaxDecodedTotal caps the bytes that all compressed bodies of one Decode call may expand to together (default
// DefaultMaxDecodedTotal, or the per-payload cap if that is larger). The per-payload cap alone lets a response of a
// thousand small zstd bombs expand to a thousand times the cap; with this one, the Decode fails with an error wrapping
// ErrDecodedTooLarge as soon as the next body would not fit, before it is allocated. Uncompressed bodies do not count.
//
// A total below the per-payload cap lowers the per-payload cap to it, since no single body could use more anyway (and
// Encode then compresses only bodies within it). Callers that split one request into several calls share a
// DecodeBudget instead (DecodeWithin).
func WithMaxDecodedTotal(n int) Option {
	return func(c *Codec) error {
		if n <= 0 {
			return fmt.Errorf("max decoded total %d is not positive", n)
		}
		c.maxDecodedTotal = n
		return nil
	}
}

// WithWriteFormat sets the envelope format Encode writes: 2 (the default) or 1. Every Codec reads both. A fleet that
// upgrades from a release that reads only v1 keeps writing v1 (WithWriteFormat(1)) until every reader (proxies, SDK
// plugins, CLIs) reads v2, then switches (docs/format.md, "Upgrading"). Format 1 cannot carry a Binding: a Target's
// Binding is ignored, and the envelope is bound to its namespace only (it claims BindNamespace when opened).
func WithWriteFormat(version int) Option {
	return func(c *Codec) error {
		if version != 1 && version != 2 {
			return fmt.Errorf("write format %d: only 1 and 2 exist", version)
		}
		c.writeFormat = version
		return nil
	}
}

// New returns a Codec that takes its keys from kr.
func New(kr Keyring, opts ...Option) (*Codec, error) {
	if kr == nil {
		return nil, errors.New("codec: nil keyring")
	}
	c := &Codec{kr: kr, maxDecodedSize: DefaultMaxDecodedSize, writeFormat: 2, headerInMetadataAt: headerInMetadataAt}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, fmt.Errorf("codec: %w", err)
		}
	}
	if c.maxDecodedTotal == 0 {
		c.maxDecodedTotal = max(DefaultMaxDecodedTotal, c.maxDecodedSize)
	}
	c.maxDecodedSize = min(c.maxDecodedSize, c.maxDecodedTotal)
	// The zstd state is built on first use: most codecs never compress, and decoding a compressed body is rare unless the sender compresses.
	c.encoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithLowerEncoderMem(true))
	})
	maxDecoded := uint64(c.maxDecodedSize)
	c.decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxDecoded),
			// Every DecodeAll passes a buffer sized to what it may still spend (see decompress), and the decoder
			// must never grow it: that is what bounds a bomb by the remaining budget rather than by the per-payload cap.
			zstd.WithDecodeAllCapLimit(true),
		)
	})
	return c, nil
}

// Encode seals every payload for namespace with the keyring's default scope for namespace; it is EncodeFor with Target{Namespace: namespace}.
func (c *Codec) Encode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return c.EncodeFor(ctx, Target{Namespace: namespace}, payloads)
}

// EncodeFor seals every payload for t (bound to t.Namespace and t.Binding, with the primary key of t.Scope) and returns them in a new slice
// of the same length. Nil entries stay nil, and payloads that already are Blindfold envelopes are returned unchanged, so encoding twice
// never encrypts twice. The input payloads are not modified.
//
// Each envelope has its own metadata map, but the byte slices of its metadata values are shared with other envelopes of the same key and
// namespace (their capacity is their length, so appending to one copies it). Callers must not modify envelope metadata values in place;
// replacing a value in the map is fine. Nothing in Blindfold or in the Temporal SDK and gRPC stacks writes into them.
func (c *Codec) EncodeFor(ctx context.Context, t Target, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	namespace := t.Namespace
	if err := t.Binding.Validate(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	// A call with one payload to seal gets out and the envelope in one allocation (sealedOne); out is allocated when the
	// first payload is known.
	var out []*commonpb.Payload
	if len(payloads) != 1 {
		out = make([]*commonpb.Payload, len(payloads))
	}
	var (
		key Key
		kc  *keyContext
		v2  bool
	)
	for i, p := range payloads {
		var enc []byte // p's encoding, looked up once for both the sealed check and bodyForm
		if p != nil {
			enc = p.Metadata[MetadataEncoding]
		}
		if p == nil || string(enc) == EncodingEncrypted && isSealedEnvelope(p) {
			if out == nil {
				out = make([]*commonpb.Payload, 1)
			}
			out[i] = p
			continue
		}
		if kc == nil {
			var err error
			key, err = c.kr.SealingKey(ctx, t)
			if err != nil {
				if t.Scope != "" {
					return nil, fmt.Errorf("encode payload %d: sealing key for namespace %q, scope %q: %w", i, namespace, t.Scope, err)
				}
				return nil, fmt.Errorf("encode payload %d: sealing key for namespace %q: %w", i, namespace, err)
			}
			if key.ID == "" || key.AEAD == nil {
				return nil, fmt.Errorf("encode payload %d: keyring returned an incomplete sealing key for namespace %q", i, namespace)
			}
			kc = c.contexts.get(namespace, key.ID)
			if c.writeFormat == 2 {
				if kc.scope == "" {
					return nil, fmt.Errorf("encode payload %d: sealing key id %q is not SCOPE/8-HEX-DIGITS, which format v2 needs (WithWriteFormat(1) writes v1)", i, clip([]byte(key.ID)))
				}
				v2 = true
			}
		}
		var env *commonpb.Payload
		if out == nil {
			one := new(sealedOne)
			out, env = one.out[:], &one.env
		} else {
			env = new(commonpb.Payload)
		}
		var err error
		if v2 {
			err = c.sealV2(key, kc, t.Binding, p, enc, env)
		} else {
			err = c.seal(key, kc, p, env)
		}
		if err != nil {
			return nil, fmt.Errorf("encode payload %d (key %q): %w", i, key.ID, err)
		}
		out[i] = env
	}
	return out, nil
}

// sealedOne is the result of an EncodeFor call that seals one payload: the slice and the envelope share one allocation
// (the common case: most Temporal requests carry one payload). The envelope keeps the 8-byte slice alive, and the other way round.
type sealedOne struct {
	out [1]*commonpb.Payload
	env commonpb.Payload
}

// seal builds the v1 envelope of p in env.
func (c *Codec) seal(key Key, kc *keyContext, p, env *commonpb.Payload) error {
	bufp, err := marshalBody(p, []byte{0})
	if err != nil {
		return fmt.Errorf("marshal payload: %w", err)
	}
	defer putBuffer(bufp)
	buf := *bufp
	plaintext := buf

	if body := buf[1:]; c.compress && len(body) >= c.threshold && len(body) <= c.maxDecodedSize {
		enc, err := c.encoder()
		if err != nil {
			return fmt.Errorf("zstd encoder: %w", err)
		}
		zp := getBuffer(1 + len(body))
		defer putBuffer(zp)
		z := enc.EncodeAll(body, append((*zp)[:0], flagZstd))
		*zp = z
		if len(z) < len(buf) {
			plaintext = z
		}
	}

	ct, err := key.AEAD.Encrypt(plaintext, kc.ad)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if len(ct) < MinCiphertextSize+1 || kc.scope != "" && (ct[0] != tinkPrefixTink || binary.BigEndian.Uint32(ct[1:tinkPrefixSize]) != kc.tinkID) {
		// A key without Tink's 5-byte output prefix (RAW) would write envelopes that decoders reject as truncated or tampered.
		return fmt.Errorf("key wrote a %d-byte ciphertext for a %d-byte plaintext without its TINK output prefix: the format needs keys with the TINK prefix", len(ct), len(plaintext))
	}
	env.Metadata, env.Data = kc.envelopeMetadata(), ct
	copyExternalSizes(env, p)
	return nil
}

// copyExternalSizes copies the sizes of p's external payloads to its envelope. The server sums them for its own accounting, so they stay
// visible (sizes only); Decode restores the originals from the sealed body, not from here.
func copyExternalSizes(env, p *commonpb.Payload) {
	if len(p.ExternalPayloads) > 0 {
		env.ExternalPayloads = make([]*commonpb.Payload_ExternalPayloadDetails, len(p.ExternalPayloads))
		for i, e := range p.ExternalPayloads {
			if e != nil {
				env.ExternalPayloads[i] = &commonpb.Payload_ExternalPayloadDetails{SizeBytes: e.GetSizeBytes()}
			}
		}
	}
}

// MaxDecodedTotal returns the cap on the bytes the compressed bodies of one Decode call may expand to together
// (WithMaxDecodedTotal), for callers that size a DecodeBudget like the codec's own.
func (c *Codec) MaxDecodedTotal() int { return c.maxDecodedTotal }

// Decode opens every Blindfold envelope sealed for namespace and returns the payloads in a new slice of the same length.
// Nil entries and payloads that are not Blindfold envelopes are returned unchanged. Envelopes of every binding open (it is DecodeFor
// with a nil Accept).
// The error of a payload that cannot be opened wraps exactly one of the package's sentinel errors, or the keyring's own error when the keyring fails for another reason (e.g. its key store is unreachable).
// Compressed bodies may expand to MaxDecodedTotal bytes in all (ErrDecodedTooLarge beyond); Decode is DecodeWithin
// with a fresh budget of that size.
func (c *Codec) Decode(ctx context.Context, namespace string, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	b := DecodeBudget{limit: int64(c.maxDecodedTotal)}
	return c.decode(ctx, Expect{Namespace: namespace}, payloads, &b)
}

// DecodeWithin is Decode with the decompressed bytes charged to b, which the caller may share between several calls,
// also concurrent ones, to cap them together. A body that does not fit in what is left of b fails the call with an
// error wrapping ErrDecodedTooLarge before it is allocated, and b.Exceeded reports it from then on. When the call fails
// for any reason, the bytes it charged are given back to b: its payloads are never returned, so a caller that retries
// the same payloads one by one is not charged twice. A nil b is a fresh budget of MaxDecodedTotal bytes.
func (c *Codec) DecodeWithin(ctx context.Context, namespace string, payloads []*commonpb.Payload, b *DecodeBudget) ([]*commonpb.Payload, error) {
	if b == nil {
		b = NewDecodeBudget(int64(c.maxDecodedTotal))
	}
	return c.decode(ctx, Expect{Namespace: namespace}, payloads, b)
}

// openedKey remembers the last key a decode used: payloads in one batch nearly always share one key, so the keyring is asked once.
type openedKey struct {
	key Key
	kc  *keyContext
}

// openingKey sets last to the key and context of id (still in envelope bytes) for namespace; it keeps last when it is the same
// id. kc is the context of id when the caller knows it already (id may then be nil), else nil.
func (c *Codec) openingKey(ctx context.Context, namespace string, id []byte, kc *keyContext, last *openedKey) error {
	if kc != nil && kc == last.kc || kc == nil && last.kc != nil && string(id) == last.kc.id && last.kc.namespace == namespace {
		return nil
	}
	if kc == nil {
		kc = c.contexts.lookupBytes(namespace, id)
	}
	var sid string
	if kc != nil {
		sid = kc.id
	} else {
		sid = string(id)
	}
	key, err := c.kr.OpeningKey(ctx, namespace, sid)
	if err != nil {
		return err
	}
	if key.AEAD == nil {
		return errors.New("keyring returned a key without AEAD")
	}
	if kc == nil {
		// Cached only now that the keyring knows the id, so ids from forged envelopes never enter the cache.
		kc = c.contexts.get(namespace, sid)
	}
	last.key, last.kc = key, kc
	return nil
}

func (c *Codec) decode(ctx context.Context, e Expect, payloads []*commonpb.Payload, b *DecodeBudget) ([]*commonpb.Payload, error) {
	var (
		charged int64
		out     []*commonpb.Payload
		one     *openedOne // a call with one v2 envelope: out, the payload and the associated data in one allocation
		last    openedKey
		v2      decoderV2 // per-call state of the v2 reader
	)
	// fail gives back what the call charged to b (its payloads are never returned) and v2's buffer.
	fail := func(err error) ([]*commonpb.Payload, error) {
		v2.release()
		b.release(charged)
		return nil, err
	}
	for i, p := range payloads {
		var (
			orig *commonpb.Payload
			n    int64
			err  error
		)
		format, version := envelopeFormat(p)
		if out == nil {
			if len(payloads) == 1 && format == formatV2 {
				one = new(openedOne)
				out = one.out[:]
				v2.ad = one.ad[:0]
			} else {
				out = make([]*commonpb.Payload, len(payloads))
			}
		}
		switch format {
		case notEnvelope:
			out[i] = p
			continue
		case formatV1:
			orig, n, err = c.decodeV1(ctx, e, i, p, version, &last, b)
		case formatV2:
			var dst *shortFormPayload
			if one != nil {
				dst = &one.payload
			}
			orig, n, err = c.decodeV2(ctx, e, i, p, &v2, &last, b, dst)
		default:
			_, err := parseEnvelopeV2(p)
			return fail(fmt.Errorf("decode payload %d: %w", i, err))
		}
		charged += n
		if err != nil {
			return fail(err)
		}
		out[i] = orig
	}
	v2.release()
	if out == nil {
		out = []*commonpb.Payload{}
	}
	return out, nil
}

// openedOne is the result of a decode of one v2 envelope: the slice and the payload (when its body has a short form) share one
// allocation, like sealedOne's, with room for the envelope's associated data. (The associated data is not secret: the label,
// the namespace, the key id and the header.)
type openedOne struct {
	out     [1]*commonpb.Payload
	payload shortFormPayload
	ad      [openedOneAD]byte
}

// openedOneAD is the associated data openedOne holds: enough for a namespace, a key id and a binding id of several dozen bytes.
const openedOneAD = 128

// decodeV1 opens the format v1 envelope p at index i.
func (c *Codec) decodeV1(ctx context.Context, e Expect, i int, p *commonpb.Payload, version []byte, last *openedKey, b *DecodeBudget) (*commonpb.Payload, int64, error) {
	md := p.Metadata
	namespace := e.Namespace
	if string(version) != FormatV1 {
		return nil, 0, fmt.Errorf("decode payload %d: format version %q: %w", i, clip(version), ErrUnsupportedVersion)
	}
	rawID, ok := md[MetadataKeyID]
	if !ok || len(rawID) == 0 {
		return nil, 0, fmt.Errorf("decode payload %d: no %s metadata: %w", i, MetadataKeyID, ErrMalformed)
	}
	sealedNS, ok := md[MetadataNamespace]
	if !ok {
		return nil, 0, fmt.Errorf("decode payload %d (key %q): no %s metadata: %w", i, clip(rawID), MetadataNamespace, ErrMalformed)
	}
	if string(sealedNS) != namespace {
		return nil, 0, fmt.Errorf("decode payload %d (key %q): sealed for namespace %q, not %q: %w", i, clip(rawID), clip(sealedNS), namespace, ErrWrongNamespace)
	}
	if e.Accept != nil {
		if err := e.Accept(i, Binding{Kind: BindNamespace}); err != nil {
			return nil, 0, fmt.Errorf("decode payload %d (key %q): %w: %w", i, clip(rawID), ErrWrongBinding, err)
		}
	}
	if len(p.Data) < MinCiphertextSize {
		return nil, 0, fmt.Errorf("decode payload %d (key %q): %d bytes of ciphertext, need at least %d: %w", i, clip(rawID), len(p.Data), MinCiphertextSize, ErrTruncated)
	}
	if err := c.openingKey(ctx, namespace, rawID, nil, last); err != nil {
		return nil, 0, fmt.Errorf("decode payload %d (key %q): %w", i, clip(rawID), err)
	}
	// The Tink prefix names the key that wrote the ciphertext; it must be the key the metadata names. (Tink checks the prefix
	// against the key it holds too; this makes the check independent of the keyring.) Ids not of the form SCOPE/8-HEX-DIGITS,
	// which only a custom keyring could produce, are opaque and not checked.
	if kc := last.kc; kc.scope != "" && (p.Data[0] != tinkPrefixTink || binary.BigEndian.Uint32(p.Data[1:tinkPrefixSize]) != kc.tinkID) {
		return nil, 0, fmt.Errorf("decode payload %d (key %q): the ciphertext's Tink key prefix %x does not match the key id: %w", i, clip(rawID), p.Data[:tinkPrefixSize], ErrTampered)
	}
	orig, n, err := c.open(last.key, last.kc.ad, p.Data, b)
	if err != nil {
		return nil, n, fmt.Errorf("decode payload %d (key %q): %w", i, clip(rawID), err)
	}
	return orig, n, nil
}

// marshalBody returns a pooled buffer holding lead, then p's body (v1's plaintext is a zero flags byte and the body; v2's form 0
// plaintext is the body alone).
func marshalBody(p *commonpb.Payload, lead []byte) (*[]byte, error) {
	if !simpleShape(p) {
		bufp := getBuffer(len(lead) + marshalDeterministic.Size(p))
		b, err := marshalDeterministic.MarshalAppend(append((*bufp)[:0], lead...), p)
		if err != nil {
			putBuffer(bufp)
			return nil, err
		}
		*bufp = b
		return bufp, nil
	}
	var buf [8]entry
	entries, n, err := sortedEntries(buf[:0], p)
	if err != nil {
		return nil, err
	}
	bufp := getBuffer(len(lead) + n)
	*bufp = appendSimpleBody(append((*bufp)[:0], lead...), entries, p.Data)
	return bufp, nil
}

// open decrypts envelope data and restores the original payload, charging a compressed body's decompressed size to b.
// It returns the bytes it charged, also on error (the caller gives them back when its decode fails).
func (c *Codec) open(key Key, ad, data []byte, b *DecodeBudget) (*commonpb.Payload, int64, error) {
	pt, err := key.AEAD.Decrypt(data, ad)
	if err != nil {
		// The AEAD's own message is dropped on purpose: it says nothing useful to the caller, and the sentinel is what they branch on.
		return nil, 0, ErrTampered
	}
	if len(pt) == 0 {
		return nil, 0, fmt.Errorf("no flags byte: %w", ErrMalformed)
	}
	flags, body := pt[0], pt[1:]
	if flags&^flagsKnown != 0 {
		return nil, 0, fmt.Errorf("unknown flags %#02x: %w", flags, ErrMalformed)
	}
	var charged int64
	if flags&flagZstd != 0 {
		if body, charged, err = c.decompress(body, b); err != nil {
			return nil, charged, err
		}
	}
	// pt and body are fresh buffers nobody else holds, so the payload may alias them.
	orig, err := unmarshalBody(body)
	if err != nil {
		return nil, charged, fmt.Errorf("unmarshal payload: %v: %w", err, ErrMalformed)
	}
	return orig, charged, nil
}

// associatedData encodes the v1 associated data: the label, the key id and the namespace, each as a 4-byte big-endian length followed by its bytes.
func associatedData(keyID, namespace string) []byte {
	return appendFields(make([]byte, 0, 12+len(adLabelV1)+len(keyID)+len(namespace)), adLabelV1, keyID, namespace)
}

// IsEncrypted reports whether p looks like a Blindfold envelope (of any format version). A nil payload is not.
//
// Format v1 envelopes are recognised by their metadata; v2 envelopes by their encoding (binary/encrypted), the absence of
// the v1 metadata key, and either the blindfold-header metadata key (MetadataHeader) or the first two data bytes (0xBF,
// then a version byte 0x02–0x0F). A payload of another codec that also says binary/encrypted and whose data happens to
// start that way (14 in 65,536 payloads of random-looking data) is taken for an envelope: Decode then fails on it. To
// decide whether a payload must still be sealed, use IsSealed, which is strict.
func IsEncrypted(p *commonpb.Payload) bool {
	f, _ := envelopeFormat(p)
	return f != notEnvelope
}

// Envelope formats, as envelopeFormat classifies payloads.
const (
	notEnvelope = iota
	formatV1
	formatV2
	formatNewer // a v2-style envelope of a later version
)

// envelopeFormat classifies p, returning the v1 version metadata for a v1 envelope. It does not check that the envelope is
// well formed: a v2 envelope with both or neither layout's header is formatV2 and fails to parse.
func envelopeFormat(p *commonpb.Payload) (int, []byte) {
	if p == nil || string(p.Metadata[MetadataEncoding]) != EncodingEncrypted {
		return notEnvelope, nil
	}
	// Metadata of one entry is the encoding alone (the usual v2 envelope): no v1 metadata and no header in metadata to look up.
	if len(p.Metadata) > 1 {
		if v, ok := p.Metadata[MetadataFormat]; ok {
			return formatV1, v
		}
		if core, ok := p.Metadata[MetadataHeader]; ok {
			if len(core) > 0 && core[0] > versionV2 && core[0] <= maxVersionByte {
				return formatNewer, nil
			}
			return formatV2, nil
		}
	}
	if d := p.Data; inDataHeader(d) {
		if d[1] == versionV2 {
			return formatV2, nil
		}
		return formatNewer, nil
	}
	return notEnvelope, nil
}

// IsSealed reports whether p is a well-formed Blindfold envelope as far as can be told without its key: a v1 envelope (any
// payload with encoding binary/encrypted and the blindfold-format metadata key), or a v2 envelope whose header parses completely (in either layout)
// and is followed by a TINK-prefixed ciphertext of at least MinCiphertextSize bytes. It is the test for callers that
// must decide whether a payload they were given is already sealed or must be sealed now (Encode uses it): unlike
// IsEncrypted, it does not take a payload of another codec whose data merely starts with the v2 magic and version bytes
// for an envelope (about 1 in 2^27 random payloads pass), and it reports false for envelopes of a later version, which
// this release cannot vouch for. Sealing an envelope once more is harmless (decoding removes one layer), so when in doubt
// the answer is false. Like KeyID, the result is not authenticated: only a successful decode proves an envelope authentic.
func IsSealed(p *commonpb.Payload) bool {
	if p == nil || string(p.Metadata[MetadataEncoding]) != EncodingEncrypted {
		return false
	}
	return isSealedEnvelope(p)
}

// isSealedEnvelope is IsSealed for a payload whose encoding is binary/encrypted (EncodeFor has looked it up already).
func isSealedEnvelope(p *commonpb.Payload) bool {
	switch f, _ := envelopeFormat(p); f {
	case formatV1:
		// Whatever its version: v1 envelopes are told by a metadata key no other codec writes, and readers of a later
		// v1-style version would open them.
		return true
	case formatV2:
		_, err := parseEnvelopeV2(p)
		return err == nil
	}
	return false
}

// KeyID returns the id of the key that sealed envelope p, for auditing. It reports false when p is not a Blindfold envelope or names no key.
// A v2 envelope sealed with its namespace's default scope does not carry the scope: KeyID reports false for it, and KeyIDIn, which is
// told the namespace, gives its id. The id is not authenticated until the payload is decoded.
func KeyID(p *commonpb.Payload) (string, bool) {
	return keyID(p, "", false)
}

// KeyIDIn returns the id of the key that sealed envelope p when it is opened in namespace (for a v2 envelope without an explicit scope,
// the scope is ScopeForNamespace(namespace)). It reports false when p is not a Blindfold envelope, names no key or has a malformed
// header. Like KeyID, the id is only authenticated by a successful decode.
func KeyIDIn(p *commonpb.Payload, namespace string) (string, bool) {
	return keyID(p, namespace, true)
}

func keyID(p *commonpb.Payload, namespace string, haveNS bool) (string, bool) {
	switch f, _ := envelopeFormat(p); f {
	case formatV1:
		id, ok := p.Metadata[MetadataKeyID]
		if !ok || len(id) == 0 {
			return "", false
		}
		return string(id), true
	case formatV2:
		h, err := parseEnvelopeV2(p)
		if err != nil {
			return "", false
		}
		if h.scope == nil && !haveNS {
			return "", false
		}
		scope := string(h.scope)
		if h.scope == nil {
			scope = ScopeForNamespace(namespace)
		}
		return string(appendKeyID(nil, scope, h.tinkID)), true
	}
	return "", false
}

// SealedNamespace returns the namespace a v1 envelope says it was sealed for. It reports false when p is not a v1 envelope or names no
// namespace: a v2 envelope does not store its namespace (it is authenticated through the associated data, so opening one in another
// namespace fails as ErrTampered or ErrUnknownKey). Like KeyID, the value is only authenticated by a successful Decode.
func SealedNamespace(p *commonpb.Payload) (string, bool) {
	if f, _ := envelopeFormat(p); f != formatV1 {
		return "", false
	}
	ns, ok := p.Metadata[MetadataNamespace]
	if !ok {
		return "", false
	}
	return string(ns), true
}

// clip shortens an attacker-controlled metadata value before it is quoted in an error message.
func clip(b []byte) string {
	if len(b) > maxIDInError {
		return string(b[:maxIDInError]) + "..."
	}
	return string(b)
}

var bufferPool sync.Pool // of *[]byte

func getBuffer(n int) *[]byte {
	if n <= maxPooledBuffer {
		if bp, ok := bufferPool.Get().(*[]byte); ok && cap(*bp) >= n {
			return bp
		} else if ok {
			bufferPool.Put(bp)
		}
	}
	b := make([]byte, 0, n)
	return &b
}

func putBuffer(bp *[]byte) {
	if cap(*bp) > maxPooledBuffer {
		return
	}
	*bp = (*bp)[:0]
	bufferPool.Put(bp)
}

// NamespaceCodec is a Codec bound to one namespace. Its Encode and Decode have the shape of the Temporal SDK's converter.PayloadCodec, so it can sit in an SDK codec chain.
type NamespaceCodec struct {
	codec     *Codec
	namespace string
}

// ForNamespace returns the codec for namespace, with the SDK's PayloadCodec method set.
func (c *Codec) ForNamespace(namespace string) *NamespaceCodec {
	return &NamespaceCodec{codec: c, namespace: namespace}
}

// Namespace returns the namespace the codec is bound to.
func (n *NamespaceCodec) Namespace() string { return n.namespace }

// Encode seals payloads for the codec's namespace (see Codec.Encode).
func (n *NamespaceCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return n.codec.Encode(context.Background(), n.namespace, payloads)
}

// Decode opens payloads sealed for the codec's namespace (see Codec.Decode).
func (n *NamespaceCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return n.codec.Decode(context.Background(), n.namespace, payloads)
}
