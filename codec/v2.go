package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
)

// Format v2 (docs/format.md, part 2) has two layouts. Envelopes whose plaintext is smaller than headerInMetadataAt (16 KiB) carry
// the header in front of the Tink ciphertext (the compact layout):
//
//	metadata: encoding: binary/encrypted
//	data:     0xBF || core || Tink ciphertext
//
// Larger ones carry it in one metadata entry, so that data is Tink's own output buffer and never copied (the metadata layout):
//
//	metadata: encoding: binary/encrypted, blindfold-header: core
//	data:     Tink ciphertext
//
//	core = 0x02 || kind<<4|flags || form || [uvarint(len(scope)) || scope] || uvarint(len(binding id)) || binding id
//
// The header is authenticated as it is found (0xBF || core, or core); the first starts with the magic and the second with the
// version byte, so a ciphertext moved from one layout to the other fails to open. For body forms 1-4 the
// plaintext is exactly the payload's data, so sealing reads p.Data and opening hands the AEAD's output buffer over as Data.
// The ciphertext's 5-byte TINK output prefix gives the key id (scope + "/" + 8 hex digits); the scope is the namespace's
// default unless the header names it. The associated data authenticates the namespace, the key id and the whole header.
const (
	magicV2        byte = 0xBF
	versionV2      byte = 0x02
	maxVersionByte byte = 0x0F // 0x02..0x0F are v2-style envelopes; this reader reads 0x02 only

	hdrFlagZstd   byte = 0x1 // the plaintext is zstd-compressed
	hdrFlagScope  byte = 0x2 // an explicit scope follows
	hdrFlagsKnown      = hdrFlagZstd | hdrFlagScope

	// minCoreV2 is the shortest core: version, kind and flags, form, a zero binding-id length.
	minCoreV2 = 4

	adLabelV2 = "blindfold/v2"

	tinkPrefixSize      = 5    // Tink's TINK output prefix: 0x01 || u32be(key id)
	tinkPrefixTink byte = 0x01 // its first byte

	// headerInMetadataAt is the plaintext size from which the writer puts the header in metadata. The metadata layout costs
	// 21 bytes more (the entry's key and framing), which at 1 KiB would break the size goal (at most 64 bytes added with a
	// 12-byte binding id) and is 0.13 % from 16 KiB on; the compact layout's copy of header || ciphertext, and the extra
	// allocation the collector then has to catch up with, cost a round trip about a quarter of the raw AEAD time from
	// 16 KiB on (BenchmarkV2VsRawXAES, v2-compact against v2-metadata). Readers accept either layout at any size.
	headerInMetadataAt = 16 << 10
)

// MetadataHeader is the metadata key of a format v2 envelope in the metadata layout (large payloads): its value is the
// header without the magic byte, and data is the bare Tink ciphertext.
const MetadataHeader = "blindfold-header"

// Body forms of the v2 plaintext, in the header. Form 0 is the protobuf encoding of the whole Payload; forms 1-4 stand for a
// payload whose only metadata entry is the encoding named in formEncodings, with the plaintext as its data. The numbers are
// part of the format.
const (
	formProto        byte = 0
	formJSONPlain    byte = 1
	formBinaryNull   byte = 2
	formBinaryPlain  byte = 3
	formJSONProtobuf byte = 4
	maxForm               = formJSONProtobuf
)

var formEncodings = [...]string{
	formJSONPlain:    "json/plain",
	formBinaryNull:   "binary/null",
	formBinaryPlain:  "binary/plain",
	formJSONProtobuf: "json/protobuf",
}

// headerV2 is a parsed v2 header. hdr, scope, id and ct alias the envelope.
type headerV2 struct {
	kind       BindingKind
	flags      byte
	form       byte
	scope      []byte // nil when the header names no scope (the namespace's default)
	id         []byte
	hdr        []byte // the header as authenticated: 0xBF || core (compact layout) or the metadata value (metadata layout)
	inMetadata bool
	ct         []byte // the Tink ciphertext
	tinkID     uint32 // from its TINK prefix
}

