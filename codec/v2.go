package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
)

// Format v2 (docs/format.md, part 2): the envelope's metadata is only encoding: binary/encrypted, and its data is
//
//	header || Tink ciphertext
//	header = 0xBF || 0x02 || kind<<4|flags || [uvarint(len(scope)) || scope] || uvarint(len(binding id)) || binding id
//
// The ciphertext's 5-byte TINK output prefix gives the key id (scope + "/" + 8 hex digits); the scope is the namespace's
// default unless the header names it. The associated data authenticates the namespace, the key id and the whole header.
const (
	magicV2        byte = 0xBF
	versionV2      byte = 0x02
	maxVersionByte byte = 0x0F // 0x02..0x0F are v2-style envelopes; this reader reads 0x02 only

	hdrFlagZstd   byte = 0x1 // the plaintext is zstd-compressed
	hdrFlagScope  byte = 0x2 // an explicit scope follows
	hdrFlagsKnown      = hdrFlagZstd | hdrFlagScope

	// minHeaderV2 is the shortest header: magic, version, kind and flags, a zero binding-id length.
	minHeaderV2 = 4

	adLabelV2 = "blindfold/v2"

	tinkPrefixSize      = 5    // Tink's TINK output prefix: 0x01 || u32be(key id)
	tinkPrefixTink byte = 0x01 // its first byte
)

// Body forms of the v2 plaintext: its first byte, before the content. Form 0 is the protobuf encoding of the whole Payload;
// forms 1-4 stand for a payload whose only metadata entry is the encoding named in formEncodings, with the content as its data.
// The numbers are part of the format.
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

// headerV2 is a parsed v2 header. scope and id alias the envelope data.
type headerV2 struct {
	kind   BindingKind
	flags  byte
	scope  []byte // nil when the header names no scope (the namespace's default)
	id     []byte
	n      int    // the header's length: the ciphertext starts at data[n:]
	tinkID uint32 // from the ciphertext's TINK prefix
}

