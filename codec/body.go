package codec

import (
	"errors"
	"slices"
	"strings"
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

// bodySize returns the exact size of p's body (the size marshalPlaintext computes; the tests check it against the protobuf runtime).
// Like the protobuf runtime's Size, it does not check metadata keys for valid UTF-8.
func bodySize(p *commonpb.Payload) int {
	if !simpleShape(p) {
		return marshalDeterministic.Size(p)
	}
	var buf [8]entry
	_, n := collectEntries(buf[:0], p)
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
	var buf [8]entry
	entries, _, err := sortedEntries(buf[:0], p)
	if err != nil {
		return nil, err
	}
	return appendSimpleBody(b, entries, p.Data), nil
}

// entry is one metadata entry of a payload being marshalled.
type entry struct {
	k string
	v []byte
}

// sortedEntries appends p's metadata entries to es sorted by key, in one pass over the map, and returns them with the size of the body
// that appendSimpleBody writes for them and p's data. It fails on a key that is not valid UTF-8, as the protobuf runtime does.
func sortedEntries(es []entry, p *commonpb.Payload) ([]entry, int, error) {
	es, n := collectEntries(es, p)
	for _, e := range es {
		if !utf8.ValidString(e.k) {
			return nil, 0, errInvalidUTF8
		}
	}
	if len(es) > 1 {
		slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.k, b.k) })
	}
	return es, n, nil
}

// collectEntries appends p's metadata entries to es in map order and returns them with the body size.
func collectEntries(es []entry, p *commonpb.Payload) ([]entry, int) {
	n := 0
	for k, v := range p.Metadata {
		es = append(es, entry{k, v})
		n += entryTagAndSize(k, v)
	}
	if len(p.Data) > 0 {
		n += protowire.SizeTag(fieldData) + protowire.SizeBytes(len(p.Data))
	}
	return es, n
}

// appendSimpleBody appends the body of a simple-shaped payload with metadata entries es (sorted) and data.
func appendSimpleBody(b []byte, es []entry, data []byte) []byte {
	for _, e := range es {
		b = protowire.AppendTag(b, fieldMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(e.k, e.v)))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, e.k)
		b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
		b = protowire.AppendBytes(b, e.v)
	}
	if len(data) > 0 {
		b = protowire.AppendTag(b, fieldData, protowire.BytesType)
		b = protowire.AppendBytes(b, data)
	}
	return b
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
			if string(v) == MetadataEncoding {
				key = MetadataEncoding // nearly every payload has it: no allocation, no UTF-8 check
			} else if !utf8.Valid(v) {
				return "", nil, false
			} else {
				key = string(v)
			}
		case fieldMapValue:
			val = v[:len(v):len(v)]
		default:
			return "", nil, false
		}
	}
	return key, val, true
}