// parseEnvelopeV2 parses the header of a v2-style envelope p (envelopeFormat reported formatV2) in either layout, and checks
// that a TINK-prefixed ciphertext of at least the minimum size follows. Errors wrap ErrUnsupportedVersion, ErrTruncated or
// ErrMalformed.
func parseEnvelopeV2(p *commonpb.Payload) (headerV2, error) {
	var h headerV2
	err := h.parseEnvelope(p)
	return h, err
}

// parseEnvelope is parseEnvelopeV2 into h (a header is too large to be returned cheaply on the decode path).
func (h *headerV2) parseEnvelope(p *commonpb.Payload) error {
	// An envelope with one metadata entry has only its encoding (binary/encrypted, which envelopeFormat checked).
	if len(p.Metadata) > 1 {
		if core, ok := p.Metadata[MetadataHeader]; ok {
			if inDataHeader(p.Data) {
				return fmt.Errorf("a header in both the %s metadata and the data: %w", MetadataHeader, ErrMalformed)
			}
			return h.parseParts(core, p.Data, true)
		}
	}
	if len(p.Data) < 1 || p.Data[0] != magicV2 {
		return fmt.Errorf("no v2 header: %w", ErrMalformed)
	}
	return h.parseParts(p.Data[1:], p.Data, false)
}

// inDataHeader reports whether data starts as a compact-layout header does: the magic, then a version byte 0x02..0x0F.
func inDataHeader(d []byte) bool {
	return len(d) >= 2 && d[0] == magicV2 && d[1] >= versionV2 && d[1] <= maxVersionByte
}

// parseHeader parses compact-layout envelope data (0xBF || core || ciphertext).
func parseHeader(data []byte) (headerV2, error) {
	if len(data) < 1 || data[0] != magicV2 {
		return headerV2{}, fmt.Errorf("no v2 header: %w", ErrMalformed)
	}
	var h headerV2
	err := h.parseParts(data[1:], data, false)
	return h, err
}

// parseParts parses core into h. In the metadata layout core is the whole metadata value and data the ciphertext; in the
// compact layout core is data[1:] and the ciphertext follows it.
func (h *headerV2) parseParts(core, data []byte, inMetadata bool) error {
	*h = headerV2{inMetadata: inMetadata}
	if len(core) < 1 {
		return fmt.Errorf("empty %s metadata: %w", MetadataHeader, ErrMalformed)
	}
	if core[0] != versionV2 {
		if inMetadata && (core[0] < versionV2 || core[0] > maxVersionByte) {
			return fmt.Errorf("%s metadata starts with %#02x, not a version byte: %w", MetadataHeader, core[0], ErrMalformed)
		}
		return fmt.Errorf("format version byte %#02x: %w", core[0], ErrUnsupportedVersion)
	}
	if len(core) < minCoreV2 {
		if inMetadata {
			return fmt.Errorf("%d bytes of %s metadata: %w", len(core), MetadataHeader, ErrTruncated)
		}
		return fmt.Errorf("%d bytes of envelope data: %w", len(data), ErrTruncated)
	}
	h.kind, h.flags, h.form = BindingKind(core[1]>>4), core[1]&0x0F, core[2]
	if h.flags&^hdrFlagsKnown != 0 {
		return fmt.Errorf("reserved header flags %#x: %w", h.flags&^hdrFlagsKnown, ErrMalformed)
	}
	if h.kind > maxBindingKind {
		return fmt.Errorf("unknown binding kind %d: %w", h.kind, ErrMalformed)
	}
	if h.form > maxForm {
		return fmt.Errorf("unknown body form %d: %w", h.form, ErrMalformed)
	}
	rest := core[3:]
	if h.flags&hdrFlagScope != 0 {
		s, r, err := lengthPrefixed(rest, MaxScopeLen, "scope")
		if err != nil {
			return err
		}
		if !validScopeBytes(s) {
			return fmt.Errorf("header scope: %v: %w", ValidateScope(string(s)), ErrMalformed)
		}
		h.scope, rest = s, r
	}
	id, rest, err := lengthPrefixed(rest, MaxBindingIDLen, "binding id")
	if err != nil {
		return err
	}
	if len(id) != 0 && (h.kind == BindNamespace || h.kind == BindQuery) {
		return fmt.Errorf("binding id of %d bytes for %s: %w", len(id), Binding{Kind: h.kind}, ErrMalformed)
	}
	h.id = id
	if inMetadata {
		if len(rest) != 0 {
			return fmt.Errorf("%d bytes after the header in %s metadata: %w", len(rest), MetadataHeader, ErrMalformed)
		}
		h.hdr, h.ct = core, data
	} else {
		n := len(data) - len(rest)
		h.hdr, h.ct = data[:n:n], rest
	}
	if len(h.ct) < MinCiphertextSize {
		return fmt.Errorf("%d bytes of ciphertext, need at least %d: %w", len(h.ct), MinCiphertextSize, ErrTruncated)
	}
	if h.ct[0] != tinkPrefixTink {
		return fmt.Errorf("ciphertext without a TINK key prefix (first byte %#02x): %w", h.ct[0], ErrMalformed)
	}
	h.tinkID = binary.BigEndian.Uint32(h.ct[1:tinkPrefixSize])
	return nil
}