// parseHeader parses the header of v2 envelope data (which starts with the magic and a version byte) and checks that a TINK-prefixed
// ciphertext of at least the minimum size follows. Errors wrap ErrUnsupportedVersion, ErrTruncated or ErrMalformed.
func parseHeader(data []byte) (headerV2, error) {
	var h headerV2
	if len(data) < 2 || data[0] != magicV2 {
		return h, fmt.Errorf("no v2 header: %w", ErrMalformed)
	}
	if data[1] != versionV2 {
		return h, fmt.Errorf("format version byte %#02x: %w", data[1], ErrUnsupportedVersion)
	}
	if len(data) < minHeaderV2 {
		return h, fmt.Errorf("%d bytes of envelope data: %w", len(data), ErrTruncated)
	}
	h.kind, h.flags = BindingKind(data[2]>>4), data[2]&0x0F
	if h.flags&^hdrFlagsKnown != 0 {
		return h, fmt.Errorf("reserved header flags %#x: %w", h.flags&^hdrFlagsKnown, ErrMalformed)
	}
	if h.kind > maxBindingKind {
		return h, fmt.Errorf("unknown binding kind %d: %w", h.kind, ErrMalformed)
	}
	rest := data[3:]
	if h.flags&hdrFlagScope != 0 {
		s, r, err := lengthPrefixed(rest, MaxScopeLen, "scope")
		if err != nil {
			return h, err
		}
		if !validScopeBytes(s) {
			return h, fmt.Errorf("header scope: %v: %w", ValidateScope(string(s)), ErrMalformed)
		}
		h.scope, rest = s, r
	}
	id, rest, err := lengthPrefixed(rest, MaxBindingIDLen, "binding id")
	if err != nil {
		return h, err
	}
	if len(id) != 0 && (h.kind == BindNamespace || h.kind == BindQuery) {
		return h, fmt.Errorf("binding id of %d bytes for %s: %w", len(id), Binding{Kind: h.kind}, ErrMalformed)
	}
	h.id = id
	h.n = len(data) - len(rest)
	if len(rest) < MinCiphertextSize {
		return h, fmt.Errorf("%d bytes of ciphertext, need at least %d: %w", len(rest), MinCiphertextSize, ErrTruncated)
	}
	if rest[0] != tinkPrefixTink {
		return h, fmt.Errorf("ciphertext without a TINK key prefix (first byte %#02x): %w", rest[0], ErrMalformed)
	}
	h.tinkID = binary.BigEndian.Uint32(rest[1:tinkPrefixSize])
	return h, nil
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

// sealerV2 is what one EncodeFor call needs to seal v2 envelopes: its key context and binding, and the associated data (which ends with
// the header) for uncompressed and compressed plaintexts, each built on first use in a pooled buffer that release returns.
type sealerV2 struct {
	kc      *keyContext
	binding Binding
	ad      [2]*[]byte // by compressed; the header is (*ad)[len(kc.adV2)+4:]
}

// release returns the associated-data buffers to the pool, once no more envelopes are sealed.
func (s *sealerV2) release() {
	for i, bp := range s.ad {
		if bp != nil {
			putBuffer(bp)
			s.ad[i] = nil
		}
	}
}

// adFor returns the associated data and the header of an envelope whose plaintext is compressed or not.
func (s *sealerV2) adFor(compressed bool) (ad, hdr []byte) {
	i := 0
	if compressed {
		i = 1
	}
	start := len(s.kc.adV2) + 4
	if s.ad[i] == nil {
		flags := byte(0)
		if compressed {
			flags |= hdrFlagZstd
		}
		if s.kc.explicitScope {
			flags |= hdrFlagScope
		}
		n := 3 + uvarintLen(uint64(len(s.binding.ID))) + len(s.binding.ID)
		if s.kc.explicitScope {
			n += uvarintLen(uint64(len(s.kc.scope))) + len(s.kc.scope)
		}
		bp := getBuffer(start + n)
		ad := append((*bp)[:0], s.kc.adV2...)
		ad = binary.BigEndian.AppendUint32(ad, uint32(n))
		ad = append(ad, magicV2, versionV2, byte(s.binding.Kind)<<4|flags)
		if s.kc.explicitScope {
			ad = binary.AppendUvarint(ad, uint64(len(s.kc.scope)))
			ad = append(ad, s.kc.scope...)
		}
		ad = binary.AppendUvarint(ad, uint64(len(s.binding.ID)))
		ad = append(ad, s.binding.ID...)
		*bp = ad
		s.ad[i] = bp
	}
	ad = *s.ad[i]
	return ad, ad[start:]
}

// bodyForm returns the v2 body form of p: one of the short forms when p's only content is a well-known encoding and data, else formProto.
func bodyForm(p *commonpb.Payload) byte {
	if len(p.Metadata) != 1 || len(p.ExternalPayloads) != 0 || len(p.ProtoReflect().GetUnknown()) != 0 {
		return formProto
	}
	enc, ok := p.Metadata[MetadataEncoding]
	if !ok {
		return formProto
	}
	for f := formJSONPlain; f <= maxForm; f++ {
		if string(enc) == formEncodings[f] {
			return f
		}
	}
	return formProto
}

// marshalPlaintextV2 returns a pooled buffer holding the uncompressed v2 plaintext of p: its form byte, then its content.
func marshalPlaintextV2(p *commonpb.Payload) (*[]byte, error) {
	if f := bodyForm(p); f != formProto {
		bufp := getBuffer(1 + len(p.Data))
		*bufp = append(append((*bufp)[:0], f), p.Data...)
		return bufp, nil
	}
	// Form 0 is a zero byte and the protobuf body: exactly v1's uncompressed plaintext.
	return marshalPlaintext(p)
}

// sealV2 builds one v2 envelope.
func (c *Codec) sealV2(key Key, s *sealerV2, p *commonpb.Payload) (*commonpb.Payload, error) {
	bufp, err := marshalPlaintextV2(p)
	if err != nil {
		return nil, fmt.Errorf("marshal payload: %w", err)
	}
	defer putBuffer(bufp)
	plaintext := *bufp
	compressed := false
	if c.compress && len(plaintext) >= c.threshold && len(plaintext) <= c.maxDecodedSize {
		enc, err := c.encoder()
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		zp := getBuffer(len(plaintext))
		defer putBuffer(zp)
		z := enc.EncodeAll(plaintext, (*zp)[:0])
		*zp = z
		if len(z) < len(plaintext) {
			plaintext, compressed = z, true
		}
	}
	ad, hdr := s.adFor(compressed)
	ct, err := key.AEAD.Encrypt(plaintext, ad)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	// The key id readers derive comes from the ciphertext's TINK prefix, so it must be the prefix of the key the keyring named.
	if len(ct) < MinCiphertextSize+1 || ct[0] != tinkPrefixTink || binary.BigEndian.Uint32(ct[1:tinkPrefixSize]) != s.kc.tinkID {
		return nil, fmt.Errorf("key %q wrote a ciphertext without its TINK output prefix: format v2 needs keys with the TINK prefix", key.ID)
	}
	// Appending to the full header makes the runtime allocate header+ciphertext and copy both, without first zeroing the new
	// slice as make would (a whole extra pass over a large payload).
	data := append(hdr[:len(hdr):len(hdr)], ct...)
	env := &commonpb.Payload{Metadata: map[string][]byte{MetadataEncoding: encodingEncryptedBytes}, Data: data}
	copyExternalSizes(env, p)
	return env, nil
}

// decoderV2 is the per-call state of the v2 reader: the default scope of the namespace, computed on first use.
type decoderV2 struct {
	defaultScope string
	have         bool
}

func (d *decoderV2) scope(namespace string) string {
	if !d.have {
		d.defaultScope, d.have = ScopeForNamespace(namespace), true
	}
	return d.defaultScope
}

// decodeV2 opens the v2 envelope p at index i.
func (c *Codec) decodeV2(ctx context.Context, e Expect, i int, p *commonpb.Payload, d *decoderV2, last *openedKey, b *DecodeBudget) (*commonpb.Payload, int64, error) {
	h, err := parseHeader(p.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("decode payload %d: %w", i, err)
	}
	var idBuf [MaxScopeLen + 1 + 8]byte
	var id []byte
	if h.scope != nil {
		id = appendKeyID(idBuf[:0], h.scope, h.tinkID)
	} else {
		id = appendKeyID(idBuf[:0], d.scope(e.Namespace), h.tinkID)
	}
	if e.Accept != nil {
		if err := e.Accept(i, Binding{Kind: h.kind, ID: string(h.id)}); err != nil {
			return nil, 0, fmt.Errorf("decode payload %d (key %q): %w: %w", i, string(id), ErrWrongBinding, err)
		}
	}
	if err := c.openingKey(ctx, e.Namespace, id, last); err != nil {
		if h.scope == nil && errors.Is(err, ErrUnknownKey) {
			// The scope came from the namespace: a value sealed for another namespace usually ends here.
			return nil, 0, fmt.Errorf("decode payload %d (key %q, in the default scope of namespace %q; sealed for another namespace?): %w", i, string(id), e.Namespace, err)
		}
		return nil, 0, fmt.Errorf("decode payload %d (key %q): %w", i, string(id), err)
	}
	kc := last.kc
	adp := getBuffer(len(kc.adV2) + 4 + h.n)
	ad := append((*adp)[:0], kc.adV2...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(h.n))
	ad = append(ad, p.Data[:h.n]...)
	*adp = ad
	pt, err := last.key.AEAD.Decrypt(p.Data[h.n:], ad)
	putBuffer(adp)
	if err != nil {
		// The AEAD's own message is dropped on purpose: it says nothing useful to the caller, and the sentinel is what they branch on.
		return nil, 0, fmt.Errorf("decode payload %d (key %q): %w", i, string(id), ErrTampered)
	}
	var charged int64
	if h.flags&hdrFlagZstd != 0 {
		if pt, charged, err = c.decompress(pt, b); err != nil {
			return nil, charged, fmt.Errorf("decode payload %d (key %q): %w", i, string(id), err)
		}
	}
	orig, err := payloadFromPlaintext(pt)
	if err != nil {
		return nil, charged, fmt.Errorf("decode payload %d (key %q): %w", i, string(id), err)
	}
	return orig, charged, nil
}

// shortFormPayload is a decoded payload of a short body form and the bytes of its encoding, in one allocation.
type shortFormPayload struct {
	p        commonpb.Payload
	encoding [len("json/protobuf")]byte
}

// payloadFromPlaintext restores the payload from a v2 plaintext (form byte || content), which it may alias: the caller owns it.
func payloadFromPlaintext(pt []byte) (*commonpb.Payload, error) {
	if len(pt) == 0 {
		return nil, fmt.Errorf("no body-form byte: %w", ErrMalformed)
	}
	form, content := pt[0], pt[1:]
	switch {
	case form == formProto:
		p, err := unmarshalBody(content)
		if err != nil {
			return nil, fmt.Errorf("unmarshal payload: %v: %w", err, ErrMalformed)
		}
		return p, nil
	case form <= maxForm:
		// Each payload gets its own metadata value (decoded payloads go to SDK converters, which own them), allocated with the
		// payload itself.
		s := &shortFormPayload{}
		enc := append(s.encoding[:0], formEncodings[form]...)
		s.p.Metadata = map[string][]byte{MetadataEncoding: enc[:len(enc):len(enc)]}
		if len(content) > 0 {
			s.p.Data = content[:len(content):len(content)]
		}
		return &s.p, nil
	}
	return nil, fmt.Errorf("unknown body form %d: %w", form, ErrMalformed)
}
