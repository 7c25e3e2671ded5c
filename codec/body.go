package codec

import (
	"errors"
	"slices"
	"unicode/utf8"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The body is the protobuf encoding of the original temporal.api.common.v1.Payload. Almost every payload has only metadata and data, and
// for that shape the codec writes and reads the wire format directly with protowire: the generic protobuf runtime walks the message by
// reflection, sorts map keys through reflection, and always copies bytes fields on unmarshal, which at 1 KiB costs more than the AES-GCM
// and at 1 MiB adds a full copy of the data. Anything else (external payload details, unknown fields, unusual encodings) goes through the
// protobuf runtime. Fuzz tests check that both paths agree byte for byte on encode and field for field on decode.

// Field numbers of temporal.api.common.v1.Payload and of its map entries.
const (
	fieldMetadata protowire.Number = 1
	fieldData     protowire.Number = 2
	fieldMapKey   protowire.Number = 1
	fieldMapValue protowire.Number = 2
)

// Marshalling options for the general path. Deterministic marshalling sorts map entries, so a payload always gives the same body; it
// reuses the sizes cached by the Size call just before instead of walking the message twice.
var marshalDeterministic = proto.MarshalOptions{Deterministic: true, UseCachedSize: true}

var errInvalidUTF8 = errors.New("metadata key is not valid UTF-8")

// simpleShape reports whether p has only metadata and data, so appendBody may take the direct path.
func simpleShape(p *commonpb.Payload) bool {
	return len(p.ExternalPayloads) == 0 && len(p.ProtoReflect().GetUnknown()) == 0
}

// bodySize returns the exact size of p's body.
func bodySize(p *commonpb.Payload) int {
	if !simpleShape(p) {
		return marshalDeterministic.Size(p)
	}
	n := 0
	for k, v := range p.Metadata {
		n += entryTagAndSize(k, v)
	}
	if len(p.Data) > 0 {
		n += protowire.SizeTag(fieldData) + protowire.SizeBytes(len(p.Data))
	}
	return n
}

func entrySize(k string, v []byte) int {
	return protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(k)) + protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(len(v))
}

func entryTagAndSize(k string, v []byte) int {
	return protowire.SizeTag(fieldMetadata) + protowire.SizeBytes(entrySize(k, v))
}

// appendBody appends p's body to b exactly as proto.MarshalOptions{Deterministic: true} encodes it: map entries sorted by key, each
// with both its key and value fields, then data when it is not empty.
func appendBody(b []byte, p *commonpb.Payload) ([]byte, error) {
	if !simpleShape(p) {
		marshalDeterministic.Size(p) // fills the size cache UseCachedSize relies on
		return marshalDeterministic.MarshalAppend(b, p)
	}
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k := range p.Metadata {
		if !utf8.ValidString(k) {
			return nil, errInvalidUTF8
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := p.Metadata[k]
		b = protowire.AppendTag(b, fieldMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(k, v)))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	if len(p.Data) > 0 {
		b = protowire.AppendTag(b, fieldData, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Data)
	}
	return b, nil
}

// unmarshalBody parses a body. The returned payload may alias body, which the caller must own and never modify again.
func unmarshalBody(body []byte) (*commonpb.Payload, error) {
	if p, ok := parseSimple(body); ok {
		return p, nil
	}
	p := &commonpb.Payload{}
	if err := proto.Unmarshal(body, p); err != nil {
		return nil, err
	}
	return p, nil
}

// parseSimple parses a body that holds only well-formed metadata entries and data, aliasing body (every slice is capped at its own length,
// so appending to one never writes into the next). It reports false for anything else, which the protobuf runtime then decides on.
func parseSimple(b []byte) (*commonpb.Payload, bool) {
	p := &commonpb.Payload{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch num {
		case fieldMetadata:
			k, val, ok := parseEntry(v)
			if !ok {
				return nil, false
			}
			if p.Metadata == nil {
				p.Metadata = make(map[string][]byte, 2)
			}
			p.Metadata[k] = val
		case fieldData:
			p.Data = v[:len(v):len(v)]
		default:
			return nil, false
		}
	}
	return p, true
}

func parseEntry(b []byte) (string, []byte, bool) {
	var (
		key string
		val = []byte{}
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return "", nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		switch num {
		case fieldMapKey:
			if !utf8.Valid(v) {
				return "", nil, false
			}
			key = string(v)
		case fieldMapValue:
			val = v[:len(v):len(v)]
		default:
			return "", nil, false
		}
	}
	return key, val, true
}