// lengthPrefixed reads uvarint(n) || n bytes, n at most limit, from b. The varint must be minimal, so every header has one encoding.
func lengthPrefixed(b []byte, limit int, what string) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	switch {
	case k == 0:
		return nil, nil, fmt.Errorf("header %s length cut off: %w", what, ErrTruncated)
	case k < 0 || k != uvarintLen(n):
		return nil, nil, fmt.Errorf("header %s length is not a minimal varint: %w", what, ErrMalformed)
	case n > uint64(limit):
		return nil, nil, fmt.Errorf("header %s of %d bytes, at most %d: %w", what, n, limit, ErrMalformed)
	case uint64(len(b)-k) < n:
		return nil, nil, fmt.Errorf("header %s of %d bytes cut off: %w", what, n, ErrTruncated)
	}
	return b[k : k+int(n) : k+int(n)], b[k+int(n):], nil
}

// validScopeBytes is ValidateScope(string(s)) == nil, without converting s.
func validScopeBytes(s []byte) bool {
	if len(s) == 0 || len(s) > MaxScopeLen || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !scopeByte(c) {
			return false
		}
	}
	return true
}

func uvarintLen(n uint64) int {
	k := 1
	for n >= 0x80 {
		n >>= 7
		k++
	}
	return k
}

// splitKeyID splits a key id of the form SCOPE/8-LOWERCASE-HEX-DIGITS (keys.KeyID's) into its valid scope and Tink key id.
func splitKeyID(id string) (string, uint32, bool) {
	i := len(id) - 9
	if i < 1 || id[i] != '/' {
		return "", 0, false
	}
	var n uint32
	for _, c := range []byte(id[i+1:]) {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | uint32(c-'a'+10)
		default:
			return "", 0, false
		}
	}
	if ValidateScope(id[:i]) != nil {
		return "", 0, false
	}
	return id[:i], n, true
}

// appendKeyID appends the key id of Tink key tinkID in scope: scope + "/" + 8 lowercase hex digits.
func appendKeyID[S ~string | ~[]byte](dst []byte, scope S, tinkID uint32) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, scope...)
	dst = append(dst, '/')
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hex[tinkID>>uint(shift)&0xF])
	}
	return dst
}

// appendFields appends each field as u32be(len) || bytes: the associated-data encoding of both formats.
func appendFields(dst []byte, fields ...string) []byte {
	for _, f := range fields {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// headerSize is the length of the header of an envelope sealed with kc and bound to binding: the core, and the magic byte in
// the compact layout.
func headerSize(kc *keyContext, binding Binding, inMetadata bool) int {
	n := minCoreV2 - 1 + uvarintLen(uint64(len(binding.ID))) + len(binding.ID)
	if kc.explicitScope {
		n += uvarintLen(uint64(len(kc.scope))) + len(kc.scope)
	}
	if !inMetadata {
		n++ // the magic
	}
	return n
}

// appendAD appends the associated data of an envelope sealed with kc and bound to binding (docs/format.md, v2 §4) to dst: the
// constant prefix kc.adV2, then the length of the header of n bytes (headerSize) and the header itself, which is therefore the
// last n bytes of the result.
func appendAD(dst []byte, kc *keyContext, binding Binding, inMetadata bool, form byte, compressed bool, n int) []byte {
	flags := byte(0)
	if compressed {
		flags |= hdrFlagZstd
	}
	if kc.explicitScope {
		flags |= hdrFlagScope
	}
	dst = append(dst, kc.adV2...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	if !inMetadata {
		dst = append(dst, magicV2)
	}
	dst = append(dst, versionV2, byte(binding.Kind)<<4|flags, form)
	if kc.explicitScope {
		dst = binary.AppendUvarint(dst, uint64(len(kc.scope)))
		dst = append(dst, kc.scope...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(binding.ID)))
	return append(dst, binding.ID...)
}

// bodyForm returns the v2 body form of p, whose encoding metadata is enc (nil when it has none): one of the short forms when p's
// only content is a well-known encoding and data, else formProto.
func bodyForm(p *commonpb.Payload, enc []byte) byte {
	if len(p.Metadata) != 1 || len(p.ExternalPayloads) != 0 || len(p.ProtoReflect().GetUnknown()) != 0 {
		return formProto
	}
	for f := formJSONPlain; f <= maxForm; f++ {
		if string(enc) == formEncodings[f] {
			return f
		}
	}
	return formProto
}

// sealV2 builds the v2 envelope of p, whose encoding metadata is enc, in env. For the short body forms the plaintext is p.Data itself. In the metadata layout
// the envelope's data is the AEAD's output buffer, so a large payload is read once by the AEAD and never copied; the associated
// data and the header share one allocation, and the header is the metadata value. In the compact layout the associated data, the
// header and then the copy of the ciphertext share one allocation, and the envelope's data is the header and the ciphertext in it.
// (The associated data before it is not secret: the label, the namespace and the key id.)
func (c *Codec) sealV2(key Key, kc *keyContext, binding Binding, p *commonpb.Payload, enc []byte, env *commonpb.Payload) error {
	form := bodyForm(p, enc)
	plaintext := p.Data
	if form == formProto {
		bufp, err := marshalBody(p, nil)
		if err != nil {
			return fmt.Errorf("marshal payload: %w", err)
		}
		defer putBuffer(bufp)
		plaintext = *bufp
	}
	compressed := false
	if c.compress && len(plaintext) >= c.threshold && len(plaintext) <= c.maxDecodedSize {
		enc, err := c.encoder()
		if err != nil {
			return fmt.Errorf("zstd encoder: %w", err)
		}
		zp := getBuffer(len(plaintext))
		defer putBuffer(zp)
		z := enc.EncodeAll(plaintext, (*zp)[:0])
		*zp = z
		if len(z) < len(plaintext) {
			plaintext, compressed = z, true
		}
	}
	inMetadata := len(plaintext) >= c.headerInMetadataAt
	n := headerSize(kc, binding, inMetadata)
	start := len(kc.adV2) + 4 // where the header starts in the associated data
	size := start + n
	if !inMetadata {
		// Room for the ciphertext too, sized by what this key's ciphertexts added to their plaintext last time. A wrong guess
		// only costs the append below a new allocation.
		size += len(plaintext) + kc.ciphertextOverhead()
	}
	ad := appendAD(make([]byte, 0, size), kc, binding, inMetadata, form, compressed, n)
	ct, err := key.AEAD.Encrypt(plaintext, ad)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	// The key id readers derive comes from the ciphertext's TINK prefix, so it must be the prefix of the key the keyring named.
	if len(ct) < MinCiphertextSize || ct[0] != tinkPrefixTink || binary.BigEndian.Uint32(ct[1:tinkPrefixSize]) != kc.tinkID {
		return fmt.Errorf("key %q wrote a ciphertext without its TINK output prefix: format v2 needs keys with the TINK prefix", key.ID)
	}
	hdr := ad[start:len(ad):len(ad)]
	if inMetadata {
		env.Metadata = map[string][]byte{MetadataEncoding: encodingEncryptedBytes, MetadataHeader: hdr}
		env.Data = ct
	} else {
		kc.setCiphertextOverhead(len(ct) - len(plaintext))
		env.Metadata = map[string][]byte{MetadataEncoding: encodingEncryptedBytes}
		data := append(ad[start:], ct...)
		env.Data = data[:len(data):len(data)]
	}
	copyExternalSizes(env, p)
	return nil
}

// decoderV2 is the per-call state of the v2 reader: the default scope of the namespace, computed on first use, and the buffer
// the associated data of each envelope is built in (one per call, not one per payload).
type decoderV2 struct {
	defaultScope string
	have         bool
	ad           []byte
	pooled       *[]byte // ad's pooled buffer, which release returns
}

// adBuffer returns an empty buffer of at least n bytes for associated data.
func (d *decoderV2) adBuffer(n int) []byte {
	if cap(d.ad) < n {
		d.release()
		d.pooled = getBuffer(n)
		d.ad = *d.pooled
	}
	return d.ad[:0]
}

func (d *decoderV2) release() {
	if d.pooled != nil {
		putBuffer(d.pooled)
		d.pooled, d.ad = nil, nil
	}
}

func (d *decoderV2) scope(namespace string) string {
	if !d.have {
		d.defaultScope, d.have = ScopeForNamespace(namespace), true
	}
	return d.defaultScope
}

// bindingID is id as a string: the one of the last decode when the bytes are the same, since nearly every payload of a
// history, and every answer of one workflow's task, is bound to the same workflow, and the conversion was a decode's
// last allocation of its own. The shared pointer is written only when the id changes.
func (c *Codec) bindingID(id []byte) string {
	if len(id) == 0 {
		return ""
	}
	if p := c.lastBindingID.Load(); p != nil && *p == string(id) {
		return *p
	}
	s := string(id)
	c.lastBindingID.Store(&s)
	return s
}

// decodeV2 opens the v2 envelope p at index i.
// A short-form payload is built in dst when it is not nil.
func (c *Codec) decodeV2(ctx context.Context, e Expect, i int, p *commonpb.Payload, d *decoderV2, last *openedKey, b *DecodeBudget, dst *shortFormPayload) (*commonpb.Payload, int64, error) {
	var h headerV2
	if err := h.parseEnvelope(p); err != nil {
		return nil, 0, fmt.Errorf("decode payload %d: %w", i, err)
	}
	// The key id is the scope (the header's, or the namespace's default) and the Tink key id of the ciphertext's prefix. When
	// the context of the key last used (in this call, or by the codec) has them, its id is taken as it is.
	kc := last.kc
	if !kc.isV2Key(e.Namespace, h.scope, h.tinkID) {
		kc = c.contexts.last.Load()
		if !kc.isV2Key(e.Namespace, h.scope, h.tinkID) {
			kc = nil
		}
	}
	if e.Accept != nil {
		if err := e.Accept(i, Binding{Kind: h.kind, ID: c.bindingID(h.id)}); err != nil {
			return nil, 0, fmt.Errorf("decode payload %d (key %q): %w: %w", i, v2KeyID(&h, kc, d, e.Namespace), ErrWrongBinding, err)
		}
	}
	if kc == nil || kc != last.kc {
		if err := c.openingKeyV2(ctx, e.Namespace, &h, kc, d, last); err != nil {
			if h.scope == nil && errors.Is(err, ErrUnknownKey) {
				// The scope came from the namespace: a value sealed for another namespace usually ends here.
				return nil, 0, fmt.Errorf("decode payload %d (key %q, in the default scope of namespace %q; sealed for another namespace?): %w", i, v2KeyID(&h, kc, d, e.Namespace), e.Namespace, err)
			}
			return nil, 0, fmt.Errorf("decode payload %d (key %q): %w", i, v2KeyID(&h, kc, d, e.Namespace), err)
		}
	}
	kc = last.kc
	ad := append(d.adBuffer(len(kc.adV2)+4+len(h.hdr)), kc.adV2...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(h.hdr)))
	ad = append(ad, h.hdr...)
	pt, err := last.key.AEAD.Decrypt(h.ct, ad)
	if err != nil {
		// The AEAD's own message is dropped on purpose: it says nothing useful to the caller, and the sentinel is what they branch on.
		return nil, 0, fmt.Errorf("decode payload %d (key %q): %w", i, kc.id, ErrTampered)
	}
	var charged int64
	if h.flags&hdrFlagZstd != 0 {
		if pt, charged, err = c.decompress(pt, b); err != nil {
			return nil, charged, fmt.Errorf("decode payload %d (key %q): %w", i, kc.id, err)
		}
	}
	orig, err := payloadFromPlaintext(h.form, pt, dst)
	if err != nil {
		return nil, charged, fmt.Errorf("decode payload %d (key %q): %w", i, kc.id, err)
	}
	return orig, charged, nil
}

// openingKeyV2 sets last to the key of the envelope with header h in namespace (kc is its context when the caller knows it, else
// nil). The id is only built when the context is not known: a 264-byte buffer the common case does not need to clear.
func (c *Codec) openingKeyV2(ctx context.Context, namespace string, h *headerV2, kc *keyContext, d *decoderV2, last *openedKey) error {
	if kc != nil {
		return c.openingKey(ctx, namespace, nil, kc, last)
	}
	var idBuf [MaxScopeLen + 1 + 8]byte
	var id []byte
	if h.scope != nil {
		id = appendKeyID(idBuf[:0], h.scope, h.tinkID)
	} else {
		id = appendKeyID(idBuf[:0], d.scope(namespace), h.tinkID)
	}
	return c.openingKey(ctx, namespace, id, nil, last)
}

// v2KeyID is the id of the key of the envelope with header h in namespace, for error messages: kc's when it is known.
func v2KeyID(h *headerV2, kc *keyContext, d *decoderV2, namespace string) string {
	if kc != nil {
		return kc.id
	}
	if h.scope != nil {
		return string(appendKeyID(nil, h.scope, h.tinkID))
	}
	return string(appendKeyID(nil, d.scope(namespace), h.tinkID))
}

// shortFormPayload is a decoded payload of a short body form and the bytes of its encoding, in one allocation.
type shortFormPayload struct {
	p        commonpb.Payload
	encoding [len("json/protobuf")]byte
}

// payloadFromPlaintext restores the payload from the v2 plaintext of a body form (which the header parser has checked), and
// may alias pt: the caller owns it. A short-form payload is built in s when it is not nil.
func payloadFromPlaintext(form byte, pt []byte, s *shortFormPayload) (*commonpb.Payload, error) {
	if form == formProto {
		p, err := unmarshalBody(pt)
		if err != nil {
			return nil, fmt.Errorf("unmarshal payload: %v: %w", err, ErrMalformed)
		}
		return p, nil
	}
	// Each payload gets its own metadata value (decoded payloads go to SDK converters, which own them), allocated with the
	// payload itself.
	if s == nil {
		s = &shortFormPayload{}
	}
	enc := append(s.encoding[:0], formEncodings[form]...)
	s.p.Metadata = map[string][]byte{MetadataEncoding: enc[:len(enc):len(enc)]}
	if len(pt) > 0 {
		s.p.Data = pt[:len(pt):len(pt)]
	}
	return &s.p, nil
}
